//! Command-line arguments and entry points for `risp-udp tcp-server` and
//! `risp-udp tcp-client`. The binary only parses and calls these.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::tcp::{fetch, serve, TcpError, TcpReport, DEFAULT_MAX_LEN};

/// Arguments of `risp-udp tcp-server`.
#[derive(Debug, Clone, clap::Args)]
pub struct TcpServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:9081")]
    pub bind: SocketAddr,
    /// Largest number of values one request may ask for; larger requests are
    /// closed without data and logged.
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    pub max_len: u32,
}

/// Arguments of `risp-udp tcp-client`.
#[derive(Debug, Clone, clap::Args)]
pub struct TcpClientArgs {
    /// Number of values to fetch.
    pub len: u32,
    /// Server address as HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:9081")]
    pub server: String,
    /// Print the report as one JSON object instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// Give up when the whole transfer takes longer than this.
    #[arg(long, default_value_t = 60_000)]
    pub timeout_ms: u64,
}

/// Listens on `args.bind`, prints `tcp-server listening on ADDR` to stderr
/// (so scripts can wait for it), and serves until SIGINT or SIGTERM.
pub async fn run_tcp_server(args: TcpServerArgs) -> io::Result<()> {
    let listener = TcpListener::bind(args.bind).await?;
    let local = listener.local_addr()?;
    let shutdown = super::signal::termination();
    // On stderr, as the UDP server's banner (scripts wait for it there).
    eprintln!("tcp-server listening on {local}");
    tracing::info!(%local, max_len = args.max_len, "tcp-server listening");
    let shutdown = async {
        shutdown.await;
        tracing::info!("tcp-server shutting down");
    };
    serve(listener, args.max_len, shutdown).await
}

/// Fetches `args.len` values, prints the report (one line of text, or JSON
/// with `--json`) to stdout and returns it. A transfer that completed but
/// whose checksum does not match is printed and then returned as
/// [`TcpError::Unverified`], so the caller's exit status can reflect it.
pub async fn run_tcp_client(args: TcpClientArgs) -> Result<TcpReport, TcpError> {
    let addr = resolve(&args.server).await?;
    let report = fetch(addr, args.len, Duration::from_millis(args.timeout_ms)).await?;
    let line = if args.json {
        serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    } else {
        human_line(&report)
    };
    crate::outln!("{line}");
    if report.verified {
        Ok(report)
    } else {
        Err(TcpError::Unverified {
            computed: report.checksum,
        })
    }
}

/// The report as one sentence.
fn human_line(r: &TcpReport) -> String {
    format!(
        "{} {} values over tcp in {:.1} ms (connect {:.1} ms): {:.0} values/s, longest stall {:.1} ms, checksum {}",
        if r.verified { "verified" } else { "NOT VERIFIED:" },
        r.len,
        r.elapsed_ms,
        r.connect_ms,
        r.values_per_sec,
        r.longest_stall_ms,
        r.checksum,
    )
}

async fn resolve(server: &str) -> Result<SocketAddr, TcpError> {
    let resolve_error = |source| TcpError::Resolve {
        server: server.to_owned(),
        source,
    };
    tokio::net::lookup_host(server)
        .await
        .map_err(resolve_error)?
        .next()
        .ok_or_else(|| {
            resolve_error(io::Error::new(
                io::ErrorKind::NotFound,
                "no address for this name",
            ))
        })
}

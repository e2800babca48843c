//! `risp-udp server`: serve sequences to every client from one UDP socket.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use risp_netem::{LossySocket, Side};
use tokio::net::TcpListener;

use super::args::NetemArgs;
use super::exit::Exit;
use super::report::peak_rss_kb;
use crate::net::batch::IoMode;
use crate::net::server::{self, ServerSummary, SharedSummary};
use crate::proto::client::MAX_WINDOW;
use crate::proto::server::{Reject, RetryPolicy, ServerConfig};
use crate::stats::HistogramSet;

/// The UDP port a server listens on and a client asks by default.
pub const DEFAULT_PORT: u16 = 8081;

/// Flags of `risp-udp server`.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// UDP port to listen on (0: any free port, printed at start).
    #[arg(long, default_value_t = DEFAULT_PORT, env = "RISP_PORT")]
    pub port: u16,
    /// TCP port of the health endpoint (0: off).
    #[arg(
        long,
        alias = "health_port",
        default_value_t = 8080,
        env = "RISP_HEALTH_PORT"
    )]
    pub health_port: u16,
    /// Most sessions held at once; past it, new clients are told "busy"
    /// and the health check answers 503 (was --max_goroutines).
    #[arg(long, alias = "max_goroutines", default_value_t = 1024, env = "RISP_MAX_SESSIONS",
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_sessions: u64,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "RISP_BIND")]
    pub bind: IpAddr,
    /// Gap between two data datagrams of one session, in ms (0: as fast as
    /// the window allows). The original sent one value per tick.
    #[arg(
        long,
        alias = "server_ticker_ms",
        default_value_t = 0,
        env = "RISP_SERVER_TICKER_MS"
    )]
    pub server_ticker_ms: u64,
    /// Longest sequence a client may request.
    #[arg(long, default_value_t = 100_000_000, env = "RISP_MAX_LEN")]
    pub max_len: u32,
    /// Largest window honoured (larger requests are capped).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WINDOW)))]
    pub max_window: u32,
    /// Free a session after this long without hearing from its client, in ms.
    #[arg(long, default_value_t = 30_000, env = "RISP_SESSION_LIFETIME_MS",
          value_parser = super::args::positive_ms)]
    pub session_lifetime_ms: u64,
    /// When a new client must first prove its address with a retry token
    /// (one round trip more): `auto` when handshakes that proved nothing
    /// hold an eighth of the session table (a spoofed flood), `always`, or
    /// `never`.
    #[arg(long, value_enum, default_value_t = RetryArg::Auto, env = "RISP_RETRY")]
    pub retry: RetryArg,
    /// Most window slots (values in flight, about 60 bytes each) over all
    /// sessions together; each session's window is capped at its share.
    #[arg(long, default_value_t = 256 * 1024, env = "RISP_WINDOW_BUDGET",
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub window_budget: u64,
    /// Record first-send-to-ack latencies and write them (.hgrm, .hlog) to
    /// DIR on shutdown and on SIGUSR1.
    #[arg(long, value_name = "DIR")]
    pub hist_out: Option<PathBuf>,
    /// Impairments on this end's socket.
    #[command(flatten)]
    pub netem: NetemArgs,
}

/// `--retry` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RetryArg {
    /// Under pressure only.
    Auto,
    /// Every new client.
    Always,
    /// Never.
    Never,
}

impl From<RetryArg> for RetryPolicy {
    fn from(r: RetryArg) -> Self {
        match r {
            RetryArg::Auto => RetryPolicy::UnderPressure,
            RetryArg::Always => RetryPolicy::Always,
            RetryArg::Never => RetryPolicy::Never,
        }
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> Exit {
    let (port, health_port) = (args.port, args.health_port);
    let max_sessions = usize::try_from(args.max_sessions).unwrap_or(usize::MAX);
    let addr = SocketAddr::new(args.bind, port);
    let socket = match crate::net::socket::bind(addr).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on udp {addr}: {e}");
            return Exit::Failure;
        }
    };
    let local = socket.local_addr().unwrap_or(addr);
    let socket = match args.netem.config(Side::Server) {
        Some(cfg) => match LossySocket::new(socket, Side::Server, cfg, args.netem.seed()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return Exit::Usage;
            }
        },
        None => LossySocket::passthrough(socket),
    };
    // The metrics' latency buckets are fixed-size and always filled; the
    // HdrHistogram with its per-second series (it grows with uptime) only
    // for `--hist-out`.
    let shared: SharedSummary = Arc::new(Mutex::new(ServerSummary {
        record_ack_latency: args.hist_out.is_some(),
        ..ServerSummary::default()
    }));
    if health_port != 0 {
        let haddr = SocketAddr::new(args.bind, health_port);
        match TcpListener::bind(haddr).await {
            Ok(l) => {
                tokio::spawn(super::health::serve(l, shared.clone(), max_sessions));
            }
            Err(e) => {
                eprintln!("error: cannot listen on health port {haddr}: {e} (use --health-port 0 to disable)");
                return Exit::Failure;
            }
        }
    }
    let config = ServerConfig {
        max_sessions,
        max_len: args.max_len,
        max_window: args.max_window,
        session_lifetime: Duration::from_millis(args.session_lifetime_ms),
        pacing: Duration::from_millis(args.server_ticker_ms),
        seed: None,
        ack_latency_events: true,
        retry: args.retry.into(),
        window_budget: usize::try_from(args.window_budget).unwrap_or(usize::MAX),
        ..ServerConfig::default()
    };
    eprintln!(
        "risp-udp server listening on udp {local} (health: {}, max sessions {max_sessions}, session lifetime {} ms)",
        if health_port == 0 { "off".to_string() } else { format!("tcp {}", SocketAddr::new(args.bind, health_port)) },
        args.session_lifetime_ms
    );
    if let Some(dir) = args.hist_out.clone() {
        spawn_dump_on_signal(shared.clone(), dir);
    }
    let io = IoMode::from_env();
    let result = server::serve_with(socket, io, config, shared.clone(), shutdown_signal()).await;
    match result {
        Ok(summary) => {
            let s = &summary.stats;
            let rejected: Vec<String> = Reject::ALL
                .iter()
                .filter(|r| s.rejected(**r) > 0)
                .map(|r| format!("{} {}", r.name(), s.rejected(*r)))
                .collect();
            eprintln!(
                "risp-udp server stopped: sessions opened {}, closed {}, aborted {}, expired {}, peak {}; datagrams received {}, sent {} ({} retransmitted); rejected: {}; peak RSS {}",
                s.sessions_opened,
                s.sessions_closed,
                s.sessions_aborted,
                s.sessions_expired,
                summary.peak_sessions,
                s.datagrams_received,
                s.datagrams_sent,
                s.retransmits,
                if rejected.is_empty() { "none".to_string() } else { rejected.join(", ") },
                peak_rss_kb().map_or_else(|| "unknown".to_string(), |kb| format!("{kb} KiB"))
            );
            if let Some(dir) = &args.hist_out {
                if let Err(e) = dump(&summary, dir) {
                    eprintln!("error: {e}");
                    return Exit::Failure;
                }
            }
            Exit::Ok
        }
        Err(e) => {
            eprintln!("error: socket: {e}");
            Exit::Failure
        }
    }
}

fn dump(summary: &ServerSummary, dir: &Path) -> Result<(), crate::stats::StatsError> {
    let set = HistogramSet {
        server_ack: summary.ack_latency.clone(),
        ..HistogramSet::default()
    };
    // `server_ack.hgrm`: the stem already says whose it is.
    let files = set.write_dir(dir, "")?;
    eprintln!("wrote {} histogram files to {}", files.len(), dir.display());
    Ok(())
}

#[cfg(unix)]
fn spawn_dump_on_signal(shared: SharedSummary, dir: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            let summary = shared.lock().map(|s| s.clone()).unwrap_or_default();
            if let Err(e) = dump(&summary, &dir) {
                eprintln!("error: {e}");
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_dump_on_signal(_: SharedSummary, _: PathBuf) {}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! `risp-udp server`: serve sequences to every client from one UDP socket.
//!
//! `--interval SECS` prints a line of the server's figures every SECS to
//! stderr while it runs (see [`super::intervals`]); `--json` prints one
//! object at the end ([`ServerJson`]), with the intervals when asked for.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use risp_netem::{ImpairmentSpec, Side};
use serde::Serialize;
use tokio::sync::watch;

use super::exit::Exit;
use super::intervals::{self, FinishedLog, IntervalLog, ServerCounters, ServerInterval};
use crate::net::batch::IoMode;
use crate::net::ops::{peak_rss_kb, OpsServer, OpsState};
use crate::net::server::{Server, ServerBuilder, ServerHandle, ServerSummary};
use crate::proto::client::MAX_WINDOW;
use crate::proto::server::{Encryption, Reject, RetryPolicy, ServerConfig};
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
    /// An explicit cap on every session's window (larger requests are
    /// capped). By default none beyond the window budget's share.
    #[arg(long, default_value_t = MAX_WINDOW, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WINDOW)))]
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
    /// Where sessions are kept so that another instance (or this one after
    /// a restart) can resume them: `redis://HOST:PORT/DB`. Without it,
    /// sessions live in this process (shared by its workers).
    #[arg(long, value_name = "URL", env = "RISP_SESSION_STORE")]
    pub session_store: Option<String>,
    /// Prefix of the store's keys (instances that share clients share it).
    #[arg(long, default_value = crate::net::session_store::DEFAULT_PREFIX, env = "RISP_STORE_PREFIX")]
    pub store_prefix: String,
    /// File whose contents key the retry tokens; instances that share
    /// clients need the same key. Without it, the key is kept in the
    /// session store (created by the first instance), or drawn at start.
    #[arg(long, value_name = "PATH", env = "RISP_SECRET_FILE")]
    pub secret_file: Option<PathBuf>,
    /// Worker threads, each with its own socket on the port
    /// (SO_REUSEPORT) and its own sessions; a client that lands on another
    /// worker is resumed from the shared store.
    #[arg(long, default_value_t = 1, env = "RISP_WORKERS",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Print a line of the server's figures every SECS seconds to stderr
    /// (values sent and values/s, sessions open/opened/closed, resends,
    /// rejected datagrams and busy refusals), as iperf3's -i, and a sum
    /// line at shutdown. The figures are the workers' as last published
    /// (every 0.2 s), so shorter intervals come out uneven.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = super::args::interval_secs)]
    pub interval: Option<f64>,
    /// At shutdown, print one JSON object to stdout: the figures of the
    /// "stopped" line, and an "intervals" array with --interval.
    #[arg(long)]
    pub json: bool,
    /// Write each session's qlog trace (JSON-SEQ, vantage point server)
    /// into DIR, created if missing: UUID-server.sqlog, opened at the
    /// session's first datagram and closed when it closes or expires
    /// (docs/TRACING.md).
    #[arg(long, value_name = "DIR")]
    pub qlog: Option<PathBuf>,
    /// Impairments on this end's socket.
    #[command(flatten)]
    pub netem: ImpairmentSpec,
    /// Write what the server's sockets sent and received (pcapng, drops by
    /// the shim marked) to FILE; open it with netem/wireshark/risp.lua.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// The server's static X25519 key (created with mode 0600 if missing,
    /// see `risp-udp keygen`); its public key is printed at start.
    #[arg(long, value_name = "PATH", env = "RISP_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Whether sessions are sealed (needs --key-file): off, preferred
    /// (sealed for clients that ask), required.
    #[arg(long, value_enum, default_value_t = EncryptionArg::Off, env = "RISP_ENCRYPTION")]
    pub encryption: EncryptionArg,
}

/// `--encryption` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EncryptionArg {
    /// Plain sessions only.
    Off,
    /// Sealed for clients that ask, plain for the others.
    Preferred,
    /// Sealed only.
    Required,
}

impl From<EncryptionArg> for Encryption {
    fn from(e: EncryptionArg) -> Self {
        match e {
            EncryptionArg::Off => Encryption::Off,
            EncryptionArg::Preferred => Encryption::Preferred,
            EncryptionArg::Required => Encryption::Required,
        }
    }
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

/// The server the flags describe. The metrics' latency buckets are
/// fixed-size and always filled; the HdrHistogram with its per-second
/// series (it grows with uptime) only for `--hist-out`.
pub fn builder(args: &ServerArgs) -> ServerBuilder {
    let config = ServerConfig {
        max_sessions: usize::try_from(args.max_sessions).unwrap_or(usize::MAX),
        max_len: args.max_len,
        max_window: args.max_window,
        session_lifetime: Duration::from_millis(args.session_lifetime_ms),
        pacing: Duration::from_millis(args.server_ticker_ms),
        seed: None,
        ack_latency_events: true,
        retry: args.retry.into(),
        window_budget: usize::try_from(args.window_budget).unwrap_or(usize::MAX),
        encryption: args.encryption.into(),
        key: args
            .key_file
            .as_deref()
            .and_then(|p| crate::net::keyfile::load_or_create(p).ok())
            .map(|(key, _)| key),
        ..ServerConfig::default()
    };
    let mut b = Server::builder()
        .bind(SocketAddr::new(args.bind, args.port))
        .workers(usize::from(args.workers))
        .config(config)
        .io(IoMode::from_env())
        .record_ack_latency(args.hist_out.is_some());
    if let Some(url) = &args.session_store {
        b = b.redis(url, &args.store_prefix);
    }
    if let Some(path) = &args.secret_file {
        b = b.secret_file(path);
    }
    if let Some(cfg) = args.netem.config(Side::Server) {
        b = b.impairment(cfg, args.netem.seed());
    }
    if let Some(dir) = &args.qlog {
        b = b.qlog(dir);
    }
    b
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServerArgs) -> Exit {
    let health_port = args.health_port;
    let workers = args.workers.max(1);
    let capture = match super::capture::open(args.pcap.as_deref(), "risp-udp server") {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --pcap {e}");
            return Exit::Usage;
        }
    };
    if let Some(path) = &args.key_file {
        match crate::net::keyfile::load_or_create(path) {
            Ok((key, created)) => eprintln!(
                "risp-udp server key {} ({}{})",
                key.public(),
                path.display(),
                if created { ", created" } else { "" }
            ),
            Err(e) => {
                eprintln!("error: --key-file {}: {e}", path.display());
                return Exit::Failure;
            }
        }
    } else if args.encryption != EncryptionArg::Off {
        eprintln!("error: --encryption {:?} needs --key-file", args.encryption);
        return Exit::Usage;
    }
    let mut b = builder(&args);
    if let Some(c) = &capture {
        b = b.capture(c.clone());
    }
    let mut server = match b.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::for_server_error(&e);
        }
    };
    let mut ops = None;
    if health_port != 0 {
        let haddr = SocketAddr::new(args.bind, health_port);
        let max_sessions = usize::try_from(args.max_sessions).unwrap_or(usize::MAX);
        match OpsServer::bind(haddr, OpsState::from_watch(server.summary(), max_sessions)).await {
            Ok(handle) => ops = Some(handle),
            Err(e) => {
                eprintln!("error: cannot listen on health port {haddr}: {e} (use --health-port 0 to disable)");
                let _ = server.shutdown().await;
                return Exit::Failure;
            }
        }
    }
    // Registered before the "listening" line, so a signal sent once a
    // script reads it is seen.
    let signals = super::signal::termination();
    // Without --json the lines are printed and forgotten.
    let mut log = args.interval.map(|secs| {
        let log = IntervalLog::new(Duration::from_secs_f64(secs), crate::clock::now());
        if args.json {
            log
        } else {
            log.keep(0)
        }
    });
    // One worker without a store prints what it always printed.
    let scale = match (server.store(), &args.session_store) {
        (Some(_), Some(url)) => format!(", {workers} worker(s), session store {url}"),
        (Some(_), None) => format!(", {workers} workers, in-process session store"),
        (None, _) => String::new(),
    };
    eprintln!(
        "risp-udp server listening on udp {} (health: {}, max sessions {}, session lifetime {} ms{scale})",
        server.local_addr(),
        if health_port == 0 { "off".to_string() } else { format!("tcp {}", SocketAddr::new(args.bind, health_port)) },
        args.max_sessions,
        args.session_lifetime_ms,
    );
    if let Some(dir) = args.hist_out.clone() {
        spawn_dump_on_signal(server.summary(), dir);
    }
    serve(&mut server, signals, &mut log).await;
    let has_store = server.store().is_some();
    let stopped = server.shutdown().await;
    if let Some(ops) = ops {
        ops.shutdown().await;
    }
    let captured = super::capture::close(capture.as_deref());
    let summary = match stopped {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Failure;
        }
    };
    let exit = report_stop(&args, &summary, has_store, log);
    if captured {
        exit
    } else {
        Exit::Failure
    }
}

/// What a stopped server prints: the last interval and the sum line, the
/// "stopped" line, the histograms for `--hist-out`, the `--json` object.
fn report_stop(
    args: &ServerArgs,
    summary: &ServerSummary,
    has_store: bool,
    log: Option<IntervalLog<ServerCounters>>,
) -> Exit {
    let intervals = log.map(|log| {
        let done = log.finish(crate::clock::now(), ServerCounters::of(summary));
        eprint!("{}", done.text);
        done
    });
    eprintln!("{}", stopped_line(summary, has_store));
    if let Some(dir) = &args.qlog {
        eprintln!(
            "wrote {} to {} ({} not written)",
            super::demo::plural(summary.qlog_files, "qlog file"),
            dir.display(),
            super::demo::plural(summary.qlog_not_written, "record")
        );
    }
    let mut exit = Exit::Ok;
    if let Some(dir) = &args.hist_out {
        if let Err(e) = dump(summary, dir) {
            eprintln!("error: {e}");
            exit = Exit::Failure;
        }
    }
    if args.json {
        let json = ServerJson::new(summary, has_store, intervals, exit as u8);
        match serde_json::to_string(&json) {
            Ok(j) => crate::outln!("{j}"),
            Err(e) => eprintln!("error: {e}"),
        }
    }
    exit
}

/// Serves until a signal or until a worker stops on its own (it failed:
/// the others are stopped next), printing interval lines on the way.
async fn serve(
    server: &mut ServerHandle,
    signals: impl std::future::Future<Output = ()>,
    log: &mut Option<IntervalLog<ServerCounters>>,
) {
    let summary = server.summary();
    let mut signals = std::pin::pin!(signals);
    loop {
        tokio::select! {
            () = &mut signals => return,
            () = server.stopped() => return,
            () = intervals::due(log) => {
                if let Some(log) = log.as_mut() {
                    let now = ServerCounters::of(&summary.borrow());
                    if let Some(line) = log.cut(crate::clock::now(), now) {
                        eprintln!("{line}");
                    }
                }
            }
        }
    }
}

/// The `--json` object of `risp-udp server`, printed at shutdown.
#[derive(Debug, Clone, Serialize)]
pub struct ServerJson {
    /// Sessions created.
    pub sessions_opened: u64,
    /// Sessions closed by the CLOSED handshake.
    pub sessions_closed: u64,
    /// Sessions their client gave up on.
    pub sessions_aborted: u64,
    /// Sessions freed for idleness.
    pub sessions_expired: u64,
    /// Sessions carried on from the shared store (`None`: no store).
    pub sessions_restored: Option<u64>,
    /// Most sessions held at once.
    pub peak_sessions: usize,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Datagrams sent, every kind.
    pub datagrams_sent: u64,
    /// Data datagrams sent (one value each, resends included).
    pub values_sent: u64,
    /// Of those, resends.
    pub retransmits: u64,
    /// Datagrams rejected, by reason (only reasons that occurred).
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Peak resident set size, KiB (Linux).
    pub peak_rss_kb: Option<u64>,
    /// The process exit code this run ends with.
    pub exit_code: u8,
    /// Per-interval figures with `--interval` (absent without it); each
    /// count adds up to the total above. Idle intervals (nothing sent,
    /// no session open, nothing rejected) are left out, so their times
    /// may have gaps.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<ServerInterval>,
    /// The oldest intervals left out to keep at most a day of 1 s ones
    /// ([`MAX_KEPT`](super::intervals::MAX_KEPT)); absent when none were.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals_dropped: Option<u64>,
}

impl ServerJson {
    /// The JSON form of the final `summary`.
    pub fn new(
        summary: &ServerSummary,
        has_store: bool,
        intervals: Option<FinishedLog<ServerInterval>>,
        exit_code: u8,
    ) -> Self {
        let (intervals, dropped) = intervals.map_or((Vec::new(), 0), |l| (l.rows, l.dropped));
        let s = &summary.stats;
        Self {
            sessions_opened: s.sessions_opened,
            sessions_closed: s.sessions_closed,
            sessions_aborted: s.sessions_aborted,
            sessions_expired: s.sessions_expired,
            sessions_restored: has_store.then_some(s.sessions_restored),
            peak_sessions: summary.peak_sessions,
            datagrams_received: s.datagrams_received,
            datagrams_sent: s.datagrams_sent,
            values_sent: ServerCounters::of(summary).values_sent,
            retransmits: s.retransmits,
            rejected: Reject::ALL
                .iter()
                .filter(|r| s.rejected(**r) > 0)
                .map(|r| (r.name(), s.rejected(*r)))
                .collect(),
            peak_rss_kb: peak_rss_kb(),
            exit_code,
            intervals,
            intervals_dropped: (dropped > 0).then_some(dropped),
        }
    }
}

/// The "risp-udp server stopped: ..." line; `restored` counts only with a
/// session store.
fn stopped_line(summary: &ServerSummary, has_store: bool) -> String {
    let s = &summary.stats;
    let rejected: Vec<String> = Reject::ALL
        .iter()
        .filter(|r| s.rejected(**r) > 0)
        .map(|r| format!("{} {}", r.name(), s.rejected(*r)))
        .collect();
    let restored = if has_store {
        format!(", restored {}", s.sessions_restored)
    } else {
        String::new()
    };
    format!(
        "risp-udp server stopped: sessions opened {}, closed {}, aborted {}, expired {}{restored}, peak {}; datagrams received {}, sent {} ({} retransmitted); rejected: {}; peak RSS {}",
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
    )
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
fn spawn_dump_on_signal(summary: watch::Receiver<ServerSummary>, dir: PathBuf) {
    use tokio::signal::unix::{signal, SignalKind};
    tokio::spawn(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            return;
        };
        while usr1.recv().await.is_some() {
            let current = summary.borrow().clone();
            if let Err(e) = dump(&current, &dir) {
                eprintln!("error: {e}");
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_dump_on_signal(_: watch::Receiver<ServerSummary>, _: PathBuf) {}

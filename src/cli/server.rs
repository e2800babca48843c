//! `risp-udp server`: serve sequences to every client from one UDP socket.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use rand::SeedableRng;
use risp_netem::{ImpairmentSpec, LossySocket, Side};
use tokio::net::UdpSocket;

use super::exit::Exit;
use crate::net::batch::IoMode;
use crate::net::ops::{peak_rss_kb, OpsServer, OpsState};
use crate::net::server::{self, ServerSummary, SharedSummary};
use crate::net::store::{SessionStore, StoreError};
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
    #[arg(long, default_value = crate::net::store::DEFAULT_PREFIX, env = "RISP_STORE_PREFIX")]
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
    /// Impairments on this end's socket.
    #[command(flatten)]
    pub netem: ImpairmentSpec,
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
    let workers = usize::from(args.workers.max(1));
    let addr = SocketAddr::new(args.bind, port);
    let store = match open_store(&args, workers).await {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let secret = match server_secret(&args, store.as_ref()).await {
        Ok(s) => s,
        Err(exit) => return exit,
    };
    let sockets = match bind_workers(addr, workers).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on udp {addr}: {e}");
            return Exit::Failure;
        }
    };
    let local = sockets[0].local_addr().unwrap_or(addr);
    let mut lossy = Vec::with_capacity(workers);
    for (i, socket) in sockets.into_iter().enumerate() {
        let socket = match args.netem.config(Side::Server) {
            Some(cfg) => {
                let seed = args.netem.seed().wrapping_add(i as u64);
                match LossySocket::new(socket, Side::Server, cfg, seed) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("error: {e}");
                        return Exit::Usage;
                    }
                }
            }
            None => LossySocket::passthrough(socket),
        };
        lossy.push(socket);
    }
    // The metrics' latency buckets are fixed-size and always filled; the
    // HdrHistogram with its per-second series (it grows with uptime) only
    // for `--hist-out`.
    let new_summary = || -> SharedSummary {
        Arc::new(Mutex::new(ServerSummary {
            record_ack_latency: args.hist_out.is_some(),
            ..ServerSummary::default()
        }))
    };
    let parts: Vec<SharedSummary> = (0..workers).map(|_| new_summary()).collect();
    // One worker publishes straight into what the health endpoint reads;
    // several are merged into it.
    let shared = if workers == 1 {
        parts[0].clone()
    } else {
        let merged = new_summary();
        tokio::spawn(merge_summaries(parts.clone(), merged.clone()));
        merged
    };
    let mut ops = None;
    if health_port != 0 {
        let haddr = SocketAddr::new(args.bind, health_port);
        match OpsServer::bind(haddr, OpsState::new(shared.clone(), max_sessions)).await {
            Ok(handle) => ops = Some(handle),
            Err(e) => {
                eprintln!("error: cannot listen on health port {haddr}: {e} (use --health-port 0 to disable)");
                return Exit::Failure;
            }
        }
    }
    // Each worker's share of the session limit and window budget, so
    // that the process keeps the limits it was given.
    let per_worker = |total: usize| total.div_ceil(workers).max(1);
    let config = ServerConfig {
        max_sessions: per_worker(max_sessions),
        max_len: args.max_len,
        max_window: args.max_window,
        session_lifetime: Duration::from_millis(args.session_lifetime_ms),
        pacing: Duration::from_millis(args.server_ticker_ms),
        seed: None,
        ack_latency_events: true,
        retry: args.retry.into(),
        window_budget: per_worker(usize::try_from(args.window_budget).unwrap_or(usize::MAX)),
        secret: Some(secret),
        ..ServerConfig::default()
    };
    // One worker without a store prints what it always printed.
    let scale = match (&store, &args.session_store) {
        (Some(_), Some(url)) => format!(", {workers} worker(s), session store {url}"),
        (Some(_), None) => format!(", {workers} workers, in-process session store"),
        (None, _) => String::new(),
    };
    eprintln!(
        "risp-udp server listening on udp {local} (health: {}, max sessions {max_sessions}, session lifetime {} ms{scale})",
        if health_port == 0 { "off".to_string() } else { format!("tcp {}", SocketAddr::new(args.bind, health_port)) },
        args.session_lifetime_ms,
    );
    if let Some(dir) = args.hist_out.clone() {
        spawn_dump_on_signal(shared.clone(), dir);
    }
    let io = IoMode::from_env();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (socket, part) in lossy.into_iter().zip(&parts) {
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let fut = server::serve_with_store(
            socket,
            io,
            config.clone(),
            part.clone(),
            store.clone(),
            shutdown,
        );
        tasks.spawn(fut);
    }
    let mut results = Vec::with_capacity(workers);
    tokio::select! {
        () = shutdown_signal() => {}
        // A worker that stops on its own failed: stop the others.
        Some(r) = tasks.join_next() => results.push(r),
    }
    let _ = stop_tx.send(true);
    while let Some(r) = tasks.join_next().await {
        results.push(r);
    }
    if let Some(ops) = ops {
        ops.shutdown().await;
    }
    let mut summaries = Vec::with_capacity(workers);
    let mut failed = None;
    for r in results {
        match r {
            Ok(Ok(s)) => summaries.push(s),
            Ok(Err(e)) => failed = Some(e.to_string()),
            Err(e) => failed = Some(e.to_string()),
        }
    }
    if let Some(e) = failed {
        eprintln!("error: socket: {e}");
        return Exit::Failure;
    }
    let summary = ServerSummary::merged(&summaries, crate::clock::now());
    let s = &summary.stats;
    let rejected: Vec<String> = Reject::ALL
        .iter()
        .filter(|r| s.rejected(**r) > 0)
        .map(|r| format!("{} {}", r.name(), s.rejected(*r)))
        .collect();
    let restored = if store.is_some() {
        format!(", restored {}", s.sessions_restored)
    } else {
        String::new()
    };
    eprintln!(
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
    );
    if let Some(dir) = &args.hist_out {
        if let Err(e) = dump(&summary, dir) {
            eprintln!("error: {e}");
            return Exit::Failure;
        }
    }
    Exit::Ok
}

/// The session store the flags ask for: Redis with `--session-store`, the
/// in-process store for several workers, none for one worker (nothing
/// changes for a single server). Redis that does not answer at start is
/// an error of its own ([`Exit::StoreUnavailable`]).
async fn open_store(args: &ServerArgs, workers: usize) -> Result<Option<SessionStore>, Exit> {
    match &args.session_store {
        Some(url) => match SessionStore::connect(url, &args.store_prefix).await {
            Ok(s) => {
                s.spawn_monitor();
                Ok(Some(s))
            }
            Err(e @ StoreError::BadUrl { .. }) => {
                eprintln!("error: {e}");
                Err(Exit::Usage)
            }
            Err(e) => {
                eprintln!("error: cannot reach the session store {url}: {e}");
                Err(Exit::StoreUnavailable)
            }
        },
        None if workers > 1 => Ok(Some(SessionStore::memory())),
        None => Ok(None),
    }
}

/// The key of retry tokens: from `--secret-file` (its SHA-256, so any
/// length of secret works), else kept in the store, else drawn now.
async fn server_secret(args: &ServerArgs, store: Option<&SessionStore>) -> Result<[u8; 32], Exit> {
    use rand::Rng;
    use sha2::{Digest, Sha256};
    if let Some(path) = &args.secret_file {
        return match std::fs::read(path) {
            Ok(bytes) if bytes.len() >= 16 => Ok(Sha256::digest(&bytes).into()),
            Ok(bytes) => {
                eprintln!(
                    "error: secret file {}: {} bytes, need at least 16",
                    path.display(),
                    bytes.len()
                );
                Err(Exit::Usage)
            }
            Err(e) => {
                eprintln!("error: cannot read secret file {}: {e}", path.display());
                Err(Exit::Failure)
            }
        };
    }
    let drawn: [u8; 32] = rand::rngs::StdRng::from_entropy().gen();
    match store {
        Some(s) => s.shared_secret(drawn).await.map_err(|e| {
            eprintln!("error: session store: cannot keep the shared secret: {e}");
            Exit::StoreUnavailable
        }),
        None => Ok(drawn),
    }
}

/// Binds the workers' sockets: one plain socket for one worker; with
/// several, the first picks the port (when 0) and the others join it
/// with `SO_REUSEPORT`.
async fn bind_workers(addr: SocketAddr, workers: usize) -> std::io::Result<Vec<UdpSocket>> {
    if workers == 1 {
        return Ok(vec![crate::net::socket::bind(addr).await?]);
    }
    #[cfg(unix)]
    {
        let first = crate::net::socket::bind_reuse_port(addr)?;
        let addr = first.local_addr()?;
        let mut all = vec![first];
        for _ in 1..workers {
            all.push(crate::net::socket::bind_reuse_port(addr)?);
        }
        Ok(all)
    }
    #[cfg(not(unix))]
    {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "--workers above 1 needs SO_REUSEPORT (Unix)",
        ))
    }
}

/// Merges the workers' summaries into the one the health endpoint reads,
/// as often as the workers publish.
async fn merge_summaries(parts: Vec<SharedSummary>, merged: SharedSummary) {
    loop {
        let now = crate::clock::now();
        let snapshot: Vec<ServerSummary> = parts
            .iter()
            .filter_map(|p| p.lock().ok().map(|s| s.clone()))
            .collect();
        let mut all = ServerSummary::merged(&snapshot, now);
        // The health endpoint's heartbeat is the stalest worker's.
        if let Ok(mut m) = merged.lock() {
            all.record_ack_latency = m.record_ack_latency;
            *m = all;
        }
        tokio::time::sleep(server::PUBLISH_EVERY).await;
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

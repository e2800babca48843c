//! A server built, bound and started in one expression, and the handle
//! that stops it: [`Server::builder`] → [`ServerBuilder::start`] →
//! [`ServerHandle`].
//!
//! `start` does what a server process needs before its first datagram: it
//! opens the session store (when one is asked for, or several workers need
//! one to share sessions), settles the key of retry tokens (a file, the
//! store's shared key, or drawn), binds one socket per worker on the port
//! (`SO_REUSEPORT` past one), wraps each in the lossy-socket shim when
//! impaired, splits the limits between the workers, and spawns them with
//! the summary merger and the store monitor. [`ServerHandle::shutdown`]
//! stops them all and joins every task it spawned (mini-redis's graceful
//! shutdown); dropping the handle aborts them.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use risp_netem::{Capture, ImpairmentConfig, LossySocket, Side};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use super::summary::{self, Publisher, ServerSummary, SummaryHook};
use super::worker::{Recording, Worker};
use crate::clock;
use crate::net::batch::IoMode;
use crate::net::session_store::{SessionStore, StoreError};
use crate::proto::server::ServerConfig;

/// The risp-udp server over UDP sockets. Not a value: [`Server::builder`]
/// configures one, and a started server is a [`ServerHandle`].
#[derive(Debug)]
pub enum Server {}

impl Server {
    /// A server on 127.0.0.1, on a port the OS picks, one worker, the
    /// core's default settings, no store and no impairment.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: 1,
            config: ServerConfig::default(),
            store: StoreChoice::Default,
            secret: SecretSource::Config,
            impairment: None,
            io: IoMode::Batched,
            recording: Recording {
                ack_latency: true,
                data_sent: false,
                session_seeds: false,
            },
            hook: None,
            capture: None,
            qlog: None,
        }
    }
}

/// How a server is to be started (see [`Server::builder`]).
pub struct ServerBuilder {
    bind: SocketAddr,
    workers: usize,
    config: ServerConfig,
    store: StoreChoice,
    secret: SecretSource,
    impairment: Option<(ImpairmentConfig, u64)>,
    io: IoMode,
    recording: Recording,
    hook: Option<SummaryHook>,
    /// Sees every datagram of every worker's socket (a packet capture).
    capture: Option<Arc<dyn Capture>>,
    qlog: Option<PathBuf>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("bind", &self.bind)
            .field("workers", &self.workers)
            .field("config", &self.config)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// Which session store the server uses.
enum StoreChoice {
    /// None for one worker; an in-process store shared by several.
    Default,
    /// This one.
    Given(SessionStore),
    /// Redis at this URL, under this key prefix.
    Redis { url: String, prefix: String },
}

/// Where the key of retry tokens comes from.
enum SecretSource {
    /// [`ServerConfig::secret`]; when unset, the store's shared key, or
    /// drawn by each worker's core without a store.
    Config,
    /// This key.
    Key([u8; 32]),
    /// The SHA-256 of this file's contents (at least 16 bytes).
    File(PathBuf),
}

impl ServerBuilder {
    /// The address to listen on (port 0: any free port, see
    /// [`ServerHandle::local_addr`]).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Worker tasks, each with its own socket on the port (`SO_REUSEPORT`,
    /// Unix only above one) and its own sessions; a client that lands on
    /// another worker is resumed from the shared store (an in-process one
    /// unless [`store`](Self::store) or [`redis`](Self::redis) says
    /// otherwise). The session limit and the window budget of
    /// [`config`](Self::config) are the process's, split between them.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// The protocol settings (limits, lifetimes, pacing, retry policy...).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Shares sessions through `store` (with other workers, processes or
    /// hosts).
    pub fn store(mut self, store: SessionStore) -> Self {
        self.store = StoreChoice::Given(store);
        self
    }

    /// Shares sessions through Redis at `url` (`redis://HOST:PORT/DB`),
    /// records under `prefix`; [`start`](Self::start) fails if it does not
    /// answer then. While the server runs, a monitor pings it so that the
    /// workers know whether it answers.
    pub fn redis(mut self, url: impl Into<String>, prefix: impl Into<String>) -> Self {
        self.store = StoreChoice::Redis {
            url: url.into(),
            prefix: prefix.into(),
        };
        self
    }

    /// The key of retry tokens (instances that share clients need the
    /// same one). Without it: [`ServerConfig::secret`], else the key kept
    /// in the session store (created by the first instance), else drawn.
    pub fn secret(mut self, key: [u8; 32]) -> Self {
        self.secret = SecretSource::Key(key);
        self
    }

    /// The key of retry tokens is the SHA-256 of this file (any secret of
    /// at least 16 bytes), read at [`start`](Self::start).
    pub fn secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret = SecretSource::File(path.into());
        self
    }

    /// Impairs every worker's socket with `config` (the server's side of
    /// it), worker `i` seeded with `seed + i`.
    pub fn impairment(mut self, config: ImpairmentConfig, seed: u64) -> Self {
        self.impairment = Some((config, seed));
        self
    }

    /// Batched (the default) or plain socket I/O.
    pub fn io(mut self, mode: IoMode) -> Self {
        self.io = mode;
        self
    }

    /// Hands every datagram each worker's socket sends or receives, with
    /// what the shim did to it, to `capture` (a packet capture; off by
    /// default).
    pub fn capture(mut self, capture: Arc<dyn Capture>) -> Self {
        self.capture = Some(capture);
        self
    }

    /// Keeps the acknowledgement-latency histogram with its per-second
    /// series in [`ServerSummary::ack_latency`] (on by default; it needs
    /// [`ServerConfig::ack_latency_events`]). A long-lived server that only
    /// wants the fixed-size [`ServerSummary::metrics`] turns it off: the
    /// series grows with uptime.
    pub fn record_ack_latency(mut self, on: bool) -> Self {
        self.recording.ack_latency = on;
        self
    }

    /// Counts data datagrams per session into
    /// [`ServerSummary::data_sent`] (off by default: the map grows with
    /// every session).
    pub fn count_data_sent(mut self, on: bool) -> Self {
        self.recording.data_sent = on;
        self
    }

    /// Records each session's seed into [`ServerSummary::session_seeds`]
    /// (off by default; for tests that check every value a client got).
    pub fn record_session_seeds(mut self, on: bool) -> Self {
        self.recording.session_seeds = on;
        self
    }

    /// Calls `hook` with every summary the server publishes (about every
    /// 200 ms, and as sessions open when seeds are recorded), on the task
    /// that publishes it: it must be quick, and must not wait. The same
    /// summaries go to [`ServerHandle::summary`].
    pub fn on_summary(mut self, hook: impl Fn(&ServerSummary) + Send + Sync + 'static) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Writes each session's qlog trace (vantage point server) into `dir`,
    /// created at [`start`](Self::start) if missing: `UUID-server.sqlog`
    /// per session (see [`crate::net::qlog`]; what was not written is in
    /// [`ServerSummary::qlog_not_written`]).
    pub fn qlog(mut self, dir: impl Into<PathBuf>) -> Self {
        self.qlog = Some(dir.into());
        self
    }

    /// Opens the store, binds the sockets and starts serving.
    pub async fn start(self) -> Result<ServerHandle, ServerError> {
        if let Some(dir) = &self.qlog {
            crate::net::qlog::create_qlog_dir(dir).map_err(ServerError::Qlog)?;
        }
        let workers = self.workers;
        let store = open_store(self.store, workers).await?;
        let mut config = self.config;
        if let Some(key) = settle_secret(self.secret, config.secret, store.as_ref()).await? {
            config.secret = Some(key);
        }
        if workers > 1 {
            // Each worker's share, so that the process keeps the limits
            // it was given.
            let share = |total: usize| total.div_ceil(workers).max(1);
            config.max_sessions = share(config.max_sessions);
            config.window_budget = share(config.window_budget);
        }
        let addr = self.bind;
        let sockets = bind_workers(addr, workers)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = sockets[0].local_addr().unwrap_or(addr);
        let mut sockets = impair(sockets, self.impairment.as_ref())?;
        if let Some(capture) = &self.capture {
            sockets = sockets
                .into_iter()
                .map(|s| s.with_capture(Arc::clone(capture)))
                .collect::<io::Result<_>>()
                .map_err(ServerError::Socket)?;
        }
        let (stop, stopped) = watch::channel(false);
        let (outs, summary, merger) = publishers(workers, self.hook, &stopped);
        let mut tasks = JoinSet::new();
        for (socket, out) in sockets.into_iter().zip(outs) {
            let worker = Worker {
                socket,
                io: self.io,
                config: config.clone(),
                store: store.clone(),
                recording: self.recording,
                qlog: self.qlog.clone(),
                out,
            };
            let mut stopped = stopped.clone();
            tasks.spawn(worker.run(async move {
                // Also ends if the handle is dropped.
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        let mut helpers = JoinSet::new();
        if let Some(monitor) = store.as_ref().and_then(SessionStore::monitor) {
            helpers.spawn(monitor);
        }
        Ok(ServerHandle {
            local_addr,
            summary,
            stop,
            workers: tasks,
            ended: Vec::new(),
            merger,
            helpers,
            store,
        })
    }
}

/// Why a server could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The session store's URL is not a Redis URL.
    #[error(transparent)]
    StoreUrl(StoreError),
    /// The session store did not answer at start.
    #[error("cannot reach the session store {url}: {source}")]
    StoreUnreachable {
        /// Its URL.
        url: String,
        /// What went wrong.
        source: StoreError,
    },
    /// The secret file could not be read.
    #[error("cannot read secret file {}: {source}", path.display())]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The secret file holds too little to be a key.
    #[error("secret file {}: {len} bytes, need at least 16", path.display())]
    SecretTooShort {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// The store could not keep (or give) the shared key of retry tokens.
    #[error("session store: cannot keep the shared secret: {0}")]
    SharedSecret(StoreError),
    /// The address cannot be listened on.
    #[error("cannot listen on udp {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The impairment shim refused its settings.
    #[error("{0}")]
    Impairment(io::Error),
    /// The qlog directory cannot be created.
    #[error("{0}")]
    Qlog(io::Error),
    /// A worker's socket failed (or the worker panicked).
    #[error("socket: {0}")]
    Socket(io::Error),
}

/// A running server: its address, its figures, and the way to stop it.
/// Dropping it aborts every task without waiting; [`shutdown`](Self::shutdown)
/// stops them in order.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    summary: watch::Receiver<ServerSummary>,
    /// Set to stop the workers.
    stop: watch::Sender<bool>,
    workers: JoinSet<io::Result<ServerSummary>>,
    /// Workers that ended before shutdown (they failed).
    ended: Vec<Result<io::Result<ServerSummary>, JoinError>>,
    /// The summary merger (several workers only).
    merger: JoinSet<()>,
    /// Tasks that run until aborted (the store monitor).
    helpers: JoinSet<()>,
    store: Option<SessionStore>,
}

impl ServerHandle {
    /// The address the server listens on (with port 0 asked, the port the
    /// OS picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's figures, updated about every 200 ms (the workers'
    /// merged, with several). The channel closes when the server has shut
    /// down.
    pub fn summary(&self) -> watch::Receiver<ServerSummary> {
        self.summary.clone()
    }

    /// The session store the workers share, if any.
    pub fn store(&self) -> Option<&SessionStore> {
        self.store.as_ref()
    }

    /// Resolves when a worker stops on its own, which only a socket error
    /// does (the error comes from [`shutdown`](Self::shutdown)); never
    /// while every worker runs. Cancel-safe.
    pub async fn stopped(&mut self) {
        match self.workers.join_next().await {
            Some(r) => self.ended.push(r),
            None => std::future::pending().await,
        }
    }

    /// Stops every worker, waits for each to publish its last figures, and
    /// joins every task the server spawned (workers, their store writers
    /// and lookups, the merger, the store monitor): when it returns, the
    /// port is free and the summary channel closed. Returns the final
    /// summary, or the first worker's error.
    pub async fn shutdown(mut self) -> Result<ServerSummary, ServerError> {
        let _ = self.stop.send(true);
        while let Some(r) = self.workers.join_next().await {
            self.ended.push(r);
        }
        while self.merger.join_next().await.is_some() {}
        self.helpers.shutdown().await;
        let mut summaries = Vec::with_capacity(self.ended.len());
        for r in self.ended {
            match r {
                Ok(Ok(s)) => summaries.push(s),
                Ok(Err(e)) => return Err(ServerError::Socket(e)),
                Err(e) => return Err(ServerError::Socket(io::Error::other(e))),
            }
        }
        Ok(match summaries.len() {
            1 => summaries.swap_remove(0),
            _ => ServerSummary::merged(&summaries, clock::now()),
        })
    }
}

/// The store `choice` names: none for one worker by default, an
/// in-process store for several.
async fn open_store(
    choice: StoreChoice,
    workers: usize,
) -> Result<Option<SessionStore>, ServerError> {
    match choice {
        StoreChoice::Given(s) => Ok(Some(s)),
        StoreChoice::Redis { url, prefix } => match SessionStore::connect(&url, &prefix).await {
            Ok(s) => Ok(Some(s)),
            Err(e @ StoreError::BadUrl { .. }) => Err(ServerError::StoreUrl(e)),
            Err(source) => Err(ServerError::StoreUnreachable { url, source }),
        },
        StoreChoice::Default if workers > 1 => Ok(Some(SessionStore::memory())),
        StoreChoice::Default => Ok(None),
    }
}

/// The key of retry tokens, when it is not left to each core to draw: from
/// `source`, else `configured`, else kept in the store.
async fn settle_secret(
    source: SecretSource,
    configured: Option<[u8; 32]>,
    store: Option<&SessionStore>,
) -> Result<Option<[u8; 32]>, ServerError> {
    use rand::{Rng, SeedableRng};
    use sha2::{Digest, Sha256};
    match source {
        SecretSource::Key(key) => Ok(Some(key)),
        SecretSource::File(path) => match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 16 => Ok(Some(Sha256::digest(&bytes).into())),
            Ok(bytes) => Err(ServerError::SecretTooShort {
                path,
                len: bytes.len(),
            }),
            Err(source) => Err(ServerError::SecretFile { path, source }),
        },
        SecretSource::Config if configured.is_some() => Ok(configured),
        SecretSource::Config => match store {
            Some(s) => {
                let drawn: [u8; 32] = rand::rngs::StdRng::from_entropy().gen();
                let key = s.shared_secret(drawn).await;
                key.map(Some).map_err(ServerError::SharedSecret)
            }
            None => Ok(None),
        },
    }
}

/// Binds the workers' sockets: one plain socket for one worker; with
/// several, the first picks the port (when 0) and the others join it
/// with `SO_REUSEPORT`.
async fn bind_workers(addr: SocketAddr, workers: usize) -> io::Result<Vec<UdpSocket>> {
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
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "more than one worker needs SO_REUSEPORT (Unix)",
        ))
    }
}

/// Each socket in the shim: impaired with `impairment` (worker `i` seeded
/// `seed + i`), or passed through.
fn impair(
    sockets: Vec<UdpSocket>,
    impairment: Option<&(ImpairmentConfig, u64)>,
) -> Result<Vec<LossySocket>, ServerError> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| match impairment {
            Some((cfg, seed)) => {
                let seed = seed.wrapping_add(i as u64);
                LossySocket::new(socket, Side::Server, cfg.clone(), seed)
                    .map_err(ServerError::Impairment)
            }
            None => Ok(LossySocket::passthrough(socket)),
        })
        .collect()
}

/// One publisher per worker, the receiver of the server's summary, and the
/// merger's task: one worker publishes straight into what the handle
/// reads (and the hook sees); several publish their own, merged into it.
fn publishers(
    workers: usize,
    hook: Option<SummaryHook>,
    stopped: &watch::Receiver<bool>,
) -> (Vec<Publisher>, watch::Receiver<ServerSummary>, JoinSet<()>) {
    let mut merger = JoinSet::new();
    if workers == 1 {
        let (out, rx) = Publisher::new(ServerSummary::default(), hook);
        return (vec![out], rx, merger);
    }
    let (outs, parts): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| Publisher::new(ServerSummary::default(), None))
        .unzip();
    let initial: Vec<ServerSummary> = parts.iter().map(|p| p.borrow().clone()).collect();
    let (all, rx) = Publisher::new(ServerSummary::merged(&initial, clock::now()), hook);
    merger.spawn(summary::merge(parts, all, stopped.clone()));
    (outs, rx, merger)
}

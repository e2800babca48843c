//! The operations endpoints: health checks, readiness and Prometheus
//! metrics over HTTP/1.1, for the people and the probes that watch a
//! server.
//!
//! | path | answer |
//! |---|---|
//! | `/` | the server's counters as JSON; 200 below the session limit, 503 at it |
//! | `/healthz` | liveness: 200 if the I/O loop turned within [`LIVENESS_MAX_AGE`], else 503 |
//! | `/readyz` | readiness: 503 at the session limit, when the loop is stuck, or while the session store is unreachable; else 200 |
//! | `/metrics` | the Prometheus text format 0.0.4 ([`metrics`]) |
//!
//! Any other path is 404, any method but `GET` on a known path 405, a
//! request hyper cannot parse 400 (431 past [`Limits::max_request_head`]).
//! Each connection gets one answer and is closed. The answers are built
//! from the summary the server driver publishes (every 200 ms) and its
//! heartbeat, which the loop beats on every turn: see [`OpsState`].
//!
//! HTTP is [hyper]'s (its HTTP/1 server, one connection per task) and the
//! page is [prometheus-client]'s encoder: this module only routes and
//! chooses what to count. The endpoint faces the network, so it is bounded
//! ([`Limits`]): at most 64 connections at once (more wait in the listen
//! backlog), a request head of at most 1 KiB read within 2 s, and the whole
//! exchange within 4 s, so a client that sends or reads slowly cannot hold
//! a connection. A failed `accept` (EMFILE when file descriptors run out)
//! is logged and retried after a pause that doubles up to a second: the
//! endpoint outlives the flood that caused it.
//!
//! [hyper]: https://docs.rs/hyper
//! [prometheus-client]: https://docs.rs/prometheus-client

mod http;
pub mod metrics;
mod process;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use crate::net::server::{ServerSummary, SharedSummary};

pub use process::peak_rss_kb;

/// The I/O loop turns at least every 200 ms while it runs; ten missed turns
/// mean it is stuck.
pub const LIVENESS_MAX_AGE: Duration = Duration::from_secs(2);

/// Shortest pause after a failed accept; it doubles on each failure in a row.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// Longest pause after a failed accept.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// The longest [`Limits::io_timeout`] taken as given (timers need an
/// instant that exists).
const MAX_IO_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the endpoints read: the summary the server driver keeps current,
/// and the session limit it is measured against. Clones read the same
/// summary.
#[derive(Debug, Clone)]
pub struct OpsState {
    source: Source,
    max_sessions: usize,
}

/// Where the summary comes from.
#[derive(Debug, Clone)]
enum Source {
    /// A mutex kept current by the caller (e.g. from
    /// [`ServerBuilder::on_summary`](crate::net::server::ServerBuilder::on_summary)).
    Shared(SharedSummary),
    /// A channel the server sends each summary on.
    Watch(watch::Receiver<ServerSummary>),
}

impl OpsState {
    /// Reads `summary`, a [`SharedSummary`] the caller keeps current (e.g.
    /// from [`ServerBuilder::on_summary`](crate::net::server::ServerBuilder::on_summary)).
    pub fn new(summary: SharedSummary, max_sessions: usize) -> Self {
        Self {
            source: Source::Shared(summary),
            max_sessions,
        }
    }

    /// Reads the latest summary sent on `summary`.
    pub fn from_watch(summary: watch::Receiver<ServerSummary>, max_sessions: usize) -> Self {
        Self {
            source: Source::Watch(summary),
            max_sessions,
        }
    }

    /// The session limit the summary is measured against.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }

    /// `f` of the current summary, or `None` if it cannot be read (a
    /// publisher panicked while holding it).
    fn read<R>(&self, f: impl FnOnce(&ServerSummary) -> R) -> Option<R> {
        match &self.source {
            Source::Shared(m) => m.lock().ok().map(|s| f(&s)),
            Source::Watch(rx) => Some(f(&rx.borrow())),
        }
    }
}

/// The bounds of the endpoint, which faces the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections served at once (at least 1); more wait in the listen
    /// backlog until one ends.
    pub max_connections: usize,
    /// Longest wait for a request head; the whole exchange, answer
    /// included, gets twice this (at most an hour is taken).
    pub io_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; a
    /// larger one is answered 431.
    pub max_request_head: usize,
}

impl Default for Limits {
    /// 64 connections, 2 s, 1 KiB.
    fn default() -> Self {
        Self {
            max_connections: 64,
            io_timeout: Duration::from_secs(2),
            max_request_head: 1024,
        }
    }
}

/// Starts the operations endpoints.
///
/// ```no_run
/// # async fn run(summary: risp_udp::net::server::SharedSummary) -> std::io::Result<()> {
/// use risp_udp::net::ops::{OpsServer, OpsState};
///
/// let ops = OpsServer::bind("127.0.0.1:8080".parse().unwrap(), OpsState::new(summary, 1024)).await?;
/// println!("health on {}", ops.local_addr());
/// // ... run the server ...
/// ops.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct OpsServer;

impl OpsServer {
    /// Listens on `addr` with the default [`Limits`] and serves `state`.
    pub async fn bind(addr: SocketAddr, state: OpsState) -> io::Result<OpsHandle> {
        Self::bind_with(addr, state, Limits::default()).await
    }

    /// Listens on `addr` within `limits` and serves `state`.
    pub async fn bind_with(
        addr: SocketAddr,
        state: OpsState,
        limits: Limits,
    ) -> io::Result<OpsHandle> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, state, limits)
    }

    /// Serves `state` on a listener already bound (it must be in tokio's
    /// runtime, as [`TcpListener::bind`] makes it).
    pub fn serve(listener: TcpListener, state: OpsState, limits: Limits) -> io::Result<OpsHandle> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, state, limits, stopped));
        Ok(OpsHandle {
            local_addr,
            stop: Some(stop),
            task,
        })
    }
}

/// The running endpoints. [`shutdown`](Self::shutdown) stops them and
/// waits for their tasks; dropping the handle stops them without waiting.
#[derive(Debug)]
#[must_use = "dropping the handle stops the endpoints"]
pub struct OpsHandle {
    local_addr: SocketAddr,
    /// Tells the accept loop to stop (so does dropping it).
    stop: Option<oneshot::Sender<()>>,
    /// The accept loop, which owns the connection tasks.
    task: JoinHandle<()>,
}

impl OpsHandle {
    /// The address the endpoints listen on (with the port the system
    /// chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, ends the connections in flight (health checks
    /// hold no state worth finishing) and waits until every task of the
    /// endpoints has ended; the port is closed when this returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // The loop ends on its own once told; a panic in it has already
        // been reported by the runtime.
        let _ = (&mut self.task).await;
    }
}

/// Accepts connections within the limit until told to stop, then ends the
/// connections in flight.
async fn accept_loop(
    listener: TcpListener,
    state: OpsState,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let http = http::connection_builder(&limits);
    let deadline = exchange_deadline(&limits);
    let mut conns = JoinSet::new();
    let mut backoff = MIN_ACCEPT_BACKOFF;
    loop {
        let accepted = tokio::select! {
            _ = &mut stop => break,
            r = accept_within(&listener, &permits) => r,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((conn, permit)) => {
                backoff = MIN_ACCEPT_BACKOFF;
                let (state, http) = (state.clone(), http.clone());
                conns.spawn(async move {
                    let _permit = permit;
                    http::serve_connection(&http, conn, state, deadline).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "health endpoint: accept failed");
                tokio::select! {
                    _ = &mut stop => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }
    drop(listener);
    conns.shutdown().await;
}

/// The next connection, once fewer than the limit are open; the permit it
/// holds frees its place when dropped.
async fn accept_within(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> io::Result<(TcpStream, OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("the connection limit was closed"))?;
    let (conn, _) = listener.accept().await?;
    Ok((conn, permit))
}

/// How long one connection may last: twice the I/O timeout.
fn exchange_deadline(limits: &Limits) -> Duration {
    limits.io_timeout.min(MAX_IO_TIMEOUT).saturating_mul(2)
}

#[cfg(test)]
mod tests;

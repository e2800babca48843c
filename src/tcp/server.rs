//! The TCP comparison server: one task per connection, bounded in number and
//! in time, stopped by a shutdown future.
//!
//! Every limit here exists because a peer controls the input: the request
//! length is capped (`max_len`), a client that never sends its request or
//! never reads is dropped after a timeout, and the number of concurrent
//! connections is bounded so memory cannot grow with the number of peers.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::wire::{decode_request, REQUEST_LEN, VALUE_LEN};
use crate::proto::sequence::{RunningChecksum, Sequence};

/// Default largest request the server accepts (10 million values, 40 MB).
pub const DEFAULT_MAX_LEN: u32 = 10_000_000;

/// Bytes of values gathered before each write.
const WRITE_CHUNK: usize = 64 * 1024;

/// Where each connection's seed comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedSource {
    /// A fresh random seed per connection (what a real server does).
    Random,
    /// The same seed for every connection, so tests can predict the values.
    Fixed(u64),
}

impl SeedSource {
    fn seed(self) -> u64 {
        match self {
            SeedSource::Random => rand::random(),
            SeedSource::Fixed(seed) => seed,
        }
    }
}

/// Limits and choices of a TCP comparison server.
#[derive(Debug, Clone)]
pub struct TcpServerConfig {
    /// Requests for more values than this are closed without data.
    pub max_len: u32,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a new connection may take to send its 4-byte request.
    pub request_timeout: Duration,
    /// How long one write may block on a peer that does not read.
    pub write_timeout: Duration,
    /// Where seeds come from.
    pub seeds: SeedSource,
}

impl TcpServerConfig {
    /// Defaults with the given `max_len`: 1024 connections, 10 s to send the
    /// request, 30 s per stalled write, random seeds.
    pub fn new(max_len: u32) -> Self {
        Self {
            max_len,
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            seeds: SeedSource::Random,
        }
    }
}

/// Serves connections from `listener` with [`TcpServerConfig::new`] limits
/// until `shutdown` completes. See [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    max_len: u32,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve_with(listener, TcpServerConfig::new(max_len), shutdown).await
}

/// Serves connections from `listener` until `shutdown` completes, then
/// aborts the transfers in flight and returns once every connection task has
/// ended. Errors of single connections are logged, never returned; accept
/// errors (such as running out of file descriptors) are logged and retried
/// after a short pause.
pub async fn serve_with(
    listener: TcpListener,
    config: TcpServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let config = Arc::new(config);
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);

    loop {
        // Take a permit before accepting, so at the limit connections wait in
        // the kernel's backlog instead of in our memory.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; treated as shutdown
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                log_task_end(done);
                continue;
            }
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let config = Arc::clone(&config);
                tasks.spawn(async move {
                    if let Err(err) = handle_connection(stream, peer, &config).await {
                        tracing::info!(%peer, error = %err, "tcp connection ended early");
                    }
                    drop(permit);
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "tcp accept failed; retrying");
                drop(permit);
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }

    tasks.abort_all();
    while let Some(done) = tasks.join_next().await {
        log_task_end(done);
    }
    Ok(())
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        if err.is_panic() {
            tracing::error!(error = %err, "tcp connection task panicked");
        }
    }
}

/// Why a connection ended before its transfer was complete.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("no request within {0:?}")]
    RequestTimeout(Duration),
    #[error("peer stopped reading for {0:?}")]
    WriteTimeout(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

async fn handle_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    config: &TcpServerConfig,
) -> Result<(), ConnectionError> {
    // Values go out in large writes; without this the trailer could wait for
    // the peer's delayed ack (Nagle), adding up to tens of milliseconds.
    stream.set_nodelay(true)?;

    let mut request = [0; REQUEST_LEN];
    match timeout(config.request_timeout, stream.read_exact(&mut request)).await {
        Err(_) => return Err(ConnectionError::RequestTimeout(config.request_timeout)),
        Ok(Err(err)) if err.kind() == io::ErrorKind::UnexpectedEof => {
            tracing::debug!(%peer, "tcp peer closed before sending a request");
            return Ok(());
        }
        Ok(result) => result?,
    };
    let len = decode_request(request);
    if len > config.max_len {
        tracing::warn!(%peer, len, max_len = config.max_len, "refusing tcp request: len over max");
        return Ok(());
    }

    let seq = Sequence::new(config.seeds.seed(), len);
    tracing::debug!(%peer, len, seed = seq.seed(), "tcp transfer starting");
    let mut checksum = RunningChecksum::default();
    let mut buf = Vec::with_capacity(WRITE_CHUNK + VALUE_LEN);
    for value in seq.iter() {
        buf.extend_from_slice(&value.to_be_bytes());
        checksum.add(value);
        if buf.len() >= WRITE_CHUNK {
            write_chunk(&mut stream, &buf, config.write_timeout).await?;
            buf.clear();
        }
    }
    buf.extend_from_slice(&checksum.sum().to_be_bytes());
    write_chunk(&mut stream, &buf, config.write_timeout).await?;
    stream.shutdown().await?;
    tracing::debug!(%peer, len, "tcp transfer sent");
    Ok(())
}

async fn write_chunk(
    stream: &mut TcpStream,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), ConnectionError> {
    timeout(limit, stream.write_all(bytes))
        .await
        .map_err(|_| ConnectionError::WriteTimeout(limit))??;
    Ok(())
}

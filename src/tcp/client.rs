//! The measuring TCP client.
//!
//! Timings use the monotonic clock of the calling process, as the risp-udp
//! client does: completion time runs from the start of the connect to the
//! arrival of the checksum trailer, and a stall is the gap between two
//! successive reads that completed a value (the first gap starts when the
//! request has been written, the last ends with the trailer). Values that
//! arrive in one read share its arrival time, which is also all the kernel
//! lets an application see.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use super::wire::{encode_request, StreamDecoder, TrailingBytes};
use crate::stats::duration_to_ms;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// The result of one TCP transfer, in the same terms as the risp-udp
/// client's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TcpReport {
    /// Number of values requested and received.
    pub len: u32,
    /// True when the server's checksum equals the sum of the values received.
    pub verified: bool,
    /// Sum of the values received (as `u64`), computed by the client.
    pub checksum: u64,
    /// From the start of the connect to the arrival of the checksum.
    pub elapsed_ms: f64,
    /// `len` divided by the completion time.
    pub values_per_sec: f64,
    /// Longest gap between successive reads that completed a value.
    pub longest_stall_ms: f64,
    /// Time the TCP handshake took.
    pub connect_ms: f64,
}

/// Why a TCP transfer did not produce a report (or, for
/// [`run_tcp_client`](crate::cli::tcp::run_tcp_client), a verified one).
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// The server address could not be resolved.
    #[error("cannot resolve {server}: {source}")]
    Resolve {
        /// The address as given.
        server: String,
        /// What the resolver said.
        source: io::Error,
    },
    /// The connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: SocketAddr,
        /// What the socket said.
        source: io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("connection failed after {received} values: {source}")]
    Io {
        /// Values received before the failure.
        received: u32,
        /// What the socket said.
        source: io::Error,
    },
    /// The whole transfer did not finish in time.
    #[error("no complete transfer within {after:?} ({received} of {expected} values received)")]
    Timeout {
        /// The limit that passed.
        after: Duration,
        /// Values received by then.
        received: u32,
        /// Values requested.
        expected: u32,
    },
    /// The server closed before sending every value and the checksum; a
    /// request over the server's maximum ends this way with no values.
    #[error("server closed the connection after {received} of {expected} values (request refused or transfer cut)")]
    Truncated {
        /// Values received.
        received: u32,
        /// Values requested.
        expected: u32,
    },
    /// The server sent bytes after its checksum.
    #[error(transparent)]
    TrailingBytes(#[from] TrailingBytes),
    /// Everything arrived but the sums differ (only returned by
    /// [`run_tcp_client`](crate::cli::tcp::run_tcp_client), after printing the report;
    /// [`fetch`] reports it as `verified: false`).
    #[error("checksum mismatch: the server's trailer differs from the sum of the values received ({computed})")]
    Unverified {
        /// The sum of the values received.
        computed: u64,
    },
}

/// Fetches `len` values from the TCP comparison server at `addr`, giving up
/// after `timeout` in total.
pub async fn fetch(addr: SocketAddr, len: u32, timeout: Duration) -> Result<TcpReport, TcpError> {
    fetch_with(addr, len, timeout, |_| {}).await
}

/// Like [`fetch`], and calls `on_value` with each value in order as it
/// arrives (to check values against a known seed, or to store them).
pub async fn fetch_with(
    addr: SocketAddr,
    len: u32,
    timeout: Duration,
    mut on_value: impl FnMut(u32),
) -> Result<TcpReport, TcpError> {
    let start = Instant::from_std(crate::clock::now());
    let deadline = start + timeout;
    let mut decoder = StreamDecoder::new(len);
    let timed_out = |decoder: &StreamDecoder| TcpError::Timeout {
        after: timeout,
        received: decoder.received(),
        expected: len,
    };
    let io_error = |decoder: &StreamDecoder, source| TcpError::Io {
        received: decoder.received(),
        source,
    };

    let mut stream = timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out(&decoder))?
        .map_err(|source| TcpError::Connect { addr, source })?;
    let connected = Instant::from_std(crate::clock::now());
    stream
        .set_nodelay(true)
        .map_err(|e| io_error(&decoder, e))?;
    timeout_at(deadline, stream.write_all(&encode_request(len)))
        .await
        .map_err(|_| timed_out(&decoder))?
        .map_err(|e| io_error(&decoder, e))?;

    let mut last_progress = Instant::from_std(crate::clock::now());
    let mut longest_stall = Duration::ZERO;
    let mut buf = vec![0; READ_CHUNK];
    while !decoder.is_finished() {
        let n = timeout_at(deadline, stream.read(&mut buf))
            .await
            .map_err(|_| timed_out(&decoder))?
            .map_err(|e| io_error(&decoder, e))?;
        let now = Instant::from_std(crate::clock::now());
        if n == 0 {
            return Err(TcpError::Truncated {
                received: decoder.received(),
                expected: len,
            });
        }
        if decoder.feed(&buf[..n], &mut on_value)?.any() {
            longest_stall = longest_stall.max(now - last_progress);
            last_progress = now;
        }
    }

    let elapsed = last_progress - start;
    Ok(TcpReport {
        len,
        verified: decoder.is_verified(),
        checksum: decoder.checksum(),
        elapsed_ms: duration_to_ms(elapsed),
        values_per_sec: f64::from(len) / elapsed.as_secs_f64().max(1e-9),
        longest_stall_ms: duration_to_ms(longest_stall),
        connect_ms: duration_to_ms(connected - start),
    })
}

//! The server driver's log of security events, rate-limited per kind.
//!
//! Every datagram the core rejects, every send the operating system
//! refuses, every probe the core holds back is a line here, but at most
//! [`LINES_PER_SECOND`] a second of each kind (each reject reason is its
//! own kind), with the number suppressed since on the next line written
//! ([`LogLimiter`]). The driver tells rejects apart by comparing the core's
//! counters before and after each datagram, so the core needs no logging
//! hooks.
//!
//! Levels: what only an attacker or a broken peer sends is `warn`;
//! capacity and damaged datagrams are `info`; what happens in normal life
//! (reordered or late datagrams, sessions that expired under a client) is
//! `debug`.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::log_limit::LogLimiter;
use crate::proto::server::{Reject, ServerStats};

/// Lines per second per kind of event.
pub(crate) const LINES_PER_SECOND: u32 = 5;
const WINDOW: Duration = Duration::from_secs(1);

/// How loud an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    Debug,
    Info,
    Warn,
}

/// Logs at a level chosen at run time (tracing wants it constant per
/// call site, hence one call site per level).
macro_rules! log_at {
    ($severity:expr, $($rest:tt)+) => {
        match $severity {
            Severity::Warn => tracing::warn!($($rest)+),
            Severity::Info => tracing::info!($($rest)+),
            Severity::Debug => tracing::debug!($($rest)+),
        }
    };
}

/// The level of a rejected datagram's line.
fn severity(reason: Reject) -> Severity {
    match reason {
        Reject::Stale | Reject::UnknownSession | Reject::ClosingEarly => Severity::Debug,
        // A burst of new clients meets Retry as a flood does: not a warning.
        Reject::Busy | Reject::Corrupt | Reject::LenTooLarge | Reject::RetryRequired => {
            Severity::Info
        }
        _ => Severity::Warn,
    }
}

/// The counters a datagram can move, read before it is handled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    rejected: [u64; Reject::ALL.len()],
    probes_limited: u64,
}

/// Rate-limited security lines, and the count of failed sends.
#[derive(Debug)]
pub(crate) struct SecurityLog {
    /// One budget per reject reason (indexed like [`Reject::ALL`]).
    rejects: [LogLimiter; Reject::ALL.len()],
    probes_limited: LogLimiter,
    send_errors: LogLimiter,
    /// Sends the operating system refused.
    pub(crate) send_error_count: u64,
}

impl Default for SecurityLog {
    fn default() -> Self {
        let budget = LogLimiter::new(LINES_PER_SECOND, WINDOW);
        Self {
            rejects: std::array::from_fn(|_| budget.clone()),
            probes_limited: budget.clone(),
            send_errors: budget,
            send_error_count: 0,
        }
    }
}

impl SecurityLog {
    /// Reads the counters a datagram can move; hand the mark to
    /// [`after_datagram`](Self::after_datagram).
    pub(crate) fn mark(stats: &ServerStats) -> Mark {
        Mark {
            rejected: stats.rejected,
            probes_limited: stats.probes_limited,
        }
    }

    /// Logs what handling one datagram of `len` bytes from `from` did to
    /// the counters since `mark`.
    pub(crate) fn after_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        len: usize,
        mark: &Mark,
        stats: &ServerStats,
    ) {
        for (i, reason) in Reject::ALL.into_iter().enumerate() {
            if stats.rejected[i] == mark.rejected[i] {
                continue;
            }
            if let Some(suppressed) = self.rejects[i].allow(now) {
                let name = reason.name();
                log_at!(severity(reason), reason = name, %from, len, suppressed, "datagram rejected");
            }
        }
        if stats.probes_limited != mark.probes_limited {
            if let Some(suppressed) = self.probes_limited.allow(now) {
                tracing::info!(%from, suppressed, "probe held back: its session resent its window less than an RTT ago");
            }
        }
    }

    /// Counts and logs a send the operating system refused.
    pub(crate) fn send_failed(&mut self, now: Instant, e: &io::Error, to: SocketAddr) {
        self.send_error_count += 1;
        if let Some(suppressed) = self.send_errors.allow(now) {
            tracing::warn!(error = %e, %to, suppressed, "send failed");
        }
    }

    /// Reports the lines suppressed in windows that are over (call it now
    /// and then: the end of a flood has no next line to carry its count).
    pub(crate) fn flush(&mut self, now: Instant) {
        for (limiter, reason) in self.rejects.iter_mut().zip(Reject::ALL) {
            if let Some(suppressed) = limiter.flush(now) {
                let name = reason.name();
                log_at!(
                    severity(reason),
                    reason = name,
                    suppressed,
                    "datagram rejected: more lines suppressed"
                );
            }
        }
        if let Some(suppressed) = self.probes_limited.flush(now) {
            tracing::info!(suppressed, "probe held back: more lines suppressed");
        }
        if let Some(suppressed) = self.send_errors.flush(now) {
            tracing::warn!(suppressed, "send failed: more lines suppressed");
        }
    }
}

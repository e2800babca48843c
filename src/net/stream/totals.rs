//! Running totals over many transfers while they run: what `risp-udp load
//! --interval` prints a line of every few seconds.
//!
//! Each transfer's report arrives only at its end, so a live view needs
//! counters the drivers add to as they go. They add differences, once per
//! turn of their loop and only when something changed, so that the totals
//! are exact sums of what each driver counted, and a reader that takes a
//! [`snapshot`](RunningTotals::snapshot) after every transfer ended sees
//! the same figures as the reports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::proto::client::ClientStats;

/// Counters shared by the transfers that were given them (see
/// [`Client::totals`](super::Client::totals)); clones share them.
#[derive(Debug, Clone, Default)]
pub struct RunningTotals {
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    started: AtomicU64,
    ended: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    retransmit_requests: AtomicU64,
    timeouts: AtomicU64,
    shim_dropped: AtomicU64,
}

/// The totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TotalsSnapshot {
    /// Transfers whose driver started (its socket is open).
    pub started: u64,
    /// Transfers that ended, however they ended.
    pub ended: u64,
    /// Of those, the ones not verified (failed, aborted, or ended by a
    /// local error).
    pub failed: u64,
    /// Values delivered in order.
    pub delivered: u64,
    /// Acks that asked the server to resend (holes reported, probes).
    pub retransmit_requests: u64,
    /// Probe-timer expiries.
    pub timeouts: u64,
    /// Datagrams the lossy-socket shims dropped, both directions.
    pub shim_dropped: u64,
}

impl TotalsSnapshot {
    /// Transfers under way: started and not yet ended.
    pub fn active(&self) -> u64 {
        self.started.saturating_sub(self.ended)
    }
}

impl RunningTotals {
    /// Totals at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counters now. Each is exact; taken while transfers run, they
    /// are not one instant's (one may be a turn ahead of another), but
    /// `ended` is read before `started`, so `active` never goes negative.
    pub fn snapshot(&self) -> TotalsSnapshot {
        let c = &*self.counters;
        let ended = c.ended.load(Ordering::SeqCst);
        let failed = c.failed.load(Ordering::SeqCst);
        TotalsSnapshot {
            started: c.started.load(Ordering::SeqCst),
            ended,
            failed,
            delivered: c.delivered.load(Ordering::SeqCst),
            retransmit_requests: c.retransmit_requests.load(Ordering::SeqCst),
            timeouts: c.timeouts.load(Ordering::SeqCst),
            shim_dropped: c.shim_dropped.load(Ordering::SeqCst),
        }
    }
}

/// One driver's side of the totals: what it already added, so that it
/// adds only differences. Counts the transfer as started when made and as
/// ended when dropped (whatever ended it, a local error included).
#[derive(Debug)]
pub(crate) struct TotalsFeed {
    totals: RunningTotals,
    /// delivered, retransmit requests, timeouts, shim drops, as added.
    added: [u64; 4],
    verified: bool,
}

impl TotalsFeed {
    /// A transfer starts adding to `totals`.
    pub(crate) fn start(totals: RunningTotals) -> Self {
        totals.counters.started.fetch_add(1, Ordering::SeqCst);
        Self {
            totals,
            added: [0; 4],
            verified: false,
        }
    }

    /// Adds what changed since the last call: `delivered` values so far,
    /// the core's `stats`, `shim_dropped` datagrams so far.
    pub(crate) fn update(&mut self, delivered: u64, stats: &ClientStats, shim_dropped: u64) {
        let c = &*self.totals.counters;
        let now = [
            delivered,
            stats.retransmit_requests,
            stats.timeouts,
            shim_dropped,
        ];
        let targets = [
            &c.delivered,
            &c.retransmit_requests,
            &c.timeouts,
            &c.shim_dropped,
        ];
        for ((added, now), target) in self.added.iter_mut().zip(now).zip(targets) {
            if now > *added {
                target.fetch_add(now - *added, Ordering::SeqCst);
                *added = now;
            }
        }
    }

    /// The transfer was verified: it does not count as failed when it ends.
    pub(crate) fn set_verified(&mut self, verified: bool) {
        self.verified = verified;
    }
}

impl Drop for TotalsFeed {
    fn drop(&mut self) {
        let c = &*self.totals.counters;
        if !self.verified {
            c.failed.fetch_add(1, Ordering::SeqCst);
        }
        // Last: a reader that sees the end sees the failure too.
        c.ended.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(retransmit_requests: u64, timeouts: u64) -> ClientStats {
        ClientStats {
            retransmit_requests,
            timeouts,
            ..ClientStats::default()
        }
    }

    #[test]
    fn feeds_add_differences_and_count_their_ends() {
        let totals = RunningTotals::new();
        let mut a = TotalsFeed::start(totals.clone());
        let mut b = TotalsFeed::start(totals.clone());
        a.update(10, &stats(1, 0), 2);
        a.update(25, &stats(3, 1), 2);
        b.update(7, &stats(0, 0), 0);
        let mid = totals.snapshot();
        assert_eq!(mid.started, 2);
        assert_eq!(mid.active(), 2);
        assert_eq!(mid.delivered, 32);
        assert_eq!(mid.retransmit_requests, 3);
        assert_eq!(mid.timeouts, 1);
        assert_eq!(mid.shim_dropped, 2);
        a.set_verified(true);
        drop(a);
        drop(b);
        let end = totals.snapshot();
        assert_eq!((end.ended, end.failed, end.active()), (2, 1, 0));
        assert_eq!(end.delivered, 32, "ending adds nothing");
    }
}

//! A shared bottleneck in a run: its parameters and what it saw (the queue
//! itself is the simulator's, [`crate::sim::bottleneck`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The bottleneck's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BottleneckConfig {
    /// Service rate, in datagrams per second.
    pub rate: f64,
    /// Most datagrams queued (including the one in service); past it,
    /// arrivals are dropped.
    pub limit: usize,
}

impl BottleneckConfig {
    /// Time to serve one datagram.
    pub fn service_time(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate.max(1.0))
    }
}

/// What the bottleneck saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BottleneckStats {
    /// Datagrams that arrived.
    pub arrived: u64,
    /// Datagrams dropped at the tail.
    pub dropped: u64,
    /// Datagrams served (forwarded), per flow.
    pub forwarded: Vec<u64>,
    /// Sum of the queue lengths seen by arrivals (for the mean).
    pub queue_sum: u64,
    /// Longest queue seen by an arrival.
    pub queue_max: usize,
    /// First arrival and last departure, since the simulation's start.
    pub busy_from: Option<Duration>,
    /// Last departure, since the simulation's start.
    pub busy_until: Option<Duration>,
    /// Per flow: first and last arrival, since the simulation's start.
    pub active: Vec<Option<(Duration, Duration)>>,
    /// Per flow: datagrams forwarded in each [`SHARE_BUCKET`] of time (by
    /// departure), for the shares while every flow was active.
    pub forwarded_by_bucket: Vec<Vec<u32>>,
}

/// Time resolution of [`BottleneckStats::forwarded_by_bucket`].
pub const SHARE_BUCKET: Duration = Duration::from_millis(10);

impl BottleneckStats {
    /// Datagrams forwarded, all flows.
    pub fn forwarded_total(&self) -> u64 {
        self.forwarded.iter().sum()
    }

    /// Fraction of arrivals dropped.
    pub fn drop_fraction(&self) -> f64 {
        ratio(self.dropped, self.arrived)
    }

    /// Mean queue length seen by arrivals.
    pub fn mean_queue(&self) -> f64 {
        ratio(self.queue_sum, self.arrived)
    }

    /// Each flow's share of the capacity while every flow was active (from
    /// the last first arrival to the first last arrival, in whole
    /// [`SHARE_BUCKET`]s); `None` when the flows never overlapped by a
    /// bucket.
    pub fn overlap_shares(&self, rate: f64) -> Option<Vec<f64>> {
        let (from, until) = self.overlap()?;
        self.shares_between(rate, from, until)
    }

    /// While every flow was active: from the last first arrival to the
    /// first last arrival, since the simulation's start (`None` when some
    /// flow never sent).
    pub fn overlap(&self) -> Option<(Duration, Duration)> {
        let mut from = Duration::ZERO;
        let mut until = Duration::MAX;
        for a in &self.active {
            let (first, last) = (*a)?;
            from = from.max(first);
            until = until.min(last);
        }
        Some((from, until))
    }

    /// Each flow's share of the capacity between `from` and `until` (since
    /// the simulation's start), counting the whole [`SHARE_BUCKET`]s inside
    /// that span by departure; `None` when no whole bucket fits.
    pub fn shares_between(&self, rate: f64, from: Duration, until: Duration) -> Option<Vec<f64>> {
        let b = SHARE_BUCKET.as_nanos();
        let (lo, hi) = (from.as_nanos().div_ceil(b), until.as_nanos() / b);
        if hi <= lo {
            return None;
        }
        let (lo, hi) = (lo as usize, hi as usize);
        let capacity = rate * SHARE_BUCKET.as_secs_f64() * (hi - lo) as f64;
        Some(
            self.forwarded_by_bucket
                .iter()
                .map(|v| {
                    let n: u64 = v.iter().skip(lo).take(hi - lo).map(|&x| u64::from(x)).sum();
                    n as f64 / capacity
                })
                .collect(),
        )
    }

    /// Start-up: the time from the first arrival to the end of the first
    /// [`SHARE_BUCKET`] in which the link forwarded (all flows together)
    /// at least `fraction` of `rate`; `None` if no bucket did.
    pub fn time_to_rate(&self, rate: f64, fraction: f64) -> Option<Duration> {
        let want = fraction * rate * SHARE_BUCKET.as_secs_f64();
        let buckets = self.forwarded_by_bucket.iter().map(Vec::len).max()?;
        let first = (0..buckets).find(|&i| {
            let sum: u64 = self
                .forwarded_by_bucket
                .iter()
                .map(|v| u64::from(v.get(i).copied().unwrap_or(0)))
                .sum();
            sum as f64 >= want
        })?;
        let end = SHARE_BUCKET * u32::try_from(first + 1).ok()?;
        Some(end.saturating_sub(self.busy_from.unwrap_or_default()))
    }

    /// Forwarded datagrams over what the link could have served between
    /// `from` and `until` (both since the simulation's start).
    pub fn utilisation(&self, rate: f64, from: Duration, until: Duration) -> f64 {
        let span = until.saturating_sub(from).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        self.forwarded_total() as f64 / (rate * span)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

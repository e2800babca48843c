//! Pacing one session's data at the rate its client asks for (wire v3's
//! `rate` field): a token bucket that holds at most [`BURST`] worth of
//! sending, so that a window leaves spread over the round trip instead of
//! in one burst into a bottleneck's queue (RFC 9002 §7.7, quinn's
//! `pacing.rs`). Rate 0 means unpaced.

use std::time::{Duration, Instant};

/// How much sending the pacer lets out at once: a millisecond at the
/// session's rate (the timer granularity of the tokio driver), at least
/// [`MIN_BURST`] datagrams. On loopback the rates are so high that this is
/// no limit at all.
pub(crate) const BURST: Duration = Duration::from_millis(1);

/// See [`BURST`].
const MIN_BURST: f64 = 8.0;

/// A session's token bucket. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// Datagrams per second (0: unpaced).
    rate: u32,
    /// Datagrams that may go now, and when the bucket was last filled.
    tokens: f64,
    filled: Instant,
}

impl Pacer {
    /// An unpaced bucket, as of `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            rate: 0,
            tokens: 0.0,
            filled: now,
        }
    }

    /// The client's latest rate.
    pub(crate) fn set_rate(&mut self, rate: u32) {
        self.rate = rate;
    }

    /// True when the session is paced.
    pub(crate) fn is_paced(&self) -> bool {
        self.rate > 0
    }

    /// How many datagrams may go at `now`, at most `max` and at least one
    /// (the caller asks only once [`Pacer::spend`] said it may).
    pub(crate) fn allowance(&mut self, now: Instant, max: usize) -> usize {
        let rate = f64::from(self.rate);
        let burst = (rate * BURST.as_secs_f64()).max(MIN_BURST);
        let earned = now.saturating_duration_since(self.filled).as_secs_f64() * rate;
        self.tokens = (self.tokens + earned).min(burst);
        self.filled = now;
        (self.tokens as usize).clamp(1, max)
    }

    /// `count` datagrams went at `now`; returns when the next may.
    pub(crate) fn spend(&mut self, now: Instant, count: usize) -> Instant {
        // At most one datagram of overdraft (rounding at the edge of a
        // token): a debt must never outlast a change of rate.
        self.tokens = (self.tokens - count as f64).max(0.0);
        let short = (1.0 - self.tokens).max(0.0);
        now + Duration::from_secs_f64(short / f64::from(self.rate.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_sending_at_the_rate_with_bursts_of_a_millisecond() {
        let t0 = crate::clock::now();
        let mut p = Pacer::new(t0);
        assert!(!p.is_paced());
        p.set_rate(100_000);
        assert!(p.is_paced());
        // A millisecond later: 100 datagrams may go (the burst), no more.
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(p.allowance(t1, 1000), 100);
        let next = p.spend(t1, 100);
        assert_eq!(next, t1 + Duration::from_micros(10), "one token at 100k/s");
        // Ten seconds idle still earns only one burst.
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(p.allowance(t2, 1000), 100);
        assert_eq!(p.allowance(t2, 16), 16, "capped by the caller's batch");
    }

    #[test]
    fn a_slow_rate_still_sends_one_and_carries_no_debt() {
        let t0 = crate::clock::now();
        let mut p = Pacer::new(t0);
        p.set_rate(10);
        assert_eq!(p.allowance(t0, 64), 1, "at least one once asked");
        let next = p.spend(t0, 1);
        assert_eq!(next, t0 + Duration::from_millis(100));
        // A faster rate takes effect at once: no debt from the slow one.
        p.set_rate(1_000_000);
        let t1 = t0 + Duration::from_micros(100);
        assert_eq!(p.allowance(t1, 1000), 100);
    }
}

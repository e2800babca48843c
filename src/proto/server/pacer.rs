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

/// Most lateness the bucket makes up for: a driver that wakes later than
/// [`Pacer::spend`] asked (tokio's timers round up to the millisecond, and
/// a busy machine adds more) may send what it earned meanwhile, up to this
/// much more than [`BURST`]. Without it every late wake-up loses tokens,
/// the session sends less than its rate, the client measures less
/// delivered and asks for less, and the rate decays with no loss to cause
/// it (docs/PERFORMANCE.md, *Long paths over real sockets*).
pub(crate) const MAX_LATENESS: Duration = Duration::from_millis(4);

/// Most datagrams the lateness credit adds to a burst, unless
/// [`LATE_BURSTS`] bursts are more: at loopback rates (millions a second)
/// 4 ms is more than a receive buffer holds (about 5,000 small datagrams
/// in 4 MiB).
const MAX_LATE_CREDIT: f64 = 512.0;

/// The lateness credit always covers this many bursts: tokio's timers
/// wake 1-2 ms after the due time, so a cap under two milliseconds of
/// sending would lose part of what every wake-up earned.
const LATE_BURSTS: f64 = 2.0;

/// One [`BURST`] at `rate`, at least [`MIN_BURST`] datagrams.
fn burst_at(rate: u32) -> f64 {
    (f64::from(rate) * BURST.as_secs_f64()).max(MIN_BURST)
}

/// A session's token bucket. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// Datagrams per second (0: unpaced).
    rate: u32,
    /// Datagrams that may go now, and when the bucket was last filled.
    tokens: f64,
    filled: Instant,
    /// When [`Pacer::spend`] said the next datagram may go.
    due: Option<Instant>,
}

impl Pacer {
    /// An unpaced bucket, as of `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            rate: 0,
            tokens: 0.0,
            filled: now,
            due: None,
        }
    }

    /// The client's latest rate.
    pub(crate) fn set_rate(&mut self, rate: u32) {
        if rate < self.rate {
            // Tokens earned at the faster rate are no credit at the slower.
            self.tokens = self.tokens.min(burst_at(rate));
        }
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
        let late = self
            .due
            .take()
            .map_or(Duration::ZERO, |d| now.saturating_duration_since(d))
            .min(MAX_LATENESS);
        let burst = burst_at(self.rate);
        let credit = (rate * late.as_secs_f64()).min(MAX_LATE_CREDIT.max(LATE_BURSTS * burst));
        let earned = now.saturating_duration_since(self.filled).as_secs_f64() * rate;
        // Tokens already in the bucket stay: a wake-up's credit is spent
        // over several calls (one per batch), and capping what is left at
        // one burst after the first batch lost it again.
        self.tokens = (self.tokens + earned).min((burst + credit).max(self.tokens));
        self.filled = now;
        (self.tokens as usize).clamp(1, max)
    }

    /// `count` datagrams went at `now`; returns when the next may. With
    /// `waiting` (more is queued behind the pacer) a later wake-up than
    /// that is made up for (see [`MAX_LATENESS`]); a session with nothing
    /// queued earns at most one [`BURST`] however long it idles.
    pub(crate) fn spend(&mut self, now: Instant, count: usize, waiting: bool) -> Instant {
        // At most one datagram of overdraft (rounding at the edge of a
        // token): a debt must never outlast a change of rate.
        self.tokens = (self.tokens - count as f64).max(0.0);
        if !waiting {
            // Nothing queued: what is left is no credit for later.
            self.tokens = self.tokens.min(burst_at(self.rate));
        }
        let short = (1.0 - self.tokens).max(0.0);
        let due = now + Duration::from_secs_f64(short / f64::from(self.rate.max(1)));
        self.due = waiting.then_some(due);
        due
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
        let next = p.spend(t1, 100, false);
        assert_eq!(next, t1 + Duration::from_micros(10), "one token at 100k/s");
        // Ten seconds idle still earns only one burst.
        let t2 = t1 + Duration::from_secs(10);
        assert_eq!(p.allowance(t2, 1000), 100);
        assert_eq!(p.allowance(t2, 16), 16, "capped by the caller's batch");
    }

    #[test]
    fn a_late_wake_up_sends_what_it_earned_up_to_the_lateness_cap() {
        let t0 = crate::clock::now();
        let mut p = Pacer::new(t0);
        p.set_rate(100_000);
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(p.allowance(t1, 10_000), 100);
        let due = p.spend(t1, 100, true);
        // Woken 2 ms after the due time: 2.01 ms earned, none of it lost
        // to the 1 ms burst.
        let t2 = due + Duration::from_millis(2);
        assert_eq!(p.allowance(t2, 10_000), 201);
        let due = p.spend(t2, 201, true);
        // 50 ms late: one burst plus at most MAX_LATENESS.
        let t3 = due + Duration::from_millis(50);
        assert_eq!(p.allowance(t3, 10_000), 500);
        // On time again: one token.
        let due = p.spend(t3, 500, true);
        assert_eq!(p.allowance(due, 10_000), 1);
        // Idle (nothing was waiting on the pacer): one burst, no credit.
        p.spend(due, 1, false);
        assert_eq!(p.allowance(due + Duration::from_secs(10), 10_000), 100);
    }

    #[test]
    fn a_slow_rate_still_sends_one_and_carries_no_debt() {
        let t0 = crate::clock::now();
        let mut p = Pacer::new(t0);
        p.set_rate(10);
        assert_eq!(p.allowance(t0, 64), 1, "at least one once asked");
        let next = p.spend(t0, 1, true);
        assert_eq!(next, t0 + Duration::from_millis(100));
        // A faster rate takes effect at once: no debt from the slow one.
        p.set_rate(1_000_000);
        let t1 = t0 + Duration::from_micros(100);
        assert_eq!(p.allowance(t1, 1000), 100);
    }

    /// Drives a pacer as the tokio driver does: each wake-up comes at the
    /// first millisecond tick at or after the due time (tokio's timer
    /// wheel), and sends in batches of at most `batch` while tokens last.
    fn achieved_rate(rate: u32, batch: usize, lateness: Duration) -> f64 {
        let t0 = crate::clock::now();
        let mut p = Pacer::new(t0);
        p.set_rate(rate);
        let tick = Duration::from_millis(1);
        let end = t0 + Duration::from_secs(1);
        let (mut now, mut sent) = (t0 + tick, 0usize);
        while now < end {
            let mut due = now;
            while due <= now {
                let n = p.allowance(now, batch);
                sent += n;
                due = p.spend(now, n, true);
            }
            // The next tick at or after `due`, plus the scheduler's delay.
            let ticks = due
                .saturating_duration_since(t0)
                .as_nanos()
                .div_ceil(tick.as_nanos());
            now = t0 + tick * ticks as u32 + lateness;
        }
        sent as f64
    }

    #[test]
    fn millisecond_timers_and_batches_still_send_at_the_rate() {
        for rate in [20_000, 200_000, 700_000, 2_000_000, 4_000_000] {
            // Wake-ups 1, 1.5, 2 and 3 ms apart.
            for lateness in [0, 500, 1000, 2000].map(Duration::from_micros) {
                let got = achieved_rate(rate, 64, lateness);
                let share = got / f64::from(rate);
                assert!(
                    (0.95..=1.05).contains(&share),
                    "rate {rate}/s, {lateness:?} late: sent {got} in 1 s ({share:.3} of the rate)"
                );
            }
        }
    }
}

//! The driver's heartbeat: proof, for a liveness check, that the server's
//! I/O loop still turns.
//!
//! The loop beats once per turn. It turns at least every publish period
//! even when idle (its wake-up time is never later than the next publish),
//! so a heartbeat older than a few periods means the loop is stuck: blocked
//! in a send that never completes, or starved. A health check on another
//! task reads the age without taking any lock the loop holds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock;

/// A shared heartbeat: the loop calls [`beat`](Heartbeat::beat), health
/// checks read [`age`](Heartbeat::age). Clones share one heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    inner: Arc<Beats>,
}

#[derive(Debug)]
struct Beats {
    /// The instant the stored offsets count from.
    epoch: Instant,
    /// Loop turns so far.
    turns: AtomicU64,
    /// Microseconds from `epoch` to the last turn, plus one (0: never).
    last_us: AtomicU64,
}

impl Heartbeat {
    /// A heartbeat that has never beaten, counting time from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            inner: Arc::new(Beats {
                epoch,
                turns: AtomicU64::new(0),
                last_us: AtomicU64::new(0),
            }),
        }
    }

    /// Records one turn of the loop at `now`.
    pub fn beat(&self, now: Instant) {
        let us = now.saturating_duration_since(self.inner.epoch).as_micros();
        let us = u64::try_from(us).unwrap_or(u64::MAX - 1);
        // Relaxed: each value stands alone; nothing else is published
        // through them.
        self.inner.last_us.store(us + 1, Ordering::Relaxed);
        self.inner.turns.fetch_add(1, Ordering::Relaxed);
    }

    /// Turns of the loop so far.
    pub fn turns(&self) -> u64 {
        self.inner.turns.load(Ordering::Relaxed)
    }

    /// Time since the last turn at `now`, or since the heartbeat was made
    /// if the loop never turned (a loop that never starts is as stuck as
    /// one that stopped, once the allowed age has passed).
    pub fn age(&self, now: Instant) -> Duration {
        let last = match self.inner.last_us.load(Ordering::Relaxed) {
            0 => self.inner.epoch,
            stored => self.inner.epoch + Duration::from_micros(stored - 1),
        };
        now.saturating_duration_since(last)
    }

    /// Whether the loop turned within `max_age` before `now` (or the
    /// heartbeat is younger than that).
    pub fn is_alive(&self, now: Instant, max_age: Duration) -> bool {
        self.age(now) <= max_age
    }
}

impl Default for Heartbeat {
    /// A heartbeat counting from the current time.
    fn default() -> Self {
        Self::new(clock::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_AGE: Duration = Duration::from_secs(2);

    #[test]
    fn a_loop_that_never_turns_is_stuck_once_the_allowed_age_has_passed() {
        let t0 = clock::now();
        let hb = Heartbeat::new(t0);
        assert_eq!(hb.turns(), 0);
        assert!(hb.is_alive(t0 + MAX_AGE, MAX_AGE), "young: not yet stuck");
        assert_eq!(hb.age(t0 + Duration::from_secs(3)), Duration::from_secs(3));
        assert!(!hb.is_alive(t0 + Duration::from_secs(3), MAX_AGE));
    }

    #[test]
    fn age_is_measured_from_the_last_beat() {
        let t0 = clock::now();
        let hb = Heartbeat::new(t0);
        hb.beat(t0 + Duration::from_millis(100));
        hb.beat(t0 + Duration::from_millis(300));
        assert_eq!(hb.turns(), 2);
        let now = t0 + Duration::from_millis(1_300);
        assert_eq!(hb.age(now), Duration::from_secs(1));
        assert!(hb.is_alive(now, MAX_AGE));
        assert!(hb.is_alive(t0 + Duration::from_millis(2_300), MAX_AGE));
        assert!(!hb.is_alive(t0 + Duration::from_millis(2_301), MAX_AGE));
    }

    #[test]
    fn clones_share_one_heartbeat_and_a_beat_at_the_epoch_counts() {
        let t0 = clock::now();
        let hb = Heartbeat::new(t0);
        let reader = hb.clone();
        hb.beat(t0);
        assert_eq!(reader.age(t0), Duration::ZERO);
        assert_eq!(reader.turns(), 1);
        // A reader's clock a little behind the writer's: age 0, not a panic.
        hb.beat(t0 + Duration::from_millis(5));
        assert_eq!(reader.age(t0), Duration::ZERO);
    }
}

//! A small fixed table of timers, one slot per purpose.
//!
//! `poll_timeout` is the earliest armed slot; `expired` lists the slots due
//! at `now` so the owner can handle them in one `match`.

use std::time::Instant;

/// The client's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Nothing heard for an RTO: retransmit the handshake or probe.
    Retransmit = 0,
    /// Data arrived and has not been acked yet: ack by this time.
    Ack = 1,
    /// Give up after this long without hearing from the server.
    Idle = 2,
}

impl Timer {
    /// Every timer, in handling order.
    pub(crate) const ALL: [Timer; 3] = [Timer::Retransmit, Timer::Ack, Timer::Idle];
}

/// Deadlines for each [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable {
    slots: [Option<Instant>; 3],
}

impl TimerTable {
    /// Arms `timer` for `at`.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.slots[timer as usize] = Some(at);
    }

    /// Disarms `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.slots[timer as usize] = None;
    }

    /// The deadline of `timer`, if armed.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots[timer as usize]
    }

    /// True if `timer` is armed.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.get(timer).is_some()
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.slots.iter().flatten().min().copied()
    }

    /// Disarms every timer.
    pub(crate) fn clear(&mut self) {
        self.slots = Default::default();
    }

    /// Timers due at `now` (deadline <= now), which are disarmed.
    pub(crate) fn take_expired(&mut self, now: Instant) -> impl Iterator<Item = Timer> {
        let mut due = [None; 3];
        for t in Timer::ALL {
            if self.get(t).is_some_and(|at| at <= now) {
                self.stop(t);
                due[t as usize] = Some(t);
            }
        }
        due.into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_wins_and_expired_are_taken_once() {
        let t0 = crate::clock::now();
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Idle, t0 + Duration::from_secs(30));
        t.set(Timer::Retransmit, t0 + Duration::from_millis(100));
        t.set(Timer::Ack, t0 + Duration::from_millis(5));
        assert_eq!(t.next(), Some(t0 + Duration::from_millis(5)));
        let due: Vec<_> = t.take_expired(t0 + Duration::from_millis(100)).collect();
        assert_eq!(due, vec![Timer::Retransmit, Timer::Ack]);
        assert_eq!(t.take_expired(t0 + Duration::from_millis(100)).count(), 0);
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(30)));
        t.clear();
        assert!(!t.is_set(Timer::Idle));
    }
}

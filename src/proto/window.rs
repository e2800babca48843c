//! The client's advertised window: how many indices past `ack` the server
//! may send.
//!
//! It starts small and doubles per round trip while no loss has been seen
//! (one more index per clean in-order delivery), then grows additively (one
//! index per window's worth of deliveries) once loss has been seen. On loss it
//! halves, at most once per loss episode: an episode lasts until every index
//! the client had seen when it reacted has been delivered, the way TCP
//! NewReno's recovery point works. It never drops below 1 and never exceeds
//! the configured maximum.

/// The adaptive window.
#[derive(Debug, Clone)]
pub struct Window {
    current: u32,
    max: u32,
    /// True until the first loss: growth is exponential.
    slow_start: bool,
    /// Deliveries counted toward the next additive increase.
    credit: u32,
    /// While `Some(p)`, losses below index `p` belong to the episode already
    /// reacted to.
    recovery_until: Option<u32>,
    min_seen: u32,
    max_seen: u32,
}

impl Window {
    /// A window starting at `initial`, capped at `max` (both at least 1).
    pub fn new(initial: u32, max: u32) -> Self {
        let max = max.max(1);
        let current = initial.clamp(1, max);
        Self {
            current,
            max,
            slow_start: true,
            credit: 0,
            recovery_until: None,
            min_seen: current,
            max_seen: current,
        }
    }

    /// The window to advertise.
    pub fn get(&self) -> u32 {
        self.current
    }

    /// The configured cap.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Smallest window so far.
    pub fn min_seen(&self) -> u32 {
        self.min_seen
    }

    /// Largest window so far.
    pub fn max_seen(&self) -> u32 {
        self.max_seen
    }

    /// One value was delivered in order; `next` is the next needed index.
    pub fn on_delivered(&mut self, next: u32) {
        if let Some(p) = self.recovery_until {
            if next > p {
                self.recovery_until = None;
            } else {
                return;
            }
        }
        if self.slow_start {
            self.set(self.current.saturating_add(1));
        } else {
            self.credit += 1;
            if self.credit >= self.current {
                self.credit = 0;
                self.set(self.current.saturating_add(1));
            }
        }
    }

    /// Loss was detected; `highest_seen` is the highest index received so
    /// far. Returns true if the window was reduced (once per episode).
    pub fn on_loss(&mut self, highest_seen: u32) -> bool {
        if self.recovery_until.is_some() {
            return false;
        }
        self.slow_start = false;
        self.credit = 0;
        self.recovery_until = Some(highest_seen);
        self.set(self.current / 2);
        true
    }

    fn set(&mut self, w: u32) {
        self.current = w.clamp(1, self.max);
        self.min_seen = self.min_seen.min(self.current);
        self.max_seen = self.max_seen.max(self.current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_window_in_slow_start_and_caps() {
        let mut w = Window::new(4, 20);
        let mut next = 0;
        for _ in 0..4 {
            next += 1;
            w.on_delivered(next);
        }
        assert_eq!(w.get(), 8);
        for _ in 0..100 {
            next += 1;
            w.on_delivered(next);
        }
        assert_eq!(w.get(), 20);
        assert_eq!(w.max_seen(), 20);
    }

    #[test]
    fn halves_once_per_episode_never_below_one() {
        let mut w = Window::new(16, 64);
        assert!(w.on_loss(30));
        assert_eq!(w.get(), 8);
        assert!(!w.on_loss(31), "second loss in the same episode");
        assert_eq!(w.get(), 8);
        // Deliveries inside the episode do not grow the window.
        w.on_delivered(10);
        assert_eq!(w.get(), 8);
        w.on_delivered(31); // passes the recovery point: episode over
        assert!(w.on_loss(40));
        assert_eq!(w.get(), 4);
        for i in 0..10 {
            w.on_delivered(41 + i * 100);
            w.on_loss(41 + i * 100 + 1);
        }
        assert_eq!(w.get(), 1);
        assert_eq!(w.min_seen(), 1);
    }

    #[test]
    fn grows_additively_after_loss() {
        let mut w = Window::new(16, 64);
        w.on_loss(0);
        assert_eq!(w.get(), 8);
        let mut next = 1;
        for _ in 0..8 {
            next += 1;
            w.on_delivered(next);
        }
        assert_eq!(w.get(), 9, "one more per window of deliveries");
    }

    #[test]
    fn zero_initial_and_zero_max_are_clamped() {
        let w = Window::new(0, 0);
        assert_eq!(w.get(), 1);
        assert_eq!(w.max(), 1);
    }
}

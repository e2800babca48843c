//! Rate-limited log lines: at most a few lines per second for each kind of
//! event, and a count of the lines held back.
//!
//! A flood of bad datagrams is a flood of reasons to log. Logging each one
//! would turn an attack on the server into an attack on its disk and its
//! operator, so every security event (a rejected datagram, a send that
//! failed, a probe held back) goes through a [`LogLimiter`]: the first
//! lines of each one-second window are written, the rest only counted, and
//! the next line written (or a [`flush`](LogLimiter::flush) once the
//! window is over) says how many were suppressed. The counters themselves
//! are exact elsewhere (the metrics); the log is for a human.
//!
//! Time is the caller's `now`, so the limiter is tested in virtual time.

use std::time::{Duration, Instant};

/// One kind of event's budget of log lines.
#[derive(Debug, Clone)]
pub struct LogLimiter {
    /// Lines allowed per window.
    max_lines: u32,
    /// Window length.
    window: Duration,
    /// When the current window began (`None`: no event yet).
    window_start: Option<Instant>,
    /// Lines written in the current window.
    written: u32,
    /// Events suppressed since the last line (or flush).
    suppressed: u64,
}

impl LogLimiter {
    /// At most `max_lines` lines per `window`.
    pub const fn new(max_lines: u32, window: Duration) -> Self {
        Self {
            max_lines,
            window,
            window_start: None,
            written: 0,
            suppressed: 0,
        }
    }

    /// An event at `now`: `Some(k)` if a line may be written, with `k`
    /// events suppressed since the last line; `None` if this one is
    /// suppressed (and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let in_window = self
            .window_start
            .is_some_and(|start| now < start + self.window);
        if !in_window {
            self.window_start = Some(now);
            self.written = 0;
        }
        if self.written < self.max_lines {
            self.written += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Once the window in which lines were suppressed is over: `Some(k)`,
    /// the number suppressed, for one closing line (and the count starts
    /// again); otherwise `None`. Call it now and then, so the last burst of
    /// a flood is reported even if no event follows it.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let over = self
            .window_start
            .is_some_and(|start| now >= start + self.window);
        if over && self.suppressed > 0 {
            Some(std::mem::take(&mut self.suppressed))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    const SECOND: Duration = Duration::from_secs(1);

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn the_first_lines_of_a_window_pass_and_the_rest_are_counted() {
        let t0 = clock::now();
        let mut l = LogLimiter::new(3, SECOND);
        let got: Vec<_> = (0..10).map(|i| l.allow(ms(t0, i * 10))).collect();
        assert_eq!(&got[..3], &[Some(0), Some(0), Some(0)]);
        assert!(got[3..].iter().all(Option::is_none), "{got:?}");
        // The next window's first line reports the seven held back.
        assert_eq!(l.allow(ms(t0, 1_000)), Some(7));
        assert_eq!(l.allow(ms(t0, 1_001)), Some(0));
    }

    #[test]
    fn a_steady_flood_writes_at_most_the_budget_per_window() {
        let t0 = clock::now();
        let mut l = LogLimiter::new(5, SECOND);
        let mut written = 0;
        let mut reported = 0;
        // 10,000 events a second for 10 s.
        let events = 100_000u64;
        for i in 0..events {
            let now = t0 + Duration::from_micros(i * 100);
            if let Some(k) = l.allow(now) {
                written += 1;
                reported += k;
            }
        }
        assert_eq!(written, 50, "5 per second for 10 s");
        let tail = l.flush(t0 + Duration::from_secs(11)).unwrap_or(0);
        assert_eq!(
            written + reported + tail,
            events,
            "every event written or counted"
        );
    }

    #[test]
    fn flush_reports_a_burst_once_its_window_is_over() {
        let t0 = clock::now();
        let mut l = LogLimiter::new(1, SECOND);
        assert_eq!(l.flush(t0), None, "nothing yet");
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(ms(t0, 1)), None);
        assert_eq!(l.allow(ms(t0, 2)), None);
        assert_eq!(l.flush(ms(t0, 999)), None, "the window is still open");
        assert_eq!(l.flush(ms(t0, 1_000)), Some(2));
        assert_eq!(l.flush(ms(t0, 1_500)), None, "reported once");
        // The next line does not count them again.
        assert_eq!(l.allow(ms(t0, 1_600)), Some(0));
    }

    #[test]
    fn quiet_periods_never_suppress() {
        let t0 = clock::now();
        let mut l = LogLimiter::new(1, SECOND);
        for i in 0..5 {
            assert_eq!(l.allow(ms(t0, i * 1_000)), Some(0));
        }
        assert_eq!(l.flush(ms(t0, 10_000)), None);
    }
}

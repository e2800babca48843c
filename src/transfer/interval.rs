//! Interval reports (iperf3's `-i`): what one stretch of a long transfer
//! did, so that a slowdown or a stall shows when it happens rather than
//! only in the final averages.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::proto::client::Client;
use crate::stats::LatencyHistogram;

/// One interval of a transfer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalStats {
    /// Start of the interval, seconds since the transfer started.
    pub start_s: f64,
    /// End of the interval, seconds since the transfer started.
    pub end_s: f64,
    /// Values delivered in the interval.
    pub values: u64,
    /// Values delivered per second over the interval.
    pub values_per_s: f64,
    /// Acks that asked for retransmissions (holes reported, probes).
    pub retransmit_requests: u64,
    /// Duplicate data datagrams received (resends that were not needed).
    pub duplicates: u64,
    /// Retransmission-timer expiries.
    pub timeouts: u64,
    /// RTT samples taken in the interval.
    pub rtt_samples: u64,
    /// Median RTT of the interval, µs (`null` without samples).
    pub rtt_p50_us: Option<u64>,
    /// 99th-percentile RTT of the interval, µs (`null` without samples).
    pub rtt_p99_us: Option<u64>,
    /// The congestion window at the end of the interval.
    pub window: u32,
}

/// Cuts a transfer into intervals of a fixed length.
#[derive(Debug)]
pub struct IntervalMeter {
    every: Duration,
    started: Instant,
    /// End of the current interval.
    next: Instant,
    /// Start of the current interval, since `started`.
    from: Duration,
    /// Counters at the start of the current interval.
    delivered: u64,
    retransmit_requests: u64,
    duplicates: u64,
    timeouts: u64,
    rtt: LatencyHistogram,
}

impl IntervalMeter {
    /// Intervals of `every` (at least 1 ms) from `started`.
    pub fn new(every: Duration, started: Instant) -> Self {
        let every = every.max(Duration::from_millis(1));
        Self {
            every,
            started,
            next: started + every,
            from: Duration::ZERO,
            delivered: 0,
            retransmit_requests: 0,
            duplicates: 0,
            timeouts: 0,
            rtt: LatencyHistogram::new(),
        }
    }

    /// When the current interval ends.
    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// Counts an RTT sample in the current interval.
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.rtt.record(rtt);
    }

    /// The finished interval if the current one ended by `now` (`delivered`
    /// values so far); `None` before that.
    pub fn tick(&mut self, now: Instant, delivered: u64, client: &Client) -> Option<IntervalStats> {
        if now < self.next {
            return None;
        }
        let stats = self.cut(now, delivered, client);
        while self.next <= now {
            self.next += self.every;
        }
        Some(stats)
    }

    /// Ends the current interval at `now` (the end of the transfer); `None`
    /// if it is empty in time.
    pub fn finish(
        &mut self,
        now: Instant,
        delivered: u64,
        client: &Client,
    ) -> Option<IntervalStats> {
        let at = now.saturating_duration_since(self.started);
        (at > self.from).then(|| self.cut(now, delivered, client))
    }

    fn cut(&mut self, now: Instant, delivered: u64, client: &Client) -> IntervalStats {
        let end = now.saturating_duration_since(self.started);
        let secs = end.saturating_sub(self.from).as_secs_f64();
        let s = client.stats();
        let values = delivered.saturating_sub(self.delivered);
        let has_rtt = !self.rtt.is_empty();
        let out = IntervalStats {
            start_s: self.from.as_secs_f64(),
            end_s: end.as_secs_f64(),
            values,
            values_per_s: if secs > 0.0 {
                values as f64 / secs
            } else {
                0.0
            },
            retransmit_requests: s
                .retransmit_requests
                .saturating_sub(self.retransmit_requests),
            duplicates: s.duplicates.saturating_sub(self.duplicates),
            timeouts: s.timeouts.saturating_sub(self.timeouts),
            rtt_samples: self.rtt.len(),
            rtt_p50_us: has_rtt.then(|| self.rtt.value_at_quantile(0.5)),
            rtt_p99_us: has_rtt.then(|| self.rtt.value_at_quantile(0.99)),
            window: client.window().get(),
        };
        self.from = end;
        self.delivered = delivered;
        self.retransmit_requests = s.retransmit_requests;
        self.duplicates = s.duplicates;
        self.timeouts = s.timeouts;
        self.rtt = LatencyHistogram::new();
        out
    }
}

/// `172.1k` style: one decimal and an SI suffix, for rates and counts in
/// one-line displays.
pub fn si(x: f64) -> String {
    let (v, suffix) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    if suffix.is_empty() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}{suffix}")
    }
}

/// The µs value as a short duration (`850µs`, `12.3ms`, `1.20s`), or `-`.
fn short_us(us: Option<u64>) -> String {
    match us {
        None => "-".to_string(),
        Some(us) if us < 1_000 => format!("{us}µs"),
        Some(us) if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1e3),
        Some(us) => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// The start every interval line shares (the client's, `load`'s and the
/// server's): `[   0.0-   1.0 s]   52.3k values   52.3k values/s`.
pub fn interval_head(start_s: f64, end_s: f64, values: u64, values_per_s: f64) -> String {
    format!(
        "[{start_s:6.1}-{end_s:6.1} s] {:>7} values {:>7} values/s",
        si(values as f64),
        si(values_per_s)
    )
}

/// One human line for an interval (the `--interval` output).
pub fn interval_line(i: &IntervalStats) -> String {
    format!(
        "{}  rexmit req {:>5}  dup {:>5}  rtt p50 {:>7} p99 {:>7}  window {}",
        interval_head(i.start_s, i.end_s, i.values, i.values_per_s),
        i.retransmit_requests,
        i.duplicates,
        short_us(i.rtt_p50_us),
        short_us(i.rtt_p99_us),
        i.window
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_rounds_to_one_decimal_with_a_suffix() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(999.4), "999");
        assert_eq!(si(172_127.857_3), "172.1k");
        assert_eq!(si(17_212.7), "17.2k");
        assert_eq!(si(1_500_000.0), "1.5M");
        assert_eq!(si(2.5e9), "2.5G");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_us(None), "-");
        assert_eq!(short_us(Some(850)), "850µs");
        assert_eq!(short_us(Some(12_345)), "12.3ms");
        assert_eq!(short_us(Some(1_200_000)), "1.20s");
    }
}

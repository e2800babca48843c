//! A shared bottleneck link: a drop-tail FIFO served at a fixed rate, that
//! every server-to-client datagram crosses before its own client's link.
//!
//! It models the one thing random loss does not: loss caused by the
//! senders themselves. When the flows together offer more than `rate`
//! datagrams a second the queue grows, delay rises, and past `limit`
//! datagrams the tail is dropped. The statistics tell how well a rate
//! controller shares it: utilisation, drops, mean queue, and what each flow
//! got through.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::transfer::{BottleneckConfig, BottleneckStats, SHARE_BUCKET};

/// The bottleneck queue. See the module docs.
#[derive(Debug)]
pub struct Bottleneck {
    config: BottleneckConfig,
    epoch: Instant,
    /// Departure time of every datagram queued or in service, in order.
    departures: VecDeque<Instant>,
    stats: BottleneckStats,
}

impl Bottleneck {
    /// An empty bottleneck shared by `flows` flows; `epoch` is the
    /// simulation's start.
    pub fn new(config: BottleneckConfig, flows: usize, epoch: Instant) -> Self {
        Self {
            config,
            epoch,
            departures: VecDeque::new(),
            stats: BottleneckStats {
                forwarded: vec![0; flows],
                active: vec![None; flows],
                forwarded_by_bucket: vec![Vec::new(); flows],
                ..BottleneckStats::default()
            },
        }
    }

    /// A datagram of `flow` arrives at `now`: `Some(delay)` until it leaves
    /// the bottleneck (queueing plus service), or `None` when the queue is
    /// full and it is dropped.
    pub fn admit(&mut self, now: Instant, flow: usize) -> Option<Duration> {
        while self.departures.front().is_some_and(|&t| t <= now) {
            self.departures.pop_front();
        }
        let queued = self.departures.len();
        let at = now.saturating_duration_since(self.epoch);
        let s = &mut self.stats;
        if let Some(a) = s.active.get_mut(flow) {
            let first = a.map_or(at, |(f, _)| f);
            *a = Some((first, at));
        }
        s.arrived += 1;
        s.queue_sum += queued as u64;
        s.queue_max = s.queue_max.max(queued);
        s.busy_from
            .get_or_insert(now.saturating_duration_since(self.epoch));
        if queued >= self.config.limit {
            s.dropped += 1;
            return None;
        }
        let start = self.departures.back().map_or(now, |&t| t.max(now));
        let leave = start + self.config.service_time();
        self.departures.push_back(leave);
        if let Some(n) = s.forwarded.get_mut(flow) {
            *n += 1;
        }
        if let Some(v) = s.forwarded_by_bucket.get_mut(flow) {
            let bucket = (leave.saturating_duration_since(self.epoch).as_nanos()
                / SHARE_BUCKET.as_nanos()) as usize;
            if v.len() <= bucket {
                v.resize(bucket + 1, 0);
            }
            v[bucket] += 1;
        }
        s.busy_until = Some(leave.saturating_duration_since(self.epoch));
        Some(leave - now)
    }

    /// What it saw so far.
    pub fn stats(&self) -> &BottleneckStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rate: f64, limit: usize) -> BottleneckConfig {
        BottleneckConfig { rate, limit }
    }

    #[test]
    fn serves_at_its_rate_and_drops_past_its_limit() {
        let t0 = crate::clock::now();
        let mut b = Bottleneck::new(config(1000.0, 3), 2, t0);
        // Four at once: three fit (1, 2 and 3 ms to leave), the fourth drops.
        let got: Vec<_> = (0..4).map(|k| b.admit(t0, k % 2)).collect();
        let ms = Duration::from_millis;
        assert_eq!(got, vec![Some(ms(1)), Some(ms(2)), Some(ms(3)), None]);
        // After the first left, there is room again, behind the other two.
        assert_eq!(b.admit(t0 + ms(1), 0), Some(ms(3)));
        let s = b.stats();
        assert_eq!((s.arrived, s.dropped), (5, 1));
        assert_eq!(s.forwarded, vec![3, 1]);
        assert_eq!(s.queue_max, 3);
        assert_eq!(s.queue_sum, 1 + 2 + 3 + 2);
        assert_eq!(s.busy_until, Some(ms(4)));
    }

    #[test]
    fn an_idle_link_adds_only_the_service_time() {
        let t0 = crate::clock::now();
        let mut b = Bottleneck::new(config(100.0, 10), 1, t0);
        for k in 0..5u32 {
            let now = t0 + Duration::from_millis(20) * k;
            assert_eq!(b.admit(now, 0), Some(Duration::from_millis(10)));
        }
        let s = b.stats();
        assert_eq!(s.dropped, 0);
        assert_eq!(s.mean_queue(), 0.0);
        // 5 datagrams over 90 ms of a 100/s link: 5 / 9.
        let u = s.utilisation(100.0, s.busy_from.unwrap(), s.busy_until.unwrap());
        assert!((u - 5.0 / 9.0).abs() < 1e-9, "{u}");
    }

    #[test]
    fn shares_count_only_while_every_flow_is_active() {
        let t0 = crate::clock::now();
        let ms = Duration::from_millis;
        let mut b = Bottleneck::new(config(1000.0, 100), 2, t0);
        // Flow 0 alone for 100 ms at the full rate, then both at half each
        // for 100 ms (one datagram a millisecond, alternating).
        for k in 0..200u64 {
            let flow = if k < 100 { 0 } else { (k % 2) as usize };
            b.admit(t0 + ms(k), flow);
        }
        let shares = b.stats().overlap_shares(1000.0).unwrap();
        assert_eq!(shares.len(), 2);
        for s in &shares {
            assert!((s - 0.5).abs() < 0.06, "{shares:?}");
        }
        // Both sent from flow 1's first arrival (101 ms) to flow 0's last
        // (198 ms). From 150 to 199 ms there are four whole buckets (150 to
        // 190 ms by departure), 20 datagrams of each flow.
        assert_eq!(b.stats().overlap(), Some((ms(101), ms(198))));
        let half = b.stats().shares_between(1000.0, ms(150), ms(199)).unwrap();
        assert_eq!(half, vec![0.5, 0.5]);
        assert_eq!(b.stats().shares_between(1000.0, ms(151), ms(159)), None);
        // A flow that never sent: no overlap at all.
        let idle = Bottleneck::new(config(1000.0, 100), 3, t0);
        assert_eq!(idle.stats().overlap_shares(1000.0), None);
    }
}

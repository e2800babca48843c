//! The path model: the bandwidth estimate (the windowed maximum of the
//! delivery-rate samples), `bw · min_rtt`, the window it supports, and the
//! pacing rate and gain phase the client asks the server for.

use std::time::Duration;

use super::{
    RateControl, CWND_GAIN, MAX_LOSS_COMPENSATION, MIN_PACING_PER_RTT, PROBE_GAINS, QUEUE_FLOOR,
    STARTUP_PACING_GAIN,
};

impl RateControl {
    /// The bandwidth estimate in datagrams per second (0 before the first
    /// round closed).
    pub fn bw(&self) -> f64 {
        self.bw_samples.iter().copied().fold(0.0, f64::max)
    }

    /// `bw · min_rtt` in datagrams: what the path holds without a queue.
    /// The round trip is the larger of the smallest RTT sample and the
    /// shortest recent round (ack to echo) up to [`QUEUE_FLOOR`]:
    /// where batching or ack delay make every round longer than the
    /// fastest datagram (loopback: 50 µs samples, 400 µs rounds), the
    /// window must cover the round.
    pub(super) fn bdp(&self, min_rtt: Option<Duration>) -> Option<f64> {
        let min_rtt = min_rtt?;
        let round = self
            .round_rtt_window
            .iter()
            .copied()
            .filter(|d| !d.is_zero())
            .min()
            .unwrap_or_default();
        // Only up to QUEUE_FLOOR in all (scheduling noise, as the
        // standing-queue test reads it): a longer round is a queue, which
        // the window must not grow to keep.
        let rtt = min_rtt.max(round.min(QUEUE_FLOOR));
        (self.rounds > 0).then(|| self.bw() * rtt.as_secs_f64())
    }

    /// `CWND_GAIN · bw · min_rtt`, at least the minimum; `None` before the
    /// first rate sample.
    pub(super) fn target_cwnd(&mut self) -> Option<u32> {
        if self.target_stale {
            self.target_stale = false;
            self.target = self
                .bdp(self.min_rtt)
                .map(|bdp| ((CWND_GAIN * bdp).ceil() as u32).max(self.min_cwnd));
        }
        self.target
    }

    /// The rate, in datagrams per second, at which the server should pace
    /// new data (0: unpaced, before the first delivery-rate sample): the
    /// pacing gain of the current phase times the bandwidth estimate,
    /// raised to make up for the smoothed loss fraction.
    pub fn pacing_rate(&self) -> u32 {
        if !self.respond || self.rounds == 0 {
            return 0;
        }
        let gain = if self.slow_start {
            STARTUP_PACING_GAIN
        } else {
            match self.probe_phase {
                None => 1.0 / STARTUP_PACING_GAIN,
                Some(i) => PROBE_GAINS[i],
            }
        };
        let compensate = 1.0 - self.loss.min(MAX_LOSS_COMPENSATION);
        // Never slower than a few datagrams per round trip: rate samples
        // taken across timeouts can be far too low, and a pacer at such a
        // rate would stall what the window allows. (Not the whole minimum
        // window: four flows sharing 40k/s at 2 ms get 10k/s each, under
        // 24 per 2 ms.)
        let floor = self
            .min_rtt
            .map_or(0.0, |r| MIN_PACING_PER_RTT / r.as_secs_f64().max(1e-6));
        let rate = (gain * self.bw() / compensate).max(floor);
        rate.clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// The pacing gain phase, for reports: 0 in start-up, 1 while
    /// draining, else 2 + the index into [`PROBE_GAINS`].
    pub fn phase(&self) -> u8 {
        match (self.slow_start, self.probe_phase) {
            (true, _) => 0,
            (false, None) => 1,
            (false, Some(i)) => 2 + i as u8,
        }
    }
}

//! Loss episodes: judging whether one is congestion (the loss ceiling, a
//! standing queue; see the module docs), the response when it is, the end
//! of an episode, and persistent congestion after repeated probe timeouts.

use std::time::Duration;

use super::{
    LossVerdict, RateControl, BETA, BW_ROUNDS, LOSS_CEILING, LOSS_CEILING_MIN_SAMPLES,
    MIN_BW_ROUNDS, PERSISTENT_CONGESTION_PTOS, QUEUE_FLOOR, Q_ABS, Q_REL,
};

impl RateControl {
    /// The client's loss detection fired; `highest` is the highest index
    /// received, `recovery_point` the end of what the server may have sent
    /// (losses up to it belong to this episode), `min_rtt` the smallest RTT
    /// measured. Judges the episode once and responds.
    pub fn on_loss_episode(
        &mut self,
        highest: u32,
        recovery_point: u32,
        min_rtt: Option<Duration>,
    ) -> LossVerdict {
        if let Some(p) = self.recovery_until {
            if highest <= p {
                return LossVerdict::SameEpisode;
            }
        }
        self.recovery_until = Some(recovery_point.max(highest));
        if !self.respond {
            self.random_episodes += 1;
            return LossVerdict::Random;
        }
        if !self.differentiate {
            self.slow_start = false;
            self.credit = 0;
            self.recovery_congestive = true;
            self.reductions += 1;
            self.set((self.cwnd / 2).max(self.min_cwnd));
            return LossVerdict::Congestive;
        }
        let (recv, lost) = self.recent_counts();
        let total = recv.saturating_add(lost);
        let lossy = !self.slow_start
            && total >= LOSS_CEILING_MIN_SAMPLES
            && f64::from(lost) > LOSS_CEILING * f64::from(total);
        let bdp = self.bdp(min_rtt);
        let queue = self.standing_queue(min_rtt);
        if !(lossy || queue) {
            self.recovery_congestive = false;
            self.random_episodes += 1;
            return LossVerdict::Random;
        }
        tracing::debug!(
            lossy,
            queue,
            recent_rtt_us = self.round_rtts.iter().min().map_or(0, |d| d.as_micros()),
            min_rtt_us = min_rtt.map_or(0, |d| d.as_micros()),
            bw = self.bw() as u64,
            cwnd = self.cwnd,
            recv,
            lost,
            "loss episode judged congestive"
        );
        let mut target = BETA * f64::from(self.cwnd);
        if let Some(b) = bdp.filter(|_| self.rounds >= MIN_BW_ROUNDS) {
            target = target.min((1.0 + Q_REL) * b);
        }
        self.slow_start = false;
        self.credit = 0;
        self.recovery_congestive = true;
        self.reductions += 1;
        self.set((target as u32).max(self.min_cwnd));
        // The path is full: the windowed max may hold a rate from before
        // others joined (or start-up's overshoot), and pacing at it keeps
        // the queue standing. Forget the samples above the latest round's
        // (as BBRv2's `bw_lo` on loss), so that flows sharing a bottleneck
        // converge on their shares.
        // At most a BETA cut per episode: a round measured across a
        // timeout can be far too slow, and taking it whole would let the
        // estimate collapse (at 50% loss every episode is congestive).
        let latest =
            self.bw_samples[((self.rounds + BW_ROUNDS as u64 - 1) % BW_ROUNDS as u64) as usize];
        if self.rounds > 0 && latest > 0.0 {
            let cap = latest.max(BETA * self.bw());
            self.target_stale = true;
            for b in &mut self.bw_samples {
                *b = b.min(cap);
            }
        }
        LossVerdict::Congestive
    }

    /// True when the recent round trips show a standing queue (see the
    /// module docs): the smallest of the latest
    /// [`RECENT_ROUNDS`](super::RECENT_ROUNDS), so that one delayed echo is
    /// no queue.
    fn standing_queue(&self, min_rtt: Option<Duration>) -> bool {
        let recent = self.round_rtts.iter().min().copied().unwrap_or_default();
        self.queue_building(recent, min_rtt)
    }

    /// True when a round trip of `round_rtt` took more than the
    /// standing-queue threshold above `min_rtt`. Start-up asks it of each
    /// round on its own: there the window doubles every round, and one
    /// round's delay is all the warning there is.
    pub(super) fn queue_building(&self, round_rtt: Duration, min_rtt: Option<Duration>) -> bool {
        let (Some(min_rtt), true) = (min_rtt, self.rounds >= MIN_BW_ROUNDS) else {
            return false;
        };
        let bw = self.bw();
        if bw <= 0.0 {
            return false;
        }
        let min_rtt = min_rtt.as_secs_f64();
        // The queueing delay that counts: a quarter of the smallest round
        // trip plus a few datagrams, but never under QUEUE_FLOOR. Below the
        // timer granularity a "queue" cannot be told from the scheduler: on
        // loopback (min RTT ~50 µs) batched rounds routinely take a few
        // hundred µs more whatever the window, which read as a standing
        // queue held the window at its floor at 10% random loss. (The floor
        // bites only on paths under 2 ms, where Q_REL · min_rtt < 0.5 ms.)
        let threshold = (Q_REL * min_rtt + Q_ABS / bw).max(QUEUE_FLOOR.as_secs_f64());
        round_rtt.as_secs_f64() - min_rtt > threshold
    }

    /// Received and lost counts of the open round plus the last closed one.
    fn recent_counts(&self) -> (u32, u32) {
        let (mut recv, mut lost) = self.last_round;
        if let Some(r) = self.round {
            recv = recv.saturating_add(r.recv);
            lost = lost.saturating_add(r.lost);
        }
        (recv, lost)
    }

    /// `highest` moved: ends the loss episode once it passes the recovery
    /// point.
    pub fn on_highest(&mut self, highest: u32) {
        if self.recovery_until.is_some_and(|p| highest > p) {
            self.recovery_until = None;
            self.recovery_congestive = false;
        }
    }

    /// The probe timer expired for the `consecutive`-th time in a row.
    /// At [`PERSISTENT_CONGESTION_PTOS`] the path is treated as congested
    /// throughout: `cwnd` drops to the minimum and slow start ends.
    pub fn on_probe_timeout(&mut self, consecutive: u32) {
        if self.respond && consecutive == PERSISTENT_CONGESTION_PTOS {
            self.slow_start = false;
            self.credit = 0;
            self.reductions += 1;
            self.set(self.min_cwnd);
        }
    }
}

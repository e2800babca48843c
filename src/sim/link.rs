//! One flow's own link: netem's seeded model of both directions, plus an
//! optional fixed delay of the flow's own (so flows of different round
//! trips can share one bottleneck).

use std::time::Duration;

use risp_netem::{Direction, Impairment, ImpairmentConfig, ImpairmentStats, Verdict};

/// A client's (or a reference flow's) link to the servers. Every datagram
/// of the flow crosses it, in its direction; what it decides is netem's
/// [`Impairment::decide`], so one seed gives one trace.
#[derive(Debug, Clone)]
pub struct Link {
    model: Impairment,
    /// Added to every delivery, both ways.
    extra_delay: Duration,
}

impl Link {
    /// A link impaired by `model`.
    pub fn new(model: Impairment) -> Self {
        Self {
            model,
            extra_delay: Duration::ZERO,
        }
    }

    /// A link of `config`'s impairments, seeded by `seed`.
    pub fn impaired(config: ImpairmentConfig, seed: u64) -> Self {
        Self::new(Impairment::new(config, seed))
    }

    /// A perfect link: every datagram arrives, at once, intact.
    pub fn perfect() -> Self {
        Self::impaired(ImpairmentConfig::default(), 0)
    }

    /// Also adds `delay` to every delivery, in each direction.
    pub fn with_extra_delay(mut self, delay: Duration) -> Self {
        self.extra_delay = delay;
        self
    }

    /// The extra delay of [`with_extra_delay`](Self::with_extra_delay).
    pub fn extra_delay(&self) -> Duration {
        self.extra_delay
    }

    /// What becomes of one datagram of `len` bytes sent `elapsed` after the
    /// network's start.
    pub(super) fn decide(&mut self, dir: Direction, elapsed: Duration, len: usize) -> Verdict {
        self.model.decide(dir, elapsed, len)
    }

    /// How many scheduled NAT rebindings fell due by `elapsed`.
    pub(super) fn take_rebinds(&mut self, elapsed: Duration) -> usize {
        self.model.take_rebinds(elapsed)
    }

    /// The model's counters so far.
    pub fn stats(&self) -> ImpairmentStats {
        self.model.stats()
    }
}

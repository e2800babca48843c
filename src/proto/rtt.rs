//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! Samples come from the timestamp the server echoes, so every sample is
//! unambiguous even after a retransmission (no Karn's rule needed on the
//! client). `RTO = SRTT + 4·RTTVAR`, clamped to `[min_rto, max_rto]`, and
//! doubled on each consecutive timeout until a new sample arrives.

use std::time::Duration;

/// Smallest variance term added to SRTT.
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// Settings for the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttConfig {
    /// RTO before the first sample.
    pub initial_rto: Duration,
    /// Lower bound on the RTO.
    pub min_rto: Duration,
    /// Upper bound on the RTO, backoff included.
    pub max_rto: Duration,
}

impl Default for RttConfig {
    fn default() -> Self {
        Self {
            initial_rto: Duration::from_millis(100),
            min_rto: Duration::from_millis(2),
            max_rto: Duration::from_secs(2),
        }
    }
}

/// SRTT/RTTVAR estimator with exponential backoff.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    config: RttConfig,
    /// Smoothed RTT; `None` until the first sample.
    srtt: Option<Duration>,
    rttvar: Duration,
    latest: Option<Duration>,
    min: Option<Duration>,
    /// Consecutive timeouts since the last sample (the backoff exponent).
    backoff: u32,
}

impl RttEstimator {
    /// A fresh estimator.
    pub fn new(config: RttConfig) -> Self {
        Self {
            config,
            srtt: None,
            rttvar: Duration::ZERO,
            latest: None,
            min: None,
            backoff: 0,
        }
    }

    /// Feeds one RTT sample and clears the backoff.
    pub fn on_sample(&mut self, rtt: Duration) {
        self.latest = Some(rtt);
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        self.backoff = 0;
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let err = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + err) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// Doubles the RTO (up to `max_rto`) after a timeout.
    pub fn on_timeout(&mut self) {
        self.backoff = (self.backoff + 1).min(16);
    }

    /// The current retransmission timeout, backoff included.
    pub fn rto(&self) -> Duration {
        let base = match self.srtt {
            None => self.config.initial_rto,
            // The variance term has a floor (a quarter of SRTT, at least a
            // millisecond): on a steady link RTTVAR decays to zero and an RTO
            // of exactly one RTT would fire on every round trip.
            Some(srtt) => srtt + (self.rttvar * 4).max(srtt / 4).max(GRANULARITY),
        };
        let base = base.clamp(self.config.min_rto, self.config.max_rto);
        base.saturating_mul(1 << self.backoff)
            .min(self.config.max_rto)
    }

    /// Smoothed RTT, if any sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The most recent sample.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The smallest sample seen.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// Consecutive timeouts since the last sample.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut r = RttEstimator::new(RttConfig::default());
        assert_eq!(r.rto(), ms(100));
        r.on_sample(ms(40));
        assert_eq!(r.srtt(), Some(ms(40)));
        // 40 + 4 * 20
        assert_eq!(r.rto(), ms(120));
    }

    #[test]
    fn smoothing_follows_rfc6298() {
        let mut r = RttEstimator::new(RttConfig {
            initial_rto: ms(1000),
            min_rto: ms(1),
            max_rto: ms(60_000),
        });
        r.on_sample(ms(100));
        r.on_sample(ms(200));
        // rttvar = 3/4*50 + 1/4*100 = 62.5; srtt = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(r.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(r.rto(), Duration::from_micros(112_500 + 4 * 62_500));
        assert_eq!(r.min(), Some(ms(100)));
        assert_eq!(r.latest(), Some(ms(200)));
    }

    #[test]
    fn backoff_doubles_clamps_and_resets_on_sample() {
        let mut r = RttEstimator::new(RttConfig {
            initial_rto: ms(100),
            min_rto: ms(10),
            max_rto: ms(700),
        });
        r.on_timeout();
        assert_eq!(r.rto(), ms(200));
        r.on_timeout();
        assert_eq!(r.rto(), ms(400));
        r.on_timeout();
        assert_eq!(r.rto(), ms(700));
        for _ in 0..100 {
            r.on_timeout();
        }
        assert_eq!(r.rto(), ms(700));
        r.on_sample(Duration::from_micros(100));
        assert_eq!(r.backoff(), 0);
        assert_eq!(r.rto(), ms(10), "tiny RTT is clamped to min_rto");
        r.on_sample(Duration::from_micros(100));
        assert_eq!(r.rto(), ms(10));
        assert_eq!(
            RttEstimator::new(RttConfig::default()).config.min_rto,
            ms(2)
        );
    }

    #[test]
    fn steady_rtt_keeps_a_margin_above_srtt() {
        let mut r = RttEstimator::new(RttConfig {
            initial_rto: ms(100),
            min_rto: ms(1),
            max_rto: ms(60_000),
        });
        for _ in 0..200 {
            r.on_sample(ms(40));
        }
        assert_eq!(r.srtt(), Some(ms(40)));
        assert_eq!(r.rto(), ms(50), "40 + max(4*rttvar, 40/4, 1ms)");
    }
}

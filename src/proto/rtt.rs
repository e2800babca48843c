//! Round-trip time estimation (RFC 6298) and the client's timer.
//!
//! Samples come from the timestamp the server echoes, so every sample is
//! unambiguous even after a retransmission (no Karn's rule needed on the
//! client). Once a sample exists the timer is a probe timeout (RFC 9002
//! §6.2): `PTO = SRTT + max(4·RTTVAR, 1 ms)`, clamped to `[min_rto,
//! max_rto]`, doubled from the second consecutive expiry on. Before any
//! sample it is `initial_rto` (short, so that a lost handshake on a LAN
//! costs milliseconds), doubled on every expiry.

use std::time::Duration;

/// Smallest variance term added to SRTT (and the default `min_rto`).
pub const GRANULARITY: Duration = Duration::from_millis(1);

/// Default first timeout before any RTT sample: a lost CONNECTING on a
/// sub-millisecond path costs 5 ms rather than 100 ms. Doubling keeps the
/// cost on long paths small: on a 100 ms RTT the client sends four extra
/// 1200-byte CONNECTINGs (at 5, 15, 35 and 75 ms) before the first answer.
pub const INITIAL_TIMEOUT: Duration = Duration::from_millis(5);

/// Settings for the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttConfig {
    /// First timeout before any RTT sample (doubled on each expiry).
    pub initial_rto: Duration,
    /// Lower bound on the timeout.
    pub min_rto: Duration,
    /// Upper bound on the timeout, backoff included.
    pub max_rto: Duration,
}

impl Default for RttConfig {
    fn default() -> Self {
        Self {
            initial_rto: INITIAL_TIMEOUT,
            min_rto: GRANULARITY,
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

    /// The timer, backoff included: before any sample `initial_rto`
    /// doubled per expiry; after, the probe timeout `SRTT + max(4·RTTVAR,
    /// 1 ms)`, doubled only from the second consecutive expiry (one expiry
    /// is usually a lost ack, answered by the probe itself).
    pub fn pto(&self) -> Duration {
        let (base, doublings) = match self.srtt {
            None => (self.config.initial_rto, self.backoff),
            Some(srtt) => (
                srtt + (self.rttvar * 4).max(GRANULARITY),
                self.backoff.saturating_sub(1),
            ),
        };
        let base = base.clamp(self.config.min_rto, self.config.max_rto);
        base.saturating_mul(1 << doublings).min(self.config.max_rto)
    }

    /// Smoothed RTT, if any sample was taken.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The RTT variance, once a sample was taken.
    pub fn rttvar(&self) -> Option<Duration> {
        self.srtt.map(|_| self.rttvar)
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
        assert_eq!(r.pto(), ms(5), "short first timer before any sample");
        r.on_sample(ms(40));
        assert_eq!(r.srtt(), Some(ms(40)));
        // 40 + 4 * 20
        assert_eq!(r.pto(), ms(120));
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
        assert_eq!(r.pto(), Duration::from_micros(112_500 + 4 * 62_500));
        assert_eq!(r.min(), Some(ms(100)));
        assert_eq!(r.latest(), Some(ms(200)));
    }

    #[test]
    fn initial_timer_doubles_on_every_expiry_and_clamps() {
        let mut r = RttEstimator::new(RttConfig {
            initial_rto: ms(100),
            min_rto: ms(10),
            max_rto: ms(700),
        });
        r.on_timeout();
        assert_eq!(r.pto(), ms(200));
        r.on_timeout();
        assert_eq!(r.pto(), ms(400));
        r.on_timeout();
        assert_eq!(r.pto(), ms(700));
        for _ in 0..100 {
            r.on_timeout();
        }
        assert_eq!(r.pto(), ms(700));
        r.on_sample(Duration::from_micros(100));
        assert_eq!(r.backoff(), 0);
        assert_eq!(r.pto(), ms(10), "tiny RTT is clamped to min_rto");
        assert_eq!(
            RttEstimator::new(RttConfig::default()).config.min_rto,
            ms(1)
        );
    }

    #[test]
    fn probe_timeout_doubles_only_from_the_second_expiry() {
        let mut r = RttEstimator::new(RttConfig {
            initial_rto: ms(5),
            min_rto: ms(1),
            max_rto: ms(2_000),
        });
        for _ in 0..200 {
            r.on_sample(Duration::from_micros(100));
        }
        // RTTVAR has decayed to nothing: SRTT + the 1 ms floor, no 2 ms
        // floor and no SRTT/4 term.
        assert_eq!(r.pto(), Duration::from_micros(1_100));
        r.on_timeout();
        assert_eq!(r.pto(), Duration::from_micros(1_100), "first expiry");
        r.on_timeout();
        assert_eq!(r.pto(), Duration::from_micros(2_200));
        r.on_timeout();
        assert_eq!(r.pto(), Duration::from_micros(4_400));
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
        assert_eq!(r.pto(), ms(41), "40 + max(4*rttvar, 1ms)");
    }
}

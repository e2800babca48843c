//! What to impair, and how to check that a configuration makes sense.
//!
//! The configuration is plain data so that it can be built by a CLI parser,
//! read from a file, or written inline in a test. It is checked once, by
//! [`ImpairmentConfig::validate`], which names the offending field; the model
//! itself never panics on an unchecked configuration either (out-of-range
//! probabilities simply saturate), so a caller that skips validation gets odd
//! behaviour, never a crash.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The reorder hold-back used when [`DirectionConfig::reorder_gap`] is zero.
pub const DEFAULT_REORDER_GAP: Duration = Duration::from_millis(1);

/// Impairments applied to the datagrams travelling in one direction.
///
/// All probabilities are per datagram and must lie in `[0, 1]`. The default
/// value impairs nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DirectionConfig {
    /// Probability that a datagram is dropped (the long-run loss rate).
    pub loss: f64,
    /// Mean length, in datagrams, of a run of consecutive losses.
    ///
    /// `<= 1.0` means every datagram is lost independently with probability
    /// `loss`. Above 1 a two-state Gilbert–Elliott chain is used: the bad
    /// state drops every datagram, its mean run length is `burst`, and the
    /// chain spends a fraction `loss` of its time in it. That requires
    /// `loss <= burst / (burst + 1)` (or `loss == 1`), which
    /// [`ImpairmentConfig::validate`] checks.
    pub burst: f64,
    /// Probability that a delivered datagram arrives twice.
    pub duplicate: f64,
    /// Probability that one random bit of a delivered datagram is flipped.
    pub corrupt: f64,
    /// Probability that a delivered datagram is held back an extra
    /// [`reorder_gap`](Self::reorder_gap), so that later ones overtake it.
    pub reorder: f64,
    /// How long a reordered datagram is held back; zero means
    /// [`DEFAULT_REORDER_GAP`].
    pub reorder_gap: Duration,
    /// Base one-way delay added to every delivered datagram.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter]` for every delivery.
    pub jitter: Duration,
}

impl DirectionConfig {
    /// Independent loss with probability `loss` and nothing else.
    pub fn with_loss(loss: f64) -> Self {
        Self {
            loss,
            ..Self::default()
        }
    }

    /// The hold-back actually applied to reordered datagrams.
    pub fn effective_reorder_gap(&self) -> Duration {
        if self.reorder_gap.is_zero() {
            DEFAULT_REORDER_GAP
        } else {
            self.reorder_gap
        }
    }

    /// True when this direction changes nothing: no loss, duplication,
    /// corruption, reordering or delay.
    pub fn is_clean(&self) -> bool {
        // NaN counts as "never", which is what the model does with it.
        let never = |p: f64| p.is_nan() || p <= 0.0;
        never(self.loss)
            && never(self.duplicate)
            && never(self.corrupt)
            && never(self.reorder)
            && self.delay.is_zero()
            && self.jitter.is_zero()
    }

    fn validate(&self, names: &FieldNames) -> Result<(), ConfigError> {
        for (field, value) in [
            (names.loss, self.loss),
            (names.duplicate, self.duplicate),
            (names.corrupt, self.corrupt),
            (names.reorder, self.reorder),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(ConfigError::ProbabilityOutOfRange { field, value });
            }
        }
        if !self.burst.is_finite() || self.burst < 0.0 {
            return Err(ConfigError::InvalidBurst {
                field: names.burst,
                value: self.burst,
            });
        }
        if self.burst > 1.0 && self.loss < 1.0 && self.loss > self.burst / (self.burst + 1.0) {
            return Err(ConfigError::BurstInfeasible {
                field: names.burst,
                loss: self.loss,
                burst: self.burst,
            });
        }
        Ok(())
    }
}

/// A window during which every datagram, in both directions, is dropped.
///
/// Offsets are measured from the moment the model (or shim) was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Blackhole {
    /// When the outage begins.
    pub start: Duration,
    /// How long it lasts; the window is `[start, start + duration)`.
    pub duration: Duration,
}

impl Blackhole {
    /// Whether `elapsed` falls inside the outage window.
    pub fn contains(&self, elapsed: Duration) -> bool {
        // Written as a subtraction so that a huge `start + duration` cannot
        // overflow.
        elapsed >= self.start && elapsed - self.start < self.duration
    }
}

/// The full impairment set-up: one [`DirectionConfig`] per direction plus
/// the events that affect both.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImpairmentConfig {
    /// Impairments of client-to-server datagrams.
    pub to_server: DirectionConfig,
    /// Impairments of server-to-client datagrams.
    pub to_client: DirectionConfig,
    /// Outages that drop everything in both directions.
    pub blackholes: Vec<Blackhole>,
    /// Offsets at which the client's address should change (NAT
    /// rebinding). The model only reports them through
    /// [`Impairment::take_rebinds`](crate::Impairment::take_rebinds); acting
    /// on them (re-binding the socket) is up to the driver.
    pub rebind_at: Vec<Duration>,
}

impl ImpairmentConfig {
    /// The same impairments in both directions, no blackholes, no rebinds.
    pub fn symmetric(d: DirectionConfig) -> Self {
        Self {
            to_server: d.clone(),
            to_client: d,
            blackholes: Vec::new(),
            rebind_at: Vec::new(),
        }
    }

    /// Checks every field; the error names the first offending one (for
    /// example `to_client.loss`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.to_server.validate(&TO_SERVER_FIELDS)?;
        self.to_client.validate(&TO_CLIENT_FIELDS)
    }

    /// True when the configuration changes nothing at all: both directions
    /// are clean, there is no blackhole with a non-zero duration, and no
    /// rebinding is scheduled.
    pub fn is_clean(&self) -> bool {
        self.to_server.is_clean()
            && self.to_client.is_clean()
            && self.blackholes.iter().all(|b| b.duration.is_zero())
            && self.rebind_at.is_empty()
    }
}

/// The full names of one direction's fields, so errors can say
/// `to_server.loss` instead of just `loss`.
struct FieldNames {
    loss: &'static str,
    burst: &'static str,
    duplicate: &'static str,
    corrupt: &'static str,
    reorder: &'static str,
}

const TO_SERVER_FIELDS: FieldNames = FieldNames {
    loss: "to_server.loss",
    burst: "to_server.burst",
    duplicate: "to_server.duplicate",
    corrupt: "to_server.corrupt",
    reorder: "to_server.reorder",
};

const TO_CLIENT_FIELDS: FieldNames = FieldNames {
    loss: "to_client.loss",
    burst: "to_client.burst",
    duplicate: "to_client.duplicate",
    corrupt: "to_client.corrupt",
    reorder: "to_client.reorder",
};

/// Why an [`ImpairmentConfig`] was rejected.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A probability is NaN or outside `[0, 1]`.
    ProbabilityOutOfRange {
        /// The offending field, e.g. `to_server.loss`.
        field: &'static str,
        /// The value found there.
        value: f64,
    },
    /// A burst length is negative, infinite or NaN.
    InvalidBurst {
        /// The offending field, e.g. `to_client.burst`.
        field: &'static str,
        /// The value found there.
        value: f64,
    },
    /// No Gilbert–Elliott chain has both this loss rate and this mean burst
    /// length: the good state would have to last less than one datagram.
    BurstInfeasible {
        /// The offending field, e.g. `to_server.burst`.
        field: &'static str,
        /// The configured loss rate of that direction.
        loss: f64,
        /// The configured mean burst length.
        burst: f64,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProbabilityOutOfRange { field, value } => {
                write!(f, "{field} must be a probability in [0, 1], got {value}")
            }
            Self::InvalidBurst { field, value } => {
                write!(f, "{field} must be a finite number >= 0, got {value}")
            }
            Self::BurstInfeasible { field, loss, burst } => write!(
                f,
                "{field} = {burst} cannot be combined with loss {loss}: \
                 loss must be at most burst / (burst + 1) = {:.4}",
                burst / (burst + 1.0)
            ),
        }
    }
}

impl Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(config: &ImpairmentConfig) -> String {
        match config.validate() {
            Ok(()) => panic!("config should have been rejected: {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn default_and_sensible_configs_are_valid() {
        assert_eq!(ImpairmentConfig::default().validate(), Ok(()));
        let d = DirectionConfig {
            loss: 1.0,
            burst: 10.0,
            duplicate: 0.0,
            corrupt: 1.0,
            reorder: 0.5,
            ..DirectionConfig::default()
        };
        assert_eq!(ImpairmentConfig::symmetric(d).validate(), Ok(()));
        // Exactly on the feasibility boundary: good state lasts one datagram.
        let edge = DirectionConfig {
            loss: 0.8,
            burst: 4.0,
            ..DirectionConfig::default()
        };
        assert_eq!(ImpairmentConfig::symmetric(edge).validate(), Ok(()));
    }

    #[test]
    fn bad_loss_is_rejected_and_named() {
        for bad in [1.5, -0.1, f64::NAN, f64::INFINITY] {
            let config = ImpairmentConfig {
                to_client: DirectionConfig::with_loss(bad),
                ..ImpairmentConfig::default()
            };
            let msg = rejected(&config);
            assert!(msg.contains("to_client.loss"), "{msg}");
            assert!(matches!(
                config.validate(),
                Err(ConfigError::ProbabilityOutOfRange {
                    field: "to_client.loss",
                    ..
                })
            ));

            let config = ImpairmentConfig {
                to_server: DirectionConfig::with_loss(bad),
                ..ImpairmentConfig::default()
            };
            assert!(rejected(&config).contains("to_server.loss"));
        }
    }

    #[test]
    fn other_probabilities_are_checked() {
        type Spoil = fn(&mut DirectionConfig);
        let cases: [(&str, Spoil); 3] = [
            ("to_server.duplicate", |d| d.duplicate = 2.0),
            ("to_server.corrupt", |d| d.corrupt = -1.0),
            ("to_server.reorder", |d| d.reorder = f64::NAN),
        ];
        for (field, spoil) in cases {
            let mut config = ImpairmentConfig::default();
            spoil(&mut config.to_server);
            assert!(rejected(&config).contains(field), "{field}");
        }
    }

    #[test]
    fn bad_burst_is_rejected() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let config = ImpairmentConfig {
                to_server: DirectionConfig {
                    burst: bad,
                    ..DirectionConfig::default()
                },
                ..ImpairmentConfig::default()
            };
            assert!(rejected(&config).contains("to_server.burst"));
        }
        // loss 0.6 with bursts of 1.2 would need a good state shorter than
        // one datagram.
        let config = ImpairmentConfig {
            to_client: DirectionConfig {
                loss: 0.6,
                burst: 1.2,
                ..DirectionConfig::default()
            },
            ..ImpairmentConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::BurstInfeasible {
                field: "to_client.burst",
                ..
            })
        ));
    }

    #[test]
    fn clean_means_nothing_happens() {
        assert!(ImpairmentConfig::default().is_clean());
        let with_gap_only = DirectionConfig {
            reorder_gap: Duration::from_millis(5),
            burst: 3.0,
            ..DirectionConfig::default()
        };
        assert!(ImpairmentConfig::symmetric(with_gap_only).is_clean());
        assert!(!ImpairmentConfig::symmetric(DirectionConfig::with_loss(0.1)).is_clean());
        let delayed = ImpairmentConfig {
            to_client: DirectionConfig {
                delay: Duration::from_millis(1),
                ..DirectionConfig::default()
            },
            ..ImpairmentConfig::default()
        };
        assert!(!delayed.is_clean());
        let holed = ImpairmentConfig {
            blackholes: vec![Blackhole {
                start: Duration::ZERO,
                duration: Duration::from_secs(1),
            }],
            ..ImpairmentConfig::default()
        };
        assert!(!holed.is_clean());
        let rebinding = ImpairmentConfig {
            rebind_at: vec![Duration::from_secs(1)],
            ..ImpairmentConfig::default()
        };
        assert!(!rebinding.is_clean());
    }

    #[test]
    fn blackhole_window_is_half_open_and_overflow_safe() {
        let b = Blackhole {
            start: Duration::from_secs(1),
            duration: Duration::from_millis(500),
        };
        assert!(!b.contains(Duration::from_millis(999)));
        assert!(b.contains(Duration::from_secs(1)));
        assert!(b.contains(Duration::from_millis(1499)));
        assert!(!b.contains(Duration::from_millis(1500)));
        let huge = Blackhole {
            start: Duration::MAX,
            duration: Duration::MAX,
        };
        assert!(!huge.contains(Duration::from_secs(1)));
        assert!(huge.contains(Duration::MAX));
    }
}

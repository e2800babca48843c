//! Impairments as people write them: [`ImpairmentSpec`], one definition
//! for command-line flags (`clap`, feature `clap`) and configuration files
//! (`serde`, feature `serde`), turned into the model's [`ImpairmentConfig`].
//!
//! The spec keeps what a person wrote: every setting is optional and in the
//! units people type (milliseconds, probabilities). [`ImpairmentConfig`] is
//! what the model runs: every setting resolved, durations as [`Duration`].
//!
//! Not every front end takes every field:
//!
//! | field | flag | file key |
//! | --- | --- | --- |
//! | `loss`, `burst`, `reorder`, `duplicate`, `corrupt`, `delay_ms`, `jitter_ms` | `--loss` ... | `loss` ... |
//! | `loss_in`, `loss_out` (relative to the end that runs) | `--loss-in`, `--loss-out` | no |
//! | `netem_seed` | `--netem-seed` | no (a suite seeds each run) |
//! | `reorder_gap_ms` | no | `reorder_gap_ms` |
//!
//! The flags check their values as they are parsed ([`probability`],
//! [`millis`], [`burst`]); a file reader checks the values it read and says
//! where they stand in its own words. [`ImpairmentSpec::config`] never
//! panics on unchecked values: out-of-range durations are clamped and the
//! model saturates probabilities ([`ImpairmentConfig::validate`] says what
//! is wrong with them).

use std::time::Duration;

use crate::config::{DirectionConfig, ImpairmentConfig};
use crate::shim::Side;

/// Impairments of one end's link as flags or file keys (see the [module
/// docs](self) for which front end takes which field). The default impairs
/// nothing.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(
    feature = "clap",
    command(next_help_heading = "Impairment (simulated by the lossy-socket shim)"),
    command(group = clap::ArgGroup::new("any_loss").args(["loss", "loss_in", "loss_out"]).multiple(true))
)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct ImpairmentSpec {
    /// Drop this fraction of datagrams in both directions (0.1 = 10%).
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability, env = "RISP_LOSS"))]
    pub loss: Option<f64>,
    /// Loss for datagrams arriving at this end (overrides --loss).
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability))]
    #[cfg_attr(feature = "serde", serde(skip_deserializing))]
    pub loss_in: Option<f64>,
    /// Loss for datagrams leaving this end (overrides --loss).
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability))]
    #[cfg_attr(feature = "serde", serde(skip_deserializing))]
    pub loss_out: Option<f64>,
    /// Mean length of loss bursts in datagrams (Gilbert–Elliott); 0 =
    /// independent. Shapes the loss of --loss, --loss-in or --loss-out, so
    /// it needs one of them.
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "N", value_parser = burst, requires = "any_loss"))]
    pub burst: Option<f64>,
    /// Hold back this fraction of datagrams so later ones overtake them.
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability))]
    pub reorder: Option<f64>,
    /// How long a reordered datagram is held back, in milliseconds (unset
    /// or 0: [`DEFAULT_REORDER_GAP`](crate::DEFAULT_REORDER_GAP)).
    #[cfg_attr(feature = "clap", arg(skip))]
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub reorder_gap_ms: Option<f64>,
    /// Deliver this fraction of datagrams twice.
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability))]
    pub duplicate: Option<f64>,
    /// Flip one bit in this fraction of datagrams.
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability))]
    pub corrupt: Option<f64>,
    /// One-way delay added in each direction, in milliseconds.
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "MS", value_parser = millis))]
    pub delay_ms: Option<f64>,
    /// Uniform random extra delay up to this many milliseconds (reorders).
    #[cfg_attr(feature = "clap", arg(long, allow_negative_numbers = true, value_name = "MS", value_parser = millis))]
    pub jitter_ms: Option<f64>,
    /// Seed for the impairment decisions: same seed, same drops.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", env = "RISP_NETEM_SEED"))]
    #[cfg_attr(feature = "serde", serde(skip_deserializing))]
    pub netem_seed: Option<u64>,
}

impl ImpairmentSpec {
    /// The settings both directions share (`loss`, not `loss_in` or
    /// `loss_out`), unset ones zero.
    pub fn direction(&self) -> DirectionConfig {
        DirectionConfig {
            loss: self.loss.unwrap_or(0.0),
            burst: self.burst.unwrap_or(0.0),
            duplicate: self.duplicate.unwrap_or(0.0),
            corrupt: self.corrupt.unwrap_or(0.0),
            reorder: self.reorder.unwrap_or(0.0),
            reorder_gap: duration_from_ms(self.reorder_gap_ms.unwrap_or(0.0)),
            delay: duration_from_ms(self.delay_ms.unwrap_or(0.0)),
            jitter: duration_from_ms(self.jitter_ms.unwrap_or(0.0)),
        }
    }

    /// The impairment model for a socket on `side` (`loss_in` is the loss
    /// of what it receives, `loss_out` of what it sends), or `None` when
    /// nothing is impaired.
    pub fn config(&self, side: Side) -> Option<ImpairmentConfig> {
        let base = self.direction();
        let mut inbound = base.clone();
        let mut outbound = base;
        if let Some(p) = self.loss_in {
            inbound.loss = p;
        }
        if let Some(p) = self.loss_out {
            outbound.loss = p;
        }
        let (to_server, to_client) = match side {
            Side::Client => (outbound, inbound),
            Side::Server => (inbound, outbound),
        };
        let cfg = ImpairmentConfig {
            to_server,
            to_client,
            ..ImpairmentConfig::default()
        };
        (!cfg.is_clean()).then_some(cfg)
    }

    /// The seed: `netem_seed`, or a random one.
    pub fn seed(&self) -> u64 {
        self.netem_seed.unwrap_or_else(rand::random)
    }

    /// `self`, with every field it leaves unset taken from `base` (one
    /// direction's settings over those of both).
    pub fn or(self, base: &ImpairmentSpec) -> ImpairmentSpec {
        ImpairmentSpec {
            loss: self.loss.or(base.loss),
            loss_in: self.loss_in.or(base.loss_in),
            loss_out: self.loss_out.or(base.loss_out),
            burst: self.burst.or(base.burst),
            reorder: self.reorder.or(base.reorder),
            reorder_gap_ms: self.reorder_gap_ms.or(base.reorder_gap_ms),
            duplicate: self.duplicate.or(base.duplicate),
            corrupt: self.corrupt.or(base.corrupt),
            delay_ms: self.delay_ms.or(base.delay_ms),
            jitter_ms: self.jitter_ms.or(base.jitter_ms),
            netem_seed: self.netem_seed.or(base.netem_seed),
        }
    }

    /// The command-line flags that give this spec, in the order `--help`
    /// lists them (`reorder_gap_ms` has no flag and is left out). The
    /// kernel scripts (`scripts/netns-impair.sh`) take the same flags.
    pub fn to_args(&self) -> Vec<String> {
        let numbers = [
            ("--loss", self.loss),
            ("--loss-in", self.loss_in),
            ("--loss-out", self.loss_out),
            ("--burst", self.burst),
            ("--reorder", self.reorder),
            ("--duplicate", self.duplicate),
            ("--corrupt", self.corrupt),
            ("--delay-ms", self.delay_ms),
            ("--jitter-ms", self.jitter_ms),
        ];
        let mut args = Vec::new();
        for (flag, value) in numbers {
            if let Some(v) = value {
                args.extend([flag.to_string(), v.to_string()]);
            }
        }
        if let Some(seed) = self.netem_seed {
            args.extend(["--netem-seed".to_string(), seed.to_string()]);
        }
        args
    }
}

/// Fractional milliseconds as a duration: negative or NaN is zero, too
/// large for a [`Duration`] is [`Duration::MAX`]. Never panics.
pub fn duration_from_ms(ms: f64) -> Duration {
    if ms.is_nan() || ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)
}

/// Parses a probability in [0, 1] (the value parser of `--loss` and its
/// kin).
pub fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number; expected a probability between 0 and 1"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!(
            "{p} is outside [0, 1]; a probability of 10% is written 0.1"
        ));
    }
    Ok(p)
}

/// Parses a non-negative number of milliseconds, fractions allowed, at
/// most an hour (the value parser of `--delay-ms` and `--jitter-ms`).
pub fn millis(s: &str) -> Result<f64, String> {
    let ms: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of milliseconds"))?;
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!("{s} ms: a time cannot be negative"));
    }
    if ms > 3_600_000.0 {
        return Err(format!("{s} ms is over an hour; that is surely a typo"));
    }
    Ok(ms)
}

/// Parses a mean burst length (1 or more; 0 means independent loss).
pub fn burst(s: &str) -> Result<f64, String> {
    let b: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !b.is_finite() || b < 0.0 {
        return Err(format!("{s}: a mean burst length is 0 (off) or at least 1"));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_with_clear_messages() {
        assert_eq!(probability("0.1"), Ok(0.1));
        assert!(probability("1.5").unwrap_err().contains("outside [0, 1]"));
        assert!(probability("-0.1").unwrap_err().contains("outside"));
        assert!(probability("ten").unwrap_err().contains("not a number"));
        assert!(millis("-5").unwrap_err().contains("negative"));
        assert!(millis("3600001").unwrap_err().contains("over an hour"));
        assert_eq!(millis("2.5"), Ok(2.5));
        assert!(burst("-1").unwrap_err().contains("0 (off)"));
        assert_eq!(burst("4"), Ok(4.0));
    }

    #[test]
    fn in_and_out_map_to_directions_by_side() {
        let a = ImpairmentSpec {
            loss: Some(0.1),
            loss_in: Some(0.3),
            ..ImpairmentSpec::default()
        };
        let c = a.config(Side::Client).unwrap();
        assert_eq!((c.to_server.loss, c.to_client.loss), (0.1, 0.3));
        let s = a.config(Side::Server).unwrap();
        assert_eq!((s.to_server.loss, s.to_client.loss), (0.3, 0.1));
        assert!(ImpairmentSpec::default().config(Side::Client).is_none());
    }

    #[test]
    fn every_setting_reaches_the_model() {
        let spec = ImpairmentSpec {
            loss: Some(0.1),
            burst: Some(3.0),
            reorder: Some(0.2),
            reorder_gap_ms: Some(4.0),
            duplicate: Some(0.3),
            corrupt: Some(0.4),
            delay_ms: Some(2.5),
            jitter_ms: Some(1.0),
            ..ImpairmentSpec::default()
        };
        assert_eq!(
            spec.direction(),
            DirectionConfig {
                loss: 0.1,
                burst: 3.0,
                duplicate: 0.3,
                corrupt: 0.4,
                reorder: 0.2,
                reorder_gap: Duration::from_millis(4),
                delay: Duration::from_micros(2500),
                jitter: Duration::from_millis(1),
            }
        );
        assert_eq!(
            ImpairmentSpec::default().direction(),
            DirectionConfig::default()
        );
    }

    #[test]
    fn one_direction_overrides_both_key_by_key() {
        let both = ImpairmentSpec {
            loss: Some(0.1),
            delay_ms: Some(5.0),
            ..ImpairmentSpec::default()
        };
        let one = ImpairmentSpec {
            loss: Some(0.2),
            ..ImpairmentSpec::default()
        };
        let merged = one.or(&both);
        assert_eq!((merged.loss, merged.delay_ms), (Some(0.2), Some(5.0)));
    }

    #[test]
    fn unchecked_durations_never_panic() {
        for bad in [-1.0, f64::NAN, f64::NEG_INFINITY] {
            assert_eq!(duration_from_ms(bad), Duration::ZERO);
        }
        assert_eq!(duration_from_ms(f64::INFINITY), Duration::MAX);
        assert_eq!(duration_from_ms(1e300), Duration::MAX);
        assert_eq!(duration_from_ms(1.5), Duration::from_micros(1500));
    }

    #[test]
    fn flags_are_listed_in_help_order() {
        let spec = ImpairmentSpec {
            jitter_ms: Some(5.0),
            loss: Some(0.1),
            delay_ms: Some(55.0),
            reorder_gap_ms: Some(3.0),
            ..ImpairmentSpec::default()
        };
        assert_eq!(
            spec.to_args(),
            ["--loss", "0.1", "--delay-ms", "55", "--jitter-ms", "5"]
        );
        assert!(ImpairmentSpec::default().to_args().is_empty());
    }

    /// The flags `to_args` writes are the ones clap reads, value for value.
    #[cfg(feature = "clap")]
    #[test]
    fn to_args_round_trips_through_clap() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            spec: ImpairmentSpec,
        }
        let spec = ImpairmentSpec {
            loss: Some(0.1),
            loss_in: Some(0.2),
            loss_out: Some(0.3),
            burst: Some(2.0),
            reorder: Some(0.05),
            reorder_gap_ms: None,
            duplicate: Some(0.01),
            corrupt: Some(0.02),
            delay_ms: Some(12.5),
            jitter_ms: Some(3.0),
            netem_seed: Some(9),
        };
        let argv = std::iter::once("risp".to_string()).chain(spec.to_args());
        let parsed = <Cli as clap::Parser>::try_parse_from(argv).unwrap();
        assert_eq!(parsed.spec, spec);
    }
}

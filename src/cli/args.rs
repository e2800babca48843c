//! Flags shared by several commands, and their parsers.

use std::time::Duration;

use clap::Args;
use risp_netem::{DirectionConfig, ImpairmentConfig, Side};

/// Parses a probability in [0, 1].
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

/// Parses a non-negative number of milliseconds (fractions allowed).
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

/// Parses a whole number of milliseconds, at least 1 (clap's own range
/// check would say `not in 1..18446744073709551615`).
pub fn positive_ms(s: &str) -> Result<u64, String> {
    let ms: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number of milliseconds"))?;
    if ms == 0 {
        return Err("must be at least 1 ms".to_string());
    }
    Ok(ms)
}

/// Parses an interval-report period in seconds: 0.01 to 3600.
pub fn interval_secs(s: &str) -> Result<f64, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !secs.is_finite() || !(0.01..=3600.0).contains(&secs) {
        return Err(format!("{s} s: an interval is from 0.01 to 3600 seconds"));
    }
    Ok(secs)
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

/// Converts fractional milliseconds to a duration.
pub fn ms_to_duration(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1000.0)
}

/// Impairments applied by the lossy-socket shim on this end's socket.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Impairment (simulated by the lossy-socket shim)")]
#[command(group = clap::ArgGroup::new("any_loss").args(["loss", "loss_in", "loss_out"]).multiple(true))]
pub struct NetemArgs {
    /// Drop this fraction of datagrams in both directions (0.1 = 10%).
    #[arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability, env = "RISP_LOSS")]
    pub loss: Option<f64>,
    /// Loss for datagrams arriving at this end (overrides --loss).
    #[arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability)]
    pub loss_in: Option<f64>,
    /// Loss for datagrams leaving this end (overrides --loss).
    #[arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability)]
    pub loss_out: Option<f64>,
    /// Mean length of loss bursts in datagrams (Gilbert–Elliott); 0 =
    /// independent. Shapes the loss of --loss, --loss-in or --loss-out, so
    /// it needs one of them.
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = burst, requires = "any_loss")]
    pub burst: Option<f64>,
    /// Hold back this fraction of datagrams so later ones overtake them.
    #[arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability)]
    pub reorder: Option<f64>,
    /// Deliver this fraction of datagrams twice.
    #[arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability)]
    pub duplicate: Option<f64>,
    /// Flip one bit in this fraction of datagrams.
    #[arg(long, allow_negative_numbers = true, value_name = "P", value_parser = probability)]
    pub corrupt: Option<f64>,
    /// One-way delay added in each direction, in milliseconds.
    #[arg(long, allow_negative_numbers = true, value_name = "MS", value_parser = millis)]
    pub delay_ms: Option<f64>,
    /// Uniform random extra delay up to this many milliseconds (reorders).
    #[arg(long, allow_negative_numbers = true, value_name = "MS", value_parser = millis)]
    pub jitter_ms: Option<f64>,
    /// Seed for the impairment decisions: same seed, same drops.
    #[arg(long, value_name = "N", env = "RISP_NETEM_SEED")]
    pub netem_seed: Option<u64>,
}

impl NetemArgs {
    /// The impairment model for a socket on `side`, or None when nothing is
    /// impaired.
    pub fn config(&self, side: Side) -> Option<ImpairmentConfig> {
        let base = DirectionConfig {
            loss: self.loss.unwrap_or(0.0),
            burst: self.burst.unwrap_or(0.0),
            duplicate: self.duplicate.unwrap_or(0.0),
            corrupt: self.corrupt.unwrap_or(0.0),
            reorder: self.reorder.unwrap_or(0.0),
            delay: ms_to_duration(self.delay_ms.unwrap_or(0.0)),
            jitter: ms_to_duration(self.jitter_ms.unwrap_or(0.0)),
            ..DirectionConfig::default()
        };
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

    /// The seed: the flag's, or a random one.
    pub fn seed(&self) -> u64 {
        self.netem_seed.unwrap_or_else(rand::random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_checked_with_clear_messages() {
        assert_eq!(probability("0.1"), Ok(0.1));
        assert!(probability("1.5").unwrap_err().contains("outside [0, 1]"));
        assert!(probability("-0.1").unwrap_err().contains("outside"));
        assert!(probability("ten").unwrap_err().contains("not a number"));
        assert!(millis("-5").unwrap_err().contains("negative"));
        assert_eq!(millis("2.5"), Ok(2.5));
        assert_eq!(positive_ms("0"), Err("must be at least 1 ms".to_string()));
        assert_eq!(positive_ms("5"), Ok(5));
    }

    #[test]
    fn in_and_out_map_to_directions_by_side() {
        let a = NetemArgs {
            loss: Some(0.1),
            loss_in: Some(0.3),
            ..NetemArgs::default()
        };
        let c = a.config(Side::Client).unwrap();
        assert_eq!((c.to_server.loss, c.to_client.loss), (0.1, 0.3));
        let s = a.config(Side::Server).unwrap();
        assert_eq!((s.to_server.loss, s.to_client.loss), (0.3, 0.1));
        assert!(NetemArgs::default().config(Side::Client).is_none());
    }
}

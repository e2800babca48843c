//! Flags shared by several commands, and their parsers.

// The impairment flags are `risp_netem::ImpairmentSpec`'s, with their
// parsers; other flags in milliseconds or probabilities share the parsers.
pub use risp_netem::spec::{millis, probability};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_with_clear_messages() {
        assert_eq!(positive_ms("0"), Err("must be at least 1 ms".to_string()));
        assert_eq!(positive_ms("5"), Ok(5));
        assert!(interval_secs("0").unwrap_err().contains("0.01 to 3600"));
        assert_eq!(interval_secs("0.5"), Ok(0.5));
    }
}

//! Percentile summaries and human-readable durations.
//!
//! An average hides the tail where retransmission and head-of-line blocking
//! live, so the one-line summary always shows the spectrum: p50, p90, p99,
//! p99.9 and max, each in the unit that keeps it short (µs, ms or s).

use hdrhistogram::Histogram;

/// The headline numbers of one histogram, all in microseconds.
///
/// In JSON, an empty histogram's figures (`min_us` to `mean_us`) are
/// `null`: it has no median, and 0 would read as a measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample (lowest value of its bucket).
    pub min_us: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample (highest value of its bucket).
    pub max_us: u64,
    /// Arithmetic mean.
    pub mean_us: f64,
}

impl serde::Serialize for Summary {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let some = self.count > 0;
        let mut st = ser.serialize_struct("Summary", 8)?;
        st.serialize_field("count", &self.count)?;
        st.serialize_field("min_us", &some.then_some(self.min_us))?;
        st.serialize_field("p50_us", &some.then_some(self.p50_us))?;
        st.serialize_field("p90_us", &some.then_some(self.p90_us))?;
        st.serialize_field("p99_us", &some.then_some(self.p99_us))?;
        st.serialize_field("p999_us", &some.then_some(self.p999_us))?;
        st.serialize_field("max_us", &some.then_some(self.max_us))?;
        st.serialize_field("mean_us", &some.then_some(self.mean_us))?;
        st.end()
    }
}

impl Summary {
    /// Summarise an HdrHistogram with values in microseconds; all zero when
    /// it is empty.
    pub fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        Summary {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }

    /// One line for humans: `p50 1.23ms  p90 …  p99 …  p99.9 …  max …`.
    pub fn format_row(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            format_duration_us(self.p50_us),
            format_duration_us(self.p90_us),
            format_duration_us(self.p99_us),
            format_duration_us(self.p999_us),
            format_duration_us(self.max_us),
        )
    }
}

/// `x` with three significant digits (at least the integer part).
fn three_significant(x: f64) -> String {
    for decimals in [2usize, 1] {
        let s = format!("{x:.decimals$}");
        let limit = if decimals == 2 { 10.0 } else { 100.0 };
        if s.parse::<f64>().is_ok_and(|v| v < limit) {
            return s;
        }
    }
    format!("{x:.0}")
}

/// A duration given in microseconds, in the unit that reads best:
/// `850µs`, `1.23ms`, `12.3ms`, `123ms`, `1.23s`, `75.0s`.
pub fn format_duration_us(us: u64) -> String {
    if us < 1_000 {
        return format!("{us}µs");
    }
    let ms = us as f64 / 1_000.0;
    let ms_text = three_significant(ms);
    if ms_text.parse::<f64>().is_ok_and(|v| v < 1_000.0) {
        return format!("{ms_text}ms");
    }
    format!("{}s", three_significant(us as f64 / 1_000_000.0))
}

/// Parse what [`format_duration_us`] prints back into microseconds (the
/// inverse up to its rounding). Used by tests and scripts reading tables.
pub fn parse_duration_us(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("µs") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000_000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_pick_the_unit_that_reads_best() {
        assert_eq!(format_duration_us(0), "0µs");
        assert_eq!(format_duration_us(999), "999µs");
        assert_eq!(format_duration_us(1_000), "1.00ms");
        assert_eq!(format_duration_us(1_234), "1.23ms");
        assert_eq!(format_duration_us(12_345), "12.3ms");
        assert_eq!(format_duration_us(123_456), "123ms");
        // Rounding up to 1000 ms switches to seconds rather than "1000ms".
        assert_eq!(format_duration_us(999_900), "1.00s");
        assert_eq!(format_duration_us(75_000_000), "75.0s");
        assert_eq!(format_duration_us(9_999_000), "10.0s");
    }

    #[test]
    fn parse_inverts_format() {
        for us in [0u64, 7, 999, 1_000, 4_567, 45_678, 456_789, 4_567_890] {
            let back = parse_duration_us(&format_duration_us(us)).unwrap();
            assert!(
                (back - us as f64).abs() <= us as f64 * 0.005 + 0.5,
                "{us} -> {back}"
            );
        }
        assert_eq!(parse_duration_us("12 parsecs"), None);
    }

    #[test]
    fn row_lists_the_spectrum_with_units() {
        let s = Summary {
            count: 10,
            min_us: 5,
            p50_us: 1_200,
            p90_us: 2_500,
            p99_us: 40_000,
            p999_us: 1_500_000,
            max_us: 2_000_000,
            mean_us: 3_000.0,
        };
        assert_eq!(
            s.format_row(),
            "p50 1.20ms  p90 2.50ms  p99 40.0ms  p99.9 1.50s  max 2.00s"
        );
    }
}

#[cfg(test)]
mod serialize_tests {
    use super::Summary;

    #[test]
    fn empty_summary_serialises_null_figures() {
        let j = serde_json::to_value(Summary::default()).unwrap();
        assert_eq!(j["count"], 0);
        for k in [
            "min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "mean_us",
        ] {
            assert!(j[k].is_null(), "{k}: {j}");
        }
        let s = Summary {
            count: 1,
            p50_us: 7,
            ..Summary::default()
        };
        assert_eq!(serde_json::to_value(s).unwrap()["p50_us"], 7);
    }
}

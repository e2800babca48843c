//! The HdrHistogram percentile-distribution text (`.hgrm`).
//!
//! This is the format printed by HdrHistogram's
//! `outputPercentileDistribution` and by wrk2, and read by the HdrHistogram
//! plotter, so users can feed our files to tools they already have. It is a
//! summary, not a dump: rows sit at percentile ticks (5 per half-distance to
//! 100 %), each giving the value reached and the cumulative count. Reading it
//! back puts each row's new samples at that row's value, so the result is
//! exact at every printed percentile and, between rows, rounded up to the
//! next row. For a lossless copy use the interval log (`.hlog`).

use std::io::Write;

use super::error::StatsError;
use super::histogram::{LatencyHistogram, MAX_RECORDABLE_US, SIGNIFICANT_DIGITS};

/// Percentile ticks per half-distance to 100 %, as wrk2 and the HdrHistogram
/// examples use.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The column header line of an `.hgrm` file (without the newline).
pub const HGRM_HEADER: &str = "       Value     Percentile TotalCount 1/(1-Percentile)";

/// Write `h` as HdrHistogram percentile-distribution text, values in
/// microseconds (output scaling ratio 1.0).
pub fn write_hgrm(h: &LatencyHistogram, w: &mut impl Write) -> Result<(), StatsError> {
    let text = hgrm_text(h);
    w.write_all(text.as_bytes()).map_err(StatsError::write)?;
    w.flush().map_err(StatsError::write)
}

/// The `.hgrm` text of `h`, built in memory (writing it is then one call).
fn hgrm_text(h: &LatencyHistogram) -> String {
    use std::fmt::Write as _;
    let hist = h.inner();
    let d = usize::from(SIGNIFICANT_DIGITS);
    let mut out = String::new();
    // Writing into a String cannot fail; the results are ignored on purpose.
    let _ = write!(out, "{HGRM_HEADER}\n\n");
    let mut total_to_here: u64 = 0;
    for v in hist.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total_to_here = total_to_here.saturating_add(v.count_since_last_iteration());
        let value = v.value_iterated_to() as f64;
        let p = v.quantile_iterated_to();
        if p < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.d$} {p:2.12} {total_to_here:10} {:14.2}",
                1.0 / (1.0 - p)
            );
        } else {
            let _ = writeln!(out, "{value:12.d$} {p:2.12} {total_to_here:10}");
        }
    }
    let (mean, stdev, max) = if hist.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (hist.mean(), hist.stdev(), hist.max() as f64)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.d$}, StdDeviation   = {stdev:12.d$}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.d$}, Total count    = {:12}]",
        hist.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        hist.buckets(),
        sub_bucket_count()
    );
    out
}

/// Sub-buckets per bucket for our configuration: the smallest power of two
/// ≥ 2 × 10^digits (2048 for 3 digits), as HdrHistogram defines it.
fn sub_bucket_count() -> u64 {
    let needed = 2 * 10u64.pow(u32::from(SIGNIFICANT_DIGITS));
    needed.next_power_of_two()
}

/// True when `line` is the `.hgrm` column header (ours, Java's or wrk2's).
pub(crate) fn is_header(line: &str) -> bool {
    line.contains("Value") && line.contains("Percentile") && line.contains("TotalCount")
}

/// Parse one numeric field, naming it in the error.
fn field<T: std::str::FromStr>(text: &str, name: &str, line: usize) -> Result<T, StatsError> {
    text.parse::<T>()
        .map_err(|_| StatsError::malformed(line, format!("{name} {text:?} is not a number")))
}

/// The unit of the Value column of a foreign `.hgrm` file (ours are in
/// microseconds; wrk2 writes milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HgrmUnit {
    /// Milliseconds (wrk2).
    Ms,
    /// Microseconds (ours, the default).
    #[default]
    Us,
    /// Nanoseconds.
    Ns,
}

impl HgrmUnit {
    /// Microseconds per unit.
    pub fn to_us(self, value: f64) -> f64 {
        match self {
            Self::Ms => value * 1000.0,
            Self::Us => value,
            Self::Ns => value / 1000.0,
        }
    }
}

/// Rebuild a histogram from `.hgrm` text with values in microseconds; see
/// [`read_hgrm_in`].
pub fn read_hgrm(text: &str) -> Result<LatencyHistogram, StatsError> {
    read_hgrm_in(text, HgrmUnit::Us)
}

/// Rebuild a histogram from `.hgrm` text whose Value column is in `unit`:
/// each row's increase of the TotalCount column is recorded at that row's
/// value (converted to microseconds).
///
/// Lines before the column header are ignored (wrk2 prints a preamble);
/// rows end at the first `#` line. The `#[Max = ..., Total count = N]`
/// footer is required and must agree with the last row: without it a
/// truncated file cannot be told from a whole one, and its numbers would
/// be silently wrong.
pub fn read_hgrm_in(text: &str, unit: HgrmUnit) -> Result<LatencyHistogram, StatsError> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
    if !lines.by_ref().any(|(_, l)| is_header(l)) {
        return Err(StatsError::malformed(
            0,
            "no percentile table header (\"Value Percentile TotalCount ...\")",
        ));
    }
    let mut hist = LatencyHistogram::new();
    let mut last_total: u64 = 0;
    let mut last_value: f64 = 0.0;
    let mut last_percentile: f64 = 0.0;
    let mut rows = 0usize;
    let mut footer_total: Option<(usize, u64)> = None;
    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            if let Some(total) = footer_total_count(rest, n)? {
                footer_total = Some((n, total));
            }
            continue;
        }
        if footer_total.is_some() || line.starts_with('-') {
            // Past the table (wrk2 appends its own summary after the footer).
            break;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&fields.len()) {
            return Err(StatsError::malformed(
                n,
                format!("expected 3 or 4 columns (Value Percentile TotalCount [1/(1-Percentile)]), found {}", fields.len()),
            ));
        }
        let value: f64 = field(fields[0], "Value", n)?;
        let percentile: f64 = field(fields[1], "Percentile", n)?;
        let total: u64 = field(fields[2], "TotalCount", n)?;
        if !value.is_finite() || value < 0.0 {
            return Err(StatsError::malformed(
                n,
                format!("Value {value} is not a latency"),
            ));
        }
        if !(0.0..=1.0).contains(&percentile) {
            return Err(StatsError::malformed(
                n,
                format!("Percentile {percentile} is outside 0..1"),
            ));
        }
        if total < last_total || value < last_value || percentile < last_percentile {
            return Err(StatsError::malformed(
                n,
                "rows must not decrease in Value, Percentile or TotalCount",
            ));
        }
        let delta = total - last_total;
        if delta > 0 {
            let value = unit.to_us(value);
            let us = if value >= MAX_RECORDABLE_US as f64 {
                MAX_RECORDABLE_US
            } else {
                value.round() as u64
            };
            hist.record_us_n(us, delta);
        }
        last_total = total;
        last_value = value;
        last_percentile = percentile;
        rows += 1;
    }
    if let Some((n, total)) = footer_total {
        if total != last_total {
            return Err(StatsError::malformed(
                n,
                format!("footer says {total} samples but the rows add up to {last_total} (truncated or edited file?)"),
            ));
        }
    } else if rows == 0 {
        return Err(StatsError::malformed(0, "percentile table has no rows"));
    } else {
        let lines = text.lines().count();
        return Err(StatsError::malformed(
            lines,
            "no \"#[Max = ..., Total count = ...]\" footer after the rows: the file is truncated",
        ));
    }
    Ok(hist)
}

/// The `Total count` of a `#[Max = ..., Total count = N]` footer line
/// (given without its leading `#`), if this is that line.
fn footer_total_count(rest: &str, line: usize) -> Result<Option<u64>, StatsError> {
    let Some(pos) = rest.find("Total count") else {
        return Ok(None);
    };
    let after = &rest[pos + "Total count".len()..];
    let number = after
        .trim_start()
        .trim_start_matches('=')
        .trim()
        .trim_end_matches(']')
        .trim();
    field::<u64>(number, "Total count", line).map(Some)
}

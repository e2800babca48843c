//! The Prometheus text exposition format, version 0.0.4, written by hand.
//!
//! What a scrape needs is small: per metric family a `# HELP` and a
//! `# TYPE` line, then one sample per line, `name{label="value",...} value`,
//! with the label values and help text escaped. Histograms are a family of
//! cumulative `_bucket{le="..."}` samples ending at `le="+Inf"`, then
//! `_sum` and `_count`. A crate for this would bring a registry, global
//! state and a dozen dependencies; [`Exposition`] is a string builder.
//!
//! Metric and label names are the program's own constants; they are checked
//! in debug builds (and by the tests, which parse every page with a real
//! parser), never escaped.

use std::fmt::Write as _;
use std::time::Duration;

use crate::net::metrics::Buckets;

/// The `Content-Type` of a page in this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type, as the `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, sum and count.
    Histogram,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A sample's value: an exact integer or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Counts (printed exactly, whatever their size).
    Int(u64),
    /// Anything else (`NaN`, `+Inf` and `-Inf` printed as Prometheus spells
    /// them).
    Float(f64),
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}

/// A page being written. Start each family with [`family`](Self::family)
/// (or use the one-sample helpers), then add its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        self.text.push_str("# HELP ");
        self.text.push_str(name);
        self.text.push(' ');
        escape_into(&mut self.text, help, false);
        self.text.push('\n');
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
    }

    /// One sample line of the family opened last.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Into<Value>) {
        debug_assert!(is_metric_name(name), "bad metric name {name:?}");
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(k), "bad label name {k:?}");
                if i > 0 {
                    self.text.push(',');
                }
                self.text.push_str(k);
                self.text.push_str("=\"");
                escape_into(&mut self.text, v, true);
                self.text.push('"');
            }
            self.text.push('}');
        }
        self.text.push(' ');
        write_value(&mut self.text, value.into());
        self.text.push('\n');
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, MetricType::Counter, help);
        self.sample(name, &[], value);
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Into<Value>) {
        self.family(name, MetricType::Gauge, help);
        self.sample(name, &[], value);
    }

    /// A histogram family of durations, in seconds: `NAME_bucket` for
    /// every bound and `+Inf`, `NAME_sum`, `NAME_count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Buckets) {
        self.family(name, MetricType::Histogram, help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in h.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_string(), |b| seconds(b).to_string());
            self.sample(&bucket, &[("le", &le)], count);
        }
        self.sample(&format!("{name}_sum"), &[], seconds(h.sum()));
        self.sample(&format!("{name}_count"), &[], h.count());
    }

    /// The page.
    pub fn finish(self) -> String {
        self.text
    }
}

/// A duration in seconds, as Prometheus wants durations.
fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn write_value(out: &mut String, v: Value) {
    match v {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        Value::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        // Rust prints finite floats in plain decimal, the shortest form that
        // reads back to the same value: a valid Go float.
        Value::Float(f) => {
            let _ = write!(out, "{f}");
        }
    }
}

/// Appends `s` escaped: backslash and newline always, double quote in
/// label values.
fn escape_into(out: &mut String, s: &str, label_value: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label_value => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `page` with the `prometheus-parse` crate, checking first that
    /// every line is a comment or one sample (that parser skips lines it
    /// cannot read instead of failing).
    fn parse(page: &str) -> prometheus_parse::Scrape {
        assert!(page.ends_with('\n'), "a page ends with a newline");
        let lines: Vec<_> = page.lines().map(|l| Ok(l.to_string())).collect();
        let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).expect("parses");
        let sample_lines = page
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        let parsed: usize = scrape
            .samples
            .iter()
            .map(|s| match &s.value {
                // Buckets are folded into one sample; `_sum` and `_count`
                // are samples of their own.
                prometheus_parse::Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        assert_eq!(parsed, sample_lines, "every sample line parsed:\n{page}");
        scrape
    }

    #[test]
    fn counters_and_gauges_carry_help_type_and_value() {
        let mut e = Exposition::new();
        e.counter("risp_things_total", "Things seen.", 42);
        e.gauge("risp_level", "A level.", 0.5);
        e.gauge("risp_big", "Exact integers.", u64::MAX);
        let page = e.finish();
        assert_eq!(
            page,
            "# HELP risp_things_total Things seen.\n# TYPE risp_things_total counter\nrisp_things_total 42\n\
             # HELP risp_level A level.\n# TYPE risp_level gauge\nrisp_level 0.5\n\
             # HELP risp_big Exact integers.\n# TYPE risp_big gauge\nrisp_big 18446744073709551615\n"
        );
        let scrape = parse(&page);
        let things = &scrape.samples[0];
        assert_eq!(things.metric, "risp_things_total");
        assert_eq!(things.value, prometheus_parse::Value::Counter(42.0));
        assert_eq!(scrape.samples[1].value, prometheus_parse::Value::Gauge(0.5));
        assert_eq!(scrape.docs["risp_level"], "A level.");
    }

    #[test]
    fn labels_are_written_in_order_and_their_values_escaped() {
        let mut e = Exposition::new();
        e.family(
            "risp_x_total",
            MetricType::Counter,
            "Help with \\ and\nnewline.",
        );
        e.sample(
            "risp_x_total",
            &[("reason", "a\"b\\c\nd"), ("kind", "k")],
            1u64,
        );
        let page = e.finish();
        assert!(
            page.contains("# HELP risp_x_total Help with \\\\ and\\nnewline.\n"),
            "{page}"
        );
        assert!(
            page.contains("risp_x_total{reason=\"a\\\"b\\\\c\\nd\",kind=\"k\"} 1\n"),
            "{page}"
        );
        // One line per sample whatever the values held.
        assert_eq!(page.lines().count(), 3);
    }

    #[test]
    fn special_floats_are_spelled_as_prometheus_spells_them() {
        let mut out = String::new();
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e-7,
            2.5e21,
            -0.25,
        ] {
            write_value(&mut out, Value::Float(v));
            out.push(' ');
        }
        assert_eq!(out, "NaN +Inf -Inf 0.0000001 2500000000000000000000 -0.25 ");
        // Finite values read back exactly.
        for v in [1e-7, 2.5e21, -0.25, 0.1 + 0.2, f64::MAX, f64::MIN_POSITIVE] {
            let mut s = String::new();
            write_value(&mut s, Value::Float(v));
            assert_eq!(s.parse::<f64>(), Ok(v), "{s}");
        }
    }

    #[test]
    fn histograms_have_cumulative_buckets_ending_at_inf_then_sum_and_count() {
        let mut h = Buckets::default();
        for us in [50, 300, 300, 20_000, 30_000_000] {
            h.record(Duration::from_micros(us));
        }
        let mut e = Exposition::new();
        e.histogram("risp_rtt_seconds", "RTT.", &h);
        let page = e.finish();
        assert!(
            page.contains("# TYPE risp_rtt_seconds histogram\n"),
            "{page}"
        );
        assert!(
            page.contains("risp_rtt_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("risp_rtt_seconds_bucket{le=\"0.00025\"} 1\n"),
            "{page}"
        );
        assert!(
            page.contains("risp_rtt_seconds_bucket{le=\"0.0005\"} 3\n"),
            "{page}"
        );
        assert!(
            page.contains("risp_rtt_seconds_bucket{le=\"10\"} 4\n"),
            "{page}"
        );
        assert!(
            page.contains("risp_rtt_seconds_bucket{le=\"+Inf\"} 5\n"),
            "{page}"
        );
        assert!(page.contains("risp_rtt_seconds_sum 30.02065\n"), "{page}");
        assert!(page.ends_with("risp_rtt_seconds_count 5\n"), "{page}");

        let scrape = parse(&page);
        let hist = scrape
            .samples
            .iter()
            .find(|s| s.metric == "risp_rtt_seconds")
            .expect("the histogram");
        let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
            panic!("not a histogram: {hist:?}");
        };
        assert_eq!(buckets.len(), 17);
        assert!(buckets.windows(2).all(|w| w[0].less_than < w[1].less_than));
        assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
        let last = buckets.last().expect("buckets");
        assert!(last.less_than.is_infinite());
        assert_eq!(last.count, 5.0);
    }

    #[test]
    fn names_are_checked_against_the_format() {
        for good in ["a", "risp_x_total", "_x", "a:b", "A9"] {
            assert!(is_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!is_metric_name(bad), "{bad}");
        }
        for good in ["le", "reason", "_x", "a9"] {
            assert!(is_label_name(good), "{good}");
        }
        for bad in ["", "__name__", "a:b", "9", "a-b"] {
            assert!(!is_label_name(bad), "{bad}");
        }
    }
}

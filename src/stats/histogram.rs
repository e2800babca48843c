//! Recording latencies: [`LatencyHistogram`].
//!
//! A latency histogram must hold millions of samples in constant memory and
//! still answer "what was the 99.9th percentile" to a known precision, which
//! is exactly what HdrHistogram does. We fix the configuration once
//! (microseconds, 3 significant digits, auto-resizing) so that every
//! histogram this program writes has the same bucket layout and any two can
//! be merged without loss.
//!
//! For the interval log (`.hlog`) the histogram can also keep one small
//! histogram per second of the caller's clock ([`LatencyHistogram::record_at`]).
//! Only the second currently being filled is a full HdrHistogram; finished
//! seconds are kept as sparse `(value, count)` lists, so an hour-long run
//! costs memory in proportion to the distinct latencies seen, not 3600 full
//! count arrays.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::summary::Summary;

/// Significant decimal digits kept for every value (relative error ≤ 0.1 %).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Largest latency recorded, in microseconds (2^40 µs, about 12.7 days).
/// Larger values are clamped to it: a latency that long is a bug or a
/// hostile file, and clamping bounds the histogram's memory.
pub const MAX_RECORDABLE_US: u64 = 1 << 40;

/// A sparse list of `(value in µs, count)` pairs, sorted by value.
pub(crate) type SparseCounts = Vec<(u64, u64)>;

/// A fresh histogram with this module's fixed configuration.
pub(crate) fn new_hdr() -> Histogram<u64> {
    // Invariant: 3 significant digits is within hdrhistogram's accepted 0..=5,
    // so construction cannot fail.
    let mut h = Histogram::<u64>::new(SIGNIFICANT_DIGITS)
        .expect("3 significant digits is a valid HdrHistogram configuration");
    h.auto(true);
    h
}

/// Record `count` samples of `us` microseconds into `h`, clamping instead of
/// failing.
pub(crate) fn record_hdr(h: &mut Histogram<u64>, us: u64, count: u64) {
    let us = us.min(MAX_RECORDABLE_US);
    if h.record_n(us, count).is_err() {
        // Only reachable if the histogram cannot grow (resize disabled or
        // the count array would not fit in usize): keep the sample anyway.
        h.saturating_record_n(us, count);
    }
}

/// Add every recorded value of `src` into `dst`, re-recording value by value
/// if the fast path fails (different layouts from foreign files).
pub(crate) fn add_hdr(dst: &mut Histogram<u64>, src: &Histogram<u64>) {
    if dst.add(src).is_err() {
        for v in src.iter_recorded() {
            record_hdr(dst, v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// The recorded values of `h` as a sparse list.
pub(crate) fn sparse_of(h: &Histogram<u64>) -> SparseCounts {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Merge two sorted sparse lists, adding counts of equal values.
fn merge_sparse(a: &[(u64, u64)], b: &[(u64, u64)]) -> SparseCounts {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(&(va, ca)), Some(&(vb, cb))) if va == vb => {
                out.push((va, ca.saturating_add(cb)));
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&(vb, _))) if x.0 < vb => {
                out.push(x);
                i += 1;
            }
            (_, Some(&y)) => {
                out.push(y);
                j += 1;
            }
            (Some(&x), None) => {
                out.push(x);
                i += 1;
            }
            (None, None) => break,
        }
    }
    out
}

/// Convert a duration to whole microseconds, saturating.
pub fn duration_to_us(d: Duration) -> u64 {
    // Not `as_micros()`: its u128 division is a library call, and this runs
    // for every value a client receives.
    d.as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from(d.subsec_micros()))
}

/// A duration in milliseconds, fractions kept (for reports and messages).
pub fn duration_to_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A latency histogram in microseconds (HdrHistogram, 3 significant digits,
/// auto-resizing), optionally with a one-second interval series for `.hlog`.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    /// Every sample ever recorded or merged in: what summaries, `.hgrm` and
    /// plots are made from.
    total: Histogram<u64>,
    /// Finished one-second intervals, keyed by whole seconds since the start
    /// of the run. Kept sparse to bound memory on long runs.
    closed: BTreeMap<u64, SparseCounts>,
    /// The second currently being filled by `record_at`, as a full histogram
    /// because samples arrive into it one by one.
    open: Option<(u64, Histogram<u64>)>,
    /// Samples that went into the interval series (closed + open), to tell
    /// whether the series covers every sample in `total`.
    interval_samples: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            total: new_hdr(),
            closed: BTreeMap::new(),
            open: None,
            interval_samples: 0,
        }
    }

    /// Record one latency. Durations beyond [`MAX_RECORDABLE_US`] are
    /// clamped; this never panics.
    pub fn record(&mut self, value: Duration) {
        self.record_us(duration_to_us(value));
    }

    /// Record one latency given in microseconds (clamped like [`Self::record`]).
    pub fn record_us(&mut self, us: u64) {
        record_hdr(&mut self.total, us, 1);
    }

    /// Record one latency observed `at` (time since the start of the run on
    /// the caller's clock), also feeding the one-second interval series
    /// written to `.hlog`.
    ///
    /// Samples are expected in roughly increasing `at`: once a later second
    /// has started, a sample stamped with an earlier second is counted in
    /// the current second rather than reopening a finished one.
    pub fn record_at(&mut self, at: Duration, value: Duration) {
        let us = duration_to_us(value);
        self.record_us(us);
        let second = at.as_secs();
        match &mut self.open {
            // The common case, in place: the open second goes on.
            Some((s, h)) if second <= *s => record_hdr(h, us, 1),
            _ => {
                if let Some((s, h)) = self.open.take() {
                    self.close_interval(s, &h);
                }
                let mut h = new_hdr();
                record_hdr(&mut h, us, 1);
                self.open = Some((second, h));
            }
        }
        self.interval_samples = self.interval_samples.saturating_add(1);
    }

    /// Move a finished interval into the sparse store.
    fn close_interval(&mut self, second: u64, h: &Histogram<u64>) {
        self.add_sparse_interval(second, &sparse_of(h));
    }

    /// Add sparse counts to the closed interval `second` (without touching
    /// `interval_samples`).
    fn add_sparse_interval(&mut self, second: u64, counts: &[(u64, u64)]) {
        let entry = self.closed.entry(second).or_default();
        *entry = merge_sparse(entry, counts);
    }

    /// Add a whole interval (used when reading an `.hlog` back): its samples
    /// go both into the total and the interval series.
    pub(crate) fn add_interval(&mut self, second: u64, h: &Histogram<u64>) {
        add_hdr(&mut self.total, h);
        self.add_sparse_interval(second, &sparse_of(h));
        self.interval_samples = self.interval_samples.saturating_add(h.len());
    }

    /// Add every sample of `h` to the total only (no interval information).
    pub(crate) fn add_total(&mut self, h: &Histogram<u64>) {
        add_hdr(&mut self.total, h);
    }

    /// Record `count` samples of `us` into the total only.
    pub(crate) fn record_us_n(&mut self, us: u64, count: u64) {
        record_hdr(&mut self.total, us, count);
    }

    /// Add all samples of `other` to this histogram, including its interval
    /// series (intervals of the same second are added together).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        add_hdr(&mut self.total, &other.total);
        for (&second, counts) in &other.closed {
            self.add_series_counts(second, counts);
        }
        if let Some((second, h)) = &other.open {
            self.add_series_counts(*second, &sparse_of(h));
        }
        self.interval_samples = self.interval_samples.saturating_add(other.interval_samples);
    }

    /// Add interval counts of `second`, into the open interval if it is that
    /// second, else into the closed store.
    fn add_series_counts(&mut self, second: u64, counts: &[(u64, u64)]) {
        match &mut self.open {
            Some((s, h)) if *s == second => {
                for &(v, c) in counts {
                    record_hdr(h, v, c);
                }
            }
            _ => self.add_sparse_interval(second, counts),
        }
    }

    /// Number of samples recorded.
    pub fn len(&self) -> u64 {
        self.total.len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.total.is_empty()
    }

    /// count, min, p50, p90, p99, p99.9, max and mean, in microseconds.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.total)
    }

    /// The underlying HdrHistogram of all samples (values in microseconds).
    pub fn inner(&self) -> &Histogram<u64> {
        &self.total
    }

    /// The latency at quantile `q` (0.0..=1.0) in microseconds: the highest
    /// value equivalent to the sample at that rank; 0 when empty.
    pub fn value_at_quantile(&self, q: f64) -> u64 {
        if self.is_empty() {
            0
        } else {
            self.total.value_at_quantile(q)
        }
    }

    /// True when every sample also sits in the one-second interval series,
    /// i.e. everything was recorded with [`Self::record_at`] (or merged from
    /// histograms that were). Only then does `.hlog` get one interval per
    /// second; otherwise it gets a single interval with all samples.
    pub fn has_interval_series(&self) -> bool {
        self.interval_samples > 0 && self.interval_samples == self.total.len()
    }

    /// Number of distinct seconds in the interval series.
    pub fn interval_count(&self) -> usize {
        let open_extra = match &self.open {
            Some((s, _)) if !self.closed.contains_key(s) => 1,
            _ => 0,
        };
        self.closed.len() + open_extra
    }

    /// Visit the interval series in increasing second order, building one
    /// full histogram at a time (so memory stays bounded).
    pub(crate) fn for_each_interval<E>(
        &self,
        mut f: impl FnMut(u64, &Histogram<u64>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut seconds: Vec<u64> = self.closed.keys().copied().collect();
        if let Some((s, _)) = &self.open {
            if !self.closed.contains_key(s) {
                seconds.push(*s);
                seconds.sort_unstable();
            }
        }
        for second in seconds {
            let mut h = new_hdr();
            if let Some(counts) = self.closed.get(&second) {
                for &(v, c) in counts {
                    record_hdr(&mut h, v, c);
                }
            }
            if let Some((s, oh)) = &self.open {
                if *s == second {
                    add_hdr(&mut h, oh);
                }
            }
            f(second, &h)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_convert_to_whole_microseconds() {
        assert_eq!(duration_to_us(Duration::from_nanos(999)), 0);
        assert_eq!(duration_to_us(Duration::from_nanos(1_999)), 1);
        assert_eq!(duration_to_us(Duration::from_millis(1_500)), 1_500_000);
        assert_eq!(duration_to_us(Duration::new(7, 123_456_789)), 7_123_456);
        assert_eq!(duration_to_us(Duration::MAX), u64::MAX);
    }

    #[test]
    fn samples_land_in_their_second() {
        let mut h = LatencyHistogram::new();
        let ms = Duration::from_millis;
        h.record_at(ms(100), ms(1));
        h.record_at(ms(900), ms(2));
        h.record_at(ms(1_100), ms(3));
        // Late: counted in the second already open.
        h.record_at(ms(500), ms(4));
        h.record_at(ms(2_000), ms(5));
        assert_eq!(h.len(), 5);
        assert!(h.has_interval_series());
        let mut per_second = Vec::new();
        h.for_each_interval(|s, h| {
            per_second.push((s, h.len()));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(per_second, vec![(0, 2), (1, 2), (2, 1)]);
    }
}

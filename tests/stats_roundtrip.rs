//! Saving and loading latency histograms: both formats round trip, merging
//! saved files equals recording everything in one, and known distributions
//! come out at their known percentiles.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use risp_udp::stats::{
    load, read_hgrm, read_hlog, write_hgrm, write_hlog, HistKind, HistogramSet, LatencyHistogram,
    TICKS_PER_HALF_DISTANCE,
};

/// Heavy-tailed latencies (µs): a base plus an exponential tail, seeded.
fn heavy_tail_samples(seed: u64, n: usize) -> Vec<u64> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let u: f64 = rng.gen_range(f64::EPSILON..1.0);
            800 + (-u.ln() * 4_000.0) as u64
        })
        .collect()
}

fn record_all(samples: &[u64]) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for &us in samples {
        h.record(Duration::from_micros(us));
    }
    h
}

fn hgrm_text(h: &LatencyHistogram) -> String {
    let mut buf = Vec::new();
    write_hgrm(h, &mut buf).expect("write .hgrm to memory");
    String::from_utf8(buf).expect(".hgrm is UTF-8")
}

fn hlog_text(h: &LatencyHistogram) -> String {
    let mut buf = Vec::new();
    write_hlog(h, &mut buf).expect("write .hlog to memory");
    String::from_utf8(buf).expect(".hlog is UTF-8")
}

/// Every stored count of `a` and `b` is identical (the strongest equality
/// two histograms of the same layout can have).
fn assert_same_counts(a: &LatencyHistogram, b: &LatencyHistogram) {
    let ca: Vec<(u64, u64)> = a
        .inner()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    let cb: Vec<(u64, u64)> = b
        .inner()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    assert_eq!(a.len(), b.len(), "sample counts differ");
    assert_eq!(ca, cb, "bucket counts differ");
}

#[test]
fn hlog_round_trip_is_lossless() {
    let original = record_all(&heavy_tail_samples(1, 50_000));
    let loaded = read_hlog(&hlog_text(&original)).expect("read back .hlog");
    assert_same_counts(&original, &loaded);
    assert_eq!(original.summary(), loaded.summary());
}

#[test]
fn hlog_with_one_interval_per_second_round_trips_series_and_total() {
    let samples = heavy_tail_samples(2, 30_000);
    let mut original = LatencyHistogram::new();
    // 30 000 samples over 7.5 s of the caller's clock: 8 intervals.
    for (i, &us) in samples.iter().enumerate() {
        original.record_at(
            Duration::from_micros(i as u64 * 250),
            Duration::from_micros(us),
        );
    }
    assert!(original.has_interval_series());
    assert_eq!(original.interval_count(), 8);
    let text = hlog_text(&original);
    let interval_lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"') && !l.trim().is_empty())
        .collect();
    assert_eq!(
        interval_lines.len(),
        8,
        "one interval line per second:\n{text}"
    );
    for (second, line) in interval_lines.iter().enumerate() {
        let start: f64 = line.split(',').next().unwrap().parse().unwrap();
        assert_eq!(start, second as f64, "interval start of {line}");
    }
    let loaded = read_hlog(&text).expect("read back .hlog");
    assert_same_counts(&original, &loaded);
    assert_eq!(loaded.interval_count(), 8);
    // Writing what was read gives the same intervals again.
    let again = hlog_text(&loaded);
    let again_starts: Vec<&str> = again
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"') && !l.trim().is_empty())
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(again_starts.len(), 8);
    assert_same_counts(&original, &read_hlog(&again).unwrap());
}

#[test]
fn hgrm_round_trip_keeps_count_min_max_and_percentiles() {
    let original = record_all(&heavy_tail_samples(3, 100_000));
    let text = hgrm_text(&original);
    assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
    assert!(text.contains("#[Mean    = "));
    assert!(text.contains("#[Buckets = "));
    let loaded = read_hgrm(&text).expect("read back .hgrm");
    let (o, l) = (original.inner(), loaded.inner());
    assert_eq!(o.len(), l.len(), "count");
    assert_eq!(o.min(), l.min(), "min");
    assert_eq!(o.max(), l.max(), "max");
    // Exact at every percentile the file prints...
    for v in o.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        let q = v.quantile_iterated_to();
        assert!(
            o.equivalent(o.value_at_quantile(q), l.value_at_quantile(q)),
            "quantile {q}: original {} loaded {}",
            o.value_at_quantile(q),
            l.value_at_quantile(q)
        );
    }
    // ...and between rows the value rounds up to the next row, never down:
    // original(q) <= loaded(q) <= original(next printed tick).
    let ticks: Vec<f64> = o
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| v.quantile_iterated_to())
        .collect();
    for q in [0.5, 0.9, 0.99, 0.999, 0.9999] {
        let next_tick = ticks.iter().copied().find(|&t| t >= q).unwrap();
        let (lo, got, hi) = (
            o.value_at_quantile(q),
            l.value_at_quantile(q),
            o.value_at_quantile(next_tick),
        );
        assert!(
            o.lowest_equivalent(lo) <= got && got <= o.highest_equivalent(hi),
            "quantile {q}: loaded {got} outside [{lo}, {hi}] (next tick {next_tick})"
        );
    }
    let (mo, ml) = (o.mean(), l.mean());
    // Rounding up between rows can only raise the mean.
    assert!(ml >= mo, "mean {mo} vs {ml}");
}

#[test]
fn hgrm_of_uniform_samples_is_within_histogram_precision() {
    let original = record_all(&(1..=100_000).collect::<Vec<u64>>());
    let loaded = read_hgrm(&hgrm_text(&original)).expect("read back .hgrm");
    let (so, sl) = (original.summary(), loaded.summary());
    for (a, b) in [
        (so.p50_us, sl.p50_us),
        (so.p90_us, sl.p90_us),
        (so.p99_us, sl.p99_us),
        (so.p999_us, sl.p999_us),
        (so.max_us, sl.max_us),
    ] {
        assert!(
            (a as f64 - b as f64).abs() / (a as f64) <= 0.001,
            "{a} vs {b}"
        );
    }
}

#[test]
fn uniform_samples_have_their_known_percentiles() {
    let h = record_all(&(1..=100_000).collect::<Vec<u64>>());
    let s = h.summary();
    let within = |got: u64, want: f64| (got as f64 - want).abs() / want <= 0.001;
    assert_eq!(s.count, 100_000);
    assert_eq!(s.min_us, 1);
    assert!(within(s.p50_us, 50_000.0), "p50 {}", s.p50_us);
    assert!(within(s.p90_us, 90_000.0), "p90 {}", s.p90_us);
    assert!(within(s.p99_us, 99_000.0), "p99 {}", s.p99_us);
    assert!(within(s.p999_us, 99_900.0), "p99.9 {}", s.p999_us);
    assert!(within(s.max_us, 100_000.0), "max {}", s.max_us);
    assert!(
        (s.mean_us - 50_000.5).abs() / 50_000.5 <= 0.001,
        "mean {}",
        s.mean_us
    );
}

#[test]
fn two_point_distribution_percentiles_are_exact() {
    // 990 samples at 2 ms and 10 at 150 ms: p99 must be 2 ms, p99.9 150 ms.
    let mut samples = vec![2_000u64; 990];
    samples.extend(std::iter::repeat_n(150_000, 10));
    let h = record_all(&samples);
    let s = h.summary();
    let o = h.inner();
    assert!(o.equivalent(s.p50_us, 2_000));
    assert!(o.equivalent(s.p99_us, 2_000));
    assert!(o.equivalent(s.p999_us, 150_000));
    assert!(o.equivalent(s.max_us, 150_000));
}

#[test]
fn merging_saved_histograms_equals_recording_both_sample_sets() {
    let a = heavy_tail_samples(4, 20_000);
    let b: Vec<u64> = heavy_tail_samples(5, 7_000).iter().map(|v| v * 3).collect();
    let dir = tempfile::tempdir().unwrap();

    let mut set_a = HistogramSet::default();
    let mut set_b = HistogramSet::default();
    for &us in &a {
        set_a.delivery.record(Duration::from_micros(us));
    }
    for &us in &b {
        set_b.delivery.record(Duration::from_micros(us));
    }
    let files_a = set_a.write_dir(&dir.path().join("a"), "run1-").unwrap();
    let files_b = set_b.write_dir(&dir.path().join("b"), "run2-").unwrap();
    // Only the non-empty histogram is written, in both formats.
    assert_eq!(files_a.len(), 2);
    assert!(files_a[0].ends_with("a/run1-delivery.hgrm"));
    assert!(files_a[1].ends_with("a/run1-delivery.hlog"));
    assert_eq!(files_b.len(), 2);

    let mut both: Vec<u64> = a.clone();
    both.extend(&b);
    let direct = record_all(&both);

    // Lossless format: merged counts identical.
    let mut merged = load(&files_a[1]).unwrap();
    merged.merge(&load(&files_b[1]).unwrap());
    assert_same_counts(&direct, &merged);

    // Percentile text: same count, min and max; percentiles never below
    // the truth (rows round up) and within 15 % on this data.
    let mut merged_text = load(&files_a[0]).unwrap();
    merged_text.merge(&load(&files_b[0]).unwrap());
    let (d, m) = (direct.summary(), merged_text.summary());
    assert_eq!(d.count, m.count);
    assert_eq!(d.min_us, m.min_us);
    assert_eq!(d.max_us, m.max_us);
    for (x, y) in [
        (d.p50_us, m.p50_us),
        (d.p90_us, m.p90_us),
        (d.p99_us, m.p99_us),
        (d.p999_us, m.p999_us),
    ] {
        assert!(
            y >= direct.inner().lowest_equivalent(x) && (y - x) as f64 / x as f64 <= 0.15,
            "direct {x} vs merged from .hgrm {y}"
        );
    }
}

#[test]
fn histogram_set_merges_kind_by_kind() {
    let mut one = HistogramSet::default();
    let mut two = HistogramSet::default();
    one.get_mut(HistKind::Rtt).record(Duration::from_millis(3));
    two.get_mut(HistKind::Rtt).record(Duration::from_millis(5));
    two.get_mut(HistKind::ServerAck)
        .record(Duration::from_millis(7));
    one.merge(&two);
    assert_eq!(one.rtt.len(), 2);
    assert_eq!(one.server_ack.len(), 1);
    assert!(one.delivery.is_empty() && one.stall.is_empty());
    let s = one.summaries();
    assert!(one.rtt.inner().equivalent(s.rtt.max_us, 5_000));
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["server_ack"]["count"], 1);
    assert_eq!(
        serde_json::to_value(HistKind::ServerAck).unwrap(),
        "server_ack"
    );
}

#[test]
fn merging_interval_series_adds_matching_seconds() {
    let mut a = LatencyHistogram::new();
    let mut b = LatencyHistogram::new();
    for i in 0..300u64 {
        a.record_at(
            Duration::from_millis(i * 10),
            Duration::from_micros(100 + i),
        );
        b.record_at(
            Duration::from_millis(1_500 + i * 10),
            Duration::from_micros(900 + i),
        );
    }
    a.merge(&b);
    assert!(a.has_interval_series());
    // a covers seconds 0..=2, b 1..=4.
    assert_eq!(a.interval_count(), 5);
    let back = read_hlog(&hlog_text(&a)).unwrap();
    assert_same_counts(&a, &back);
}

#[test]
fn huge_and_zero_durations_are_recorded_without_panicking() {
    let mut h = LatencyHistogram::new();
    h.record(Duration::ZERO);
    h.record(Duration::MAX);
    h.record_at(Duration::MAX, Duration::from_secs(u64::MAX));
    assert_eq!(h.len(), 3);
    assert_eq!(h.summary().min_us, 0);
    let back = read_hlog(&hlog_text(&h)).unwrap();
    assert_eq!(back.len(), 3);
    let back = read_hgrm(&hgrm_text(&h)).unwrap();
    assert_eq!(back.len(), 3);
}

//! Latency histograms from the simulator: loss shows up in the tail.

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::sim::run;
use risp_udp::stats::{duration_to_us, LatencyHistogram};
use risp_udp::transfer::{RunConfig, RunReport};

fn run_at(loss: f64) -> RunReport {
    let dir = DirectionConfig {
        loss,
        delay: Duration::from_millis(5),
        ..DirectionConfig::default()
    };
    let mut cfg = RunConfig::new(2024, 4, 5_000, ImpairmentConfig::symmetric(dir));
    cfg.record_latencies = true;
    run(&cfg)
}

fn delivery(r: &RunReport) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for t in &r.transfers {
        assert!(t.verified(), "{:?}", t.error);
        assert_eq!(t.hist.delivery.len(), u64::from(t.len));
        h.merge(&t.hist.delivery);
    }
    h
}

/// 10% loss gives a visibly heavier delivery tail than a clean link, in the
/// same deterministic setting.
#[test]
fn loss_makes_the_delivery_tail_heavier() {
    let clean = delivery(&run_at(0.0)).summary();
    let lossy = delivery(&run_at(0.1)).summary();
    println!(
        "delivery p99: clean {} us, 10% loss {} us",
        clean.p99_us, lossy.p99_us
    );
    assert_eq!(clean.count, 20_000);
    assert_eq!(lossy.count, 20_000);
    // On a clean 10 ms-RTT link every value arrives one round trip after it
    // became eligible, plus what the server's pacer held it (at most a
    // round trip: a window is spread over one).
    assert!(clean.p99_us >= 9_000 && clean.p99_us <= 22_000, "{clean:?}");
    // Recovery costs at least one more round trip for the lost ones.
    assert!(
        lossy.p99_us > clean.p99_us + 9_000,
        "{lossy:?} vs {clean:?}"
    );
    assert!(lossy.max_us > clean.max_us);
}

/// Every RTT sample on a fixed-delay link equals the round trip, plus at
/// most the millisecond the pacer may hold a datagram that still echoes
/// (the echoed timestamp makes samples exact even after retransmissions).
/// The smallest is exact; the largest as exact as the histogram keeps it
/// (three significant digits).
#[test]
fn rtt_samples_match_the_link() {
    let r = run_at(0.1);
    let mut n = 0;
    for t in &r.transfers {
        let h = &t.hist.rtt;
        assert_eq!(h.len(), t.rtt_count, "every sample is in the histogram");
        let min = t.min_rtt.expect("RTT samples");
        assert!(min >= Duration::from_millis(10), "{min:?}");
        // The histogram's smallest is the exact one, to its precision.
        let min_us = duration_to_us(min);
        assert_eq!(h.inner().min(), h.inner().lowest_equivalent(min_us));
        let max = h.inner().max();
        assert!(h.inner().lowest_equivalent(max) <= 11_000, "{max} us");
        n += h.len();
    }
    assert!(n > 100, "{n} samples");
}

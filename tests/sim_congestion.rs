//! Loss is not congestion, but congestion is still congestion: flows that
//! share a drop-tail bottleneck (R datagrams/s, queue Q) in the simulator
//! must fill it, share it, and keep its queue and drops low; the same runs
//! with the loss response switched off must fail those limits (so the tests
//! can fail).

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::sim::run;
use risp_udp::transfer::{BottleneckConfig, RunConfig, RunReport};

const RATE: f64 = 40_000.0;
const QUEUE: usize = 100;

/// What the bottleneck saw in one run.
#[derive(Debug)]
struct Shared {
    utilisation: f64,
    drops: f64,
    mean_queue: f64,
    shares: Vec<f64>,
}

/// `flows` flows of `len` values, each starting `stagger` after the
/// previous, over 1 ms one way (plus `loss` each way) through the
/// bottleneck.
fn shared_run(
    seed: u64,
    flows: usize,
    len: u32,
    stagger: Duration,
    loss: f64,
    respond: bool,
) -> Shared {
    let link = DirectionConfig {
        loss,
        delay: Duration::from_millis(1),
        ..DirectionConfig::default()
    };
    let mut cfg = RunConfig::new(seed, flows, len, ImpairmentConfig::symmetric(link));
    cfg.stagger = stagger;
    cfg.bottleneck = Some(BottleneckConfig {
        rate: RATE,
        limit: QUEUE,
    });
    cfg.client.loss_response = respond;
    cfg.time_limit = Duration::from_secs(120);
    let r = run(&cfg);
    assert_verified(&r);
    let b = r.bottleneck.expect("the run had a bottleneck");
    let (from, until) = (b.busy_from.unwrap(), b.busy_until.unwrap());
    Shared {
        utilisation: b.utilisation(RATE, from, until),
        drops: b.drop_fraction(),
        mean_queue: b.mean_queue(),
        shares: b.overlap_shares(RATE).unwrap_or_default(),
    }
}

fn assert_verified(r: &RunReport) {
    for t in &r.transfers {
        assert!(t.verified(), "seed {}: {:?}", r.seed, t.error);
    }
}

/// Two flows, the second 300 ms after the first: the link stays full, each
/// gets at least 35% of it while both run, drops stay under 2% and the
/// queue well under its limit.
#[test]
fn two_flows_fill_and_share_a_bottleneck() {
    // Without random loss the run is the same for every seed: one is enough.
    let s = shared_run(0, 2, 40_000, Duration::from_millis(300), 0.0, true);
    println!("two flows: {s:?}");
    assert!(s.utilisation >= 0.9, "{s:?}");
    assert_eq!(s.shares.len(), 2, "{s:?}");
    assert!(s.shares.iter().all(|&x| x >= 0.35), "{s:?}");
    assert!(s.drops <= 0.02, "{s:?}");
    assert!(s.mean_queue < 0.8 * QUEUE as f64, "{s:?}");
}

/// Four flows, 300 ms apart: drops stay under 2% and each gets a fair
/// share. (Flows joining every 100 ms cost about 3% drops: each new flow's
/// slow start overshoots a queue that is already full; see
/// docs/PERFORMANCE.md.)
#[test]
fn four_flows_keep_drops_low() {
    let s = shared_run(7, 4, 40_000, Duration::from_millis(300), 0.0, true);
    println!("four flows: {s:?}");
    assert!(s.drops <= 0.02, "{s:?}");
    assert!(s.utilisation >= 0.9, "{s:?}");
    assert!(s.shares.iter().all(|&x| x >= 0.15), "{s:?}");
}

/// A bottleneck and 10% random loss on top: random loss must not starve the
/// flows (utilisation ≥ 60%).
#[test]
fn bottleneck_with_random_loss_stays_used() {
    let s = shared_run(3, 2, 40_000, Duration::from_millis(300), 0.1, true);
    println!("bottleneck + 10% loss: {s:?}");
    assert!(s.utilisation >= 0.6, "{s:?}");
}

/// Negative control: the same two-flow run with the loss response switched
/// off overflows the queue, and fails the limits the real controller meets.
#[test]
fn without_a_loss_response_the_bottleneck_overflows() {
    let s = shared_run(0, 2, 40_000, Duration::from_millis(300), 0.0, false);
    println!("no loss response: {s:?}");
    assert!(s.drops > 0.02, "ignoring congestion kept drops low: {s:?}");
    assert!(
        s.mean_queue >= 0.8 * QUEUE as f64,
        "ignoring congestion kept the queue short: {s:?}"
    );
}

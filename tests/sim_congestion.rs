//! Loss is not congestion, but congestion is still congestion: flows that
//! share a drop-tail bottleneck (R datagrams/s, queue Q) in the simulator
//! must fill it, share it, and keep its queue and drops low; the same runs
//! with the loss response switched off must fail those limits (so the tests
//! can fail).

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::sim::reference::ReferenceStats;
use risp_udp::sim::{run, run_with_reference_stats};
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

// Long paths (issue 19): the link of `netem/suites/wan.toml`, 100,000
// datagrams/s with a drop-tail queue of one bandwidth-delay product, and
// transfers of that suite's 50 ms length (about 200 round trips at the link
// rate, so start-up is a small part of each). Without random loss a run
// does not depend on its seed (only UUIDs and tokens do), so one seed each.

/// The long-path link rate, datagrams per second.
const WAN_RATE: f64 = 100_000.0;

/// Values per flow: wan.toml's `rtt50-loss0` length.
const WAN_LEN: u32 = 1_000_000;

/// `flows` flows of [`WAN_LEN`] values, `stagger` apart, over `one_way`
/// each way, through the long-path bottleneck with a queue of `queue`.
fn wan_config(flows: usize, stagger: Duration, one_way: Duration, queue: usize) -> RunConfig {
    let link = DirectionConfig {
        delay: one_way,
        ..DirectionConfig::default()
    };
    let mut cfg = RunConfig::new(1, flows, WAN_LEN, ImpairmentConfig::symmetric(link));
    cfg.stagger = stagger;
    cfg.bottleneck = Some(BottleneckConfig {
        rate: WAN_RATE,
        limit: queue,
    });
    cfg.time_limit = Duration::from_secs(120);
    cfg
}

/// The long-path config at 50 ms RTT, queue 5,000 (one BDP).
fn wan50(flows: usize, stagger: Duration) -> RunConfig {
    wan_config(flows, stagger, Duration::from_millis(25), 5_000)
}

/// What a long-path run showed.
#[derive(Debug)]
struct Fairness {
    /// Each flow's part of what the link forwarded over the second half of
    /// the time every flow was active (reference flows last).
    shares: Vec<f64>,
    /// Jain's index of `shares`.
    jain: f64,
    /// Fraction of the bottleneck's arrivals it dropped, whole run.
    drops: f64,
    /// Every client's transfer verified.
    verified: bool,
    refs: Vec<ReferenceStats>,
}

/// Jain's fairness index, `(Σx)² / (n · Σx²)`: 1 when all are equal, `1/n`
/// when one has everything.
fn jain(x: &[f64]) -> f64 {
    let sum: f64 = x.iter().sum();
    let squares: f64 = x.iter().map(|v| v * v).sum();
    if squares == 0.0 {
        return 0.0;
    }
    sum * sum / (x.len() as f64 * squares)
}

fn fairness(cfg: &RunConfig) -> Fairness {
    let (r, refs) = run_with_reference_stats(cfg);
    let b = r.bottleneck.expect("the run had a bottleneck");
    let (from, until) = b.overlap().expect("every flow sent");
    let mid = from + (until - from) / 2;
    let capacity = b
        .shares_between(WAN_RATE, mid, until)
        .expect("the flows overlapped for more than two buckets");
    let total: f64 = capacity.iter().sum();
    let shares: Vec<f64> = capacity.iter().map(|s| s / total).collect();
    Fairness {
        jain: jain(&shares),
        shares,
        drops: b.drop_fraction(),
        verified: r.transfers.iter().all(|t| t.verified()),
        refs,
    }
}

#[test]
fn jain_index_of_known_shares() {
    assert_eq!(jain(&[0.5, 0.5]), 1.0);
    assert_eq!(jain(&[1.0, 0.0]), 0.5);
    assert!((jain(&[0.6, 0.4]) - 1.0 / 1.04).abs() < 1e-12);
}

/// One extra 20 ms each way on flow 1 (and nothing on flow 0): its
/// smallest round trip is 40 ms longer, to the microsecond.
#[test]
fn flow_delays_lengthen_one_flows_round_trip() {
    let mut cfg = wan_config(2, Duration::ZERO, Duration::from_millis(5), 1_000);
    cfg.len = 20_000;
    cfg.flow_delays = vec![Duration::ZERO, Duration::from_millis(20)];
    cfg.record_latencies = true;
    let r = run(&cfg);
    assert_verified(&r);
    let min: Vec<Duration> = r
        .transfers
        .iter()
        .map(|t| t.min_rtt.expect("RTT samples"))
        .collect();
    println!("smallest RTTs: {min:?}");
    let ms = Duration::from_millis;
    assert!(min[0] >= ms(10) && min[0] < ms(11), "{min:?}");
    assert_eq!(min[1] - min[0], ms(40), "{min:?}");
}

/// A reference flow limited to 20,000 packets delivers exactly those and
/// stops; it halved its window on the bottleneck's drops.
#[test]
fn a_limited_reference_flow_stops_after_its_packets() {
    let mut cfg = wan_config(1, Duration::ZERO, Duration::from_millis(5), 1_000);
    cfg.len = 200_000;
    cfg.reference_flows = 1;
    cfg.reference_packets = Some(20_000);
    let (r, refs) = run_with_reference_stats(&cfg);
    assert_verified(&r);
    println!("{refs:?}");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].delivered, 20_000, "{refs:?}");
    let b = r.bottleneck.expect("bottleneck");
    assert_eq!(b.forwarded.len(), 2);
    // Every packet it sent crossed the bottleneck or was dropped there.
    assert!(b.forwarded[1] <= refs[0].sent, "{b:?} {refs:?}");
    assert!(b.forwarded[1] >= 20_000, "{b:?}");
}

/// (a) Two flows at 50 ms, the second 1 s after the first: over the second
/// half of the time both run they share the link (Jain ≥ 0.95).
#[test]
fn two_long_path_flows_converge_on_equal_shares() {
    let f = fairness(&wan50(2, Duration::from_secs(1)));
    println!("two flows at 50 ms: {f:?}");
    assert!(f.verified, "{f:?}");
    assert!(f.jain >= 0.95, "{f:?}");
}

/// (b) A 10 ms and a 50 ms flow through one bottleneck (queue: one BDP of
/// the longer path) stay close to equal shares (Jain ≥ 0.8).
///
/// Fails with the current controller: over the second half the 50 ms flow
/// forwards 97.5% of the link and the 10 ms flow 2.5% (Jain 0.53), with no
/// drops at all (queues 1,000 and 3,000 fail the same way: 0.51, 0.53).
/// Both flows pace at their windowed-max bandwidth, and together the
/// estimates exceed the link (each holds its own probing round for ten of
/// its rounds: 500 ms for the long flow, 100 ms for the short one), so a
/// queue of 5-20 ms stands. Past `(CWND_GAIN - 1) · 10 ms` of queue the
/// short flow's window, `2 · bw · min_rtt`, limits it below its estimate,
/// the next rate samples are lower, and the window follows them down; the
/// long flow's window has 50 ms of headroom and never binds. Without a
/// loss there is no congestion episode to make the long flow yield.
#[test]
#[ignore = "fails (issue 19): the 50 ms flow takes 97.5% of the link, Jain 0.53; see the doc comment"]
fn flows_of_different_round_trips_share_a_bottleneck() {
    let f = fairness(&rtt_pair(true));
    println!("10 ms + 50 ms: {f:?}");
    assert!(f.verified, "{f:?}");
    assert!(f.jain >= 0.8, "{f:?}");
}

/// Flow 0 at 10 ms RTT, flow 1 at 50 ms (20 ms more each way), both from
/// the start, queue 5,000.
fn rtt_pair(respond: bool) -> RunConfig {
    let mut cfg = wan_config(2, Duration::ZERO, Duration::from_millis(5), 5_000);
    cfg.flow_delays = vec![Duration::ZERO, Duration::from_millis(20)];
    cfg.client.loss_response = respond;
    cfg
}

/// (c) Four flows at 50 ms, 1 s apart: the bottleneck drops at most 2% of
/// what arrives (start-ups included).
#[test]
fn four_long_path_flows_keep_drops_low() {
    let f = fairness(&wan50(4, Duration::from_secs(1)));
    println!("four flows at 50 ms: {f:?}");
    assert!(f.verified, "{f:?}");
    assert!(f.drops <= 0.02, "{f:?}");
}

/// (d) One risp-udp flow and one Reno-style reference flow, both from the
/// start, at 50 ms (queue 5,000) and at 10 ms (queue 1,000, one BDP): risp
/// takes between 30% and 70% of what the link forwards while both run.
#[test]
fn a_reno_flow_keeps_its_share_against_risp() {
    for (name, cfg) in reno_pairs(true) {
        let f = fairness(&cfg);
        println!("risp + Reno at {name}: {f:?}");
        assert!(f.verified, "{name}: {f:?}");
        // The reference flow was there, and loss-based: it halved.
        assert!(f.refs[0].reductions >= 1, "{name}: {f:?}");
        assert!((0.3..=0.7).contains(&f.shares[0]), "{name}: {f:?}");
    }
}

/// The two runs of [`a_reno_flow_keeps_its_share_against_risp`].
fn reno_pairs(respond: bool) -> [(&'static str, RunConfig); 2] {
    let mut long = wan50(1, Duration::ZERO);
    let mut short = wan_config(1, Duration::ZERO, Duration::from_millis(5), 1_000);
    for cfg in [&mut long, &mut short] {
        cfg.reference_flows = 1;
        cfg.client.loss_response = respond;
    }
    [("50 ms", long), ("10 ms", short)]
}

// (e) Negative controls: the same runs with the loss response switched off
// (which also stops pacing: the client asks for no rate) fail each limit.

#[test]
fn without_a_loss_response_long_path_flows_do_not_converge() {
    let mut cfg = wan50(2, Duration::from_secs(1));
    cfg.client.loss_response = false;
    let f = fairness(&cfg);
    println!("two flows at 50 ms, no loss response: {f:?}");
    assert!(f.jain < 0.95, "ignoring congestion still converged: {f:?}");
}

#[test]
fn without_a_loss_response_different_round_trips_do_not_share() {
    let f = fairness(&rtt_pair(false));
    println!("10 ms + 50 ms, no loss response: {f:?}");
    assert!(f.jain < 0.8, "ignoring congestion still shared: {f:?}");
}

#[test]
fn without_a_loss_response_four_long_path_flows_overflow() {
    let mut cfg = wan50(4, Duration::from_secs(1));
    cfg.client.loss_response = false;
    let f = fairness(&cfg);
    println!("four flows at 50 ms, no loss response: {f:?}");
    assert!(f.drops > 0.02, "ignoring congestion kept drops low: {f:?}");
}

#[test]
fn without_a_loss_response_risp_starves_a_reno_flow() {
    for (name, cfg) in reno_pairs(false) {
        let f = fairness(&cfg);
        println!("risp + Reno at {name}, no loss response: {f:?}");
        assert!(
            f.shares[0] > 0.7,
            "{name}: ignoring congestion left Reno its share: {f:?}"
        );
    }
}

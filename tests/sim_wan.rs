//! Long paths in virtual time: `netem/suites/wan.toml` (RTT 10-200 ms x
//! loss 0/1/10% through a 100k datagrams/s bottleneck with a queue of one
//! bandwidth-delay product, plus shallow queues at 50 ms) must fill the
//! link. Virtual time makes every figure exact for the committed seed, so
//! these limits are about the protocol, never about the machine.

use std::path::Path;

use risp_udp::suite::{run_suite, Mode, ProfileReport, Suite};

/// The round trip a profile's name gives (`rtt50-...`), in ms.
fn rtt_ms(p: &ProfileReport) -> f64 {
    p.name
        .strip_prefix("rtt")
        .and_then(|s| s.split('-').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("profile {} names no RTT", p.name))
}

/// The longest in-order stall a profile may show, in ms: four round trips
/// plus 10 ms, or where it is longer the geometric tail of one value lost
/// again and again: among `N · p` lost values the worst is lost about
/// `log(N·p) / log(1/p)` more times, each costing a round trip, plus two
/// for the first loss and its detection.
fn stall_limit_ms(p: &ProfileReport) -> f64 {
    let rtt = rtt_ms(p);
    let loss = p.loss_to_client;
    let flat = 4.0 * rtt + 10.0;
    if loss == 0.0 {
        return flat;
    }
    // The tail bites at 1% too on the longest transfers: 4M values at 1%
    // lose 40,000, of which about four are lost three times over (4.3 RTT).
    let n = f64::from(p.len);
    let tail = (2.0 + (n * loss).ln() / (1.0 / loss).ln()) * rtt + 10.0;
    flat.max(tail)
}

/// Longest start-up, in round trips: until the link first forwards 90% of
/// its rate (the limit).
const MAX_STARTUP_RTTS: f64 = 15.0;

#[test]
fn wan_suite_fills_long_paths() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("netem/suites/wan.toml");
    let suite = Suite::load(&path).expect("wan.toml parses");
    let report = run_suite(&suite, Mode::Virtual, |_| {}).expect("virtual runs cannot fail");
    let mut failures = Vec::new();
    for p in &report.profiles {
        let share = p.link_share.expect("every wan profile has a bottleneck");
        let b = p.bottleneck.as_ref().expect("bottleneck figures");
        let shallow = p.name.contains("shallow");
        let rtts_to_start = b.startup_us.map(|us| us as f64 / 1000.0 / rtt_ms(p));
        println!(
            "{:<22} share {share:.3}  stall {:>5} ms (limit {:.0})  drops {:.4}  dgram/value {:.3}  start-up {:.1} RTT",
            p.name,
            p.stall_max_us / 1000,
            stall_limit_ms(p),
            b.drop_fraction,
            p.datagrams_per_value,
            rtts_to_start.unwrap_or(f64::INFINITY),
        );
        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{}: {what}", p.name));
            }
        };
        check(p.runs_verified == p.runs, "not every run verified".into());
        let min_share = if shallow {
            0.8
        } else if p.loss_to_client >= 0.05 {
            0.85
        } else {
            0.9
        };
        check(
            share >= min_share,
            format!("share {share:.3} < {min_share}"),
        );
        // Start-up: the link first forwards 90% of its rate within 15
        // round trips.
        check(
            rtts_to_start.is_some_and(|r| r <= MAX_STARTUP_RTTS),
            format!("start-up {rtts_to_start:?} RTTs > {MAX_STARTUP_RTTS}"),
        );
        let stall = p.stall_max_us as f64 / 1000.0;
        if !shallow {
            check(
                stall <= stall_limit_ms(p),
                format!("stall {stall} ms > {:.0}", stall_limit_ms(p)),
            );
        }
        if p.loss_to_client == 0.0 {
            let max_drops = if shallow { 0.05 } else { 0.02 };
            check(
                b.drop_fraction <= max_drops,
                format!("drops {:.4} > {max_drops}", b.drop_fraction),
            );
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.profiles.len(), 14, "4 RTTs x 3 losses + 2 shallow");
}

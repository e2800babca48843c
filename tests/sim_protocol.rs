//! Protocol behaviour under loss, proven in the deterministic simulator.
//!
//! Every test here runs in virtual time, so thousands of lossy transfers
//! finish in seconds and the same seed always gives the same trace.

use std::time::Duration;

use risp_netem::{Blackhole, DirectionConfig, ImpairmentConfig};
use risp_udp::proto::client::ClientError;
use risp_udp::sim::run;
use risp_udp::transfer::{BottleneckConfig, RunConfig, RunReport};

/// A path with a rate: 100,000 datagrams/s through a drop-tail queue of
/// one bandwidth-delay product (200 at the 2 ms round trip of [`link`]).
/// Without one the window grows as long as the transfer lasts (nothing
/// caps it since wire v3), and a comparison of rates would compare how
/// far start-up got, not the steady state.
fn with_rate(mut cfg: RunConfig) -> RunConfig {
    cfg.bottleneck = Some(BottleneckConfig {
        rate: 100_000.0,
        limit: 200,
    });
    cfg
}

fn link(loss: f64) -> DirectionConfig {
    DirectionConfig {
        loss,
        delay: Duration::from_millis(1),
        ..DirectionConfig::default()
    }
}

fn assert_all_verified(r: &RunReport, what: &str) {
    for t in &r.transfers {
        assert!(
            t.verified(),
            "{what} seed {}: transfer {} not verified: error {:?}, delivered {}/{}, wrong {}",
            r.seed,
            t.uuid,
            t.error,
            t.delivered,
            t.len,
            t.wrong_values
        );
    }
}

/// Every loss rate, with reordering, duplication and 1% corruption on top,
/// over 200 seeds each: every value arrives, in order, once, and the
/// checksum matches.
#[test]
fn loss_matrix_with_reorder_duplicate_and_corruption_always_verifies() {
    let mut transfers = 0;
    for loss in [0.0, 0.01, 0.1, 0.3, 0.5] {
        let dir = DirectionConfig {
            loss,
            duplicate: 0.02,
            corrupt: 0.01,
            reorder: 0.05,
            delay: Duration::from_millis(1),
            jitter: Duration::from_micros(500),
            ..DirectionConfig::default()
        };
        let len = if loss >= 0.5 { 60 } else { 200 };
        let mut corrupt_seen = 0;
        let mut dup_seen = 0;
        for seed in 0..200 {
            let cfg = RunConfig::new(seed, 1, len, ImpairmentConfig::symmetric(dir.clone()));
            let r = run(&cfg);
            assert_all_verified(&r, &format!("loss {loss}"));
            let t = &r.transfers[0];
            corrupt_seen +=
                t.client.corrupt + r.server.rejected(risp_udp::proto::server::Reject::Corrupt);
            dup_seen += t.client.duplicates;
            transfers += 1;
        }
        // The impairments really happened.
        assert!(corrupt_seen > 0, "loss {loss}: no corruption was exercised");
        assert!(dup_seen > 0, "loss {loss}: no duplicate was exercised");
    }
    assert_eq!(transfers, 1000);
}

/// At 10% loss each way the server sends at most 1.2 × len / (1 − p)
/// datagrams with selective acks; without them it sends more.
#[test]
fn selective_acks_resend_only_what_was_lost() {
    let len = 10_000u32;
    let p = 0.1;
    let bound = 1.2 * f64::from(len) / (1.0 - p);
    let mut cfg = RunConfig::new(7, 1, len, ImpairmentConfig::symmetric(link(p)));
    let sack = run(&cfg);
    assert_all_verified(&sack, "sack");
    let sent_sack = sack.transfers[0].datagrams_to_client as f64;
    cfg.client.sack = false;
    let cumulative = run(&cfg);
    assert_all_verified(&cumulative, "no sack");
    let sent_cum = cumulative.transfers[0].datagrams_to_client as f64;
    println!(
        "10% loss, {len} values: server sent {sent_sack} datagrams with SACK ({:.3}/value), \
         {sent_cum} without ({:.3}/value); minimum {:.3}/value, bound {:.3}/value",
        sent_sack / f64::from(len),
        sent_cum / f64::from(len),
        1.0 / (1.0 - p),
        bound / f64::from(len)
    );
    assert!(sent_sack <= bound, "{sent_sack} > {bound}");
    assert!(sent_sack >= f64::from(len), "cannot send fewer than len");
    assert!(sent_cum > sent_sack, "cumulative acks should cost more");
}

/// A 5 s blackhole mid-transfer: the client backs off, probes, and the
/// transfer resumes and completes.
#[test]
fn five_second_blackhole_is_survived() {
    let mut imp = ImpairmentConfig::symmetric(link(0.01));
    imp.blackholes.push(Blackhole {
        start: Duration::from_millis(200),
        duration: Duration::from_secs(5),
    });
    let mut cfg = RunConfig::new(3, 4, 20_000, imp);
    cfg.client.max_window = 64;
    let r = run(&cfg);
    assert_all_verified(&r, "blackhole 5s");
    let total: u64 = r
        .transfers
        .iter()
        .map(|t| &t.link)
        .map(|l| l.to_client.blackholed + l.to_server.blackholed)
        .sum();
    assert!(total > 0, "the blackhole must have swallowed something");
    for t in &r.transfers {
        assert!(t.finished_at.unwrap() > Duration::from_secs(5));
    }
    assert_eq!(r.sessions_left, 0, "closed sessions are freed");
}

/// A blackhole longer than the session lifetime: the server frees the
/// session, and the client fails with "expired", not a hang.
#[test]
fn blackhole_longer_than_lifetime_expires_the_session() {
    let mut imp = ImpairmentConfig::symmetric(link(0.0));
    imp.blackholes.push(Blackhole {
        start: Duration::from_millis(50),
        duration: Duration::from_secs(12),
    });
    let mut cfg = RunConfig::new(5, 1, 50_000, imp);
    cfg.client.max_window = 32;
    cfg.server.session_lifetime = Duration::from_secs(5);
    let r = run(&cfg);
    let t = &r.transfers[0];
    assert_eq!(t.error, Some(ClientError::SessionExpired), "{t:?}");
    assert!(t.server_expired);
    assert_eq!(r.server.sessions_expired, 1);
    assert_eq!(r.sessions_left, 0, "the server freed the session");
    assert!(t.finished_at.unwrap() < Duration::from_secs(20));
}

/// The client's address changes twice mid-transfer (NAT rebinding): the
/// session follows the UUID and token.
#[test]
fn address_rebinding_is_followed() {
    for seed in 0..20 {
        let mut imp = ImpairmentConfig::symmetric(link(0.05));
        imp.rebind_at = vec![Duration::from_millis(10), Duration::from_millis(25)];
        let cfg = RunConfig::new(seed, 1, 5_000, imp);
        let r = run(&cfg);
        assert_all_verified(&r, "rebinding");
        assert_eq!(r.transfers[0].rebinds, 2);
        assert!(r.server.migrations >= 1, "seed {seed}: {:?}", r.server);
    }
}

/// The client drops its socket every 50 ms and resumes from a new port.
#[test]
fn killswitch_reconnects_resume_by_uuid() {
    let mut cfg = with_rate(RunConfig::new(
        11,
        3,
        20_000,
        ImpairmentConfig::symmetric(link(0.05)),
    ));
    cfg.killswitch = Some(Duration::from_millis(50));
    let r = run(&cfg);
    assert_all_verified(&r, "killswitch");
    for t in &r.transfers {
        assert!(t.reconnects >= 2, "{} reconnects", t.reconnects);
    }
    assert!(r.server.sessions_resumed >= 6);
}

/// 100 concurrent clients at 10% loss through one server.
#[test]
fn hundred_concurrent_clients_at_ten_percent_loss() {
    let mut cfg = RunConfig::new(99, 100, 2_000, ImpairmentConfig::symmetric(link(0.1)));
    cfg.stagger = Duration::from_micros(200);
    let r = run(&cfg);
    assert_all_verified(&r, "100 clients");
    assert_eq!(r.server.sessions_opened, 100);
    assert_eq!(r.server.sessions_closed, 100);
    assert_eq!(r.sessions_left, 0);
}

/// Same seed, same trace and statistics; another seed, another trace.
#[test]
fn same_seed_gives_identical_trace() {
    let dir = DirectionConfig {
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.1,
        corrupt: 0.01,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        ..DirectionConfig::default()
    };
    let cfg = RunConfig::new(1234, 5, 3_000, ImpairmentConfig::symmetric(dir));
    let a = run(&cfg);
    let b = run(&cfg);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.server, b.server);
    assert_eq!(a.elapsed, b.elapsed);
    for (x, y) in a.transfers.iter().zip(&b.transfers) {
        assert_eq!(x.uuid, y.uuid);
        assert_eq!(x.client, y.client);
        assert_eq!(x.finished_at, y.finished_at);
        assert_eq!(x.datagrams_to_client, y.datagrams_to_client);
    }
    let mut other = cfg.clone();
    other.seed = 1235;
    assert_ne!(run(&other).trace_hash, a.trace_hash);
}

/// Zero-length transfers go straight to CLOSING; a length over the server's
/// limit is refused with a typed error.
#[test]
fn zero_length_and_over_limit() {
    let r = run(&RunConfig::new(
        1,
        3,
        0,
        ImpairmentConfig::symmetric(link(0.1)),
    ));
    assert_all_verified(&r, "len 0");
    let mut cfg = RunConfig::new(1, 1, 1_000, ImpairmentConfig::default());
    cfg.server.max_len = 999;
    let r = run(&cfg);
    assert_eq!(
        r.transfers[0].error,
        Some(ClientError::BadRequest(
            risp_udp::proto::client::BadRequest::LenTooLarge { max: 999 }
        ))
    );
}

/// Past the session limit, new clients are told the server is busy and
/// existing ones carry on.
#[test]
fn session_limit_refuses_new_sessions_only() {
    let mut cfg = RunConfig::new(8, 5, 3_000, ImpairmentConfig::symmetric(link(0.0)));
    cfg.server.max_sessions = 3;
    let r = run(&cfg);
    let busy = r
        .transfers
        .iter()
        .filter(|t| t.error == Some(ClientError::ServerBusy))
        .count();
    assert_eq!(busy, 2);
    assert_eq!(r.verified_count(), 3);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Random loss is not congestion: at 10% loss each way (1 ms one way, 30k
/// values, 10 seeds) the median transfer takes at most 1/0.7 of the clean
/// median, the server sends at most 1.13 datagrams per value, and no value
/// waits behind a hole for more than 5 RTT.
#[test]
fn ten_percent_random_loss_keeps_seventy_percent_of_the_clean_rate() {
    let len = 30_000;
    let rtt = Duration::from_millis(2);
    let runs = |loss: f64| -> Vec<risp_udp::transfer::TransferReport> {
        (0..10)
            .map(|seed| {
                let cfg = with_rate(RunConfig::new(
                    seed,
                    1,
                    len,
                    ImpairmentConfig::symmetric(link(loss)),
                ));
                let r = run(&cfg);
                assert_all_verified(&r, &format!("loss {loss}"));
                r.transfers.into_iter().next().unwrap()
            })
            .collect()
    };
    let clean = median(runs(0.0).iter().map(|t| t.finished_at.unwrap()).collect());
    let lossy = runs(0.1);
    let lossy_median = median(lossy.iter().map(|t| t.finished_at.unwrap()).collect());
    println!("clean median {clean:?}, 10% loss median {lossy_median:?}");
    assert!(
        lossy_median.as_secs_f64() * 0.7 <= clean.as_secs_f64(),
        "10% loss: median {lossy_median:?} > clean {clean:?} / 0.7"
    );
    for t in &lossy {
        let per_value = t.datagrams_to_client as f64 / f64::from(len);
        assert!(
            per_value <= 1.13,
            "{per_value:.3} server datagrams per value"
        );
        // Five round trips, each up to the 2 ms path plus the 2 ms the full
        // queue of `with_rate` adds.
        assert!(t.max_stall <= rtt * 10, "in-order stall {:?}", t.max_stall);
        assert!(t.max_stall > Duration::ZERO, "stalls are measured");
    }
}

/// Short transfers over a fast lossy link: a lost CONNECTING, Accept,
/// checksum or close costs about a millisecond, not the old 100 ms first
/// timer. `len 50`, 0.05 ms one way, 10% loss, 200 seeds: p99 ≤ 20 ms,
/// max ≤ 50 ms.
#[test]
fn short_lossy_transfers_finish_in_milliseconds() {
    let dir = DirectionConfig {
        loss: 0.1,
        delay: Duration::from_micros(50),
        ..DirectionConfig::default()
    };
    let mut times: Vec<Duration> = (0..200)
        .map(|seed| {
            let cfg = RunConfig::new(seed, 1, 50, ImpairmentConfig::symmetric(dir.clone()));
            let r = run(&cfg);
            assert_all_verified(&r, "len 50");
            r.transfers[0].finished_at.unwrap()
        })
        .collect();
    times.sort();
    let p99 = times[times.len() * 99 / 100 - 1];
    let max = times[times.len() - 1];
    println!("len 50: p50 {:?}, p99 {p99:?}, max {max:?}", times[100]);
    assert!(p99 <= Duration::from_millis(20), "p99 {p99:?}");
    assert!(max <= Duration::from_millis(50), "max {max:?}");
    // Some handshake or ending was lost and retried (the test exercises it).
    assert!(times[100] < max / 4, "the tail comes from retries");
}

/// The rest of the loss table (1 ms one way through `with_rate`'s 100k/s
/// bottleneck, 30k values, 5 seeds each), with limits from what the design
/// does and why:
/// - 1% and 5%: random loss is never judged congestion, so the rate stays
///   near the clean one (each loss still costs a reordering window plus an
///   RTT before its resend lands);
/// - 20%: a round's loss fraction comes close to the 25% ceiling above
///   which loss counts as congestion, so some rounds shrink the window;
/// - 30% and 50%: past the ceiling, every episode is congestion; the
///   transfers must still complete, resending little more than the
///   1/(1 − p) minimum. The rate is bounded by the floors (`MIN_CWND`, and
///   `MIN_PACING_PER_RTT` once the bandwidth estimate has been cut again
///   and again): see the limits' comment.
#[test]
fn the_loss_table_meets_its_limits() {
    let len = 30_000;
    let completion = |loss: f64, seeds: u64| -> (Duration, f64) {
        let mut times = Vec::new();
        let mut worst_per_value: f64 = 0.0;
        for seed in 0..seeds {
            let cfg = with_rate(RunConfig::new(
                seed,
                1,
                len,
                ImpairmentConfig::symmetric(link(loss)),
            ));
            let r = run(&cfg);
            assert_all_verified(&r, &format!("loss {loss}"));
            let t = &r.transfers[0];
            times.push(t.finished_at.unwrap());
            worst_per_value = worst_per_value.max(t.datagrams_to_client as f64 / f64::from(len));
        }
        (median(times), worst_per_value)
    };
    let (clean, _) = completion(0.0, 1);
    let ratio = |t: Duration| clean.as_secs_f64() / t.as_secs_f64();
    for (loss, min_ratio, max_per_value) in [
        // Measured through `with_rate` (seeds 0..5): 0.972x / 1.026,
        // 0.914x / 1.067, 0.715x / 1.254, 0.513x / 1.429, 0.014x / 2.010
        // (the bottleneck's own drops add to datagrams per value). At 50%
        // every episode is past the loss ceiling, each cuts the bandwidth
        // estimate by BETA, and pacing bottoms out at MIN_PACING_PER_RTT
        // (4 per 2 ms): the limit is that floor's 2,000/s against the
        // clean ~97,000/s, halved by the loss (0.01x).
        (0.01, 0.9, 1.035),
        (0.05, 0.8, 1.08),
        (0.2, 0.6, 1.3),
        (0.3, 0.35, 1.5),
        (0.5, 0.01, 2.1),
    ] {
        let (t, per_value) = completion(loss, 5);
        println!(
            "loss {loss}: median {t:?} ({:.3}x clean), worst {per_value:.3} datagrams/value",
            ratio(t)
        );
        assert!(ratio(t) >= min_ratio, "loss {loss}: {:.3}x clean", ratio(t));
        assert!(per_value <= max_per_value, "loss {loss}: {per_value:.3}");
    }
}

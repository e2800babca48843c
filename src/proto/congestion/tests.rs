//! Unit tests of the rate controller.

use super::*;

fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// Drives `rounds` round trips of a path that delivers `per_round`
/// datagrams per `rtt` out of `cwnd`, dropping every `drop_every`-th
/// (0: none), and calling the loss-episode hook on each drop. Returns
/// the next timestamp to use.
#[allow(clippy::too_many_arguments)]
fn drive(
    rc: &mut RateControl,
    t0: Instant,
    mut ts: u64,
    rounds: u32,
    rtt: Duration,
    min_rtt: Duration,
    delivered_per_round: impl Fn(u32) -> u32,
    drop_every: u32,
    highest: &mut u32,
) -> u64 {
    for _ in 0..rounds {
        let start = t0 + Duration::from_micros(ts);
        // The burst answering the previous round's ack arrives, then
        // this round's ack goes out.
        rc.on_echo(start, ts - 1, Some(min_rtt));
        rc.on_ack_sent(start, ts);
        let n = delivered_per_round(rc.get());
        for k in 0..n {
            let skipped = u32::from(drop_every > 0 && k % drop_every == drop_every - 1);
            *highest += 1 + skipped;
            rc.on_highest(*highest);
            rc.on_arrival(skipped);
            if skipped > 0 {
                rc.on_loss_episode(*highest, *highest + rc.get(), Some(min_rtt));
            }
        }
        ts += rtt.as_micros() as u64;
    }
    ts
}

#[test]
fn window_slides_with_highest_and_counts_holes() {
    let rc = RateControl::new(10, 100);
    // Nothing held past next: the window is cwnd.
    assert_eq!(rc.advertised_window(0, 0, 1024, |_| unreachable!()), 10);
    // 20 past next, 17 held (3 holes): 7 more new indices may come.
    assert_eq!(rc.advertised_window(20, 17, 1024, |_| unreachable!()), 27);
    // 12 holes ≥ cwnd: the window ends after the 10th hole.
    assert_eq!(rc.advertised_window(40, 28, 1024, |k| k * 3), 31);
    // Clamped to the reorder span.
    assert_eq!(rc.advertised_window(1020, 1019, 1024, |_| 0), 1024);
}

#[test]
fn slow_start_doubles_until_the_delivery_rate_stops_growing() {
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(8, 1000);
    let mut highest = 0;
    let rtt = us(2_000);
    // A path that holds 100 datagrams per RTT: deliveries grow with
    // cwnd up to 100 a round, then stay there.
    let ts = drive(&mut rc, t0, 1, 4, rtt, rtt, |c| c.min(100), 0, &mut highest);
    assert!(rc.in_slow_start());
    assert_eq!(rc.get(), 8 + 8 + 16 + 32 + 64, "+1 per arrival");
    drive(
        &mut rc,
        t0,
        ts,
        6,
        rtt,
        rtt,
        |c| c.min(100),
        0,
        &mut highest,
    );
    assert!(!rc.in_slow_start(), "three rounds without 25% growth");
    // It left at twice the measured BDP (CWND_GAIN x 100) and stays there:
    // the model's target, not +1 a round.
    assert!((200..=204).contains(&rc.get()), "cwnd {}", rc.get());
    assert_eq!(rc.reductions(), 0);
}

#[test]
fn random_loss_does_not_shrink_the_window() {
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(64, 256);
    let mut highest = 0;
    let rtt = us(2_000);
    // Random loss of 10%: the path delivers 90% of cwnd each round,
    // with no queue (the RTT stays at its minimum).
    drive(
        &mut rc,
        t0,
        1,
        60,
        rtt,
        rtt,
        |c| c * 9 / 10,
        10,
        &mut highest,
    );
    assert_eq!(rc.reductions(), 0, "no congestion response");
    assert!(rc.random_episodes() > 0, "episodes were judged");
    assert!(rc.get() >= 200, "cwnd {} kept growing", rc.get());
}

#[test]
fn sub_millisecond_round_trip_noise_is_not_a_queue() {
    // Loopback with batched I/O: min RTT 50 µs, but rounds take 400 µs
    // (8×: a batch in flight, two processes on shared cores) whatever the
    // window, and 10% random loss. Before QUEUE_FLOOR this read as a
    // standing queue and held cwnd at MIN_CWND (10% loss ran at 0.11-0.17×
    // the clean rate on the bench); now the window keeps growing.
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(64, 256);
    let mut highest = 0;
    drive(
        &mut rc,
        t0,
        1,
        60,
        us(400),
        us(50),
        |c| c * 9 / 10,
        10,
        &mut highest,
    );
    assert_eq!(rc.reductions(), 0, "no congestion response");
    assert!(rc.random_episodes() > 0, "episodes were judged");
    assert!(rc.get() > 64, "cwnd {} grew", rc.get());
}

#[test]
fn heavy_loss_with_a_standing_queue_shrinks_the_window() {
    // Negative control: a bottleneck delivering 50 datagrams per 2 ms
    // (min RTT), cwnd far above that (a standing queue: RTT inflated),
    // and 20% of what is sent lost (buffer overflow). The controller
    // must cut, repeatedly, to about the BDP and not below MIN_CWND.
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(200, 1000);
    let mut highest = 0;
    let min_rtt = us(2_000);
    let ts = drive(
        &mut rc,
        t0,
        1,
        8,
        us(2_000),
        min_rtt,
        |_| 50,
        0,
        &mut highest,
    );
    assert!(!rc.in_slow_start(), "the delivery rate stopped growing");
    let before = rc.get();
    // With a standing queue the RTT is inflated to 4 ms: the same 50
    // per round at twice the round time.
    drive(
        &mut rc,
        t0,
        ts,
        20,
        us(4_000),
        min_rtt,
        |_| 50,
        5,
        &mut highest,
    );
    assert!(rc.reductions() >= 1, "congestion must be detected");
    assert!(rc.get() < before, "cwnd {} !< {before}", rc.get());
    // bw = 50 / 4 ms = 12.5/ms; BDP = 25 → cwnd near (1 + Q_REL) · 25.
    assert!(rc.get() <= 40, "cwnd {} should approach the BDP", rc.get());
    assert!(rc.get() >= MIN_CWND);
}

#[test]
fn loss_above_the_ceiling_is_congestion_even_without_a_queue() {
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(100, 256);
    let mut highest = 0;
    let rtt = us(2_000);
    // One in three lost, RTT at its minimum.
    drive(&mut rc, t0, 1, 10, rtt, rtt, |c| c * 2 / 3, 2, &mut highest);
    assert!(rc.reductions() > 0);
    assert_eq!(rc.get(), MIN_CWND);
}

#[test]
fn one_judgement_per_episode() {
    let mut rc = RateControl::new(100, 256);
    rc.slow_start = false;
    rc.last_round = (10, 10); // 50% loss: congestive
    assert_eq!(rc.on_loss_episode(50, 150, None), LossVerdict::Congestive);
    assert_eq!(rc.get(), 70);
    assert_eq!(rc.on_loss_episode(120, 200, None), LossVerdict::SameEpisode);
    // No growth inside a congestive episode.
    rc.on_arrival(0);
    assert_eq!(rc.get(), 70);
    rc.on_highest(151);
    assert!(!rc.in_recovery());
    assert_eq!(rc.on_loss_episode(160, 230, None), LossVerdict::Congestive);
    assert_eq!(rc.get(), 49);
    rc.on_highest(231);
    for _ in 0..10 {
        rc.on_loss_episode(rc.recovery_until.unwrap_or(0) + 1, 0, None);
    }
    assert_eq!(rc.get(), MIN_CWND, "never below the minimum");
    assert_eq!(rc.min_seen(), MIN_CWND);
}

#[test]
fn third_consecutive_probe_timeout_is_persistent_congestion() {
    let mut rc = RateControl::new(200, 256);
    rc.on_probe_timeout(1);
    rc.on_probe_timeout(2);
    assert_eq!(rc.get(), 200);
    assert!(rc.in_slow_start());
    rc.on_probe_timeout(3);
    assert_eq!(rc.get(), MIN_CWND);
    assert!(!rc.in_slow_start());
    // Small caps: the minimum is the cap.
    let mut rc = RateControl::new(8, 8);
    rc.on_probe_timeout(3);
    assert_eq!(rc.get(), 8);
}

#[test]
fn slow_start_ends_on_heavy_loss() {
    let mut rc = RateControl::new(64, 1000);
    for k in 0..100 {
        rc.on_arrival(u32::from(k % 3 == 0));
    }
    assert!(!rc.in_slow_start());
    assert!(rc.get() < 64 + 100);
}

#[test]
fn without_differentiation_every_episode_halves_down_to_one() {
    let mut rc = RateControl::new(64, 256).without_loss_differentiation();
    let mut highest = 0;
    for _ in 0..10 {
        highest += 100;
        assert_eq!(
            rc.on_loss_episode(highest, highest, None),
            LossVerdict::Congestive
        );
    }
    assert_eq!(rc.get(), 1);
}

#[test]
fn zero_initial_and_zero_max_are_clamped() {
    let rc = RateControl::new(0, 0);
    assert_eq!(rc.get(), 1);
    assert_eq!(rc.max(), 1);
}

/// Round trips of a paced path: each round delivers what the window, the
/// pacing rate and the path's `cap` allow, with no loss. Returns the
/// next timestamp and the last round's deliveries.
fn drive_paced(
    rc: &mut RateControl,
    t0: Instant,
    mut ts: u64,
    rounds: u32,
    rtt: Duration,
    cap: u32,
    highest: &mut u32,
) -> (u64, u32) {
    let mut n = 0;
    for _ in 0..rounds {
        let start = t0 + Duration::from_micros(ts);
        rc.on_echo(start, ts - 1, Some(rtt));
        rc.on_ack_sent(start, ts);
        let paced = match rc.pacing_rate() {
            0 => u32::MAX,
            r => (f64::from(r) * rtt.as_secs_f64()) as u32,
        };
        n = rc.get().min(paced).min(cap);
        for _ in 0..n {
            *highest += 1;
            rc.on_highest(*highest);
            rc.on_arrival(0);
        }
        ts += rtt.as_micros() as u64;
    }
    (ts, n)
}

#[test]
fn start_up_resumes_when_probing_finds_the_pipe_far_from_full() {
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(64, 1 << 20);
    let mut highest = 0;
    let rtt = us(50_000);
    // The path holds 100 a round at first (start-up ends on the plateau)...
    let (ts, _) = drive_paced(&mut rc, t0, 1, 40, rtt, 100, &mut highest);
    assert!(!rc.in_slow_start());
    assert_eq!(rc.restarts(), 0);
    // ...then 10,000 (the flow it shared with left, or start-up had ended
    // on a false alarm). Probing alone gains 1.25x per 8-round cycle: 20
    // cycles, 160 rounds, to get there. Start-up resumes after two cycles
    // of growth and doubles the rest of the way.
    let mut ts = ts;
    let mut rounds = 0;
    loop {
        let (next, n) = drive_paced(&mut rc, t0, ts, 1, rtt, 10_000, &mut highest);
        ts = next;
        rounds += 1;
        if n >= 9_000 {
            break;
        }
        assert!(rounds < 40, "only {n} a round after {rounds} rounds");
    }
    assert_eq!(rc.restarts(), 1, "start-up resumed once");
    // And it ended again at the new plateau, not above it.
    drive_paced(&mut rc, t0, ts, 10, rtt, 10_000, &mut highest);
    assert!(!rc.in_slow_start());
    assert!(rc.get() <= 2 * 10_000 + 64, "cwnd {}", rc.get());
}

#[test]
fn a_flow_at_the_path_rate_never_resumes_start_up() {
    let t0 = crate::clock::now();
    let mut rc = RateControl::new(64, 1 << 20);
    let mut highest = 0;
    let rtt = us(50_000);
    drive_paced(&mut rc, t0, 1, 400, rtt, 1_000, &mut highest);
    assert!(!rc.in_slow_start());
    assert_eq!(rc.restarts(), 0, "probing at capacity found nothing");
}

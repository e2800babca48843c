//! Completion time, datagrams per value and the longest in-order stall
//! against random loss, from the deterministic simulator (virtual time).
//!
//! ```text
//! cargo run --release --example loss_study -- [--seeds 10] [--len 30000]
//! cargo run --release --example loss_study -- --short [--seeds 200]
//! ```
//!
//! The default table: one client per run, 1 ms one way, loss applied in
//! both directions, medians over the seeds (stall and timer expiries: the
//! worst seed). `--short`: `len 50` over a 0.05 ms one-way link at 10% loss,
//! completion-time percentiles over the seeds.

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::sim::run;
use risp_udp::stats::duration_to_ms;
use risp_udp::transfer::{RunConfig, TransferReport};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn one(seed: u64, len: u32, loss: f64, delay: Duration) -> TransferReport {
    let dir = DirectionConfig {
        loss,
        delay,
        ..DirectionConfig::default()
    };
    let cfg = RunConfig::new(seed, 1, len, ImpairmentConfig::symmetric(dir));
    let r = run(&cfg);
    let t = r.transfers.into_iter().next().expect("one transfer");
    if !t.verified() {
        eprintln!(
            "seed {seed} loss {loss}: not verified ({:?}, {}/{len} delivered)",
            t.error, t.delivered
        );
    }
    t
}

/// Completion time, or the whole simulated time limit if unfinished.
fn completion(t: &TransferReport) -> Duration {
    if t.verified() {
        t.finished_at.unwrap_or(Duration::MAX)
    } else {
        Duration::from_secs(600)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let short = std::env::args().any(|a| a == "--short");
    let seeds: u64 = arg("--seeds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(if short { 200 } else { 10 });
    if short {
        let mut t: Vec<f64> = (0..seeds)
            .map(|s| duration_to_ms(completion(&one(s, 50, 0.1, Duration::from_micros(50)))))
            .collect();
        t.sort_by(f64::total_cmp);
        println!(
            "len 50, 0.05 ms one way, 10% loss each way, {seeds} seeds: \
             completion p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&t, 0.5),
            percentile(&t, 0.99),
            t[t.len() - 1]
        );
        return;
    }
    let len: u32 = arg("--len").and_then(|s| s.parse().ok()).unwrap_or(30_000);
    if let Some(loss) = arg("--detail").and_then(|s| s.parse::<f64>().ok()) {
        for seed in 0..seeds {
            let t = one(seed, len, loss, Duration::from_millis(1));
            println!(
                "seed {seed}: {:.1} ms, cwnd min/max/final {}/{}/{}, expiries {}, acks {}, \
                 retransmit requests {}, out of window {}, srv dg/val {:.3}, stall {:.2} ms",
                duration_to_ms(completion(&t)),
                t.window.min,
                t.window.max,
                t.window.last,
                t.client.timeouts,
                t.client.acks_sent,
                t.client.retransmit_requests,
                t.client.out_of_window,
                t.datagrams_to_client as f64 / f64::from(len),
                duration_to_ms(t.max_stall)
            );
        }
        return;
    }
    let delay = Duration::from_millis(1);
    let rtt = 2.0 * duration_to_ms(delay);
    println!("{len} values, 1 ms one way, {seeds} seeds (median; stall and expiries: worst seed)");
    println!(
        "{:>5} {:>10} {:>8} {:>12} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "loss",
        "median ms",
        "×clean",
        "srv dg/val",
        "max dg/v",
        "stall ms",
        "stall RTT",
        "expiries",
        "acks/val"
    );
    let mut clean = None;
    for loss in [0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5] {
        let runs: Vec<TransferReport> = (0..seeds).map(|s| one(s, len, loss, delay)).collect();
        let mut time: Vec<f64> = runs.iter().map(|t| duration_to_ms(completion(t))).collect();
        time.sort_by(f64::total_cmp);
        let mut dg: Vec<f64> = runs
            .iter()
            .map(|t| t.datagrams_to_client as f64 / f64::from(len))
            .collect();
        dg.sort_by(f64::total_cmp);
        let mut acks: Vec<f64> = runs
            .iter()
            .map(|t| t.client.acks_sent as f64 / f64::from(len))
            .collect();
        acks.sort_by(f64::total_cmp);
        let stall = runs
            .iter()
            .map(|t| duration_to_ms(t.max_stall))
            .fold(0.0, f64::max);
        let expiries = runs.iter().map(|t| t.client.timeouts).max().unwrap_or(0);
        let median = percentile(&time, 0.5);
        let clean_median = *clean.get_or_insert(median);
        println!(
            "{:>4.0}% {:>10.1} {:>8.3} {:>12.3} {:>10.3} {:>9.2} {:>9.2} {:>9} {:>10.3}",
            loss * 100.0,
            median,
            clean_median / median,
            percentile(&dg, 0.5),
            dg[dg.len() - 1],
            stall,
            stall / rtt,
            expiries,
            percentile(&acks, 0.5),
        );
    }
}

//! Prints a throughput-vs-loss table from the deterministic simulator.
//!
//! `cargo run --release --example loss_table -- [SEED]`

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::sim::run;
use risp_udp::transfer::RunConfig;

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let len = 5_000u32;
    println!("seed {seed}, {len} values, 1 ms one-way delay, virtual time");
    println!(
        "{:>6} {:>5} {:>10} {:>12} {:>14} {:>9}",
        "loss", "sack", "verified", "values/s", "dgrams/value", "minimum"
    );
    for loss in [0.0, 0.01, 0.05, 0.1, 0.2, 0.3] {
        for sack in [true, false] {
            let dir = DirectionConfig {
                loss,
                delay: Duration::from_millis(1),
                ..DirectionConfig::default()
            };
            let mut cfg = RunConfig::new(seed, 1, len, ImpairmentConfig::symmetric(dir));
            cfg.client.sack = sack;
            let r = run(&cfg);
            let t = &r.transfers[0];
            let secs = t.finished_at.unwrap_or(r.elapsed).as_secs_f64();
            println!(
                "{:>5.0}% {:>5} {:>10} {:>12.0} {:>14.3} {:>9.3}",
                loss * 100.0,
                if sack { "on" } else { "off" },
                t.verified(),
                f64::from(len) / secs,
                t.datagrams_to_client as f64 / f64::from(len),
                1.0 / (1.0 - loss)
            );
        }
    }
}

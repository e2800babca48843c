//! Quick look at one simulated transfer: `cargo run --example sim_probe -- LOSS LEN SEED [nosack]`.
use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::sim::{run, SimConfig};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let loss: f64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0.1);
    let len: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seed: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut d = DirectionConfig::default();
    d.loss = loss;
    d.delay = std::time::Duration::from_millis(1);
    let mut cfg = SimConfig::new(seed, 1, len, ImpairmentConfig::symmetric(d));
    cfg.client.sack = args.get(4).map(|a| a != "nosack").unwrap_or(true);
    let r = run(&cfg);
    let t = &r.transfers[0];
    println!(
        "verified={} err={:?} delivered={} data_sent={} ratio={:.3} min={:.3} t={:?} to_server={} win {}..{} final {} timeouts={} server={:?}",
        t.verified(), t.error, t.delivered, t.data_sent,
        t.data_sent as f64 / len as f64, 1.0 / (1.0 - loss),
        t.finished_at, t.datagrams_to_server, t.window_min, t.window_max, t.window_final, t.client.timeouts, (t.client, &r.links)
    );
}

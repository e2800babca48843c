//! Soak: keeps N sessions running against a server (another process) for a
//! while, with loss and a killswitch on every client, starting a new
//! transfer whenever one ends; prints how many verified. Sample the
//! server's memory from outside (`scripts/soak.sh` does both).
//!
//! `cargo run --release --example soak -- ADDR CLIENTS LEN LOSS KILLSWITCH_MS SECONDS`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::Client;

#[derive(Default)]
struct Counts {
    started: AtomicU64,
    verified: AtomicU64,
    failed: AtomicU64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 {
        eprintln!("usage: soak ADDR CLIENTS LEN LOSS KILLSWITCH_MS SECONDS");
        std::process::exit(2);
    }
    let parse_err = |what: &str| -> ! {
        eprintln!("soak: bad {what}");
        std::process::exit(2)
    };
    let server: SocketAddr = args[0].parse().unwrap_or_else(|_| parse_err("ADDR"));
    let clients: u64 = args[1].parse().unwrap_or_else(|_| parse_err("CLIENTS"));
    let len: u32 = args[2].parse().unwrap_or_else(|_| parse_err("LEN"));
    let loss: f64 = args[3].parse().unwrap_or_else(|_| parse_err("LOSS"));
    let kill: u64 = args[4]
        .parse()
        .unwrap_or_else(|_| parse_err("KILLSWITCH_MS"));
    let secs: u64 = args[5].parse().unwrap_or_else(|_| parse_err("SECONDS"));
    let counts = Arc::new(Counts::default());
    let deadline = risp_udp::clock::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for worker in 0..clients {
        let counts = counts.clone();
        tasks.push(tokio::spawn(async move {
            let mut round = 0u64;
            while risp_udp::clock::now() < deadline {
                let seed = worker * 1_000_003 + round;
                let lossy = ImpairmentConfig::symmetric(DirectionConfig::with_loss(loss));
                // A report per transfer is all the soak reads: no histograms
                // (with them, the soak process of 1000 clients reached 950 MiB).
                let mut client = Client::connect([server])
                    .impairment(lossy, seed)
                    .keep_histograms(false);
                if kill > 0 {
                    client = client.killswitch(Duration::from_millis(kill));
                }
                counts.started.fetch_add(1, Ordering::Relaxed);
                let report = match client.request(len).await {
                    Ok(transfer) => transfer.finish().await,
                    Err(e) => Err(e),
                };
                match report {
                    Ok(r) if r.verified() => counts.verified.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("soak: transfer failed: {:?}", r.error);
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("soak: socket error: {e}");
                        counts.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                round += 1;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let c = &counts;
    println!(
        "soak: {} transfers started, {} verified, {} failed",
        c.started.load(Ordering::Relaxed),
        c.verified.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed)
    );
    let ok = c.failed.load(Ordering::Relaxed) == 0;
    std::process::exit(if ok { 0 } else { 1 })
}

//! Embeds a risp-udp server and client in one program over loopback.
//!
//! `cargo run --release --example embedded -- [LEN] [LOSS]`

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::{Client, Server};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let len: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let loss: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0.05);

    // The server, on a free loopback port; the client, with loss applied
    // to its own socket.
    let server = Server::builder().start().await?;
    let lossy = ImpairmentConfig::symmetric(DirectionConfig::with_loss(loss));
    let client = Client::connect([server.local_addr()]).impairment(lossy, 1);
    let mut transfer = client.request(len).await?;
    let mut sum = 0u64;
    while let Some(v) = transfer.next().await {
        sum += u64::from(v?.value);
    }
    let report = transfer.finish().await?;

    let stats = server.shutdown().await?.stats;
    println!(
        "{len} values at {:.0}% loss: {:?} in {:?}; sum {sum}, server checksum {:?}",
        loss * 100.0,
        report.result(),
        report.elapsed,
        report.checksum
    );
    println!(
        "server sent {} datagrams ({} retransmitted) for {len} values",
        stats.datagrams_sent, stats.retransmits
    );
    Ok(())
}

//! Embeds a risp-udp server and client in one program over loopback.
//!
//! `cargo run --release --example embedded -- [LEN] [LOSS]`

use std::sync::{Arc, Mutex};

use risp_netem::{DirectionConfig, ImpairmentConfig, LossySocket};
use risp_udp::net::client::{self, ClientOptions};
use risp_udp::net::server::{self, ServerSummary};
use risp_udp::net::socket;
use risp_udp::proto::client::ClientConfig;
use risp_udp::proto::server::ServerConfig;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let len: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let loss: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0.05);

    // The server: one socket, every session.
    let sock = socket::bind(([127, 0, 0, 1], 0).into()).await?;
    let addr = sock.local_addr()?;
    let summary = Arc::new(Mutex::new(ServerSummary::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(
        LossySocket::passthrough(sock),
        ServerConfig::default(),
        summary,
        async {
            let _ = stopped.await;
        },
    ));

    // The client, with loss applied to its own socket.
    let mut opts = ClientOptions::new(addr, ClientConfig::new(uuid::Uuid::new_v4(), len));
    opts.impairment = Some((
        ImpairmentConfig::symmetric(DirectionConfig::with_loss(loss)),
        1,
    ));
    let mut sum = 0u64;
    let outcome = client::run(opts, |_, value| sum += u64::from(value)).await?;

    let _ = stop.send(());
    let stats = server.await.map_err(std::io::Error::other)??.stats;
    println!(
        "{len} values at {:.0}% loss: {:?} in {:?}; sum {sum}, server checksum {:?}",
        loss * 100.0,
        outcome.result(),
        outcome.elapsed,
        outcome.checksum
    );
    println!(
        "server sent {} datagrams ({} retransmitted) for {len} values",
        stats.datagrams_sent, stats.retransmits
    );
    Ok(())
}

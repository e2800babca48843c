//! Transfers over real loopback sockets, through the lossy-socket shim:
//! an in-process server (`support::loopback`) and clients of the library's
//! driver, each client socket impaired as `risp_udp::suite::real` impairs
//! it, every delivered value checked against the session's seed.

mod support;

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::proto::client::ClientConfig;
use risp_udp::proto::server::ServerConfig;
use risp_udp::transfer::link_seed;
use risp_udp::Client;
use support::loopback::{transfer_within, TestServer};
use uuid::Uuid;

fn lossy(p: f64) -> ImpairmentConfig {
    ImpairmentConfig::symmetric(DirectionConfig {
        loss: p,
        ..DirectionConfig::default()
    })
}

/// Client `client` of a run seeded `seed`: `len` values from `server`,
/// its socket impaired by `imp` (both directions, with its rebinds).
fn impaired(server: &TestServer, seed: u64, client: usize, imp: &ImpairmentConfig) -> Client {
    server
        .client()
        .impairment(imp.clone(), link_seed(seed, client))
        .rebind_at(imp.rebind_at.clone())
}

/// 50 concurrent clients against one server at 10% loss each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_at_ten_percent_loss_all_verify() {
    const CLIENTS: usize = 50;
    let server = TestServer::start(ServerConfig::default()).await;
    let imp = lossy(0.1);
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let c = impaired(&server, 42, i, &imp);
            tokio::spawn(transfer_within(c, 2_000, Duration::from_secs(120)))
        })
        .collect();
    let mut dropped = 0;
    for task in tasks {
        let (t, got) = task.await.unwrap();
        assert!(t.verified(), "{:?} delivered {}", t.error, t.delivered);
        assert!(
            t.client.retransmit_requests > 0,
            "loss must have been recovered from"
        );
        server.check(&t, &got);
        dropped += t.link.to_client.dropped + t.link.to_server.dropped;
    }
    let summary = server.stop().await;
    let s = &summary.stats;
    assert_eq!(s.sessions_opened, CLIENTS as u64);
    // A client finishes after its CLOSED and three retries even unanswered,
    // so a session is left open only if all four drop (p = 0.1^4): every
    // session is closed, expired or still held, none aborted; and more than
    // 10 of 50 left open has p < C(50,11)·1e-44 < 1e-33.
    assert_eq!(s.sessions_aborted, 0, "{s:?}");
    assert_eq!(
        s.sessions_closed + s.sessions_expired + summary.sessions as u64,
        CLIENTS as u64,
        "{s:?}"
    );
    assert!(s.sessions_closed >= 40, "{s:?}");
    assert!(dropped > 0);
}

/// The client's source port changes three times mid-transfer (NAT
/// rebinding): the server follows the session's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_mid_transfer_over_real_sockets() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut imp = lossy(0.02);
    imp.to_client.delay = Duration::from_millis(1);
    imp.rebind_at = [20, 60, 250].map(Duration::from_millis).to_vec();
    let mut config = ClientConfig::new(Uuid::new_v4(), 0);
    config.max_window = 64;
    let c = impaired(&server, 3, 0, &imp).config(config);
    let (t, got) = transfer_within(c, 20_000, Duration::from_secs(60)).await;
    assert!(t.verified(), "{:?}", t.error);
    server.check(&t, &got);
    // At most 64 values per 1 ms round trip: the transfer lasts >= 312 ms,
    // so every rebind happens before it ends.
    assert_eq!(t.rebinds, 3, "{t:?}");
    let s = server.stop().await.stats;
    // A rebind before the handshake completes is no migration; the last
    // one comes after it unless the handshake took over 250 ms.
    assert!(s.migrations >= 1, "{s:?}");
}

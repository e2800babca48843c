//! Transfers over real loopback sockets, through the lossy-socket shim.

use std::time::Duration;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::suite::real;
use risp_udp::transfer::RunConfig;

fn lossy(p: f64) -> ImpairmentConfig {
    ImpairmentConfig::symmetric(DirectionConfig {
        loss: p,
        ..DirectionConfig::default()
    })
}

/// 50 concurrent clients against one server at 10% loss each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_clients_at_ten_percent_loss_all_verify() {
    let mut cfg = RunConfig::new(42, 50, 2_000, lossy(0.1));
    cfg.time_limit = Duration::from_secs(120);
    let r = real::run(&cfg).await.unwrap();
    for t in &r.transfers {
        assert!(t.verified(), "{:?} delivered {}", t.error, t.delivered);
        assert!(
            t.client.retransmit_requests > 0,
            "loss must have been recovered from"
        );
    }
    assert_eq!(r.server.sessions_opened, 50);
    assert_eq!(r.server.sessions_closed, 50);
    let dropped: u64 = r
        .transfers
        .iter()
        .map(|t| &t.link)
        .map(|l| l.to_client.dropped + l.to_server.dropped)
        .sum();
    assert!(dropped > 0);
}

/// The client's source port changes twice mid-transfer (NAT rebinding):
/// the server follows the session's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_mid_transfer_over_real_sockets() {
    let mut imp = lossy(0.02);
    imp.to_client.delay = Duration::from_millis(1);
    imp.rebind_at = vec![Duration::from_millis(20), Duration::from_millis(60)];
    let mut cfg = RunConfig::new(3, 1, 20_000, imp);
    cfg.client.max_window = 64;
    let r = real::run(&cfg).await.unwrap();
    let t = &r.transfers[0];
    assert!(t.verified(), "{:?}", t.error);
    assert!(r.server.migrations >= 1, "{:?}", r.server);
}

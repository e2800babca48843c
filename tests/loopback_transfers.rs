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
    // A client finishes after its CLOSED and three retries even unanswered,
    // so a session is left open only if all four drop (p = 0.1^4): every
    // session is closed, expired or still held, none aborted; and more than
    // 10 of 50 left open has p < C(50,11)·1e-44 < 1e-33.
    assert_eq!(r.server.sessions_aborted, 0, "{:?}", r.server);
    assert_eq!(
        r.server.sessions_closed + r.server.sessions_expired + r.sessions_left as u64,
        50,
        "{:?}",
        r.server
    );
    assert!(r.server.sessions_closed >= 40, "{:?}", r.server);
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
    imp.rebind_at = [20, 60, 250].map(Duration::from_millis).to_vec();
    let mut cfg = RunConfig::new(3, 1, 20_000, imp);
    cfg.client.max_window = 64;
    let r = real::run(&cfg).await.unwrap();
    let t = &r.transfers[0];
    assert!(t.verified(), "{:?}", t.error);
    // At most 64 values per 1 ms round trip: the transfer lasts >= 312 ms,
    // so every rebind happens before it ends.
    assert_eq!(t.rebinds, 3, "{t:?}");
    // A rebind before the handshake completes is no migration; the last
    // one comes after it unless the handshake took over 250 ms.
    assert!(r.server.migrations >= 1, "{:?}", r.server);
}

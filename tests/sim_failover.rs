//! Client failover in virtual time: a client that knows two server
//! addresses moves to the next when its server goes silent or forgets the
//! session, resumes there by UUID and token, and verifies. Two addresses
//! leading to the same `Server` model two instances that share a session
//! store exactly; two `Server`s model instances that share nothing.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use risp_udp::proto::client::{ClientConfig, ClientError, LostReason};
use risp_udp::proto::congestion::INIT_CWND;
use risp_udp::proto::recovery::SILENT_PROBES_BEFORE_FAILOVER;
use risp_udp::proto::server::{Server, ServerConfig};
use support::virtual_time::Failover;
use uuid::Uuid;

const A: usize = 0;
const B: usize = 1;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8081))
}

fn server(seed: u64) -> Server {
    Server::new(ServerConfig {
        seed: Some(seed),
        ..ServerConfig::default()
    })
}

fn config(len: u32) -> ClientConfig {
    let mut c = ClientConfig::new(Uuid::from_bytes([3; 16]), len);
    c.idle_timeout = Duration::from_secs(5);
    c
}

/// Addresses A and B in front of one server: instances sharing a store.
fn shared(len: u32, loss: f64, seed: u64) -> Failover {
    Failover::new(
        vec![server(seed)],
        vec![(addr(1), 0), (addr(2), 0)],
        config(len),
        Duration::from_millis(1),
        loss,
        seed,
    )
}

/// A and B in front of two servers that share nothing.
fn separate(len: u32) -> Failover {
    Failover::new(
        vec![server(1), server(2)],
        vec![(addr(1), 0), (addr(2), 1)],
        config(len),
        Duration::from_millis(1),
        0.0,
        1,
    )
}

fn assert_verified(net: &Failover, len: u32) {
    assert_eq!(net.failed, None);
    assert!(net.completed && net.verified.is_some(), "not verified");
    assert_eq!(net.values.len(), len as usize);
    assert!(net.values_match(), "a value differs from the server's");
}

#[test]
fn a_server_gone_silent_mid_transfer_is_left_for_the_next() {
    let len = 5_000;
    let mut net = shared(len, 0.0, 7);
    assert!(net.run_until(Duration::from_secs(10), |n| n.values.len() >= 2_000));
    assert_eq!(net.client().server_index(), 0);
    net.cut(A);
    // The moment it moves: a new path, so a fresh RTT estimate and window.
    assert!(
        net.run_until(Duration::from_secs(20), |n| n.client().stats().failovers
            == 1)
    );
    assert_eq!(net.client().server_index(), 1);
    assert_eq!(net.client().rtt().srtt(), None, "the RTT starts over");
    assert_eq!(
        net.client().window().get(),
        INIT_CWND,
        "the window starts over"
    );
    assert!(
        net.client().window().max_seen() > INIT_CWND,
        "the report's extremes cover the first path too"
    );
    assert_eq!(
        net.lost,
        vec![(
            A,
            LostReason::Silent {
                timeouts: SILENT_PROBES_BEFORE_FAILOVER
            }
        )]
    );
    net.run(Duration::from_secs(60));
    assert_verified(&net, len);
    assert_eq!(net.client().stats().failovers, 1);
    assert!(net.sent_to()[B] > 0);
    assert!(
        net.client().rtt().srtt().is_some(),
        "sampled on the new path"
    );
}

#[test]
fn a_server_silent_from_the_start_is_left_before_the_handshake_completes() {
    let len = 1_000;
    let mut net = shared(len, 0.0, 8);
    net.cut(A);
    net.run(Duration::from_secs(60));
    assert_verified(&net, len);
    assert_eq!(net.client().stats().failovers, 1);
    assert_eq!(net.lost.len(), 1);
    assert_eq!(net.lost[0].0, A);
}

/// Thousands of lossy transfers, each cut off from A halfway: every one
/// moves to B exactly once and verifies.
#[test]
fn failover_under_loss_verifies_over_many_seeds() {
    let len = 2_000;
    let runs = 2_000;
    for seed in 0..runs {
        let mut net = shared(len, 0.1, seed);
        let cut = net.run_until(Duration::from_secs(30), |n| {
            n.values.len() >= len as usize / 2
        });
        assert!(cut, "seed {seed}: never got halfway");
        net.cut(A);
        net.run(Duration::from_secs(120));
        assert_eq!(net.failed, None, "seed {seed}");
        assert!(
            net.verified.is_some() && net.completed,
            "seed {seed}: not verified"
        );
        assert!(net.values_match(), "seed {seed}: wrong values");
        assert_eq!(net.values.len(), len as usize, "seed {seed}");
        assert_eq!(net.client().stats().failovers, 1, "seed {seed}");
        assert!(
            matches!(net.lost[..], [(A, LostReason::Silent { .. })]),
            "seed {seed}: {:?}",
            net.lost
        );
    }
}

/// A restarts without a shared store and forgets the session; B never
/// knew it: once both refused, the transfer fails at once.
#[test]
fn when_every_server_forgets_the_session_the_transfer_fails_at_once() {
    let len = 5_000;
    let mut net = separate(len);
    assert!(net.run_until(Duration::from_secs(10), |n| n.values.len() >= 2_000));
    let at = net.now();
    *net.server_mut(0) = server(3);
    net.run(Duration::from_secs(60));
    assert_eq!(net.failed, Some(ClientError::SessionExpired));
    assert_eq!(net.lost, vec![(A, LostReason::UnknownSession)]);
    assert_eq!(net.client().stats().failovers, 1);
    assert!(net.sent_to()[B] > 0, "B was tried");
    assert!(!net.completed && net.verified.is_none());
    assert!(
        net.now() - at < Duration::from_secs(1),
        "failed at once, not at the idle timeout"
    );
}

/// A goes silent and B does not know the session: the client keeps
/// trying both (A might come back) until the idle timeout, then fails.
#[test]
fn a_gone_server_and_a_forgetful_one_fail_at_the_idle_timeout() {
    let len = 5_000;
    let mut net = separate(len);
    assert!(net.run_until(Duration::from_secs(10), |n| n.values.len() >= 2_000));
    net.cut(A);
    net.run(Duration::from_secs(60));
    assert!(
        matches!(net.failed, Some(ClientError::Timeout(_))),
        "{:?}",
        net.failed
    );
    assert!(net
        .lost
        .iter()
        .any(|l| matches!(l, (A, LostReason::Silent { .. }))));
    assert!(net.lost.contains(&(B, LostReason::UnknownSession)));
    assert!(
        net.client().stats().failovers >= 2,
        "back to A at least once"
    );
    assert!(net.sent_to()[B] > 0);
}

/// With one server nothing changes: silence ends the transfer at the idle
/// timeout, a forgotten session at once, and the client never asks to
/// move.
#[test]
fn with_one_server_the_client_never_asks_to_move() {
    let one = |net_server: Server| {
        Failover::new(
            vec![net_server],
            vec![(addr(1), 0)],
            config(5_000),
            Duration::from_millis(1),
            0.0,
            1,
        )
    };
    let mut net = one(server(1));
    assert!(net.run_until(Duration::from_secs(10), |n| n.values.len() >= 2_000));
    net.cut(A);
    net.run(Duration::from_secs(60));
    assert!(matches!(net.failed, Some(ClientError::Timeout(_))));
    assert!(net.lost.is_empty());
    assert_eq!(net.client().stats().failovers, 0);

    let mut net = one(server(1));
    assert!(net.run_until(Duration::from_secs(10), |n| n.values.len() >= 2_000));
    *net.server_mut(0) = server(2);
    net.run(Duration::from_secs(60));
    assert_eq!(net.failed, Some(ClientError::SessionExpired));
    assert!(net.lost.is_empty());
}

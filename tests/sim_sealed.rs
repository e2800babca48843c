//! Sealed sessions in the simulator (issue 21): the Noise handshake in
//! CONNECTING and its reply, every datagram after it sealed, under loss.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::proto::client::{ClientEncryption, ClientError};
use risp_udp::proto::crypto::ServerKey;
use risp_udp::proto::server::{Encryption, Reject};
use risp_udp::sim::run;
use risp_udp::transfer::{RunConfig, RunReport};

fn key(seed: u64) -> ServerKey {
    ServerKey::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

fn lossy(loss: f64) -> ImpairmentConfig {
    ImpairmentConfig::symmetric(DirectionConfig {
        loss,
        delay: Duration::from_millis(1),
        ..DirectionConfig::default()
    })
}

/// A run whose server holds `server_key` and whose clients ask for
/// sealed sessions as `client` says.
fn sealed(seed: u64, clients: usize, len: u32, loss: f64, client: ClientEncryption) -> RunConfig {
    let mut cfg = RunConfig::new(seed, clients, len, lossy(loss));
    cfg.server.encryption = Encryption::Preferred;
    cfg.server.key = Some(key(7));
    cfg.client.encryption = client;
    cfg
}

fn assert_verified(r: &RunReport, what: &str) {
    for t in &r.transfers {
        assert!(
            t.verified(),
            "{what} seed {}: not verified: {:?}, delivered {}/{}, wrong {}",
            r.seed,
            t.error,
            t.delivered,
            t.len,
            t.wrong_values
        );
    }
}

#[test]
fn one_sealed_transfer_verifies_and_is_sealed() {
    let r = run(&sealed(1, 1, 2_000, 0.0, ClientEncryption::Learn));
    assert_verified(&r, "clean");
    assert_eq!(r.server.sessions_sealed, 1);
    assert_eq!(r.server.handshakes, 1);
    assert_eq!(r.server.undecryptable, 0);
    assert!(r.server.sessions_closed == 1, "{:?}", r.server);
}

#[test]
fn sealed_transfers_verify_at_ten_percent_loss_over_100_seeds() {
    let mut sealed_sessions = 0;
    for seed in 0..100 {
        let r = run(&sealed(
            seed,
            2,
            500,
            0.1,
            ClientEncryption::Pinned(key(7).public()),
        ));
        assert_verified(&r, "10% loss");
        sealed_sessions += r.server.sessions_sealed;
    }
    assert!(sealed_sessions >= 200, "{sealed_sessions} sealed sessions");
}

#[test]
fn the_same_seed_gives_the_same_sealed_trace_and_another_seed_another() {
    let a = run(&sealed(5, 2, 300, 0.05, ClientEncryption::Learn));
    let b = run(&sealed(5, 2, 300, 0.05, ClientEncryption::Learn));
    let c = run(&sealed(6, 2, 300, 0.05, ClientEncryption::Learn));
    assert_ne!(a.trace_hash, 0);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn a_client_pinned_to_key_a_refuses_a_server_holding_key_b() {
    let r = run(&sealed(
        3,
        1,
        100,
        0.0,
        ClientEncryption::Pinned(key(8).public()),
    ));
    let t = &r.transfers[0];
    match &t.error {
        Some(ClientError::KeyMismatch { expected, offered }) => {
            assert_eq!(*expected, key(8).public());
            assert_eq!(*offered, key(7).public());
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
    assert_eq!(t.delivered, 0);
    // At once: one round trip, not an idle timeout.
    assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
}

#[test]
fn a_sealing_client_refuses_a_plain_server() {
    let mut cfg = sealed(4, 1, 100, 0.0, ClientEncryption::Learn);
    cfg.server.encryption = Encryption::Off;
    let r = run(&cfg);
    assert_eq!(r.transfers[0].error, Some(ClientError::NotEncrypted));
}

#[test]
fn a_server_requiring_encryption_refuses_a_plain_client() {
    let mut cfg = sealed(4, 1, 100, 0.0, ClientEncryption::Off);
    cfg.server.encryption = Encryption::Required;
    cfg.client.idle_timeout = Duration::from_secs(2);
    let r = run(&cfg);
    assert!(!r.transfers[0].verified());
    assert!(r.server.rejected(Reject::EncryptionRequired) > 0);
    assert_eq!(r.server.handshakes, 0);
}

#[test]
fn plain_clients_still_work_against_a_preferring_server() {
    let r = run(&sealed(2, 2, 500, 0.1, ClientEncryption::Off));
    assert_verified(&r, "plain");
    assert_eq!(r.server.sessions_sealed, 0);
}

/// The client's address changes every 200 ms while each round trip takes
/// 160 ms and a fifth of the datagrams are lost: a handshake repeated by
/// its timer late in a period gets its reply at an address the client
/// has left, and completes only because the server answers the repeat
/// the client sends from its next address (the same handshake message)
/// with the same reply: one X25519 handshake per client, no new UUID.
#[test]
fn a_handshake_survives_an_address_change_every_200_ms() {
    let mut repeats = 0;
    for seed in 0..20 {
        let mut cfg = sealed(seed, 1, 50, 0.0, ClientEncryption::Learn);
        cfg.impairment = ImpairmentConfig::symmetric(DirectionConfig {
            loss: 0.2,
            delay: Duration::from_millis(80),
            ..DirectionConfig::default()
        });
        cfg.killswitch = Some(Duration::from_millis(200));
        cfg.time_limit = Duration::from_secs(120);
        cfg.client.idle_timeout = Duration::from_secs(60);
        let r = run(&cfg);
        let t = &r.transfers[0];
        assert_eq!(
            t.client.restarts, 0,
            "seed {seed}: the handshake started over"
        );
        assert_eq!(r.server.handshakes, 1, "seed {seed}: {:?}", r.server);
        assert!(
            t.verified(),
            "seed {seed}: {:?} {}/{}",
            t.error,
            t.delivered,
            t.len
        );
        repeats += r.server.handshake_repeats;
    }
    assert!(
        repeats > 0,
        "no handshake was ever repeated: the test proves nothing"
    );
}

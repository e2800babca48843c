//! An on-path attacker against sealed sessions, in virtual time: a loop
//! that carries every datagram between one client core and one server
//! core and lets the attacker see each, replay it, damage it, and forge
//! plain acks, CLOSEDs, resumes, errors and challenges from its own
//! address and the client's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use risp_udp::proto::client::{Client, ClientConfig, ClientEncryption, ClientEvent};
use risp_udp::proto::crypto::ServerKey;
use risp_udp::proto::server::{Encryption, Reject, Server, ServerConfig};
use risp_udp::proto::wire::{ClientMessage, ErrorCode, ServerMessage, State, MAX_DATAGRAM_LEN};
use uuid::Uuid;

const CLIENT: &str = "10.0.0.2:4000";
const ATTACKER: &str = "10.0.0.66:6666";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn key() -> ServerKey {
    ServerKey::generate(&mut ChaCha20Rng::seed_from_u64(11))
}

struct Pair {
    now: Instant,
    client: Client,
    server: Server,
    up: Vec<Vec<u8>>,
    down: Vec<Vec<u8>>,
    values: Vec<(u32, u32)>,
    verified: bool,
    failed: Option<String>,
}

impl Pair {
    fn new(uuid: Uuid, len: u32) -> Self {
        let now = risp_udp::clock::now();
        let server = Server::new(ServerConfig {
            seed: Some(3),
            encryption: Encryption::Required,
            key: Some(key()),
            ..ServerConfig::default()
        });
        let mut cc = ClientConfig::new(uuid, len);
        cc.encryption = ClientEncryption::Pinned(key().public());
        cc.crypto_seed = Some(5);
        Self {
            now,
            client: Client::new(cc, now),
            server,
            up: Vec::new(),
            down: Vec::new(),
            values: Vec::new(),
            verified: false,
            failed: None,
        }
    }

    fn deliver(&mut self, d: &[u8]) {
        self.client.handle(self.now, d);
        while let Some(e) = self.client.poll_event() {
            match e {
                ClientEvent::Value { index, value, .. } => self.values.push((index, value)),
                ClientEvent::Verified { .. } => self.verified = true,
                ClientEvent::Failed(e) => self.failed = Some(e.to_string()),
                _ => {}
            }
        }
    }

    /// One round: everything either side has to send, carried across
    /// (and recorded); then time moves to the next timer if nothing moved.
    fn round(&mut self) -> bool {
        let mut moved = false;
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        while let Some(n) = self.client.poll_transmit(self.now, &mut buf) {
            self.up.push(buf[..n].to_vec());
            self.server.handle(self.now, addr(CLIENT), &buf[..n]);
            moved = true;
        }
        let mut out = Vec::new();
        while let Some(t) = self.server.poll_transmit(self.now, 64, &mut out) {
            for d in out[..t.size].chunks(t.segment_size) {
                let d = d.to_vec();
                self.down.push(d.clone());
                if t.destination == addr(CLIENT) {
                    self.deliver(&d);
                }
            }
            moved = true;
        }
        if !moved {
            let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => {
                    self.now = self.now.max(t) + Duration::from_micros(100);
                    self.client.handle_timeout(self.now);
                    self.server.handle_timeout(self.now);
                }
                None => return false,
            }
        }
        !self.client.is_finished()
    }
}

fn plain_client(uuid: Uuid, state: State, ack: u32, token: &[u8]) -> Vec<u8> {
    let msg = ClientMessage {
        state,
        uuid,
        len: 1000,
        window: 64,
        ack,
        timestamp: u64::MAX / 2,
        rate: 0,
        flags: 0,
        token,
        sack: &[],
    };
    let mut b = vec![0u8; MAX_DATAGRAM_LEN];
    let n = msg.encode(&mut b).unwrap();
    b.truncate(n);
    b
}

fn plain_server(uuid: Uuid, msg: ServerMessage) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    let n = msg.encode(uuid, &mut b).unwrap();
    b.truncate(n);
    b
}

#[test]
fn an_on_path_attacker_can_neither_take_over_end_nor_feed_a_sealed_session() {
    let uuid = Uuid::from_u128(0x1234_5678_9abc_4def_8123_4567_89ab_cdef);
    let mut p = Pair::new(uuid, 20_000);
    let mut rounds = 0;
    let mut attacks = 0;
    while p.round() {
        rounds += 1;
        assert!(rounds < 100_000, "no progress");
        if p.up.len() < 3 || p.down.len() < 3 {
            continue;
        }
        attacks += 1;
        let up = p.up[p.up.len() / 2].clone();
        let last_up = p.up.last().unwrap().clone();
        let down = p.down[p.down.len() / 2].clone();
        // Replays of the client's datagrams, from its address and ours.
        p.server.handle(p.now, addr(CLIENT), &up);
        p.server.handle(p.now, addr(ATTACKER), &last_up);
        // A damaged copy from our address (a resume that proves nothing).
        let mut bent = last_up.clone();
        let i = bent.len() - 3;
        bent[i] ^= 0x20;
        p.server.handle(p.now, addr(ATTACKER), &bent);
        // Plain forgeries: acks far ahead, CLOSED, a resume, from both.
        for from in [CLIENT, ATTACKER] {
            for (state, ack) in [
                (State::Connected, 999),
                (State::Closed, 1000),
                (State::Closing, 1000),
                (State::Connecting, 0),
            ] {
                let forged = plain_client(uuid, state, ack, &[0u8; 8]);
                p.server.handle(p.now, addr(from), &forged);
            }
        }
        // To the client: replays, damage, plain errors, closes, challenges
        // and values it must not believe.
        p.deliver(&down);
        let mut bent = down.clone();
        let i = bent.len() - 1;
        bent[i] ^= 1;
        p.deliver(&bent);
        for msg in [
            ServerMessage::Error {
                code: ErrorCode::UnknownSession,
                detail: 0,
                echo: 0,
            },
            ServerMessage::Closed { echo: 0 },
            ServerMessage::Challenge {
                challenge: [9; 8],
                echo: 0,
            },
            ServerMessage::Data {
                index: p.client.next_index(),
                payload: 0xdead_beef,
                echo: 0,
            },
            ServerMessage::Checksum {
                checksum: 42,
                echo: 0,
            },
        ] {
            let d = plain_server(uuid, msg);
            p.deliver(&d);
        }
    }
    assert!(attacks >= 5, "only {attacks} attacks");
    assert_eq!(p.failed, None);
    assert!(p.verified, "transfer did not verify");
    // Every value delivered once, in order: the client's checksum check
    // (verified) proves they are the server's; the indices are exact.
    let indices: Vec<u32> = p.values.iter().map(|v| v.0).collect();
    assert_eq!(indices, (0..20_000).collect::<Vec<_>>());
    let s = p.server.stats();
    assert!(s.replayed >= attacks as u64, "replayed {}", s.replayed);
    assert!(
        s.undecryptable >= attacks as u64,
        "undecryptable {}",
        s.undecryptable
    );
    assert!(s.rejected(Reject::Unsealed) >= 8 * attacks as u64);
    assert_eq!(s.migrations, 0, "the attacker moved the session");
    let c = p.client.stats();
    assert!(c.replayed + c.undecryptable >= attacks as u64);
    assert!(c.unsealed >= 5 * attacks as u64, "unsealed {}", c.unsealed);
    assert!(!p.values.iter().any(|v| v.1 == 0xdead_beef && v.0 != 0));
}

#[test]
fn flipping_any_byte_of_a_sealed_datagram_is_detected() {
    let uuid = Uuid::from_u128(0x2234_5678_9abc_4def_8123_4567_89ab_cdef);
    let mut p = Pair::new(uuid, 100_000);
    // Open the session and move a little data.
    for _ in 0..6 {
        p.round();
    }
    let up = p.up.last().unwrap().clone();
    let down = p.down.last().unwrap().clone();
    let accepted = p.server.stats().accepted;
    let events_before = p.values.len();
    let client_before = p.client.stats();
    let mut rejected = 0;
    for i in 0..up.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut d = up.clone();
            d[i] ^= mask;
            p.server.handle(p.now, addr(CLIENT), &d);
            rejected += 1;
        }
    }
    assert_eq!(
        p.server.stats().accepted,
        accepted,
        "a flipped datagram was accepted"
    );
    assert!(rejected > 100);
    for i in 0..down.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut d = down.clone();
            d[i] ^= mask;
            p.deliver(&d);
        }
    }
    let c = p.client.stats();
    let refused = (c.undecryptable + c.unsealed + c.corrupt + c.invalid + c.replayed)
        - (client_before.undecryptable
            + client_before.unsealed
            + client_before.corrupt
            + client_before.invalid
            + client_before.replayed);
    assert_eq!(refused, 3 * down.len() as u64);
    assert_eq!(p.values.len(), events_before);
}

#[test]
fn a_connecting_flood_is_answered_with_retry_before_any_handshake_work() {
    let mut server = Server::new(ServerConfig {
        seed: Some(1),
        encryption: Encryption::Required,
        key: Some(key()),
        max_sessions: 64,
        ..ServerConfig::default()
    });
    let now = risp_udp::clock::now();
    let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
    let mut floods = 0u64;
    for i in 0..2_000u32 {
        // A real client's first datagram, from a spoofed address each time.
        let mut cc = ClientConfig::new(Uuid::from_u128(u128::from(i) + 1), 1000);
        cc.encryption = ClientEncryption::Learn;
        cc.crypto_seed = Some(u64::from(i));
        let mut c = Client::new(cc, now);
        let n = c.poll_transmit(now, &mut buf).unwrap();
        let from: SocketAddr = format!("10.{}.{}.{}:999", i >> 16, (i >> 8) & 255, i & 255)
            .parse()
            .unwrap();
        server.handle(now, from, &buf[..n]);
        floods += 1;
    }
    let s = server.stats();
    // Only the handshakes admitted before pressure set in (an eighth of
    // the table pending) cost X25519; the rest were asked to Retry.
    assert_eq!(s.handshakes, 64 / 8);
    assert_eq!(s.rejected(Reject::RetryRequired), floods - 64 / 8);
}

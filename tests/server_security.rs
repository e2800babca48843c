//! The hardening findings, one black-box test each, in virtual time where
//! addresses can be spoofed freely: the server never sends a never-proven
//! address more than three times what it received from it; a spoofed
//! CONNECTING flood cannot lock a real client out; replays and forged
//! timestamps change nothing; window memory has a server-wide bound.
//! (Real-socket versions: tests/net_sessions.rs.)

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use risp_udp::proto::client::ClientConfig;
use risp_udp::proto::server::{Reject, RetryPolicy, ServerConfig, MIN_WINDOW_SHARE};
use risp_udp::proto::wire::{ServerMessage, State, FLAG_PROBE, MIN_CONNECTING_LEN};
use support::virtual_time::{Pair, ServerHarness};
use support::wire::ClientDatagram;
use uuid::Uuid;

fn addr(n: u32) -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::from(0x7f00_0000 + n), 40_000))
}

fn client(n: u8, len: u32) -> ClientConfig {
    let mut c = ClientConfig::new(Uuid::from_bytes([n; 16]), len);
    c.max_window = 1024;
    c.initial_window = 1024;
    c
}

fn seeded(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        seed: Some(7),
        ..config
    }
}

/// Finding 2: a client that owns a session puts a victim's address on its
/// token-bearing datagrams, of every kind. Whatever it sends, the victim
/// (who never answers) gets at most three times the bytes that arrived
/// "from" it; once the real client speaks again from its own (validated)
/// address, the transfer goes on and verifies. Before path validation one
/// 58-byte ack sent a window of 1,024 datagrams to the victim.
#[test]
fn spoofed_token_bearing_datagrams_never_amplify_towards_the_victim() {
    let mut w = Pair::new(seeded(ServerConfig {
        max_window: 1024,
        ..ServerConfig::default()
    }));
    let owner = addr(1);
    let victim = addr(2);
    w.add_client(client(1, 200_000), owner);
    w.pump(4);
    assert!(w.clients[0].values.len() > 100, "transfer under way");
    let mut rng = StdRng::seed_from_u64(3);
    let mut received = 0usize;
    let mut ts_bump = 1_000_000u64;
    for round in 0..400 {
        // The owner's newest datagram, turned into a spoof of some kind.
        let mut m = ClientDatagram::decode(&w.clients[0].last_sent);
        if m.state != State::Connected {
            break;
        }
        ts_bump += 1_000;
        m.ts += ts_bump;
        match round % 5 {
            0 => {}
            1 => m.flags = FLAG_PROBE,
            2 => {
                m.state = State::Connecting;
                m.sack.clear();
            }
            3 => m.state = State::Closing,
            _ => m.window = rng.gen_range(1..=8192),
        }
        let d = m.encode();
        received += d.len();
        w.inject(victim, &d);
        w.advance(Duration::from_micros(50));
        w.pump(2);
        let sent = w.stray_bytes.get(&victim).copied().unwrap_or(0);
        assert!(
            sent <= 3 * received,
            "round {round}: {sent} bytes to the victim for {received} from it"
        );
    }
    let sent = w.stray_bytes.get(&victim).copied().unwrap_or(0);
    assert!(
        sent > 0,
        "the victim was challenged (the test reaches the path)"
    );
    let s = w.server().stats();
    assert!(
        s.path_challenges > 0 && s.amplification_limited > 0,
        "{s:?}"
    );
    assert_eq!(s.path_validations, 0, "the victim never answered");
    w.run_to_completion(Duration::from_secs(30));
    assert!(w.clients[0].verified.is_some());
}

/// A real move (NAT rebinding): the client's next datagrams come from a new
/// port; the server challenges it, the client echoes the challenge, and the
/// transfer finishes from there at full speed.
#[test]
fn a_real_address_change_is_validated_and_the_transfer_verifies() {
    let mut w = Pair::new(seeded(ServerConfig::default()));
    w.add_client(client(1, 200_000), addr(1));
    w.pump(4);
    for (i, moved_to) in [addr(10), addr(11), addr(1)].into_iter().enumerate() {
        // Until the server has seen the previous move (the client acks
        // every so many arrivals, not on a clock), at most 100 steps.
        let seen = w.server().stats().migrations;
        for _ in 0..100 {
            w.advance(Duration::from_micros(200));
            w.pump(4);
            if i == 0 || w.server().stats().migrations > seen {
                break;
            }
        }
        w.move_client(0, moved_to);
        assert!(!w.clients[0].completed, "move {i} happens mid-transfer");
    }
    w.run_to_completion(Duration::from_secs(30));
    assert!(w.clients[0].verified.is_some());
    let s = w.server().stats();
    assert_eq!(s.migrations, 3, "{s:?}");
    // Two new addresses proved themselves; the way back to the first
    // address needed no challenge (it was proven by the handshake).
    assert_eq!(s.path_validations, 2, "{s:?}");
    assert!(w.client(0).stats().path_challenges >= 2);
}

/// Finding 5: 10× `max_sessions` CONNECTINGs from spoofed sources that never
/// answer. Past an eighth of the table the server stops allocating and
/// answers with stateless Retry tokens; a real client proves its address
/// with one and is served.
#[test]
fn a_spoofed_connecting_flood_leaves_a_real_client_served() {
    let max_sessions = 64;
    let mut w = Pair::new(seeded(ServerConfig {
        max_sessions,
        ..ServerConfig::default()
    }));
    let mut rng = StdRng::seed_from_u64(11);
    for i in 0..10 * max_sessions as u32 {
        let mut m = ClientDatagram::new(State::Connecting, Uuid::from_u128(rng.gen()), 1_000);
        m.ts = u64::from(i) + 1;
        let spoofed = addr(1_000 + rng.gen_range(0..1_000_000));
        w.inject(spoofed, &m.encode());
    }
    w.pump(1);
    let pending = w.server().pending_count();
    assert_eq!(
        pending,
        max_sessions / 8,
        "allocation stops at the pressure mark"
    );
    assert_eq!(w.server().session_count(), pending);
    let s = w.server().stats();
    assert_eq!(s.rejected(Reject::RetryRequired), 10 * 64 - pending as u64);
    // Retry replies are smaller than what they answer: nothing amplified.
    for (to, bytes) in &w.stray_bytes {
        assert!(*bytes <= 3 * MIN_CONNECTING_LEN, "{to}: {bytes}");
    }
    w.add_client(client(9, 5_000), addr(5));
    w.run_to_completion(Duration::from_secs(5));
    assert!(w.clients[0].verified.is_some());
    assert_eq!(w.client(0).stats().retries, 1);
    assert_eq!(w.server().stats().retry_validated, 1);
}

/// When the table is full of confirmed sessions and pending handshakes, a
/// client that proved its address takes the place of the oldest pending
/// handshake rather than being told "busy".
#[test]
fn a_validated_client_evicts_a_pending_handshake_from_a_full_table() {
    let max_sessions = 16;
    let mut w = Pair::new(seeded(ServerConfig {
        max_sessions,
        ..ServerConfig::default()
    }));
    // 14 real sessions, held open (long transfers, never finished).
    for n in 0..14u8 {
        w.add_client(client(100 + n, 10_000_000), addr(100 + u32::from(n)));
    }
    w.pump(4);
    // Two pending handshakes from spoofed sources fill the table.
    for n in 0..2u32 {
        let m = ClientDatagram::new(State::Connecting, Uuid::from_u128(u128::from(n) + 1), 10);
        w.inject(addr(5_000 + n), &m.encode());
    }
    assert_eq!(w.server().session_count(), max_sessions);
    assert_eq!(w.server().pending_count(), 2);
    let before = w.clients.len();
    w.add_client(client(7, 2_000), addr(7));
    for _ in 0..200 {
        w.advance(Duration::from_micros(200));
        w.pump(8);
        if w.clients[before].completed {
            break;
        }
    }
    assert!(w.clients[before].verified.is_some(), "served, not busy");
    let s = w.server().stats();
    assert_eq!(
        (s.pending_evicted, s.rejected(Reject::Busy)),
        (1, 0),
        "{s:?}"
    );
}

/// Retry tokens are bound to the address, UUID and length they were issued
/// for, and a forged one is answered with a fresh Retry, never a session.
#[test]
fn retry_tokens_work_only_for_the_client_they_were_issued_to() {
    let mut h = ServerHarness::new(seeded(ServerConfig {
        retry: RetryPolicy::Always,
        ..ServerConfig::default()
    }));
    let uuid = Uuid::from_u128(42);
    let hello = ClientDatagram::new(State::Connecting, uuid, 100);
    h.send(addr(1), &hello);
    let out = h.drain();
    let [(to, ServerMessage::Retry { token, echo })] = out[..] else {
        panic!("{out:?}");
    };
    assert_eq!((to, echo), (addr(1), hello.ts));
    assert_eq!(h.server.session_count(), 0, "no state for a Retry");
    let mut with = hello.clone();
    with.token = token.to_vec();
    // Another address, another length, another UUID, a flipped bit.
    let mut other_len = with.clone();
    other_len.len = 101;
    let mut other_uuid = with.clone();
    other_uuid.uuid = Uuid::from_u128(43);
    let mut flipped = with.clone();
    flipped.token[15] ^= 1;
    for (from, m) in [
        (addr(2), &with),
        (addr(1), &other_len),
        (addr(1), &other_uuid),
        (addr(1), &flipped),
    ] {
        h.send(from, m);
        let out = h.drain();
        assert!(
            matches!(out[..], [(to, ServerMessage::Retry { .. })] if to == from),
            "{out:?}"
        );
    }
    assert_eq!(h.server.stats().rejected(Reject::InvalidRetryToken), 4);
    // Expired: older than the handshake lifetime.
    h.at(Duration::from_secs(12));
    h.send(addr(1), &with);
    assert!(matches!(h.drain()[..], [(_, ServerMessage::Retry { .. })]));
    assert_eq!(h.server.session_count(), 0);
    // The right one, in time: a session with a validated address.
    let fresh = {
        h.send(addr(1), &hello);
        let out = h.drain();
        let [(_, ServerMessage::Retry { token, .. })] = out[..] else {
            panic!("{out:?}");
        };
        token
    };
    with.token = fresh.to_vec();
    h.send(addr(1), &with);
    let out = h.drain();
    assert!(matches!(out[0].1, ServerMessage::Accept { .. }), "{out:?}");
    assert_eq!(h.server.session_count(), 1);
    assert_eq!(
        h.server.pending_count(),
        0,
        "a proven address is not pending"
    );
}

/// Finding 7, second half: a recorded token-bearing CONNECTING (a resume)
/// replayed later is ignored: the session does not rewind, and the real
/// client's next ack is accepted as if nothing happened. A forged
/// token-less CONNECTING with the largest timestamp moves nothing either.
#[test]
fn replayed_resumes_and_forged_timestamps_change_nothing() {
    let mut w = Pair::new(seeded(ServerConfig::default()));
    w.add_client(client(1, 100_000), addr(1));
    w.pump(4);
    // The client moves (killswitch-like): it resumes with a CONNECTING.
    w.move_client(0, addr(2));
    let now = w.now();
    w.client_mut(0).reconnect(now);
    w.pump(1);
    let resume = w.clients[0].last_sent.clone();
    assert_eq!(ClientDatagram::decode(&resume).state, State::Connecting);
    for _ in 0..40 {
        w.advance(Duration::from_micros(200));
        w.pump(8);
    }
    let delivered = w.clients[0].values.len();
    assert!(delivered > 5_000, "progress after the resume");
    let stale = w.server().stats().rejected(Reject::Stale);
    let retransmits = w.server().stats().retransmits;
    // Replayed from the address it was recorded at, and from elsewhere.
    for from in [addr(2), addr(3), addr(1)] {
        w.inject(from, &resume);
    }
    // A forged token-less CONNECTING with the largest timestamp.
    let mut forged = ClientDatagram::new(State::Connecting, Uuid::from_bytes([1; 16]), 100_000);
    forged.ts = u64::MAX;
    w.inject(addr(2), &forged.encode());
    assert_eq!(w.server().stats().rejected(Reject::Stale), stale + 4);
    assert_eq!(
        w.server().stats().retransmits,
        retransmits,
        "nothing resent"
    );
    w.run_to_completion(Duration::from_secs(30));
    assert!(w.clients[0].verified.is_some());
    assert_eq!(w.server().stats().rejected(Reject::AckBeyondSent), 0);
}

/// Finding 9: many sessions that all ask for the largest window share a
/// server-wide budget of window slots instead of each holding its own.
#[test]
fn window_memory_is_bounded_by_the_server_wide_budget() {
    let sessions = 100;
    let budget = 10_000;
    let mut w = Pair::new(seeded(ServerConfig {
        max_window: 4096,
        window_budget: budget,
        ..ServerConfig::default()
    }));
    for n in 0..sessions {
        let mut c = client(n, 20_000);
        c.max_window = 4096;
        c.initial_window = 4096;
        w.add_client(c, addr(10 + u32::from(n)));
    }
    let mut peak = 0;
    for _ in 0..50 {
        w.advance(Duration::from_micros(500));
        w.pump(4);
        peak = peak.max(w.server().window_slots_in_use());
    }
    assert!(peak > budget / 2, "the budget is used: {peak}");
    // Without the budget: 100 × 4096 = 409,600 slots (about 25 MB).
    let floor = sessions as usize * MIN_WINDOW_SHARE as usize;
    assert!(peak <= budget + floor, "peak {peak} slots");
    assert!(w.server().stats().window_budget_capped > 0);
    w.run_to_completion(Duration::from_secs(600));
    assert!(w.clients.iter().all(|c| c.verified.is_some()));
    assert_eq!(w.server().window_slots_in_use(), 0, "every slot given back");
}

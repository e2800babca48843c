//! Every server rule for odd, hostile or late client input, one test each.
//!
//! Each test drives a bare [`Server`] in virtual time with hand-built client
//! datagrams, decodes every reply, and checks three things: the exact reply,
//! the counter for that reason, and that another live session (the
//! "bystander") was not disturbed: nothing was sent to it while the rule was
//! exercised, and it still gets exactly its next values afterwards.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use risp_udp::proto::server::{Reject, ServerConfig, ServerEvent};
use risp_udp::proto::wire::{
    ErrorCode, ServerMessage, State, DATA_LEN, FLAG_ABORT, FLAG_PROBE, MIN_CONNECTING_LEN,
};
use support::virtual_time::ServerHarness;
use support::wire::{sack_ranges, ClientDatagram};
use uuid::Uuid;

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 4000 + n))
}

fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

/// A client session set up by hand: it knows its token and the next index
/// it needs, and checks every value against the value the tests' own
/// reference derives from the session's seed (`support::expected`).
struct Peer {
    uuid: Uuid,
    addr: SocketAddr,
    len: u32,
    window: u32,
    token: Vec<u8>,
    /// Next index needed (everything below was received).
    ack: u32,
    /// Highest index sent so far + 1.
    sent_to: u32,
    ts: u64,
}

impl Peer {
    /// Opens a session and confirms its token with a first ack.
    fn open(h: &mut ServerHarness, n: u8, len: u32, window: u32) -> Self {
        let mut p = Self::connect(h, n, len, window);
        // Confirm the token: acknowledge what arrived.
        let out = p.ack_all(h);
        p.absorb(h, &out);
        p
    }

    /// Sends the first CONNECTING and checks the Accept and initial data.
    fn connect(h: &mut ServerHarness, n: u8, len: u32, window: u32) -> Self {
        let uuid = uuid(n);
        let addr = addr(u16::from(n));
        let mut m = ClientDatagram::new(State::Connecting, uuid, len);
        m.window = window;
        m.ts = 1;
        h.send(addr, &m);
        let out = h.drain();
        let (to, accept) = out[0];
        assert_eq!(to, addr);
        let ServerMessage::Accept {
            token,
            max_window,
            echo,
            ..
        } = accept
        else {
            panic!("expected Accept, got {accept:?}");
        };
        assert_eq!(echo, 1);
        assert_eq!(max_window, h.server.config().max_window);
        let mut p = Self {
            uuid,
            addr,
            len,
            window,
            token: token.to_vec(),
            ack: 0,
            sent_to: 0,
            ts: 1,
        };
        p.absorb(h, &out[1..]);
        p
    }

    fn seq_value(&self, h: &ServerHarness, i: u32) -> u32 {
        h.expected(&self.uuid, self.len).value(i)
    }

    /// Checks data for this peer: right address, right values, and the next
    /// indices in order; returns the indices.
    fn absorb(&mut self, h: &ServerHarness, out: &[(SocketAddr, ServerMessage)]) -> Vec<u32> {
        let mut got = Vec::new();
        for &(to, msg) in out {
            assert_eq!(to, self.addr, "datagram for {} went to {to}", self.addr);
            let ServerMessage::Data {
                index,
                payload,
                echo,
            } = msg
            else {
                panic!("expected Data, got {msg:?}");
            };
            assert_eq!(payload, self.seq_value(h, index), "value of index {index}");
            assert_eq!(echo, self.ts, "echo of the newest timestamp");
            got.push(index);
            self.sent_to = self.sent_to.max(index + 1);
        }
        got
    }

    fn next_ts(&mut self) -> u64 {
        self.ts += 10;
        self.ts
    }

    fn msg(&mut self, state: State) -> ClientDatagram {
        let mut m = ClientDatagram::new(state, self.uuid, self.len);
        m.window = self.window;
        m.token = self.token.clone();
        m.ack = self.ack;
        m.ts = self.next_ts();
        m
    }

    /// Acknowledges everything sent so far; returns what the server sent.
    fn ack_all(&mut self, h: &mut ServerHarness) -> Vec<(SocketAddr, ServerMessage)> {
        self.ack = self.sent_to;
        let m = self.msg(State::Connected);
        let from = self.addr;
        h.send(from, &m);
        h.drain()
    }

    /// The bystander check: acking everything yields exactly the next
    /// `window` indices (or up to the end), with the right values.
    fn still_served(&mut self, h: &mut ServerHarness) {
        let accepted = h.server.stats().accepted;
        let from = self.sent_to;
        let guard = h.guard.take();
        let out = self.ack_all(h);
        h.guard = guard;
        assert_eq!(
            h.server.stats().accepted,
            accepted + 1,
            "bystander ack accepted"
        );
        let got = self.absorb(h, &out);
        let want: Vec<u32> = (from..(from + self.window).min(self.len)).collect();
        assert_eq!(got, want, "bystander {} gets its next window", self.uuid);
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        max_sessions: 16,
        max_len: 1_000,
        max_window: 64,
        ..ServerConfig::default()
    }
}

fn error(code: ErrorCode, detail: u32, echo: u64) -> ServerMessage {
    ServerMessage::Error { code, detail, echo }
}

#[test]
fn new_session_gets_accept_then_exactly_its_initial_window() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let m = {
        let mut m = ClientDatagram::new(State::Connecting, uuid(2), 50);
        m.window = 5;
        m.ts = 77;
        m
    };
    h.send(addr(2), &m);
    let out = h.drain();
    assert_eq!(out.len(), 1 + 5, "Accept + 5 data: {out:?}");
    let ServerMessage::Accept {
        lifetime_ms,
        max_window,
        echo,
        ..
    } = out[0].1
    else {
        panic!("first reply is Accept: {:?}", out[0]);
    };
    // Until the token is confirmed, the session lives for handshake_lifetime.
    assert_eq!(lifetime_ms, 10_000);
    assert_eq!(max_window, 64);
    assert_eq!(echo, 77);
    let seq = h.server.sequence(&uuid(2)).unwrap();
    let want = h.expected(&uuid(2), 50);
    for (i, (to, msg)) in out[1..].iter().enumerate() {
        assert_eq!(*to, addr(2));
        assert_eq!(
            *msg,
            ServerMessage::Data {
                index: i as u32,
                payload: want.value(i as u32),
                echo: 77
            }
        );
    }
    assert_eq!(h.server.stats().sessions_opened, 2);
    assert_eq!(h.server.session_count(), 2);
    assert_eq!(h.server.stats().rejected_total(), 0);
    let ev = h.events();
    assert!(ev.contains(&ServerEvent::Opened {
        uuid: uuid(2),
        addr: addr(2),
        len: 50
    }));
    // Two sessions never share a sequence (defect 10).
    assert_ne!(h.server.sequence(&uuid(1)), Some(seq));
    by.still_served(&mut h);
}

#[test]
fn duplicate_connecting_before_confirmation_reaccepts_with_the_same_token() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let p = Peer::connect(&mut h, 2, 50, 4);
    // The Accept was lost: the client repeats its CONNECTING, still without
    // a token, from the same address.
    let mut m = ClientDatagram::new(State::Connecting, p.uuid, 50);
    m.ts = 5;
    h.send(p.addr, &m);
    let out = h.drain();
    assert_eq!(out.len(), 1, "{out:?}");
    let ServerMessage::Accept { token, echo, .. } = out[0].1 else {
        panic!("{out:?}");
    };
    assert_eq!(token.to_vec(), p.token, "same session, same token");
    assert_eq!(echo, 5);
    // The outstanding window is not sent again: the repeat only says the
    // Accept was lost, and the data sent with it may still be in flight
    // (the client's first timer is far shorter than a long path's RTT).
    let s = h.server.stats();
    assert_eq!(s.sessions_opened, 2);
    assert_eq!(s.sessions_resumed, 0);
    assert_eq!(s.retransmits, 0);
    assert_eq!(s.rejected_total(), 0);
    assert_eq!(h.server.session_count(), 2);
    by.still_served(&mut h);
}

/// Defect 15 during the handshake: before the client has confirmed its
/// token, someone else who knows the UUID sends a token-less CONNECTING from
/// another address. It must not learn the token nor pull the data.
#[test]
fn tokenless_connecting_from_another_address_cannot_steal_an_unconfirmed_session() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 50, 4);
    let thief = addr(666);
    let mut m = ClientDatagram::new(State::Connecting, p.uuid, 50);
    m.ts = 1_000;
    h.send(thief, &m);
    let out = h.drain();
    // The other address learns only that it may not continue: no token, no
    // data (a real client that moved starts over under a new UUID).
    assert_eq!(
        out,
        vec![(thief, error(ErrorCode::Unauthorized, 0, m.ts))],
        "nothing but the refusal goes to the other address"
    );
    assert_eq!(h.rejected(Reject::Unauthorized), 1);
    assert_eq!(h.server.stats().migrations, 0);
    // The real client confirms from its own address and is served there.
    let out = p.ack_all(&mut h);
    assert_eq!(p.absorb(&h, &out), vec![4, 5, 6, 7]);
    assert_eq!(h.server.stats().migrations, 0);
    by.still_served(&mut h);
}

#[test]
fn connecting_with_a_wrong_token_is_unauthorized_and_moves_nothing() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 100, 4);
    let thief = addr(666);
    for (i, token) in [vec![0u8; 8], vec![1, 2, 3], Vec::new()]
        .into_iter()
        .enumerate()
    {
        let mut m = ClientDatagram::new(State::Connecting, p.uuid, 100);
        m.token = token;
        m.ts = 10_000 + i as u64;
        h.send(thief, &m);
        let out = h.drain();
        assert_eq!(
            out,
            vec![(thief, error(ErrorCode::Unauthorized, 0, m.ts))],
            "token {:?}",
            m.token
        );
        assert_eq!(h.rejected(Reject::Unauthorized), i as u64 + 1);
    }
    let s = h.server.stats();
    assert_eq!((s.migrations, s.sessions_resumed), (0, 0));
    assert!(h.events().iter().all(|e| !matches!(
        e,
        ServerEvent::Migrated { .. } | ServerEvent::Resumed { .. }
    )));
    // The session still sends to its own address; its timestamps were not
    // bumped by the thief (a normal ack is not stale).
    let out = p.ack_all(&mut h);
    assert_eq!(p.absorb(&h, &out), vec![8, 9, 10, 11]);
    assert_eq!(h.rejected(Reject::Stale), 0);
    by.still_served(&mut h);
}

/// Defect 15: a CONNECTED with a wrong or missing token from another
/// address is refused, and the session's address does not move.
#[test]
fn connected_with_a_wrong_or_missing_token_is_unauthorized_and_no_takeover() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 100, 4);
    let thief = addr(666);
    let real = p.token.clone();
    let mut wrong = real.clone();
    wrong[0] ^= 1;
    for (i, token) in [wrong, Vec::new()].into_iter().enumerate() {
        for state in [State::Connected, State::Closing, State::Closed] {
            let mut m = p.msg(state);
            m.token = token.clone();
            m.ack = p.sent_to;
            m.ts += 1_000_000;
            h.send(thief, &m);
            let out = h.drain();
            assert_eq!(out, vec![(thief, error(ErrorCode::Unauthorized, 0, m.ts))]);
        }
        assert_eq!(h.rejected(Reject::Unauthorized), 3 * (i as u64 + 1));
    }
    assert_eq!(h.server.stats().migrations, 0);
    assert!(h.server.has_session(&p.uuid));
    let out = p.ack_all(&mut h);
    assert_eq!(p.absorb(&h, &out), vec![8, 9, 10, 11]);
    by.still_served(&mut h);
}

#[test]
fn resume_with_the_token_from_a_new_address_moves_the_data_there() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 20, 4);
    // p holds 0..4 (acked by open) and 4..8 arrived; it acks 6 (4, 5 held),
    // then its process restarts on a new port and resumes at 6.
    p.ack = 6;
    let m = p.msg(State::Connected);
    h.send(p.addr, &m);
    let out = h.drain();
    assert_eq!(p.absorb(&h, &out), vec![8, 9]);
    let new_addr = addr(200);
    p.addr = new_addr;
    let m = p.msg(State::Connecting);
    h.send(new_addr, &m);
    let out = h.drain();
    let (to, accept) = out[0];
    assert_eq!(to, new_addr);
    let ServerMessage::Accept { token, echo, .. } = accept else {
        panic!("{out:?}");
    };
    assert_eq!((token.to_vec(), echo), (p.token.clone(), m.ts));
    // The new address is challenged (the token proves who, not where)...
    assert!(matches!(out[1], (to, ServerMessage::Challenge { .. }) if to == new_addr));
    // ...and everything outstanding in [6, 10) goes again, to the new
    // address only, within its budget (three times the 1200-byte resume).
    assert_eq!(p.absorb(&h, &out[2..]), vec![6, 7, 8, 9]);
    let s = h.server.stats();
    assert_eq!((s.sessions_resumed, s.retransmits), (1, 4));
    assert!(h.events().contains(&ServerEvent::Resumed {
        uuid: p.uuid,
        addr: new_addr
    }));
    // A plain CONNECTED with the token from yet another address migrates.
    let third = addr(201);
    p.addr = third;
    p.ack = 10;
    let m = p.msg(State::Connected);
    h.send(third, &m);
    let out = h.drain();
    assert!(matches!(out[0], (to, ServerMessage::Challenge { .. }) if to == third));
    assert_eq!(p.absorb(&h, &out[1..]), vec![10, 11, 12, 13]);
    assert_eq!(h.server.stats().migrations, 1);
    assert!(h.events().contains(&ServerEvent::Migrated {
        uuid: p.uuid,
        addr: third
    }));
    by.still_served(&mut h);
}

#[test]
fn length_over_max_len_is_refused_with_the_limit() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut m = ClientDatagram::new(State::Connecting, uuid(2), 1_001);
    m.ts = 9;
    h.send(addr(2), &m);
    assert_eq!(
        h.drain(),
        vec![(addr(2), error(ErrorCode::LenTooLarge, 1_000, 9))]
    );
    assert_eq!(h.rejected(Reject::LenTooLarge), 1);
    assert!(!h.server.has_session(&uuid(2)));
    assert_eq!(h.server.session_count(), 1);
    // Exactly max_len is fine.
    m.len = 1_000;
    h.send(addr(2), &m);
    assert!(matches!(h.drain()[0].1, ServerMessage::Accept { .. }));
    by.still_served(&mut h);
}

#[test]
fn length_mismatch_on_resume_is_refused_with_the_session_length() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 40, 4);
    let mut m = p.msg(State::Connecting);
    m.len = 41;
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::LenMismatch, 40, m.ts))]
    );
    let mut m = p.msg(State::Connected);
    m.len = 7;
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::LenMismatch, 40, m.ts))]
    );
    assert_eq!(h.rejected(Reject::LenMismatch), 2);
    assert_eq!(h.server.sequence(&p.uuid).unwrap().len(), 40);
    p.still_served(&mut h);
    by.still_served(&mut h);
}

#[test]
fn ack_past_the_length_is_out_of_range() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 10, 4);
    for ack in [11, 12, u32::MAX] {
        let mut m = p.msg(State::Connected);
        m.ack = ack;
        h.send(p.addr, &m);
        assert_eq!(
            h.drain(),
            vec![(p.addr, error(ErrorCode::AckOutOfRange, 10, m.ts))]
        );
    }
    assert_eq!(h.rejected(Reject::AckOutOfRange), 3);
    // A resume claiming more than was ever sent gets the same reply; it is
    // counted as "beyond sent" (the ack may be within the length).
    let mut m = p.msg(State::Connecting);
    m.ack = 9;
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::AckOutOfRange, 10, m.ts))]
    );
    assert_eq!(h.rejected(Reject::AckBeyondSent), 1);
    p.still_served(&mut h);
    by.still_served(&mut h);
}

#[test]
fn ack_beyond_what_was_sent_is_counted_and_ignored() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 100, 4);
    // Sent so far: 0..8. An ack of 9 is within the length but claims an
    // index the server never sent.
    assert_eq!(p.sent_to, 8);
    let mut m = p.msg(State::Connected);
    m.ack = 9;
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![], "no reply, no data");
    assert_eq!(h.rejected(Reject::AckBeyondSent), 1);
    assert_eq!(h.server.stats().accepted, 4, "2 CONNECTING + 2 acks");
    // Exactly what was sent is fine.
    p.still_served(&mut h);
    by.still_served(&mut h);
}

/// Defect 9: window 0 meant silence. Here it counts as 1.
#[test]
fn window_zero_is_treated_as_one() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut m = ClientDatagram::new(State::Connecting, uuid(2), 10);
    m.window = 0;
    h.send(addr(2), &m);
    let out = h.drain();
    assert_eq!(out.len(), 2, "Accept + one data datagram: {out:?}");
    assert!(matches!(out[1].1, ServerMessage::Data { index: 0, .. }));
    assert_eq!(h.server.stats().window_zero, 1);
    let mut p = Peer::connect(&mut h, 3, 10, 0);
    assert_eq!(p.sent_to, 1);
    assert_eq!(h.server.stats().window_zero, 2);
    // Acks with window 0 keep the data flowing, one at a time.
    for i in 1..10 {
        let out = p.ack_all(&mut h);
        assert_eq!(p.absorb(&h, &out), vec![i]);
    }
    assert_eq!(h.server.stats().window_zero, 2 + 9);
    assert_eq!(h.server.stats().rejected_total(), 0);
    by.still_served(&mut h);
}

#[test]
fn huge_window_is_capped_at_max_window() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 1_000, 4);
    let capped_before = h.server.stats().window_capped;
    assert_eq!(capped_before, 0);
    p.window = u32::MAX;
    let out = p.ack_all(&mut h);
    // At most max_window (64) indices past the ack are outstanding.
    let got = p.absorb(&h, &out);
    assert_eq!(got, (8..8 + 64).collect::<Vec<u32>>());
    assert_eq!(h.server.stats().window_capped, 1);
    // Repeating the ack sends nothing more: the window is full.
    let mut m = p.msg(State::Connected);
    m.ack = 8;
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![]);
    assert_eq!(h.server.stats().window_capped, 2);
    by.still_served(&mut h);
}

/// The 1200-byte CONNECTING pays for the reply to an address that has not
/// proven itself yet: at most three times what was received (RFC 9000 §8).
#[test]
fn unvalidated_address_gets_at_most_three_times_what_it_sent() {
    let mut h = ServerHarness::new(ServerConfig {
        max_window: 1024,
        ..config()
    });
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut m = ClientDatagram::new(State::Connecting, uuid(2), 1_000);
    m.window = 1024;
    let sent = m.encode().len();
    assert_eq!(sent, MIN_CONNECTING_LEN);
    let (mut received, mut answered) = (0, 0);
    for round in 1..=3 {
        m.ts = round;
        h.send(addr(2), &m);
        received += sent;
        let out = h.drain();
        answered += out.iter().map(|(_, msg)| msg.encoded_len()).sum::<usize>();
        assert!(
            answered <= 3 * received,
            "round {round}: {answered} bytes for {received} received"
        );
        // (3 * 1200 - 32-byte Accept) / 24-byte data = 148 data datagrams,
        // sent once: a token-less repeat (our Accept was lost) gets the
        // Accept again, not the data, which may still be in flight.
        let data = if round == 1 { 148 } else { 0 };
        assert_eq!(out.len(), 1 + data, "round {round}");
        assert!(matches!(out[0].1, ServerMessage::Accept { .. }));
    }
    by.still_served(&mut h);
}

#[test]
fn stale_acks_are_ignored() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 100, 4);
    // Newest processed: ack 4 with timestamp p.ts. An older timestamp,
    // claiming more, is ignored.
    let newest = p.ts;
    let mut m = p.msg(State::Connected);
    m.ack = 8;
    m.ts = newest - 1;
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![]);
    // A newer timestamp with an older ack (reordered) is stale too.
    let mut m = p.msg(State::Connected);
    m.ack = 2;
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![]);
    assert_eq!(h.rejected(Reject::Stale), 2);
    // Nothing moved: the server still waits for an ack of 8 and sends 8..12.
    p.still_served(&mut h);
    by.still_served(&mut h);
}

#[test]
fn closing_before_everything_was_acked_gets_no_checksum() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 6, 8);
    assert_eq!(p.sent_to, 6);
    p.ack = 3;
    let m = p.msg(State::Closing);
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![], "no checksum before everything is acked");
    assert_eq!(h.rejected(Reject::ClosingEarly), 1);
    // CLOSED early is refused the same way and frees nothing.
    let m = p.msg(State::Closed);
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![]);
    assert_eq!(h.rejected(Reject::ClosingEarly), 2);
    assert!(h.server.has_session(&p.uuid));
    by.still_served(&mut h);
}

#[test]
fn closing_after_everything_was_acked_returns_the_sequence_checksum() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 10, 4);
    let want = h.expected(&p.uuid, p.len);
    // Receive everything.
    while p.sent_to < p.len {
        let out = p.ack_all(&mut h);
        p.absorb(&h, &out);
    }
    p.ack = p.len;
    for _ in 0..2 {
        // The second CLOSING (the first Checksum was lost) gets it again.
        let m = p.msg(State::Closing);
        h.send(p.addr, &m);
        assert_eq!(
            h.drain(),
            vec![(
                p.addr,
                ServerMessage::Checksum {
                    checksum: want.checksum(),
                    echo: m.ts
                }
            )]
        );
    }
    assert_eq!(h.server.stats().rejected_total(), 0);
    by.still_served(&mut h);
}

#[test]
fn closed_with_abort_frees_the_session_mid_transfer() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 1000, 8);
    assert!(p.sent_to < p.len);
    // ABORT with the wrong token is refused and frees nothing.
    let mut m = p.msg(State::Closed);
    m.flags = FLAG_ABORT;
    m.token = vec![0; p.token.len()];
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::Unauthorized, 0, m.ts))]
    );
    assert!(h.server.has_session(&p.uuid));
    // ABORT on a CONNECTED is only an ack: the session lives on.
    let mut m = p.msg(State::Connected);
    m.flags = FLAG_ABORT;
    h.send(p.addr, &m);
    h.drain();
    assert!(h.server.has_session(&p.uuid));
    // A CLOSED with ABORT, half way through: freed at once, answered.
    let mut m = p.msg(State::Closed);
    m.flags = FLAG_ABORT;
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, ServerMessage::Closed { echo: m.ts })]
    );
    assert!(!h.server.has_session(&p.uuid));
    assert_eq!(h.server.session_count(), 1);
    let stats = h.server.stats();
    assert_eq!(stats.sessions_aborted, 1);
    assert_eq!(stats.sessions_closed, 0);
    assert_eq!(h.rejected(Reject::ClosingEarly), 0);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Closed { uuid, .. } if *uuid == p.uuid)));
    // A repeat (our Closed was lost) is answered again.
    let mut m = p.msg(State::Closed);
    m.flags = FLAG_ABORT;
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, ServerMessage::Closed { echo: m.ts })]
    );
    assert_eq!(h.server.stats().sessions_aborted, 1);
    by.still_served(&mut h);
}

#[test]
fn closed_frees_the_session_and_later_messages_are_unknown() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 3, 4);
    assert_eq!(p.sent_to, 3);
    p.ack = 3;
    let m = p.msg(State::Closing);
    h.send(p.addr, &m);
    assert!(matches!(h.drain()[0].1, ServerMessage::Checksum { .. }));
    let m = p.msg(State::Closed);
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, ServerMessage::Closed { echo: m.ts })]
    );
    assert!(!h.server.has_session(&p.uuid));
    assert_eq!(h.server.session_count(), 1);
    assert_eq!(h.server.stats().sessions_closed, 1);
    // The session counted every data datagram it sent: each value once.
    assert!(h.events().contains(&ServerEvent::Closed {
        uuid: p.uuid,
        data_sent: u64::from(p.len),
    }));
    // A late CONNECTED for the freed session.
    let m = p.msg(State::Connected);
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::UnknownSession, 0, m.ts))]
    );
    assert_eq!(h.rejected(Reject::UnknownSession), 1);
    by.still_served(&mut h);
}

/// The Closed reply was lost and the session is gone: a repeated CLOSED is
/// answered again, never with more bytes than it carried.
#[test]
fn closed_for_an_unknown_session_is_answered_closed() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut m = ClientDatagram::new(State::Closed, uuid(9), 5);
    m.ack = 5;
    m.ts = 42;
    m.token = vec![7; 8];
    let request = m.encode().len();
    let accepted = h.server.stats().accepted;
    h.send(addr(9), &m);
    let out = h.drain();
    assert_eq!(out, vec![(addr(9), ServerMessage::Closed { echo: 42 })]);
    assert!(out[0].1.encoded_len() <= request);
    assert_eq!(h.server.stats().accepted, accepted + 1);
    assert_eq!(h.server.stats().rejected_total(), 0);
    assert_eq!(h.server.session_count(), 1, "no session was created");
    by.still_served(&mut h);
}

#[test]
fn session_limit_refuses_new_sessions_busy_and_keeps_the_others() {
    let mut h = ServerHarness::new(ServerConfig {
        max_sessions: 2,
        ..config()
    });
    let mut a = Peer::open(&mut h, 1, 100, 4);
    let mut b = Peer::open(&mut h, 2, 4, 4);
    for n in 3..6 {
        let mut m = ClientDatagram::new(State::Connecting, uuid(n), 10);
        m.ts = u64::from(n);
        h.send(addr(u16::from(n)), &m);
        let out = h.drain();
        assert_eq!(
            out,
            vec![(addr(u16::from(n)), error(ErrorCode::Busy, 2, m.ts))]
        );
    }
    assert_eq!(h.rejected(Reject::Busy), 3);
    assert_eq!(h.server.session_count(), 2);
    assert_eq!(h.server.stats().sessions_opened, 2);
    a.still_served(&mut h);
    // A resume of an existing session is not a new session: never busy.
    let m = a.msg(State::Connecting);
    h.send(a.addr, &m);
    assert!(matches!(h.drain()[0].1, ServerMessage::Accept { .. }));
    // Once one closes, a new one fits.
    b.ack = 4;
    let m = b.msg(State::Closing);
    h.send(b.addr, &m);
    assert!(matches!(h.drain()[0].1, ServerMessage::Checksum { .. }));
    let m = b.msg(State::Closed);
    h.send(b.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(b.addr, ServerMessage::Closed { echo: m.ts })]
    );
    let mut c = Peer::open(&mut h, 3, 10, 4);
    assert_eq!(h.server.session_count(), 2);
    assert_eq!(h.rejected(Reject::Busy), 3);
    c.still_served(&mut h);
    a.still_served(&mut h);
}

#[test]
fn idle_sessions_expire_after_session_lifetime() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::open(&mut h, 2, 100, 4);
    // The bystander stays active; p goes quiet after t0.
    h.at(Duration::from_secs(20));
    by.still_served(&mut h);
    let deadline = Duration::from_secs(30);
    h.at(deadline - Duration::from_millis(1));
    h.server.handle_timeout(h.now);
    assert!(h.server.has_session(&p.uuid), "not yet");
    let wake = h.server.poll_timeout().expect("an expiry is pending");
    assert_eq!(wake, h.t0 + deadline, "wakes exactly when p expires");
    h.at(deadline);
    h.server.handle_timeout(h.now);
    assert!(!h.server.has_session(&p.uuid));
    assert_eq!(h.server.sequence(&p.uuid), None);
    assert_eq!(h.server.session_count(), 1);
    assert_eq!(h.server.stats().sessions_expired, 1);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Expired { uuid, .. } if *uuid == p.uuid)));
    assert_eq!(h.drain(), vec![], "expiry sends nothing");
    // A later message learns the session is gone.
    let m = p.msg(State::Connected);
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::UnknownSession, 0, m.ts))]
    );
    // A resume with the old token is refused the same way.
    let m = p.msg(State::Connecting);
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::UnknownSession, 0, m.ts))]
    );
    assert_eq!(h.rejected(Reject::UnknownSession), 2);
    assert_eq!(h.server.session_count(), 1, "nothing re-created");
    // The bystander was active at 20 s: it lives until 50 s.
    h.at(Duration::from_secs(49));
    h.server.handle_timeout(h.now);
    by.still_served(&mut h);
}

#[test]
fn unconfirmed_sessions_expire_after_handshake_lifetime() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let p = Peer::connect(&mut h, 2, 100, 4);
    h.at(Duration::from_millis(9_999));
    h.server.handle_timeout(h.now);
    assert!(h.server.has_session(&p.uuid));
    h.at(Duration::from_secs(10));
    h.server.handle_timeout(h.now);
    assert!(!h.server.has_session(&p.uuid));
    assert_eq!(h.server.stats().sessions_expired, 1);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, ServerEvent::Expired { uuid, .. } if *uuid == p.uuid)));
    // The confirmed bystander (30 s lifetime) is still there.
    by.still_served(&mut h);
}

/// Defect 7: only the holes the bitmap reports are resent, never
/// everything from the first gap.
#[test]
fn selective_ack_resends_only_the_holes() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 100, 16);
    assert_eq!(p.sent_to, 16);
    // Holds 1..16 except 5 and 9; misses 0, 5, 9.
    let held: Vec<u32> = (1..16).filter(|i| ![5, 9].contains(i)).collect();
    let mut m = p.msg(State::Connected);
    m.ack = 0;
    m.sack = sack_ranges(0, &held);
    // Newest first: 10..=15 (top 15, length 6), gap 1 (9), 6..=8, gap 1
    // (5), 1..=4.
    assert_eq!(m.sack, vec![15, 5, 1, 2, 1, 3]);
    h.send(p.addr, &m);
    let out = h.drain();
    assert_eq!(p.absorb(&h, &out), vec![0, 5, 9]);
    assert_eq!(h.server.stats().retransmits, 3);
    // A probe with the same picture resends the same holes, nothing else.
    let mut m2 = m.clone();
    m2.ts = p.next_ts();
    m2.flags = FLAG_PROBE;
    h.send(p.addr, &m2);
    let out = h.drain();
    assert_eq!(p.absorb(&h, &out), vec![0, 5, 9]);
    // The holes arrive: the ack jumps to 16 and only new data follows.
    p.ack = 16;
    let m3 = p.msg(State::Connected);
    h.send(p.addr, &m3);
    let out = h.drain();
    assert_eq!(p.absorb(&h, &out), (16..32).collect::<Vec<u32>>());
    assert_eq!(h.server.stats().retransmits, 6);
    by.still_served(&mut h);
}

/// Defect 8: duplicate acks neither consume window nor resend more.
#[test]
fn duplicate_acks_do_not_consume_window() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 100, 4);
    let mut m = p.msg(State::Connected);
    m.ack = 0;
    m.sack = sack_ranges(0, &[1, 2, 3]);
    let mut resent = Vec::new();
    for _ in 0..10 {
        m.ts = p.next_ts();
        h.send(p.addr, &m);
        let out = h.drain();
        resent.extend(p.absorb(&h, &out));
    }
    // Index 0 is reported lost once (three later ones arrived) and resent
    // once; the other nine acks repeat the same news and send nothing.
    assert_eq!(resent, vec![0]);
    assert_eq!(h.server.stats().retransmits, 1);
    assert_eq!(p.sent_to, 4, "nothing past ack + window");
    // Marks for indices never sent are ignored, not believed.
    m.ts = p.next_ts();
    m.sack = sack_ranges(0, &[1, 2, 3, 50, 60]);
    h.send(p.addr, &m);
    assert_eq!(h.drain(), vec![]);
    p.ack = 4;
    let out = p.ack_all(&mut h);
    assert_eq!(p.absorb(&h, &out), vec![4, 5, 6, 7]);
    by.still_served(&mut h);
}

/// Defects 4 and 12: lengths near u32::MAX are neither truncated nor paid
/// for up front: the session opens at once and sends only its window.
#[test]
fn lengths_near_u32_max_open_instantly_with_window_state() {
    let mut h = ServerHarness::new(ServerConfig {
        max_len: u32::MAX,
        ..config()
    });
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let len = u32::MAX - 1;
    let mut p = Peer::connect(&mut h, 2, len, 8);
    assert_eq!(p.sent_to, 8);
    assert_eq!(h.server.sequence(&p.uuid).unwrap().len(), len);
    for _ in 0..3 {
        let out = p.ack_all(&mut h);
        assert_eq!(out.len(), 8);
        p.absorb(&h, &out);
    }
    // The last indices exist and the bounds are exact.
    let seq = h.server.sequence(&p.uuid).unwrap();
    assert!(seq.get(len - 1).is_some());
    assert_eq!(seq.get(len), None);
    let mut m = p.msg(State::Connected);
    m.ack = u32::MAX;
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, error(ErrorCode::AckOutOfRange, len, m.ts))]
    );
    // u32::MAX itself is a valid length when max_len allows it.
    let q = Peer::connect(&mut h, 3, u32::MAX, 4);
    assert_eq!(q.sent_to, 4);
    by.still_served(&mut h);
}

#[test]
fn zero_length_goes_straight_to_closing() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 0, 4);
    assert_eq!(p.sent_to, 0, "Accept only, no data");
    let m = p.msg(State::Closing);
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(
            p.addr,
            ServerMessage::Checksum {
                checksum: 0,
                echo: m.ts
            }
        )]
    );
    let m = p.msg(State::Closed);
    h.send(p.addr, &m);
    assert_eq!(
        h.drain(),
        vec![(p.addr, ServerMessage::Closed { echo: m.ts })]
    );
    assert!(!h.server.has_session(&p.uuid));
    by.still_served(&mut h);
}

/// Undecodable input is counted by reason and answered with nothing.
#[test]
fn malformed_corrupt_and_wrong_direction_datagrams_are_counted_silently() {
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let good = {
        let mut m = by.msg(State::Connected);
        m.ts += 1_000;
        m.encode()
    };
    let mut corrupt = good.clone();
    corrupt[25] ^= 0x40;
    h.server.handle(h.now, addr(66), &corrupt);
    h.server.handle(h.now, addr(66), &good[..good.len() - 1]);
    h.server.handle(h.now, addr(66), &[]);
    let mut data = [0u8; DATA_LEN];
    ServerMessage::Data {
        index: 1,
        payload: 2,
        echo: 3,
    }
    .encode(Uuid::nil(), &mut data)
    .unwrap();
    h.server.handle(h.now, addr(66), &data);
    h.check_accounting();
    assert_eq!(h.drain(), vec![]);
    assert_eq!(
        h.rejected(Reject::Corrupt),
        2,
        "a cut-off CRC fails the CRC"
    );
    // The empty one, and the 24-byte data datagram: too short to be a
    // client message at all.
    assert_eq!(h.rejected(Reject::Malformed), 2);
    assert_eq!(h.rejected(Reject::WrongDirection), 0);
    let mut accept = vec![0u8; 1200];
    accept[..data.len()].copy_from_slice(&data);
    accept[3] = 0x80;
    let n = accept.len() - 4;
    let crc = crc32c::crc32c(&accept[..n]);
    accept[n..].copy_from_slice(&crc.to_be_bytes());
    h.server.handle(h.now, addr(66), &accept);
    h.check_accounting();
    assert_eq!(h.rejected(Reject::WrongDirection), 1);
    by.still_served(&mut h);
}

/// Datagrams from sources no reply can reach (port 0, the unspecified
/// address, multicast, broadcast) are dropped without a reply and counted
/// `UnusableSource`, whatever they hold: a CONNECTING opens nothing and a
/// CONNECTED for an unknown session earns no UnknownSession error.
#[test]
fn unusable_sources_are_dropped_without_a_reply() {
    let mut h = ServerHarness::new(ServerConfig::default());
    let sources: [SocketAddr; 5] = [
        "10.0.0.1:0".parse().unwrap(),
        "0.0.0.0:4000".parse().unwrap(),
        "224.0.0.1:4000".parse().unwrap(),
        "255.255.255.255:4000".parse().unwrap(),
        "[ff02::1]:4000".parse().unwrap(),
    ];
    for (k, from) in sources.iter().enumerate() {
        h.send(
            *from,
            &ClientDatagram::new(State::Connecting, uuid(k as u8 + 1), 10),
        );
        h.send(*from, &ClientDatagram::new(State::Connected, uuid(99), 10));
        assert!(h.drain().is_empty(), "a reply went to {from}");
    }
    assert_eq!(h.rejected(Reject::UnusableSource), 10);
    assert_eq!(h.rejected(Reject::UnknownSession), 0);
    assert_eq!(h.server.session_count(), 0);
    // An ordinary source still gets its session.
    let p = Peer::open(&mut h, 1, 10, 4);
    assert_eq!(h.server.session_count(), 1);
    assert_eq!(p.ack, 4);
}

/// A probe resends the window at most once per smallest RTT: twenty probes
/// in a burst (a client gone wrong, or a flood with its token) cost one
/// resend round, the rest are plain acks and counted; one RTT later a
/// probe resends again. The bystander is not disturbed.
#[test]
fn probes_resend_the_window_at_most_once_per_round_trip() {
    let ms = Duration::from_millis;
    let mut h = ServerHarness::new(config());
    let mut by = Peer::open(&mut h, 1, 100, 4);
    h.guard = Some(by.addr);
    let mut p = Peer::connect(&mut h, 2, 1000, 8);
    // The first 8 values are acknowledged 2 ms after they were sent: the
    // server's smallest RTT is 2 ms. The next 8 go out and stay unacked.
    h.at(ms(2));
    let out = p.ack_all(&mut h);
    assert_eq!(p.absorb(&h, &out), (8..16).collect::<Vec<u32>>());
    h.guard = Some(by.addr);
    h.at(ms(3));
    let mut resent = Vec::new();
    for _ in 0..20 {
        let mut m = p.msg(State::Connected);
        m.flags = FLAG_PROBE;
        h.send(p.addr, &m);
        let out = h.drain();
        resent.extend(p.absorb(&h, &out));
    }
    assert_eq!(resent, (8..16).collect::<Vec<u32>>(), "one resend round");
    assert_eq!(h.server.stats().probes_limited, 19);
    // One smallest RTT after the round, a probe resends again.
    h.at(ms(5));
    let mut m = p.msg(State::Connected);
    m.flags = FLAG_PROBE;
    h.send(p.addr, &m);
    let out = h.drain();
    assert_eq!(p.absorb(&h, &out), (8..16).collect::<Vec<u32>>());
    assert_eq!(h.server.stats().probes_limited, 19);
    assert_eq!(h.server.stats().rejected_total(), 0);
    by.still_served(&mut h);
}

/// Tokens come from the OS CSPRNG unless a seed is given: two default
/// servers answer the same CONNECTING with different tokens (a library
/// user's server is not predictable), two servers with one seed with the
/// same token (the simulator replays exactly).
#[test]
fn tokens_are_unpredictable_by_default_and_reproducible_with_a_seed() {
    let token = |config: ServerConfig| {
        let mut h = ServerHarness::new(config);
        let mut m = ClientDatagram::new(State::Connecting, uuid(1), 10);
        m.window = 4;
        h.send(addr(1), &m);
        match h.drain()[0].1 {
            ServerMessage::Accept { token, .. } => token,
            other => panic!("expected Accept, got {other:?}"),
        }
    };
    assert_ne!(
        token(ServerConfig::default()),
        token(ServerConfig::default())
    );
    let seeded = || ServerConfig {
        seed: Some(5),
        ..ServerConfig::default()
    };
    assert_eq!(token(seeded()), token(seeded()));
}

/// A blind spoofer who knows a session's UUID and its client's address
/// sends a token-less CONNECTING with the largest timestamp: the server
/// answers it as a lost-Accept repeat, but the timestamp does not count, so
/// the real client's next ack (token, ordinary timestamp) is accepted and
/// the transfer goes on.
#[test]
fn a_spoofed_connecting_with_a_huge_timestamp_cannot_make_acks_stale() {
    let mut h = ServerHarness::new(config());
    let mut p = Peer::connect(&mut h, 2, 100, 4);
    let mut forged = ClientDatagram::new(State::Connecting, p.uuid, p.len);
    forged.window = 4;
    forged.ts = u64::MAX;
    h.send(p.addr, &forged);
    let out = h.drain();
    assert!(matches!(out[0].1, ServerMessage::Accept { .. }), "{out:?}");
    let out = p.ack_all(&mut h);
    assert_eq!(p.absorb(&h, &out), (4..8).collect::<Vec<u32>>());
    assert_eq!(h.server.stats().rejected(Reject::Stale), 0);
}

/// The tests' reference for the values (`support::expected`) gives the
/// numbers pinned for the value function, so checks against it are checks
/// against the protocol, not against the server's own `Sequence`.
#[test]
fn the_reference_values_are_the_pinned_ones() {
    use support::expected::reference_value;
    assert_eq!(reference_value(0, 0), 3_793_791_033);
    assert_eq!(reference_value(0, 1), 1_853_398_634);
    assert_eq!(reference_value(42, 999), 2_584_618_845);
}

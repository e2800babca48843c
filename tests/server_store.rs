//! The endpoint's session-store protocol, in virtual time: what it writes
//! (on confirmation, throttled refreshes, close; never per datagram, never
//! on expiry), how it looks up a session it does not hold, restores it and
//! carries the transfer on, and what it does while the store is down.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use risp_udp::proto::server::{
    LookupOutcome, Reject, ServerConfig, SessionRecord, StoreOp, StoreSettings,
};
use risp_udp::proto::wire::{ErrorCode, ServerMessage, State};
use support::expected::Expected;
use support::virtual_time::ServerHarness;
use support::wire::ClientDatagram;
use uuid::Uuid;

const LEN: u32 = 400;
const REFRESH: Duration = Duration::from_secs(5);

fn config(seed: u64) -> ServerConfig {
    ServerConfig {
        seed: Some(seed),
        store: Some(StoreSettings {
            refresh: REFRESH,
            max_lookups: 8,
        }),
        session_lifetime: Duration::from_secs(30),
        ..ServerConfig::default()
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

/// A hand-driven client: its session, token, next needed index, clock.
struct Client {
    uuid: Uuid,
    token: Vec<u8>,
    ack: u32,
    ts: u64,
    values: Vec<u32>,
}

impl Client {
    fn new(n: u128) -> Self {
        Self {
            uuid: Uuid::from_u128(n),
            token: Vec::new(),
            ack: 0,
            ts: 0,
            values: Vec::new(),
        }
    }

    fn msg(&mut self, state: State) -> ClientDatagram {
        self.ts += 1;
        let mut m = ClientDatagram::new(state, self.uuid, LEN);
        m.window = 64;
        m.ack = self.ack;
        m.ts = self.ts;
        m.token = self.token.clone();
        m
    }

    /// Takes the server's replies: the token, in-order data, a challenge
    /// (answered on the next message); returns the errors.
    fn take(&mut self, replies: Vec<(SocketAddr, ServerMessage)>) -> Vec<(ErrorCode, u32)> {
        let mut errors = Vec::new();
        for (_, m) in replies {
            match m {
                ServerMessage::Accept { token, .. } => self.token = token.to_vec(),
                ServerMessage::Data { index, payload, .. } if index == self.ack => {
                    self.values.push(payload);
                    self.ack += 1;
                }
                ServerMessage::Challenge { challenge, .. } => {
                    self.token.truncate(8);
                    self.token.extend_from_slice(&challenge);
                }
                ServerMessage::Error { code, detail, .. } => errors.push((code, detail)),
                _ => {}
            }
        }
        errors
    }

    /// CONNECTING on `h` from `from`, then acks until it holds `until`.
    fn open(&mut self, h: &mut ServerHarness, from: SocketAddr, until: u32) {
        let m = self.msg(State::Connecting);
        h.send(from, &m);
        let r = h.drain();
        assert!(self.take(r).is_empty());
        self.ack_until(h, from, until);
    }

    fn ack_until(&mut self, h: &mut ServerHarness, from: SocketAddr, until: u32) {
        while self.ack < until {
            let before = self.ack;
            let m = self.msg(State::Connected);
            h.send(from, &m);
            let r = h.drain();
            assert!(self.take(r).is_empty());
            assert!(self.ack > before, "no progress at {before}");
        }
    }
}

fn ops(h: &mut ServerHarness) -> Vec<StoreOp> {
    std::iter::from_fn(|| h.server.poll_store_op()).collect()
}

/// Carries out the writes of `ops` on a map (as the driver does) and
/// returns the lookups.
fn apply(store: &mut HashMap<Uuid, SessionRecord>, ops: Vec<StoreOp>) -> Vec<StoreOp> {
    let mut lookups = Vec::new();
    for op in ops {
        match op {
            StoreOp::Put(r) => {
                store.insert(r.uuid, r);
            }
            StoreOp::Remove(u) => {
                store.remove(&u);
            }
            l @ StoreOp::Lookup(_) => lookups.push(l),
        }
    }
    lookups
}

/// Answers every lookup from `store`.
fn answer(h: &mut ServerHarness, store: &HashMap<Uuid, SessionRecord>, lookups: Vec<StoreOp>) {
    for l in lookups {
        let StoreOp::Lookup(l) = l else { continue };
        let outcome = match store.get(&l.uuid) {
            Some(r) => LookupOutcome::Found(r.clone()),
            None => LookupOutcome::Missing,
        };
        h.server.complete_lookup(h.now, l, outcome);
        h.check_accounting();
    }
}

#[test]
fn records_are_written_on_confirmation_throttled_refresh_and_close_only() {
    let mut h = ServerHarness::new(config(1));
    let mut c = Client::new(1);
    let m = c.msg(State::Connecting);
    h.send(addr(1), &m);
    let r = h.drain();
    c.take(r);
    // A handshake proves nothing yet: no write (a spoofed flood never
    // reaches the store).
    assert!(ops(&mut h).is_empty());
    c.ack_until(&mut h, addr(1), 100);
    let first = ops(&mut h);
    assert_eq!(first.len(), 1, "one write on confirmation: {first:?}");
    let StoreOp::Put(rec) = &first[0] else {
        panic!("{first:?}")
    };
    assert_eq!((rec.uuid, rec.len), (c.uuid, LEN));
    assert_eq!(rec.token.to_vec(), c.token[..8].to_vec());
    // Many more acks within the refresh interval: nothing.
    c.ack_until(&mut h, addr(1), 200);
    assert!(ops(&mut h).is_empty());
    // After it, the next ack refreshes the record, with a checkpoint.
    h.at(REFRESH);
    let next = c.ack + 1;
    c.ack_until(&mut h, addr(1), next);
    let refreshed = ops(&mut h);
    let [StoreOp::Put(rec)] = refreshed.as_slice() else {
        panic!("{refreshed:?}")
    };
    let want = Expected::new(rec.seed, LEN);
    assert_eq!(rec.checkpoint_sum, want.sum_range(0, rec.checkpoint_index));
    assert_eq!(
        rec.seed,
        h.expected(&c.uuid, LEN).seed,
        "the session's seed"
    );
    want.check_prefix(&c.values).unwrap();
    assert!(rec.checkpoint_index >= 200);
    assert_eq!(h.server.stats().store_writes, 2);
    assert_eq!(h.server.stats().store_refreshes, 1);
    // Expiry writes nothing (the store's TTL forgets the record).
    h.at(REFRESH + Duration::from_secs(31));
    h.server.handle_timeout(h.now);
    assert_eq!(h.server.session_count(), 0);
    assert!(ops(&mut h).is_empty());
}

#[test]
fn a_session_started_on_one_endpoint_finishes_on_another_verified() {
    let mut store = HashMap::new();
    let mut a = ServerHarness::new(config(1));
    let mut b = ServerHarness::new(config(2));
    let mut c = Client::new(7);
    c.open(&mut a, addr(1), 150);
    let w = ops(&mut a);
    assert!(apply(&mut store, w).is_empty());
    // B does not hold the session: the CONNECTED is held for a lookup.
    let m = c.msg(State::Connected);
    b.send(addr(2), &m);
    assert_eq!(b.rejected(Reject::StoreLookup), 1);
    assert!(
        b.drain().is_empty(),
        "nothing is answered before the lookup"
    );
    let lookups = ops(&mut b);
    assert_eq!(lookups.len(), 1);
    answer(&mut b, &store, lookups);
    assert_eq!(b.server.stats().sessions_restored, 1);
    // The held datagram was processed: B challenges the new address and
    // sends from the client's ack on, within the path budget.
    let r = b.drain();
    assert!(c.take(r).is_empty());
    c.ack_until(&mut b, addr(2), LEN);
    // The values B sent are the session's, and B's checksum is the whole
    // sequence's.
    let want = a.expected(&c.uuid, LEN);
    want.check(&c.values).unwrap();
    let m = c.msg(State::Closing);
    b.send(addr(2), &m);
    let r = b.drain();
    let sum = r.iter().find_map(|(_, m)| match m {
        ServerMessage::Checksum { checksum, .. } => Some(*checksum),
        _ => None,
    });
    assert_eq!(sum, Some(want.checksum()));
    let m = c.msg(State::Closed);
    b.send(addr(2), &m);
    let w = ops(&mut b);
    assert!(w.contains(&StoreOp::Remove(c.uuid)), "{w:?}");
}

#[test]
fn a_resume_with_a_wrong_token_or_an_unknown_uuid_is_refused_after_the_lookup() {
    let mut store = HashMap::new();
    let mut a = ServerHarness::new(config(1));
    let mut b = ServerHarness::new(config(2));
    let mut c = Client::new(9);
    c.open(&mut a, addr(1), 100);
    let w = ops(&mut a);
    apply(&mut store, w);
    // A thief with the UUID but not the token.
    let mut thief = Client::new(9);
    thief.token = vec![0; 8];
    thief.ack = 100;
    let m = thief.msg(State::Connecting);
    b.send(addr(3), &m);
    let l = ops(&mut b);
    answer(&mut b, &store, l);
    let r = b.drain();
    let errors = thief.take(r);
    assert_eq!(errors, vec![(ErrorCode::Unauthorized, 0)]);
    // An unknown UUID: a miss, then UnknownSession.
    let mut stranger = Client::new(10);
    stranger.token = vec![5; 8];
    let m = stranger.msg(State::Connected);
    b.send(addr(4), &m);
    let l = ops(&mut b);
    answer(&mut b, &store, l);
    let r = b.drain();
    assert_eq!(stranger.take(r), vec![(ErrorCode::UnknownSession, 0)]);
    assert_eq!(b.server.stats().store_misses, 1);
    assert_eq!(b.rejected(Reject::UnknownSession), 1);
}

#[test]
fn while_the_store_is_down_new_sessions_are_refused_and_held_ones_continue() {
    let mut a = ServerHarness::new(config(1));
    let mut c = Client::new(11);
    c.open(&mut a, addr(1), 100);
    a.server.set_store_available(false);
    let mut late = Client::new(12);
    let m = late.msg(State::Connecting);
    a.send(addr(2), &m);
    let r = a.drain();
    assert_eq!(late.take(r), vec![(ErrorCode::Busy, 0)]);
    assert_eq!(a.rejected(Reject::StoreUnavailable), 1);
    c.ack_until(&mut a, addr(1), LEN);
    // A lookup the store cannot answer drops the datagram: no reply, so
    // the client retransmits instead of giving up.
    let mut moved = Client::new(13);
    moved.token = vec![1; 8];
    let m = moved.msg(State::Connected);
    a.send(addr(3), &m);
    let l = ops(&mut a);
    let lookups: Vec<_> = l
        .into_iter()
        .filter_map(|o| match o {
            StoreOp::Lookup(l) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(lookups.len(), 1);
    for l in lookups {
        a.server
            .complete_lookup(a.now, l, LookupOutcome::Unavailable);
    }
    assert!(a.drain().is_empty());
    assert_eq!(a.server.stats().store_lookups_failed, 1);
    a.server.set_store_available(true);
    let mut again = Client::new(14);
    again.open(&mut a, addr(4), 10);
}

#[test]
fn a_stale_copy_is_carried_forward_to_where_the_client_got_elsewhere() {
    let mut store = HashMap::new();
    let mut a = ServerHarness::new(config(1));
    let mut b = ServerHarness::new(config(2));
    let mut c = Client::new(15);
    c.open(&mut a, addr(1), 100);
    let w = ops(&mut a);
    apply(&mut store, w);
    // The client moves to B and gets further there.
    let m = c.msg(State::Connected);
    b.send(addr(2), &m);
    let l = ops(&mut b);
    answer(&mut b, &store, l);
    let r = b.drain();
    c.take(r);
    c.ack_until(&mut b, addr(2), 300);
    // Back on A, whose copy stopped at about 100: carried forward, and the
    // transfer ends there verified.
    c.ack_until(&mut a, addr(1), LEN);
    assert_eq!(a.server.stats().sessions_fast_forwarded, 1);
    let want = a.expected(&c.uuid, LEN);
    want.check(&c.values).unwrap();
    let m = c.msg(State::Closing);
    a.send(addr(1), &m);
    let r = a.drain();
    assert!(r.iter().any(
        |(_, m)| matches!(m, ServerMessage::Checksum { checksum, .. } if *checksum == want.checksum())
    ));
}

#[test]
fn lookups_in_flight_are_bounded_and_deduplicated() {
    let mut b = ServerHarness::new(config(2));
    for n in 0..20u128 {
        let mut c = Client::new(100 + n % 10);
        c.token = vec![1; 8];
        let m = c.msg(State::Connected);
        b.send(addr(5), &m);
    }
    // Ten UUIDs, twice each, at most eight lookups.
    assert_eq!(b.server.lookups_in_flight(), 8);
    assert_eq!(ops(&mut b).len(), 8);
    assert_eq!(b.rejected(Reject::StoreLookup), 20);
}

#[test]
fn without_a_store_nothing_changes() {
    let mut h = ServerHarness::new(ServerConfig {
        seed: Some(3),
        ..ServerConfig::default()
    });
    let mut c = Client::new(20);
    c.open(&mut h, addr(1), 50);
    assert!(ops(&mut h).is_empty());
    let mut stranger = Client::new(21);
    stranger.token = vec![5; 8];
    let m = stranger.msg(State::Connected);
    h.send(addr(4), &m);
    let r = h.drain();
    assert_eq!(stranger.take(r), vec![(ErrorCode::UnknownSession, 0)]);
}

/// A client that moved mid-handshake: its first CONNECTING reached A (the
/// Accept went to its old port and was lost), its repeat from the new port
/// reached B, which opened a second session of the UUID and got it
/// confirmed. When the client later lands on A with B's token, A's
/// handshake (which nobody will finish) does not refuse it: A looks the
/// UUID up, the stored session replaces the handshake, and the transfer
/// goes on at A. A forged token gets nothing of the kind.
#[test]
fn a_handshake_left_behind_is_replaced_by_the_session_confirmed_elsewhere() {
    let mut store = HashMap::new();
    let mut a = ServerHarness::new(config(1));
    let mut b = ServerHarness::new(config(2));
    let mut c = Client::new(9);
    let m = c.msg(State::Connecting);
    a.send(addr(1), &m);
    let lost = a.drain();
    assert!(lost
        .iter()
        .any(|(_, m)| matches!(m, ServerMessage::Accept { .. })));
    assert!(ops(&mut a).is_empty(), "a handshake writes nothing");
    c.open(&mut b, addr(2), 100);
    let w = ops(&mut b);
    assert!(apply(&mut store, w).is_empty());

    // A forger who knows the UUID, with a token of its own: looked up,
    // no match, refused; A's handshake stays.
    let mut forger = Client::new(9);
    forger.token = vec![0xEE; 8];
    forger.ts = 1_000;
    let m = forger.msg(State::Connected);
    a.send(addr(66), &m);
    let lookups = ops(&mut a);
    answer(&mut a, &store, lookups);
    assert_eq!(a.rejected(Reject::Unauthorized), 1);
    assert_eq!(a.server.stats().pending_evicted, 0);
    assert_eq!(a.server.session_count(), 1);
    a.drain();

    // The client itself, on A from yet another port, with B's token.
    let m = c.msg(State::Connected);
    a.send(addr(3), &m);
    assert_eq!(a.rejected(Reject::StoreLookup), 2);
    let lookups = ops(&mut a);
    assert_eq!(lookups.len(), 1);
    answer(&mut a, &store, lookups);
    assert_eq!(a.rejected(Reject::Unauthorized), 1, "not refused");
    assert_eq!(a.server.stats().sessions_restored, 1);
    assert_eq!(a.server.stats().pending_evicted, 1);
    let r = a.drain();
    assert!(c.take(r).is_empty());
    c.ack_until(&mut a, addr(3), LEN);
    b.expected(&c.uuid, LEN).check(&c.values).unwrap();
}

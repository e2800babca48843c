//! The session table's invariants under random traffic: two endpoints
//! that share an in-memory session store, and a few clients that open,
//! repeat, resume, ack (with ranges, probes, replays and acks from
//! nowhere), migrate, close and abort sessions on either endpoint, while
//! time passes, timers run, sends are taken in batches of any size, the
//! store goes down and comes back, and lookups are answered found, missing
//! or unavailable.
//!
//! After every step, `Server::check_invariants` must hold on both
//! endpoints (the round-robin, the expiry and loss-check indices, the
//! pending and window-slot counts all match the sessions), and so must the
//! books: every datagram accepted or rejected, no session ended twice,
//! never more sessions than the limit. At the end, past every lifetime,
//! nothing is left: no session, no pending count, no slot, no timer.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use risp_udp::proto::sack::RangeWriter;
use risp_udp::proto::server::{
    Lookup, LookupOutcome, RetryPolicy, Server, ServerConfig, SessionRecord, StoreOp, StoreSettings,
};
use risp_udp::proto::wire::{
    ClientMessage, ServerMessage, State, FLAG_ABORT, FLAG_PROBE, MAX_DATAGRAM_LEN, SERVER_TOKEN_LEN,
};
use uuid::Uuid;

const CLIENTS: usize = 3;
const ADDRS: usize = 4;
/// Long enough that an ack from nowhere can be more than a stale copy is
/// carried forward over (2^20 values).
const LONG: u32 = 3_000_000;

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// A token-less CONNECTING (or one with the retry token the client was
    /// given); `fresh` starts the client's transfer over.
    Connect {
        c: usize,
        a: usize,
        at: usize,
        fresh: bool,
    },
    /// A CONNECTING with the session token at the client's ack; `replay`
    /// repeats the previous timestamp.
    Resume {
        c: usize,
        a: usize,
        at: usize,
        replay: bool,
    },
    /// A CONNECTED; `jump` acks that index instead of the client's own.
    Ack {
        c: usize,
        a: usize,
        at: usize,
        probe: bool,
        ranges: bool,
        replay: bool,
        jump: Option<u32>,
    },
    /// A CLOSING.
    Closing { c: usize, a: usize, at: usize },
    /// A CLOSED, or an abort.
    Closed {
        c: usize,
        a: usize,
        at: usize,
        abort: bool,
    },
    /// Time passes.
    Advance { ms: u64 },
    /// One endpoint's timers run.
    Timer { at: usize },
    /// One endpoint's sends are taken, `max` datagrams a batch; with
    /// `lose` k > 0, every k-th datagram is lost on the way.
    Transmit { at: usize, max: usize, lose: usize },
    /// A transfer moves on: `rounds` of an ack (with ranges) from `a` and
    /// the endpoint's sends, every `lose`-th lost.
    Run {
        c: usize,
        a: usize,
        at: usize,
        rounds: usize,
        lose: usize,
    },
    /// The store answers, or not.
    StoreUp { up: bool },
    /// One endpoint's lookups are answered (0: as the store says, 1:
    /// missing, 2: unavailable).
    Answer { at: usize, how: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    let a = 0..ADDRS;
    let at = 0..2usize;
    prop_oneof![
        3 => (c.clone(), a.clone(), at.clone(), any::<bool>())
            .prop_map(|(c, a, at, fresh)| Op::Connect { c, a, at, fresh }),
        2 => (c.clone(), a.clone(), at.clone(), any::<bool>())
            .prop_map(|(c, a, at, replay)| Op::Resume { c, a, at, replay }),
        6 => (
            c.clone(),
            a.clone(),
            at.clone(),
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.1),
            prop::option::weighted(0.1, prop_oneof![0..100u32, 0..=LONG + 1]),
        )
            .prop_map(|(c, a, at, probe, ranges, replay, jump)| Op::Ack {
                c,
                a,
                at,
                probe,
                ranges,
                replay,
                jump,
            }),
        1 => (c.clone(), a.clone(), at.clone()).prop_map(|(c, a, at)| Op::Closing { c, a, at }),
        1 => (c.clone(), a.clone(), at.clone(), any::<bool>())
            .prop_map(|(c, a, at, abort)| Op::Closed { c, a, at, abort }),
        2 => prop_oneof![0..50u64, 0..40_000u64].prop_map(|ms| Op::Advance { ms }),
        2 => at.clone().prop_map(|at| Op::Timer { at }),
        6 => (at.clone(), 1..80usize, 0..5usize)
            .prop_map(|(at, max, lose)| Op::Transmit { at, max, lose }),
        4 => (c.clone(), a.clone(), at.clone(), 1..12usize, 0..5usize)
            .prop_map(|(c, a, at, rounds, lose)| Op::Run { c, a, at, rounds, lose }),
        1 => any::<bool>().prop_map(|up| Op::StoreUp { up }),
        2 => (at, 0..3u8).prop_map(|(at, how)| Op::Answer { at, how }),
    ]
}

/// What a client knows: its session's length, token, the indices it holds.
#[derive(Debug, Default)]
struct Client {
    len: u32,
    /// The Accept's token, with a challenge answer appended when asked.
    token: Vec<u8>,
    retry: Vec<u8>,
    /// Next index needed, and the indices held past it.
    ack: u32,
    held: BTreeSet<u32>,
    ts: u64,
}

/// What a client datagram says beyond what the client knows.
struct Msg {
    state: State,
    flags: u8,
    ack: u32,
    token: Vec<u8>,
    /// Same timestamp as the previous datagram.
    replay: bool,
    /// Ack ranges for what the client holds past `ack`.
    ranges: bool,
}

impl Msg {
    fn new(state: State, ack: u32, token: Vec<u8>) -> Self {
        Self {
            state,
            flags: 0,
            ack,
            token,
            replay: false,
            ranges: false,
        }
    }
}

/// Two endpoints, their clients, and the store they share.
struct Run {
    servers: [Server; 2],
    now: Instant,
    clients: Vec<Client>,
    store: HashMap<Uuid, SessionRecord>,
    store_up: bool,
    lookups: [Vec<Lookup>; 2],
}

fn uuid(c: usize) -> Uuid {
    Uuid::from_u128(0x7ab1_e000 + c as u128)
}

fn addr(a: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + a as u8], 4000))
}

impl Run {
    fn new(config: &ServerConfig, lens: [u32; CLIENTS]) -> Self {
        let server = |seed| {
            Server::new(ServerConfig {
                seed: Some(seed),
                ..config.clone()
            })
        };
        Self {
            servers: [server(1), server(2)],
            now: risp_udp::clock::now(),
            clients: lens
                .iter()
                .map(|&len| Client {
                    len,
                    ..Client::default()
                })
                .collect(),
            store: HashMap::new(),
            store_up: true,
            lookups: [Vec::new(), Vec::new()],
        }
    }

    /// Sends what client `c` would, from `a` to endpoint `at`.
    fn send(&mut self, c: usize, a: usize, at: usize, m: Msg) {
        let Msg {
            state,
            flags,
            ack,
            token,
            replay,
            ranges,
        } = m;
        let client = &mut self.clients[c];
        if !replay || client.ts == 0 {
            client.ts += 1;
        }
        let mut sack = Vec::new();
        if ranges {
            let mut w = RangeWriter::new(&mut sack, ack, usize::MAX);
            let held: Vec<u32> = client.held.iter().rev().copied().collect();
            for i in held {
                if i > ack && !w.push(i, i) {
                    break;
                }
            }
            w.finish();
        }
        let msg = ClientMessage {
            state,
            uuid: uuid(c),
            len: client.len,
            window: 64,
            ack,
            timestamp: client.ts,
            rate: 0,
            flags,
            token: &token,
            sack: &sack,
        };
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        let n = msg.encode(&mut buf).expect("a valid client message");
        self.servers[at].handle(self.now, addr(a), &buf[..n]);
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Connect { c, a, at, fresh } => {
                let client = &mut self.clients[c];
                if fresh {
                    *client = Client {
                        len: client.len,
                        ts: client.ts,
                        ..Client::default()
                    };
                }
                let token = std::mem::take(&mut client.retry);
                self.send(c, a, at, Msg::new(State::Connecting, 0, token));
            }
            Op::Resume { c, a, at, replay } => {
                let client = &self.clients[c];
                let token = client.token[..client.token.len().min(SERVER_TOKEN_LEN)].to_vec();
                let ack = client.ack;
                let m = Msg {
                    replay,
                    ..Msg::new(State::Connecting, ack, token)
                };
                self.send(c, a, at, m);
            }
            Op::Ack {
                c,
                a,
                at,
                probe,
                ranges,
                replay,
                jump,
            } => {
                let client = &self.clients[c];
                let ack = jump.unwrap_or(client.ack);
                let m = Msg {
                    flags: if probe { FLAG_PROBE } else { 0 },
                    replay,
                    ranges,
                    ..Msg::new(State::Connected, ack, client.token.clone())
                };
                self.send(c, a, at, m);
            }
            Op::Closing { c, a, at } => {
                let (ack, token) = (self.clients[c].ack, self.clients[c].token.clone());
                self.send(c, a, at, Msg::new(State::Closing, ack, token));
            }
            Op::Closed { c, a, at, abort } => {
                let (ack, token) = (self.clients[c].ack, self.clients[c].token.clone());
                let m = Msg {
                    flags: if abort { FLAG_ABORT } else { 0 },
                    ..Msg::new(State::Closed, ack, token)
                };
                self.send(c, a, at, m);
            }
            Op::Advance { ms } => self.now += Duration::from_millis(ms),
            Op::Timer { at } => {
                if let Some(t) = self.servers[at].poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.servers[at].handle_timeout(self.now);
            }
            Op::Transmit { at, max, lose } => self.transmit(at, max, lose),
            Op::Run {
                c,
                a,
                at,
                rounds,
                lose,
            } => {
                for _ in 0..rounds {
                    let (ack, token) = (self.clients[c].ack, self.clients[c].token.clone());
                    let m = Msg {
                        ranges: true,
                        ..Msg::new(State::Connected, ack, token)
                    };
                    self.send(c, a, at, m);
                    self.transmit(at, 64, lose);
                    self.now += Duration::from_millis(1);
                    self.check();
                }
            }
            Op::StoreUp { up } => {
                self.store_up = up;
                for s in &mut self.servers {
                    s.set_store_available(up);
                }
            }
            Op::Answer { at, how } => {
                for l in std::mem::take(&mut self.lookups[at]) {
                    let outcome = match (how, self.store.get(&l.uuid)) {
                        (2, _) => LookupOutcome::Unavailable,
                        _ if !self.store_up => LookupOutcome::Unavailable,
                        (0, Some(r)) => LookupOutcome::Found(r.clone()),
                        _ => LookupOutcome::Missing,
                    };
                    self.servers[at].complete_lookup(self.now, l, outcome);
                    self.check();
                }
            }
        }
        self.carry_out_store_ops();
        while self.servers.iter_mut().any(|s| s.poll_event().is_some()) {}
        self.check();
    }

    /// Takes one endpoint's sends and tells each client what reached it.
    fn transmit(&mut self, at: usize, max: usize, lose: usize) {
        let mut buf = Vec::new();
        let mut n = 0;
        for _ in 0..256 {
            let Some(t) = self.servers[at].poll_transmit(self.now, max, &mut buf) else {
                return;
            };
            for seg in buf[..t.size].chunks(t.segment_size) {
                n += 1;
                if lose > 0 && n % lose == 0 {
                    continue;
                }
                let found = (0..CLIENTS)
                    .find_map(|c| ServerMessage::decode(seg, uuid(c)).ok().map(|m| (c, m)));
                let Some((c, msg)) = found else {
                    panic!("a datagram keyed by no client's UUID: {seg:?}");
                };
                let client = &mut self.clients[c];
                match msg {
                    ServerMessage::Accept { token, .. } => client.token = token.to_vec(),
                    ServerMessage::Retry { token, .. } => client.retry = token.to_vec(),
                    ServerMessage::Challenge { challenge, .. } => {
                        client.token.truncate(SERVER_TOKEN_LEN);
                        client.token.extend_from_slice(&challenge);
                    }
                    ServerMessage::Data { index, .. } if index >= client.ack => {
                        client.held.insert(index);
                        while client.held.remove(&client.ack) {
                            client.ack += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Writes and removals go to the map at once; lookups wait for an
    /// `Answer`.
    fn carry_out_store_ops(&mut self) {
        for (at, server) in self.servers.iter_mut().enumerate() {
            while let Some(op) = server.poll_store_op() {
                match op {
                    StoreOp::Put(r) if self.store_up => {
                        self.store.insert(r.uuid, r);
                    }
                    StoreOp::Remove(u) if self.store_up => {
                        self.store.remove(&u);
                    }
                    StoreOp::Lookup(l) => self.lookups[at].push(l),
                    _ => {}
                }
            }
        }
    }

    fn check(&self) {
        for (at, server) in self.servers.iter().enumerate() {
            if let Err(drift) = server.check_invariants() {
                panic!("endpoint {at}: the session table drifted: {drift}");
            }
            let s = server.stats();
            assert_eq!(
                s.datagrams_received,
                s.accepted + s.rejected_total(),
                "{s:?}"
            );
            let live = server.session_count();
            assert!(live <= server.config().max_sessions);
            assert!(server.pending_count() <= live);
            assert!(server.confirmed_count() + server.pending_count() <= live);
            // Stale copies dropped for a restore are not counted apart, so
            // the books can only say that no session ended twice.
            let ended =
                s.sessions_closed + s.sessions_aborted + s.sessions_expired + s.pending_evicted;
            assert!(
                s.sessions_opened + s.sessions_restored >= live as u64 + ended,
                "a session ended twice: {s:?}"
            );
        }
    }
}

fn config() -> impl Strategy<Value = ServerConfig> {
    (
        1..5usize,
        1..128u32,
        0..3u8,
        0..2u8,
        1..300usize,
        any::<bool>(),
    )
        .prop_map(
            |(max_sessions, max_window, retry, pacing, budget, shared)| ServerConfig {
                max_sessions,
                max_len: LONG + 1,
                max_window,
                session_lifetime: Duration::from_secs(5),
                handshake_lifetime: Duration::from_secs(2),
                pacing: Duration::from_millis(u64::from(pacing)),
                max_batch: 32,
                retry: match retry {
                    0 => RetryPolicy::Never,
                    1 => RetryPolicy::UnderPressure,
                    _ => RetryPolicy::Always,
                },
                window_budget: budget,
                store: shared.then_some(StoreSettings {
                    refresh: Duration::from_millis(100),
                    max_lookups: 2,
                }),
                secret: Some([7; 32]),
                ..ServerConfig::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 1024, ..ProptestConfig::default() })]

    #[test]
    fn the_session_table_stays_consistent(
        config in config(),
        lens in prop::array::uniform3(prop_oneof![3 => 1..100u32, 1 => Just(LONG)]),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let mut run = Run::new(&config, lens);
        for op in &ops {
            run.step(op);
        }
        run.step(&Op::Transmit { at: 0, max: 64, lose: 0 });
        run.step(&Op::Transmit { at: 1, max: 64, lose: 0 });
        run.step(&Op::Advance { ms: 60_000 });
        run.step(&Op::Timer { at: 0 });
        run.step(&Op::Timer { at: 1 });
        // Past every lifetime, every session has expired.
        for server in &run.servers {
            prop_assert_eq!(server.session_count(), 0);
            prop_assert_eq!(server.pending_count(), 0);
            prop_assert_eq!(server.window_slots_in_use(), 0);
            prop_assert_eq!(server.poll_timeout(), None);
        }
    }
}

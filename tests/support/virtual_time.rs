//! The sans-IO core in virtual time: no sockets, no sleeps. Time is an
//! `Instant` the test moves; timers fire when the test jumps to them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::time::{Duration, Instant};

use risp_netem::{Direction, Impairment, ImpairmentConfig};
use risp_udp::proto::client::{Client, ClientConfig, ClientEvent};
use risp_udp::proto::sequence::Sequence;
use risp_udp::proto::server::{
    LookupOutcome, Reject, Server, ServerConfig, ServerEvent, SessionRecord, StoreOp,
};
use risp_udp::proto::wire::{ClientMessage, ServerMessage, State, MAX_DATAGRAM_LEN};
use uuid::Uuid;

use super::expected::Expected;
use super::wire::{encode_server, ClientDatagram};

/// The server's books balance: every datagram is accepted or rejected, and
/// it never holds more sessions than its limit.
pub fn check_accounting(server: &Server) {
    let s = server.stats();
    assert_eq!(
        s.datagrams_received,
        s.accepted + s.rejected_total(),
        "every datagram is accepted or rejected: {s:?}"
    );
    assert!(server.session_count() <= server.config().max_sessions);
}

/// A bare [`Server`] driven by hand: the test sends datagrams and decodes
/// every reply.
pub struct ServerHarness {
    pub server: Server,
    pub t0: Instant,
    pub now: Instant,
    /// The bystander: nothing may be sent to it except when it asks.
    pub guard: Option<SocketAddr>,
    /// Every UUID each source sent for: the server's datagrams to an
    /// address must be keyed by one of them.
    uuids_from: HashMap<SocketAddr, Vec<Uuid>>,
}

impl ServerHarness {
    pub fn new(config: ServerConfig) -> Self {
        let t0 = risp_udp::clock::now();
        Self {
            server: Server::new(config),
            t0,
            now: t0,
            guard: None,
            uuids_from: HashMap::new(),
        }
    }

    pub fn at(&mut self, since_start: Duration) {
        self.now = self.t0 + since_start;
    }

    pub fn send(&mut self, from: SocketAddr, m: &ClientDatagram) {
        self.send_bytes(from, &m.encode());
    }

    /// Any bytes, valid or not; the books must balance afterwards.
    pub fn send_bytes(&mut self, from: SocketAddr, d: &[u8]) {
        if let Ok(m) = ClientMessage::decode(d) {
            let seen = self.uuids_from.entry(from).or_default();
            if !seen.contains(&m.uuid) {
                seen.push(m.uuid);
            }
        }
        self.server.handle(self.now, from, d);
        self.check_accounting();
    }

    pub fn check_accounting(&self) {
        check_accounting(&self.server);
    }

    /// Everything the server wants to send now, decoded, in order.
    pub fn drain(&mut self) -> Vec<(SocketAddr, ServerMessage)> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(t) = self.server.poll_transmit(self.now, 64, &mut buf) {
            assert!(t.size > 0 && t.size % t.segment_size == 0);
            for seg in buf[..t.size].chunks(t.segment_size) {
                let keys = self.uuids_from.get(&t.destination);
                let msg = keys
                    .into_iter()
                    .flatten()
                    .find_map(|&k| ServerMessage::decode(seg, k).ok())
                    .unwrap_or_else(|| {
                        panic!(
                            "{} got a datagram keyed by no UUID it sent: {seg:?}",
                            t.destination
                        )
                    });
                assert_ne!(
                    Some(t.destination),
                    self.guard,
                    "{msg:?} was sent to the bystander"
                );
                out.push((t.destination, msg));
            }
        }
        out
    }

    pub fn rejected(&self, r: Reject) -> u64 {
        self.server.stats().rejected(r)
    }

    /// What the live session `uuid` must deliver: its seed (the one thing
    /// taken from the server) and the `len` the client asked for, through
    /// the tests' own reference.
    pub fn expected(&self, uuid: &Uuid, len: u32) -> Expected {
        let seed = self.server.sequence(uuid).expect("a live session").seed();
        Expected::new(seed, len)
    }

    pub fn events(&mut self) -> Vec<ServerEvent> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }
}

/// A client datagram as [`ClientHarness::sent`] saw it go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// When, since the harness started.
    pub at: Duration,
    pub datagram: ClientDatagram,
}

impl Deref for Sent {
    type Target = ClientDatagram;

    fn deref(&self) -> &ClientDatagram {
        &self.datagram
    }
}

/// The token [`ClientHarness::connect`] hands the client.
pub const TOKEN: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// A bare [`Client`] driven by hand: the test feeds it server datagrams and
/// decodes what it sends back.
pub struct ClientHarness {
    pub client: Client,
    pub t0: Instant,
    pub now: Instant,
    /// Newest client timestamp seen, echoed on what we feed back.
    pub echo: u64,
}

impl ClientHarness {
    pub fn new(config: ClientConfig) -> Self {
        let t0 = risp_udp::clock::now();
        Self {
            client: Client::new(config, t0),
            t0,
            now: t0,
            echo: 0,
        }
    }

    pub fn len(len: u32) -> Self {
        Self::new(ClientConfig::new(Uuid::from_bytes([7; 16]), len))
    }

    pub fn at(&mut self, since_start: Duration) {
        self.now = self.t0 + since_start;
    }

    /// Everything the client sends now.
    pub fn sent(&mut self) -> Vec<Sent> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        while let Some(n) = self.client.poll_transmit(self.now, &mut buf) {
            let datagram = ClientDatagram::decode(&buf[..n]);
            if datagram.state == State::Connecting {
                assert_eq!(n, 1200, "CONNECTING is padded");
            }
            self.echo = self.echo.max(datagram.ts);
            out.push(Sent {
                at: self.now - self.t0,
                datagram,
            });
            assert!(out.len() < 10_000, "runaway sender");
        }
        out
    }

    pub fn feed_bytes(&mut self, d: &[u8]) {
        self.client.handle(self.now, d);
    }

    pub fn feed(&mut self, msg: ServerMessage) {
        let uuid = self.client.uuid();
        self.feed_bytes(&encode_server(uuid, msg));
    }

    pub fn data(&mut self, index: u32, payload: u32) {
        let echo = self.echo;
        self.feed(ServerMessage::Data {
            index,
            payload,
            echo,
        });
    }

    pub fn events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// Non-RTT events only.
    pub fn app_events(&mut self) -> Vec<ClientEvent> {
        self.events()
            .into_iter()
            .filter(|e| !matches!(e, ClientEvent::RttSample(_)))
            .collect()
    }

    /// Feeds an Accept with `token` (30 s lifetime, window 1024) that
    /// echoes the newest timestamp.
    pub fn accept(&mut self, token: [u8; 8]) {
        let echo = self.echo;
        self.feed(ServerMessage::Accept {
            token,
            lifetime_ms: 30_000,
            max_window: 1024,
            echo,
        });
    }

    /// CONNECTING out, Accept in, the confirming ack out.
    pub fn connect(&mut self) {
        let hello = self.sent();
        assert_eq!(hello.len(), 1);
        assert_eq!(hello[0].state, State::Connecting);
        assert!(hello[0].token.is_empty());
        self.accept(TOKEN);
        let ack = self.sent();
        assert_eq!(ack.len(), 1, "{ack:?}");
        assert_eq!(ack[0].state, State::Connected);
        assert_eq!(ack[0].token, TOKEN);
        assert_eq!(self.app_events(), vec![ClientEvent::Connected]);
    }

    /// Fires timers until the client finishes; returns everything it sent.
    pub fn run_silent(&mut self) -> Vec<Sent> {
        let mut all = Vec::new();
        while let Some(t) = self.client.poll_timeout() {
            assert!(t >= self.now, "timers never go back in time");
            self.now = t;
            self.client.handle_timeout(t);
            all.extend(self.sent());
        }
        all
    }
}

/// One client of a [`Pair`]: a real transfer over a perfect link, checked
/// value by value.
pub struct Transfer {
    pub client: Client,
    pub addr: SocketAddr,
    /// The server's sequence for this session, captured while it is live.
    pub seq: Option<Sequence>,
    /// Every value delivered, in order.
    pub values: Vec<u32>,
    pub verified: Option<u64>,
    pub completed: bool,
    /// The newest datagram the client sent (a template for mutations).
    pub last_sent: Vec<u8>,
}

/// A server and its clients in virtual time, every datagram delivered.
/// Anything else may be sent to the server in between; what it says to
/// addresses that are not clients of the pair is kept in `stray`.
pub struct Pair {
    pub server: Server,
    pub now: Instant,
    pub clients: Vec<Transfer>,
    /// Server output to other addresses (the first 256 datagrams).
    pub stray: Vec<Vec<u8>>,
    /// Bytes the server sent to each address that is not a client's.
    pub stray_bytes: HashMap<SocketAddr, usize>,
}

impl Pair {
    pub fn new(config: ServerConfig) -> Self {
        Self {
            server: Server::new(config),
            now: risp_udp::clock::now(),
            clients: Vec::new(),
            stray: Vec::new(),
            stray_bytes: HashMap::new(),
        }
    }

    /// Adds a client at `addr`; it starts on the next [`Pair::pump`].
    pub fn add_client(&mut self, config: ClientConfig, addr: SocketAddr) {
        self.clients.push(Transfer {
            client: Client::new(config, self.now),
            addr,
            seq: None,
            values: Vec::new(),
            verified: None,
            completed: false,
            last_sent: Vec::new(),
        });
    }

    pub fn check(&self) {
        check_accounting(&self.server);
    }

    /// Pumps in steps of `step` of virtual time until every client
    /// completed (at most `limit` of virtual time).
    pub fn run_to_completion(&mut self, step: Duration, limit: Duration) {
        let end = self.now + limit;
        while !self.clients.iter().all(|c| c.completed) {
            assert!(self.now < end, "transfers did not finish in {limit:?}");
            self.now += step;
            self.pump(8);
        }
    }

    /// Moves datagrams between the server and the clients until quiet (or
    /// for `rounds` rounds), and fires due timers.
    pub fn pump(&mut self, rounds: usize) {
        if self.server.poll_timeout().is_some_and(|t| t <= self.now) {
            self.server.handle_timeout(self.now);
        }
        let by_addr: HashMap<SocketAddr, usize> = self
            .clients
            .iter()
            .enumerate()
            .map(|(i, r)| (r.addr, i))
            .collect();
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        let mut sbuf = Vec::new();
        for _ in 0..rounds {
            let mut moved = false;
            for r in &mut self.clients {
                if r.client.poll_timeout().is_some_and(|t| t <= self.now) {
                    r.client.handle_timeout(self.now);
                }
                while let Some(n) = r.client.poll_transmit(self.now, &mut buf) {
                    r.last_sent = buf[..n].to_vec();
                    self.server.handle(self.now, r.addr, &buf[..n]);
                    moved = true;
                }
                if r.seq.is_none() {
                    r.seq = self.server.sequence(&r.client.uuid());
                }
            }
            while let Some(t) = self.server.poll_transmit(self.now, 64, &mut sbuf) {
                for seg in sbuf[..t.size].chunks(t.segment_size) {
                    match by_addr.get(&t.destination) {
                        Some(&i) => self.clients[i].client.handle(self.now, seg),
                        None => {
                            *self.stray_bytes.entry(t.destination).or_default() += seg.len();
                            if self.stray.len() < 256 {
                                self.stray.push(seg.to_vec());
                            }
                        }
                    }
                }
                moved = true;
            }
            for r in &mut self.clients {
                while let Some(ev) = r.client.poll_event() {
                    match ev {
                        ClientEvent::Value { index, value, .. } => {
                            assert_eq!(index as usize, r.values.len(), "in order, once");
                            r.values.push(value);
                        }
                        ClientEvent::Verified { checksum } => r.verified = Some(checksum),
                        ClientEvent::Completed => r.completed = true,
                        ClientEvent::Failed(e) => panic!("real transfer failed: {e}"),
                        ClientEvent::Restarted { uuid } => {
                            panic!("real transfer restarted as {uuid}")
                        }
                        ClientEvent::ServerLost { reason } => {
                            panic!("real transfer lost its only server: {reason}")
                        }
                        ClientEvent::Connected | ClientEvent::RttSample(_) => {}
                    }
                }
            }
            self.check();
            if !moved {
                return;
            }
        }
    }
}

/// Rewrites a server datagram in flight, given the session's UUID (see
/// [`Failover::tamper`]).
pub type Tamper = Box<dyn FnMut(Uuid, &mut Vec<u8>)>;

/// A datagram on its way in a [`Failover`] network.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Hop {
    /// From the client's address `from` to server address number `addr`.
    ToServer {
        addr: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// From server address number `via` to the client's address `to`.
    ToClient {
        via: usize,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
}

/// One client that knows several server addresses, in virtual time, and
/// the servers behind them. Each address leads to one of `servers`; two
/// addresses may lead to the same [`Server`], which models two instances
/// sharing one session store exactly. Datagrams take `delay` each way and
/// are lost with probability `loss`; an address can be cut off
/// ([`Failover::cut`]): everything to it and from it is dropped from then
/// on. The client moves to a new address of its own on each failover, as
/// the tokio driver opens a new socket per server.
///
/// [`Failover::impaired`] puts a netem [`Impairment`] on the client's link
/// instead (loss, duplication, reordering, corruption, delay, blackholes,
/// rebinding), and [`Failover::kills`] kills the client's socket at given
/// times (it reconnects from a new port). Servers configured with a store
/// share [`Failover::store`]: their writes land there and their lookups
/// are answered from it at once, so a server restores a session another
/// one started.
pub struct Failover {
    pub servers: Vec<Server>,
    /// Each server address and the index of the server behind it.
    pub addrs: Vec<(SocketAddr, usize)>,
    /// Addresses cut off.
    pub cut: Vec<bool>,
    pub client: Client,
    pub t0: Instant,
    pub now: Instant,
    /// The client's current address.
    pub client_addr: SocketAddr,
    /// Which server address each client address talks to.
    paths: HashMap<SocketAddr, usize>,
    delay: Duration,
    loss: f64,
    /// The netem model of the link, when set: it decides instead of
    /// `delay` and `loss`.
    link: Option<Impairment>,
    /// When (since `t0`) the client's socket is killed, earliest first.
    pub kills: Vec<Duration>,
    /// The session store the servers with one share.
    pub store: HashMap<Uuid, SessionRecord>,
    /// Socket kills and NAT rebindings carried out.
    pub reconnects: u32,
    pub rebinds: u32,
    /// `Restarted` events (the transfer started over under a new UUID).
    pub restarts: u32,
    /// Rewrites each server datagram on its way to the client, given the
    /// session's UUID (a test double of a faulty server or middlebox).
    pub tamper: Option<Tamper>,
    rng: rand::rngs::StdRng,
    queue: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, u64, Hop)>>,
    order: u64,
    /// The session's sequence, captured from the first server that held it.
    pub seq: Option<Sequence>,
    /// Every value delivered, in order.
    pub values: Vec<u32>,
    pub verified: Option<u64>,
    pub completed: bool,
    pub failed: Option<risp_udp::proto::client::ClientError>,
    /// Every `ServerLost` the client emitted, with the address it left.
    pub lost: Vec<(usize, risp_udp::proto::client::LostReason)>,
    /// Datagrams the client sent to each server address.
    pub sent_to: Vec<u64>,
    next_port: u16,
}

impl Failover {
    /// `servers` behind `addrs` (address, server index); a client of
    /// `config` (its `servers` set to the number of addresses) starts on
    /// the first address. `seed` drives the loss.
    pub fn new(
        servers: Vec<Server>,
        addrs: Vec<(SocketAddr, usize)>,
        mut config: ClientConfig,
        delay: Duration,
        loss: f64,
        seed: u64,
    ) -> Self {
        use rand::SeedableRng;
        let t0 = risp_udp::clock::now();
        config.servers = addrs.len() as u32;
        let n = addrs.len();
        let mut net = Self {
            servers,
            addrs,
            cut: vec![false; n],
            client: Client::new(config, t0),
            t0,
            now: t0,
            client_addr: "10.9.0.1:1000".parse().unwrap(),
            paths: HashMap::new(),
            delay,
            loss,
            link: None,
            kills: Vec::new(),
            store: HashMap::new(),
            reconnects: 0,
            rebinds: 0,
            restarts: 0,
            tamper: None,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            queue: std::collections::BinaryHeap::new(),
            order: 0,
            seq: None,
            values: Vec::new(),
            verified: None,
            completed: false,
            failed: None,
            lost: Vec::new(),
            sent_to: vec![0; n],
            next_port: 1000,
        };
        net.paths.insert(net.client_addr, 0);
        net
    }

    /// Like [`Failover::new`], with the client's link impaired by netem's
    /// model of `impairment` (seeded by `seed`; time counts from `t0`).
    pub fn impaired(
        servers: Vec<Server>,
        addrs: Vec<(SocketAddr, usize)>,
        config: ClientConfig,
        impairment: ImpairmentConfig,
        seed: u64,
    ) -> Self {
        let mut net = Self::new(servers, addrs, config, Duration::ZERO, 0.0, seed);
        net.link = Some(Impairment::new(impairment, seed));
        net
    }

    /// The link's counters (all zero without [`Failover::impaired`]).
    pub fn link_stats(&self) -> risp_netem::ImpairmentStats {
        self.link
            .as_ref()
            .map(Impairment::stats)
            .unwrap_or_default()
    }

    /// The client's socket moves to a new port on the same path.
    fn move_port(&mut self) {
        let path = self.paths[&self.client_addr];
        self.next_port += 1;
        self.client_addr = SocketAddr::from(([10, 9, 0, 1], self.next_port));
        self.paths.insert(self.client_addr, path);
    }

    /// Cuts server address number `addr` off from now on.
    pub fn cut(&mut self, addr: usize) {
        self.cut[addr] = true;
    }

    /// Runs until `stop` says so, the client finished, or `limit` of
    /// virtual time since the start passed. Returns whether `stop` ended it.
    pub fn run_until(&mut self, limit: Duration, mut stop: impl FnMut(&Self) -> bool) -> bool {
        let end = self.t0 + limit;
        loop {
            self.flush();
            if stop(self) {
                return true;
            }
            if self.client.is_finished() {
                return false;
            }
            let next = [
                self.queue.peek().map(|std::cmp::Reverse((t, _, _))| *t),
                self.client.poll_timeout(),
                self.kills.first().map(|k| self.t0 + *k),
            ]
            .into_iter()
            .chain(self.servers.iter().map(Server::poll_timeout))
            .flatten()
            .min();
            let Some(next) = next else { return false };
            if next > end {
                self.now = end;
                return false;
            }
            self.now = self.now.max(next);
            self.step();
        }
    }

    /// Runs to the client's end (at most `limit` of virtual time).
    pub fn run(&mut self, limit: Duration) {
        self.run_until(limit, |_| false);
    }

    fn step(&mut self) {
        let now = self.now;
        while self
            .queue
            .peek()
            .is_some_and(|std::cmp::Reverse((t, _, _))| *t <= now)
        {
            let std::cmp::Reverse((_, _, hop)) = self.queue.pop().unwrap();
            match hop {
                Hop::ToServer { addr, from, bytes } => {
                    if !self.cut[addr] {
                        let s = self.addrs[addr].1;
                        self.servers[s].handle(now, from, &bytes);
                    }
                }
                Hop::ToClient { via, to, bytes } => {
                    // Only while the client still listens there.
                    if !self.cut[via] && to == self.client_addr {
                        self.client.handle(now, &bytes);
                        self.drain_client();
                    }
                }
            }
        }
        for s in &mut self.servers {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
        }
        let elapsed = now - self.t0;
        if self.kills.first().is_some_and(|k| *k <= elapsed) {
            self.kills.remove(0);
            if !self.client.is_finished() {
                // As the driver after a killswitch: a new socket, resume.
                self.move_port();
                self.reconnects += 1;
                self.client.reconnect(now);
            }
        }
        let rebinds = self.link.as_mut().map_or(0, |l| l.take_rebinds(elapsed));
        if rebinds > 0 && !self.client.is_finished() {
            // A NAT rebinding: the client does not know, the server sees
            // datagrams from a new port.
            self.move_port();
            self.rebinds += 1;
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
            self.drain_client();
        }
    }

    /// Sends what the client and the servers have to send.
    fn flush(&mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        while let Some(n) = self.client.poll_transmit(self.now, &mut buf) {
            let addr = self.paths[&self.client_addr];
            self.sent_to[addr] += 1;
            let from = self.client_addr;
            self.send(Hop::ToServer {
                addr,
                from,
                bytes: buf[..n].to_vec(),
            });
        }
        let mut sbuf = Vec::new();
        for s in 0..self.servers.len() {
            while let Some(op) = self.servers[s].poll_store_op() {
                match op {
                    StoreOp::Put(r) => {
                        self.store.insert(r.uuid, r);
                    }
                    StoreOp::Remove(u) => {
                        self.store.remove(&u);
                    }
                    StoreOp::Lookup(l) => {
                        let outcome = match self.store.get(&l.uuid) {
                            Some(r) => LookupOutcome::Found(r.clone()),
                            None => LookupOutcome::Missing,
                        };
                        self.servers[s].complete_lookup(self.now, l, outcome);
                    }
                }
            }
            while let Some(t) = self.servers[s].poll_transmit(self.now, 64, &mut sbuf) {
                // The server answers through the address this client
                // address talks to (if that leads to this server).
                let Some(&via) = self.paths.get(&t.destination) else {
                    continue;
                };
                if self.addrs[via].1 != s {
                    continue;
                }
                for seg in sbuf[..t.size].chunks(t.segment_size) {
                    let mut bytes = seg.to_vec();
                    if let Some(f) = &mut self.tamper {
                        f(self.client.uuid(), &mut bytes);
                    }
                    self.send(Hop::ToClient {
                        via,
                        to: t.destination,
                        bytes,
                    });
                }
            }
            if self.seq.is_none() {
                self.seq = self.servers[s].sequence(&self.client.uuid());
            }
            while self.servers[s].poll_event().is_some() {}
        }
    }

    fn send(&mut self, hop: Hop) {
        use rand::Rng;
        if let Some(link) = &mut self.link {
            let (dir, len) = match &hop {
                Hop::ToServer { bytes, .. } => (Direction::ToServer, bytes.len()),
                Hop::ToClient { bytes, .. } => (Direction::ToClient, bytes.len()),
            };
            let verdict = link.decide(dir, self.now - self.t0, len);
            for d in verdict.deliveries() {
                let mut copy = match &hop {
                    Hop::ToServer { addr, from, bytes } => Hop::ToServer {
                        addr: *addr,
                        from: *from,
                        bytes: bytes.clone(),
                    },
                    Hop::ToClient { via, to, bytes } => Hop::ToClient {
                        via: *via,
                        to: *to,
                        bytes: bytes.clone(),
                    },
                };
                if let Some(bit) = d.corrupt_bit {
                    let (Hop::ToServer { bytes, .. } | Hop::ToClient { bytes, .. }) = &mut copy;
                    risp_netem::flip_bit(bytes, bit);
                }
                self.order += 1;
                self.queue
                    .push(std::cmp::Reverse((self.now + d.delay, self.order, copy)));
            }
            return;
        }
        if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
            return;
        }
        self.order += 1;
        self.queue
            .push(std::cmp::Reverse((self.now + self.delay, self.order, hop)));
    }

    fn drain_client(&mut self) {
        while let Some(ev) = self.client.poll_event() {
            match ev {
                ClientEvent::Value { index, value, .. } => {
                    assert_eq!(index as usize, self.values.len(), "in order, once");
                    self.values.push(value);
                }
                ClientEvent::Verified { checksum } => self.verified = Some(checksum),
                ClientEvent::Completed => self.completed = true,
                ClientEvent::Failed(e) => self.failed = Some(e),
                ClientEvent::ServerLost { reason } => {
                    let left = self.paths[&self.client_addr];
                    self.lost.push((left, reason));
                }
                ClientEvent::Restarted { .. } => {
                    // Only before anything was delivered; the new UUID's
                    // session has its own seed.
                    assert!(self.values.is_empty(), "restarted after values");
                    self.restarts += 1;
                    self.seq = None;
                }
                ClientEvent::Connected | ClientEvent::RttSample(_) => {}
            }
        }
        if self.client.wants_failover().is_some() {
            // As the driver: a new socket for the next server.
            self.client.failover(self.now);
            self.next_port += 1;
            self.client_addr = SocketAddr::from(([10, 9, 0, 1], self.next_port));
            let to = self.client.server_index() as usize;
            self.paths.insert(self.client_addr, to);
        }
    }

    /// Every value delivered so far is the session's, in order: checked
    /// against the tests' reference from the session's seed (the one thing
    /// taken from the server).
    pub fn values_match(&self) -> bool {
        self.expected()
            .is_some_and(|e| e.check_prefix(&self.values).is_ok())
    }

    /// What this session must deliver, once a server held it.
    pub fn expected(&self) -> Option<Expected> {
        let seq = self.seq.as_ref()?;
        Some(Expected::new(seq.seed(), self.client.len()))
    }
}

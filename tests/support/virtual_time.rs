//! The sans-IO core in virtual time: no sockets, no sleeps. Time is an
//! `Instant` the test moves; timers fire when the test jumps to them.
//!
//! The bare harnesses drive one endpoint by hand; [`Pair`] and
//! [`Failover`] are the library's simulator ([`risp_udp::sim::Network`])
//! configured as a test needs it, with an observer that checks every value
//! as it is delivered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::proto::client::{Client, ClientConfig, ClientEvent};
use risp_udp::proto::sequence::Sequence;
use risp_udp::proto::server::{Reject, Server, ServerConfig, ServerEvent};
use risp_udp::proto::wire::{ClientMessage, ServerMessage, State, MAX_DATAGRAM_LEN};
use risp_udp::sim::{Advance, ClientNode, Link, Network, Observer, Tamper};
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

/// What a [`Pair`]'s server address is (no client uses it).
pub const PAIR_SERVER: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::new(192, 0, 2, 1),
    4433,
));

/// One client of a [`Pair`]: a real transfer over a perfect link, checked
/// value by value.
pub struct Transfer {
    /// The session's UUID and length, as the client asked.
    pub uuid: Uuid,
    pub len: u32,
    /// The server's sequence for this session, captured when it opened.
    pub seq: Option<Sequence>,
    /// Every value delivered, in order.
    pub values: Vec<u32>,
    pub verified: Option<u64>,
    pub completed: bool,
    /// The newest datagram the client sent (a template for mutations).
    pub last_sent: Vec<u8>,
}

/// What a [`Pair`] saw: each client's transfer, and what the server said
/// to addresses that are not clients of the pair.
pub struct PairLog {
    pub clients: Vec<Transfer>,
    /// Server output to other addresses (the first 256 datagrams).
    pub stray: Vec<Vec<u8>>,
    /// Bytes the server sent to each address that is not a client's.
    pub stray_bytes: HashMap<SocketAddr, usize>,
}

impl Observer for PairLog {
    fn client_event(&mut self, _: Instant, client: usize, _: &Client, event: &ClientEvent) {
        let r = &mut self.clients[client];
        match event {
            ClientEvent::Value { index, value, .. } => {
                assert_eq!(*index as usize, r.values.len(), "in order, once");
                r.values.push(*value);
            }
            ClientEvent::Verified { checksum } => r.verified = Some(*checksum),
            ClientEvent::Completed => r.completed = true,
            ClientEvent::Failed(e) => panic!("real transfer failed: {e}"),
            ClientEvent::Restarted { uuid } => panic!("real transfer restarted as {uuid}"),
            ClientEvent::ServerLost { reason } => {
                panic!("real transfer lost its only server: {reason}")
            }
            ClientEvent::Connected | ClientEvent::RttSample(_) => {}
        }
    }

    fn server_event(&mut self, _: Instant, server: &Server, event: &ServerEvent) {
        if let ServerEvent::Opened { uuid, .. } = event {
            for r in self.clients.iter_mut().filter(|r| r.uuid == *uuid) {
                r.seq = r.seq.or(server.sequence(uuid));
            }
        }
    }

    fn server_touched(&mut self, _: Instant, server: &Server) {
        check_accounting(server);
    }

    fn client_sent(&mut self, client: usize, datagram: &[u8]) {
        self.clients[client].last_sent = datagram.to_vec();
    }

    fn unrouted(&mut self, to: SocketAddr, datagram: &[u8]) {
        *self.stray_bytes.entry(to).or_default() += datagram.len();
        if self.stray.len() < 256 {
            self.stray.push(datagram.to_vec());
        }
    }
}

/// A server and its clients in virtual time, on perfect links: a
/// [`Network`] of one server at [`PAIR_SERVER`]. Anything else may be sent
/// to the server in between ([`Pair::inject`]); what it says to addresses
/// that are not clients of the pair is kept in `stray`. Derefs to its
/// [`PairLog`]. Every time the server takes something in or fires its
/// timers, its books must balance ([`check_accounting`]).
pub struct Pair {
    net: Network,
    log: PairLog,
}

impl Deref for Pair {
    type Target = PairLog;

    fn deref(&self) -> &PairLog {
        &self.log
    }
}

impl DerefMut for Pair {
    fn deref_mut(&mut self) -> &mut PairLog {
        &mut self.log
    }
}

impl Pair {
    pub fn new(config: ServerConfig) -> Self {
        let mut net = Network::new(risp_udp::clock::now());
        net.add_server(Server::new(config), &[PAIR_SERVER]);
        Self {
            net,
            log: PairLog {
                clients: Vec::new(),
                stray: Vec::new(),
                stray_bytes: HashMap::new(),
            },
        }
    }

    /// Adds a client at `addr`; it starts on the next [`Pair::pump`].
    pub fn add_client(&mut self, config: ClientConfig, addr: SocketAddr) {
        let now = self.net.now();
        self.log.clients.push(Transfer {
            uuid: config.uuid,
            len: config.len,
            seq: None,
            values: Vec::new(),
            verified: None,
            completed: false,
            last_sent: Vec::new(),
        });
        let client = Client::new(config, now);
        self.net
            .add_client(ClientNode::new(client, now, vec![PAIR_SERVER]).at(addr));
    }

    pub fn server(&self) -> &Server {
        self.net.server(0)
    }

    pub fn server_mut(&mut self) -> &mut Server {
        self.net.server_mut(0)
    }

    /// Client `i`'s core.
    pub fn client(&self, i: usize) -> &Client {
        self.net.client(i).client()
    }

    pub fn client_mut(&mut self, i: usize) -> &mut Client {
        self.net.client_mut(i)
    }

    /// Client `i` moves to `addr` (it does not know; the server sees it
    /// come from there).
    pub fn move_client(&mut self, i: usize, addr: SocketAddr) {
        self.net.move_client(i, addr);
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Moves the clock `d` forward; timers due in between fire at the next
    /// [`Pair::pump`].
    pub fn advance(&mut self, d: Duration) {
        let t = self.net.now() + d;
        self.net.advance_to(t);
    }

    /// The server takes in `datagram` from `from` now.
    pub fn inject(&mut self, from: SocketAddr, datagram: &[u8]) {
        self.net.inject(0, from, datagram, &mut self.log);
    }

    pub fn check(&self) {
        check_accounting(self.net.server(0));
    }

    /// Runs, jumping from one event to the next, until every client
    /// completed (at most `limit` of virtual time).
    pub fn run_to_completion(&mut self, limit: Duration) {
        let deadline = self.net.now() + limit;
        self.net.run(deadline, &mut self.log);
        assert!(
            self.log.clients.iter().all(|c| c.completed),
            "transfers did not finish in {limit:?}"
        );
    }

    /// Moves datagrams between the server and the clients, without moving
    /// the clock, until quiet or for `rounds` round trips (a round trip is
    /// two hops: what was sent arrives, and the answer to it), and fires
    /// due timers.
    pub fn pump(&mut self, rounds: usize) {
        for _ in 0..2 * rounds {
            let sent = self.net.flush(&mut self.log);
            let due = self.net.is_due();
            if due {
                self.net.step(&mut self.log);
            }
            if !sent && !due {
                return;
            }
        }
    }
}

/// What the client of a [`Failover`] network did.
pub struct FailoverLog {
    /// The session's current UUID (it changes on a restart).
    uuid: Uuid,
    /// The session's sequence, captured from the first server that held it.
    pub seq: Option<Sequence>,
    /// Every value delivered, in order.
    pub values: Vec<u32>,
    pub verified: Option<u64>,
    pub completed: bool,
    pub failed: Option<risp_udp::proto::client::ClientError>,
    /// Every `ServerLost` the client emitted, with the address it left.
    pub lost: Vec<(usize, risp_udp::proto::client::LostReason)>,
    /// `Restarted` events (the transfer started over under a new UUID).
    pub restarts: u32,
}

impl Observer for FailoverLog {
    fn client_event(&mut self, _: Instant, _: usize, core: &Client, event: &ClientEvent) {
        match event {
            ClientEvent::Value { index, value, .. } => {
                assert_eq!(*index as usize, self.values.len(), "in order, once");
                self.values.push(*value);
            }
            ClientEvent::Verified { checksum } => self.verified = Some(*checksum),
            ClientEvent::Completed => self.completed = true,
            ClientEvent::Failed(e) => self.failed = Some(e.clone()),
            ClientEvent::ServerLost { reason } => {
                // Reported before the client moves on: its index is still
                // the address it left.
                self.lost.push((core.server_index() as usize, *reason));
            }
            ClientEvent::Restarted { uuid } => {
                // Only before anything was delivered; the new UUID's
                // session has its own seed.
                assert!(self.values.is_empty(), "restarted after values");
                self.restarts += 1;
                self.seq = None;
                self.uuid = *uuid;
            }
            ClientEvent::Connected | ClientEvent::RttSample(_) => {}
        }
    }

    fn server_event(&mut self, _: Instant, server: &Server, event: &ServerEvent) {
        let (ServerEvent::Opened { uuid, .. } | ServerEvent::Resumed { uuid, .. }) = event else {
            return;
        };
        if *uuid == self.uuid && self.seq.is_none() {
            self.seq = server.sequence(uuid);
        }
    }
}

/// One client that knows several server addresses, in virtual time, and
/// the servers behind them: a [`Network`] configured so. Each address
/// leads to one of `servers`; two addresses may lead to the same
/// [`Server`], which models two instances sharing one session store
/// exactly. Datagrams take `delay` each way and are lost with probability
/// `loss` (netem's model); an address can be cut off ([`Failover::cut`]):
/// everything to it and from it is dropped from then on. The client moves
/// to a new address of its own on each failover, as the tokio driver
/// opens a new socket per server.
///
/// [`Failover::impaired`] puts any netem impairment on the client's link
/// instead (loss, duplication, reordering, corruption, delay, blackholes,
/// rebinding), and [`Failover::set_kills`] kills the client's socket at
/// given times (it reconnects from a new port). Servers configured with a
/// store share the network's: their writes land there and their lookups
/// are answered from it at once, so a server restores a session another
/// one started. Derefs to its [`FailoverLog`].
pub struct Failover {
    net: Network,
    log: FailoverLog,
    /// Each server address, in the client's order.
    addrs: Vec<SocketAddr>,
}

impl Deref for Failover {
    type Target = FailoverLog;

    fn deref(&self) -> &FailoverLog {
        &self.log
    }
}

impl Failover {
    /// `servers` behind `addrs` (address, server index); a client of
    /// `config` (its `servers` set to the number of addresses) starts on
    /// the first address. `seed` drives the loss.
    pub fn new(
        servers: Vec<Server>,
        addrs: Vec<(SocketAddr, usize)>,
        config: ClientConfig,
        delay: Duration,
        loss: f64,
        seed: u64,
    ) -> Self {
        let link = ImpairmentConfig::symmetric(DirectionConfig {
            loss,
            delay,
            ..DirectionConfig::default()
        });
        Self::impaired(servers, addrs, config, link, seed)
    }

    /// Like [`Failover::new`], with the client's link impaired by netem's
    /// model of `impairment` (seeded by `seed`; time counts from `t0`).
    pub fn impaired(
        servers: Vec<Server>,
        addrs: Vec<(SocketAddr, usize)>,
        mut config: ClientConfig,
        impairment: ImpairmentConfig,
        seed: u64,
    ) -> Self {
        let t0 = risp_udp::clock::now();
        let mut net = Network::new(t0);
        for (i, server) in servers.into_iter().enumerate() {
            let at: Vec<SocketAddr> = addrs.iter().filter(|a| a.1 == i).map(|a| a.0).collect();
            net.add_server(server, &at);
        }
        let addrs: Vec<SocketAddr> = addrs.into_iter().map(|a| a.0).collect();
        config.servers = addrs.len() as u32;
        let log = FailoverLog {
            uuid: config.uuid,
            seq: None,
            values: Vec::new(),
            verified: None,
            completed: false,
            failed: None,
            lost: Vec::new(),
            restarts: 0,
        };
        let link = Link::impaired(impairment, seed);
        let client = ClientNode::new(Client::new(config, t0), t0, addrs.clone()).with_link(link);
        net.add_client(client);
        Self { net, log, addrs }
    }

    pub fn client(&self) -> &Client {
        self.net.client(0).client()
    }

    pub fn servers(&self) -> &[Server] {
        self.net.servers()
    }

    /// Server `i`, to replace (a restart that forgets every session).
    pub fn server_mut(&mut self, i: usize) -> &mut Server {
        self.net.server_mut(i)
    }

    pub fn t0(&self) -> Instant {
        self.net.epoch()
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    /// Datagrams the client sent to each server address.
    pub fn sent_to(&self) -> &[u64] {
        &self.net.client(0).counters().sent_to
    }

    /// Socket kills carried out.
    pub fn reconnects(&self) -> u64 {
        self.net.client(0).counters().reconnects
    }

    /// NAT rebindings carried out.
    pub fn rebinds(&self) -> u64 {
        self.net.client(0).counters().rebinds
    }

    /// Whether the shared store holds a record of `uuid`.
    pub fn stored(&self, uuid: &Uuid) -> bool {
        self.net.stored(uuid).is_some()
    }

    /// The client's socket is killed at each of `times` since the start.
    pub fn set_kills(&mut self, times: Vec<Duration>) {
        let t0 = self.net.epoch();
        self.net.client_node_mut(0).set_kills_at(t0, times);
    }

    /// Rewrites each server datagram on its way to the client, given the
    /// session's UUID (a test double of a faulty server or middlebox).
    pub fn set_tamper(&mut self, tamper: Tamper) {
        self.net.client_node_mut(0).set_tamper(Some(tamper));
    }

    /// The link's counters.
    pub fn link_stats(&self) -> risp_netem::ImpairmentStats {
        self.net.client(0).link().stats()
    }

    /// Cuts server address number `addr` off from now on.
    pub fn cut(&mut self, addr: usize) {
        self.net.cut(self.addrs[addr]);
    }

    /// Runs until `stop` says so, the client finished, or `limit` of
    /// virtual time since the start passed. Returns whether `stop` ended it.
    pub fn run_until(&mut self, limit: Duration, mut stop: impl FnMut(&Self) -> bool) -> bool {
        let end = self.net.epoch() + limit;
        loop {
            self.net.flush(&mut self.log);
            if stop(self) {
                return true;
            }
            if self.client().is_finished() {
                return false;
            }
            if self.net.advance(end, &mut self.log) != Advance::Stepped {
                return false;
            }
        }
    }

    /// Runs to the client's end (at most `limit` of virtual time).
    pub fn run(&mut self, limit: Duration) {
        self.run_until(limit, |_| false);
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
        Some(Expected::new(seq.seed(), self.client().len()))
    }
}

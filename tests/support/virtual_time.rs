//! The sans-IO core in virtual time: no sockets, no sleeps. Time is an
//! `Instant` the test moves; timers fire when the test jumps to them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::time::{Duration, Instant};

use risp_udp::proto::client::{Client, ClientConfig, ClientEvent};
use risp_udp::proto::sequence::Sequence;
use risp_udp::proto::server::{Reject, Server, ServerConfig, ServerEvent};
use risp_udp::proto::wire::{ClientMessage, ServerMessage, State, MAX_DATAGRAM_LEN};
use uuid::Uuid;

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

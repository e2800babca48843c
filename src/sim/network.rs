//! The simulated network: servers, clients and reference flows, the links
//! between them, an optional shared bottleneck and session store, and one
//! virtual clock.
//!
//! Time jumps from one event (a delivery, a timer, a node's start, a
//! socket kill) to the next, so a 30-second blackhole costs nothing. Every
//! event happens in a fixed order (see [`Network::step`]) and every random
//! decision is a link's, seeded, so the same nodes give the same trace
//! ([`Network::trace_hash`]).
//!
//! Addresses: a server is reached at each of the addresses it was added
//! with (two addresses in front of one [`Server`] model two instances
//! sharing one session store exactly); a client at an address of its own,
//! which changes whenever its socket is killed, a NAT rebinds it or it
//! fails over. Datagrams to an address nobody holds any more are lost.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use uuid::Uuid;

use super::bottleneck::Bottleneck;
use super::delivery::InFlight;
use super::node::{ClientNode, Observer, ReferenceNode};
use crate::proto::client::Client;
use crate::proto::server::{Server, SessionRecord};
use crate::proto::wire::MAX_DATAGRAM_LEN;
use crate::transfer::BottleneckConfig;

/// One server address: the server behind it, and whether it is cut off.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServerAddr {
    pub(super) addr: SocketAddr,
    pub(super) server: usize,
    pub(super) cut: bool,
}

/// What [`Network::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Time moved to the next event, which happened.
    Stepped,
    /// Nothing is left to happen: every client finished.
    Idle,
    /// The next event lies past the deadline; the clock stands there.
    Deadline,
}

/// A deterministic network of [`Server`]s, [`ClientNode`]s and
/// [`ReferenceNode`]s in virtual time. See the module docs.
pub struct Network {
    pub(super) epoch: Instant,
    pub(super) now: Instant,
    pub(super) servers: Vec<Server>,
    /// Every server address, in the order added (a client's path is an
    /// index here).
    pub(super) addrs: Vec<ServerAddr>,
    pub(super) clients: Vec<ClientNode>,
    /// Current client addresses.
    pub(super) routes: HashMap<SocketAddr, usize>,
    /// Flow `clients.len() + k` at the bottleneck and in `flow` numbers.
    pub(super) refs: Vec<ReferenceNode>,
    /// The shared server-to-client bottleneck, if any.
    pub(super) bottleneck: Option<Bottleneck>,
    /// The session store every server configured with one shares: writes
    /// land at once, lookups are answered at once.
    pub(super) store: HashMap<Uuid, SessionRecord>,
    pub(super) queue: BinaryHeap<Reverse<InFlight>>,
    /// Tie-breaker of the queue: order of scheduling.
    pub(super) order: u64,
    pub(super) next_port: u16,
    pub(super) trace: u64,
    /// A client's datagram buffer.
    pub(super) buf: Vec<u8>,
    /// A server's batch buffer.
    pub(super) server_buf: Vec<u8>,
}

impl Network {
    /// An empty network whose clock starts at `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            now: epoch,
            servers: Vec::new(),
            addrs: Vec::new(),
            clients: Vec::new(),
            routes: HashMap::new(),
            refs: Vec::new(),
            bottleneck: None,
            store: HashMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
            next_port: 1024,
            trace: 0xcbf2_9ce4_8422_2325,
            buf: vec![0; MAX_DATAGRAM_LEN],
            server_buf: Vec::new(),
        }
    }

    /// Adds `server`, reached at each of `addrs`; returns its index.
    pub fn add_server(&mut self, server: Server, addrs: &[SocketAddr]) -> usize {
        let index = self.servers.len();
        self.servers.push(server);
        for &addr in addrs {
            self.addrs.push(ServerAddr {
                addr,
                server: index,
                cut: false,
            });
        }
        index
    }

    /// Adds a client; returns its index. Without an address of its own
    /// ([`ClientNode::at`]) it gets a fresh one. Add the servers it knows
    /// first: what it sends to an address no server was added at is lost.
    pub fn add_client(&mut self, mut node: ClientNode) -> usize {
        let index = self.clients.len();
        let requested = node.addr;
        node.paths = node
            .servers
            .iter()
            .map(|s| self.addrs.iter().position(|a| a.addr == *s))
            .collect();
        self.clients.push(node);
        match requested {
            Some(a) => {
                self.routes.insert(a, index);
            }
            None => {
                let a = self.fresh_addr(index);
                self.clients[index].addr = Some(a);
            }
        }
        index
    }

    /// Adds a reference flow; returns its index among the reference flows
    /// (its flow number is the number of clients plus that).
    pub fn add_reference(&mut self, node: ReferenceNode) -> usize {
        self.refs.push(node);
        self.refs.len() - 1
    }

    /// Puts a bottleneck in front of every client: every server-to-client
    /// datagram crosses it before the client's own link. Add it after the
    /// flows: it counts the ones there are.
    pub fn set_bottleneck(&mut self, config: BottleneckConfig) {
        let flows = self.clients.len() + self.refs.len();
        self.bottleneck = Some(Bottleneck::new(config, flows, self.epoch));
    }

    /// When the network started.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock forward to `t` (never back); what fell due in
    /// between happens at the next [`step`](Self::step).
    pub fn advance_to(&mut self, t: Instant) {
        self.now = self.now.max(t);
    }

    /// Server `i`.
    ///
    /// # Panics
    /// If there is no server `i`.
    pub fn server(&self, i: usize) -> &Server {
        &self.servers[i]
    }

    /// Server `i`, to feed or replace (a restart without its state).
    ///
    /// # Panics
    /// If there is no server `i`.
    pub fn server_mut(&mut self, i: usize) -> &mut Server {
        &mut self.servers[i]
    }

    /// Every server, in the order added.
    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    /// Client `i`.
    ///
    /// # Panics
    /// If there is no client `i`.
    pub fn client(&self, i: usize) -> &ClientNode {
        &self.clients[i]
    }

    /// Client `i`, to change its schedule or its middlebox.
    ///
    /// # Panics
    /// If there is no client `i`.
    pub fn client_node_mut(&mut self, i: usize) -> &mut ClientNode {
        &mut self.clients[i]
    }

    /// Client `i`'s core, to drive by hand.
    ///
    /// # Panics
    /// If there is no client `i`.
    pub fn client_mut(&mut self, i: usize) -> &mut Client {
        &mut self.clients[i].client
    }

    /// Every client, in the order added.
    pub fn clients(&self) -> &[ClientNode] {
        &self.clients
    }

    /// Every reference flow, in the order added.
    pub fn references(&self) -> &[ReferenceNode] {
        &self.refs
    }

    /// The bottleneck, if there is one.
    pub fn bottleneck(&self) -> Option<&Bottleneck> {
        self.bottleneck.as_ref()
    }

    /// The shared store's record of `uuid`.
    pub fn stored(&self, uuid: &Uuid) -> Option<&SessionRecord> {
        self.store.get(uuid)
    }

    /// A hash of every delivery so far (time, destination, bytes): equal
    /// hashes mean equal traces.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    /// Client `i` moves to `addr` (the client does not know; the servers
    /// see its datagrams come from there).
    ///
    /// # Panics
    /// If there is no client `i`.
    pub fn move_client(&mut self, i: usize, addr: SocketAddr) {
        if let Some(old) = self.clients[i].addr.replace(addr) {
            self.routes.remove(&old);
        }
        self.routes.insert(addr, i);
    }

    /// Server `s` takes in `datagram` from `from` now, as if it had come
    /// over the network (a spoofed or hand-made datagram).
    ///
    /// # Panics
    /// If there is no server `s`.
    pub fn inject(&mut self, s: usize, from: SocketAddr, datagram: &[u8], obs: &mut impl Observer) {
        self.servers[s].handle(self.now, from, datagram);
        obs.server_touched(self.now, &self.servers[s]);
        self.drain_server(s, obs);
    }

    /// Cuts server address `addr` off from now on: everything to it and
    /// from it is dropped.
    pub fn cut(&mut self, addr: SocketAddr) {
        for a in self.addrs.iter_mut().filter(|a| a.addr == addr) {
            a.cut = true;
        }
    }

    /// Runs until every client finished or the next event lies past
    /// `deadline`.
    pub fn run(&mut self, deadline: Instant, obs: &mut impl Observer) {
        loop {
            self.flush(obs);
            if self.advance(deadline, obs) != Advance::Stepped {
                return;
            }
        }
    }

    /// Jumps to the next event and makes it (and whatever else is due
    /// then) happen, unless nothing is left or it lies past `deadline`.
    /// Call [`flush`](Self::flush) before, so that what the nodes have to
    /// send is on its way.
    pub fn advance(&mut self, deadline: Instant, obs: &mut impl Observer) -> Advance {
        let Some(next) = self.next_wakeup() else {
            return Advance::Idle;
        };
        if next > deadline {
            self.now = deadline;
            return Advance::Deadline;
        }
        self.now = self.now.max(next);
        self.step(obs);
        Advance::Stepped
    }

    /// When the next event happens; `None` once every client finished.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut any_active = false;
        for c in self.clients.iter().filter(|c| c.is_active()) {
            any_active = true;
            let t = if self.now < c.started {
                Some(c.started)
            } else {
                min_opt(c.client.poll_timeout(), c.next_kill)
            };
            next = min_opt(next, t);
        }
        if !any_active {
            return None;
        }
        for r in &self.refs {
            let t = if self.now < r.started {
                Some(r.started)
            } else {
                r.sender.poll_timeout()
            };
            next = min_opt(next, t);
        }
        next = min_opt(next, self.queue.peek().map(|Reverse(f)| f.at));
        self.servers
            .iter()
            .map(Server::poll_timeout)
            .fold(next, min_opt)
    }

    /// Whether something is due now: a delivery or a timer.
    pub fn is_due(&self) -> bool {
        let now = self.now;
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        due(self.queue.peek().map(|Reverse(f)| f.at))
            || self.servers.iter().any(|s| due(s.poll_timeout()))
            || self
                .clients
                .iter()
                .any(|c| due(c.client.poll_timeout()) || due(c.next_kill))
            || self
                .refs
                .iter()
                .any(|r| now >= r.started && due(r.sender.poll_timeout()))
    }

    /// Makes everything due now happen, in this order: the deliveries
    /// (earliest first, then in order of sending), the servers' timers,
    /// then each client in turn (its socket kill, its NAT rebinding, its
    /// timers), then the reference flows' timers.
    pub fn step(&mut self, obs: &mut impl Observer) {
        let now = self.now;
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Some(Reverse(f)) = self.queue.pop() else {
                break;
            };
            self.deliver(f, obs);
        }
        for s in 0..self.servers.len() {
            if self.servers[s].poll_timeout().is_some_and(|t| t <= now) {
                self.servers[s].handle_timeout(now);
                obs.server_touched(now, &self.servers[s]);
            }
            self.drain_server(s, obs);
        }
        for i in 0..self.clients.len() {
            self.step_client(i, obs);
        }
        for r in &mut self.refs {
            if now >= r.started && r.sender.poll_timeout().is_some_and(|t| t <= now) {
                r.sender.handle_timeout(now);
            }
        }
    }

    fn step_client(&mut self, i: usize, obs: &mut impl Observer) {
        let now = self.now;
        let c = &mut self.clients[i];
        if c.next_kill.is_some_and(|t| t <= now) && !c.client.is_finished() {
            // As the driver after a killswitch: a new socket, resume.
            c.schedule_next_kill(now, self.epoch);
            self.relocate(i);
            let c = &mut self.clients[i];
            c.counters.reconnects += 1;
            c.client.reconnect(now);
        }
        let elapsed = now.saturating_duration_since(self.epoch);
        let c = &mut self.clients[i];
        if c.link.take_rebinds(elapsed) > 0 && !c.client.is_finished() {
            // A NAT rebinding: the client does not know, the servers see
            // datagrams from a new port.
            self.relocate(i);
            self.clients[i].counters.rebinds += 1;
        }
        let c = &mut self.clients[i];
        if c.client.poll_timeout().is_some_and(|t| t <= now) {
            c.client.handle_timeout(now);
        }
        self.drain_client(i, obs);
    }

    /// Client `i` moves to a fresh address.
    pub(super) fn relocate(&mut self, i: usize) {
        if let Some(old) = self.clients[i].addr {
            self.routes.remove(&old);
        }
        let a = self.fresh_addr(i);
        self.clients[i].addr = Some(a);
    }

    fn fresh_addr(&mut self, client: usize) -> SocketAddr {
        self.next_port = self.next_port.checked_add(1).unwrap_or(1025);
        let ip = Ipv4Addr::new(10, 1, (client >> 8) as u8, client as u8);
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, self.next_port));
        self.routes.insert(addr, client);
        addr
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

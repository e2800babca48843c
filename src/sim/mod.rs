//! A deterministic simulator: one [`Server`] and many [`Client`]s over
//! simulated links, in virtual time, in one thread.
//!
//! Each client has its own link to the server, impaired by a
//! [`risp_netem::Impairment`] seeded from the simulation seed and the
//! client's number, so the same seed always gives the same trace. Time jumps
//! from one event (a delivery or a timer) to the next, so a 30-second
//! blackhole costs nothing to simulate.
//!
//! Besides the client's own checksum check, the simulator checks every value
//! against the server's sequence as it is delivered: in order, exactly once,
//! the right value.
//!
//! A run may add loss-based reference flows ([`mod@reference`]) that cross the
//! same bottleneck, and give each flow extra delay of its own
//! ([`RunConfig::flow_delays`]), to measure how the clients share a link
//! with each other and with other kinds of flow.

pub mod bottleneck;
pub mod reference;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use risp_netem::{Direction, Impairment};
use uuid::Uuid;

use crate::proto::client::{Client, ClientError, ClientEvent};
use crate::proto::server::{Server, ServerEvent};
use crate::proto::wire::MAX_DATAGRAM_LEN;
use crate::transfer::{RunConfig, RunReport, TransferRecorder};
use bottleneck::Bottleneck;
use reference::{Packet, ReferenceStats, RenoReceiver, RenoSender};

const SERVER_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 8081));

/// Where reference flows' receivers live (never routed to a client).
const REFERENCE_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 1), 9000));

/// Where a simulated datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Server,
    Client(usize),
    /// Reference flow `k`'s sender (its acks go there).
    RefSender(usize),
    /// Reference flow `k`'s receiver (its data goes there).
    RefReceiver(usize),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    /// Tie-breaker: order of scheduling.
    order: u64,
    to: Node,
    from: SocketAddr,
    /// The address the datagram was sent to (a client may have moved).
    dest: SocketAddr,
    bytes: Vec<u8>,
}

struct SimClient {
    client: Client,
    addr: SocketAddr,
    link: Impairment,
    started: Instant,
    next_kill: Option<Instant>,
    recorder: TransferRecorder,
}

/// One reference flow: its sender on the server's side of the bottleneck,
/// its receiver at the end of its own link.
struct SimReference {
    sender: RenoSender,
    receiver: RenoReceiver,
    link: Impairment,
    started: Instant,
}

/// Runs one simulation to completion (every client finished) or to the time
/// limit, and reports.
pub fn run(config: &RunConfig) -> RunReport {
    Simulation::new(config).run().0
}

/// As [`run`], and what each reference flow
/// ([`RunConfig::reference_flows`]) did.
pub fn run_with_reference_stats(config: &RunConfig) -> (RunReport, Vec<ReferenceStats>) {
    Simulation::new(config).run()
}

struct Simulation<'a> {
    config: &'a RunConfig,
    epoch: Instant,
    now: Instant,
    server: Server,
    clients: Vec<SimClient>,
    /// Current client addresses; datagrams to others are lost.
    routes: HashMap<SocketAddr, usize>,
    uuids: HashMap<Uuid, usize>,
    queue: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    next_port: u16,
    trace: u64,
    buf: Vec<u8>,
    /// The server's batch buffer.
    server_buf: Vec<u8>,
    /// The shared server-to-client bottleneck, if the run has one.
    bottleneck: Option<Bottleneck>,
    /// The reference flows; flow `clients + k` at the bottleneck.
    refs: Vec<SimReference>,
}

impl<'a> Simulation<'a> {
    fn new(config: &'a RunConfig) -> Self {
        let epoch = crate::clock::now();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut server_config = config.server.clone();
        server_config.seed = Some(rng.gen());
        let mut sim = Self {
            config,
            epoch,
            now: epoch,
            server: Server::new(server_config),
            clients: Vec::with_capacity(config.clients),
            routes: HashMap::new(),
            uuids: HashMap::new(),
            queue: BinaryHeap::new(),
            order: 0,
            next_port: 1024,
            trace: 0xcbf2_9ce4_8422_2325,
            buf: vec![0; MAX_DATAGRAM_LEN],
            server_buf: Vec::new(),
            bottleneck: config
                .bottleneck
                .map(|b| Bottleneck::new(b, config.clients + config.reference_flows, epoch)),
            refs: Vec::with_capacity(config.reference_flows),
        };
        for i in 0..config.clients {
            let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
            let mut cc = config.client.clone();
            cc.uuid = uuid;
            cc.len = config.len;
            let started = epoch + config.stagger * i as u32;
            let addr = sim.fresh_addr(i);
            sim.uuids.insert(uuid, i);
            sim.clients.push(SimClient {
                client: Client::new(cc, started),
                addr,
                link: Impairment::new(config.impairment.clone(), config.link_seed(i)),
                started,
                next_kill: config.killswitch.map(|k| started + k),
                recorder: TransferRecorder::new(uuid, config.len, started)
                    .keep_histograms(config.record_latencies)
                    .check_values(),
            });
        }
        for k in 0..config.reference_flows {
            let started = epoch + config.reference_start;
            sim.refs.push(SimReference {
                sender: RenoSender::new(config.reference_packets, started),
                receiver: RenoReceiver::new(),
                link: Impairment::new(
                    config.impairment.clone(),
                    config.link_seed(config.clients + k),
                ),
                started,
            });
        }
        sim
    }

    fn fresh_addr(&mut self, client: usize) -> SocketAddr {
        self.next_port = self.next_port.checked_add(1).unwrap_or(1025);
        let ip = Ipv4Addr::new(10, 1, (client >> 8) as u8, client as u8);
        let addr = SocketAddr::V4(SocketAddrV4::new(ip, self.next_port));
        self.routes.insert(addr, client);
        addr
    }

    fn run(mut self) -> (RunReport, Vec<ReferenceStats>) {
        let deadline = self.epoch + self.config.time_limit;
        loop {
            self.flush();
            let Some(next) = self.next_wakeup() else {
                break;
            };
            if next > deadline {
                self.now = deadline;
                break;
            }
            self.now = self.now.max(next);
            self.step();
        }
        self.finish()
    }

    fn next_wakeup(&self) -> Option<Instant> {
        let active = self
            .clients
            .iter()
            .filter(|c| !c.client.is_finished() || !c.recorder.is_finished());
        let mut next: Option<Instant> = None;
        let mut any_active = false;
        for c in active {
            any_active = true;
            let t = if self.now < c.started {
                Some(c.started)
            } else {
                [c.client.poll_timeout(), c.next_kill]
                    .into_iter()
                    .flatten()
                    .min()
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
        min_opt(next, self.server.poll_timeout())
    }

    fn step(&mut self) {
        let now = self.now;
        while self.queue.peek().is_some_and(|Reverse(f)| f.at <= now) {
            let Reverse(f) = self.queue.pop().expect("peeked");
            self.deliver(f);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        self.drain_server_events();
        for i in 0..self.clients.len() {
            let c = &mut self.clients[i];
            if c.next_kill.is_some_and(|t| t <= now) && !c.client.is_finished() {
                c.next_kill = self.config.killswitch.map(|k| now + k);
                self.routes.remove(&self.clients[i].addr);
                let addr = self.fresh_addr(i);
                let c = &mut self.clients[i];
                c.addr = addr;
                c.recorder.report_mut().reconnects += 1;
                c.client.reconnect(now);
            }
            let c = &mut self.clients[i];
            let elapsed = now.saturating_duration_since(self.epoch);
            if c.link.take_rebinds(elapsed) > 0 && !c.client.is_finished() {
                self.routes.remove(&self.clients[i].addr);
                let addr = self.fresh_addr(i);
                self.clients[i].addr = addr;
                self.clients[i].recorder.report_mut().rebinds += 1;
            }
            let c = &mut self.clients[i];
            if c.client.poll_timeout().is_some_and(|t| t <= now) {
                c.client.handle_timeout(now);
            }
            self.drain_client_events(i);
        }
        for r in &mut self.refs {
            if now >= r.started && r.sender.poll_timeout().is_some_and(|t| t <= now) {
                r.sender.handle_timeout(now);
            }
        }
    }

    fn deliver(&mut self, f: InFlight) {
        self.trace_event(&f);
        match f.to {
            Node::Server => {
                self.server.handle(self.now, f.from, &f.bytes);
                self.drain_server_events();
            }
            Node::Client(i) => {
                // Only if the client still lives at that address.
                if self.routes.get(&f.dest) != Some(&i) {
                    self.clients[i].recorder.report_mut().lost_to_old_address += 1;
                    return;
                }
                let now = self.now;
                self.clients[i].client.handle(now, &f.bytes);
                self.drain_client_events(i);
            }
            Node::RefSender(k) => {
                if let Some(ack) = Packet::decode(&f.bytes) {
                    self.refs[k].sender.on_ack(self.now, ack);
                }
            }
            Node::RefReceiver(k) => {
                if let Some(p) = Packet::decode(&f.bytes) {
                    let ack = self.refs[k].receiver.on_packet(p);
                    let elapsed = self.now.saturating_duration_since(self.epoch);
                    let flow = self.clients.len() + k;
                    let bytes = ack.encode().to_vec();
                    self.send(flow, Direction::ToServer, elapsed, f.dest, f.from, bytes);
                }
            }
        }
    }

    fn flush(&mut self) {
        let now = self.now;
        let elapsed = now.saturating_duration_since(self.epoch);
        for i in 0..self.clients.len() {
            if now < self.clients[i].started {
                continue;
            }
            while let Some(n) = self.clients[i].client.poll_transmit(now, &mut self.buf) {
                let bytes = self.buf[..n].to_vec();
                let from = self.clients[i].addr;
                self.clients[i].recorder.report_mut().datagrams_to_server += 1;
                self.send(i, Direction::ToServer, elapsed, from, SERVER_ADDR, bytes);
            }
        }
        while let Some(t) = self
            .server
            .poll_transmit(now, usize::MAX, &mut self.server_buf)
        {
            let Some(&i) = self.routes.get(&t.destination) else {
                continue;
            };
            let batch = self.server_buf[..t.size].to_vec();
            for chunk in batch.chunks(t.segment_size) {
                let bytes = chunk.to_vec();
                let r = self.clients[i].recorder.report_mut();
                r.datagrams_to_client += 1;
                if bytes.len() == crate::proto::wire::DATA_LEN {
                    r.data_sent += 1;
                }
                self.send(
                    i,
                    Direction::ToClient,
                    elapsed,
                    SERVER_ADDR,
                    t.destination,
                    bytes,
                );
            }
        }
        for k in 0..self.refs.len() {
            if now < self.refs[k].started {
                continue;
            }
            while let Some(p) = self.refs[k].sender.poll_transmit(now) {
                let flow = self.clients.len() + k;
                let bytes = p.encode().to_vec();
                self.send(
                    flow,
                    Direction::ToClient,
                    elapsed,
                    SERVER_ADDR,
                    REFERENCE_ADDR,
                    bytes,
                );
            }
        }
    }

    /// Sends `bytes` over flow `flow`'s link (a client's, or past the
    /// clients a reference flow's), through the bottleneck on the way to
    /// the client side.
    fn send(
        &mut self,
        flow: usize,
        dir: Direction,
        elapsed: Duration,
        from: SocketAddr,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) {
        // The shared bottleneck comes first, on the server's side: a datagram
        // it drops never reaches the client's own link.
        let queued = match (&mut self.bottleneck, dir) {
            (Some(b), Direction::ToClient) => match b.admit(self.now, flow) {
                Some(d) => d,
                None => return,
            },
            _ => Duration::ZERO,
        };
        let clients = self.clients.len();
        let reference = flow >= clients;
        let (link, to) = match (reference, dir) {
            (false, Direction::ToServer) => (&mut self.clients[flow].link, Node::Server),
            (false, Direction::ToClient) => (&mut self.clients[flow].link, Node::Client(flow)),
            (true, Direction::ToServer) => (
                &mut self.refs[flow - clients].link,
                Node::RefSender(flow - clients),
            ),
            (true, Direction::ToClient) => (
                &mut self.refs[flow - clients].link,
                Node::RefReceiver(flow - clients),
            ),
        };
        let verdict = link.decide(dir, elapsed, bytes.len());
        let extra = self.config.flow_delay(flow);
        for d in verdict.deliveries() {
            let mut b = bytes.clone();
            if let Some(bit) = d.corrupt_bit {
                if reference {
                    // A reference packet's checksum would catch it.
                    continue;
                }
                risp_netem::flip_bit(&mut b, bit);
            }
            self.order += 1;
            self.queue.push(Reverse(InFlight {
                at: self.now + queued + d.delay + extra,
                order: self.order,
                to,
                from,
                dest,
                bytes: b,
            }));
        }
    }

    fn drain_server_events(&mut self) {
        while let Some(ev) = self.server.poll_event() {
            match ev {
                ServerEvent::Opened { uuid, .. } => {
                    if let Some(&i) = self.uuids.get(&uuid) {
                        let seq = self.server.sequence(&uuid);
                        self.clients[i].recorder.set_sequence(seq);
                    }
                }
                ServerEvent::Expired { uuid, .. } => {
                    if let Some(&i) = self.uuids.get(&uuid) {
                        self.clients[i].recorder.report_mut().server_expired = true;
                    }
                }
                _ => {}
            }
        }
    }

    fn drain_client_events(&mut self, i: usize) {
        let now = self.now;
        let c = &mut self.clients[i];
        while let Some(ev) = c.client.poll_event() {
            c.recorder.record(now, &ev);
            if let ClientEvent::Restarted { uuid } = ev {
                self.uuids.insert(uuid, i);
            }
        }
    }

    fn trace_event(&mut self, f: &InFlight) {
        let t = f.at.saturating_duration_since(self.epoch).as_nanos() as u64;
        let to = match f.to {
            Node::Server => u64::MAX,
            Node::Client(i) => i as u64,
            Node::RefSender(k) => (1 << 40) + k as u64,
            Node::RefReceiver(k) => (1 << 41) + k as u64,
        };
        for word in [t, to, f.bytes.len() as u64] {
            self.trace = fnv(self.trace, &word.to_le_bytes());
        }
        self.trace = fnv(self.trace, &f.bytes);
    }

    fn finish(self) -> (RunReport, Vec<ReferenceStats>) {
        let elapsed = self.now.saturating_duration_since(self.epoch);
        let mut transfers = Vec::with_capacity(self.clients.len());
        for c in self.clients {
            let mut r = c.recorder.finish(self.now, &c.client);
            if r.finished_at.is_none() && r.error.is_none() {
                r.error = Some(ClientError::Timeout(elapsed));
            }
            r.link = c.link.stats();
            transfers.push(r);
        }
        let refs = self
            .refs
            .iter()
            .map(|r| ReferenceStats {
                delivered: r.receiver.delivered(),
                ..r.sender.stats().clone()
            })
            .collect();
        let report = RunReport {
            seed: self.config.seed,
            elapsed,
            transfers,
            server: self.server.stats().clone(),
            sessions_left: self.server.session_count(),
            trace_hash: self.trace,
            bottleneck: self.bottleneck.map(|b| b.stats().clone()),
        };
        (report, refs)
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

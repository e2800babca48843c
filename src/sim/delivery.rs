//! Moving datagrams: what the nodes send goes through the bottleneck (on
//! the way to a client) and the flow's own link into the queue, and comes
//! out of it at its arrival time, to its node.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use risp_netem::Direction;

use super::network::Network;
use super::node::{LinkDatagram, LinkFate, Observer};
use super::reference::Packet;
use crate::proto::client::ClientEvent;
use crate::proto::server::{LookupOutcome, StoreOp};
use crate::proto::wire::is_data;

/// Where a simulated datagram goes. Indices are `u32` (no network holds
/// more nodes) to keep [`InFlight`], which the queue moves about, small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Hop {
    /// Server `s` (at the datagram's destination address).
    Server(u32),
    /// Client `i` (if it still lives at the destination address).
    Client(u32),
    /// Reference flow `k`'s sender (its acks go there).
    RefSender(u32),
    /// Reference flow `k`'s receiver (its data goes there).
    RefReceiver(u32),
}

/// A datagram in the queue.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct InFlight {
    pub(super) at: Instant,
    /// Tie-breaker: order of scheduling.
    pub(super) order: u64,
    pub(super) to: Hop,
    /// The server address it goes to or comes from (an index of the
    /// network's), if any: it is dropped if that was cut off.
    pub(super) path: Option<u32>,
    pub(super) from: SocketAddr,
    /// The address it was sent to (a client may have moved since).
    pub(super) dest: SocketAddr,
    pub(super) bytes: Vec<u8>,
}

impl InFlight {
    /// A datagram sent at `now` (its arrival time and order are the
    /// queue's to fill in).
    fn new(
        now: Instant,
        to: Hop,
        path: Option<u32>,
        from: SocketAddr,
        dest: SocketAddr,
        bytes: Vec<u8>,
    ) -> Self {
        Self {
            at: now,
            order: 0,
            to,
            path,
            from,
            dest,
            bytes,
        }
    }
}

/// Where reference flows' receivers live (never routed to a client).
const REFERENCE_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 1), 9000));

/// Where reference flows' senders live, on the servers' side of the
/// bottleneck (never a server's address).
const REFERENCE_SENDER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 9000));

impl Network {
    /// Puts on their way what every node has to send now: the clients'
    /// datagrams, then each server's (after its store operations), then
    /// the reference flows'. Returns whether anything was sent.
    pub fn flush(&mut self, obs: &mut impl Observer) -> bool {
        let mut sent = self.flush_clients(obs);
        for s in 0..self.servers.len() {
            self.serve_store(s, obs);
            sent |= self.flush_server(s, obs);
        }
        self.flush_references(obs) || sent
    }

    fn flush_clients(&mut self, obs: &mut impl Observer) -> bool {
        let now = self.now;
        let mut sent = false;
        for i in 0..self.clients.len() {
            if now < self.clients[i].started {
                continue;
            }
            while let Some(n) = self.clients[i].client.poll_transmit(now, &mut self.buf) {
                sent = true;
                let bytes = self.buf[..n].to_vec();
                let c = &mut self.clients[i];
                c.counters.datagrams_to_server += 1;
                let path = c.client.server_index() as usize;
                if let Some(count) = c.counters.sent_to.get_mut(path) {
                    *count += 1;
                }
                obs.client_sent(i, &bytes);
                let (Some(from), Some(path)) = (c.addr, c.target()) else {
                    continue;
                };
                let a = self.addrs[path];
                let f = InFlight::new(
                    now,
                    Hop::Server(ix(a.server)),
                    Some(ix(path)),
                    from,
                    a.addr,
                    bytes,
                );
                self.send(i, Direction::ToServer, f, obs);
            }
            self.drain_client_trace(i, obs);
        }
        sent
    }

    /// Carries out server `s`'s store operations against the shared store,
    /// answering lookups at once.
    fn serve_store(&mut self, s: usize, obs: &mut impl Observer) {
        let now = self.now;
        let mut any = false;
        while let Some(op) = self.servers[s].poll_store_op() {
            any = true;
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
                    self.servers[s].complete_lookup(now, l, outcome);
                    obs.server_touched(now, &self.servers[s]);
                }
            }
        }
        if any {
            self.drain_server(s, obs);
        }
    }

    /// Server `s`'s datagrams. A reply to a client leaves from the address
    /// the client talks to, if that leads to this server; one to an
    /// address no client holds is lost.
    fn flush_server(&mut self, s: usize, obs: &mut impl Observer) -> bool {
        let now = self.now;
        let mut sent = false;
        while let Some(t) = self.servers[s].poll_transmit(now, usize::MAX, &mut self.server_buf) {
            sent = true;
            let batch = self.server_buf[..t.size].to_vec();
            let Some(&i) = self.routes.get(&t.destination) else {
                for seg in batch.chunks(t.segment_size) {
                    obs.unrouted(t.destination, seg);
                }
                continue;
            };
            let Some(path) = self.clients[i].target() else {
                continue;
            };
            let via = self.addrs[path];
            if via.server != s {
                continue;
            }
            for chunk in batch.chunks(t.segment_size) {
                let c = &mut self.clients[i];
                c.counters.datagrams_to_client += 1;
                if is_data(chunk) {
                    c.counters.data_sent += 1;
                }
                let mut bytes = chunk.to_vec();
                if let Some(f) = &mut c.tamper {
                    f(c.client.uuid(), &mut bytes);
                }
                let f = InFlight::new(
                    now,
                    Hop::Client(ix(i)),
                    Some(ix(path)),
                    via.addr,
                    t.destination,
                    bytes,
                );
                self.send(i, Direction::ToClient, f, obs);
            }
        }
        self.drain_server_trace(s, obs);
        sent
    }

    fn flush_references(&mut self, obs: &mut impl Observer) -> bool {
        let now = self.now;
        let mut sent = false;
        for k in 0..self.refs.len() {
            if now < self.refs[k].started {
                continue;
            }
            while let Some(p) = self.refs[k].sender.poll_transmit(now) {
                sent = true;
                let flow = self.clients.len() + k;
                let bytes = p.encode().to_vec();
                let (from, to) = (REFERENCE_SENDER_ADDR, Hop::RefReceiver(ix(k)));
                let f = InFlight::new(now, to, None, from, REFERENCE_ADDR, bytes);
                self.send(flow, Direction::ToClient, f, obs);
            }
        }
        sent
    }

    /// Sends `f` over flow `flow`'s link (a client's, or past the clients
    /// a reference flow's), through the bottleneck on the way to the
    /// client side. The observer hears each copy's fate as it is decided.
    fn send(&mut self, flow: usize, dir: Direction, f: InFlight, obs: &mut impl Observer) {
        let elapsed = self.now.saturating_duration_since(self.epoch);
        let seen = LinkDatagram {
            at: f.at,
            elapsed,
            flow,
            direction: dir,
            from: f.from,
            to: f.dest,
            bytes: &[],
            fate: LinkFate::Lost,
        };
        // The shared bottleneck comes first, on the servers' side: a
        // datagram it drops never reaches the client's own link.
        let queued = match (&mut self.bottleneck, dir) {
            (Some(b), Direction::ToClient) => match b.admit(self.now, flow) {
                Some(d) => d,
                None => {
                    obs.link_datagram(&LinkDatagram {
                        bytes: &f.bytes,
                        fate: LinkFate::QueueDrop,
                        ..seen
                    });
                    return;
                }
            },
            _ => Duration::ZERO,
        };
        let clients = self.clients.len();
        let reference = flow >= clients;
        let link = if reference {
            &mut self.refs[flow - clients].link
        } else {
            &mut self.clients[flow].link
        };
        let verdict = link.decide(dir, elapsed, f.bytes.len());
        let extra = link.extra_delay();
        if verdict.deliveries().is_empty() {
            obs.link_datagram(&LinkDatagram {
                bytes: &f.bytes,
                ..seen
            });
        }
        for (copy, d) in verdict.deliveries().iter().enumerate() {
            let after = queued + d.delay + extra;
            let mut bytes = f.bytes.clone();
            let fate = match d.corrupt_bit {
                Some(bit) => {
                    risp_netem::flip_bit(&mut bytes, bit);
                    LinkFate::Corrupted { after, bit }
                }
                None if copy > 0 => LinkFate::Duplicated { after },
                None => LinkFate::Delivered { after },
            };
            obs.link_datagram(&LinkDatagram {
                bytes: &bytes,
                fate,
                ..seen
            });
            if reference && d.corrupt_bit.is_some() {
                // A reference packet's checksum would catch it.
                continue;
            }
            self.order += 1;
            self.queue.push(std::cmp::Reverse(InFlight {
                at: self.now + after,
                order: self.order,
                bytes,
                ..f
            }));
        }
    }

    pub(super) fn deliver(&mut self, f: InFlight, obs: &mut impl Observer) {
        self.trace_event(&f);
        let now = self.now;
        if f.path.is_some_and(|p| self.addrs[p as usize].cut) {
            return;
        }
        match f.to {
            Hop::Server(s) => {
                let s = s as usize;
                self.servers[s].handle(now, f.from, &f.bytes);
                obs.server_touched(now, &self.servers[s]);
                self.drain_server(s, obs);
            }
            Hop::Client(i) => {
                let i = i as usize;
                // Only if the client still lives at that address.
                if self.routes.get(&f.dest) != Some(&i) {
                    self.clients[i].counters.lost_to_old_address += 1;
                    return;
                }
                self.clients[i].client.handle(now, &f.bytes);
                self.drain_client(i, obs);
            }
            Hop::RefSender(k) => {
                let k = k as usize;
                if let Some(ack) = Packet::decode(&f.bytes) {
                    self.refs[k].sender.on_ack(now, ack);
                }
            }
            Hop::RefReceiver(k) => {
                let k = k as usize;
                if let Some(p) = Packet::decode(&f.bytes) {
                    let ack = self.refs[k].receiver.on_packet(p);
                    let flow = self.clients.len() + k;
                    let bytes = ack.encode().to_vec();
                    let back =
                        InFlight::new(now, Hop::RefSender(ix(k)), None, f.dest, f.from, bytes);
                    self.send(flow, Direction::ToServer, back, obs);
                }
            }
        }
    }

    /// Hands server `s`'s events to the observer.
    pub(super) fn drain_server(&mut self, s: usize, obs: &mut impl Observer) {
        self.drain_server_trace(s, obs);
        while let Some(ev) = self.servers[s].poll_event() {
            obs.server_event(self.now, &self.servers[s], &ev);
        }
    }

    /// Hands client `i`'s events to the observer; then, if the client
    /// asked to leave its server, moves it on as the driver does: to the
    /// next server, from a new socket.
    pub(super) fn drain_client(&mut self, i: usize, obs: &mut impl Observer) {
        let now = self.now;
        self.drain_client_trace(i, obs);
        let c = &mut self.clients[i];
        while let Some(ev) = c.client.poll_event() {
            if matches!(ev, ClientEvent::Completed | ClientEvent::Failed(_)) {
                c.ended = true;
            }
            obs.client_event(now, i, &c.client, &ev);
        }
        if c.client.wants_failover().is_some() {
            c.client.failover(now);
            self.relocate(i);
        }
    }

    /// Hands server `s`'s trace records to the observer (none unless it
    /// traces).
    fn drain_server_trace(&mut self, s: usize, obs: &mut impl Observer) {
        while let Some(t) = self.servers[s].poll_trace() {
            obs.server_trace(&self.servers[s], &t);
        }
    }

    /// Hands client `i`'s trace records to the observer (none unless it
    /// traces).
    fn drain_client_trace(&mut self, i: usize, obs: &mut impl Observer) {
        while let Some(t) = self.clients[i].client.poll_trace() {
            obs.client_trace(i, &t);
        }
    }

    fn trace_event(&mut self, f: &InFlight) {
        let t = f.at.saturating_duration_since(self.epoch).as_nanos() as u64;
        let to = match f.to {
            Hop::Server(s) => u64::MAX - u64::from(s),
            Hop::Client(i) => u64::from(i),
            Hop::RefSender(k) => (1 << 40) + u64::from(k),
            Hop::RefReceiver(k) => (1 << 41) + u64::from(k),
        };
        for word in [t, to, f.bytes.len() as u64] {
            self.trace = fnv(self.trace, &word.to_le_bytes());
        }
        self.trace = fnv(self.trace, &f.bytes);
    }
}

/// A node's index as the queue keeps it (see [`Hop`]).
fn ix(i: usize) -> u32 {
    i as u32
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

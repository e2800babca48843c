//! A tokio UDP socket that runs every datagram through an [`Impairment`].
//!
//! This is for tests and demos over real sockets, where the kernel's netem
//! is unavailable or needs root. It impairs at the endpoint: outbound
//! datagrams are judged in [`LossySocket::send_to`], inbound ones in
//! [`LossySocket::recv_from`], each with the direction that matches the
//! socket's [`Side`]. Usually only one end of a connection wraps its socket,
//! and that one socket then impairs both directions.
//!
//! Delays never block the caller:
//!
//! * outbound delayed copies go into a bounded due-time queue drained by a
//!   background task, which sends each one when it falls due;
//! * inbound delayed copies are held in a second bounded queue, which
//!   `recv_from` serves before (and while) waiting on the socket.
//!
//! Copies with zero delay take the direct path, and
//! [`LossySocket::passthrough`] skips the model entirely. Model time is the
//! tokio clock since the link was created, so `tokio::time::pause()` makes
//! delays virtual. Blackholes apply here too; scheduled rebinds
//! ([`Impairment::take_rebinds`]) do not, because changing the client's
//! address means re-binding the socket, which is the driver's job.
//!
//! One link may outlive its sockets: a driver that opens a new socket (a
//! killswitch, a rebind) puts it on the same [`ImpairedLink`] with
//! [`LossySocket::on_link`], so the model's random stream, burst state and
//! blackhole schedule carry on as they do in the simulator, which keeps one
//! model per client link. Delayed copies still queued in the old socket go
//! with it, as datagrams sent to an address nobody holds any more.
//!
//! Locks are held only for short, synchronous sections, never across an
//! `.await`.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::capture::{Capture, ShimFate, Tap, Way, PASSED};
use crate::config::ImpairmentConfig;
use crate::model::{flip_bit, Direction, Impairment, ImpairmentStats, Verdict};
use crate::queue::{queue_capacity_for, DueQueue};

/// Which end of the connection a [`LossySocket`] belongs to; this decides
/// which [`Direction`] applies to what it sends and receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Sends [`Direction::ToServer`], receives [`Direction::ToClient`].
    Client,
    /// Sends [`Direction::ToClient`], receives [`Direction::ToServer`].
    Server,
}

impl Side {
    /// The direction of datagrams this side sends.
    pub fn outbound(self) -> Direction {
        match self {
            Self::Client => Direction::ToServer,
            Self::Server => Direction::ToClient,
        }
    }

    /// The direction of datagrams this side receives.
    pub fn inbound(self) -> Direction {
        self.outbound().reverse()
    }
}

/// A UDP socket with seeded impairments; share it with `Arc<LossySocket>`.
#[derive(Debug)]
pub struct LossySocket {
    /// The real socket, shared with the background sender task.
    socket: Arc<UdpSocket>,
    /// `None` for [`LossySocket::passthrough`].
    impaired: Option<Impaired>,
    /// Sees every datagram, if attached ([`LossySocket::with_capture`]).
    tap: Option<Tap>,
}

/// What to send at once of one outbound datagram (see
/// [`LossySocket::admit_outbound`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendNow {
    /// Copies to send now: 0 (dropped or delayed), 1, or 2 (duplicated).
    pub copies: usize,
    /// A bit to flip in the first copy (corruption).
    pub corrupt_bit: Option<usize>,
}

/// A datagram copy waiting in a queue, with its peer address.
#[derive(Debug)]
struct Datagram {
    /// The bytes, already corrupted if the model said so.
    data: Vec<u8>,
    /// Destination (outbound) or source (inbound).
    peer: SocketAddr,
}

/// The outbound queue, shared between `send_to` and the sender task.
#[derive(Debug)]
struct Outbound {
    /// Delayed copies waiting to be sent.
    queue: Mutex<DueQueue<Datagram>>,
    /// Wakes the sender task when an item is queued (a stored permit, so a
    /// wake-up sent while the task is busy is not lost).
    wake: Notify,
}

/// One link's impairment model and its time origin, shared by every
/// [`LossySocket`] put on it (clones share the same model).
#[derive(Debug, Clone)]
pub struct ImpairedLink {
    /// Time zero of the model (blackhole offsets are measured from it).
    start: Instant,
    /// The model; locked briefly for each decision.
    model: Arc<Mutex<Impairment>>,
}

impl ImpairedLink {
    /// A link impaired according to `config` and `seed`, starting now (on
    /// the tokio clock). Fails with `InvalidInput` for a config that fails
    /// [`ImpairmentConfig::validate`].
    pub fn new(config: ImpairmentConfig, seed: u64) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self {
            start: Instant::now(),
            model: Arc::new(Mutex::new(Impairment::new(config, seed))),
        })
    }

    /// The model's counters, over every socket the link has had.
    pub fn stats(&self) -> ImpairmentStats {
        lock(&self.model).stats()
    }
}

/// Everything the impaired path needs beyond the socket.
#[derive(Debug)]
struct Impaired {
    /// Which directions apply to sending and receiving.
    side: Side,
    /// The model and its time origin, possibly shared with earlier sockets.
    link: ImpairedLink,
    /// Delayed outbound copies, drained by `sender`.
    outbound: Arc<Outbound>,
    /// Delayed inbound copies, drained by `recv_from`.
    inbound: Mutex<DueQueue<Datagram>>,
    /// Tells concurrent `recv_from` callers that `inbound` changed, so they
    /// recompute how long to wait.
    inbound_changed: Notify,
    /// The background sender; aborted when the socket is dropped (queued
    /// datagrams are discarded, as on closing a real socket).
    sender: JoinHandle<()>,
}

impl Drop for Impaired {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

impl Impaired {
    /// Asks the model about one datagram.
    fn decide(&self, dir: Direction, now: Instant, len: usize) -> Verdict {
        let elapsed = now.saturating_duration_since(self.link.start);
        lock(&self.link.model).decide(dir, elapsed, len)
    }

    /// Tells the model a verdict was abandoned because a queue was full.
    fn record_overflow(&self, dir: Direction, verdict: &Verdict) {
        lock(&self.link.model).record_overflow(dir, verdict);
    }
}

impl LossySocket {
    /// Wraps `socket`, impairing what it sends and receives according to
    /// `config` and `seed`. Each delay queue holds at most
    /// [`queue_capacity_for`] `config` datagrams (the delay's worth at
    /// [`QUEUE_SIZING_RATE`](crate::QUEUE_SIZING_RATE)).
    ///
    /// Spawns the background sender, so it must be called inside a tokio
    /// runtime; outside one, or with a config that fails
    /// [`ImpairmentConfig::validate`], it returns an error.
    pub fn new(
        socket: UdpSocket,
        side: Side,
        config: ImpairmentConfig,
        seed: u64,
    ) -> io::Result<Self> {
        let capacity = queue_capacity_for(&config);
        Self::with_queue_capacity(socket, side, config, seed, capacity)
    }

    /// Like [`new`](Self::new), with each delay queue bounded to `capacity`
    /// datagrams. A datagram whose delayed copies do not fit is dropped and
    /// counted in [`DirectionStats::overflowed`](crate::DirectionStats).
    pub fn with_queue_capacity(
        socket: UdpSocket,
        side: Side,
        config: ImpairmentConfig,
        seed: u64,
        capacity: usize,
    ) -> io::Result<Self> {
        let link = ImpairedLink::new(config, seed)?;
        Self::on_link_with_queue_capacity(socket, side, &link, capacity)
    }

    /// Wraps `socket` on an existing `link`: the model, its random stream
    /// and its clock carry on from the link's earlier sockets. Each delay
    /// queue holds at most [`queue_capacity_for`] the link's config. Must
    /// be called inside a tokio runtime.
    pub fn on_link(socket: UdpSocket, side: Side, link: &ImpairedLink) -> io::Result<Self> {
        let capacity = queue_capacity_for(lock(&link.model).config());
        Self::on_link_with_queue_capacity(socket, side, link, capacity)
    }

    /// Like [`on_link`](Self::on_link), with each delay queue bounded to
    /// `capacity` datagrams.
    pub fn on_link_with_queue_capacity(
        socket: UdpSocket,
        side: Side,
        link: &ImpairedLink,
        capacity: usize,
    ) -> io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let socket = Arc::new(socket);
        let outbound = Arc::new(Outbound {
            queue: Mutex::new(DueQueue::new(capacity)),
            wake: Notify::new(),
        });
        let sender = runtime.spawn(run_sender(Arc::clone(&socket), Arc::clone(&outbound)));
        Ok(Self {
            socket,
            tap: None,
            impaired: Some(Impaired {
                side,
                link: link.clone(),
                outbound,
                inbound: Mutex::new(DueQueue::new(capacity)),
                inbound_changed: Notify::new(),
                sender,
            }),
        })
    }

    /// Wraps `socket` without any impairment: no model, no task, no copies;
    /// every call goes straight to the socket. [`stats`](Self::stats) stays
    /// at zero.
    pub fn passthrough(socket: UdpSocket) -> Self {
        Self {
            socket: Arc::new(socket),
            impaired: None,
            tap: None,
        }
    }

    /// Hands every datagram this socket sends or receives, with what the
    /// shim did to it, to `capture` (see [`crate::capture`]). Fails only
    /// if the socket's address cannot be read.
    pub fn with_capture(mut self, capture: Arc<dyn Capture>) -> io::Result<Self> {
        self.tap = Some(Tap {
            sink: capture,
            local: self.socket.local_addr()?,
        });
        Ok(self)
    }

    /// True once a capture is attached.
    pub fn is_captured(&self) -> bool {
        self.tap.is_some()
    }

    /// True for a socket made by [`passthrough`](Self::passthrough).
    pub fn is_passthrough(&self) -> bool {
        self.impaired.is_none()
    }

    /// Sends `buf` to `target` through the outbound direction's impairments.
    ///
    /// Returns `buf.len()` when the datagram was dropped or queued for later,
    /// as a real network would not tell the sender either. Errors from
    /// sending a delayed copy later are not reported (UDP is best-effort).
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        if self.impaired.is_none() {
            if let Some(tap) = &self.tap {
                tap.see(Way::Sent, target, buf, PASSED);
            }
            return self.socket.send_to(buf, target).await;
        }
        let now = self.admit_outbound(buf, target);
        for copy in 0..now.copies {
            match now.corrupt_bit.filter(|_| copy == 0) {
                None => self.socket.send_to(buf, target).await?,
                Some(bit) => {
                    let copy = copy_with_flip(buf, Some(bit));
                    self.socket.send_to(&copy, target).await?
                }
            };
        }
        Ok(buf.len())
    }

    /// Runs one outbound datagram through the impairments for a caller that
    /// sends on [`get_ref`](Self::get_ref) itself (a batched sender).
    /// Delayed copies are queued for the background sender; the answer says
    /// how many copies the caller sends now (0, 1 or 2) and which bit of the
    /// first to flip. A passthrough socket always answers one clean copy.
    pub fn admit_outbound(&self, buf: &[u8], target: SocketAddr) -> SendNow {
        let Some(imp) = &self.impaired else {
            if let Some(tap) = &self.tap {
                tap.see(Way::Sent, target, buf, PASSED);
            }
            return SendNow {
                copies: 1,
                corrupt_bit: None,
            };
        };
        let dir = imp.side.outbound();
        let now = Instant::now();
        let verdict = imp.decide(dir, now, buf.len());
        let tap = self.tap.as_ref();
        let deliveries = verdict.deliveries();
        let delayed = deliveries.iter().filter(|d| !d.delay.is_zero()).count();
        if delayed > 0 {
            let mut queue = lock(&imp.outbound.queue);
            if !queue.has_room_for(delayed) {
                drop(queue);
                imp.record_overflow(dir, &verdict);
                if let Some(tap) = tap {
                    tap.see(Way::Sent, target, buf, ShimFate::Overflowed);
                }
                return SendNow::default();
            }
            for d in deliveries.iter().filter(|d| !d.delay.is_zero()) {
                let copy = Datagram {
                    data: copy_with_flip(buf, d.corrupt_bit),
                    peer: target,
                };
                // Cannot fail: room was checked under the same lock.
                let _ = queue.push(due(now, d.delay), copy);
            }
            drop(queue);
            imp.outbound.wake.notify_one();
        }
        if let Some(tap) = tap {
            tap.verdict(Way::Sent, target, buf, &verdict);
        }
        let mut immediate = deliveries.iter().filter(|d| d.delay.is_zero());
        let first = immediate.next();
        SendNow {
            copies: usize::from(first.is_some()) + immediate.count(),
            corrupt_bit: first.and_then(|d| d.corrupt_bit),
        }
    }

    /// Receives the next datagram that survives the inbound direction's
    /// impairments; dropped ones are skipped and receiving continues.
    ///
    /// Delayed copies are held and returned once due, by this or any later
    /// call. A datagram longer than `buf` is truncated (as with a plain UDP
    /// socket) and the model sees the truncated length. Cancel-safe: a
    /// datagram taken off the socket is either returned or held before the
    /// next `.await`.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let Some(imp) = &self.impaired else {
            let received = self.socket.recv_from(buf).await;
            if let (Some(tap), Ok((n, from))) = (&self.tap, &received) {
                tap.see(Way::Received, *from, &buf[..*n], PASSED);
            }
            return received;
        };
        loop {
            // Register interest before looking at the queue, so a change made
            // by a concurrent caller after the look still wakes us.
            let changed = imp.inbound_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let next_due = {
                let mut held = lock(&imp.inbound);
                if let Some(d) = held.pop_due(Instant::now()) {
                    let n = d.data.len().min(buf.len());
                    buf[..n].copy_from_slice(&d.data[..n]);
                    return Ok((n, d.peer));
                }
                held.next_due()
            };

            let (len, from) = tokio::select! {
                received = self.socket.recv_from(buf) => received?,
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => continue,
                () = &mut changed => continue,
            };
            if self.admit_inbound(&mut buf[..len], from) {
                return Ok((len, from));
            }
        }
    }

    /// Runs one inbound datagram through the impairments for a caller that
    /// receives on [`get_ref`](Self::get_ref) itself (a batched receiver).
    /// Returns true when the caller is to deliver it now (with a bit
    /// flipped in place if the model corrupted it); delayed and duplicate
    /// copies are held and handed out by [`pop_held`](Self::pop_held) (and
    /// by [`recv_from`](Self::recv_from)) once due. A passthrough socket
    /// always answers true.
    pub fn admit_inbound(&self, data: &mut [u8], from: SocketAddr) -> bool {
        self.admit_inbound_at(data, from, Instant::now())
    }

    /// [`admit_inbound`](Self::admit_inbound) for a datagram received at
    /// `now` (a batched receiver reads the clock once per batch).
    pub fn admit_inbound_at(&self, data: &mut [u8], from: SocketAddr, now: Instant) -> bool {
        let Some(imp) = &self.impaired else {
            if let Some(tap) = &self.tap {
                tap.see(Way::Received, from, data, PASSED);
            }
            return true;
        };
        let dir = imp.side.inbound();
        let verdict = imp.decide(dir, now, data.len());
        // The first zero-delay copy is delivered right away; any other copy
        // is held (due immediately if its delay is zero).
        let inline = verdict.deliveries().iter().position(|d| d.delay.is_zero());
        let to_hold = verdict.deliveries().len() - usize::from(inline.is_some());
        if to_hold > 0 {
            let mut held = lock(&imp.inbound);
            if !held.has_room_for(to_hold) {
                drop(held);
                imp.record_overflow(dir, &verdict);
                if let Some(tap) = &self.tap {
                    tap.see(Way::Received, from, data, ShimFate::Overflowed);
                }
                return false;
            }
            let earliest = held.next_due();
            for (i, d) in verdict.deliveries().iter().enumerate() {
                if Some(i) != inline {
                    let copy = Datagram {
                        data: copy_with_flip(data, d.corrupt_bit),
                        peer: from,
                    };
                    // Cannot fail: room was checked under the same lock.
                    let _ = held.push(due(now, d.delay), copy);
                }
            }
            // A waiter in `recv_from` sleeps until the earliest held copy:
            // it needs waking only if that changed (a copy due later is
            // found when it wakes for the earlier one).
            let changed = held.next_due() != earliest;
            drop(held);
            if changed {
                imp.inbound_changed.notify_waiters();
            }
        }
        if let Some(tap) = &self.tap {
            tap.verdict(Way::Received, from, data, &verdict);
        }
        match inline {
            Some(i) => {
                if let Some(bit) = verdict.deliveries()[i].corrupt_bit {
                    flip_bit(data, bit);
                }
                true
            }
            None => false,
        }
    }

    /// A held inbound copy that is due now, copied into `buf` (truncated to
    /// it), with its source; for callers that receive on
    /// [`get_ref`](Self::get_ref) themselves.
    pub fn pop_held(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        self.pop_held_at(buf, Instant::now())
    }

    /// [`pop_held`](Self::pop_held) for a copy due at `now` (a batched
    /// receiver reads the clock once per batch).
    pub fn pop_held_at(&self, buf: &mut [u8], now: Instant) -> Option<(usize, SocketAddr)> {
        let imp = self.impaired.as_ref()?;
        let d = lock(&imp.inbound).pop_due(now)?;
        let n = d.data.len().min(buf.len());
        buf[..n].copy_from_slice(&d.data[..n]);
        Some((n, d.peer))
    }

    /// When the earliest held inbound copy falls due (None: nothing held).
    pub fn next_held_due(&self) -> Option<Instant> {
        lock(&self.impaired.as_ref()?.inbound).next_due()
    }

    /// The local address of the underlying socket.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The model's counters (over every socket on its [`ImpairedLink`]);
    /// all zero for a passthrough socket.
    pub fn stats(&self) -> ImpairmentStats {
        match &self.impaired {
            Some(imp) => imp.link.stats(),
            None => ImpairmentStats::default(),
        }
    }

    /// Which end this socket is; `None` for a passthrough socket.
    pub fn side(&self) -> Option<Side> {
        self.impaired.as_ref().map(|imp| imp.side)
    }

    /// The underlying socket, e.g. to set socket options.
    pub fn get_ref(&self) -> &UdpSocket {
        &self.socket
    }
}

/// Sends queued outbound copies as they fall due, until aborted.
async fn run_sender(socket: Arc<UdpSocket>, out: Arc<Outbound>) {
    loop {
        // Take one item at a time so the lock is released before sending.
        loop {
            let next = lock(&out.queue).pop_due(Instant::now());
            let Some(d) = next else { break };
            // Best-effort, like the network: a failed send is a lost datagram.
            let _ = socket.send_to(&d.data, d.peer).await;
        }
        let next_due = lock(&out.queue).next_due();
        match next_due {
            Some(at) => {
                tokio::select! {
                    () = sleep_until(at) => {}
                    () = out.wake.notified() => {}
                }
            }
            None => out.wake.notified().await,
        }
    }
}

/// `now + delay`, or a far-future instant if that overflows the clock.
fn due(now: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(60 * 60 * 24 * 365);
    now.checked_add(delay)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// An owned copy of `data`, with `bit` flipped if given.
fn copy_with_flip(data: &[u8], bit: Option<usize>) -> Vec<u8> {
    let mut copy = data.to_vec();
    if let Some(bit) = bit {
        flip_bit(&mut copy, bit);
    }
    copy
}

/// Locks `m`, recovering from poisoning: every critical section here leaves
/// the data consistent, so a panic elsewhere is no reason to panic again.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

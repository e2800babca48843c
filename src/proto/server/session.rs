//! One server session: what was sent, what the client acknowledged, and
//! what to send next.
//!
//! A session holds O(window) state: one [`Slot`] per index in
//! `[ack, high_water)` (sent but not cumulatively acknowledged) and a queue
//! of indices to send. Values come from the session seed ([`Sequence`]),
//! and the checksum is summed as each index is first sent. Loss recovery
//! resends only holes (see [`crate::proto::recovery`]); a probe resends
//! every hole in the window.
//!
//! Split by concern: `checks` (what a client message must pass, and what
//! passing changes), `loss` (loss detection, the loss timer, probes),
//! `shared` (the store record, restoring, carrying a stale copy forward);
//! this file holds the state, acks and sends.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use uuid::Uuid;

mod checks;
mod loss;
mod sacked;
mod shared;

pub(crate) use checks::{split_token, Refusal, Resume};

use super::outbox::Outbox;
use super::pacer::{self, Pacer};
use super::path::{Move, Path};
use super::ServerConfig;
use crate::proto::rtt::{RttConfig, RttEstimator};
use crate::proto::sack;
use crate::proto::sequence::{RunningChecksum, Sequence};
use crate::proto::trace::{Datagram, DatagramKind, Metrics, TraceEvent};
use crate::proto::wire::{
    ClientMessage, ServerMessage, DATA_LEN, MAX_SERVER_DATAGRAM_LEN, MIN_CONNECTING_LEN,
    SERVER_TOKEN_LEN,
};

/// Most data datagrams in flight to an address that has not proven itself:
/// what one minimal CONNECTING pays for, with its Accept (three times its
/// size, RFC 9000 §8). The path budget bounds the bytes; this bounds the
/// burst, so that repeated CONNECTINGs do not make the first flight larger.
const UNVALIDATED_WINDOW: u32 =
    ((3 * MIN_CONNECTING_LEN - MAX_SERVER_DATAGRAM_LEN) / DATA_LEN) as u32;

/// Most copies of one index queued at once (see `Slot::queued`).
const MAX_QUEUED_COPIES: u8 = 2;

/// Per-index sending state, for `[ack, high_water)`.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Send order of the latest transmission (0: never sent).
    send_seq: u64,
    /// First transmission, for acknowledgement latency and RTT samples.
    first_sent: Option<Instant>,
    /// Latest transmission, for the reordering window.
    last_sent: Option<Instant>,
    /// Transmissions so far (Karn: only single sends give RTT samples).
    sends: u32,
    /// Selectively acknowledged: never resend.
    sacked: bool,
    /// Copies of this index waiting in the send queue: at most one, or two
    /// after a probe (a client probing has had timeouts: send twice).
    queued: u8,
}

/// How an acknowledgement is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckKind {
    /// An ordinary ack: holes are judged by the loss test; a probe flag
    /// resends every hole.
    Normal,
    /// A copy of the previous message (same timestamp, as the client sends
    /// each probe twice): a plain ack whatever its flags.
    Repeat,
    /// A probe or a resuming CONNECTING: everything unacknowledged in the
    /// window counts as lost.
    ResendAll,
}

/// One client's session. See the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    uuid: Uuid,
    token: [u8; SERVER_TOKEN_LEN],
    /// The client presented the token at least once.
    confirmed: bool,
    /// Where data goes: the address of the newest authenticated message.
    addr: SocketAddr,
    /// Whether `addr` is proven, and the budget until it is.
    path: Path,
    seq: Sequence,
    /// Next index the client needs.
    ack: u32,
    /// First index never sent.
    high_water: u32,
    /// The client's advertised window, after the server's caps.
    window: u32,
    slots: VecDeque<Slot>,
    /// The slots whose `sacked` is set, searchable a word at a time.
    sacked: sacked::SackedSet,
    send_queue: VecDeque<u32>,
    /// Transmissions in send order, `(send_seq, index)`, for time-based
    /// loss detection (RACK): the oldest unacknowledged transmission is at
    /// the front, so each ack looks only at what it can declare lost.
    /// Entries for indices since acknowledged or sent again are dropped
    /// when they reach the front.
    flight: VecDeque<(u64, u32)>,
    /// The highest index the client said it holds (the top of its newest
    /// ack range, or below its cumulative ack): a transmission of a higher
    /// index cannot be a hole yet.
    highest_held: u32,
    /// Paces new data and resends at the client's rate.
    pacer: Pacer,
    /// When the latest ack arrived: data the pacer holds longer than
    /// [`pacer::BURST`] after it echoes nothing, so that no RTT sample
    /// includes the wait.
    acked_at: Instant,
    next_send_seq: u64,
    largest_acked_seq: u64,
    /// Sum of the values of `[0, summed)`: every index is added once, the
    /// first time `high_water` passes it.
    checksum: RunningChecksum,
    summed: u32,
    /// Newest client timestamp; echoed on everything we send.
    last_ts: u64,
    /// Latest accepted message, for expiry.
    last_activity: Instant,
    /// Earliest next data send when pacing.
    next_send_at: Instant,
    /// Server-side RTT, from first sends to their acknowledgement.
    rtt: RttEstimator,
    /// When to look again for holes inside the reordering window.
    loss_check: Option<Instant>,
    /// The loss timer queued datagrams since the client's latest message.
    echo_held: bool,
    /// Data datagrams handed out, first sends and resends.
    data_sent: u64,
    /// When a probe last made the session resend its window.
    last_probe_round: Option<Instant>,
    /// When the record was last handed to a shared store (`None`: never).
    stored_at: Option<Instant>,
}

impl Session {
    /// A new, unconfirmed session for a CONNECTING from `addr`.
    pub(crate) fn new(
        uuid: Uuid,
        token: [u8; SERVER_TOKEN_LEN],
        addr: SocketAddr,
        path: Path,
        seq: Sequence,
        ts: u64,
        now: Instant,
    ) -> Self {
        Self {
            uuid,
            token,
            confirmed: false,
            addr,
            path,
            seq,
            ack: 0,
            high_water: 0,
            window: 1,
            slots: VecDeque::new(),
            sacked: sacked::SackedSet::default(),
            send_queue: VecDeque::new(),
            flight: VecDeque::new(),
            highest_held: 0,
            pacer: Pacer::new(now),
            acked_at: now,
            next_send_seq: 0,
            largest_acked_seq: 0,
            checksum: RunningChecksum::default(),
            summed: 0,
            last_ts: ts,
            last_activity: now,
            next_send_at: now,
            rtt: RttEstimator::new(RttConfig::default()),
            loss_check: None,
            echo_held: false,
            data_sent: 0,
            last_probe_round: None,
            stored_at: None,
        }
    }

    pub(crate) fn uuid(&self) -> Uuid {
        self.uuid
    }

    pub(crate) fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn sequence(&self) -> Sequence {
        self.seq
    }

    pub(crate) fn len(&self) -> u32 {
        self.seq.len()
    }

    /// Next index the client needs.
    pub(crate) fn ack(&self) -> u32 {
        self.ack
    }

    /// First index never sent.
    pub(crate) fn high_water(&self) -> u32 {
        self.high_water
    }

    pub(crate) fn last_activity(&self) -> Instant {
        self.last_activity
    }

    pub(crate) fn loss_check(&self) -> Option<Instant> {
        self.loss_check
    }

    /// Data datagrams handed out so far.
    pub(crate) fn data_sent(&self) -> u64 {
        self.data_sent
    }

    pub(crate) fn next_send_at(&self) -> Instant {
        self.next_send_at
    }

    /// The checksum of the whole sequence, once every index was sent.
    pub(crate) fn checksum(&self) -> u64 {
        self.checksum.sum()
    }

    /// How long the session may stay idle.
    pub(crate) fn lifetime(&self, config: &ServerConfig) -> Duration {
        if self.confirmed {
            config.session_lifetime
        } else {
            config.handshake_lifetime.min(config.session_lifetime)
        }
    }

    /// A handshake that has proven nothing: no token presented, no
    /// validated address. Spoofed CONNECTINGs make only these.
    pub(crate) fn is_pending(&self) -> bool {
        !self.confirmed && !self.path.is_validated()
    }

    /// The path state (validation and anti-amplification budget).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path state, to issue a challenge or validate an answer.
    pub(crate) fn path_mut(&mut self) -> &mut Path {
        &mut self.path
    }

    /// Records a message that carried the token (`bytes` long, timestamp
    /// `ts`, which the caller checked is not older than the newest). Only
    /// a strictly newer timestamp moves the session to a new address: a
    /// copy of the newest message (a replay, or a probe's twin) seen from
    /// elsewhere moves nothing. The first token from the address the
    /// Accept went to proves that address.
    pub(crate) fn on_authenticated(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ts: u64,
        bytes: usize,
    ) -> Move {
        if !self.confirmed {
            self.confirmed = true;
            if from == self.addr {
                self.path.validate(from);
            }
        }
        self.last_activity = now;
        if ts <= self.last_ts {
            if from == self.addr {
                self.path.on_received(bytes);
            }
            return Move::Stayed;
        }
        self.last_ts = ts;
        let moved = self.path.on_move(self.addr, from);
        self.addr = from;
        self.path.on_received(bytes);
        moved
    }

    /// Records a token-less repeat of the first CONNECTING from the
    /// session's own address (its Accept was lost). It moves no timestamp
    /// (anyone who can spoof the client's address could send 2^64 − 1 and
    /// make every real ack stale) and does not extend the handshake's
    /// lifetime; it only adds to the address's budget.
    pub(crate) fn on_repeat(&mut self, bytes: usize) {
        self.path.on_received(bytes);
    }

    /// A reply of `bytes` is going to `to`: counted against the budget if
    /// that is the session's unvalidated address.
    pub(crate) fn on_reply(&mut self, to: SocketAddr, bytes: usize) {
        if to == self.addr {
            self.path.on_sent(bytes);
        }
    }

    /// True when it has data queued and its path budget allows a data
    /// datagram: what the endpoint's round-robin holds.
    pub(crate) fn may_send(&self) -> bool {
        !self.send_queue.is_empty() && self.path.allowance() >= DATA_LEN as u64
    }

    /// Applies a client's ack, bitmap and window; queues holes to resend
    /// and new indices to send.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        msg: &ClientMessage<'_>,
        kind: AckKind,
        cap: u32,
        config: &ServerConfig,
        out: &mut Outbox,
    ) {
        let latency = config.ack_latency_events;
        // Cumulative part.
        while self.ack < msg.ack {
            let Some(slot) = self.slots.pop_front() else {
                break;
            };
            self.ack += 1;
            if !slot.sacked {
                self.on_acked(&slot, now, latency, out);
            }
        }
        self.sacked.advance(self.ack);
        // Selective part: only indices we have sent. Ranges come newest
        // first and never un-acknowledge anything (an index left out is
        // just not described this time). What earlier acks said is
        // skipped a word at a time.
        for (lo, hi) in sack::ranges(msg.ack, msg.sack) {
            let mut lo = lo.max(self.ack);
            let hi = hi.min(self.high_water.saturating_sub(1));
            while let Some(index) = self.sacked.first_absent(lo, hi) {
                let Some(slot) = self.slot_mut(index) else {
                    break;
                };
                if slot.sends > 0 {
                    slot.sacked = true;
                    let copy = *slot;
                    self.sacked.insert(index);
                    self.on_acked(&copy, now, latency, out);
                }
                if index == hi {
                    break;
                }
                lo = index + 1;
            }
        }
        let top = sack::highest(msg.ack, msg.sack).unwrap_or(0);
        self.highest_held = self.highest_held.max(top).max(msg.ack.saturating_sub(1));
        self.pacer.set_rate(msg.rate);
        self.acked_at = now;
        self.window = match msg.window {
            0 => {
                out.stats.window_zero += 1;
                1
            }
            w if w > config.max_window => {
                out.stats.window_capped += 1;
                config.max_window
            }
            w => w,
        };
        if self.window > cap {
            out.stats.window_budget_capped += 1;
            self.window = cap;
        }
        if !self.path.is_validated() {
            self.window = self.window.min(UNVALIDATED_WINDOW);
        }
        self.shrink_to_window();
        // A probe (or a CONNECTING) says: everything unacknowledged is lost.
        // The client sends probes only after its RTO, so this cannot repeat
        // faster than about once per round trip.
        if msg.is_probe() {
            out.stats.probes += 1;
        }
        let probe = match kind {
            AckKind::Normal => msg.is_probe() && self.probe_round_allowed(now, out),
            AckKind::Repeat => false,
            AckKind::ResendAll => true,
        };
        self.echo_held = false;
        self.loss_check = self.detect_losses(now, probe, out);
        self.queue_new_data();
        if out.trace.is_on() {
            let metrics = self.metrics(msg.rate);
            out.trace
                .record(now, self.uuid, || TraceEvent::Metrics(metrics));
        }
    }

    /// The session's figures for a trace: the window granted, what is in
    /// flight (a walk of the window: only while tracing), the server's
    /// RTT estimate and the rate the client asked for.
    fn metrics(&self, rate: u32) -> Metrics {
        let in_flight = self
            .slots
            .iter()
            .filter(|s| s.sends > 0 && !s.sacked && s.queued == 0)
            .count();
        Metrics {
            window: self.window,
            in_flight: Some(u32::try_from(in_flight).unwrap_or(u32::MAX)),
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            min_rtt: self.rtt.min(),
            pacing_rate: rate,
            delivery_rate: None,
            phase: None,
        }
    }

    /// Writes up to `max` queued data datagrams into `buf` (cleared first);
    /// returns how many. The endpoint has taken the session off its
    /// round-robin to call this, and puts it back if it
    /// [may send](Self::may_send) more.
    pub(crate) fn poll_data(
        &mut self,
        now: Instant,
        max: usize,
        config: &ServerConfig,
        buf: &mut Vec<u8>,
        out: &mut Outbox,
    ) -> usize {
        buf.clear();
        let limit = if !config.pacing.is_zero() {
            1
        } else if self.pacer.is_paced() {
            self.pacer.allowance(now, max)
        } else {
            max
        };
        // An unvalidated address gets no more than its budget.
        let budget = usize::try_from(self.path.allowance() / DATA_LEN as u64).unwrap_or(usize::MAX);
        if budget < limit.min(self.send_queue.len()) {
            out.stats.amplification_limited += 1;
        }
        let limit = limit.min(budget);
        let mut count = 0;
        while count < limit {
            let Some(index) = self.send_queue.pop_front() else {
                break;
            };
            let Some(slot) = self.slot_mut(index) else {
                continue; // acknowledged meanwhile
            };
            slot.queued = slot.queued.saturating_sub(1);
            if slot.sacked {
                continue;
            }
            self.next_send_seq += 1;
            let send_seq = self.next_send_seq;
            let Some(slot) = self.slot_mut(index) else {
                continue;
            };
            let resend = slot.sends > 0;
            if resend {
                out.stats.retransmits += 1;
            } else {
                slot.first_sent = Some(now);
            }
            slot.sends += 1;
            slot.last_sent = Some(now);
            slot.send_seq = send_seq;
            self.flight.push_back((send_seq, index));
            let msg = ServerMessage::Data {
                index,
                payload: self.seq.get(index).unwrap_or(0),
                // Datagrams queued by the loss timer were not sent in answer
                // to the client's latest message: echo nothing, so that no
                // RTT sample includes the time we held them.
                echo: if self.echo_held || now > self.acked_at + pacer::BURST {
                    0
                } else {
                    self.last_ts
                },
            };
            let off = buf.len();
            buf.resize(off + DATA_LEN, 0);
            if msg.encode(self.uuid, &mut buf[off..]).is_err() {
                buf.truncate(off);
                break;
            }
            out.trace.record(now, self.uuid, || {
                TraceEvent::Sent(Datagram {
                    index,
                    resend,
                    echo: msg.echo() != 0,
                    ..Datagram::new(DatagramKind::Data, DATA_LEN)
                })
            });
            count += 1;
        }
        self.data_sent += count as u64;
        self.path.on_sent(count * DATA_LEN);
        if !config.pacing.is_zero() {
            self.next_send_at = now + config.pacing;
        } else if self.pacer.is_paced() {
            let waiting = !self.send_queue.is_empty();
            self.next_send_at = self.pacer.spend(now, count, waiting);
        }
        count
    }

    /// True when the session paces its data at the client's rate.
    pub(crate) fn is_paced(&self) -> bool {
        self.pacer.is_paced()
    }

    /// Gives back memory a larger window left behind: the server-wide
    /// window budget bounds slots in use, and this bounds what they keep
    /// reserved.
    fn shrink_to_window(&mut self) {
        let need = (self.window as usize).max(64);
        if self.slots.capacity() > 4 * need && self.slots.len() <= need {
            self.slots.shrink_to(need);
        }
        if self.send_queue.capacity() > 4 * need && self.send_queue.len() <= need {
            self.send_queue.shrink_to(need);
        }
        if self.flight.capacity() > 8 * need && self.flight.len() <= need {
            self.flight.shrink_to(need);
        }
    }

    /// Slots held: indices sent (or queued) and not cumulatively
    /// acknowledged.
    pub(crate) fn slots_in_use(&self) -> usize {
        self.slots.len()
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot> {
        let off = index.checked_sub(self.ack)? as usize;
        self.slots.get_mut(off)
    }

    /// Queues every index that the window now allows and was never sent.
    fn queue_new_data(&mut self) {
        let end = self.ack.saturating_add(self.window).min(self.seq.len());
        while self.high_water < end {
            if self.high_water == self.summed {
                self.checksum
                    .add(self.seq.get(self.high_water).unwrap_or(0));
                self.summed += 1;
            }
            self.slots.push_back(Slot {
                queued: 1,
                ..Slot::default()
            });
            self.send_queue.push_back(self.high_water);
            self.high_water += 1;
        }
    }
}

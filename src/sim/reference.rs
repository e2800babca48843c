//! A loss-based reference flow for the simulator: a Reno-style sender and
//! its receiver, so that risp-udp's rate control can be measured against
//! the kind of flow it shares real bottlenecks with.
//!
//! The sender is window based, one datagram per packet, and reacts to loss
//! only:
//!
//! * **slow start** until the first loss: `cwnd` grows by one packet per
//!   packet acknowledged (doubling every round trip);
//! * **congestion avoidance** after it: `cwnd` grows by `1 / cwnd` per
//!   packet acknowledged (one packet per round trip);
//! * **on loss** `cwnd` halves, at most once per round trip: losses of
//!   packets sent before the previous cut belong to the episode already
//!   answered (as NewReno's recovery point, RFC 6582; RFC 9002 §7.3.2);
//! * **on a retransmission timeout** `cwnd` drops to one packet and
//!   everything outstanding is resent.
//!
//! The receiver acknowledges every packet at once, echoing it. A packet is
//! lost when one sent [`DUP_THRESHOLD`] transmissions later was
//! acknowledged (the duplicate-ack rule, counted in transmissions so that a
//! resend is judged by what was sent after it, as RFC 9002 §6.1.1's packet
//! threshold). The sender keeps a scoreboard of what was acknowledged, so
//! several losses in one window are repaired in one round trip (as TCP with
//! SACK) rather than one per round trip.
//!
//! A packet is [`PACKET_LEN`] bytes: its sequence number, its transmission
//! number and its send time; an ack is the same bytes sent back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Initial congestion window, in packets (RFC 6928's ten).
pub const INITIAL_CWND: f64 = 10.0;

/// Smallest `cwnd` a halving leaves, in packets.
pub const MIN_CWND: f64 = 2.0;

/// A packet is lost once a packet sent this many transmissions after it
/// was acknowledged (TCP's three duplicate acks).
pub const DUP_THRESHOLD: u64 = 3;

/// Smallest retransmission timeout (RFC 6298's one second is long for a
/// simulator; Linux uses 200 ms).
pub const MIN_RTO: Duration = Duration::from_millis(200);

/// Retransmission timeout before the first RTT sample.
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

/// Bytes in a reference packet or its ack.
pub const PACKET_LEN: usize = 24;

/// What one reference flow did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceStats {
    /// Packets sent, resends included.
    pub sent: u64,
    /// Resends (after a loss or a timeout).
    pub retransmitted: u64,
    /// Distinct packets the receiver got.
    pub delivered: u64,
    /// Halvings on loss.
    pub reductions: u64,
    /// Retransmission timeouts.
    pub timeouts: u64,
    /// Largest `cwnd`, in packets.
    pub max_cwnd: f64,
}

/// A packet (or its ack, which echoes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Sequence number (what is delivered).
    pub seq: u64,
    /// Transmission number: one more for every packet sent, resends too.
    pub tx: u64,
    /// When it was sent, in nanoseconds since the sender's epoch.
    pub sent_ns: u64,
}

impl Packet {
    /// The packet's bytes.
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut b = [0; PACKET_LEN];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..16].copy_from_slice(&self.tx.to_le_bytes());
        b[16..].copy_from_slice(&self.sent_ns.to_le_bytes());
        b
    }

    /// A packet from its bytes (`None` unless exactly [`PACKET_LEN`]).
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != PACKET_LEN {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Some(Self {
            seq: word(0),
            tx: word(8),
            sent_ns: word(16),
        })
    }
}

/// Where one sequence number stands at the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Sent as transmission `tx`, not yet acknowledged.
    Outstanding(u64),
    /// Judged lost, waiting to be resent.
    Lost,
    /// Acknowledged.
    Acked,
}

/// The Reno-style sender. See the module docs.
#[derive(Debug, Clone)]
pub struct RenoSender {
    epoch: Instant,
    cwnd: f64,
    ssthresh: f64,
    /// The lowest sequence number not yet acknowledged: `slots[0]`'s.
    base: u64,
    slots: VecDeque<Slot>,
    next_tx: u64,
    /// Transmissions not yet judged, in order: `(tx, seq)`.
    flight: VecDeque<(u64, u64)>,
    /// Packets outstanding (sent, neither acknowledged nor judged lost).
    pipe: u64,
    /// Sequence numbers to resend, in the order they were judged lost.
    lost: VecDeque<u64>,
    largest_acked_tx: Option<u64>,
    /// Losses of transmissions before this one belong to the episode
    /// already answered.
    recovery_start_tx: u64,
    limit: Option<u64>,
    srtt: Option<Duration>,
    rttvar: Duration,
    backoff: u32,
    rto_at: Option<Instant>,
    stats: ReferenceStats,
}

impl RenoSender {
    /// A sender of at most `limit` packets (`None`: endless), starting at
    /// `epoch`.
    pub fn new(limit: Option<u64>, epoch: Instant) -> Self {
        Self {
            epoch,
            cwnd: INITIAL_CWND,
            ssthresh: f64::INFINITY,
            base: 0,
            slots: VecDeque::new(),
            next_tx: 0,
            flight: VecDeque::new(),
            pipe: 0,
            lost: VecDeque::new(),
            largest_acked_tx: None,
            recovery_start_tx: 0,
            limit,
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
            rto_at: None,
            stats: ReferenceStats {
                max_cwnd: INITIAL_CWND,
                ..ReferenceStats::default()
            },
        }
    }

    /// The congestion window, in packets.
    pub fn cwnd(&self) -> f64 {
        self.cwnd
    }

    /// True while in slow start (no loss yet).
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// True once every packet of a limited sender was acknowledged.
    pub fn is_finished(&self) -> bool {
        self.limit.is_some_and(|l| self.base >= l)
    }

    /// What it did so far (`delivered` is the receiver's to fill in).
    pub fn stats(&self) -> &ReferenceStats {
        &self.stats
    }

    /// The next packet to send at `now`, if the window allows one: a lost
    /// packet first, else a new one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Packet> {
        if (self.pipe as f64) >= self.cwnd.floor().max(1.0) {
            return None;
        }
        let seq = loop {
            match self.lost.pop_front() {
                Some(s) if self.slot(s) == Some(Slot::Lost) => {
                    self.stats.retransmitted += 1;
                    break s;
                }
                Some(_) => continue,
                None => {
                    let s = self.base + self.slots.len() as u64;
                    if self.limit.is_some_and(|l| s >= l) {
                        return None;
                    }
                    self.slots.push_back(Slot::Lost);
                    break s;
                }
            }
        };
        let tx = self.next_tx;
        self.next_tx += 1;
        self.set_slot(seq, Slot::Outstanding(tx));
        self.flight.push_back((tx, seq));
        self.pipe += 1;
        self.stats.sent += 1;
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rto());
        }
        Some(Packet {
            seq,
            tx,
            sent_ns: now.saturating_duration_since(self.epoch).as_nanos() as u64,
        })
    }

    /// An ack (the echo of `ack`) arrived at `now`.
    pub fn on_ack(&mut self, now: Instant, ack: Packet) {
        let sent = self.epoch + Duration::from_nanos(ack.sent_ns);
        let Some(slot) = self.slot(ack.seq) else {
            return; // Below the base: acknowledged before.
        };
        match slot {
            Slot::Acked => return,
            Slot::Outstanding(tx) => {
                self.pipe -= 1;
                if tx == ack.tx {
                    self.rtt_sample(now.saturating_duration_since(sent));
                }
                if ack.tx >= self.recovery_start_tx {
                    self.grow();
                }
            }
            // A late ack of a packet judged lost: nothing was in the pipe.
            Slot::Lost => {}
        }
        self.set_slot(ack.seq, Slot::Acked);
        while self.slots.front() == Some(&Slot::Acked) {
            self.slots.pop_front();
            self.base += 1;
        }
        self.backoff = 0;
        self.rto_at = (self.pipe > 0).then(|| now + self.rto());
        let largest = self.largest_acked_tx.map_or(ack.tx, |l| l.max(ack.tx));
        self.largest_acked_tx = Some(largest);
        let mut first_lost: Option<u64> = None;
        while let Some(&(tx, seq)) = self.flight.front() {
            if tx + DUP_THRESHOLD > largest {
                break;
            }
            self.flight.pop_front();
            if self.slot(seq) == Some(Slot::Outstanding(tx)) {
                self.set_slot(seq, Slot::Lost);
                self.pipe -= 1;
                self.lost.push_back(seq);
                first_lost.get_or_insert(tx);
            }
        }
        if first_lost.is_some_and(|tx| tx >= self.recovery_start_tx) {
            self.ssthresh = (self.cwnd / 2.0).max(MIN_CWND);
            self.cwnd = self.ssthresh;
            self.recovery_start_tx = self.next_tx;
            self.stats.reductions += 1;
        }
    }

    /// When the retransmission timer fires, if armed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rto_at
    }

    /// The retransmission timer fired (call once it is due): everything
    /// outstanding is lost, `cwnd` drops to one packet.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.rto_at.is_none_or(|t| t > now) {
            return;
        }
        self.stats.timeouts += 1;
        self.flight.clear();
        for i in 0..self.slots.len() {
            if let Slot::Outstanding(_) = self.slots[i] {
                self.slots[i] = Slot::Lost;
                self.lost.push_back(self.base + i as u64);
            }
        }
        self.pipe = 0;
        self.ssthresh = (self.cwnd / 2.0).max(MIN_CWND);
        self.cwnd = 1.0;
        self.recovery_start_tx = self.next_tx;
        self.backoff = (self.backoff + 1).min(6);
        self.rto_at = None;
    }

    fn grow(&mut self) {
        if self.cwnd < self.ssthresh {
            self.cwnd += 1.0;
        } else {
            self.cwnd += 1.0 / self.cwnd;
        }
        self.stats.max_cwnd = self.stats.max_cwnd.max(self.cwnd);
    }

    fn rtt_sample(&mut self, rtt: Duration) {
        // RFC 6298: rttvar, then srtt, with gains 1/4 and 1/8.
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((s * 7 + rtt) / 8);
            }
        }
    }

    fn rto(&self) -> Duration {
        let base = self
            .srtt
            .map_or(INITIAL_RTO, |s| (s + self.rttvar * 4).max(MIN_RTO));
        base * (1 << self.backoff)
    }

    fn slot(&self, seq: u64) -> Option<Slot> {
        let i = seq.checked_sub(self.base)?;
        self.slots.get(usize::try_from(i).ok()?).copied()
    }

    fn set_slot(&mut self, seq: u64, slot: Slot) {
        let i = (seq - self.base) as usize;
        self.slots[i] = slot;
    }
}

/// The reference flow's receiver: acknowledges every packet, counts the
/// distinct ones.
#[derive(Debug, Clone, Default)]
pub struct RenoReceiver {
    /// One bit per sequence number received.
    seen: Vec<u64>,
    delivered: u64,
}

impl RenoReceiver {
    /// A receiver that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// `p` arrived: returns the ack to send back (its echo).
    pub fn on_packet(&mut self, p: Packet) -> Packet {
        let (word, bit) = ((p.seq / 64) as usize, p.seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) == 0 {
            self.seen[word] |= 1 << bit;
            self.delivered += 1;
        }
        p
    }

    /// Distinct packets received.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Sends what the window allows at `now`.
    fn burst(s: &mut RenoSender, now: Instant) -> Vec<Packet> {
        std::iter::from_fn(|| s.poll_transmit(now)).collect()
    }

    #[test]
    fn packets_round_trip_through_their_bytes() {
        let p = Packet {
            seq: 7,
            tx: 1 << 40,
            sent_ns: 123_456_789,
        };
        assert_eq!(Packet::decode(&p.encode()), Some(p));
        assert_eq!(Packet::decode(&p.encode()[1..]), None);
    }

    #[test]
    fn slow_start_doubles_the_window_every_round_trip() {
        let t0 = crate::clock::now();
        let mut s = RenoSender::new(None, t0);
        let mut r = RenoReceiver::new();
        let mut now = t0;
        for round in 0..4 {
            let sent = burst(&mut s, now);
            assert_eq!(sent.len(), 10 << round, "round {round}");
            now += ms(10);
            for p in sent {
                s.on_ack(now, r.on_packet(p));
            }
        }
        assert_eq!(s.cwnd(), 160.0);
        assert!(s.in_slow_start());
        assert_eq!(r.delivered(), 150);
        assert_eq!(s.stats().retransmitted, 0);
    }

    #[test]
    fn losses_in_one_window_halve_once_and_are_resent() {
        let t0 = crate::clock::now();
        let mut s = RenoSender::new(None, t0);
        let mut r = RenoReceiver::new();
        let sent = burst(&mut s, t0);
        assert_eq!(sent.len(), 10);
        // Packets 2 and 5 are lost; the rest arrive.
        let now = t0 + ms(10);
        for p in sent.iter().filter(|p| p.seq != 2 && p.seq != 5) {
            s.on_ack(now, r.on_packet(*p));
        }
        // Slow start grew the window to 15 by the ack that revealed the
        // first loss (packet 6 acked: 2 is three transmissions behind); it
        // halved then, once for both losses.
        assert_eq!(s.stats().reductions, 1);
        assert_eq!(s.cwnd(), 7.5);
        assert!(!s.in_slow_start());
        let next = burst(&mut s, now);
        assert_eq!(next[0].seq, 2, "the first loss is resent first");
        assert_eq!(next[1].seq, 5);
        assert_eq!(next.len(), 7);
        assert_eq!(s.stats().retransmitted, 2);
        // The resends are acked: no further cut, and what was sent after
        // the cut grows the window by 1/cwnd each.
        for p in &next {
            s.on_ack(now + ms(10), r.on_packet(*p));
        }
        assert_eq!(s.stats().reductions, 1);
        assert!(s.cwnd() > 7.5 && s.cwnd() < 8.5, "{}", s.cwnd());
        assert_eq!(r.delivered(), 15);
    }

    #[test]
    fn a_timeout_resends_everything_outstanding_from_one_packet() {
        let t0 = crate::clock::now();
        let mut s = RenoSender::new(Some(10), t0);
        let sent = burst(&mut s, t0);
        assert_eq!(sent.len(), 10);
        assert_eq!(s.poll_timeout(), Some(t0 + INITIAL_RTO));
        s.handle_timeout(t0 + INITIAL_RTO);
        assert_eq!(s.stats().timeouts, 1);
        assert_eq!(s.cwnd(), 1.0);
        let again = burst(&mut s, t0 + INITIAL_RTO);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].seq, 0);
        // Limited to ten packets: once all are acked the sender is done.
        let mut r = RenoReceiver::new();
        let mut now = t0 + INITIAL_RTO;
        let mut pending = again;
        while let Some(p) = pending.pop() {
            now += ms(10);
            s.on_ack(now, r.on_packet(p));
            pending.extend(burst(&mut s, now));
        }
        assert!(s.is_finished());
        assert_eq!(r.delivered(), 10);
        assert_eq!(s.poll_timeout(), None);
    }
}

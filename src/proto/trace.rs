//! What an endpoint tells a recorder about itself, when asked to: the
//! datagrams it wrote and read (with what only it knows: whether a data
//! datagram is a resend), the losses it declared and why, and its
//! congestion metrics. The drivers hand these to a qlog writer
//! ([`crate::trace`]).
//!
//! Off by default ([`ClientConfig::trace`](crate::proto::client::ClientConfig::trace),
//! [`ServerConfig::trace`](crate::proto::server::ServerConfig::trace)): an
//! endpoint then pays one branch per place it would record, and builds
//! nothing. On, each record is a small `Copy` value pushed onto a bounded
//! queue (no allocation per datagram once the queue has grown); the driver
//! drains it with `poll_trace`. A driver that never drains loses the
//! oldest records, counted in [`TraceQueue::dropped`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::proto::wire::{ServerMessage, State};

/// Most records waiting to be drained; past it the oldest are dropped.
pub const MAX_PENDING_TRACE: usize = 1 << 16;

/// What a datagram was, by the RISP kind a reader of the trace cares
/// about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    /// Client: CONNECTING (start or resume).
    Connecting,
    /// Client: an ack in CONNECTED.
    Ack,
    /// Client: an ack its probe timer sent.
    Probe,
    /// Client: CLOSING (asks for the checksum).
    Closing,
    /// Client: CLOSED (ends the session; with the abort flag it abandons
    /// it).
    Closed,
    /// Server: the Accept carrying the token.
    Accept,
    /// Server: one value.
    Data,
    /// Server: the checksum.
    Checksum,
    /// Server: the answer to CLOSED.
    ClosedReply,
    /// Server: a path challenge.
    Challenge,
    /// Server: a retry token.
    Retry,
    /// Server: a refusal.
    Error,
}

impl DatagramKind {
    /// A short snake_case name (the qlog `packet_type`).
    pub fn name(self) -> &'static str {
        match self {
            DatagramKind::Connecting => "connecting",
            DatagramKind::Ack => "ack",
            DatagramKind::Probe => "probe",
            DatagramKind::Closing => "closing",
            DatagramKind::Closed => "closed",
            DatagramKind::Accept => "accept",
            DatagramKind::Data => "data",
            DatagramKind::Checksum => "checksum",
            DatagramKind::ClosedReply => "closed_reply",
            DatagramKind::Challenge => "challenge",
            DatagramKind::Retry => "retry",
            DatagramKind::Error => "error",
        }
    }

    /// The kind of a client message in `state` (`probe`: its probe flag).
    pub fn of_client(state: State, probe: bool) -> Self {
        match state {
            State::Connecting => DatagramKind::Connecting,
            State::Connected if probe => DatagramKind::Probe,
            State::Connected => DatagramKind::Ack,
            State::Closing => DatagramKind::Closing,
            State::Closed => DatagramKind::Closed,
        }
    }

    /// The kind of a server message.
    pub fn of_server(msg: &ServerMessage) -> Self {
        match msg {
            ServerMessage::Accept { .. } => DatagramKind::Accept,
            ServerMessage::Data { .. } => DatagramKind::Data,
            ServerMessage::Checksum { .. } => DatagramKind::Checksum,
            ServerMessage::Closed { .. } => DatagramKind::ClosedReply,
            ServerMessage::Challenge { .. } => DatagramKind::Challenge,
            ServerMessage::Retry { .. } => DatagramKind::Retry,
            ServerMessage::Error { .. } => DatagramKind::Error,
        }
    }

    /// True for what a client sends.
    pub fn is_client(self) -> bool {
        matches!(
            self,
            DatagramKind::Connecting
                | DatagramKind::Ack
                | DatagramKind::Probe
                | DatagramKind::Closing
                | DatagramKind::Closed
        )
    }
}

/// One datagram as a trace shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    /// Its kind.
    pub kind: DatagramKind,
    /// Data: its index. Client messages: the ack (next index needed).
    /// Others: 0.
    pub index: u32,
    /// Client messages: the advertised window; others 0.
    pub window: u32,
    /// Client messages: the pacing rate asked for (datagrams/s, 0:
    /// unpaced); others 0.
    pub rate: u32,
    /// Bytes on the wire (UDP payload).
    pub len: u16,
    /// Data: a resend of an index sent before.
    pub resend: bool,
    /// It echoes a timestamp (an RTT sample can come of it).
    pub echo: bool,
}

impl Datagram {
    /// A datagram of `kind`, `len` bytes, the other fields zero.
    pub fn new(kind: DatagramKind, len: usize) -> Self {
        Self {
            kind,
            index: 0,
            window: 0,
            rate: 0,
            len: u16::try_from(len).unwrap_or(u16::MAX),
            resend: false,
            echo: false,
        }
    }
}

/// Why the server declared a transmission lost (qlog's `trigger`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossTrigger {
    /// An ack showed enough later datagrams (packet threshold) and the
    /// reordering window had passed.
    Reordering,
    /// The loss timer fired after the reordering window.
    Time,
    /// The client's probe asked for every hole.
    Probe,
}

impl LossTrigger {
    /// The qlog trigger name.
    pub fn name(self) -> &'static str {
        match self {
            LossTrigger::Reordering => "reordering_threshold",
            LossTrigger::Time => "time_threshold",
            LossTrigger::Probe => "pto_expired",
        }
    }
}

/// An endpoint's congestion figures at one moment. Counts are datagrams,
/// not bytes (every data datagram has the same size).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// The congestion window (client), or the window the client granted
    /// after the server's caps (server).
    pub window: u32,
    /// Data datagrams sent and neither acknowledged nor declared lost
    /// (the server's view; `None` at the client).
    pub in_flight: Option<u32>,
    /// Smoothed RTT.
    pub srtt: Option<Duration>,
    /// RTT variance.
    pub rttvar: Option<Duration>,
    /// Smallest RTT.
    pub min_rtt: Option<Duration>,
    /// Pacing rate in datagrams per second (0: unpaced).
    pub pacing_rate: u32,
    /// The rate controller's delivery-rate estimate, datagrams per second
    /// (client only).
    pub delivery_rate: Option<u32>,
    /// The rate controller's phase
    /// ([`RateControl::phase`](crate::proto::congestion::RateControl::phase);
    /// client only).
    pub phase: Option<u8>,
}

/// The name of a rate-control phase ([`Metrics::phase`]).
pub fn phase_name(phase: u8) -> &'static str {
    match phase {
        0 => "startup",
        1 => "drain",
        2 => "probe_up",
        3 => "probe_down",
        _ => "cruise",
    }
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceEvent {
    /// A datagram was written to be sent.
    Sent(Datagram),
    /// A datagram was read (it decoded and passed its integrity check).
    Received(Datagram),
    /// The server declared a transmission of `index` lost and queued it
    /// again.
    Lost {
        /// The index.
        index: u32,
        /// Why.
        trigger: LossTrigger,
    },
    /// The congestion figures changed.
    Metrics(Metrics),
}

/// One record: when, which session, what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traced {
    /// When (the `now` the endpoint was given).
    pub at: Instant,
    /// The session.
    pub uuid: Uuid,
    /// What happened.
    pub event: TraceEvent,
}

/// The bounded queue of records an endpoint keeps while tracing.
#[derive(Debug, Default)]
pub struct TraceQueue {
    on: bool,
    records: VecDeque<Traced>,
    dropped: u64,
}

impl TraceQueue {
    /// A queue that records only if `on`.
    pub fn new(on: bool) -> Self {
        Self {
            on,
            records: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Whether records are kept.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Records what `event` makes, if tracing is on (off: `event` is not
    /// called).
    #[inline]
    pub fn record(&mut self, at: Instant, uuid: Uuid, event: impl FnOnce() -> TraceEvent) {
        if self.on {
            self.push(Traced {
                at,
                uuid,
                event: event(),
            });
        }
    }

    fn push(&mut self, t: Traced) {
        if self.records.len() >= MAX_PENDING_TRACE {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(t);
    }

    /// The oldest record.
    pub fn pop(&mut self) -> Option<Traced> {
        self.records.pop_front()
    }

    /// Records dropped because nobody drained the queue.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_never_builds_the_event() {
        let mut q = TraceQueue::new(false);
        let t0 = crate::clock::now();
        q.record(t0, Uuid::nil(), || panic!("built while off"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn on_keeps_order_and_drops_the_oldest_past_the_bound() {
        let mut q = TraceQueue::new(true);
        let t0 = crate::clock::now();
        for i in 0..MAX_PENDING_TRACE as u32 + 2 {
            q.record(t0, Uuid::nil(), || TraceEvent::Lost {
                index: i,
                trigger: LossTrigger::Time,
            });
        }
        assert_eq!(q.dropped(), 2);
        let first = q.pop().map(|t| t.event);
        assert_eq!(
            first,
            Some(TraceEvent::Lost {
                index: 2,
                trigger: LossTrigger::Time
            })
        );
    }
}

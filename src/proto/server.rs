//! The server endpoint: many sessions keyed by UUID, one socket's worth of
//! datagrams in and out.
//!
//! Feed datagrams with [`Server::handle`]; send what
//! [`Server::poll_transmit`] writes (a batch of equal-size datagrams for one
//! destination at a time); wake it at [`Server::poll_timeout`]; read
//! [`Server::poll_event`] for session life-cycle and acknowledgement
//! latencies.
//!
//! Per session the server holds O(window) state: one `Slot` per index in
//! `[ack, high_water)` (sent but not cumulatively acknowledged) and a queue
//! of indices to send. Values come from the session seed
//! ([`Sequence`]), and the checksum is summed as each index is first sent.
//!
//! Loss recovery resends only holes. A hole is resent when the client
//! reports it lost: a datagram sent at least [`super::client::REORDER_THRESHOLD`] sends
//! after the hole's last transmission has been acknowledged (as RACK and
//! QUIC's packet threshold do), or the client probes after its RTO (a probe
//! resends every hole in the window).
//!
//! Every datagram that is not processed is counted under a [`Reject`]
//! reason; `received == accepted + rejected` always holds.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::client::{loss_threshold, REORDER_THRESHOLD};
use super::rtt::{RttConfig, RttEstimator};
use super::sack;
use super::sequence::{RunningChecksum, Sequence};
use super::wire::{
    ClientMessage, ErrorCode, ServerMessage, State, WireError, DATA_LEN, MAX_SERVER_DATAGRAM_LEN,
    MIN_CONNECTING_LEN, SERVER_TOKEN_LEN,
};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Most sessions held at once; past it new sessions are refused "busy".
    pub max_sessions: usize,
    /// Longest sequence a client may request.
    pub max_len: u32,
    /// Largest window honoured; larger requests are capped.
    pub max_window: u32,
    /// Idle sessions are freed after this long.
    pub session_lifetime: Duration,
    /// Sessions that never confirmed their token are freed after this long.
    pub handshake_lifetime: Duration,
    /// Minimum gap between two data datagrams of one session (0: none).
    pub pacing: Duration,
    /// Most datagrams in one `poll_transmit` batch.
    pub max_batch: usize,
    /// Seed for session seeds and tokens; drivers pass a random one.
    pub seed: u64,
    /// Emit [`ServerEvent::AckLatency`] for every acknowledged value.
    pub ack_latency_events: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_sessions: 1024,
            max_len: 100_000_000,
            max_window: 1024,
            session_lifetime: Duration::from_secs(30),
            handshake_lifetime: Duration::from_secs(10),
            pacing: Duration::ZERO,
            max_batch: 64,
            seed: 0,
            ack_latency_events: false,
        }
    }
}

/// Why a datagram was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Failed to decode (see [`WireError`]); CRC failures are counted apart.
    Malformed,
    /// Failed the CRC32C check.
    Corrupt,
    /// A server-to-client kind arrived at the server.
    WrongDirection,
    /// No session with that UUID (or it expired).
    UnknownSession,
    /// Token does not match the session's.
    Unauthorized,
    /// Length over `max_len`.
    LenTooLarge,
    /// Length differs from the session's.
    LenMismatch,
    /// `ack > len`.
    AckOutOfRange,
    /// `ack` past what the server ever sent.
    AckBeyondSent,
    /// Older than a message already processed (reordered or duplicated).
    Stale,
    /// CLOSING or CLOSED before every value was acknowledged.
    ClosingEarly,
    /// Session limit reached.
    Busy,
    /// The source address cannot be answered (port 0, unspecified,
    /// multicast or broadcast): dropped without a reply.
    UnusableSource,
}

impl Reject {
    /// Every reason, for reports.
    pub const ALL: [Reject; 13] = [
        Reject::Malformed,
        Reject::Corrupt,
        Reject::WrongDirection,
        Reject::UnknownSession,
        Reject::Unauthorized,
        Reject::LenTooLarge,
        Reject::LenMismatch,
        Reject::AckOutOfRange,
        Reject::AckBeyondSent,
        Reject::Stale,
        Reject::ClosingEarly,
        Reject::Busy,
        Reject::UnusableSource,
    ];

    /// A short snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Corrupt => "corrupt",
            Reject::WrongDirection => "wrong_direction",
            Reject::UnknownSession => "unknown_session",
            Reject::Unauthorized => "unauthorized",
            Reject::LenTooLarge => "len_too_large",
            Reject::LenMismatch => "len_mismatch",
            Reject::AckOutOfRange => "ack_out_of_range",
            Reject::AckBeyondSent => "ack_beyond_sent",
            Reject::Stale => "stale",
            Reject::ClosingEarly => "closing_early",
            Reject::Busy => "busy",
            Reject::UnusableSource => "unusable_source",
        }
    }
}

/// Server counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams passed to `handle`.
    pub datagrams_received: u64,
    /// Datagrams processed.
    pub accepted: u64,
    /// Datagrams not processed, by reason (indexed like [`Reject::ALL`]).
    pub rejected: [u64; Reject::ALL.len()],
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Data datagrams that were retransmissions.
    pub retransmits: u64,
    /// Sessions created.
    pub sessions_opened: u64,
    /// CONNECTING with a valid token for a live session.
    pub sessions_resumed: u64,
    /// Sessions closed by the CLOSED handshake.
    pub sessions_closed: u64,
    /// Sessions freed for idleness.
    pub sessions_expired: u64,
    /// Times a session moved to a new client address.
    pub migrations: u64,
    /// Windows of 0 raised to 1.
    pub window_zero: u64,
    /// Windows capped at `max_window`.
    pub window_capped: u64,
    /// Control replies dropped because the reply queue was full.
    pub replies_dropped: u64,
    /// Events dropped because nobody polled them.
    pub events_dropped: u64,
}

impl ServerStats {
    /// Count for one reason.
    pub fn rejected(&self, reason: Reject) -> u64 {
        self.rejected[reason as usize]
    }

    /// All rejections.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A new session.
    Opened {
        /// Its key.
        uuid: Uuid,
        /// The client's address.
        addr: SocketAddr,
        /// Requested length.
        len: u32,
    },
    /// A session resumed (CONNECTING with its token).
    Resumed {
        /// Its key.
        uuid: Uuid,
        /// The address it now comes from.
        addr: SocketAddr,
    },
    /// A session moved to a new address.
    Migrated {
        /// Its key.
        uuid: Uuid,
        /// The new address.
        addr: SocketAddr,
    },
    /// A session finished its CLOSED handshake.
    Closed {
        /// Its key.
        uuid: Uuid,
    },
    /// A session was freed for idleness.
    Expired {
        /// Its key.
        uuid: Uuid,
    },
    /// A value was acknowledged this long after its first send (only with
    /// `ack_latency_events`).
    AckLatency {
        /// The session.
        uuid: Uuid,
        /// First send to acknowledgement.
        latency: Duration,
    },
}

/// What `poll_transmit` wrote: `size` bytes in `buf`, made of
/// `size / segment_size` datagrams of `segment_size` bytes for `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send.
    pub destination: SocketAddr,
    /// Bytes written.
    pub size: usize,
    /// Size of each datagram.
    pub segment_size: usize,
}

impl Transmit {
    /// Number of datagrams.
    pub fn count(&self) -> usize {
        self.size / self.segment_size
    }
}

/// Whether a reply to `addr` could be delivered: port 0, the unspecified
/// address, multicast and broadcast sources are spoofed or broken, and a
/// send to them fails (or reaches many hosts).
pub fn is_usable_source(addr: SocketAddr) -> bool {
    let ip_ok = match addr.ip() {
        std::net::IpAddr::V4(ip) => {
            !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
        }
        std::net::IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    };
    addr.port() != 0 && ip_ok
}

/// Most control replies waiting to be sent; past it, replies are dropped
/// (the client retries on its timer).
const MAX_PENDING_REPLIES: usize = 4096;
/// Most data datagrams in flight to an address that has not yet echoed its
/// token: with the Accept, at most three times a minimal CONNECTING
/// (anti-amplification, as RFC 9000 §8).
const UNVALIDATED_WINDOW: u32 =
    ((3 * MIN_CONNECTING_LEN - MAX_SERVER_DATAGRAM_LEN) / DATA_LEN) as u32;
/// Most events waiting to be polled.
const MAX_PENDING_EVENTS: usize = 1 << 16;

/// Most copies of one index queued at once (see `Slot::queued`).
const MAX_QUEUED_COPIES: u8 = 2;

/// Per-index sending state, for `[ack, high_water)`.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Send order of the latest transmission (0: never sent).
    send_seq: u64,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    sends: u32,
    sacked: bool,
    /// Copies of this index waiting in the send queue: at most one, or two
    /// after a probe (a client probing has had timeouts: send twice).
    queued: u8,
}

#[derive(Debug)]
struct Session {
    uuid: Uuid,
    token: [u8; SERVER_TOKEN_LEN],
    /// The client presented the token at least once.
    confirmed: bool,
    addr: SocketAddr,
    seq: Sequence,
    /// Next index the client needs.
    ack: u32,
    /// First index never sent.
    high_water: u32,
    window: u32,
    slots: VecDeque<Slot>,
    send_queue: VecDeque<u32>,
    in_ready: bool,
    next_send_seq: u64,
    largest_acked_seq: u64,
    /// Sum of the values of `[0, summed)`: every index is added once, the
    /// first time `high_water` passes it.
    checksum: RunningChecksum,
    summed: u32,
    /// Newest client timestamp; echoed on everything we send.
    last_ts: u64,
    last_activity: Instant,
    /// The deadline under which this session sits in the expiry index.
    expiry_key: Instant,
    next_send_at: Instant,
    rtt: RttEstimator,
    /// When to look again for holes inside the reordering window.
    loss_check: Option<Instant>,
    /// The loss timer queued datagrams since the client's latest message.
    echo_held: bool,
}

impl Session {
    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot> {
        let off = index.checked_sub(self.ack)? as usize;
        self.slots.get_mut(off)
    }

    fn lifetime(&self, config: &ServerConfig) -> Duration {
        if self.confirmed {
            config.session_lifetime
        } else {
            config.handshake_lifetime.min(config.session_lifetime)
        }
    }
}

/// The server endpoint. See the module docs.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    sessions: HashMap<Uuid, Session>,
    /// Sessions with data queued, served round-robin.
    ready: VecDeque<Uuid>,
    replies: VecDeque<(SocketAddr, ServerMessage)>,
    /// (deadline, uuid) for every live session.
    expiry: BTreeSet<(Instant, Uuid)>,
    /// (when, uuid) for sessions with holes inside the reordering window.
    loss_checks: BTreeSet<(Instant, Uuid)>,
    events: VecDeque<ServerEvent>,
    rng: StdRng,
    stats: ServerStats,
}

impl Server {
    /// A server with no sessions.
    pub fn new(mut config: ServerConfig) -> Self {
        config.max_window = config.max_window.clamp(1, super::client::MAX_WINDOW);
        config.max_batch = config.max_batch.max(1);
        Self {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            sessions: HashMap::new(),
            ready: VecDeque::new(),
            replies: VecDeque::new(),
            expiry: BTreeSet::new(),
            loss_checks: BTreeSet::new(),
            events: VecDeque::new(),
            stats: ServerStats::default(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// True if a session with this UUID is live.
    pub fn has_session(&self, uuid: &Uuid) -> bool {
        self.sessions.contains_key(uuid)
    }

    /// The sequence a live session streams (for simulators and tests that
    /// check every value).
    pub fn sequence(&self, uuid: &Uuid) -> Option<Sequence> {
        self.sessions.get(uuid).map(|s| s.seq)
    }

    /// Feeds one datagram that arrived from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.datagrams_received += 1;
        if !is_usable_source(from) {
            return self.reject(Reject::UnusableSource);
        }
        let msg = match ClientMessage::decode(datagram) {
            Ok(m) => m,
            Err(WireError::BadCrc) => return self.reject(Reject::Corrupt),
            Err(WireError::UnknownKind(k)) if k & 0x80 != 0 => {
                return self.reject(Reject::WrongDirection)
            }
            Err(_) => return self.reject(Reject::Malformed),
        };
        let outcome = match msg.state {
            State::Connecting => self.on_connecting(now, from, &msg),
            _ => self.on_session_message(now, from, &msg),
        };
        match outcome {
            Ok(()) => self.stats.accepted += 1,
            Err(reason) => self.reject(reason),
        }
    }

    /// Writes the next batch of datagrams into `buf` (room for at least one
    /// datagram of [`MAX_SERVER_DATAGRAM_LEN`] bytes; a batch fills at most
    /// `max_batch` data datagrams or what fits).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if buf.len() < MAX_SERVER_DATAGRAM_LEN {
            return None;
        }
        if let Some((destination, msg)) = self.replies.pop_front() {
            let size = msg.encode(buf).ok()?;
            self.stats.datagrams_sent += 1;
            return Some(Transmit {
                destination,
                size,
                segment_size: size,
            });
        }
        let max = (buf.len() / DATA_LEN).min(self.config.max_batch);
        for _ in 0..self.ready.len() {
            let uuid = self.ready.pop_front()?;
            let Some(s) = self.sessions.get_mut(&uuid) else {
                continue;
            };
            if s.next_send_at > now {
                self.ready.push_back(uuid);
                continue;
            }
            let limit = if self.config.pacing.is_zero() { max } else { 1 };
            let mut count = 0;
            while count < limit {
                let Some(index) = s.send_queue.pop_front() else {
                    break;
                };
                let Some(slot) = s.slot_mut(index) else {
                    continue; // acknowledged meanwhile
                };
                slot.queued = slot.queued.saturating_sub(1);
                if slot.sacked {
                    continue;
                }
                let value = s.seq.get(index).unwrap_or(0);
                s.next_send_seq += 1;
                let send_seq = s.next_send_seq;
                let slot = s.slot_mut(index).expect("slot checked above");
                if slot.sends == 0 {
                    slot.first_sent = Some(now);
                } else {
                    self.stats.retransmits += 1;
                }
                slot.sends += 1;
                slot.last_sent = Some(now);
                slot.send_seq = send_seq;
                let msg = ServerMessage::Data {
                    index,
                    payload: value,
                    // Datagrams queued by the loss timer were not sent in
                    // answer to the client's latest message: echo nothing,
                    // so that no RTT sample includes the time we held them.
                    echo: if s.echo_held { 0 } else { s.last_ts },
                };
                let off = count * DATA_LEN;
                msg.encode(&mut buf[off..off + DATA_LEN]).ok()?;
                count += 1;
            }
            if !self.config.pacing.is_zero() {
                s.next_send_at = now + self.config.pacing;
            }
            if s.send_queue.is_empty() {
                s.in_ready = false;
            } else {
                self.ready.push_back(uuid);
            }
            if count > 0 {
                self.stats.datagrams_sent += count as u64;
                return Some(Transmit {
                    destination: s.addr,
                    size: count * DATA_LEN,
                    segment_size: DATA_LEN,
                });
            }
        }
        None
    }

    /// The earliest time [`Server::handle_timeout`] must be called: the next
    /// expiry check, loss check, or paced send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.expiry.first().map(|(at, _)| *at);
        let loss = self.loss_checks.first().map(|(at, _)| *at);
        let expiry = match (expiry, loss) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let pacing = if self.config.pacing.is_zero() {
            None
        } else {
            self.ready
                .iter()
                .filter_map(|u| self.sessions.get(u))
                .map(|s| s.next_send_at)
                .min()
        };
        match (expiry, pacing) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Frees sessions idle past their lifetime, and resends holes whose
    /// reordering window has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, uuid)) = self.loss_checks.first() {
            if at > now {
                break;
            }
            self.loss_checks.pop_first();
            let Some(s) = self.sessions.get_mut(&uuid) else {
                continue;
            };
            let scan = s.slots.len();
            let queued = s.send_queue.len();
            s.loss_check = detect_losses(s, now, false, scan);
            s.echo_held |= s.send_queue.len() > queued;
            if let Some(at) = s.loss_check {
                self.loss_checks.insert((at, uuid));
            }
            mark_ready(&mut self.ready, s);
        }
        while let Some(&(at, uuid)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            let Some(s) = self.sessions.get_mut(&uuid) else {
                continue;
            };
            let deadline = s.last_activity + s.lifetime(&self.config);
            if deadline > now {
                s.expiry_key = deadline;
                self.expiry.insert((deadline, uuid));
            } else {
                self.remove_session(&uuid);
                self.stats.sessions_expired += 1;
                tracing::debug!(%uuid, "session expired");
                self.push_event(ServerEvent::Expired { uuid });
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    fn reject(&mut self, reason: Reject) {
        self.stats.rejected[reason as usize] += 1;
    }

    fn push_event(&mut self, ev: ServerEvent) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            self.stats.events_dropped += 1;
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    fn reply(&mut self, to: SocketAddr, msg: ServerMessage) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.stats.replies_dropped += 1;
            return;
        }
        self.replies.push_back((to, msg));
    }

    fn refuse(&mut self, to: SocketAddr, code: ErrorCode, detail: u32, echo: u64) {
        self.reply(to, ServerMessage::Error { code, detail, echo });
    }

    fn on_connecting(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
    ) -> Result<(), Reject> {
        let echo = msg.timestamp;
        if let Some(s) = self.sessions.get(&msg.uuid) {
            let token_ok = msg.token == s.token;
            // A repeated first CONNECTING (its Accept was lost) may come
            // without a token until the client has confirmed one.
            let unconfirmed_repeat = msg.token.is_empty() && !s.confirmed;
            if unconfirmed_repeat && from != s.addr {
                // Without a token, only the address that opened the session
                // may repeat it: anyone else who knows the UUID would get the
                // token in our Accept and take the session over (defect 15).
                // Refuse without the token; a client that really moved
                // mid-handshake starts over under a new UUID.
                self.refuse(from, ErrorCode::Unauthorized, 0, echo);
                return Err(Reject::Unauthorized);
            }
            if msg.token.is_empty() && s.confirmed && from == s.addr {
                // A late duplicate of the client's own first CONNECTING (the
                // network held it back): the session is already confirmed.
                return Err(Reject::Stale);
            }
            if !token_ok && !unconfirmed_repeat {
                self.refuse(from, ErrorCode::Unauthorized, 0, echo);
                return Err(Reject::Unauthorized);
            }
            if msg.len != s.seq.len() {
                let len = s.seq.len();
                self.refuse(from, ErrorCode::LenMismatch, len, echo);
                return Err(Reject::LenMismatch);
            }
            if msg.ack > s.high_water {
                self.refuse(from, ErrorCode::AckOutOfRange, s.seq.len(), echo);
                return Err(Reject::AckBeyondSent);
            }
            let resumed = token_ok;
            let s = self.sessions.get_mut(&msg.uuid).expect("looked up above");
            if msg.ack < s.ack {
                // The client resumes from further back than we know (another
                // process with an older resume point): rewind. Values are
                // derived, so any index can be sent again.
                s.ack = msg.ack;
                s.high_water = msg.ack;
                s.slots.clear();
                s.send_queue.clear();
            }
            s.confirmed |= token_ok;
            // A new process may start its clock anew: accept any timestamp.
            s.last_ts = msg.timestamp;
            s.last_activity = now;
            let moved = s.addr != from;
            s.addr = from;
            let accept = ServerMessage::Accept {
                token: s.token,
                lifetime_ms: duration_ms(s.lifetime(&self.config)),
                max_window: self.config.max_window,
                echo,
            };
            let uuid = s.uuid;
            self.reply(from, accept);
            if resumed {
                self.stats.sessions_resumed += 1;
                self.push_event(ServerEvent::Resumed { uuid, addr: from });
            } else if moved {
                self.stats.migrations += 1;
            }
            self.apply_ack(now, uuid, msg, true);
            return Ok(());
        }
        if !msg.token.is_empty() {
            // Resuming a session we no longer have.
            self.refuse(from, ErrorCode::UnknownSession, 0, echo);
            return Err(Reject::UnknownSession);
        }
        if msg.len > self.config.max_len {
            self.refuse(from, ErrorCode::LenTooLarge, self.config.max_len, echo);
            return Err(Reject::LenTooLarge);
        }
        if msg.ack != 0 {
            self.refuse(from, ErrorCode::UnknownSession, 0, echo);
            return Err(Reject::UnknownSession);
        }
        if self.sessions.len() >= self.config.max_sessions {
            self.refuse(from, ErrorCode::Busy, self.config.max_sessions as u32, echo);
            return Err(Reject::Busy);
        }
        let token: [u8; SERVER_TOKEN_LEN] = self.rng.gen();
        let seed: u64 = self.rng.gen();
        let s = Session {
            uuid: msg.uuid,
            token,
            confirmed: false,
            addr: from,
            seq: Sequence::new(seed, msg.len),
            ack: 0,
            high_water: 0,
            window: 1,
            slots: VecDeque::new(),
            send_queue: VecDeque::new(),
            in_ready: false,
            next_send_seq: 0,
            largest_acked_seq: 0,
            checksum: RunningChecksum::default(),
            summed: 0,
            last_ts: msg.timestamp,
            last_activity: now,
            expiry_key: now,
            next_send_at: now,
            rtt: RttEstimator::new(RttConfig::default()),
            loss_check: None,
            echo_held: false,
        };
        let deadline = now + s.lifetime(&self.config);
        let accept = ServerMessage::Accept {
            token,
            lifetime_ms: duration_ms(s.lifetime(&self.config)),
            max_window: self.config.max_window,
            echo,
        };
        self.sessions.insert(msg.uuid, s);
        self.set_expiry(msg.uuid, deadline);
        self.stats.sessions_opened += 1;
        tracing::debug!(uuid = %msg.uuid, %from, len = msg.len, "session opened");
        self.push_event(ServerEvent::Opened {
            uuid: msg.uuid,
            addr: from,
            len: msg.len,
        });
        self.reply(from, accept);
        self.apply_ack(now, msg.uuid, msg, false);
        Ok(())
    }

    fn on_session_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
    ) -> Result<(), Reject> {
        let echo = msg.timestamp;
        let Some(s) = self.sessions.get_mut(&msg.uuid) else {
            if msg.state == State::Closed {
                // Our Closed reply was lost and the session is gone: answer
                // again so the client can finish (no larger than the request).
                self.reply(from, ServerMessage::Closed { echo });
                return Ok(());
            }
            self.refuse(from, ErrorCode::UnknownSession, 0, echo);
            return Err(Reject::UnknownSession);
        };
        if msg.token != s.token {
            self.refuse(from, ErrorCode::Unauthorized, 0, echo);
            return Err(Reject::Unauthorized);
        }
        if msg.len != s.seq.len() {
            let len = s.seq.len();
            self.refuse(from, ErrorCode::LenMismatch, len, echo);
            return Err(Reject::LenMismatch);
        }
        if msg.ack > s.seq.len() {
            let len = s.seq.len();
            self.refuse(from, ErrorCode::AckOutOfRange, len, echo);
            return Err(Reject::AckOutOfRange);
        }
        if msg.ack > s.high_water {
            return Err(Reject::AckBeyondSent);
        }
        if msg.timestamp < s.last_ts || msg.ack < s.ack {
            return Err(Reject::Stale);
        }
        s.confirmed = true;
        s.last_ts = msg.timestamp;
        s.last_activity = now;
        if s.addr != from {
            s.addr = from;
            self.stats.migrations += 1;
            let uuid = msg.uuid;
            tracing::debug!(%uuid, %from, "session migrated");
            self.push_event(ServerEvent::Migrated { uuid, addr: from });
        }
        let s = self.sessions.get_mut(&msg.uuid).expect("looked up above");
        match msg.state {
            State::Connected => {
                self.apply_ack(now, msg.uuid, msg, false);
                Ok(())
            }
            State::Closing => {
                self.apply_ack(now, msg.uuid, msg, false);
                let s = self.sessions.get(&msg.uuid).expect("still there");
                if s.ack < s.seq.len() {
                    return Err(Reject::ClosingEarly);
                }
                let checksum = s.checksum.sum();
                self.reply(from, ServerMessage::Checksum { checksum, echo });
                Ok(())
            }
            State::Closed => {
                if msg.ack < s.seq.len() || s.high_water < s.seq.len() {
                    return Err(Reject::ClosingEarly);
                }
                self.remove_session(&msg.uuid);
                self.stats.sessions_closed += 1;
                tracing::debug!(uuid = %msg.uuid, "session closed");
                self.push_event(ServerEvent::Closed { uuid: msg.uuid });
                self.reply(from, ServerMessage::Closed { echo });
                Ok(())
            }
            State::Connecting => unreachable!("handled by on_connecting"),
        }
    }

    /// Applies a client's ack, bitmap and window; queues holes to resend and
    /// new indices to send.
    fn apply_ack(&mut self, now: Instant, uuid: Uuid, msg: &ClientMessage<'_>, resend_all: bool) {
        let max_window = self.config.max_window;
        let want_latency = self.config.ack_latency_events;
        let Some(s) = self.sessions.get_mut(&uuid) else {
            return;
        };
        let mut latencies: Vec<Duration> = Vec::new();
        // Cumulative part.
        while s.ack < msg.ack {
            let Some(slot) = s.slots.pop_front() else {
                break;
            };
            s.ack += 1;
            if !slot.sacked {
                on_acked(s, &slot, now, want_latency, &mut latencies);
            }
        }
        // Selective part: only indices we have sent.
        let limit = s.high_water;
        for index in sack::held(msg.ack, msg.sack) {
            if index >= limit {
                break;
            }
            let Some(slot) = s.slot_mut(index) else {
                break;
            };
            if !slot.sacked {
                slot.sacked = true;
                let copy = *slot;
                on_acked(s, &copy, now, want_latency, &mut latencies);
            }
        }
        // Window.
        s.window = match msg.window {
            0 => {
                self.stats.window_zero += 1;
                1
            }
            w if w > max_window => {
                self.stats.window_capped += 1;
                max_window
            }
            w => w,
        };
        if !s.confirmed {
            // The address is not validated yet: send it no more than three
            // times the 1200-byte CONNECTING that paid for the reply.
            s.window = s.window.min(UNVALIDATED_WINDOW);
        }
        // A probe (or a CONNECTING) says: everything unacknowledged is lost.
        // The client sends probes only after its RTO, so this cannot repeat
        // faster than about once per round trip.
        let probe = msg.is_probe() || resend_all;
        // Holes exist only below the highest index the client holds; with
        // no bitmap and no probe there is nothing to look for, which keeps
        // the common ack O(1) instead of O(window).
        let scan = if probe {
            s.slots.len()
        } else {
            msg.sack.len() * 8 + 1
        };
        s.echo_held = false;
        let recheck = detect_losses(s, now, probe, scan);
        let old = std::mem::replace(&mut s.loss_check, recheck);
        let in_window = s.ack.saturating_add(s.window);
        // New data within the window.
        let end = in_window.min(s.seq.len());
        while s.high_water < end {
            if s.high_water == s.summed {
                s.checksum.add(s.seq.get(s.high_water).unwrap_or(0));
                s.summed += 1;
            }
            s.slots.push_back(Slot {
                queued: 1,
                ..Slot::default()
            });
            s.send_queue.push_back(s.high_water);
            s.high_water += 1;
        }
        mark_ready(&mut self.ready, s);
        self.move_loss_check(uuid, old, recheck);
        for latency in latencies {
            self.push_event(ServerEvent::AckLatency { uuid, latency });
        }
    }

    fn move_loss_check(&mut self, uuid: Uuid, old: Option<Instant>, new: Option<Instant>) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            self.loss_checks.remove(&(at, uuid));
        }
        if let Some(at) = new {
            self.loss_checks.insert((at, uuid));
        }
    }

    /// Forgets a session and everything that points at it.
    fn remove_session(&mut self, uuid: &Uuid) {
        if let Some(s) = self.sessions.remove(uuid) {
            self.expiry.remove(&(s.expiry_key, *uuid));
            if let Some(at) = s.loss_check {
                self.loss_checks.remove(&(at, *uuid));
            }
        }
        self.ready.retain(|u| u != uuid);
    }

    fn set_expiry(&mut self, uuid: Uuid, deadline: Instant) {
        if let Some(s) = self.sessions.get_mut(&uuid) {
            self.expiry.remove(&(s.expiry_key, uuid));
            s.expiry_key = deadline;
            self.expiry.insert((deadline, uuid));
        }
    }
}

/// Puts a session with queued datagrams in the round-robin, once.
fn mark_ready(ready: &mut VecDeque<Uuid>, s: &mut Session) {
    if !s.send_queue.is_empty() && !s.in_ready {
        s.in_ready = true;
        ready.push_back(s.uuid);
    }
}

/// Queues the holes that count as lost; returns when to look again at holes
/// that passed the packet threshold but are still inside the reordering
/// window.
///
/// A hole is lost when a datagram sent at least `loss_threshold` sends after
/// its last transmission has been acknowledged (packet threshold), and one
/// smallest RTT plus a quarter (the reordering window, as RACK) has passed
/// since that transmission: a datagram merely overtaken by later ones
/// arrives within that time. A probe makes every hole lost at once.
fn detect_losses(s: &mut Session, now: Instant, probe: bool, scan: usize) -> Option<Instant> {
    // Only the count up to the reorder threshold matters.
    let outstanding = s
        .slots
        .iter()
        .filter(|x| !x.sacked && x.sends > 0)
        .take(REORDER_THRESHOLD as usize + 1)
        .count() as u32;
    let threshold = s
        .largest_acked_seq
        .saturating_sub(u64::from(loss_threshold(outstanding)));
    let grace = s.rtt.min().map(|m| m + m / 4);
    let in_window = s.ack.saturating_add(s.window);
    let mut recheck: Option<Instant> = None;
    let mut to_queue = Vec::new();
    for (off, slot) in s.slots.iter_mut().enumerate().take(scan) {
        let index = s.ack + off as u32;
        if index >= in_window {
            break;
        }
        if slot.sacked || slot.sends == 0 {
            continue;
        }
        if probe {
            if slot.queued < MAX_QUEUED_COPIES {
                slot.queued += 1;
                to_queue.push(index);
            }
            continue;
        }
        if slot.queued > 0 || slot.send_seq > threshold {
            continue;
        }
        let due = match (grace, slot.last_sent) {
            (Some(g), Some(t)) => t + g,
            _ => now,
        };
        if due <= now {
            slot.queued += 1;
            to_queue.push(index);
        } else {
            recheck = Some(recheck.map_or(due, |r| r.min(due)));
        }
    }
    s.send_queue.extend(to_queue);
    recheck
}

/// Bookkeeping when a sent index is first acknowledged.
fn on_acked(s: &mut Session, slot: &Slot, now: Instant, latency: bool, out: &mut Vec<Duration>) {
    s.largest_acked_seq = s.largest_acked_seq.max(slot.send_seq);
    if let Some(first) = slot.first_sent {
        let lat = now.saturating_duration_since(first);
        if slot.sends == 1 {
            // Karn: only unambiguous samples feed the server's RTT.
            s.rtt.on_sample(lat);
        }
        if latency {
            out.push(lat);
        }
    }
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

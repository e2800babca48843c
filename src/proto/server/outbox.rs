//! What the server hands back to its driver: replies, events and counters.
//!
//! The endpoint and its sessions write into one [`Outbox`] that lives beside
//! the session table, so a session can queue a reply or count a resend while
//! the endpoint holds it mutably: no re-lookups, no overlapping borrows.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use uuid::Uuid;

use crate::proto::trace::TraceQueue;
use crate::proto::wire::{ErrorCode, ServerMessage};

/// Why a datagram was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Failed to decode (see [`WireError`](crate::proto::wire::WireError)); CRC failures are counted apart.
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
    /// A new session under pressure (or with retry always on) must prove
    /// its address first: answered with a Retry.
    RetryRequired,
    /// A retry token that is forged, for another client, or expired:
    /// answered with a fresh Retry.
    InvalidRetryToken,
    /// For a session this endpoint does not hold, while a shared store is
    /// asked for it: held and processed again when the lookup completes
    /// (so it is counted twice in `datagrams_received`), or dropped when
    /// too many lookups are in flight.
    StoreLookup,
    /// A new session refused because the shared store is unreachable
    /// (answered Busy with detail 0): no other endpoint could resume it.
    StoreUnavailable,
    /// A datagram of another protocol version: answered with a
    /// `WrongVersion` error in this server's version (when it is at least
    /// as long as the answer), so that the client can name both versions.
    WrongVersion,
    /// A sealed datagram that did not open (forged, damaged, or for no
    /// session this endpoint holds): dropped, never believed.
    Undecryptable,
    /// A sealed datagram that opened before (a replay): dropped.
    Replayed,
    /// A plain datagram for a sealed session (other than the repeat of
    /// its handshake): dropped.
    Unsealed,
    /// A CONNECTING whose handshake message did not check out.
    HandshakeFailed,
    /// A plain CONNECTING to a server that requires encryption.
    EncryptionRequired,
}

impl Reject {
    /// Every reason, for reports.
    pub const ALL: [Reject; 23] = [
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
        Reject::RetryRequired,
        Reject::InvalidRetryToken,
        Reject::StoreLookup,
        Reject::StoreUnavailable,
        Reject::WrongVersion,
        Reject::Undecryptable,
        Reject::Replayed,
        Reject::Unsealed,
        Reject::HandshakeFailed,
        Reject::EncryptionRequired,
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
            Reject::RetryRequired => "retry_required",
            Reject::InvalidRetryToken => "invalid_retry_token",
            Reject::StoreLookup => "store_lookup",
            Reject::StoreUnavailable => "store_unavailable",
            Reject::WrongVersion => "wrong_version",
            Reject::Undecryptable => "undecryptable",
            Reject::Replayed => "replayed",
            Reject::Unsealed => "unsealed",
            Reject::HandshakeFailed => "handshake_failed",
            Reject::EncryptionRequired => "encryption_required",
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
    /// Transmissions declared lost (by the packet and time thresholds, or
    /// by a client's probe) and queued to be sent again.
    pub losses: u64,
    /// Sessions created.
    pub sessions_opened: u64,
    /// CONNECTING with a valid token for a live session.
    pub sessions_resumed: u64,
    /// Sessions closed by the CLOSED handshake.
    pub sessions_closed: u64,
    /// Sessions freed by a CLOSED with the ABORT flag (the client gave up
    /// before holding every value).
    pub sessions_aborted: u64,
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
    /// Probes read as plain acks because a probe had made the session
    /// resend its window less than one smallest RTT before.
    pub probes_limited: u64,
    /// Path challenges sent to an address a session moved to.
    pub path_challenges: u64,
    /// Addresses that answered a path challenge.
    pub path_validations: u64,
    /// Data sends held back because the address was not validated and had
    /// used its budget (three times what it sent).
    pub amplification_limited: u64,
    /// Sessions opened by a CONNECTING with a valid retry token.
    pub retry_validated: u64,
    /// Handshakes that had proven nothing, freed to make room for a client
    /// that proved its address.
    pub pending_evicted: u64,
    /// Windows lowered to the session's share of the server-wide window
    /// budget.
    pub window_budget_capped: u64,
    /// Probes (acks a client's timer sent) that reached their session; the
    /// client sends each probe twice.
    pub probes: u64,
    /// Session records handed to the shared store (first writes and
    /// refreshes).
    pub store_writes: u64,
    /// Of those, refreshes of a record already written.
    pub store_refreshes: u64,
    /// Records removed from the store (sessions closed or aborted).
    pub store_removes: u64,
    /// Lookups asked of the store for a session this endpoint did not hold.
    pub store_lookups: u64,
    /// Lookups the store answered with nothing (the session is unknown).
    pub store_misses: u64,
    /// Lookups that failed because the store was unreachable.
    pub store_lookups_failed: u64,
    /// Store operations dropped because the queue to the driver was full.
    pub store_ops_dropped: u64,
    /// Sessions carried on from a store record (started by another
    /// endpoint, or by this one before a restart).
    pub sessions_restored: u64,
    /// Stale copies of a session carried forward to the ack its client
    /// reached on another endpoint.
    pub sessions_fast_forwarded: u64,
    /// Noise handshakes computed (X25519 work): only for CONNECTINGs that
    /// passed Retry and the admission limits.
    pub handshakes: u64,
    /// Sessions opened sealed.
    pub sessions_sealed: u64,
    /// Repeated handshake messages answered with the stored reply.
    pub handshake_repeats: u64,
    /// Sealed datagrams that did not open.
    pub undecryptable: u64,
    /// Sealed datagrams refused as replays.
    pub replayed: u64,
}

impl std::ops::AddAssign<&ServerStats> for ServerStats {
    /// Adds another endpoint's counters (workers of one process).
    fn add_assign(&mut self, o: &ServerStats) {
        // Destructured without `..`: a new counter must be added here.
        let ServerStats {
            datagrams_received,
            accepted,
            rejected,
            datagrams_sent,
            retransmits,
            losses,
            sessions_opened,
            sessions_resumed,
            sessions_closed,
            sessions_aborted,
            sessions_expired,
            migrations,
            window_zero,
            window_capped,
            replies_dropped,
            events_dropped,
            probes_limited,
            path_challenges,
            path_validations,
            amplification_limited,
            retry_validated,
            pending_evicted,
            window_budget_capped,
            probes,
            store_writes,
            store_refreshes,
            store_removes,
            store_lookups,
            store_misses,
            store_lookups_failed,
            store_ops_dropped,
            sessions_restored,
            sessions_fast_forwarded,
            handshakes,
            sessions_sealed,
            handshake_repeats,
            undecryptable,
            replayed,
        } = o;
        for (a, b) in self.rejected.iter_mut().zip(rejected) {
            *a += b;
        }
        self.datagrams_received += datagrams_received;
        self.accepted += accepted;
        self.datagrams_sent += datagrams_sent;
        self.retransmits += retransmits;
        self.losses += losses;
        self.sessions_opened += sessions_opened;
        self.sessions_resumed += sessions_resumed;
        self.sessions_closed += sessions_closed;
        self.sessions_aborted += sessions_aborted;
        self.sessions_expired += sessions_expired;
        self.migrations += migrations;
        self.window_zero += window_zero;
        self.window_capped += window_capped;
        self.replies_dropped += replies_dropped;
        self.events_dropped += events_dropped;
        self.probes_limited += probes_limited;
        self.path_challenges += path_challenges;
        self.path_validations += path_validations;
        self.amplification_limited += amplification_limited;
        self.retry_validated += retry_validated;
        self.pending_evicted += pending_evicted;
        self.window_budget_capped += window_budget_capped;
        self.probes += probes;
        self.store_writes += store_writes;
        self.store_refreshes += store_refreshes;
        self.store_removes += store_removes;
        self.store_lookups += store_lookups;
        self.store_misses += store_misses;
        self.store_lookups_failed += store_lookups_failed;
        self.store_ops_dropped += store_ops_dropped;
        self.sessions_restored += sessions_restored;
        self.sessions_fast_forwarded += sessions_fast_forwarded;
        self.handshakes += handshakes;
        self.sessions_sealed += sessions_sealed;
        self.handshake_repeats += handshake_repeats;
        self.undecryptable += undecryptable;
        self.replayed += replayed;
    }
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
        /// Data datagrams the session sent (first sends and resends).
        data_sent: u64,
    },
    /// A session was freed for idleness.
    Expired {
        /// Its key.
        uuid: Uuid,
        /// Data datagrams the session sent (first sends and resends).
        data_sent: u64,
    },
    /// A value was acknowledged this long after its first send (only with
    /// `ack_latency_events`).
    AckLatency {
        /// The session.
        uuid: Uuid,
        /// First send to acknowledgement.
        latency: Duration,
        /// The value was sent more than once, so the latency is not an
        /// RTT sample (Karn).
        retransmitted: bool,
    },
}

/// Most control replies waiting to be sent; past it, replies are dropped
/// (the client retries on its timer).
const MAX_PENDING_REPLIES: usize = 4096;
/// Most events waiting to be polled.
const MAX_PENDING_EVENTS: usize = 1 << 16;

/// Replies, events and counters waiting for the driver.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Control replies (destination, the session they are for, message),
    /// sent before any data.
    pub(crate) replies: VecDeque<(SocketAddr, Uuid, ServerMessage)>,
    /// Events for [`super::Server::poll_event`].
    pub(crate) events: VecDeque<ServerEvent>,
    /// Counters.
    pub(crate) stats: ServerStats,
    /// Trace records, when [`super::ServerConfig::trace`] is on.
    pub(crate) trace: TraceQueue,
}

impl Outbox {
    /// Counts a datagram that was not processed.
    pub(crate) fn reject(&mut self, reason: Reject) {
        self.stats.rejected[reason as usize] += 1;
    }

    /// Queues an event, dropping the oldest when nobody polls.
    pub(crate) fn event(&mut self, ev: ServerEvent) {
        if self.events.len() >= MAX_PENDING_EVENTS {
            self.stats.events_dropped += 1;
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }

    /// Queues a control reply about the session `uuid` (dropped, and
    /// counted, when the queue is full).
    pub(crate) fn reply(&mut self, to: SocketAddr, uuid: Uuid, msg: ServerMessage) {
        if self.replies.len() >= MAX_PENDING_REPLIES {
            self.stats.replies_dropped += 1;
            return;
        }
        self.replies.push_back((to, uuid, msg));
    }

    /// Refuses a request with an error reply; returns `reason`, for the
    /// caller to hand back (the endpoint counts it).
    pub(crate) fn refuse(
        &mut self,
        to: SocketAddr,
        uuid: Uuid,
        code: ErrorCode,
        detail: u32,
        echo: u64,
        reason: Reject,
    ) -> Reject {
        self.reply(to, uuid, ServerMessage::Error { code, detail, echo });
        reason
    }

    /// Queues an [`ServerEvent::AckLatency`].
    pub(crate) fn ack_latency(&mut self, uuid: Uuid, latency: Duration, retransmitted: bool) {
        self.event(ServerEvent::AckLatency {
            uuid,
            latency,
            retransmitted,
        });
    }
}

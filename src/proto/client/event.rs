//! What a client tells its application: events, failures and counters.

use std::time::Duration;

use uuid::Uuid;

/// Why a transfer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The values received do not add up to the server's checksum.
    #[error("checksum mismatch: server says {expected}, values received sum to {actual}")]
    ChecksumMismatch {
        /// The server's checksum.
        expected: u64,
        /// The sum of what was received.
        actual: u64,
    },
    /// Nothing was ever heard from the server.
    #[error("no answer from the server after {0:?}")]
    NoAnswer(Duration),
    /// The server went silent mid-transfer.
    #[error("the server went silent for {0:?}")]
    Timeout(Duration),
    /// The server no longer knows the session (expired or never existed).
    #[error("session expired or unknown to the server")]
    SessionExpired,
    /// The server is at its session limit.
    #[error("server busy: at its session limit")]
    ServerBusy,
    /// The server refused the request.
    #[error("bad request: {0}")]
    BadRequest(BadRequest),
    /// The server proved another key than the one this client trusts.
    #[error("the server's key is {offered}, but this client expects {expected}")]
    KeyMismatch {
        /// The key pinned or remembered.
        expected: crate::proto::crypto::PublicKey,
        /// The key the server proved it holds.
        offered: crate::proto::crypto::PublicKey,
    },
    /// The client asked for a sealed session and the server answered in
    /// clear (it does not encrypt, or something on the path strips the
    /// handshake).
    #[error("the server answered without encryption (run it with --encryption preferred, or use --no-encryption)")]
    NotEncrypted,
}

/// The kinds of request a server refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// The length is over the server's limit.
    #[error("length over the server's limit of {max}")]
    LenTooLarge {
        /// The server's limit.
        max: u32,
    },
    /// A resume asked for another length than the session has.
    #[error("length differs from the session's ({session})")]
    LenMismatch {
        /// The session's length.
        session: u32,
    },
    /// Wrong token, or the UUID belongs to another client.
    #[error("not authorised for this session (wrong token, or UUID in use)")]
    Unauthorized,
    /// The server saw an ack past the end.
    #[error("ack out of range (length {len})")]
    AckOutOfRange {
        /// The session's length.
        len: u32,
    },
    /// The server seals every session; this client asked for a plain one.
    #[error(
        "the server requires encryption (drop --no-encryption, pin its key with --server-key)"
    )]
    EncryptionRequired,
    /// The server speaks another wire protocol version.
    #[error("the server speaks protocol version {server}, this client version {client}")]
    WrongVersion {
        /// The server's version.
        server: u8,
        /// The client's version.
        client: u8,
    },
}

/// What the application sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server accepted the session.
    Connected,
    /// The next value in order.
    Value {
        /// Its index.
        index: u32,
        /// The value.
        value: u32,
        /// Time from the index becoming eligible to this delivery.
        latency: Duration,
    },
    /// One unambiguous RTT sample.
    RttSample(Duration),
    /// The checksum matched.
    Verified {
        /// The checksum.
        checksum: u64,
    },
    /// The server refused to continue an unconfirmed handshake (our address
    /// changed, or the UUID is in use): the transfer starts over under this
    /// new UUID. Nothing had been delivered.
    Restarted {
        /// The new session key.
        uuid: Uuid,
    },
    /// The session is closed; nothing more will happen.
    Completed,
    /// The transfer failed; nothing more will happen.
    Failed(ClientError),
    /// The current server is taken for gone (only with
    /// [`ClientConfig::servers`](super::ClientConfig::servers) above one):
    /// the client sends nothing more until the driver moves it to the next
    /// server with [`Client::failover`](super::Client::failover).
    ServerLost {
        /// Why.
        reason: LostReason,
    },
}

/// Why a client takes its server for gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LostReason {
    /// Nothing heard through this many probe timeouts in a row (see
    /// [`SILENT_PROBES_BEFORE_FAILOVER`](crate::proto::recovery::SILENT_PROBES_BEFORE_FAILOVER)).
    #[error("silent through {timeouts} probe timeouts")]
    Silent {
        /// Probe timeouts without an answer.
        timeouts: u32,
    },
    /// The server answered that it does not know the session.
    #[error("does not know the session")]
    UnknownSession,
}

/// Counters for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Datagrams handed out by `poll_transmit`.
    pub datagrams_sent: u64,
    /// Datagrams passed to `handle`.
    pub datagrams_received: u64,
    /// Data datagrams for indices already held or delivered.
    pub duplicates: u64,
    /// Datagrams that failed the integrity check: damaged, or meant for
    /// another session (the server keys its CRC with the session's UUID).
    pub corrupt: u64,
    /// Datagrams that decoded but made no sense (bad kind, past the end).
    pub invalid: u64,
    /// Data outside the reorder buffer.
    pub out_of_window: u64,
    /// Acks that reported a hole or were probes: requests for retransmission.
    pub retransmit_requests: u64,
    /// Acks sent in CONNECTED.
    pub acks_sent: u64,
    /// Retransmission-timer expiries.
    pub timeouts: u64,
    /// CONNECTING datagrams sent.
    pub handshakes: u64,
    /// Handshakes started over under a new UUID.
    pub restarts: u64,
    /// Retry tokens received (the server asked us to prove our address).
    pub retries: u64,
    /// Path challenges received (the server saw us from a new address).
    pub path_challenges: u64,
    /// Moves to another server ([`Client::failover`](super::Client::failover)).
    pub failovers: u64,
    /// Sealed datagrams that did not open (forged, damaged, another
    /// session's): dropped.
    pub undecryptable: u64,
    /// Sealed datagrams refused as replays.
    pub replayed: u64,
    /// Plain datagrams ignored once the session was sealed (a clear
    /// refusal or close from anyone on the path).
    pub unsealed: u64,
}

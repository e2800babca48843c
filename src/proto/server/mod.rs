//! The server side of the protocol: one endpoint, many sessions keyed by
//! UUID, one socket's worth of datagrams in and out.
//!
//! Feed datagrams with [`Server::handle`]; send what
//! [`Server::poll_transmit`] writes (a batch of equal-size datagrams for one
//! destination at a time, at most the number the caller allows); wake it at
//! [`Server::poll_timeout`]; read [`Server::poll_event`] for session
//! life-cycle and acknowledgement latencies.
//!
//! The pieces, as quinn-proto splits `Endpoint` from `Connection`:
//! - `endpoint`: the [`Server`] itself: routing by UUID, admission, limits,
//!   expiry, address validation, and the fair round-robin of sends (its
//!   `admission` part decides on new sessions, its `sharing` part speaks
//!   to the shared store);
//! - `table`: the session table, which owns the sessions and keeps the
//!   endpoint's indices over them (round-robin, expiry and loss-check
//!   deadlines, pending handshakes, window slots) consistent;
//! - `session`: one client's send state, the checks its messages must pass
//!   (token, length, ack range, order), acknowledgements, loss detection
//!   and resends;
//! - `outbox`: the replies, events and counters both write to;
//! - `pacer`: a session's token bucket at the rate its client asks for;
//! - `path`: which addresses a session has proven, and the
//!   anti-amplification budget for one it has not;
//! - `secret`: the key and the retry tokens it authenticates
//!   (the endpoint's `admission` part decides when a Retry is needed);
//! - `record`: what the endpoint writes to, and asks of, a session store
//!   shared with other endpoints ([`StoreOp`], [`SessionRecord`]).
//!
//! Every datagram that is not processed is counted under a [`Reject`]
//! reason; `received == accepted + rejected` always holds.

use std::net::SocketAddr;
use std::time::Duration;

mod endpoint;
mod outbox;
mod pacer;
mod path;
mod record;
mod sealing;
mod secret;
mod session;
mod table;

pub use endpoint::Server;
pub use outbox::{Reject, ServerEvent, ServerStats};
pub use record::{Lookup, LookupOutcome, SessionRecord, StoreOp, StoreSettings};

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
    /// Where session seeds and tokens come from. `None` (the default): a
    /// generator seeded from the operating system's CSPRNG, so tokens
    /// cannot be predicted. `Some(seed)`: deterministic, for the simulator
    /// and tests that must replay exactly.
    pub seed: Option<u64>,
    /// Emit [`ServerEvent::AckLatency`] for every acknowledged value.
    pub ack_latency_events: bool,
    /// When a new client must prove its address with a retry token before
    /// it gets a session.
    pub retry: RetryPolicy,
    /// Most window slots (indices in flight) over all sessions together:
    /// each session's window is capped at its share, `window_budget / live
    /// sessions` (at least [`MIN_WINDOW_SHARE`]), so memory stays bounded
    /// whatever windows clients ask for. Each slot costs about 60 bytes.
    pub window_budget: usize,
    /// A session store shared with other endpoints (worker threads,
    /// processes, hosts): `None` (the default) keeps sessions in this
    /// endpoint only; `Some` makes it write records and look up sessions
    /// it does not hold (see [`Server::poll_store_op`]).
    pub store: Option<StoreSettings>,
    /// The key of retry tokens. Endpoints that share clients share it;
    /// `None`: drawn like the session seeds (see `seed`).
    pub secret: Option<[u8; 32]>,
    /// Keep trace records for [`Server::poll_trace`] (datagrams, declared
    /// losses, each session's window and flight): off by default, and
    /// then free (see [`crate::proto::trace`]).
    pub trace: bool,
    /// Whether sessions are sealed ([`Encryption::Off`] by default).
    pub encryption: Encryption,
    /// The server's static key; encryption needs one (without it the
    /// server stays plain whatever `encryption` says).
    pub key: Option<crate::proto::crypto::ServerKey>,
}

/// Whether a server seals its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Plain only: a handshake in a CONNECTING is ignored (the client,
    /// which asked for a sealed session, refuses the plain Accept).
    #[default]
    Off,
    /// Sealed for clients that ask (a handshake in their CONNECTING),
    /// plain for the others.
    Preferred,
    /// Sealed only: a plain CONNECTING is refused.
    Required,
}

/// The smallest window share the budget leaves a session.
pub const MIN_WINDOW_SHARE: u32 = 32;

/// When the server answers a new CONNECTING with a Retry (stateless address
/// validation, as QUIC's Retry) instead of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetryPolicy {
    /// Never: every CONNECTING gets a session while there is room.
    Never,
    /// When handshakes that have proven nothing hold an eighth of the
    /// session table (a spoofed flood, or a burst of new clients): one
    /// round trip more for new clients then, none otherwise.
    #[default]
    UnderPressure,
    /// Always: every new client pays one round trip more.
    Always,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_sessions: 1024,
            max_len: 100_000_000,
            max_window: crate::proto::recovery::MAX_WINDOW,
            session_lifetime: Duration::from_secs(30),
            handshake_lifetime: Duration::from_secs(10),
            pacing: Duration::ZERO,
            max_batch: 64,
            seed: None,
            ack_latency_events: false,
            retry: RetryPolicy::UnderPressure,
            window_budget: 256 * 1024,
            store: None,
            secret: None,
            trace: false,
            encryption: Encryption::Off,
            key: None,
        }
    }
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

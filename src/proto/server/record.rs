//! What the endpoint tells a shared session store, and what it needs back.
//!
//! A session is cheap to share: its values are a pure function of
//! `(seed, index)` and the client reports its progress in every ack, so a
//! [`SessionRecord`] (UUID, seed, length, token, and a checksum checkpoint)
//! is all another endpoint needs to carry the session on. The core does no
//! I/O: it queues [`StoreOp`]s that the driver drains with
//! [`Server::poll_store_op`](super::Server::poll_store_op) and carries out
//! asynchronously, so the data path never waits on the store.
//!
//! Writes happen when a session is confirmed (its client presented the
//! token: spoofed CONNECTINGs never reach the store), when a confirmed
//! session is active and its record is older than
//! [`StoreSettings::refresh`] (not per datagram), and when the client
//! closes or aborts it. Expiry writes nothing: the store's own TTL (the
//! session lifetime, renewed by each write) forgets a session nobody
//! refreshed, and an endpoint that let its stale copy expire must not
//! delete a record another endpoint is still refreshing.
//!
//! A token-bearing message for a UUID the endpoint does not hold becomes a
//! [`Lookup`]; the driver answers it with
//! [`Server::complete_lookup`](super::Server::complete_lookup), which
//! restores the session (or refuses it as unknown) and processes the
//! datagram then.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::proto::wire::SERVER_TOKEN_LEN;

/// How the endpoint uses a shared store (see
/// [`ServerConfig::store`](super::ServerConfig::store)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// Least time between two writes of one active session's record.
    pub refresh: Duration,
    /// Most lookups in flight at once; datagrams past it are dropped (the
    /// client retransmits).
    pub max_lookups: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            refresh: Duration::from_secs(5),
            max_lookups: 1024,
        }
    }
}

/// Everything another endpoint needs to carry a session on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session's key.
    pub uuid: Uuid,
    /// Seed of its values.
    pub seed: u64,
    /// Length of its sequence.
    pub len: u32,
    /// The token its client presents.
    pub token: [u8; SERVER_TOKEN_LEN],
    /// Idle lifetime, in ms: the store forgets the record this long after
    /// its latest write.
    pub lifetime_ms: u64,
    /// First index not in [`checkpoint_sum`](Self::checkpoint_sum), so
    /// that a restoring endpoint sums only the values between it and the
    /// client's ack, not the whole prefix.
    pub checkpoint_index: u32,
    /// Sum of the values of `[0, checkpoint_index)`.
    pub checkpoint_sum: u64,
}

impl SessionRecord {
    /// The record's time to live in the store.
    pub fn lifetime(&self) -> Duration {
        Duration::from_millis(self.lifetime_ms)
    }
}

/// A datagram held until the store says whether it knows its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The session asked for.
    pub uuid: Uuid,
    /// Where the datagram came from.
    pub from: SocketAddr,
    /// The datagram, processed again once the lookup completes.
    pub datagram: Vec<u8>,
}

/// What the store answered to a [`Lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// The store holds this record.
    Found(SessionRecord),
    /// The store does not know the session: it is refused as unknown.
    Missing,
    /// The store could not be asked: the datagram is dropped without an
    /// answer (the client retransmits).
    Unavailable,
}

/// One thing for the driver to do with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Write the record, with its lifetime as TTL.
    Put(SessionRecord),
    /// Forget the session (closed or aborted by its client).
    Remove(Uuid),
    /// Read the session's record and hand it to
    /// [`Server::complete_lookup`](super::Server::complete_lookup).
    Lookup(Lookup),
}

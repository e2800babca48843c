//! tokio drivers of the protocol core: one UDP socket per server worker,
//! one per client.
//!
//! An embedder starts a server with [`server::Server::builder`] and runs a
//! transfer with [`stream::Client`]; [`client`] is the driver loop behind
//! the latter, [`session_store`] the stores workers and instances share;
//! [`keyfile`] keeps a server's static key on disk and [`known_servers`]
//! the keys a client trusts.

// Network input must never panic the drivers: no `unwrap` outside tests (an
// invariant that cannot fail says why, with `expect`).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod batch;
pub mod client;
pub mod heartbeat;
pub mod keyfile;
pub mod known_servers;
pub mod log_limit;
pub mod metrics;
pub mod ops;
mod pending_acks;
pub mod qlog;
mod security_log;
pub mod server;
pub mod session_store;
pub mod socket;
pub mod stream;

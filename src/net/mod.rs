//! tokio drivers of the protocol core: one UDP socket for the server, one
//! per client.

// Network input must never panic the drivers: no `unwrap` outside tests (an
// invariant that cannot fail says why, with `expect`).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod batch;
pub mod client;
pub mod heartbeat;
pub mod log_limit;
pub mod metrics;
pub mod ops;
mod security_log;
pub mod server;
pub mod socket;
pub mod store;

//! The protocol core, sans-IO: it never reads a clock or touches a socket.
//!
//! Drivers feed it datagrams and the time, send what it hands out, and wake
//! it when it asks (`poll_timeout`/`handle_timeout`). The same code runs
//! under tokio ([`crate::net`]) and in the simulator ([`crate::sim`]).

// Network input must never panic the protocol core: no `unwrap` outside tests (an
// invariant that cannot fail says why, with `expect`).
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod client;
pub mod congestion;
pub mod crypto;
pub(crate) mod reassembly;
pub mod recovery;
pub mod rtt;
pub mod sack;
pub mod sequence;
pub mod server;
mod slot_bits;
pub(crate) mod timer;
pub mod trace;
pub mod wire;

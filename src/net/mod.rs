//! tokio drivers of the protocol core: one UDP socket for the server, one
//! per client.

pub mod client;
pub mod server;
pub mod socket;

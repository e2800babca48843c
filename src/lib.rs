//! risp-udp
pub mod cli;
pub mod clock;
pub mod net;
pub mod proto;
pub mod sim;
pub mod stats;
pub mod tcp;

//! risp-udp
pub mod proto;
pub mod stats;

//! risp-udp
pub mod proto;

//! risp-udp
pub mod clock;
pub mod proto;

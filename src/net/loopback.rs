//! Runs a simulation's transfers over real loopback sockets instead of the
//! virtual network: one in-process server, N clients, each socket wrapped in
//! the lossy-socket shim with the same impairments.

use crate::sim::{SimConfig, SimReport};

/// Runs `config` over real UDP sockets on 127.0.0.1 and reports in the same
/// shape as [`crate::sim::run`]. (Being written; returns `Unsupported` until
/// then.)
pub async fn run(config: &SimConfig) -> std::io::Result<SimReport> {
    let _ = config;
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "real-socket runs are not implemented yet",
    ))
}

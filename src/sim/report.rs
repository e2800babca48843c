//! What a simulation reports.

use std::time::Duration;

use risp_netem::ImpairmentStats;
use uuid::Uuid;

use crate::proto::client::{ClientError, ClientStats};
use crate::proto::server::ServerStats;

/// One client's transfer.
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Session key.
    pub uuid: Uuid,
    /// Values requested.
    pub len: u32,
    /// Values delivered to the application.
    pub delivered: u32,
    /// Values delivered out of order or not equal to the server's.
    pub wrong_values: u64,
    /// The client's checksum check passed.
    pub checksum_ok: bool,
    /// Why it failed, if it did.
    pub error: Option<ClientError>,
    /// Virtual time from start to completion or failure.
    pub finished_at: Option<Duration>,
    /// Datagrams the client sent.
    pub datagrams_to_server: u64,
    /// Datagrams the server sent to this client.
    pub datagrams_to_client: u64,
    /// Data datagrams the server sent to this client.
    pub data_sent: u64,
    /// Server datagrams that arrived after the client had moved.
    pub lost_to_old_address: u64,
    /// Killswitch reconnections.
    pub reconnects: u64,
    /// Address rebinds.
    pub rebinds: u64,
    /// Handshakes started over under a new UUID.
    pub restarts: u64,
    /// The server expired this session.
    pub server_expired: bool,
    /// RTT samples taken.
    pub rtt_count: u64,
    /// Every RTT sample (with `record_latencies`).
    pub rtt_samples: Vec<Duration>,
    /// Every delivery latency (with `record_latencies`).
    pub delivery_latencies: Vec<Duration>,
    /// The client's counters.
    pub client: ClientStats,
    /// Smallest window.
    pub window_min: u32,
    /// Largest window.
    pub window_max: u32,
    /// Window at the end.
    pub window_final: u32,
}

impl TransferReport {
    pub(crate) fn new(uuid: Uuid, len: u32) -> Self {
        Self {
            uuid,
            len,
            delivered: 0,
            wrong_values: 0,
            checksum_ok: false,
            error: None,
            finished_at: None,
            datagrams_to_server: 0,
            datagrams_to_client: 0,
            data_sent: 0,
            lost_to_old_address: 0,
            reconnects: 0,
            rebinds: 0,
            restarts: 0,
            server_expired: false,
            rtt_count: 0,
            rtt_samples: Vec::new(),
            delivery_latencies: Vec::new(),
            client: ClientStats::default(),
            window_min: 0,
            window_max: 0,
            window_final: 0,
        }
    }

    /// Delivered every value, in order, right, and the checksum matched.
    pub fn verified(&self) -> bool {
        self.error.is_none()
            && self.checksum_ok
            && self.wrong_values == 0
            && self.delivered == self.len
            && self.finished_at.is_some()
    }

    /// Data datagrams sent beyond one per value.
    pub fn retransmits(&self) -> u64 {
        self.data_sent.saturating_sub(u64::from(self.len))
    }
}

/// A whole simulation.
#[derive(Debug, Clone)]
pub struct SimReport {
    /// The seed it ran with.
    pub seed: u64,
    /// Virtual time simulated.
    pub elapsed: Duration,
    /// One per client.
    pub transfers: Vec<TransferReport>,
    /// The server's counters.
    pub server: ServerStats,
    /// Sessions the server still held at the end.
    pub sessions_left: usize,
    /// Impairment counters, one per client link.
    pub links: Vec<ImpairmentStats>,
    /// FNV-1a hash over every delivered datagram (time, destination,
    /// bytes): equal hashes mean identical traces.
    pub trace_hash: u64,
}

impl SimReport {
    /// True when every transfer verified.
    pub fn all_verified(&self) -> bool {
        self.transfers.iter().all(TransferReport::verified)
    }

    /// Transfers that verified.
    pub fn verified_count(&self) -> usize {
        self.transfers.iter().filter(|t| t.verified()).count()
    }
}

//! What a transfer and a run report.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use risp_netem::ImpairmentStats;
use serde::Serialize;
use uuid::Uuid;

use super::interval::IntervalStats;
use super::BottleneckStats;
use crate::proto::client::{ClientError, ClientStats, ResumeState};
use crate::proto::server::ServerStats;
use crate::stats::HistogramSet;

/// The client's window over a transfer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowStats {
    /// Smallest window.
    pub min: u32,
    /// Largest window.
    pub max: u32,
    /// Window at the end.
    #[serde(rename = "final")]
    pub last: u32,
}

/// One client's transfer, as every back-end reports it (filled by a
/// [`TransferRecorder`](super::TransferRecorder)).
#[derive(Debug, Clone)]
pub struct TransferReport {
    /// Session key (a refused handshake starts over under a new one).
    pub uuid: Uuid,
    /// Values requested.
    pub len: u32,
    /// Values delivered to the application.
    pub delivered: u32,
    /// Values delivered out of order or not equal to the server's (only
    /// where the driver knows the server's sequence: the simulator).
    pub wrong_values: u64,
    /// The server's checksum, when the client's check passed.
    pub checksum: Option<u64>,
    /// Why it failed, if it did.
    pub error: Option<ClientError>,
    /// Time from start to completion or failure.
    pub finished_at: Option<Duration>,
    /// Time from start to the end of the record (completion, failure, or
    /// the driver stopping).
    pub elapsed: Duration,
    /// Datagrams the client sent.
    pub datagrams_to_server: u64,
    /// Datagrams the server sent to this client (where the driver sees
    /// them; the client alone sees only those that arrive).
    pub datagrams_to_client: u64,
    /// Data datagrams the server sent to this client (where the driver
    /// sees the server's side).
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
    /// The smallest RTT sample, exactly (the histogram keeps three
    /// significant digits).
    pub min_rtt: Option<Duration>,
    /// rtt, delivery and stall histograms (when the recorder keeps them):
    /// every latency sample of the transfer.
    pub hist: HistogramSet,
    /// The client core's counters.
    pub client: ClientStats,
    /// The client's window.
    pub window: WindowStats,
    /// Impairment counters of the client's link.
    pub link: ImpairmentStats,
    /// Where the session stood at the end (to hand it to another client).
    pub resume: Option<ResumeState>,
    /// Longest time between two consecutive in-order values (the
    /// handshake before the first is not a stall).
    pub max_stall: Duration,
    /// Interval reports (when the driver asked for them).
    pub intervals: Vec<IntervalStats>,
    /// With more than one server: each, in the order given, and why the
    /// client last left it (the moves are in `client.failovers`). Empty
    /// for a transfer with one server.
    pub servers: Vec<ServerOutcome>,
}

/// One server of a transfer's list, and why the client last left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOutcome {
    /// Its address.
    pub addr: SocketAddr,
    /// Why the client last moved away from it (`None`: never left).
    pub left: Option<String>,
}

impl fmt::Display for ServerOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.left {
            Some(why) => write!(f, "{} ({why})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

impl TransferReport {
    /// An empty report of a transfer of `len` values under `uuid`.
    pub fn new(uuid: Uuid, len: u32) -> Self {
        Self {
            uuid,
            len,
            delivered: 0,
            wrong_values: 0,
            checksum: None,
            error: None,
            finished_at: None,
            elapsed: Duration::ZERO,
            datagrams_to_server: 0,
            datagrams_to_client: 0,
            data_sent: 0,
            lost_to_old_address: 0,
            reconnects: 0,
            rebinds: 0,
            restarts: 0,
            server_expired: false,
            rtt_count: 0,
            min_rtt: None,
            hist: HistogramSet::default(),
            client: ClientStats::default(),
            window: WindowStats::default(),
            link: ImpairmentStats::default(),
            resume: None,
            max_stall: Duration::ZERO,
            intervals: Vec::new(),
            servers: Vec::new(),
        }
    }

    /// `Ok` unless the transfer failed (a transfer stopped early by its
    /// driver is `Ok` but not [`verified`](Self::verified)).
    pub fn result(&self) -> Result<(), ClientError> {
        self.error.clone().map_or(Ok(()), Err)
    }

    /// The client's checksum check passed.
    pub fn checksum_ok(&self) -> bool {
        self.checksum.is_some()
    }

    /// Delivered every value, in order, right, and the checksum matched.
    pub fn verified(&self) -> bool {
        self.error.is_none()
            && self.checksum_ok()
            && self.wrong_values == 0
            && self.delivered == self.len
            && self.finished_at.is_some()
    }

    /// Moves to another server of the list.
    pub fn failovers(&self) -> u64 {
        self.client.failovers
    }

    /// What a person needs to know about the servers behind a failure:
    /// "servers tried: A (why it was left), B (...)", or `None` with one
    /// server.
    pub fn servers_tried(&self) -> Option<String> {
        if self.servers.len() < 2 {
            return None;
        }
        let list: Vec<String> = self.servers.iter().map(ToString::to_string).collect();
        Some(format!("servers tried: {}", list.join(", ")))
    }

    /// Data datagrams sent beyond one per value.
    pub fn retransmits(&self) -> u64 {
        self.data_sent.saturating_sub(u64::from(self.len))
    }

    /// Values delivered per second of `elapsed` (0 for an instant one).
    pub fn values_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            f64::from(self.delivered) / secs
        } else {
            0.0
        }
    }
}

/// A whole run: every transfer and the server's side.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed it ran with.
    pub seed: u64,
    /// Time the run took (virtual in the simulator).
    pub elapsed: Duration,
    /// One per client.
    pub transfers: Vec<TransferReport>,
    /// The server's counters.
    pub server: ServerStats,
    /// Sessions the server still held at the end.
    pub sessions_left: usize,
    /// FNV-1a hash over every delivered datagram (time, destination,
    /// bytes): equal hashes mean identical traces. 0 for real runs, which
    /// are not reproducible to the datagram.
    pub trace_hash: u64,
    /// What the shared bottleneck saw, when the run had one.
    pub bottleneck: Option<BottleneckStats>,
}

impl RunReport {
    /// True when every transfer verified.
    pub fn all_verified(&self) -> bool {
        self.transfers.iter().all(TransferReport::verified)
    }

    /// Transfers that verified.
    pub fn verified_count(&self) -> usize {
        self.transfers.iter().filter(|t| t.verified()).count()
    }
}

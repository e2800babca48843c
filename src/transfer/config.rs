//! What to run: N clients of one length over one impaired link each.

use std::time::Duration;

use risp_netem::ImpairmentConfig;
use uuid::Uuid;

use super::BottleneckConfig;
use crate::proto::client::ClientConfig;
use crate::proto::server::ServerConfig;

/// A run: one server, `clients` concurrent transfers of `len` values, each
/// over its own link impaired by `impairment`. The simulator runs it in
/// virtual time ([`crate::sim::run`]); the suites can also run it over real
/// loopback sockets ([`crate::suite::real::run`]).
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Seed for everything random: UUIDs, server seeds, impairments.
    pub seed: u64,
    /// Number of concurrent clients.
    pub clients: usize,
    /// Values each client requests.
    pub len: u32,
    /// Client settings (UUID and length are filled in per client).
    pub client: ClientConfig,
    /// Server settings (its seed is derived from `seed`).
    pub server: ServerConfig,
    /// Impairments on every client's link.
    pub impairment: ImpairmentConfig,
    /// Every this often, each client drops its socket: it moves to a new
    /// port and resumes by UUID.
    pub killswitch: Option<Duration>,
    /// Clients start this far apart.
    pub stagger: Duration,
    /// Stop after this much (virtual or wall) time.
    pub time_limit: Duration,
    /// Record each transfer's rtt, delivery and stall histograms
    /// ([`TransferReport::hist`](super::TransferReport::hist)).
    pub record_latencies: bool,
    /// A bottleneck every server-to-client datagram crosses before its
    /// client's own link (simulator only).
    pub bottleneck: Option<BottleneckConfig>,
    /// Extra one-way delay of each flow's link, in each direction, on top
    /// of `impairment`'s (simulator only): entry `i` is client `i`'s, then
    /// entry `clients + k` is reference flow `k`'s. Missing entries (the
    /// default: none) add nothing, so flows of different round trips can
    /// share one bottleneck.
    pub flow_delays: Vec<Duration>,
    /// Reno-style reference flows ([`crate::sim::reference`]) that send
    /// through the same bottleneck as the clients, each over its own link
    /// impaired like the clients' (simulator only; default 0). They count
    /// in the bottleneck's statistics as flows `clients..clients + k`, and
    /// stop when every client finished.
    pub reference_flows: usize,
    /// When the reference flows start, from the run's start.
    pub reference_start: Duration,
    /// Most new packets each reference flow sends (`None`: no limit, it
    /// sends until the clients finish).
    pub reference_packets: Option<u64>,
}

impl RunConfig {
    /// `clients` clients of `len` values each over `impairment`.
    pub fn new(seed: u64, clients: usize, len: u32, impairment: ImpairmentConfig) -> Self {
        Self {
            seed,
            clients,
            len,
            client: ClientConfig::new(Uuid::nil(), len),
            server: ServerConfig::default(),
            impairment,
            killswitch: None,
            stagger: Duration::ZERO,
            time_limit: Duration::from_secs(600),
            record_latencies: false,
            bottleneck: None,
            flow_delays: Vec::new(),
            reference_flows: 0,
            reference_start: Duration::ZERO,
            reference_packets: None,
        }
    }

    /// The seed of client `client`'s impairment model (see [`link_seed`]).
    pub fn link_seed(&self, client: usize) -> u64 {
        link_seed(self.seed, client)
    }

    /// The extra one-way delay of flow `flow` (see
    /// [`flow_delays`](Self::flow_delays)).
    pub fn flow_delay(&self, flow: usize) -> Duration {
        self.flow_delays.get(flow).copied().unwrap_or_default()
    }
}

/// The seed of the impairment model on client `client`'s link in a run
/// seeded `seed`: the same in every back-end, so a profile's client 3 meets
/// the same losses in a virtual and a real run.
pub fn link_seed(seed: u64, client: usize) -> u64 {
    seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

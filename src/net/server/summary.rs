//! What a server saw, as its workers publish it: the [`ServerSummary`]
//! type, how several workers' summaries add up, and where they go (a
//! `tokio::sync::watch` and the builder's `on_summary` hook).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

use crate::clock;
use crate::net::heartbeat::Heartbeat;
use crate::net::metrics::DriverMetrics;
use crate::proto::server::ServerStats;
use crate::stats::LatencyHistogram;

/// What the server saw over its lifetime.
#[derive(Debug, Clone, Default)]
pub struct ServerSummary {
    /// The core's counters.
    pub stats: ServerStats,
    /// What the driver counts: datagrams by kind, latency buckets (filled
    /// when `config.ack_latency_events` is on).
    pub metrics: DriverMetrics,
    /// First send to acknowledgement, every value, with its per-second
    /// series (when `config.ack_latency_events` and the builder's
    /// [`record_ack_latency`](super::ServerBuilder::record_ack_latency)
    /// are both on; empty otherwise).
    pub ack_latency: LatencyHistogram,
    /// Beaten by the I/O loop on every turn, for liveness checks.
    pub heartbeat: Heartbeat,
    /// Live sessions at the last update.
    pub sessions: usize,
    /// Of those, sessions whose client confirmed its token (the rest are in
    /// their handshake).
    pub sessions_confirmed: usize,
    /// Most sessions held at once.
    pub peak_sessions: usize,
    /// Sends the operating system refused (one destination's problem, never
    /// the server's: counted and logged, rate-limited).
    pub send_errors: u64,
    /// Datagrams those failed sends kept from going out (a failure ends the
    /// rest of its batch).
    pub datagrams_unsent: u64,
    /// Data datagrams sent to each session that closed or expired, when
    /// the builder asked for them
    /// ([`count_data_sent`](super::ServerBuilder::count_data_sent)); `None`
    /// otherwise: the map grows with every session a long-lived server
    /// ever sees.
    pub data_sent: Option<HashMap<Uuid, u64>>,
    /// The seed of each session's value sequence, keyed by its UUID, when
    /// the builder asked for them
    /// ([`record_session_seeds`](super::ServerBuilder::record_session_seeds)):
    /// what lets a test check every value a client received, not only
    /// their sum. Sessions opened (or resumed from the store) are added as
    /// they are, before the server's first answer to them goes out, rather
    /// than with the periodic figures (with several workers, at the next
    /// merge); at most [`MAX_SESSION_SEEDS`] are held (later sessions are
    /// not recorded), so a forgotten opt-in costs a few megabytes at worst.
    /// A seed (also logged, in the "session opened" line) says nothing
    /// about tokens: session tokens come from the same generator, but it
    /// is a CSPRNG (ChaCha), whose outputs do not reveal one another, and
    /// Retry tokens are keyed by the server's secret.
    pub session_seeds: Option<BTreeMap<Uuid, u64>>,
    /// Whether the shared session store answers (`None`: no store).
    pub store_up: Option<bool>,
    /// Store writes dropped because the writer task fell behind.
    pub store_writes_dropped: u64,
    /// Store writes (batches) that failed: the store was unreachable.
    pub store_write_errors: u64,
    /// qlog files written, with the builder's
    /// [`qlog`](super::ServerBuilder::qlog) (0 without).
    pub qlog_files: u64,
    /// qlog records not written: sessions the server never admitted, past
    /// [`MAX_OPEN_QLOG_FILES`](crate::net::qlog::MAX_OPEN_QLOG_FILES),
    /// or a file that could not be written.
    pub qlog_not_written: u64,
}

impl ServerSummary {
    /// One summary for the workers of a process: counters and sessions
    /// added, the stalest heartbeat (a stuck worker makes the whole
    /// server unhealthy), the store up only if every worker sees it up.
    pub fn merged(parts: &[ServerSummary], now: Instant) -> ServerSummary {
        let mut all = ServerSummary::default();
        let mut stalest: Option<&Heartbeat> = None;
        for p in parts {
            all.stats += &p.stats;
            all.metrics += &p.metrics;
            all.ack_latency.merge(&p.ack_latency);
            all.sessions += p.sessions;
            all.sessions_confirmed += p.sessions_confirmed;
            all.peak_sessions += p.peak_sessions;
            all.send_errors += p.send_errors;
            all.datagrams_unsent += p.datagrams_unsent;
            all.store_writes_dropped += p.store_writes_dropped;
            all.store_write_errors += p.store_write_errors;
            all.qlog_files += p.qlog_files;
            all.qlog_not_written += p.qlog_not_written;
            all.store_up = match (all.store_up, p.store_up) {
                (Some(a), Some(b)) => Some(a && b),
                (a, b) => a.or(b),
            };
            if let Some(d) = &p.data_sent {
                all.data_sent.get_or_insert_with(HashMap::new).extend(d);
            }
            if let Some(seeds) = &p.session_seeds {
                all.session_seeds
                    .get_or_insert_with(BTreeMap::new)
                    .extend(seeds);
            }
            if stalest.is_none_or(|h| p.heartbeat.age(now) > h.age(now)) {
                stalest = Some(&p.heartbeat);
            }
        }
        if let Some(h) = stalest {
            all.heartbeat = h.clone();
        }
        all
    }
}

/// A summary behind a lock, for readers that want one (the health
/// endpoint): fill it from [`ServerBuilder::on_summary`](super::ServerBuilder::on_summary).
pub type SharedSummary = Arc<Mutex<ServerSummary>>;

/// Most sessions whose seeds [`ServerSummary::session_seeds`] holds (about
/// 2 MiB); sessions opened after that are not recorded.
pub const MAX_SESSION_SEEDS: usize = 1 << 16;

/// How often a worker publishes its figures, and the merger of several
/// workers follows.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// A function that sees every summary published (see
/// [`ServerBuilder::on_summary`](super::ServerBuilder::on_summary)).
pub(super) type SummaryHook = Arc<dyn Fn(&ServerSummary) + Send + Sync>;

/// Where one publisher's figures go: its watch, and the hook when it is
/// the one that publishes for the whole server.
pub(super) struct Publisher {
    tx: watch::Sender<ServerSummary>,
    hook: Option<SummaryHook>,
}

impl Publisher {
    /// A publisher starting from `initial`, and the receiver of what it
    /// publishes.
    pub(super) fn new(
        initial: ServerSummary,
        hook: Option<SummaryHook>,
    ) -> (Self, watch::Receiver<ServerSummary>) {
        let (tx, rx) = watch::channel(initial);
        (Self { tx, hook }, rx)
    }

    /// Changes the published summary in place, then shows it to the hook.
    pub(super) fn update(&self, change: impl FnOnce(&mut ServerSummary)) {
        self.tx.send_modify(change);
        if let Some(hook) = &self.hook {
            hook(&self.tx.borrow());
        }
    }

    /// The summary as last published.
    pub(super) fn current(&self) -> ServerSummary {
        self.tx.borrow().clone()
    }
}

/// Merges the workers' summaries into `out` every [`PUBLISH_EVERY`] until
/// `stop`; then waits for every worker to publish its last figures (each
/// does as it ends) and merges those.
pub(super) async fn merge(
    mut parts: Vec<watch::Receiver<ServerSummary>>,
    out: Publisher,
    mut stop: watch::Receiver<bool>,
) {
    let publish = |parts: &[watch::Receiver<ServerSummary>]| {
        let snapshot: Vec<ServerSummary> = parts.iter().map(|p| p.borrow().clone()).collect();
        let all = ServerSummary::merged(&snapshot, clock::now());
        out.update(|m| *m = all);
    };
    loop {
        publish(&parts);
        tokio::select! {
            () = tokio::time::sleep(PUBLISH_EVERY) => {}
            // A dropped sender means the handle went away: stop too.
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
    for p in &mut parts {
        // Ends when that worker's publisher is gone.
        while p.changed().await.is_ok() {}
    }
    publish(&parts);
}

//! The server driver: one UDP socket, every client, demultiplexed by UUID.
//!
//! One task owns the socket and the [`Server`] core. It waits for whichever
//! comes first (a datagram, the core's next timer, or shutdown), feeds the
//! core, and sends what the core hands out. Nothing is queued outside the
//! core, whose queues are bounded.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use risp_netem::LossySocket;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::batch::{BatchSocket, IoMode, RecvSizing};
use super::heartbeat::Heartbeat;
use super::metrics::DriverMetrics;
use super::security_log::SecurityLog;
use super::socket::{is_transient, sleep_until_opt};
use super::store::SessionStore;
use crate::clock;
use crate::proto::server::{
    Lookup, LookupOutcome, Server, ServerConfig, ServerEvent, ServerStats, StoreOp,
};
use crate::proto::wire::{DATA_LEN, MAX_DATAGRAM_LEN};
use crate::stats::LatencyHistogram;

/// What the server saw over its lifetime.
#[derive(Debug, Clone)]
pub struct ServerSummary {
    /// The core's counters.
    pub stats: ServerStats,
    /// What the driver counts: datagrams by kind, latency buckets (filled
    /// when `config.ack_latency_events` is on).
    pub metrics: DriverMetrics,
    /// First send to acknowledgement, every value, with its per-second
    /// series (when `config.ack_latency_events` and
    /// [`record_ack_latency`](Self::record_ack_latency) are both on).
    pub ack_latency: LatencyHistogram,
    /// Whether [`serve`] fills [`ack_latency`](Self::ack_latency). On by
    /// default; a long-lived server that only wants the fixed-size
    /// [`metrics`](Self::metrics) turns it off, since the per-second series
    /// grows with uptime.
    pub record_ack_latency: bool,
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
    /// Data datagrams sent to each session, when the summary handed to
    /// [`serve`] asks for them (see [`ServerSummary::counting_data`]). Off
    /// by default: the map grows with every session a long-lived server
    /// ever sees.
    pub data_sent: Option<HashMap<Uuid, u64>>,
    /// The seed of each session's value sequence, keyed by its UUID, when
    /// the summary handed to [`serve`] asks for them (see
    /// [`ServerSummary::with_session_seeds`]): what lets a test check every
    /// value a client received, not only their sum. Off by default, since
    /// only tests want it. Sessions opened (or resumed from the store) are
    /// added as they are, before the server's first answer to them goes
    /// out, rather than with the periodic figures; at most
    /// [`MAX_SESSION_SEEDS`] are held (later sessions are not recorded), so
    /// a forgotten opt-in costs a few megabytes at worst. A seed (also
    /// logged, in the "session opened" line) says nothing about tokens:
    /// session tokens come from the same generator, but it is a CSPRNG
    /// (ChaCha), whose outputs do not reveal one another, and Retry
    /// tokens are keyed by the server's secret.
    pub session_seeds: Option<BTreeMap<Uuid, u64>>,
    /// Whether the shared session store answers (`None`: no store).
    pub store_up: Option<bool>,
    /// Store writes dropped because the writer task fell behind.
    pub store_writes_dropped: u64,
    /// Store writes (batches) that failed: the store was unreachable.
    pub store_write_errors: u64,
}

impl Default for ServerSummary {
    fn default() -> Self {
        Self {
            stats: ServerStats::default(),
            metrics: DriverMetrics::default(),
            ack_latency: LatencyHistogram::default(),
            record_ack_latency: true,
            heartbeat: Heartbeat::default(),
            sessions: 0,
            sessions_confirmed: 0,
            peak_sessions: 0,
            send_errors: 0,
            datagrams_unsent: 0,
            data_sent: None,
            session_seeds: None,
            store_up: None,
            store_writes_dropped: 0,
            store_write_errors: 0,
        }
    }
}

impl ServerSummary {
    /// An empty summary that asks [`serve`] to count data datagrams per
    /// session into [`data_sent`](Self::data_sent) (for in-process runs,
    /// which report exact per-transfer counts).
    pub fn counting_data() -> Self {
        Self {
            data_sent: Some(HashMap::new()),
            ..Self::default()
        }
    }

    /// This summary, asking [`serve`] to record each session's seed into
    /// [`session_seeds`](Self::session_seeds) (for tests that check every
    /// value a transfer delivered).
    pub fn with_session_seeds(self) -> Self {
        Self {
            session_seeds: Some(BTreeMap::new()),
            ..self
        }
    }
}

impl ServerSummary {
    /// One summary for the workers of a process: counters and sessions
    /// added, the stalest heartbeat (a stuck worker makes the whole
    /// server unhealthy), the store up only if every worker sees it up.
    pub fn merged(parts: &[ServerSummary], now: Instant) -> ServerSummary {
        let mut all = ServerSummary {
            record_ack_latency: false,
            ..ServerSummary::default()
        };
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

/// A snapshot the driver keeps current for health checks and reports.
pub type SharedSummary = Arc<Mutex<ServerSummary>>;

/// Serves on `socket` until `shutdown` resolves; returns the summary.
///
/// With `config.ack_latency_events`, the first-send-to-ack latency of every
/// value is recorded into the summary's latency buckets (and its histogram,
/// unless the summary handed in turned
/// [`record_ack_latency`](ServerSummary::record_ack_latency) off). Uses
/// batched I/O ([`IoMode::Batched`]); see [`serve_with`] to choose.
pub async fn serve(
    socket: LossySocket,
    config: ServerConfig,
    shared: SharedSummary,
    shutdown: impl Future<Output = ()>,
) -> io::Result<ServerSummary> {
    serve_with(socket, IoMode::Batched, config, shared, shutdown).await
}

/// [`serve`], with the socket driven in `mode`.
pub async fn serve_with(
    socket: LossySocket,
    mode: IoMode,
    config: ServerConfig,
    shared: SharedSummary,
    shutdown: impl Future<Output = ()>,
) -> io::Result<ServerSummary> {
    serve_with_store(socket, mode, config, shared, None, shutdown).await
}

/// [`serve_with`], sharing sessions through `store`: the core writes
/// records and looks up sessions it does not hold (its
/// [`ServerConfig::store`] is filled in with the defaults if unset).
/// Store commands run in their own tasks; the I/O loop never waits on
/// them.
pub async fn serve_with_store(
    socket: LossySocket,
    mode: IoMode,
    mut config: ServerConfig,
    shared: SharedSummary,
    store: Option<SessionStore>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<ServerSummary> {
    if store.is_some() && config.store.is_none() {
        config.store = Some(Default::default());
    }
    let mut socket = BatchSocket::new(socket, mode, SERVER_RECV)?;
    let (lookup_tx, mut lookup_rx) = mpsc::unbounded_channel::<(Lookup, LookupOutcome)>();
    let writer = store.as_ref().map(StoreWriter::spawn);
    let mut server = Server::new(config);
    let mut out = Vec::with_capacity(BATCH * DATA_LEN);
    let mut rec = Recorder::new(&shared);
    let mut next_publish = rec.started;
    tokio::pin!(shutdown);
    loop {
        // Never later than the next publish: an idle loop still turns (and
        // beats) every `PUBLISH_EVERY`.
        let wake = server
            .poll_timeout()
            .map_or(next_publish, |t| t.min(next_publish));
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = socket.readable() => {
                // ICMP errors (a client went away) surface here on some
                // platforms: they concern one peer, not the server.
                if let Err(e) = r.and_then(|()| {
                    let mut clock = clock::BatchClock::start();
                    let (metrics, log) = (&mut rec.metrics, &mut rec.log);
                    socket.try_recv(|from, d| {
                        let now = clock.tick();
                        metrics.on_received(d);
                        let mark = SecurityLog::mark(server.stats());
                        server.handle(now, from, d);
                        log.after_datagram(now, from, d.len(), &mark, server.stats());
                    })
                }) {
                    if !is_transient(&e) {
                        return Err(e);
                    }
                }
            }
            Some((lookup, outcome)) = lookup_rx.recv() => {
                server.complete_lookup(clock::now(), lookup, outcome);
            }
            () = sleep_until_opt(Some(wake)) => server.handle_timeout(clock::now()),
        }
        let now = clock::now();
        rec.heartbeat.beat(now);
        // The select prefers datagrams: under a sustained flood the timer
        // branch would never be chosen. Run whatever timers are due on every
        // turn, so expiry and loss checks keep their time whatever the
        // receive rate (at most one receive batch between two checks).
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        // The core raises events only in `handle` and `handle_timeout`, so
        // none is missed by sending afterwards.
        while let Some(ev) = server.poll_event() {
            rec.on_event(&ev, now, &server);
        }
        // Before anything goes out: a client never sees a value of a
        // session whose seed is not yet in the summary.
        rec.publish_seeds(&shared);
        rec.peak_sessions = rec.peak_sessions.max(server.session_count());
        if let (Some(store), Some(writer)) = (&store, &writer) {
            server.set_store_available(store.is_up());
            while let Some(op) = server.poll_store_op() {
                match op {
                    StoreOp::Lookup(lookup) => spawn_lookup(store, lookup, &lookup_tx),
                    op => writer.send(op, &mut rec),
                }
            }
        }
        // Sessions take turns, one batch each (the core's round-robin).
        while let Some(t) = server.poll_transmit(now, BATCH, &mut out) {
            rec.metrics.on_sent(&out[..t.segment_size], t.count());
            if let Err(e) = socket
                .send(t.destination, &out[..t.size], t.segment_size)
                .await
            {
                // A send error concerns one destination (EINVAL for port
                // 0, EACCES for broadcast, ICMP-reported unreachables):
                // the server carries on for everyone else.
                rec.datagrams_unsent += t.count().saturating_sub(e.sent) as u64;
                rec.log.send_failed(now, &e.error, t.destination);
            }
        }
        if now >= next_publish {
            next_publish = now + PUBLISH_EVERY;
            rec.log.flush(now);
            rec.store_write_errors = writer.as_ref().map_or(0, StoreWriter::errors);
            rec.publish(&shared, &server, store.as_ref());
        }
    }
    rec.publish(&shared, &server, store.as_ref());
    let summary = shared.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(summary)
}

/// What the driver records beside the core, and publishes into the shared
/// summary.
#[derive(Debug)]
struct Recorder {
    /// When serving started (the origin of the histogram's series).
    started: Instant,
    /// Shared with the summary, beaten by the loop.
    heartbeat: Heartbeat,
    /// Datagrams by kind, latency buckets.
    metrics: DriverMetrics,
    /// Acknowledgement latencies with their per-second series, when asked.
    hist: Option<LatencyHistogram>,
    /// Security events, logged rate-limited; send failures counted.
    log: SecurityLog,
    /// Data datagrams per session, when asked.
    data: Option<DataCounts>,
    /// Seeds of sessions opened or resumed since the last
    /// `publish_seeds`, when asked.
    seeds: Option<Vec<(Uuid, u64)>>,
    /// Most sessions held at once.
    peak_sessions: usize,
    /// Datagrams failed sends kept from going out.
    datagrams_unsent: u64,
    /// Store writes dropped (the writer's queue was full).
    store_writes_dropped: u64,
    /// Store write batches that failed.
    store_write_errors: u64,
}

impl Recorder {
    /// Takes what the summary handed to [`serve`] asks for.
    fn new(shared: &SharedSummary) -> Self {
        let (heartbeat, want_hist, want_data, want_seeds) = match shared.lock() {
            Ok(s) => (
                s.heartbeat.clone(),
                s.record_ack_latency,
                s.data_sent.is_some(),
                s.session_seeds.is_some(),
            ),
            Err(_) => (Heartbeat::default(), true, false, false),
        };
        Self {
            started: clock::now(),
            heartbeat,
            metrics: DriverMetrics::default(),
            hist: want_hist.then(LatencyHistogram::new),
            log: SecurityLog::default(),
            data: want_data.then(DataCounts::default),
            seeds: want_seeds.then(Vec::new),
            peak_sessions: 0,
            datagrams_unsent: 0,
            store_writes_dropped: 0,
            store_write_errors: 0,
        }
    }

    /// Records and logs a session event that happened at `now` on
    /// `server` (which still holds the session an open or resume names).
    fn on_event(&mut self, ev: &ServerEvent, now: Instant, server: &Server) {
        if let Some(d) = self.data.as_mut() {
            d.on_event(ev);
        }
        let seed = match *ev {
            ServerEvent::Opened { uuid, .. } | ServerEvent::Resumed { uuid, .. } => {
                server.sequence(&uuid).map(|s| (uuid, s.seed()))
            }
            _ => None,
        };
        if let (Some(pending), Some(entry)) = (self.seeds.as_mut(), seed) {
            pending.push(entry);
        }
        let seed = seed.map(|(_, seed)| seed);
        match *ev {
            ServerEvent::AckLatency {
                latency,
                retransmitted,
                ..
            } => {
                self.metrics.on_ack_latency(latency, retransmitted);
                if let Some(h) = self.hist.as_mut() {
                    h.record_at(now.saturating_duration_since(self.started), latency);
                }
            }
            ServerEvent::Opened { uuid, addr, len } => {
                tracing::info!(%uuid, %addr, len, seed, "session opened")
            }
            ServerEvent::Resumed { uuid, addr } => tracing::info!(%uuid, %addr, "session resumed"),
            ServerEvent::Migrated { uuid, addr } => {
                tracing::info!(%uuid, %addr, "session moved to a new address")
            }
            ServerEvent::Closed { uuid, data_sent } => {
                tracing::info!(%uuid, data_sent, "session closed")
            }
            ServerEvent::Expired { uuid, data_sent } => {
                tracing::info!(%uuid, data_sent, "session expired")
            }
        }
    }

    /// Adds the seeds recorded since the last call to the shared summary
    /// (no lock taken when there are none), up to [`MAX_SESSION_SEEDS`].
    fn publish_seeds(&mut self, shared: &SharedSummary) {
        let Some(pending) = self.seeds.as_mut().filter(|p| !p.is_empty()) else {
            return;
        };
        if let Ok(mut s) = shared.lock() {
            let seeds = s.session_seeds.get_or_insert_with(BTreeMap::new);
            for (uuid, seed) in pending.drain(..) {
                if seeds.len() < MAX_SESSION_SEEDS || seeds.contains_key(&uuid) {
                    seeds.insert(uuid, seed);
                }
            }
        }
        pending.clear();
    }

    /// Copies the current figures into the shared summary.
    fn publish(&self, shared: &SharedSummary, server: &Server, store: Option<&SessionStore>) {
        if let Ok(mut s) = shared.lock() {
            s.store_up = store.map(SessionStore::is_up);
            s.store_writes_dropped = self.store_writes_dropped;
            s.store_write_errors = self.store_write_errors;
            if let Some(d) = &self.data {
                s.data_sent = Some(d.sent.clone());
            }
            if let Some(h) = &self.hist {
                s.ack_latency = h.clone();
            }
            s.send_errors = self.log.send_error_count;
            s.datagrams_unsent = self.datagrams_unsent;
            s.peak_sessions = self.peak_sessions;
            s.stats = server.stats().clone();
            s.metrics = self.metrics;
            s.sessions = server.session_count();
            s.sessions_confirmed = server.confirmed_count();
        }
    }
}

/// Asks the store for a session in a task of its own; the answer comes
/// back to the I/O loop through `tx`.
fn spawn_lookup(
    store: &SessionStore,
    lookup: Lookup,
    tx: &mpsc::UnboundedSender<(Lookup, LookupOutcome)>,
) {
    let (store, tx) = (store.clone(), tx.clone());
    tokio::spawn(async move {
        let outcome = match store.get(lookup.uuid).await {
            Ok(Some(record)) => LookupOutcome::Found(record),
            Ok(None) => LookupOutcome::Missing,
            Err(e) => {
                tracing::debug!(uuid = %lookup.uuid, error = %e, "session store lookup failed");
                LookupOutcome::Unavailable
            }
        };
        let _ = tx.send((lookup, outcome));
    });
}

/// The task that writes records and removals to the store, in order,
/// batching whatever queued up while the previous batch was in flight.
#[derive(Debug)]
struct StoreWriter {
    tx: mpsc::Sender<StoreOp>,
    errors: Arc<std::sync::atomic::AtomicU64>,
}

/// Most store writes queued for the writer task.
const STORE_QUEUE: usize = 16 * 1024;
/// Most writes in one batch (one Redis pipeline).
const STORE_BATCH: usize = 512;

impl StoreWriter {
    fn spawn(store: &SessionStore) -> Self {
        let (tx, mut rx) = mpsc::channel::<StoreOp>(STORE_QUEUE);
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (store, count) = (store.clone(), errors.clone());
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(STORE_BATCH);
            while rx.recv_many(&mut batch, STORE_BATCH).await > 0 {
                let mut puts = Vec::new();
                let mut removes = Vec::new();
                for op in batch.drain(..) {
                    match op {
                        StoreOp::Put(r) => puts.push(r),
                        StoreOp::Remove(u) => removes.push(u),
                        StoreOp::Lookup(_) => {}
                    }
                }
                if let Err(e) = store.write(&puts, &removes).await {
                    // Lost writes come back with the next refresh.
                    tracing::debug!(error = %e, "session store write failed");
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Self { tx, errors }
    }

    /// Queues a write; counted as dropped when the queue is full.
    fn send(&self, op: StoreOp, rec: &mut Recorder) {
        if self.tx.try_send(op).is_err() {
            rec.store_writes_dropped += 1;
        }
    }

    fn errors(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Data datagrams per session, from the events of sessions that closed or
/// expired (each session counts its own).
#[derive(Debug, Default)]
struct DataCounts {
    /// Data datagrams sent, per session.
    sent: HashMap<Uuid, u64>,
}

impl DataCounts {
    fn on_event(&mut self, ev: &ServerEvent) {
        if let ServerEvent::Closed { uuid, data_sent } | ServerEvent::Expired { uuid, data_sent } =
            *ev
        {
            self.sent.insert(uuid, data_sent);
        }
    }
}

/// Most datagrams taken from the core per `poll_transmit`: one GSO send
/// (the kernel's limit is 64 segments).
const BATCH: usize = 64;

/// The server's receive buffers: 32 datagrams per system call
/// (`recvmmsg`), no coalescing. Client datagrams differ in size and come
/// from many sockets, so GRO would rarely merge them, and buffers for 64
/// full-size datagrams each would cost 3 MiB.
const SERVER_RECV: RecvSizing = RecvSizing {
    max_datagram: MAX_DATAGRAM_LEN,
    segments: 1,
    slots: 32,
};

/// How often a worker updates its shared summary (health checks,
/// histogram dumps), and the merged summary of all workers follows.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Most sessions whose seeds [`ServerSummary::session_seeds`] holds (about
/// 2 MiB); sessions opened after that are not recorded.
pub const MAX_SESSION_SEEDS: usize = 1 << 16;

/// Default time a server keeps an idle session.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30);

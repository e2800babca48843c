//! The server driver: one UDP socket, every client, demultiplexed by UUID.
//!
//! One task owns the socket and the [`Server`] core. It waits for whichever
//! comes first (a datagram, the core's next timer, or shutdown), feeds the
//! core, and sends what the core hands out. Nothing is queued outside the
//! core, whose queues are bounded.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use risp_netem::LossySocket;
use uuid::Uuid;

use super::batch::{BatchSocket, IoMode, RecvSizing};
use super::heartbeat::Heartbeat;
use super::metrics::DriverMetrics;
use super::security_log::SecurityLog;
use super::socket::{is_transient, sleep_until_opt};
use crate::clock;
use crate::proto::server::{Server, ServerConfig, ServerEvent, ServerStats};
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
    let mut socket = BatchSocket::new(socket, mode, SERVER_RECV)?;
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
                    let now = clock::now();
                    let (metrics, log) = (&mut rec.metrics, &mut rec.log);
                    socket.try_recv(|from, d| {
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
            rec.on_event(&ev, now);
        }
        rec.peak_sessions = rec.peak_sessions.max(server.session_count());
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
            rec.publish(&shared, &server);
        }
    }
    rec.publish(&shared, &server);
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
    /// Most sessions held at once.
    peak_sessions: usize,
    /// Datagrams failed sends kept from going out.
    datagrams_unsent: u64,
}

impl Recorder {
    /// Takes what the summary handed to [`serve`] asks for.
    fn new(shared: &SharedSummary) -> Self {
        let (heartbeat, want_hist, want_data) = match shared.lock() {
            Ok(s) => (
                s.heartbeat.clone(),
                s.record_ack_latency,
                s.data_sent.is_some(),
            ),
            Err(_) => (Heartbeat::default(), true, false),
        };
        Self {
            started: clock::now(),
            heartbeat,
            metrics: DriverMetrics::default(),
            hist: want_hist.then(LatencyHistogram::new),
            log: SecurityLog::default(),
            data: want_data.then(DataCounts::default),
            peak_sessions: 0,
            datagrams_unsent: 0,
        }
    }

    /// Records and logs a session event that happened at `now`.
    fn on_event(&mut self, ev: &ServerEvent, now: Instant) {
        if let Some(d) = self.data.as_mut() {
            d.on_event(ev);
        }
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
                tracing::info!(%uuid, %addr, len, "session opened")
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

    /// Copies the current figures into the shared summary.
    fn publish(&self, shared: &SharedSummary, server: &Server) {
        if let Ok(mut s) = shared.lock() {
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

/// How often the shared summary (health checks, histogram dumps) is updated.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Default time a server keeps an idle session.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30);

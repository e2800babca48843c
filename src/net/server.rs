//! The server driver: one UDP socket, every client, demultiplexed by UUID.
//!
//! One task owns the socket and the [`Server`] core. It waits for whichever
//! comes first (a datagram, the core's next timer, or shutdown), feeds the
//! core, and sends what the core hands out. Nothing is queued outside the
//! core, whose queues are bounded.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use risp_netem::LossySocket;
use uuid::Uuid;

use super::socket::{is_transient, sleep_until_opt};
use crate::clock;
use crate::proto::server::{Server, ServerConfig, ServerEvent, ServerStats};
use crate::proto::wire::{DATA_LEN, MAX_DATAGRAM_LEN};
use crate::stats::LatencyHistogram;

/// What the server saw over its lifetime.
#[derive(Debug, Clone, Default)]
pub struct ServerSummary {
    /// The core's counters.
    pub stats: ServerStats,
    /// First send to acknowledgement, every value (when enabled).
    pub ack_latency: LatencyHistogram,
    /// Live sessions at the last update.
    pub sessions: usize,
    /// Sends the operating system refused (one destination's problem, never
    /// the server's: counted and logged, rate-limited).
    pub send_errors: u64,
    /// Data datagrams sent to each session, when the summary handed to
    /// [`serve`] asks for them (see [`ServerSummary::counting_data`]). Off
    /// by default: the map grows with every session a long-lived server
    /// ever sees.
    pub data_sent: Option<HashMap<Uuid, u64>>,
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
/// value is recorded into the summary's histogram.
pub async fn serve(
    socket: LossySocket,
    config: ServerConfig,
    shared: SharedSummary,
    shutdown: impl Future<Output = ()>,
) -> io::Result<ServerSummary> {
    let mut server = Server::new(config);
    let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
    let mut out = Vec::with_capacity(BATCH * DATA_LEN);
    let started = clock::now();
    let mut hist = LatencyHistogram::new();
    let mut next_publish = started;
    let mut send_errors = SendErrors::default();
    let mut data = shared
        .lock()
        .is_ok_and(|s| s.data_sent.is_some())
        .then(DataCounts::default);
    tokio::pin!(shutdown);
    loop {
        let wake = server
            .poll_timeout()
            .map_or(next_publish, |t| t.min(next_publish));
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = socket.recv_from(&mut buf) => {
                match r {
                    Ok((n, from)) => server.handle(clock::now(), from, &buf[..n]),
                    // ICMP errors (a client went away) surface here on some
                    // platforms: they concern one peer, not the server.
                    Err(e) if is_transient(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
            () = sleep_until_opt(Some(wake)) => server.handle_timeout(clock::now()),
        }
        let now = clock::now();
        // The select prefers datagrams: under a sustained flood the timer
        // branch would never be chosen. Run whatever timers are due on every
        // turn, so expiry and loss checks keep their time whatever the
        // receive rate (at most one datagram's work between two checks).
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
        // The core raises events only in `handle` and `handle_timeout`, so
        // none is missed by sending afterwards.
        while let Some(ev) = server.poll_event() {
            if let Some(d) = data.as_mut() {
                d.on_event(&ev);
            }
            on_event(&ev, &mut hist, now.saturating_duration_since(started));
        }
        while let Some(t) = server.poll_transmit(now, BATCH, &mut out) {
            for chunk in out[..t.size].chunks(t.segment_size) {
                if let Err(e) = socket.send_to(chunk, t.destination).await {
                    // A send error concerns one destination (EINVAL for port
                    // 0, EACCES for broadcast, ICMP-reported unreachables):
                    // the server carries on for everyone else.
                    send_errors.record(now, &e, t.destination);
                }
            }
        }
        if now >= next_publish {
            next_publish = now + PUBLISH_EVERY;
            publish(&shared, &server, &hist, send_errors.count, data.as_ref());
        }
    }
    publish(&shared, &server, &hist, send_errors.count, data.as_ref());
    let summary = shared.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(summary)
}

/// Logs a session event; records acknowledgement latencies at `elapsed`.
fn on_event(ev: &ServerEvent, hist: &mut LatencyHistogram, elapsed: Duration) {
    match *ev {
        ServerEvent::AckLatency { latency, .. } => hist.record_at(elapsed, latency),
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

fn publish(
    shared: &SharedSummary,
    server: &Server,
    hist: &LatencyHistogram,
    send_errors: u64,
    data: Option<&DataCounts>,
) {
    if let Ok(mut s) = shared.lock() {
        if let Some(d) = data {
            s.data_sent = Some(d.sent.clone());
        }
        s.send_errors = send_errors;
        s.stats = server.stats().clone();
        s.ack_latency = hist.clone();
        s.sessions = server.session_count();
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

/// Send failures: counted, and logged at most once per [`LOG_EVERY`] with
/// the number suppressed since.
#[derive(Debug, Default)]
struct SendErrors {
    count: u64,
    suppressed: u64,
    last_log: Option<std::time::Instant>,
}

/// Shortest gap between two log lines about send failures.
const LOG_EVERY: Duration = Duration::from_secs(1);

impl SendErrors {
    fn record(&mut self, now: std::time::Instant, e: &io::Error, to: SocketAddr) {
        self.count += 1;
        if self.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, %to, suppressed = self.suppressed, "send failed");
        self.last_log = Some(now);
        self.suppressed = 0;
    }
}

/// Most datagrams taken from the core per `poll_transmit`.
const BATCH: usize = 64;

/// How often the shared summary (health checks, histogram dumps) is updated.
const PUBLISH_EVERY: Duration = Duration::from_millis(200);

/// Default time a server keeps an idle session.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30);

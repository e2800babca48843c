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

use super::batch::{BatchSocket, IoMode, RecvSizing};
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
/// value is recorded into the summary's histogram. Uses batched I/O
/// ([`IoMode::Batched`]); see [`serve_with`] to choose.
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
    let started = clock::now();
    let mut hist = LatencyHistogram::new();
    let mut next_publish = started;
    let mut send_errors = SendErrors::default();
    let mut peak_sessions = 0;
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
            r = socket.readable() => {
                // ICMP errors (a client went away) surface here on some
                // platforms: they concern one peer, not the server.
                if let Err(e) = r.and_then(|()| {
                    let now = clock::now();
                    socket.try_recv(|from, d| server.handle(now, from, d))
                }) {
                    if !is_transient(&e) {
                        return Err(e);
                    }
                }
            }
            () = sleep_until_opt(Some(wake)) => server.handle_timeout(clock::now()),
        }
        let now = clock::now();
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
            if let Some(d) = data.as_mut() {
                d.on_event(&ev);
            }
            on_event(&ev, &mut hist, now.saturating_duration_since(started));
        }
        peak_sessions = peak_sessions.max(server.session_count());
        // Sessions take turns, one batch each (the core's round-robin).
        while let Some(t) = server.poll_transmit(now, BATCH, &mut out) {
            if let Err(e) = socket
                .send(t.destination, &out[..t.size], t.segment_size)
                .await
            {
                // A send error concerns one destination (EINVAL for port
                // 0, EACCES for broadcast, ICMP-reported unreachables):
                // the server carries on for everyone else.
                let lost = (t.count() - e.sent) as u64;
                send_errors.record(now, &e.error, t.destination, lost);
            }
        }
        if now >= next_publish {
            next_publish = now + PUBLISH_EVERY;
            publish(
                &shared,
                &server,
                &hist,
                &send_errors,
                peak_sessions,
                data.as_ref(),
            );
        }
    }
    publish(
        &shared,
        &server,
        &hist,
        &send_errors,
        peak_sessions,
        data.as_ref(),
    );
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
    send_errors: &SendErrors,
    peak_sessions: usize,
    data: Option<&DataCounts>,
) {
    if let Ok(mut s) = shared.lock() {
        if let Some(d) = data {
            s.data_sent = Some(d.sent.clone());
        }
        s.send_errors = send_errors.count;
        s.datagrams_unsent = send_errors.datagrams;
        s.peak_sessions = peak_sessions;
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
    /// Failed send calls.
    count: u64,
    /// Datagrams those failures kept from going out.
    datagrams: u64,
    suppressed: u64,
    last_log: Option<std::time::Instant>,
}

/// Shortest gap between two log lines about send failures.
const LOG_EVERY: Duration = Duration::from_secs(1);

impl SendErrors {
    fn record(&mut self, now: std::time::Instant, e: &io::Error, to: SocketAddr, lost: u64) {
        self.count += 1;
        self.datagrams += lost;
        if self.last_log.is_some_and(|t| now < t + LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, %to, suppressed = self.suppressed, "send failed");
        self.last_log = Some(now);
        self.suppressed = 0;
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

//! One worker: one UDP socket, every client it receives, demultiplexed by
//! UUID.
//!
//! One task owns the socket and the core ([`Server`]). It waits for
//! whichever comes first (a datagram, a store lookup's answer, the core's
//! next timer, or shutdown), feeds the core, and sends what the core hands
//! out. Nothing is queued outside the core, whose queues are bounded.
//! Store commands run in tasks of the worker's own
//! ([`StoreTasks`](super::store_tasks::StoreTasks)), which it joins before
//! it ends.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

use risp_netem::LossySocket;
use uuid::Uuid;

use super::store_tasks::StoreTasks;
use super::summary::{Publisher, ServerSummary, MAX_SESSION_SEEDS, PUBLISH_EVERY};
use crate::clock;
use crate::net::batch::{BatchSocket, IoMode, RecvSizing};
use crate::net::heartbeat::Heartbeat;
use crate::net::metrics::DriverMetrics;
use crate::net::qlog::ServerQlog;
use crate::net::security_log::SecurityLog;
use crate::net::session_store::SessionStore;
use crate::net::socket::{is_transient, sleep_until_opt};
use crate::proto::server::{Server, ServerConfig, ServerEvent};
use crate::proto::wire::{DATA_LEN, MAX_DATAGRAM_LEN};
use crate::stats::LatencyHistogram;

/// What a worker records beyond the fixed-size figures (each costs memory
/// that grows: with uptime, or with the sessions seen).
#[derive(Debug, Clone, Copy)]
pub(super) struct Recording {
    /// The acknowledgement-latency HdrHistogram with its per-second series.
    pub(super) ack_latency: bool,
    /// Data datagrams sent per session.
    pub(super) data_sent: bool,
    /// Each session's seed.
    pub(super) session_seeds: bool,
}

/// Everything one worker runs with.
pub(super) struct Worker {
    /// Its socket (possibly impaired).
    pub(super) socket: LossySocket,
    /// Batched or plain I/O.
    pub(super) io: IoMode,
    /// The core's settings (this worker's share of the limits).
    pub(super) config: ServerConfig,
    /// The session store shared with the other workers and instances.
    pub(super) store: Option<SessionStore>,
    /// What to record.
    pub(super) recording: Recording,
    /// Write each session's qlog trace into this directory.
    pub(super) qlog: Option<PathBuf>,
    /// Where the figures go.
    pub(super) out: Publisher,
}

impl Worker {
    /// Serves until `shutdown` resolves (or the socket fails); returns the
    /// final summary. Every task it spawned has ended when it returns.
    pub(super) async fn run(self, shutdown: impl Future<Output = ()>) -> io::Result<ServerSummary> {
        let Worker {
            socket,
            io,
            mut config,
            store,
            recording,
            qlog,
            out,
        } = self;
        config.trace = qlog.is_some();
        if store.is_some() && config.store.is_none() {
            config.store = Some(Default::default());
        }
        let socket = BatchSocket::new(socket, io, SERVER_RECV)?;
        let shared_store = store.clone();
        let mut store = store.map(StoreTasks::new);
        let mut rec = Recorder::new(&out, recording);
        rec.qlog = qlog.as_deref().map(ServerQlog::new);
        let mut turn = Turns {
            rec,
            server: Server::new(config),
            socket,
            out,
            buf: Vec::with_capacity(BATCH * DATA_LEN),
        };
        let served = turn.serve(&mut store, shutdown).await;
        if let Some(store) = store {
            turn.rec.store_write_errors = store.finish().await;
        }
        if let Some(q) = &mut turn.rec.qlog {
            q.drain(&mut turn.server, clock::now());
            q.finish(clock::now());
        }
        served?;
        turn.rec
            .publish(&turn.out, &turn.server, shared_store.as_ref());
        Ok(turn.out.current())
    }
}

/// The loop's state between turns.
struct Turns {
    server: Server,
    socket: BatchSocket,
    rec: Recorder,
    out: Publisher,
    /// Datagrams on their way out.
    buf: Vec<u8>,
}

impl Turns {
    /// The I/O loop, until `shutdown` (`Ok`) or a socket error (`Err`).
    async fn serve(
        &mut self,
        store: &mut Option<StoreTasks>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let mut next_publish = self.rec.started;
        tokio::pin!(shutdown);
        loop {
            // Never later than the next publish: an idle loop still turns
            // (and beats) every `PUBLISH_EVERY`.
            let wake = self
                .server
                .poll_timeout()
                .map_or(next_publish, |t| t.min(next_publish));
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                r = self.socket.readable() => self.receive(r)?,
                Some((lookup, outcome)) = StoreTasks::answer(store) => {
                    self.server.complete_lookup(clock::now(), lookup, outcome);
                }
                () = sleep_until_opt(Some(wake)) => self.server.handle_timeout(clock::now()),
            }
            let now = clock::now();
            self.after_input(now, store.as_mut()).await;
            if now >= next_publish {
                next_publish = now + PUBLISH_EVERY;
                self.rec.log.flush(now);
                if let Some(store) = store.as_ref() {
                    self.rec.store_write_errors = store.write_errors();
                }
                self.rec.publish(
                    &self.out,
                    &self.server,
                    store.as_ref().map(StoreTasks::store),
                );
            }
        }
    }

    /// Feeds the core everything the socket holds. ICMP errors (a client
    /// went away) surface here on some platforms: they concern one peer,
    /// not the server.
    fn receive(&mut self, ready: io::Result<()>) -> io::Result<()> {
        let Self {
            server,
            socket,
            rec,
            ..
        } = self;
        let r = ready.and_then(|()| {
            let mut clock = clock::BatchClock::start();
            let (metrics, log) = (&mut rec.metrics, &mut rec.log);
            socket.try_recv(|from, d| {
                let now = clock.tick();
                metrics.on_received(d);
                let mark = SecurityLog::mark(server.stats());
                server.handle(now, from, d);
                log.after_datagram(now, from, d.len(), &mark, server.stats());
            })
        });
        match r {
            Err(e) if !is_transient(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Everything a turn does once its input is in: due timers, events,
    /// seeds, store operations, and what the core has to send.
    async fn after_input(&mut self, now: Instant, store: Option<&mut StoreTasks>) {
        self.rec.heartbeat.beat(now);
        // The select prefers datagrams: under a sustained flood the timer
        // branch would never be chosen. Run whatever timers are due on
        // every turn, so expiry and loss checks keep their time whatever
        // the receive rate (at most one receive batch between two checks).
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        // The core raises events only in `handle` and `handle_timeout`, so
        // none is missed by sending afterwards.
        while let Some(ev) = self.server.poll_event() {
            self.rec.on_event(&ev, now, &self.server);
        }
        // Before anything goes out: a client never sees a value of a
        // session whose seed is not yet in the summary.
        self.rec.publish_seeds(&self.out);
        self.rec.peak_sessions = self.rec.peak_sessions.max(self.server.session_count());
        if let Some(store) = store {
            self.server.set_store_available(store.store().is_up());
            while let Some(op) = self.server.poll_store_op() {
                if !store.carry_out(op) {
                    self.rec.store_writes_dropped += 1;
                }
            }
        }
        // Sessions take turns, one batch each (the core's round-robin).
        while let Some(t) = self.server.poll_transmit(now, BATCH, &mut self.buf) {
            let out = &self.buf;
            self.rec.metrics.on_sent(&out[..t.segment_size], t.count());
            if let Err(e) = self
                .socket
                .send(t.destination, &out[..t.size], t.segment_size)
                .await
            {
                // A send error concerns one destination (EINVAL for port
                // 0, EACCES for broadcast, ICMP-reported unreachables):
                // the server carries on for everyone else.
                self.rec.datagrams_unsent += t.count().saturating_sub(e.sent) as u64;
                self.rec.log.send_failed(now, &e.error, t.destination);
            }
        }
        if let Some(q) = &mut self.rec.qlog {
            q.drain(&mut self.server, now);
        }
    }
}

/// What the worker records beside the core, and publishes.
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
    /// Each session's qlog trace, when asked.
    qlog: Option<ServerQlog>,
}

impl Recorder {
    /// Records what `recording` asks for, beating the heartbeat of the
    /// summary `out` starts from.
    fn new(out: &Publisher, recording: Recording) -> Self {
        Self {
            started: clock::now(),
            heartbeat: out.current().heartbeat,
            metrics: DriverMetrics::default(),
            hist: recording.ack_latency.then(LatencyHistogram::new),
            log: SecurityLog::default(),
            data: recording.data_sent.then(DataCounts::default),
            seeds: recording.session_seeds.then(Vec::new),
            peak_sessions: 0,
            datagrams_unsent: 0,
            store_writes_dropped: 0,
            store_write_errors: 0,
            qlog: None,
        }
    }

    /// Records and logs a session event that happened at `now` on
    /// `server` (which still holds the session an open or resume names).
    fn on_event(&mut self, ev: &ServerEvent, now: Instant, server: &Server) {
        if let Some(d) = self.data.as_mut() {
            d.on_event(ev);
        }
        if let Some(q) = self.qlog.as_mut() {
            q.on_event(ev, server);
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

    /// Adds the seeds recorded since the last call to the summary (nothing
    /// published when there are none), up to [`MAX_SESSION_SEEDS`].
    fn publish_seeds(&mut self, out: &Publisher) {
        let Some(pending) = self.seeds.as_mut().filter(|p| !p.is_empty()) else {
            return;
        };
        out.update(|s| {
            let seeds = s.session_seeds.get_or_insert_with(BTreeMap::new);
            for (uuid, seed) in pending.drain(..) {
                if seeds.len() < MAX_SESSION_SEEDS || seeds.contains_key(&uuid) {
                    seeds.insert(uuid, seed);
                }
            }
        });
        pending.clear();
    }

    /// Publishes the current figures.
    fn publish(&self, out: &Publisher, server: &Server, store: Option<&SessionStore>) {
        out.update(|s| {
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
            if let Some(q) = &self.qlog {
                s.qlog_files = q.files();
                s.qlog_not_written = q.not_written();
            }
        });
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

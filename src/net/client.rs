//! The client driver behind [`stream::Client`](super::stream::Client): one
//! socket (replaced on each killswitch, and on each move to another server
//! of the list), one [`Client`] core, timers from the core.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use risp_netem::{ImpairedLink, LossySocket, Side};

use super::batch::{BatchSocket, RecvSizing};
use super::pending_acks::{PendingAcks, ACKS_PER_BATCH};
use super::qlog::ClientQlog;
use super::socket::{is_transient, sleep_until_opt};
use super::stream::{ClientOptions, TotalsFeed, TransferError, Values};
use crate::clock;
use crate::proto::client::{Client, ClientEvent};
use crate::proto::wire::{MAX_DATAGRAM_LEN, MAX_SERVER_DATAGRAM_LEN};
use crate::transfer::ServerOutcome;
use crate::transfer::{TransferRecorder, TransferReport};

/// How long a stopped transfer waits for the server to confirm that it
/// freed the session (see [`Transfer::abort`](super::stream::Transfer::abort)).
pub const ABORT_GRACE: Duration = Duration::from_secs(1);

/// Runs one transfer to its end (or to [`ClientOptions::stop_after`]);
/// `values` sees each value in order (and a flush after each batch of
/// events). The transfer also ends early, with the report so far, when
/// `values` returns [`ControlFlow::Break`] (the values' reader went away)
/// or when `stop` completes (an abort). An early
/// end is not an error: the report is simply not verified. On `stop` the
/// client first [aborts](Client::abort) the session, so that the server
/// frees it at once, and waits up to [`ABORT_GRACE`] for the server's
/// answer.
///
/// The socket is connected to the server, so where the OS learns that
/// nothing listens there (ICMP port unreachable), the transfer moves on to
/// the next server of [`ClientOptions::servers`] at once; when every
/// server refused in a row and nothing was heard from any yet, it fails
/// with [`TransferError::Refused`] (later, a refusal is taken as
/// transient). Other errors are local socket errors; protocol failures are
/// in [`TransferReport::error`].
pub(crate) async fn run_until(
    opts: ClientOptions,
    mut values: impl Values,
    stop: impl Future<Output = ()>,
) -> Result<TransferReport, TransferError> {
    tokio::pin!(stop);
    let mut d = Driver::start(opts).await?;
    loop {
        let now = clock::now();
        if d.aborting.is_some_and(|deadline| now >= deadline) {
            break;
        }
        d.move_if_needed(now).await?;
        d.send_due(now).await?;
        let flow = drain_events(&mut d.client, &mut d.recorder, now, &mut values);
        if d.recorder.is_finished() || flow.is_break() {
            break;
        }
        if d.unreachable || d.client.wants_failover().is_some() {
            // Moves at the top of the loop.
            continue;
        }
        if d.opts
            .stop_after
            .is_some_and(|n| d.client.next_index() >= n)
        {
            break;
        }
        d.publish_interval(now);
        d.feed_totals();
        let wake = d.wake();
        tokio::select! {
            r = d.socket.readable() => d.on_readable(r).await?,
            () = &mut stop, if d.aborting.is_none() => {
                let now = clock::now();
                d.client.abort(now);
                d.aborting = Some(now + ABORT_GRACE);
            }
            () = sleep_until_opt(wake) => d.on_wake().await?,
        }
    }
    Ok(d.finish())
}

/// The state of one transfer's driver loop (see [`run_until`]).
struct Driver {
    opts: ClientOptions,
    /// One impairment model for the whole transfer, whatever sockets it
    /// goes through (as the simulator's one model per client link).
    link: Option<ImpairedLink>,
    servers: ServerList,
    socket: BatchSocket,
    client: Client,
    recorder: TransferRecorder,
    out: Vec<u8>,
    acks: PendingAcks,
    moves: Moves,
    /// Set once `stop` fired: the abort's deadline.
    aborting: Option<Instant>,
    /// Set when the OS said that nothing listens at the current server.
    unreachable: bool,
    /// Where the transfer's running figures go, when asked for.
    totals: Option<TotalsFeed>,
    /// The session's qlog trace, when asked for.
    qlog: Option<ClientQlog>,
}

impl Driver {
    async fn start(opts: ClientOptions) -> Result<Self, TransferError> {
        let started = clock::now();
        let link = match &opts.impairment {
            Some((cfg, seed)) if !cfg.is_clean() => Some(ImpairedLink::new(cfg.clone(), *seed)?),
            _ => None,
        };
        let servers = ServerList::new(&opts.servers)?;
        let socket = open(servers.current(), link.as_ref(), &opts).await?;
        // No cap at the socket's receive buffer: the server paces each
        // session (bursts of about a millisecond), so the flight is in the
        // network, not in the buffer, and a long path needs a window far
        // larger than any buffer holds.
        let mut config = opts.config.clone();
        config.servers = servers.len();
        config.trace = opts.qlog.is_some();
        let client = match opts.resume.clone() {
            Some(r) => Client::resume(config, r, started),
            None => Client::new(config, started),
        };
        let recorder = TransferRecorder::new(client.uuid(), opts.config.len, started)
            .keep_histograms(opts.keep_histograms)
            .intervals(opts.interval);
        let moves = Moves::new(&opts, started);
        let totals = opts.totals.clone().map(TotalsFeed::start);
        let qlog = match &opts.qlog {
            Some(dir) => Some(
                ClientQlog::create(dir, client.uuid(), opts.config.len, started)
                    .map_err(|e| TransferError::Qlog(e.into()))?,
            ),
            None => None,
        };
        Ok(Self {
            opts,
            link,
            servers,
            socket,
            client,
            recorder,
            out: vec![0u8; MAX_DATAGRAM_LEN],
            acks: PendingAcks::default(),
            moves,
            aborting: None,
            unreachable: false,
            totals,
            qlog,
        })
    }

    /// Fails over to the next server when the core or the OS says so.
    async fn move_if_needed(&mut self, now: Instant) -> Result<(), TransferError> {
        if let Some(reason) = self.client.wants_failover() {
            self.servers.left(reason.to_string());
            self.unreachable = true;
        }
        if std::mem::take(&mut self.unreachable) {
            // A new socket: the old one's errors and stray datagrams stay
            // with it.
            self.client.failover(now);
            self.servers.moved_to(self.client.server_index());
            self.socket = self.open().await?;
            tracing::info!(server = %self.servers.current(), "failover: resuming on the next server");
        }
        Ok(())
    }

    async fn open(&self) -> io::Result<BatchSocket> {
        open(self.servers.current(), self.link.as_ref(), &self.opts).await
    }

    /// Sends what the core has to send now.
    async fn send_due(&mut self, now: Instant) -> Result<(), TransferError> {
        while let Some(n) = self.client.poll_transmit(now, &mut self.out) {
            let to = self.servers.current();
            let sent = self.socket.send(to, &self.out[..n], n).await;
            if let Some(q) = &mut self.qlog {
                q.hold(&mut self.client, Some(0));
                q.release(|_| sent.is_ok());
            }
            if let Err(e) = sent {
                if self.servers.on_error(e.error, &self.client)?.is_break() {
                    self.unreachable = true;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Hands a finished interval to whoever asked for them.
    fn publish_interval(&mut self, now: Instant) {
        if let Some(done) = self.recorder.tick(now, &self.client) {
            if let Some(tx) = &self.opts.interval_tx {
                // The receiver may have gone away; the report keeps it anyway.
                let _ = tx.send(done.clone());
            }
        }
    }

    /// Adds what changed to the running totals, when there are any.
    fn feed_totals(&mut self) {
        if let Some(t) = &mut self.totals {
            let link = self.link.as_ref().map(ImpairedLink::stats);
            let dropped = link.map_or(0, |l| l.to_server.dropped + l.to_client.dropped);
            let delivered = u64::from(self.recorder.report().delivered);
            t.update(delivered, &self.client.stats(), dropped);
        }
    }

    /// When the loop must wake up if nothing arrives.
    fn wake(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.moves.next(),
            self.aborting,
            self.recorder.interval_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything waiting, in one or a few system calls. The core is asked
    /// for its acks after every datagram, as if they had come one by one,
    /// and the last two it wrote go out after the batch (one alone, when
    /// lost, leaves the server waiting for a probe timeout; all of them
    /// cost more than they tell), with every earlier ack that later ones
    /// cannot repeat the news of (see `PendingAcks::selected`).
    /// docs/PERFORMANCE.md has the measurements behind these choices.
    async fn on_readable(&mut self, r: io::Result<()>) -> Result<(), TransferError> {
        let server = self.servers.current();
        let (client, acks, qlog) = (&mut self.client, &mut self.acks, &mut self.qlog);
        client.begin_batch();
        let r = r.and_then(|()| {
            let mut clock = clock::BatchClock::start();
            self.socket.try_recv(|from, d| {
                let now = clock.tick();
                // Not our server: ignore.
                if from == server {
                    client.handle(now, d);
                    acks.take_from(client, now, qlog.as_mut());
                }
            })
        });
        client.end_batch();
        acks.take_from(client, clock::now(), qlog.as_mut());
        if let Err(e) = r {
            // A refusal moves at the top of the loop.
            self.unreachable = self.servers.on_error(e, &self.client)?.is_break();
        }
        // Acks that did not go out (a send error, or a move), for the trace.
        let mut unsent = Vec::new();
        for (slot, ack) in self.acks.selected(ACKS_PER_BATCH) {
            if self.unreachable {
                unsent.push(slot);
                continue;
            }
            if let Err(e) = self.socket.send(server, ack, ack.len()).await {
                unsent.push(slot);
                self.unreachable = self.servers.on_error(e.error, &self.client)?.is_break();
            }
        }
        if let Some(q) = &mut self.qlog {
            q.hold(&mut self.client, None);
            let acks = &self.acks;
            q.release(|slot| acks.was_selected(slot) && !unsent.contains(&slot));
        }
        self.acks.clear();
        Ok(())
    }

    /// A timer is due: the killswitch's or rebinding's new socket, the
    /// core's timers.
    async fn on_wake(&mut self) -> Result<(), TransferError> {
        let now = clock::now();
        let (kill, rebind) = self.moves.take_due(now);
        if kill {
            self.recorder.report_mut().reconnects += 1;
            self.socket = self.open().await?;
            tracing::debug!(port = ?self.socket.local_addr().ok(), "killswitch: new socket");
            self.client.reconnect(now);
        }
        if rebind {
            self.recorder.report_mut().rebinds += 1;
            self.socket = self.open().await?;
            tracing::debug!(port = ?self.socket.local_addr().ok(), "rebind: new socket");
        }
        self.client.handle_timeout(now);
        Ok(())
    }

    /// The transfer's report, with what the servers and the link saw.
    fn finish(mut self) -> TransferReport {
        self.feed_totals();
        let mut report = self.recorder.finish(clock::now(), &self.client);
        report.servers = self.servers.outcomes();
        if let Some(link) = &self.link {
            report.link = link.stats();
        }
        let c = report.client;
        report.datagrams_to_server = c.datagrams_sent;
        report.datagrams_to_client = c.datagrams_received.max(report.link.to_client.seen);
        if let Some(t) = &mut self.totals {
            t.set_verified(report.verified());
        }
        if let Some(mut q) = self.qlog.take() {
            q.drain(&mut self.client);
            // Logged where it happened; the transfer's outcome stands.
            let _ = q.finish(clock::now(), &report);
        }
        report
    }
}

/// Hands the client's events to the recorder, and values to `values`
/// (all of them, even after a `Break`, so the report counts what arrived).
fn drain_events(
    client: &mut Client,
    recorder: &mut TransferRecorder,
    now: Instant,
    values: &mut impl Values,
) -> ControlFlow<()> {
    let mut flow = ControlFlow::Continue(());
    while let Some(ev) = client.poll_event() {
        recorder.record(now, &ev);
        match ev {
            ClientEvent::Restarted { uuid } => {
                tracing::info!(%uuid, "handshake refused; starting over under a new UUID");
            }
            ClientEvent::Value { index, value, .. } if flow.is_continue() => {
                flow = values.push(index, value);
            }
            _ => {}
        }
    }
    values.flush();
    flow
}

/// The servers of a transfer, the one in use, and why each was left.
struct ServerList {
    addrs: Vec<SocketAddr>,
    current: usize,
    /// Why the client last moved away from each.
    left: Vec<Option<String>>,
    /// Refusals by the OS (nothing listens there) in a row, with nothing
    /// received in between.
    refusals: usize,
    /// The client's received count when `refusals` started.
    received_mark: u64,
}

impl ServerList {
    fn new(addrs: &[SocketAddr]) -> Result<Self, TransferError> {
        if addrs.is_empty() {
            return Err(TransferError::NoServer);
        }
        Ok(Self {
            addrs: addrs.to_vec(),
            current: 0,
            left: vec![None; addrs.len()],
            refusals: 0,
            received_mark: 0,
        })
    }

    fn current(&self) -> SocketAddr {
        self.addrs[self.current]
    }

    /// How many (for [`ClientConfig::servers`](crate::proto::client::ClientConfig::servers)).
    fn len(&self) -> u32 {
        u32::try_from(self.addrs.len()).unwrap_or(u32::MAX)
    }

    /// The client leaves the current server, for `why`.
    fn left(&mut self, why: String) {
        self.left[self.current] = Some(why);
    }

    /// The client moved to server `index` of the list.
    fn moved_to(&mut self, index: u32) {
        self.current = index as usize % self.addrs.len();
    }

    /// What a socket error means: `Err` ends the transfer (a local error,
    /// or every server refused before any was heard from), `Break` moves
    /// to the next server (the OS says nothing listens at this one), and
    /// `Continue` waits on (a transient error; or a refusal once every
    /// server refused in a row after contact, when the probe timer decides
    /// when to move rather than a spin through refusing servers).
    fn on_error(
        &mut self,
        e: io::Error,
        client: &Client,
    ) -> Result<ControlFlow<()>, TransferError> {
        if !is_transient(&e) {
            return Err(e.into());
        }
        if e.kind() != io::ErrorKind::ConnectionRefused {
            return Ok(ControlFlow::Continue(()));
        }
        let received = client.stats().datagrams_received;
        if received != self.received_mark {
            self.refusals = 0;
            self.received_mark = received;
        }
        self.refusals += 1;
        if self.refusals < self.addrs.len() {
            self.left("port unreachable".to_string());
            return Ok(ControlFlow::Break(()));
        }
        if received == 0 {
            // Nothing listens anywhere: no point waiting for an answer.
            return Err(TransferError::Refused {
                servers: self.addrs.clone(),
            });
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Each server and why it was left (none with one server).
    fn outcomes(&self) -> Vec<ServerOutcome> {
        if self.addrs.len() < 2 {
            return Vec::new();
        }
        self.addrs
            .iter()
            .zip(&self.left)
            .map(|(&addr, left)| ServerOutcome {
                addr,
                left: left.clone(),
            })
            .collect()
    }
}

/// When the driver moves to a new socket: every `killswitch` (a new
/// socket and a reconnect), and at each `rebind_at` time (a new socket the
/// client is not told about, as a NAT rebinding).
struct Moves {
    killswitch: Option<Duration>,
    next_kill: Option<Instant>,
    /// Latest first, so the next one is at the end.
    rebinds: Vec<Instant>,
}

impl Moves {
    fn new(opts: &ClientOptions, started: Instant) -> Self {
        let mut rebinds: Vec<Instant> = opts.rebind_at.iter().map(|d| started + *d).collect();
        rebinds.sort();
        rebinds.reverse();
        Self {
            killswitch: opts.killswitch,
            next_kill: opts.killswitch.map(|k| started + k),
            rebinds,
        }
    }

    /// The next move.
    fn next(&self) -> Option<Instant> {
        [self.next_kill, self.rebinds.last().copied()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Which moves are due at `now`: (killswitch, rebind).
    fn take_due(&mut self, now: Instant) -> (bool, bool) {
        let kill = self.next_kill.is_some_and(|t| t <= now);
        if kill {
            self.next_kill = self.killswitch.map(|k| now + k);
        }
        let rebind = self.rebinds.last().is_some_and(|t| *t <= now);
        if rebind {
            self.rebinds.pop();
        }
        (kill, rebind)
    }
}

/// The client's receive buffers: a plain server datagram is at most
/// [`MAX_SERVER_DATAGRAM_LEN`] bytes, a sealed one 32 more, and a
/// handshake reply (once per session) about 140: 256 bytes hold any of
/// them, one buffer a whole coalesced run (64 datagrams) in 16 KiB, and
/// 16 of them take up to 1,024 datagrams per system call.
const CLIENT_RECV: RecvSizing = RecvSizing {
    max_datagram: 8 * MAX_SERVER_DATAGRAM_LEN,
    segments: 64,
    slots: 16,
};

/// A fresh socket for talking to `server`, on `link` when impaired, with
/// the options' I/O mode and capture.
async fn open(
    server: SocketAddr,
    link: Option<&ImpairedLink>,
    opts: &ClientOptions,
) -> io::Result<BatchSocket> {
    let mut socket = open_lossy(server, link).await?;
    if let Some(capture) = &opts.capture {
        socket = socket.with_capture(Arc::clone(capture))?;
    }
    BatchSocket::new(socket, opts.io, CLIENT_RECV)
}

/// A fresh connected UDP socket for `server`, wrapped in the shim.
async fn open_lossy(server: SocketAddr, link: Option<&ImpairedLink>) -> io::Result<LossySocket> {
    let bind: SocketAddr = if server.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = super::socket::bind(bind).await?;
    // Connected: only the server's datagrams arrive, and an ICMP port
    // unreachable comes back as ECONNREFUSED.
    socket.connect(server).await?;
    match link {
        Some(link) => LossySocket::on_link(socket, Side::Client, link),
        None => Ok(LossySocket::passthrough(socket)),
    }
}

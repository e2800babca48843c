//! A transfer as an async stream of values: [`Client`] says where and how
//! to ask, [`Client::request`] starts a [`Transfer`], whose
//! [`next`](Transfer::next) yields the values in index order and whose
//! [`finish`](Transfer::finish) gives the [`TransferReport`].
//!
//! ```no_run
//! # async fn example() -> Result<(), risp_udp::net::stream::TransferError> {
//! use risp_udp::net::stream::Client;
//! let server = "127.0.0.1:8081".parse().unwrap();
//! let mut transfer = Client::connect([server]).request(1_000).await?;
//! while let Some(v) = transfer.next().await {
//!     let v = v?;
//!     println!("{}: {}", v.index, v.value);
//! }
//! let report = transfer.finish().await?;
//! assert!(report.verified());
//! # Ok(()) }
//! ```
//!
//! The transfer runs in the task that awaits it, as a [`Future`] or a
//! `Stream` does: values are handed over without a channel, and a reader
//! that stops reading stops the transfer (the server's probes go
//! unanswered), as a slow reader of a socket does. To run many transfers
//! side by side, each in a task of its own, use [`TransferSet`].

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use risp_netem::ImpairmentConfig;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::batch::IoMode;
use super::client::run_until;
use crate::proto::client::{ClientConfig, ClientError, ResumeState};
use crate::transfer::{IntervalStats, TransferReport};

/// How the driver runs one transfer (what a [`Client`] carries).
#[derive(Debug, Clone)]
pub(crate) struct ClientOptions {
    /// The servers' addresses: the transfer starts with the first and
    /// moves round robin to the next when the core asks (the current one
    /// went silent or forgot the session) or when the OS says nothing
    /// listens at one.
    pub(crate) servers: Vec<SocketAddr>,
    /// Protocol settings (UUID, length, window...).
    pub(crate) config: ClientConfig,
    /// Resume a session another client started.
    pub(crate) resume: Option<ResumeState>,
    /// Impairments applied by the lossy-socket shim (None: plain socket).
    pub(crate) impairment: Option<(ImpairmentConfig, u64)>,
    /// Drop the socket every this often and resume from a fresh port.
    pub(crate) killswitch: Option<Duration>,
    /// Move to a fresh port at these offsets without telling the core (NAT
    /// rebinding: the server must follow the token, not the address).
    pub(crate) rebind_at: Vec<Duration>,
    /// Record the rtt, delivery and stall histograms.
    pub(crate) keep_histograms: bool,
    /// Stop after this many values; None: run to the end.
    pub(crate) stop_after: Option<u32>,
    /// Batched or plain socket I/O.
    pub(crate) io: IoMode,
    /// Cut the transfer into intervals of this length.
    pub(crate) interval: Option<Duration>,
    /// Where each interval goes as it ends.
    pub(crate) interval_tx: Option<mpsc::UnboundedSender<IntervalStats>>,
}

/// Why a transfer ended without its values, beyond what the protocol
/// reports. Cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransferError {
    /// The client was given no server.
    #[error("no server address to connect to")]
    NoServer,
    /// Every server refused (the OS said nothing listens there) before any
    /// answered.
    #[error("{}", refused(servers))]
    Refused {
        /// The servers, in the order tried.
        servers: Vec<SocketAddr>,
    },
    /// The transfer failed: the protocol's reason (the report, from
    /// [`Transfer::finish`], says more).
    #[error("{0}")]
    Failed(ClientError),
    /// [`Transfer::abort`] (or an [`AbortHandle`]) stopped it.
    #[error("aborted")]
    Aborted,
    /// A local socket error (or the transfer's task panicked).
    #[error("{0}")]
    Io(Arc<io::Error>),
}

impl From<io::Error> for TransferError {
    fn from(e: io::Error) -> Self {
        TransferError::Io(Arc::new(e))
    }
}

/// "nothing listens on udp A (the host answered: port unreachable)".
fn refused(servers: &[SocketAddr]) -> String {
    let names: Vec<String> = servers.iter().map(ToString::to_string).collect();
    let who = if servers.len() == 1 {
        "the host"
    } else {
        "every host"
    };
    format!(
        "nothing listens on udp {} ({who} answered: port unreachable)",
        names.join(", ")
    )
}

/// One value of the sequence, at its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value {
    /// Its position, from 0.
    pub index: u32,
    /// The value.
    pub value: u32,
}

/// Where and how to request a sequence: the servers, then protocol
/// settings, impairments and what to record, then
/// [`request`](Self::request).
#[derive(Debug, Clone)]
pub struct Client {
    opts: ClientOptions,
    abort: Option<AbortHandle>,
}

impl Client {
    /// A client of `servers`: it starts with the first and, when that one
    /// goes silent, forgets the session or does not listen, resumes the
    /// session on the next, round robin (servers that share a session
    /// store). A fresh random UUID, the default settings, no impairment.
    pub fn connect(servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            opts: ClientOptions {
                servers: servers.into_iter().collect(),
                config: ClientConfig::new(Uuid::new_v4(), 0),
                resume: None,
                impairment: None,
                killswitch: None,
                rebind_at: Vec::new(),
                keep_histograms: true,
                stop_after: None,
                io: IoMode::Batched,
                interval: None,
                interval_tx: None,
            },
            abort: None,
        }
    }

    /// Protocol settings: UUID, window, timers, acks (the length is
    /// [`request`](Self::request)'s).
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.opts.config = config;
        self
    }

    /// The session's UUID.
    pub fn uuid(mut self, uuid: Uuid) -> Self {
        self.opts.config.uuid = uuid;
        self
    }

    /// Resumes a session another client started (its
    /// [`TransferReport::resume`]).
    pub fn resume(mut self, state: ResumeState) -> Self {
        self.opts.resume = Some(state);
        self
    }

    /// Impairs this client's socket (both directions) with the
    /// lossy-socket shim, seeded `seed`; one model for the whole transfer,
    /// whatever sockets it goes through.
    pub fn impairment(mut self, config: ImpairmentConfig, seed: u64) -> Self {
        self.opts.impairment = Some((config, seed));
        self
    }

    /// Drops the socket every `every` and resumes from a fresh port.
    pub fn killswitch(mut self, every: Duration) -> Self {
        self.opts.killswitch = Some(every);
        self
    }

    /// Moves to a fresh port at these offsets from the start without
    /// telling the core (a NAT rebinding).
    pub fn rebind_at(mut self, at: Vec<Duration>) -> Self {
        self.opts.rebind_at = at;
        self
    }

    /// Records the rtt, delivery and stall histograms (on by default; a
    /// load of thousands of clients that reports only aggregates turns
    /// them off: each costs hundreds of KiB).
    pub fn keep_histograms(mut self, keep: bool) -> Self {
        self.opts.keep_histograms = keep;
        self
    }

    /// Stops after this many values (to hand the session to another
    /// client, with [`resume`](Self::resume)).
    pub fn stop_after(mut self, values: u32) -> Self {
        self.opts.stop_after = Some(values);
        self
    }

    /// Batched (the default) or plain socket I/O.
    pub fn io(mut self, mode: IoMode) -> Self {
        self.opts.io = mode;
        self
    }

    /// Cuts the transfer into intervals of `every`: each comes from
    /// [`Transfer::intervals`] as it ends, and all are in the report.
    pub fn interval(mut self, every: Duration) -> Self {
        self.opts.interval = Some(every);
        self
    }

    /// Requests `len` values and starts the transfer: when it returns, the
    /// request is on its way to the first server. Fails on what stops a
    /// transfer before it begins (no server, an impairment the shim
    /// refuses, a socket that cannot be opened).
    pub async fn request(self, len: u32) -> Result<Transfer, TransferError> {
        let mut transfer = Transfer::start(self, len);
        poll_fn(|cx| transfer.poll_start(cx)).await?;
        Ok(transfer)
    }
}

/// Stops transfers from anywhere: clones share one switch, and a
/// [`TransferSet`]'s stops every transfer of the set.
#[derive(Debug, Clone)]
pub struct AbortHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl AbortHandle {
    fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    /// Aborts: each transfer tells its server to free the session and
    /// waits a moment for the answer; its values end with
    /// [`TransferError::Aborted`].
    pub fn abort(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`abort`](Self::abort) was called.
    pub fn is_aborted(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once aborted.
    fn aborted(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // The sender lives as long as any handle; were it gone, no
            // abort could come.
            if rx.wait_for(|aborted| *aborted).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Where the driver puts the values it delivers (see
/// [`run_until`](super::client::run_until)).
pub(crate) trait Values {
    /// One value, in order; `Break` ends the transfer.
    fn push(&mut self, index: u32, value: u32) -> ControlFlow<()>;
    /// The end of a batch of events: what was pushed may be handed on.
    fn flush(&mut self);
}

/// What the driver hands over between two polls.
#[derive(Debug, Default)]
struct Inbox {
    values: Mutex<VecDeque<Value>>,
    /// Set by [`Transfer::finish`]: values are no longer kept.
    discard: AtomicBool,
}

/// The driver's side of the inbox: values gather here during a batch and
/// move to the inbox at its end (one lock per batch, not per value).
#[derive(Debug)]
struct Sink {
    inbox: Arc<Inbox>,
    batch: Vec<Value>,
}

impl Values for Sink {
    fn push(&mut self, index: u32, value: u32) -> ControlFlow<()> {
        self.batch.push(Value { index, value });
        ControlFlow::Continue(())
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if !self.inbox.discard.load(Ordering::Relaxed) {
            if let Ok(mut v) = self.inbox.values.lock() {
                v.extend(self.batch.iter().copied());
            }
        }
        self.batch.clear();
    }
}

type Driver = Pin<Box<dyn Future<Output = Result<TransferReport, TransferError>> + Send>>;

/// One transfer under way: its values in order ([`next`](Self::next)), its
/// running figures, and its end ([`finish`](Self::finish),
/// [`abort`](Self::abort)). Dropping it ends the transfer at once without
/// telling the server (which forgets the session after its lifetime).
pub struct Transfer {
    /// The driver, until it ends.
    driver: Option<Driver>,
    inbox: Arc<Inbox>,
    /// Values taken from the inbox, not yet read.
    ready: VecDeque<Value>,
    /// What the driver returned.
    outcome: Option<Result<TransferReport, TransferError>>,
    /// The last item [`next`](Self::next) yields, once.
    last: Option<TransferError>,
    abort: AbortHandle,
    intervals: Option<mpsc::UnboundedReceiver<IntervalStats>>,
    uuid: Uuid,
    len: u32,
    /// Values read so far.
    read: u32,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("uuid", &self.uuid)
            .field("len", &self.len)
            .field("read", &self.read)
            .field("running", &self.driver.is_some())
            .finish_non_exhaustive()
    }
}

impl Transfer {
    fn start(client: Client, len: u32) -> Self {
        let Client { mut opts, abort } = client;
        opts.config.len = len;
        let (uuid, abort) = (opts.config.uuid, abort.unwrap_or_else(AbortHandle::new));
        let intervals = opts.interval.map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            opts.interval_tx = Some(tx);
            rx
        });
        let inbox = Arc::new(Inbox::default());
        let sink = Sink {
            inbox: inbox.clone(),
            batch: Vec::new(),
        };
        let driver = Box::pin(run_until(opts, sink, abort.aborted()));
        Self {
            driver: Some(driver),
            inbox,
            ready: VecDeque::new(),
            outcome: None,
            last: None,
            abort,
            intervals,
            uuid,
            len,
            read: 0,
        }
    }

    /// The session's UUID (a refused handshake restarts under a new one;
    /// the report has the last).
    pub fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// Values requested.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when no values were requested.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Values read so far.
    pub fn read(&self) -> u32 {
        self.read
    }

    /// The running figures: one [`IntervalStats`] as each interval ends
    /// (values, rate, retransmit requests, duplicates, timeouts, RTT,
    /// window), with [`Client::interval`]; `None` without it, or once
    /// taken.
    pub fn intervals(&mut self) -> Option<mpsc::UnboundedReceiver<IntervalStats>> {
        self.intervals.take()
    }

    /// A handle that aborts this transfer from anywhere.
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// Aborts the transfer: the client tells the server to free the
    /// session and waits up to [`ABORT_GRACE`](super::client::ABORT_GRACE)
    /// for its answer while [`next`](Self::next) or
    /// [`finish`](Self::finish) is awaited; the values then end with
    /// [`TransferError::Aborted`], and the report is the partial one.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// The next value, in index order. After the last: `None` when every
    /// value arrived and the checksum matched (or
    /// [`Client::stop_after`] was reached); else one `Err` saying why they
    /// stopped ([`TransferError::Failed`], [`TransferError::Aborted`], a
    /// local error), then `None`. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<Value, TransferError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The next value already delivered, without waiting (and without
    /// driving the transfer): for a reader that takes a batch per
    /// [`next`](Self::next).
    pub fn next_ready(&mut self) -> Option<Value> {
        if self.ready.is_empty() {
            self.take_inbox();
        }
        let v = self.ready.pop_front()?;
        self.read += 1;
        Some(v)
    }

    /// [`next`](Self::next) as a poll, for a `Stream` adapter.
    pub fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Value, TransferError>>> {
        loop {
            if let Some(v) = self.ready.pop_front() {
                self.read += 1;
                return Poll::Ready(Some(Ok(v)));
            }
            if self.take_inbox() {
                continue;
            }
            let Some(driver) = self.driver.as_mut() else {
                return Poll::Ready(self.last.take().map(Err));
            };
            match driver.as_mut().poll(cx) {
                Poll::Ready(r) => self.ended(r),
                Poll::Pending if self.take_inbox() => {}
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Runs the transfer to its end, dropping the values not read, and
    /// returns its report (partial after an abort; a protocol failure is
    /// in [`TransferReport::error`]). Fails only where no report exists:
    /// every server refused, or a local error.
    pub async fn finish(mut self) -> Result<TransferReport, TransferError> {
        self.inbox.discard.store(true, Ordering::Relaxed);
        self.ready.clear();
        if let Some(mut driver) = self.driver.take() {
            let r = driver.as_mut().await;
            self.ended(r);
        }
        self.outcome.take().unwrap_or(Err(TransferError::Aborted))
    }

    /// Moves what the driver delivered to `ready`; true if there was any.
    fn take_inbox(&mut self) -> bool {
        if let Ok(mut v) = self.inbox.values.lock() {
            std::mem::swap(&mut *v, &mut self.ready);
        }
        !self.ready.is_empty()
    }

    /// Polls the driver once: up to its first wait, the request is sent.
    fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransferError>> {
        if let Some(driver) = self.driver.as_mut() {
            if let Poll::Ready(r) = driver.as_mut().poll(cx) {
                if let Err(e) = &r {
                    return Poll::Ready(Err(e.clone()));
                }
                self.ended(r);
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The driver returned `r`: what the values end with.
    fn ended(&mut self, r: Result<TransferReport, TransferError>) {
        self.driver = None;
        self.last = match &r {
            Err(e) => Some(e.clone()),
            Ok(report) if report.verified() => None,
            Ok(_) if self.abort.is_aborted() => Some(TransferError::Aborted),
            Ok(report) => report.error.clone().map(TransferError::Failed),
        };
        self.outcome = Some(r);
    }
}

/// Transfers side by side, each in a task of its own (a load, a suite's
/// clients), aborted together, joined in the order they were added.
#[derive(Debug)]
pub struct TransferSet {
    tasks: Vec<JoinHandle<Result<TransferReport, TransferError>>>,
    abort: AbortHandle,
}

impl Default for TransferSet {
    fn default() -> Self {
        Self::new()
    }
}

impl TransferSet {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            tasks: Vec::new(),
            abort: AbortHandle::new(),
        }
    }

    /// Starts `client`'s request for `len` values after `delay`, reading
    /// nothing but the report.
    pub fn spawn(&mut self, mut client: Client, len: u32, delay: Duration) {
        client.abort = Some(self.abort.clone());
        self.tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            client.request(len).await?.finish().await
        }));
    }

    /// Transfers started.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when none was started.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// A handle that aborts every transfer of the set (each tells its
    /// server), as [`Transfer::abort`].
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// Waits for every transfer, in order. With `deadline`, the ones not
    /// done by then are cut short (their tasks stopped, without telling
    /// the server) and come back as `None`.
    pub async fn join(
        self,
        deadline: Option<tokio::time::Instant>,
    ) -> Vec<Option<Result<TransferReport, TransferError>>> {
        let mut out = Vec::with_capacity(self.tasks.len());
        for mut task in self.tasks {
            let joined = match deadline {
                Some(at) => match tokio::time::timeout_at(at, &mut task).await {
                    Ok(joined) => Some(joined),
                    Err(_) => {
                        task.abort();
                        let _ = task.await;
                        None
                    }
                },
                None => Some(task.await),
            };
            out.push(joined.map(|j| j.unwrap_or_else(|e| Err(io::Error::other(e).into()))));
        }
        out
    }
}

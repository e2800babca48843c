//! A transfer as an async stream of values: [`Client`] says where and how
//! to ask, [`Client::request`] starts a [`Transfer`], whose
//! [`next`](Transfer::next) yields the values in index order and whose
//! [`finish`](Transfer::finish) gives the
//! [`TransferReport`](crate::transfer::TransferReport).
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
//!
//! - `mod.rs`: the [`Client`] builder, [`TransferError`], [`AbortHandle`].
//! - `transfer`: the [`Transfer`], and how the driver hands it values.
//! - `set`: [`TransferSet`].
//! - `totals`: [`RunningTotals`], live sums over many transfers.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use risp_netem::ImpairmentConfig;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::batch::IoMode;
use crate::proto::client::{ClientConfig, ClientError, ResumeState};
use crate::transfer::IntervalStats;

mod set;
mod totals;
mod transfer;

pub use set::TransferSet;
pub(crate) use totals::TotalsFeed;
pub use totals::{RunningTotals, TotalsSnapshot};
pub use transfer::Transfer;
pub(crate) use transfer::Values;

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
    /// Live sums this transfer adds to as it runs.
    pub(crate) totals: Option<RunningTotals>,
    /// Sees every datagram the shim handles, on every socket (a packet
    /// capture).
    pub(crate) capture: Option<Arc<dyn risp_netem::Capture>>,
    /// Write the session's qlog trace into this directory.
    pub(crate) qlog: Option<PathBuf>,
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
    /// The qlog file could not be created (see [`Client::qlog`]).
    #[error("{0}")]
    Qlog(Arc<io::Error>),
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
                totals: None,
                capture: None,
                qlog: None,
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
    /// [`TransferReport::resume`](crate::transfer::TransferReport::resume)).
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

    /// Adds this transfer's figures to `totals` as they change (values
    /// delivered, retransmit requests, timeouts, shim drops) and counts it
    /// as started and, at its end, ended: many transfers given clones of
    /// one [`RunningTotals`] show their sums while they run.
    pub fn totals(mut self, totals: RunningTotals) -> Self {
        self.opts.totals = Some(totals);
        self
    }

    /// Hands every datagram the transfer sends or receives, on every socket
    /// it opens, with what the shim did to it, to `capture` (a packet
    /// capture; off by default).
    pub fn capture(mut self, capture: Arc<dyn risp_netem::Capture>) -> Self {
        self.opts.capture = Some(capture);
        self
    }

    /// Writes the session's qlog trace (vantage point client) into `dir`,
    /// which must exist: `UUID-client.sqlog`, one file per session UUID
    /// (see [`crate::net::qlog`]). The file is created when the transfer
    /// starts, so a directory that cannot be written fails
    /// [`request`](Self::request).
    pub fn qlog(mut self, dir: impl Into<PathBuf>) -> Self {
        self.opts.qlog = Some(dir.into());
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

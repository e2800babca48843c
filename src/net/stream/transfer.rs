//! One transfer under way: the driver, polled by whoever reads the
//! values, hands them over a batch at a time.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::{AbortHandle, Client, TransferError, Value};
use crate::net::client::run_until;
use crate::transfer::{IntervalStats, TransferReport};

/// Where the driver puts the values it delivers (see
/// [`run_until`](crate::net::client::run_until)).
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
    pub(super) fn start(client: Client, len: u32) -> Self {
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
    /// session and waits up to [`ABORT_GRACE`](crate::net::client::ABORT_GRACE)
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
    pub(super) fn poll_start(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TransferError>> {
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

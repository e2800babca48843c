//! A worker's tasks against the shared session store: one writer that
//! carries out records and removals in order, and one task per lookup.
//! The I/O loop never waits on the store; it hands operations over and
//! takes the lookups' answers when they come. [`StoreTasks::finish`] joins
//! them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::net::session_store::SessionStore;
use crate::proto::server::{Lookup, LookupOutcome, StoreOp};

/// Most store writes queued for the writer task.
const STORE_QUEUE: usize = 16 * 1024;
/// Most writes in one batch (one Redis pipeline).
const STORE_BATCH: usize = 512;
/// How long a stopping worker lets its writer finish the writes queued
/// (each command waits at most a second for a store that went away).
const FLUSH_GRACE: Duration = Duration::from_secs(1);

/// The store and the tasks working on it for one worker.
#[derive(Debug)]
pub(super) struct StoreTasks {
    store: SessionStore,
    /// Writes for the writer task, in order.
    writes: mpsc::Sender<StoreOp>,
    writer: JoinHandle<()>,
    /// Write batches that failed, counted by the writer.
    write_errors: Arc<AtomicU64>,
    /// Lookups in flight.
    lookups: JoinSet<()>,
    /// Where lookups answer.
    answers_tx: mpsc::UnboundedSender<(Lookup, LookupOutcome)>,
    answers: mpsc::UnboundedReceiver<(Lookup, LookupOutcome)>,
}

impl StoreTasks {
    /// Starts the writer for `store`.
    pub(super) fn new(store: SessionStore) -> Self {
        let (writes, rx) = mpsc::channel::<StoreOp>(STORE_QUEUE);
        let write_errors = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(write_all(store.clone(), rx, write_errors.clone()));
        let (answers_tx, answers) = mpsc::unbounded_channel();
        Self {
            store,
            writes,
            writer,
            write_errors,
            lookups: JoinSet::new(),
            answers_tx,
            answers,
        }
    }

    /// The store.
    pub(super) fn store(&self) -> &SessionStore {
        &self.store
    }

    /// Write batches that failed so far.
    pub(super) fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Carries out one of the core's operations: a lookup in a task of its
    /// own, a write through the writer. False when the write was dropped
    /// (the writer's queue is full).
    pub(super) fn carry_out(&mut self, op: StoreOp) -> bool {
        // Reap the lookups that ended, so the set holds only live ones.
        while self.lookups.try_join_next().is_some() {}
        match op {
            StoreOp::Lookup(lookup) => {
                let (store, tx) = (self.store.clone(), self.answers_tx.clone());
                self.lookups.spawn(look_up(store, lookup, tx));
                true
            }
            op => self.writes.try_send(op).is_ok(),
        }
    }

    /// The next lookup answer; never resolves without a store.
    pub(super) async fn answer(tasks: &mut Option<StoreTasks>) -> Option<(Lookup, LookupOutcome)> {
        match tasks {
            Some(t) => t.answers.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Stops every task: lookups at once (their answers would come to a
    /// loop that is gone), the writer once it has written what was queued
    /// (at most [`FLUSH_GRACE`]). Returns the final count of failed write
    /// batches.
    pub(super) async fn finish(self) -> u64 {
        let Self {
            writes,
            mut writer,
            write_errors,
            mut lookups,
            ..
        } = self;
        lookups.shutdown().await;
        drop(writes);
        if tokio::time::timeout(FLUSH_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
            let _ = writer.await;
        }
        write_errors.load(Ordering::Relaxed)
    }
}

/// Asks the store for a session; the answer goes back to the I/O loop
/// through `tx`.
async fn look_up(
    store: SessionStore,
    lookup: Lookup,
    tx: mpsc::UnboundedSender<(Lookup, LookupOutcome)>,
) {
    let outcome = match store.get(lookup.uuid).await {
        Ok(Some(record)) => LookupOutcome::Found(record),
        Ok(None) => LookupOutcome::Missing,
        Err(e) => {
            tracing::debug!(uuid = %lookup.uuid, error = %e, "session store lookup failed");
            LookupOutcome::Unavailable
        }
    };
    let _ = tx.send((lookup, outcome));
}

/// The writer: records and removals in order, batching whatever queued up
/// while the previous batch was in flight, until the queue closes.
async fn write_all(store: SessionStore, mut rx: mpsc::Receiver<StoreOp>, errors: Arc<AtomicU64>) {
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
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

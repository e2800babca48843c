//! Many transfers side by side, one task each.

use std::io;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::{AbortHandle, Client, TransferError};
use crate::transfer::TransferReport;

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
    /// server), as [`Transfer::abort`](super::Transfer::abort).
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

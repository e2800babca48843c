//! The tokio drivers over real loopback sockets: an in-process server and
//! one client transfer against it.
//!
//! The server records the seed of every session it opens, so a test checks
//! each value a transfer delivered against [`super::expected`]'s reference
//! ([`TestServer::check`], [`TestServer::check_prefix`]), not only the
//! order-insensitive checksum the client compares.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use risp_netem::LossySocket;
use risp_udp::net::batch::IoMode;
use risp_udp::net::client::{self, ClientOptions};
use risp_udp::net::server::{self, ServerSummary, SharedSummary};
use risp_udp::proto::server::ServerConfig;
use risp_udp::transfer::TransferReport;
use uuid::Uuid;

use super::expected::SessionSeeds;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An in-process server on 127.0.0.1 that records its sessions' seeds;
/// stopped (and its summary returned) by [`TestServer::stop`], aborted on
/// drop.
pub struct TestServer {
    pub addr: SocketAddr,
    shared: SharedSummary,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<ServerSummary>>>,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves with `config` (seed 99) until stopped.
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with(config, IoMode::Batched).await
    }

    /// [`start`](Self::start) with the socket driven in `mode`.
    pub async fn start_with(config: ServerConfig, mode: IoMode) -> Self {
        let socket = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = socket.local_addr().unwrap();
        let shared: SharedSummary =
            Arc::new(Mutex::new(ServerSummary::default().with_session_seeds()));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve_with(
            LossySocket::passthrough(socket),
            mode,
            ServerConfig {
                seed: Some(99),
                ..config
            },
            shared.clone(),
            async {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            shared,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// What the server has published so far.
    pub fn summary(&self) -> ServerSummary {
        self.shared.lock().unwrap().clone()
    }

    /// Panics unless `got` (as [`transfer`] collects it) is every value of
    /// the session `report` names, each at its index, as the reference
    /// computes them from the seed this server drew.
    pub fn check(&self, report: &TransferReport, got: &[(u32, u32)]) {
        if let Err(e) = self.expected(report.uuid, report.len).check_indexed(got) {
            panic!("session {}: {e}", report.uuid);
        }
    }

    /// [`check`](Self::check) for a transfer that stopped early: `got` is
    /// the session's first values.
    pub fn check_prefix(&self, report: &TransferReport, got: &[(u32, u32)]) {
        if let Err(e) = self
            .expected(report.uuid, report.len)
            .check_indexed_prefix(got)
        {
            panic!("session {}: {e}", report.uuid);
        }
    }

    /// Shuts the server down and returns its final summary.
    pub async fn stop(mut self) -> ServerSummary {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap()
    }
}

impl SessionSeeds for TestServer {
    /// From the summary, which holds a session's seed before the server
    /// first answers it: no wait is needed once a client got an answer.
    fn session_seed(&self, uuid: Uuid) -> u64 {
        let seeds = self.summary().session_seeds.unwrap_or_default();
        *seeds
            .get(&uuid)
            .unwrap_or_else(|| panic!("this server never opened session {uuid}"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Runs one client, collecting `(index, value)` of everything delivered.
pub async fn transfer(opts: ClientOptions) -> (TransferReport, Vec<(u32, u32)>) {
    transfer_within(opts, Duration::from_secs(30)).await
}

/// [`transfer`], failing the test if it takes longer than `limit`.
pub async fn transfer_within(
    opts: ClientOptions,
    limit: Duration,
) -> (TransferReport, Vec<(u32, u32)>) {
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(limit, client::run(opts, |i, v| got.push((i, v))))
        .await
        .unwrap_or_else(|_| panic!("transfer did not finish within {limit:?}"))
        .expect("client socket");
    (outcome, got)
}

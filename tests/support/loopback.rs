//! The tokio drivers over real loopback sockets: an in-process server and
//! one client transfer against it.
//!
//! The server records the seed of every session it opens, so a test checks
//! each value a transfer delivered against [`super::expected`]'s reference
//! ([`TestServer::check`], [`TestServer::check_prefix`]), not only the
//! order-insensitive checksum the client compares.

use std::net::SocketAddr;
use std::time::Duration;

use risp_udp::net::batch::IoMode;
use risp_udp::proto::server::ServerConfig;
use risp_udp::transfer::TransferReport;
use risp_udp::{Client, Server, ServerHandle, ServerSummary};
use uuid::Uuid;

use super::expected::SessionSeeds;

/// An in-process server on 127.0.0.1 that records its sessions' seeds;
/// stopped (and its summary returned) by [`TestServer::stop`], aborted on
/// drop.
pub struct TestServer {
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl TestServer {
    /// Binds 127.0.0.1:0 and serves with `config` (seed 99) until stopped.
    pub async fn start(config: ServerConfig) -> Self {
        Self::start_with(config, IoMode::Batched).await
    }

    /// [`start`](Self::start) with the socket driven in `mode`.
    pub async fn start_with(config: ServerConfig, mode: IoMode) -> Self {
        let handle = Server::builder()
            .config(ServerConfig {
                seed: Some(99),
                ..config
            })
            .io(mode)
            .record_session_seeds(true)
            .start()
            .await
            .expect("start the test server");
        Self {
            addr: handle.local_addr(),
            handle,
        }
    }

    /// A client of this server.
    pub fn client(&self) -> Client {
        Client::connect([self.addr])
    }

    /// What the server has published so far.
    pub fn summary(&self) -> ServerSummary {
        self.handle.summary().borrow().clone()
    }

    /// The server's summary as it is published.
    pub fn summary_watch(&self) -> tokio::sync::watch::Receiver<ServerSummary> {
        self.handle.summary()
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
    pub async fn stop(self) -> ServerSummary {
        self.handle
            .shutdown()
            .await
            .expect("the test server's sockets")
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

/// Runs `client`'s request for `len` values, collecting `(index, value)`
/// of everything delivered.
pub async fn transfer(client: Client, len: u32) -> (TransferReport, Vec<(u32, u32)>) {
    transfer_within(client, len, Duration::from_secs(30)).await
}

/// [`transfer`], failing the test if it takes longer than `limit`.
pub async fn transfer_within(
    client: Client,
    len: u32,
    limit: Duration,
) -> (TransferReport, Vec<(u32, u32)>) {
    let mut got = Vec::new();
    let run = async {
        let mut t = client.request(len).await?;
        while let Some(v) = t.next().await {
            match v {
                Ok(v) => got.push((v.index, v.value)),
                // Why the values stopped is in the report.
                Err(_) => break,
            }
        }
        t.finish().await
    };
    let outcome = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("transfer did not finish within {limit:?}"))
        .expect("client socket");
    (outcome, got)
}

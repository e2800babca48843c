//! The tokio drivers over real loopback sockets: an in-process server and
//! one client transfer against it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use risp_netem::LossySocket;
use risp_udp::net::batch::IoMode;
use risp_udp::net::client::{self, ClientOptions};
use risp_udp::net::server::{self, ServerSummary, SharedSummary};
use risp_udp::proto::server::ServerConfig;
use risp_udp::transfer::TransferReport;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An in-process server on 127.0.0.1; stopped (and its summary returned)
/// by [`TestServer::stop`], aborted on drop.
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
        let shared: SharedSummary = Arc::new(Mutex::new(ServerSummary::default()));
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

    /// Shuts the server down and returns its final summary.
    pub async fn stop(mut self) -> ServerSummary {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap()
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
    let mut got = Vec::new();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        client::run(opts, |i, v| got.push((i, v))),
    )
    .await
    .expect("transfer finished within 30 s")
    .expect("client socket");
    (outcome, got)
}

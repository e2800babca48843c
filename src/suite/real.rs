//! The real-socket back-end of the suites, and the in-process runner of
//! `risp-udp demo`: one server on 127.0.0.1, N clients, each client socket
//! wrapped in the lossy-socket shim with the run's impairments (both
//! directions are applied at the client's socket, so each datagram is
//! judged once), on one impairment model per client link seeded as the
//! simulator seeds it ([`crate::transfer::link_seed`]).

use std::io;
use std::sync::{Arc, Mutex};

use risp_netem::LossySocket;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::net::client::{self, ClientOptions};
use crate::net::server::{self, ServerSummary};
use crate::proto::client::ClientError;
use crate::transfer::{RunConfig, RunReport, TransferReport};

/// Runs `config` over real UDP sockets on 127.0.0.1 and reports in the same
/// shape as [`crate::sim::run`]. Times are wall-clock; the trace hash is 0
/// (real runs are not reproducible to the datagram).
pub async fn run(config: &RunConfig) -> io::Result<RunReport> {
    Ok(run_with_server(config).await?.0)
}

/// Like [`run`], also returning the in-process server's summary (its
/// acknowledgement-latency histogram with `config.server.ack_latency_events`).
pub async fn run_with_server(config: &RunConfig) -> io::Result<(RunReport, ServerSummary)> {
    let started = crate::clock::now();
    let socket = crate::net::socket::bind(([127, 0, 0, 1], 0).into()).await?;
    let server_addr = socket.local_addr()?;
    let mut server_config = config.server.clone();
    server_config.seed = Some(config.seed ^ 0x5eed);
    let shared = Arc::new(Mutex::new(ServerSummary::counting_data()));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server_task = tokio::spawn(server::serve(
        LossySocket::passthrough(socket),
        server_config,
        shared.clone(),
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut tasks = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let mut cc = config.client.clone();
        cc.uuid = Uuid::new_v4();
        cc.len = config.len;
        let mut opts = ClientOptions::new(server_addr, cc);
        opts.impairment = Some((config.impairment.clone(), config.link_seed(i)));
        opts.killswitch = config.killswitch;
        opts.rebind_at = config.impairment.rebind_at.clone();
        opts.keep_histograms = config.record_latencies;
        let stagger = config.stagger * i as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(stagger).await;
            client::run(opts, |_, _| {}).await
        }));
    }
    let mut transfers = Vec::with_capacity(tasks.len());
    let deadline = tokio::time::Instant::from_std(started + config.time_limit);
    for task in tasks {
        let report = match tokio::time::timeout_at(deadline, task).await {
            Ok(joined) => joined.map_err(io::Error::other)??,
            Err(_) => {
                let mut r = TransferReport::new(Uuid::nil(), config.len);
                r.error = Some(ClientError::Timeout(config.time_limit));
                r
            }
        };
        transfers.push(report);
    }
    let _ = stop_tx.send(());
    let summary = server_task.await.map_err(io::Error::other)??;
    if let Some(sent) = &summary.data_sent {
        for t in &mut transfers {
            t.data_sent = sent.get(&t.uuid).copied().unwrap_or(0);
        }
    }
    let report = RunReport {
        seed: config.seed,
        elapsed: crate::clock::now().saturating_duration_since(started),
        transfers,
        server: summary.stats.clone(),
        sessions_left: summary.sessions,
        trace_hash: 0,
        bottleneck: None,
    };
    Ok((report, summary))
}

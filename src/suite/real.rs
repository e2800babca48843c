//! The real-socket back-end of the suites, and the in-process runner of
//! `risp-udp demo`: one server on 127.0.0.1, N clients, each client socket
//! wrapped in the lossy-socket shim with the run's impairments (both
//! directions are applied at the client's socket, so each datagram is
//! judged once), on one impairment model per client link seeded as the
//! simulator seeds it ([`crate::transfer::link_seed`]).

use std::io;

use uuid::Uuid;

use crate::net::server::{Server, ServerSummary};
use crate::net::stream::{Client, TransferSet};
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
/// Transfers not done within `config.time_limit` are cut short and
/// reported as timed out.
pub async fn run_with_server(config: &RunConfig) -> io::Result<(RunReport, ServerSummary)> {
    let started = crate::clock::now();
    let mut server_config = config.server.clone();
    server_config.seed = Some(config.seed ^ 0x5eed);
    let server = Server::builder()
        .config(server_config)
        .count_data_sent(true)
        .start()
        .await
        .map_err(io::Error::other)?;
    let mut clients = TransferSet::new();
    for i in 0..config.clients {
        let mut cc = config.client.clone();
        cc.uuid = Uuid::new_v4();
        let mut client = Client::connect([server.local_addr()])
            .config(cc)
            .impairment(config.impairment.clone(), config.link_seed(i))
            .rebind_at(config.impairment.rebind_at.clone())
            .keep_histograms(config.record_latencies);
        if let Some(every) = config.killswitch {
            client = client.killswitch(every);
        }
        clients.spawn(client, config.len, config.stagger * i as u32);
    }
    let deadline = tokio::time::Instant::from_std(started + config.time_limit);
    let mut transfers = Vec::with_capacity(config.clients);
    for joined in clients.join(Some(deadline)).await {
        let report = match joined {
            Some(r) => r.map_err(io::Error::other)?,
            None => {
                let mut r = TransferReport::new(Uuid::nil(), config.len);
                r.error = Some(ClientError::Timeout(config.time_limit));
                r
            }
        };
        transfers.push(report);
    }
    let summary = server.shutdown().await.map_err(io::Error::other)?;
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

//! The real-socket back-end of the suites: runs a simulation's transfers
//! over real loopback sockets instead of the
//! virtual network: one in-process server on 127.0.0.1, N clients, each
//! client socket wrapped in the lossy-socket shim with the profile's
//! impairments (both directions are applied at the client's socket, so each
//! datagram is judged once).

use std::io;
use std::sync::{Arc, Mutex};

use risp_netem::LossySocket;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::net::client::{self, ClientOptions};
use crate::net::server::{self, ServerSummary};
use crate::sim::{SimConfig, SimReport, TransferReport};

/// Runs `config` over real UDP sockets on 127.0.0.1 and reports in the same
/// shape as [`crate::sim::run`]. Times are wall-clock; the trace hash is 0
/// (real runs are not reproducible to the datagram).
pub async fn run(config: &SimConfig) -> io::Result<SimReport> {
    let started = crate::clock::now();
    let socket = crate::net::socket::bind(([127, 0, 0, 1], 0).into()).await?;
    let server_addr = socket.local_addr()?;
    let mut server_config = config.server.clone();
    server_config.seed = config.seed ^ 0x5eed;
    let shared = Arc::new(Mutex::new(ServerSummary::default()));
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
        let seed = config.seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        opts.impairment = Some((config.impairment.clone(), seed));
        opts.killswitch = config.killswitch;
        opts.rebind_at = config.impairment.rebind_at.clone();
        opts.keep_samples = config.record_latencies;
        let stagger = config.stagger * i as u32;
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(stagger).await;
            let uuid = opts.config.uuid;
            (uuid, client::run(opts, |_, _| {}).await)
        }));
    }
    let mut transfers = Vec::with_capacity(tasks.len());
    let mut links = Vec::with_capacity(tasks.len());
    let deadline = tokio::time::Instant::from_std(started + config.time_limit);
    for task in tasks {
        let joined = tokio::time::timeout_at(deadline, task).await;
        let (uuid, outcome) = match joined {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => return Err(io::Error::other(e)),
            Err(_) => {
                let mut r = TransferReport::new(Uuid::nil(), config.len);
                r.error = Some(crate::proto::client::ClientError::Timeout(
                    config.time_limit,
                ));
                transfers.push(r);
                links.push(Default::default());
                continue;
            }
        };
        let o = outcome?;
        let mut r = TransferReport::new(uuid, config.len);
        r.delivered = o.delivered;
        r.checksum_ok = o.checksum.is_some();
        r.error = o.result.err();
        r.finished_at = Some(o.elapsed);
        r.datagrams_to_server = o.stats.datagrams_sent;
        r.datagrams_to_client = o.shim.to_client.seen.max(o.stats.datagrams_received);
        // Accept, Checksum and Closed are the control replies of a clean run.
        r.data_sent = r.datagrams_to_client.saturating_sub(3);
        r.reconnects = u64::from(o.reconnects);
        r.rebinds = config.impairment.rebind_at.len() as u64;
        r.rtt_count = o.hist.rtt.len();
        r.rtt_samples = o.rtt_samples;
        r.delivery_latencies = o.delivery_latencies;
        r.client = o.stats;
        (r.window_min, r.window_max, r.window_final) = o.window;
        transfers.push(r);
        links.push(o.shim);
    }
    let _ = stop_tx.send(());
    let summary = server_task.await.map_err(io::Error::other)??;
    Ok(SimReport {
        seed: config.seed,
        elapsed: crate::clock::now().saturating_duration_since(started),
        transfers,
        server: summary.stats,
        sessions_left: summary.sessions,
        links,
        trace_hash: 0,
    })
}

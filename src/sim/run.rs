//! A [`RunConfig`] as a [`Network`]: one server, the run's clients each on
//! a link of its own, the reference flows and the bottleneck; run to the
//! end and reported as a [`RunReport`].

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use super::link::Link;
use super::network::Network;
use super::node::{ClientNode, Observer, ReferenceNode};
use super::reference::ReferenceStats;
use crate::proto::client::{Client, ClientEncryption, ClientError, ClientEvent};
use crate::proto::server::{Server, ServerEvent};
use crate::transfer::{RunConfig, RunReport, TransferRecorder};

/// The run's one server.
const SERVER_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 8081));

/// Runs one simulation to completion (every client finished) or to the time
/// limit, and reports.
pub fn run(config: &RunConfig) -> RunReport {
    run_with_reference_stats(config).0
}

/// As [`run`], and what each reference flow
/// ([`RunConfig::reference_flows`]) did.
pub fn run_with_reference_stats(config: &RunConfig) -> (RunReport, Vec<ReferenceStats>) {
    let (mut net, mut recorders) = build(config);
    net.run(net.epoch() + config.time_limit, &mut recorders);
    finish(config, &net, recorders)
}

/// As [`run`], with `obs` told what the endpoints say as well (a trace
/// recorder: set the configs' `trace` to have it see trace records). The
/// network's epoch, which `obs` sees as the first `now`, is the start of
/// the first client.
pub fn run_observed(config: &RunConfig, obs: &mut impl Observer) -> RunReport {
    let (mut net, recorders) = build(config);
    let mut both = (recorders, obs);
    net.run(net.epoch() + config.time_limit, &mut both);
    finish(config, &net, both.0).0
}

/// Every client's recorder, fed with what the endpoints say.
struct Recorders {
    recorders: Vec<TransferRecorder>,
    /// Which client each session UUID is.
    uuids: HashMap<Uuid, usize>,
}

impl Observer for Recorders {
    fn client_event(&mut self, now: Instant, client: usize, _: &Client, event: &ClientEvent) {
        self.recorders[client].record(now, event);
        if let ClientEvent::Restarted { uuid } = event {
            self.uuids.insert(*uuid, client);
        }
    }

    fn server_event(&mut self, _: Instant, server: &Server, event: &ServerEvent) {
        match event {
            ServerEvent::Opened { uuid, .. } => {
                if let Some(&i) = self.uuids.get(uuid) {
                    self.recorders[i].set_sequence(server.sequence(uuid));
                }
            }
            ServerEvent::Expired { uuid, .. } => {
                if let Some(&i) = self.uuids.get(uuid) {
                    self.recorders[i].report_mut().server_expired = true;
                }
            }
            _ => {}
        }
    }
}

fn build(config: &RunConfig) -> (Network, Recorders) {
    let epoch = crate::clock::now();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut server_config = config.server.clone();
    server_config.seed = Some(rng.gen());
    let mut net = Network::new(epoch);
    net.add_server(Server::new(server_config), &[SERVER_ADDR]);
    let mut recorders = Recorders {
        recorders: Vec::with_capacity(config.clients),
        uuids: HashMap::new(),
    };
    let link = |flow: usize| {
        Link::impaired(config.impairment.clone(), config.link_seed(flow))
            .with_extra_delay(config.flow_delay(flow))
    };
    for i in 0..config.clients {
        let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
        let mut cc = config.client.clone();
        cc.uuid = uuid;
        cc.len = config.len;
        if cc.encryption != ClientEncryption::Off && cc.crypto_seed.is_none() {
            // Drawn only for sealed runs: plain runs draw as before.
            cc.crypto_seed = Some(rng.gen());
        }
        let started = epoch + config.stagger * i as u32;
        let node = ClientNode::new(Client::new(cc, started), started, vec![SERVER_ADDR])
            .with_link(link(i))
            .killswitch(config.killswitch);
        net.add_client(node);
        recorders.uuids.insert(uuid, i);
        recorders.recorders.push(
            TransferRecorder::new(uuid, config.len, started)
                .keep_histograms(config.record_latencies)
                .check_values(),
        );
    }
    for k in 0..config.reference_flows {
        let started = epoch + config.reference_start;
        let flow = link(config.clients + k);
        net.add_reference(ReferenceNode::new(config.reference_packets, started, flow));
    }
    if let Some(b) = config.bottleneck {
        net.set_bottleneck(b);
    }
    (net, recorders)
}

fn finish(
    config: &RunConfig,
    net: &Network,
    recorders: Recorders,
) -> (RunReport, Vec<ReferenceStats>) {
    let now = net.now();
    let elapsed = now.saturating_duration_since(net.epoch());
    let mut transfers = Vec::with_capacity(net.clients().len());
    for (c, mut recorder) in net.clients().iter().zip(recorders.recorders) {
        let n = c.counters();
        let r = recorder.report_mut();
        r.datagrams_to_server += n.datagrams_to_server;
        r.datagrams_to_client += n.datagrams_to_client;
        r.data_sent += n.data_sent;
        r.lost_to_old_address += n.lost_to_old_address;
        r.reconnects += n.reconnects;
        r.rebinds += n.rebinds;
        let mut r = recorder.finish(now, c.client());
        if r.finished_at.is_none() && r.error.is_none() {
            r.error = Some(ClientError::Timeout(elapsed));
        }
        r.link = c.link().stats();
        transfers.push(r);
    }
    let refs = net
        .references()
        .iter()
        .map(|r| ReferenceStats {
            delivered: r.receiver().delivered(),
            ..r.sender().stats().clone()
        })
        .collect();
    let server = net.server(0);
    let report = RunReport {
        seed: config.seed,
        elapsed,
        transfers,
        server: server.stats().clone(),
        sessions_left: server.session_count(),
        trace_hash: net.trace_hash(),
        bottleneck: net.bottleneck().map(|b| b.stats().clone()),
    };
    (report, refs)
}

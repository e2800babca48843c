//! The simulator with several servers in one network, in virtual time
//! (`risp_udp::sim::Network`, the engine `sim::run` and the test
//! harnesses configure).
//!
//! Three servers each serve their own clients over lossy links: every
//! session must open on the server its client talks to (the network routes
//! by address, both ways) and deliver exactly the values that server's
//! session seed gives, worked out by `support::expected`. Then two servers
//! sharing the network's session store, each the first choice of half the
//! clients: one is cut off mid-transfer, its clients fail over to the
//! other, which restores their sessions from the store, and every transfer
//! still verifies value by value.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::proto::client::{Client, ClientConfig, ClientEvent, LostReason};
use risp_udp::proto::server::{Server, ServerConfig, ServerEvent, StoreSettings};
use risp_udp::sim::{Advance, ClientNode, Link, Network, Observer};
use support::expected::Expected;
use support::virtual_time::check_accounting;
use uuid::Uuid;

fn server_addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8081))
}

/// What every client delivered, and which server opened each session.
#[derive(Default)]
struct Log {
    values: Vec<Vec<u32>>,
    verified: Vec<Option<u64>>,
    completed: Vec<bool>,
    lost: Vec<Vec<(u32, LostReason)>>,
    /// Session UUID: the opening server's own seed (which server it
    /// was), the session's seed (the one thing taken from the server), and
    /// how many times a server opened it.
    opened: HashMap<Uuid, (u64, u64, u32)>,
}

impl Log {
    fn new(clients: usize) -> Self {
        Self {
            values: vec![Vec::new(); clients],
            verified: vec![None; clients],
            completed: vec![false; clients],
            lost: vec![Vec::new(); clients],
            opened: HashMap::new(),
        }
    }

    /// Which server opened session `uuid` (its own seed), and what the
    /// session must deliver: `len` values from the session's seed.
    fn opened(&self, uuid: &Uuid, len: u32) -> (u64, Expected) {
        let (server, seed, opens) = self.opened[uuid];
        assert_eq!(opens, 1, "{uuid} was opened once");
        (server, Expected::new(seed, len))
    }
}

impl Observer for Log {
    fn client_event(&mut self, _: Instant, i: usize, core: &Client, event: &ClientEvent) {
        match event {
            ClientEvent::Value { index, value, .. } => {
                assert_eq!(*index as usize, self.values[i].len(), "in order, once");
                self.values[i].push(*value);
            }
            ClientEvent::Verified { checksum } => self.verified[i] = Some(*checksum),
            ClientEvent::Completed => self.completed[i] = true,
            ClientEvent::ServerLost { reason } => self.lost[i].push((core.server_index(), *reason)),
            ClientEvent::Failed(e) => panic!("client {i} failed: {e}"),
            ClientEvent::Restarted { uuid } => panic!("client {i} restarted as {uuid}"),
            ClientEvent::Connected | ClientEvent::RttSample(_) => {}
        }
    }

    fn server_event(&mut self, _: Instant, server: &Server, event: &ServerEvent) {
        if let ServerEvent::Opened { uuid, .. } = event {
            let own = server.config().seed.expect("seeded servers");
            let seed = server.sequence(uuid).expect("just opened").seed();
            self.opened.entry(*uuid).or_insert((own, seed, 0)).2 += 1;
        }
    }

    fn server_touched(&mut self, _: Instant, server: &Server) {
        check_accounting(server);
    }
}

fn server(seed: u64, store: bool) -> Server {
    Server::new(ServerConfig {
        seed: Some(seed),
        store: store.then(|| StoreSettings {
            refresh: Duration::from_millis(20),
            max_lookups: 8,
        }),
        ..ServerConfig::default()
    })
}

fn lossy(seed: u64) -> Link {
    let d = DirectionConfig {
        loss: 0.05,
        delay: Duration::from_millis(2),
        jitter: Duration::from_micros(300),
        ..DirectionConfig::default()
    };
    Link::impaired(ImpairmentConfig::symmetric(d), seed)
}

fn client(net: &Network, n: u128, len: u32, servers: Vec<SocketAddr>) -> ClientNode {
    let mut c = ClientConfig::new(Uuid::from_u128(n), len);
    c.servers = servers.len() as u32;
    c.idle_timeout = Duration::from_secs(10);
    let now = net.now();
    ClientNode::new(Client::new(c, now), now, servers).with_link(lossy(n as u64))
}

#[test]
fn three_servers_each_serve_their_own_clients_with_their_own_seeds() {
    let len = 3_000;
    let mut net = Network::new(risp_udp::clock::now());
    for s in 0..3u8 {
        net.add_server(server(100 + u64::from(s), false), &[server_addr(s + 1)]);
    }
    // Client i talks to server i % 3 only.
    for i in 0..12u8 {
        let node = client(&net, u128::from(i) + 1, len, vec![server_addr(i % 3 + 1)]);
        net.add_client(node);
    }
    let mut log = Log::new(12);
    let deadline = net.now() + Duration::from_secs(60);
    net.run(deadline, &mut log);
    assert!(net.now() < deadline, "every client finished in time");

    for (i, c) in net.clients().iter().enumerate() {
        let uuid = c.client().uuid();
        let (by, want) = log.opened(&uuid, len);
        assert_eq!(by, 100 + (i % 3) as u64, "client {i} on its own server");
        assert!(log.completed[i], "client {i}");
        if let Err(e) = want.check(&log.values[i]) {
            panic!("client {i}: {e}");
        }
        assert_eq!(log.verified[i], Some(want.checksum()), "client {i}");
        assert!(c.counters().datagrams_to_client > 0);
    }
    for (s, srv) in net.servers().iter().enumerate() {
        let st = srv.stats();
        assert_eq!(st.sessions_opened, 4, "server {s}: {st:?}");
        assert!(st.retransmits > 0, "server {s}: the links were lossy");
    }
    // The loss was real on every link.
    assert!(net
        .clients()
        .iter()
        .all(|c| c.link().stats().to_client.dropped > 0));
}

#[test]
fn the_clients_of_a_cut_server_fail_over_and_resume_from_the_shared_store() {
    let len = 4_000;
    let (a, b) = (server_addr(1), server_addr(2));
    let mut net = Network::new(risp_udp::clock::now());
    net.add_server(server(1, true), &[a]);
    net.add_server(server(2, true), &[b]);
    // Clients 0..3 start on A, 3..6 on B; each knows both.
    for i in 0..6u8 {
        let list = if i < 3 { vec![a, b] } else { vec![b, a] };
        net.add_client(client(&net, u128::from(i) + 1, len, list));
    }
    let mut log = Log::new(6);
    let end = net.now() + Duration::from_secs(60);
    // Until every session is half done and in the store.
    loop {
        net.flush(&mut log);
        let ready = net.clients().iter().enumerate().all(|(i, c)| {
            log.values[i].len() >= len as usize / 2 && net.stored(&c.client().uuid()).is_some()
        });
        if ready {
            break;
        }
        assert_eq!(net.advance(end, &mut log), Advance::Stepped, "got halfway");
    }
    net.cut(a);
    net.run(end, &mut log);

    for (i, c) in net.clients().iter().enumerate() {
        let uuid = c.client().uuid();
        // Opened once, on the client's first server; B restored A's.
        let (by, want) = log.opened(&uuid, len);
        assert_eq!(by, if i < 3 { 1 } else { 2 }, "client {i}");
        assert!(log.completed[i], "client {i}");
        if let Err(e) = want.check(&log.values[i]) {
            panic!("client {i}: {e}");
        }
        assert_eq!(log.verified[i], Some(want.checksum()), "client {i}");
        let failovers = c.client().stats().failovers;
        if i < 3 {
            assert_eq!(failovers, 1, "client {i} left A");
            assert!(
                matches!(log.lost[i][..], [(0, LostReason::Silent { .. })]),
                "client {i}: {:?}",
                log.lost[i]
            );
            assert!(c.counters().sent_to[1] > 0, "client {i} reached B");
        } else {
            assert_eq!(failovers, 0, "client {i} stayed on B");
            assert!(log.lost[i].is_empty());
            assert_eq!(c.counters().sent_to[1], 0, "client {i} never tried A");
        }
    }
    let restored = net.server(1).stats().sessions_restored;
    assert_eq!(restored, 3, "B restored each of A's sessions");
    assert_eq!(net.server(0).stats().sessions_restored, 0);
}

//! The whole system in one randomized run, in virtual time, over many
//! seeds: a client that knows two server addresses, each in front of its
//! own [`Server`], the two sharing a session store; a link with loss,
//! duplication, reordering, corruption, jitter, a blackhole and NAT
//! rebindings (netem's model); the client's socket killed once (it
//! resumes from a new port); and server A cut off for good part-way, so
//! the client fails over to B, which restores the session from the store.
//!
//! Every seed must deliver every value exactly once, in order, each the
//! value the tests' own reference derives from the session seed, verify
//! the checksum, and finish within a bound computed from its impairments.
//! (A handshake the server refuses to continue from a new address restarts
//! the transfer under a new UUID; the harness checks that nothing had been
//! delivered then, and the values are checked against the new session.)
//!
//! `RISP_WHOLE_SYSTEM_SEEDS=N` runs N seeds instead of the default.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use risp_netem::{Blackhole, DirectionConfig, ImpairmentConfig};
use risp_udp::proto::client::ClientConfig;
use risp_udp::proto::recovery::SILENT_PROBES_BEFORE_FAILOVER;
use risp_udp::proto::server::{Server, ServerConfig, StoreSettings};
use support::expected::Expected;
use support::virtual_time::Failover;
use uuid::Uuid;

const A: usize = 0;
const LEN: u32 = 2_000;
const DELAY: Duration = Duration::from_millis(1);
const DEFAULT_SEEDS: u64 = 2_000;

fn server(seed: u64) -> Server {
    Server::new(ServerConfig {
        seed: Some(seed),
        store: Some(StoreSettings {
            refresh: Duration::from_millis(50),
            max_lookups: 8,
        }),
        ..ServerConfig::default()
    })
}

/// What one seed draws: the link's impairments and when things happen.
struct Scenario {
    impairment: ImpairmentConfig,
    kill_at: Duration,
    /// Server A is cut off once the client holds this many values.
    cut_after: u32,
}

impl Scenario {
    fn draw(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let direction = |rng: &mut StdRng| DirectionConfig {
            loss: rng.gen_range(0.0..0.10),
            duplicate: rng.gen_range(0.0..0.05),
            corrupt: rng.gen_range(0.0..0.02),
            reorder: rng.gen_range(0.0..0.10),
            delay: DELAY,
            jitter: Duration::from_micros(rng.gen_range(0..500)),
            ..DirectionConfig::default()
        };
        let to_server = direction(&mut rng);
        let to_client = direction(&mut rng);
        let blackhole = Blackhole {
            start: Duration::from_millis(rng.gen_range(5..150)),
            duration: Duration::from_millis(rng.gen_range(20..400)),
        };
        let rebinds = (0..rng.gen_range(1..=2))
            .map(|_| Duration::from_millis(rng.gen_range(1..200)))
            .collect();
        Self {
            impairment: ImpairmentConfig {
                to_server,
                to_client,
                blackholes: vec![blackhole],
                rebind_at: rebinds,
            },
            kill_at: Duration::from_millis(rng.gen_range(1..200)),
            cut_after: rng.gen_range(1..LEN),
        }
    }

    /// How long the run may take. Each term is what one impairment can
    /// cost at most, with the client's timers (RTO from 5 ms, doubling on
    /// each silent probe, capped at 2 s):
    /// - the transfer itself at the worst loss drawn (10% each way): 2,000
    ///   values in about 40 ms clean; the window is not cut by random loss
    ///   below the 25% ceiling, so even 3x that is 120 ms: 0.5 s;
    /// - the blackhole: its length, then up to one backed-off probe
    ///   interval before the next probe gets through, at most the length
    ///   again plus 5 ms (the intervals double from 5 ms): 2 · len + 5 ms;
    /// - the failover after A is cut: `SILENT_PROBES_BEFORE_FAILOVER` (8)
    ///   silent probes at 5, 10, ..., 640 ms: 1.275 s, then a handshake on
    ///   B and its store lookup (answered at once): 1.5 s in all;
    /// - the killswitch and each rebinding: a CONNECTING (or a path
    ///   challenge) and its answer, retried on loss with the same
    ///   doubling: 0.2 s each.
    ///
    /// Any two of these may overlap, which only shortens the run.
    fn bound(&self) -> Duration {
        let transfer = Duration::from_millis(500);
        let blackholes: Duration = self
            .impairment
            .blackholes
            .iter()
            .map(|b| 2 * b.duration + Duration::from_millis(5))
            .sum();
        let failover = Duration::from_millis(5) * (1 << SILENT_PROBES_BEFORE_FAILOVER)
            + Duration::from_millis(225);
        let moves = Duration::from_millis(200) * (1 + self.impairment.rebind_at.len() as u32);
        transfer + blackholes + failover + moves
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 8081))
}

/// One seed's run; returns the network for the totals.
fn run_seed(seed: u64) -> Failover {
    let s = Scenario::draw(seed);
    let mut config = ClientConfig::new(Uuid::from_u128(u128::from(seed) + 1), LEN);
    config.idle_timeout = Duration::from_secs(10);
    let mut net = Failover::impaired(
        vec![server(2 * seed + 1), server(2 * seed + 2)],
        vec![(addr(1), 0), (addr(2), 1)],
        config,
        s.impairment.clone(),
        seed,
    );
    net.set_kills(vec![s.kill_at]);
    let bound = s.bound();
    let limit = bound + Duration::from_secs(10);
    // Cut A once the client is far enough and the session is in the store
    // (a record is written when the client confirms its token).
    let cut_ready = net.run_until(limit, |n| {
        n.values.len() as u32 >= s.cut_after && n.stored(&n.client().uuid())
    });
    if cut_ready {
        net.cut(A);
    }
    net.run(limit);
    let took = net.now() - net.t0();
    let what = format!(
        "seed {seed}: took {took:?} (bound {bound:?}), {} of {LEN} values, failed {:?}, \
         lost {:?}, restarts {}, link {:?}",
        net.values.len(),
        net.failed,
        net.lost,
        net.restarts,
        net.link_stats(),
    );
    assert!(net.completed, "{what}");
    let want: Expected = net.expected().expect("a server held the session");
    if let Err(e) = want.check(&net.values) {
        panic!("{what}: {e}");
    }
    assert_eq!(net.verified, Some(want.checksum()), "{what}");
    assert!(took <= bound, "{what}");
    net
}

#[test]
fn every_seed_delivers_the_right_values_once_in_order_within_its_bound() {
    let seeds: u64 = std::env::var("RISP_WHOLE_SYSTEM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEEDS);
    let mut totals = [0u64; 9];
    let mut slowest = (Duration::ZERO, 0);
    for seed in 0..seeds {
        let net = run_seed(seed);
        let link = net.link_stats();
        let both =
            |f: fn(&risp_netem::DirectionStats) -> u64| f(&link.to_server) + f(&link.to_client);
        let restored: u64 = net
            .servers()
            .iter()
            .map(|s| s.stats().sessions_restored)
            .sum();
        for (t, n) in totals.iter_mut().zip([
            both(|d| d.dropped),
            both(|d| d.duplicated),
            both(|d| d.reordered),
            both(|d| d.corrupted),
            both(|d| d.blackholed),
            net.rebinds(),
            net.reconnects(),
            net.lost.len() as u64,
            restored,
        ]) {
            *t += n;
        }
        let took = net.now() - net.t0();
        if took > slowest.0 {
            slowest = (took, seed);
        }
    }
    println!(
        "{seeds} seeds; slowest {:?} (seed {}); dropped, duplicated, reordered, corrupted, \
         blackholed, rebinds, kills, failovers, restores: {totals:?}",
        slowest.0, slowest.1
    );
    // Every impairment happened, in most runs (not only in a few).
    let names = [
        "dropped",
        "duplicated",
        "reordered",
        "corrupted",
        "blackholed",
        "rebinds",
        "kills",
        "failovers",
        "restores",
    ];
    for (name, t) in names.iter().zip(totals) {
        assert!(t >= seeds / 2, "{name}: {t} in {seeds} seeds");
    }
}

/// The negative control: a server (or anything on the path) that swaps the
/// payloads of two indices, each datagram with a valid CRC. The client's
/// own check is a sum, so it verifies the transfer, and a test that only
/// compared the checksum would pass; the per-value check catches it.
#[test]
fn two_swapped_payloads_pass_the_checksum_but_fail_the_value_check() {
    use risp_udp::proto::wire::ServerMessage;
    use support::wire::encode_server;
    let mut net = Failover::impaired(
        vec![server(1), server(2)],
        vec![(addr(1), 0), (addr(2), 1)],
        ClientConfig::new(Uuid::from_u128(7), LEN),
        ImpairmentConfig::symmetric(DirectionConfig {
            loss: 0.05,
            delay: DELAY,
            ..DirectionConfig::default()
        }),
        7,
    );
    assert!(net.run_until(Duration::from_secs(1), |n| n.seq.is_some()));
    let want = net.expected().unwrap();
    let (i, j) = (500, 501);
    let (vi, vj) = (want.value(i), want.value(j));
    assert_ne!(vi, vj);
    net.set_tamper(Box::new(move |uuid, bytes| {
        if let Ok(ServerMessage::Data {
            index,
            payload,
            echo,
        }) = ServerMessage::decode(bytes, uuid)
        {
            let swapped = match index {
                _ if index == i => vj,
                _ if index == j => vi,
                _ => payload,
            };
            *bytes = encode_server(
                uuid,
                ServerMessage::Data {
                    index,
                    payload: swapped,
                    echo,
                },
            );
        }
    }));
    net.run(Duration::from_secs(10));
    // What the checksum sees: all is well.
    assert!(net.completed && net.failed.is_none());
    assert_eq!(net.verified, Some(want.checksum()), "the client verified");
    assert_eq!(Expected::sum_of(&net.values), want.checksum());
    // What the per-value check sees.
    assert_eq!(
        want.check(&net.values),
        Err(format!("index {i}: got {vj}, expected {vi}"))
    );
    assert!(!net.values_match());
}

//! The server-wide window budget bounds the whole, on long paths, in
//! virtual time.
//!
//! Many sessions of a default-configured [`Server`] run at once over
//! 200 ms round trips (100 ms each way, netem's model on each client's own
//! link, no bottleneck: nothing but the server's budget and the clients'
//! own rate control limits the windows). After every datagram the server
//! takes in and every timer it fires, the window slots it holds over all
//! sessions ([`Server::window_slots_in_use`]) must stay within
//! [`ServerConfig::window_budget`] plus [`MIN_WINDOW_SHARE`] per live
//! session (a session is never squeezed below that share, so each may
//! hold up to that much past the budget; that is the documented bound).
//! The sessions together ask for far more than the budget, and the test
//! also asserts that the budget did bind (the peak comes close to it, and
//! the server capped windows to the budget), so a budget that never
//! mattered, or a test too small to reach it, fails too. Every session
//! must still deliver every value, in order, each the one the session's
//! seed gives (worked out by `support::expected`, not by the server), and
//! verify its checksum.
//!
//! Virtual time makes the run exact for its seeds: no limit here depends
//! on the machine.

mod support;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use risp_netem::{Direction, DirectionConfig, Impairment, ImpairmentConfig};
use risp_udp::proto::client::{Client, ClientConfig, ClientEvent};
use risp_udp::proto::server::{Server, ServerConfig, ServerEvent, MIN_WINDOW_SHARE};
use risp_udp::proto::wire::MAX_DATAGRAM_LEN;
use support::expected::Expected;
use uuid::Uuid;

const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 8081));

/// One client and what it delivered.
struct Session {
    client: Client,
    addr: SocketAddr,
    link: Impairment,
    started: Instant,
    /// What the session must deliver, once the server opened it.
    expected: Option<Expected>,
    delivered: u32,
    /// The first wrong delivery, if any.
    wrong: Option<String>,
    verified: Option<u64>,
    completed: bool,
}

/// A datagram on its way: arrival time, to the server (`None`) or to
/// client `Some(i)`, from, bytes.
type Hop = (Instant, Option<usize>, SocketAddr, Vec<u8>);

/// What one run showed.
#[derive(Debug)]
struct Outcome {
    budget: usize,
    /// Most slots held at once, and the most sessions live at once.
    peak_slots: usize,
    peak_sessions: usize,
    /// Most slots held past the budget at once.
    peak_over_budget: usize,
    /// The server's count of windows capped to the budget.
    budget_capped: u64,
    elapsed: Duration,
}

/// `n` sessions of `len` values each, the i-th starting `stagger · i`
/// after the first, over links of `one_way` delay each way and `loss` in
/// each direction. Panics as soon as the bound does not hold or a session
/// fails; returns once every session completed.
fn run(n: usize, len: u32, stagger: Duration, one_way: Duration, loss: f64, seed: u64) -> Outcome {
    let config = ServerConfig {
        seed: Some(seed),
        ..ServerConfig::default()
    };
    let budget = config.window_budget;
    let mut server = Server::new(config);
    let epoch = risp_udp::clock::now();
    let link = ImpairmentConfig::symmetric(DirectionConfig {
        loss,
        delay: one_way,
        ..DirectionConfig::default()
    });
    let mut sessions: Vec<Session> = (0..n)
        .map(|i| {
            let uuid = Uuid::from_u128((u128::from(seed) << 64) | (i as u128 + 1));
            let started = epoch + stagger * i as u32;
            Session {
                client: Client::new(ClientConfig::new(uuid, len), started),
                addr: SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8),
                    4000,
                )),
                link: Impairment::new(link.clone(), seed ^ ((i as u64 + 1) << 32)),
                started,
                expected: None,
                delivered: 0,
                wrong: None,
                verified: None,
                completed: false,
            }
        })
        .collect();
    let by_addr: HashMap<SocketAddr, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.addr, i))
        .collect();
    let by_uuid: HashMap<Uuid, usize> = sessions
        .iter()
        .enumerate()
        .map(|(i, s)| (s.client.uuid(), i))
        .collect();
    // Every delay is the same, so datagrams arrive in the order they were
    // sent: a FIFO is the event queue (checked on every push).
    let mut queue: VecDeque<Hop> = VecDeque::new();
    let push = |queue: &mut VecDeque<Hop>, hop: Hop| {
        assert!(
            queue.back().is_none_or(|last| last.0 <= hop.0),
            "a constant delay keeps arrivals in order"
        );
        queue.push_back(hop);
    };
    let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
    let mut sbuf = Vec::new();
    let mut out = Outcome {
        budget,
        peak_slots: 0,
        peak_sessions: 0,
        peak_over_budget: 0,
        budget_capped: 0,
        elapsed: Duration::ZERO,
    };
    // The bound, checked wherever the server's slots may have changed.
    let check = |server: &Server, now: Instant, out: &mut Outcome| {
        let slots = server.window_slots_in_use();
        let live = server.session_count();
        let bound = budget + MIN_WINDOW_SHARE as usize * live;
        assert!(
            slots <= bound,
            "at {:?}: {slots} slots held over {live} sessions, more than the budget {budget} \
             plus {MIN_WINDOW_SHARE} per session ({bound})",
            now - epoch
        );
        out.peak_slots = out.peak_slots.max(slots);
        out.peak_sessions = out.peak_sessions.max(live);
        out.peak_over_budget = out.peak_over_budget.max(slots.saturating_sub(budget));
    };
    // Each client's next wake-up (its start, then its timer), refreshed
    // whenever it is touched; a client is only polled when touched (it
    // started, got a datagram or fired a timer).
    let mut wake: Vec<Option<Instant>> = sessions.iter().map(|s| Some(s.started)).collect();
    let mut begun = vec![false; n];
    let mut touched: Vec<usize> = Vec::new();
    let mut completed = 0;
    let mut server_touched = false;
    let mut server_wake: Option<Instant> = None;
    let limit = epoch + Duration::from_secs(600);
    let mut now = epoch;
    loop {
        // What the touched clients have to say and to send now.
        touched.sort_unstable();
        touched.dedup();
        for &i in &touched {
            let s = &mut sessions[i];
            drain_client(s);
            while let Some(len) = s.client.poll_transmit(now, &mut buf) {
                let verdict = s.link.decide(Direction::ToServer, now - epoch, len);
                for d in verdict.deliveries() {
                    push(
                        &mut queue,
                        (now + d.delay, None, s.addr, buf[..len].to_vec()),
                    );
                }
            }
            drain_client(s);
            if s.completed {
                completed += 1;
                wake[i] = None;
            } else {
                wake[i] = s.client.poll_timeout();
            }
        }
        touched.clear();
        // The server's output changes only when it takes something in or
        // fires a timer (its pacer's releases are timers too).
        while let Some(t) = server_touched
            .then(|| server.poll_transmit(now, usize::MAX, &mut sbuf))
            .flatten()
        {
            let i = by_addr[&t.destination];
            for seg in sbuf[..t.size].chunks(t.segment_size) {
                let verdict = sessions[i]
                    .link
                    .decide(Direction::ToClient, now - epoch, seg.len());
                for d in verdict.deliveries() {
                    push(&mut queue, (now + d.delay, Some(i), SERVER, seg.to_vec()));
                }
            }
        }
        if server_touched {
            server_wake = server.poll_timeout();
            server_touched = false;
        }
        if completed == n {
            break;
        }
        // The next thing that happens.
        let next = wake
            .iter()
            .flatten()
            .copied()
            .chain(queue.front().map(|h| h.0))
            .chain(server_wake)
            .min()
            .expect("unfinished sessions always wait for something");
        assert!(next <= limit, "the sessions did not finish in 600 s");
        now = now.max(next);
        while queue.front().is_some_and(|h| h.0 <= now) {
            let (_, to, from, bytes) = queue.pop_front().expect("looked");
            match to {
                None => {
                    server.handle(now, from, &bytes);
                    server_touched = true;
                    check(&server, now, &mut out);
                }
                Some(i) => {
                    sessions[i].client.handle(now, &bytes);
                    touched.push(i);
                }
            }
        }
        if server_wake.is_some_and(|t| t <= now) {
            server.handle_timeout(now);
            server_touched = true;
            check(&server, now, &mut out);
        }
        while let Some(ev) = server.poll_event() {
            if let ServerEvent::Opened { uuid, len, .. } = ev {
                let i = by_uuid[&uuid];
                let seed = server.sequence(&uuid).expect("just opened").seed();
                sessions[i].expected = Some(Expected::new(seed, len));
            }
        }
        for i in 0..n {
            if wake[i].is_some_and(|t| t <= now) {
                if begun[i] {
                    sessions[i].client.handle_timeout(now);
                }
                begun[i] = true;
                touched.push(i);
            }
        }
    }
    for s in &sessions {
        let uuid = s.client.uuid();
        let e = s.expected.expect("every session was opened");
        assert_eq!(s.wrong, None, "{uuid}");
        assert_eq!(s.delivered, len, "{uuid}: every value delivered");
        assert_eq!(s.verified, Some(e.checksum()), "{uuid}: verified");
    }
    out.budget_capped = server.stats().window_budget_capped;
    out.elapsed = now - epoch;
    out
}

/// Takes in what the client reports: every value checked against the
/// session's reference as it arrives.
fn drain_client(s: &mut Session) {
    while let Some(ev) = s.client.poll_event() {
        match ev {
            ClientEvent::Value { index, value, .. } => {
                let e = s.expected.expect("values only after the session opened");
                if s.wrong.is_none() && (index != s.delivered || value != e.value(index)) {
                    s.wrong = Some(format!(
                        "delivery {} is index {index} = {value}, expected index {} = {}",
                        s.delivered,
                        s.delivered,
                        e.value(s.delivered.min(e.len - 1))
                    ));
                }
                s.delivered += 1;
            }
            ClientEvent::Verified { checksum } => s.verified = Some(checksum),
            ClientEvent::Completed => s.completed = true,
            ClientEvent::Failed(e) => panic!("{}: failed: {e}", s.client.uuid()),
            ClientEvent::Restarted { uuid } => {
                panic!("{}: restarted as {uuid}", s.client.uuid())
            }
            ClientEvent::ServerLost { reason } => {
                panic!("{}: lost its server: {reason:?}", s.client.uuid())
            }
            ClientEvent::Connected | ClientEvent::RttSample(_) => {}
        }
    }
}

/// The budget must have mattered: the sessions together held close to
/// all of it at some point, and the server cut windows to it.
fn assert_budget_bound(o: &Outcome) {
    println!("{o:?}");
    assert!(
        o.peak_slots * 10 >= o.budget * 9,
        "the sessions never came near the budget ({} of {} slots): the test shows nothing",
        o.peak_slots,
        o.budget
    );
    assert!(o.budget_capped > 0, "no window was capped to the budget");
}

#[test]
fn sessions_on_200ms_paths_share_the_window_budget() {
    // 64 sessions of 40,000 values, one every 20 ms: each could use a
    // window of its whole length (2.56M slots together) where the default
    // budget is 262,144, so late joiners find it taken and the early ones
    // must give back their shares as they arrive.
    let o = run(
        64,
        40_000,
        Duration::from_millis(20),
        Duration::from_millis(100),
        0.0,
        19,
    );
    assert_budget_bound(&o);
}

#[test]
fn lossy_sessions_on_200ms_paths_share_the_window_budget() {
    // The same at 10% loss each way, 20,000 values each (still 1.28M
    // slots of demand): holes under repair hold their slots for extra
    // round trips, and the budget still bounds the whole.
    let o = run(
        64,
        20_000,
        Duration::from_millis(20),
        Duration::from_millis(100),
        0.1,
        20,
    );
    assert_budget_bound(&o);
}

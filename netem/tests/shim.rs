//! The lossy socket over real loopback sockets.
//!
//! Expected outcomes come from a twin [`Impairment`] with the same config and
//! seed: without blackholes a verdict does not depend on the time, so the
//! twin predicts exactly which datagrams arrive and with which delay.
//!
//! Delays run in real time: tokio's paused clock jumps ahead whenever every
//! task waits, also while a datagram is still on its way through the kernel
//! (loopback may finish delivery in a softirq thread later), which would
//! fire timeouts that real time never would. So nothing here bounds a
//! delay from above (the scheduler may always be late); lower bounds are
//! exact (tokio timers never fire early), and orders are checked only where
//! the measured send times make them certain. The tests run on tokio's
//! current-thread runtime, where no other task (such as the shim's sender)
//! runs until the test's task yields. Timeouts below only turn a hang into
//! a failure; they never stand in for synchronisation.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use risp_netem::{
    flip_bit, Blackhole, Direction, DirectionConfig, ImpairedLink, Impairment, ImpairmentConfig,
    LossySocket, Side,
};
use tokio::net::UdpSocket;
use tokio::time::{timeout, Instant};

const N: usize = 2000;
const BATCH: usize = 50;
const MS: Duration = Duration::from_millis(1);
/// Generous bound that only fires if something is broken.
const GUARD: Duration = Duration::from_secs(10);

async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback")
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().expect("local addr")
}

/// A 16-byte datagram carrying `i`.
fn datagram(i: usize) -> [u8; 16] {
    let mut d = [0xA5; 16];
    d[..8].copy_from_slice(&(i as u64).to_be_bytes());
    d
}

fn index(d: &[u8]) -> usize {
    let mut b = [0; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b) as usize
}

async fn recv(s: &UdpSocket, buf: &mut [u8]) -> (usize, SocketAddr) {
    timeout(GUARD, s.recv_from(buf))
        .await
        .expect("datagram should arrive")
        .expect("recv_from")
}

async fn recv_lossy(s: &LossySocket, buf: &mut [u8]) -> (usize, SocketAddr) {
    timeout(GUARD, s.recv_from(buf))
        .await
        .expect("datagram should arrive")
        .expect("recv_from")
}

/// Receives `count` datagrams from `expected_from`, recording their indices.
async fn receive_n(
    s: &LossySocket,
    expected_from: SocketAddr,
    count: usize,
    received: &mut Vec<usize>,
) {
    let mut buf = [0; 64];
    for _ in 0..count {
        let (n, from) = recv_lossy(s, &mut buf).await;
        assert_eq!((n, from), (16, expected_from));
        received.push(index(&buf[..n]));
    }
}

fn assert_nothing_waiting(s: &UdpSocket) {
    let mut buf = [0; 64];
    let err = s.try_recv_from(&mut buf).expect_err("no extra datagram");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
}

/// Loss 0.5 one way (the way under test), something else the other way so a
/// swapped direction would show.
fn lossy_config() -> ImpairmentConfig {
    ImpairmentConfig {
        to_server: DirectionConfig {
            loss: 0.5,
            duplicate: 0.05,
            ..DirectionConfig::default()
        },
        to_client: DirectionConfig::with_loss(0.9),
        ..ImpairmentConfig::default()
    }
}

/// Four standard errors around `p` for `n` samples.
fn assert_rate(count: u64, n: usize, p: f64) {
    let rate = count as f64 / n as f64;
    let tol = 4.0 * (p * (1.0 - p) / n as f64).sqrt();
    assert!(
        (rate - p).abs() <= tol,
        "rate {rate}, expected {p} +- {tol}"
    );
}

#[tokio::test]
async fn outbound_loss_delivers_exactly_what_the_model_says() {
    let seed = 7;
    let client = LossySocket::new(bind().await, Side::Client, lossy_config(), seed).unwrap();
    let server = bind().await;
    let mut twin = Impairment::new(lossy_config(), seed);
    let (mut expected, mut received) = (Vec::new(), Vec::new());
    let mut buf = [0; 64];

    for batch in (0..N).step_by(BATCH) {
        let mut in_batch = 0;
        for i in batch..batch + BATCH {
            let d = datagram(i);
            assert_eq!(client.send_to(&d, addr(&server)).await.unwrap(), d.len());
            let copies = twin
                .decide(Direction::ToServer, Duration::ZERO, d.len())
                .deliveries()
                .len();
            expected.extend(std::iter::repeat_n(i, copies));
            in_batch += copies;
        }
        // Receive per batch so the kernel buffer never overflows.
        for _ in 0..in_batch {
            let (n, from) = recv(&server, &mut buf).await;
            assert_eq!((n, from), (16, client.local_addr().unwrap()));
            received.push(index(&buf[..n]));
        }
    }
    assert_nothing_waiting(&server);
    assert_eq!(received, expected);

    let stats = client.stats();
    assert_eq!(stats, twin.stats());
    let s = stats.to_server;
    assert_eq!(s.seen, N as u64);
    assert_eq!(received.len() as u64, s.seen - s.dropped + s.duplicated);
    assert_rate(s.dropped, N, 0.5);
    assert_eq!(stats.to_client.seen, 0, "sending must not touch ToClient");
}

#[tokio::test]
async fn inbound_loss_skips_dropped_datagrams() {
    let seed = 11;
    let server = LossySocket::new(bind().await, Side::Server, lossy_config(), seed).unwrap();
    let client = bind().await;
    let to = server.local_addr().unwrap();
    let mut twin = Impairment::new(lossy_config(), seed);
    let (mut expected, mut received) = (Vec::new(), Vec::new());
    let from = addr(&client);
    let mut sent = 0;
    for batch in (0..N).step_by(BATCH) {
        let mut in_batch = 0;
        for i in batch..batch + BATCH {
            client.send_to(&datagram(i), to).await.unwrap();
            sent += 1;
            let copies = twin
                .decide(Direction::ToServer, Duration::ZERO, 16)
                .deliveries()
                .len();
            expected.extend(std::iter::repeat_n(i, copies));
            in_batch += copies;
        }
        receive_n(&server, from, in_batch, &mut received).await;
    }
    // Trailing dropped datagrams are only judged when recv_from reads them:
    // send markers until the twin says one gets through, then read it.
    let mut marker = N;
    loop {
        client.send_to(&datagram(marker), to).await.unwrap();
        sent += 1;
        let v = twin.decide(Direction::ToServer, Duration::ZERO, 16);
        if !v.is_dropped() {
            expected.extend(std::iter::repeat_n(marker, v.deliveries().len()));
            receive_n(&server, from, v.deliveries().len(), &mut received).await;
            break;
        }
        marker += 1;
    }
    assert_eq!(received, expected);
    assert_nothing_waiting(server.get_ref());

    let stats = server.stats();
    assert_eq!(stats, twin.stats());
    let s = stats.to_server;
    assert_eq!(s.seen, sent);
    assert_eq!(received.len() as u64, s.seen - s.dropped + s.duplicated);
    assert_rate(s.dropped, N, 0.5);
    assert_eq!(stats.to_client.seen, 0, "receiving must not touch ToClient");
}

#[tokio::test]
async fn passthrough_delivers_everything_in_order() {
    let a = LossySocket::passthrough(bind().await);
    let b = LossySocket::passthrough(bind().await);
    assert!(a.is_passthrough());
    let mut buf = [0; 64];
    for batch in (0..N).step_by(BATCH) {
        for i in batch..batch + BATCH {
            a.send_to(&datagram(i), b.local_addr().unwrap())
                .await
                .unwrap();
        }
        for i in batch..batch + BATCH {
            let (n, from) = recv_lossy(&b, &mut buf).await;
            assert_eq!(from, a.local_addr().unwrap());
            assert_eq!(&buf[..n], &datagram(i));
        }
    }
    assert_nothing_waiting(b.get_ref());
    assert_eq!(a.stats(), Default::default());
    assert_eq!(b.stats(), Default::default());
}

#[tokio::test]
async fn corruption_flips_the_predicted_bit_both_ways() {
    let config = ImpairmentConfig::symmetric(DirectionConfig {
        corrupt: 0.5,
        ..DirectionConfig::default()
    });
    let seed = 3;
    let lossy = LossySocket::new(bind().await, Side::Client, config.clone(), seed).unwrap();
    let peer = bind().await;
    let mut twin = Impairment::new(config, seed);
    let mut buf = [0; 64];
    for i in 0..200 {
        // Outbound: client -> server.
        let mut want = datagram(i);
        lossy.send_to(&want, addr(&peer)).await.unwrap();
        let v = twin.decide(Direction::ToServer, Duration::ZERO, want.len());
        if let Some(bit) = v.deliveries()[0].corrupt_bit {
            flip_bit(&mut want, bit);
        }
        let (n, _) = recv(&peer, &mut buf).await;
        assert_eq!(&buf[..n], &want, "outbound {i}");

        // Inbound: server -> client.
        let mut want = datagram(i);
        peer.send_to(&want, lossy.local_addr().unwrap())
            .await
            .unwrap();
        let v = twin.decide(Direction::ToClient, Duration::ZERO, want.len());
        if let Some(bit) = v.deliveries()[0].corrupt_bit {
            flip_bit(&mut want, bit);
        }
        let (n, _) = recv_lossy(&lossy, &mut buf).await;
        assert_eq!(&buf[..n], &want, "inbound {i}");
    }
    let stats = lossy.stats();
    assert_eq!(stats, twin.stats());
    assert!(stats.to_server.corrupted > 0 && stats.to_client.corrupted > 0);
}

fn delayed(delay: Duration, jitter: Duration) -> ImpairmentConfig {
    ImpairmentConfig::symmetric(DirectionConfig {
        delay,
        jitter,
        ..DirectionConfig::default()
    })
}

/// Sends `d` through the shim, requiring `send_to` to finish on its first
/// poll: a delayed or dropped datagram never makes the sender wait, and no
/// other task runs in between (the current-thread runtime).
fn send_now(socket: &LossySocket, d: &[u8], to: SocketAddr) {
    let mut send = std::pin::pin!(socket.send_to(d, to));
    let mut cx = Context::from_waker(Waker::noop());
    match send.as_mut().poll(&mut cx) {
        Poll::Ready(sent) => assert_eq!(sent.unwrap(), d.len()),
        Poll::Pending => panic!("send_to waited"),
    }
}

#[tokio::test]
async fn outbound_delay_is_applied_without_blocking_the_sender() {
    let delay = 50 * MS;
    let client = LossySocket::new(
        bind().await,
        Side::Client,
        delayed(delay, Duration::ZERO),
        1,
    )
    .unwrap();
    let server = bind().await;
    let mut buf = [0; 64];
    let t0 = Instant::now();
    send_now(&client, b"late", addr(&server));
    // The shim's sender has not run yet (this task has not yielded), so
    // the datagram cannot have been sent.
    assert_nothing_waiting(&server);
    let (n, from) = recv(&server, &mut buf).await;
    let waited = t0.elapsed();
    assert_eq!(
        (&buf[..n], from),
        (&b"late"[..], client.local_addr().unwrap())
    );
    assert!(waited >= delay, "arrived after {waited:?}");
}

#[tokio::test]
async fn inbound_delay_holds_datagrams_until_due() {
    let delay = 50 * MS;
    let server = LossySocket::new(
        bind().await,
        Side::Server,
        delayed(delay, Duration::ZERO),
        1,
    )
    .unwrap();
    let client = bind().await;
    let mut buf = [0; 64];
    let t0 = Instant::now();
    client
        .send_to(b"late", server.local_addr().unwrap())
        .await
        .unwrap();
    // On the socket (peeked, not taken) before the shim sees it.
    timeout(GUARD, server.get_ref().peek_from(&mut buf))
        .await
        .expect("datagram should arrive")
        .unwrap();
    // Cancelling a recv_from that already took the datagram off the socket
    // must not lose it. Its first poll takes it and holds it until due.
    match timeout(MS, server.recv_from(&mut buf)).await {
        Err(_) => assert!(server.next_held_due().is_some(), "taken and held"),
        // Only if this task was held up past the due time.
        Ok(got) => {
            let _ = got.unwrap();
            assert!(t0.elapsed() >= delay, "delivered early");
            return;
        }
    }
    let (n, from) = recv_lossy(&server, &mut buf).await;
    let waited = t0.elapsed();
    assert_eq!((&buf[..n], from), (&b"late"[..], addr(&client)));
    assert!(waited >= delay, "delivered after {waited:?}");
    assert_eq!(server.stats().to_server.seen, 1);
    assert_eq!(server.next_held_due(), None);
}

#[tokio::test]
async fn jitter_delivers_in_due_time_order() {
    let config = delayed(10 * MS, 20 * MS);
    let seed = 5;
    let client = LossySocket::new(bind().await, Side::Client, config.clone(), seed).unwrap();
    let server = bind().await;
    let mut twin = Impairment::new(config, seed);
    let count = 100;
    // Each datagram's due time lies between (before send) + delay and
    // (after send) + delay.
    let mut due = Vec::new();
    for i in 0..count {
        let before = Instant::now();
        send_now(&client, &datagram(i), addr(&server));
        let after = Instant::now();
        let v = twin.decide(Direction::ToServer, Duration::ZERO, 16);
        let delay = v.deliveries()[0].delay;
        due.push((before + delay, after + delay));
    }
    let mut buf = [0; 64];
    let mut received = Vec::new();
    for _ in 0..count {
        let (n, _) = recv(&server, &mut buf).await;
        received.push(index(&buf[..n]));
    }
    // The sender sends the earliest due first, and a datagram due earlier
    // was queued before a later one fell due; loopback keeps a socket's
    // order. So none arrives after one it was certainly due before.
    for (k, &a) in received.iter().enumerate() {
        for &b in &received[k + 1..] {
            assert!(
                due[b].1 >= due[a].0,
                "{b} arrived after {a} but was due first: {received:?}"
            );
        }
    }
    let mut sorted = received.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..count).collect::<Vec<_>>(), "each once");
    // 100 sends take well under a millisecond; 20 ms of jitter reorders
    // them (the twin says how).
    assert!(
        received.windows(2).any(|w| w[1] < w[0]),
        "jitter should reorder"
    );
}

#[tokio::test]
async fn inbound_jitter_reorders_but_loses_nothing() {
    let server = LossySocket::new(bind().await, Side::Server, delayed(MS, 20 * MS), 9).unwrap();
    let client = bind().await;
    let count = 100;
    for i in 0..count {
        client
            .send_to(&datagram(i), server.local_addr().unwrap())
            .await
            .unwrap();
    }
    let mut buf = [0; 64];
    let mut received = Vec::new();
    for _ in 0..count {
        let (n, _) = recv_lossy(&server, &mut buf).await;
        received.push(index(&buf[..n]));
    }
    // All 100 wait on the socket before the first recv_from, which takes
    // them all in at once: 20 ms of jitter reorders them.
    assert!(received.windows(2).any(|w| w[1] < w[0]), "{received:?}");
    received.sort_unstable();
    assert_eq!(received, (0..count).collect::<Vec<_>>());
    assert_nothing_waiting(server.get_ref());
}

#[tokio::test]
async fn full_queue_drops_and_counts() {
    let client = LossySocket::with_queue_capacity(
        bind().await,
        Side::Client,
        delayed(50 * MS, Duration::ZERO),
        1,
        4,
    )
    .unwrap();
    let server = bind().await;
    // All ten queued before the sender can run (send_now never yields).
    for i in 0..10 {
        send_now(&client, &datagram(i), addr(&server));
    }
    let s = client.stats().to_server;
    assert_eq!((s.seen, s.dropped, s.overflowed), (10, 6, 6));
    let mut buf = [0; 64];
    for i in 0..4 {
        let (n, _) = recv(&server, &mut buf).await;
        assert_eq!(index(&buf[..n]), i);
    }
    assert_nothing_waiting(&server);
    // Room again once the queue drained.
    client.send_to(&datagram(10), addr(&server)).await.unwrap();
    let (n, _) = recv(&server, &mut buf).await;
    assert_eq!(index(&buf[..n]), 10);
    assert_eq!(client.stats().to_server.delivered(), 5);
}

#[tokio::test]
async fn blackhole_applies_in_the_shim() {
    let length = 300 * MS;
    let config = ImpairmentConfig {
        blackholes: vec![Blackhole {
            start: Duration::ZERO,
            duration: length,
        }],
        ..ImpairmentConfig::default()
    };
    // The blackhole starts when the socket is made, between these two.
    let made_after = Instant::now();
    let client = LossySocket::new(bind().await, Side::Client, config, 1).unwrap();
    let made_before = Instant::now();
    let server = bind().await;
    // Sent certainly inside it: dropped; maybe not (this task held up
    // past its end): either.
    let (mut certain, mut unsure) = (0, 0);
    for i in 0..10 {
        client.send_to(&datagram(i), addr(&server)).await.unwrap();
        if Instant::now() < made_after + length {
            certain += 1;
        } else {
            unsure += 1;
        }
    }
    tokio::time::sleep_until(made_before + length).await;
    // Certainly after it: every one arrives. Loopback keeps the order, so
    // any of the first ten that was sent arrives before these.
    for i in 10..20 {
        client.send_to(&datagram(i), addr(&server)).await.unwrap();
    }
    let mut buf = [0; 64];
    let (mut late, mut after) = (0, Vec::new());
    while after.len() < 10 {
        let (n, _) = recv(&server, &mut buf).await;
        match index(&buf[..n]) {
            i if i < 10 => late += 1,
            i => after.push(i),
        }
    }
    assert_eq!(after, (10..20).collect::<Vec<_>>());
    assert_nothing_waiting(&server);
    let s = client.stats().to_server;
    assert_eq!(s.seen, 20);
    assert_eq!(s.dropped, s.blackholed);
    assert_eq!(s.dropped + late, 10, "{s:?}");
    assert!(
        s.blackholed >= certain && s.blackholed <= certain + unsure,
        "{s:?}: {certain} sent inside the blackhole, {unsure} maybe"
    );
}

#[tokio::test]
async fn invalid_config_is_rejected() {
    let config = ImpairmentConfig::symmetric(DirectionConfig::with_loss(1.5));
    let err = LossySocket::new(bind().await, Side::Client, config, 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("to_server.loss"), "{err}");
}

#[test]
fn new_outside_a_runtime_is_an_error_not_a_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let socket = rt.block_on(bind());
    let err = LossySocket::new(socket, Side::Server, ImpairmentConfig::default(), 0).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::Other);
}

/// Sockets opened one after another on one [`ImpairedLink`] (a killswitch,
/// a rebind) continue one model: together they drop exactly what a single
/// twin model deciding every datagram in order drops, and the link's
/// counters cover all of them. A model reseeded per socket would differ.
#[tokio::test]
async fn sockets_on_one_link_continue_one_model() {
    let seed = 11;
    let link = ImpairedLink::new(lossy_config(), seed).unwrap();
    let server = bind().await;
    let mut twin = Impairment::new(lossy_config(), seed);
    let mut buf = [0; 64];
    let mut expected = Vec::new();
    let mut received = Vec::new();
    for generation in 0..3 {
        let client = LossySocket::on_link(bind().await, Side::Client, &link).unwrap();
        let mut copies = 0;
        for i in generation * BATCH..(generation + 1) * BATCH {
            let d = datagram(i);
            client.send_to(&d, addr(&server)).await.unwrap();
            let n = twin
                .decide(Direction::ToServer, Duration::ZERO, d.len())
                .deliveries()
                .len();
            expected.extend(std::iter::repeat_n(i, n));
            copies += n;
        }
        for _ in 0..copies {
            let (n, _) = recv(&server, &mut buf).await;
            received.push(index(&buf[..n]));
        }
        assert_eq!(client.stats(), link.stats(), "a socket reports its link");
    }
    assert_nothing_waiting(&server);
    assert_eq!(received, expected);
    assert_eq!(link.stats(), twin.stats());
    assert_eq!(link.stats().to_server.seen, 3 * BATCH as u64);
}

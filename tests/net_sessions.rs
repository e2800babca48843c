//! The tokio drivers over real loopback sockets: a session handed from one
//! client to another, a session that expires while its client is stalled,
//! and garbage sprayed at the server during a transfer.
//!
//! Counts here are exact only where they are by construction: a client's
//! first timer is 5 ms, so on a loaded machine any handshake message may
//! be sent twice, and what counts messages (resumes, Retry round trips)
//! is checked as "at least". The raw-socket tests skip without root,
//! unless `RISP_REQUIRE_RAW=1` (`.ci/run` as root): then they fail.

mod support;

use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use risp_udp::cli::exit::Exit;
use risp_udp::clock;
use risp_udp::proto::client::{ClientConfig, ClientError};
use risp_udp::proto::server::{Reject, RetryPolicy, ServerConfig};
use risp_udp::proto::wire::{ServerMessage, State, FLAG_PROBE, MAX_DATAGRAM_LEN};
use support::expected::SessionSeeds;
use support::loopback::{transfer, TestServer};
use support::wire::{encode_server, reseal, ClientDatagram};
use uuid::Uuid;

/// Client A takes the first 5,000 of 20,000 values and stops; client B,
/// a fresh socket with A's resume state under the same UUID, takes the rest.
/// Together they deliver every index once, and B verifies the checksum of
/// the whole sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_client_resumes_the_session_by_uuid_and_verifies() {
    const LEN: u32 = 20_000;
    const STOP: u32 = 5_000;
    let server = TestServer::start(ServerConfig::default()).await;
    let uuid = Uuid::new_v4();

    let a = server.client().uuid(uuid).stop_after(STOP);
    let (a_out, a_vals) = transfer(a, LEN).await;
    assert_eq!(a_out.result(), Ok(()));
    assert_eq!(a_out.checksum, None, "A stopped before the end");
    assert!(
        a_out.delivered >= STOP && a_out.delivered < LEN,
        "{}",
        a_out.delivered
    );
    let state = a_out.resume.clone().expect("A hands over a resume state");
    assert_eq!(state.next, a_out.delivered);
    assert!(!state.token.is_empty());
    assert_eq!(
        state.sum,
        a_vals.iter().map(|(_, v)| u64::from(*v)).sum::<u64>()
    );
    server.check_prefix(&a_out, &a_vals);

    let b = server.client().uuid(uuid).resume(state.clone());
    let (b_out, b_vals) = transfer(b, LEN).await;
    assert_eq!(b_out.result(), Ok(()), "B: {:?}", b_out.result());
    let checksum = b_out.checksum.expect("B verified the whole sequence");
    assert_eq!(b_out.delivered + a_out.delivered, LEN);
    assert!(b_out.delivered <= LEN - STOP);

    // Every index exactly once, in order, across the two clients; the
    // values add up to the server's checksum.
    let all: Vec<(u32, u32)> = a_vals.into_iter().chain(b_vals).collect();
    assert_eq!(all.len(), LEN as usize);
    for (k, (i, _)) in all.iter().enumerate() {
        assert_eq!(*i as usize, k, "index order across the hand-over");
    }
    assert_eq!(
        all.iter().map(|(_, v)| u64::from(*v)).sum::<u64>(),
        checksum
    );
    // And each value is the session's, at its index, across the hand-over.
    assert_eq!(b_out.uuid, uuid, "B resumed under A's UUID");
    server.check(&b_out, &all);
    // The check can fail where the checksum cannot: the payloads of the
    // last value A took and the first B took swapped leave the sum (all the
    // client compares) unchanged; one flipped bit does not.
    let expected = server.expected(uuid, LEN);
    let seam = a_out.delivered as usize;
    let mut swapped = all.clone();
    let (x, y) = (swapped[seam - 1].1, swapped[seam].1);
    // Fixed by the test server's seed; equal with p = 2^-32 otherwise.
    assert_ne!(x, y, "two different values to swap");
    swapped[seam - 1].1 = y;
    swapped[seam].1 = x;
    assert_eq!(
        swapped.iter().map(|(_, v)| u64::from(*v)).sum::<u64>(),
        checksum
    );
    let err = expected.check_indexed(&swapped).unwrap_err();
    assert!(err.starts_with(&format!("index {}:", seam - 1)), "{err}");
    let mut flipped = all.clone();
    flipped[LEN as usize - 1].1 ^= 1;
    let err = expected.check_indexed(&flipped).unwrap_err();
    assert!(err.starts_with(&format!("index {}:", LEN - 1)), "{err}");
    // Out of order, or one missing, is caught too.
    let mut reordered = all.clone();
    reordered.swap(0, 1);
    assert!(expected.check_indexed(&reordered).is_err());
    assert!(expected.check_indexed(&all[..all.len() - 1]).is_err());

    let s = server.stop().await.stats;
    assert_eq!(s.sessions_opened, 1, "B resumed A's session, not a new one");
    // A resume repeated before its answer (5 ms timer) counts again.
    assert!(s.sessions_resumed >= 1, "{s:?}");
    assert_eq!(s.sessions_closed, 1, "{s:?}");
    assert_eq!(s.sessions_expired, 0, "{s:?}");
}

/// A session lifetime of 300 ms: client A stalls (stops after 1,000 of
/// 10,000 values and goes quiet) past the lifetime; the server expires the
/// session, and a client resuming it fails with `SessionExpired`, which the
/// CLI reports as exit code 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_session_past_its_lifetime_fails_expired_with_exit_5() {
    const LIFETIME: Duration = Duration::from_millis(300);
    let server = TestServer::start(ServerConfig {
        session_lifetime: LIFETIME,
        ..ServerConfig::default()
    })
    .await;
    let uuid = Uuid::new_v4();
    let a = server.client().uuid(uuid).stop_after(1_000);
    let (a_out, a_vals) = transfer(a, 10_000).await;
    assert_eq!(a_out.result(), Ok(()));
    server.check_prefix(&a_out, &a_vals);
    let state = a_out.resume.expect("resume state");
    let stalled_at = clock::now();
    assert_eq!(server.summary().stats.sessions_expired, 0);

    // The stall is the behaviour under test: go quiet for twice the
    // lifetime.
    tokio::time::sleep(LIFETIME * 2).await;

    let b = server.client().uuid(uuid).resume(state);
    let (b_out, b_vals) = transfer(b, 10_000).await;
    assert!(clock::now().saturating_duration_since(stalled_at) >= LIFETIME * 2);
    assert_eq!(b_out.result(), Err(ClientError::SessionExpired));
    assert!(
        b_vals.is_empty(),
        "nothing delivered from an expired session"
    );
    assert_eq!(b_out.checksum, None);
    let err = b_out.result().unwrap_err();
    assert_eq!(Exit::for_error(&err), Exit::SessionExpired);
    assert_eq!(Exit::for_error(&err) as u8, 5);

    let s = server.stop().await.stats;
    assert_eq!(s.sessions_opened, 1, "{s:?}");
    assert_eq!(s.sessions_expired, 1, "{s:?}");
    assert_eq!(s.sessions_resumed, 0, "{s:?}");
    assert!(s.rejected(Reject::UnknownSession) >= 1, "{s:?}");
}

/// Flips 1 to 3 bits (CRC32C catches every such error in a datagram this
/// short) without fixing the CRC.
fn flip_bits(rng: &mut StdRng, d: &mut [u8]) {
    let flips = rng.gen_range(1..=3);
    let mut done = Vec::new();
    while done.len() < flips {
        let bit = rng.gen_range(0..d.len() * 8);
        if !done.contains(&bit) {
            done.push(bit);
            d[bit / 8] ^= 1 << (bit % 8);
        }
    }
}

/// `n` datagrams that the server must reject, each one of four kinds in
/// turn: random bytes; a CONNECTED for the live session with bits flipped
/// (CRC fails); a well-formed CONNECTED for the live session with a wrong
/// token; a well-formed server-to-client datagram (as if reflected).
fn spray_datagrams(seed: u64, n: usize, uuid: Uuid, len: u32) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|k| match k % 4 {
            0 => {
                let l = rng.gen_range(1..=MAX_DATAGRAM_LEN);
                (0..l).map(|_| rng.gen()).collect()
            }
            1 | 2 => {
                let token: [u8; 8] = rng.gen();
                let mut d = ClientDatagram {
                    state: State::Connected,
                    uuid,
                    len,
                    window: rng.gen_range(1..=1024),
                    ack: rng.gen_range(0..len),
                    ts: rng.gen(),
                    flags: 0,
                    token: token.to_vec(),
                    sack: Vec::new(),
                }
                .encode();
                if k % 4 == 1 {
                    flip_bits(&mut rng, &mut d);
                } else {
                    reseal(&mut d);
                }
                d
            }
            _ => encode_server(
                uuid,
                ServerMessage::Data {
                    index: rng.gen_range(0..len),
                    payload: rng.gen(),
                    echo: rng.gen(),
                },
            ),
        })
        .collect()
}

/// During a 200,000-value transfer, another socket sends the server 20,000
/// random and mutated datagrams (one for every ten values delivered, so
/// the spray runs the whole length of the transfer). The transfer verifies
/// untouched, no session is opened for the spray, and the server's reject
/// counters account for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_sprayed_at_the_server_during_a_transfer_do_not_disturb_it() {
    const LEN: u32 = 200_000;
    const SPRAY: usize = 20_000;
    let server = TestServer::start(ServerConfig::default()).await;
    let uuid = Uuid::new_v4();
    let spray = spray_datagrams(7, SPRAY, uuid, LEN);
    let sprayer = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0usize;
    let mut config = ClientConfig::new(uuid, LEN);
    config.idle_timeout = Duration::from_secs(10);
    let mut values = 0u64;
    let mut sum = 0u64;
    let mut got = Vec::with_capacity(LEN as usize);
    let run = async {
        let mut transfer = server.client().config(config).request(LEN).await?;
        while let Some(v) = transfer.next().await {
            let v = v?;
            values += 1;
            sum += u64::from(v.value);
            got.push((v.index, v.value));
            if values % 10 == 0 && sent < SPRAY {
                // Loopback UDP: a send completes at once.
                if sprayer.send_to(&spray[sent], server.addr).is_ok() {
                    sent += 1;
                }
            }
        }
        transfer.finish().await
    };
    let outcome = tokio::time::timeout(Duration::from_secs(40), run)
        .await
        .expect("transfer finished within 40 s")
        .expect("the transfer verified");
    assert_eq!(outcome.result(), Ok(()), "{:?}", outcome.result());
    assert_eq!(outcome.delivered, LEN);
    assert_eq!(values, u64::from(LEN));
    assert_eq!(outcome.checksum, Some(sum));
    // Untouched: every value the session's own, at its index.
    server.check(&outcome, &got);
    assert_eq!(
        outcome.client.corrupt, 0,
        "the spray never reached the client"
    );
    assert_eq!(outcome.client.invalid, 0);
    assert_eq!(sent, SPRAY, "every spray datagram was sent");

    // On a loaded machine the server is descheduled while its receive
    // buffer fills, and the kernel drops spray datagrams it never sees
    // (4,000 of 20,000 seen with two busy loops beside the test). The
    // client has its checksum, so the server has read every spray datagram
    // the kernel did not drop: the floors below allow for the drops counted
    // on its socket (read while it is still bound).
    let drops = kernel_drops(server.addr);
    let s = server.stop().await.stats;
    assert_eq!(s.datagrams_received, s.accepted + s.rejected_total());
    assert_eq!(s.sessions_opened, 1, "the spray opened no session: {s:?}");
    assert_eq!(s.sessions_closed, 1, "{s:?}");
    // The kinds only the spray produces (the real client is on a clean
    // socket with the right token).
    let spray_rejects: u64 = [
        Reject::Malformed,
        Reject::Corrupt,
        Reject::WrongDirection,
        Reject::Unauthorized,
    ]
    .iter()
    .map(|r| s.rejected(*r))
    .sum();
    let floor = (SPRAY as u64 * 9 / 10).saturating_sub(drops);
    assert!(
        spray_rejects >= floor && spray_rejects <= SPRAY as u64,
        "spray rejects {spray_rejects} of {SPRAY} sent, {drops} dropped by the kernel: {s:?}"
    );
    assert!(s.rejected_total() >= floor, "{s:?}");
    // The kinds were told apart: random bytes and server datagrams (shorter
    // than any client datagram) are malformed, flipped bits fail the CRC,
    // a wrong token is unauthorised. A quarter of the spray each, at most.
    let quarter = SPRAY as u64 / 4;
    assert!(
        s.rejected(Reject::Malformed) >= quarter.saturating_sub(drops),
        "{s:?}"
    );
    assert!(s.rejected(Reject::Corrupt) > 0, "{s:?}");
    assert!(
        s.rejected(Reject::Unauthorized) >= (quarter * 9 / 10).saturating_sub(drops)
            && s.rejected(Reject::Unauthorized) <= quarter,
        "{s:?}"
    );
}

/// Sends `payload` to `to` over a raw IPv4 socket, as UDP from source port
/// `port` of this host's loopback address (UDP checksum 0: none, allowed
/// over IPv4): a spoofed source port. `Ok(false)` when the process may not
/// open raw sockets.
fn send_from_port(port: u16, to: SocketAddr, payload: &[u8]) -> std::io::Result<bool> {
    use socket2::{Domain, Protocol, Socket, Type};
    let raw = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut packet = Vec::with_capacity(8 + payload.len());
    packet.extend_from_slice(&port.to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    packet.extend_from_slice(&0u16.to_be_bytes());
    packet.extend_from_slice(payload);
    raw.send_to(&packet, &to.into())?;
    Ok(true)
}

/// Datagrams the kernel dropped for the UDP socket bound to `addr` (its
/// receive buffer was full): the last column of its /proc/net/udp line.
fn kernel_drops(addr: SocketAddr) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let local = format!(":{:04X}", addr.port());
    table
        .lines()
        .skip(1)
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&local))
        })
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .expect("the server's socket is in /proc/net/udp")
}

fn send_from_port_zero(to: SocketAddr, payload: &[u8]) -> std::io::Result<bool> {
    send_from_port(0, to, payload)
}

/// Reads datagrams on `socket` until one for session `key` decodes as
/// `last`; returns the bytes received before it. Loopback keeps order, so
/// everything the server sent before its answer to our marker has arrived.
fn drain_until(socket: &StdUdpSocket, key: Uuid, last: impl Fn(&ServerMessage) -> bool) -> usize {
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let mut bytes = 0;
    loop {
        let n = socket.recv(&mut buf).expect("the marker's answer arrives");
        if ServerMessage::decode(&buf[..n], key).is_ok_and(|m| last(&m)) {
            return bytes;
        }
        bytes += n;
    }
}

/// Finding 2 over real sockets: a client that owns a session sends
/// token-bearing acks and probes with a victim's source port (raw socket,
/// spoofed). The victim receives at most three times the bytes sent in its
/// name; before path validation 51 datagrams (2,958 B) made 1,253,376 B.
/// Needs raw sockets (root); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_acks_do_not_turn_the_server_into_an_amplifier() {
    let server = TestServer::start(ServerConfig {
        max_window: 8192,
        ..ServerConfig::default()
    })
    .await;
    let owner = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let victim = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    let uuid = Uuid::new_v4();
    let mut hello = ClientDatagram::new(State::Connecting, uuid, 1_000_000);
    hello.window = 8;
    owner.send_to(&hello.encode(), server.addr).unwrap();
    owner
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; MAX_DATAGRAM_LEN];
    let token = loop {
        let n = owner.recv(&mut buf).unwrap();
        if let Ok(ServerMessage::Accept { token, .. }) = ServerMessage::decode(&buf[..n], uuid) {
            break token;
        }
    };
    let mut ack = ClientDatagram::new(State::Connected, uuid, 1_000_000);
    ack.token = token.to_vec();
    ack.window = 8;
    ack.ts = 2;
    owner.send_to(&ack.encode(), server.addr).unwrap();
    let victim_port = victim.local_addr().unwrap().port();
    // The victim reads as it goes (its receive buffer holds only a few
    // hundred small datagrams), until the answer to the marker below.
    let reader = victim.try_clone().unwrap();
    let marker_uuid = Uuid::new_v4();
    let counted = std::thread::spawn(move || {
        drain_until(&reader, marker_uuid, |m| {
            matches!(m, ServerMessage::Closed { echo: 77 })
        })
    });
    let mut spoofed = 0;
    for k in 0..51u64 {
        ack.ts = 10 + k;
        ack.window = 8192;
        ack.flags = if k % 2 == 0 { FLAG_PROBE } else { 0 };
        let d = ack.encode();
        if !send_from_port(victim_port, server.addr, &d).unwrap() {
            support::skip("RISP_REQUIRE_RAW", "raw sockets need root (CAP_NET_RAW)");
            return;
        }
        spoofed += d.len();
    }
    // Marker: a CLOSED for an unknown session from the victim itself; the
    // server answers it Closed after everything it sent before.
    let mut marker = ClientDatagram::new(State::Closed, marker_uuid, 1);
    marker.ts = 77;
    // Wait (bounded) until the spoofed datagrams were all handled.
    for _ in 0..500 {
        if server.summary().stats.datagrams_received >= 53 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    victim.send_to(&marker.encode(), server.addr).unwrap();
    let received = counted.join().unwrap();
    assert!(
        received <= 3 * spoofed,
        "{received} bytes to the victim for {spoofed} spoofed"
    );
    let s = server.stop().await.stats;
    assert!(
        s.path_challenges > 0,
        "the victim's address was challenged: {s:?}"
    );
    assert!(s.amplification_limited > 0, "{s:?}");
    assert_eq!(s.path_validations, 0);
}

/// Finding 5 over real sockets: 10× `--max-sessions` CONNECTINGs from
/// spoofed source ports (raw socket) that never come back. A real client
/// that arrives afterwards is served (with one Retry round trip), not told
/// "busy". Needs raw sockets (root); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spoofed_connecting_flood_does_not_lock_out_a_real_client() {
    let max_sessions = 32;
    let server = TestServer::start(ServerConfig {
        max_sessions,
        ..ServerConfig::default()
    })
    .await;
    let mut rng = StdRng::seed_from_u64(5);
    let flood = 10 * max_sessions as u64;
    for k in 0..flood {
        let mut m = ClientDatagram::new(State::Connecting, Uuid::from_u128(rng.gen()), 10_000);
        m.ts = k + 1;
        if !send_from_port(rng.gen_range(20_000..60_000), server.addr, &m.encode()).unwrap() {
            support::skip("RISP_REQUIRE_RAW", "raw sockets need root (CAP_NET_RAW)");
            return;
        }
    }
    // The kernel may drop part of the flood (the server's receive buffer):
    // wait (bounded) until the server has handled all that the kernel did
    // not drop (its socket's drop counter in /proc/net/udp).
    let deadline = clock::now() + Duration::from_secs(20);
    loop {
        let arrived = flood - kernel_drops(server.addr);
        let handled = server.summary().stats.datagrams_received;
        if handled >= arrived {
            break;
        }
        assert!(
            clock::now() < deadline,
            "handled {handled} of the {arrived} flood datagrams that arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flooded = server.summary().stats.datagrams_received;
    assert!(
        flooded >= 2 * max_sessions as u64,
        "the flood arrived: {flooded}"
    );
    let (out, got) = transfer(server.client(), 5_000).await;
    assert_eq!(out.result(), Ok(()), "{:?}", out.result());
    assert_eq!(got.len(), 5_000);
    server.check(&out, &got);
    let s = server.stop().await.stats;
    assert_eq!(s.rejected(Reject::Busy), 0, "{s:?}");
    // Allocation stopped at an eighth of the table; the rest got Retry.
    assert_eq!(s.sessions_opened, max_sessions as u64 / 8 + 1, "{s:?}");
    assert!(
        s.rejected(Reject::RetryRequired) >= flooded - max_sessions as u64 / 8,
        "{s:?}"
    );
    // At least: a CONNECTING repeated before its Accept proves it again.
    assert!(s.retry_validated >= 1, "the real client proved its address");
}

/// Retry always on, over real sockets: every client pays one round trip,
/// and transfers verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_always_over_real_sockets_verifies() {
    let server = TestServer::start(ServerConfig {
        retry: RetryPolicy::Always,
        ..ServerConfig::default()
    })
    .await;
    for _ in 0..3 {
        let (out, got) = transfer(server.client(), 2_000).await;
        assert_eq!(out.result(), Ok(()), "{:?}", out.result());
        assert_eq!(got.len(), 2_000);
        server.check(&out, &got);
    }
    let s = server.stop().await.stats;
    // One session each; a CONNECTING repeated before its answer pays (and
    // proves) again, so those two counts are at least one per client.
    assert_eq!(s.sessions_opened, 3, "{s:?}");
    assert!(s.rejected(Reject::RetryRequired) >= 3, "{s:?}");
    assert!(s.retry_validated >= 3, "{s:?}");
}

/// A well-formed CONNECTED for an unknown session from source port 0 would
/// earn an UnknownSession reply, and a send to port 0 fails (EINVAL). The
/// server drops it, counted as `UnusableSource`, and goes on serving: a
/// transfer after it verifies. Needs raw sockets (root); skipped otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datagram_from_source_port_zero_does_not_stop_the_server() {
    let server = TestServer::start(ServerConfig::default()).await;
    let mut msg = ClientDatagram::new(State::Connected, Uuid::new_v4(), 10);
    msg.window = 8;
    msg.token = vec![7u8; 8];
    if !send_from_port_zero(server.addr, &msg.encode()).unwrap() {
        support::skip("RISP_REQUIRE_RAW", "raw sockets need root (CAP_NET_RAW)");
        return;
    }
    // Wait (bounded) until the server has counted it.
    let mut counted = false;
    for _ in 0..500 {
        if server.summary().stats.rejected(Reject::UnusableSource) == 1 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(counted, "{:?}", server.summary().stats);
    let (out, got) = transfer(server.client(), 1000).await;
    assert_eq!(out.result(), Ok(()), "{:?}", out.result());
    assert_eq!(got.len(), 1000);
    server.check(&out, &got);
    let summary = server.stop().await;
    assert_eq!(summary.stats.rejected(Reject::UnusableSource), 1);
    assert_eq!(summary.stats.rejected(Reject::UnknownSession), 0);
    assert_eq!(summary.send_errors, 0, "no reply was attempted");
}

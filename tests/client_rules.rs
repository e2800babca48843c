//! Client rules: what a client does with odd server input and with silence.
//!
//! Each test drives one [`Client`] in virtual time (timers are fired by
//! jumping to `poll_timeout`), feeds it hand-built server datagrams and
//! decodes what it sends back.

mod support;

use std::time::Duration;

use risp_udp::proto::client::{BadRequest, ClientConfig, ClientError, ClientEvent, LostReason};
use risp_udp::proto::recovery::REORDER_SPAN;
use risp_udp::proto::rtt::RttConfig;
use risp_udp::proto::wire::{ErrorCode, ServerMessage, State, DATA_LEN, FLAG_ABORT, FLAG_PROBE};
use support::virtual_time::{ClientHarness, TOKEN};
use support::wire::{encode_server, held, ClientDatagram};
use uuid::Uuid;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn failed(events: &[ClientEvent]) -> Option<&ClientError> {
    events.iter().find_map(|e| match e {
        ClientEvent::Failed(err) => Some(err),
        _ => None,
    })
}

/// Defect 2: an index past the end crashed the original client.
#[test]
fn data_past_the_end_is_counted_invalid_and_ignored() {
    let mut h = ClientHarness::len(5);
    h.connect();
    for index in [5, 6, 1_000_000, u32::MAX] {
        h.data(index, 99);
    }
    assert_eq!(h.client.stats().invalid, 4);
    assert_eq!(h.client.next_index(), 0);
    assert!(h.app_events().is_empty(), "nothing delivered");
    assert!(h.sent().is_empty(), "nothing to acknowledge");
    // Real data still works.
    h.data(0, 10);
    assert_eq!(
        h.app_events()
            .into_iter()
            .filter(|e| matches!(e, ClientEvent::Value { .. }))
            .count(),
        1
    );
    assert_eq!(h.client.next_index(), 1);
    assert!(!h.client.is_finished());
}

#[test]
fn data_beyond_the_reorder_buffer_is_counted_and_dropped() {
    let mut cfg = ClientConfig::new(Uuid::from_bytes([7; 16]), 5_000);
    cfg.max_window = 64;
    let mut h = ClientHarness::new(cfg);
    h.connect();
    // The reorder buffer is REORDER_SPAN, larger than max_window (the cap
    // on cwnd), so that the window can slide on past holes.
    let span = REORDER_SPAN;
    assert!(span > 64);
    h.data(span, 1);
    h.data(4_000, 1);
    assert_eq!(h.client.stats().out_of_window, 2);
    h.data(span - 1, 1); // the last slot of the buffer is fine
    assert_eq!(h.client.stats().out_of_window, 2);
    assert_eq!(h.client.stats().invalid, 0);
}

#[test]
fn duplicates_are_counted_and_delivered_once() {
    let mut h = ClientHarness::len(10);
    h.connect();
    let window = h.client.window().get();
    h.data(0, 10);
    h.data(0, 10);
    h.data(2, 12);
    h.data(2, 12);
    let values: Vec<u32> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Value { index, .. } => Some(index),
            _ => None,
        })
        .collect();
    assert_eq!(values, vec![0]);
    assert_eq!(h.client.stats().duplicates, 2);
    // Each new index grew the window by one (slow start); the duplicates
    // did not.
    assert_eq!(h.client.window().get(), window + 2);
}

/// Defect 1: the original compared its own sum with itself.
#[test]
fn wrong_checksum_from_the_server_is_a_hard_failure() {
    let mut h = ClientHarness::len(3);
    h.connect();
    for (i, v) in [u32::MAX, u32::MAX, 7].into_iter().enumerate() {
        h.data(i as u32, v);
    }
    let closing = h.sent();
    assert_eq!(closing.last().unwrap().state, State::Closing);
    assert_eq!(closing.last().unwrap().ack, 3);
    let sum = 2 * u64::from(u32::MAX) + 7;
    let echo = h.echo;
    h.feed(ServerMessage::Checksum {
        checksum: sum + 1,
        echo,
    });
    let ev = h.events();
    assert_eq!(
        failed(&ev),
        Some(&ClientError::ChecksumMismatch {
            expected: sum + 1,
            actual: sum
        })
    );
    assert!(!ev.iter().any(|e| matches!(e, ClientEvent::Verified { .. })));
    assert!(h.client.is_finished());
    assert!(h.sent().is_empty(), "no CLOSED after a failure");
    assert_eq!(h.client.poll_timeout(), None, "no timers left");
}

#[test]
fn right_checksum_verifies_and_closes() {
    let mut h = ClientHarness::len(3);
    h.connect();
    for (i, v) in [u32::MAX, u32::MAX, 7].into_iter().enumerate() {
        h.data(i as u32, v);
    }
    h.sent();
    let sum = 2 * u64::from(u32::MAX) + 7;
    // A checksum while still CONNECTED would be a lie: this one arrives in
    // CLOSING and is believed.
    let echo = h.echo;
    h.feed(ServerMessage::Checksum {
        checksum: sum,
        echo,
    });
    assert!(h
        .events()
        .contains(&ClientEvent::Verified { checksum: sum }));
    let closed = h.sent();
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].state, closed[0].ack), (State::Closed, 3));
    let echo = h.echo;
    h.feed(ServerMessage::Closed { echo });
    assert_eq!(h.app_events(), vec![ClientEvent::Completed]);
    assert!(h.client.is_finished());
}

#[test]
fn checksum_before_closing_is_not_believed() {
    let mut h = ClientHarness::len(3);
    h.connect();
    h.data(0, 1);
    h.feed(ServerMessage::Checksum {
        checksum: 1,
        echo: 0,
    });
    assert_eq!(h.client.stats().invalid, 1);
    assert!(!h.client.is_finished());
    assert!(failed(&h.events()).is_none());
}

#[test]
fn every_server_error_code_becomes_a_typed_error() {
    let cases = [
        (ErrorCode::UnknownSession, 0, ClientError::SessionExpired),
        (ErrorCode::Busy, 1024, ClientError::ServerBusy),
        (
            ErrorCode::LenTooLarge,
            1_000,
            ClientError::BadRequest(BadRequest::LenTooLarge { max: 1_000 }),
        ),
        (
            ErrorCode::LenMismatch,
            40,
            ClientError::BadRequest(BadRequest::LenMismatch { session: 40 }),
        ),
        (
            ErrorCode::Unauthorized,
            0,
            ClientError::BadRequest(BadRequest::Unauthorized),
        ),
        (
            ErrorCode::AckOutOfRange,
            10,
            ClientError::BadRequest(BadRequest::AckOutOfRange { len: 10 }),
        ),
    ];
    for connected in [false, true] {
        for (code, detail, want) in cases.clone() {
            let mut h = ClientHarness::len(100);
            if connected {
                h.connect();
            } else {
                h.sent();
            }
            let echo = h.echo;
            let old = h.client.uuid();
            h.feed(ServerMessage::Error { code, detail, echo });
            let ev = h.app_events();
            let restarts =
                !connected && matches!(code, ErrorCode::Unauthorized | ErrorCode::UnknownSession);
            if restarts {
                // A handshake the server will not continue starts over under
                // a new UUID; nothing was delivered, so nothing is lost.
                let new = h.client.uuid();
                assert_ne!(new, old);
                assert_eq!(new.get_version_num(), 4);
                assert_eq!(ev, vec![ClientEvent::Restarted { uuid: new }], "{code:?}");
                assert!(!h.client.is_finished());
                let sent = h.sent();
                assert_eq!(sent.len(), 1);
                assert_eq!((sent[0].state, sent[0].ack), (State::Connecting, 0));
                continue;
            }
            assert_eq!(ev, vec![ClientEvent::Failed(want.clone())], "{code:?}");
            assert!(h.client.is_finished());
            assert!(h.sent().is_empty());
        }
    }
}

/// After the client sent CLOSED, "unknown session" means the server already
/// freed it: that is success, not an error.
#[test]
fn unknown_session_after_closed_completes() {
    let mut h = ClientHarness::len(1);
    h.connect();
    h.data(0, 5);
    h.sent();
    let echo = h.echo;
    h.feed(ServerMessage::Checksum { checksum: 5, echo });
    h.sent();
    h.feed(ServerMessage::Error {
        code: ErrorCode::UnknownSession,
        detail: 0,
        echo,
    });
    let ev = h.app_events();
    assert_eq!(
        ev,
        vec![
            ClientEvent::Value {
                index: 0,
                value: 5,
                latency: Duration::ZERO
            },
            ClientEvent::Verified { checksum: 5 },
            ClientEvent::Completed
        ]
    );
}

/// The retry times and copies the client's timer gives. Before any RTT
/// sample (`probe` false): the timer starts at `rto0` and doubles on every
/// expiry up to `max`, one copy each. Probe timeouts (`probe` true): the
/// timer doubles only from the second consecutive expiry on, and every
/// probe goes out twice.
fn expected_retries(
    first_arm: Duration,
    rto0: Duration,
    max: Duration,
    until: Duration,
    probe: bool,
) -> Vec<(Duration, usize)> {
    let mut out = Vec::new();
    let mut at = first_arm + rto0;
    let mut backoff = 0u32;
    while at < until {
        backoff += 1;
        out.push((at, if probe { 2 } else { 1 }));
        let doublings = if probe { backoff - 1 } else { backoff };
        at += (rto0 * (1 << doublings.min(20))).min(max);
    }
    out
}

#[test]
fn silence_before_any_answer_backs_off_then_fails_no_answer() {
    let mut h = ClientHarness::len(10);
    let first = h.sent();
    assert_eq!(first.len(), 1);
    let sent = h.run_silent();
    let rtt = RttConfig::default();
    assert_eq!((rtt.initial_rto, rtt.max_rto), (ms(5), ms(2_000)));
    let want = expected_retries(
        Duration::ZERO,
        ms(5),
        ms(2_000),
        Duration::from_secs(30),
        false,
    );
    // 5, 15, 35, 75, 155, 315, 635, 1275, 2555 ms, then every 2 s up to
    // 28.555 s, one copy each.
    assert_eq!(want.len(), 22);
    assert_eq!(want[3], (ms(75), 1));
    assert_eq!(want[8].0, ms(2_555));
    assert_eq!(want[21].0, ms(28_555));
    let got: Vec<(Duration, usize)> = {
        let mut v: Vec<(Duration, usize)> = Vec::new();
        for s in &sent {
            assert_eq!(s.state, State::Connecting);
            match v.last_mut() {
                Some((at, n)) if *at == s.at => *n += 1,
                _ => v.push((s.at, 1)),
            }
        }
        v
    };
    assert_eq!(got, want);
    assert_eq!(h.client.stats().handshakes, 1 + 22);
    assert_eq!(h.client.stats().timeouts, 22);
    assert_eq!(h.now - h.t0, Duration::from_secs(30));
    let ev = h.app_events();
    assert_eq!(
        ev,
        vec![ClientEvent::Failed(ClientError::NoAnswer(
            Duration::from_secs(30)
        ))]
    );
}

#[test]
fn silence_mid_transfer_probes_with_backoff_then_fails_timeout() {
    let mut h = ClientHarness::len(100);
    h.sent();
    // The Accept arrives 10 ms later: one RTT sample of 10 ms, so
    // SRTT = 10, RTTVAR = 5 and PTO = 10 + max(4*5, 1) = 30 ms.
    h.at(ms(10));
    h.accept(TOKEN);
    assert_eq!(h.client.rtt().pto(), ms(30));
    assert_eq!(h.app_events(), vec![ClientEvent::Connected]);
    let confirm = h.sent();
    assert_eq!(confirm.len(), 1);
    assert_eq!(confirm[0].flags, 0, "the confirming ack is not a probe");
    let sent = h.run_silent();
    for s in &sent {
        assert_eq!(s.state, State::Connected);
        assert_eq!(s.flags, FLAG_PROBE, "timer-driven acks are probes");
        assert_eq!(s.ack, 0);
        assert_eq!(s.token, TOKEN);
    }
    let want = expected_retries(
        ms(10),
        ms(30),
        ms(2_000),
        ms(10) + Duration::from_secs(30),
        true,
    );
    let mut got: Vec<(Duration, usize)> = Vec::new();
    for s in &sent {
        match got.last_mut() {
            Some((at, n)) if *at == s.at => *n += 1,
            _ => got.push((s.at, 1)),
        }
    }
    assert_eq!(got[..6], want[..6], "40, 70, 130, 250, 490, 970 ms");
    assert_eq!(want[1], (ms(70), 2), "no doubling after the first expiry");
    assert_eq!(got, want);
    // Probing went on for the whole idle period.
    assert!(got.last().unwrap().0 > Duration::from_secs(28));
    assert_eq!(
        h.app_events(),
        vec![ClientEvent::Failed(ClientError::Timeout(
            Duration::from_secs(30)
        ))]
    );
    assert_eq!(h.now - h.t0, ms(10) + Duration::from_secs(30));
}

#[test]
fn any_answer_resets_the_backoff() {
    let mut h = ClientHarness::len(100);
    h.connect();
    // Two silent RTOs.
    for _ in 0..2 {
        let t = h.client.poll_timeout().unwrap();
        h.now = t;
        h.client.handle_timeout(t);
        h.sent();
    }
    assert_eq!(h.client.rtt().backoff(), 2);
    // A data datagram echoing the newest timestamp is a fresh RTT sample.
    h.data(0, 1);
    assert_eq!(h.client.rtt().backoff(), 0);
}

#[test]
fn corrupt_datagrams_are_counted_and_ignored() {
    let mut h = ClientHarness::len(10);
    h.connect();
    let mut d = encode_server(
        h.client.uuid(),
        ServerMessage::Data {
            index: 0,
            payload: 5,
            echo: 1,
        },
    );
    d[9] ^= 0x01;
    h.feed_bytes(&d);
    assert_eq!(h.client.stats().corrupt, 1);
    assert_eq!(h.client.next_index(), 0);
    // Garbage that is not even a frame, and a client datagram sent back.
    h.feed_bytes(&[]);
    h.feed_bytes(&[0x52, 0x55, 2]);
    let mut back = ClientDatagram::new(State::Connected, h.client.uuid(), 10);
    back.token = TOKEN.to_vec();
    h.feed_bytes(&back.encode());
    let s = h.client.stats();
    // The client datagram fails the CRC a server datagram would have
    // (keyed by the session): corrupt, as the flipped bit was.
    assert_eq!((s.corrupt, s.invalid), (2, 2));
    assert!(h.app_events().is_empty());
    assert!(h.sent().is_empty());
    assert_eq!(h.client.next_index(), 0);
    assert!(!h.client.is_finished());
    assert_eq!(DATA_LEN, d.len());
}

#[test]
fn a_new_gap_is_acked_at_once_with_a_bitmap_of_the_held_indices() {
    let mut h = ClientHarness::len(100);
    h.connect();
    let cwnd = h.client.window().get();
    assert!(h.client.ack_every() > 2);
    // In order, below ack_every: no ack yet.
    h.data(0, 1);
    assert!(h.sent().is_empty());
    // 1 is missing: a new gap, acked at once, not a probe, naming 2.
    h.data(2, 1);
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].state, State::Connected);
    assert_eq!(ack[0].flags, 0);
    assert_eq!(ack[0].ack, 1);
    assert_eq!(held(1, &ack[0].sack), vec![2], "ranges: 2 held after ack 1");
    // 3 extends what is held without a new gap: it waits for the next ack.
    h.data(3, 1);
    assert!(h.sent().is_empty(), "no ack per out-of-order arrival");
    // 5 opens a new gap (4 missing): acked at once, 2, 3 and 5 held.
    h.data(5, 1);
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].ack, 1);
    assert_eq!(held(1, &ack[0].sack), vec![2, 3, 5]);
    // The window slides with the highest index: cwnd (grown by one per new
    // index in slow start) counts the two holes, not what is held.
    let cwnd = cwnd + 4;
    assert_eq!(h.client.window().get(), cwnd);
    assert_eq!(ack[0].window, 5 + cwnd - 2, "base 5, holes 1 and 4");
    // The hole at 1 fills: 1, 2, 3 delivered; no ack at once, the
    // delayed-ack timer sends it: ack 4, 5 still held.
    h.data(1, 1);
    assert!(h.sent().is_empty(), "a filled hole waits for the ack timer");
    let t = h.client.poll_timeout().unwrap();
    assert!(t - h.now <= ms(5), "max_ack_delay");
    h.now = t;
    h.client.handle_timeout(t);
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].flags, 0);
    assert_eq!(ack[0].ack, 4);
    assert_eq!(held(4, &ack[0].sack), vec![5]);
    assert_eq!(h.client.next_index(), 4);
}

#[test]
fn without_selective_acks_the_gap_ack_is_cumulative_only() {
    let mut cfg = ClientConfig::new(Uuid::from_bytes([7; 16]), 100);
    cfg.sack = false;
    let mut h = ClientHarness::new(cfg);
    h.connect();
    h.data(0, 1);
    h.data(2, 1);
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert_eq!((ack[0].ack, ack[0].sack.clone()), (1, vec![]));
}

/// A server issues a token only in answer to a token-less CONNECTING, which
/// a client holding a token never sends: an Accept with another token is a
/// stray (an earlier owner of the port) or a forgery, and must neither end
/// the transfer nor replace the token.
#[test]
fn an_accept_with_another_token_is_ignored_and_the_session_goes_on() {
    let mut h = ClientHarness::len(10);
    h.connect();
    let invalid = h.client.stats().invalid;
    h.accept([9; 8]);
    assert_eq!(failed(&h.events()), None, "a stray Accept ends nothing");
    assert_eq!(h.client.stats().invalid, invalid + 1);
    for i in 0..10 {
        h.data(i, i * 3);
    }
    let sent = h.run_silent();
    assert!(!sent.is_empty());
    assert!(
        sent.iter().all(|m| m.token.starts_with(&TOKEN)),
        "the first token is kept: {sent:?}"
    );
}

#[test]
fn abort_sends_closed_abort_and_completes_on_the_servers_closed() {
    let mut h = ClientHarness::len(100);
    h.connect();
    h.data(0, 10);
    h.data(1, 11);
    h.app_events();
    h.sent();
    h.client.abort(h.now);
    let out = h.sent();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].state, State::Closed);
    assert_eq!(out[0].flags, FLAG_ABORT);
    assert_eq!(out[0].ack, 2, "the ack says how far the client got");
    assert_eq!(out[0].token, TOKEN);
    assert!(h.client.is_aborted());
    // Values still in flight are not delivered any more.
    h.data(2, 12);
    assert!(h.app_events().is_empty());
    assert!(!h.client.is_finished());
    h.feed(ServerMessage::Closed { echo: out[0].ts });
    assert_eq!(h.app_events(), vec![ClientEvent::Completed]);
    assert!(h.client.is_finished());
}

#[test]
fn abort_is_retried_then_gives_up_and_needs_a_token() {
    let mut h = ClientHarness::len(100);
    h.connect();
    h.client.abort(h.now);
    let mut all = h.sent();
    all.extend(h.run_silent());
    // The first send, then each retry (two copies once timeouts persist).
    let retries = ClientConfig::new(Uuid::nil(), 1).close_retries as usize;
    assert!(
        (1 + retries..=1 + 2 * retries).contains(&all.len()),
        "{all:?}"
    );
    assert!(all
        .iter()
        .all(|s| s.state == State::Closed && s.flags == FLAG_ABORT));
    assert_eq!(h.app_events(), vec![ClientEvent::Completed]);
    // Before the server issued a token there is no session to close.
    let mut h = ClientHarness::len(100);
    assert_eq!(h.sent().len(), 1);
    h.client.abort(h.now);
    assert!(h.sent().is_empty());
    assert_eq!(h.app_events(), vec![ClientEvent::Completed]);
    assert!(h.client.is_finished());
}

/// The soak's checksum mismatches: a client killed mid-transfer leaves its
/// port, the server keeps sending that session's data there until the
/// client resumes from its new port, and a new client that the OS gave the
/// same port received it as its own (nothing in a data datagram named its
/// session). Server datagrams are now keyed by the session's UUID: the new
/// client counts the stray data as corrupt and verifies its own sequence.
#[test]
fn a_port_another_client_just_left_delivers_none_of_its_data() {
    use risp_udp::proto::client::Client;
    use risp_udp::proto::server::{Server, ServerConfig};
    use std::net::SocketAddr;

    let port: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut server = Server::new(ServerConfig::default());
    let mut now = risp_udp::clock::now();
    let mut buf = vec![0u8; risp_udp::proto::wire::MAX_DATAGRAM_LEN];
    let mut sbuf = Vec::new();
    // Everything the server sends now, as (destination, datagram).
    let sent = |server: &mut Server, now, sbuf: &mut Vec<u8>| {
        let mut out = Vec::new();
        while let Some(t) = server.poll_transmit(now, 64, sbuf) {
            for seg in sbuf[..t.size].chunks(t.segment_size) {
                out.push((t.destination, seg.to_vec()));
            }
        }
        out
    };
    // The first client, 100,000 values, on `port`: handshake and one ack,
    // after which the server has a window of its data on the way there.
    let mut old = Client::new(ClientConfig::new(Uuid::from_u128(1), 100_000), now);
    for _ in 0..3 {
        while let Some(n) = old.poll_transmit(now, &mut buf) {
            server.handle(now, port, &buf[..n]);
        }
        for (_, d) in sent(&mut server, now, &mut sbuf) {
            old.handle(now, &d);
        }
        now += ms(1);
    }
    assert!(old.next_index() > 0, "the first client is receiving");
    while let Some(n) = old.poll_transmit(now, &mut buf) {
        server.handle(now, port, &buf[..n]);
    }
    // The first client is killed; a new client (the same length, so its
    // indices overlap) gets the same port before the first one resumes.
    let mut new = Client::new(ClientConfig::new(Uuid::from_u128(2), 100_000), now);
    let mut stray = 0;
    let mut values = Vec::new();
    let mut verified = false;
    let mut own = None;
    for _ in 0..10_000 {
        while let Some(n) = new.poll_transmit(now, &mut buf) {
            server.handle(now, port, &buf[..n]);
        }
        for (to, d) in sent(&mut server, now, &mut sbuf) {
            assert_eq!(to, port);
            if ServerMessage::decode(&d, Uuid::from_u128(1)).is_ok() {
                stray += 1;
            }
            new.handle(now, &d);
        }
        if own.is_none() {
            own = server.sequence(&Uuid::from_u128(2));
        }
        while let Some(ev) = new.poll_event() {
            match ev {
                ClientEvent::Value { index, value, .. } => values.push((index, value)),
                ClientEvent::Verified { .. } => verified = true,
                ClientEvent::Failed(e) => panic!("the new client failed: {e:?}"),
                _ => {}
            }
        }
        if new.is_finished() {
            break;
        }
        now += ms(1);
        if new.poll_timeout().is_some_and(|t| t <= now) {
            new.handle_timeout(now);
        }
        if server.poll_timeout().is_some_and(|t| t <= now) {
            server.handle_timeout(now);
        }
    }
    assert!(stray > 0, "the old session's data reached the port");
    assert!(new.stats().corrupt >= stray, "{:?}", new.stats());
    let own = own.expect("the new session's sequence");
    assert_eq!(values.len(), 100_000);
    for (index, value) in values {
        assert_eq!(own.get(index), Some(value), "index {index}");
    }
    assert!(verified, "{:?}", new.stats());
}

/// With two servers, an UnknownSession for a session the client holds asks
/// to move instead of failing; the client sends nothing until the driver
/// moves it, then resumes with CONNECTING, its token and the next index it
/// needs, on a fresh RTT estimate.
#[test]
fn with_two_servers_an_unknown_session_asks_to_move_and_resumes_by_token() {
    let mut cfg = ClientConfig::new(Uuid::from_bytes([7; 16]), 100);
    cfg.servers = 2;
    let mut h = ClientHarness::new(cfg);
    h.connect();
    for i in 0..10 {
        h.data(i, i * 3);
    }
    h.sent();
    assert!(h.client.rtt().srtt().is_some());
    let echo = h.echo;
    h.feed(ServerMessage::Error {
        code: ErrorCode::UnknownSession,
        detail: 0,
        echo,
    });
    let ev = h.app_events();
    assert_eq!(failed(&ev), None, "{ev:?}");
    assert!(ev.contains(&ClientEvent::ServerLost {
        reason: LostReason::UnknownSession
    }));
    assert_eq!(h.client.wants_failover(), Some(LostReason::UnknownSession));
    assert!(
        h.client.poll_timeout() > Some(h.now + ms(1_000)),
        "only idle"
    );
    assert!(h.sent().is_empty(), "nothing until the driver moves");
    h.client.failover(h.now);
    assert_eq!(h.client.server_index(), 1);
    assert_eq!(h.client.wants_failover(), None);
    assert_eq!(
        h.client.rtt().srtt(),
        None,
        "a new path: the RTT starts over"
    );
    let hello = h.sent();
    assert_eq!(hello.len(), 1);
    assert_eq!(hello[0].state, State::Connecting);
    assert_eq!(hello[0].token, TOKEN);
    assert_eq!(hello[0].ack, 10);
    assert_eq!(h.client.stats().failovers, 1);
    // The second server refuses too: every one has, so the transfer fails.
    let echo = h.echo;
    h.feed(ServerMessage::Error {
        code: ErrorCode::UnknownSession,
        detail: 0,
        echo,
    });
    assert_eq!(failed(&h.app_events()), Some(&ClientError::SessionExpired));
}

/// Each ack says how many changes to the held ranges it is the first to
/// carry (new holes, holes filled past the next needed index): what the
/// driver needs to know which acks of a batch it must not drop.
#[test]
fn each_ack_counts_the_range_changes_it_is_first_to_carry() {
    let mut h = ClientHarness::len(100);
    h.connect();
    h.sent();
    let news_after = |h: &mut ClientHarness| {
        let acks = h.sent();
        assert!(!acks.is_empty(), "an ack was due");
        h.client.last_ack_news()
    };
    // In order, then a new hole (4..=5): an ack at once, one change.
    for i in 0..4 {
        h.data(i, i);
    }
    h.data(6, 6);
    assert_eq!(news_after(&mut h), 1);
    // Another hole (7..=8): one change.
    h.data(9, 9);
    assert_eq!(news_after(&mut h), 1);
    // Two holes filled past the next needed index (7, 5: no ack of their
    // own) and a new hole (10): the next ack carries all three.
    h.data(7, 7);
    h.data(5, 5);
    h.data(11, 11);
    assert_eq!(news_after(&mut h), 3);
}

/// Inside a received batch a new gap's ack waits for the end of the batch
/// (or for `ACK_NEWS_STRIDE` changes), and then carries every gap; outside
/// a batch each new gap is acked at once.
#[test]
fn a_batch_acks_its_gaps_at_its_end_or_every_stride_of_news() {
    use risp_udp::proto::recovery::ACK_NEWS_STRIDE;
    let mut h = ClientHarness::len(10_000);
    h.connect();
    h.sent();
    h.client.begin_batch();
    // Three new gaps (1, 3, 5 missing): no ack yet.
    for i in [0, 2, 4, 6] {
        h.data(i, i);
    }
    assert!(h.sent().is_empty(), "gap acks wait for the batch's end");
    h.client.end_batch();
    let acks = h.sent();
    assert_eq!(acks.len(), 1, "one ack at the end of the batch");
    assert_eq!(held(1, &acks[0].sack), vec![2, 4, 6]);
    // A batch with more news than a stride: an ack goes once the stride's
    // news gathered, before the batch ends.
    h.client.begin_batch();
    let mut index = 8;
    let mut written = 0;
    for _ in 0..ACK_NEWS_STRIDE + 2 {
        h.data(index, index);
        index += 2;
        written += h.sent().len();
    }
    assert!(written >= 1, "the stride's news was acked within the batch");
    h.client.end_batch();
    assert_eq!(h.sent().len(), 1, "the rest at the end");
    // Outside a batch, each new gap at once, as before.
    h.data(index, index);
    assert_eq!(h.sent().len(), 1);
}

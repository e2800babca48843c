//! The endpoints over real loopback sockets: what a client sees, and the
//! bounds that protect the server from clients.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::clock;
use crate::net::heartbeat::Heartbeat;

/// Longest a test waits for an answer it expects: a guard against a hang,
/// never what the test measures.
const GUARD: Duration = Duration::from_secs(10);

/// Endpoints on a loopback port for a live summary at `sessions` of a
/// limit of 4.
async fn start(limits: Limits, sessions: usize) -> OpsHandle {
    let now = clock::now();
    let summary = ServerSummary {
        heartbeat: Heartbeat::new(now),
        sessions,
        ..ServerSummary::default()
    };
    summary.heartbeat.beat(now);
    let state = OpsState::new(Arc::new(Mutex::new(summary)), 4);
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    OpsServer::bind_with(addr, state, limits)
        .await
        .expect("bind on loopback")
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").into_bytes()
}

/// Everything the server writes on `conn` until it closes it.
async fn read_all(conn: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::time::timeout(GUARD, conn.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server never closed the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `request` on a new connection; the whole answer.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(request).await.expect("send the request");
    read_all(&mut conn).await
}

/// The status code of an answer's status line.
fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"))
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[tokio::test]
async fn each_path_is_answered_once_and_the_connection_closed() {
    let ops = start(Limits::default(), 1).await;
    let addr = ops.local_addr();
    let healthz = exchange(addr, &get("/healthz")).await;
    assert_eq!((status(&healthz), body(&healthz)), (200, "ok\n"));
    let readyz = exchange(addr, &get("/readyz")).await;
    assert_eq!((status(&readyz), body(&readyz)), (200, "ready\n"));
    let root = exchange(addr, &get("/")).await;
    let j: serde_json::Value = serde_json::from_str(body(&root)).expect("JSON at /");
    assert_eq!(
        (status(&root), &j["sessions"]),
        (200, &serde_json::json!(1))
    );
    assert_eq!(status(&exchange(addr, &get("/nope")).await), 404);
    let post = exchange(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&post), 405);
    assert!(
        post.to_ascii_lowercase().contains("\r\nallow: get\r\n"),
        "{post}"
    );

    let metrics = exchange(addr, &get("/metrics")).await;
    assert_eq!(status(&metrics), 200);
    assert!(
        metrics.contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{metrics}"
    );
    let lines = body(&metrics).lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the page parses");
    let names: BTreeSet<_> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for name in [
        "risp_sessions",
        "risp_sessions_limit",
        "risp_datagrams_rejected_total",
        "risp_accepted_total",
        "risp_rtt_seconds",
        "risp_loop_last_turn_age_seconds",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
    ops.shutdown().await;
}

#[tokio::test]
async fn requests_hyper_cannot_read_are_refused_400_and_oversized_heads_431() {
    let ops = start(Limits::default(), 0).await;
    let addr = ops.local_addr();
    for garbage in [
        &b"GET / FTP/1\r\n\r\n"[..],
        b"GET / HTTP/1.1 x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
    ] {
        let answer = exchange(addr, garbage).await;
        assert_eq!(status(&answer), 400, "{garbage:?}: {answer:?}");
    }
    let padded = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(1100)
    );
    assert_eq!(status(&exchange(addr, padded.as_bytes()).await), 431);
    // A head just within the limit is served.
    let within = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(900)
    );
    assert_eq!(status(&exchange(addr, within.as_bytes()).await), 200);
    ops.shutdown().await;
}

/// With two connections held open (silent), a third waits in the listen
/// backlog: it is not answered while they are held, and is as soon as one
/// goes.
#[tokio::test]
async fn past_the_connection_limit_a_client_waits_until_one_ends() {
    let limits = Limits {
        max_connections: 2,
        io_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let ops = start(limits, 0).await;
    let addr = ops.local_addr();
    let first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    let mut third = TcpStream::connect(addr).await.expect("connect");
    third.write_all(&get("/healthz")).await.expect("send");
    // Not a synchronisation: the limit holds for as long as the two are
    // held, so no wait is long enough for an answer to come.
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
    assert!(early.is_err(), "answered past the limit: {early:?}");
    drop(first);
    assert_eq!(status(&read_all(&mut third).await), 200);
    // The second one, held all along, is served when it asks.
    second.write_all(&get("/readyz")).await.expect("send");
    assert_eq!(status(&read_all(&mut second).await), 200);
    ops.shutdown().await;
}

/// A client that starts a request and never finishes it is cut off after
/// the I/O timeout, without an answer, and its place goes to the next.
#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_cut_off() {
    let limits = Limits {
        max_connections: 1,
        io_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let ops = start(limits, 0).await;
    let addr = ops.local_addr();
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("send half a request");
    assert_eq!(read_all(&mut slow).await, "", "no answer to half a request");
    // A client that connects and says nothing is cut off the same way.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(read_all(&mut silent).await, "");
    let next = exchange(addr, &get("/healthz")).await;
    assert_eq!(status(&next), 200, "{next:?}");
    ops.shutdown().await;
}

/// Shutdown ends the connections in flight and closes the port.
#[tokio::test]
async fn shutdown_ends_connections_and_closes_the_port() {
    let limits = Limits {
        io_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let ops = start(limits, 0).await;
    let addr = ops.local_addr();
    let mut held = TcpStream::connect(addr).await.expect("connect");
    // Served once (so the held one was accepted before it, in order).
    assert_eq!(status(&exchange(addr, &get("/healthz")).await), 200);
    ops.shutdown().await;
    assert_eq!(read_all(&mut held).await, "", "ended without an answer");
    let again = TcpStream::connect(addr).await;
    assert!(again.is_err(), "the port is still open: {again:?}");
}

/// Absurd limits are clamped rather than panicking.
#[tokio::test]
async fn absurd_limits_are_served_within_bounds() {
    let limits = Limits {
        max_connections: 0,
        io_timeout: Duration::MAX,
        max_request_head: usize::MAX,
    };
    assert_eq!(exchange_deadline(&limits), MAX_IO_TIMEOUT * 2);
    let ops = start(limits, 0).await;
    let answer = exchange(ops.local_addr(), &get("/healthz")).await;
    assert_eq!(status(&answer), 200);
    ops.shutdown().await;
}

//! Sessions shared beyond one process: `risp-udp server` instances and
//! workers sharing a session store (a real `redis-server`, or the
//! in-process store of `--workers`), over loopback.
//!
//! Each test starts its own `redis-server` on a free port (see
//! `support::redis`) and returns early with a message where the binary is
//! missing (CI installs it and sets `RISP_REQUIRE_REDIS=1`, so it never
//! skips there). Readiness is always a line, a reply or a status polled
//! with a deadline, never a sleep.

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use risp_udp::clock;
use risp_udp::proto::wire::{ErrorCode, ServerMessage, State, FLAG_PROBE, MAX_DATAGRAM_LEN};
use support::cli::{http, ServerProcess, BIN};
use support::redis::{free_port, RedisServer};
use support::wire::ClientDatagram;
use uuid::Uuid;

/// A server sharing `store`, on a port of its own, with a health port.
fn server(store: &str, extra: &[&str]) -> (ServerProcess, u16) {
    let health = free_port();
    let mut args = vec!["--session-store", store, "--health-port"];
    let h = health.to_string();
    args.push(&h);
    args.extend_from_slice(extra);
    (ServerProcess::start(&args), health)
}

/// Polls `what` every 50 ms until it holds, for at most `secs` seconds.
fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = clock::now() + Duration::from_secs(secs);
    while !check() {
        assert!(clock::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of a metric line `name` (with its labels) on `/metrics`.
fn metric(health: u16, name: &str) -> u64 {
    let (_, body) = http(health, "GET", "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A client over a raw socket: it opens a session on one server and
/// carries it on at another by UUID and token.
struct RawClient {
    sock: UdpSocket,
    uuid: Uuid,
    len: u32,
    token: Vec<u8>,
    ts: u64,
    values: BTreeMap<u32, u32>,
    checksum: Option<u64>,
}

impl RawClient {
    fn new(len: u32) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Self {
            sock,
            uuid: Uuid::new_v4(),
            len,
            token: Vec::new(),
            ts: 0,
            values: BTreeMap::new(),
            checksum: None,
        }
    }

    fn ack(&self) -> u32 {
        (0..self.len)
            .find(|i| !self.values.contains_key(i))
            .unwrap_or(self.len)
    }

    /// Sends one message to `to` and reads replies until the one that
    /// answers it (see [`answers`]) arrives, within 10 s, then takes what
    /// else is already queued; returns the errors seen. Replies a later
    /// exchange reads are still taken (values by index, so twice is once).
    fn exchange(&mut self, to: SocketAddr, state: State) -> Vec<ErrorCode> {
        self.ts += 1;
        let mut m = ClientDatagram::new(state, self.uuid, self.len);
        m.window = 64;
        m.ack = self.ack();
        m.ts = self.ts;
        m.token = self.token.clone();
        if state == State::Connected {
            m.flags = FLAG_PROBE;
        }
        self.sock.send_to(&m.encode(), to).unwrap();
        let mut errors = Vec::new();
        let mut buf = [0u8; MAX_DATAGRAM_LEN];
        let deadline = clock::now() + Duration::from_secs(10);
        let mut answered = false;
        loop {
            let wait = deadline.saturating_duration_since(clock::now());
            if answered {
                self.sock.set_nonblocking(true).unwrap();
            } else {
                assert!(!wait.is_zero(), "no answer to {state:?} from {to} in 10 s");
                self.sock.set_nonblocking(false).unwrap();
                self.sock.set_read_timeout(Some(wait)).unwrap();
            }
            let n = match self.sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(_) if answered => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => panic!("recv: {e}"),
            };
            let Ok(msg) = ServerMessage::decode(&buf[..n], self.uuid) else {
                continue;
            };
            answered |= answers(state, &msg);
            match msg {
                ServerMessage::Accept { token, .. } => self.token = token.to_vec(),
                ServerMessage::Data { index, payload, .. } => {
                    self.values.insert(index, payload);
                }
                ServerMessage::Challenge { challenge, .. } => {
                    self.token.truncate(8);
                    self.token.extend_from_slice(&challenge);
                }
                ServerMessage::Checksum { checksum, .. } => self.checksum = Some(checksum),
                ServerMessage::Error { code, .. } => errors.push(code),
                _ => {}
            }
        }
        self.sock.set_nonblocking(false).unwrap();
        errors
    }

    /// Acks on `to` until it holds `until` values (within 20 s).
    fn fetch(&mut self, to: SocketAddr, until: u32) {
        let deadline = clock::now() + Duration::from_secs(20);
        while self.ack() < until {
            assert!(
                clock::now() < deadline,
                "stuck at {} of {until}",
                self.ack()
            );
            let errors = self.exchange(to, State::Connected);
            assert!(errors.is_empty(), "{errors:?}");
        }
    }

    /// The sum of every value held.
    fn sum(&self) -> u64 {
        self.values.values().map(|&v| u64::from(v)).sum()
    }
}

#[test]
fn a_session_opened_on_one_instance_is_resumed_on_another_by_uuid_and_token() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _) = server(&redis.url(), &[]);
    let (b, b_health) = server(&redis.url(), &[]);
    let mut c = RawClient::new(500);
    assert!(c.exchange(a.addr, State::Connecting).is_empty());
    c.fetch(a.addr, 200);
    // The record is in Redis (written, in the background, on the first
    // token-bearing ack), beside the shared secret.
    eventually(5, "the record and the shared secret stored", || {
        redis.dbsize() == 2
    });
    // B never saw the client: it finds the session in Redis.
    c.fetch(b.addr, 500);
    assert!(c.exchange(b.addr, State::Closing).is_empty());
    assert_eq!(c.checksum, Some(c.sum()), "verified on B");
    assert!(c.exchange(b.addr, State::Closed).is_empty());
    eventually(5, "the session restored on B", || {
        metric(b_health, "risp_sessions_restored_total") == 1
    });
    // Closing removed the record; only the secret is left.
    eventually(5, "the record removed", || redis.dbsize() == 1);
    // A token that is not the session's is refused by B.
    let mut thief = RawClient::new(500);
    thief.uuid = c.uuid;
    thief.token = vec![0; 8];
    let mut d = RawClient::new(300);
    assert!(d.exchange(a.addr, State::Connecting).is_empty());
    // Confirmed (its first ack carries the token): the record is written.
    d.fetch(a.addr, 100);
    eventually(5, "d's record stored", || redis.dbsize() == 2);
    thief.uuid = d.uuid;
    thief.len = 300;
    let errors = thief.exchange(b.addr, State::Connecting);
    assert_eq!(errors, vec![ErrorCode::Unauthorized]);
}

/// Whether `msg` answers a message in `state`: the server's reply to it
/// (an error answers anything).
fn answers(state: State, msg: &ServerMessage) -> bool {
    match msg {
        ServerMessage::Error { .. } => true,
        ServerMessage::Accept { .. } | ServerMessage::Retry { .. } => state == State::Connecting,
        ServerMessage::Data { .. } | ServerMessage::Challenge { .. } => state == State::Connected,
        ServerMessage::Checksum { .. } => state == State::Closing || state == State::Connected,
        ServerMessage::Closed { .. } => state == State::Closed,
    }
}

/// A `risp-udp client` process.
fn client(server: SocketAddr, args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("client")
        .args(args)
        .args(["--server", &server.to_string(), "--no-progress"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn risp-udp client")
}

/// Waits for a client process, for at most 60 s (then kills it and
/// fails); returns its exit code and stderr.
fn finish(c: Child) -> (Option<i32>, String) {
    let out = support::cli::wait_bounded(c, Duration::from_secs(60));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_client_resumes_after_its_server_is_killed_and_restarted_on_the_same_port() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let port = free_udp_port();
    let p = port.to_string();
    let paced = ["--port", &p, "--server-ticker-ms", "1"];
    let (mut first, health) = server(&redis.url(), &paced);
    let addr = first.addr;
    let c = client(addr, &["3000", "--json"]);
    // Mid-transfer: the session's record is in Redis.
    eventually(10, "the session stored", || {
        metric(health, "risp_store_writes_total") >= 1
    });
    let _ = first.child.kill(); // SIGKILL
    let _ = first.child.wait();
    let (_second, health2) = server(&redis.url(), &paced);
    let (code, stderr) = finish(c);
    assert_eq!(code, Some(0), "{stderr}");
    eventually(5, "the session restored", || {
        metric(health2, "risp_sessions_restored_total") >= 1
    });
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

#[test]
fn workers_share_sessions_when_the_killswitch_moves_clients_between_them() {
    let health = free_port();
    let h = health.to_string();
    let server = ServerProcess::start(&["--workers", "2", "--health-port", &h]);
    // Four at once. A killswitch that fires before a client holds its
    // token makes it repeat its token-less CONNECTING from a new port; on
    // the other worker that opens a second session of the UUID, and the
    // handshake left on the first worker is replaced from the store when
    // the client comes back there with the other token.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            client(
                server.addr,
                &["300000", "--client-killswitch-ms", "20", "--json"],
            )
        })
        .collect();
    for c in clients {
        let (code, stderr) = finish(c);
        assert_eq!(code, Some(0), "{stderr}");
    }
    // The health endpoint's figures are at most a few publish periods old.
    eventually(5, "a session found across workers", || {
        metric(health, "risp_sessions_restored_total")
            + metric(health, "risp_sessions_fast_forwarded_total")
            > 0
    });
}

#[test]
fn while_redis_is_down_held_sessions_continue_and_new_ones_are_refused() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (s, health) = server(&redis.url(), &["--server-ticker-ms", "1"]);
    let long = client(s.addr, &["4000", "--json"]);
    eventually(10, "the session stored", || {
        metric(health, "risp_store_writes_total") >= 1
    });
    redis.stop();
    eventually(10, "/readyz 503", || {
        http(health, "GET", "/readyz").0 == 503
    });
    let (code, stderr) = finish(client(s.addr, &["10"]));
    assert_eq!(code, Some(6), "refused busy: {stderr}");
    eventually(5, "the refusal counted", || {
        metric(
            health,
            "risp_datagrams_rejected_total{reason=\"store_unavailable\"}",
        ) >= 1
    });
    assert_eq!(metric(health, "risp_store_up"), 0);
    let (code, stderr) = finish(long);
    assert_eq!(code, Some(0), "the held session finished: {stderr}");
    redis.restart();
    eventually(15, "/readyz 200", || {
        http(health, "GET", "/readyz").0 == 200
    });
    let (code, stderr) = finish(client(s.addr, &["100"]));
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_session_is_unknown_everywhere_after_its_lifetime() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let life = ["--session-lifetime-ms", "1000"];
    let (a, a_health) = server(&redis.url(), &life);
    let (b, _) = server(&redis.url(), &life);
    let mut c = RawClient::new(500);
    assert!(c.exchange(a.addr, State::Connecting).is_empty());
    c.fetch(a.addr, 100);
    eventually(10, "expired on A", || {
        metric(a_health, "risp_sessions_expired_total") >= 1
    });
    eventually(10, "expired in Redis", || redis.dbsize() == 1);
    for s in [a.addr, b.addr] {
        let errors = c.exchange(s, State::Connected);
        assert_eq!(errors, vec![ErrorCode::UnknownSession], "{s}");
    }
}

#[test]
fn an_unreachable_store_at_start_is_a_clear_error_and_exit_9() {
    let port = free_port().to_string();
    let url = format!("redis://127.0.0.1:{port}/0");
    let out = support::cli::run(&[
        "server",
        "--port",
        "0",
        "--health-port",
        "0",
        "--session-store",
        &url,
    ]);
    assert_eq!(out.code, Some(9), "{out:?}");
    assert!(
        out.stderr.contains("cannot reach the session store"),
        "{}",
        out.stderr
    );
}

/// Issue 13's first scenario end to end: two instances share Redis, a
/// `risp-udp client --server A,B` with 5% loss each way streams from A, A is
/// killed with SIGKILL mid-transfer, and the client finishes on B from the
/// index it holds: verified, with the failover counted in its report and
/// the session restored from the store on B.
#[test]
fn a_client_fails_over_to_the_second_instance_when_the_first_is_killed() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let paced = ["--server-ticker-ms", "1"];
    let (mut a, health_a) = server(&redis.url(), &paced);
    let (b, health_b) = server(&redis.url(), &paced);
    let list = format!("{},{}", a.addr, b.addr);
    let c = Command::new(BIN)
        .args([
            "client",
            "3000",
            "--json",
            "--no-progress",
            "--loss",
            "0.05",
        ])
        .args(["--netem-seed", "5", "--server", &list])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn risp-udp client");
    // Mid-transfer on A: the session's record is in Redis.
    eventually(10, "the session stored by A", || {
        metric(health_a, "risp_store_writes_total") >= 1
    });
    let _ = a.child.kill(); // SIGKILL
    let _ = a.child.wait();
    let out = support::cli::wait_bounded(c, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json");
    assert_eq!(j["verified"], serde_json::Value::Bool(true), "{j}");
    assert_eq!(j["delivered"].as_u64(), Some(3000), "{j}");
    assert!(j["failovers"].as_u64().is_some_and(|n| n >= 1), "{j}");
    assert!(j["shim_dropped"].as_u64().is_some_and(|n| n > 0), "{j}");
    assert!(metric(health_b, "risp_sessions_restored_total") >= 1);
}

//! The `risp-udp` binary end to end over loopback: a real `risp-udp server`
//! process, `risp-udp client` processes against it, and what they print and
//! exit with.
//!
//! Servers listen on port 0 (`--port 0 --bind 127.0.0.1 --health-port 0`)
//! and the test reads the real port from the "listening on udp" line on
//! stderr; readiness is that line, never a sleep. Every spawned process is
//! killed by a guard when the test ends, pass or fail.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::thread;
use std::time::Duration;

use risp_udp::cli::exit::Exit;
use risp_udp::clock;
use risp_udp::proto::client::ClientError;
use risp_udp::proto::wire::State;
use risp_udp::Client;
use serde_json::Value;
use support::cli::{
    check_values_text, http, reported_uuid, run, run_client_checked,
    run_closing_stdout_after_one_line, run_with_env, Output, ServerProcess as Server, BIN,
};
use support::expected::SessionSeeds;
use support::loopback::transfer;
use support::wire::{reseal, ClientDatagram};
use uuid::Uuid;

fn json(out: &Output) -> Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}"))
}

fn u64_field(j: &Value, name: &str) -> u64 {
    j[name]
        .as_u64()
        .unwrap_or_else(|| panic!("`{name}` is not an unsigned integer in {j}"))
}

/// Opens a session of `len` values on `server`, takes `take` values and
/// walks away, leaving the session open on the server (until its lifetime
/// ends). The values it took are the session's first ones.
fn stall_a_session(server: &Server, len: u32, take: u32) -> u32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = Client::connect([server.addr]).stop_after(take);
    let (outcome, got) = rt.block_on(transfer(client, len));
    assert_eq!(
        outcome.result(),
        Ok(()),
        "a stopped client is not a failed one"
    );
    assert!(outcome.checksum.is_none(), "it stopped before the end");
    assert!(outcome.delivered >= take && outcome.delivered < len);
    let expected = server.expected(outcome.uuid, len);
    if let Err(e) = expected.check_indexed_prefix(&got) {
        panic!("stalled session {}: {e}", outcome.uuid);
    }
    outcome.delivered
}

/// `risp-udp client 50 --loss 0.1 --json --output FILE`: verified, the
/// JSON agrees with the values written, and each value is the session's
/// (from the seed in the server's "session opened" line).
#[test]
fn client_json_and_output_agree_with_what_was_transferred() {
    let server = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.txt");
    let out = run(&[
        "client",
        "50",
        "--loss",
        "0.1",
        "--netem-seed",
        "7",
        "--json",
        "--server",
        &server.server_arg(),
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    // Far below the 30 s idle timeout a stuck client would wait out: over
    // 15 s needs ~18 expiries in a row of one datagram's timer (5 ms
    // doubling to the 2 s cap), each lost with p <= 0.19 at 10 % each way:
    // 0.19^18 < 1e-12 for each of the ~60 datagrams.
    assert!(
        out.elapsed < Duration::from_secs(15),
        "50 values took {:?}",
        out.elapsed
    );
    let j = json(&out);
    assert_eq!(u64_field(&j, "len"), 50);
    assert_eq!(u64_field(&j, "delivered"), 50);
    assert_eq!(j["verified"], Value::Bool(true));
    assert_eq!(u64_field(&j, "exit_code"), 0);
    assert!(j["error"].is_null(), "{j}");
    assert!(u64_field(&j, "datagrams_received") >= 50, "{j}");
    assert!(u64_field(&j, "datagrams_sent") >= 2, "{j}");
    assert!(j["uuid"].as_str().unwrap().parse::<Uuid>().is_ok(), "{j}");
    assert!(j["elapsed_ms"].as_f64().unwrap() > 0.0, "{j}");
    for p in ["p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(j["rtt"][p].is_u64(), "rtt.{p} in {j}");
    }
    assert!(u64_field(&j["rtt"], "count") > 0, "{j}");
    // 10% loss each way, seeded: the shim dropped something, and the
    // client asked for it again.
    assert!(u64_field(&j, "shim_dropped") > 0, "{j}");
    assert!(u64_field(&j, "retransmit_requests") > 0, "{j}");

    // iperf3-like start metadata.
    let start = &j["start"];
    assert_eq!(start["server"], Value::String(server.server_arg()), "{j}");
    assert_eq!(
        start["version"].as_str(),
        Some(risp_udp::cli::VERSION),
        "{j}"
    );
    assert_eq!(
        u64_field(start, "protocol_version"),
        u64::from(risp_udp::proto::wire::VERSION),
        "{j}"
    );
    assert!(u64_field(start, "time_unix_s") > 1_600_000_000, "{j}");
    assert_eq!(start["flags"]["loss"].as_f64(), Some(0.1), "{j}");
    assert_eq!(u64_field(&start["flags"], "netem_seed"), 7, "{j}");

    let text = std::fs::read_to_string(&file).unwrap();
    let values: Vec<u64> = text
        .lines()
        .map(|l| l.parse().unwrap_or_else(|_| panic!("not a value: {l:?}")))
        .collect();
    assert_eq!(values.len(), 50, "{text}");
    assert_eq!(
        values.iter().sum::<u64>(),
        u64_field(&j, "checksum"),
        "the checksum is the sum of the values"
    );
    let uuid: Uuid = j["uuid"].as_str().unwrap().parse().unwrap();
    let expected = server.expected(uuid, 50);
    check_values_text(&expected, &text, true).unwrap_or_else(|e| panic!("{e}: {text}"));
    // The check can fail where the sum cannot: two lines swapped, one
    // value changed, one missing.
    let mut lines: Vec<&str> = text.lines().collect();
    assert_ne!(lines[0], lines[1], "two different values to swap");
    lines.swap(0, 1);
    let swapped = lines.join("\n");
    assert!(check_values_text(&expected, &swapped, true).is_err());
    lines.swap(0, 1);
    let changed = format!("{}\n{}", expected.value(0) ^ 1, lines[1..].join("\n"));
    assert!(check_values_text(&expected, &changed, true).is_err());
    assert!(check_values_text(&expected, &lines[..49].join("\n"), true).is_err());
}

/// `--print` writes exactly LEN values to stdout and the report to stderr.
#[test]
fn client_print_writes_the_values_to_stdout_and_the_report_to_stderr() {
    let server = Server::start(&[]);
    let out = run(&["client", "300", "--print", "--server", &server.server_arg()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let values: Vec<u64> = out.stdout.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(values.len(), 300);
    let expected = server.expected(reported_uuid(&out), 300);
    check_values_text(&expected, &out.stdout, true).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.stderr.contains("risp-udp client: verified"), "{out:?}");
    let sum = values.iter().sum::<u64>().to_string();
    assert!(
        out.stderr.contains(&format!("checksum {sum}")),
        "report names the checksum {sum}: {}",
        out.stderr
    );
}

/// A server that never answers: exit 4 once the idle timeout passes, and
/// not much later; the message rounds the duration.
#[test]
fn no_answer_exits_4_within_the_idle_timeout() {
    // Bound and silent: datagrams are queued and never answered.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let out = run(&[
        "client",
        "100",
        "--server",
        &addr,
        "--idle-timeout-ms",
        "500",
    ]);
    assert_eq!(out.code, Some(4), "{addr}: {out:?}");
    assert!(
        out.elapsed >= Duration::from_millis(500),
        "gave up before the idle timeout: {:?}",
        out.elapsed
    );
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: no answer from the server after "),
        "{addr}: {out:?}"
    );
    // `500ms` or `501ms`, never `500.624311ms`.
    let figure = last.rsplit(' ').next().unwrap_or_default();
    assert!(
        figure.ends_with("ms") && !figure.contains('.'),
        "rounded: {last}"
    );
    drop(silent);
}

/// Nothing bound at the server's port: the OS says so (ICMP port
/// unreachable on a connected socket) and the client fails at once with
/// exit 4 and a message saying nothing listens, instead of waiting for the
/// whole idle timeout.
#[test]
fn no_server_listening_fails_fast_with_exit_4() {
    let closed_addr = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let out = run(&[
        "client",
        "100",
        "--server",
        &closed_addr,
        "--idle-timeout-ms",
        "60000",
    ]);
    assert_eq!(out.code, Some(4), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: nothing listens on udp ") && last.contains(&closed_addr),
        "{out:?}"
    );
    // `load` fails the same way.
    let out = run(&["load", "2", "100", "--server", &closed_addr]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(
        out.stderr.contains("error: nothing listens on udp "),
        "{out:?}"
    );
}

/// `client LEN --print | head -1`: the client stops the transfer as soon as
/// the reader goes away and exits 0 quietly (it used to run the whole
/// transfer, then fail with `writing values: Broken pipe`). The length is
/// the server's limit, 10^8 values, far more than the process deadline
/// allows, so finishing at all shows the transfer stopped early.
#[test]
fn client_print_into_a_closed_pipe_stops_the_transfer_quietly() {
    let server = Server::start(&[]);
    let (first, out) = run_closing_stdout_after_one_line(&[
        "client",
        "100000000",
        "--print",
        "--server",
        &server.server_arg(),
    ]);
    assert!(first.parse::<u32>().is_ok(), "a value: {first:?}");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "quiet: {out:?}");
    // The client names no session when quiet; the server opened one.
    let (_, seed) = server.sole_session();
    let expected = support::expected::Expected::new(seed, 100_000_000);
    check_values_text(&expected, &first, false).unwrap_or_else(|e| panic!("{e}"));
}

/// SIGINT (and SIGTERM) mid-transfer: the client prints its partial report
/// (JSON with `"interrupted": true`), exits 130, and the session is closed
/// on the server (CLOSED with the ABORT flag) rather than held for its
/// 30 s lifetime: the health endpoint's session count drops to 0 well
/// before that. Readiness is the client's own "requesting sequence" log
/// line, printed after its signal handlers are installed, and the server
/// showing the session.
#[test]
fn interrupted_client_prints_a_partial_report_and_exits_130() {
    let health_port = free_tcp_port();
    let hp = health_port.to_string();
    let server = Server::start(&["--health-port", &hp, "--session-lifetime-ms", "30000"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.txt");
    for signal in ["-INT", "-TERM"] {
        let mut child = Command::new(BIN)
            .args(["client", "100000000", "--json", "--log-level", "info"])
            .args(["--server", &server.server_arg()])
            .args(["--output", file.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn client");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("requesting sequence") {
            line.clear();
            let n = stderr.read_line(&mut line).unwrap();
            assert!(n > 0, "client ended before it started");
        }
        // The session is open on the server before the signal.
        let j = poll_health(health_port, |j| u64_field(j, "sessions") == 1);
        assert_eq!(u64_field(&j, "sessions"), 1, "{j}");
        let pid = child.id().to_string();
        assert!(Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success());
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(130), "{signal}: {stdout} {rest}");
        let j: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
        assert_eq!(j["interrupted"], Value::Bool(true), "{j}");
        assert_eq!(j["verified"], Value::Bool(false), "{j}");
        assert_eq!(u64_field(&j, "exit_code"), 130, "{j}");
        assert!(u64_field(&j, "delivered") < 100_000_000, "{j}");
        assert!(rest.contains("interrupted after"), "{rest}");
        // What it wrote before the signal is the session's first values.
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count() as u64, u64_field(&j, "delivered"));
        let uuid: Uuid = j["uuid"].as_str().unwrap().parse().unwrap();
        let expected = server.expected(uuid, 100_000_000);
        check_values_text(&expected, &text, false).unwrap_or_else(|e| panic!("{signal}: {e}"));
        // Freed at once, not after the 30 s lifetime.
        let j = poll_health(health_port, |j| u64_field(j, "sessions") == 0);
        assert_eq!(u64_field(&j, "sessions"), 0, "{signal}: not closed: {j}");
        assert_eq!(u64_field(&j, "sessions_expired"), 0, "{j}");
    }
}

/// A TCP port free on loopback (for `--health-port`).
fn free_tcp_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Polls the health endpoint until `done` accepts its JSON or 5 s passed
/// (the server publishes its counters every 200 ms); returns the last JSON.
fn poll_health(port: u16, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = clock::now() + Duration::from_secs(5);
    loop {
        let (_, j) = health_get(port);
        if done(&j) || clock::now() > deadline {
            return j;
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// A length over the server's `--max-len`: exit 7 and the message names the
/// limit.
#[test]
fn over_max_len_exits_7_naming_the_limit() {
    let server = Server::start(&["--max-len", "100"]);
    let out = run(&["client", "1000", "--json", "--server", &server.server_arg()]);
    assert_eq!(out.code, Some(7), "{out:?}");
    let j = json(&out);
    assert_eq!(j["verified"], Value::Bool(false));
    assert_eq!(u64_field(&j, "exit_code"), 7);
    assert_eq!(u64_field(&j, "delivered"), 0);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: bad request"), "{out:?}");
    assert!(last.contains("100"), "the message names the limit: {last}");
    // At the limit is fine.
    let ok = run_client_checked(
        &server,
        &["client", "100", "--server", &server.server_arg()],
        &[],
    );
    assert_eq!(ok.code, Some(0), "{ok:?}");
}

/// `--max-sessions 1` with one session held open by a stalled client: the
/// next client is told "busy" and exits 6.
#[test]
fn at_the_session_limit_a_client_exits_6() {
    let server = Server::start(&["--max-sessions", "1"]);
    stall_a_session(&server, 10_000, 5);
    let out = run(&["client", "50", "--server", &server.server_arg()]);
    assert_eq!(out.code, Some(6), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("busy"), "{out:?}");
    assert_eq!(
        Exit::for_error(&ClientError::ServerBusy) as u8,
        6,
        "the library's mapping agrees"
    );
}

/// A 300,000-value transfer whose socket is dropped every 20 ms completes,
/// verified, after reconnecting. (Long enough to meet the killswitch: with
/// batched I/O 20,000 values take under 20 ms on loopback.)
#[test]
fn killswitch_every_20ms_still_verifies() {
    let server = Server::start(&[]);
    let out = run_client_checked(
        &server,
        &[
            "client",
            "300000",
            "--client-killswitch-ms",
            "20",
            "--json",
            "--server",
            &server.server_arg(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(j["verified"], Value::Bool(true), "{j}");
    assert_eq!(u64_field(&j, "delivered"), 300_000);
    assert!(u64_field(&j, "reconnects") > 0, "{j}");
}

/// `GET /` on the health port: (status code, JSON body).
fn health_get(port: u16) -> (u16, Value) {
    let (status, body) = http(port, "GET", "/");
    let j = serde_json::from_str(&body).unwrap_or_else(|e| panic!("body not JSON ({e}): {body:?}"));
    (status, j)
}

/// A free TCP port on loopback for a health endpoint.
/// `GET /metrics`, parsed by the `prometheus-parse` crate: `name{k=v,...}`
/// (labels sorted) to value, for every sample (a histogram's `_sum` and
/// `_count` are samples; its buckets are under `name_bucket{le=...}`).
fn metrics(port: u16) -> HashMap<String, f64> {
    let (status, page) = http(port, "GET", "/metrics");
    assert_eq!(status, 200, "{page}");
    let lines = page.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the page parses");
    let key = |name: &str, labels: &[(String, String)]| {
        let mut labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        format!("{name}{{{}}}", labels.join(","))
    };
    let mut out = HashMap::new();
    for s in &scrape.samples {
        let labels: Vec<_> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match &s.value {
            prometheus_parse::Value::Histogram(buckets) => {
                for b in buckets {
                    let mut with_le = labels.clone();
                    with_le.push(("le".to_string(), b.less_than.to_string()));
                    out.insert(key(&format!("{}_bucket", s.metric), &with_le), b.count);
                }
            }
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => {
                out.insert(key(&s.metric, &labels), *v);
            }
            other => panic!("unexpected sample {other:?}"),
        }
    }
    out
}

/// Polls `/metrics` until `done` accepts it (the server publishes its
/// counters every 200 ms), with a deadline.
fn metrics_when(port: u16, done: impl Fn(&HashMap<String, f64>) -> bool) -> HashMap<String, f64> {
    let deadline = clock::now() + Duration::from_secs(10);
    loop {
        let m = metrics(port);
        if done(&m) {
            return m;
        }
        assert!(clock::now() < deadline, "metrics never got there: {m:?}");
        thread::sleep(Duration::from_millis(25));
    }
}

/// The health endpoint: 200 with the session count below the limit, 503 at
/// it.
#[test]
fn health_endpoint_answers_200_then_503_at_the_session_limit() {
    let health_port = free_tcp_port();
    let hp = health_port.to_string();
    let server = Server::start(&["--health-port", &hp, "--max-sessions", "1"]);
    let (status, j) = health_get(health_port);
    assert_eq!(status, 200, "{j}");
    assert_eq!(u64_field(&j, "sessions"), 0, "{j}");
    assert_eq!(u64_field(&j, "max_sessions"), 1, "{j}");

    stall_a_session(&server, 10_000, 5);
    // The server publishes its counters periodically (every 200 ms): poll
    // until the held session shows, with a deadline.
    let deadline = clock::now() + Duration::from_secs(5);
    let (status, j) = loop {
        let (status, j) = health_get(health_port);
        if status != 200 || clock::now() > deadline {
            break (status, j);
        }
        thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(status, 503, "{j}");
    assert_eq!(u64_field(&j, "sessions"), 1, "{j}");
    assert_eq!(j["status"], "busy", "{j}");
}

/// `/healthz`, `/readyz`, `/metrics` and the rest over the real binary:
/// liveness and readiness answer 200; the metrics page parses and its
/// counters move with a transfer; holding the one session allowed makes
/// `/readyz` 503 while `/healthz` stays 200; other paths are 404 and other
/// methods 405.
#[test]
fn health_paths_answer_liveness_readiness_and_metrics() {
    let health_port = free_tcp_port();
    let hp = health_port.to_string();
    let server = Server::start(&["--health-port", &hp, "--max-sessions", "1"]);
    assert_eq!(
        http(health_port, "GET", "/healthz"),
        (200, "ok\n".to_string())
    );
    assert_eq!(
        http(health_port, "GET", "/readyz"),
        (200, "ready\n".to_string())
    );
    assert_eq!(http(health_port, "GET", "/health").0, 404);
    assert_eq!(http(health_port, "GET", "/metricsx").0, 404);
    assert_eq!(http(health_port, "POST", "/metrics").0, 405);
    assert_eq!(http(health_port, "DELETE", "/").0, 405);

    let before = metrics(health_port);
    assert_eq!(before["risp_sessions_limit{}"], 1.0);
    assert_eq!(before["risp_datagrams_received_total{kind=connected}"], 0.0);
    assert_eq!(before["risp_delivery_seconds_count{}"], 0.0);
    for reason in ["malformed", "unauthorized", "busy", "unusable_source"] {
        let key = format!("risp_datagrams_rejected_total{{reason={reason}}}");
        assert_eq!(before.get(&key), Some(&0.0), "{key}");
    }

    let out = run_client_checked(
        &server,
        &["client", "2000", "--server", &server.server_arg()],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let after = metrics_when(health_port, |m| m["risp_sessions_closed_total{}"] == 1.0);
    assert_eq!(after["risp_sessions_opened_total{}"], 1.0);
    // Per-kind message counts are at least one: the client's first timer
    // is 5 ms, so on a loaded machine CONNECTING or CLOSED (and the answer
    // to each copy) may go twice. Sessions and deliveries are exact.
    let connecting = after["risp_datagrams_received_total{kind=connecting}"];
    let accepts = after["risp_datagrams_sent_total{kind=accept}"];
    assert!(connecting >= 1.0, "{after:?}");
    assert!(
        accepts >= 1.0 && accepts <= connecting,
        "an Accept answers a CONNECTING: {after:?}"
    );
    assert!(after["risp_datagrams_received_total{kind=connected}"] > 0.0);
    assert!(after["risp_datagrams_received_total{kind=closed}"] >= 1.0);
    assert!(after["risp_datagrams_sent_total{kind=data}"] >= 2000.0);
    assert!(after["risp_datagrams_sent_total{kind=checksum}"] >= 1.0);
    assert_eq!(after["risp_delivery_seconds_count{}"], 2000.0);
    assert_eq!(after["risp_delivery_seconds_bucket{le=inf}"], 2000.0);
    assert!(after["risp_rtt_seconds_count{}"] > 0.0);
    assert!(after["risp_delivery_seconds_sum{}"] > 0.0);
    let received: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("risp_datagrams_received_total{"))
        .map(|(_, v)| v)
        .sum();
    let rejected: f64 = after
        .iter()
        .filter(|(k, _)| k.starts_with("risp_datagrams_rejected_total{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(received, after["risp_accepted_total{}"] + rejected);
    assert!(after["risp_loop_turns_total{}"] > before["risp_loop_turns_total{}"]);
    assert_eq!(after["risp_sessions{state=established}"], 0.0);

    // Hold the one session allowed: not ready, still alive.
    stall_a_session(&server, 10_000, 5);
    let deadline = clock::now() + Duration::from_secs(10);
    let (status, body) = loop {
        let (status, body) = http(health_port, "GET", "/readyz");
        if status != 200 || clock::now() > deadline {
            break (status, body);
        }
        thread::sleep(Duration::from_millis(25));
    };
    assert_eq!((status, body.as_str()), (503, "busy: 1 of 1 sessions\n"));
    assert_eq!(http(health_port, "GET", "/healthz").0, 200);
    let held = metrics(health_port);
    assert_eq!(held["risp_sessions{state=established}"], 1.0);
    assert_eq!(held["risp_sessions{state=handshake}"], 0.0);
}

/// The metrics page passes the Prometheus project's own Python parser
/// (`prometheus_client`, stricter than the Rust crate: it refuses a
/// malformed line instead of skipping it). `.ci/run` installs it
/// (python3-prometheus-client); elsewhere the test says it skipped.
#[test]
fn metrics_page_passes_the_reference_python_parser() {
    const PYTHON: &str = "/usr/bin/python3";
    let has_parser = Command::new(PYTHON)
        .args(["-c", "import prometheus_client.parser"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_parser {
        eprintln!("skipped: {PYTHON} cannot import prometheus_client (apt-get install python3-prometheus-client)");
        return;
    }
    let health_port = free_tcp_port();
    let hp = health_port.to_string();
    let server = Server::start(&["--health-port", &hp]);
    let out = run_client_checked(
        &server,
        &[
            "client",
            "500",
            "--loss",
            "0.1",
            "--server",
            &server.server_arg(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    metrics_when(health_port, |m| m["risp_sessions_closed_total{}"] == 1.0);
    let (_, page) = http(health_port, "GET", "/metrics");
    // Prints `name type samples` per family; fails on any unreadable line.
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   print(f.name, f.type, len(f.samples))\n";
    let mut child = Command::new(PYTHON)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(page.as_bytes())
        .unwrap();
    let parsed = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&parsed.stdout);
    assert!(
        parsed.status.success(),
        "{}\n{page}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let families: HashMap<&str, (&str, usize)> = stdout
        .lines()
        .filter_map(|l| {
            let mut w = l.split(' ');
            Some((w.next()?, (w.next()?, w.next()?.parse().ok()?)))
        })
        .collect();
    let families_on_page = page.lines().filter(|l| l.starts_with("# TYPE ")).count();
    assert_eq!(families.len(), families_on_page, "{stdout}");
    // 16 bounds and +Inf, then _sum and _count.
    assert_eq!(families["risp_delivery_seconds"], ("histogram", 19));
    assert_eq!(families["risp_rtt_seconds"], ("histogram", 19));
    // The parser names a counter family without its `_total`.
    assert_eq!(families["risp_datagrams_rejected"].0, "counter");
    let reasons = page
        .lines()
        .filter(|l| l.starts_with("risp_datagrams_rejected_total{reason="))
        .count();
    assert_eq!(families["risp_datagrams_rejected"].1, reasons);
    assert_eq!(families["risp_sessions"], ("gauge", 2));
}

/// Security events are logged at most five lines a second per kind, the
/// next line saying how many were suppressed: a burst of 50 malformed and
/// 50 wrong-direction datagrams gives a few lines of each (each reason has
/// its own budget), and the lines written plus the counts suppressed add up
/// to what the server rejected.
#[test]
fn security_log_lines_are_rate_limited_per_kind() {
    const EACH: usize = 50;
    let health_port = free_tcp_port();
    let hp = health_port.to_string();
    // `--env prod`: one JSON object per log line.
    let server = Server::start(&["--health-port", &hp, "--env", "prod"]);
    let mut wrong_direction = ClientDatagram::new(State::Connected, Uuid::new_v4(), 10).encode();
    wrong_direction[3] = 0x81; // a server kind
    reseal(&mut wrong_direction);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..EACH {
        sock.send_to(b"not a risp datagram", server.addr).unwrap();
        sock.send_to(&wrong_direction, server.addr).unwrap();
    }
    let reasons = ["malformed", "wrong_direction"];
    metrics_when(health_port, |m| {
        reasons
            .iter()
            .all(|r| m[&format!("risp_datagrams_rejected_total{{reason={r}}}")] == EACH as f64)
    });
    // (lines written, suppressed counts reported) per reason, until every
    // rejected datagram is accounted for (the closing "more lines
    // suppressed" line comes once the one-second window is over).
    let mut seen: HashMap<String, (usize, u64)> = HashMap::new();
    let accounted = |seen: &HashMap<String, (usize, u64)>| {
        reasons.iter().all(|r| {
            seen.get(*r)
                .is_some_and(|&(lines, suppressed)| lines as u64 + suppressed == EACH as u64)
        })
    };
    let deadline = clock::now() + Duration::from_secs(10);
    while !accounted(&seen) {
        let left = deadline.saturating_duration_since(clock::now());
        let line = server
            .stderr
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("log never accounted for every reject: {seen:?}"));
        let Ok(j) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let fields = &j["fields"];
        let message = fields["message"].as_str().unwrap_or_default();
        if !message.starts_with("datagram rejected") {
            continue;
        }
        let reason = fields["reason"].as_str().expect("a reason").to_string();
        let suppressed = fields["suppressed"].as_u64().expect("a count");
        let entry = seen.entry(reason).or_default();
        if message == "datagram rejected" {
            entry.0 += 1;
        }
        entry.1 += suppressed;
    }
    for r in reasons {
        let (lines, suppressed) = seen[r];
        // Five a second; a burst that straddles two windows gets two
        // budgets.
        assert!((1..=10).contains(&lines), "{r}: {lines} lines");
        assert!(
            suppressed >= (EACH - 10) as u64,
            "{r}: {suppressed} suppressed"
        );
    }
}

/// The health endpoint survives running out of file descriptors: with the
/// server's limit lowered to 32 (prlimit on its pid), 60 connections held
/// open make `accept` fail (EMFILE, logged); once they close, the endpoint
/// answers again (it used to end its task, and the port stayed closed).
#[test]
fn health_endpoint_survives_running_out_of_file_descriptors() {
    let health_port = free_tcp_port();
    let hp = health_port.to_string();
    let server = Server::start(&["--health-port", &hp]);
    assert_eq!(health_get(health_port).0, 200);
    let pid = server.child.id().to_string();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=32:32"])
        .status();
    if !limited.is_ok_and(|s| s.success()) {
        eprintln!("skipped: prlimit (util-linux) cannot lower the server's limit here");
        return;
    }
    let held: Vec<TcpStream> = (0..60)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", health_port)).ok())
        .collect();
    assert!(held.len() > 32, "only {} connections", held.len());
    server
        .wait_for_line_containing("accept failed", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("accept never failed: {seen:?}"));
    drop(held);
    // Bounded wait: the held connections close, the endpoint backs off at
    // most a second between tries, then answers.
    let deadline = clock::now() + Duration::from_secs(10);
    let status = loop {
        let got = TcpStream::connect(("127.0.0.1", health_port))
            .ok()
            .map(|_| health_get(health_port).0);
        match got {
            Some(200) => break 200,
            _ if clock::now() > deadline => break got.unwrap_or(0),
            _ => thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(status, 200, "the health endpoint answers again");
}

/// SIGTERM: the server stops, prints its summary line and exits 0.
#[test]
fn sigterm_stops_the_server_with_its_summary_and_exit_0() {
    let mut server = Server::start(&[]);
    let ok = run_client_checked(
        &server,
        &["client", "500", "--server", &server.server_arg()],
        &[],
    );
    assert_eq!(ok.code, Some(0), "{ok:?}");
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let line = server
        .wait_for_line("risp-udp server stopped", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no summary after SIGTERM; stderr: {seen:?}"));
    assert!(line.contains("sessions opened 1, closed 1"), "{line}");
    // The process closes stderr when it exits: wait for that, then reap it.
    let deadline = clock::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(clock::now());
        match server.stderr.recv_timeout(left) {
            Ok(_) => {}
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("server still running 10 s after SIGTERM"),
        }
    }
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}

/// The original's snake_case spellings and the RISP_* environment variables
/// are accepted.
#[test]
fn snake_case_aliases_and_env_vars_are_accepted() {
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let port_s = port.to_string();
    // Server: port from RISP_PORT, health port and limits by the old names.
    let server = Server::start_with_env(
        &[
            "--health_port",
            "0",
            "--max_goroutines",
            "4",
            "--server_ticker_ms",
            "0",
            // Info: the session seeds the clients' values are checked by.
            "--log_level",
            "info",
        ],
        &[("RISP_PORT", &port_s)],
    );
    assert_eq!(server.addr.port(), port, "RISP_PORT was used");
    // Client: the server's port from RISP_PORT (default host 127.0.0.1),
    // the old ticker and killswitch names.
    let out = run_client_checked(
        &server,
        &[
            "client",
            "2000",
            "--client_ticker_ms",
            "500",
            "--client_killswitch_ms",
            "1000",
            "--json",
        ],
        &[("RISP_PORT", &port_s)],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(json(&out)["verified"], Value::Bool(true));
    // Env vars for client flags too.
    let srv = server.server_arg();
    let env = [
        ("RISP_SERVER", srv.as_str()),
        ("RISP_CLIENT_TICKER_MS", "500"),
        ("RISP_LOSS", "0.05"),
        ("RISP_NETEM_SEED", "3"),
    ];
    let out = run_client_checked(&server, &["client", "1000", "--json"], &env);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(u64_field(&j, "delivered"), 1000);
    assert!(
        u64_field(&j, "shim_dropped") > 0,
        "RISP_LOSS took effect: {j}"
    );
}

/// `--interval SECS`: one line per interval on stderr and an `intervals`
/// array in `--json` whose values add up to the transfer's.
#[test]
fn interval_reports_on_stderr_and_in_json() {
    let server = Server::start(&[]);
    let out = run_client_checked(
        &server,
        &[
            "client",
            "200000",
            "--max-window",
            "32",
            "--interval",
            "0.02",
            "--json",
            "--server",
            &server.server_arg(),
        ],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    let intervals = j["intervals"].as_array().expect("an intervals array");
    assert!(!intervals.is_empty(), "{j}");
    let sum: u64 = intervals.iter().map(|i| u64_field(i, "values")).sum();
    assert_eq!(sum, 200_000, "{j}");
    let mut last_end = 0.0;
    for i in intervals {
        let start = i["start_s"].as_f64().unwrap();
        let end = i["end_s"].as_f64().unwrap();
        assert!((start - last_end).abs() < 1e-9 && end > start, "{i}");
        last_end = end;
        for key in [
            "values_per_s",
            "retransmit_requests",
            "window",
            "rtt_p50_us",
        ] {
            assert!(i.get(key).is_some(), "{key} in {i}");
        }
    }
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("values/s"))
        .collect();
    assert_eq!(lines.len(), intervals.len(), "{}", out.stderr);
    assert!(lines[0].contains("rtt p50"), "{}", lines[0]);
    // Without --interval there is no array.
    let plain = run_client_checked(
        &server,
        &["client", "100", "--json", "--server", &server.server_arg()],
        &[],
    );
    assert!(json(&plain).get("intervals").is_none(), "{plain:?}");
}

/// `--output -` writes the values to stdout (it created a file named `-`),
/// the report then going to stderr, as with `--print`.
#[test]
fn output_dash_writes_values_to_stdout() {
    let server = Server::start(&[]);
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "client",
            "100",
            "--output",
            "-",
            "--server",
            &server.server_arg(),
        ])
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 100, "{stdout}");
    assert!(stdout.lines().all(|l| l.parse::<u32>().is_ok()), "{stdout}");
    assert!(!cwd.path().join("-").exists(), "no file named -");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("verified"), "{out:?}");
    // The values are the session's (the report on stderr names it).
    let report = Output {
        code: out.status.code(),
        stdout: String::new(),
        stderr: stderr.into_owned(),
        elapsed: Duration::ZERO,
    };
    let expected = server.expected(reported_uuid(&report), 100);
    check_values_text(&expected, &stdout, true).unwrap_or_else(|e| panic!("{e}"));
    let both = run(&[
        "client",
        "10",
        "--output",
        "-",
        "--json",
        "--server",
        &server.server_arg(),
    ]);
    assert_eq!(both.code, Some(2), "{both:?}");
}

/// Both servers print their banner on stderr (tcp-server used stdout), and
/// an IPv6 health address is bracketed (`tcp [::1]:PORT`, not `::1:PORT`).
#[test]
fn banners_go_to_stderr_with_bracketed_ipv6() {
    let mut child = Command::new(BIN)
        .args(["tcp-server", "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let _ = child.wait();
    assert!(
        line.starts_with("tcp-server listening on 127.0.0.1:"),
        "{line:?}"
    );
    assert!(stdout.is_empty(), "{stdout:?}");

    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped the IPv6 half: no ::1 here");
        return;
    }
    let hp = free_tcp_port_v6();
    let mut child = Command::new(BIN)
        .args([
            "server",
            "--bind",
            "::1",
            "--port",
            "0",
            "--health-port",
            &hp.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.contains(&format!("(health: tcp [::1]:{hp},")),
        "{line:?}"
    );
}

fn free_tcp_port_v6() -> u16 {
    let l = TcpListener::bind("[::1]:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `server --hist-out DIR` names its file `server_ack.hgrm` (it was
/// `server-server_ack.hgrm`).
#[test]
fn server_histogram_file_is_named_server_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&["--hist-out", dir.path().to_str().unwrap()]);
    let out = run_client_checked(
        &server,
        &["client", "500", "--server", &server.server_arg()],
        &[],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    server
        .wait_for_line("wrote ", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no dump: {seen:?}"));
    let _ = server.child.wait();
    assert!(dir.path().join("server_ack.hgrm").exists());
    assert!(dir.path().join("server_ack.hlog").exists());
    assert!(!dir.path().join("server-server_ack.hgrm").exists());
}

#[test]
fn load_runs_many_clients_at_once_and_reports_the_aggregate() {
    let server = Server::start(&[]);
    let out = run(&[
        "load",
        "20",
        "2000",
        "--server",
        &server.server_arg(),
        "--json",
        "--seed",
        "3",
        "--loss",
        "0.05",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(
        (j["clients"].as_u64(), j["verified"].as_u64()),
        (Some(20), Some(20))
    );
    // `load` keeps its values in the process (it takes no --output): its
    // clients' own checksum checks are what covers them.
    assert_eq!(j["all_verified"], Value::Bool(true));
    assert_eq!(u64_field(&j, "delivered"), 40_000);
    assert_eq!(j["completion"]["count"].as_u64(), Some(20));
    assert!(u64_field(&j, "shim_dropped") > 0, "{j}");
    assert!(j["errors"].as_object().is_some_and(|e| e.is_empty()), "{j}");
    // The same load in plain I/O, to the server named by its own --port,
    // and a human report.
    let port = server.addr.port().to_string();
    let out = run_with_env(
        &["load", "5", "1000", "--port", &port],
        &[("RISP_IO", "plain")],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("5 of 5 clients verified"), "{out:?}");
    // Options that make sense for one client only are refused.
    let out = run(&["load", "2", "--print", "--server", &server.server_arg()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    // The server's summary names the most sessions it held at once.
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let line = server
        .wait_for_line("risp-udp server stopped", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no summary after SIGTERM; stderr: {seen:?}"));
    let peak = line
        .split(", peak ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no peak in: {line}"));
    assert!((1..=20).contains(&peak), "{line}");
}

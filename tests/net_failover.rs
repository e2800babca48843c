//! Client failover over real loopback sockets, without a shared session
//! store: the first server of `--server A,B` is silent (bound, never
//! answers) or not there at all (the OS answers port unreachable), and the
//! client moves to the next before its first handshake completes. The
//! servers are in-process (`support::loopback`); the clients are the
//! library's driver or the `risp-udp` binary.
//!
//! Failovers are counted as "at least": a live server the scheduler keeps
//! from answering for 8 probe timeouts (128 ms once the RTT is known) is
//! left too, and the client comes back to it. Why a server was left is
//! exact: a silent one only for silence, a closed port only for refusal.

mod support;

use std::net::{SocketAddr, UdpSocket};

use risp_udp::proto::server::ServerConfig;
use risp_udp::Client;
use serde_json::Value;
use support::cli::{run, run_client_checked, Output};
use support::loopback::{transfer, TestServer};

/// A UDP socket that is bound and never answers.
fn silent_socket() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let a = s.local_addr().unwrap();
    (s, a)
}

/// An address nothing listens on (bound a moment, then closed).
fn closed_addr() -> SocketAddr {
    silent_socket().1
}

fn json(out: &Output) -> Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out:?}"))
}

#[tokio::test]
async fn the_driver_leaves_a_silent_first_server_and_verifies_on_the_next() {
    let (_dead, dead) = silent_socket();
    let live = TestServer::start(ServerConfig::default()).await;
    let (report, got) = transfer(Client::connect([dead, live.addr]), 2_000).await;
    assert!(report.verified(), "{:?}", report.error);
    assert_eq!(got.len(), 2_000);
    assert!(report.failovers() >= 1, "{:?}", report.servers);
    assert_eq!(report.servers.len(), 2);
    assert_eq!(report.servers[0].addr, dead);
    let why = report.servers[0].left.as_deref().unwrap_or_default();
    assert!(why.contains("silent"), "{why}");
    live.check(&report, &got);
    let summary = live.stop().await;
    assert_eq!(summary.stats.sessions_opened, 1);
}

#[test]
fn client_with_a_list_fails_over_from_a_silent_server_and_counts_it() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let live = rt.block_on(TestServer::start(ServerConfig::default()));
    let (_dead, dead) = silent_socket();
    let list = format!("{dead},{}", live.addr);
    // Every value is checked against the seed the live server drew.
    let out = run_client_checked(&live, &["client", "1000", "--server", &list, "--json"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(j["verified"], Value::Bool(true), "{j}");
    assert!(j["failovers"].as_u64().is_some_and(|n| n >= 1), "{j}");
    assert_eq!(
        j["start"]["server"].as_str(),
        Some(format!("{dead}, {}", live.addr).as_str())
    );
    // The human summary names the failover; RISP_SERVER takes the list too.
    let out = run_client_checked(&live, &["client", "1000"], &[("RISP_SERVER", &list)]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let failovers = out
        .stdout
        .split(", failovers ")
        .nth(1)
        .and_then(|rest| rest.lines().next()?.parse::<u64>().ok());
    assert!(failovers.is_some_and(|n| n >= 1), "{out:?}");
    // `load` takes the same list and sums the failovers (one at least per
    // client). Its values never leave the process (no --output), so only
    // its own checksum check covers them.
    let out = run(&["load", "3", "500", "--server", &list, "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(j["verified"].as_u64(), Some(3), "{j}");
    assert!(j["failovers"].as_u64().is_some_and(|n| n >= 3), "{j}");
}

/// Nothing listens at the first server: the OS says so, and the client
/// moves on at once instead of exiting 4.
#[test]
fn a_refusing_first_server_is_skipped_at_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let live = rt.block_on(TestServer::start(ServerConfig::default()));
    let closed = closed_addr();
    let list = format!("{closed},{}", live.addr);
    let out = run_client_checked(&live, &["client", "1000", "--server", &list, "--json"], &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json(&out);
    assert_eq!(j["verified"], Value::Bool(true), "{j}");
    assert!(j["failovers"].as_u64().is_some_and(|n| n >= 1), "{j}");
    // Moved on the refusal, not after the probe timeouts of a silent one:
    // the driver says why it left (the timeout count depends on load).
    let (report, got) = rt.block_on(transfer(Client::connect([closed, live.addr]), 1_000));
    assert!(report.verified(), "{:?}", report.error);
    assert_eq!(got.len(), 1_000);
    live.check(&report, &got);
    assert_eq!(
        report.servers[0].left.as_deref(),
        Some("port unreachable"),
        "{:?}",
        report.servers
    );
}

/// Every server refuses: exit 4 as for one, naming them all.
#[test]
fn every_server_refusing_exits_4_naming_them() {
    let (a, b) = (closed_addr(), closed_addr());
    let list = format!("{a},{b}");
    let out = run(&[
        "client",
        "100",
        "--server",
        &list,
        "--idle-timeout-ms",
        "60000",
    ]);
    assert_eq!(out.code, Some(4), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: nothing listens on udp ")
            && last.contains(&a.to_string())
            && last.contains(&b.to_string()),
        "{out:?}"
    );
    let out = run(&["load", "2", "100", "--server", &list]);
    assert_eq!(out.code, Some(4), "{out:?}");
}

/// Every server silent: the client goes round them until the idle
/// timeout, then fails with exit 4 naming each and why it was left.
#[test]
fn every_server_silent_fails_at_the_idle_timeout_naming_them() {
    let (_a, a) = silent_socket();
    let (_b, b) = silent_socket();
    let list = format!("{a},{b}");
    let out = run(&[
        "client",
        "100",
        "--server",
        &list,
        "--idle-timeout-ms",
        "3000",
    ]);
    assert_eq!(out.code, Some(4), "{out:?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: no answer from any server after ")
            && last.contains(&format!("servers tried: {a} (silent through "))
            && last.contains(&format!("{b} (silent through ")),
        "{out:?}"
    );
}

/// A list with an empty entry or a name that does not resolve is a usage
/// error.
#[test]
fn a_bad_server_list_is_a_usage_error() {
    for list in ["127.0.0.1:1,", "127.0.0.1:1,no-such-host.invalid:1"] {
        let out = run(&["client", "10", "--server", list]);
        assert_eq!(out.code, Some(2), "{list}: {out:?}");
        assert!(out.stderr.starts_with("error: "), "{out:?}");
    }
}

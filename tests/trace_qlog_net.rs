//! qlog traces of real sessions over loopback sockets: `server --qlog` and
//! `client --qlog` (the library's builders, and the binary's flags).
//!
//! Both files are read back by the independent JSON-SEQ reader of
//! tests/support and checked against what each end counted: only counts
//! and order, never timings.

mod support;

use std::path::Path;

use risp_netem::{DirectionConfig, ImpairmentConfig};
use risp_udp::net::qlog::qlog_path;
use risp_udp::net::server::ServerError;
use risp_udp::proto::server::ServerConfig;
use risp_udp::trace::qlog::Vantage;
use risp_udp::{Client, Server};
use serde_json::Value;
use support::cli::{reported_uuid, run, ServerProcess};
use support::json_seq::{count, read_json_seq, times};
use support::loopback::transfer;
use uuid::Uuid;

const LEN: u32 = 3000;

fn lossy(p: f64) -> ImpairmentConfig {
    ImpairmentConfig::symmetric(DirectionConfig {
        loss: p,
        ..DirectionConfig::default()
    })
}

fn is_sent(e: &Value, kind: &str) -> bool {
    e["name"] == "transport:packet_sent" && e["data"]["risp"]["kind"] == kind
}

fn is_received(e: &Value, kind: &str) -> bool {
    e["name"] == "transport:packet_received" && e["data"]["risp"]["kind"] == kind
}

/// The trace of `uuid` from `vantage` in `dir`, its header checked: the
/// vantage point, the session as `group_id`, a wall-clock reference time;
/// events ordered by time between `connection_started` and
/// `connection_closed`. Returns the events.
fn checked_trace(dir: &Path, uuid: Uuid, vantage: Vantage) -> Vec<Value> {
    let path = qlog_path(dir, uuid, vantage);
    let records = read_json_seq(&path);
    let (header, events) = records.split_first().expect("a header");
    assert_eq!(header["qlog_format"], "JSON-SEQ");
    let trace = &header["trace"];
    assert_eq!(trace["vantage_point"]["type"], vantage.name());
    assert_eq!(
        trace["common_fields"]["group_id"],
        uuid.to_string().as_str()
    );
    assert!(trace["common_fields"]["reference_time"].as_f64().unwrap() > 1.0e12);
    assert_eq!(header["risp"]["clock"], "wall");
    let t = times(events);
    assert!(
        t.windows(2).all(|w| w[0] <= w[1]),
        "{vantage:?}: ordered by time"
    );
    assert_eq!(events[0]["name"], "connectivity:connection_started");
    assert_eq!(events[0]["data"]["risp"]["len"], LEN);
    let last = events.last().expect("events");
    assert_eq!(last["name"], "connectivity:connection_closed", "{last}");
    assert_eq!(last["data"]["trigger"], "clean", "{last}");
    events.to_vec()
}

/// A lossy transfer with both ends tracing into one directory: each file
/// agrees with the counters of the end that wrote it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ends_trace_a_lossy_loopback_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .config(ServerConfig {
            seed: Some(5),
            ..ServerConfig::default()
        })
        .qlog(dir.path())
        .start()
        .await
        .expect("server starts");
    let client = Client::connect([server.local_addr()])
        .impairment(lossy(0.1), 11)
        .qlog(dir.path());
    let (report, _) = transfer(client, LEN).await;
    let summary = server.shutdown().await.expect("server stops");
    assert!(report.verified(), "{report:?}");
    assert_eq!(summary.qlog_files, 1);

    let s = checked_trace(dir.path(), report.uuid, Vantage::Server);
    let first = count(&s, |e| {
        is_sent(e, "data") && e["data"]["risp"]["resend"] == false
    });
    assert_eq!(first, u64::from(LEN), "every index sent once first");
    let lost = count(&s, |e| e["name"] == "recovery:packet_lost");
    assert!(lost > 0, "10% loss declares losses");
    assert_eq!(lost, summary.stats.losses);
    let resent = count(&s, |e| {
        is_sent(e, "data") && e["data"]["risp"]["resend"] == true
    });
    assert_eq!(resent, summary.stats.retransmits);
    assert_eq!(count(&s, |e| is_received(e, "connecting")), 1);

    let c = checked_trace(dir.path(), report.uuid, Vantage::Client);
    assert!(count(&c, |e| is_received(e, "data")) >= u64::from(LEN));
    // The client's shim saw every datagram the driver handed the socket:
    // the trace has those, not the acks the core wrote and the driver
    // left out of a batch.
    let sent = count(&c, |e| e["name"] == "transport:packet_sent");
    assert_eq!(sent, report.link.to_server.seen);
    eprintln!(
        "client: the core wrote {} datagrams, the driver sent {sent}",
        report.client.datagrams_sent
    );
    let received = count(&c, |e| e["name"] == "transport:packet_received");
    assert_eq!(received, report.client.datagrams_received);
    assert!(c
        .iter()
        .any(|e| e["name"] == "recovery:metrics_updated" && e["data"]["smoothed_rtt"].is_number()));
}

/// The binary's flags: `server --qlog` and `client --qlog` write the two
/// views of one session, and the server's resends match its summary.
#[test]
fn the_binary_writes_both_traces() {
    let dir = tempfile::tempdir().unwrap();
    let qlog = dir.path().join("traces");
    let q = qlog.to_str().unwrap();
    let mut server = ServerProcess::start(&["--qlog", q, "--json", "--loss-out", "0.05"]);
    let out = run(&[
        "client",
        "3000",
        "--server",
        &server.server_arg(),
        "--qlog",
        q,
        "--json",
        "--seed",
        "4",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let uuid = reported_uuid(&out);
    let (lines, json) = stop(&mut server);
    assert!(
        lines.iter().any(|l| l.starts_with("wrote 1 qlog file to ")),
        "{lines:?}"
    );
    let summary: Value = serde_json::from_str(json.trim()).expect("--json summary");
    let s = checked_trace(&qlog, uuid, Vantage::Server);
    let resent = count(&s, |e| {
        is_sent(e, "data") && e["data"]["risp"]["resend"] == true
    });
    assert!(resent > 0, "5% loss out: resends");
    assert_eq!(Some(resent), summary["retransmits"].as_u64(), "{summary}");
    let c = checked_trace(&qlog, uuid, Vantage::Client);
    assert!(count(&c, |e| is_received(e, "data")) >= u64::from(LEN));
}

/// SIGTERM to `server`: its stderr lines up to its last, and its stdout.
fn stop(server: &mut ServerProcess) -> (Vec<String>, String) {
    use std::io::Read;
    let mut stdout = server.child.stdout.take().expect("--json pipes stdout");
    let pid = server.child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    // The process ended: its stderr reader ends at EOF.
    let seen = server.stderr.iter().collect();
    (seen, text)
}

/// A directory that cannot be created (under a regular file, which even
/// root cannot make a directory of) fails each end at start, as other
/// file errors do (exit 1, the path in the message).
#[tokio::test]
async fn a_qlog_directory_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("traces");
    let b = bad.to_str().unwrap();

    let out = run(&["client", "10", "--port", "9", "--qlog", b]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(b) && out.stderr.contains("cannot create the qlog directory"),
        "{out:?}"
    );
    let out = run(&["server", "--port", "0", "--health-port", "0", "--qlog", b]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("cannot create the qlog directory"),
        "{out:?}"
    );

    let started = Server::builder().qlog(&bad).start().await;
    assert!(matches!(started, Err(ServerError::Qlog(_))), "{started:?}");
}

/// A session file that cannot be created (a directory holds its name):
/// the client's request fails with the path; the server serves on and
/// counts what it could not write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_file_that_cannot_be_written_is_counted_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder()
        .qlog(dir.path())
        .start()
        .await
        .expect("server starts");
    let uuid = Uuid::from_u128(0x5eed);
    let blocker = qlog_path(dir.path(), uuid, Vantage::Client);
    std::fs::create_dir(&blocker).unwrap();
    let refused = Client::connect([server.local_addr()])
        .uuid(uuid)
        .qlog(dir.path())
        .request(LEN)
        .await;
    match refused {
        Err(e @ risp_udp::net::stream::TransferError::Qlog(_)) => {
            let text = e.to_string();
            assert!(text.contains(blocker.to_str().unwrap()), "{text}");
        }
        other => panic!("expected a qlog error: {:?}", other.map(|_| ())),
    }
    std::fs::create_dir(qlog_path(dir.path(), uuid, Vantage::Server)).unwrap();
    let (report, _) = transfer(Client::connect([server.local_addr()]).uuid(uuid), LEN).await;
    let summary = server.shutdown().await.expect("server stops");
    assert!(report.verified(), "{report:?}");
    assert_eq!(summary.qlog_files, 0);
    assert!(summary.qlog_not_written > 0, "{}", summary.qlog_not_written);
}

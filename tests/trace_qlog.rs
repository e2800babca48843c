//! qlog traces of simulated runs (`sim --qlog`) and timelines drawn from
//! them (`risp-udp plot`).
//!
//! The traces are read back by the JSON-SEQ reader of tests/support (split at
//! 0x1E, each record a `serde_json::Value`), not by the writer's types,
//! and checked against the simulator's own counters.

mod support;

use std::path::{Path, PathBuf};

use risp_udp::suite::{qlog_name, record_run, SimRecording, Suite};
use risp_udp::trace::plot::{plot_file, TIMELINE_SIZE};
use risp_udp::transfer::RunReport;
use serde_json::Value;
use support::json_seq::{count, read_json_seq};

const SUITE: &str = r#"
name = "trace"
len = 2000
seeds = [3]

[[profile]]
name = "lossy"
loss = 0.10
delay_ms = 1
"#;

/// Runs the suite's one run with qlog on; returns the run's report and
/// the trace file.
fn traced_run(dir: &Path) -> (RunReport, PathBuf) {
    let suite = Suite::parse(SUITE, Path::new("trace.toml")).expect("suite parses");
    let profile = &suite.profiles[0];
    let cfg = profile.run_config(3);
    let mut rec = SimRecording::new(Some(dir.to_path_buf()), None);
    let report = record_run(&mut rec, profile, &cfg).expect("recorded");
    // Recording changes nothing: the same run without it has the same
    // trace and figures.
    let plain = risp_udp::sim::run(&cfg);
    assert_eq!(report.trace_hash, plain.trace_hash);
    assert_eq!(report.server, plain.server);
    assert_eq!(rec.traces, 1);
    (report, dir.join(qlog_name("lossy", 3, 0)))
}

fn is_data_sent(e: &Value) -> bool {
    e["name"] == "transport:packet_sent" && e["data"]["risp"]["kind"] == "data"
}

#[test]
fn the_trace_has_its_header_its_order_and_the_simulators_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (report, path) = traced_run(dir.path());
    let records = read_json_seq(&path);
    let (header, events) = records.split_first().expect("a header");
    assert_eq!(header["qlog_version"], "0.3");
    assert_eq!(header["qlog_format"], "JSON-SEQ");
    assert!(header["title"].as_str().unwrap().contains("lossy"));
    let trace = &header["trace"];
    assert_eq!(trace["vantage_point"]["type"], "server");
    let uuid = report.transfers[0].uuid.to_string();
    assert_eq!(trace["common_fields"]["group_id"], uuid.as_str());
    assert!(trace["common_fields"]["reference_time"].is_number());

    let times: Vec<f64> = events.iter().map(|e| e["time"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ordered by time");
    assert_eq!(events[0]["name"], "connectivity:connection_started");
    assert_eq!(events[1]["name"], "transport:packet_received");
    assert_eq!(events[1]["data"]["header"]["packet_type"], "connecting");
    let last = events.last().unwrap();
    assert_eq!(last["name"], "connectivity:connection_closed");
    assert_eq!(last["data"]["trigger"], "clean");
    let tail = &events[events.len().saturating_sub(6)..];
    assert!(
        tail.iter()
            .any(|e| e["name"] == "transport:packet_sent"
                && e["data"]["risp"]["kind"] == "closed_reply"),
        "the server's answer to CLOSED ends the session: {tail:#?}"
    );

    let r = &report.transfers[0];
    assert!(r.checksum.is_some(), "the transfer verified");
    let lost = count(events, |e| e["name"] == "recovery:packet_lost");
    assert!(lost > 0, "10% loss declares losses");
    assert_eq!(lost, report.server.losses);
    let resent = count(events, |e| {
        is_data_sent(e) && e["data"]["risp"]["resend"] == true
    });
    assert_eq!(resent, report.server.retransmits);
    // Data only: the Checksum reply is as long as a Data datagram, but the
    // simulator counts by kind.
    let checksums = count(events, |e| {
        e["name"] == "transport:packet_sent" && e["data"]["risp"]["kind"] == "checksum"
    });
    assert!(checksums > 0);
    assert_eq!(count(events, is_data_sent), r.data_sent);
    // Every first send of an index is there once.
    let first = count(events, |e| {
        is_data_sent(e) && e["data"]["risp"]["resend"] == false
    });
    assert_eq!(first, u64::from(r.len));
}

#[test]
fn metrics_carry_the_window_the_rtt_the_flight_and_the_rate_state() {
    let dir = tempfile::tempdir().unwrap();
    let (report, path) = traced_run(dir.path());
    let records = read_json_seq(&path);
    let metrics: Vec<&Value> = records
        .iter()
        .filter(|e| e["name"] == "recovery:metrics_updated")
        .map(|e| &e["data"])
        .collect();
    let with = |k: &str| metrics.iter().filter(|m| m[k].is_number()).count();
    for key in [
        "congestion_window",
        "smoothed_rtt",
        "rtt_variance",
        "min_rtt",
        "pacing_rate",
    ] {
        assert!(with(key) > 0, "{key}");
    }
    assert!(with("bytes_in_flight") > 0);
    let windows: Vec<u64> = metrics
        .iter()
        .filter_map(|m| m["congestion_window"].as_u64())
        .collect();
    let w = &report.transfers[0].window;
    assert_eq!(windows.iter().max().copied(), Some(u64::from(w.max)));
    assert_eq!(windows.last().copied(), Some(u64::from(w.last)));
    let min_rtt = metrics
        .iter()
        .filter_map(|m| m["min_rtt"].as_f64())
        .next_back();
    let expected = report.transfers[0].min_rtt.unwrap().as_secs_f64() * 1000.0;
    assert!(
        (min_rtt.unwrap() - expected).abs() < 1e-3,
        "{min_rtt:?} vs {expected}"
    );
    let states: Vec<&str> = records
        .iter()
        .filter(|e| e["name"] == "recovery:congestion_state_updated")
        .filter_map(|e| e["data"]["new"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"startup"));
    let known = ["startup", "drain", "probe_up", "probe_down", "cruise"];
    assert!(states.iter().all(|s| known.contains(s)), "{states:?}");
}

/// The content of every `<text>` element, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn the_timeline_is_an_svg_and_a_png_with_labelled_axes_and_its_series() {
    let dir = tempfile::tempdir().unwrap();
    let (_, trace) = traced_run(dir.path());
    let svg = dir.path().join("t.svg");
    plot_file(&trace, &svg).expect("svg drawn");
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.trim_start().starts_with("<svg"), "{}", &text[..80]);
    assert!(text.trim_end().ends_with("</svg>"));
    let texts = svg_texts(&text);
    for label in [
        "time (ms)",
        "datagrams",
        "RTT (ms)",
        "datagrams/s",
        "count (running)",
    ] {
        assert!(texts.iter().any(|t| t == label), "axis label {label}");
    }
    let series = [
        "congestion window",
        "in flight",
        "smoothed RTT",
        "min RTT",
        "delivery-rate estimate",
        "acknowledged",
        "declared lost",
        "resent",
    ];
    for name in series {
        assert!(texts.iter().any(|t| t == name), "legend entry {name}");
    }
    // Each series is a line and a legend stroke.
    let lines = text.matches("<polyline").count();
    assert!(lines >= 2 * series.len(), "{lines} polylines");

    let png = dir.path().join("t.png");
    plot_file(&trace, &png).expect("png drawn");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(png_size(&bytes), TIMELINE_SIZE);
}

#[test]
fn a_missing_file_a_bad_extension_and_a_non_trace_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.svg");
    let missing = plot_file(&dir.path().join("none.sqlog"), &out).unwrap_err();
    assert!(missing.to_string().contains("cannot read"), "{missing}");
    assert!(!out.exists());

    let text = dir.path().join("notes.sqlog");
    std::fs::write(&text, "hello\n").unwrap();
    let e = plot_file(&text, &out).unwrap_err();
    assert!(e.to_string().contains("not a qlog"), "{e}");

    let e = plot_file(&text, &dir.path().join("t.jpg")).unwrap_err();
    assert!(e.to_string().contains(".svg or .png"), "{e}");

    // The command says the same and exits 1.
    let o = support::cli::run(&["plot", "missing.sqlog", "--output", "x.svg"]);
    assert_eq!(o.code, Some(1), "{o:?}");
    assert!(
        o.stderr.contains("missing.sqlog: cannot read"),
        "{}",
        o.stderr
    );
}

//! `load --interval` and `server --interval`: iperf3-style lines while a
//! run goes on, an `intervals` array in `--json`, and intervals that add
//! up to the run's totals (however many there were: their number depends
//! on the machine's speed, so only "at least one" is asserted).

mod support;

use std::io::Read;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::cli::{run, Output, ServerProcess as Server};

fn json_of(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number `{key}` in {v}"))
}

/// `key` added over every interval.
fn sum_of(intervals: &[Value], key: &str) -> u64 {
    intervals.iter().map(|i| u64_of(i, key)).sum()
}

/// The intervals follow one another from 0: without gaps, or (a server,
/// which leaves idle intervals out) with gaps allowed.
fn assert_in_order(intervals: &[Value], gaps: bool) {
    let mut end = 0.0;
    for i in intervals {
        let (s, e) = (i["start_s"].as_f64().unwrap(), i["end_s"].as_f64().unwrap());
        let follows = if gaps {
            s >= end - 1e-9
        } else {
            (s - end).abs() < 1e-9
        };
        assert!(follows && e >= s, "{i} after end {end}");
        end = e;
    }
}

/// The stderr lines of the intervals (each has `values/s`), the sum line
/// last; checks the separator before it.
fn interval_lines(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" values/s"))
        .collect();
    let all: Vec<&str> = stderr.lines().collect();
    let sum_at = all
        .iter()
        .position(|l| l.ends_with("  sum"))
        .unwrap_or_else(|| panic!("no sum line: {stderr}"));
    assert!(
        sum_at > 0 && all[sum_at - 1].starts_with("- - -"),
        "{stderr}"
    );
    lines
}

#[test]
fn load_intervals_add_up_to_the_delivered_values() {
    let server = Server::start(&[]);
    let out = run(&[
        "load",
        "6",
        "50000",
        "--interval",
        "0.02",
        "--json",
        "--loss",
        "0.02",
        "--seed",
        "5",
        "--server",
        &server.server_arg(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j = json_of(&out.stdout);
    let intervals = j["intervals"].as_array().expect("an intervals array");
    assert!(!intervals.is_empty(), "{j}");
    assert_eq!(u64_of(&j, "delivered"), 300_000);
    assert_eq!(sum_of(intervals, "values"), 300_000, "{j}");
    assert_eq!(sum_of(intervals, "timeouts"), u64_of(&j, "timeouts"));
    assert!(u64_of(&j, "shim_dropped") > 0, "--loss took effect: {j}");
    assert_eq!(
        sum_of(intervals, "shim_dropped"),
        u64_of(&j, "shim_dropped")
    );
    assert!(sum_of(intervals, "retransmit_requests") > 0, "{j}");
    assert_in_order(intervals, false);
    let mut done = 0;
    for i in intervals {
        let (active, now_done) = (u64_of(i, "sessions_active"), u64_of(i, "sessions_done"));
        assert!(active + now_done <= 6 && now_done >= done, "{i}");
        assert_eq!(u64_of(i, "sessions_failed"), 0, "{i}");
        done = now_done;
    }
    let last = intervals.last().unwrap();
    assert_eq!(
        (
            u64_of(last, "sessions_active"),
            u64_of(last, "sessions_done")
        ),
        (0, 6)
    );
    let lines = interval_lines(&out.stderr);
    assert_eq!(lines.len(), intervals.len() + 1, "{}", out.stderr);
    let sum = lines.last().unwrap();
    assert!(sum.contains("300.0k values"), "{sum}");
    assert!(sum.contains("0 active    6 done"), "{sum}");
}

#[test]
fn load_intervals_with_the_human_report() {
    let server = Server::start(&[]);
    let out = run(&[
        "load",
        "3",
        "2000",
        "--interval",
        "0.5",
        "--server",
        &server.server_arg(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.starts_with("3 of 3 clients verified"), "{out:?}");
    let lines = interval_lines(&out.stderr);
    assert!(lines.len() >= 2, "an interval and the sum: {}", out.stderr);
    let sum = lines.last().unwrap();
    assert!(
        sum.contains("6.0k values") && sum.contains("3 done"),
        "{sum}"
    );
}

/// SIGTERM to `server`; its stderr lines up to the "stopped" line, and
/// what it wrote on stdout.
fn stop(server: &mut Server) -> (Vec<String>, String) {
    let mut stdout = server.child.stdout.take().expect("--json pipes stdout");
    let pid = server.child.id().to_string();
    let term = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let mut seen = Vec::new();
    loop {
        let line = server
            .wait_for(|_| true, Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no summary after SIGTERM; stderr: {seen:?}"));
        let last = line.starts_with("risp-udp server stopped");
        seen.push(line);
        if last {
            break;
        }
    }
    let mut text = String::new();
    stdout.read_to_string(&mut text).unwrap();
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    (seen, text)
}

#[test]
fn server_intervals_add_up_to_its_summary() {
    let mut server = Server::start(&["--interval", "0.05", "--json"]);
    let out = run(&[
        "load",
        "4",
        "20000",
        "--loss",
        "0.02",
        "--seed",
        "9",
        "--server",
        &server.server_arg(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let (stderr, stdout) = stop(&mut server);
    let j = json_of(&stdout);
    let intervals = j["intervals"].as_array().expect("an intervals array");
    assert!(!intervals.is_empty(), "{j}");
    assert!(u64_of(&j, "values_sent") >= 80_000, "{j}");
    assert_eq!(sum_of(intervals, "values"), u64_of(&j, "values_sent"));
    assert!(u64_of(&j, "retransmits") > 0, "--loss took effect: {j}");
    assert_eq!(sum_of(intervals, "retransmits"), u64_of(&j, "retransmits"));
    assert_eq!(u64_of(&j, "sessions_opened"), 4);
    assert_eq!(sum_of(intervals, "sessions_opened"), 4);
    let ended: u64 = ["sessions_closed", "sessions_aborted", "sessions_expired"]
        .iter()
        .map(|k| u64_of(&j, k))
        .sum();
    assert_eq!(sum_of(intervals, "sessions_closed"), ended);
    let rejected: u64 = j["rejected"]
        .as_object()
        .expect("rejected by reason")
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(sum_of(intervals, "rejected"), rejected);
    assert_in_order(intervals, true);
    assert!(j.get("intervals_dropped").is_none(), "{j}");
    assert_eq!(u64_of(intervals.last().unwrap(), "sessions_open"), 0);
    let text = stderr.join("\n");
    let lines = interval_lines(&text);
    assert_eq!(lines.len(), intervals.len() + 1, "{text}");
    let sum = lines.last().unwrap();
    assert!(
        sum.contains("4 opened") && sum.contains("4 closed"),
        "{sum}"
    );
}

/// `--interval` takes 0.01 to 3600 seconds; anything else is a usage
/// error that says so, for each command that has it.
#[test]
fn bad_interval_values_are_refused_clearly() {
    let cases = [
        ("0", "0 s: an interval is from 0.01 to 3600 seconds"),
        ("-1", "-1 s: an interval is from 0.01 to 3600 seconds"),
        ("abc", "`abc` is not a number of seconds"),
    ];
    for command in [
        &["load", "2", "100"][..],
        &["server", "--port", "0", "--health-port", "0"],
        &["client", "100"],
    ] {
        for (value, message) in cases {
            let mut args = command.to_vec();
            args.extend(["--interval", value]);
            let out: Output = run(&args);
            assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
            assert!(
                out.stderr.contains(message) && out.stderr.contains("--interval"),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
}

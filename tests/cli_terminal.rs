//! What `risp-udp` does when its output is a terminal, run through a
//! pseudo-terminal made by `script` (util-linux; the test skips with a
//! message where it is missing). Scripts and pipes get none of it: each
//! test also checks the same run without a terminal.

mod support;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use risp_udp::proto::server::ServerConfig;
use support::cli::{run, wait_bounded, BIN};
use support::loopback::TestServer;

/// Runs `risp-udp ARGS` with stdout and stderr on a pseudo-terminal and
/// returns everything it wrote there, or None where `script` is missing.
fn run_on_a_terminal(args: &[&str], env: &[(&str, &str)]) -> Option<String> {
    let mut line = String::from(BIN);
    for a in args {
        line.push_str(" '");
        line.push_str(&a.replace('\'', r"'\''"));
        line.push('\'');
    }
    let child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env_remove("NO_COLOR")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    match child {
        // Bounded: a hang fails with a message instead of hanging the suite.
        Ok(child) => {
            let out = wait_bounded(child, Duration::from_secs(60));
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => {
            eprintln!("skipped: `script` (util-linux) cannot run here: {e}");
            None
        }
    }
}

/// A client waiting for a silent server says what it waits for after
/// about a second on a terminal, and nothing of the kind in a pipe.
#[test]
fn a_waiting_client_says_so_on_a_terminal_only() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let args = [
        "client",
        "10",
        "--server",
        &addr,
        "--idle-timeout-ms",
        "1500",
    ];
    let Some(screen) = run_on_a_terminal(&args, &[]) else {
        return;
    };
    assert!(
        screen.contains(&format!("waiting for {addr}…")),
        "{screen:?}"
    );
    assert!(screen.contains("no answer from the server"), "{screen:?}");
    let piped = run(&args);
    assert_eq!(piped.code, Some(4), "{piped:?}");
    assert!(!piped.stderr.contains("waiting for"), "{piped:?}");
    drop(silent);
}

/// Logs are coloured on a terminal only, and not with `NO_COLOR`: a pipe
/// or file gets plain text (it got ANSI codes).
#[test]
fn log_colours_only_on_a_terminal_and_never_with_no_color() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let args = [
        "client",
        "10",
        "--server",
        &addr,
        "--idle-timeout-ms",
        "50",
        "--log-level",
        "info",
    ];
    let piped = run(&args);
    assert!(piped.stderr.contains("requesting sequence"), "{piped:?}");
    assert!(
        !piped.stderr.contains('\u{1b}'),
        "no ANSI in a pipe: {piped:?}"
    );
    let Some(screen) = run_on_a_terminal(&args, &[]) else {
        return;
    };
    assert!(screen.contains("requesting sequence"), "{screen:?}");
    assert!(
        screen.contains('\u{1b}'),
        "colour on a terminal: {screen:?}"
    );
    let plain = run_on_a_terminal(&args, &[("NO_COLOR", "1")]).unwrap();
    assert!(plain.contains("requesting sequence"), "{plain:?}");
    assert!(!plain.contains('\u{1b}'), "NO_COLOR: {plain:?}");
    drop(silent);
}

/// Strips ANSI escape sequences (CSI `ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The progress bar stays on one line of at most 80 columns and shows a
/// rounded rate (`172.1k values/s`, not `172,127.8573/s`); `--interval`
/// lines go above it. Against an in-process server.
#[test]
fn progress_bar_fits_80_columns_with_a_rounded_rate() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(ServerConfig::default()));
    let addr = server.addr.to_string();
    let args = [
        "client",
        "300000",
        "--server",
        &addr,
        "--max-window",
        "64",
        "--interval",
        "0.1",
    ];
    let Some(screen) = run_on_a_terminal(&args, &[("COLUMNS", "80")]) else {
        return;
    };
    let text = strip_ansi(&screen);
    let bars: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| l.contains("values/s eta"))
        .collect();
    assert!(!bars.is_empty(), "a progress bar was drawn: {text:?}");
    for bar in &bars {
        let width = bar.trim_end().chars().count();
        assert!(width <= 80, "{width} columns: {bar:?}");
        let rate = bar
            .split_whitespace()
            .rev()
            .nth(3)
            .unwrap_or_else(|| panic!("{bar:?}"));
        let digits = rate.trim_end_matches(['k', 'M', 'G']);
        assert!(
            digits.parse::<f64>().is_ok() && digits.split('.').nth(1).is_none_or(|d| d.len() <= 1),
            "rate {rate:?} in {bar:?}"
        );
    }
    assert!(
        text.contains("values/s  rexmit req"),
        "interval lines: {text:?}"
    );
    drop(server);
}

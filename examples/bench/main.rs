//! Loopback benchmark of the release `risp-udp` binary.
//!
//! ```text
//! cargo build --release --bins --examples
//! cargo run --release --example bench -- [--len 1000000] [--runs 3] [--loss 0,0.1] [--bin PATH]
//!     [--delay-ms 0,25] [--interval SECS]
//! ```
//!
//! For every one-way delay, every loss rate and every run it starts a fresh `risp-udp server` on
//! a free loopback port, waits for its "listening" line, runs one
//! `risp-udp client LEN --json` against it (the lossy-socket shim on the
//! client's socket drops `--loss` of the datagrams in both directions, with
//! a fixed `--netem-seed` per run), stops the server with SIGTERM and reads
//! its "stopped" line. It prints one row per run and the medians per
//! (delay, loss), and exits non-zero if any transfer was not verified.
//!
//! `--delay-ms MS[,MS...]` (default `0`) adds a long path: for each delay
//! the client runs with `--delay-ms MS`, so its shim holds every datagram
//! that long in each direction (a round trip of twice MS plus loopback's);
//! 0 passes no delay flag at all. Every delay runs the same `--runs` with
//! the same seeds. When a delay above 0 is measured, the bench also prints
//! the long-path ratios of the medians: each delay's median at each loss
//! over the no-delay clean median (when both 0 ms and 0% were measured),
//! and each loss over 0% at the same delay. `--interval SECS` passes
//! `--interval` to the client and prints every run's rate over time
//! (values/s per interval, and the window at the end).
//!
//! Each side is its own process, so each peak RSS (the kernel's VmHWM) is
//! that side's alone.
//!
//! First, in the same run, it measures the raw ceilings of loopback UDP
//! with 24-byte datagrams (see `probe.rs`): plain `sendto`/`recvfrom`, GSO
//! sends with `recvmmsg`, and GSO with GRO; at the end it prints risp-udp's
//! median over each. `--io plain` runs the binary with `RISP_IO=plain` (one
//! datagram per system call) for comparison. Each run also reads the
//! kernel's UDP `RcvbufErrors` counter (`/proc/net/snmp`, system-wide)
//! before and after: datagrams dropped because a receive buffer was full.

mod probe;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use clap::Parser;
use risp_udp::clock;
use serde_json::Value;

/// Streams LEN values over loopback through the release binary and reports
/// values/s, datagrams per value and peak RSS of both sides.
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Args {
    /// Values per transfer.
    #[arg(long, default_value_t = 1_000_000)]
    len: u32,
    /// Transfers per loss rate.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Loss rates (fractions, comma-separated), applied by the client's shim
    /// in both directions.
    #[arg(long, value_delimiter = ',', default_value = "0,0.1")]
    loss: Vec<f64>,
    /// The `risp-udp` binary (default: `risp-udp` next to this example's
    /// directory, i.e. target/release/risp-udp).
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Longest a single transfer may take, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Seconds of sending per raw-ceiling probe (0: no probes).
    #[arg(long, default_value_t = 1.0)]
    probe_secs: f64,
    /// Socket I/O of the risp-udp processes: `batched` or `plain` (sets
    /// RISP_IO).
    #[arg(long, default_value = "batched", value_parser = ["batched", "plain"])]
    io: String,
    /// The client's --max-window (default: the client's own default).
    #[arg(long)]
    max_window: Option<u32>,
    /// One-way delays in ms (comma-separated), applied by the client's
    /// shim in each direction; 0 adds none. Each delay runs every loss rate.
    #[arg(long, value_name = "MS[,MS...]", value_delimiter = ',', default_value = "0", value_parser = delay_ms)]
    delay_ms: Vec<f64>,
    /// Passes `--interval SECS` to the client and prints each run's rate
    /// over time.
    #[arg(long, value_name = "SECS")]
    interval: Option<f64>,
}

/// Parses one `--delay-ms` entry: a finite number of milliseconds, at
/// least 0.
fn delay_ms(s: &str) -> Result<f64, String> {
    let ms: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of milliseconds"))?;
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!("{s}: a delay is a finite number of ms, at least 0"));
    }
    Ok(ms)
}

/// One transfer's figures.
#[derive(Debug, Clone)]
struct Run {
    /// One-way delay of the client's shim, ms.
    delay_ms: f64,
    loss: f64,
    run: u32,
    verified: bool,
    values_per_sec: f64,
    elapsed_ms: f64,
    server_sent: u64,
    server_retransmitted: u64,
    client_sent: u64,
    timeouts: u64,
    rtt_p50_us: u64,
    rtt_p99_us: u64,
    /// Longest wait between two in-order values.
    stall_max_us: u64,
    client_rss_kb: Option<u64>,
    server_rss_kb: Option<u64>,
    /// The kernel's UDP RcvbufErrors counter's rise during the run.
    rcvbuf_errors: Option<u64>,
    /// Per `--interval`: values/s and the window at its end.
    intervals: Vec<(f64, u64)>,
}

/// A running server: the child and its stderr, line by line.
struct Server {
    child: Child,
    lines: Receiver<String>,
    port: u16,
}

impl Server {
    /// Starts a server on a free loopback port and waits for its listening
    /// line. The port is found by binding 127.0.0.1:0 and letting it go; if
    /// something else takes it in between the server fails to bind, and we
    /// try another.
    fn start(bin: &Path, io: &str) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let mut child = Command::new(bin)
                .args(["server", "--bind", "127.0.0.1", "--health-port", "0"])
                .args(["--port", &port.to_string()])
                .env("RISP_IO", io)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
            let lines = spawn_line_reader(child.stderr.take().ok_or("no server stderr")?);
            let mut server = Self { child, lines, port };
            match server.wait_for("risp-udp server listening on udp", Duration::from_secs(10)) {
                Ok(_) => return Ok(server),
                Err(seen) => {
                    last = seen;
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                }
            }
        }
        Err(format!("the server did not start; its stderr: {last}"))
    }

    /// The first stderr line containing `needle`, or everything seen if the
    /// stream ends or `timeout` passes first.
    fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        let deadline = clock::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(clock::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    seen.push(format!("(no `{needle}` within {timeout:?})"));
                    return Err(seen.join(" | "));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    seen.push("(stderr closed)".to_string());
                    return Err(seen.join(" | "));
                }
            }
        }
    }

    /// SIGTERM, then the "stopped" line, then the exit status.
    fn stop(mut self) -> Result<String, String> {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !killed.success() {
            return Err(format!("kill -TERM {pid} failed"));
        }
        let line = self.wait_for("risp-udp server stopped", Duration::from_secs(30));
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let line = line.map_err(|seen| format!("no stopped line after SIGTERM: {seen}"))?;
        if !status.success() {
            return Err(format!("server exited with {status}: {line}"));
        }
        Ok(line)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Only if `stop` did not run to the end (an error path).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn free_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("cannot bind: {e}"))?;
    let port = s.local_addr().map_err(|e| e.to_string())?.port();
    Ok(port)
}

fn spawn_line_reader(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The number after `key` in the server's stopped line, e.g. `sent 123`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Datagrams sent, retransmitted, and peak RSS (KiB) from the server's
/// stopped line.
fn parse_stopped(line: &str) -> Result<(u64, u64, Option<u64>), String> {
    let sent = number_after(line, ", sent ").ok_or_else(|| format!("no `sent` in: {line}"))?;
    let retx = number_after(line, &format!(", sent {sent} (")).unwrap_or(0);
    Ok((sent, retx, number_after(line, "peak RSS ")))
}

/// Runs one client; its JSON report.
fn run_client(
    bin: &Path,
    args: &Args,
    port: u16,
    (delay_ms, loss): (f64, f64),
    seed: u64,
) -> Result<Value, String> {
    let len = args.len;
    let timeout = Duration::from_secs(args.timeout_s);
    let mut cmd = Command::new(bin);
    cmd.env("RISP_IO", &args.io).arg("client");
    if let Some(w) = args.max_window {
        cmd.args(["--max-window", &w.to_string()]);
    }
    if delay_ms > 0.0 {
        cmd.args(["--delay-ms", &delay_ms.to_string()]);
    }
    if let Some(secs) = args.interval {
        cmd.args(["--interval", &secs.to_string()]);
    }
    let mut child = cmd
        .arg(len.to_string())
        .args(["--server", &format!("127.0.0.1:{port}"), "--json"])
        .args(["--loss", &loss.to_string()])
        .args([
            "--netem-seed",
            &seed.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the client: {e}"))?;
    let stdout = spawn_line_reader(child.stdout.take().ok_or("no client stdout")?);
    let stderr = spawn_line_reader(child.stderr.take().ok_or("no client stderr")?);
    // The client prints one JSON line and exits; the line arriving (or the
    // pipe closing) is the synchronisation.
    let line = match stdout.recv_timeout(timeout) {
        Ok(l) => Ok(l),
        Err(e) => {
            let _ = child.kill();
            Err(format!("no report from the client ({e:?})"))
        }
    };
    let status = child.wait().map_err(|e| e.to_string())?;
    let errors: Vec<String> = stderr.iter().collect();
    let line = line.map_err(|e| format!("{e}; stderr: {}", errors.join(" | ")))?;
    let report: Value = serde_json::from_str(&line)
        .map_err(|e| format!("client report is not JSON ({e}): {line}"))?;
    if !status.success() {
        eprintln!(
            "client exited with {status}: {}",
            report["error"].as_str().unwrap_or("?")
        );
    }
    Ok(report)
}

fn one(bin: &Path, args: &Args, delay_ms: f64, loss: f64, run: u32) -> Result<Run, String> {
    let server = Server::start(bin, &args.io)?;
    // A fixed seed per (loss, run), the same at every delay: the same drop
    // decisions every time.
    let seed = 1000 * u64::from(run) + (loss * 1000.0).round() as u64 + 1;
    let drops_before = rcvbuf_errors();
    let report = run_client(bin, args, server.port, (delay_ms, loss), seed);
    let drops_after = rcvbuf_errors();
    let stopped = server.stop()?;
    let report = report?;
    let (server_sent, server_retransmitted, server_rss_kb) = parse_stopped(&stopped)?;
    let u = |k: &str| report[k].as_u64().unwrap_or(0);
    let verified = report["verified"].as_bool() == Some(true)
        && report["delivered"].as_u64() == Some(u64::from(args.len));
    Ok(Run {
        delay_ms,
        loss,
        run,
        verified,
        values_per_sec: report["values_per_sec"].as_f64().unwrap_or(0.0),
        elapsed_ms: report["elapsed_ms"].as_f64().unwrap_or(0.0),
        server_sent,
        server_retransmitted,
        client_sent: u("datagrams_sent"),
        timeouts: u("timeouts"),
        rtt_p50_us: summary(&report, "rtt", "p50"),
        rtt_p99_us: summary(&report, "rtt", "p99"),
        stall_max_us: summary(&report, "stall", "max"),
        client_rss_kb: report["peak_rss_kb"].as_u64(),
        server_rss_kb,
        rcvbuf_errors: drops_before
            .zip(drops_after)
            .map(|(b, a)| a.saturating_sub(b)),
        intervals: intervals(&report),
    })
}

/// The client report's `intervals`: values/s and the window at the end of
/// each (empty without `--interval`).
fn intervals(report: &Value) -> Vec<(f64, u64)> {
    report["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["values_per_s"].as_f64().unwrap_or(0.0),
                        i["window"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The UDP `RcvbufErrors` counter of `/proc/net/snmp` (Linux; system-wide).
fn rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    parse_rcvbuf_errors(&snmp)
}

/// `RcvbufErrors` from the two `Udp:` lines (names, then values).
fn parse_rcvbuf_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// A percentile of one of the client report's summaries, in µs: `rtt.p50_us`
/// (or, from binaries before the keys were unified, `rtt_us.p50`).
fn summary(report: &Value, what: &str, key: &str) -> u64 {
    report[what][format!("{key}_us")]
        .as_u64()
        .or_else(|| report[format!("{what}_us")][key].as_u64())
        .unwrap_or(0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => xs[n / 2],
        _ => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn rss(kb: Option<u64>) -> String {
    kb.map_or_else(|| "-".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
}

/// The delay column's cell (`| 25 `), or nothing when no delay is measured.
fn delay_cell(show: bool, delay_ms: f64) -> String {
    if show {
        format!("| {delay_ms} ")
    } else {
        String::new()
    }
}

/// "25 ms, 10% loss", or "10% loss" when no delay is measured.
fn label(show_delay: bool, delay_ms: f64, loss: f64) -> String {
    if show_delay {
        format!("{delay_ms} ms, {:.0}% loss", loss * 100.0)
    } else {
        format!("{:.0}% loss", loss * 100.0)
    }
}

fn header(show_delay: bool) {
    let (d, s) = if show_delay {
        ("| delay ms ", "|---:")
    } else {
        ("", "")
    };
    println!(
        "{d}| loss | run | values/s | elapsed ms | srv dgrams/value (min) | srv retx | cli dgrams/value | timeouts | RTT p50 µs | RTT p99 µs | max stall ms | cli RSS MiB | srv RSS MiB | rcvbuf drops | verified |"
    );
    println!("{s}|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|");
}

fn row(r: &Run, len: u32, show_delay: bool) {
    let n = f64::from(len);
    println!(
        "{}| {:.0}% | {} | {:.0} | {:.0} | {:.3} ({:.3}) | {} | {:.3} | {} | {} | {} | {:.2} | {} | {} | {} | {} |",
        delay_cell(show_delay, r.delay_ms),
        r.loss * 100.0,
        r.run,
        r.values_per_sec,
        r.elapsed_ms,
        r.server_sent as f64 / n,
        1.0 / (1.0 - r.loss),
        r.server_retransmitted,
        r.client_sent as f64 / n,
        r.timeouts,
        r.rtt_p50_us,
        r.rtt_p99_us,
        r.stall_max_us as f64 / 1000.0,
        rss(r.client_rss_kb),
        rss(r.server_rss_kb),
        r.rcvbuf_errors.map_or_else(|| "-".to_string(), |n| n.to_string()),
        if r.verified { "yes" } else { "NO" }
    );
}

/// Measures and prints the raw ceilings.
fn probes(secs: f64) -> Vec<(&'static str, f64)> {
    if secs <= 0.0 {
        return Vec::new();
    }
    println!("Raw ceilings (24-byte datagrams, loopback, {secs} s of sending each):");
    println!();
    println!("| path | datagrams/s | delivered | GSO segments | GRO segments |");
    println!("|---|---:|---:|---:|---:|");
    let mut out = Vec::new();
    for mode in probe::MODES {
        match probe::measure(mode, secs) {
            Ok(c) => {
                println!(
                    "| {} | {:.0} | {:.1}% | {} | {} |",
                    mode.name,
                    c.per_sec,
                    c.delivered * 100.0,
                    c.gso,
                    c.gro
                );
                out.push((mode.name, c.per_sec));
            }
            Err(e) => eprintln!("error: probe {}: {e}", mode.name),
        }
    }
    println!();
    out
}

/// The median values/s of one (delay, loss) pair.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Cell {
    delay_ms: f64,
    loss: f64,
    values_per_sec: f64,
}

/// The median values/s of every (delay, loss) pair that has samples, in
/// the order of `delays` then `losses`; `samples` are (delay ms, loss,
/// values/s) of single runs.
fn cell_medians(delays: &[f64], losses: &[f64], samples: &[(f64, f64, f64)]) -> Vec<Cell> {
    let mut cells = Vec::new();
    for &delay_ms in delays {
        for &loss in losses {
            let v: Vec<f64> = samples
                .iter()
                .filter(|s| s.0 == delay_ms && s.1 == loss)
                .map(|s| s.2)
                .collect();
            if !v.is_empty() {
                cells.push(Cell {
                    delay_ms,
                    loss,
                    values_per_sec: median(v),
                });
            }
        }
    }
    cells
}

/// One long-path ratio of two medians: `of` over `to`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ratio {
    of: Cell,
    to: Cell,
}

impl Ratio {
    fn value(&self) -> f64 {
        self.of.values_per_sec / self.to.values_per_sec
    }
}

/// The long-path ratios: every delayed pair (delay above 0, any loss) over
/// the no-delay clean median when there is one, then at each delay every
/// loss above 0 over the clean median of the same delay.
fn long_path_ratios(cells: &[Cell]) -> Vec<Ratio> {
    let clean_at = |delay: f64| {
        cells
            .iter()
            .find(|c| c.delay_ms == delay && c.loss == 0.0)
            .copied()
    };
    let mut out = Vec::new();
    if let Some(base) = clean_at(0.0) {
        for c in cells.iter().filter(|c| c.delay_ms > 0.0) {
            out.push(Ratio { of: *c, to: base });
        }
    }
    for c in cells.iter().filter(|c| c.loss > 0.0) {
        if let Some(clean) = clean_at(c.delay_ms) {
            out.push(Ratio { of: *c, to: clean });
        }
    }
    out
}

/// risp-udp's no-delay medians over the ceilings, and each loss rate over
/// 0%.
fn ratios(cells: &[Cell], ceilings: &[(&str, f64)]) {
    let loopback: Vec<&Cell> = cells.iter().filter(|c| c.delay_ms == 0.0).collect();
    if loopback.is_empty() {
        return;
    }
    let clean = loopback
        .iter()
        .find(|c| c.loss == 0.0)
        .map(|c| c.values_per_sec);
    println!();
    println!("Ratios (median values/s, no delay):");
    println!();
    for c in loopback {
        let m = c.values_per_sec;
        let mut parts: Vec<String> = ceilings
            .iter()
            .map(|(name, c)| format!("{:.2}× {name}", m / c))
            .collect();
        if let (Some(clean), true) = (clean, c.loss > 0.0) {
            parts.push(format!("{:.2}× risp-udp at 0%", m / clean));
        }
        let over = if parts.is_empty() {
            String::new()
        } else {
            format!(" = {}", parts.join(", "))
        };
        println!("- {:.0}% loss: {m:.0} values/s{over}", c.loss * 100.0);
    }
}

/// Prints [`long_path_ratios`] (nothing when no delay above 0 ran, or
/// there is no clean median to divide by).
fn print_long_path_ratios(cells: &[Cell]) {
    let ratios = long_path_ratios(cells);
    if ratios.is_empty() || !cells.iter().any(|c| c.delay_ms > 0.0) {
        return;
    }
    println!();
    println!("Long-path ratios (median values/s):");
    println!();
    for r in ratios {
        println!(
            "- {} / {}: {:.3}× ({:.0} / {:.0})",
            label(true, r.of.delay_ms, r.of.loss),
            label(true, r.to.delay_ms, r.to.loss),
            r.value(),
            r.of.values_per_sec,
            r.to.values_per_sec
        );
    }
}

/// Prints each run's values/s per interval (`--interval`).
fn print_intervals(runs: &[Run], secs: f64, show_delay: bool) {
    if runs.iter().all(|r| r.intervals.is_empty()) {
        return;
    }
    println!();
    println!("Rate over time (k values/s per {secs} s interval; the window at the end):");
    println!();
    for r in runs {
        let rates: Vec<String> = r
            .intervals
            .iter()
            .map(|(v, _)| format!("{:.0}", v / 1000.0))
            .collect();
        let window = r.intervals.last().map_or(0, |i| i.1);
        println!(
            "- {}, run {}: {} (window {window})",
            label(show_delay, r.delay_ms, r.loss),
            r.run,
            rates.join(" ")
        );
    }
}

/// Prints the medians per (delay, loss) pair.
fn print_medians(args: &Args, runs: &[Run], show_delay: bool) {
    let n = f64::from(args.len);
    println!();
    println!(
        "{}",
        if show_delay {
            "Medians per (delay, loss):"
        } else {
            "Medians per loss rate:"
        }
    );
    println!();
    let (d, s) = if show_delay {
        ("| delay ms ", "|---:")
    } else {
        ("", "")
    };
    println!(
        "{d}| loss | runs | values/s | elapsed ms | srv dgrams/value (min) | cli dgrams/value | timeouts | RTT p50 µs | RTT p99 µs | max stall ms | cli RSS MiB | srv RSS MiB |"
    );
    println!("{s}|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &delay in &args.delay_ms {
        for &loss in &args.loss {
            let rs: Vec<&Run> = runs
                .iter()
                .filter(|r| r.delay_ms == delay && r.loss == loss)
                .collect();
            if rs.is_empty() {
                continue;
            }
            let m = |f: &dyn Fn(&Run) -> f64| median(rs.iter().map(|r| f(r)).collect());
            let m_rss = |f: &dyn Fn(&Run) -> Option<u64>| {
                let v: Vec<f64> = rs.iter().filter_map(|r| f(r)).map(|k| k as f64).collect();
                if v.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1}", median(v) / 1024.0)
                }
            };
            println!(
                "{}| {:.0}% | {} | {:.0} | {:.0} | {:.3} ({:.3}) | {:.3} | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} |",
                delay_cell(show_delay, delay),
                loss * 100.0,
                rs.len(),
                m(&|r| r.values_per_sec),
                m(&|r| r.elapsed_ms),
                m(&|r| r.server_sent as f64 / n),
                1.0 / (1.0 - loss),
                m(&|r| r.client_sent as f64 / n),
                m(&|r| r.timeouts as f64),
                m(&|r| r.rtt_p50_us as f64),
                m(&|r| r.rtt_p99_us as f64),
                m(&|r| r.stall_max_us as f64) / 1000.0,
                m_rss(&|r| r.client_rss_kb),
                m_rss(&|r| r.server_rss_kb),
            );
        }
    }
}

fn default_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/release/examples/bench -> target/release/risp-udp
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?;
    Ok(dir.join(format!("risp-udp{}", std::env::consts::EXE_SUFFIX)))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(bad) = args.loss.iter().find(|p| !(0.0..1.0).contains(*p)) {
        eprintln!("error: --loss {bad}: each rate must be in [0, 1)");
        return ExitCode::from(2);
    }
    let bin = match args.bin.clone().map_or_else(default_bin, Ok) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !bin.is_file() {
        eprintln!(
            "error: {} not found. Build the release binary first:\n    cargo build --release --bins --examples\nor pass --bin PATH.",
            bin.display()
        );
        return ExitCode::FAILURE;
    }
    if cfg!(debug_assertions) {
        eprintln!("note: this is a debug build of the bench driver; the timed binary is {} (it should be a release build)", bin.display());
    }
    let show_delay = args.delay_ms.iter().any(|&d| d > 0.0);
    let delays = if show_delay {
        let list: Vec<String> = args.delay_ms.iter().map(f64::to_string).collect();
        format!(", one-way delay {} ms", list.join("/"))
    } else {
        String::new()
    };
    println!(
        "risp-udp loopback bench: {} values per transfer, {} run(s) per loss rate{delays}, {} I/O, binary {}",
        args.len,
        args.runs,
        args.io,
        bin.display()
    );
    println!();
    let ceilings = probes(args.probe_secs);
    header(show_delay);
    let mut runs = Vec::new();
    let mut failed = false;
    for &delay in &args.delay_ms {
        for &loss in &args.loss {
            for run in 1..=args.runs {
                match one(&bin, &args, delay, loss, run) {
                    Ok(r) => {
                        row(&r, args.len, show_delay);
                        failed |= !r.verified;
                        runs.push(r);
                    }
                    Err(e) => {
                        eprintln!("error: delay {delay} ms, loss {loss}, run {run}: {e}");
                        failed = true;
                    }
                }
            }
        }
    }
    print_medians(&args, &runs, show_delay);
    let samples: Vec<(f64, f64, f64)> = runs
        .iter()
        .map(|r| (r.delay_ms, r.loss, r.values_per_sec))
        .collect();
    let cells = cell_medians(&args.delay_ms, &args.loss, &samples);
    ratios(&cells, &ceilings);
    print_long_path_ratios(&cells);
    if let Some(secs) = args.interval {
        print_intervals(&runs, secs, show_delay);
    }
    if failed {
        eprintln!("error: at least one transfer was not verified");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_line_is_parsed() {
        let line = "risp-udp server stopped: sessions opened 1, closed 1, expired 0; datagrams received 4000, sent 1111200 (11200 retransmitted); rejected: none; peak RSS 7340 KiB";
        assert_eq!(parse_stopped(line), Ok((1_111_200, 11_200, Some(7340))));
        let old = "risp-udp server stopped: sessions opened 1, closed 1, expired 0; datagrams received 4, sent 9 (0 retransmitted); rejected: none";
        assert_eq!(parse_stopped(old), Ok((9, 0, None)));
    }

    #[test]
    fn rcvbuf_errors_are_read_from_snmp() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 12 3 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(parse_rcvbuf_errors(snmp), Some(3));
        assert_eq!(parse_rcvbuf_errors("Udp: InDatagrams\nUdp: 5\n"), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn delays_are_parsed() {
        let args = Args::try_parse_from(["bench"]).unwrap();
        assert_eq!(args.delay_ms, vec![0.0], "no flag: no delay, as before");
        let args = Args::try_parse_from(["bench", "--delay-ms", "0,25,12.5"]).unwrap();
        assert_eq!(args.delay_ms, vec![0.0, 25.0, 12.5]);
        let args = Args::try_parse_from(["bench", "--delay-ms", "100"]).unwrap();
        assert_eq!(args.delay_ms, vec![100.0]);
        for bad in ["-1", "x", "inf", "NaN", "0,,25"] {
            assert!(
                Args::try_parse_from(["bench", "--delay-ms", bad]).is_err(),
                "--delay-ms {bad} is refused"
            );
        }
        assert_eq!(delay_ms(" 25 "), Ok(25.0));
        assert!(delay_ms("-0.5").is_err());
    }

    fn cell(delay_ms: f64, loss: f64, values_per_sec: f64) -> Cell {
        Cell {
            delay_ms,
            loss,
            values_per_sec,
        }
    }

    #[test]
    fn cell_medians_are_per_delay_and_loss() {
        let samples = [
            (0.0, 0.0, 100.0),
            (25.0, 0.0, 10.0),
            (0.0, 0.0, 300.0),
            (0.0, 0.1, 50.0),
            (25.0, 0.0, 30.0),
            (0.0, 0.0, 200.0),
            (25.0, 0.0, 20.0),
        ];
        let cells = cell_medians(&[0.0, 25.0], &[0.0, 0.1], &samples);
        // 25 ms at 10% has no samples: no cell.
        assert_eq!(
            cells,
            vec![
                cell(0.0, 0.0, 200.0),
                cell(0.0, 0.1, 50.0),
                cell(25.0, 0.0, 20.0)
            ]
        );
    }

    #[test]
    fn long_path_ratios_are_over_the_no_delay_clean_median_and_each_delays_clean() {
        let cells = [
            cell(0.0, 0.0, 1000.0),
            cell(0.0, 0.1, 800.0),
            cell(25.0, 0.0, 600.0),
            cell(25.0, 0.1, 300.0),
        ];
        // (delay, loss) over (delay, loss): the ratio.
        let got: Vec<[f64; 5]> = long_path_ratios(&cells)
            .iter()
            .map(|r| {
                [
                    r.of.delay_ms,
                    r.of.loss,
                    r.to.delay_ms,
                    r.to.loss,
                    r.value(),
                ]
            })
            .collect();
        assert_eq!(
            got,
            vec![
                [25.0, 0.0, 0.0, 0.0, 0.6],
                [25.0, 0.1, 0.0, 0.0, 0.3],
                [0.0, 0.1, 0.0, 0.0, 0.8],
                [25.0, 0.1, 25.0, 0.0, 0.5],
            ]
        );
        // Without a no-delay clean run only the per-delay loss ratios remain.
        let delayed_only = long_path_ratios(&cells[2..]);
        assert_eq!(delayed_only.len(), 1);
        assert_eq!(delayed_only[0].value(), 0.5);
        // Without any clean run there is nothing to divide by.
        assert!(long_path_ratios(&[cells[1], cells[3]]).is_empty());
    }

    #[test]
    fn intervals_are_read_from_the_report() {
        let report: Value = serde_json::from_str(
            r#"{"intervals":[{"values_per_s":72100.5,"window":10082},{"values_per_s":134000.0,"window":12000}]}"#,
        )
        .unwrap();
        assert_eq!(
            intervals(&report),
            vec![(72100.5, 10082), (134000.0, 12000)]
        );
        assert!(intervals(&serde_json::json!({"verified": true})).is_empty());
    }

    #[test]
    fn labels_name_the_delay_only_when_one_is_measured() {
        assert_eq!(label(false, 0.0, 0.1), "10% loss");
        assert_eq!(label(true, 25.0, 0.1), "25 ms, 10% loss");
        assert_eq!(delay_cell(false, 25.0), "");
        assert_eq!(delay_cell(true, 12.5), "| 12.5 ");
    }
}

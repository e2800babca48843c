//! The built `risp-udp` binary, run to its end.
//!
//! A `risp-udp server` process logs each session's seed in its "session
//! opened" line (at `--log-level info`, which [`ServerProcess`] turns on
//! unless the test chooses a level), and [`run_client_checked`] runs a
//! client with `--output FILE` and checks every value it wrote against
//! [`super::expected`]'s reference.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use risp_udp::clock;
use uuid::Uuid;

use super::expected::{Expected, SessionSeeds};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_risp-udp");
/// The longest any one process may take before the test gives up on it.
pub const PROCESS_DEADLINE: Duration = Duration::from_secs(30);

/// What a finished process printed and exited with.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs `risp-udp ARGS` to its end (killed after [`PROCESS_DEADLINE`]).
pub fn run(args: &[&str]) -> Output {
    run_with_env(args, &[])
}

/// Like [`run`] with extra environment variables.
pub fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = clock::now();
    let child = cmd.spawn().expect("spawn risp-udp");
    let out = wait_bounded(child, PROCESS_DEADLINE);
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// Waits for `child` to end and collects its output; kills it (SIGKILL)
/// and fails the test if it runs longer than `limit`, so a hang is a
/// failure with a message, never a hung test.
pub fn wait_bounded(child: Child, limit: Duration) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for the process"),
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("process {pid} did not finish within {limit:?}");
        }
    }
}

/// Runs `risp-udp ARGS`, reads the first line it prints on stdout, then
/// closes stdout (as `| head -1` does) and waits for the end (killed after
/// [`PROCESS_DEADLINE`]). Returns the line and what the process did after.
pub fn run_closing_stdout_after_one_line(args: &[&str]) -> (String, Output) {
    use std::io::{BufRead, BufReader, Read};
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = clock::now();
    let mut child = cmd.spawn().expect("spawn risp-udp");
    let mut first = String::new();
    {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut first).expect("read the first line");
        // Dropping the reader closes the pipe's read end.
    }
    let pid = child.id();
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send((child.wait(), text));
    });
    match rx.recv_timeout(PROCESS_DEADLINE) {
        Ok((status, stderr)) => {
            let status = status.expect("wait for risp-udp");
            let out = Output {
                code: status.code(),
                stdout: String::new(),
                stderr,
                elapsed: started.elapsed(),
            };
            (first.trim_end().to_string(), out)
        }
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("risp-udp {args:?} did not finish within {PROCESS_DEADLINE:?} after its stdout closed");
        }
    }
}

/// A running `risp-udp server`, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every stderr line after the "listening" line, as it is printed.
    pub stderr: Receiver<String>,
    /// Session seeds from its "session opened" lines, whoever reads
    /// [`stderr`](Self::stderr); notified as each arrives.
    seeds: Arc<(Mutex<HashMap<Uuid, u64>>, Condvar)>,
}

/// The UUID and seed of a server's "session opened" log line, in the text
/// format (`uuid=... seed=...`) or `--env prod`'s JSON.
fn opened_session(line: &str) -> Option<(Uuid, u64)> {
    if !line.contains("session opened") {
        return None;
    }
    if line.starts_with('{') {
        let j: serde_json::Value = serde_json::from_str(line).ok()?;
        let f = &j["fields"];
        return Some((f["uuid"].as_str()?.parse().ok()?, f["seed"].as_u64()?));
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_string)
    };
    Some((field("uuid=")?.parse().ok()?, field("seed=")?.parse().ok()?))
}

impl ServerProcess {
    /// Starts a server on an ephemeral loopback port with `args` added and
    /// waits for its "listening" line. It logs at `info` (its session
    /// seeds) unless `args` or the environment set a level.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        // With --json, stdout is the test's to read (`child.stdout`): the
        // server writes one object there as it stops.
        let stdout = if args.contains(&"--json") {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.arg("server")
            .args(["--bind", "127.0.0.1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped());
        // Unless the test sets them, port 0 and no health endpoint.
        if !args.iter().any(|a| a.starts_with("--port"))
            && !env.iter().any(|(k, _)| *k == "RISP_PORT")
        {
            cmd.args(["--port", "0"]);
        }
        if !args.iter().any(|a| a.starts_with("--health")) {
            cmd.args(["--health-port", "0"]);
        }
        if !args.iter().any(|a| a.starts_with("--log"))
            && std::env::var_os("RISP_LOG_LEVEL").is_none()
            && !env.iter().any(|(k, _)| *k == "RISP_LOG_LEVEL")
        {
            cmd.args(["--log-level", "info"]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn risp-udp server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let seeds = Arc::new((Mutex::new(HashMap::new()), Condvar::new()));
        let record = seeds.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some((uuid, seed)) = opened_session(&line) {
                    let (map, arrived) = &*record;
                    map.lock().unwrap().insert(uuid, seed);
                    arrived.notify_all();
                }
                // The receiver may be gone (dropped with the test's
                // interest); seeds are still recorded.
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: rx,
            seeds,
        };
        let line = server
            .wait_for_line("risp-udp server listening on udp ", Duration::from_secs(10))
            .unwrap_or_else(|seen| panic!("server never said it was listening; stderr: {seen:?}"));
        let addr = line
            .strip_prefix("risp-udp server listening on udp ")
            .and_then(|rest| rest.split_whitespace().next())
            .expect("address after the prefix");
        server.addr = addr.parse().expect("a socket address");
        assert_ne!(server.addr.port(), 0, "{line}");
        server
    }

    /// The first stderr line starting with `prefix` within `timeout`; on
    /// failure, every line seen.
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> Result<String, Vec<String>> {
        self.wait_for(|line| line.starts_with(prefix), timeout)
    }

    /// The first stderr line containing `needle` within `timeout`.
    pub fn wait_for_line_containing(
        &self,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, Vec<String>> {
        self.wait_for(|line| line.contains(needle), timeout)
    }

    /// The first stderr line that `wanted` accepts within `timeout`; on
    /// failure, every line seen.
    pub fn wait_for(
        &self,
        wanted: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String, Vec<String>> {
        let deadline = clock::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(clock::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if wanted(&line) => return Ok(line),
                Ok(line) => seen.push(line),
                Err(_) => return Err(seen),
            }
        }
    }

    pub fn server_arg(&self) -> String {
        self.addr.to_string()
    }
}

impl SessionSeeds for ServerProcess {
    /// From its "session opened" line, waiting up to 10 s for it (the line
    /// is written before the server's first answer, but read by a thread).
    fn session_seed(&self, uuid: Uuid) -> u64 {
        let (map, arrived) = &*self.seeds;
        let (map, _) = arrived
            .wait_timeout_while(map.lock().unwrap(), Duration::from_secs(10), |m| {
                !m.contains_key(&uuid)
            })
            .unwrap();
        *map.get(&uuid).unwrap_or_else(|| {
            panic!("no \"session opened\" line with seed= for {uuid} (is the server at --log-level info?)")
        })
    }
}

impl ServerProcess {
    /// The one session this server opened (waiting up to 10 s for its
    /// line): for a client whose report names no UUID. Panics if there
    /// were more.
    pub fn sole_session(&self) -> (Uuid, u64) {
        let (map, arrived) = &*self.seeds;
        let (map, _) = arrived
            .wait_timeout_while(map.lock().unwrap(), Duration::from_secs(10), |m| {
                m.is_empty()
            })
            .unwrap();
        assert_eq!(map.len(), 1, "sessions opened: {map:?}");
        map.iter().map(|(u, s)| (*u, *s)).next().unwrap()
    }
}

/// The session UUID a client's report names: `uuid` of its `--json`
/// object on stdout, or the `uuid` line of its human report (stdout, or
/// stderr with `--print`).
pub fn reported_uuid(out: &Output) -> Uuid {
    report_field(out, "uuid")
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no session UUID in the report: {out:?}"))
}

/// The length a client's report names (`len` in JSON, `N of LEN
/// delivered` in the human report).
pub fn reported_len(out: &Output) -> u32 {
    report_field(out, "len")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no length in the report: {out:?}"))
}

/// `name` (`uuid` or `len`) from a client's JSON or human report.
fn report_field(out: &Output, name: &str) -> Option<String> {
    if let Ok(j) = serde_json::from_str::<serde_json::Value>(out.stdout.trim()) {
        return match &j[name] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
    }
    let text = format!("{}\n{}", out.stdout, out.stderr);
    let line = |key: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(key))
            .map(str::trim)
    };
    match name {
        "uuid" => line("uuid ").map(str::to_string),
        // "values      D of LEN delivered, checksum C"
        _ => line("values ")?
            .split(" of ")
            .nth(1)?
            .split_whitespace()
            .next()
            .map(str::to_string),
    }
}

/// Checks the values a client wrote (`--output FILE` or `--print`: one
/// decimal value a line, in index order) against `expected`: all of them,
/// or with `complete` false the first ones.
pub fn check_values_text(expected: &Expected, text: &str, complete: bool) -> Result<(), String> {
    let values = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            l.parse::<u32>()
                .map_err(|_| format!("line {}: not a value: {l:?}", i + 1))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    if complete {
        expected.check(&values)
    } else {
        expected.check_prefix(&values)
    }
}

/// Runs `risp-udp client ARGS` (with `env`) adding `--output FILE`; when
/// it exits 0, checks every value in the file against the session the
/// report names, the seed coming from `server`. Returns the output for the
/// test's own assertions (an exit other than 0 is left to them).
pub fn run_client_checked(
    server: &impl SessionSeeds,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    assert!(
        !args.iter().any(|a| a.starts_with("--output")),
        "run_client_checked adds its own --output"
    );
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("values.txt");
    let file_arg = file.to_str().expect("a UTF-8 path").to_string();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--output", &file_arg]);
    let out = run_with_env(&all, env);
    if out.code == Some(0) {
        let uuid = reported_uuid(&out);
        let expected = server.expected(uuid, reported_len(&out));
        let text = std::fs::read_to_string(&file).expect("the --output file");
        if let Err(e) = check_values_text(&expected, &text, true) {
            panic!("session {uuid}: {e}; {out:?}");
        }
    }
    out
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request against the health port: (status code, body).
pub fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect to health port");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(conn, "{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).unwrap();
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {resp:?}"));
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

//! The built `risp-udp` binary, run to its end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use risp_udp::clock;

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
}

impl ServerProcess {
    /// Starts a server on an ephemeral loopback port with `args` added and
    /// waits for its "listening" line.
    pub fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("server")
            .args(["--bind", "127.0.0.1"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
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
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn risp-udp server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: rx,
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

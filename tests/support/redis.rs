//! A real `redis-server` on a free loopback port, for the tests of the
//! shared session store: started with no persistence in a temporary
//! directory, stopped (or killed) on demand and on drop, restartable on
//! the same port.
//!
//! Where the binary is missing, [`RedisServer::start`] returns `None` after
//! printing why, and the test returns early, unless
//! `RISP_REQUIRE_REDIS=1` (set by `.ci/run`, which installs the package):
//! then a missing binary fails the test, so CI never skips silently.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use risp_udp::clock;

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// Whether `redis-server` can be run here.
fn available() -> bool {
    Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING; `None`
    /// (with a message) if `redis-server` is not installed.
    pub fn start() -> Option<Self> {
        if !available() {
            if std::env::var("RISP_REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("RISP_REQUIRE_REDIS=1 but redis-server is not installed");
            }
            eprintln!("skipping: redis-server is not installed (apt-get install redis-server)");
            return None;
        }
        let port = free_port();
        let mut r = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        r.restart();
        Some(r)
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts it again on the same port (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill)), empty.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = clock::now() + Duration::from_secs(10);
        while self.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(clock::now() < deadline, "redis-server never answered PING");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops it (SIGTERM, as an operator would) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Sends one command and returns the first line of the reply (`+OK`,
    /// `:1`, `$5`...), or `None` if it does not answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        conn.write_all(&encode(args)).ok()?;
        let mut line = String::new();
        BufReader::new(conn).read_line(&mut line).ok()?;
        Some(line.trim_end().to_string())
    }

    /// A bulk-string reply (`INFO commandstats`), whole.
    pub fn bulk(&self, args: &[&str]) -> Option<String> {
        let conn = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        (&conn).write_all(&encode(args)).ok()?;
        let mut r = BufReader::new(conn);
        let mut head = String::new();
        r.read_line(&mut head).ok()?;
        let n: usize = head.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut body = vec![0u8; n];
        r.read_exact(&mut body).ok()?;
        String::from_utf8(body).ok()
    }

    /// Calls of one command so far (`INFO commandstats`), e.g. `"set"`.
    pub fn calls(&self, command: &str) -> u64 {
        let info = self.bulk(&["INFO", "commandstats"]).unwrap_or_default();
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Keys held (`DBSIZE`).
    pub fn dbsize(&self) -> u64 {
        self.command(&["DBSIZE"])
            .and_then(|l| l.strip_prefix(':').and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command in the protocol's array-of-bulk-strings form.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

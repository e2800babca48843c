//! The built `risp-udp` binary, run to its end.

use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
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
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(PROCESS_DEADLINE) {
        Ok(out) => {
            let out = out.expect("wait for risp-udp");
            Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                elapsed: started.elapsed(),
            }
        }
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("risp-udp {args:?} did not finish within {PROCESS_DEADLINE:?}");
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

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

//! Kernel-level tests through two network namespaces, driving the scripts in
//! `netem/scripts/`:
//!
//! - the scripts on their own: setup, impairment (netem or the nftables
//!   fallback), idempotent teardown, argument checking;
//! - the TCP pair at 10 % loss through `netns-run.sh --tcp` with this build's
//!   binary.
//!
//! Each test skips with a printed "skipped: <reason>" when not root, when
//! namespaces cannot be created, or (the TCP run) while the binary has no
//! `tcp-server` subcommand. Namespace names are unique per run and always
//! torn down, also when a test fails.

use std::process::Command;

use netns_support::{
    namespaces_unavailable, netns_exists, script, script_with_env, unique_prefix, Teardown,
};

const BIN: &str = env!("CARGO_BIN_EXE_risp-udp");

fn skip_reason(prefix: &str) -> Option<String> {
    if let Some(reason) = namespaces_unavailable(prefix) {
        return Some(reason);
    }
    match Command::new(BIN).args(["tcp-server", "--help"]).output() {
        // A binary without the subcommand may still exit 0 (the early stub
        // does), so look for the subcommand's own flag in its help.
        Ok(out)
            if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--bind") =>
        {
            None
        }
        Ok(_) => Some(format!("{BIN} has no tcp-server subcommand yet")),
        Err(e) => Some(format!("cannot run {BIN}: {e}")),
    }
}

#[test]
fn tcp_transfer_through_namespaces_at_10_percent_loss() {
    let prefix = unique_prefix("t");
    if let Some(reason) = skip_reason(&prefix) {
        println!("skipped: {reason}");
        return;
    }
    let _teardown = Teardown(prefix.clone());

    let out = script_with_env(
        &prefix,
        "netns-run.sh",
        &["--tcp", "--len", "100000", "--loss", "0.1"],
        &[("RISP_UDP_BIN", BIN), ("RISP_RUN_TIMEOUT", "120")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "netns-run.sh failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("report is not JSON ({e}): {stdout}"));
    assert_eq!(report["verified"], true, "{report}");
    assert_eq!(report["len"], 100_000, "{report}");
    assert!(report["elapsed_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    // The loss was really applied: some packets were dropped.
    let dropped: u64 = stderr
        .lines()
        .filter(|l| l.contains("dropped"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.parse::<u64>().ok()))
        .sum();
    assert!(dropped > 0, "no packet was dropped at 10 % loss:\n{stderr}");

    // The runner tore everything down itself.
    assert!(!netns_exists(&format!("{prefix}-a")));
    assert!(!netns_exists(&format!("{prefix}-b")));
}

#[test]
fn setup_impair_and_teardown_twice() {
    let prefix = unique_prefix("s");
    if let Some(reason) = namespaces_unavailable(&prefix) {
        println!("skipped: {reason}");
        return;
    }
    let _teardown = Teardown(prefix.clone());
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));

    let setup = script(&prefix, "netns-setup.sh", &[]);
    assert!(setup.status.success(), "{setup:?}");
    assert!(netns_exists(&a) && netns_exists(&b));

    // A second setup with the same names refuses and leaves them alone.
    let again = script(&prefix, "netns-setup.sh", &[]);
    assert!(!again.status.success());
    assert!(netns_exists(&a) && netns_exists(&b));

    let bad = script(&prefix, "netns-impair.sh", &["--loss", "1.5"]);
    assert!(!bad.status.success(), "a loss above 1 was accepted");

    let impair = script(
        &prefix,
        "netns-impair.sh",
        &["--loss", "0.1", "--delay-ms", "10", "--rate", "50mbit"],
    );
    let said = String::from_utf8_lossy(&impair.stderr);
    assert!(impair.status.success(), "{said}");
    assert!(said.contains("applied: rate 50mbit"), "{said}");
    if said.contains("applied: netem") {
        assert!(!said.contains("NOT APPLIED"), "{said}");
    } else {
        // The fallback applies loss and says plainly that delay is missing.
        assert!(said.contains("applied: loss 10%"), "{said}");
        assert!(said.contains("NOT APPLIED: delay 10 ms"), "{said}");
    }
    let strict = script(
        &prefix,
        "netns-impair.sh",
        &["--delay-ms", "10", "--strict"],
    );
    if !String::from_utf8_lossy(&strict.stderr).contains("applied: netem") {
        assert_eq!(strict.status.code(), Some(2), "{strict:?}");
    }

    for _ in 0..2 {
        let down = script(&prefix, "netns-teardown.sh", &[]);
        assert!(down.status.success(), "{down:?}");
    }
    assert!(!netns_exists(&a) && !netns_exists(&b));
}

mod netns_support {
    //! Shared by the kernel-level tests: whether they can run here, unique
    //! namespace names, and a guard that always tears the namespaces down.

    use std::path::PathBuf;
    use std::process::{Command, Output};

    /// The directory holding the netns scripts.
    pub fn scripts() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netem/scripts")
    }

    /// Why namespace tests cannot run on this machine, if they cannot.
    pub fn namespaces_unavailable(prefix: &str) -> Option<String> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().next().map(str::to_owned));
        if uid.as_deref() != Some("0") {
            return Some("not running as root".into());
        }
        let probe = format!("{prefix}-probe");
        match Command::new("ip").args(["netns", "add", &probe]).output() {
            Err(e) => return Some(format!("cannot run 'ip' (iproute2): {e}")),
            Ok(out) if !out.status.success() => {
                return Some(format!(
                    "'ip netns add' failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
            Ok(_) => {}
        }
        let _ = Command::new("ip").args(["netns", "del", &probe]).output();
        None
    }

    /// A namespace prefix no other test or run uses.
    pub fn unique_prefix(tag: &str) -> String {
        format!("rt{}{tag}", std::process::id())
    }

    /// Runs a script from netem/scripts with `RISP_NS_PREFIX` set.
    pub fn script(prefix: &str, name: &str, args: &[&str]) -> Output {
        script_with_env(prefix, name, args, &[])
    }

    /// Like [`script`] with extra environment variables.
    pub fn script_with_env(
        prefix: &str,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Output {
        Command::new(scripts().join(name))
            .args(args)
            .env("RISP_NS_PREFIX", prefix)
            .envs(env.iter().copied())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {name}: {e}"))
    }

    /// Whether a namespace exists now.
    pub fn netns_exists(name: &str) -> bool {
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(name))
            })
            .unwrap_or(false)
    }

    /// Tears the namespaces of `prefix` down when dropped, also on panic.
    pub struct Teardown(pub String);

    impl Drop for Teardown {
        fn drop(&mut self) {
            let _ = script(&self.0, "netns-teardown.sh", &[]);
        }
    }
}

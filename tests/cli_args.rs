//! The `risp-udp` binary without a server: argument errors, `sim`, `hist`,
//! `completion`.

mod support;

use std::path::Path;

use support::cli::{run, run_closing_stdout_after_one_line, run_with_env};

/// Each bad argument: exit 2, nothing on stdout, and the first line of
/// stderr is an error that names the flag (or value) and says what is wrong.
#[test]
fn bad_arguments_exit_2_with_a_one_line_error_naming_the_flag() {
    // (arguments, what the first stderr line must contain)
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["client", "10", "--loss", "1.5"],
            &["--loss", "outside [0, 1]"],
        ),
        (
            &["client", "10", "--loss=-0.1"],
            &["--loss", "outside [0, 1]"],
        ),
        (
            &["client", "10", "--loss", "-0.1"],
            &["--loss", "outside [0, 1]"],
        ),
        (
            &["client", "10", "--loss", "ten"],
            &["--loss", "not a number"],
        ),
        (
            &["server", "--loss-in", "2"],
            &["--loss-in", "outside [0, 1]"],
        ),
        (
            &["client", "10", "--delay-ms", "-5"],
            &["--delay-ms", "negative"],
        ),
        (
            &["client", "10", "--jitter-ms=-1"],
            &["--jitter-ms", "negative"],
        ),
        (
            &["client", "10", "--min-rto-ms", "-1"],
            &["--min-rto-ms", "negative"],
        ),
        (&["client", "10", "--window", "0"], &["--window", "0"]),
        (&["client", "10", "--bogus-flag"], &["--bogus-flag"]),
        (&["client", "abc"], &["abc", "LEN"]),
        (&["client", "-5"], &["-5"]),
        (
            &["client", "10", "--max-sessions", "0"],
            &["--max-sessions"],
        ),
        (
            &["client", "10", "--server", "no-such-host.invalid:8081"],
            &["no-such-host.invalid:8081", "resolve"],
        ),
        (
            &["client", "10", "--server", "127.0.0.1"],
            &["127.0.0.1", "HOST:PORT"],
        ),
        (&["nonsense-command"], &["nonsense-command"]),
        // Each command takes only the flags it uses (issue 12 item 7).
        (&["demo", "--port", "9000"], &["--port"]),
        (&["demo", "--max-sessions", "1"], &["--max-sessions"]),
        (&["tcp-client", "10", "--port", "9000"], &["--port"]),
        (
            &["hist", "a.hgrm", "--health-port", "1"],
            &["--health-port"],
        ),
        (
            &["completion", "bash", "--health-port", "1"],
            &["--health-port"],
        ),
        (&["client", "10", "--health-port", "1"], &["--health-port"]),
        // A client cannot ask port 0 (a server may listen on any port).
        (&["client", "10", "--port", "0"], &["--port", "0"]),
        // `sim` argument errors are usage errors too.
        (
            &["sim", "--profile", "no-such-profile"],
            &["no-such-profile"],
        ),
        (&["sim", "--seeds", "0"], &["--seeds"]),
        (&["sim", "no/such/suite.toml"], &["no/such/suite.toml"]),
    ];
    let mut failures = Vec::new();
    for (args, needles) in cases {
        let out = run(args);
        let first = out.stderr.lines().next().unwrap_or_default();
        let ok = out.code == Some(2)
            && out.stdout.is_empty()
            && first.starts_with("error: ")
            && needles.iter().all(|n| first.contains(n));
        if !ok {
            failures.push(format!(
                "{args:?}: exit {:?}, first stderr line {first:?} (wanted {needles:?}); stdout {:?}",
                out.code, out.stdout
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `risp-udp sim --real netem/suites/smoke.toml`: real sockets, every
/// expectation met.
#[test]
fn sim_real_smoke_suite_exits_0() {
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("netem/suites/smoke.toml");
    let out = run(&["sim", "--real", suite.to_str().unwrap(), "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("JSON report");
    assert_eq!(j["all_met"], true, "{j}");
    let profiles = j["profiles"].as_array().expect("profiles");
    let names: Vec<_> = profiles.iter().map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names,
        [Some("clean"), Some("loss-10"), Some("mixed")],
        "{j}"
    );
    for p in profiles {
        assert_eq!(p["runs"], 2, "{p}");
        assert_eq!(p["runs_verified"], 2, "{p}");
        assert_eq!(p["transfers_verified"], p["transfers"], "{p}");
        // Every value reaches the client at least once.
        let per_value = p["datagrams_per_value"].as_f64().expect("a number");
        assert!(per_value >= 1.0, "{p}");
    }
    // The shim's loss was applied: 8,000 values at 10 % and none resent
    // has p = 0.9^8000, nil.
    assert!(
        profiles[1]["datagrams_per_value"].as_f64() > Some(1.0),
        "{j}"
    );
}

/// The built-in standard suite in virtual time passes, and its JSON report
/// is byte-identical from one run to the next.
#[test]
fn sim_standard_suite_virtual_passes_and_is_reproducible() {
    let a = run(&["sim", "--json"]);
    assert_eq!(a.code, Some(0), "{a:?}");
    let b = run(&["sim", "--json"]);
    assert_eq!(b.code, Some(0), "{b:?}");
    assert!(!a.stdout.trim().is_empty());
    serde_json::from_str::<serde_json::Value>(a.stdout.trim()).expect("JSON report");
    assert!(a.stdout == b.stdout, "two virtual runs differ");
}

/// An impossible expectation makes `sim` exit 8.
#[test]
fn sim_unmet_expectation_exits_8() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("impossible.toml");
    std::fs::write(
        &suite,
        "name = \"impossible\"\nlen = 200\nclients = 1\nseeds = [1]\n\n\
         [[profile]]\nname = \"lossy\"\nloss = 0.3\n\
         [profile.expect]\nmax_datagrams_per_value = 1.0\n",
    )
    .unwrap();
    let out = run(&["sim", suite.to_str().unwrap()]);
    assert_eq!(out.code, Some(8), "{out:?}");
}

/// `risp-udp hist` on a missing file: non-zero, one clear line naming it.
#[test]
fn hist_on_a_missing_file_fails_naming_it() {
    let out = run(&["hist", "no/such/file.hgrm"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.code.is_some(), "exited, not killed: {out:?}");
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("error: ") && first.contains("no/such/file.hgrm"),
        "{out:?}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// `risp-udp completion bash` prints a completion script for the binary.
#[test]
fn completion_bash_prints_a_script() {
    let out = run(&["completion", "bash"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("risp-udp"), "{}", out.stdout);
    assert!(out.stdout.contains("complete "), "a bash `complete` line");
    for flag in ["--client-killswitch-ms", "--loss", "--health-port"] {
        assert!(out.stdout.contains(flag), "{flag} is completed");
    }
    let bad = run(&["completion", "no-such-shell"]);
    assert_eq!(bad.code, Some(2), "{bad:?}");
}

/// `risp-udp demo | head -1`: the reader goes away after the banner; the
/// demo ends quietly with 0 (it used to panic in `println!`, exit 101).
#[test]
fn demo_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (first, out) = run_closing_stdout_after_one_line(&[
        "demo",
        "--clients",
        "1",
        "--len",
        "200",
        "--hist-out",
        dir.path().to_str().unwrap(),
    ]);
    assert!(first.starts_with("risp-udp demo:"), "{first:?}");
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "quiet: {out:?}");
}

/// A suite without any `[expect]` whose transfers all fail exits 8:
/// "every transfer verified" is the default expectation (it exited 0).
#[test]
fn sim_with_failed_transfers_and_no_expectations_exits_8() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("doomed.toml");
    std::fs::write(
        &suite,
        "name = \"doomed\"\nlen = 100\nclients = 1\nseeds = [1]\n\n\
         [[profile]]\nname = \"black-hole\"\nloss = 1.0\n",
    )
    .unwrap();
    let out = run(&["sim", suite.to_str().unwrap()]);
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(out.stdout.contains("all_verified FAILED"), "{out:?}");
}

/// `tcp-client` ends with the UDP client's codes: nothing listening is 4
/// ("no answer"), an unresolvable name 2 (both were 1).
#[test]
fn tcp_client_exit_codes_match_the_udp_client() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let out = run(&["tcp-client", "10", "--server", &closed]);
    assert_eq!(out.code, Some(4), "{out:?}");
    let out = run(&["tcp-client", "10", "--server", "no-such-host.invalid:1"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

/// `--version` names the git commit (or "unknown" outside a checkout) and
/// the wire protocol version, for the top command and each subcommand.
#[test]
fn version_names_the_commit_and_the_wire_protocol() {
    let wire = format!("wire protocol v{}", risp_udp::proto::wire::VERSION);
    for args in [&["--version"][..], &["client", "--version"]] {
        let out = run(args);
        assert_eq!(out.code, Some(0), "{out:?}");
        let line = out.stdout.trim();
        assert!(line.contains("(commit "), "{line}");
        assert!(line.contains(&wire), "{line}");
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
    }
}

/// `risp-udp man` prints a roff manual page generated from the clap
/// definitions, naming the subcommands and the exit-code-relevant flags.
#[test]
fn man_prints_a_roff_page() {
    let out = run(&["man"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH risp-udp"),
        "{}",
        out.stdout
    );
    for word in [".SH NAME", "client", "server", "completion"] {
        assert!(out.stdout.contains(word), "{word} in the page");
    }
}

/// A bad value from an environment variable names the variable and its
/// value (clap named only the flag, which is not on the command line);
/// the same bad value typed as a flag still names the flag.
#[test]
fn bad_environment_values_name_the_variable() {
    let out = run_with_env(&["client", "10"], &[("RISP_PORT", "abc")]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: RISP_PORT=abc: invalid --port"),
        "{out:?}"
    );
    let out = run_with_env(&["server"], &[("RISP_LOG_LEVEL", "loud")]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("RISP_LOG_LEVEL=loud: invalid --log-level"),
        "{out:?}"
    );
    // On the command line, clap's own message (naming the flag) stands.
    let out = run_with_env(&["client", "10", "--port", "abc"], &[("RISP_PORT", "abc")]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(!out.stderr.contains("RISP_PORT=abc"), "{out:?}");
    assert!(out.stderr.contains("--port"), "{out:?}");
}

/// `--burst` only shapes a loss: without `--loss` (or `--loss-in`,
/// `--loss-out`) it is refused and the message names them (it was a
/// silent no-op).
#[test]
fn burst_without_loss_is_refused() {
    let out = run(&["client", "10", "--burst", "3", "--port", "1"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--loss"), "{out:?}");
    let out = run(&["server", "--burst", "3", "--port", "1"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("--loss"), "{out:?}");
}

/// `--idle-timeout-ms 0` says what is accepted in words, not
/// `not in 1..18446744073709551615`.
#[test]
fn zero_milliseconds_error_is_readable() {
    for args in [
        &["client", "10", "--idle-timeout-ms", "0"][..],
        &["client", "10", "--client-killswitch-ms", "0"],
        &["server", "--session-lifetime-ms", "0"],
    ] {
        let out = run(args);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("at least 1 ms"), "{out:?}");
        assert!(!out.stderr.contains("18446744073709551615"), "{out:?}");
    }
}

/// A tiny virtual-time suite: one client, one seed, loss 5 % and
/// corruption 1 % (combined: 5.95 %).
fn tiny_suite(dir: &Path) -> std::path::PathBuf {
    let suite = dir.join("tiny.toml");
    std::fs::write(
        &suite,
        "name = \"tiny\"\nlen = 200\nclients = 1\nseeds = [1]\n\n\
         [[profile]]\nname = \"mixed\"\nloss = 0.05\ncorrupt = 0.01\n",
    )
    .unwrap();
    suite
}

/// `sim --plot DIR` into a folder that cannot be made fails before the
/// suite runs (nothing on stdout), not after it.
#[test]
fn sim_plot_into_a_bad_folder_fails_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let suite = tiny_suite(dir.path());
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let bad = file.join("plots");
    let out = run(&[
        "sim",
        suite.to_str().unwrap(),
        "--plot",
        bad.to_str().unwrap(),
    ]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.is_empty(), "the suite did not run: {out:?}");
    assert!(out.stderr.contains("plots"), "{out:?}");
}

/// CSV rates carry no float noise (`0.0595`, not `0.059500000000000004`).
#[test]
fn sim_csv_rates_have_no_float_noise() {
    let dir = tempfile::tempdir().unwrap();
    let suite = tiny_suite(dir.path());
    let out = run(&["sim", suite.to_str().unwrap(), "--csv"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let mut lines = out.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(col("loss_to_client"), "0.0595", "{}", out.stdout);
    assert_eq!(col("loss_to_server"), "0.0595", "{}", out.stdout);
}

/// An `.hlog` error names the real, 1-based line (it said `line 0`).
#[test]
fn hlog_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("garbled.hlog");
    std::fs::write(
        &log,
        "#[Histogram log format version 1.3]\n0.000,1.000,5.000,HISTFAAAAnotbase64!!\n",
    )
    .unwrap();
    let out = run(&["hist", log.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("garbled.hlog: line 2:"), "{out:?}");
    assert!(!out.stderr.contains("line 0"), "{out:?}");
}

/// `demo` without `--hist-out` leaves nothing in the temporary folder (it
/// left a `risp-udp-demo-PID` folder on every run) and says how to keep
/// the histograms; one client is "1 client"; the summary has the
/// clients' latency percentiles.
#[test]
fn demo_leaves_no_temporary_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_with_env(
        &["demo", "--clients", "1", "--len", "200"],
        &[("TMPDIR", tmp.path().to_str().unwrap())],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("1 client x"), "{}", out.stdout);
    assert!(out.stdout.contains("--hist-out"), "{}", out.stdout);
    // The clients' latencies are in the summary (200 values delivered).
    let delivery = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("delivery"));
    assert!(
        delivery.is_some_and(|l| l.contains("(200 samples)")),
        "{}",
        out.stdout
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

//! The cargo-fuzz corpus, on the stable toolchain: the committed seeds are
//! the ones the harness generates, every committed input (seeds and the
//! crashes the fuzzers found, kept under `fuzz/regressions/`) runs through
//! the same harness as the fuzz targets without a panic, and the seeds
//! drive the server where they claim to.
//!
//! `RISP_WRITE_FUZZ_SEEDS=1 cargo test --release --test fuzz_corpus`
//! rewrites the seed files after a change to the wire format or to the
//! script format (`tests/support/fuzz.rs`).

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use risp_udp::proto::server::Reject;
use support::fuzz;

const TARGETS: [&str; 2] = ["decode", "endpoint"];

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "decode" => fuzz::decode_seeds(),
        _ => fuzz::endpoint_seeds(),
    }
}

/// Every file in `fuzz/<kind>/<target>/` (none if the folder is missing).
fn files(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut out: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let write = std::env::var_os("RISP_WRITE_FUZZ_SEEDS").is_some();
    for target in TARGETS {
        for (name, bytes) in seeds(target) {
            let path = dir("corpus", target).join(&name);
            if write {
                fs::create_dir_all(dir("corpus", target)).unwrap();
                fs::write(&path, &bytes).unwrap();
                continue;
            }
            let committed = fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (RISP_WRITE_FUZZ_SEEDS=1 writes the seeds)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{} is stale (RISP_WRITE_FUZZ_SEEDS=1 rewrites it)",
                path.display()
            );
        }
    }
}

#[test]
fn every_committed_input_and_past_crash_replays_cleanly() {
    for target in TARGETS {
        let inputs: Vec<_> = ["corpus", "regressions"]
            .iter()
            .flat_map(|kind| files(kind, target))
            .collect();
        assert!(inputs.len() >= seeds(target).len(), "{target}: {inputs:?}");
        for (path, bytes) in inputs {
            eprintln!("{target}: {}", path.display());
            match target {
                "decode" => fuzz::decode(&bytes),
                _ => {
                    fuzz::endpoint(&bytes);
                }
            }
        }
    }
}

#[test]
fn endpoint_seeds_reach_what_they_are_named_for() {
    let stats = |name: &str| {
        let (_, script) = fuzz::endpoint_seeds()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no seed {name}"));
        fuzz::endpoint(&script).expect("a config")
    };
    let transfer = stats("transfer");
    assert_eq!(transfer.sessions_closed, 1, "{transfer:?}");
    assert_eq!(transfer.rejected_total(), 0, "{transfer:?}");

    let moved = stats("migrate-probe-resume");
    assert!(moved.migrations >= 1, "{moved:?}");
    assert!(moved.probes >= 1, "{moved:?}");
    assert_eq!(moved.sessions_resumed, 1, "{moved:?}");

    let full = stats("session-limit");
    assert_eq!(full.sessions_opened, 2, "{full:?}");
    assert_eq!(full.rejected(Reject::Busy), 2, "{full:?}");

    let expiry = stats("expiry");
    assert_eq!(expiry.sessions_expired, 1, "{expiry:?}");

    let hostile = stats("hostile-sources");
    assert_eq!(hostile.rejected(Reject::UnusableSource), 7, "{hostile:?}");
    assert_eq!(hostile.rejected(Reject::Malformed), 1, "{hostile:?}");
    assert_eq!(hostile.rejected(Reject::WrongDirection), 1, "{hostile:?}");
    assert_eq!(hostile.datagrams_sent, 0, "{hostile:?}");
}

/// The one crash the fuzzers found (the `endpoint` target, in its first
/// minute): the harness's own "next timestamp" after a message stamped
/// 2^64 - 1 overflowed. The server was fine; the script builder saturates
/// now.
#[test]
fn a_script_past_the_largest_timestamp_runs() {
    use risp_udp::proto::wire::State;
    use support::fuzz::{built, Addr, Op, ScriptWriter};
    let mut last = built(State::Connecting, 0, 10);
    last.timestamp = Some(u64::MAX);
    let script = ScriptWriter::new(2, 100, 8)
        .op(&Op::Client {
            from: Addr::Client(0),
            msg: last,
        })
        .op(&Op::Transmit { max: 8 })
        .op(&Op::Client {
            from: Addr::Client(0),
            msg: built(State::Connected, 0, 10),
        })
        .op(&Op::Transmit { max: 8 })
        .finish();
    let stats = fuzz::endpoint(&script).expect("a config");
    // Saturated, the second message carries 2^64 - 1 again and is taken;
    // wrapped to 0 (release builds do not trap), it would be stale.
    assert_eq!(stats.accepted, 2, "{stats:?}");
}

#[test]
fn decode_seeds_cover_every_kind_both_ways() {
    use risp_udp::proto::wire::{ClientMessage, ServerMessage};
    let seeds = fuzz::decode_seeds();
    let clients = seeds
        .iter()
        .filter(|(_, d)| ClientMessage::decode(d).is_ok())
        .count();
    let servers = seeds
        .iter()
        .filter(|(_, d)| ServerMessage::decode(d, fuzz::SEED_UUID).is_ok())
        .count();
    assert_eq!(clients + servers, seeds.len(), "every seed is valid");
    assert_eq!((clients, servers), (6, 5));
}

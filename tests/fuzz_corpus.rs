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

/// The inputs kept under `fuzz/regressions/<target>/`: datagrams and
/// scripts that once mattered. They are written from code, like the seeds,
/// so that they follow a change of the wire or script format; each has a
/// test below of what it must do.
fn regressions(target: &str) -> Vec<(String, Vec<u8>)> {
    use risp_udp::proto::wire::{ClientMessage, ServerMessage, State, CRC_LEN};
    use support::fuzz::{built, Addr, Op, ScriptWriter};
    use support::wire::{encode_server, reseal, ClientDatagram};
    match target {
        "decode" => {
            // A CLOSING with three bytes of zero padding: the decoder takes
            // zero padding on any state, the encoder writes none there, so
            // it re-encodes shorter (fuzz_datagrams once assumed otherwise).
            let mut closing = ClientDatagram::new(State::Closing, fuzz::SEED_UUID, 1000).encode();
            let pad_at = closing.len() - CRC_LEN - 2;
            closing[pad_at..pad_at + 2].copy_from_slice(&3u16.to_be_bytes());
            closing.splice(pad_at + 2..pad_at + 2, [0; 3]);
            reseal(&mut closing);
            assert!(ClientMessage::decode(&closing).is_ok());
            // A data datagram sealed for another session: before the CRC was
            // keyed by the session (wire v2), a client took data meant for
            // the session that held its port before.
            let other = encode_server(
                uuid::Uuid::from_u128(0x07e4),
                ServerMessage::Data {
                    index: 3,
                    payload: 0xdead_beef,
                    echo: 42,
                },
            );
            vec![
                ("closing-extra-padding".to_string(), closing),
                ("server-data-other-session".to_string(), other),
            ]
        }
        _ => {
            // The one crash the fuzzers found (the `endpoint` target, in its
            // first minute): the harness's own "next timestamp" after a
            // message stamped 2^64 - 1 overflowed.
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
            // Found in CI's first fuzz run of wire v3: a CONNECTING of
            // another version is answered with a WrongVersion keyed by the
            // UUID bytes the datagram carries, which the harness did not yet
            // count as a UUID that address sent.
            let mut other_version =
                ClientDatagram::new(State::Connecting, fuzz::SEED_UUID, 1000).encode();
            other_version[2] = 2;
            reseal(&mut other_version);
            let wrong_version = ScriptWriter::new(2, 100, 8)
                .op(&Op::Raw {
                    from: Addr::Client(0),
                    bytes: other_version,
                })
                .op(&Op::Transmit { max: 8 })
                .finish();
            vec![
                ("timestamp-max".to_string(), script),
                ("wrong-version-answer".to_string(), wrong_version),
            ]
        }
    }
}

/// The committed file `fuzz/regressions/<target>/<name>`.
fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = dir("regressions", target).join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_seeds_are_the_generated_ones() {
    let write = std::env::var_os("RISP_WRITE_FUZZ_SEEDS").is_some();
    for target in TARGETS {
        let inputs = [
            ("corpus", seeds(target)),
            ("regressions", regressions(target)),
        ];
        for (kind, inputs) in inputs {
            for (name, bytes) in inputs {
                let path = dir(kind, target).join(&name);
                if write {
                    fs::create_dir_all(dir(kind, target)).unwrap();
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
}

#[test]
fn every_committed_input_and_past_crash_replays_cleanly() {
    for target in TARGETS {
        let inputs: Vec<_> = ["corpus", "regressions"]
            .iter()
            .flat_map(|kind| files(kind, target))
            .collect();
        assert!(inputs.len() >= seeds(target).len(), "{target}: {inputs:?}");
        // A missing or empty folder would make this test replay nothing.
        let past = files("regressions", target);
        assert!(
            past.len() >= regressions(target).len() && !past.is_empty(),
            "fuzz/regressions/{target}/ holds {} inputs",
            past.len()
        );
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

/// The one crash the fuzzers found (`fuzz/regressions/endpoint/timestamp-max`):
/// the harness's own "next timestamp" after a message stamped 2^64 - 1
/// overflowed. The server was fine; the script builder saturates now.
#[test]
fn a_script_past_the_largest_timestamp_runs() {
    let stats = fuzz::endpoint(&regression("endpoint", "timestamp-max")).expect("a config");
    // Saturated, the second message carries 2^64 - 1 again and is taken;
    // wrapped to 0 (release builds do not trap), it would be stale.
    assert_eq!(stats.accepted, 2, "{stats:?}");
}

/// A datagram of another protocol version gets one `WrongVersion` answer
/// and is counted (`fuzz/regressions/endpoint/wrong-version-answer`).
#[test]
fn another_version_is_answered_and_counted() {
    use risp_udp::proto::server::Reject;
    let stats = fuzz::endpoint(&regression("endpoint", "wrong-version-answer")).expect("a config");
    assert_eq!(stats.rejected(Reject::WrongVersion), 1, "{stats:?}");
    assert_eq!(stats.datagrams_sent, 1, "{stats:?}");
    assert_eq!(stats.sessions_opened, 0, "{stats:?}");
}

/// The committed decode regressions do what they are named for.
#[test]
fn decode_regressions_hold() {
    use risp_udp::proto::wire::{ClientMessage, ServerMessage, State, WireError};
    let padded = regression("decode", "closing-extra-padding");
    let m = ClientMessage::decode(&padded).expect("zero padding on any state");
    assert_eq!(m.state, State::Closing);
    assert_eq!(m.encoded_len() + 3, padded.len(), "re-encodes without it");
    fuzz::decode(&padded);

    let other = regression("decode", "server-data-other-session");
    assert_eq!(
        ServerMessage::decode(&other, fuzz::SEED_UUID),
        Err(WireError::BadCrc),
        "data sealed for another session is not believed"
    );
    assert!(
        ServerMessage::decode_unchecked(&other).is_ok(),
        "only the key is wrong"
    );
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

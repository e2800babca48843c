//! Sealed sessions over real sockets: a `risp-udp server --key-file
//! --encryption required` process on loopback and `risp-udp client`
//! processes pinned to its key, to another key, and plain.

mod support;

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use risp_udp::proto::crypto::ServerKey;
use support::cli::{run, ServerProcess as Server};

/// The public key `risp-udp pubkey` prints for the key file at `path`.
fn public_key(path: &str) -> String {
    let out = run(&["pubkey", "--key-file", path]);
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout
        .split_whitespace()
        .find(|w| w.len() == 44)
        .unwrap_or_else(|| panic!("no key in {out:?}"))
        .to_string()
}

#[test]
fn a_pinned_client_verifies_a_sealed_transfer_and_refuses_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("server.key");
    let path = key_file.to_str().unwrap();
    let server = Server::start(&["--key-file", path, "--encryption", "required"]);
    let key = public_key(path);
    let out = run(&[
        "client",
        "2000",
        "--server",
        &server.server_arg(),
        "--server-key",
        &key,
        "--loss",
        "0.05",
        "--netem-seed",
        "3",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.elapsed < Duration::from_secs(20), "{:?}", out.elapsed);

    let other = ServerKey::generate(&mut ChaCha20Rng::seed_from_u64(1)).public();
    let out = run(&[
        "client",
        "10",
        "--server",
        &server.server_arg(),
        "--server-key",
        &other.to_string(),
    ]);
    assert_eq!(out.code, Some(10), "{out:?}");
    assert!(
        out.stderr.contains(&key),
        "the message names the server's key: {out:?}"
    );
    assert!(
        out.stderr.contains(&other.to_string()),
        "and the pinned one: {out:?}"
    );
    assert!(
        out.elapsed < Duration::from_secs(5),
        "not at once: {:?}",
        out.elapsed
    );

    // A plain client is refused by a server that requires encryption.
    let out = run(&[
        "client",
        "10",
        "--server",
        &server.server_arg(),
        "--idle-timeout-ms",
        "3000",
    ]);
    assert_ne!(out.code, Some(0), "{out:?}");
}

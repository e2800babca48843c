//! `risp-udp keygen` and `risp-udp pubkey` over the real binary: key
//! files, their permissions, refusals and messages.

mod support;

use std::fs;
use std::path::Path;

use risp_udp::proto::crypto::PublicKey;
use support::cli::{run, run_with_env};

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The one line a command printed, parsed as a public key.
fn printed_key(stdout: &str) -> PublicKey {
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stdout:?}");
    lines[0]
        .parse()
        .unwrap_or_else(|e| panic!("{:?}: {e}", lines[0]))
}

#[test]
fn keygen_writes_a_private_key_whose_public_key_pubkey_prints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.key");
    let p = path.to_str().unwrap();
    let out = run(&["keygen", "--output", p]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let public = printed_key(&out.stdout);
    assert!(out.stderr.contains("wrote a new server key to"), "{out:?}");
    #[cfg(unix)]
    assert_eq!(mode(&path), 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 45, "44 characters and a newline: {text:?}");
    assert!(
        !text.contains(&public.to_string()),
        "the file holds the secret, not the public key"
    );
    let out = run(&["pubkey", "--key-file", p]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(printed_key(&out.stdout), public);
    let out = run_with_env(&["pubkey"], &[("RISP_KEY_FILE", p)]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(printed_key(&out.stdout), public);
}

#[test]
fn keygen_replaces_a_key_only_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let p = path.to_str().unwrap();
    let first = printed_key(&run(&["keygen", "-o", p]).stdout);
    let before = fs::read(&path).unwrap();
    let out = run(&["keygen", "-o", p]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("already exists") && out.stderr.contains("--force"),
        "{out:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), before, "the old key is untouched");
    let out = run(&["keygen", "-o", p, "--force"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let second = printed_key(&out.stdout);
    assert_ne!(second, first);
    assert_eq!(
        printed_key(&run(&["pubkey", "--key-file", p]).stdout),
        second
    );
}

#[cfg(unix)]
#[test]
fn pubkey_refuses_a_key_file_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let p = path.to_str().unwrap();
    assert_eq!(run(&["keygen", "-o", p]).code, Some(0));
    chmod(&path, 0o644);
    let out = run(&["pubkey", "--key-file", p]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert!(
        out.stderr.contains("0644")
            && out.stderr.contains("too open")
            && out.stderr.contains("chmod 600"),
        "{out:?}"
    );
    // `keygen --force` over it leaves a private file again.
    assert_eq!(run(&["keygen", "-o", p, "--force"]).code, Some(0));
    assert_eq!(mode(&path), 0o600);
    assert_eq!(run(&["pubkey", "--key-file", p]).code, Some(0));
}

#[test]
fn pubkey_says_what_is_wrong_with_a_bad_or_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    fs::write(&bad, "not a key\n").unwrap();
    #[cfg(unix)]
    chmod(&bad, 0o600);
    let out = run(&["pubkey", "--key-file", bad.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("is not a key file") && out.stderr.contains("44 base64"),
        "{out:?}"
    );
    let missing = dir.path().join("missing");
    let out = run(&["pubkey", "--key-file", missing.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("cannot read key file"), "{out:?}");
    let out = run(&["pubkey"]);
    assert_eq!(out.code, Some(2), "a usage error: {out:?}");
    assert!(out.stderr.contains("--key-file"), "{out:?}");
}

#[test]
fn keygen_into_a_missing_directory_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/k");
    let out = run(&["keygen", "-o", path.to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains("cannot write key file") && out.stderr.contains("no/such/dir/k"),
        "{out:?}"
    );
}

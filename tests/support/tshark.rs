//! tshark with the RISP dissector (`netem/wireshark/risp.lua`), run over a
//! capture and read back field by field.
//!
//! tshark refuses Lua scripts when run as root, so as root it runs as
//! `nobody` (`setpriv`), on copies of the capture and the script in a
//! directory that user can read. Without tshark, [`Tshark::find`] says
//! "skipped" and returns `None`, unless `RISP_REQUIRE_TSHARK=1` (`.ci/run`
//! installs the package and sets it): then it panics.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The variable that makes a missing tshark a failure.
pub const REQUIRE: &str = "RISP_REQUIRE_TSHARK";

/// A tshark to run captures through, and the scratch directory it reads.
pub struct Tshark {
    dir: tempfile::TempDir,
    script: PathBuf,
    as_nobody: bool,
}

impl Tshark {
    /// A tshark ready to run, or `None` (after saying why) if there is none.
    pub fn find() -> Option<Self> {
        let found = Command::new("tshark")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            super::skip(REQUIRE, "tshark is not installed (Debian package tshark)");
            return None;
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let as_nobody = is_root();
        if as_nobody {
            set_mode(dir.path(), 0o755);
        }
        let script = dir.path().join("risp.lua");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("netem/wireshark/risp.lua");
        std::fs::copy(&source, &script).expect("copy the dissector");
        set_mode(&script, 0o644);
        Some(Self {
            dir,
            script,
            as_nobody,
        })
    }

    /// Puts `bytes` into the scratch directory as `name`; returns its path.
    pub fn put(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write the capture");
        set_mode(&path, 0o644);
        path
    }

    /// tshark's output for `capture` with `args` after `-r FILE`, stdout
    /// only; panics with its stderr if it fails.
    pub fn run(&self, capture: &Path, args: &[&str]) -> String {
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "tshark"]);
            c
        } else {
            Command::new("tshark")
        };
        let lua = format!("lua_script:{}", self.script.display());
        cmd.args(["-n", "-X", &lua, "-r"])
            .arg(capture)
            .args(args)
            // Its profile and caches go here, not in the caller's home.
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path());
        let out = cmd.output().expect("run tshark");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "tshark failed: {stderr}");
        assert!(
            !stderr.contains("Lua: Error") && !stderr.contains("lua_script"),
            "the dissector did not load: {stderr}"
        );
        String::from_utf8(out.stdout).expect("tshark prints UTF-8")
    }

    /// One row per packet of `capture`: the values of `fields` (each
    /// field's occurrences joined by commas, as tshark prints them).
    pub fn fields(&self, capture: &Path, fields: &[&str]) -> Vec<Vec<String>> {
        let mut args = vec!["-T", "fields", "-E", "occurrence=a"];
        for f in fields {
            args.extend(["-e", f]);
        }
        let out = self.run(capture, &args);
        out.lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect()
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("set permissions");
}

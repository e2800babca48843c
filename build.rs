//! Records the git commit the binary is built from, for `--version`.
//! Outside a git checkout (a source tarball, a crate download) or without
//! git, the commit is "unknown" and the build goes on.

use std::path::Path;
use std::process::Command;

/// `git ARGS` in the package folder, trimmed; None on any failure.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RISP_GIT_COMMIT={commit}");
    // Re-run when HEAD moves: HEAD itself (a checkout) and the branch it
    // points to (a commit), wherever the checkout keeps them (worktrees
    // keep HEAD apart from the refs).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
    }
    if let (Some(common), Some(branch)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let path = Path::new(&common).join(branch);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let packed = Path::new(&common).join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
}

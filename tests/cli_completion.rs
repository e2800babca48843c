//! The completion scripts, run in the shells they are for: bash, zsh and
//! fish each complete a flag after a subcommand. A shell missing here is
//! skipped with a message (CI installs all three, see .ci/run).

mod support;

use std::path::Path;
use std::process::Command;

use support::cli::run;

/// The script `risp-udp completion SHELL` prints, saved as `file` in `dir`.
fn save_script(shell: &str, dir: &Path, file: &str) -> String {
    let out = run(&["completion", shell]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let path = dir.join(file);
    std::fs::write(&path, &out.stdout).unwrap();
    path.to_str().unwrap().to_string()
}

/// Runs `shell -c script` (under `timeout`, so a shell waiting for input
/// cannot hang the test); None when the shell is not installed.
fn shell(shell: &str, args: &[&str], script: &str) -> Option<String> {
    let which = Command::new("sh")
        .args(["-c", &format!("command -v {shell}")])
        .output()
        .unwrap();
    if !which.status.success() {
        eprintln!("skipped: {shell} is not installed (apt-get install {shell})");
        return None;
    }
    let out = Command::new("timeout")
        .arg("20")
        .arg(shell)
        .args(args)
        .arg(script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{shell} failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(text)
}

/// Bash: `risp-udp client --j<TAB>` offers `--json` and `--jitter-ms`
/// (nothing completed after a subcommand: clap_complete's script matched
/// on another name than it set), and the subcommands complete at the top.
#[test]
fn bash_completes_flags_after_a_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let file = save_script("bash", dir.path(), "risp-udp.bash");
    let complete = |words: &str, cword: usize| {
        format!(
            "source '{file}'; COMP_WORDS=({words}); COMP_CWORD={cword}; \
             _risp__udp risp-udp \"${{COMP_WORDS[$COMP_CWORD]}}\" \"${{COMP_WORDS[$COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
    };
    let Some(out) = shell(
        "bash",
        &["--norc", "-c"],
        &complete("risp-udp client --j", 2),
    ) else {
        return;
    };
    let words: Vec<&str> = out.lines().collect();
    assert!(
        words.contains(&"--json") && words.contains(&"--jitter-ms"),
        "{words:?}"
    );
    let out = shell(
        "bash",
        &["--norc", "-c"],
        &complete("risp-udp tcp-client --se", 2),
    )
    .unwrap();
    assert_eq!(out.trim(), "--server");
    let out = shell("bash", &["--norc", "-c"], &complete("risp-udp de", 1)).unwrap();
    assert_eq!(out.trim(), "demo");
}

/// Fish: `complete -C` lists the candidates for a command line.
#[test]
fn fish_completes_flags_after_a_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let file = save_script("fish", dir.path(), "risp-udp.fish");
    let script = format!("source '{file}'; complete -C 'risp-udp client --j'");
    let Some(out) = shell("fish", &["--no-config", "-c"], &script) else {
        return;
    };
    let words: Vec<&str> = out.lines().filter_map(|l| l.split('\t').next()).collect();
    assert!(
        words.contains(&"--json") && words.contains(&"--jitter-ms"),
        "{words:?}"
    );
}

/// Zsh: an interactive zsh in a pseudo-terminal (the `zsh/zpty` module)
/// with the script on its `fpath` completes `risp-udp client --j<TAB>`.
/// The read waits for the candidate to appear; `timeout` bounds it.
#[test]
fn zsh_completes_flags_after_a_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    save_script("zsh", dir.path(), "_risp-udp");
    let fpath = dir.path().to_str().unwrap();
    let script = format!(
        r#"zmodload zsh/zpty
zpty z 'zsh -f -i'
zpty -w z 'PS1="> "; fpath=({fpath} $fpath); autoload -U compinit; compinit -u -D; echo RE""ADY'
zpty -r z line '*READY*'
zpty -w -n z $'risp-udp client --j\t'
zpty -r z out '*--jitter-ms*'
print -r -- "$out"
zpty -d z"#
    );
    let Some(out) = shell("zsh", &["-f", "-c"], &script) else {
        return;
    };
    assert!(out.contains("--jitter-ms"), "{out:?}");
}

//! `risp-udp completion SHELL`: a completion script generated from the
//! clap definitions.
//!
//! clap_complete's bash output for a hyphenated binary name sets `cmd` to
//! `risp__udp__subcmd__client` while matching `risp__subcmd__udp__subcmd__client`,
//! so nothing completes after a subcommand; [`script`] renames the one
//! spelling to the other. tests/cli_completion.rs runs bash, zsh and fish
//! on the scripts.

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// The binary's name, as the shell sees it.
pub const BIN_NAME: &str = "risp-udp";

/// The completion script for `shell`.
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN_NAME, &mut out);
    if shell == Shell::Bash {
        let mangled = BIN_NAME.replace('-', "__subcmd__");
        let consistent = BIN_NAME.replace('-', "__");
        out = String::from_utf8_lossy(&out)
            .replace(&mangled, &consistent)
            .into_bytes();
    }
    out
}

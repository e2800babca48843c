//! `risp-udp netem-args --suite FILE --profile NAME`: a suite profile's
//! link as the flags of `netem/scripts/netns-impair.sh`, so the kernel
//! scripts apply the profile the simulator and the shim run (see
//! [`crate::suite::Profile::script_flags`]).

use std::io::Write;
use std::path::PathBuf;

use crate::suite::{Suite, SuiteError};

/// Arguments of `risp-udp netem-args`: the suite profile whose link to
/// print as the kernel scripts' flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ScriptFlagsArgs {
    /// Suite file (TOML).
    #[arg(long, value_name = "FILE")]
    pub suite: PathBuf,
    /// The profile to translate.
    #[arg(long, value_name = "NAME")]
    pub profile: String,
}

/// Prints the profile's script flags on one line to `out`. A profile the
/// scripts cannot apply the same way is an error listing every reason.
pub fn run_netem_args(args: &ScriptFlagsArgs, out: &mut impl Write) -> Result<(), SuiteError> {
    let mut suite = Suite::load(&args.suite)?;
    suite.select(std::slice::from_ref(&args.profile))?;
    let profile = &suite.profiles[0];
    match profile.script_flags() {
        Ok(flags) => {
            writeln!(out, "{}", flags.join(" "))?;
            Ok(())
        }
        Err(reasons) => Err(SuiteError::Usage(format!(
            "profile `{}` cannot be applied by the kernel scripts: {}",
            profile.name,
            reasons.join("; ")
        ))),
    }
}

//! Errors for bad values that came from `RISP_*` environment variables.
//!
//! clap reports a bad value by its flag (`invalid value 'abc' for '--port
//! <PORT>'`), even when the user never typed `--port` and the value came
//! from `RISP_PORT`: they then look for a flag that is not on their command
//! line. [`explain`] recognises that case and names the variable instead:
//! `RISP_PORT=abc: invalid --port (invalid digit found in string)`.

use std::error::Error as _;
use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Command;

/// The message to print instead of `err` when the bad value came from an
/// environment variable (and not from `argv`); `None` otherwise.
pub fn explain(err: &clap::Error, cmd: &Command, argv: &[OsString]) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = err.get(ContextKind::InvalidValue) else {
        return None;
    };
    // "--port <PORT>" → "port".
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let (var, names) = find_env(cmd, long)?;
    if std::env::var_os(var).is_none_or(|v| v != value.as_str()) {
        return None;
    }
    let on_command_line = argv.iter().any(|a| {
        let a = a.to_string_lossy();
        names
            .iter()
            .any(|n| a == format!("--{n}") || a.starts_with(&format!("--{n}=")))
    });
    if on_command_line {
        return None;
    }
    let reason = match (err.source(), err.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("expected one of: {}", valid.join(", "))
        }
        _ => "not accepted".to_string(),
    };
    Some(format!("{var}={value}: invalid --{long} ({reason})"))
}

/// The environment variable of the flag `--long` in `cmd` or any of its
/// subcommands, with every name the flag answers to.
fn find_env<'a>(cmd: &'a Command, long: &str) -> Option<(&'a str, Vec<String>)> {
    for arg in cmd.get_arguments() {
        if arg.get_long() != Some(long) {
            continue;
        }
        let Some(var) = arg.get_env().and_then(|v| v.to_str()) else {
            continue;
        };
        let mut names = vec![long.to_string()];
        names.extend(
            arg.get_all_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(String::from),
        );
        return Some((var, names));
    }
    cmd.get_subcommands().find_map(|sub| find_env(sub, long))
}

//! One error type for suites: reading, checking, running, writing.

use std::fmt;
use std::path::PathBuf;

use crate::stats::PlotError;

/// What can go wrong with a suite. Every message names the file and, for a
/// bad suite file, the line and column.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The suite file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The suite file is not valid TOML, does not match the format, or
    /// asks for something impossible.
    #[error("{}", Located { path, line: *line, column: *column, reason })]
    Invalid {
        /// The file (or a name such as `<built-in standard suite>`).
        path: PathBuf,
        /// 1-based line; 0 when the problem is not tied to one place.
        line: usize,
        /// 1-based column (in characters); 0 when unknown.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// A command-line choice does not fit the suite (an unknown profile
    /// name, zero seeds, ...).
    #[error("{0}")]
    Usage(String),
    /// A run could not be carried out (real sockets only: the virtual
    /// simulator cannot fail).
    #[error("profile {profile:?}, seed {seed}: {source}")]
    Run {
        /// The profile.
        profile: String,
        /// The seed.
        seed: u64,
        /// Why.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// The report could not be written to the output stream.
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}

/// `path:line:column: reason`, leaving out what is unknown.
struct Located<'a> {
    path: &'a PathBuf,
    line: usize,
    column: usize,
    reason: &'a str,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": {}", self.reason)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
/// Offsets past the end (or inside a character) are clamped.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (1, 5));
        assert_eq!(line_column(text, 6), (2, 1));
        // After the two-byte é.
        assert_eq!(line_column(text, 9), (2, 3));
        // Inside é: clamped back to its start.
        assert_eq!(line_column(text, 8), (2, 2));
        assert_eq!(line_column(text, 999), (3, 1));
    }
}

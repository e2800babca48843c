//! The error types of `stats`: [`StatsError`] for everything, and
//! [`PlotError`] for drawing a plot file (shared with the suite plots).
//!
//! Histogram files come from users, other tools and older versions of this
//! program, so reading them must never panic: every way a file can be wrong
//! is a variant here, and each message names the file so that
//! `risp-udp hist a b c` tells the user which of the three is at fault.

use std::path::{Path, PathBuf};

/// The name used in messages for text that did not come from a file
/// (`read_hgrm` / `read_hlog` called on a string).
pub const NO_FILE: &str = "<input>";

/// What can go wrong while recording, saving, loading or plotting histograms.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// The file does not exist.
    #[error("{}: no such file", path.display())]
    NotFound {
        /// The file that was asked for.
        path: PathBuf,
    },
    /// The file exists but could not be read (permissions, a directory, ...).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than any histogram file this program would write.
    #[error("{}: {size} bytes is too large for a histogram file (limit {limit} bytes)", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file has no content (or only white space).
    #[error("{}: file is empty, expected a histogram", path.display())]
    Empty {
        /// The empty file.
        path: PathBuf,
    },
    /// The content is neither HdrHistogram percentile text (`.hgrm`), an
    /// interval log (`.hlog`) nor a binary V2 histogram.
    #[error("{}: not a histogram file (expected HdrHistogram percentile text (.hgrm) or an HdrHistogram interval log (.hlog))", path.display())]
    NotAHistogram {
        /// The file.
        path: PathBuf,
    },
    /// The file looks like a histogram format but a line or record is wrong.
    #[error("{}: {}{reason}", path.display(), at_line(*line))]
    Malformed {
        /// The file (or [`NO_FILE`] for text that did not come from a file).
        path: PathBuf,
        /// 1-based line number; 0 when the problem is not tied to one line.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Writing a histogram file failed.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file being written (or [`NO_FILE`] for a caller's writer).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The histogram could not be encoded for an interval log.
    #[error("cannot encode histogram for the interval log: {reason}")]
    Encode {
        /// The encoder's explanation.
        reason: String,
    },
    /// Drawing the plot failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
    /// `hist` or `plot_percentiles` was called without any input.
    #[error("no histograms given: {what}")]
    NoInput {
        /// What was missing.
        what: String,
    },
}

/// What can go wrong while drawing a plot file. Every message names the
/// file (or, for a set of plots, their directory).
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// There is nothing to draw.
    #[error("{}: nothing to plot: {what}", path.display())]
    NoData {
        /// The plot file or directory.
        path: PathBuf,
        /// Why there is nothing.
        what: String,
    },
    /// The file name asks for a format that is not drawn.
    #[error("{}: unsupported plot format: the file name must end in {supported}", path.display())]
    UnsupportedExtension {
        /// The plot file.
        path: PathBuf,
        /// The endings that are drawn, for the message (`.svg or .png`).
        supported: &'static str,
    },
    /// A directory or file could not be created.
    #[error("{}: cannot create {what}: {source}", path.display())]
    Create {
        /// The directory or file.
        path: PathBuf,
        /// `directory` or `file`.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The PNG encoder could not write the image.
    #[error("{}: cannot write PNG: {source}", path.display())]
    Png {
        /// The plot file.
        path: PathBuf,
        /// Why.
        source: png::EncodingError,
    },
    /// The drawing backend (plotters) failed.
    #[error("{}: cannot draw plot: {message}", path.display())]
    Backend {
        /// The plot file.
        path: PathBuf,
        /// The backend's message (its error types differ per backend).
        message: String,
    },
}

impl PlotError {
    /// A drawing backend error while drawing `path`.
    pub(crate) fn backend(path: &Path, err: impl std::fmt::Display) -> Self {
        PlotError::Backend {
            path: path.to_path_buf(),
            message: err.to_string(),
        }
    }
}

impl StatsError {
    /// Attach the file name to an error produced while parsing text, so the
    /// message says which file was bad.
    pub fn in_file(self, file: &Path) -> Self {
        match self {
            StatsError::Malformed { line, reason, .. } => StatsError::Malformed {
                path: file.to_path_buf(),
                line,
                reason,
            },
            StatsError::Write { source, .. } => StatsError::Write {
                path: file.to_path_buf(),
                source,
            },
            StatsError::NotAHistogram { .. } => StatsError::NotAHistogram {
                path: file.to_path_buf(),
            },
            StatsError::Empty { .. } => StatsError::Empty {
                path: file.to_path_buf(),
            },
            other => other,
        }
    }

    /// A parse error in text that has no file name (yet).
    pub(crate) fn malformed(line: usize, reason: impl Into<String>) -> Self {
        StatsError::Malformed {
            path: PathBuf::from(NO_FILE),
            line,
            reason: reason.into(),
        }
    }

    /// A write error on a caller's writer that has no file name (yet).
    pub(crate) fn write(source: std::io::Error) -> Self {
        StatsError::Write {
            path: PathBuf::from(NO_FILE),
            source,
        }
    }
}

/// `line N: ` for a 1-based line number; nothing for 0 (not tied to a line).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!("line {line}: ")
    }
}

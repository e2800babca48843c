//! What can go wrong reading a trace or drawing it.

use std::path::PathBuf;

use crate::stats::PlotError;

/// A trace that cannot be read, or a timeline that cannot be drawn.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read (missing, a directory, permissions).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a qlog JSON-SEQ trace.
    #[error("{}: not a qlog JSON-SEQ trace: {reason}", path.display())]
    NotQlog {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The plot could not be drawn or written.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

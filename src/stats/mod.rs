//! Latency histograms: record, summarise, save, load, merge, plot.
//!
//! A single average hides everything interesting about a lossy link: the
//! tail is where retransmission and head-of-line blocking live. So every
//! latency this program measures goes into an HdrHistogram (microseconds,
//! 3 significant digits), which keeps the whole percentile spectrum in
//! constant memory, merges across clients without loss, and saves in the
//! formats existing HdrHistogram tools read. docs/HISTOGRAMS.md defines what
//! each histogram measures and how to read one.
//!
//! Layout:
//! - `histogram.rs`: [`LatencyHistogram`], recording (with an optional
//!   one-second interval series);
//! - `summary.rs`: [`Summary`] and unit-aware formatting;
//! - `set.rs`: [`HistKind`] and [`HistogramSet`], the four histograms of a run;
//! - `hgrm.rs`: percentile-distribution text (`.hgrm`), write and read;
//! - `hlog.rs`: interval logs (`.hlog`, V2 compressed), write and read;
//! - `load.rs`: [`load`] any of them by content;
//! - `plot.rs`: [`plot_percentiles`] to SVG or PNG;
//! - `error.rs`: [`StatsError`], and [`PlotError`] for drawing plots.
//!
//! The `hist` command that reads them back is [`crate::cli::hist`].

mod error;
mod hgrm;
mod histogram;
mod hlog;
mod load;
mod plot;
mod set;
mod summary;

pub use error::{PlotError, StatsError, NO_FILE};
pub use hgrm::{
    read_hgrm, read_hgrm_in, write_hgrm, HgrmUnit, HGRM_HEADER, TICKS_PER_HALF_DISTANCE,
};
pub use histogram::{
    duration_to_ms, duration_to_us, LatencyHistogram, MAX_RECORDABLE_US, SIGNIFICANT_DIGITS,
};
pub use hlog::{read_hlog, write_hlog, write_hlog_with_start, HLOG_COMMENT};
pub use load::{load, load_in, parse_bytes, parse_bytes_in, sniff, FileFormat, MAX_FILE_BYTES};
pub(crate) use plot::{draw_legend, draw_line, write_png};
pub use plot::{
    percentile_label, plot_percentiles, register_plot_font, spectrum_points, PLOT_FONT, PLOT_SIZE,
};
pub use set::{HistKind, HistogramSet, SetSummary};
pub use summary::{format_duration_us, parse_duration_us, Summary};

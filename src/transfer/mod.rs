//! One transfer, whoever drives it: the run settings, the recorder that
//! turns a client's events into figures, and the report it produces.
//!
//! The simulator ([`crate::sim`]), the tokio client ([`crate::net::client`])
//! and the suites over either ([`crate::suite`]) all describe a transfer
//! with one [`TransferReport`], filled by one [`TransferRecorder`] fed with
//! [`ClientEvent`](crate::proto::client::ClientEvent)s, so a figure means
//! the same thing in a virtual run, a real run and a command-line client.
//! This module sits below `sim` and `net` and imports neither.

mod bottleneck;
mod config;
mod interval;
mod recorder;
mod report;

pub use bottleneck::{BottleneckConfig, BottleneckStats, SHARE_BUCKET};
pub use config::{link_seed, RunConfig};
pub use interval::{interval_head, interval_line, si, IntervalMeter, IntervalStats};
pub use recorder::TransferRecorder;
pub use report::{RunReport, ServerOutcome, TransferReport, WindowStats};

//! The four histograms a run records, named by [`HistKind`].
//!
//! Client and server record into a [`HistogramSet`]; sets from many clients
//! (or sessions) merge into one for the overall view, and a set saves itself
//! as one `.hgrm` and one `.hlog` per non-empty histogram, named by kind so
//! `risp-udp hist` and other tools can find them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::error::StatsError;
use super::hgrm::write_hgrm;
use super::histogram::LatencyHistogram;
use super::hlog::write_hlog;
use super::summary::Summary;

/// Which latency a histogram measures (see docs/HISTOGRAMS.md for the exact
/// definitions).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HistKind {
    /// Round-trip time samples from the timestamp echo.
    Rtt,
    /// Per value: from becoming eligible (ack/window) to in-order delivery.
    Delivery,
    /// Gaps between successive in-order deliveries during a transfer.
    Stall,
    /// Server side: a value's first send to its acknowledgement.
    ServerAck,
}

impl HistKind {
    /// Every kind, in report order.
    pub const ALL: [HistKind; 4] = [
        HistKind::Rtt,
        HistKind::Delivery,
        HistKind::Stall,
        HistKind::ServerAck,
    ];

    /// The file stem used when saving: `rtt`, `delivery`, `stall`, `server_ack`.
    pub fn stem(self) -> &'static str {
        match self {
            HistKind::Rtt => "rtt",
            HistKind::Delivery => "delivery",
            HistKind::Stall => "stall",
            HistKind::ServerAck => "server_ack",
        }
    }
}

impl std::fmt::Display for HistKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.stem())
    }
}

/// The four latency histograms of a client, a server session or a whole run.
#[derive(Debug, Clone, Default)]
pub struct HistogramSet {
    /// Round-trip times.
    pub rtt: LatencyHistogram,
    /// Eligible-to-delivered time per value.
    pub delivery: LatencyHistogram,
    /// Gaps between in-order deliveries.
    pub stall: LatencyHistogram,
    /// Server: first send to acknowledgement.
    pub server_ack: LatencyHistogram,
}

/// Summaries of a [`HistogramSet`], for reports and `--json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct SetSummary {
    /// Round-trip times.
    pub rtt: Summary,
    /// Eligible-to-delivered time per value.
    pub delivery: Summary,
    /// Gaps between in-order deliveries.
    pub stall: Summary,
    /// Server: first send to acknowledgement.
    pub server_ack: Summary,
}

impl HistogramSet {
    /// The histogram of kind `k`.
    pub fn get(&self, k: HistKind) -> &LatencyHistogram {
        match k {
            HistKind::Rtt => &self.rtt,
            HistKind::Delivery => &self.delivery,
            HistKind::Stall => &self.stall,
            HistKind::ServerAck => &self.server_ack,
        }
    }

    /// The histogram of kind `k`, to record into.
    pub fn get_mut(&mut self, k: HistKind) -> &mut LatencyHistogram {
        match k {
            HistKind::Rtt => &mut self.rtt,
            HistKind::Delivery => &mut self.delivery,
            HistKind::Stall => &mut self.stall,
            HistKind::ServerAck => &mut self.server_ack,
        }
    }

    /// Add every histogram of `other` to the one of the same kind here.
    pub fn merge(&mut self, other: &HistogramSet) {
        for k in HistKind::ALL {
            self.get_mut(k).merge(other.get(k));
        }
    }

    /// Summaries of all four histograms.
    pub fn summaries(&self) -> SetSummary {
        SetSummary {
            rtt: self.rtt.summary(),
            delivery: self.delivery.summary(),
            stall: self.stall.summary(),
            server_ack: self.server_ack.summary(),
        }
    }

    /// Write `<dir>/<prefix><stem>.hgrm` and `.hlog` for each non-empty
    /// histogram (creating `dir` if needed) and return the paths written.
    pub fn write_dir(&self, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, StatsError> {
        std::fs::create_dir_all(dir).map_err(|source| StatsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut written = Vec::new();
        for k in HistKind::ALL {
            let h = self.get(k);
            if h.is_empty() {
                continue;
            }
            let hgrm = dir.join(format!("{prefix}{}.hgrm", k.stem()));
            write_file(&hgrm, |w| write_hgrm(h, w))?;
            written.push(hgrm);
            let hlog = dir.join(format!("{prefix}{}.hlog", k.stem()));
            write_file(&hlog, |w| write_hlog(h, w))?;
            written.push(hlog);
        }
        Ok(written)
    }
}

/// Create `path` and fill it with `fill`, naming the file in any error.
fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> Result<(), StatsError>,
) -> Result<(), StatsError> {
    let file = File::create(path).map_err(|source| StatsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w = BufWriter::new(file);
    fill(&mut w).map_err(|e| e.in_file(path))?;
    w.flush().map_err(|source| StatsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

//! `risp-udp hist FILE...`: read saved histograms back, compare, merge, plot.
//!
//! Comparing runs (0 % vs 10 % loss, SACK on vs off, today vs last week) is
//! the point of saving histograms, so the command puts the inputs side by
//! side: one column per file, the same rows for each, plus an optional
//! merged column, a JSON form for scripts and a plot for people.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::stats::{
    format_duration_us, load_in, plot_percentiles, HgrmUnit, LatencyHistogram, StatsError, Summary,
};

/// Arguments of `risp-udp hist`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistArgs {
    /// Histogram files: .hgrm percentile text or .hlog interval logs (the
    /// format is detected from the content).
    #[arg(required = true, num_args = 1.., value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Also show (and plot) all inputs merged into one histogram.
    #[arg(long)]
    pub merge: bool,
    /// Draw the percentile spectrum of each input into this file (.svg or .png).
    #[arg(long, value_name = "OUT")]
    pub plot: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Unit of the Value column of .hgrm inputs: ours are in µs, wrk2's in
    /// ms. (.hlog inputs always hold µs.) An .hgrm file without its
    /// `#[... Total count = N]` footer is refused as truncated.
    #[arg(long, value_enum, default_value_t = HgrmUnit::Us)]
    pub unit: HgrmUnit,
}

/// The column title used for the merged histogram.
pub const MERGED_LABEL: &str = "merged";

/// Row labels of the table, in order.
pub const ROW_LABELS: [&str; 8] = ["count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"];

/// One input in the JSON output.
#[derive(Debug, serde::Serialize)]
struct JsonInput<'a> {
    /// Column title (file name).
    name: &'a str,
    /// The path as given.
    path: &'a Path,
    /// Its numbers, in microseconds.
    summary: Summary,
}

/// The whole JSON output.
#[derive(Debug, serde::Serialize)]
struct JsonReport<'a> {
    /// Every input, in argument order.
    inputs: Vec<JsonInput<'a>>,
    /// All inputs merged, with `--merge`.
    #[serde(skip_serializing_if = "Option::is_none")]
    merged: Option<Summary>,
    /// The plot written, with `--plot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    plot: Option<&'a Path>,
}

/// Column titles for `files`: the file name, or the whole path where two
/// inputs share a file name.
fn column_names(files: &[PathBuf]) -> Vec<String> {
    let short: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string())
        })
        .collect();
    short
        .iter()
        .zip(files)
        .map(|(name, path)| {
            if short.iter().filter(|n| *n == name).count() > 1 {
                path.display().to_string()
            } else {
                name.clone()
            }
        })
        .collect()
}

/// The cells of one table column.
fn column_cells(s: &Summary) -> [String; 8] {
    let d = |us: u64| {
        if s.count == 0 {
            "-".to_string()
        } else {
            format_duration_us(us)
        }
    };
    [
        s.count.to_string(),
        d(s.min_us),
        d(s.p50_us),
        d(s.p90_us),
        d(s.p99_us),
        d(s.p999_us),
        d(s.max_us),
        d(s.mean_us.round() as u64),
    ]
}

/// Run `hist`: load every file, then print the side-by-side table (or JSON)
/// to `out` and draw the plot if asked. The first bad file stops the command
/// with an error naming it.
pub fn run_hist(args: &HistArgs, out: &mut impl Write) -> Result<(), StatsError> {
    if args.files.is_empty() {
        return Err(StatsError::NoInput {
            what: "give at least one .hgrm or .hlog file".into(),
        });
    }
    let hists: Vec<LatencyHistogram> = args
        .files
        .iter()
        .map(|p| load_in(p, args.unit))
        .collect::<Result<_, _>>()?;
    let names = column_names(&args.files);
    let merged = args.merge.then(|| {
        let mut m = LatencyHistogram::new();
        for h in &hists {
            m.merge(h);
        }
        m
    });

    if let Some(plot) = &args.plot {
        let mut series: Vec<(String, &LatencyHistogram)> =
            names.iter().cloned().zip(hists.iter()).collect();
        if let Some(m) = &merged {
            series.push((MERGED_LABEL.to_string(), m));
        }
        plot_percentiles(&series, plot)?;
    }

    let write_err = StatsError::write;
    if args.json {
        let report = JsonReport {
            inputs: names
                .iter()
                .zip(&args.files)
                .zip(&hists)
                .map(|((name, path), h)| JsonInput {
                    name,
                    path,
                    summary: h.summary(),
                })
                .collect(),
            merged: merged.as_ref().map(LatencyHistogram::summary),
            plot: args.plot.as_deref(),
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| StatsError::Encode {
            reason: e.to_string(),
        })?;
        writeln!(out, "{text}").map_err(write_err)?;
        return Ok(());
    }

    let mut titles: Vec<String> = names.clone();
    let mut columns: Vec<[String; 8]> = hists.iter().map(|h| column_cells(&h.summary())).collect();
    if let Some(m) = &merged {
        titles.push(MERGED_LABEL.to_string());
        columns.push(column_cells(&m.summary()));
    }
    let label_width = ROW_LABELS.iter().map(|l| l.len()).max().unwrap_or(0);
    let widths: Vec<usize> = titles
        .iter()
        .zip(&columns)
        .map(|(t, cells)| {
            cells
                .iter()
                .map(|c| c.chars().count())
                .chain(std::iter::once(t.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut line = format!("{:label_width$}", "");
    for (t, w) in titles.iter().zip(&widths) {
        line.push_str(&format!("  {t:>w$}"));
    }
    writeln!(out, "{}", line.trim_end()).map_err(write_err)?;
    for (row, label) in ROW_LABELS.iter().enumerate() {
        let mut line = format!("{label:label_width$}");
        for (cells, w) in columns.iter().zip(&widths) {
            line.push_str(&format!("  {:>w$}", cells[row]));
        }
        writeln!(out, "{line}").map_err(write_err)?;
    }
    if let Some(plot) = &args.plot {
        writeln!(out, "plot written to {}", plot.display()).map_err(write_err)?;
    }
    Ok(())
}

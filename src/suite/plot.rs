//! `--plot DIR`: datagrams per value and completion time against loss, one
//! line for SACK on and one for off (SVG).
//!
//! The points are the profiles marked `plot` (by default those whose only
//! impairment is independent loss), placed at their server→client loss.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::error::SuiteError;
use super::run::{ProfileReport, SuiteReport};
use crate::stats::{draw_legend, draw_line, PlotError};

/// File name of the datagrams-per-value plot.
pub const DATAGRAMS_PLOT: &str = "datagrams-per-value.svg";
/// File name of the completion-time plot.
pub const COMPLETION_PLOT: &str = "completion-time.svg";

/// Plot size in pixels.
const SIZE: (u32, u32) = (900, 560);

/// One named line: (loss in %, y) points sorted by loss.
type Line = (String, Vec<(f64, f64)>);

/// Checks, before a suite runs, that its plots can be written into `dir`:
/// creates it if needed and writes (and removes) a probe file there, so
/// that a bad `--plot` fails at once rather than after the whole suite.
pub fn check_plot_dir(dir: &Path) -> Result<(), SuiteError> {
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Create {
        path: dir.to_path_buf(),
        what: "directory",
        source,
    })?;
    let probe = dir.join(".risp-udp-write-check");
    std::fs::File::create(&probe).map_err(|source| PlotError::Create {
        path: dir.to_path_buf(),
        what: "files in directory",
        source,
    })?;
    // Best effort: the probe is empty and its name says what it is.
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes both plots into `dir` (created if needed) and returns their paths.
/// Fails when no profile of the report is a plot point.
pub fn write_plots(report: &SuiteReport, dir: &Path) -> Result<Vec<PathBuf>, SuiteError> {
    crate::stats::register_plot_font();
    let points: Vec<&ProfileReport> = report.profiles.iter().filter(|p| p.plot).collect();
    if points.is_empty() {
        return Err(PlotError::NoData {
            path: dir.to_path_buf(),
            what: "no profile of this suite is a plain-loss profile (set `plot = true` on one)"
                .into(),
        }
        .into());
    }
    std::fs::create_dir_all(dir).map_err(|source| PlotError::Create {
        path: dir.to_path_buf(),
        what: "directory",
        source,
    })?;
    let series = |f: &dyn Fn(&ProfileReport) -> f64| -> Vec<Line> {
        let mut lines = Vec::new();
        for (sack, label) in [(true, "SACK on"), (false, "SACK off")] {
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.sack == sack)
                .map(|p| (p.loss_to_client * 100.0, f(p)))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !pts.is_empty() {
                lines.push((label.to_string(), pts));
            }
        }
        lines
    };
    let mut dgram = series(&|p| p.datagrams_per_value);
    let mut minimum: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|p| {
            p.min_datagrams_per_value
                .map(|m| (p.loss_to_client * 100.0, m))
        })
        .collect();
    minimum.sort_by(|a, b| a.0.total_cmp(&b.0));
    minimum.dedup_by(|a, b| a.0 == b.0);
    dgram.push(("minimum 1/(1-p)".to_string(), minimum));
    let done = series(&|p| p.completion_p50_us as f64 / 1000.0);

    let a = dir.join(DATAGRAMS_PLOT);
    draw(
        &a,
        &format!("{}: datagrams sent per value", report.suite),
        "datagrams per value",
        &dgram,
        false,
    )?;
    let b = dir.join(COMPLETION_PLOT);
    draw(
        &b,
        &format!("{}: median completion time", report.suite),
        "completion time (ms)",
        &done,
        true,
    )?;
    Ok(vec![a, b])
}

/// Draws `lines` into an SVG at `out`; the y axis starts at zero or just
/// below the lowest point.
fn draw(
    out: &Path,
    caption: &str,
    y_desc: &str,
    lines: &[Line],
    from_zero: bool,
) -> Result<(), PlotError> {
    let all = lines.iter().flat_map(|(_, p)| p.iter());
    let x_max = all.clone().map(|p| p.0).fold(0.0_f64, f64::max).max(1.0) * 1.05;
    let y_top = all.clone().map(|p| p.1).fold(0.0_f64, f64::max);
    let y_bottom = all.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_min = if from_zero || !y_bottom.is_finite() {
        0.0
    } else {
        (y_bottom - 0.05 * (y_top - y_bottom).max(0.1)).max(0.0)
    };
    let y_max = if y_top > y_min {
        y_top + 0.1 * (y_top - y_min)
    } else {
        y_min + 1.0
    };
    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    let e = |err: DrawingAreaErrorKind<_>| PlotError::backend(out, err);
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, y_min..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("loss, server to client (%)")
        .y_desc(y_desc)
        .draw()
        .map_err(e)?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        draw_line(&mut chart, name, pts.iter().copied(), color).map_err(e)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(e)?;
    }
    draw_legend(&mut chart).map_err(e)?;
    root.present().map_err(e)
}

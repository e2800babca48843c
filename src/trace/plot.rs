//! Timeline plots (`risp-udp plot FILE.sqlog --output OUT.svg|.png`): one
//! transfer against time, as stacked panels sharing the time axis, in the
//! manner of tcptrace's and qvis's congestion graphs:
//!
//! 1. the congestion window and the datagrams in flight;
//! 2. the RTT, smoothed and smallest;
//! 3. the delivery rate: the rate controller's estimate and the indices
//!    the acks show acknowledged per second;
//! 4. losses declared and resends, as running counts with a mark at each
//!    (marks are left out past [`MAX_MARKS`], the counts say it all).
//!
//! Labelled like the other plots (the embedded font of
//! [`crate::stats::register_plot_font`]); SVG or PNG by the extension.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::error::TraceError;
use super::timeline::{Series, Timeline};
use crate::stats::{draw_legend, draw_line, register_plot_font, write_png, PlotError, PLOT_FONT};

/// Timeline plot size in pixels.
pub const TIMELINE_SIZE: (u32, u32) = (1024, 1280);

/// Most points drawn per line (longer series are thinned evenly).
pub const MAX_POINTS: usize = 4000;

/// Most loss or resend marks drawn.
pub const MAX_MARKS: usize = 1000;

/// Draws the trace in `bytes` (`name` names it in errors and the title)
/// into `out`.
pub fn plot_sqlog(bytes: &[u8], name: &str, out: &Path) -> Result<(), TraceError> {
    let t = Timeline::parse(bytes, Path::new(name))?;
    plot_timeline(&t, out)
}

/// Reads the trace in `input` and draws it into `out`.
pub fn plot_file(input: &Path, out: &Path) -> Result<(), TraceError> {
    check_extension(out)?;
    let t = Timeline::load(input)?;
    plot_timeline(&t, out)
}

/// Whether `out` names a format that is drawn (`.svg`, `.png`).
fn check_extension(out: &Path) -> Result<bool, PlotError> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => Ok(true),
        Some("png") => Ok(false),
        _ => Err(PlotError::UnsupportedExtension {
            path: out.to_path_buf(),
            supported: ".svg or .png",
        }),
    }
}

/// Draws `t` into `out`, SVG or PNG by its extension.
pub fn plot_timeline(t: &Timeline, out: &Path) -> Result<(), TraceError> {
    let svg = check_extension(out)?;
    if t.is_empty() {
        return Err(PlotError::NoData {
            path: out.to_path_buf(),
            what: "the trace has no metrics, losses or acks".into(),
        }
        .into());
    }
    register_plot_font();
    if svg {
        let root = SVGBackend::new(out, TIMELINE_SIZE).into_drawing_area();
        draw(&root, out, t)?;
        root.present().map_err(|e| PlotError::backend(out, e))?;
    } else {
        let (w, h) = TIMELINE_SIZE;
        let mut pixels = vec![0u8; (w as usize) * (h as usize) * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, TIMELINE_SIZE).into_drawing_area();
            draw(&root, out, t)?;
            root.present().map_err(|e| PlotError::backend(out, e))?;
        }
        write_png(out, &pixels, TIMELINE_SIZE)?;
    }
    Ok(())
}

/// One panel: its caption, its y axis label, its named lines.
type Panel<'a> = (&'a str, &'a str, Vec<(&'a str, &'a Series)>);

/// The time axis: its end and unit (ms, or s for traces over 10 s).
#[derive(Clone, Copy)]
struct TimeAxis {
    end: f64,
    per_unit: f64,
    label: &'static str,
}

impl TimeAxis {
    fn of(t: &Timeline) -> Self {
        let (per_unit, label) = if t.end > 10_000.0 {
            (1000.0, "time (s)")
        } else {
            (1.0, "time (ms)")
        };
        Self {
            end: (t.end / per_unit).max(1e-3) * 1.02,
            per_unit,
            label,
        }
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    out: &Path,
    t: &Timeline,
) -> Result<(), PlotError> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| PlotError::backend(out, err);
    root.fill(&WHITE).map_err(e)?;
    let title = match t.title.as_str() {
        "" => format!("Timeline ({} side)", t.vantage),
        s => format!("Timeline: {s} ({} side)", t.vantage),
    };
    let body = root.titled(&title, (PLOT_FONT, 24)).map_err(e)?;
    let panels = body.split_evenly((4, 1));
    let x = TimeAxis::of(t);
    let counts = [
        ("declared lost", cumulative(&t.losses, t.end)),
        ("resent", cumulative(&t.resends, t.end)),
    ];
    let specs: [Panel; 4] = [
        (
            "window and flight",
            "datagrams",
            vec![("congestion window", &t.window), ("in flight", &t.flight)],
        ),
        (
            "round-trip time",
            "RTT (ms)",
            vec![("smoothed RTT", &t.srtt), ("min RTT", &t.min_rtt)],
        ),
        (
            "delivery rate",
            "datagrams/s",
            vec![
                ("delivery-rate estimate", &t.delivery_rate),
                ("acknowledged", &t.acked_rate),
            ],
        ),
        (
            "losses and resends",
            "count (running)",
            counts.iter().map(|(n, s)| (*n, s)).collect(),
        ),
    ];
    for (i, (area, (caption, y_desc, lines))) in panels.iter().zip(specs).enumerate() {
        let marks = i == 3;
        panel(area, caption, y_desc, x, &lines, marks).map_err(e)?;
    }
    Ok(())
}

/// One panel: `lines` against time, each in its own colour (with marks at
/// each point when `marks`).
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    caption: &str,
    y_desc: &str,
    x: TimeAxis,
    lines: &[(&str, &Series)],
    marks: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let y_top = lines
        .iter()
        .flat_map(|(_, s)| s.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    // Headroom above the data for the legend (upper left).
    let y_max = if y_top > 0.0 { y_top * 1.45 } else { 1.0 };
    let empty = lines.iter().all(|(_, s)| s.is_empty());
    let caption = if empty {
        format!("{caption} (none in this trace)")
    } else {
        caption.to_string()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (PLOT_FONT, 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x.end, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(x.label)
        .y_desc(y_desc)
        .y_labels(6)
        .y_label_formatter(&|v| tick_label(*v))
        .draw()?;
    for (i, (name, s)) in lines.iter().enumerate() {
        if s.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = thin(s).map(|(t, v)| (t / x.per_unit, v)).collect();
        draw_line(&mut chart, name, pts.iter().copied(), color)?;
        if marks && s.len() <= MAX_MARKS + 2 {
            // The count's first and last points are its ends, not events.
            let events = &s[1..s.len().saturating_sub(1).max(1)];
            chart.draw_series(
                events
                    .iter()
                    .map(|&(t, v)| Cross::new((t / x.per_unit, v), 4, color.stroke_width(1))),
            )?;
        }
    }
    if !empty {
        draw_legend(&mut chart)?;
    }
    Ok(())
}

/// A y tick: `1.5M` past a million, whole numbers from 10, one decimal
/// below.
fn tick_label(v: f64) -> String {
    if v.abs() >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// At most [`MAX_POINTS`] of `s`, evenly spaced, the last included.
fn thin(s: &Series) -> impl Iterator<Item = (f64, f64)> + '_ {
    let step = s.len().div_ceil(MAX_POINTS).max(1);
    let last = s.len().saturating_sub(1);
    s.iter()
        .enumerate()
        .filter(move |(i, _)| i % step == 0 || *i == last)
        .map(|(_, p)| *p)
}

/// The running count of events at `times`: from 0 at time 0 to the total
/// at `end`; empty without events.
fn cumulative(times: &[f64], end: f64) -> Series {
    if times.is_empty() {
        return Vec::new();
    }
    let mut s = Vec::with_capacity(times.len() + 2);
    s.push((0.0, 0.0));
    s.extend(times.iter().enumerate().map(|(i, &t)| (t, (i + 1) as f64)));
    s.push((end, times.len() as f64));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_bounds_the_points() {
        let s: Series = (0..10_001).map(|i| (f64::from(i), 0.0)).collect();
        let kept: Vec<_> = thin(&s).collect();
        assert!(kept.len() <= MAX_POINTS + 1, "{}", kept.len());
        assert_eq!(kept.first(), s.first());
        assert_eq!(kept.last(), s.last());
    }

    #[test]
    fn the_running_count_ends_at_the_total() {
        let c = cumulative(&[1.0, 2.0, 5.0], 9.0);
        assert_eq!(
            c,
            vec![(0.0, 0.0), (1.0, 1.0), (2.0, 2.0), (5.0, 3.0), (9.0, 3.0)]
        );
        assert!(cumulative(&[], 9.0).is_empty());
    }
}

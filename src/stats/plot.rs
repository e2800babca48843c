//! Drawing percentile spectra with plotters.
//!
//! The picture users know from the HdrHistogram plotter: latency (ms) up the
//! y axis against percentile along an x axis that is logarithmic in
//! 1/(1-p), so 90 %, 99 %, 99.9 %, 99.99 % sit at equal distances and the
//! tail, where retransmission and head-of-line blocking live, gets as much
//! room as the median. One labelled line per input.
//!
//! Fonts: the charts are labelled in DejaVu Sans, embedded in the binary
//! (the `dejavu` crate; Bitstream Vera licence) and registered with
//! plotters' `ab_glyph` text renderer by [`register_plot_font`], so PNG
//! output carries the same title, axis labels, ticks and legend as SVG on
//! any machine, with no font installed. SVG keeps its text as `<text>`
//! elements that the viewer renders.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use super::error::{PlotError, StatsError};
use super::hgrm::TICKS_PER_HALF_DISTANCE;
use super::histogram::LatencyHistogram;

/// The font family every chart asks for; [`register_plot_font`] maps it
/// (and the styles plotters may ask for) to the embedded DejaVu Sans.
pub const PLOT_FONT: &str = "sans-serif";

/// Registers the embedded font under [`PLOT_FONT`] for plotters' text
/// renderer. Idempotent; every function that draws a chart calls it first.
pub fn register_plot_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let regular = dejavu::sans::regular();
        for (style, bytes) in [
            (FontStyle::Normal, regular),
            (FontStyle::Bold, dejavu::sans::bold()),
            (FontStyle::Oblique, dejavu::sans::oblique()),
            (FontStyle::Italic, dejavu::sans::oblique()),
        ] {
            // The bytes are a well-formed TrueType file shipped by the
            // crate; a failure would only lose the labels, not the chart.
            if register_font(PLOT_FONT, style, bytes).is_err() {
                tracing::warn!("the embedded plot font could not be registered");
            }
        }
    });
}

/// Plot size in pixels.
pub const PLOT_SIZE: (u32, u32) = (1024, 640);

/// The x-axis label at `x` = log10(1/(1-p)): `0%`, `90%`, `99%`, `99.9%`, …
/// (empty between whole decades).
pub fn percentile_label(x: f64) -> String {
    let k = x.round();
    if (x - k).abs() > 1e-6 || k < 0.0 {
        return String::new();
    }
    match k as u32 {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// The points of one spectrum: (log10(1/(1-p)), latency in ms) at each
/// percentile tick, as in the `.hgrm` rows (the 100 % row is at infinity
/// and left out).
pub fn spectrum_points(h: &LatencyHistogram) -> Vec<(f64, f64)> {
    h.inner()
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .filter(|v| v.quantile_iterated_to() < 1.0)
        .map(|v| {
            let x = -(1.0 - v.quantile_iterated_to()).log10();
            (x.max(0.0), v.value_iterated_to() as f64 / 1_000.0)
        })
        .collect()
}

/// Plot the percentile spectrum of each `(label, histogram)` into `out`:
/// SVG or PNG chosen by the extension.
pub fn plot_percentiles(
    series: &[(String, &LatencyHistogram)],
    out: &Path,
) -> Result<(), StatsError> {
    if series.is_empty() {
        return Err(StatsError::NoInput {
            what: "nothing to plot".into(),
        });
    }
    register_plot_font();
    let lines: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, h)| (name.clone(), spectrum_points(h)))
        .collect();
    if lines.iter().all(|(_, pts)| pts.is_empty()) {
        return Err(PlotError::NoData {
            path: out.to_path_buf(),
            what: "every histogram is empty".into(),
        }
        .into());
    }
    let max_count = series.iter().map(|(_, h)| h.len()).max().unwrap_or(1);
    // Decades of percentile worth showing: about log10(count), at least to 99 %.
    let x_max = (max_count.max(1) as f64).log10().ceil().clamp(2.0, 7.0);
    let y_top = lines
        .iter()
        .flat_map(|(_, pts)| pts.iter().filter(|p| p.0 <= x_max).map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = if y_top > 0.0 { y_top * 1.1 } else { 1.0 };
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(out, PLOT_SIZE).into_drawing_area();
            draw_chart(&root, out, &lines, x_max, y_max)?;
            root.present().map_err(|e| PlotError::backend(out, e))?;
        }
        Some("png") => {
            let (w, h) = PLOT_SIZE;
            let mut pixels = vec![0u8; (w as usize) * (h as usize) * 3];
            {
                let root = BitMapBackend::with_buffer(&mut pixels, PLOT_SIZE).into_drawing_area();
                draw_chart(&root, out, &lines, x_max, y_max)?;
                root.present().map_err(|e| PlotError::backend(out, e))?;
            }
            write_png(out, &pixels, PLOT_SIZE)?;
        }
        _ => {
            return Err(PlotError::UnsupportedExtension {
                path: out.to_path_buf(),
                supported: ".svg or .png",
            }
            .into())
        }
    }
    Ok(())
}

/// Draw the chart for the file `out` on any backend.
fn draw_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    out: &Path,
    lines: &[(String, Vec<(f64, f64)>)],
    x_max: f64,
    y_max: f64,
) -> Result<(), PlotError> {
    let e = |err: DrawingAreaErrorKind<DB::ErrorType>| PlotError::backend(out, err);
    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(root)
        .caption("Latency by percentile", (PLOT_FONT, 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("Percentile")
        .y_desc("Latency (ms)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_labels(10)
        .draw()
        .map_err(e)?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let visible = pts.iter().copied().filter(|p| p.0 <= x_max);
        draw_line(&mut chart, name, visible, Palette99::pick(i).to_rgba()).map_err(e)?;
    }
    draw_legend(&mut chart).map_err(e)
}

/// A chart of `f64` against `f64`.
pub(crate) type F64Chart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the line `name` through `points` in `color`, with its legend
/// entry (a short stroke of the line's colour).
pub(crate) fn draw_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut F64Chart<'a, DB>,
    name: &str,
    points: impl IntoIterator<Item = (f64, f64)>,
    color: RGBAColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .draw_series(LineSeries::new(points, color.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    Ok(())
}

/// Draws the legend as every chart here has it: upper left, on a light
/// background.
pub(crate) fn draw_legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut F64Chart<'a, DB>,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
}

/// Encode an RGB buffer as PNG.
pub(crate) fn write_png(out: &Path, rgb: &[u8], (w, h): (u32, u32)) -> Result<(), PlotError> {
    let file = File::create(out).map_err(|source| PlotError::Create {
        path: out.to_path_buf(),
        what: "file",
        source,
    })?;
    let png_err = |source| PlotError::Png {
        path: out.to_path_buf(),
        source,
    };
    let mut encoder = png::Encoder::new(BufWriter::new(file), w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

//! `risp-udp hist` over the real binary: plots, truncated and foreign
//! `.hgrm` files, units.

mod support;

use std::path::{Path, PathBuf};

use risp_udp::stats::{write_hgrm, LatencyHistogram, PLOT_SIZE};
use support::cli::run;

/// A histogram of `n` samples from `base_us` up, saved as `.hgrm` in `dir`.
fn hgrm(dir: &Path, name: &str, base_us: u64, n: u64) -> PathBuf {
    let mut h = LatencyHistogram::new();
    for i in 0..n {
        h.record_us(base_us + i % 1000);
    }
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    write_hgrm(&h, &mut f).unwrap();
    path
}

/// The RGB pixels of a PNG file.
fn pixels(path: &Path) -> Vec<[u8; 3]> {
    let bytes = std::fs::read(path).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), PLOT_SIZE);
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// Dark pixels in the rows `rows` (text is drawn in black; the chart
/// lines are coloured and the grid light).
fn dark_pixels_in_rows(rgb: &[[u8; 3]], rows: std::ops::Range<usize>) -> usize {
    let w = PLOT_SIZE.0 as usize;
    rows.flat_map(|y| &rgb[y * w..(y + 1) * w])
        .filter(|p| p.iter().all(|c| *c < 80))
        .count()
}

/// `hist --plot x.png` draws the title, tick labels and legend text with
/// the embedded font: the band above the chart, where only the title
/// lives, has dark glyph pixels (it was blank: PNG plots had no text).
#[test]
fn png_plot_is_labelled_with_the_embedded_font() {
    let dir = tempfile::tempdir().unwrap();
    let a = hgrm(dir.path(), "a.hgrm", 1_000, 5_000);
    let b = hgrm(dir.path(), "b.hgrm", 4_000, 5_000);
    let png = dir.path().join("spectrum.png");
    let out = run(&[
        "hist",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--plot",
        png.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let rgb = pixels(&png);
    // Margin 20 px, then the 24 px caption.
    let title = dark_pixels_in_rows(&rgb, 20..50);
    assert!(title > 100, "title drawn: {title} dark pixels");
    // The bottom band holds the x tick labels and the axis description.
    let h = PLOT_SIZE.1 as usize;
    let bottom = dark_pixels_in_rows(&rgb, h - 60..h - 20);
    assert!(bottom > 100, "x labels drawn: {bottom} dark pixels");
}

/// An `.hgrm` file cut before its footer (a truncated copy) is refused
/// with a message that says so; it used to be read silently, with
/// whatever rows survived.
#[test]
fn hgrm_without_footer_is_refused_as_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let whole = hgrm(dir.path(), "whole.hgrm", 1_000, 5_000);
    let text = std::fs::read_to_string(&whole).unwrap();
    let cut: String = text
        .lines()
        .take_while(|l| !l.starts_with("#["))
        .map(|l| format!("{l}\n"))
        .collect();
    let truncated = dir.path().join("cut.hgrm");
    std::fs::write(&truncated, cut).unwrap();
    let ok = run(&["hist", whole.to_str().unwrap()]);
    assert_eq!(ok.code, Some(0), "{ok:?}");
    let out = run(&["hist", truncated.to_str().unwrap()]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("cut.hgrm"), "{out:?}");
    assert!(out.stderr.contains("footer"), "{out:?}");
    assert!(out.stderr.contains("truncated"), "{out:?}");
}

/// wrk2 writes its `.hgrm` values in milliseconds: `--unit ms` reads them
/// as such (the default, µs, is ours).
#[test]
fn hist_unit_reads_foreign_milliseconds() {
    let dir = tempfile::tempdir().unwrap();
    let wrk2 = dir.path().join("wrk2.hgrm");
    std::fs::write(
        &wrk2,
        "Running 10s test @ http://localhost:8080\n\
         \x20      Value   Percentile   TotalCount 1/(1-Percentile)\n\n\
         \x20      2.000     0.500000000000         50           2.00\n\
         \x20      8.000     1.000000000000        100\n\
         #[Mean    =        5.000, StdDeviation   =        3.000]\n\
         #[Max     =        8.000, Total count    =          100]\n\
         #[Buckets =           27, SubBuckets     =         2048]\n",
    )
    .unwrap();
    let p50 = |unit: &str| {
        let out = run(&["hist", "--json", "--unit", unit, wrk2.to_str().unwrap()]);
        assert_eq!(out.code, Some(0), "{out:?}");
        let j: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        j["inputs"][0]["summary"]["p50_us"].as_u64().unwrap()
    };
    assert_eq!(p50("ms"), 2_000);
    assert_eq!(p50("us"), 2);
}

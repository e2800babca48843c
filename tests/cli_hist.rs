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

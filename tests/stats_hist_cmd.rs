//! `risp-udp hist`: tables that match the saved histograms, JSON, plots
//! whose content shows one line per input, and clear errors for bad files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use plotters::style::{Color, Palette, Palette99};
use risp_udp::cli::hist::{run_hist, HistArgs, ROW_LABELS};
use risp_udp::stats::{
    format_duration_us, load, parse_duration_us, plot_percentiles, write_hgrm, write_hlog,
    LatencyHistogram, StatsError, Summary,
};

fn samples_hist(scale: u64, n: u64) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for i in 1..=n {
        // A skewed spread: mostly near `scale`, a tail up to 20x.
        let tail = if i % 100 == 0 { 20 * scale } else { 0 };
        h.record(Duration::from_micros(scale + (i * 37) % scale + tail));
    }
    h
}

fn save(dir: &Path, name: &str, h: &LatencyHistogram) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    if name.ends_with(".hgrm") {
        write_hgrm(h, &mut f).unwrap();
    } else {
        write_hlog(h, &mut f).unwrap();
    }
    path
}

fn args(files: Vec<PathBuf>) -> HistArgs {
    HistArgs {
        files,
        merge: false,
        plot: None,
        json: false,
        unit: risp_udp::stats::HgrmUnit::Us,
    }
}

fn run(a: &HistArgs) -> Result<String, StatsError> {
    let mut out = Vec::new();
    run_hist(a, &mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

/// Parse the table into column title -> row label -> cell.
fn parse_table(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut lines = text.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let mut table: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for line in lines.take(ROW_LABELS.len()) {
        let mut cells = line.split_whitespace();
        let label = cells.next().unwrap().to_string();
        for (title, cell) in titles.iter().zip(cells) {
            table
                .entry(title.clone())
                .or_default()
                .insert(label.clone(), cell.to_string());
        }
    }
    table
}

/// A printed cell agrees with the exact value to the 3 significant digits
/// `format_duration_us` keeps.
fn cell_matches(cell: &str, us: u64) {
    assert_eq!(cell, format_duration_us(us));
    let back = parse_duration_us(cell).unwrap();
    assert!(
        (back - us as f64).abs() <= (us as f64) * 0.005 + 0.5,
        "{cell} vs {us}"
    );
}

fn check_column(col: &BTreeMap<String, String>, s: &Summary) {
    assert_eq!(col["count"], s.count.to_string());
    cell_matches(&col["min"], s.min_us);
    cell_matches(&col["p50"], s.p50_us);
    cell_matches(&col["p90"], s.p90_us);
    cell_matches(&col["p99"], s.p99_us);
    cell_matches(&col["p99.9"], s.p999_us);
    cell_matches(&col["max"], s.max_us);
    cell_matches(&col["mean"], s.mean_us.round() as u64);
}

#[test]
fn table_shows_one_column_per_file_matching_the_saved_histograms() {
    let dir = tempfile::tempdir().unwrap();
    let clean = samples_hist(1_500, 20_000);
    let lossy = samples_hist(40_000, 5_000);
    let a = save(dir.path(), "clean.hgrm", &clean);
    let b = save(dir.path(), "lossy.hlog", &lossy);
    let mut a_args = args(vec![a.clone(), b.clone()]);
    a_args.merge = true;
    let text = run(&a_args).unwrap();
    let table = parse_table(&text);
    assert_eq!(
        table.keys().cloned().collect::<Vec<_>>(),
        vec!["clean.hgrm", "lossy.hlog", "merged"],
        "{text}"
    );
    let (la, lb) = (load(&a).unwrap(), load(&b).unwrap());
    check_column(&table["clean.hgrm"], &la.summary());
    check_column(&table["lossy.hlog"], &lb.summary());
    let mut merged = la.clone();
    merged.merge(&lb);
    check_column(&table["merged"], &merged.summary());
    assert_eq!(table["merged"]["count"], "25000");
    // The .hlog column is the original histogram exactly.
    assert_eq!(lb.summary(), lossy.summary());
}

#[test]
fn json_output_has_exact_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let h1 = samples_hist(800, 3_000);
    let h2 = samples_hist(9_000, 4_000);
    let a = save(dir.path(), "one.hlog", &h1);
    let b = save(dir.path(), "two.hlog", &h2);
    let mut j = args(vec![a, b]);
    j.json = true;
    j.merge = true;
    let v: serde_json::Value = serde_json::from_str(&run(&j).unwrap()).unwrap();
    let inputs = v["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    assert_eq!(inputs[0]["name"], "one.hlog");
    for (input, h) in inputs.iter().zip([&h1, &h2]) {
        let s = h.summary();
        assert_eq!(input["summary"]["count"], s.count);
        assert_eq!(input["summary"]["p50_us"], s.p50_us);
        assert_eq!(input["summary"]["p99_us"], s.p99_us);
        assert_eq!(input["summary"]["p999_us"], s.p999_us);
        assert_eq!(input["summary"]["max_us"], s.max_us);
    }
    let mut m = h1.clone();
    m.merge(&h2);
    assert_eq!(v["merged"]["count"], 7_000);
    assert_eq!(v["merged"]["p99_us"], m.summary().p99_us);
    assert!(v.get("plot").is_none());
}

/// `(stroke colour, number of points)` of every `<polyline>` in an SVG.
fn svg_polylines(svg: &str) -> Vec<(String, usize)> {
    svg.split("<polyline")
        .skip(1)
        .map(|el| {
            let el = &el[..el.find("/>").unwrap()];
            let attr = |name: &str| {
                let start = el.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                el[start..start + el[start..].find('"').unwrap()].to_string()
            };
            let points = attr("points").split_whitespace().count();
            (attr("stroke").to_ascii_uppercase(), points)
        })
        .collect()
}

/// The text content of every `<text>` element in an SVG.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|el| {
            let body = &el[el.find('>').unwrap() + 1..];
            body[..body.find("</text>").unwrap()].trim().to_string()
        })
        .collect()
}

fn palette_hex(i: usize) -> String {
    let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
    format!("#{r:02X}{g:02X}{b:02X}")
}

#[test]
fn svg_plot_has_one_labelled_line_per_input() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        save(dir.path(), "zero-loss.hgrm", &samples_hist(1_000, 10_000)),
        save(dir.path(), "ten-percent.hlog", &samples_hist(5_000, 10_000)),
        save(dir.path(), "sack-off.hgrm", &samples_hist(12_000, 2_000)),
    ];
    let out = dir.path().join("spectrum.svg");
    let mut a = args(files);
    a.plot = Some(out.clone());
    let text = run(&a).unwrap();
    assert!(text.contains("plot written to"), "{text}");
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.trim_start().starts_with("<svg") && svg.trim_end().ends_with("</svg>"));

    let texts = svg_texts(&svg);
    for label in ["zero-loss.hgrm", "ten-percent.hlog", "sack-off.hgrm"] {
        assert_eq!(
            texts.iter().filter(|t| *t == label).count(),
            1,
            "legend {label}: {texts:?}"
        );
    }
    for axis in ["90%", "99%", "99.9%", "Latency (ms)", "Percentile"] {
        assert!(texts.iter().any(|t| t == axis), "missing {axis}: {texts:?}");
    }

    // Data lines: many points, one per series, each in its palette colour;
    // legend swatches: two points in the same colours.
    let lines = svg_polylines(&svg);
    let data: Vec<&(String, usize)> = lines.iter().filter(|(_, n)| *n > 10).collect();
    assert_eq!(data.len(), 3, "{lines:?}");
    for (i, (colour, _)) in data.iter().enumerate() {
        assert_eq!(*colour, palette_hex(i));
        assert!(
            lines.iter().any(|(c, n)| c == colour && *n == 2),
            "swatch {colour}"
        );
    }
}

#[test]
fn merged_series_is_plotted_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = samples_hist(1_000, 5_000);
    let b = samples_hist(3_000, 5_000);
    let out = dir.path().join("m.svg");
    let m = {
        let mut m = a.clone();
        m.merge(&b);
        m
    };
    plot_percentiles(
        &[("a".into(), &a), ("b".into(), &b), ("merged".into(), &m)],
        &out,
    )
    .unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        svg_polylines(&svg).iter().filter(|(_, n)| *n > 10).count(),
        3
    );
    assert!(svg_texts(&svg).iter().any(|t| t == "merged"));
}

#[test]
fn png_plot_is_a_valid_png_with_each_series_colour() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        save(dir.path(), "a.hlog", &samples_hist(1_000, 10_000)),
        save(dir.path(), "b.hgrm", &samples_hist(7_000, 10_000)),
    ];
    let out = dir.path().join("spectrum.png");
    let mut a = args(files);
    a.plot = Some(out.clone());
    run(&a).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert!(bytes.len() > 1_000);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");

    let decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height), risp_udp::stats::PLOT_SIZE);
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let rgb: Vec<[u8; 3]> = pixels[..info.buffer_size()]
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    assert!(rgb.iter().any(|p| *p != rgb[0]), "image is one colour");
    for i in 0..2 {
        let (r, g, b) = Palette99::pick(i).to_rgba().rgb();
        let n = rgb.iter().filter(|p| **p == [r, g, b]).count();
        assert!(n > 100, "series {i} colour appears in {n} pixels");
    }
}

#[test]
fn unknown_plot_extension_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let h = samples_hist(1_000, 100);
    let err = plot_percentiles(&[("a".into(), &h)], &dir.path().join("x.jpg")).unwrap_err();
    assert!(matches!(err, StatsError::Plot { .. }), "{err}");
    assert!(err.to_string().contains(".svg or .png"), "{err}");
}

#[test]
fn bad_inputs_give_distinct_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = save(dir.path(), "good.hgrm", &samples_hist(1_000, 100));
    let missing = dir.path().join("missing.hgrm");
    let empty = dir.path().join("empty.hlog");
    std::fs::write(&empty, "").unwrap();
    let prose = dir.path().join("notes.hgrm");
    std::fs::write(&prose, "Meeting notes\nnothing to see here, 1, 2, 3\n").unwrap();
    let binary = dir.path().join("noise.hlog");
    std::fs::write(&binary, [0xffu8, 0x00, 0x13, 0x37, 0x80, 0x81]).unwrap();
    let truncated = dir.path().join("truncated.hgrm");
    // Drop the last two percentile rows: the footer no longer adds up.
    let full: Vec<String> = std::fs::read_to_string(&good)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let footer = full.iter().position(|l| l.starts_with("#[")).unwrap();
    let cut: String = full
        .iter()
        .enumerate()
        .filter(|(i, _)| *i + 2 < footer || *i >= footer)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(&truncated, cut).unwrap();
    let garbled_log = dir.path().join("garbled.hlog");
    std::fs::write(
        &garbled_log,
        "#[Histogram log format version 1.3]\n0.000,1.000,5.000,HISTFAAAAnotbase64!!\n",
    )
    .unwrap();

    let err_for = |p: &Path| run(&args(vec![good.clone(), p.to_path_buf()])).unwrap_err();
    let e = err_for(&missing);
    assert!(matches!(e, StatsError::NotFound { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("{}: no such file", missing.display())
    );
    let e = err_for(&empty);
    assert!(matches!(e, StatsError::Empty { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&empty.display().to_string()));
    assert!(e.to_string().contains("empty"));
    for p in [&prose, &binary] {
        let e = err_for(p);
        assert!(matches!(e, StatsError::NotAHistogram { .. }), "{e:?}");
        assert!(e.to_string().starts_with(&p.display().to_string()), "{e}");
        assert!(e.to_string().contains("not a histogram file"));
    }
    let e = err_for(&truncated);
    assert!(matches!(e, StatsError::Malformed { .. }), "{e:?}");
    assert!(
        e.to_string().contains("truncated.hgrm") && e.to_string().contains("footer"),
        "{e}"
    );
    let e = err_for(&garbled_log);
    assert!(matches!(e, StatsError::Malformed { .. }), "{e:?}");
    assert!(e.to_string().contains("garbled.hlog"), "{e}");
    let e = run(&args(vec![])).unwrap_err();
    assert!(matches!(e, StatsError::NoInput { .. }), "{e:?}");
}

#[test]
fn hist_args_parse_with_clap() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        hist: HistArgs,
    }
    let cli =
        Cli::try_parse_from(["hist", "a.hgrm", "b.hlog", "--merge", "--plot", "o.svg"]).unwrap();
    assert_eq!(
        cli.hist.files,
        vec![PathBuf::from("a.hgrm"), PathBuf::from("b.hlog")]
    );
    assert!(cli.hist.merge && !cli.hist.json);
    assert_eq!(cli.hist.plot, Some(PathBuf::from("o.svg")));
    assert!(Cli::try_parse_from(["hist"]).is_err(), "files are required");
}

//! `risp-udp sim [SUITE]`: run a loss-simulation suite and print one row per
//! profile. The suite format is described in [`crate::suite`]; without
//! a file the built-in standard suite (`netem/suites/standard.toml`) runs.

use std::io::Write;
use std::path::PathBuf;

use crate::suite::{
    builtin_path, check_plot_dir, record_run, run_suite_with, write_csv, write_markdown,
    write_plots, write_table, Mode, SimRecording, Suite, SuiteError, STANDARD_SUITE,
};

/// Arguments of `risp-udp sim`.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Suite file (TOML). Default: the built-in standard suite.
    #[arg(value_name = "SUITE")]
    pub suite: Option<PathBuf>,
    /// Run in the deterministic simulator, in virtual time (the default):
    /// the same seed gives a byte-identical report.
    #[arg(long = "virtual", conflicts_with = "real")]
    pub virtual_time: bool,
    /// Run over real loopback UDP sockets through the lossy-socket shim.
    #[arg(long)]
    pub real: bool,
    /// Run N seeds per profile instead of the suite's.
    #[arg(long, value_name = "N")]
    pub seeds: Option<u64>,
    /// Start every profile's seeds here (with the suite's count or --seeds).
    #[arg(long, value_name = "SEED")]
    pub seed_base: Option<u64>,
    /// Run only this profile (repeatable).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// Print the report as JSON.
    #[arg(long, group = "format")]
    pub json: bool,
    /// Print the report as CSV (one row per profile).
    #[arg(long, group = "format")]
    pub csv: bool,
    /// Print the report as a Markdown table.
    #[arg(long, group = "format")]
    pub markdown: bool,
    /// Also draw datagrams per value and completion time against loss
    /// (SVG) into this directory.
    /// With a timeline of each profile's first run (`timeline-PROFILE.svg`:
    /// window, RTT, delivery rate, losses; virtual time only).
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Write a qlog trace (JSON-SEQ) of every session of every run into
    /// DIR, one file each: PROFILE-sSEED-cCLIENT.sqlog (virtual time only).
    #[arg(long, value_name = "DIR", conflicts_with = "real")]
    pub qlog: Option<PathBuf>,
    /// Also write one pcapng capture per run (every datagram on every
    /// link, drops marked) into this directory: PROFILE-seedSEED.pcapng.
    #[arg(long, value_name = "DIR", conflicts_with = "real")]
    pub pcap: Option<PathBuf>,
}

impl SimArgs {
    /// The mode asked for (virtual unless `--real`).
    pub fn mode(&self) -> Mode {
        if self.real {
            Mode::Real
        } else {
            Mode::Virtual
        }
    }
}

/// Runs `risp-udp sim`: loads the suite, applies the filters, runs it and
/// writes the chosen format to `out`. Returns whether every expectation
/// held (`false` should become a non-zero exit code); errors are a bad
/// suite file, a bad option, a failed real run or an unwritable output.
pub fn run_sim(args: &SimArgs, out: &mut impl Write) -> Result<bool, SuiteError> {
    let mut suite = match &args.suite {
        Some(path) => Suite::load(path)?,
        None => Suite::parse(STANDARD_SUITE, &builtin_path())?,
    };
    suite.select(&args.profiles)?;
    suite.override_seeds(args.seeds, args.seed_base)?;
    if let Some(dir) = &args.plot {
        check_plot_dir(dir)?;
    }
    if let Some(dir) = &args.pcap {
        if args.real {
            return Err(SuiteError::Usage(
                "packet captures (--pcap) need the simulator: drop --real".into(),
            ));
        }
        check_pcap_dir(dir)?;
    }
    if let Some(dir) = &args.qlog {
        check_plot_dir(dir)?;
    }
    let timelines = args.plot.clone().filter(|_| args.mode() == Mode::Virtual);
    let mut rec = SimRecording::new(args.qlog.clone(), timelines);
    rec.pcap = args.pcap.clone();
    let report = run_suite_with(
        &suite,
        args.mode(),
        |_| {},
        |p, cfg| record_run(&mut rec, p, cfg),
    )?;
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else if args.csv {
        write_csv(&report, out)?;
    } else if args.markdown {
        write_markdown(&report, out)?;
    } else {
        write_table(&report, out)?;
    }
    let mut written = std::mem::take(&mut rec.written);
    if let Some(dir) = &args.plot {
        written.extend(write_plots(&report, dir)?);
    }
    // Keep machine-readable output clean: mention files in the table only.
    if !(args.json || args.csv || args.markdown) {
        for p in written {
            writeln!(out, "plot: {}", p.display())?;
        }
        if let Some(dir) = &args.qlog {
            writeln!(out, "qlog: {} traces in {}", rec.traces, dir.display())?;
        }
    }
    Ok(report.all_met)
}

/// Creates the capture directory if needed, or says why it cannot be used.
fn check_pcap_dir(dir: &std::path::Path) -> Result<(), SuiteError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        SuiteError::Usage(format!(
            "--pcap {}: cannot create the directory: {e}",
            dir.display()
        ))
    })
}

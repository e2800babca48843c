//! `risp-udp demo`: an in-process server and several concurrent clients
//! over loopback with some loss (the suites' real-socket runner,
//! [`crate::suite::real`]), each result, a combined summary, and the
//! histograms and a plot saved to a folder.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use risp_netem::{DirectionConfig, ImpairmentConfig};

use super::args::probability;
use super::exit::Exit;
use super::report::percentiles_row;
use crate::stats::{duration_to_ms, plot_percentiles, HistogramSet};
use crate::suite::real;
use crate::transfer::RunConfig;

/// Flags of `risp-udp demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub clients: u32,
    /// Values per client.
    #[arg(long, default_value_t = 20_000)]
    pub len: u32,
    /// Loss in each direction on every client's link.
    #[arg(long, default_value_t = 0.05, value_parser = probability)]
    pub loss: f64,
    /// Where to write histograms and the plot (default: nowhere; the demo
    /// leaves no files behind).
    #[arg(long, value_name = "DIR")]
    pub hist_out: Option<PathBuf>,
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Exit {
    match demo(args).await {
        Ok(exit) => exit,
        Err(e) => {
            eprintln!("error: {e}");
            Exit::Failure
        }
    }
}

/// Runs the demo; its exit code is 0 when every client verified, else the
/// code a lone client would have ended with for the first failure.
async fn demo(args: DemoArgs) -> std::io::Result<Exit> {
    crate::outln!(
        "risp-udp demo: in-process server on udp 127.0.0.1, {} x {} values, {:.0}% loss each way (in-process shim)",
        plural(u64::from(args.clients), "client"),
        args.len,
        args.loss * 100.0
    );
    let impairment = ImpairmentConfig::symmetric(DirectionConfig {
        loss: args.loss,
        ..DirectionConfig::default()
    });
    let mut config = RunConfig::new(rand::random(), args.clients as usize, args.len, impairment);
    config.server.ack_latency_events = true;
    // The summary prints the clients' latency percentiles.
    config.record_latencies = true;
    let (run, summary) = real::run_with_server(&config).await?;
    let mut merged = HistogramSet::default();
    let mut total_values = 0u64;
    let mut longest = Duration::ZERO;
    for t in &run.transfers {
        total_values += u64::from(t.delivered);
        longest = longest.max(t.elapsed);
        crate::outln!(
            "  {}  {}  {:>8.1} ms  {:>9.0} values/s  sent {:>6}  recv {:>6}  retx req {:>5}  window {}..{}",
            t.uuid,
            if t.verified() { "verified" } else { "FAILED  " },
            duration_to_ms(t.elapsed),
            t.values_per_sec(),
            t.client.datagrams_sent,
            t.client.datagrams_received,
            t.client.retransmit_requests,
            t.window.min,
            t.window.max,
        );
        if let Some(e) = &t.error {
            crate::outln!("      error: {e}");
        }
        merged.merge(&t.hist);
    }
    let all_ok = run.all_verified();
    let exit = Exit::for_run(&run.transfers, false, None);
    merged.server_ack = summary.ack_latency.clone();
    let s = &summary.stats;
    crate::outln!(
        "all clients: {}; {} values in {:.1} ms ({:.0} values/s overall)",
        if all_ok { "verified" } else { "SOME FAILED" },
        total_values,
        duration_to_ms(longest),
        total_values as f64 / longest.as_secs_f64().max(1e-9)
    );
    crate::outln!(
        "server: {} sessions, {} datagrams sent ({} retransmitted, {:.3} per value), {} received",
        s.sessions_opened,
        s.datagrams_sent,
        s.retransmits,
        s.datagrams_sent as f64 / (total_values.max(1)) as f64,
        s.datagrams_received
    );
    for (name, h) in [
        ("rtt", &merged.rtt),
        ("delivery", &merged.delivery),
        ("stall", &merged.stall),
        ("server ack", &merged.server_ack),
    ] {
        crate::outln!("  {name:<11} {}", percentiles_row(&h.summary()));
    }
    let Some(dir) = args.hist_out.clone() else {
        // Nothing left behind in a temporary folder on every run.
        crate::outln!("histograms: not saved (--hist-out DIR saves them with a plot)");
        return Ok(exit);
    };
    match merged.write_dir(&dir, "demo-") {
        Ok(files) => {
            let plot = dir.join("demo-latency.svg");
            let series = vec![
                ("rtt".to_string(), &merged.rtt),
                ("delivery".to_string(), &merged.delivery),
                ("stall".to_string(), &merged.stall),
                ("server ack".to_string(), &merged.server_ack),
            ];
            let series: Vec<_> = series.into_iter().filter(|(_, h)| !h.is_empty()).collect();
            match plot_percentiles(&series, &plot) {
                Ok(()) => crate::outln!(
                    "histograms: {} files and a plot in {} (try: risp-udp hist {}/demo-delivery.hgrm)",
                    files.len(),
                    dir.display(),
                    dir.display()
                ),
                Err(e) => crate::outln!("histograms: {} files in {} (plot failed: {e})", files.len(), dir.display()),
            }
        }
        Err(e) => crate::outln!("could not save histograms: {e}"),
    }
    Ok(exit)
}

/// `1 client`, `2 clients`.
pub fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

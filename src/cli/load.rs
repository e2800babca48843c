//! `risp-udp load N [LEN]`: N concurrent clients from one process, as
//! iperf3's `-P`, and one aggregate report.
//!
//! A subcommand rather than `client --parallel N`: the single client's
//! output (values on stdout, a progress bar, histogram files per UUID)
//! makes no sense for a thousand transfers, and the aggregate report has
//! its own shape. Every client flag applies to each client; each client
//! has its own socket, UUID and impairment seed. Ctrl-C or SIGTERM stops
//! every client and reports what arrived (exit 130), as for one client.
//! `--interval SECS` prints the clients' running totals every SECS to
//! stderr (see [`super::intervals`]); `--json` then has them too.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::client::{resolve_servers, transfer_client, ClientArgs};
use super::exit::Exit;
use super::intervals::{self, IntervalLog, LoadInterval};
use super::output::Stdout;
use super::report::{list_servers, peak_rss_kb};
use crate::net::stream::{RunningTotals, TotalsSnapshot, TransferError, TransferSet};
use crate::stats::{duration_to_ms, LatencyHistogram, Summary};
use crate::transfer::{link_seed, TransferReport};

/// Flags of `risp-udp load`.
#[derive(Debug, Clone, Args)]
#[command(mut_arg("len", |a| a.help("Values each client requests [default: 10000]")))]
pub struct LoadArgs {
    /// Concurrent clients, each with its own socket and UUID.
    #[arg(value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub clients: u32,
    /// Every client flag, applied to each client (`--seed` seeds the UUIDs;
    /// each client's impairment seed is derived from `--netem-seed`).
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Values per client when LEN is not given.
const DEFAULT_LEN: u32 = 10_000;

/// The `--json` object of `risp-udp load`.
#[derive(Debug, Clone, Serialize)]
pub struct LoadJson {
    /// Clients started.
    pub clients: u32,
    /// Values each client requested.
    pub len: u32,
    /// Clients whose every value arrived and whose checksum matched.
    pub verified: u32,
    /// `verified == clients`.
    pub all_verified: bool,
    /// Values delivered, all clients.
    pub delivered: u64,
    /// From the first client's start to the last one's end, ms.
    pub elapsed_ms: f64,
    /// Values delivered per second of `elapsed_ms`, all clients together.
    pub values_per_sec: f64,
    /// Each client's completion time (start to verified, failed clients
    /// excluded).
    pub completion: Summary,
    /// The longest gap between two in-order values in any client, ms.
    pub longest_stall_ms: f64,
    /// Datagrams the clients sent / received, all together.
    pub datagrams_sent: u64,
    /// Datagrams the clients received.
    pub datagrams_received: u64,
    /// Probe-timer expiries, all clients.
    pub timeouts: u64,
    /// Datagrams the lossy-socket shims dropped (both directions).
    pub shim_dropped: u64,
    /// Killswitch reconnections, all clients.
    pub reconnects: u64,
    /// Moves to another server of the `--server` list, all clients.
    pub failovers: u64,
    /// Failed clients by error, e.g. `{"server busy": 3}`.
    pub errors: std::collections::BTreeMap<String, u32>,
    /// Peak resident set size of this process, KiB (Linux).
    pub peak_rss_kb: Option<u64>,
    /// The process exit code this run ends with.
    pub exit_code: u8,
    /// Per-interval figures with `--interval` (absent without it): their
    /// `values` add up to `delivered` (unless a client ended on a local
    /// socket error, whose values count here but have no report).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<LoadInterval>,
}

impl LoadJson {
    /// The aggregate of `reports` (one per client, in any order), which
    /// took `elapsed` in all.
    pub fn new(clients: u32, len: u32, reports: &[TransferReport], elapsed: Duration) -> Self {
        let mut completion = LatencyHistogram::new();
        let mut errors = std::collections::BTreeMap::new();
        let mut json = Self {
            clients,
            len,
            verified: 0,
            all_verified: false,
            delivered: 0,
            elapsed_ms: duration_to_ms(elapsed),
            values_per_sec: 0.0,
            completion: Summary::default(),
            longest_stall_ms: 0.0,
            datagrams_sent: 0,
            datagrams_received: 0,
            timeouts: 0,
            shim_dropped: 0,
            reconnects: 0,
            failovers: 0,
            errors: std::collections::BTreeMap::new(),
            peak_rss_kb: None,
            exit_code: 0,
            intervals: Vec::new(),
        };
        let mut longest_stall = Duration::ZERO;
        for r in reports {
            if r.verified() {
                json.verified += 1;
                if let Some(t) = r.finished_at {
                    completion.record(t);
                }
            } else {
                let what = r
                    .error
                    .as_ref()
                    .map_or_else(|| "not verified".to_string(), |e| e.to_string());
                *errors.entry(what).or_insert(0) += 1;
            }
            json.delivered += u64::from(r.delivered);
            longest_stall = longest_stall.max(r.max_stall);
            json.datagrams_sent += r.client.datagrams_sent;
            json.datagrams_received += r.client.datagrams_received;
            json.timeouts += r.client.timeouts;
            json.shim_dropped += r.link.to_server.dropped + r.link.to_client.dropped;
            json.reconnects += r.reconnects;
            json.failovers += r.failovers();
        }
        let missing = clients.saturating_sub(reports.len() as u32);
        if missing > 0 {
            errors.insert("did not run".to_string(), missing);
        }
        json.all_verified = json.verified == clients;
        json.completion = completion.summary();
        json.longest_stall_ms = duration_to_ms(longest_stall);
        json.errors = errors;
        let secs = elapsed.as_secs_f64();
        json.values_per_sec = if secs > 0.0 {
            json.delivered as f64 / secs
        } else {
            0.0
        };
        json
    }

    /// The human summary, a few lines.
    pub fn human(&self) -> String {
        let c = &self.completion;
        let mut s = format!(
            "{} of {} clients verified ({} values each): {} values in {:.0} ms, {:.0} values/s\n",
            self.verified,
            self.clients,
            self.len,
            self.delivered,
            self.elapsed_ms,
            self.values_per_sec
        );
        s += &format!(
            "completion per client: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; longest stall {:.1} ms\n",
            c.p50_us as f64 / 1000.0,
            c.p90_us as f64 / 1000.0,
            c.p99_us as f64 / 1000.0,
            c.max_us as f64 / 1000.0,
            self.longest_stall_ms
        );
        s += &format!(
            "datagrams sent {}, received {}; timeouts {}; shim dropped {}; peak RSS {}\n",
            self.datagrams_sent,
            self.datagrams_received,
            self.timeouts,
            self.shim_dropped,
            self.peak_rss_kb
                .map_or_else(|| "unknown".to_string(), |kb| format!("{kb} KiB"))
        );
        if self.failovers > 0 {
            s += &format!("failovers {}\n", self.failovers);
        }
        for (what, n) in &self.errors {
            s += &format!("failed: {n} × {what}\n");
        }
        s
    }
}

/// Runs the load command; returns the exit status.
pub async fn run(args: LoadArgs) -> Exit {
    let c = &args.client;
    if c.print || c.output.is_some() || c.hist_out.is_some() || c.qlog.is_some() {
        eprintln!("error: --print, --output, --hist-out and --qlog are for one client; `load` prints an aggregate");
        return Exit::Usage;
    }
    let servers = match resolve_servers(c.server.as_deref(), c.port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return Exit::Usage;
        }
    };
    let len = c.len.unwrap_or(DEFAULT_LEN);
    let seed = c.seed.unwrap_or_else(rand::random);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let netem_seed = c.netem.seed();
    // Registered before the clients start, so no signal is missed.
    let signals = super::signal::termination();
    let server = list_servers(&servers);
    tracing::info!(clients = args.clients, len, %server, "starting load");
    let started = crate::clock::now();
    let totals = RunningTotals::new();
    let mut log = c
        .interval
        .map(|secs| IntervalLog::new(Duration::from_secs_f64(secs), started));
    let mut set = TransferSet::new();
    for i in 0..args.clients as usize {
        let uuid = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
        // Only aggregates are reported: completion times and the longest
        // stall come from each report's own fields.
        let mut client =
            transfer_client(c, &servers, uuid, link_seed(netem_seed, i)).keep_histograms(false);
        if log.is_some() {
            client = client.totals(totals.clone());
        }
        set.spawn(client, len, Duration::ZERO);
    }
    let (results, interrupted) = wait_for_clients(set, signals, &mut log, &totals).await;
    let mut reports = Vec::with_capacity(results.len());
    let mut local_error: Option<TransferError> = None;
    for r in results.into_iter().flatten() {
        match r {
            Ok(r) => reports.push(r),
            Err(e) => {
                local_error.get_or_insert(e);
            }
        }
    }
    let ended = crate::clock::now();
    let elapsed = ended.saturating_duration_since(started);
    let mut json = LoadJson::new(args.clients, len, &reports, elapsed);
    if let Some(log) = log {
        let done = log.finish(ended, totals.snapshot());
        eprint!("{}", done.text);
        json.intervals = done.rows;
    }
    json.peak_rss_kb = peak_rss_kb();
    let exit = Exit::for_run(&reports, interrupted, local_error.as_ref());
    json.exit_code = exit as u8;
    if c.json {
        match serde_json::to_string(&json) {
            Ok(j) => crate::outln!("{j}"),
            Err(e) => eprintln!("error: {e}"),
        }
    } else {
        let mut out = Stdout::lock();
        let _ = write!(out, "{}", json.human()).and_then(|()| out.flush());
    }
    say_why(local_error, interrupted);
    exit
}

/// Waits for every client of `set`, printing a line from `totals` each
/// time `log` cuts an interval; `signals` abort them all (the wait goes
/// on until each has told its server). Returns their results and whether
/// a signal came.
async fn wait_for_clients(
    set: TransferSet,
    signals: impl std::future::Future<Output = ()>,
    log: &mut Option<IntervalLog<TotalsSnapshot>>,
    totals: &RunningTotals,
) -> (Vec<Option<Result<TransferReport, TransferError>>>, bool) {
    let abort = set.abort_handle();
    let mut all_done = std::pin::pin!(set.join(None));
    let mut signals = std::pin::pin!(signals);
    let mut interrupted = false;
    loop {
        tokio::select! {
            r = &mut all_done => return (r, interrupted),
            () = &mut signals, if !interrupted => {
                interrupted = true;
                abort.abort();
            }
            () = intervals::due(log) => {
                let now = crate::clock::now();
                if let Some(line) = log.as_mut().and_then(|l| l.cut(now, totals.snapshot())) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// The last word on stderr: an interruption, or the first local error.
fn say_why(local_error: Option<TransferError>, interrupted: bool) {
    match local_error {
        _ if interrupted => {
            eprintln!("interrupted: every client stopped, and told its server to free its session")
        }
        Some(e @ TransferError::Refused { .. }) => eprintln!("error: {e}"),
        Some(e) => {
            let emfile = matches!(&e, TransferError::Io(io) if io.raw_os_error() == Some(24));
            eprintln!(
                "error: socket: {e}{}",
                if emfile {
                    " (too many open files: raise `ulimit -n` above the number of clients)"
                } else {
                    ""
                }
            );
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::client::ClientError;
    use uuid::Uuid;

    fn report(len: u32, verified: bool, finished_ms: u64, stall_ms: u64) -> TransferReport {
        let mut r = TransferReport::new(Uuid::nil(), len);
        r.finished_at = Some(Duration::from_millis(finished_ms));
        r.max_stall = Duration::from_millis(stall_ms);
        if verified {
            r.delivered = len;
            r.checksum = Some(1);
        } else {
            r.delivered = len / 2;
            r.error = Some(ClientError::ServerBusy);
        }
        r
    }

    #[test]
    fn the_aggregate_counts_every_client() {
        let reports = [
            report(100, true, 10, 1),
            report(100, true, 30, 7),
            report(100, false, 5, 2),
        ];
        let j = LoadJson::new(4, 100, &reports, Duration::from_secs(2));
        assert_eq!(j.verified, 2);
        assert!(!j.all_verified);
        assert_eq!(j.delivered, 250);
        assert_eq!(j.values_per_sec, 125.0);
        assert_eq!(
            j.completion.count, 2,
            "failed clients have no completion time"
        );
        assert_eq!(j.longest_stall_ms, 7.0);
        assert_eq!(j.errors.get("did not run"), Some(&1));
        assert_eq!(j.errors.values().sum::<u32>(), 2);
        assert!(j.human().contains("2 of 4 clients verified"));
    }
}

//! Running a suite and boiling each profile's runs down to one row.

use std::time::Duration;

use serde::Serialize;

use super::error::SuiteError;
use super::profile::{Expectations, Profile, Suite};
use crate::stats::{duration_to_ms, duration_to_us, LatencyHistogram, Summary};
use crate::transfer::{BottleneckStats, RunConfig, RunReport};

/// Where the transfers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The deterministic simulator, in virtual time: the same seed gives a
    /// byte-identical report.
    Virtual,
    /// Real UDP sockets on loopback through the lossy-socket shim, in wall
    /// time (see [`super::real::run`]).
    Real,
}

/// The report of a whole suite.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// The suite's name.
    pub suite: String,
    /// How it ran.
    pub mode: Mode,
    /// Whether every profile met its expectations.
    pub all_met: bool,
    /// One per profile, in suite order.
    pub profiles: Vec<ProfileReport>,
}

/// One profile: its settings, its figures over every run, and the outcome
/// of its expectations. Durations are whole microseconds (virtual time in
/// virtual mode).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// Profile name.
    pub name: String,
    /// Selective acks on or off.
    pub sack: bool,
    /// Values per transfer.
    pub len: u32,
    /// Concurrent clients per run.
    pub clients: usize,
    /// Loss rate of server→client datagrams (loss and corruption
    /// combined): the `p` of the 1/(1−p) minimum.
    pub loss_to_client: f64,
    /// Loss rate of client→server datagrams.
    pub loss_to_server: f64,
    /// Whether the profile is a point of the loss plots.
    pub plot: bool,
    /// Runs (one per seed).
    pub runs: usize,
    /// Runs in which every transfer verified.
    pub runs_verified: usize,
    /// Transfers over all runs.
    pub transfers: usize,
    /// Transfers that verified.
    pub transfers_verified: usize,
    /// Median transfer completion time (an unfinished transfer counts as
    /// the length of its run).
    pub completion_p50_us: u64,
    /// Longest transfer completion time.
    pub completion_max_us: u64,
    /// Values delivered per second of transfer time: Σ delivered / Σ
    /// completion time, so the rate of one transfer, averaged.
    pub values_per_sec: f64,
    /// Datagrams the server sent to clients (data and control).
    pub datagrams_to_client: u64,
    /// Datagrams the clients sent to the server.
    pub datagrams_to_server: u64,
    /// `datagrams_to_client` / (transfers × len).
    pub datagrams_per_value: f64,
    /// The least any protocol could send per value at this loss: 1/(1−p);
    /// absent when p = 1.
    pub min_datagrams_per_value: Option<f64>,
    /// Data datagrams sent beyond one per value, over all transfers.
    pub retransmits: u64,
    /// Round-trip time samples of every client.
    pub rtt: Summary,
    /// Delivery latency of every value (first send to in-order delivery).
    pub delivery: Summary,
    /// Longest time any transfer went without a new in-order value.
    pub stall_max_us: u64,
    /// The shared bottleneck over every run, when the profile has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<BottleneckSummary>,
    /// Goodput as a share of what the bottleneck can deliver through the
    /// profile's random loss, `(1 − p) · R`: the mean transfer's values/s
    /// times the number of clients, over that (for one client, exactly its
    /// share of the link). Only with a bottleneck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_share: Option<f64>,
    /// Every expectation the profile set, checked.
    pub expectations: Vec<ExpectationResult>,
    /// Whether all of them held.
    pub met: bool,
    /// One line per run.
    pub runs_detail: Vec<RunSummary>,
}

/// How the flows of a profile shared its bottleneck, over every run: the
/// worst run for each figure (lowest utilisation and flow share, highest
/// drops and mean queue).
#[derive(Debug, Clone, Serialize)]
pub struct BottleneckSummary {
    /// Datagrams forwarded over capacity, from the first arrival to the
    /// last departure.
    pub utilisation: f64,
    /// Fraction of arrivals dropped at the tail.
    pub drop_fraction: f64,
    /// Mean queue length seen by arrivals, in datagrams.
    pub mean_queue: f64,
    /// The smallest share of the capacity any one flow got while every
    /// flow was active ([`BottleneckStats::overlap_shares`]).
    pub min_flow_share: f64,
    /// Start-up: from the first arrival until the link first forwarded 90%
    /// of its rate over 10 ms ([`BottleneckStats::time_to_rate`]), in µs;
    /// `None` if it never did.
    pub startup_us: Option<u64>,
}

/// One run (one seed) of a profile.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The seed.
    pub seed: u64,
    /// Transfers that verified.
    pub verified: usize,
    /// Transfers.
    pub transfers: usize,
    /// Time the run took (virtual in virtual mode).
    pub elapsed_us: u64,
    /// The simulator's trace hash (hex): equal hashes, identical traces.
    pub trace_hash: String,
    /// The first failed transfer's error, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// One expectation, checked.
#[derive(Debug, Clone, Serialize)]
pub struct ExpectationResult {
    /// `all_verified`, `max_datagrams_per_value` or `max_completion_ms`.
    pub name: &'static str,
    /// The limit (for `all_verified`: the fraction of runs that must
    /// verify, 1).
    pub limit: f64,
    /// What was measured (for `all_verified`: the fraction that did).
    pub actual: f64,
    /// Whether it held.
    pub met: bool,
}

impl std::fmt::Display for ExpectationResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.met { "met" } else { "FAILED" };
        match self.name {
            "all_verified" => write!(
                f,
                "all_verified {verdict}: {:.1}% of runs verified",
                self.actual * 100.0
            ),
            name => write!(
                f,
                "{name} {verdict}: {} (limit {})",
                trim_float(self.actual),
                trim_float(self.limit)
            ),
        }
    }
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

impl SuiteReport {
    /// One line per failed expectation: `profile: what (limit ...)`.
    pub fn failures(&self) -> Vec<String> {
        self.profiles
            .iter()
            .flat_map(|p| {
                p.expectations
                    .iter()
                    .filter(|e| !e.met)
                    .map(move |e| format!("{}: {e}", p.name))
            })
            .collect()
    }

    /// The report as pretty JSON (keys in a fixed order, no wall-clock
    /// times: byte-identical for the same suite and seeds in virtual mode).
    pub fn to_json(&self) -> String {
        // Serialising plain structs of numbers and strings cannot fail.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
    }
}

/// Runs every profile of `suite`, profile after profile, seed after seed.
/// `progress` is called after each profile (for a progress line).
pub fn run_suite(
    suite: &Suite,
    mode: Mode,
    progress: impl FnMut(&ProfileReport),
) -> Result<SuiteReport, SuiteError> {
    run_suite_with(suite, mode, progress, |_, cfg| Ok(crate::sim::run(cfg)))
}

/// As [`run_suite`], with each virtual run made by `simulate` (given the
/// profile and the run's settings): a recorder's way in.
pub fn run_suite_with(
    suite: &Suite,
    mode: Mode,
    mut progress: impl FnMut(&ProfileReport),
    mut simulate: impl FnMut(&Profile, &RunConfig) -> std::io::Result<RunReport>,
) -> Result<SuiteReport, SuiteError> {
    let runtime = match mode {
        Mode::Virtual => None,
        Mode::Real => Some(
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| SuiteError::Usage(format!("cannot start the tokio runtime: {e}")))?,
        ),
    };
    let mut profiles = Vec::with_capacity(suite.profiles.len());
    for p in &suite.profiles {
        let report = run_profile(p, |cfg: &RunConfig| match &runtime {
            None => simulate(p, cfg),
            Some(rt) => rt.block_on(super::real::run(cfg)),
        })?;
        progress(&report);
        profiles.push(report);
    }
    Ok(SuiteReport {
        suite: suite.name.clone(),
        mode,
        all_met: profiles.iter().all(|p| p.met),
        profiles,
    })
}

/// Runs every seed of `profile` through `runner` and summarises (each
/// run's report is let go once it is added up).
pub fn run_profile(
    profile: &Profile,
    mut runner: impl FnMut(&RunConfig) -> std::io::Result<RunReport>,
) -> Result<ProfileReport, SuiteError> {
    let mut tally = Tally::new(profile.seeds.len());
    for &seed in &profile.seeds {
        let cfg = profile.run_config(seed);
        let r = runner(&cfg).map_err(|source| SuiteError::Run {
            profile: profile.name.clone(),
            seed,
            source,
        })?;
        tally.add(profile, &r);
    }
    Ok(tally.report(profile))
}

/// Boils the runs of `profile` down to one [`ProfileReport`]: adds them
/// up, checks the expectations against the sums, and reports both with a
/// line per run.
pub fn summarise(profile: &Profile, reports: &[RunReport]) -> ProfileReport {
    let mut tally = Tally::new(reports.len());
    for r in reports {
        tally.add(profile, r);
    }
    tally.report(profile)
}

/// A profile's runs added up, run by run.
struct Tally {
    /// Each transfer's completion time (an unfinished one: its run's).
    completions: Vec<Duration>,
    rtt: LatencyHistogram,
    delivery: LatencyHistogram,
    to_client: u64,
    to_server: u64,
    retransmits: u64,
    delivered: u64,
    /// Values asked for.
    values: u64,
    /// Σ completion time, in seconds.
    transfer_time: f64,
    stall_max: Duration,
    /// The worst run's bottleneck figures.
    bottleneck: Option<BottleneckSummary>,
    runs: usize,
    runs_verified: usize,
    transfers_verified: usize,
    /// One line per run.
    runs_detail: Vec<RunSummary>,
}

impl Tally {
    fn new(runs: usize) -> Self {
        Tally {
            completions: Vec::new(),
            rtt: LatencyHistogram::new(),
            delivery: LatencyHistogram::new(),
            to_client: 0,
            to_server: 0,
            retransmits: 0,
            delivered: 0,
            values: 0,
            transfer_time: 0.0,
            stall_max: Duration::ZERO,
            bottleneck: None,
            runs: 0,
            runs_verified: 0,
            transfers_verified: 0,
            runs_detail: Vec::with_capacity(runs),
        }
    }

    /// Adds one run of `profile`.
    fn add(&mut self, profile: &Profile, r: &RunReport) {
        if let (Some(cfg), Some(b)) = (profile.bottleneck, &r.bottleneck) {
            let one = bottleneck_summary(cfg.rate, b);
            self.bottleneck = Some(match self.bottleneck.take() {
                None => one,
                Some(w) => BottleneckSummary {
                    utilisation: w.utilisation.min(one.utilisation),
                    drop_fraction: w.drop_fraction.max(one.drop_fraction),
                    mean_queue: w.mean_queue.max(one.mean_queue),
                    min_flow_share: w.min_flow_share.min(one.min_flow_share),
                    // The slowest run; a run that never got there is slower.
                    startup_us: match (w.startup_us, one.startup_us) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    },
                },
            });
        }
        for t in &r.transfers {
            let done = t.finished_at.unwrap_or(r.elapsed);
            self.completions.push(done);
            self.transfer_time += done.as_secs_f64();
            self.stall_max = self.stall_max.max(t.max_stall);
            self.to_client += t.datagrams_to_client;
            self.to_server += t.datagrams_to_server;
            self.retransmits += t.retransmits();
            self.delivered += u64::from(t.delivered);
            self.values += u64::from(t.len);
            self.rtt.add_total(t.hist.rtt.inner());
            self.delivery.add_total(t.hist.delivery.inner());
        }
        self.runs += 1;
        self.runs_verified += usize::from(r.all_verified());
        self.transfers_verified += r.verified_count();
        self.runs_detail.push(run_summary(r));
    }

    /// `datagrams_to_client` per value asked for.
    fn datagrams_per_value(&self) -> f64 {
        if self.values == 0 {
            0.0
        } else {
            self.to_client as f64 / self.values as f64
        }
    }

    /// Values delivered per second of transfer time.
    fn values_per_sec(&self) -> f64 {
        if self.transfer_time > 0.0 {
            self.delivered as f64 / self.transfer_time
        } else {
            0.0
        }
    }

    /// The profile's report: the sums, the expectations checked against
    /// them, and the runs.
    fn report(mut self, profile: &Profile) -> ProfileReport {
        self.completions.sort_unstable();
        let median = self
            .completions
            .get(self.completions.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or_default();
        let max = self.completions.last().copied().unwrap_or_default();
        let expectations = self.check(&profile.expect, max);
        let p = profile.to_client_loss();
        ProfileReport {
            name: profile.name.clone(),
            sack: profile.sack,
            len: profile.len,
            clients: profile.clients,
            loss_to_client: p,
            loss_to_server: {
                let d = &profile.impairment.to_server;
                1.0 - (1.0 - d.loss) * (1.0 - d.corrupt)
            },
            plot: profile.plot,
            runs: self.runs,
            runs_verified: self.runs_verified,
            transfers: self.completions.len(),
            transfers_verified: self.transfers_verified,
            completion_p50_us: duration_to_us(median),
            completion_max_us: duration_to_us(max),
            values_per_sec: self.values_per_sec(),
            datagrams_to_client: self.to_client,
            datagrams_to_server: self.to_server,
            datagrams_per_value: self.datagrams_per_value(),
            min_datagrams_per_value: (p < 1.0).then(|| 1.0 / (1.0 - p)),
            retransmits: self.retransmits,
            rtt: self.rtt.summary(),
            delivery: self.delivery.summary(),
            stall_max_us: duration_to_us(self.stall_max),
            link_share: profile.bottleneck.map(|b| {
                self.values_per_sec() * profile.clients as f64
                    / ((1.0 - p) * b.rate).max(f64::MIN_POSITIVE)
            }),
            bottleneck: self.bottleneck,
            met: expectations.iter().all(|e| e.met),
            expectations,
            runs_detail: self.runs_detail,
        }
    }

    /// Every expectation `e` sets, checked against the sums (`max`: the
    /// longest completion).
    fn check(&self, e: &Expectations, max: Duration) -> Vec<ExpectationResult> {
        let mut out = Vec::new();
        let mut expect = |name, limit, actual, met| {
            out.push(ExpectationResult {
                name,
                limit,
                actual,
                met,
            })
        };
        // Every transfer verified is expected unless a profile says
        // `all_verified = false`.
        if e.all_verified != Some(false) {
            let (runs, verified) = (self.runs, self.runs_verified);
            let frac = if runs == 0 {
                0.0
            } else {
                verified as f64 / runs as f64
            };
            expect("all_verified", 1.0, frac, runs > 0 && verified == runs);
        }
        if let Some(limit) = e.max_datagrams_per_value {
            let actual = self.datagrams_per_value();
            expect("max_datagrams_per_value", limit, actual, actual <= limit);
        }
        if let Some(limit) = e.max_completion {
            let (l, a) = (duration_to_ms(limit), duration_to_ms(max));
            expect("max_completion_ms", l, a, max <= limit);
        }
        if let Some(limit) = e.max_stall {
            let (l, a) = (duration_to_ms(limit), duration_to_ms(self.stall_max));
            expect("max_stall_ms", l, a, self.stall_max <= limit);
        }
        let b = self.bottleneck.as_ref();
        if let Some(limit) = e.min_utilisation {
            let actual = b.map_or(0.0, |b| b.utilisation);
            expect("min_utilisation", limit, actual, actual >= limit);
        }
        if let Some(limit) = e.max_bottleneck_drops {
            let actual = b.map_or(0.0, |b| b.drop_fraction);
            expect("max_bottleneck_drops", limit, actual, actual <= limit);
        }
        out
    }
}

/// One run's line: its seed, what verified, and the first failure.
fn run_summary(r: &RunReport) -> RunSummary {
    RunSummary {
        seed: r.seed,
        verified: r.verified_count(),
        transfers: r.transfers.len(),
        elapsed_us: duration_to_us(r.elapsed),
        trace_hash: format!("{:016x}", r.trace_hash),
        first_error: r
            .transfers
            .iter()
            .find(|t| !t.verified())
            .map(|t| match &t.error {
                Some(e) => format!("{e:?}"),
                None => format!(
                    "delivered {}/{}, {} wrong, checksum ok: {}",
                    t.delivered,
                    t.len,
                    t.wrong_values,
                    t.checksum_ok()
                ),
            }),
    }
}

/// The share of the link start-up is over at (the issue's "delivery rate
/// first reaches 0.9 of the link").
const STARTUP_FRACTION: f64 = 0.9;

/// One run's bottleneck figures.
fn bottleneck_summary(rate: f64, b: &BottleneckStats) -> BottleneckSummary {
    let (from, until) = (
        b.busy_from.unwrap_or_default(),
        b.busy_until.unwrap_or_default(),
    );
    let min_flow_share = b
        .overlap_shares(rate)
        .map_or(0.0, |v| v.into_iter().fold(f64::INFINITY, f64::min));
    BottleneckSummary {
        utilisation: b.utilisation(rate, from, until),
        drop_fraction: b.drop_fraction(),
        mean_queue: b.mean_queue(),
        min_flow_share: if min_flow_share.is_finite() {
            min_flow_share
        } else {
            0.0
        },
        startup_us: b.time_to_rate(rate, STARTUP_FRACTION).map(duration_to_us),
    }
}

//! Running a suite and boiling each profile's runs down to one row.

use std::time::Duration;

use serde::Serialize;

use super::error::SuiteError;
use super::profile::{Profile, Suite};
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
    mut progress: impl FnMut(&ProfileReport),
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
            None => Ok(crate::sim::run(cfg)),
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

/// Runs every seed of `profile` through `runner` and summarises.
pub fn run_profile(
    profile: &Profile,
    mut runner: impl FnMut(&RunConfig) -> std::io::Result<RunReport>,
) -> Result<ProfileReport, SuiteError> {
    let mut reports = Vec::with_capacity(profile.seeds.len());
    for &seed in &profile.seeds {
        let cfg = profile.run_config(seed);
        let r = runner(&cfg).map_err(|source| SuiteError::Run {
            profile: profile.name.clone(),
            seed,
            source,
        })?;
        reports.push(r);
    }
    Ok(summarise(profile, &reports))
}

/// Boils the runs of `profile` down to one [`ProfileReport`].
pub fn summarise(profile: &Profile, reports: &[RunReport]) -> ProfileReport {
    let mut completions: Vec<Duration> = Vec::new();
    let mut rtt = LatencyHistogram::new();
    let mut delivery = LatencyHistogram::new();
    let (mut to_client, mut to_server, mut retransmits) = (0u64, 0u64, 0u64);
    let (mut delivered, mut values) = (0u64, 0u64);
    let mut transfer_time = 0f64;
    let mut runs_detail = Vec::with_capacity(reports.len());
    let mut stall_max = Duration::ZERO;
    let mut bottleneck: Option<BottleneckSummary> = None;
    for r in reports {
        if let (Some(cfg), Some(b)) = (profile.bottleneck, &r.bottleneck) {
            let one = bottleneck_summary(cfg.rate, b);
            bottleneck = Some(match bottleneck {
                None => one,
                Some(w) => BottleneckSummary {
                    utilisation: w.utilisation.min(one.utilisation),
                    drop_fraction: w.drop_fraction.max(one.drop_fraction),
                    mean_queue: w.mean_queue.max(one.mean_queue),
                    min_flow_share: w.min_flow_share.min(one.min_flow_share),
                },
            });
        }
        for t in &r.transfers {
            let done = t.finished_at.unwrap_or(r.elapsed);
            completions.push(done);
            transfer_time += done.as_secs_f64();
            stall_max = stall_max.max(t.max_stall);
            to_client += t.datagrams_to_client;
            to_server += t.datagrams_to_server;
            retransmits += t.retransmits();
            delivered += u64::from(t.delivered);
            values += u64::from(t.len);
            rtt.add_total(t.hist.rtt.inner());
            delivery.add_total(t.hist.delivery.inner());
        }
        runs_detail.push(RunSummary {
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
        });
    }
    completions.sort_unstable();
    let median = completions
        .get(completions.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default();
    let max = completions.last().copied().unwrap_or_default();
    let runs = reports.len();
    let runs_verified = reports.iter().filter(|r| r.all_verified()).count();
    let p = profile.to_client_loss();
    let datagrams_per_value = if values == 0 {
        0.0
    } else {
        to_client as f64 / values as f64
    };
    let mut expectations = Vec::new();
    let e = &profile.expect;
    // Every transfer verified is expected unless a profile says
    // `all_verified = false`.
    if e.all_verified != Some(false) {
        let frac = if runs == 0 {
            0.0
        } else {
            runs_verified as f64 / runs as f64
        };
        expectations.push(ExpectationResult {
            name: "all_verified",
            limit: 1.0,
            actual: frac,
            met: runs > 0 && runs_verified == runs,
        });
    }
    if let Some(limit) = e.max_datagrams_per_value {
        expectations.push(ExpectationResult {
            name: "max_datagrams_per_value",
            limit,
            actual: datagrams_per_value,
            met: datagrams_per_value <= limit,
        });
    }
    if let Some(limit) = e.max_completion {
        expectations.push(ExpectationResult {
            name: "max_completion_ms",
            limit: duration_to_ms(limit),
            actual: duration_to_ms(max),
            met: max <= limit,
        });
    }
    if let Some(limit) = e.max_stall {
        expectations.push(ExpectationResult {
            name: "max_stall_ms",
            limit: duration_to_ms(limit),
            actual: duration_to_ms(stall_max),
            met: stall_max <= limit,
        });
    }
    let b = bottleneck.as_ref();
    if let Some(limit) = e.min_utilisation {
        let actual = b.map_or(0.0, |b| b.utilisation);
        expectations.push(ExpectationResult {
            name: "min_utilisation",
            limit,
            actual,
            met: actual >= limit,
        });
    }
    if let Some(limit) = e.max_bottleneck_drops {
        let actual = b.map_or(0.0, |b| b.drop_fraction);
        expectations.push(ExpectationResult {
            name: "max_bottleneck_drops",
            limit,
            actual,
            met: actual <= limit,
        });
    }
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
        runs,
        runs_verified,
        transfers: completions.len(),
        transfers_verified: reports.iter().map(RunReport::verified_count).sum(),
        completion_p50_us: duration_to_us(median),
        completion_max_us: duration_to_us(max),
        values_per_sec: if transfer_time > 0.0 {
            delivered as f64 / transfer_time
        } else {
            0.0
        },
        datagrams_to_client: to_client,
        datagrams_to_server: to_server,
        datagrams_per_value,
        min_datagrams_per_value: (p < 1.0).then(|| 1.0 / (1.0 - p)),
        retransmits,
        rtt: rtt.summary(),
        delivery: delivery.summary(),
        stall_max_us: duration_to_us(stall_max),
        bottleneck,
        link_share: profile.bottleneck.map(|b| {
            let rate = if transfer_time > 0.0 {
                delivered as f64 / transfer_time
            } else {
                0.0
            };
            rate * profile.clients as f64 / ((1.0 - p) * b.rate).max(f64::MIN_POSITIVE)
        }),
        met: expectations.iter().all(|e| e.met),
        expectations,
        runs_detail,
    }
}

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
    }
}

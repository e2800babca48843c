//! A checked suite: its profiles, their settings and expectations, and
//! the run configuration each seed of a profile becomes. Reading the TOML
//! ([`Suite::load`], [`Suite::parse`]) is [`super::parse`]'s job.

use std::path::PathBuf;
use std::time::Duration;

use risp_netem::ImpairmentConfig;

use super::error::SuiteError;
use crate::transfer::{BottleneckConfig, RunConfig};

/// Most concurrent clients a profile may ask for.
pub const MAX_CLIENTS: usize = 10_000;
/// Most seeds a profile may ask for.
pub const MAX_SEEDS: u64 = 1_000_000;
/// Values per transfer when neither the suite nor the profile says.
pub const DEFAULT_LEN: u32 = 1_000;

/// A checked suite: profiles to run, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    /// The suite's `name`, or the file stem.
    pub name: String,
    /// The profiles, in file order; never empty.
    pub profiles: Vec<Profile>,
}

/// One impairment profile: what to run, with which seeds, and what to expect.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Unique within the suite.
    pub name: String,
    /// Values per transfer (at least 1).
    pub len: u32,
    /// Concurrent clients per run.
    pub clients: usize,
    /// One run per seed, in this order.
    pub seeds: Vec<u64>,
    /// Selective acks on or off.
    pub sack: bool,
    /// Client window cap; `None` keeps the client's default.
    pub max_window: Option<u32>,
    /// Every client drops its socket this often and resumes by UUID.
    pub killswitch: Option<Duration>,
    /// Clients start this far apart.
    pub stagger: Duration,
    /// A run stops after this long; `None` keeps the simulator's default.
    pub time_limit: Option<Duration>,
    /// The link, already checked by [`ImpairmentConfig::validate`].
    pub impairment: ImpairmentConfig,
    /// Whether the profile is a point of the loss plots (default: when its
    /// only impairments are independent loss and a fixed delay).
    pub plot: bool,
    /// A bottleneck every server-to-client datagram crosses (virtual mode).
    pub bottleneck: Option<BottleneckConfig>,
    /// What must hold for the profile to pass.
    pub expect: Expectations,
}

/// What a profile must achieve. `None` means "not checked".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Expectations {
    /// Every transfer of every run verified; checked unless `Some(false)`.
    pub all_verified: Option<bool>,
    /// Datagrams the server sent per value, over the whole profile, at most
    /// this.
    pub max_datagrams_per_value: Option<f64>,
    /// No transfer took longer than this.
    pub max_completion: Option<Duration>,
    /// No transfer went longer than this without a new in-order value.
    pub max_stall: Option<Duration>,
    /// The bottleneck forwarded at least this fraction of its capacity.
    pub min_utilisation: Option<f64>,
    /// The bottleneck dropped at most this fraction of what arrived.
    pub max_bottleneck_drops: Option<f64>,
}

impl Expectations {
    /// `self`, with anything it leaves unset taken from `defaults`.
    pub(super) fn or(self, defaults: Expectations) -> Expectations {
        Expectations {
            all_verified: self.all_verified.or(defaults.all_verified),
            max_datagrams_per_value: self
                .max_datagrams_per_value
                .or(defaults.max_datagrams_per_value),
            max_completion: self.max_completion.or(defaults.max_completion),
            max_stall: self.max_stall.or(defaults.max_stall),
            min_utilisation: self.min_utilisation.or(defaults.min_utilisation),
            max_bottleneck_drops: self.max_bottleneck_drops.or(defaults.max_bottleneck_drops),
        }
    }
}

impl Profile {
    /// The run of one seed of this profile (latencies recorded), for either
    /// back-end.
    pub fn run_config(&self, seed: u64) -> RunConfig {
        let mut c = RunConfig::new(seed, self.clients, self.len, self.impairment.clone());
        c.client.sack = self.sack;
        if let Some(w) = self.max_window {
            c.client.max_window = w;
            c.client.initial_window = c.client.initial_window.min(w);
        }
        c.killswitch = self.killswitch;
        c.stagger = self.stagger;
        c.bottleneck = self.bottleneck;
        if let Some(t) = self.time_limit {
            c.time_limit = t;
        }
        c.record_latencies = true;
        c
    }

    /// Loss rate the server's datagrams see (loss and corruption combined):
    /// the `p` of the 1/(1−p) minimum.
    pub fn to_client_loss(&self) -> f64 {
        let d = &self.impairment.to_client;
        1.0 - (1.0 - d.loss) * (1.0 - d.corrupt)
    }
}

impl Suite {
    /// Keeps only the named profiles (in suite order). An empty list keeps
    /// everything; an unknown name is an error that lists the known ones.
    pub fn select(&mut self, names: &[String]) -> Result<(), SuiteError> {
        if names.is_empty() {
            return Ok(());
        }
        for n in names {
            if !self.profiles.iter().any(|p| &p.name == n) {
                let known: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
                return Err(SuiteError::Usage(format!(
                    "no profile named {n:?} in suite {:?}; its profiles are: {}",
                    self.name,
                    known.join(", ")
                )));
            }
        }
        self.profiles.retain(|p| names.contains(&p.name));
        Ok(())
    }

    /// Replaces every profile's seeds by `base, base+1, …, base+count−1`,
    /// where `count` is `count` or the profile's own number of seeds and
    /// `base` is `base` or the profile's first seed. Both `None`: no change.
    pub fn override_seeds(
        &mut self,
        count: Option<u64>,
        base: Option<u64>,
    ) -> Result<(), SuiteError> {
        if count.is_none() && base.is_none() {
            return Ok(());
        }
        if let Some(n) = count {
            if n == 0 || n > MAX_SEEDS {
                return Err(SuiteError::Usage(format!(
                    "--seeds must be between 1 and {MAX_SEEDS}, got {n}"
                )));
            }
        }
        for p in &mut self.profiles {
            let n = count.unwrap_or(p.seeds.len() as u64);
            let from = base.unwrap_or_else(|| p.seeds.first().copied().unwrap_or(0));
            if from.checked_add(n).is_none() {
                return Err(SuiteError::Usage(format!(
                    "seeds {from} + {n} overflow a 64-bit seed"
                )));
            }
            p.seeds = (from..from + n).collect();
        }
        Ok(())
    }
}

/// The name used in messages for the built-in standard suite.
pub fn builtin_path() -> PathBuf {
    PathBuf::from("<built-in standard suite>")
}

//! Loss-simulation suites: a TOML file of impairment profiles, run seed by
//! seed in the simulator or over real loopback sockets, summarised one row
//! per profile and checked against each profile's expectations.
//!
//! This module sits above both back-ends: [`crate::sim`] (virtual time) and
//! [`crate::net`] (tokio sockets, driven by [`real`]) never import each
//! other, and only the suites choose between them.
//!
//! `risp-udp sim` ([`crate::cli::sim`]) is the command; this module is the
//! machinery, usable from tests:
//!
//! ```no_run
//! use risp_udp::suite::{run_suite, Mode, Suite};
//! let suite = Suite::load("netem/suites/standard.toml".as_ref()).unwrap();
//! let report = run_suite(&suite, Mode::Virtual, |_| {}).unwrap();
//! assert!(report.all_met, "{:?}", report.failures());
//! println!("{}", report.to_json());
//! ```
//!
//! # The suite format
//!
//! ```toml
//! name = "standard"          # optional; default: the file stem
//! description = "..."        # optional, ignored
//! # Defaults for every profile (all optional):
//! len = 3000                 # values per transfer (default 1000)
//! clients = 1                # concurrent clients per run (default 1)
//! seeds = { from = 0, count = 5 }   # or a list: seeds = [1, 2, 3] (default [0])
//! sack = true                # selective acks (default true)
//! max_window = 1024          # client window cap (default: the client's)
//! time_limit_ms = 600000     # a run stops after this (default 600 s)
//! stagger_ms = 0.2           # clients start this far apart (default 0)
//! [expect]                   # default expectations, per key
//! all_verified = true
//!
//! [[profile]]
//! name = "loss-10"           # required, unique
//! # Overrides: len, clients, seeds, sack, max_window, time_limit_ms,
//! # stagger_ms, and:
//! killswitch_ms = 50         # every client drops its socket this often
//! plot = true                # a point of the --plot lines (default: true
//!                            # when the only impairments are independent
//!                            # loss and a fixed delay)
//! # Impairments. These keys apply to BOTH directions:
//! loss = 0.1                 # probability in [0, 1]
//! burst = 4                  # mean loss-burst length (> 1: Gilbert-Elliott)
//! duplicate = 0.01           # probability
//! corrupt = 0.01             # probability (one bit flipped)
//! reorder = 0.05             # probability of being held back reorder_gap_ms
//! reorder_gap_ms = 1
//! delay_ms = 50              # ONE-WAY delay (RTT = 2 x delay_ms)
//! jitter_ms = 10             # extra uniform [0, jitter] delay
//! # One direction only, overriding the keys above key by key:
//! to_client = { loss = 0.2 } # server -> client datagrams
//! to_server = { loss = 0.0 } # client -> server datagrams
//! blackhole = [{ start_ms = 200, duration_ms = 5000 }]  # drop everything
//! rebind_at_ms = [30, 90]    # the client's address changes (NAT rebinding)
//! [profile.expect]           # overrides [expect] key by key
//! all_verified = true        # every transfer of every run verified (the default; `false` turns it off)
//! max_datagrams_per_value = 1.2   # server datagrams / value, whole profile
//! max_completion_ms = 2000   # longest transfer (virtual time in --virtual)
//! ```
//!
//! Unknown keys are errors. Every error names the file, the line and the
//! column, and says what is wrong: TOML syntax, a wrong type, a probability
//! outside [0, 1], a negative or zero duration or count where that makes no
//! sense, a burst length impossible at that loss, repeated profile names, a
//! suite without profiles.
//!
//! # What a profile reports
//! See [`ProfileReport`]: runs verified / runs, transfer completion time
//! (median, max), values/s, datagrams sent per value against the 1/(1−p)
//! minimum (p = server→client loss and corruption combined),
//! retransmissions, RTT and delivery-latency percentiles, and each
//! expectation's outcome. In virtual mode nothing depends on the wall
//! clock, so the same suite and seeds give a byte-identical JSON report.

pub mod capture;
mod error;
mod link_keys;
mod output;
mod parse;
mod plot;
mod profile;
pub mod real;
mod recording;
mod run;
mod script;
mod seeds;

pub use error::{line_column, SuiteError};
pub use output::{table_row, write_csv, write_markdown, write_table, CSV_HEADERS, TABLE_HEADERS};
pub use plot::{check_plot_dir, write_plots, COMPLETION_PLOT, DATAGRAMS_PLOT};
pub use profile::{
    builtin_path, Expectations, Profile, Suite, DEFAULT_LEN, MAX_CLIENTS, MAX_SEEDS,
};
pub use recording::{qlog_name, record_run, timeline_name, SimRecording};
pub use run::{
    run_profile, run_suite, run_suite_with, summarise, ExpectationResult, Mode, ProfileReport,
    RunSummary, SuiteReport,
};

/// The standard suite shipped in `netem/suites/standard.toml`, built in.
pub const STANDARD_SUITE: &str = include_str!("../../netem/suites/standard.toml");

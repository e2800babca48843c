//! Seeded network impairments for studying a UDP protocol under bad
//! conditions: loss (independent or in Gilbert–Elliott bursts), duplication,
//! bit corruption, reordering, delay with jitter, blackholes, and scheduled
//! NAT rebinding.
//!
//! Real networks misbehave rarely and never on demand; a seeded model
//! misbehaves at a chosen rate and does so identically on every run, which
//! turns "it failed once under loss" into a reproducible test case.
//!
//! # Layout
//!
//! * [`config`]: plain-data configuration ([`ImpairmentConfig`], one
//!   [`DirectionConfig`] per direction) and its validation
//!   ([`ConfigError`]).
//! * [`model`]: the sans-IO model, [`Impairment`]. The caller passes the
//!   elapsed time and datagram length; the model answers with a [`Verdict`]
//!   (0, 1 or 2 [`Delivery`] copies, each with a delay and maybe a flipped
//!   bit). The deterministic simulator drives it directly.
//! * [`shim`]: [`LossySocket`], a tokio UDP socket wrapper that applies the
//!   model to real traffic, with bounded due-time queues for delayed copies.
//! * [`capture`]: a tap ([`Capture`]) a [`LossySocket`] hands every
//!   datagram to, with what it did to it (packet captures; no format here).
//! * [`spec`]: [`ImpairmentSpec`], the settings as people write them:
//!   command-line flags (feature `clap`) and file keys (feature `serde`),
//!   turned into an [`ImpairmentConfig`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use risp_netem::{Direction, DirectionConfig, Impairment, ImpairmentConfig};
//!
//! let config = ImpairmentConfig::symmetric(DirectionConfig {
//!     loss: 0.1,
//!     burst: 3.0,
//!     delay: Duration::from_millis(20),
//!     ..DirectionConfig::default()
//! });
//! config.validate().expect("valid config");
//! let mut model = Impairment::new(config, 42);
//! let verdict = model.decide(Direction::ToServer, Duration::ZERO, 1200);
//! for copy in verdict.deliveries() {
//!     assert!(copy.delay >= Duration::from_millis(20));
//! }
//! assert_eq!(model.stats().to_server.seen, 1);
//! ```

#![warn(missing_docs)]

pub mod capture;
pub mod config;
pub mod model;
mod queue;
pub mod shim;
pub mod spec;

pub use capture::{Capture, Seen, ShimFate, Way};
pub use config::{Blackhole, ConfigError, DirectionConfig, ImpairmentConfig, DEFAULT_REORDER_GAP};
pub use model::{
    flip_bit, Delivery, Direction, DirectionStats, Impairment, ImpairmentStats, Verdict,
};
pub use queue::{
    queue_capacity_for, DEFAULT_QUEUE_CAPACITY, MAX_QUEUE_CAPACITY, QUEUE_SIZING_RATE,
};
pub use shim::{ImpairedLink, LossySocket, SendNow, Side};
pub use spec::ImpairmentSpec;

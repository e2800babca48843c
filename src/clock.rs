//! The one place the crate reads the clock.
//!
//! The protocol core (`proto`) never reads a clock: drivers pass `now` in.
//! Drivers and tests call [`now`]; clippy's `disallowed-methods` (see
//! `clippy.toml`) keeps `Instant::now` out of everything else.
//!
//! The time comes from tokio's clock, so a test that pauses tokio time
//! (`tokio::time::pause`) drives the protocol in virtual time too.

use std::time::Instant;

/// The current monotonic time.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The wall-clock time, for reports that say when something ran (never
/// for measuring: use [`now`]).
#[allow(clippy::disallowed_methods)]
pub fn wall_time() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

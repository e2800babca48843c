//! The one place the crate reads the wall clock.
//!
//! The protocol core (`proto`) never reads a clock: drivers pass `now` in.
//! Drivers and tests call [`now`]; clippy's `disallowed-methods` (see
//! `clippy.toml`) keeps `Instant::now` out of everything else.

use std::time::Instant;

/// The current monotonic time.
#[allow(clippy::disallowed_methods)]
pub fn now() -> Instant {
    Instant::now()
}

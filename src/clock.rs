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

/// Datagrams a [`BatchClock`] hands the same time to before it reads the
/// clock again.
pub const BATCH_CLOCK_STRIDE: u32 = 16;

/// The time for each datagram of a received batch: read once every
/// [`BATCH_CLOCK_STRIDE`] datagrams, so that a long batch (thousands of
/// datagrams, taken while more arrive) does not stamp its last datagrams
/// with the time its first was read. With one reading per batch, RTT
/// samples of the late ones came out short by the whole batch's processing
/// time (10–20 ms on a busy machine), the smallest RTT with them, and the
/// standing-queue test then read the true RTT as a queue.
#[derive(Debug, Clone, Copy)]
pub struct BatchClock {
    now: Instant,
    count: u32,
}

impl BatchClock {
    /// Starts a batch at the current time.
    pub fn start() -> Self {
        Self {
            now: now(),
            count: 0,
        }
    }

    /// The time for the next datagram.
    pub fn tick(&mut self) -> Instant {
        self.count += 1;
        if self.count >= BATCH_CLOCK_STRIDE {
            self.count = 0;
            self.now = now();
        }
        self.now
    }
}

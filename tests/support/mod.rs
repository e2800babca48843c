//! Harnesses shared by the test crates under `tests/`, one per way of
//! driving risp-udp. Each crate includes this module with `mod support;`
//! and uses the parts it needs (hence `dead_code` is allowed here).
//!
//! - [`expected`]: what a transfer must deliver, from the session seed
//!   through a reference written in the tests, and the per-value check.
//! - [`wire`]: client datagrams built field by field, server datagrams
//!   encoded, CRCs fixed up after a mutation, SACK bitmaps.
//! - [`virtual_time`]: the sans-IO core in virtual time, with no sockets: a
//!   bare [`virtual_time::ServerHarness`] fed hand-built datagrams, a bare
//!   [`virtual_time::ClientHarness`] fed hand-built replies, and two
//!   configurations of the library's simulator (`risp_udp::sim::Network`):
//!   a [`virtual_time::Pair`] of a server and real clients on perfect links,
//!   and a [`virtual_time::Failover`] network of one client and several
//!   server addresses (impaired, each can be cut off).
//! - [`loopback`]: an in-process tokio server on `127.0.0.1:0` that stops
//!   with its summary, and one client transfer against it.
//! - [`cli`]: the built `risp-udp` binary run to its end, with its exit
//!   code, stdout and stderr.
//! - [`json_seq`]: an independent JSON-SEQ reader for the qlog traces.
//! - [`redis`]: a real `redis-server` on a free port, stopped, killed and
//!   restarted on demand (the shared session store's tests).
//! - [`tshark`]: tshark with the RISP dissector, run (as `nobody` when
//!   root) over a capture and read back field by field
//!   (`RISP_REQUIRE_TSHARK`).
//! - [`fuzz`]: the fuzz harnesses (also built into the cargo-fuzz targets
//!   in `fuzz/`), their script format and their seeds.
//!
//! A test that needs what a machine may lack (root for namespaces or raw
//! sockets) says "skipped: why" through [`skip`] and passes, unless the
//! variable naming that need is `1` (`RISP_REQUIRE_NETNS`,
//! `RISP_REQUIRE_RAW`; `.ci/run` sets both as root): then it fails, so CI
//! never skips silently. `RISP_REQUIRE_REDIS` does the same in [`redis`].
#![allow(dead_code)]
// Shared by many test crates, each using a part: `pub` is the point.
#![allow(unreachable_pub)]

pub mod cli;
pub mod expected;
pub mod fuzz;
pub mod json_seq;
pub mod loopback;
pub mod redis;
pub mod tshark;
pub mod virtual_time;
pub mod wire;

/// Reports why a test cannot run here (the test then returns and passes),
/// or panics when `require` (e.g. `RISP_REQUIRE_RAW`) is set to `1`.
pub fn skip(require: &str, reason: &str) {
    if std::env::var(require).as_deref() == Ok("1") {
        panic!("{require}=1 but this test cannot run here: {reason}");
    }
    eprintln!("skipped: {reason}");
}

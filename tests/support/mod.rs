//! Harnesses shared by the test crates under `tests/`, one per way of
//! driving risp-udp. Each crate includes this module with `mod support;`
//! and uses the parts it needs (hence `dead_code` is allowed here).
//!
//! - [`wire`]: client datagrams built field by field, server datagrams
//!   encoded, CRCs fixed up after a mutation, SACK bitmaps.
//! - [`virtual_time`]: the sans-IO core in virtual time, with no sockets: a
//!   bare [`virtual_time::ServerHarness`] fed hand-built datagrams, a bare
//!   [`virtual_time::ClientHarness`] fed hand-built replies, and a
//!   [`virtual_time::Pair`] of a server and real clients that moves every
//!   datagram between them, and a [`virtual_time::Failover`] network of one
//!   client and several server addresses (lossy, each can be cut off).
//! - [`loopback`]: an in-process tokio server on `127.0.0.1:0` that stops
//!   with its summary, and one client transfer against it.
//! - [`cli`]: the built `risp-udp` binary run to its end, with its exit
//!   code, stdout and stderr.
//! - [`redis`]: a real `redis-server` on a free port, stopped, killed and
//!   restarted on demand (the shared session store's tests).
//! - [`fuzz`]: the fuzz harnesses (also built into the cargo-fuzz targets
//!   in `fuzz/`), their script format and their seeds.
#![allow(dead_code)]
// Shared by many test crates, each using a part: `pub` is the point.
#![allow(unreachable_pub)]

pub mod cli;
pub mod fuzz;
pub mod loopback;
pub mod redis;
pub mod virtual_time;
pub mod wire;

//! Plain TCP transfer of the same values, for side-by-side comparisons.
//!
//! risp-udp exists to beat TCP on lossy links where the tail latency matters.
//! To show that (or fail to), this module streams exactly the values a
//! risp-udp session would, over one TCP connection, and measures the same
//! things the risp-udp client reports: completion time, values per second and
//! the longest stall between successive values.
//!
//! The exchange is deliberately minimal so that nothing but TCP itself shapes
//! the timings:
//!
//! 1. the client connects and sends `len` as a big-endian `u32`;
//! 2. the server draws a fresh random seed for the connection and, unless
//!    `len` exceeds its configured maximum (then it logs and closes), writes
//!    the `len` values of [`Sequence`](crate::proto::sequence::Sequence) as
//!    big-endian `u32`s followed by their checksum as a big-endian `u64`, and
//!    closes;
//! 3. the client sums what it receives and compares the sum with the trailer.
//!
//! Layout: [`wire`] holds the byte format and a sans-IO stream decoder,
//! [`server`] the tokio accept loop, and [`client`] the measuring fetch.
//! The `tcp-server` / `tcp-client` subcommands are in [`crate::cli::tcp`].

pub mod client;
pub mod server;
pub mod wire;

pub use client::{fetch, fetch_with, TcpError, TcpReport};
pub use server::{serve, serve_with, SeedSource, TcpServerConfig, DEFAULT_MAX_LEN};

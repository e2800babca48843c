//! risp-udp: RISP (Realtime Integer Streaming Protocol) over plain UDP.
//!
//! A server streams a sequence of integers to each client; the client
//! verifies it against the checksum the server sends at the end. Over UDP
//! reliability is ours: selective acknowledgements, RTT-derived client
//! timers, a window that shrinks on loss and grows back, retransmission of
//! only what was lost, sessions keyed by UUID that survive disconnects and
//! address changes, and hard limits so no peer can crash or exhaust the
//! server.
//!
//! # Layout
//!
//! - [`proto`] is the protocol, sans-IO: no sockets, no tokio, no clock
//!   reads. Every entry point takes `now`. [`proto::wire`] encodes and
//!   checks datagrams; [`proto::sequence`] derives values from a session
//!   seed. The server side is [`proto::server`]: its endpoint
//!   ([`proto::server::Server`]: routing by UUID, admission, limits,
//!   expiry) keeps one `Session` per client (the checks its messages must
//!   pass, send state, acks, loss detection, resends) in a session table
//!   that keeps the endpoint's indices over them consistent, and both write
//!   to one outbox of replies, events and counters. The client
//!   side is [`proto::client::Client`], one connection's state machine,
//!   with its reorder buffer in `proto::reassembly`. Policy both sides share
//!   lives in [`proto::recovery`] (loss thresholds, reordering windows, the
//!   probe timer) and [`proto::congestion`] (the client's rate control: how
//!   much may be outstanding, and when a loss means congestion);
//!   [`proto::sack`] and [`proto::rtt`] hold one concern each.
//!   [`proto::crypto`] holds the encryption's parts (server keys, the
//!   Noise handshake, sealed datagrams, the replay window), not yet used
//!   on the wire.
//! - [`net`] drives the core with tokio. [`net::server`] is the server:
//!   [`Server::builder`] binds its workers (one UDP socket each) and
//!   starts them, and the [`ServerHandle`] it returns gives the address, a
//!   watch of the [`ServerSummary`] and a shutdown that joins every task.
//!   [`net::stream`] is the client: [`Client::connect`] then
//!   [`request`](Client::request) starts a [`Transfer`], a stream of the
//!   values in order, driven by the loop in [`net::client`].
//!   [`net::batch`] moves datagrams in batches (GSO/GRO, quinn-udp),
//!   [`net::socket`] holds the socket helpers both share,
//!   [`net::session_store`] the session stores workers and instances
//!   share (in memory, Redis), [`net::ops`] the operations endpoints
//!   (health, readiness, Prometheus metrics) over HTTP, and
//!   [`net::keyfile`] and [`net::known_servers`] the server's key on disk
//!   and the keys a client trusts.
//! - [`sim`] drives the same core in virtual time over links impaired by
//!   the `risp-netem` crate: one thread, many endpoints, same seed, same
//!   trace. One engine, [`sim::Network`], built from nodes (servers,
//!   clients, reference flows, a bottleneck); [`sim::run`] configures it
//!   from a [`transfer::RunConfig`].
//! - [`suite`] runs TOML suites of impairment profiles over either back-end:
//!   the simulator, or real loopback sockets ([`suite::real`]). It is the
//!   one module above both `sim` and `net`, which never import each other.
//! - [`transfer`] is one transfer, whoever drives it: [`transfer::RunConfig`]
//!   (what to run), [`transfer::TransferRecorder`] (client events in) and
//!   [`transfer::TransferReport`] / [`transfer::RunReport`] (figures out),
//!   shared by the simulator, the tokio client and the suites.
//! - [`stats`] records latency histograms (HdrHistogram), saves them as
//!   `.hgrm`/`.hlog`, reads them back, merges and plots them.
//! - [`trace`] holds recording formats: [`trace::qlog`] writes the cores'
//!   trace records ([`proto::trace`], off unless a config asks) as JSON-SEQ
//!   qlog, [`trace::timeline`] reads a trace back and [`trace::plot`] draws
//!   it against time; `suite` feeds it from the simulator (`sim --qlog`).
//! - [`tcp`] is a plain-TCP transfer of the same sequence, for comparison.
//! - `cli` is the `risp-udp` command line, every subcommand (including
//!   `hist` and `tcp-*`), each a parse, a call into the modules above, and
//!   printing; `main.rs` only calls it. It is public for the binary and the
//!   tests only (hidden from these docs).
//! - [`clock`] is the one place that reads the clock.
//!
//! # Embedding
//!
//! A real server and client over loopback: the server binds a free port,
//! the client streams 1,000 values from it, and the server stops with
//! every task joined.
//!
//! ```
//! use risp_udp::{Client, Server};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder().start().await?;
//! let mut transfer = Client::connect([server.local_addr()]).request(1_000).await?;
//! let mut next = 0;
//! while let Some(v) = transfer.next().await {
//!     assert_eq!(v?.index, next);
//!     next += 1;
//! }
//! let report = transfer.finish().await?;
//! assert!(report.verified(), "every value, and the server's checksum");
//! let summary = server.shutdown().await?;
//! assert_eq!(summary.stats.sessions_opened, 1);
//! # Ok(())
//! # }
//! ```
//!
//! The same protocol in virtual time, with no sockets: ten clients, 1,000
//! values each, 10% loss both ways.
//!
//! ```
//! use risp_netem::{DirectionConfig, ImpairmentConfig};
//! use risp_udp::sim::run;
//! use risp_udp::transfer::RunConfig;
//!
//! let lossy = ImpairmentConfig::symmetric(DirectionConfig::with_loss(0.1));
//! let report = run(&RunConfig::new(7, 10, 1_000, lossy));
//! assert!(report.all_verified());
//! ```

#[doc(hidden)]
pub mod cli;
pub mod clock;
pub mod net;
pub mod proto;
pub mod sim;
pub mod stats;
pub mod suite;
pub mod tcp;
pub mod trace;
pub mod transfer;

pub use net::server::{Server, ServerBuilder, ServerError, ServerHandle, ServerSummary};
pub use net::stream::{AbortHandle, Client, Transfer, TransferError, TransferSet, Value};
pub use proto::client::{ClientConfig, ClientError};
pub use proto::server::ServerConfig;
pub use transfer::TransferReport;

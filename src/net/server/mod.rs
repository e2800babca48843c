//! The server driver: UDP sockets, every client, demultiplexed by UUID.
//!
//! [`Server::builder`] configures a server and
//! [`start`](ServerBuilder::start)s it; the [`ServerHandle`] it returns
//! says where it listens, publishes its [`ServerSummary`] through a
//! `tokio::sync::watch`, and [shuts it down](ServerHandle::shutdown),
//! joining every task it spawned.
//!
//! ```no_run
//! # async fn example() -> Result<(), risp_udp::net::server::ServerError> {
//! use risp_udp::net::server::Server;
//! let server = Server::builder()
//!     .bind("0.0.0.0:8081".parse().unwrap())
//!     .workers(4)
//!     .start()
//!     .await?;
//! println!("listening on {}", server.local_addr());
//! let summary = server.shutdown().await?;
//! println!("{} sessions", summary.stats.sessions_opened);
//! # Ok(()) }
//! ```
//!
//! - `builder`: the builder, the handle, and what `start` sets up.
//! - `worker`: one worker's I/O loop around the core
//!   ([`proto::server::Server`](crate::proto::server::Server)).
//! - `store_tasks`: a worker's writer and lookups against the session
//!   store.
//! - `summary`: the figures, how workers' add up, and where they go.

use std::time::Duration;

mod builder;
mod store_tasks;
mod summary;
mod worker;

pub use builder::{Server, ServerBuilder, ServerError, ServerHandle};
pub use summary::{ServerSummary, SharedSummary, MAX_SESSION_SEEDS, PUBLISH_EVERY};

/// Default time a server keeps an idle session.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30);

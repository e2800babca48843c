//! A deterministic simulator: servers, clients and reference flows over
//! simulated links, in virtual time, in one thread.
//!
//! One engine, [`Network`], built from nodes: any number of [`Server`]s
//! (each reached at one or more addresses, which can be cut off), any
//! number of [`ClientNode`]s (a client core on a [`Link`] of its own,
//! impaired by a seeded [`risp_netem::Impairment`], with a schedule of
//! socket kills), Reno-style [`ReferenceNode`]s ([`mod@reference`]), an
//! optional shared [`Bottleneck`](bottleneck::Bottleneck) in front of
//! every client, and a session store the servers configured with one
//! share. What the endpoints say goes to an [`Observer`]. Time jumps from
//! one event (a delivery or a timer) to the next, so a 30-second blackhole
//! costs nothing to simulate, and the same nodes and seeds always give the
//! same trace.
//!
//! [`run`] builds one network from a [`RunConfig`](crate::transfer::RunConfig)
//! (one server, its clients each on its own link, the reference flows and
//! the bottleneck) and reports; besides the client's own checksum check it
//! checks every value against the server's sequence as it is delivered: in
//! order, exactly once, the right value. A run may give each flow extra
//! delay of its own ([`RunConfig::flow_delays`](crate::transfer::RunConfig::flow_delays)),
//! to measure how the clients share a link with each other and with other
//! kinds of flow.
//!
//! The test harnesses (`tests/support/virtual_time.rs`: a server and its
//! clients on perfect links, and one client failing over between server
//! addresses) are networks configured differently.
//!
//! [`Server`]: crate::proto::server::Server

pub mod bottleneck;
mod delivery;
mod link;
mod network;
mod node;
pub mod reference;
mod run;

pub use link::Link;
pub use network::{Advance, Network};
pub use node::{
    ClientCounters, ClientNode, LinkDatagram, LinkFate, Observer, ReferenceNode, Tamper,
};
pub use run::{run, run_observed, run_with_reference_stats};

//! Recordings of what happened, in the formats the field's tools read:
//! packet captures (pcapng, for Wireshark and tshark), qlog event logs
//! (JSON-SEQ, for qvis) and timeline plots drawn from them.
//!
//! This module holds the formats only: it imports `proto` (to name what a
//! datagram is) and `stats` (for drawing), never `sim`, `net` or `cli`. The
//! glue that feeds a recorder from the simulator's observer or from a
//! socket's shim lives with those. Recording is off unless asked for, and
//! costs nothing when off.
//!
//! - [`pcap`]: the pcapng writer of packet captures;
//! - [`qlog`]: the JSON-SEQ qlog writer, fed with the endpoints' trace
//!   records ([`crate::proto::trace`]);
//! - [`timeline`]: a qlog trace read back as the series of one transfer;
//! - [`plot`]: those series drawn as stacked panels against time.

mod error;
pub mod pcap;
pub mod plot;
pub mod qlog;
pub mod timeline;

pub use error::TraceError;

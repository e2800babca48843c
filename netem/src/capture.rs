//! A tap on a [`LossySocket`](crate::LossySocket): every datagram it sends
//! or receives, with what the shim did to it, handed to a [`Capture`].
//!
//! The shim knows no file format: whoever wants a packet capture (risp-udp's
//! `client --pcap`, `server --pcap`) implements [`Capture`] and attaches it
//! with [`LossySocket::with_capture`](crate::LossySocket::with_capture).
//! Without one the cost is one branch per datagram. The tap sees datagrams
//! as the shim judges them: an outbound one when the application hands it
//! over, an inbound one when it comes off the socket, each once per copy
//! the model lets through (a duplicate twice) or once when dropped. It is
//! called on the I/O path, so it should be quick and must not block for
//! long; it reads no clock here, so implementations stamp times
//! themselves.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::model::Verdict;

/// Which way a datagram went, seen from the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// The application sent it.
    Sent,
    /// It came off the socket.
    Received,
}

/// What the shim did with one copy of a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShimFate {
    /// Passed on after `delay` (zero: at once; always zero for a
    /// passthrough socket).
    Passed {
        /// How long the shim held it.
        delay: Duration,
    },
    /// Passed on after `delay` with bit `bit` flipped (the bytes the tap
    /// sees are as they were before: flip it with
    /// [`flip_bit`](crate::flip_bit) for the damaged copy).
    Corrupted {
        /// How long the shim held it.
        delay: Duration,
        /// The bit flipped.
        bit: usize,
    },
    /// The model's second copy, passed on after `delay`.
    Duplicated {
        /// How long the shim held it.
        delay: Duration,
    },
    /// Dropped by the model (loss, a burst, a blackhole).
    Dropped,
    /// Dropped because the shim's delay queue was full.
    Overflowed,
}

impl ShimFate {
    /// Whether the copy goes on (to the network or the application).
    pub fn passes(&self) -> bool {
        !matches!(self, Self::Dropped | Self::Overflowed)
    }
}

/// One datagram (one copy of it) as the tap sees it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// Sent or received.
    pub way: Way,
    /// The socket's own address (as it was when the tap was attached).
    pub local: SocketAddr,
    /// The other end: the destination of a sent datagram, the source of a
    /// received one.
    pub peer: SocketAddr,
    /// The datagram, as the application gave it or the socket returned it.
    pub bytes: &'a [u8],
    /// What the shim did with it.
    pub fate: ShimFate,
}

/// Receives what a tapped [`LossySocket`](crate::LossySocket) sees; shared
/// between sockets (and threads) with an `Arc`.
pub trait Capture: Send + Sync + std::fmt::Debug {
    /// One datagram copy went by.
    fn datagram(&self, seen: &Seen<'_>);
}

/// A [`Capture`] attached to one socket, with that socket's address.
#[derive(Debug, Clone)]
pub(crate) struct Tap {
    pub(crate) sink: Arc<dyn Capture>,
    pub(crate) local: SocketAddr,
}

/// What a passthrough socket does with every datagram.
pub(crate) const PASSED: ShimFate = ShimFate::Passed {
    delay: Duration::ZERO,
};

impl Tap {
    pub(crate) fn see(&self, way: Way, peer: SocketAddr, bytes: &[u8], fate: ShimFate) {
        self.sink.datagram(&Seen {
            way,
            local: self.local,
            peer,
            bytes,
            fate,
        });
    }

    /// One call per copy the verdict lets through, or one for a drop.
    pub(crate) fn verdict(&self, way: Way, peer: SocketAddr, bytes: &[u8], verdict: &Verdict) {
        if verdict.deliveries().is_empty() {
            self.see(way, peer, bytes, ShimFate::Dropped);
        }
        for (copy, d) in verdict.deliveries().iter().enumerate() {
            let fate = match d.corrupt_bit {
                Some(bit) => ShimFate::Corrupted {
                    delay: d.delay,
                    bit,
                },
                None if copy > 0 => ShimFate::Duplicated { delay: d.delay },
                None => ShimFate::Passed { delay: d.delay },
            };
            self.see(way, peer, bytes, fate);
        }
    }
}

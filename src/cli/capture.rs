//! `client --pcap FILE` and `server --pcap FILE`: what the lossy-socket
//! shim saw, both ways, written as a pcapng capture
//! ([`crate::trace::pcap`]).
//!
//! [`ShimCapture`] is the shim's [`Capture`]: each datagram copy is stamped
//! with the wall clock when the shim handles it (an outbound one when the
//! driver hands it over, an inbound one when it comes off the socket),
//! drops go on the capture's "dropped" interface, and the comment says
//! what the shim did ("received", "sent, delayed 5.000 ms", "dropped by
//! the shim"). A corrupted copy is written as damaged, so the dissector
//! flags its CRC. Without an impairment (passthrough) every datagram is
//! recorded as it went. The file is written under a lock on the I/O path;
//! the first write error stops the capture and is reported by
//! [`ShimCapture::finish`].

use std::fs::File;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use risp_netem::{Capture, Seen, ShimFate, Way};

use crate::trace::pcap::{self, Captured, PcapWriter};

/// Writes what a tapped socket saw into a pcapng file. See the module
/// docs.
#[derive(Debug)]
pub struct ShimCapture {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// `None` once a write failed.
    writer: Option<PcapWriter<BufWriter<File>>>,
    error: Option<io::Error>,
    /// The damaged copy of a corrupted datagram, and the comment, reused.
    scratch: Vec<u8>,
    comment: String,
}

impl ShimCapture {
    /// Creates (or truncates) `path` and writes the capture's header;
    /// `application` names the writer in the file.
    pub fn create(path: &Path, application: &str) -> io::Result<Self> {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = File::create(path).map_err(named)?;
        let writer = PcapWriter::new(BufWriter::new(file), application).map_err(named)?;
        Ok(Self {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                writer: Some(writer),
                error: None,
                scratch: Vec::new(),
                comment: String::new(),
            }),
        })
    }

    /// Flushes the file; returns how many packets it holds, or the first
    /// error (naming the file).
    pub fn finish(&self) -> io::Result<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let named =
            |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", self.path.display()));
        if let Some(e) = state.error.take() {
            return Err(named(e));
        }
        let Some(writer) = state.writer.take() else {
            return Ok(0);
        };
        let packets = writer.packets();
        writer.finish().map_err(named)?;
        Ok(packets)
    }
}

impl Capture for ShimCapture {
    fn datagram(&self, seen: &Seen<'_>) {
        let now = crate::clock::wall_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let State {
            writer,
            error,
            scratch,
            comment,
        } = &mut *state;
        let Some(w) = writer else {
            return;
        };
        describe(seen, comment);
        let mut payload = seen.bytes;
        if let ShimFate::Corrupted { bit, .. } = seen.fate {
            scratch.clear();
            scratch.extend_from_slice(seen.bytes);
            risp_netem::flip_bit(scratch, bit);
            payload = scratch;
        }
        let (from, to, way) = match seen.way {
            Way::Sent => (seen.local, seen.peer, pcap::Way::Outbound),
            Way::Received => (seen.peer, seen.local, pcap::Way::Inbound),
        };
        let captured = Captured {
            timestamp: now,
            from,
            to,
            payload,
            dropped: !seen.fate.passes(),
            way: Some(way),
            comment,
        };
        if let Err(e) = w.write(&captured) {
            *error = Some(e);
            *writer = None;
        }
    }
}

/// Opens `--pcap FILE`, if given, for `application` ("risp-udp client").
pub fn open(path: Option<&Path>, application: &str) -> io::Result<Option<Arc<ShimCapture>>> {
    path.map(|p| ShimCapture::create(p, application).map(Arc::new))
        .transpose()
}

/// Finishes `--pcap`'s file, if any: says on stderr how many datagrams it
/// holds, or why it could not be written (then returns false).
pub fn close(capture: Option<&ShimCapture>) -> bool {
    let Some(c) = capture else {
        return true;
    };
    match c.finish() {
        Ok(n) => {
            eprintln!("capture: {n} datagrams written to {}", c.path.display());
            true
        }
        Err(e) => {
            eprintln!("error: capture: {e}");
            false
        }
    }
}

/// What a packet's comment says of `seen`.
fn describe(seen: &Seen<'_>, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    out.push_str(match seen.way {
        Way::Sent => "sent",
        Way::Received => "received",
    });
    let delayed = |out: &mut String, delay: Duration| {
        if !delay.is_zero() {
            let us = delay.as_micros();
            // Writing to a String cannot fail.
            let _ = write!(out, ", delayed {}.{:03} ms", us / 1000, us % 1000);
        }
    };
    match seen.fate {
        ShimFate::Passed { delay } => delayed(out, delay),
        ShimFate::Corrupted { delay, bit } => {
            let _ = write!(out, ", corrupted by the shim (bit {bit})");
            delayed(out, delay);
        }
        ShimFate::Duplicated { delay } => {
            out.push_str(", duplicate copy from the shim");
            delayed(out, delay);
        }
        ShimFate::Dropped => out.push_str(", dropped by the shim"),
        ShimFate::Overflowed => out.push_str(", dropped: the shim's delay queue was full"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(way: Way, fate: ShimFate) -> String {
        let mut s = String::new();
        let seen = Seen {
            way,
            local: "127.0.0.1:5000".parse().unwrap(),
            peer: "127.0.0.1:8081".parse().unwrap(),
            bytes: &[],
            fate,
        };
        describe(&seen, &mut s);
        s
    }

    #[test]
    fn comments_say_what_the_shim_did() {
        let passed = ShimFate::Passed {
            delay: Duration::ZERO,
        };
        assert_eq!(seen(Way::Sent, passed), "sent");
        let late = ShimFate::Passed {
            delay: Duration::from_micros(5_250),
        };
        assert_eq!(seen(Way::Received, late), "received, delayed 5.250 ms");
        assert_eq!(
            seen(Way::Sent, ShimFate::Dropped),
            "sent, dropped by the shim"
        );
        let bit = ShimFate::Corrupted {
            delay: Duration::ZERO,
            bit: 9,
        };
        assert_eq!(
            seen(Way::Received, bit),
            "received, corrupted by the shim (bit 9)"
        );
    }
}

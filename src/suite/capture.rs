//! Packet captures of simulated runs: an [`Observer`] that writes every
//! datagram on every link, with its fate, into a pcapng file
//! ([`crate::trace::pcap`]), and `risp-udp sim --pcap DIR`'s one file per
//! run.
//!
//! Each packet is stamped with its virtual send time after
//! [`VIRTUAL_EPOCH`], so the same profile and seed give the same file,
//! byte for byte. Copies that arrive go on the capture's "delivered"
//! interface, losses and bottleneck drops on "dropped"; every packet's
//! comment says which way it went, on which flow, and what became of it
//! ("to client, flow 0: lost on the link"). A corrupted copy is recorded
//! as it arrives, bit flipped, so the dissector's CRC check flags it.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use risp_netem::Direction;

use crate::sim::{LinkDatagram, LinkFate, Observer};
use crate::trace::pcap::{Captured, PcapWriter, VIRTUAL_EPOCH};
use crate::transfer::{RunConfig, RunReport};

/// Writes what the links of a simulated network carried into a pcapng
/// capture. The first write error stops the capture and is kept for
/// [`finish`](Self::finish) (an observer cannot fail a step).
#[derive(Debug)]
pub struct SimCapture<W: Write> {
    writer: PcapWriter<W>,
    error: Option<io::Error>,
    /// The comment being built, reused.
    comment: String,
}

impl<W: Write> SimCapture<W> {
    /// A capture written to `out`.
    pub fn new(out: W) -> io::Result<Self> {
        Ok(Self {
            writer: PcapWriter::new(out, "risp-udp sim")?,
            error: None,
            comment: String::new(),
        })
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.writer.packets()
    }

    /// Flushes the capture and hands the output back, or the first error.
    pub fn finish(self) -> io::Result<W> {
        match self.error {
            Some(e) => Err(e),
            None => self.writer.finish(),
        }
    }
}

impl<W: Write> Observer for SimCapture<W> {
    fn link_datagram(&mut self, d: &LinkDatagram<'_>) {
        if self.error.is_some() {
            return;
        }
        describe(d, &mut self.comment);
        let captured = Captured {
            timestamp: VIRTUAL_EPOCH + d.elapsed,
            from: d.from,
            to: d.to,
            payload: d.bytes,
            dropped: !d.fate.arrives(),
            way: None,
            comment: &self.comment,
        };
        if let Err(e) = self.writer.write(&captured) {
            self.error = Some(e);
        }
    }
}

/// Puts into `out` what a packet's comment says of `d`.
fn describe(d: &LinkDatagram<'_>, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let way = match d.direction {
        Direction::ToServer => "to server",
        Direction::ToClient => "to client",
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "{way}, flow {}: ", d.flow);
    let _ = match d.fate {
        LinkFate::Delivered { after } => write!(out, "delivered after {}", Millis(after)),
        LinkFate::Corrupted { after, bit } => {
            write!(
                out,
                "corrupted (bit {bit}), arrives after {}",
                Millis(after)
            )
        }
        LinkFate::Duplicated { after } => {
            write!(out, "duplicate copy, arrives after {}", Millis(after))
        }
        LinkFate::Lost => write!(out, "lost on the link"),
        LinkFate::QueueDrop => write!(out, "dropped by the bottleneck queue"),
    };
}

/// A duration as milliseconds with three decimals, from whole
/// microseconds (no floating point: the same bytes everywhere).
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0.as_micros();
        write!(f, "{}.{:03} ms", us / 1000, us % 1000)
    }
}

/// Runs `config` in the simulator, capturing every link's datagrams into
/// `out`; returns the run's report and the output.
pub fn capture_run<W: Write>(config: &RunConfig, out: W) -> io::Result<(RunReport, W)> {
    let mut capture = SimCapture::new(out)?;
    let report = crate::sim::run_observed(config, &mut capture);
    let out = capture.finish()?;
    Ok((report, out))
}

/// The capture file of profile `profile`'s run with `seed`:
/// `PROFILE-seedSEED.pcapng`, any character of the name other than a
/// letter, a digit, `-`, `_` or `.` replaced by `_`.
pub fn capture_file_name(profile: &str, seed: u64) -> String {
    let safe: String = profile
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-seed{seed}.pcapng")
}

/// Runs `config` (of profile `profile`) capturing into its file in `dir`
/// ([`capture_file_name`]); an error names the file.
pub fn capture_to_dir(config: &RunConfig, profile: &str, dir: &Path) -> io::Result<RunReport> {
    let mut capture = RunCapture::open(Some(dir), profile, config.seed)?;
    let report = crate::sim::run_observed(config, &mut capture);
    capture.finish()?;
    Ok(report)
}

/// One run's capture into its file ([`capture_file_name`] in a
/// directory), or nothing: an observer to pair with others.
#[derive(Debug)]
pub struct RunCapture {
    file: Option<(PathBuf, SimCapture<BufWriter<File>>)>,
}

impl RunCapture {
    /// The capture of profile `profile`'s run with `seed` in `dir`; with no
    /// directory, one that records nothing.
    pub fn open(dir: Option<&Path>, profile: &str, seed: u64) -> io::Result<Self> {
        let Some(dir) = dir else {
            return Ok(Self { file: None });
        };
        let path = dir.join(capture_file_name(profile, seed));
        let file = File::create(&path)
            .and_then(|f| SimCapture::new(BufWriter::new(f)))
            .map_err(|e| named(&path, e))?;
        Ok(Self {
            file: Some((path, file)),
        })
    }

    /// Flushes the file; an error names it.
    pub fn finish(self) -> io::Result<()> {
        if let Some((path, capture)) = self.file {
            capture.finish().map_err(|e| named(&path, e))?;
        }
        Ok(())
    }
}

impl Observer for RunCapture {
    fn link_datagram(&mut self, d: &LinkDatagram<'_>) {
        if let Some((_, capture)) = &mut self.file {
            capture.link_datagram(d);
        }
    }
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe_and_name_the_seed() {
        assert_eq!(capture_file_name("loss-10", 7), "loss-10-seed7.pcapng");
        assert_eq!(capture_file_name("a b/c", 0), "a_b_c-seed0.pcapng");
    }

    #[test]
    fn comments_say_the_way_the_flow_and_the_fate() {
        let d = LinkDatagram {
            at: crate::clock::now(),
            elapsed: std::time::Duration::ZERO,
            flow: 3,
            direction: Direction::ToClient,
            from: "10.0.0.1:8081".parse().unwrap(),
            to: "10.1.0.3:1030".parse().unwrap(),
            bytes: &[],
            fate: LinkFate::Delivered {
                after: std::time::Duration::from_micros(12_345),
            },
        };
        let mut s = String::new();
        describe(&d, &mut s);
        assert_eq!(s, "to client, flow 3: delivered after 12.345 ms");
        describe(
            &LinkDatagram {
                fate: LinkFate::QueueDrop,
                direction: Direction::ToServer,
                ..d
            },
            &mut s,
        );
        assert_eq!(s, "to server, flow 3: dropped by the bottleneck queue");
    }
}

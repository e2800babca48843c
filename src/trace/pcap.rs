//! Packet captures: pcapng files that Wireshark and tshark open.
//!
//! A [`PcapWriter`] writes one section with two interfaces: datagrams that
//! arrived ([`INTERFACE_DELIVERED`]) and datagrams that were lost or
//! dropped ([`INTERFACE_DROPPED`]), so a display filter
//! `frame.interface_id == 1` shows exactly the losses. Each packet is the
//! datagram inside IPv4 or IPv6 and UDP headers made up here (link type
//! RAW: no Ethernet), so Wireshark shows the addresses and ports and hands
//! the payload to the RISP dissector (`netem/wireshark/risp.lua`). A packet
//! may carry a comment (what became of it: "lost on the link", "delayed
//! 12.5 ms") and the direction it travelled in.
//!
//! Nothing here reads a clock or the host: the caller gives each packet its
//! time (virtual time plus [`VIRTUAL_EPOCH`] for the simulator, the wall
//! clock for the socket shim), and the file holds no host name, OS or
//! interface statistics, so the same datagrams at the same times give the
//! same bytes. Blocks are little-endian on every platform for the same
//! reason. The format is written by the `pcap-file` crate; only the IP and
//! UDP headers are built by hand.

use std::borrow::Cow;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, PcapError};

/// The interface of datagrams that arrived.
pub const INTERFACE_DELIVERED: u32 = 0;
/// The interface of datagrams that were lost or dropped.
pub const INTERFACE_DROPPED: u32 = 1;

/// Time zero of simulator captures: 2025-01-01T00:00:00Z, a fixed instant,
/// so a run's capture does not depend on when it ran.
pub const VIRTUAL_EPOCH: Duration = Duration::from_secs(1_735_689_600);

/// The longest UDP payload a made-up IPv4 header can describe; longer
/// payloads are cut to it (no RISP datagram comes close).
pub const MAX_PAYLOAD: usize = 65_535 - 20 - 8;

/// Which way a datagram went, seen from where it was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Received by the capturing side.
    Inbound,
    /// Sent by the capturing side.
    Outbound,
}

/// One datagram to record.
#[derive(Debug, Clone, Copy)]
pub struct Captured<'a> {
    /// When it was seen, since the UNIX epoch.
    pub timestamp: Duration,
    /// Its source.
    pub from: SocketAddr,
    /// Its destination.
    pub to: SocketAddr,
    /// The UDP payload: the datagram.
    pub payload: &'a [u8],
    /// True if it was lost or dropped ([`INTERFACE_DROPPED`]).
    pub dropped: bool,
    /// Its direction, if the capture has a side.
    pub way: Option<Way>,
    /// What became of it, in words (an empty comment is left out).
    pub comment: &'a str,
}

/// Writes a pcapng capture. See the module docs.
pub struct PcapWriter<W: Write> {
    inner: PcapNgWriter<W>,
    /// Packets written so far.
    packets: u64,
    /// The packet being built (headers and payload), reused.
    frame: Vec<u8>,
}

impl<W: Write> std::fmt::Debug for PcapWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapWriter")
            .field("packets", &self.packets)
            .finish_non_exhaustive()
    }
}

impl<W: Write> PcapWriter<W> {
    /// Starts a capture in `out`: the section header (naming `application`
    /// as its writer) and the two interfaces.
    pub fn new(out: W, application: &str) -> io::Result<Self> {
        let section = SectionHeaderBlock {
            endianness: Endianness::Little,
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(
                application.to_string(),
            ))],
            ..SectionHeaderBlock::default()
        };
        let mut inner = PcapNgWriter::with_section_header(out, section).map_err(to_io)?;
        for (name, description) in [
            ("delivered", "datagrams that arrived"),
            ("dropped", "datagrams lost or dropped on the way"),
        ] {
            let interface = InterfaceDescriptionBlock {
                linktype: DataLink::RAW,
                snaplen: 0xFFFF,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    InterfaceDescriptionOption::IfDescription(Cow::Borrowed(description)),
                    // pcap-file writes packet times in nanoseconds.
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            inner.write_pcapng_block(interface).map_err(to_io)?;
        }
        Ok(Self {
            inner,
            packets: 0,
            frame: Vec::with_capacity(1600),
        })
    }

    /// Records one datagram.
    pub fn write(&mut self, datagram: &Captured<'_>) -> io::Result<()> {
        self.frame.clear();
        let payload = &datagram.payload[..datagram.payload.len().min(MAX_PAYLOAD)];
        ip_udp_packet(datagram.from, datagram.to, payload, &mut self.frame);
        let mut options = Vec::with_capacity(2);
        if !datagram.comment.is_empty() {
            options.push(EnhancedPacketOption::Comment(Cow::Borrowed(
                datagram.comment,
            )));
        }
        if let Some(way) = datagram.way {
            // epb_flags bits 0-1: 01 inbound, 10 outbound.
            options.push(EnhancedPacketOption::Flags(match way {
                Way::Inbound => 1,
                Way::Outbound => 2,
            }));
        }
        let block = EnhancedPacketBlock {
            interface_id: if datagram.dropped {
                INTERFACE_DROPPED
            } else {
                INTERFACE_DELIVERED
            },
            timestamp: datagram.timestamp,
            original_len: self.frame.len() as u32,
            data: Cow::Borrowed(&self.frame),
            options,
        };
        self.inner.write_pcapng_block(block).map_err(to_io)?;
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes what was written and hands the output back.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.inner.into_inner();
        out.flush()?;
        Ok(out)
    }
}

fn to_io(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

/// Appends to `out` an IP packet (IPv4 if both addresses are IPv4, IPv6
/// otherwise, an IPv4 address then written IPv4-mapped) holding a UDP
/// datagram from `from` to `to` with `payload` (at most
/// [`MAX_PAYLOAD`] bytes; longer is cut), checksums filled in.
pub fn ip_udp_packet(from: SocketAddr, to: SocketAddr, payload: &[u8], out: &mut Vec<u8>) {
    let payload = &payload[..payload.len().min(MAX_PAYLOAD)];
    // Cannot overflow: the payload was cut to fit.
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&from.port().to_be_bytes());
    udp[2..4].copy_from_slice(&to.port().to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut ip = [0u8; 20];
            ip[0] = 0x45; // version 4, 5 words of header
            ip[2..4].copy_from_slice(&(udp_len + 20).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64; // TTL
            ip[9] = 17; // UDP
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let sum = fold(add_words(0, &ip));
            ip[10..12].copy_from_slice(&(!sum).to_be_bytes());
            let pseudo = pseudo_sum(&src.octets(), &dst.octets(), u32::from(udp_len));
            finish_udp_checksum(&mut udp, pseudo, payload);
            out.extend_from_slice(&ip);
        }
        (src, dst) => {
            let (src, dst) = (as_v6(src), as_v6(dst));
            let mut ip = [0u8; 40];
            ip[0] = 0x60; // version 6
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = 17; // next header: UDP
            ip[7] = 64; // hop limit
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            let pseudo = pseudo_sum(&src.octets(), &dst.octets(), u32::from(udp_len));
            finish_udp_checksum(&mut udp, pseudo, payload);
            out.extend_from_slice(&ip);
        }
    }
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The one's-complement sum of the UDP pseudo-header (RFC 768, RFC 8200
/// §8.1: the length counted as 32 bits works for both).
fn pseudo_sum(src: &[u8], dst: &[u8], udp_len: u32) -> u32 {
    let sum = add_words(add_words(0, src), dst);
    sum + 17 + (udp_len >> 16) + (udp_len & 0xFFFF)
}

/// Fills in the UDP checksum of `udp` (its header, checksum field zero).
fn finish_udp_checksum(udp: &mut [u8; 8], pseudo: u32, payload: &[u8]) {
    let sum = fold(add_words(add_words(pseudo, udp), payload));
    // A computed 0 is sent as all ones (0 means "no checksum").
    let checksum = match !sum {
        0 => 0xFFFF,
        c => c,
    };
    udp[6..8].copy_from_slice(&checksum.to_be_bytes());
}

/// Adds `bytes` as big-endian 16-bit words (an odd last byte padded with
/// zero) to `sum`, folding carries so it never overflows.
fn add_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum = fold_once(sum + u32::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        sum = fold_once(sum + (u32::from(*last) << 8));
    }
    sum
}

fn fold_once(sum: u32) -> u32 {
    (sum & 0xFFFF) + (sum >> 16)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = fold_once(sum);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// The one's-complement sum over a whole header, checksum included,
    /// is 0xFFFF when the checksum is right.
    fn verifies(sum: u32) -> bool {
        fold(sum) == 0xFFFF
    }

    #[test]
    fn ipv4_headers_have_the_lengths_ports_and_checksums() {
        let mut out = Vec::new();
        let payload = [1u8, 2, 3, 4, 5];
        ip_udp_packet(
            addr("10.1.0.1:1025"),
            addr("10.0.0.1:8081"),
            &payload,
            &mut out,
        );
        assert_eq!(out.len(), 20 + 8 + 5);
        assert_eq!(out[0], 0x45);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 33);
        assert_eq!(&out[12..16], &[10, 1, 0, 1]);
        assert_eq!(&out[16..20], &[10, 0, 0, 1]);
        assert!(verifies(add_words(0, &out[..20])), "IPv4 header checksum");
        assert_eq!(u16::from_be_bytes([out[20], out[21]]), 1025);
        assert_eq!(u16::from_be_bytes([out[22], out[23]]), 8081);
        assert_eq!(u16::from_be_bytes([out[24], out[25]]), 13);
        let pseudo = pseudo_sum(&out[12..16], &out[16..20], 13);
        assert!(verifies(add_words(pseudo, &out[20..])), "UDP checksum");
        assert_eq!(&out[28..], &payload);
    }

    #[test]
    fn mixed_families_become_ipv6_with_a_mapped_address() {
        let mut out = Vec::new();
        ip_udp_packet(
            addr("127.0.0.1:5000"),
            addr("[::1]:8081"),
            &[9; 7],
            &mut out,
        );
        assert_eq!(out.len(), 40 + 8 + 7);
        assert_eq!(out[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([out[4], out[5]]), 15);
        assert_eq!(
            &out[8..24],
            &"::ffff:127.0.0.1".parse::<Ipv6Addr>().unwrap().octets()
        );
        let pseudo = pseudo_sum(&out[8..24], &out[24..40], 15);
        assert!(verifies(add_words(pseudo, &out[40..])), "UDP checksum");
    }

    #[test]
    fn a_capture_is_deterministic_and_counts_its_packets() {
        let write = |comment: &str| {
            let mut w = PcapWriter::new(Vec::new(), "test").unwrap();
            for i in 0..3u8 {
                w.write(&Captured {
                    timestamp: VIRTUAL_EPOCH + Duration::from_micros(u64::from(i) * 1500),
                    from: addr("10.1.0.1:1025"),
                    to: addr("10.0.0.1:8081"),
                    payload: &[i; 30],
                    dropped: i == 1,
                    way: None,
                    comment,
                })
                .unwrap();
            }
            assert_eq!(w.packets(), 3);
            w.finish().unwrap()
        };
        let a = write("lost");
        assert_eq!(a, write("lost"));
        assert_ne!(a, write("kept"), "the comment is in the file");
        // Section header block, little-endian byte-order magic.
        assert_eq!(&a[..4], &[0x0A, 0x0D, 0x0D, 0x0A]);
        assert_eq!(&a[8..12], &[0x4D, 0x3C, 0x2B, 0x1A]);
    }
}

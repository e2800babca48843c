//! `client --pcap FILE` and `server --pcap FILE`: what the shim saw, over
//! real loopback sockets.
//!
//! - without impairments (passthrough) the client's capture holds every
//!   datagram its report says it received, every datagram of both
//!   captures decodes with the crate's wire module for the transfer's
//!   session, and what one end sent the other received;
//! - with the client's shim dropping, corrupting and duplicating, the
//!   drops are on the "dropped" interface (as many as the report's shim
//!   drops), the corrupted copies fail their CRC and the rest decode; and
//!   tshark with the dissector (found by its heuristic: the port is not
//!   8081) names every datagram's kind and flags exactly the damaged ones
//!   (skipped without tshark unless `RISP_REQUIRE_TSHARK=1`).

mod support;

use std::path::Path;
use std::time::Duration;

use pcap_file::pcapng::{Block, PcapNgReader};
use risp_udp::proto::wire::{ClientMessage, ServerMessage};
use support::cli::{self, ServerProcess};
use uuid::Uuid;

/// One captured packet: the interface, the direction flag, the UDP ports
/// and the payload (after the made-up IPv4 and UDP headers).
struct Packet {
    interface: u32,
    outbound: bool,
    src_port: u16,
    payload: Vec<u8>,
}

fn read_capture(path: &Path) -> Vec<Packet> {
    let bytes = std::fs::read(path).unwrap();
    let mut reader = PcapNgReader::new(&bytes[..]).unwrap();
    let mut packets = Vec::new();
    while let Some(block) = reader.next_block() {
        let Block::EnhancedPacket(p) = block.unwrap() else {
            continue;
        };
        let flags = p.options.iter().find_map(|o| match o {
            pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(f) => Some(*f),
            _ => None,
        });
        let data = &p.data;
        assert_eq!(data[0], 0x45, "loopback IPv4");
        packets.push(Packet {
            interface: p.interface_id,
            outbound: flags.expect("a direction flag") & 3 == 2,
            src_port: u16::from_be_bytes([data[20], data[21]]),
            payload: data[28..].to_vec(),
        });
    }
    packets
}

/// Whether `p` decodes as what it is: a client datagram of `uuid` when
/// it went to the server, a server datagram keyed by `uuid` otherwise.
fn decodes(p: &Packet, to_server: bool, uuid: Uuid) -> bool {
    if to_server {
        ClientMessage::decode(&p.payload).is_ok_and(|m| m.uuid == uuid)
    } else {
        ServerMessage::decode(&p.payload, uuid).is_ok()
    }
}

fn json_u64(report: &serde_json::Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key}: {report}"))
}

/// Stops `server` as Ctrl-C does and waits for its capture line.
fn stop(server: &ServerProcess) {
    // SAFETY: a plain kill(2) of our own child's pid.
    let r = unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(r, 0);
    server
        .wait_for_line("capture: ", Duration::from_secs(10))
        .unwrap_or_else(|seen| panic!("no capture line; stderr: {seen:?}"));
}

#[test]
fn passthrough_captures_hold_every_datagram_both_ends_handled() {
    let dir = tempfile::tempdir().unwrap();
    let (spath, cpath) = (dir.path().join("s.pcapng"), dir.path().join("c.pcapng"));
    let server = ServerProcess::start(&["--pcap", spath.to_str().unwrap()]);
    let out = cli::run(&[
        "client",
        "300",
        "--server",
        &server.server_arg(),
        "--json",
        "--pcap",
        cpath.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("capture: "), "{}", out.stderr);
    stop(&server);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let uuid: Uuid = report["uuid"].as_str().unwrap().parse().unwrap();
    let client = read_capture(&cpath);
    let sent = client.iter().filter(|p| p.outbound).count() as u64;
    // The core's count: the driver leaves out acks a later one in the
    // same batch makes redundant, so the socket may have sent fewer.
    let polled = json_u64(&report, "datagrams_sent");
    assert!(sent > 0 && sent <= polled, "{sent} sent, {polled} polled");
    assert_eq!(
        client.len() as u64 - sent,
        json_u64(&report, "datagrams_received")
    );
    let server_port = server.addr.port();
    for (i, p) in client.iter().enumerate() {
        assert_eq!(p.interface, 0, "packet {i}: nothing is dropped");
        assert_eq!(p.outbound, p.src_port != server_port, "packet {i}");
        assert!(decodes(p, p.outbound, uuid), "client packet {i}");
    }
    let theirs = read_capture(&spath);
    for (i, p) in theirs.iter().enumerate() {
        assert_eq!(p.outbound, p.src_port == server_port, "server packet {i}");
        assert!(decodes(p, !p.outbound, uuid), "server packet {i}");
    }
    // Loopback loses nothing: what one end sent, the other received.
    let count = |ps: &[Packet], out: bool| ps.iter().filter(|p| p.outbound == out).count();
    assert_eq!(count(&client, true), count(&theirs, false));
    assert_eq!(count(&client, false), count(&theirs, true));
}

#[test]
fn an_impaired_clients_capture_marks_drops_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let cpath = dir.path().join("c.pcapng");
    let server = ServerProcess::start(&[]);
    let out = cli::run(&[
        "client",
        "400",
        "--server",
        &server.server_arg(),
        "--json",
        "--loss",
        "0.1",
        "--corrupt",
        "0.03",
        "--duplicate",
        "0.03",
        "--netem-seed",
        "5",
        "--pcap",
        cpath.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let uuid: Uuid = report["uuid"].as_str().unwrap().parse().unwrap();
    let packets = read_capture(&cpath);
    let dropped = packets.iter().filter(|p| p.interface == 1).count() as u64;
    assert!(dropped > 0);
    assert_eq!(dropped, json_u64(&report, "shim_dropped"));
    let bad: Vec<usize> = (0..packets.len())
        .filter(|&i| !decodes(&packets[i], packets[i].outbound, uuid))
        .collect();
    assert!(!bad.is_empty(), "the shim corrupted nothing");
    let Some(tshark) = support::tshark::Tshark::find() else {
        return;
    };
    let copy = tshark.put("client.pcapng", &std::fs::read(&cpath).unwrap());
    let rows = tshark.fields(&copy, &["risp.kind", "risp.crc.status"]);
    assert_eq!(rows.len(), packets.len());
    for (i, r) in rows.iter().enumerate() {
        if bad.contains(&i) {
            // A flipped kind or magic byte may leave it unclaimed.
            assert!(r[1].is_empty() || r[1] == "0", "packet {i}: {r:?}");
        } else {
            assert!(!r[0].is_empty(), "packet {i} not dissected: {r:?}");
            assert_eq!(r[1], "1", "packet {i}: {r:?}");
        }
    }
}

//! Packet captures of simulated runs, and the Wireshark dissector
//! (`netem/wireshark/risp.lua`) read back through tshark.
//!
//! - tshark's fields for every datagram of a lossy, corrupting,
//!   duplicating run equal what the crate's own wire module decodes from
//!   the simulator's record of the same datagrams, CRC verdicts included;
//! - a datagram with a flipped CRC byte gets the bad-CRC expert info;
//! - the same seed gives the same capture bytes, another seed others;
//! - the capture holds exactly the datagrams the simulator counted
//!   (delivered copies and drops, the bottleneck's drops too);
//! - a small fixed capture's SHA-256 is pinned in
//!   `tests/golden/sim-capture.sha256`. A change to the simulator, the
//!   protocol or the capture format changes it: check the new capture in
//!   Wireshark, then regenerate the file with
//!   `RISP_BLESS=1 cargo test --release --test dissector golden`.
//!
//! The tshark tests skip with a message when tshark is missing, unless
//! `RISP_REQUIRE_TSHARK=1` (`.ci/run` installs it and sets that).

mod support;

use std::collections::HashMap;
use std::time::Duration;

use pcap_file::pcapng::{Block, PcapNgReader};
use risp_netem::{Direction, DirectionConfig, ImpairmentConfig};
use risp_udp::proto::sack;
use risp_udp::proto::wire::{ClientMessage, ErrorCode, ServerMessage, WireError};
use risp_udp::sim::{LinkDatagram, LinkFate, Observer};
use risp_udp::suite::capture::{capture_run, SimCapture};
use risp_udp::trace::pcap::{Captured, PcapWriter, VIRTUAL_EPOCH};
use risp_udp::transfer::{BottleneckConfig, RunConfig, RunReport};
use sha2::{Digest, Sha256};
use support::tshark::Tshark;
use uuid::Uuid;

/// What the simulator's observer saw of one datagram.
struct Seen {
    flow: usize,
    direction: Direction,
    bytes: Vec<u8>,
    fate: LinkFate,
}

/// Keeps every datagram the links carried, in the order the capture has.
#[derive(Default)]
struct Record(Vec<Seen>);

impl Observer for Record {
    fn link_datagram(&mut self, d: &LinkDatagram<'_>) {
        self.0.push(Seen {
            flow: d.flow,
            direction: d.direction,
            bytes: d.bytes.to_vec(),
            fate: d.fate,
        });
    }
}

/// Two clients over links that lose, corrupt and duplicate both ways.
fn lossy_run(seed: u64) -> RunConfig {
    let impairment = ImpairmentConfig::symmetric(DirectionConfig {
        loss: 0.1,
        corrupt: 0.03,
        duplicate: 0.03,
        delay: Duration::from_millis(2),
        ..DirectionConfig::default()
    });
    RunConfig::new(seed, 2, 400, impairment)
}

/// Runs `config`, capturing it and keeping the observer's record.
fn captured(config: &RunConfig) -> (RunReport, Vec<u8>, Vec<Seen>) {
    let mut capture = SimCapture::new(Vec::new()).unwrap();
    let mut record = Record::default();
    let report = risp_udp::sim::run_observed(config, &mut (&mut capture, &mut record));
    (report, capture.finish().unwrap(), record.0)
}

const FIELDS: [&str; 24] = [
    "frame.interface_id",
    "risp.version",
    "risp.kind",
    "risp.uuid",
    "risp.len",
    "risp.window",
    "risp.ack",
    "risp.timestamp",
    "risp.rate",
    "risp.flags",
    "risp.token",
    "risp.sack.low",
    "risp.sack.high",
    "risp.index",
    "risp.payload",
    "risp.echo",
    "risp.checksum",
    "risp.lifetime_ms",
    "risp.max_window",
    "risp.challenge",
    "risp.retry_token",
    "risp.error.code",
    "risp.error.detail",
    "risp.crc.status",
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn joined(values: impl Iterator<Item = u32>) -> String {
    values.map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

/// Which datagrams the dissector claims (what its `looks_like_risp`
/// checks): magic, and a known kind whose length fits; of another
/// version, any client or server kind.
#[derive(Debug, PartialEq, Eq)]
enum Claim {
    /// Not RISP to the dissector: no risp fields at all.
    No,
    /// Of another version: only the prefix is decoded.
    OtherVersion,
    /// Decoded in full.
    Yes,
}

fn claim(bytes: &[u8]) -> Claim {
    let server_len = |k: u8| match k {
        0x80 | 0x85 => Some(32),
        0x81 | 0x82 | 0x84 => Some(24),
        0x83 => Some(16),
        0x8F => Some(21),
        _ => None,
    };
    let n = bytes.len();
    if n < 16 || bytes[..2] != *b"RU" {
        return Claim::No;
    }
    let kind = bytes[3];
    match (bytes[2], kind) {
        (3, 0..=3) if n >= 54 => Claim::Yes,
        (3, k) if server_len(k) == Some(n) => Claim::Yes,
        (3, _) => Claim::No,
        (_, k) if k <= 3 || server_len(k).is_some() => Claim::OtherVersion,
        _ => Claim::No,
    }
}

/// The fields tshark must show for a client datagram that decodes.
fn client_fields(m: &ClientMessage<'_>, row: &mut HashMap<&'static str, String>) {
    let ranges: Vec<(u32, u32)> = sack::ranges(m.ack, m.sack).collect();
    for (k, v) in [
        ("risp.kind", format!("0x{:02x}", m.state as u8)),
        ("risp.uuid", m.uuid.to_string()),
        ("risp.len", m.len.to_string()),
        ("risp.window", m.window.to_string()),
        ("risp.ack", m.ack.to_string()),
        ("risp.timestamp", m.timestamp.to_string()),
        ("risp.rate", m.rate.to_string()),
        ("risp.flags", format!("0x{:02x}", m.flags)),
        ("risp.token", hex(m.token)),
        ("risp.sack.low", joined(ranges.iter().map(|r| r.0))),
        ("risp.sack.high", joined(ranges.iter().map(|r| r.1))),
        ("risp.crc.status", "1".into()),
    ] {
        row.insert(k, v);
    }
}

/// The fields tshark must show for a server datagram that decodes with
/// the session key `uuid`.
fn server_fields(m: &ServerMessage, uuid: Uuid, row: &mut HashMap<&'static str, String>) {
    let code = |c: ErrorCode| match c {
        ErrorCode::UnknownSession => 1,
        ErrorCode::Busy => 2,
        ErrorCode::LenTooLarge => 3,
        ErrorCode::LenMismatch => 4,
        ErrorCode::Unauthorized => 5,
        ErrorCode::AckOutOfRange => 6,
        ErrorCode::WrongVersion => 7,
        ErrorCode::EncryptionRequired => 8,
    };
    let mut put = |k: &'static str, v: String| {
        row.insert(k, v);
    };
    put("risp.uuid", uuid.to_string());
    put("risp.echo", m.echo().to_string());
    put("risp.crc.status", "1".into());
    let kind = match *m {
        ServerMessage::Accept {
            token,
            lifetime_ms,
            max_window,
            ..
        } => {
            put("risp.token", hex(&token));
            put("risp.lifetime_ms", lifetime_ms.to_string());
            put("risp.max_window", max_window.to_string());
            0x80
        }
        ServerMessage::Data { index, payload, .. } => {
            put("risp.index", index.to_string());
            put("risp.payload", payload.to_string());
            0x81
        }
        ServerMessage::Checksum { checksum, .. } => {
            put("risp.checksum", checksum.to_string());
            0x82
        }
        ServerMessage::Closed { .. } => 0x83,
        ServerMessage::Challenge { challenge, .. } => {
            put("risp.challenge", hex(&challenge));
            0x84
        }
        ServerMessage::Retry { token, .. } => {
            put("risp.retry_token", hex(&token));
            0x85
        }
        ServerMessage::Error {
            code: c, detail, ..
        } => {
            put("risp.error.code", code(c).to_string());
            put("risp.error.detail", detail.to_string());
            0x8F
        }
    };
    put("risp.kind", format!("0x{kind:02x}"));
}

/// Every field tshark must show for each recorded datagram, from the
/// crate's own decoder (server datagrams keyed by their flow's UUID).
fn expected_rows(record: &[Seen]) -> Vec<HashMap<&'static str, String>> {
    let mut uuid_of_flow: HashMap<usize, Uuid> = HashMap::new();
    let mut rows = Vec::new();
    for s in record {
        let mut row: HashMap<&'static str, String> = HashMap::new();
        let dropped = matches!(s.fate, LinkFate::Lost | LinkFate::QueueDrop);
        row.insert("frame.interface_id", if dropped { "1" } else { "0" }.into());
        match claim(&s.bytes) {
            Claim::No => {}
            Claim::OtherVersion => {
                // A version byte the link damaged: prefix only, unchecked.
                row.insert("risp.version", s.bytes[2].to_string());
                row.insert("risp.kind", format!("0x{:02x}", s.bytes[3]));
                row.insert("damaged", String::new());
            }
            Claim::Yes => {
                row.insert("risp.version", "3".into());
                if !decode_into(s, &mut uuid_of_flow, &mut row) {
                    // Damaged on the link: only the verdict and the kind
                    // are the dissector's to show, the rest is what the
                    // bytes say.
                    row.insert("risp.crc.status", "0".into());
                    row.insert("risp.kind", format!("0x{:02x}", s.bytes[3]));
                    row.insert("damaged", String::new());
                }
            }
        }
        rows.push(row);
    }
    rows
}

/// Puts the fields of `s` as the crate's decoder reads them into `row`
/// (learning its flow's UUID from a client datagram); false if the
/// datagram does not decode.
fn decode_into(
    s: &Seen,
    uuid_of_flow: &mut HashMap<usize, Uuid>,
    row: &mut HashMap<&'static str, String>,
) -> bool {
    match s.direction {
        Direction::ToServer => match ClientMessage::decode(&s.bytes) {
            Ok(m) => {
                uuid_of_flow.insert(s.flow, m.uuid);
                client_fields(&m, row);
                true
            }
            Err(e) => bad_crc(e),
        },
        Direction::ToClient => {
            let uuid = uuid_of_flow[&s.flow];
            match ServerMessage::decode(&s.bytes, uuid) {
                Ok(m) => {
                    server_fields(&m, uuid, row);
                    true
                }
                Err(e) => bad_crc(e),
            }
        }
    }
}

/// A datagram the decoder refused: it must be for its CRC (only the link
/// damages datagrams here).
fn bad_crc(e: WireError) -> bool {
    assert_eq!(
        e,
        WireError::BadCrc,
        "an undamaged datagram failed to decode"
    );
    false
}

#[test]
fn tshark_fields_equal_the_simulators_record() {
    let Some(tshark) = Tshark::find() else {
        return;
    };
    let (report, bytes, record) = captured(&lossy_run(11));
    assert!(report.transfers.iter().all(|t| t.verified()), "{report:?}");
    let expected = expected_rows(&record);
    let corrupt = record
        .iter()
        .filter(|s| matches!(s.fate, LinkFate::Corrupted { .. }))
        .count();
    assert!(corrupt > 5, "the run damaged only {corrupt} datagrams");
    let rows = tshark.fields(&tshark.put("run.pcapng", &bytes), &FIELDS);
    assert_eq!(rows.len(), record.len(), "one packet per datagram");
    let mut bad_crcs = 0;
    for (i, (got, want)) in rows.iter().zip(&expected).enumerate() {
        let damaged = want.contains_key("damaged");
        bad_crcs += usize::from(want.get("risp.crc.status").is_some_and(|s| s == "0"));
        for (col, field) in FIELDS.iter().enumerate() {
            let got = got.get(col).map_or("", String::as_str);
            match want.get(field) {
                Some(w) => assert_eq!(got, w, "frame {}: {field}", i + 1),
                // What a damaged datagram's bytes say is not checked.
                None if damaged => {}
                None => assert_eq!(got, "", "frame {}: {field} should be absent", i + 1),
            }
        }
    }
    assert!(bad_crcs > 0, "no damaged datagram was claimed and flagged");
}

#[test]
fn a_flipped_crc_byte_gets_the_bad_crc_expert_info() {
    let Some(tshark) = Tshark::find() else {
        return;
    };
    let (_, _, record) = captured(&lossy_run(3));
    let intact = |dir: Direction| {
        record
            .iter()
            .find(|s| s.direction == dir && matches!(s.fate, LinkFate::Delivered { .. }))
            .map(|s| s.bytes.clone())
            .unwrap()
    };
    let (client, server) = (intact(Direction::ToServer), intact(Direction::ToClient));
    let flipped = |b: &[u8]| {
        let mut b = b.to_vec();
        let last = b.len() - 1;
        b[last] ^= 0x01;
        b
    };
    // The good client datagram first: it teaches the session key.
    let packets = [
        client.clone(),
        server.clone(),
        flipped(&server),
        flipped(&client),
    ];
    let mut w = PcapWriter::new(Vec::new(), "test").unwrap();
    for (i, p) in packets.iter().enumerate() {
        let to_server = i % 3 == 0;
        let (c, s) = (
            "10.1.0.0:1025".parse().unwrap(),
            "10.0.0.1:8081".parse().unwrap(),
        );
        w.write(&Captured {
            timestamp: VIRTUAL_EPOCH + Duration::from_millis(i as u64),
            from: if to_server { c } else { s },
            to: if to_server { s } else { c },
            payload: p,
            dropped: false,
            way: None,
            comment: "",
        })
        .unwrap();
    }
    let file = tshark.put("flipped.pcapng", &w.finish().unwrap());
    let rows = tshark.fields(&file, &["risp.crc.status", "_ws.expert.message"]);
    let status: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(status, ["1", "1", "0", "0"]);
    for r in &rows[2..] {
        assert!(r[1].contains("Bad CRC32C"), "{r:?}");
    }
    assert!(!rows[0][1].contains("Bad CRC32C"), "{:?}", rows[0]);
    // The expert info is a display filter too.
    let flagged = tshark.run(&file, &["-Y", "risp.crc.bad"]);
    assert_eq!(flagged.lines().count(), 2, "{flagged}");
}

#[test]
fn the_same_seed_gives_the_same_capture_bytes() {
    let capture = |seed| capture_run(&lossy_run(seed), Vec::new()).unwrap().1;
    let a = capture(5);
    assert!(a.len() > 10_000, "a capture of {} bytes", a.len());
    // Not assert_eq: a failure would print half a megabyte.
    assert!(a == capture(5), "same seed, different bytes");
    assert!(a != capture(6), "another seed, the same capture");
}

/// Enhanced packet blocks of a pcapng, by interface.
fn packets_per_interface(bytes: &[u8]) -> [u64; 2] {
    let mut reader = PcapNgReader::new(bytes).unwrap();
    let mut counts = [0; 2];
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(p) = block.unwrap() {
            counts[p.interface_id as usize] += 1;
        }
    }
    counts
}

#[test]
fn the_capture_holds_every_datagram_the_simulator_counted() {
    let mut config = lossy_run(9);
    config.bottleneck = Some(BottleneckConfig {
        rate: 20_000.0,
        limit: 8,
    });
    let (report, bytes) = capture_run(&config, Vec::new()).unwrap();
    let [delivered, dropped] = packets_per_interface(&bytes);
    let queue_drops = report.bottleneck.as_ref().unwrap().dropped;
    assert!(queue_drops > 0, "the bottleneck dropped nothing");
    let (mut copies, mut lost, mut sent) = (0, 0, 0);
    for t in &report.transfers {
        for d in [t.link.to_server, t.link.to_client] {
            copies += d.delivered();
            lost += d.dropped;
        }
        sent += t.datagrams_to_server + t.datagrams_to_client;
    }
    assert_eq!(delivered, copies, "copies that arrived");
    assert_eq!(dropped, lost + queue_drops, "losses and bottleneck drops");
    // Every datagram sent is captured once, plus the duplicates.
    let duplicates: u64 = report
        .transfers
        .iter()
        .map(|t| t.link.to_server.duplicated + t.link.to_client.duplicated)
        .sum();
    assert_eq!(delivered + dropped, sent + duplicates);
}

#[test]
fn golden_capture() {
    let config = RunConfig::new(
        1,
        1,
        20,
        ImpairmentConfig::symmetric(DirectionConfig {
            loss: 0.2,
            delay: Duration::from_millis(1),
            ..DirectionConfig::default()
        }),
    );
    let bytes = capture_run(&config, Vec::new()).unwrap().1;
    let hash = hex(&Sha256::digest(&bytes));
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sim-capture.sha256");
    if std::env::var("RISP_BLESS").as_deref() == Ok("1") {
        std::fs::write(&path, format!("{hash}\n")).unwrap();
        eprintln!("blessed {}: {hash}", path.display());
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        hash,
        pinned.trim(),
        "the capture changed: look at it in Wireshark, then RISP_BLESS=1 to pin it"
    );
}

//! Datagrams built by hand: what tests feed the server and the client.

use risp_udp::proto::wire::{ClientMessage, ServerMessage, State, CRC_LEN, MAX_DATAGRAM_LEN};
use uuid::Uuid;

/// The fields of one client datagram, owned; [`ClientDatagram::encode`]
/// builds it and [`ClientDatagram::decode`] reads one back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientDatagram {
    pub state: State,
    pub uuid: Uuid,
    pub len: u32,
    pub window: u32,
    pub ack: u32,
    pub ts: u64,
    pub flags: u8,
    pub token: Vec<u8>,
    pub sack: Vec<u8>,
}

impl ClientDatagram {
    /// Window 4, ack 0, timestamp 1, no flags, no token, no bitmap.
    pub fn new(state: State, uuid: Uuid, len: u32) -> Self {
        Self {
            state,
            uuid,
            len,
            window: 4,
            ack: 0,
            ts: 1,
            flags: 0,
            token: Vec::new(),
            sack: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = vec![0u8; MAX_DATAGRAM_LEN];
        let n = ClientMessage {
            state: self.state,
            uuid: self.uuid,
            len: self.len,
            window: self.window,
            ack: self.ack,
            timestamp: self.ts,
            rate: 0,
            flags: self.flags,
            token: &self.token,
            sack: &self.sack,
        }
        .encode(&mut buf)
        .expect("valid test message");
        buf.truncate(n);
        buf
    }

    /// A datagram the client sent; panics on one the decoder refuses.
    pub fn decode(d: &[u8]) -> Self {
        let m = ClientMessage::decode(d).expect("client sends valid datagrams");
        Self {
            state: m.state,
            uuid: m.uuid,
            len: m.len,
            window: m.window,
            ack: m.ack,
            ts: m.timestamp,
            flags: m.flags,
            token: m.token.to_vec(),
            sack: m.sack.to_vec(),
        }
    }
}

/// A server datagram's bytes, for the session `uuid`.
pub fn encode_server(uuid: Uuid, msg: ServerMessage) -> Vec<u8> {
    let mut buf = [0u8; 64];
    let n = msg.encode(uuid, &mut buf).unwrap();
    buf[..n].to_vec()
}

/// Recomputes the CRC32C trailer, so that a mutated datagram reaches the
/// checks behind the CRC. Shorter than a CRC: left as it is.
pub fn reseal(d: &mut [u8]) {
    if d.len() >= CRC_LEN {
        let n = d.len() - CRC_LEN;
        let crc = crc32c::crc32c(&d[..n]);
        d[n..].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Recomputes a server datagram's CRC32C trailer, keyed by the session
/// `uuid` (see [`reseal`]).
pub fn reseal_server(d: &mut [u8], uuid: Uuid) {
    if d.len() >= CRC_LEN {
        let n = d.len() - CRC_LEN;
        let crc = crc32c::crc32c_append(crc32c::crc32c(uuid.as_bytes()), &d[..n]);
        d[n..].copy_from_slice(&crc.to_be_bytes());
    }
}

/// Selective-ack ranges for `held` indices after `ack` (any order), as a
/// client writes them: newest first ([`risp_udp::proto::sack`]).
pub fn sack_ranges(ack: u32, held: &[u32]) -> Vec<u8> {
    let mut sorted = held.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::new();
    let mut w = risp_udp::proto::sack::RangeWriter::new(&mut out, ack, usize::MAX);
    for i in sorted {
        assert!(w.push(i, i), "ranges fit");
    }
    w.finish();
    out
}

/// The indices an ack's ranges mark as held, in increasing order.
pub fn held(ack: u32, ranges: &[u8]) -> Vec<u32> {
    let mut v: Vec<u32> = risp_udp::proto::sack::held(ack, ranges).collect();
    v.reverse();
    v
}

//! The fuzz harnesses, shared by the cargo-fuzz targets in `fuzz/` (which
//! include this file by path) and by `tests/fuzz_corpus.rs` (which replays
//! the committed corpus and every crash ever found on the stable
//! toolchain, in the normal test suite).
//!
//! - [`decode`]: any bytes into both datagram decoders; whatever decodes
//!   must encode back to a datagram that decodes to the same message (and,
//!   for server datagrams, which have one encoding, to the same bytes).
//! - [`endpoint`]: a [`Server`] driven by a script of operations read from
//!   the fuzzer's bytes ([`Op`]): datagrams raw or built from fields (with
//!   the tokens and acks a real client would use, so the fuzzer gets past
//!   the CRC and the token checks), from any address including unusable
//!   ones, virtual time steps, timers and sends. After every step the
//!   server's invariants are checked (see [`Run::check`]), its session
//!   table's indices included (`Server::check_invariants`).
//!
//! The script format is this file's own, so that [`ScriptWriter`] can write
//! meaningful seeds: one op byte, then the op's fields, big-endian; a
//! script that runs out of bytes just ends.
//!
//! Only `risp_udp`, `uuid` and `crc32c` are used here: the fuzz crate
//! depends on exactly those.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use risp_udp::proto::server::{is_usable_source, RetryPolicy, Server, ServerConfig, ServerStats};
use risp_udp::proto::wire::{
    ClientMessage, ErrorCode, ServerMessage, State, WireError, CRC_LEN, FLAG_PROBE,
    MAX_DATAGRAM_LEN, MAX_SERVER_DATAGRAM_LEN, PREFIX_LEN, SERVER_TOKEN_LEN,
};
use uuid::Uuid;

// ---------------------------------------------------------------- decode

/// Feeds `data` to both decoders; panics if a decoded message does not
/// survive an encode/decode round trip.
pub fn decode(data: &[u8]) {
    if let Ok(m) = ClientMessage::decode(data) {
        let mut buf = vec![0u8; m.encoded_len()];
        let n = m
            .encode(&mut buf)
            .expect("a decoded client message encodes");
        assert_eq!(n, buf.len(), "encoded_len is exact");
        let again = ClientMessage::decode(&buf).expect("a re-encoded message decodes");
        assert_eq!(again, m, "client round trip");
        if data.len() == n {
            // Same length, so same padding: one encoding.
            assert_eq!(
                &buf[..],
                data,
                "client datagrams of one length have one encoding"
            );
        }
    }
    if let Ok(m) = ServerMessage::decode(data, SEED_UUID) {
        let mut buf = vec![0u8; m.encoded_len()];
        let n = m
            .encode(SEED_UUID, &mut buf)
            .expect("a decoded server message encodes");
        assert_eq!(&buf[..n], data, "server datagrams have one encoding");
    }
}

/// The session of the `decode` seeds (server datagrams are keyed by it).
pub const SEED_UUID: Uuid = Uuid::from_u128(0x5eed);

/// Valid datagrams of every kind, both directions: the `decode` seeds.
pub fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    let uuid = SEED_UUID;
    let token = [7u8; SERVER_TOKEN_LEN];
    // Held after ack 10: 13 and 11 (ranges, newest first: top 3, length
    // 1; gap 1, length 1).
    let sack = [3u8, 0, 1, 0];
    let client = |state, ack, flags, token: &[u8], sack: &[u8]| {
        encode_client(&ClientMessage {
            state,
            uuid,
            len: 1000,
            window: 64,
            ack,
            timestamp: 42,
            rate: 0,
            flags,
            token,
            sack,
        })
    };
    let mut seeds = vec![
        (
            "client-connecting".to_string(),
            client(State::Connecting, 0, 0, &[], &[]),
        ),
        (
            "client-resume".to_string(),
            client(State::Connecting, 10, 0, &token, &[]),
        ),
        (
            "client-connected".to_string(),
            client(State::Connected, 10, 0, &token, &sack),
        ),
        (
            "client-probe".to_string(),
            client(State::Connected, 10, FLAG_PROBE, &token, &[]),
        ),
        (
            "client-closing".to_string(),
            client(State::Closing, 1000, 0, &token, &[]),
        ),
        (
            "client-closed".to_string(),
            client(State::Closed, 1000, 0, &token, &[]),
        ),
    ];
    let server = [
        (
            "server-accept",
            ServerMessage::Accept {
                token,
                lifetime_ms: 30_000,
                max_window: 1024,
                echo: 42,
            },
        ),
        (
            "server-data",
            ServerMessage::Data {
                index: 3,
                payload: 0xdead_beef,
                echo: 42,
            },
        ),
        (
            "server-checksum",
            ServerMessage::Checksum {
                checksum: 123_456_789,
                echo: 42,
            },
        ),
        ("server-closed", ServerMessage::Closed { echo: 42 }),
        (
            "server-error",
            ServerMessage::Error {
                code: ErrorCode::Busy,
                detail: 1024,
                echo: 42,
            },
        ),
    ];
    for (name, msg) in server {
        let mut buf = vec![0u8; msg.encoded_len()];
        let n = msg.encode(SEED_UUID, &mut buf).expect("valid seed");
        buf.truncate(n);
        seeds.push((name.to_string(), buf));
    }
    seeds
}

fn encode_client(m: &ClientMessage<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; m.encoded_len()];
    let n = m.encode(&mut buf).expect("valid client message");
    buf.truncate(n);
    buf
}

// ---------------------------------------------------------------- endpoint

/// The UUIDs a script's built datagrams use (few, so sessions collide).
const UUIDS: [u128; 4] = [1, 2, 3, 0xffff_ffff_ffff_ffff_ffff_ffff_ffff_ffff];
/// Longest virtual-time step: past every lifetime.
const MAX_STEP_MS: u32 = 120_000;
/// Most batches taken in one drain (a drain that hits it checks less).
const MAX_BATCHES: usize = 4096;
/// Tokens remembered from Accepts.
const MAX_TOKENS: usize = 16;

/// One step of an endpoint script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Any bytes from `from`.
    Raw { from: Addr, bytes: Vec<u8> },
    /// A client datagram built from fields (a valid frame).
    Client { from: Addr, msg: Built },
    /// A built datagram with one byte changed, the CRC fixed or not.
    Mutated {
        from: Addr,
        msg: Built,
        at: u16,
        xor: u8,
        reseal: bool,
    },
    /// Time moves on.
    Advance { ms: u32 },
    /// Time jumps to the server's next timer, which then runs.
    Timer,
    /// The driver takes what the server has to send, `max` datagrams a
    /// batch.
    Transmit { max: u8 },
}

/// Where a datagram comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addr {
    /// One of a few ordinary clients (`127.0.0.1:40000 + n`, n < 8).
    Client(u8),
    /// One of the sources a server must never answer (port 0, unspecified,
    /// broadcast, multicast, IPv4 and IPv6).
    Unusable(u8),
    /// Anything.
    Raw(u32, u16),
}

impl Addr {
    fn resolve(self) -> SocketAddr {
        match self {
            Addr::Client(n) => SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(n % 8))),
            Addr::Unusable(n) => {
                let unusable = [
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    SocketAddr::from(([0, 0, 0, 0], 5000)),
                    SocketAddr::from(([255, 255, 255, 255], 5000)),
                    SocketAddr::from(([224, 0, 0, 1], 5000)),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 5000),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)), 5000),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
                ];
                unusable[usize::from(n) % unusable.len()]
            }
            Addr::Raw(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
        }
    }
}

/// The fields of a built client datagram, and how to fill in the ones a
/// real client would know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub state: u8,
    pub uuid: u8,
    pub len: u32,
    pub window: u16,
    /// `None`: the next index the session is missing (what a client that
    /// got everything sent to it acks).
    pub ack: Option<u32>,
    /// `None`: one more than the script's last timestamp.
    pub timestamp: Option<u64>,
    pub probe: bool,
    /// Ask the server to pace (a rate of a thousand windows a second).
    pub paced: bool,
    /// 0: no token; 255: `raw_token`; else a token seen in an Accept (1:
    /// the newest).
    pub token: u8,
    pub raw_token: [u8; SERVER_TOKEN_LEN],
    pub sack: Vec<u8>,
}

/// Reads big-endian fields off the fuzzer's bytes; `None` at the end.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.data.len() < n {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) << 32 | u64::from(self.u32()?))
    }
    fn addr(&mut self) -> Option<Addr> {
        Some(match self.u8()? {
            b @ 0..=199 => Addr::Client(b % 8),
            b @ 200..=249 => Addr::Unusable(b - 200),
            _ => Addr::Raw(self.u32()?, self.u16()?),
        })
    }
    fn built(&mut self) -> Option<Built> {
        let state = self.u8()?;
        let uuid = self.u8()?;
        let len = self.u32()?;
        let window = self.u16()?;
        let flags = self.u8()?;
        let ack = if flags & 1 != 0 {
            Some(self.u32()?)
        } else {
            None
        };
        let timestamp = if flags & 2 != 0 {
            Some(self.u64()?)
        } else {
            None
        };
        let token = self.u8()?;
        let mut raw_token = [0u8; SERVER_TOKEN_LEN];
        if token == 255 {
            raw_token.copy_from_slice(self.take(SERVER_TOKEN_LEN)?);
        }
        let sack_len = usize::from(self.u8()? % 64);
        let sack = self.take(sack_len)?.to_vec();
        Some(Built {
            state,
            uuid,
            len,
            window,
            ack,
            timestamp,
            probe: flags & 4 != 0,
            paced: flags & 8 != 0,
            token,
            raw_token,
            sack,
        })
    }
    fn op(&mut self) -> Option<Op> {
        Some(match self.u8()? % 6 {
            0 => {
                let from = self.addr()?;
                let n = usize::from(self.u16()?) % (MAX_DATAGRAM_LEN + 64);
                let n = n.min(self.data.len());
                Op::Raw {
                    from,
                    bytes: self.take(n)?.to_vec(),
                }
            }
            1 => Op::Client {
                from: self.addr()?,
                msg: self.built()?,
            },
            2 => Op::Mutated {
                from: self.addr()?,
                msg: self.built()?,
                at: self.u16()?,
                xor: self.u8()?,
                reseal: self.u8()? & 1 == 1,
            },
            3 => Op::Advance {
                ms: self.u32()? % (MAX_STEP_MS + 1),
            },
            4 => Op::Timer,
            _ => Op::Transmit { max: self.u8()? },
        })
    }
}

/// The server settings a script asks for (its first bytes): small limits,
/// so that they are reached. Settings added later keep their defaults.
#[allow(clippy::needless_update)]
fn config(r: &mut Reader<'_>) -> Option<ServerConfig> {
    let b = r.take(8)?;
    Some(ServerConfig {
        max_sessions: 1 + usize::from(b[0] % 8),
        max_len: 1 + u32::from(u16::from_be_bytes([b[1], b[2]])),
        max_window: 1 + u32::from(b[3] % 64),
        session_lifetime: Duration::from_secs(1 + u64::from(b[4] % 60)),
        handshake_lifetime: Duration::from_secs(1 + u64::from(b[5] % 20)),
        pacing: Duration::from_millis(u64::from(b[6] % 4)),
        max_batch: 1 + usize::from(b[7] % 64),
        seed: Some(0x5eed),
        ack_latency_events: b[7] & 0x80 != 0,
        // Bits 2-3 of the pacing byte: 0 (every committed seed) never asks
        // for a retry token.
        retry: match (b[6] >> 2) & 3 {
            0 => RetryPolicy::Never,
            2 => RetryPolicy::Always,
            _ => RetryPolicy::UnderPressure,
        },
        window_budget: 1 + usize::from(b[5]) * 16,
        ..ServerConfig::default()
    })
}

/// Runs an endpoint script; panics if an invariant breaks. Returns the
/// server's counters at the end (`None`: too short to hold a config).
pub fn endpoint(data: &[u8]) -> Option<ServerStats> {
    let mut r = Reader { data };
    let config = config(&mut r)?;
    let mut run = Run::new(config);
    while let Some(op) = r.op() {
        run.step(&op);
    }
    // However it ended, the server can be drained and its timers run.
    run.step(&Op::Transmit { max: 64 });
    run.step(&Op::Timer);
    Some(run.server.stats().clone())
}

/// A server under a script, and what the script's clients know.
struct Run {
    server: Server,
    now: Instant,
    /// Tokens from Accepts, newest last.
    tokens: Vec<[u8; SERVER_TOKEN_LEN]>,
    /// Per session (UUID), one more than the highest data index sent to it.
    next_missing: HashMap<u128, u32>,
    /// The session each source last wrote for, to file data sent there.
    session_at: HashMap<SocketAddr, u128>,
    /// Every UUID each source wrote for: the server may send an address
    /// only datagrams keyed by one of them.
    uuids_from: HashMap<SocketAddr, Vec<Uuid>>,
    last_ts: u64,
    /// Datagrams handed out, to check the server's own count.
    sent: u64,
}

impl Run {
    fn new(config: ServerConfig) -> Self {
        Self {
            server: Server::new(config),
            now: risp_udp::clock::now(),
            tokens: Vec::new(),
            next_missing: HashMap::new(),
            session_at: HashMap::new(),
            uuids_from: HashMap::new(),
            last_ts: 0,
            sent: 0,
        }
    }

    /// Hands a datagram to the server, noting the UUID it carries: a
    /// client datagram's, or for one of another protocol version the bytes
    /// where every version carries it (the server answers those with a
    /// `WrongVersion` keyed by them).
    fn handle(&mut self, from: SocketAddr, d: &[u8]) {
        let uuid = match ClientMessage::decode(d) {
            Ok(m) => Some(m.uuid),
            Err(WireError::UnknownVersion(_)) => d
                .get(PREFIX_LEN..PREFIX_LEN + 16)
                .and_then(|b| Uuid::from_slice(b).ok()),
            Err(_) => None,
        };
        if let Some(uuid) = uuid {
            let seen = self.uuids_from.entry(from).or_default();
            if !seen.contains(&uuid) {
                seen.push(uuid);
            }
        }
        self.server.handle(self.now, from, d);
    }

    fn step(&mut self, op: &Op) {
        match op {
            Op::Raw { from, bytes } => self.handle(from.resolve(), bytes),
            Op::Client { from, msg } => {
                let from = from.resolve();
                if let Some(d) = self.build(from, msg) {
                    self.handle(from, &d);
                }
            }
            Op::Mutated {
                from,
                msg,
                at,
                xor,
                reseal,
            } => {
                let from = from.resolve();
                if let Some(mut d) = self.build(from, msg) {
                    let i = usize::from(*at) % d.len();
                    d[i] ^= xor;
                    if *reseal {
                        let n = d.len() - CRC_LEN;
                        let crc = crc32c::crc32c(&d[..n]);
                        d[n..].copy_from_slice(&crc.to_be_bytes());
                    }
                    self.handle(from, &d);
                }
            }
            Op::Advance { ms } => self.now += Duration::from_millis(u64::from(*ms)),
            Op::Timer => {
                if let Some(at) = self.server.poll_timeout() {
                    self.now = self.now.max(at);
                }
                self.server.handle_timeout(self.now);
                // Once every due timer has run and everything sendable is
                // sent, nothing may be due any more: a driver would spin.
                if self.drain(usize::MAX) {
                    let next = self.server.poll_timeout();
                    assert!(
                        next.is_none_or(|t| t > self.now),
                        "a timer is still due after handle_timeout and a full drain: {:?} <= now",
                        next.map(|t| t.saturating_duration_since(self.now))
                    );
                }
            }
            Op::Transmit { max } => {
                self.drain(usize::from(*max));
            }
        }
        while self.server.poll_event().is_some() {}
        self.check();
    }

    /// Encodes a built datagram, filling in what a client would know.
    fn build(&mut self, from: SocketAddr, b: &Built) -> Option<Vec<u8>> {
        let state = match b.state % 4 {
            0 => State::Connecting,
            1 => State::Connected,
            2 => State::Closing,
            _ => State::Closed,
        };
        let token: &[u8] = match b.token {
            0 => &[],
            255 => &b.raw_token,
            // 1 is the newest, 2 the one before, and so on round.
            i if !self.tokens.is_empty() => {
                let back = (usize::from(i) - 1) % self.tokens.len();
                &self.tokens[self.tokens.len() - 1 - back]
            }
            _ => &[],
        };
        let uuid = UUIDS[usize::from(b.uuid) % UUIDS.len()];
        self.session_at.insert(from, uuid);
        let ack = b
            .ack
            .unwrap_or_else(|| self.next_missing.get(&uuid).copied().unwrap_or(0));
        let timestamp = b.timestamp.unwrap_or(self.last_ts.saturating_add(1));
        self.last_ts = self.last_ts.max(timestamp);
        let sack = fuzz_ranges(ack, &b.sack);
        let msg = ClientMessage {
            state,
            uuid: Uuid::from_u128(uuid),
            len: b.len,
            window: u32::from(b.window),
            ack,
            timestamp,
            // Paced at a thousand of its windows a second, when asked.
            rate: if b.paced {
                u32::from(b.window) * 1000
            } else {
                0
            },
            flags: if b.probe { FLAG_PROBE } else { 0 },
            token,
            sack: &sack,
        };
        let mut buf = vec![0u8; msg.encoded_len()];
        let n = msg.encode(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Takes every batch the server has (at most `max` datagrams each),
    /// checking each; true if it emptied the server's queues.
    fn drain(&mut self, max: usize) -> bool {
        let mut buf = Vec::new();
        let limit = max.min(self.server.config().max_batch);
        for _ in 0..MAX_BATCHES {
            let Some(t) = self.server.poll_transmit(self.now, max, &mut buf) else {
                return true;
            };
            assert!(
                t.segment_size > 0 && t.segment_size <= MAX_SERVER_DATAGRAM_LEN,
                "{t:?}"
            );
            assert_eq!(t.size % t.segment_size, 0, "{t:?}");
            assert!(t.size <= buf.len(), "{t:?} but {} bytes written", buf.len());
            assert!(
                t.count() >= 1 && t.count() <= limit.max(1),
                "{t:?}, max {max}"
            );
            assert!(
                is_usable_source(t.destination),
                "sent to an unusable address: {t:?}"
            );
            let keys = self
                .uuids_from
                .get(&t.destination)
                .map_or(&[][..], Vec::as_slice);
            for seg in buf[..t.size].chunks(t.segment_size) {
                // Keyed by a UUID the destination itself sent: the server
                // never sends one session's datagrams to an address that
                // did not speak for it.
                let decoded = keys
                    .iter()
                    .map(|&k| ServerMessage::decode(seg, k))
                    .find(Result::is_ok)
                    .unwrap_or_else(|| {
                        ServerMessage::decode_unchecked(seg).and(Err(WireError::BadCrc))
                    });
                match decoded {
                    Ok(ServerMessage::Accept { token, .. }) => {
                        if self.tokens.len() == MAX_TOKENS {
                            self.tokens.remove(0);
                        }
                        self.tokens.push(token);
                    }
                    Ok(ServerMessage::Data { index, .. }) => {
                        if let Some(&uuid) = self.session_at.get(&t.destination) {
                            let next = self.next_missing.entry(uuid).or_default();
                            *next = (*next).max(index.saturating_add(1));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => panic!(
                        "the server sent {} a datagram it cannot decode with any UUID that address sent ({e}): {seg:?}",
                        t.destination
                    ),
                }
            }
            self.sent += t.count() as u64;
        }
        false
    }

    /// The server's invariants.
    fn check(&self) {
        if let Err(drift) = self.server.check_invariants() {
            panic!("the session table drifted: {drift}");
        }
        let s = self.server.stats();
        assert_eq!(
            s.datagrams_received,
            s.accepted + s.rejected_total(),
            "every datagram is accepted or rejected: {s:?}"
        );
        assert_eq!(
            s.datagrams_sent, self.sent,
            "the server counts what it hands out"
        );
        let live = self.server.session_count();
        assert!(live <= self.server.config().max_sessions, "{live} sessions");
        assert!(self.server.confirmed_count() <= live);
        assert_eq!(
            s.sessions_opened,
            live as u64
                + s.sessions_closed
                + s.sessions_aborted
                + s.sessions_expired
                + s.pending_evicted,
            "every session that ends is counted: {s:?}"
        );
    }
}

/// Writes endpoint scripts (for seeds and regression tests): the inverse of
/// the reader, op by op.
#[derive(Debug, Default)]
pub struct ScriptWriter {
    bytes: Vec<u8>,
}

impl ScriptWriter {
    /// A script for a server with these limits (see [`config`]):
    /// `max_sessions` 1..=8, `max_len` 1..=65536, `max_window` 1..=64.
    pub fn new(max_sessions: u8, max_len: u32, max_window: u8) -> Self {
        let len = (max_len.clamp(1, 65_536) - 1) as u16;
        let mut w = Self::default();
        w.bytes.push(max_sessions.clamp(1, 8) - 1);
        w.bytes.extend_from_slice(&len.to_be_bytes());
        w.bytes.push(max_window.clamp(1, 64) - 1);
        // Lifetimes 30 s and 10 s, no pacing, batches of 64, latency
        // events on.
        w.bytes.extend_from_slice(&[29, 9, 0, 63 | 0x80]);
        w
    }

    fn addr(&mut self, a: Addr) {
        match a {
            Addr::Client(n) => self.bytes.push(n % 8),
            Addr::Unusable(n) => self.bytes.push(200 + n % 50),
            Addr::Raw(ip, port) => {
                self.bytes.push(255);
                self.bytes.extend_from_slice(&ip.to_be_bytes());
                self.bytes.extend_from_slice(&port.to_be_bytes());
            }
        }
    }

    fn built(&mut self, b: &Built) {
        self.bytes.push(b.state);
        self.bytes.push(b.uuid);
        self.bytes.extend_from_slice(&b.len.to_be_bytes());
        self.bytes.extend_from_slice(&b.window.to_be_bytes());
        let flags = u8::from(b.ack.is_some())
            | u8::from(b.timestamp.is_some()) << 1
            | u8::from(b.probe) << 2
            | u8::from(b.paced) << 3;
        self.bytes.push(flags);
        if let Some(ack) = b.ack {
            self.bytes.extend_from_slice(&ack.to_be_bytes());
        }
        if let Some(ts) = b.timestamp {
            self.bytes.extend_from_slice(&ts.to_be_bytes());
        }
        self.bytes.push(b.token);
        if b.token == 255 {
            self.bytes.extend_from_slice(&b.raw_token);
        }
        let sack = &b.sack[..b.sack.len().min(63)];
        self.bytes.push(sack.len() as u8);
        self.bytes.extend_from_slice(sack);
    }

    /// Appends one op.
    pub fn op(mut self, op: &Op) -> Self {
        match op {
            Op::Raw { from, bytes } => {
                self.bytes.push(0);
                self.addr(*from);
                self.bytes
                    .extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                self.bytes.extend_from_slice(bytes);
            }
            Op::Client { from, msg } => {
                self.bytes.push(1);
                self.addr(*from);
                self.built(msg);
            }
            Op::Mutated {
                from,
                msg,
                at,
                xor,
                reseal,
            } => {
                self.bytes.push(2);
                self.addr(*from);
                self.built(msg);
                self.bytes.extend_from_slice(&at.to_be_bytes());
                self.bytes.push(*xor);
                self.bytes.push(u8::from(*reseal));
            }
            Op::Advance { ms } => {
                self.bytes.push(3);
                self.bytes.extend_from_slice(&ms.to_be_bytes());
            }
            Op::Timer => self.bytes.push(4),
            Op::Transmit { max } => {
                self.bytes.push(5);
                self.bytes.push(*max);
            }
        }
        self
    }

    /// The script.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// A client datagram of session `uuid` (an index into the script's UUIDs)
/// in `state`, with the newest token seen, acking what arrived, timestamp
/// counting up.
pub fn built(state: State, uuid: u8, len: u32) -> Built {
    Built {
        state: state as u8,
        uuid,
        len,
        window: 16,
        ack: None,
        timestamp: None,
        probe: false,
        paced: false,
        token: if state == State::Connecting { 0 } else { 1 },
        raw_token: [0; SERVER_TOKEN_LEN],
        sack: Vec::new(),
    }
}

/// The `endpoint` seeds: a whole transfer, a resume from a new address, a
/// migration and probes, the session limit, expiry, and unusable sources.
pub fn endpoint_seeds() -> Vec<(String, Vec<u8>)> {
    let a = Addr::Client(0);
    let b = Addr::Client(1);
    let tx = Op::Transmit { max: 64 };
    let send = |from, msg| Op::Client { from, msg };
    let mut seeds = Vec::new();

    let mut transfer = ScriptWriter::new(4, 1000, 16)
        .op(&send(a, built(State::Connecting, 0, 40)))
        .op(&tx);
    for _ in 0..3 {
        transfer = transfer
            .op(&send(a, built(State::Connected, 0, 40)))
            .op(&tx);
    }
    let transfer = transfer
        .op(&send(a, built(State::Closing, 0, 40)))
        .op(&tx)
        .op(&send(a, built(State::Closed, 0, 40)))
        .op(&tx);
    seeds.push(("transfer".to_string(), transfer.finish()));

    let mut resume = built(State::Connecting, 0, 40);
    resume.token = 1;
    let mut probe = built(State::Connected, 0, 40);
    probe.probe = true;
    let moved = ScriptWriter::new(4, 1000, 16)
        .op(&send(a, built(State::Connecting, 0, 40)))
        .op(&tx)
        .op(&send(a, built(State::Connected, 0, 40)))
        .op(&tx)
        .op(&send(b, built(State::Connected, 0, 40)))
        .op(&tx)
        .op(&send(b, probe.clone()))
        .op(&send(b, probe))
        .op(&tx)
        .op(&Op::Advance { ms: 50 })
        .op(&send(Addr::Client(2), resume))
        .op(&tx)
        .op(&Op::Timer);
    seeds.push(("migrate-probe-resume".to_string(), moved.finish()));

    let mut full = ScriptWriter::new(2, 1000, 8);
    for i in 0..4u8 {
        full = full
            .op(&send(Addr::Client(i), built(State::Connecting, i, 100)))
            .op(&tx);
    }
    seeds.push(("session-limit".to_string(), full.finish()));

    let expiry = ScriptWriter::new(4, 1000, 8)
        .op(&send(a, built(State::Connecting, 0, 100)))
        .op(&tx)
        .op(&Op::Advance { ms: 11_000 })
        .op(&Op::Timer)
        .op(&send(a, built(State::Connected, 0, 100)))
        .op(&tx)
        .op(&Op::Advance { ms: 31_000 })
        .op(&Op::Timer)
        .op(&tx);
    seeds.push(("expiry".to_string(), expiry.finish()));

    let mut hostile = ScriptWriter::new(4, 1000, 8);
    for n in 0..7 {
        hostile = hostile
            .op(&send(Addr::Unusable(n), built(State::Connecting, 1, 10)))
            .op(&tx);
    }
    let hostile = hostile
        .op(&Op::Raw {
            from: Addr::Raw(0x0a00_0001, 9),
            bytes: b"RU\x02\x01garbage".to_vec(),
        })
        .op(&Op::Mutated {
            from: a,
            msg: built(State::Connecting, 2, 10),
            at: 3,
            xor: 0x80,
            reseal: true,
        })
        .op(&tx);
    seeds.push(("hostile-sources".to_string(), hostile.finish()));
    seeds
}

/// Selective-ack ranges after `ack` made from fuzz bytes: pairs of (gap,
/// length) going up from `ack + 1`, written newest first as a client
/// writes them, so that the range handling itself is reached; bytes that
/// start with 0xff are sent as they are (malformed ranges, refused).
pub fn fuzz_ranges(ack: u32, bytes: &[u8]) -> Vec<u8> {
    if bytes.first() == Some(&0xff) {
        return bytes[1..].to_vec();
    }
    let mut ranges = Vec::new();
    let mut at = ack.saturating_add(1);
    for pair in bytes.chunks_exact(2) {
        let lo = at.saturating_add(u32::from(pair[0]));
        let hi = lo.saturating_add(u32::from(pair[1]));
        ranges.push((lo, hi));
        at = hi.saturating_add(2);
    }
    let mut out = Vec::new();
    let mut w = risp_udp::proto::sack::RangeWriter::new(&mut out, ack, usize::MAX);
    for &(lo, hi) in ranges.iter().rev() {
        if !w.push(lo, hi) {
            break;
        }
    }
    w.finish();
    out
}

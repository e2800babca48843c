//! Datagram formats: encode, decode and integrity check.
//!
//! Every datagram starts with a 4-byte prefix (`"RU"`, version, kind) and ends
//! with a CRC32C of everything before it; a server datagram's CRC also covers
//! the session's UUID (as if it preceded the datagram), so that a client
//! drops a datagram meant for another session, as it may receive on a port
//! another client just left. Fixed-size parts are laid out with
//! bincode 2 (big-endian, fixed-width integers), which is used nowhere else in
//! the crate; the variable parts (token, selective-ack bitmap, padding) are
//! length-prefixed by hand. `docs/PROTOCOL.md` gives the layout byte by byte
//! and the golden tests below pin it.
//!
//! Decoding never panics: every length is checked before it is used, and each
//! way a datagram can be wrong has its own [`WireError`].

use bincode::{Decode, Encode};
use uuid::Uuid;

mod server;

pub use server::{
    decode_handshake_reply, encode_handshake_reply, is_data, is_handshake_reply, ErrorCode,
    ServerMessage, DATA_LEN, HANDSHAKE_REPLY_OVERHEAD,
};

/// The first two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"RU";
/// The protocol version this build speaks (3: selective acks as ranges of
/// any span, and the pacing rate a client asks for; 2 added server CRCs
/// keyed by the session's UUID).
pub const VERSION: u8 = 3;
/// Bytes of the prefix (magic, version, kind).
pub const PREFIX_LEN: usize = 4;
/// Bytes of the CRC32C trailer.
pub const CRC_LEN: usize = 4;
/// A CONNECTING datagram is padded to at least this many bytes, so that a
/// server may answer an unvalidated address with up to three times what it
/// received without becoming an amplifier (as QUIC does, RFC 9000 §8).
pub const MIN_CONNECTING_LEN: usize = 1200;
/// No valid datagram is longer (fits a 1500-byte Ethernet MTU over IPv4).
pub const MAX_DATAGRAM_LEN: usize = 1472;
/// Longest opaque token a client may echo.
pub const MAX_TOKEN_LEN: usize = 32;
/// Most bytes of selective-ack ranges in one client datagram (see
/// [`crate::proto::sack`]: a few bytes per hole, whatever the span).
pub const MAX_SACK_BYTES: usize = 1024;
/// Length of the token a server issues.
pub const SERVER_TOKEN_LEN: usize = 8;
/// The largest datagram a server sends.
pub const MAX_SERVER_DATAGRAM_LEN: usize = 32;
/// Length of a path challenge (and of the response a client appends to its
/// token).
pub const CHALLENGE_LEN: usize = 8;
/// Length of a retry token (stateless address validation).
pub const RETRY_TOKEN_LEN: usize = 16;

/// Connection states, numbered as in the original RISP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Setup handshake (sent by a client to start or resume).
    Connecting = 0,
    /// Data transfer.
    Connected = 1,
    /// The client holds every value and asks for the checksum.
    Closing = 2,
    /// The client verified the checksum; the session can end.
    Closed = 3,
}

impl State {
    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Connecting,
            1 => Self::Connected,
            2 => Self::Closing,
            3 => Self::Closed,
            _ => return None,
        })
    }

    /// The state's name as the original spelled it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Connecting => "CONNECTING",
            Self::Connected => "CONNECTED",
            Self::Closing => "CLOSING",
            Self::Closed => "CLOSED",
        }
    }
}

/// The flag bit a client sets when a timer, not new data, made it send.
pub const FLAG_PROBE: u8 = 0x01;
/// The flag bit a client sets on a CLOSED to abandon the session before it
/// holds every value (Ctrl-C): the server frees the session at once instead
/// of waiting for it to expire. Meaningless (and ignored) on other states.
pub const FLAG_ABORT: u8 = 0x02;
/// The flag bit a client sets on a CONNECTING whose padding carries the
/// first message of a Noise handshake (a 2-byte length, then the message,
/// then zeros): the client asks for a sealed session. Invalid on other
/// states.
pub const FLAG_HANDSHAKE: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_PROBE | FLAG_ABORT | FLAG_HANDSHAKE;
/// Longest handshake message a CONNECTING carries.
pub const MAX_HANDSHAKE_LEN: usize = 512;

/// Why a datagram was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the smallest datagram of its kind.
    #[error("datagram too short ({0} bytes)")]
    TooShort(usize),
    /// Longer than any valid datagram.
    #[error("datagram too long ({0} bytes)")]
    TooLong(usize),
    /// The first two bytes are not `RU`.
    #[error("bad magic")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unknown protocol version {0}")]
    UnknownVersion(u8),
    /// A kind byte this build does not know, or one that travels the other way.
    #[error("unknown datagram kind {0:#04x}")]
    UnknownKind(u8),
    /// The CRC32C trailer does not match.
    #[error("bad CRC32C")]
    BadCrc,
    /// A length field points past the end of the datagram.
    #[error("truncated field")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// Reserved flag bits were set.
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedFlags(u8),
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("token too long ({0} bytes)")]
    TokenTooLong(usize),
    /// The ack ranges are longer than [`MAX_SACK_BYTES`].
    #[error("selective-ack ranges too long ({0} bytes)")]
    SackTooLong(usize),
    /// The ack ranges are malformed (a bad varint, or ranges not strictly
    /// descending above `ack`).
    #[error("malformed selective-ack ranges")]
    BadSackRanges,
    /// Padding bytes that are not zero.
    #[error("non-zero padding")]
    BadPadding,
    /// A CONNECTING datagram shorter than [`MIN_CONNECTING_LEN`].
    #[error("CONNECTING not padded to {MIN_CONNECTING_LEN} bytes ({0} bytes)")]
    NotPadded(usize),
    /// An error code this build does not know.
    #[error("unknown error code {0}")]
    UnknownErrorCode(u8),
    /// The output buffer is too small for the message.
    #[error("buffer too small: need {0} bytes")]
    BufferTooSmall(usize),
}

/// Fixed part of a client datagram, after the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
struct ClientFixed {
    uuid: [u8; 16],
    len: u32,
    window: u32,
    ack: u32,
    timestamp: u64,
    rate: u32,
    flags: u8,
}
const CLIENT_FIXED_LEN: usize = 16 + 4 + 4 + 4 + 8 + 4 + 1;
/// Smallest client datagram: prefix, fixed part, three length fields, CRC.
pub const MIN_CLIENT_LEN: usize = PREFIX_LEN + CLIENT_FIXED_LEN + 1 + 2 + 2 + CRC_LEN;

/// A datagram from client to server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMessage<'a> {
    /// What the client is doing.
    pub state: State,
    /// The session key.
    pub uuid: Uuid,
    /// Length of the sequence requested.
    pub len: u32,
    /// The client's advertised window (indices it can hold past `ack`).
    pub window: u32,
    /// The next index the client still needs (all below are held).
    pub ack: u32,
    /// Client clock in microseconds; the server echoes it back.
    pub timestamp: u64,
    /// The rate, in datagrams per second, at which the client asks the
    /// server to pace this session's data (its rate control's estimate of
    /// the path); 0: unpaced.
    pub rate: u32,
    /// Flag bits ([`FLAG_PROBE`], [`FLAG_ABORT`]).
    pub flags: u8,
    /// The session token the server issued (empty before it has one).
    pub token: &'a [u8],
    /// Selective-ack ranges of indices held past `ack`, newest first
    /// ([`crate::proto::sack`]); checked well-formed by [`Self::decode`].
    pub sack: &'a [u8],
}

impl ClientMessage<'_> {
    /// True when a timer, not new data, made the client send this.
    pub fn is_probe(&self) -> bool {
        self.flags & FLAG_PROBE != 0
    }

    /// True for a CLOSED that abandons the session ([`FLAG_ABORT`]).
    pub fn is_abort(&self) -> bool {
        self.state == State::Closed && self.flags & FLAG_ABORT != 0
    }

    /// The exact encoded length, including CONNECTING padding.
    pub fn encoded_len(&self) -> usize {
        self.encoded_len_with(None)
    }

    /// The exact encoded length with a handshake message in the padding.
    pub fn encoded_len_with(&self, handshake: Option<&[u8]>) -> usize {
        let hs = handshake.map_or(0, |h| 2 + h.len());
        let bare = MIN_CLIENT_LEN + self.token.len() + self.sack.len() + hs;
        if self.state == State::Connecting {
            bare.max(MIN_CONNECTING_LEN)
        } else {
            bare
        }
    }

    /// Encodes into `buf`, returning the number of bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.encode_with(None, buf)
    }

    /// Encodes a CONNECTING that carries `handshake` (a Noise first
    /// message) in its padding, with [`FLAG_HANDSHAKE`] set; with `None`,
    /// as [`encode`](Self::encode).
    pub fn encode_with(
        &self,
        handshake: Option<&[u8]>,
        buf: &mut [u8],
    ) -> Result<usize, WireError> {
        let mut flags = self.flags;
        if let Some(h) = handshake {
            if self.state != State::Connecting || h.len() > MAX_HANDSHAKE_LEN {
                return Err(WireError::ReservedFlags(FLAG_HANDSHAKE));
            }
            flags |= FLAG_HANDSHAKE;
        } else if self.flags & FLAG_HANDSHAKE != 0 {
            return Err(WireError::ReservedFlags(FLAG_HANDSHAKE));
        }
        if self.token.len() > MAX_TOKEN_LEN {
            return Err(WireError::TokenTooLong(self.token.len()));
        }
        if self.sack.len() > MAX_SACK_BYTES {
            return Err(WireError::SackTooLong(self.sack.len()));
        }
        if self.flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::ReservedFlags(self.flags));
        }
        let total = self.encoded_len_with(handshake);
        if buf.len() < total {
            return Err(WireError::BufferTooSmall(total));
        }
        let pad = total - (MIN_CLIENT_LEN + self.token.len() + self.sack.len());
        let mut w = Writer::new(&mut buf[..total], &[]);
        w.prefix(self.state as u8);
        w.fixed(&ClientFixed {
            uuid: *self.uuid.as_bytes(),
            len: self.len,
            window: self.window,
            ack: self.ack,
            timestamp: self.timestamp,
            rate: self.rate,
            flags,
        });
        w.bytes(&[self.token.len() as u8]);
        w.bytes(self.token);
        w.bytes(&(self.sack.len() as u16).to_be_bytes());
        w.bytes(self.sack);
        w.bytes(&(pad as u16).to_be_bytes());
        match handshake {
            Some(h) => {
                w.bytes(&(h.len() as u16).to_be_bytes());
                w.bytes(h);
                w.zeros(pad - 2 - h.len());
            }
            None => w.zeros(pad),
        }
        Ok(w.finish())
    }

    /// Decodes and checks one client datagram.
    pub fn decode(datagram: &[u8]) -> Result<ClientMessage<'_>, WireError> {
        Self::decode_with(datagram).map(|(m, _)| m)
    }

    /// Decodes and checks one client datagram, and returns the handshake
    /// message a CONNECTING with [`FLAG_HANDSHAKE`] carries.
    pub fn decode_with(datagram: &[u8]) -> Result<(ClientMessage<'_>, Option<&[u8]>), WireError> {
        let kind = check_frame(datagram, MIN_CLIENT_LEN, &[])?;
        let state = State::from_u8(kind).ok_or(WireError::UnknownKind(kind))?;
        let mut r = Reader::new(&datagram[PREFIX_LEN..datagram.len() - CRC_LEN]);
        let fixed: ClientFixed = r.fixed(CLIENT_FIXED_LEN)?;
        if fixed.flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::ReservedFlags(fixed.flags));
        }
        let token_len = usize::from(r.u8()?);
        if token_len > MAX_TOKEN_LEN {
            return Err(WireError::TokenTooLong(token_len));
        }
        let token = r.take(token_len)?;
        let sack_len = usize::from(r.u16()?);
        if sack_len > MAX_SACK_BYTES {
            return Err(WireError::SackTooLong(sack_len));
        }
        let sack = r.take(sack_len)?;
        crate::proto::sack::validate(fixed.ack, sack).map_err(|_| WireError::BadSackRanges)?;
        let pad_len = usize::from(r.u16()?);
        let mut pad = Reader::new(r.take(pad_len)?);
        let handshake = if fixed.flags & FLAG_HANDSHAKE != 0 {
            if state != State::Connecting {
                return Err(WireError::ReservedFlags(fixed.flags));
            }
            let n = usize::from(pad.u16()?);
            if n > MAX_HANDSHAKE_LEN {
                return Err(WireError::Truncated);
            }
            Some(pad.take(n)?)
        } else {
            None
        };
        if pad.buf.iter().any(|&b| b != 0) {
            return Err(WireError::BadPadding);
        }
        r.finish()?;
        if state == State::Connecting && datagram.len() < MIN_CONNECTING_LEN {
            return Err(WireError::NotPadded(datagram.len()));
        }
        Ok((
            ClientMessage {
                state,
                uuid: Uuid::from_bytes(fixed.uuid),
                len: fixed.len,
                window: fixed.window,
                ack: fixed.ack,
                timestamp: fixed.timestamp,
                rate: fixed.rate,
                flags: fixed.flags,
                token,
                sack,
            },
            handshake,
        ))
    }
}

/// Checks what every datagram shares (size bounds, magic, version, CRC keyed
/// by `key`) and returns its kind byte.
fn check_frame(datagram: &[u8], min_len: usize, key: &[u8]) -> Result<u8, WireError> {
    if datagram.len() < min_len {
        return Err(WireError::TooShort(datagram.len()));
    }
    if datagram.len() > MAX_DATAGRAM_LEN {
        return Err(WireError::TooLong(datagram.len()));
    }
    if datagram[..2] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if datagram[2] != VERSION {
        return Err(WireError::UnknownVersion(datagram[2]));
    }
    let (body, trailer) = datagram.split_at(datagram.len() - CRC_LEN);
    let expected = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    if crc(key, body) != expected {
        return Err(WireError::BadCrc);
    }
    Ok(datagram[3])
}

/// The protocol version of a server datagram for the session `uuid` that
/// this build cannot decode because it is of another version: `Some` only
/// when its CRC, keyed by the UUID as every version since 2 keys it,
/// checks out (so a damaged version byte is not taken for a server of
/// another version).
pub fn other_server_version(datagram: &[u8], uuid: Uuid) -> Option<u8> {
    if datagram.len() < PREFIX_LEN + CRC_LEN || datagram[..2] != MAGIC || datagram[2] == VERSION {
        return None;
    }
    let (body, trailer) = datagram.split_at(datagram.len() - CRC_LEN);
    let expected = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    (crc(uuid.as_bytes(), body) == expected).then_some(datagram[2])
}

/// CRC32C of `key` followed by `body` (an empty key: of `body` alone).
fn crc(key: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(key), body)
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
}

/// Appends fields to an exactly-sized buffer, then the CRC (keyed by `key`).
struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    key: &'a [u8],
}

impl<'a> Writer<'a> {
    fn new(buf: &'a mut [u8], key: &'a [u8]) -> Self {
        Self { buf, pos: 0, key }
    }

    fn prefix(&mut self, kind: u8) {
        self.bytes(&[MAGIC[0], MAGIC[1], VERSION, kind]);
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }

    fn zeros(&mut self, n: usize) {
        self.buf[self.pos..self.pos + n].fill(0);
        self.pos += n;
    }

    fn fixed<T: Encode>(&mut self, value: &T) {
        // The buffer was sized from the same constants; a failure here is a
        // bug in this module, not bad input.
        let n = bincode::encode_into_slice(value, &mut self.buf[self.pos..], bincode_config())
            .expect("fixed part fits the exactly-sized buffer");
        self.pos += n;
    }

    fn finish(self) -> usize {
        let crc = crc(self.key, &self.buf[..self.pos]);
        self.buf[self.pos..self.pos + CRC_LEN].copy_from_slice(&crc.to_be_bytes());
        self.pos + CRC_LEN
    }
}

/// Reads fields from a checked body; every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn fixed<T: Decode<()>>(&mut self, len: usize) -> Result<T, WireError> {
        let bytes = self.take(len)?;
        let (value, used) = bincode::decode_from_slice(bytes, bincode_config())
            .map_err(|_| WireError::Truncated)?;
        if used != len {
            return Err(WireError::Truncated);
        }
        Ok(value)
    }

    fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests;

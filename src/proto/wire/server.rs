//! Server datagrams: Accept, Data, Checksum, Closed, Challenge, Retry and
//! Error, each at most [`MAX_SERVER_DATAGRAM_LEN`] bytes, with a CRC keyed by
//! the session's UUID.

use bincode::{Decode, Encode};
use uuid::Uuid;

use super::{
    check_frame, Reader, WireError, Writer, CHALLENGE_LEN, CRC_LEN, MAX_SERVER_DATAGRAM_LEN,
    PREFIX_LEN, RETRY_TOKEN_LEN, SERVER_TOKEN_LEN,
};

/// Kind byte of server datagrams: `0x80 | state`, plus an error kind.
const KIND_ACCEPT: u8 = 0x80;
const KIND_DATA: u8 = 0x81;
const KIND_CHECKSUM: u8 = 0x82;
const KIND_CLOSED: u8 = 0x83;
const KIND_CHALLENGE: u8 = 0x84;
const KIND_RETRY: u8 = 0x85;
const KIND_ERROR: u8 = 0x8F;
const KIND_HANDSHAKE: u8 = 0x86;

/// Bytes a handshake reply adds to the Noise message it carries.
pub const HANDSHAKE_REPLY_OVERHEAD: usize = PREFIX_LEN + CRC_LEN;

/// Encodes the server's answer to a CONNECTING that carried a handshake:
/// the prefix (kind `0x86`), the Noise reply (whose encrypted payload is
/// the session's Accept), and a CRC keyed by the session's UUID.
pub fn encode_handshake_reply(
    uuid: Uuid,
    reply: &[u8],
    buf: &mut [u8],
) -> Result<usize, WireError> {
    let total = HANDSHAKE_REPLY_OVERHEAD + reply.len();
    if buf.len() < total {
        return Err(WireError::BufferTooSmall(total));
    }
    let mut w = Writer::new(&mut buf[..total], uuid.as_bytes());
    w.prefix(KIND_HANDSHAKE);
    w.bytes(reply);
    Ok(w.finish())
}

/// The Noise reply a handshake reply for the session `uuid` carries; any
/// other datagram (or one for another session) fails.
pub fn decode_handshake_reply(datagram: &[u8], uuid: Uuid) -> Result<&[u8], WireError> {
    let kind = check_frame(datagram, HANDSHAKE_REPLY_OVERHEAD + 1, uuid.as_bytes())?;
    if kind != KIND_HANDSHAKE {
        return Err(WireError::UnknownKind(kind));
    }
    Ok(&datagram[PREFIX_LEN..datagram.len() - CRC_LEN])
}

/// Whether `datagram` is framed as a handshake reply (kind byte only).
pub fn is_handshake_reply(datagram: &[u8]) -> bool {
    datagram.len() > HANDSHAKE_REPLY_OVERHEAD
        && datagram.get(PREFIX_LEN - 1) == Some(&KIND_HANDSHAKE)
}

/// Why a server refused a client, as carried on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No such session: never existed, expired, or already closed.
    UnknownSession,
    /// The server is at its session limit; try again later.
    Busy,
    /// The requested length is over the server's limit (detail: the limit).
    LenTooLarge,
    /// A resume asked for a different length (detail: the session's length).
    LenMismatch,
    /// The token does not match the session's, or the UUID is taken.
    Unauthorized,
    /// The ack is past the end of the sequence (detail: the length).
    AckOutOfRange,
    /// The client's datagram was of another protocol version (detail: that
    /// version). Sent in the server's own version: a client of another
    /// version reads only its prefix, whose version byte names the
    /// server's.
    WrongVersion,
    /// The server seals every session and this CONNECTING asked for a
    /// plain one.
    EncryptionRequired,
}

impl ErrorCode {
    fn to_u8(self) -> u8 {
        match self {
            Self::UnknownSession => 1,
            Self::Busy => 2,
            Self::LenTooLarge => 3,
            Self::LenMismatch => 4,
            Self::Unauthorized => 5,
            Self::AckOutOfRange => 6,
            Self::WrongVersion => 7,
            Self::EncryptionRequired => 8,
        }
    }

    fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::UnknownSession,
            2 => Self::Busy,
            3 => Self::LenTooLarge,
            4 => Self::LenMismatch,
            5 => Self::Unauthorized,
            6 => Self::AckOutOfRange,
            7 => Self::WrongVersion,
            8 => Self::EncryptionRequired,
            _ => return None,
        })
    }
}

/// A datagram from server to client. Each is at most
/// [`MAX_SERVER_DATAGRAM_LEN`] bytes; `echo` is the newest client timestamp
/// the server had seen when it sent the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMessage {
    /// Reply to CONNECTING: the session exists; here is its token.
    Accept {
        /// Token the client must present from now on.
        token: [u8; SERVER_TOKEN_LEN],
        /// How long the server keeps an idle session, in milliseconds.
        lifetime_ms: u32,
        /// The largest window the server will honour.
        max_window: u32,
        /// Echoed client timestamp.
        echo: u64,
    },
    /// One value of the sequence (state CONNECTED).
    Data {
        /// Position in the sequence.
        index: u32,
        /// The value.
        payload: u32,
        /// Echoed client timestamp.
        echo: u64,
    },
    /// Reply to CLOSING: the checksum of the whole sequence.
    Checksum {
        /// Sum of all values as u64.
        checksum: u64,
        /// Echoed client timestamp.
        echo: u64,
    },
    /// Reply to CLOSED: the session is gone.
    Closed {
        /// Echoed client timestamp.
        echo: u64,
    },
    /// Path validation: the server saw the session's token from a new
    /// address and will send there at most three times what it receives
    /// from it until the client echoes `challenge` from that address
    /// (appended to its token).
    Challenge {
        /// Unpredictable bytes to echo.
        challenge: [u8; CHALLENGE_LEN],
        /// Echoed client timestamp.
        echo: u64,
    },
    /// Stateless address validation: send CONNECTING again with this token
    /// (in the token field) to prove the address is yours.
    Retry {
        /// Authenticates the client's address, UUID, length and time.
        token: [u8; RETRY_TOKEN_LEN],
        /// Echoed client timestamp.
        echo: u64,
    },
    /// A refusal.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// A number that makes the code precise (a limit or a length).
        detail: u32,
        /// Echoed client timestamp.
        echo: u64,
    },
}

#[derive(Encode, Decode)]
struct AcceptFixed {
    token: [u8; SERVER_TOKEN_LEN],
    lifetime_ms: u32,
    max_window: u32,
    echo: u64,
}
#[derive(Encode, Decode)]
struct DataFixed {
    index: u32,
    payload: u32,
    echo: u64,
}
#[derive(Encode, Decode)]
struct ChecksumFixed {
    checksum: u64,
    echo: u64,
}
#[derive(Encode, Decode)]
struct ErrorFixed {
    code: u8,
    detail: u32,
    echo: u64,
}

/// Encoded length of a data datagram.
pub const DATA_LEN: usize = PREFIX_LEN + 16 + CRC_LEN;

/// Whether `datagram` is framed as a Data datagram (its length and kind
/// byte; the CRC is not checked): a cheap count for observers. A Checksum
/// is as long, so the length alone does not tell.
pub fn is_data(datagram: &[u8]) -> bool {
    datagram.len() == DATA_LEN && datagram.get(PREFIX_LEN - 1) == Some(&KIND_DATA)
}

impl ServerMessage {
    /// The echoed client timestamp.
    pub fn echo(&self) -> u64 {
        match *self {
            Self::Accept { echo, .. }
            | Self::Data { echo, .. }
            | Self::Checksum { echo, .. }
            | Self::Closed { echo }
            | Self::Challenge { echo, .. }
            | Self::Retry { echo, .. }
            | Self::Error { echo, .. } => echo,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            Self::Accept { .. } => SERVER_TOKEN_LEN + 16,
            Self::Data { .. } => 16,
            Self::Checksum { .. } => 16,
            Self::Closed { .. } => 8,
            Self::Challenge { .. } => CHALLENGE_LEN + 8,
            Self::Retry { .. } => RETRY_TOKEN_LEN + 8,
            Self::Error { .. } => 13,
        }
    }

    /// The exact encoded length.
    pub fn encoded_len(&self) -> usize {
        PREFIX_LEN + self.body_len() + CRC_LEN
    }

    /// Encodes into `buf` for the session `uuid` (which keys the CRC),
    /// returning the number of bytes written.
    pub fn encode(&self, uuid: Uuid, buf: &mut [u8]) -> Result<usize, WireError> {
        let total = self.encoded_len();
        if buf.len() < total {
            return Err(WireError::BufferTooSmall(total));
        }
        let mut w = Writer::new(&mut buf[..total], uuid.as_bytes());
        match *self {
            Self::Accept {
                token,
                lifetime_ms,
                max_window,
                echo,
            } => {
                w.prefix(KIND_ACCEPT);
                w.fixed(&AcceptFixed {
                    token,
                    lifetime_ms,
                    max_window,
                    echo,
                });
            }
            Self::Data {
                index,
                payload,
                echo,
            } => {
                w.prefix(KIND_DATA);
                w.fixed(&DataFixed {
                    index,
                    payload,
                    echo,
                });
            }
            Self::Checksum { checksum, echo } => {
                w.prefix(KIND_CHECKSUM);
                w.fixed(&ChecksumFixed { checksum, echo });
            }
            Self::Closed { echo } => {
                w.prefix(KIND_CLOSED);
                w.bytes(&echo.to_be_bytes());
            }
            Self::Challenge { challenge, echo } => {
                w.prefix(KIND_CHALLENGE);
                w.bytes(&challenge);
                w.bytes(&echo.to_be_bytes());
            }
            Self::Retry { token, echo } => {
                w.prefix(KIND_RETRY);
                w.bytes(&token);
                w.bytes(&echo.to_be_bytes());
            }
            Self::Error { code, detail, echo } => {
                w.prefix(KIND_ERROR);
                w.fixed(&ErrorFixed {
                    code: code.to_u8(),
                    detail,
                    echo,
                });
            }
        }
        Ok(w.finish())
    }

    /// Decodes and checks one server datagram sent for the session `uuid`:
    /// a datagram for any other session fails with [`WireError::BadCrc`].
    pub fn decode(datagram: &[u8], uuid: Uuid) -> Result<Self, WireError> {
        Self::decode_keyed(datagram, Some(uuid.as_bytes()))
    }

    /// Decodes a server datagram without checking its CRC: for a sender
    /// classifying what it encoded itself (which session it was for is not
    /// at hand there). Never use it on datagrams from the network.
    pub fn decode_unchecked(datagram: &[u8]) -> Result<Self, WireError> {
        Self::decode_keyed(datagram, None)
    }

    fn decode_keyed(datagram: &[u8], key: Option<&[u8]>) -> Result<Self, WireError> {
        let kind = match key {
            Some(key) => check_frame(datagram, PREFIX_LEN + 8 + CRC_LEN, key)?,
            None => check_frame(datagram, PREFIX_LEN + 8 + CRC_LEN, &[]).or_else(|e| match e {
                WireError::BadCrc => Ok(datagram[3]),
                e => Err(e),
            })?,
        };
        if datagram.len() > MAX_SERVER_DATAGRAM_LEN {
            return Err(WireError::TooLong(datagram.len()));
        }
        let mut r = Reader::new(&datagram[PREFIX_LEN..datagram.len() - CRC_LEN]);
        let msg = match kind {
            KIND_ACCEPT => {
                let f: AcceptFixed = r.fixed(SERVER_TOKEN_LEN + 16)?;
                Self::Accept {
                    token: f.token,
                    lifetime_ms: f.lifetime_ms,
                    max_window: f.max_window,
                    echo: f.echo,
                }
            }
            KIND_DATA => {
                let f: DataFixed = r.fixed(16)?;
                Self::Data {
                    index: f.index,
                    payload: f.payload,
                    echo: f.echo,
                }
            }
            KIND_CHECKSUM => {
                let f: ChecksumFixed = r.fixed(16)?;
                Self::Checksum {
                    checksum: f.checksum,
                    echo: f.echo,
                }
            }
            KIND_CLOSED => Self::Closed {
                echo: u64::from_be_bytes(r.array()?),
            },
            KIND_CHALLENGE => Self::Challenge {
                challenge: r.array()?,
                echo: u64::from_be_bytes(r.array()?),
            },
            KIND_RETRY => Self::Retry {
                token: r.array()?,
                echo: u64::from_be_bytes(r.array()?),
            },
            KIND_ERROR => {
                let f: ErrorFixed = r.fixed(13)?;
                Self::Error {
                    code: ErrorCode::from_u8(f.code).ok_or(WireError::UnknownErrorCode(f.code))?,
                    detail: f.detail,
                    echo: f.echo,
                }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(msg)
    }
}

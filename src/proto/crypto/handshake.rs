//! The one-round-trip Noise handshake, through snow.
//!
//! A client that pins the server's key runs `Noise_NK_25519_ChaChaPoly_BLAKE2s`:
//! its first message is already encrypted to that key, and only the
//! holder of the secret can answer. A client without a pin runs
//! `Noise_NX_25519_ChaChaPoly_BLAKE2s`: the server sends its static key
//! (encrypted) in the reply, and the caller checks it against what it
//! trusts ([`ClientHandshake::finish_expecting`]: a pin, or the key a
//! known-servers file remembers) or learns it on first use. Both take one
//! round trip: the client's message, the server's reply, and both hold
//! the session keys.
//!
//! The prologue binds the protocol version (`"risp-udp noise, wire
//! version "` and the version byte), so two builds that disagree on the
//! version fail the handshake instead of agreeing on keys. Each side
//! passes an application payload (the client, say, its session UUID;
//! the server a token), at most [`MAX_PAYLOAD_LEN`] bytes.
//!
//! # Messages
//!
//! The client's first message is one byte naming the pattern
//! ([`Pattern`]: `0x01` NK, `0x02` NX) followed by snow's message. The
//! reply is snow's message alone (the client knows its pattern). With a
//! payload of P bytes:
//!
//! | message | layout | bytes |
//! |---|---|---|
//! | NK first | pattern, ephemeral key (32), payload, tag (16) | 49 + P |
//! | NX first | pattern, ephemeral key (32), payload in clear | 33 + P |
//! | NK reply | ephemeral key (32), payload, tag (16) | 48 + P |
//! | NX reply | ephemeral key (32), static key (32) + tag (16), payload, tag (16) | 96 + P |
//!
//! So a first message is at most 49 + 256 = 305 bytes, well inside the
//! 1,200 bytes a CONNECTING is padded to, and a reply at most 352 bytes,
//! inside the 3× a server may send an unproven address.
//!
//! NX's first payload travels in clear and is authenticated only when the
//! client reads the reply (the transcript hash covers it): a server must
//! not trust it before the session's first sealed datagram from the
//! client. NK's first payload is encrypted to the server's key but, as in
//! any one-message protocol, replayable: the server's reply, with a fresh
//! ephemeral key, is what makes the session's keys new.

use std::sync::LazyLock;

use rand::{CryptoRng, RngCore};
use snow::params::NoiseParams;
use snow::HandshakeState;
use zeroize::Zeroizing;

use super::keys::{PublicKey, ServerKey, KEY_LEN};
use super::resolver::SeededResolver;
use super::seal::{Opener, Sealer, KEY_UPDATE_INTERVAL};
use crate::proto::wire::VERSION;

/// The longest application payload either side may pass.
pub const MAX_PAYLOAD_LEN: usize = 256;

/// Bytes of the client's first message beyond its payload, NK.
pub const NK_FIRST_OVERHEAD: usize = 1 + KEY_LEN + TAG_LEN;
/// Bytes of the client's first message beyond its payload, NX.
pub const NX_FIRST_OVERHEAD: usize = 1 + KEY_LEN;
/// Bytes of the server's reply beyond its payload, NK.
pub const NK_REPLY_OVERHEAD: usize = KEY_LEN + TAG_LEN;
/// Bytes of the server's reply beyond its payload, NX.
pub const NX_REPLY_OVERHEAD: usize = 2 * KEY_LEN + 2 * TAG_LEN;

const TAG_LEN: usize = 16;

const PROLOGUE_LABEL: &[u8] = b"risp-udp noise, wire version ";

/// The prologue both sides mix in: the label and the protocol version.
const PROLOGUE: [u8; PROLOGUE_LABEL.len() + 1] = {
    let mut p = [0u8; PROLOGUE_LABEL.len() + 1];
    let mut i = 0;
    while i < PROLOGUE_LABEL.len() {
        p[i] = PROLOGUE_LABEL[i];
        i += 1;
    }
    p[PROLOGUE_LABEL.len()] = VERSION;
    p
};

static NK: LazyLock<NoiseParams> = LazyLock::new(|| {
    "Noise_NK_25519_ChaChaPoly_BLAKE2s"
        .parse()
        .expect("snow knows the NK pattern")
});
static NX: LazyLock<NoiseParams> = LazyLock::new(|| {
    "Noise_NX_25519_ChaChaPoly_BLAKE2s"
        .parse()
        .expect("snow knows the NX pattern")
});

pub(crate) fn nk_params() -> &'static NoiseParams {
    &NK
}

/// Which Noise pattern a handshake runs (the first byte of the client's
/// first message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Pattern {
    /// The client knows the server's key: `Noise_NK_25519_ChaChaPoly_BLAKE2s`.
    Nk = 0x01,
    /// The server sends its key: `Noise_NX_25519_ChaChaPoly_BLAKE2s`.
    Nx = 0x02,
}

impl Pattern {
    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(Self::Nk),
            0x02 => Some(Self::Nx),
            _ => None,
        }
    }

    fn params(self) -> &'static NoiseParams {
        match self {
            Self::Nk => &NK,
            Self::Nx => &NX,
        }
    }

    /// Bytes of the client's first message with a payload of
    /// `payload_len` bytes.
    pub const fn first_len(self, payload_len: usize) -> usize {
        payload_len
            + match self {
                Self::Nk => NK_FIRST_OVERHEAD,
                Self::Nx => NX_FIRST_OVERHEAD,
            }
    }

    /// Bytes of the server's reply with a payload of `payload_len` bytes.
    pub const fn reply_len(self, payload_len: usize) -> usize {
        payload_len
            + match self {
                Self::Nk => NK_REPLY_OVERHEAD,
                Self::Nx => NX_REPLY_OVERHEAD,
            }
    }
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A message too short or too long for its pattern, or naming no
    /// known pattern.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// A message that does not authenticate: damaged or forged, or (NK)
    /// encrypted to another server key than this server's.
    #[error("handshake message does not authenticate (damaged, forged, or meant for another server key)")]
    Undecryptable,
    /// The server proved a key other than the one the client trusts.
    #[error("the server's key is {offered}, but this client expects {expected}")]
    KeyMismatch {
        /// The key the client pinned or remembered.
        expected: PublicKey,
        /// The key the server proved it holds.
        offered: PublicKey,
    },
    /// The caller's payload is longer than [`MAX_PAYLOAD_LEN`].
    #[error("handshake payload of {0} bytes (at most {MAX_PAYLOAD_LEN})")]
    PayloadTooLong(usize),
    /// snow refused for another reason (a bug of ours if it happens).
    #[error("noise: {0}")]
    Noise(String),
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => Self::Undecryptable,
            snow::Error::Input => Self::Malformed("a field runs past the end"),
            other => Self::Noise(other.to_string()),
        }
    }
}

fn check_payload(payload: &[u8]) -> Result<(), HandshakeError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(HandshakeError::PayloadTooLong(payload.len()));
    }
    Ok(())
}

/// A message's length against its pattern's bounds.
fn check_len(len: usize, min: usize) -> Result<(), HandshakeError> {
    if len < min {
        return Err(HandshakeError::Malformed("shorter than its pattern"));
    }
    if len > min + MAX_PAYLOAD_LEN {
        return Err(HandshakeError::Malformed("longer than any payload allows"));
    }
    Ok(())
}

/// The client's side between its first message and the server's reply.
pub struct ClientHandshake {
    state: HandshakeState,
    pattern: Pattern,
    pin: Option<PublicKey>,
}

impl std::fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("pattern", &self.pattern)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

/// What the client holds once the server's reply checks out.
#[derive(Debug)]
pub struct ClientFinished {
    /// The session's keys.
    pub keys: SessionKeys,
    /// The server's static key: the pin (NK), or the one it proved (NX).
    pub server_key: PublicKey,
    /// The server's payload.
    pub payload: Vec<u8>,
}

impl ClientHandshake {
    /// Starts a handshake: NK towards `pin`, or NX without one. Returns
    /// the state to finish with and the first message, carrying `payload`.
    /// Randomness (the ephemeral key) comes from `rng`.
    pub fn start(
        pin: Option<PublicKey>,
        payload: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        check_payload(payload)?;
        let pattern = if pin.is_some() {
            Pattern::Nk
        } else {
            Pattern::Nx
        };
        let builder = snow::Builder::with_resolver(
            pattern.params().clone(),
            SeededResolver::draw(rng).boxed(),
        )
        .prologue(&PROLOGUE)?;
        let builder = match &pin {
            Some(key) => builder.remote_public_key(key.as_bytes())?,
            None => builder,
        };
        let mut state = builder.build_initiator()?;
        // snow asks for room for a tag even where the message has none
        // (NX's first payload travels in clear).
        let mut message = vec![0u8; pattern.first_len(payload.len()) + TAG_LEN];
        message[0] = pattern as u8;
        let n = state.write_message(payload, &mut message[1..])?;
        message.truncate(1 + n);
        Ok((
            Self {
                state,
                pattern,
                pin,
            },
            message,
        ))
    }

    /// The pattern this handshake runs.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// Reads the server's reply. With NX the server's key is whatever it
    /// proved: check it ([`finish_expecting`](Self::finish_expecting))
    /// or remember it (trust on first use).
    pub fn finish(mut self, reply: &[u8]) -> Result<ClientFinished, HandshakeError> {
        check_len(reply.len(), self.pattern.reply_len(0))?;
        let mut payload = vec![0u8; reply.len()];
        let n = self.state.read_message(reply, &mut payload)?;
        payload.truncate(n);
        let server_key = match (self.pin, self.state.get_remote_static()) {
            (Some(pin), _) => pin,
            (None, Some(bytes)) => {
                let mut key = [0u8; KEY_LEN];
                key.copy_from_slice(bytes);
                PublicKey::from_bytes(key)
            }
            (None, None) => {
                return Err(HandshakeError::Noise(
                    "NX reply without a static key".into(),
                ))
            }
        };
        let keys = SessionKeys::split(&mut self.state, true)?;
        Ok(ClientFinished {
            keys,
            server_key,
            payload,
        })
    }

    /// Reads the server's reply and fails with
    /// [`HandshakeError::KeyMismatch`] unless the server proved
    /// `expected` (the key a known-servers file remembers for it).
    pub fn finish_expecting(
        self,
        reply: &[u8],
        expected: &PublicKey,
    ) -> Result<ClientFinished, HandshakeError> {
        let done = self.finish(reply)?;
        if done.server_key != *expected {
            return Err(HandshakeError::KeyMismatch {
                expected: *expected,
                offered: done.server_key,
            });
        }
        Ok(done)
    }
}

/// The server's side between reading the client's first message and
/// replying.
pub struct ServerHandshake {
    state: HandshakeState,
    pattern: Pattern,
}

impl std::fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}

/// What the server holds once it has replied.
#[derive(Debug)]
pub struct Responded {
    /// The reply to send.
    pub reply: Vec<u8>,
    /// The session's keys.
    pub keys: SessionKeys,
    /// The client's payload.
    pub client_payload: Vec<u8>,
    /// The pattern the client chose.
    pub pattern: Pattern,
}

impl ServerHandshake {
    /// Reads a client's first message with the server's key. Returns the
    /// state to reply with and the client's payload. Randomness (the
    /// reply's ephemeral key) comes from `rng`.
    pub fn read(
        key: &ServerKey,
        first: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let (&tag, message) = first
            .split_first()
            .ok_or(HandshakeError::Malformed("empty"))?;
        let pattern =
            Pattern::from_byte(tag).ok_or(HandshakeError::Malformed("unknown pattern byte"))?;
        check_len(first.len(), pattern.first_len(0))?;
        let mut state = snow::Builder::with_resolver(
            pattern.params().clone(),
            SeededResolver::draw(rng).boxed(),
        )
        .prologue(&PROLOGUE)?
        .local_private_key(key.secret_bytes())?
        .build_responder()?;
        let mut payload = vec![0u8; message.len()];
        let n = state.read_message(message, &mut payload)?;
        payload.truncate(n);
        Ok((Self { state, pattern }, payload))
    }

    /// The pattern the client chose.
    pub fn pattern(&self) -> Pattern {
        self.pattern
    }

    /// The reply, carrying `payload`, and the session's keys.
    pub fn reply(mut self, payload: &[u8]) -> Result<(Vec<u8>, SessionKeys), HandshakeError> {
        check_payload(payload)?;
        let mut reply = vec![0u8; self.pattern.reply_len(payload.len()) + TAG_LEN];
        let n = self.state.write_message(payload, &mut reply)?;
        reply.truncate(n);
        let keys = SessionKeys::split(&mut self.state, false)?;
        Ok((reply, keys))
    }

    /// [`read`](Self::read) then [`reply`](Self::reply) with a payload
    /// that does not depend on the client's.
    pub fn respond(
        key: &ServerKey,
        first: &[u8],
        payload: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Responded, HandshakeError> {
        let (state, client_payload) = Self::read(key, first, rng)?;
        let pattern = state.pattern;
        let (reply, keys) = state.reply(payload)?;
        Ok(Responded {
            reply,
            keys,
            client_payload,
            pattern,
        })
    }
}

/// A session's traffic keys, one per direction, from the handshake's
/// final split; wiped when dropped.
pub struct SessionKeys {
    send: Zeroizing<[u8; 32]>,
    receive: Zeroizing<[u8; 32]>,
    handshake_hash: [u8; 32],
    key_update_interval: u64,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("key_update_interval", &self.key_update_interval)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// The keys of a finished handshake: the initiator's (client's)
    /// sending key is the first of the split.
    fn split(state: &mut HandshakeState, initiator: bool) -> Result<Self, HandshakeError> {
        if !state.is_handshake_finished() {
            return Err(HandshakeError::Noise("handshake not finished".into()));
        }
        let (to_server, to_client) = state.dangerously_get_raw_split();
        let (to_server, to_client) = (Zeroizing::new(to_server), Zeroizing::new(to_client));
        let mut handshake_hash = [0u8; 32];
        handshake_hash.copy_from_slice(&state.get_handshake_hash()[..32]);
        let (send, receive) = if initiator {
            (to_server, to_client)
        } else {
            (to_client, to_server)
        };
        Ok(Self {
            send,
            receive,
            handshake_hash,
            key_update_interval: KEY_UPDATE_INTERVAL,
        })
    }

    /// The handshake's transcript hash (Noise's `h`), the same on both
    /// sides: it names the session (channel binding) but is no secret.
    pub fn handshake_hash(&self) -> &[u8; 32] {
        &self.handshake_hash
    }

    /// Moves to the next key phase every `datagrams` datagrams instead of
    /// [`KEY_UPDATE_INTERVAL`] (a test knob; both sides must agree).
    /// `datagrams` is at least 1.
    pub fn with_key_update_interval(mut self, datagrams: u64) -> Self {
        self.key_update_interval = datagrams.max(1);
        self
    }

    /// The sealer of this side's datagrams and the opener of the peer's.
    pub fn into_transport(self) -> (Sealer, Opener) {
        (
            Sealer::new(&self.send, self.key_update_interval),
            Opener::new(&self.receive, self.key_update_interval),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    #[test]
    fn the_prologue_names_the_version() {
        assert_eq!(&PROLOGUE[..PROLOGUE_LABEL.len()], PROLOGUE_LABEL);
        assert_eq!(PROLOGUE[PROLOGUE_LABEL.len()], VERSION);
    }

    #[test]
    fn message_sizes_are_as_documented() {
        let key = ServerKey::generate(&mut rng(1));
        for (pin, pattern) in [(Some(key.public()), Pattern::Nk), (None, Pattern::Nx)] {
            for len in [0, 16, MAX_PAYLOAD_LEN] {
                let payload = vec![7u8; len];
                let (client, first) = ClientHandshake::start(pin, &payload, &mut rng(2)).unwrap();
                assert_eq!(first.len(), pattern.first_len(len));
                assert_eq!(first[0], pattern as u8);
                let done = ServerHandshake::respond(&key, &first, &payload, &mut rng(3)).unwrap();
                assert_eq!(done.reply.len(), pattern.reply_len(len));
                assert_eq!(done.client_payload, payload);
                let fin = client.finish(&done.reply).unwrap();
                assert_eq!(fin.payload, payload);
                assert_eq!(fin.keys.handshake_hash(), done.keys.handshake_hash());
            }
        }
        assert_eq!(Pattern::Nk.first_len(MAX_PAYLOAD_LEN), 305);
        assert_eq!(Pattern::Nx.reply_len(MAX_PAYLOAD_LEN), 352);
    }

    #[test]
    fn payloads_longer_than_the_limit_are_refused() {
        let long = vec![0u8; MAX_PAYLOAD_LEN + 1];
        assert_eq!(
            ClientHandshake::start(None, &long, &mut rng(1)).unwrap_err(),
            HandshakeError::PayloadTooLong(MAX_PAYLOAD_LEN + 1)
        );
        let key = ServerKey::generate(&mut rng(1));
        let (_, first) = ClientHandshake::start(None, b"", &mut rng(2)).unwrap();
        let (server, _) = ServerHandshake::read(&key, &first, &mut rng(3)).unwrap();
        assert_eq!(
            server.reply(&long).unwrap_err(),
            HandshakeError::PayloadTooLong(MAX_PAYLOAD_LEN + 1)
        );
    }

    #[test]
    fn malformed_first_messages_have_their_own_errors() {
        let key = ServerKey::generate(&mut rng(1));
        let read = |m: &[u8]| ServerHandshake::read(&key, m, &mut rng(2)).unwrap_err();
        assert_eq!(read(b""), HandshakeError::Malformed("empty"));
        assert_eq!(
            read(&[0x03; 60]),
            HandshakeError::Malformed("unknown pattern byte")
        );
        assert_eq!(
            read(&[0x01; 48]),
            HandshakeError::Malformed("shorter than its pattern")
        );
        assert_eq!(
            read(&[0x02; 33 + MAX_PAYLOAD_LEN + 1]),
            HandshakeError::Malformed("longer than any payload allows")
        );
        let (client, _) = ClientHandshake::start(None, b"", &mut rng(2)).unwrap();
        assert_eq!(
            client.finish(&[0; 95]).unwrap_err(),
            HandshakeError::Malformed("shorter than its pattern")
        );
    }

    #[test]
    fn session_keys_do_not_show_in_debug() {
        let key = ServerKey::generate(&mut rng(1));
        let (_, first) = ClientHandshake::start(Some(key.public()), b"", &mut rng(2)).unwrap();
        let done = ServerHandshake::respond(&key, &first, b"", &mut rng(3)).unwrap();
        let shown = format!("{:?}", done.keys);
        assert!(
            shown.starts_with("SessionKeys {") && !shown.contains("send"),
            "{shown}"
        );
    }
}

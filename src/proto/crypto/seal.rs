//! Sealed datagrams: what both sides send once the handshake is done.
//!
//! # Layout
//!
//! | offset | size | field | value |
//! |---:|---:|---|---|
//! | 0 | 1 | version | the protocol version ([`VERSION`], `0x03`) |
//! | 1 | 1 | kind | `0x40` (SEALED) with bit 0 the key phase (`0x40` or `0x41`); other bits 0 |
//! | 2 | 6 | packet number | 48 bits, big-endian |
//! | 8 | N | ciphertext | the plaintext, ChaCha20-Poly1305-encrypted |
//! | 8+N | 16 | tag | Poly1305 tag over the header (associated data) and ciphertext |
//!
//! The 8-byte header travels in clear and is the AEAD's associated data;
//! the nonce is the packet number (Noise's ChaChaPoly nonce: 4 zero bytes
//! and the number, little-endian). A sealed datagram is 24 bytes longer
//! than its plaintext ([`OVERHEAD`]). A plain datagram starts with `RU`
//! (`0x52`), a sealed one with the version byte, so the two never look
//! alike.
//!
//! **Packet numbers** count from 0 in each direction and are sent whole,
//! in 48 bits rather than truncated as QUIC does: a receiver needs no
//! state to expand them (a truncated number decoded against the wrong
//! base is a datagram that fails to open for no fault of its own), and at
//! ten million datagrams a second 2^48 lasts 325 days, when a session
//! would be exhausted ([`SealError::Exhausted`]). Six bytes instead of
//! eight keep the header to 8 bytes on datagrams that are mostly
//! 20-30 bytes long.
//!
//! **Key phases.** Each direction's key changes every
//! [`KEY_UPDATE_INTERVAL`] datagrams: packet number `pn` is sealed in
//! phase `pn / KEY_UPDATE_INTERVAL` with the key of the phase before it
//! passed through Noise's REKEY (snow's `rekey`). The phase bit is the
//! phase's lowest bit; a receiver derives the phase from the number (so
//! a long run of losses cannot make it lose count) and refuses a datagram
//! whose bit disagrees before any cryptography. It keeps the current
//! phase's key and the previous one's: the previous key is kept as long as
//! any of its packet numbers can still be inside the replay window (a
//! reordered datagram from before the update opens), then wiped. A
//! datagram up to [`MAX_PHASES_AHEAD`] phases ahead is tried with keys
//! derived for it, kept only if it authenticates.
//!
//! The ciphers are snow's (its default resolver's ChaCha20-Poly1305); the
//! keys come from the handshake's split (`SessionKeys`). Nothing here is a
//! cryptographic primitive.

use snow::types::Cipher;
use zeroize::Zeroizing;

use super::replay::{ReplayWindow, Verdict};
use super::resolver::chacha_poly;
use crate::proto::wire::VERSION;

/// Bytes of the clear header.
pub const HEADER_LEN: usize = 8;
/// Bytes of the Poly1305 tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed datagram adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The kind byte of a sealed datagram in key phase 0 (phase 1: `0x41`).
pub const KIND_SEALED: u8 = 0x40;
/// The kind byte of a routed sealed datagram (what the protocol sends,
/// see [`Sealer::seal_routed`]) in key phase 0 (phase 1: `0x43`).
pub const KIND_ROUTED: u8 = 0x42;
/// Bytes of the clear routing id of a routed datagram.
pub const ROUTE_LEN: usize = 8;
/// Bytes of a routed datagram's clear header (header, then routing id).
pub const ROUTED_HEADER_LEN: usize = HEADER_LEN + ROUTE_LEN;
/// Bytes a routed sealed datagram adds to its plaintext.
pub const ROUTED_OVERHEAD: usize = OVERHEAD + ROUTE_LEN;

/// Whether `datagram` is framed as a routed sealed datagram (its length,
/// version and kind byte; nothing is authenticated).
pub fn is_routed(datagram: &[u8]) -> bool {
    datagram.len() >= ROUTED_OVERHEAD
        && datagram[0] == VERSION
        && datagram[1] & !PHASE_BIT == KIND_ROUTED
}

/// The clear routing id of a routed datagram (see [`is_routed`]).
pub fn route_of(datagram: &[u8]) -> Option<[u8; ROUTE_LEN]> {
    if !is_routed(datagram) {
        return None;
    }
    let mut id = [0u8; ROUTE_LEN];
    id.copy_from_slice(&datagram[HEADER_LEN..ROUTED_HEADER_LEN]);
    Some(id)
}
/// The key-phase bit of the kind byte.
pub const PHASE_BIT: u8 = 0x01;
/// The highest packet number (48 bits).
pub const MAX_PACKET_NUMBER: u64 = (1 << 48) - 1;
/// Datagrams sealed under one key before the sender moves to the next
/// key phase (2^20: a little over a gigabyte of 1,200-byte datagrams).
pub const KEY_UPDATE_INTERVAL: u64 = 1 << 20;
/// How many phases past its current one a receiver tries a datagram in.
pub const MAX_PHASES_AHEAD: u64 = 4;

/// Why a plaintext could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The output buffer is shorter than the sealed datagram.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes the sealed datagram takes.
        needed: usize,
    },
    /// Every packet number was used: the session must end.
    #[error("packet numbers exhausted")]
    Exhausted,
}

/// What is wrong with a datagram before any cryptography.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Malformation {
    /// Shorter than a header and a tag.
    #[error("{0} bytes, shorter than a sealed datagram can be")]
    TooShort(usize),
    /// Another protocol version.
    #[error("version {0}")]
    Version(u8),
    /// Not the SEALED kind, or reserved bits set.
    #[error("kind {0:#04x}")]
    Kind(u8),
    /// The phase bit disagrees with the packet number's phase.
    #[error("key phase bit disagrees with the packet number")]
    PhaseBit,
}

/// Why a datagram did not open. Every variant but
/// [`BufferTooSmall`](Self::BufferTooSmall) (the caller's mistake) is
/// counted in [`OpenStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not a sealed datagram of ours: wrong length, version, kind or phase
    /// bit.
    #[error("malformed sealed datagram: {0}")]
    Malformed(Malformation),
    /// It does not authenticate: damaged, forged, or sealed with a key
    /// this side does not hold.
    #[error("undecryptable datagram")]
    Undecryptable,
    /// Authentic, and already opened once.
    #[error("replayed datagram")]
    Replayed,
    /// Below the replay window (or in a key phase already wiped): it
    /// cannot be told from a replay.
    #[error("datagram too old")]
    TooOld,
    /// The output buffer is shorter than the plaintext.
    #[error("output buffer too small: {needed} bytes needed")]
    BufferTooSmall {
        /// Bytes of the plaintext.
        needed: usize,
    },
}

/// An opener's counts: every datagram handed to it is opened or counted
/// under one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// Opened.
    pub opened: u64,
    /// Rejected as [`OpenError::Malformed`].
    pub malformed: u64,
    /// Rejected as [`OpenError::Undecryptable`].
    pub undecryptable: u64,
    /// Rejected as [`OpenError::Replayed`].
    pub replayed: u64,
    /// Rejected as [`OpenError::TooOld`].
    pub too_old: u64,
}

impl OpenStats {
    /// Every rejected datagram.
    pub fn rejected(&self) -> u64 {
        self.malformed + self.undecryptable + self.replayed + self.too_old
    }
}

fn header(kind: u8, pn: u64, phase: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1] = kind | (phase & 1) as u8;
    h[2..].copy_from_slice(&pn.to_be_bytes()[2..]);
    h
}

/// The cipher of the phase after `cipher`'s: Noise's REKEY (§4.2), the
/// first 32 bytes of the encryption of 32 zero bytes under nonce 2^64-1,
/// computed as snow's default `rekey` does but into a new cipher, so that
/// `cipher` stays usable.
fn next_phase(cipher: &dyn Cipher) -> Box<dyn Cipher> {
    let mut block = Zeroizing::new([0u8; 32 + TAG_LEN]);
    cipher.encrypt(u64::MAX, &[], &[0u8; 32], &mut block[..]);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&block[..32]);
    chacha_poly(&key)
}

/// Seals this side's datagrams, numbering them from 0.
pub struct Sealer {
    cipher: Box<dyn Cipher>,
    phase: u64,
    next: u64,
    interval: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("phase", &self.phase)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32], interval: u64) -> Self {
        Self {
            cipher: chacha_poly(key),
            phase: 0,
            next: 0,
            interval: interval.max(1),
        }
    }

    /// Seals `plaintext` into `out` as the next datagram; returns its
    /// length ([`OVERHEAD`] more than the plaintext's).
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        self.seal_with(KIND_SEALED, &[], plaintext, out)
    }

    /// Seals `plaintext` as the next datagram with `route` in clear after
    /// the header ([`ROUTED_HEADER_LEN`] bytes of associated data), so that
    /// a receiver finds the session's opener without trying any; returns
    /// its length ([`ROUTED_OVERHEAD`] more than the plaintext's).
    pub fn seal_routed(
        &mut self,
        route: &[u8; ROUTE_LEN],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        self.seal_with(KIND_ROUTED, route, plaintext, out)
    }

    fn seal_with(
        &mut self,
        kind: u8,
        ext: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SealError> {
        let head = HEADER_LEN + ext.len();
        let len = OVERHEAD + ext.len() + plaintext.len();
        if out.len() < len {
            return Err(SealError::BufferTooSmall { needed: len });
        }
        let pn = self.next;
        if pn > MAX_PACKET_NUMBER {
            return Err(SealError::Exhausted);
        }
        let phase = pn / self.interval;
        while self.phase < phase {
            self.cipher.rekey();
            self.phase += 1;
        }
        let h = header(kind, pn, phase);
        out[..HEADER_LEN].copy_from_slice(&h);
        out[HEADER_LEN..head].copy_from_slice(ext);
        let (aad, body) = out[..len].split_at_mut(head);
        self.cipher.encrypt(pn, aad, plaintext, body);
        self.next += 1;
        Ok(len)
    }

    /// The packet number the next datagram gets.
    pub fn next_packet_number(&self) -> u64 {
        self.next
    }

    /// The key phase of the last datagram sealed (0 before any).
    pub fn phase(&self) -> u64 {
        self.phase
    }
}

/// One key phase's cipher.
struct Phase {
    number: u64,
    cipher: Box<dyn Cipher>,
}

/// Opens the peer's datagrams: authenticates, decrypts, refuses replays,
/// follows the peer's key phases, counts.
pub struct Opener {
    current: Phase,
    /// The phase before `current`, while its datagrams can still arrive.
    previous: Option<Phase>,
    window: ReplayWindow,
    interval: u64,
    stats: OpenStats,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("phase", &self.current.number)
            .field("highest", &self.window.highest())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Opener {
    pub(crate) fn new(key: &[u8; 32], interval: u64) -> Self {
        Self {
            current: Phase {
                number: 0,
                cipher: chacha_poly(key),
            },
            previous: None,
            window: ReplayWindow::new(),
            interval: interval.max(1),
            stats: OpenStats::default(),
        }
    }

    /// Opens `datagram` into `out`; returns the plaintext's length. The
    /// replay window and the key phase move only for a datagram that
    /// authenticated.
    pub fn open(&mut self, datagram: &[u8], out: &mut [u8]) -> Result<usize, OpenError> {
        self.open_counted(KIND_SEALED, 0, datagram, out)
    }

    /// Opens a routed datagram ([`Sealer::seal_routed`]) into `out`; the
    /// routing id is authenticated with the header.
    pub fn open_routed(&mut self, datagram: &[u8], out: &mut [u8]) -> Result<usize, OpenError> {
        self.open_counted(KIND_ROUTED, ROUTE_LEN, datagram, out)
    }

    fn open_counted(
        &mut self,
        kind: u8,
        ext: usize,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<usize, OpenError> {
        let result = self.open_unrecorded(kind, ext, datagram, out);
        let s = &mut self.stats;
        match result {
            Ok(_) => s.opened += 1,
            Err(OpenError::Malformed(_)) => s.malformed += 1,
            Err(OpenError::Undecryptable) => s.undecryptable += 1,
            Err(OpenError::Replayed) => s.replayed += 1,
            Err(OpenError::TooOld) => s.too_old += 1,
            Err(OpenError::BufferTooSmall { .. }) => {}
        }
        result
    }

    fn open_unrecorded(
        &mut self,
        kind: u8,
        ext: usize,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Result<usize, OpenError> {
        if datagram.len() < OVERHEAD + ext {
            return Err(OpenError::Malformed(Malformation::TooShort(datagram.len())));
        }
        let plain_len = datagram.len() - OVERHEAD - ext;
        if out.len() < plain_len {
            return Err(OpenError::BufferTooSmall { needed: plain_len });
        }
        let (aad, sealed) = datagram.split_at(HEADER_LEN + ext);
        let h = &aad[..HEADER_LEN];
        if h[0] != VERSION {
            return Err(OpenError::Malformed(Malformation::Version(h[0])));
        }
        if h[1] & !PHASE_BIT != kind {
            return Err(OpenError::Malformed(Malformation::Kind(h[1])));
        }
        let mut pn_bytes = [0u8; 8];
        pn_bytes[2..].copy_from_slice(&h[2..]);
        let pn = u64::from_be_bytes(pn_bytes);
        let phase = pn / self.interval;
        if u64::from(h[1] & PHASE_BIT) != phase & 1 {
            return Err(OpenError::Malformed(Malformation::PhaseBit));
        }
        if self.window.check(pn) == Verdict::TooOld {
            return Err(OpenError::TooOld);
        }
        let current = self.current.number;
        // Keys of the phases after the current one up to `phase`, derived
        // for this datagram and kept only if it opens.
        let mut ahead: Vec<Phase> = Vec::new();
        let cipher: &dyn Cipher = if phase == current {
            &*self.current.cipher
        } else if phase < current {
            match &self.previous {
                Some(p) if p.number == phase => &*p.cipher,
                _ => return Err(OpenError::TooOld),
            }
        } else if phase - current > MAX_PHASES_AHEAD {
            return Err(OpenError::Undecryptable);
        } else {
            for number in current + 1..=phase {
                let before = ahead.last().map_or(&*self.current.cipher, |p| &*p.cipher);
                let cipher = next_phase(before);
                ahead.push(Phase { number, cipher });
            }
            // Just filled with at least one phase (phase > current).
            &*ahead.last().expect("phases ahead").cipher
        };
        let n = cipher
            .decrypt(pn, aad, sealed, &mut out[..plain_len])
            .map_err(|_| OpenError::Undecryptable)?;
        if self.window.check(pn) == Verdict::Replayed {
            return Err(OpenError::Replayed);
        }
        self.window.commit(pn);
        if let Some(newest) = ahead.pop() {
            let old = std::mem::replace(&mut self.current, newest);
            self.previous = Some(ahead.pop().unwrap_or(old));
        }
        // The previous phase's last number below the window: its key can
        // open nothing more.
        let start = self.current.number * self.interval;
        if self.previous.is_some() && start > 0 && self.window.is_below(start - 1) {
            self.previous = None;
        }
        Ok(n)
    }

    /// The counts so far.
    pub fn stats(&self) -> OpenStats {
        self.stats
    }

    /// The peer's key phase, as far as this side has followed it.
    pub fn phase(&self) -> u64 {
        self.current.number
    }

    /// Whether the previous phase's key is still held.
    pub fn holds_previous_phase(&self) -> bool {
        self.previous.is_some()
    }

    /// The highest packet number opened.
    pub fn highest(&self) -> Option<u64> {
        self.window.highest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(interval: u64) -> (Sealer, Opener) {
        let key = [9u8; 32];
        (Sealer::new(&key, interval), Opener::new(&key, interval))
    }

    fn seal(s: &mut Sealer, msg: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; msg.len() + OVERHEAD];
        let n = s.seal(msg, &mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    fn open(o: &mut Opener, d: &[u8]) -> Result<Vec<u8>, OpenError> {
        let mut out = vec![0u8; d.len()];
        let n = o.open(d, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn the_header_is_laid_out_as_documented() {
        let (mut s, _) = pair(KEY_UPDATE_INTERVAL);
        let d0 = seal(&mut s, b"hello");
        assert_eq!(&d0[..HEADER_LEN], &[VERSION, 0x40, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d0.len(), 5 + 24);
        let d1 = seal(&mut s, b"");
        assert_eq!(&d1[..HEADER_LEN], &[VERSION, 0x40, 0, 0, 0, 0, 0, 1]);
        let mut s = Sealer {
            next: 0x0102_0304_0506,
            phase: 0x0102_0304_0506 >> 20,
            ..pair(1 << 20).0
        };
        let d = seal(&mut s, b"x");
        // Phase 0x0102_0304_0506 >> 20 = 0x10_2030, even: bit 0 clear.
        assert_eq!(&d[..HEADER_LEN], &[VERSION, 0x40, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn seal_then_open_round_trips_and_counts() {
        let (mut s, mut o) = pair(KEY_UPDATE_INTERVAL);
        for i in 0..100u32 {
            let msg = i.to_be_bytes().repeat(i as usize % 7);
            assert_eq!(open(&mut o, &seal(&mut s, &msg)).unwrap(), msg);
        }
        assert_eq!(o.stats().opened, 100);
        assert_eq!(o.stats().rejected(), 0);
        assert_eq!(o.highest(), Some(99));
    }

    #[test]
    fn buffers_too_small_are_refused_without_panicking_or_counting() {
        let (mut s, mut o) = pair(KEY_UPDATE_INTERVAL);
        let mut small = [0u8; 10];
        assert_eq!(
            s.seal(b"abc", &mut small),
            Err(SealError::BufferTooSmall { needed: 27 })
        );
        assert_eq!(s.next_packet_number(), 0, "a failed seal uses no number");
        let d = seal(&mut s, b"abcdef");
        assert_eq!(
            o.open(&d, &mut [0u8; 5]),
            Err(OpenError::BufferTooSmall { needed: 6 })
        );
        assert_eq!(o.stats(), OpenStats::default());
        assert_eq!(open(&mut o, &d).unwrap(), b"abcdef");
    }

    #[test]
    fn malformations_are_told_apart() {
        let (mut s, mut o) = pair(KEY_UPDATE_INTERVAL);
        let d = seal(&mut s, b"data");
        let with = |i: usize, b: u8| {
            let mut x = d.clone();
            x[i] = b;
            x
        };
        assert_eq!(
            open(&mut o, &d[..23]),
            Err(OpenError::Malformed(Malformation::TooShort(23)))
        );
        assert_eq!(
            open(&mut o, &with(0, 0x52)),
            Err(OpenError::Malformed(Malformation::Version(0x52)))
        );
        assert_eq!(
            open(&mut o, &with(1, 0x42)),
            Err(OpenError::Malformed(Malformation::Kind(0x42)))
        );
        assert_eq!(
            open(&mut o, &with(1, 0x41)),
            Err(OpenError::Malformed(Malformation::PhaseBit))
        );
        assert_eq!(o.stats().malformed, 4);
        assert_eq!(open(&mut o, &d).unwrap(), b"data");
    }

    #[test]
    fn the_two_rekeys_agree() {
        // The sealer moves phases with snow's `rekey`, the opener with
        // `next_phase`: phase 3 opens only if they compute the same keys.
        let (mut s, mut o) = pair(2);
        let mut last = Vec::new();
        for _ in 0..8 {
            last = seal(&mut s, b"k");
        }
        assert_eq!(s.phase(), 3);
        assert_eq!(last[1], KIND_SEALED | 1);
        assert_eq!(open(&mut o, &last).unwrap(), b"k");
        assert_eq!(o.phase(), 3);
    }

    #[test]
    fn more_phases_ahead_than_allowed_is_undecryptable_and_changes_nothing() {
        let interval = 4;
        let (mut s, mut o) = pair(interval);
        let mut far = Vec::new();
        for _ in 0..(MAX_PHASES_AHEAD + 1) * interval + 1 {
            far = seal(&mut s, b"f");
        }
        assert_eq!(open(&mut o, &far), Err(OpenError::Undecryptable));
        assert_eq!((o.phase(), o.highest()), (0, None));
    }

    #[test]
    fn exhausted_packet_numbers_are_refused() {
        let mut s = Sealer {
            next: MAX_PACKET_NUMBER,
            phase: MAX_PACKET_NUMBER / KEY_UPDATE_INTERVAL,
            ..pair(KEY_UPDATE_INTERVAL).0
        };
        let mut out = [0u8; 64];
        assert!(s.seal(b"last", &mut out).is_ok());
        assert_eq!(s.seal(b"one more", &mut out), Err(SealError::Exhausted));
    }
}

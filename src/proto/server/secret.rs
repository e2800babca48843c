//! The server secret and what it authenticates: retry tokens (stateless
//! address validation, as QUIC's Retry, RFC 9000 §8.1.2).
//!
//! A retry token is 16 bytes: the second it was issued (4 bytes, big-endian,
//! since the endpoint first ran) and the first 12 bytes of
//! HMAC-SHA256(key, label ‖ issued ‖ uuid ‖ len ‖ client address). The
//! server keeps no state for it; a client that comes back with a valid,
//! fresh token from the same address has proven it receives what is sent
//! there. 96 bits of MAC leave an online forger one chance in 2^96 a try.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::proto::wire::RETRY_TOKEN_LEN;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the issue time at the front of a retry token.
const ISSUED_LEN: usize = 4;

/// Domain separation for the MAC input.
const LABEL: &[u8] = b"risp-udp retry v1";

/// The key retry tokens are made with.
#[derive(Clone)]
pub(crate) struct Secret {
    /// HMAC-SHA256 keyed with the secret, cloned for each token.
    keyed: HmacSha256,
    /// Zero of the tokens' clock: the first time the endpoint ran.
    epoch: Option<Instant>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a retry token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryCheck {
    /// Made by us, for this client, recently.
    Valid,
    /// Made by us for this client, but too long ago.
    Expired,
    /// Not made by us for this UUID, length and address.
    Forged,
}

impl Secret {
    /// A secret with this key.
    pub(crate) fn new(key: [u8; 32]) -> Self {
        // HMAC takes keys of every length (RFC 2104 §2): this cannot fail.
        let keyed = match HmacSha256::new_from_slice(&key) {
            Ok(m) => m,
            Err(_) => unreachable_key(),
        };
        Self { keyed, epoch: None }
    }

    /// Starts the tokens' clock if it has not started.
    pub(crate) fn start(&mut self, now: Instant) {
        self.epoch.get_or_insert(now);
    }

    fn seconds(&self, now: Instant) -> u32 {
        let since = self
            .epoch
            .map_or(Duration::ZERO, |e| now.saturating_duration_since(e));
        u32::try_from(since.as_secs()).unwrap_or(u32::MAX)
    }

    fn mac(&self, issued: [u8; ISSUED_LEN], uuid: &Uuid, len: u32, addr: SocketAddr) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(LABEL);
        mac.update(&issued);
        mac.update(uuid.as_bytes());
        mac.update(&len.to_be_bytes());
        match addr {
            SocketAddr::V4(a) => {
                mac.update(&[4]);
                mac.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                mac.update(&[6]);
                mac.update(&a.ip().octets());
            }
        }
        mac.update(&addr.port().to_be_bytes());
        mac
    }

    /// A retry token for a CONNECTING from `addr`.
    pub(crate) fn retry_token(
        &self,
        now: Instant,
        uuid: &Uuid,
        len: u32,
        addr: SocketAddr,
    ) -> [u8; RETRY_TOKEN_LEN] {
        let issued = self.seconds(now).to_be_bytes();
        let tag = self.mac(issued, uuid, len, addr).finalize().into_bytes();
        let mut token = [0u8; RETRY_TOKEN_LEN];
        token[..ISSUED_LEN].copy_from_slice(&issued);
        token[ISSUED_LEN..].copy_from_slice(&tag[..RETRY_TOKEN_LEN - ISSUED_LEN]);
        token
    }

    /// Checks a retry token presented by a CONNECTING from `addr`; tokens
    /// older than `lifetime` are expired.
    pub(crate) fn check_retry_token(
        &self,
        now: Instant,
        token: &[u8],
        uuid: &Uuid,
        len: u32,
        addr: SocketAddr,
        lifetime: Duration,
    ) -> RetryCheck {
        if token.len() != RETRY_TOKEN_LEN {
            return RetryCheck::Forged;
        }
        let mut issued = [0u8; ISSUED_LEN];
        issued.copy_from_slice(&token[..ISSUED_LEN]);
        let mac = self.mac(issued, uuid, len, addr);
        if mac.verify_truncated_left(&token[ISSUED_LEN..]).is_err() {
            return RetryCheck::Forged;
        }
        let issued = u64::from(u32::from_be_bytes(issued));
        let age = u64::from(self.seconds(now)).checked_sub(issued);
        // Whole seconds: a token issued late in a second is good for up to
        // one second longer than `lifetime`.
        match age {
            Some(age) if age <= lifetime.as_secs() => RetryCheck::Valid,
            _ => RetryCheck::Expired,
        }
    }
}

#[cold]
fn unreachable_key() -> ! {
    panic!("HMAC-SHA256 refused a 32-byte key")
}

/// Compares two byte strings in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_token_is_valid_only_for_its_uuid_length_address_and_key() {
        let now = crate::clock::now();
        let mut s = Secret::new([1; 32]);
        s.start(now);
        let u = Uuid::from_u128(5);
        let t = s.retry_token(now, &u, 100, addr(1));
        let life = Duration::from_secs(10);
        let check =
            |s: &Secret, tok: &[u8], u, len, a| s.check_retry_token(now, tok, &u, len, a, life);
        assert_eq!(check(&s, &t, u, 100, addr(1)), RetryCheck::Valid);
        assert_eq!(
            check(&s, &t, Uuid::from_u128(6), 100, addr(1)),
            RetryCheck::Forged
        );
        assert_eq!(check(&s, &t, u, 101, addr(1)), RetryCheck::Forged);
        assert_eq!(check(&s, &t, u, 100, addr(2)), RetryCheck::Forged);
        let v6 = SocketAddr::from(([0, 0, 0, 0, 0, 0xffff, 0x0a00, 1], 1));
        assert_eq!(check(&s, &t, u, 100, v6), RetryCheck::Forged);
        let mut other = Secret::new([2; 32]);
        other.start(now);
        assert_eq!(check(&other, &t, u, 100, addr(1)), RetryCheck::Forged);
        let mut flipped = t;
        flipped[RETRY_TOKEN_LEN - 1] ^= 1;
        assert_eq!(check(&s, &flipped, u, 100, addr(1)), RetryCheck::Forged);
        assert_eq!(check(&s, &t[..15], u, 100, addr(1)), RetryCheck::Forged);
    }

    #[test]
    fn tokens_expire_and_a_moved_issue_time_is_a_forgery() {
        let start = crate::clock::now();
        let mut s = Secret::new([3; 32]);
        s.start(start);
        let u = Uuid::from_u128(7);
        let t = s.retry_token(start + Duration::from_secs(5), &u, 1, addr(1));
        let life = Duration::from_secs(10);
        let at = |secs| start + Duration::from_secs(secs);
        assert_eq!(
            s.check_retry_token(at(15), &t, &u, 1, addr(1), life),
            RetryCheck::Valid
        );
        assert_eq!(
            s.check_retry_token(at(16), &t, &u, 1, addr(1), life),
            RetryCheck::Expired
        );
        // Issued "in the future" (clock tampering) is not accepted either.
        assert_eq!(
            s.check_retry_token(at(4), &t, &u, 1, addr(1), life),
            RetryCheck::Expired
        );
        let mut later = t;
        later[3] = later[3].wrapping_add(10);
        assert_eq!(
            s.check_retry_token(at(16), &later, &u, 1, addr(1), life),
            RetryCheck::Forged
        );
    }

    #[test]
    fn constant_time_eq_compares_lengths_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}

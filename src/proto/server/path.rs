//! Path validation: which addresses have proven that they receive what the
//! server sends to a session, and how much may go to one that has not.
//!
//! A session's token proves who the client is, not where it is: the client
//! itself (or anyone who saw the token on the path) can put any source
//! address on a token-bearing datagram. So, as QUIC does (RFC 9000 §8-9),
//! an address is trusted only after it answered something unpredictable
//! the server sent there:
//! - the handshake address, when the client first presents the token the
//!   Accept carried to it;
//! - an address that came back with a retry token (stateless validation);
//! - a new address that echoed a fresh path challenge (the client appends
//!   the challenge to its token).
//!
//! Until then the server sends a new address at most three times the bytes
//! it received from it, replies included, so that a spoofed source address
//! cannot turn the server into an amplifier.

use std::net::SocketAddr;

use crate::proto::wire::CHALLENGE_LEN;

/// Validated addresses remembered per session, so that a client that goes
/// back to an address it proved (a flapping NAT binding, a second
/// interface) is not challenged again.
const REMEMBERED: usize = 4;

/// The anti-amplification factor (RFC 9000 §8.1).
const AMPLIFICATION: u64 = 3;

/// A session's path state: the current address is either validated, or
/// under a byte budget with a challenge outstanding.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// Proven addresses, oldest first.
    validated: Vec<SocketAddr>,
    /// The current address is one of them.
    current_validated: bool,
    /// Bytes received from the current address since it became current,
    /// while it is not validated.
    received: u64,
    /// Bytes sent to it meanwhile.
    sent: u64,
    /// What the current address must echo.
    challenge: Option<[u8; CHALLENGE_LEN]>,
}

/// What a change of address meant for validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// Same address as before.
    Stayed,
    /// Back to an address proven before.
    ToValidated,
    /// To an address never proven: the budget applies until it echoes a
    /// challenge.
    ToUnvalidated,
}

impl Path {
    /// A path whose address has proven nothing yet (a new session: the
    /// CONNECTING's source may be spoofed).
    pub(crate) fn unvalidated() -> Self {
        Self {
            validated: Vec::new(),
            current_validated: false,
            received: 0,
            sent: 0,
            challenge: None,
        }
    }

    /// A path whose address is proven (it came back with a retry token).
    pub(crate) fn validated(addr: SocketAddr) -> Self {
        Self {
            validated: vec![addr],
            current_validated: true,
            ..Self::unvalidated()
        }
    }

    /// True when the current address has proven it receives our sends.
    pub(crate) fn is_validated(&self) -> bool {
        self.current_validated
    }

    /// Issues `value` as the challenge for the current address, unless one
    /// is outstanding (answers to the first may be in flight); returns the
    /// challenge to send.
    pub(crate) fn challenge_or(&mut self, value: [u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
        *self.challenge.get_or_insert(value)
    }

    /// The session moved from `old` to `new`.
    pub(crate) fn on_move(&mut self, old: SocketAddr, new: SocketAddr) -> Move {
        if old == new {
            return Move::Stayed;
        }
        self.received = 0;
        self.sent = 0;
        self.challenge = None;
        self.current_validated = self.validated.contains(&new);
        if self.current_validated {
            Move::ToValidated
        } else {
            Move::ToUnvalidated
        }
    }

    /// `addr` (the current address) proved itself: by presenting the token
    /// the handshake sent only there, or by echoing the challenge.
    pub(crate) fn validate(&mut self, addr: SocketAddr) {
        self.current_validated = true;
        self.challenge = None;
        self.received = 0;
        self.sent = 0;
        self.validated.retain(|a| *a != addr);
        if self.validated.len() == REMEMBERED {
            self.validated.remove(0);
        }
        self.validated.push(addr);
    }

    /// True if `response` answers the outstanding challenge.
    pub(crate) fn is_answer(&self, response: &[u8]) -> bool {
        self.challenge
            .is_some_and(|c| super::secret::constant_time_eq(&c, response))
    }

    /// Bytes arrived from the current address.
    pub(crate) fn on_received(&mut self, bytes: usize) {
        if !self.current_validated {
            self.received = self.received.saturating_add(bytes as u64);
        }
    }

    /// Bytes went to the current address.
    pub(crate) fn on_sent(&mut self, bytes: usize) {
        if !self.current_validated {
            self.sent = self.sent.saturating_add(bytes as u64);
        }
    }

    /// Bytes the current address may still be sent (unlimited once
    /// validated).
    pub(crate) fn allowance(&self) -> u64 {
        if self.current_validated {
            u64::MAX
        } else {
            (AMPLIFICATION * self.received).saturating_sub(self.sent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_unvalidated_address_gets_three_times_what_it_sent() {
        let mut p = Path::unvalidated();
        assert_eq!(p.allowance(), 0);
        p.on_received(100);
        assert_eq!(p.allowance(), 300);
        p.on_sent(250);
        assert_eq!(p.allowance(), 50);
        p.on_sent(100);
        assert_eq!(p.allowance(), 0, "overspent budgets do not wrap");
    }

    #[test]
    fn moving_resets_the_budget_and_only_known_addresses_skip_validation() {
        let mut p = Path::validated(addr(1));
        assert_eq!(p.on_move(addr(1), addr(1)), Move::Stayed);
        assert_eq!(p.on_move(addr(1), addr(2)), Move::ToUnvalidated);
        assert_eq!(p.allowance(), 0);
        let c = p.challenge_or([7; CHALLENGE_LEN]);
        assert_eq!(
            p.challenge_or([9; CHALLENGE_LEN]),
            c,
            "an outstanding challenge is kept"
        );
        assert!(!p.is_answer(&[9; CHALLENGE_LEN]));
        assert!(p.is_answer(&c));
        p.validate(addr(2));
        assert!(p.is_validated());
        assert!(!p.is_answer(&c), "a validated path has no challenge");
        assert_eq!(p.on_move(addr(2), addr(1)), Move::ToValidated);
        assert_eq!(p.on_move(addr(1), addr(2)), Move::ToValidated);
    }

    #[test]
    fn only_the_newest_validated_addresses_are_remembered() {
        let mut p = Path::unvalidated();
        for port in 1..=(REMEMBERED as u16 + 1) {
            p.validate(addr(port));
        }
        let last = addr(REMEMBERED as u16 + 1);
        assert_eq!(p.on_move(last, addr(1)), Move::ToUnvalidated);
        assert_eq!(p.on_move(addr(1), addr(2)), Move::ToValidated);
    }
}

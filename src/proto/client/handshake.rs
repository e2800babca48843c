//! The client's handshake and ending: the server's Accept, its refusals,
//! the checksum, starting over under a new UUID, and the token field the
//! client writes from what the handshake gave it.

use std::time::Instant;

use uuid::Uuid;

use super::{BadRequest, Client, ClientError, ClientEvent, LostReason, CHALLENGE_ANSWERS};
use crate::proto::sequence::RunningChecksum;
use crate::proto::wire::{ErrorCode, State, CHALLENGE_LEN, MAX_TOKEN_LEN, RETRY_TOKEN_LEN};

impl Client {
    pub(super) fn on_accept(&mut self, now: Instant, token: &[u8]) {
        match self.token.as_deref() {
            Some(t) if t != token => {
                // Not for us: a server issues a token only in answer to a
                // CONNECTING without one, which we no longer send (a stray
                // for an earlier owner of our port, or a forgery). If the
                // server lost our session, our token-bearing messages will
                // hear so.
                self.stats.invalid += 1;
                return;
            }
            Some(_) => {}
            None => {
                self.token = Some(token.to_vec());
                self.retry_token = None;
                self.token_since = self.timestamp(now);
            }
        }
        if self.state != State::Connecting {
            return;
        }
        // This server knows the session.
        if let Some(r) = self.refused.get_mut(self.server as usize) {
            *r = false;
        }
        self.set_state(State::Connected);
        self.events.push_back(ClientEvent::Connected);
        self.deliver(now);
        self.arm_retransmit(now);
        // Acknowledge at once: confirms the session and carries our holes.
        self.ack_now = true;
        self.maybe_closing(now);
    }

    /// The server wants our address proven before it opens a session:
    /// send CONNECTING again at once, with its token.
    pub(super) fn on_retry(&mut self, now: Instant, token: [u8; RETRY_TOKEN_LEN], echo: u64) {
        if self.state != State::Connecting
            || self.token.is_some()
            || echo == 0
            || echo > self.timestamp(now)
        {
            // Not an answer to a handshake of ours.
            self.stats.invalid += 1;
            return;
        }
        self.stats.retries += 1;
        self.retry_token = Some(token);
        self.send_pending = true;
    }

    /// The server saw us at a new address: prove it by echoing the
    /// challenge on the next few messages (the first at once).
    pub(super) fn on_challenge(&mut self, challenge: [u8; CHALLENGE_LEN]) {
        if self.token.is_none() {
            // We hold no session to prove anything for.
            self.stats.invalid += 1;
            return;
        }
        self.stats.path_challenges += 1;
        self.challenge = Some((challenge, CHALLENGE_ANSWERS));
        match self.state {
            State::Connected => self.ack_now = true,
            State::Closing | State::Closed => self.send_pending = true,
            State::Connecting => {}
        }
    }

    pub(super) fn on_checksum(&mut self, now: Instant, checksum: u64) {
        if self.state != State::Closing {
            // Late duplicate after we moved on: harmless.
            if self.state != State::Closed {
                self.stats.invalid += 1;
            }
            return;
        }
        if checksum != self.sum.sum() {
            self.fail(ClientError::ChecksumMismatch {
                expected: checksum,
                actual: self.sum.sum(),
            });
            return;
        }
        self.events.push_back(ClientEvent::Verified { checksum });
        self.set_state(State::Closed);
        self.send_pending = true;
        self.arm_retransmit(now);
    }

    pub(super) fn on_error(&mut self, code: ErrorCode, detail: u32, echo: u64) {
        if self.token.is_none()
            && self.state == State::Connecting
            && matches!(code, ErrorCode::Unauthorized | ErrorCode::UnknownSession)
        {
            // The handshake never completed and the server will not let us
            // continue it (our address changed under us, or the UUID is in
            // use elsewhere): start over under a new UUID. Nothing has been
            // delivered yet, so nothing is lost.
            self.restart();
            return;
        }
        if code == ErrorCode::Unauthorized && echo < self.token_since {
            // The answer to a message we sent before we held the token
            // (a duplicate CONNECTING the network delayed): not about us now.
            self.stats.invalid += 1;
            return;
        }
        if self.state == State::Closed && code == ErrorCode::UnknownSession {
            // The server dropped the session after our CLOSED: done.
            self.complete();
            return;
        }
        if code == ErrorCode::UnknownSession && self.config.servers > 1 {
            // Another server may have it (they share a session store).
            // Once every one of them refused, none will.
            if let Some(r) = self.refused.get_mut(self.server as usize) {
                *r = true;
            }
            if self.lost.is_none()
                && !self.refused.iter().all(|&r| r)
                && self.lose_server(LostReason::UnknownSession)
            {
                return;
            }
            if self.lost.is_some() {
                // A second copy of the refusal: already moving.
                return;
            }
        }
        let err = match code {
            ErrorCode::UnknownSession => ClientError::SessionExpired,
            ErrorCode::Busy => ClientError::ServerBusy,
            ErrorCode::LenTooLarge => {
                ClientError::BadRequest(BadRequest::LenTooLarge { max: detail })
            }
            ErrorCode::LenMismatch => {
                ClientError::BadRequest(BadRequest::LenMismatch { session: detail })
            }
            ErrorCode::Unauthorized => ClientError::BadRequest(BadRequest::Unauthorized),
            ErrorCode::AckOutOfRange => {
                ClientError::BadRequest(BadRequest::AckOutOfRange { len: detail })
            }
            ErrorCode::EncryptionRequired => {
                ClientError::BadRequest(BadRequest::EncryptionRequired)
            }
            ErrorCode::WrongVersion => {
                // An answer in our own version about another: a datagram
                // of ours was damaged on the way (a server of another
                // version answers in its own, see `Client::handle`).
                self.stats.invalid += 1;
                return;
            }
        };
        self.fail(err);
    }

    /// Starts the handshake again under a UUID derived from the old one
    /// (deterministic, so simulations stay reproducible).
    pub(super) fn restart(&mut self) {
        let old = self.config.uuid;
        let bits = old
            .as_u128()
            .wrapping_mul(0x2545_f491_4f6c_dd1d)
            .rotate_left(17)
            ^ 0x5eed;
        let mut bytes = bits.to_be_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        self.config.uuid = Uuid::from_bytes(bytes);
        tracing::debug!(%old, new = %self.config.uuid, "handshake refused: starting over");
        self.reorder.reset();
        self.sum = RunningChecksum::default();
        self.send_pending = true;
        self.start_handshake();
        self.stats.restarts += 1;
        self.events.push_back(ClientEvent::Restarted {
            uuid: self.config.uuid,
        });
    }

    /// Writes the token field for a message in `state` into `buf`; returns
    /// its length. CONNECTING carries the session token, else the retry
    /// token, else nothing; later messages carry the session token and,
    /// for a few messages after a path challenge, the challenge after it.
    pub(super) fn token_field(&mut self, state: State, buf: &mut [u8; MAX_TOKEN_LEN]) -> usize {
        let token = self.token.as_deref().unwrap_or(&[]);
        let mut n = token.len().min(MAX_TOKEN_LEN);
        buf[..n].copy_from_slice(&token[..n]);
        if state == State::Connecting {
            if let (0, Some(retry)) = (n, self.retry_token) {
                buf[..RETRY_TOKEN_LEN].copy_from_slice(&retry);
                n = RETRY_TOKEN_LEN;
            }
            return n;
        }
        if let Some((challenge, left)) = self.challenge.as_mut() {
            if n > 0 && n + CHALLENGE_LEN <= MAX_TOKEN_LEN {
                buf[n..n + CHALLENGE_LEN].copy_from_slice(challenge);
                n += CHALLENGE_LEN;
                *left -= 1;
                if *left == 0 {
                    self.challenge = None;
                }
            }
        }
        n
    }
}

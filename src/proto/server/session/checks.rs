//! The checks a client message for a held session must pass (token,
//! length, ack range, order), and what passing them changes in the
//! session.
//!
//! The session decides; the endpoint answers. A [`Refusal`] says how: an
//! Error reply, a store lookup for a token that is not this copy's, a
//! silent drop, or dropping a stale copy of a shared session. The replies,
//! the shared store and the challenges' random numbers stay with the
//! endpoint.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{AckKind, Session};
use crate::proto::server::outbox::{Outbox, Reject};
use crate::proto::server::path::Move;
use crate::proto::server::secret::constant_time_eq;
use crate::proto::server::ServerConfig;
use crate::proto::wire::{
    ClientMessage, ErrorCode, ServerMessage, CHALLENGE_LEN, RETRY_TOKEN_LEN, SERVER_TOKEN_LEN,
};

/// Most values a stale session copy is carried forward over (summing them
/// takes about 3 ms per million values).
const MAX_FAST_FORWARD: u32 = 1 << 20;

/// A CONNECTING the session took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resume {
    /// A token-less repeat of the first CONNECTING from the handshake's
    /// address: its Accept was lost. The data sent with it may still be in
    /// flight (the client's first timer is far shorter than a long path's
    /// RTT), so it is not sent again; the client's first ack reports the
    /// holes.
    Repeat {
        /// The Accept to send again (counted against the path budget).
        accept: ServerMessage,
    },
    /// The client resumed with its token, perhaps from a new address.
    Resumed {
        /// The Accept to send (counted against the path budget).
        accept: ServerMessage,
        /// False for a copy of the resume just handled (same timestamp):
        /// answered, as its Accept may be the lost one, but nothing is
        /// resent.
        fresh: bool,
        /// How the session's address changed.
        moved: Move,
    },
}

/// Why a message for a held session is turned away, and how the endpoint
/// answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// An Error reply with `code` and `detail`, counted under `reason`.
    Answer {
        /// The error code sent.
        code: ErrorCode,
        /// Its detail field.
        detail: u32,
        /// The reject reason counted.
        reason: Reject,
    },
    /// The token is not this session's: the endpoint may ask a shared
    /// store whether another endpoint's session of this UUID has it, and
    /// answers Unauthorized otherwise.
    WrongToken,
    /// Counted under the reason, and not answered.
    Drop(Reject),
    /// This copy of a shared session is too far behind the client's ack to
    /// carry forward: the endpoint drops it, and the client's next
    /// datagram restores the session from the store.
    StaleCopy,
}

impl Refusal {
    fn answer(code: ErrorCode, detail: u32, reason: Reject) -> Self {
        Refusal::Answer {
            code,
            detail,
            reason,
        }
    }
}

impl Session {
    /// Checks a CONNECTING for this session: a token-less repeat from the
    /// handshake's address (its Accept was lost), or a resume with the
    /// token from any address. Records what it changes, including the
    /// Accept's bytes against the path budget.
    pub(crate) fn on_connecting(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        bytes: usize,
        config: &ServerConfig,
        out: &mut Outbox,
    ) -> Result<Resume, Refusal> {
        // Before the client holds the session token, its CONNECTING carries
        // nothing or the retry token it was given.
        let handshake_token = msg.token.is_empty() || msg.token.len() == RETRY_TOKEN_LEN;
        let repeat = handshake_token && !self.confirmed;
        if repeat && from != self.addr {
            // Without the token, only the address that opened the session may
            // repeat it: anyone else who knows the UUID would get the token
            // in our Accept and take the session over (defect 15). Refuse
            // without the token; a client that really moved mid-handshake
            // starts over under a new UUID.
            return Err(Refusal::answer(
                ErrorCode::Unauthorized,
                0,
                Reject::Unauthorized,
            ));
        }
        if msg.token.is_empty() && self.confirmed && from == self.addr {
            // A late duplicate of the client's own first CONNECTING (the
            // network held it back): the session is already confirmed.
            return Err(Refusal::Drop(Reject::Stale));
        }
        if !repeat && !constant_time_eq(msg.token, &self.token) {
            return Err(Refusal::WrongToken);
        }
        if msg.len != self.len() {
            let len = self.len();
            return Err(Refusal::answer(
                ErrorCode::LenMismatch,
                len,
                Reject::LenMismatch,
            ));
        }
        if !repeat {
            self.carry_forward(msg.ack, config, out)?;
        }
        if msg.ack > self.high_water {
            let len = self.len();
            return Err(Refusal::answer(
                ErrorCode::AckOutOfRange,
                len,
                Reject::AckBeyondSent,
            ));
        }
        let accept = self.accept(config, msg.timestamp);
        if repeat {
            self.on_repeat(bytes);
            self.on_reply(from, accept.encoded_len());
            return Ok(Resume::Repeat { accept });
        }
        // A resume: the timestamp must be newer than every message seen
        // (a resumed client carries its clock on). An older one, or an ack
        // below what the client already acknowledged, is a replay: it
        // changes nothing and gets no answer.
        if msg.timestamp < self.last_ts || msg.ack < self.ack {
            return Err(Refusal::Drop(Reject::Stale));
        }
        let fresh = msg.timestamp > self.last_ts;
        let moved = self.on_authenticated(now, from, msg.timestamp, bytes);
        self.on_reply(from, accept.encoded_len());
        Ok(Resume::Resumed {
            accept,
            fresh,
            moved,
        })
    }

    /// Checks a CONNECTED, CLOSING or CLOSED message (token, length, ack
    /// range, order) and records it: follows the client to a new address
    /// (under the path budget until it answers a challenge), and validates
    /// an address that echoed the challenge. Returns how to read its ack
    /// (the client sends each probe twice with one timestamp, and only the
    /// first copy resends the holes) and how the address changed.
    pub(crate) fn on_message(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        bytes: usize,
        config: &ServerConfig,
        out: &mut Outbox,
    ) -> Result<(AckKind, Move), Refusal> {
        let (token, response) = split_token(msg.token);
        if !constant_time_eq(token, &self.token) {
            return Err(Refusal::WrongToken);
        }
        let len = self.len();
        if msg.len != len {
            return Err(Refusal::answer(
                ErrorCode::LenMismatch,
                len,
                Reject::LenMismatch,
            ));
        }
        if msg.ack > len {
            return Err(Refusal::answer(
                ErrorCode::AckOutOfRange,
                len,
                Reject::AckOutOfRange,
            ));
        }
        self.carry_forward(msg.ack, config, out)?;
        if msg.ack > self.high_water {
            return Err(Refusal::Drop(Reject::AckBeyondSent));
        }
        if msg.timestamp < self.last_ts || msg.ack < self.ack {
            return Err(Refusal::Drop(Reject::Stale));
        }
        let kind = if msg.timestamp == self.last_ts {
            AckKind::Repeat
        } else {
            AckKind::Normal
        };
        let moved = self.on_authenticated(now, from, msg.timestamp, bytes);
        let answered = response.is_some_and(|r| self.path.is_answer(r));
        if answered && from == self.addr {
            self.path.validate(from);
            out.stats.path_validations += 1;
        }
        Ok((kind, moved))
    }

    /// The Accept for this session, echoing `echo`.
    pub(crate) fn accept(&self, config: &ServerConfig, echo: u64) -> ServerMessage {
        ServerMessage::Accept {
            token: self.token,
            lifetime_ms: duration_ms(self.lifetime(config)),
            max_window: config.max_window,
            echo,
        }
    }

    /// A token-valid message reports an ack past everything this copy of
    /// the session sent: the client got there on another endpoint sharing
    /// the store. Carries the copy forward instead of refusing the ack,
    /// summing the values in between; past [`MAX_FAST_FORWARD`] values
    /// (milliseconds of summing) the stale copy is to be dropped instead,
    /// and the client's next retransmission restores the session from the
    /// store's checkpoint. Without a shared store, nothing happens.
    fn carry_forward(
        &mut self,
        ack: u32,
        config: &ServerConfig,
        out: &mut Outbox,
    ) -> Result<(), Refusal> {
        if config.store.is_none() || ack <= self.high_water || ack > self.len() {
            return Ok(());
        }
        if ack - self.high_water > MAX_FAST_FORWARD {
            return Err(Refusal::StaleCopy);
        }
        self.fast_forward(ack);
        out.stats.sessions_fast_forwarded += 1;
        tracing::debug!(uuid = %self.uuid, ack, "stale session copy carried forward");
        Ok(())
    }
}

/// Splits a CONNECTED/CLOSING/CLOSED token field into the session token and
/// the path-challenge response the client may append to it.
pub(crate) fn split_token(field: &[u8]) -> (&[u8], Option<&[u8]>) {
    if field.len() == SERVER_TOKEN_LEN + CHALLENGE_LEN {
        let (token, response) = field.split_at(SERVER_TOKEN_LEN);
        (token, Some(response))
    } else {
        (field, None)
    }
}

fn duration_ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

//! Admission of new sessions: the limits a new CONNECTING must meet,
//! stateless address validation (Retry) under pressure, and making room in
//! a full table for a client that proved its address.

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use uuid::Uuid;

use super::Server;
use crate::proto::crypto::ServerHandshake;
use crate::proto::sequence::Sequence;
use crate::proto::server::outbox::{Outbox, Reject, ServerEvent};
use crate::proto::server::path::Path;
use crate::proto::server::sealing::SessionSeal;
use crate::proto::server::secret::RetryCheck;
use crate::proto::server::session::{AckKind, Session};
use crate::proto::server::RetryPolicy;
use crate::proto::wire::{
    encode_handshake_reply, ClientMessage, ErrorCode, ServerMessage, HANDSHAKE_REPLY_OVERHEAD,
    MAX_SERVER_DATAGRAM_LEN, RETRY_TOKEN_LEN, SERVER_TOKEN_LEN,
};

impl Server {
    /// A CONNECTING for a new session: admission, limits, and (under
    /// pressure) stateless address validation.
    pub(super) fn on_connecting_new(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        bytes: usize,
        handshake: Option<&[u8]>,
    ) -> Result<(), Reject> {
        let echo = msg.timestamp;
        let refuse = |out: &mut Outbox, code, detail, reason| {
            Err(out.refuse(from, msg.uuid, code, detail, echo, reason))
        };
        if self.config.store.is_some() && !self.store_up {
            // No other endpoint could resume this session: refuse it now
            // rather than let it die with this endpoint.
            return refuse(&mut self.out, ErrorCode::Busy, 0, Reject::StoreUnavailable);
        }
        if !msg.token.is_empty() && msg.token.len() != RETRY_TOKEN_LEN {
            // Resuming a session we no longer have.
            return refuse(
                &mut self.out,
                ErrorCode::UnknownSession,
                0,
                Reject::UnknownSession,
            );
        }
        if msg.len > self.config.max_len {
            let max = self.config.max_len;
            return refuse(
                &mut self.out,
                ErrorCode::LenTooLarge,
                max,
                Reject::LenTooLarge,
            );
        }
        if msg.ack != 0 {
            return refuse(
                &mut self.out,
                ErrorCode::UnknownSession,
                0,
                Reject::UnknownSession,
            );
        }
        let validated = self.check_address(now, from, msg)?;
        if self.table.len() >= self.config.max_sessions && !(validated && self.evict_pending()) {
            let max = self.config.max_sessions as u32;
            return refuse(&mut self.out, ErrorCode::Busy, max, Reject::Busy);
        }
        // Only now, past Retry and every limit, any public-key work.
        let noise = match (handshake, self.config.key.as_ref()) {
            (Some(h), Some(key)) => {
                self.out.stats.handshakes += 1;
                match ServerHandshake::read(key, h, &mut self.crypto_rng) {
                    Ok((state, payload)) if payload == msg.uuid.as_bytes() => Some((state, h)),
                    _ => return Err(Reject::HandshakeFailed),
                }
            }
            _ => None,
        };
        let token: [u8; SERVER_TOKEN_LEN] = self.rng.gen();
        let seed: u64 = self.rng.gen();
        let seq = Sequence::new(seed, msg.len);
        let path = if validated {
            self.out.stats.retry_validated += 1;
            Path::validated(from)
        } else {
            Path::unvalidated()
        };
        let mut s = Session::new(msg.uuid, token, from, path, seq, msg.timestamp, now);
        let lifetime = s.lifetime(&self.config);
        let accept = s.accept(&self.config, echo);
        s.on_repeat(bytes);
        let sealed = match noise {
            Some((state, first)) => {
                let mut plain = [0u8; MAX_SERVER_DATAGRAM_LEN];
                let n = accept
                    .encode(msg.uuid, &mut plain)
                    .map_err(|_| Reject::HandshakeFailed)?;
                let (reply, keys) = state
                    .reply(&plain[..n])
                    .map_err(|_| Reject::HandshakeFailed)?;
                let mut datagram = vec![0u8; reply.len() + HANDSHAKE_REPLY_OVERHEAD];
                let len = encode_handshake_reply(msg.uuid, &reply, &mut datagram)
                    .map_err(|_| Reject::HandshakeFailed)?;
                datagram.truncate(len);
                let (sealer, opener) = keys.into_transport();
                Some(SessionSeal {
                    sealer,
                    opener,
                    first: first.to_vec(),
                    reply: datagram,
                    route: token,
                })
            }
            None => None,
        };
        let reply_len = sealed
            .as_ref()
            .map_or(accept.encoded_len(), |s| s.reply.len());
        s.on_reply(from, reply_len);
        self.table.insert(s, now + lifetime);
        self.out.stats.sessions_opened += 1;
        tracing::debug!(uuid = %msg.uuid, %from, len = msg.len, "session opened");
        self.out.event(ServerEvent::Opened {
            uuid: msg.uuid,
            addr: from,
            len: msg.len,
        });
        match sealed {
            Some(seal) => {
                self.out.stats.sessions_sealed += 1;
                self.raw_replies.push_back((from, seal.reply.clone()));
                self.table.insert_seal(msg.uuid, seal);
            }
            None => self.out.reply(from, msg.uuid, accept),
        }
        self.apply_ack(now, msg.uuid, msg, AckKind::Normal);
        Ok(())
    }

    /// Stateless address validation for a new CONNECTING: `Ok(true)` when
    /// it carries a valid retry token (the address is proven), `Ok(false)`
    /// when none is needed, and a Retry reply when one is needed and
    /// missing or bad.
    fn check_address(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
    ) -> Result<bool, Reject> {
        let reason = if msg.token.is_empty() {
            let required = match self.config.retry {
                RetryPolicy::Never => false,
                RetryPolicy::Always => true,
                RetryPolicy::UnderPressure => {
                    self.table.pending() >= (self.config.max_sessions / 8).max(1)
                }
            };
            if !required {
                return Ok(false);
            }
            Reject::RetryRequired
        } else {
            let life = self.config.handshake_lifetime;
            let secret = &self.secret;
            match secret.check_retry_token(now, msg.token, &msg.uuid, msg.len, from, life) {
                RetryCheck::Valid => return Ok(true),
                RetryCheck::Expired | RetryCheck::Forged => Reject::InvalidRetryToken,
            }
        };
        // 32 bytes for a 1200-byte CONNECTING: no amplification.
        let token = self.secret.retry_token(now, &msg.uuid, msg.len, from);
        let echo = msg.timestamp;
        self.out
            .reply(from, msg.uuid, ServerMessage::Retry { token, echo });
        Err(reason)
    }

    /// Frees the pending handshake idle longest, to make room for a client
    /// that proved its address; false if there is none.
    pub(super) fn evict_pending(&mut self) -> bool {
        let oldest = self
            .table
            .sessions()
            .filter(|s| s.is_pending())
            .min_by_key(|s| (s.last_activity(), s.uuid()))
            .map(Session::uuid);
        let Some(uuid) = oldest else {
            return false;
        };
        self.evict(uuid);
        true
    }

    /// Frees a handshake nobody confirmed (counted `pending_evicted`).
    pub(super) fn evict(&mut self, uuid: Uuid) {
        let data_sent = self.table.get(&uuid).map_or(0, Session::data_sent);
        self.table.remove(&uuid);
        self.out.stats.pending_evicted += 1;
        tracing::debug!(%uuid, "pending handshake evicted");
        self.out.event(ServerEvent::Expired { uuid, data_sent });
    }
}

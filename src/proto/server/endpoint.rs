//! The endpoint: routes datagrams to sessions by UUID, admits and refuses
//! clients, enforces the limits, expires idle sessions, validates
//! addresses, and hands out sends round-robin across sessions.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

mod admission;
mod store;

use super::outbox::{Outbox, Reject, ServerEvent, ServerStats};
use super::path::Move;
use super::secret::{constant_time_eq, Secret};
use super::session::{AckKind, Session};
use super::store::StoreOp;
use super::{is_usable_source, ServerConfig, Transmit, MIN_WINDOW_SHARE};
use crate::proto::recovery::MAX_WINDOW;
use crate::proto::sequence::Sequence;
use crate::proto::wire::{
    ClientMessage, ErrorCode, ServerMessage, State, WireError, CHALLENGE_LEN, DATA_LEN,
    MAX_SERVER_DATAGRAM_LEN, PREFIX_LEN, RETRY_TOKEN_LEN, SERVER_TOKEN_LEN,
};

/// The server endpoint. See the [module docs](super).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    sessions: HashMap<Uuid, Session>,
    /// Sessions with data queued, served round-robin.
    ready: VecDeque<Uuid>,
    /// (deadline, uuid) for every live session.
    expiry: BTreeSet<(Instant, Uuid)>,
    /// (when, uuid) for sessions with holes inside the reordering window.
    loss_checks: BTreeSet<(Instant, Uuid)>,
    /// Replies, events and counters.
    out: Outbox,
    rng: StdRng,
    /// Key for retry tokens.
    secret: Secret,
    /// Sessions that are [pending](Session::is_pending): handshakes that
    /// have proven nothing.
    pending: usize,
    /// Window slots held over all sessions.
    slots: usize,
    /// Operations for the shared store, drained by the driver.
    store_ops: VecDeque<StoreOp>,
    /// Sessions with a lookup in flight.
    lookups: HashSet<Uuid>,
    /// Whether the shared store answers (the driver says).
    store_up: bool,
    /// Set while a datagram held for a lookup is processed again: a miss
    /// then is an unknown session, not another lookup.
    lookup_done: bool,
}

/// Most store operations waiting for the driver.
const MAX_STORE_OPS: usize = 1 << 16;

/// Most values a stale session copy is carried forward over (summing them
/// takes about 3 ms per million values).
const MAX_FAST_FORWARD: u32 = 1 << 20;

impl Server {
    /// A server with no sessions.
    pub fn new(mut config: ServerConfig) -> Self {
        config.max_window = config.max_window.clamp(1, MAX_WINDOW);
        config.max_batch = config.max_batch.max(1);
        // StdRng is a CSPRNG (ChaCha); from_entropy seeds it from the OS.
        // The key has its own generator, so that a seeded server issues the
        // same tokens and sequences whatever the key costs.
        let (rng, key) = match config.seed {
            Some(seed) => {
                let key = StdRng::seed_from_u64(seed ^ 0x5ec2_e7ed_cafe_f00d).gen();
                (StdRng::seed_from_u64(seed), key)
            }
            None => (StdRng::from_entropy(), StdRng::from_entropy().gen()),
        };
        let key = config.secret.unwrap_or(key);
        Self {
            secret: Secret::new(key),
            rng,
            pending: 0,
            slots: 0,
            config,
            sessions: HashMap::new(),
            ready: VecDeque::new(),
            expiry: BTreeSet::new(),
            loss_checks: BTreeSet::new(),
            out: Outbox::default(),
            store_ops: VecDeque::new(),
            lookups: HashSet::new(),
            store_up: true,
            lookup_done: false,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &ServerStats {
        &self.out.stats
    }

    /// Live sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Live sessions whose client has confirmed its token (the rest are
    /// still in their handshake). Walks the session table.
    pub fn confirmed_count(&self) -> usize {
        self.sessions.values().filter(|s| s.is_confirmed()).count()
    }

    /// True if a session with this UUID is live.
    pub fn has_session(&self, uuid: &Uuid) -> bool {
        self.sessions.contains_key(uuid)
    }

    /// The sequence a live session streams (for simulators and tests that
    /// check every value).
    pub fn sequence(&self, uuid: &Uuid) -> Option<Sequence> {
        self.sessions.get(uuid).map(Session::sequence)
    }

    /// Handshakes that have proven nothing yet (no token presented, no
    /// validated address): what a spoofed CONNECTING flood creates.
    pub fn pending_count(&self) -> usize {
        self.pending
    }

    /// Window slots (indices in flight) held over all sessions: at most
    /// [`ServerConfig::window_budget`], plus [`MIN_WINDOW_SHARE`] for each
    /// session that holds no more than that.
    pub fn window_slots_in_use(&self) -> usize {
        self.slots
    }

    /// Feeds one datagram that arrived from `from`.
    pub fn handle(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.secret.start(now);
        self.out.stats.datagrams_received += 1;
        let outcome = self.dispatch(now, from, datagram);
        match outcome {
            Ok(()) => self.out.stats.accepted += 1,
            Err(reason) => self.out.reject(reason),
        }
    }

    /// Writes the next batch into `buf` (cleared first): one control reply,
    /// or up to `max_datagrams` (and `max_batch`) data datagrams of one
    /// session, all for one destination.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        max_datagrams: usize,
        buf: &mut Vec<u8>,
    ) -> Option<Transmit> {
        if max_datagrams == 0 {
            return None;
        }
        if let Some((destination, uuid, msg)) = self.out.replies.pop_front() {
            buf.clear();
            buf.resize(msg.encoded_len(), 0);
            let size = msg.encode(uuid, buf).ok()?;
            buf.truncate(size);
            self.out.stats.datagrams_sent += 1;
            return Some(Transmit {
                destination,
                size,
                segment_size: size,
            });
        }
        let max = max_datagrams.min(self.config.max_batch);
        for _ in 0..self.ready.len() {
            let uuid = self.ready.pop_front()?;
            let Some(s) = self.sessions.get_mut(&uuid) else {
                continue;
            };
            if s.next_send_at() > now {
                self.ready.push_back(uuid);
                continue;
            }
            let count = s.poll_data(now, max, &self.config, buf, &mut self.out);
            if s.enter_ready() {
                self.ready.push_back(uuid);
            }
            if count > 0 {
                self.out.stats.datagrams_sent += count as u64;
                return Some(Transmit {
                    destination: s.addr(),
                    size: count * DATA_LEN,
                    segment_size: DATA_LEN,
                });
            }
        }
        None
    }

    /// The earliest time [`Server::handle_timeout`] must be called: the next
    /// expiry check, loss check, or paced send.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.expiry.first().map(|(at, _)| *at);
        let loss = self.loss_checks.first().map(|(at, _)| *at);
        // Sessions with data queued that wait for their pacer (the fixed
        // `pacing` gap, or the rate their client asked for).
        let fixed = !self.config.pacing.is_zero();
        let pacing = self
            .ready
            .iter()
            .filter_map(|u| self.sessions.get(u))
            .filter(|s| fixed || s.is_paced())
            .map(Session::next_send_at)
            .min();
        [expiry, loss, pacing].into_iter().flatten().min()
    }

    /// Frees sessions idle past their lifetime, and resends holes whose
    /// reordering window has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, uuid)) = self.loss_checks.first() {
            if at > now {
                break;
            }
            self.loss_checks.pop_first();
            let Some(s) = self.sessions.get_mut(&uuid) else {
                continue;
            };
            if let Some(at) = s.on_loss_timer(now) {
                self.loss_checks.insert((at, uuid));
            }
            if s.enter_ready() {
                self.ready.push_back(uuid);
            }
        }
        while let Some(&(at, uuid)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            let Some(s) = self.sessions.get_mut(&uuid) else {
                continue;
            };
            let deadline = s.last_activity() + s.lifetime(&self.config);
            if deadline > now {
                s.expiry_key = deadline;
                self.expiry.insert((deadline, uuid));
            } else {
                let data_sent = s.data_sent();
                self.remove_session(&uuid);
                self.out.stats.sessions_expired += 1;
                tracing::debug!(%uuid, "session expired");
                self.out.event(ServerEvent::Expired { uuid, data_sent });
            }
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.out.events.pop_front()
    }

    /// Decodes a datagram and hands it to the handler for its state.
    fn dispatch(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Result<(), Reject> {
        if !is_usable_source(from) {
            return Err(Reject::UnusableSource);
        }
        let msg = match ClientMessage::decode(datagram) {
            Ok(m) => m,
            Err(WireError::BadCrc) => return Err(Reject::Corrupt),
            Err(WireError::UnknownKind(k)) if k & 0x80 != 0 => return Err(Reject::WrongDirection),
            Err(WireError::UnknownVersion(v)) => {
                self.answer_wrong_version(from, v, datagram);
                return Err(Reject::WrongVersion);
            }
            Err(_) => return Err(Reject::Malformed),
        };
        match msg.state {
            State::Connecting if self.sessions.contains_key(&msg.uuid) => {
                self.on_connecting_again(now, from, &msg, datagram)
            }
            State::Connecting if msg.token.len() == SERVER_TOKEN_LEN => {
                match self.lookup_miss(from, msg.uuid, datagram) {
                    Some(reason) => Err(reason),
                    None => self.on_connecting_new(now, from, &msg, datagram.len()),
                }
            }
            State::Connecting => self.on_connecting_new(now, from, &msg, datagram.len()),
            State::Connected | State::Closing if !self.sessions.contains_key(&msg.uuid) => {
                match self.lookup_miss(from, msg.uuid, datagram) {
                    Some(reason) => Err(reason),
                    None => self.on_unknown(from, &msg),
                }
            }
            State::Connected => {
                let kind = self.authenticate(now, from, &msg, datagram)?;
                self.apply_ack(now, msg.uuid, &msg, kind);
                Ok(())
            }
            State::Closing => self.on_closing(now, from, &msg, datagram),
            State::Closed => self.on_closed(now, from, &msg, datagram),
        }
    }

    /// A CONNECTED or CLOSING for a session nobody holds.
    fn on_unknown(&mut self, from: SocketAddr, msg: &ClientMessage<'_>) -> Result<(), Reject> {
        let code = ErrorCode::UnknownSession;
        let echo = msg.timestamp;
        Err(self
            .out
            .refuse(from, msg.uuid, code, 0, echo, Reject::UnknownSession))
    }

    /// A CONNECTING for a session we hold: the Accept was lost (a
    /// token-less repeat from the handshake's address), or the client
    /// resumes with its token (perhaps from a new address).
    fn on_connecting_again(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
    ) -> Result<(), Reject> {
        let bytes = datagram.len();
        let echo = msg.timestamp;
        let Some(s) = self.sessions.get_mut(&msg.uuid) else {
            return Err(Reject::UnknownSession);
        };
        // Before the client holds the session token, its CONNECTING carries
        // nothing or the retry token it was given.
        let handshake_token = msg.token.is_empty() || msg.token.len() == RETRY_TOKEN_LEN;
        let unconfirmed_repeat = handshake_token && !s.is_confirmed();
        if unconfirmed_repeat && from != s.addr() {
            // Without the token, only the address that opened the session may
            // repeat it: anyone else who knows the UUID would get the token
            // in our Accept and take the session over (defect 15). Refuse
            // without the token; a client that really moved mid-handshake
            // starts over under a new UUID.
            let code = ErrorCode::Unauthorized;
            return Err(self
                .out
                .refuse(from, msg.uuid, code, 0, echo, Reject::Unauthorized));
        }
        if msg.token.is_empty() && s.is_confirmed() && from == s.addr() {
            // A late duplicate of the client's own first CONNECTING (the
            // network held it back): the session is already confirmed.
            return Err(Reject::Stale);
        }
        if !unconfirmed_repeat && !constant_time_eq(msg.token, s.token()) {
            let confirmed = s.is_confirmed();
            return Err(self.wrong_token(from, msg, datagram, confirmed));
        }
        if msg.len != s.len() {
            let code = ErrorCode::LenMismatch;
            return Err(self
                .out
                .refuse(from, msg.uuid, code, s.len(), echo, Reject::LenMismatch));
        }
        if !unconfirmed_repeat && msg.ack > s.high_water() && self.config.store.is_some() {
            self.fast_forward(msg.uuid, msg.ack);
        }
        let Some(s) = self.sessions.get_mut(&msg.uuid) else {
            // The stale copy was dropped: the next datagram looks it up.
            return Err(Reject::StoreLookup);
        };
        if msg.ack > s.high_water() {
            let code = ErrorCode::AckOutOfRange;
            return Err(self.out.refuse(
                from,
                msg.uuid,
                code,
                s.len(),
                echo,
                Reject::AckBeyondSent,
            ));
        }
        let accept = ServerMessage::Accept {
            token: *s.token(),
            lifetime_ms: duration_ms(s.lifetime(&self.config)),
            max_window: self.config.max_window,
            echo,
        };
        let uuid = s.uuid();
        if unconfirmed_repeat {
            // Our Accept was lost. The data sent with it may still be in
            // flight (the client's first timer is far shorter than a long
            // path's RTT), so it is not sent again; the client's first ack
            // reports the holes.
            s.on_repeat(bytes);
            s.on_reply(from, accept.encoded_len());
            self.out.reply(from, msg.uuid, accept);
            self.apply_ack(now, uuid, msg, AckKind::Normal);
            return Ok(());
        }
        // A resume: the timestamp must be newer than every message seen
        // (a resumed client carries its clock on). An older one, or an ack
        // below what the client already acknowledged, is a replay: it
        // changes nothing and gets no answer.
        if msg.timestamp < s.last_ts() || msg.ack < s.ack() {
            return Err(Reject::Stale);
        }
        // The same timestamp is a copy of the resume just handled: answer
        // it (its Accept may be the lost one) but resend nothing.
        let fresh = msg.timestamp > s.last_ts();
        let was_pending = s.is_pending();
        let moved = s.on_authenticated(now, from, msg.timestamp, bytes);
        s.on_reply(from, accept.encoded_len());
        self.out.reply(from, msg.uuid, accept);
        self.on_confirmed(was_pending, uuid);
        if fresh {
            self.out.stats.sessions_resumed += 1;
            tracing::debug!(%uuid, %from, validated = moved != Move::ToUnvalidated, "session resumed");
            self.out.event(ServerEvent::Resumed { uuid, addr: from });
        }
        self.challenge_if_unvalidated(uuid, from, echo);
        let kind = if fresh {
            AckKind::ResendAll
        } else {
            AckKind::Normal
        };
        self.apply_ack(now, uuid, msg, kind);
        Ok(())
    }

    /// Keeps the pending count when a session presented its token.
    fn on_confirmed(&mut self, was_pending: bool, uuid: Uuid) {
        let now_pending = self.sessions.get(&uuid).is_some_and(Session::is_pending);
        if was_pending && !now_pending {
            self.pending = self.pending.saturating_sub(1);
        }
    }

    /// Sends a path challenge to `from` if it is the session's address and
    /// has not proven itself (the budget covers it: 24 bytes for a message
    /// of at least 50).
    fn challenge_if_unvalidated(&mut self, uuid: Uuid, from: SocketAddr, echo: u64) {
        let Some(s) = self.sessions.get_mut(&uuid) else {
            return;
        };
        if s.path().is_validated() || from != s.addr() {
            return;
        }
        let challenge = s.path_mut().challenge_or(self.rng.gen());
        let msg = ServerMessage::Challenge { challenge, echo };
        s.on_reply(from, msg.encoded_len());
        self.out.stats.path_challenges += 1;
        self.out.reply(from, uuid, msg);
    }

    /// Checks a CONNECTED/CLOSING/CLOSED message against its session (token,
    /// length, ack range, order) and records it; follows the client to a new
    /// address (under the path budget until it answers a challenge).
    /// Returns how to read its ack: the client sends each probe twice with
    /// one timestamp, and only the first copy resends the holes.
    fn authenticate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
    ) -> Result<AckKind, Reject> {
        let bytes = datagram.len();
        let echo = msg.timestamp;
        let Some(s) = self.sessions.get_mut(&msg.uuid) else {
            let code = ErrorCode::UnknownSession;
            return Err(self
                .out
                .refuse(from, msg.uuid, code, 0, echo, Reject::UnknownSession));
        };
        let (token, response) = split_token(msg.token);
        if !constant_time_eq(token, s.token()) {
            let confirmed = s.is_confirmed();
            return Err(self.wrong_token(from, msg, datagram, confirmed));
        }
        if msg.len != s.len() {
            let code = ErrorCode::LenMismatch;
            return Err(self
                .out
                .refuse(from, msg.uuid, code, s.len(), echo, Reject::LenMismatch));
        }
        if msg.ack > s.len() {
            let code = ErrorCode::AckOutOfRange;
            return Err(self.out.refuse(
                from,
                msg.uuid,
                code,
                s.len(),
                echo,
                Reject::AckOutOfRange,
            ));
        }
        if msg.ack > s.high_water() && self.config.store.is_some() {
            self.fast_forward(msg.uuid, msg.ack);
        }
        let Some(s) = self.sessions.get_mut(&msg.uuid) else {
            // The stale copy was dropped: the next datagram looks it up.
            return Err(Reject::StoreLookup);
        };
        if msg.ack > s.high_water() {
            return Err(Reject::AckBeyondSent);
        }
        if msg.timestamp < s.last_ts() || msg.ack < s.ack() {
            return Err(Reject::Stale);
        }
        let kind = if msg.timestamp == s.last_ts() {
            AckKind::Repeat
        } else {
            AckKind::Normal
        };
        let was_pending = s.is_pending();
        let moved = s.on_authenticated(now, from, msg.timestamp, bytes);
        let answered = response.is_some_and(|r| s.path().is_answer(r));
        if answered && from == s.addr() {
            s.path_mut().validate(from);
            self.out.stats.path_validations += 1;
        }
        if moved != Move::Stayed {
            self.out.stats.migrations += 1;
            let uuid = msg.uuid;
            tracing::debug!(%uuid, %from, validated = moved == Move::ToValidated, "session migrated");
            self.out.event(ServerEvent::Migrated { uuid, addr: from });
        }
        self.on_confirmed(was_pending, msg.uuid);
        self.challenge_if_unvalidated(msg.uuid, from, echo);
        Ok(kind)
    }

    /// CLOSING: the client holds every value and asks for the checksum.
    fn on_closing(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
    ) -> Result<(), Reject> {
        let kind = self.authenticate(now, from, msg, datagram)?;
        self.apply_ack(now, msg.uuid, msg, kind);
        let s = self
            .sessions
            .get_mut(&msg.uuid)
            .ok_or(Reject::UnknownSession)?;
        if s.ack() < s.len() {
            return Err(Reject::ClosingEarly);
        }
        let checksum = s.checksum();
        let echo = msg.timestamp;
        let reply = ServerMessage::Checksum { checksum, echo };
        s.on_reply(from, reply.encoded_len());
        self.out.reply(from, msg.uuid, reply);
        Ok(())
    }

    /// CLOSED: the client verified the checksum (or, with the ABORT flag,
    /// gave up); free the session. A CLOSED for a session already freed
    /// (our reply was lost) is answered again.
    fn on_closed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
    ) -> Result<(), Reject> {
        let echo = msg.timestamp;
        if !self.sessions.contains_key(&msg.uuid) {
            // No larger than the request.
            self.out
                .reply(from, msg.uuid, ServerMessage::Closed { echo });
            return Ok(());
        }
        self.authenticate(now, from, msg, datagram)?;
        let s = self.sessions.get(&msg.uuid).ok_or(Reject::UnknownSession)?;
        let abort = msg.is_abort();
        if !abort && (msg.ack < s.len() || s.high_water() < s.len()) {
            return Err(Reject::ClosingEarly);
        }
        let data_sent = s.data_sent();
        self.remove_session(&msg.uuid);
        if self.config.store.is_some() {
            self.out.stats.store_removes += 1;
            self.store_op(StoreOp::Remove(msg.uuid));
        }
        if abort {
            // The client gave up (Ctrl-C): free the session now rather
            // than after its lifetime.
            self.out.stats.sessions_aborted += 1;
            tracing::debug!(uuid = %msg.uuid, ack = msg.ack, "session aborted by the client");
        } else {
            self.out.stats.sessions_closed += 1;
            tracing::debug!(uuid = %msg.uuid, "session closed");
        }
        self.out.event(ServerEvent::Closed {
            uuid: msg.uuid,
            data_sent,
        });
        self.out
            .reply(from, msg.uuid, ServerMessage::Closed { echo });
        Ok(())
    }

    /// Tells a client of protocol version `version` which one this server
    /// speaks: an Error in this server's version, keyed by the UUID that
    /// every version so far carries right after the prefix. Only for a
    /// datagram at least as long as the answer (no amplification).
    fn answer_wrong_version(&mut self, from: SocketAddr, version: u8, datagram: &[u8]) {
        // Every version so far ends client datagrams with an unkeyed CRC32C:
        // a damaged version byte fails it, and gets no answer.
        let (body, crc) = datagram.split_at(datagram.len().saturating_sub(4));
        if crc != crc32c::crc32c(body).to_be_bytes() {
            return;
        }
        let Some(uuid) = datagram
            .get(PREFIX_LEN..PREFIX_LEN + 16)
            .filter(|_| datagram.len() >= MAX_SERVER_DATAGRAM_LEN)
            .and_then(|b| Uuid::from_slice(b).ok())
        else {
            return;
        };
        self.out.reply(
            from,
            uuid,
            ServerMessage::Error {
                code: ErrorCode::WrongVersion,
                detail: u32::from(version),
                echo: 0,
            },
        );
    }

    /// Hands an ack to its session and re-indexes what it changed.
    fn apply_ack(&mut self, now: Instant, uuid: Uuid, msg: &ClientMessage<'_>, kind: AckKind) {
        let fair = self.config.window_budget / self.sessions.len().max(1);
        let Some(s) = self.sessions.get_mut(&uuid) else {
            return;
        };
        // The session's share of the budget, and never more than the budget
        // has left once every other session's slots are counted.
        let others = self.slots.saturating_sub(s.slots_in_use());
        let room = self.config.window_budget.saturating_sub(others);
        let cap = u32::try_from(fair.min(room))
            .unwrap_or(u32::MAX)
            .max(MIN_WINDOW_SHARE);
        let outcome = s.on_ack(now, msg, kind, cap, &self.config, &mut self.out);
        self.slots = others + s.slots_in_use();
        if s.enter_ready() {
            self.ready.push_back(uuid);
        }
        if outcome.old_loss_check != outcome.new_loss_check {
            if let Some(at) = outcome.old_loss_check {
                self.loss_checks.remove(&(at, uuid));
            }
            if let Some(at) = outcome.new_loss_check {
                self.loss_checks.insert((at, uuid));
            }
        }
        self.store_sync(now, uuid);
    }

    /// Forgets a session and everything that points at it.
    fn remove_session(&mut self, uuid: &Uuid) {
        if let Some(s) = self.sessions.remove(uuid) {
            self.slots = self.slots.saturating_sub(s.slots_in_use());
            if s.is_pending() {
                self.pending = self.pending.saturating_sub(1);
            }
            self.expiry.remove(&(s.expiry_key, *uuid));
            if let Some(at) = s.loss_check() {
                self.loss_checks.remove(&(at, *uuid));
            }
        }
        self.ready.retain(|u| u != uuid);
    }

    fn set_expiry(&mut self, uuid: Uuid, deadline: Instant) {
        if let Some(s) = self.sessions.get_mut(&uuid) {
            self.expiry.remove(&(s.expiry_key, uuid));
            s.expiry_key = deadline;
            self.expiry.insert((deadline, uuid));
        }
    }
}

/// Splits a CONNECTED/CLOSING/CLOSED token field into the session token and
/// the path-challenge response the client may append to it.
fn split_token(field: &[u8]) -> (&[u8], Option<&[u8]>) {
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

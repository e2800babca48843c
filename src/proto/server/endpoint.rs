//! The endpoint: routes datagrams to sessions by UUID, admits and refuses
//! clients, enforces the limits, expires idle sessions, validates
//! addresses, and hands out sends round-robin across sessions.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

mod admission;
mod sharing;

use super::outbox::{Outbox, Reject, ServerEvent, ServerStats};
use super::path::Move;
use super::record::StoreOp;
use super::sealing::SessionSeal;
use super::secret::Secret;
use super::session::{AckKind, Refusal, Resume, Session};
use super::table::SessionTable;
use super::{is_usable_source, Encryption, ServerConfig, Transmit, MIN_WINDOW_SHARE};
use crate::proto::crypto::seal::{is_routed, route_of, ROUTED_OVERHEAD};
use crate::proto::crypto::OpenError;
use crate::proto::recovery::MAX_WINDOW;
use crate::proto::sequence::Sequence;
use crate::proto::trace::{Datagram, DatagramKind, TraceEvent, TraceQueue, Traced};
use crate::proto::wire::{
    ClientMessage, ErrorCode, ServerMessage, State, WireError, DATA_LEN, MAX_DATAGRAM_LEN,
    MAX_SERVER_DATAGRAM_LEN, PREFIX_LEN, SERVER_TOKEN_LEN,
};

/// The server endpoint. See the [module docs](super).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    /// The sessions, and the indices over them.
    table: SessionTable,
    /// Replies, events and counters.
    out: Outbox,
    rng: StdRng,
    /// Key for retry tokens.
    secret: Secret,
    /// Operations for the shared store, drained by the driver.
    store_ops: VecDeque<StoreOp>,
    /// Sessions with a lookup in flight.
    lookups: HashSet<Uuid>,
    /// Whether the shared store answers (the driver says).
    store_up: bool,
    /// Set while a datagram held for a lookup is processed again: a miss
    /// then is an unknown session, not another lookup.
    lookup_done: bool,
    /// Randomness for handshakes (the reply's ephemeral key): its own
    /// generator, so that plain sessions draw the same tokens either way.
    crypto_rng: StdRng,
    /// Datagrams already encoded (handshake replies, sealed last words),
    /// sent before the other replies.
    raw_replies: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Scratch for sealing.
    plain: Vec<u8>,
    /// The keys of sealed sessions the CLOSED handshake freed, newest
    /// last, so that a repeated CLOSED (our Closed was lost) is answered
    /// again, sealed, as a plain one is.
    closed_seals: VecDeque<(Uuid, SessionSeal)>,
}

/// Most freed sealed sessions whose keys are kept to answer a repeated
/// CLOSED.
const MAX_CLOSED_SEALS: usize = 1024;

/// `msg` for the sealed session `uuid`, sealed now.
fn seal_now(seal: &mut SessionSeal, uuid: Uuid, msg: ServerMessage) -> Option<Vec<u8>> {
    let mut plain = [0u8; MAX_SERVER_DATAGRAM_LEN];
    let n = msg.encode(uuid, &mut plain).ok()?;
    let mut out = vec![0u8; n + ROUTED_OVERHEAD];
    let m = seal
        .sealer
        .seal_routed(&seal.route, &plain[..n], &mut out)
        .ok()?;
    out.truncate(m);
    Some(out)
}

/// Most store operations waiting for the driver.
const MAX_STORE_OPS: usize = 1 << 16;

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
        let crypto_rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed ^ 0x00c0_ffee_5ea1_ed00),
            None => StdRng::from_entropy(),
        };
        let out = Outbox {
            trace: TraceQueue::new(config.trace),
            ..Outbox::default()
        };
        Self {
            secret: Secret::new(key),
            rng,
            config,
            table: SessionTable::default(),
            out,
            store_ops: VecDeque::new(),
            lookups: HashSet::new(),
            store_up: true,
            lookup_done: false,
            crypto_rng,
            raw_replies: VecDeque::new(),
            plain: Vec::new(),
            closed_seals: VecDeque::new(),
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
        self.table.len()
    }

    /// Live sessions whose client has confirmed its token (the rest are
    /// still in their handshake). Walks the session table.
    pub fn confirmed_count(&self) -> usize {
        self.table.sessions().filter(|s| s.is_confirmed()).count()
    }

    /// True if a session with this UUID is live.
    pub fn has_session(&self, uuid: &Uuid) -> bool {
        self.table.contains(uuid)
    }

    /// The sequence a live session streams (for simulators and tests that
    /// check every value).
    pub fn sequence(&self, uuid: &Uuid) -> Option<Sequence> {
        self.table.get(uuid).map(Session::sequence)
    }

    /// Handshakes that have proven nothing yet (no token presented, no
    /// validated address): what a spoofed CONNECTING flood creates.
    pub fn pending_count(&self) -> usize {
        self.table.pending()
    }

    /// Window slots (indices in flight) held over all sessions: at most
    /// [`ServerConfig::window_budget`], plus [`MIN_WINDOW_SHARE`] for each
    /// session that holds no more than that.
    pub fn window_slots_in_use(&self) -> usize {
        self.table.slots()
    }

    /// Checks the session table's indices against its sessions (the
    /// round-robin of sends, the expiry and loss-check deadlines, the
    /// pending and window-slot counts): `Err` says the first that does not
    /// hold. For tests and fuzzers: it walks every session.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.table.check_invariants()
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
        if let Some((destination, bytes)) = self.raw_replies.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            self.out.stats.datagrams_sent += 1;
            let size = bytes.len();
            return Some(Transmit {
                destination,
                size,
                segment_size: size,
            });
        }
        if let Some((destination, uuid, msg)) = self.out.replies.pop_front() {
            buf.clear();
            buf.resize(msg.encoded_len(), 0);
            let mut size = msg.encode(uuid, buf).ok()?;
            buf.truncate(size);
            if let Some(seal) = self.table.seal_mut(&uuid) {
                self.plain.clear();
                self.plain.extend_from_slice(buf);
                buf.resize(size + ROUTED_OVERHEAD, 0);
                size = seal
                    .sealer
                    .seal_routed(&seal.route, &self.plain, buf)
                    .ok()?;
                buf.truncate(size);
            }
            self.out.stats.datagrams_sent += 1;
            self.out.trace.record(now, uuid, || {
                TraceEvent::Sent(Datagram {
                    echo: msg.echo() != 0,
                    ..Datagram::new(DatagramKind::of_server(&msg), size)
                })
            });
            return Some(Transmit {
                destination,
                size,
                segment_size: size,
            });
        }
        let max = max_datagrams.min(self.config.max_batch);
        for _ in 0..self.table.ready_len() {
            let uuid = self.table.pop_ready()?;
            let Some(s) = self.table.get(&uuid) else {
                continue;
            };
            if s.next_send_at() > now {
                self.table.requeue(uuid);
                continue;
            }
            let (config, out) = (&self.config, &mut self.out);
            let sent = self.table.update(uuid, |s| {
                (s.poll_data(now, max, config, buf, out), s.addr())
            });
            let Some((count, destination)) = sent else {
                continue;
            };
            self.table.schedule(uuid);
            if count > 0 {
                self.out.stats.datagrams_sent += count as u64;
                if let Some(seal) = self.table.seal_mut(&uuid) {
                    // Each data datagram sealed in turn, in place of the
                    // plain batch.
                    const SEALED: usize = DATA_LEN + ROUTED_OVERHEAD;
                    self.plain.clear();
                    self.plain.extend_from_slice(&buf[..count * DATA_LEN]);
                    buf.clear();
                    buf.resize(count * SEALED, 0);
                    for (plain, out) in self
                        .plain
                        .chunks_exact(DATA_LEN)
                        .zip(buf.chunks_exact_mut(SEALED))
                    {
                        seal.sealer.seal_routed(&seal.route, plain, out).ok()?;
                    }
                    return Some(Transmit {
                        destination,
                        size: count * SEALED,
                        segment_size: SEALED,
                    });
                }
                return Some(Transmit {
                    destination,
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
        let expiry = self.table.next_expiry();
        let loss = self.table.next_loss_check();
        // Sessions with data queued that wait for their pacer (the fixed
        // `pacing` gap, or the rate their client asked for).
        let fixed = !self.config.pacing.is_zero();
        let pacing = self
            .table
            .ready_sessions()
            .filter(|s| fixed || s.is_paced())
            .map(Session::next_send_at)
            .min();
        [expiry, loss, pacing].into_iter().flatten().min()
    }

    /// Frees sessions idle past their lifetime, and resends holes whose
    /// reordering window has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(uuid) = self.table.loss_check_due(now) {
            let out = &mut self.out;
            self.table.update(uuid, |s| s.on_loss_timer(now, out));
            self.table.schedule(uuid);
        }
        while let Some(uuid) = self.table.expiry_due(now) {
            let Some(s) = self.table.get(&uuid) else {
                break;
            };
            let deadline = s.last_activity() + s.lifetime(&self.config);
            if deadline > now {
                self.table.set_expiry(uuid, deadline);
            } else {
                let data_sent = s.data_sent();
                self.table.remove(&uuid);
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

    /// The next trace record (only with [`ServerConfig::trace`]).
    pub fn poll_trace(&mut self) -> Option<Traced> {
        self.out.trace.pop()
    }

    /// Trace records dropped because nobody polled them.
    pub fn trace_dropped(&self) -> u64 {
        self.out.trace.dropped()
    }

    /// Decodes a datagram and hands it to the handler for its state.
    fn dispatch(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Result<(), Reject> {
        if !is_usable_source(from) {
            return Err(Reject::UnusableSource);
        }
        if is_routed(datagram) {
            return self.dispatch_sealed(now, from, datagram);
        }
        let (msg, handshake) = match ClientMessage::decode_with(datagram) {
            Ok(m) => m,
            Err(WireError::BadCrc) => return Err(Reject::Corrupt),
            Err(WireError::UnknownKind(k)) if k & 0x80 != 0 => return Err(Reject::WrongDirection),
            Err(WireError::UnknownVersion(v)) => {
                self.answer_wrong_version(from, v, datagram);
                return Err(Reject::WrongVersion);
            }
            Err(_) => return Err(Reject::Malformed),
        };
        if self.table.is_sealed(&msg.uuid) {
            return self.on_plain_for_sealed(from, &msg, handshake);
        }
        let sealing = self.config.key.is_some() && self.config.encryption != Encryption::Off;
        let handshake = handshake.filter(|_| sealing);
        if msg.state == State::Connecting
            && handshake.is_none()
            && sealing
            && self.config.encryption == Encryption::Required
            && !self.table.contains(&msg.uuid)
        {
            let echo = msg.timestamp;
            let code = ErrorCode::EncryptionRequired;
            return Err(self
                .out
                .refuse(from, msg.uuid, code, 0, echo, Reject::EncryptionRequired));
        }
        self.dispatch_msg(now, from, &msg, datagram, handshake)
    }

    /// A sealed datagram: found by its routing id, opened with its
    /// session's keys, then handled as the plain datagram inside.
    fn dispatch_sealed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<(), Reject> {
        let uuid = route_of(datagram).and_then(|id| self.table.route(&id));
        if uuid.is_none() {
            return self.on_sealed_after_close(from, datagram);
        }
        let Some(seal) = uuid.and_then(|u| self.table.seal_mut(&u)) else {
            self.out.stats.undecryptable += 1;
            return Err(Reject::Undecryptable);
        };
        let mut plain = [0u8; MAX_DATAGRAM_LEN];
        let n = match seal.opener.open_routed(datagram, &mut plain) {
            Ok(n) => n,
            Err(OpenError::Replayed | OpenError::TooOld) => {
                self.out.stats.replayed += 1;
                return Err(Reject::Replayed);
            }
            Err(_) => {
                self.out.stats.undecryptable += 1;
                return Err(Reject::Undecryptable);
            }
        };
        let msg = match ClientMessage::decode(&plain[..n]) {
            Ok(m) if Some(m.uuid) == uuid => m,
            _ => return Err(Reject::Malformed),
        };
        self.dispatch_msg(now, from, &msg, &plain[..n], None)
    }

    /// A sealed datagram for no live session: a repeated CLOSED of a
    /// session freed by the CLOSED handshake is answered again (sealed);
    /// anything else did not open.
    fn on_sealed_after_close(&mut self, from: SocketAddr, datagram: &[u8]) -> Result<(), Reject> {
        let route = route_of(datagram);
        let Some((uuid, seal)) = self
            .closed_seals
            .iter_mut()
            .find(|(_, s)| Some(s.route) == route)
        else {
            self.out.stats.undecryptable += 1;
            return Err(Reject::Undecryptable);
        };
        let uuid = *uuid;
        let mut plain = [0u8; MAX_DATAGRAM_LEN];
        let n = match seal.opener.open_routed(datagram, &mut plain) {
            Ok(n) => n,
            Err(OpenError::Replayed | OpenError::TooOld) => {
                self.out.stats.replayed += 1;
                return Err(Reject::Replayed);
            }
            Err(_) => {
                self.out.stats.undecryptable += 1;
                return Err(Reject::Undecryptable);
            }
        };
        match ClientMessage::decode(&plain[..n]) {
            Ok(m) if m.uuid == uuid && m.state == State::Closed => {
                let closed = ServerMessage::Closed { echo: m.timestamp };
                let reply = seal_now(seal, uuid, closed).ok_or(Reject::Malformed)?;
                self.raw_replies.push_back((from, reply));
                Ok(())
            }
            _ => Err(Reject::UnknownSession),
        }
    }

    /// A plain datagram for a sealed session: only the repeat of its
    /// handshake (the same bytes, from any address: the reply is useless
    /// without the client's ephemeral secret, and no larger than three
    /// times the CONNECTING) is answered, with the reply sent before.
    fn on_plain_for_sealed(
        &mut self,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        handshake: Option<&[u8]>,
    ) -> Result<(), Reject> {
        let seal = self
            .table
            .seal_mut(&msg.uuid)
            .ok_or(Reject::UnknownSession)?;
        match handshake {
            Some(h) if msg.state == State::Connecting && h == seal.first.as_slice() => {
                let reply = seal.reply.clone();
                self.out.stats.handshake_repeats += 1;
                self.raw_replies.push_back((from, reply));
                Ok(())
            }
            _ => Err(Reject::Unsealed),
        }
    }

    /// Hands a decoded datagram (plain, or opened) to the handler for its
    /// state.
    fn dispatch_msg(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
        handshake: Option<&[u8]>,
    ) -> Result<(), Reject> {
        let msg = *msg;
        self.out.trace.record(now, msg.uuid, || {
            TraceEvent::Received(Datagram {
                index: msg.ack,
                window: msg.window,
                rate: msg.rate,
                ..Datagram::new(
                    DatagramKind::of_client(msg.state, msg.is_probe()),
                    datagram.len(),
                )
            })
        });
        match msg.state {
            State::Connecting if self.table.contains(&msg.uuid) => {
                self.on_connecting_again(now, from, &msg, datagram)
            }
            State::Connecting if msg.token.len() == SERVER_TOKEN_LEN => {
                match self.lookup_miss(from, msg.uuid, datagram) {
                    Some(reason) => Err(reason),
                    None => self.on_connecting_new(now, from, &msg, datagram.len(), handshake),
                }
            }
            State::Connecting => self.on_connecting_new(now, from, &msg, datagram.len(), handshake),
            State::Connected | State::Closing if !self.table.contains(&msg.uuid) => {
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
    /// resumes with its token (perhaps from a new address). The session
    /// checks it ([`Session::on_connecting`]); the endpoint answers.
    fn on_connecting_again(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
    ) -> Result<(), Reject> {
        let (uuid, echo) = (msg.uuid, msg.timestamp);
        let (config, out) = (&self.config, &mut self.out);
        let checked = self
            .table
            .update(uuid, |s| {
                s.on_connecting(now, from, msg, datagram.len(), config, out)
            })
            .ok_or(Reject::UnknownSession)?;
        match checked.map_err(|r| self.refused(from, msg, datagram, r))? {
            Resume::Repeat { accept } => {
                self.out.reply(from, uuid, accept);
                self.apply_ack(now, uuid, msg, AckKind::Normal);
            }
            Resume::Resumed {
                accept,
                fresh,
                moved,
            } => {
                self.out.reply(from, uuid, accept);
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
            }
        }
        Ok(())
    }

    /// Answers a message its session turned away (see [`Refusal`]); the
    /// reason it is counted under.
    fn refused(
        &mut self,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
        refusal: Refusal,
    ) -> Reject {
        match refusal {
            Refusal::Answer {
                code,
                detail,
                reason,
            } => self
                .out
                .refuse(from, msg.uuid, code, detail, msg.timestamp, reason),
            Refusal::WrongToken => {
                let confirmed = self.table.get(&msg.uuid).is_some_and(Session::is_confirmed);
                self.wrong_token(from, msg, datagram, confirmed)
            }
            Refusal::Drop(reason) => reason,
            Refusal::StaleCopy => {
                self.table.remove(&msg.uuid);
                tracing::debug!(uuid = %msg.uuid, ack = msg.ack, "stale session copy dropped");
                // The next datagram looks the session up.
                Reject::StoreLookup
            }
        }
    }

    /// Sends a path challenge to `from` if it is the session's address and
    /// has not proven itself (the budget covers it: 24 bytes for a message
    /// of at least 50).
    fn challenge_if_unvalidated(&mut self, uuid: Uuid, from: SocketAddr, echo: u64) {
        let Some(s) = self.table.get(&uuid) else {
            return;
        };
        if s.path().is_validated() || from != s.addr() {
            return;
        }
        let rng = &mut self.rng;
        let challenge = self.table.update(uuid, |s| {
            let challenge = s.path_mut().challenge_or(rng.gen());
            let msg = ServerMessage::Challenge { challenge, echo };
            s.on_reply(from, msg.encoded_len());
            msg
        });
        if let Some(msg) = challenge {
            self.out.stats.path_challenges += 1;
            self.out.reply(from, uuid, msg);
        }
    }

    /// Checks a CONNECTED/CLOSING/CLOSED message against its session
    /// ([`Session::on_message`]) and records it; counts and reports a
    /// migration, and challenges a new address. Returns how to read its
    /// ack.
    fn authenticate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
    ) -> Result<AckKind, Reject> {
        let (uuid, echo) = (msg.uuid, msg.timestamp);
        let (config, out) = (&self.config, &mut self.out);
        let Some(checked) = self.table.update(uuid, |s| {
            s.on_message(now, from, msg, datagram.len(), config, out)
        }) else {
            let code = ErrorCode::UnknownSession;
            return Err(self
                .out
                .refuse(from, uuid, code, 0, echo, Reject::UnknownSession));
        };
        let (kind, moved) = checked.map_err(|r| self.refused(from, msg, datagram, r))?;
        if moved != Move::Stayed {
            self.out.stats.migrations += 1;
            tracing::debug!(%uuid, %from, validated = moved == Move::ToValidated, "session migrated");
            self.out.event(ServerEvent::Migrated { uuid, addr: from });
        }
        self.challenge_if_unvalidated(uuid, from, echo);
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
        let s = self.table.get(&msg.uuid).ok_or(Reject::UnknownSession)?;
        if s.ack() < s.len() {
            return Err(Reject::ClosingEarly);
        }
        let checksum = s.checksum();
        let echo = msg.timestamp;
        let reply = ServerMessage::Checksum { checksum, echo };
        self.table
            .update(msg.uuid, |s| s.on_reply(from, reply.encoded_len()));
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
        if !self.table.contains(&msg.uuid) {
            // No larger than the request.
            self.out
                .reply(from, msg.uuid, ServerMessage::Closed { echo });
            return Ok(());
        }
        self.authenticate(now, from, msg, datagram)?;
        let s = self.table.get(&msg.uuid).ok_or(Reject::UnknownSession)?;
        let abort = msg.is_abort();
        if !abort && (msg.ack < s.len() || s.high_water() < s.len()) {
            return Err(Reject::ClosingEarly);
        }
        let data_sent = s.data_sent();
        if let Some(seal) = self.table.take_seal(&msg.uuid) {
            // Sealed now: the keys leave the table with the session, and
            // are kept a while for a repeated CLOSED.
            let mut seal = seal;
            if let Some(reply) = seal_now(&mut seal, msg.uuid, ServerMessage::Closed { echo }) {
                self.raw_replies.push_back((from, reply));
            }
            if self.closed_seals.len() >= MAX_CLOSED_SEALS {
                self.closed_seals.pop_front();
            }
            self.closed_seals.push_back((msg.uuid, seal));
            self.table.remove(&msg.uuid);
            self.close_removed(msg.uuid, abort, data_sent);
            return Ok(());
        }
        self.table.remove(&msg.uuid);
        self.close_removed(msg.uuid, abort, data_sent);
        self.out
            .reply(from, msg.uuid, ServerMessage::Closed { echo });
        Ok(())
    }

    /// Counts and reports a session the CLOSED handshake freed.
    fn close_removed(&mut self, uuid: Uuid, abort: bool, data_sent: u64) {
        let msg_uuid = uuid;
        if self.config.store.is_some() {
            self.out.stats.store_removes += 1;
            self.store_op(StoreOp::Remove(msg_uuid));
        }
        if abort {
            // The client gave up (Ctrl-C): free the session now rather
            // than after its lifetime.
            self.out.stats.sessions_aborted += 1;
            tracing::debug!(uuid = %msg_uuid, "session aborted by the client");
        } else {
            self.out.stats.sessions_closed += 1;
            tracing::debug!(uuid = %msg_uuid, "session closed");
        }
        self.out.event(ServerEvent::Closed {
            uuid: msg_uuid,
            data_sent,
        });
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

    /// Hands an ack to its session, under its share of the window budget,
    /// and schedules what it queued.
    fn apply_ack(&mut self, now: Instant, uuid: Uuid, msg: &ClientMessage<'_>, kind: AckKind) {
        let fair = self.config.window_budget / self.table.len().max(1);
        // The session's share of the budget, and never more than the budget
        // has left once every other session's slots are counted.
        let others = self.table.slots_of_others(&uuid);
        let room = self.config.window_budget.saturating_sub(others);
        let cap = u32::try_from(fair.min(room))
            .unwrap_or(u32::MAX)
            .max(MIN_WINDOW_SHARE);
        let (config, out) = (&self.config, &mut self.out);
        let acked = self
            .table
            .update(uuid, |s| s.on_ack(now, msg, kind, cap, config, out));
        if acked.is_none() {
            return;
        }
        self.table.schedule(uuid);
        self.store_sync(now, uuid);
    }
}

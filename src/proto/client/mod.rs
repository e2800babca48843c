//! The client connection: CONNECTING → CONNECTED → CLOSING → CLOSED.
//!
//! A [`Client`] is driven from outside: feed it datagrams with
//! [`Client::handle`], send what [`Client::poll_transmit`] writes, wake it at
//! [`Client::poll_timeout`] with [`Client::handle_timeout`], and read
//! [`Client::poll_event`] for values (in order, exactly once), RTT samples,
//! completion and failure. It holds O(window) state: a ring of received
//! values past the next needed index, and the time each index became
//! eligible (for delivery latency).
//!
//! Acks carry the next needed index, the advertised window and (unless
//! disabled) a selective-ack bitmap. One goes out after every
//! [`Client::ack_every`] new datagrams, at once when a new gap appears or
//! the advertised window is used up, when the delayed-ack timer fires, and
//! as two probe copies when nothing has been heard for a probe timeout. The
//! window is set by the rate controller ([`crate::proto::congestion`]): it
//! slides with the highest index received, so holes are repaired while new
//! data flows. At the end the running sum of the delivered values is
//! compared with the server's checksum; a mismatch is a hard error.
//!
//! A client may know several servers that share their sessions
//! ([`ClientConfig::servers`]). When the current one goes silent
//! ([`SILENT_PROBES_BEFORE_FAILOVER`](crate::proto::recovery::SILENT_PROBES_BEFORE_FAILOVER)
//! probe timeouts in a row) or answers
//! that it does not know the session, the client emits
//! [`ClientEvent::ServerLost`] and waits; the driver opens a path to the
//! next server ([`Client::server_index`]) and calls [`Client::failover`],
//! and the client resumes there by UUID and token from the index it holds,
//! with a fresh RTT estimate and window (a new path). The idle timeout
//! still bounds the whole search; when every server refused the session
//! the transfer fails at once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::proto::congestion::RateControl;
use crate::proto::reassembly::ReorderBuffer;
use crate::proto::recovery::{ACK_EVERY_MAX, ACK_EVERY_MIN, REORDER_SPAN};
use crate::proto::rtt::RttEstimator;
use crate::proto::sequence::RunningChecksum;
use crate::proto::timer::{Timer, TimerTable};
use crate::proto::trace::{Datagram, DatagramKind, Metrics, TraceEvent, TraceQueue};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::proto::crypto::seal::{is_routed, route_of};
use crate::proto::crypto::{ClientHandshake, OpenError, Opener, PublicKey, Sealer};
use crate::proto::wire::{
    decode_handshake_reply, is_handshake_reply, other_server_version, ClientMessage, ServerMessage,
    State, WireError, CHALLENGE_LEN, FLAG_ABORT, FLAG_PROBE, MAX_DATAGRAM_LEN, MAX_TOKEN_LEN,
    RETRY_TOKEN_LEN, SERVER_TOKEN_LEN, VERSION,
};

/// Messages that carry the answer to one path challenge: the first may be
/// lost.
const CHALLENGE_ANSWERS: u8 = 3;

mod config;
mod data;
mod event;
mod failover;
mod handshake;
mod recording;
mod retransmit;

pub use crate::proto::recovery::MAX_WINDOW;
use config::{rate_control, reorder_span};
pub use config::{ClientConfig, ClientEncryption, ResumeState, CUMULATIVE_MAX_WINDOW};
pub use event::{BadRequest, ClientError, ClientEvent, ClientStats, LostReason};

/// A client connection. See the module docs.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    /// Timestamps on the wire are microseconds since this instant, plus
    /// `clock_base` (a resumed session carries its clock on).
    epoch: Instant,
    clock_base: u64,
    /// Newest timestamp sent.
    last_sent_ts: u64,
    token: Option<Vec<u8>>,
    /// The server's retry token, sent in CONNECTING until it accepts.
    retry_token: Option<[u8; RETRY_TOKEN_LEN]>,
    /// The latest path challenge and how many more messages carry it.
    challenge: Option<([u8; CHALLENGE_LEN], u8)>,
    /// Our timestamp when the token arrived: errors echoing older
    /// timestamps answer messages sent without it.
    token_since: u64,
    /// Values past the next needed index (which is the cumulative ack).
    reorder: ReorderBuffer,
    sum: RunningChecksum,
    /// The congestion window and what it is derived from.
    rc: RateControl,
    rtt: RttEstimator,
    timers: TimerTable,
    last_heard: Option<Instant>,
    started: Instant,
    /// Newest echo an RTT sample was taken from.
    sampled_echo: u64,
    unacked: u32,
    /// Changes to the held ranges (new holes, holes filled past the
    /// next needed index) since the last ack was written.
    ack_news: u32,
    /// The same, carried by the last ack written.
    last_ack_news: u32,
    ack_now: bool,
    /// Between [`Client::begin_batch`] and [`Client::end_batch`].
    batching: bool,
    /// A new gap's ack was held back for the end of the batch.
    gap_ack_deferred: bool,
    probe_due: bool,
    send_pending: bool,
    /// Copies of the next handshake or probe still to send: two once
    /// timeouts persist, so that heavy loss does not stall the transfer.
    copies: u8,
    close_tries: u32,
    /// Set by [`Client::abort`]: the CLOSED we send abandons the session.
    aborted: bool,
    events: VecDeque<ClientEvent>,
    sack_buf: Vec<u8>,
    stats: ClientStats,
    finished: bool,
    /// Probe timeouts in a row with nothing heard.
    silent_probes: u32,
    /// The server talked to now: an index into the driver's list of
    /// [`ClientConfig::servers`].
    server: u32,
    /// Which servers answered that they do not know the session.
    refused: Vec<bool>,
    /// Set while waiting for the driver to move to the next server.
    lost: Option<LostReason>,
    /// Trace records, when [`ClientConfig::trace`] is on.
    trace: TraceQueue,
    /// The figures last traced (a record is made when they change).
    traced: Metrics,
    /// Where the session's encryption stands.
    crypto: Crypto,
    /// The key the server proved (sealed sessions).
    server_key: Option<PublicKey>,
    /// Randomness of handshakes.
    rng: StdRng,
}

/// A client's encryption state. One per client, held inline: the sealed
/// variant's replay window makes it the large one, which is the one a
/// session spends its life in.
#[allow(clippy::large_enum_variant)]
enum Crypto {
    /// Plain datagrams.
    Plain,
    /// CONNECTING carries `first`; waiting for the reply.
    Handshaking {
        state: Box<ClientHandshake>,
        first: Vec<u8>,
    },
    /// Every datagram sealed.
    Sealed {
        sealer: Sealer,
        opener: Opener,
        route: [u8; SERVER_TOKEN_LEN],
    },
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain => "Plain",
            Self::Handshaking { .. } => "Handshaking",
            Self::Sealed { .. } => "Sealed",
        })
    }
}

impl Client {
    /// A new session, starting at `now`.
    pub fn new(config: ClientConfig, now: Instant) -> Self {
        Self::build(config, now, None)
    }

    /// Resumes a session another client started (same UUID and length).
    pub fn resume(config: ClientConfig, state: ResumeState, now: Instant) -> Self {
        Self::build(config, now, Some(state))
    }

    fn build(mut config: ClientConfig, now: Instant, resume: Option<ResumeState>) -> Self {
        config.max_window = config.max_window.clamp(1, MAX_WINDOW);
        config.ack_frequency = config.ack_frequency.max(1);
        config.servers = config.servers.max(1);
        let mut sum = RunningChecksum::default();
        let (token, next, clock_base) = match resume {
            Some(r) => {
                sum = RunningChecksum::from_parts(r.sum, u64::from(r.next));
                (Some(r.token), r.next.min(config.len), r.timestamp)
            }
            None => (None, 0, 0),
        };
        let mut c = Self {
            rc: rate_control(&config),
            rtt: RttEstimator::new(config.rtt),
            state: State::Connecting,
            epoch: now,
            clock_base,
            last_sent_ts: clock_base,
            token_since: if token.is_some() { clock_base + 1 } else { 0 },
            token,
            retry_token: None,
            challenge: None,
            reorder: ReorderBuffer::new(REORDER_SPAN.min(reorder_span(&config)), next),
            sum,
            timers: TimerTable::default(),
            last_heard: None,
            started: now,
            sampled_echo: 0,
            unacked: 0,
            ack_news: 0,
            last_ack_news: 0,
            ack_now: false,
            batching: false,
            gap_ack_deferred: false,
            probe_due: false,
            send_pending: true,
            copies: 1,
            close_tries: 0,
            aborted: false,
            events: VecDeque::new(),
            sack_buf: Vec::new(),
            stats: ClientStats::default(),
            finished: false,
            silent_probes: 0,
            server: 0,
            refused: vec![false; config.servers as usize],
            lost: None,
            trace: TraceQueue::new(config.trace),
            traced: Metrics::default(),
            crypto: Crypto::Plain,
            server_key: None,
            rng: match config.crypto_seed {
                Some(seed) => StdRng::seed_from_u64(seed),
                None => StdRng::from_entropy(),
            },
            config,
        };
        c.start_handshake();
        c.timers.set(Timer::Idle, now + c.config.idle_timeout);
        c
    }

    /// Starts a Noise handshake bound to the session's UUID (its payload),
    /// when the session is to be sealed. NX even with a pinned key: the
    /// server proves its key in the reply, so a client pinned to another
    /// key fails at once naming both, where NK would hear nothing.
    fn start_handshake(&mut self) {
        if self.config.encryption == ClientEncryption::Off {
            return;
        }
        let uuid = *self.config.uuid.as_bytes();
        self.crypto = match ClientHandshake::start(None, &uuid, &mut self.rng) {
            Ok((state, first)) => Crypto::Handshaking {
                state: Box::new(state),
                first,
            },
            Err(_) => Crypto::Plain,
        };
    }

    /// The key the server proved, once a sealed session is open.
    pub fn server_key(&self) -> Option<PublicKey> {
        self.server_key
    }

    /// True once every datagram is sealed.
    pub fn is_sealed(&self) -> bool {
        matches!(self.crypto, Crypto::Sealed { .. })
    }

    /// The server's handshake reply: finish the handshake, check the
    /// server's key, and read the Accept inside.
    fn on_handshake_reply(&mut self, now: Instant, datagram: &[u8]) {
        let Ok(reply) = decode_handshake_reply(datagram, self.config.uuid) else {
            self.stats.corrupt += 1;
            return;
        };
        let Crypto::Handshaking { state, first } =
            std::mem::replace(&mut self.crypto, Crypto::Plain)
        else {
            self.stats.invalid += 1;
            return;
        };
        let done = match state.finish(reply) {
            Ok(done) => done,
            Err(_) => {
                // Forged or damaged: wait for the real one. A Noise state
                // that failed a read is spent, so start afresh only if we
                // must; keep the same first message by restoring nothing
                // else: the server answers a repeat with the same reply.
                self.stats.undecryptable += 1;
                self.crypto = Crypto::Plain;
                self.restart_handshake_after_failure(first);
                return;
            }
        };
        if let ClientEncryption::Pinned(expected) = self.config.encryption {
            if done.server_key != expected {
                self.fail(ClientError::KeyMismatch {
                    expected,
                    offered: done.server_key,
                });
                return;
            }
        }
        let msg = match ServerMessage::decode(&done.payload, self.config.uuid) {
            Ok(m @ ServerMessage::Accept { token, .. }) => {
                let (sealer, opener) = done.keys.into_transport();
                self.crypto = Crypto::Sealed {
                    sealer,
                    opener,
                    route: token,
                };
                self.server_key = Some(done.server_key);
                m
            }
            _ => {
                self.stats.invalid += 1;
                return;
            }
        };
        self.on_plain(now, datagram.len(), msg);
    }

    /// A reply that failed to authenticate spent the Noise state: start a
    /// new handshake under a new UUID (the server holds a session for the
    /// old one it can no longer finish).
    fn restart_handshake_after_failure(&mut self, _first: Vec<u8>) {
        self.restart();
    }

    /// The session's UUID.
    pub fn uuid(&self) -> Uuid {
        self.config.uuid
    }

    /// The requested length.
    pub fn len(&self) -> u32 {
        self.config.len
    }

    /// True for a zero-length request.
    pub fn is_empty(&self) -> bool {
        self.config.len == 0
    }

    /// True once `Completed` or `Failed` was emitted.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Next index needed; all below were delivered.
    pub fn next_index(&self) -> u32 {
        self.reorder.next()
    }

    /// The rate controller, whose congestion window bounds the advertised
    /// window.
    pub fn window(&self) -> &RateControl {
        &self.rc
    }

    /// The RTT estimator.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// Counters.
    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    /// What another client needs to resume this session, once the server
    /// has issued a token.
    pub fn resume_state(&self) -> Option<ResumeState> {
        Some(ResumeState {
            token: self.token.clone()?,
            next: self.reorder.next(),
            sum: self.sum.sum(),
            timestamp: self.last_sent_ts,
        })
    }

    /// Abandons the transfer (Ctrl-C): sends CLOSED with the ABORT flag, so
    /// that the server frees the session now instead of after its
    /// lifetime, retried like any CLOSED. The client completes on the
    /// server's Closed (or UnknownSession) or after its close retries;
    /// nothing more is delivered. A client that holds no token yet has no
    /// session to close and completes at once; one already closing after
    /// a verified checksum carries on.
    pub fn abort(&mut self, now: Instant) {
        if self.finished || self.state == State::Closed {
            return;
        }
        if self.token.is_none() {
            self.complete();
            return;
        }
        self.aborted = true;
        self.set_state(State::Closed);
        self.send_pending = true;
        self.probe_due = false;
        self.ack_now = false;
        self.copies = 1;
        self.close_tries = 0;
        self.timers.stop(Timer::Ack);
        self.timers.stop(Timer::Retransmit);
        self.arm_retransmit(now);
    }

    /// True once [`Client::abort`] abandoned the transfer.
    pub fn is_aborted(&self) -> bool {
        self.aborted
    }

    /// Feeds one datagram from the server.
    pub fn handle(&mut self, now: Instant, datagram: &[u8]) {
        if self.finished {
            return;
        }
        self.stats.datagrams_received += 1;
        let mut plain = [0u8; MAX_DATAGRAM_LEN];
        let datagram: &[u8] = match &mut self.crypto {
            Crypto::Sealed { opener, route, .. } => {
                if route_of(datagram) != Some(*route) {
                    // Plain (a clear refusal or close anyone could
                    // forge), or sealed for another session.
                    if is_routed(datagram) {
                        self.stats.undecryptable += 1;
                    } else {
                        self.stats.unsealed += 1;
                    }
                    return;
                }
                match opener.open_routed(datagram, &mut plain) {
                    Ok(n) => &plain[..n],
                    Err(OpenError::Replayed | OpenError::TooOld) => {
                        self.stats.replayed += 1;
                        return;
                    }
                    Err(_) => {
                        self.stats.undecryptable += 1;
                        return;
                    }
                }
            }
            Crypto::Handshaking { .. } if is_handshake_reply(datagram) => {
                self.on_handshake_reply(now, datagram);
                self.trace_metrics(now);
                return;
            }
            _ => datagram,
        };
        let msg = match ServerMessage::decode(datagram, self.config.uuid) {
            Ok(m) => m,
            // Damaged, or meant for another session (the CRC is keyed by
            // the UUID): a port another client just left still receives
            // that client's data for a while.
            Err(WireError::BadCrc) => {
                self.stats.corrupt += 1;
                return;
            }
            // A server of another version answered our handshake in its
            // own (its `WrongVersion` error, or anything else): say so
            // rather than wait for the idle timeout. Once a session is
            // open, such a datagram is not for us.
            Err(WireError::UnknownVersion(_)) if self.token.is_none() => {
                let Some(server) = other_server_version(datagram, self.config.uuid) else {
                    self.stats.corrupt += 1;
                    return;
                };
                self.stats.invalid += 1;
                self.fail(ClientError::BadRequest(BadRequest::WrongVersion {
                    server,
                    client: VERSION,
                }));
                return;
            }
            Err(_) => {
                self.stats.invalid += 1;
                return;
            }
        };
        if matches!(self.crypto, Crypto::Handshaking { .. })
            && matches!(msg, ServerMessage::Accept { .. })
        {
            // We asked for a sealed session and got a plain one.
            self.fail(ClientError::NotEncrypted);
            return;
        }
        self.on_plain(now, datagram.len(), msg);
    }

    /// A message that passed its checks (opened, when sealed).
    fn on_plain(&mut self, now: Instant, len: usize, msg: ServerMessage) {
        if self.config.servers < 2 || !matches!(msg, ServerMessage::Error { .. }) {
            self.heard(now);
        } else {
            // With other servers to try, a refusal is no sign of life: the
            // idle timeout bounds the search for a server that holds the
            // session, however many refuse it on the way.
            self.silent_probes = 0;
        }
        self.take_rtt_sample(now, msg.echo());
        self.trace.record(now, self.config.uuid, || {
            let index = match msg {
                ServerMessage::Data { index, .. } => index,
                _ => 0,
            };
            TraceEvent::Received(Datagram {
                index,
                echo: msg.echo() != 0,
                ..Datagram::new(DatagramKind::of_server(&msg), len)
            })
        });
        self.on_message(now, msg);
        self.trace_metrics(now);
    }

    /// Acts on a message that passed its checks.
    fn on_message(&mut self, now: Instant, msg: ServerMessage) {
        match msg {
            ServerMessage::Accept { token, .. } => self.on_accept(now, &token),
            ServerMessage::Data {
                index,
                payload,
                echo,
            } => self.on_data(now, index, payload, echo),
            ServerMessage::Checksum { checksum, .. } => self.on_checksum(now, checksum),
            ServerMessage::Closed { .. } => {
                if self.state == State::Closed {
                    self.complete();
                } else {
                    self.stats.invalid += 1;
                }
            }
            ServerMessage::Error { code, detail, echo } => self.on_error(code, detail, echo),
            ServerMessage::Challenge { challenge, .. } => self.on_challenge(challenge),
            ServerMessage::Retry { token, echo } => self.on_retry(now, token, echo),
        }
    }

    /// How many changes to the held ranges (a new hole, a hole filled past
    /// the next needed index) the ack [`poll_transmit`](Self::poll_transmit)
    /// wrote last carries that the ack before it did not. Each ack lists
    /// the newest ranges and the latest fills, so a later ack repeats an
    /// earlier one's news only while it is recent: a driver that sends just
    /// the last acks of a received batch must also send an earlier one
    /// whenever
    /// [`ACK_NEWS_STRIDE`](crate::proto::recovery::ACK_NEWS_STRIDE) changes came after it, or the server
    /// never hears of the ranges in between and resends them.
    pub fn last_ack_news(&self) -> u32 {
        self.last_ack_news
    }

    /// Ack after this many new datagrams: a quarter of the congestion
    /// window within [[`ACK_EVERY_MIN`], [`ACK_EVERY_MAX`]] (at least
    /// `ack_frequency`): four acks per window, so one lost ack costs no
    /// stall (the next covers it), at about 0.2 acks per value at 10% loss
    /// rather than one per out-of-order arrival.
    pub fn ack_every(&self) -> u32 {
        (self.rc.get() / 4)
            .clamp(ACK_EVERY_MIN, ACK_EVERY_MAX)
            .max(self.config.ack_frequency)
    }

    /// The earliest time [`Client::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        self.timers.next()
    }

    /// Handles every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        let due: Vec<Timer> = self.timers.take_expired(now).collect();
        for timer in due {
            match timer {
                Timer::Idle => {
                    let silent = now - self.last_heard.unwrap_or(self.started);
                    let err = if self.last_heard.is_some() {
                        ClientError::Timeout(silent)
                    } else {
                        ClientError::NoAnswer(silent)
                    };
                    self.fail(err);
                    return;
                }
                Timer::Ack => self.ack_now = true,
                Timer::Retransmit => self.on_retransmit_timeout(now),
            }
        }
        self.trace_metrics(now);
    }

    /// Writes the next datagram to send into `buf` (at least
    /// [`MAX_DATAGRAM_LEN`] bytes) and returns its length.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        if self.finished || self.lost.is_some() || buf.len() < MAX_DATAGRAM_LEN {
            return None;
        }
        let (state, ack, probe) = self.due_message()?;
        self.ack_now = false;
        self.gap_ack_deferred = false;
        self.unacked = 0;
        self.timers.stop(Timer::Ack);
        let window = self.advertised_window();
        let timestamp = self.timestamp(now);
        if state == State::Connected {
            self.stats.acks_sent += 1;
            self.last_ack_news = std::mem::take(&mut self.ack_news);
            self.fill_sack();
            if probe || !self.sack_buf.is_empty() || (self.reorder.held() > 0 && !self.config.sack)
            {
                self.stats.retransmit_requests += 1;
            }
            self.mark_eligible(now, window);
            self.rc.on_ack_sent(now, timestamp);
        } else {
            self.sack_buf.clear();
        }
        self.last_sent_ts = timestamp;
        let empty: &[u8] = &[];
        let mut token_buf = [0u8; MAX_TOKEN_LEN];
        let token = self.token_field(state, &mut token_buf);
        let msg = ClientMessage {
            state,
            uuid: self.config.uuid,
            len: self.config.len,
            window,
            ack,
            timestamp,
            rate: if state == State::Connected {
                self.rc.pacing_rate()
            } else {
                0
            },
            flags: if state == State::Closed && self.aborted {
                FLAG_ABORT
            } else if probe {
                FLAG_PROBE
            } else {
                0
            },
            token: &token_buf[..token],
            sack: if state == State::Connected {
                &self.sack_buf
            } else {
                empty
            },
        };
        let n = match &mut self.crypto {
            Crypto::Handshaking { first, .. } if state == State::Connecting => {
                msg.encode_with(Some(first), buf).ok()?
            }
            Crypto::Sealed { sealer, route, .. } => {
                let mut plain = [0u8; MAX_DATAGRAM_LEN];
                let n = msg.encode(&mut plain).ok()?;
                sealer.seal_routed(route, &plain[..n], buf).ok()?
            }
            _ => msg.encode(buf).ok()?,
        };
        self.stats.datagrams_sent += 1;
        self.trace.record(now, self.config.uuid, || {
            TraceEvent::Sent(Datagram {
                index: ack,
                window,
                rate: msg.rate,
                ..Datagram::new(DatagramKind::of_client(state, probe), n)
            })
        });
        if state == State::Connecting {
            self.mark_eligible(now, window);
        }
        if state == State::Connected || !self.timers.is_set(Timer::Retransmit) {
            // The answer to this ack cannot come sooner than one RTT from
            // now: an ack held back by the delayed-ack timer must not make
            // the probe timer fire before it could be answered.
            self.arm_retransmit(now);
        }
        Some(n)
    }

    /// What is due to go out, if anything: its state, its ack and whether
    /// it is a probe (a copy of it is counted off here).
    fn due_message(&mut self) -> Option<(State, u32, bool)> {
        let probe = self.probe_due;
        let (state, ack) = match self.state {
            State::Connecting if self.send_pending => {
                self.stats.handshakes += 1;
                (State::Connecting, self.reorder.next())
            }
            State::Connected if self.ack_now || probe => (State::Connected, self.reorder.next()),
            State::Closing if self.send_pending => (State::Closing, self.config.len),
            State::Closed if self.send_pending && self.aborted => {
                (State::Closed, self.reorder.next())
            }
            State::Closed if self.send_pending => (State::Closed, self.config.len),
            _ => return None,
        };
        if self.copies > 1 {
            self.copies -= 1;
        } else {
            self.send_pending = false;
            self.probe_due = false;
        }
        Some((state, ack, probe))
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn timestamp(&self, now: Instant) -> u64 {
        // +1 so that 0 never is a real timestamp (0 = nothing echoed yet).
        // Whole microseconds without `as_micros()`'s 128-bit division (this
        // runs for every datagram).
        let d = now.saturating_duration_since(self.epoch);
        let since = d
            .as_secs()
            .saturating_mul(1_000_000)
            .saturating_add(u64::from(d.subsec_micros()));
        self.clock_base.saturating_add(since).saturating_add(1)
    }

    fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
        self.silent_probes = 0;
        self.timers.set(Timer::Idle, now + self.config.idle_timeout);
    }

    fn take_rtt_sample(&mut self, now: Instant, echo: u64) {
        if echo == 0 || echo <= self.sampled_echo || echo > self.timestamp(now) {
            return;
        }
        self.sampled_echo = echo;
        let rtt = Duration::from_micros(self.timestamp(now) - echo);
        self.rtt.on_sample(rtt);
        self.events.push_back(ClientEvent::RttSample(rtt));
    }

    fn maybe_closing(&mut self, now: Instant) {
        if self.state == State::Connected && self.reorder.next() >= self.config.len {
            self.set_state(State::Closing);
            self.send_pending = true;
            self.timers.stop(Timer::Ack);
            self.arm_retransmit(now);
        }
    }

    fn set_state(&mut self, state: State) {
        if state != self.state {
            tracing::debug!(uuid = %self.config.uuid, from = self.state.name(), to = state.name(), "client state");
            self.state = state;
        }
    }

    fn complete(&mut self) {
        self.set_state(State::Closed);
        self.finished = true;
        self.timers.clear();
        self.events.push_back(ClientEvent::Completed);
    }

    fn fail(&mut self, err: ClientError) {
        tracing::debug!(uuid = %self.config.uuid, error = %err, "client failed");
        self.finished = true;
        self.timers.clear();
        self.events.push_back(ClientEvent::Failed(err));
    }
}

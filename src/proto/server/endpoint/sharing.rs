//! The endpoint's side of the shared session store: the operations it
//! queues for the driver (writes on confirmation, throttled refreshes and
//! close; lookups for sessions it does not hold) and restoring a session
//! from its record. (Carrying a stale copy forward is the session's own
//! check: see `Session::on_connecting`.)

use std::net::SocketAddr;
use std::time::Instant;

use uuid::Uuid;

use super::{Server, MAX_STORE_OPS};
use crate::proto::server::outbox::Reject;
use crate::proto::server::record::{Lookup, LookupOutcome, SessionRecord, StoreOp};
use crate::proto::server::secret::constant_time_eq;
use crate::proto::server::session::{split_token, Session};
use crate::proto::wire::{ClientMessage, ErrorCode};

impl Server {
    /// The next operation for the shared store (only with
    /// [`ServerConfig::store`](crate::proto::server::ServerConfig::store)). The driver carries it out asynchronously;
    /// a [`StoreOp::Lookup`] must be answered with
    /// [`Server::complete_lookup`].
    pub fn poll_store_op(&mut self) -> Option<StoreOp> {
        self.store_ops.pop_front()
    }

    /// Tells the endpoint whether the shared store answers. While it does
    /// not, new sessions are refused ([`Reject::StoreUnavailable`]: no
    /// other endpoint could resume them); sessions held here carry on.
    pub fn set_store_available(&mut self, up: bool) {
        self.store_up = up;
    }

    /// Sessions with a store lookup in flight.
    pub fn lookups_in_flight(&self) -> usize {
        self.lookups.len()
    }

    /// Answers a [`StoreOp::Lookup`]: a found record restores the session
    /// (unless it is held here meanwhile), then the held datagram is
    /// processed as if it had just arrived; a miss makes it an unknown
    /// session; an unavailable store drops it (the client retransmits).
    pub fn complete_lookup(&mut self, now: Instant, lookup: Lookup, outcome: LookupOutcome) {
        self.lookups.remove(&lookup.uuid);
        match outcome {
            LookupOutcome::Found(record) => {
                if record.uuid == lookup.uuid {
                    self.restore(now, lookup.from, &lookup.datagram, &record);
                }
            }
            LookupOutcome::Missing => self.out.stats.store_misses += 1,
            LookupOutcome::Unavailable => {
                self.out.stats.store_lookups_failed += 1;
                return;
            }
        }
        self.lookup_done = true;
        self.handle(now, lookup.from, &lookup.datagram);
        self.lookup_done = false;
    }

    /// Carries on a session from its record, at the ack the held datagram
    /// reports (the client holds everything below it).
    ///
    /// A session of that UUID held here is replaced only when it was never
    /// confirmed and the client presents the stored session's token: the
    /// client moved mid-handshake, opened a second session elsewhere and
    /// confirmed that one (ours is a handshake nobody will finish).
    pub(super) fn restore(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        record: &SessionRecord,
    ) {
        if record.len > self.config.max_len {
            return;
        }
        let Ok(msg) = ClientMessage::decode(datagram) else {
            return;
        };
        if let Some(held) = self.table.get(&record.uuid) {
            let (token, _) = split_token(msg.token);
            if held.is_confirmed() || !constant_time_eq(token, &record.token) {
                return;
            }
            self.evict(record.uuid);
        }
        if msg.len != record.len || msg.ack > record.len {
            return;
        }
        if self.table.len() >= self.config.max_sessions && !self.evict_pending() {
            return;
        }
        let uuid = record.uuid;
        let mut s = Session::restored(record, from, msg.ack, now);
        // The record is current: the next write is a refresh.
        s.set_stored_at(now);
        let lifetime = s.lifetime(&self.config);
        self.table.insert(s, now + lifetime);
        self.out.stats.sessions_restored += 1;
        tracing::debug!(%uuid, %from, ack = msg.ack, "session restored from the store");
    }

    /// Queues a store operation (dropped, and counted, when the driver
    /// does not keep up).
    pub(super) fn store_op(&mut self, op: StoreOp) {
        if self.store_ops.len() >= MAX_STORE_OPS {
            self.out.stats.store_ops_dropped += 1;
            return;
        }
        self.store_ops.push_back(op);
    }

    /// A token that is not the session's. If the session here was never
    /// confirmed, the client may have moved mid-handshake and confirmed
    /// another session of this UUID on another worker or instance: the
    /// store says (a stored session with exactly this token replaces ours,
    /// see `restore`). Otherwise, and when the store was just asked:
    /// Unauthorized.
    pub(super) fn wrong_token(
        &mut self,
        from: SocketAddr,
        msg: &ClientMessage<'_>,
        datagram: &[u8],
        confirmed: bool,
    ) -> Reject {
        if !confirmed {
            if let Some(reason) = self.lookup_miss(from, msg.uuid, datagram) {
                return reason;
            }
        }
        let echo = msg.timestamp;
        self.out.refuse(
            from,
            msg.uuid,
            ErrorCode::Unauthorized,
            0,
            echo,
            Reject::Unauthorized,
        )
    }

    /// For a session this endpoint does not hold: asks the shared store
    /// (`Some`), or `None` when there is none (or it was just asked).
    pub(super) fn lookup_miss(
        &mut self,
        from: SocketAddr,
        uuid: Uuid,
        datagram: &[u8],
    ) -> Option<Reject> {
        let settings = self.config.store?;
        if self.lookup_done {
            return None;
        }
        if self.lookups.len() < settings.max_lookups && self.lookups.insert(uuid) {
            self.out.stats.store_lookups += 1;
            self.store_op(StoreOp::Lookup(Lookup {
                uuid,
                from,
                datagram: datagram.to_vec(),
            }));
        }
        Some(Reject::StoreLookup)
    }

    /// Writes a confirmed session's record when it has none yet, or when
    /// the last write is older than the refresh interval.
    pub(super) fn store_sync(&mut self, now: Instant, uuid: Uuid) {
        let Some(settings) = self.config.store else {
            return;
        };
        let Some(s) = self.table.get(&uuid) else {
            return;
        };
        if !s.is_confirmed() {
            return;
        }
        let refresh = match s.stored_at() {
            None => false,
            Some(at) if now >= at + settings.refresh => true,
            Some(_) => return,
        };
        let lifetime = s.lifetime(&self.config);
        let Some(record) = self.table.update(uuid, |s| {
            s.set_stored_at(now);
            s.record(lifetime)
        }) else {
            return;
        };
        self.out.stats.store_writes += 1;
        if refresh {
            self.out.stats.store_refreshes += 1;
        }
        self.store_op(StoreOp::Put(record));
    }
}

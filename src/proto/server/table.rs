//! The session table: every live [`Session`] by UUID, and the indices the
//! endpoint keeps over them.
//!
//! The endpoint needs more than a map: the round-robin of sessions with
//! data queued, the expiry and loss-check deadlines in time order, the count
//! of handshakes that have proven nothing (for the Retry policy) and the
//! window slots held over all sessions (for the window budget). Each index
//! is derived from session state, so the table owns the sessions and
//! re-derives the indices itself: a session is changed only through
//! [`SessionTable::update`], which compares what the indices hold for it
//! with what the session now says and moves it, and each [`Entry`] records
//! what the indices hold, so that no update has to know which of them it
//! touched.
//!
//! When a session joins the round-robin is policy, not bookkeeping, so it
//! stays explicit ([`SessionTable::schedule`]): the endpoint schedules a
//! session after an ack, a loss timer or a send, and at no other time.
//!
//! [`SessionTable::check_invariants`] walks the whole table and says what
//! drifted; the fuzz harness and the property tests call it after every
//! step, and debug builds check each entry they change.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use uuid::Uuid;

use super::session::Session;

/// A session and what the table's indices hold for it.
#[derive(Debug)]
struct Entry {
    session: Session,
    /// In `ready`, the round-robin of sessions with data queued.
    in_ready: bool,
    /// The deadline under which it sits in `expiry`.
    expiry_at: Instant,
    /// The deadline under which it sits in `loss_checks` (the session's
    /// loss check when last re-derived).
    loss_at: Option<Instant>,
    /// Counted in `pending`.
    pending: bool,
    /// Counted in `slots`.
    slots: usize,
}

/// Every live session, and the indices over them. See the module docs.
#[derive(Debug, Default)]
pub(super) struct SessionTable {
    /// Sealed sessions' keys, by UUID.
    seals: HashMap<Uuid, super::sealing::SessionSeal>,
    /// Sealed sessions by routing id.
    routes: HashMap<[u8; crate::proto::wire::SERVER_TOKEN_LEN], Uuid>,
    entries: HashMap<Uuid, Entry>,
    /// Sessions with data queued, served round-robin.
    ready: VecDeque<Uuid>,
    /// (deadline, uuid) for every live session.
    expiry: BTreeSet<(Instant, Uuid)>,
    /// (when, uuid) for sessions with holes inside the reordering window.
    loss_checks: BTreeSet<(Instant, Uuid)>,
    /// Sessions that are [pending](Session::is_pending).
    pending: usize,
    /// Window slots held over all sessions.
    slots: usize,
}

impl SessionTable {
    /// Live sessions.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if a session with this UUID is live.
    pub(super) fn contains(&self, uuid: &Uuid) -> bool {
        self.entries.contains_key(uuid)
    }

    /// The session with this UUID.
    pub(super) fn get(&self, uuid: &Uuid) -> Option<&Session> {
        self.entries.get(uuid).map(|e| &e.session)
    }

    /// Every live session, in no particular order.
    pub(super) fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.entries.values().map(|e| &e.session)
    }

    /// Handshakes that have proven nothing ([`Session::is_pending`]).
    pub(super) fn pending(&self) -> usize {
        self.pending
    }

    /// Window slots held over all sessions.
    pub(super) fn slots(&self) -> usize {
        self.slots
    }

    /// Window slots held by every session but this one.
    pub(super) fn slots_of_others(&self, uuid: &Uuid) -> usize {
        let own = self.entries.get(uuid).map_or(0, |e| e.slots);
        less(self.slots, own, "window slots")
    }

    /// Seals a session the table holds.
    pub(super) fn insert_seal(&mut self, uuid: Uuid, seal: super::sealing::SessionSeal) {
        self.routes.insert(seal.route, uuid);
        self.seals.insert(uuid, seal);
    }

    /// Takes a sealed session's keys out of the table.
    pub(super) fn take_seal(&mut self, uuid: &Uuid) -> Option<super::sealing::SessionSeal> {
        let seal = self.seals.remove(uuid)?;
        self.routes.remove(&seal.route);
        Some(seal)
    }

    /// A sealed session's keys.
    pub(super) fn seal_mut(&mut self, uuid: &Uuid) -> Option<&mut super::sealing::SessionSeal> {
        self.seals.get_mut(uuid)
    }

    /// Whether the session is sealed.
    pub(super) fn is_sealed(&self, uuid: &Uuid) -> bool {
        self.seals.contains_key(uuid)
    }

    /// The sealed session a routing id names.
    pub(super) fn route(&self, id: &[u8]) -> Option<Uuid> {
        self.routes.get(id).copied()
    }

    /// Adds a session, to expire at `expiry_at` unless it is active by
    /// then. A session already held under its UUID is replaced (the
    /// endpoint removes it first).
    pub(super) fn insert(&mut self, session: Session, expiry_at: Instant) {
        let uuid = session.uuid();
        debug_assert!(!self.contains(&uuid), "{uuid} inserted twice");
        self.remove(&uuid);
        let entry = Entry {
            in_ready: false,
            expiry_at,
            loss_at: None,
            pending: false,
            slots: 0,
            session,
        };
        self.entries.insert(uuid, entry);
        self.expiry.insert((expiry_at, uuid));
        self.reindex(uuid);
    }

    /// Forgets a session and everything that points at it.
    pub(super) fn remove(&mut self, uuid: &Uuid) -> Option<Session> {
        if let Some(seal) = self.seals.remove(uuid) {
            self.routes.remove(&seal.route);
        }
        let e = self.entries.remove(uuid)?;
        self.expiry.remove(&(e.expiry_at, *uuid));
        if let Some(at) = e.loss_at {
            self.loss_checks.remove(&(at, *uuid));
        }
        if e.pending {
            self.pending = less(self.pending, 1, "pending handshakes");
        }
        self.slots = less(self.slots, e.slots, "window slots");
        if e.in_ready {
            self.ready.retain(|u| u != uuid);
        }
        Some(e.session)
    }

    /// Changes a session (`None`: there is none of this UUID) and moves it
    /// in every index its change affects. The one way to reach a session
    /// mutably.
    pub(super) fn update<R>(&mut self, uuid: Uuid, f: impl FnOnce(&mut Session) -> R) -> Option<R> {
        let out = f(&mut self.entries.get_mut(&uuid)?.session);
        self.reindex(uuid);
        Some(out)
    }

    /// Puts a session at the back of the round-robin if it has data it may
    /// send and is not in it yet.
    pub(super) fn schedule(&mut self, uuid: Uuid) {
        let Some(e) = self.entries.get_mut(&uuid) else {
            return;
        };
        if !e.in_ready && e.session.may_send() {
            e.in_ready = true;
            self.ready.push_back(uuid);
        }
    }

    /// Sessions in the round-robin.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// Takes the session at the front of the round-robin off it.
    pub(super) fn pop_ready(&mut self) -> Option<Uuid> {
        let uuid = self.ready.pop_front()?;
        if let Some(e) = self.entries.get_mut(&uuid) {
            e.in_ready = false;
        }
        Some(uuid)
    }

    /// Puts a session just taken off the round-robin back at its end,
    /// whether or not it has data (it waits for its pacer).
    pub(super) fn requeue(&mut self, uuid: Uuid) {
        let Some(e) = self.entries.get_mut(&uuid) else {
            return;
        };
        if !e.in_ready {
            e.in_ready = true;
            self.ready.push_back(uuid);
        }
    }

    /// The sessions in the round-robin, front first.
    pub(super) fn ready_sessions(&self) -> impl Iterator<Item = &Session> {
        self.ready.iter().filter_map(|u| self.get(u))
    }

    /// The earliest expiry deadline.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// The earliest loss check.
    pub(super) fn next_loss_check(&self) -> Option<Instant> {
        self.loss_checks.first().map(|(at, _)| *at)
    }

    /// The session whose expiry deadline is earliest, if it is not after
    /// `now`: the endpoint then frees it or moves its deadline. (An entry
    /// that is not its session's is drift: reported, and not handed out,
    /// so that the caller's loop cannot spin on it.)
    pub(super) fn expiry_due(&self, now: Instant) -> Option<Uuid> {
        let &(at, uuid) = self.expiry.first()?;
        let indexed = self.entries.get(&uuid).is_some_and(|e| e.expiry_at == at);
        debug_assert!(indexed, "{uuid} in the expiry index under a stale deadline");
        (at <= now && indexed).then_some(uuid)
    }

    /// The session whose loss check is earliest, if it is not after `now`
    /// (drift as in [`expiry_due`](Self::expiry_due)).
    pub(super) fn loss_check_due(&self, now: Instant) -> Option<Uuid> {
        let &(at, uuid) = self.loss_checks.first()?;
        let indexed = self
            .entries
            .get(&uuid)
            .is_some_and(|e| e.loss_at == Some(at));
        debug_assert!(indexed, "{uuid} in the loss-check index under a stale time");
        (at <= now && indexed).then_some(uuid)
    }

    /// Moves a session's expiry deadline.
    pub(super) fn set_expiry(&mut self, uuid: Uuid, at: Instant) {
        let Some(e) = self.entries.get_mut(&uuid) else {
            return;
        };
        self.expiry.remove(&(e.expiry_at, uuid));
        e.expiry_at = at;
        self.expiry.insert((at, uuid));
    }

    /// Re-derives what the indices hold for one session from its state.
    fn reindex(&mut self, uuid: Uuid) {
        let Some(e) = self.entries.get_mut(&uuid) else {
            return;
        };
        let pending = e.session.is_pending();
        if pending != e.pending {
            self.pending = if pending {
                self.pending + 1
            } else {
                less(self.pending, 1, "pending handshakes")
            };
            e.pending = pending;
        }
        let slots = e.session.slots_in_use();
        if slots != e.slots {
            self.slots = less(self.slots, e.slots, "window slots") + slots;
            e.slots = slots;
        }
        let loss_at = e.session.loss_check();
        if loss_at != e.loss_at {
            if let Some(at) = e.loss_at {
                self.loss_checks.remove(&(at, uuid));
            }
            if let Some(at) = loss_at {
                self.loss_checks.insert((at, uuid));
            }
            e.loss_at = loss_at;
        }
        debug_assert!(self.expiry.contains(&(e.expiry_at, uuid)));
        debug_assert!(e
            .loss_at
            .is_none_or(|at| self.loss_checks.contains(&(at, uuid))));
        debug_assert!(self.pending <= self.entries.len());
    }

    /// Walks the table and checks every index against the sessions: the
    /// first that does not hold, as a sentence. For tests and fuzzers (it
    /// costs a walk of every session and index).
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let mut pending = 0;
        let mut slots = 0;
        let mut losses = 0;
        let mut in_ready = 0;
        for (uuid, e) in &self.entries {
            let s = &e.session;
            ensure(s.uuid() == *uuid, || format!("{uuid} holds {}", s.uuid()))?;
            ensure(self.expiry.contains(&(e.expiry_at, *uuid)), || {
                format!("{uuid} is not in the expiry index")
            })?;
            ensure(e.loss_at == s.loss_check(), || {
                format!(
                    "{uuid} indexed for a loss check at {:?}, due at {:?}",
                    e.loss_at,
                    s.loss_check()
                )
            })?;
            if let Some(at) = e.loss_at {
                ensure(self.loss_checks.contains(&(at, *uuid)), || {
                    format!("{uuid} is not in the loss-check index")
                })?;
                losses += 1;
            }
            ensure(e.pending == s.is_pending(), || {
                format!(
                    "{uuid} counted pending: {}, is: {}",
                    e.pending,
                    s.is_pending()
                )
            })?;
            ensure(e.slots == s.slots_in_use(), || {
                format!(
                    "{uuid} counted {} slots, holds {}",
                    e.slots,
                    s.slots_in_use()
                )
            })?;
            pending += usize::from(e.pending);
            slots += e.slots;
            in_ready += usize::from(e.in_ready);
        }
        let count = |what: &str, held: usize, derived: usize| {
            ensure(held == derived, || {
                format!("{what}: {held} held, {derived} derived")
            })
        };
        count("pending handshakes", self.pending, pending)?;
        count("window slots", self.slots, slots)?;
        count("expiry entries", self.expiry.len(), self.entries.len())?;
        count("loss-check entries", self.loss_checks.len(), losses)?;
        count("sessions in the round-robin", self.ready.len(), in_ready)?;
        let mut seen = HashSet::with_capacity(self.ready.len());
        for uuid in &self.ready {
            let listed = self.entries.get(uuid).is_some_and(|e| e.in_ready);
            ensure(listed, || {
                format!("{uuid} in the round-robin but not marked")
            })?;
            ensure(seen.insert(uuid), || {
                format!("{uuid} twice in the round-robin")
            })?;
        }
        Ok(())
    }
}

/// `total - part`, for counts that the table keeps as sums: a part larger
/// than the total is drift, caught in debug builds (and 0 otherwise).
fn less(total: usize, part: usize, what: &str) -> usize {
    total.checked_sub(part).unwrap_or_else(|| {
        debug_assert!(false, "{what} drifted: {part} taken from {total}");
        0
    })
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::proto::sequence::Sequence;
    use crate::proto::server::outbox::Outbox;
    use crate::proto::server::path::Path;
    use crate::proto::server::session::AckKind;
    use crate::proto::server::ServerConfig;
    use crate::proto::wire::{ClientMessage, State};

    const ADDR: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9);

    fn session(n: u128, now: Instant) -> Session {
        let uuid = Uuid::from_u128(n);
        let seq = Sequence::new(7, 100);
        let mut s = Session::new(uuid, [1; 8], ADDR, Path::unvalidated(), seq, 1, now);
        // A CONNECTING's worth of budget for the unvalidated address.
        s.on_repeat(1200);
        s
    }

    /// An ack at 0 with a window of 8: the session queues its first
    /// indices and holds their slots.
    fn ack(s: &mut Session, now: Instant) {
        let msg = ClientMessage {
            state: State::Connected,
            uuid: s.uuid(),
            len: s.len(),
            window: 8,
            ack: 0,
            timestamp: 2,
            rate: 0,
            flags: 0,
            token: &[1; 8],
            sack: &[],
        };
        let config = ServerConfig::default();
        s.on_ack(
            now,
            &msg,
            AckKind::Normal,
            64,
            &config,
            &mut Outbox::default(),
        );
    }

    #[test]
    fn every_index_follows_its_session() {
        let now = crate::clock::now();
        let mut t = SessionTable::default();
        let a = Uuid::from_u128(1);
        t.insert(session(1, now), now);
        t.insert(session(2, now), now);
        assert_eq!((t.len(), t.pending(), t.slots()), (2, 2, 0));
        t.check_invariants().unwrap();

        t.update(a, |s| ack(s, now)).unwrap();
        let held = t.get(&a).unwrap().slots_in_use();
        assert!(held > 0);
        assert_eq!(t.slots(), held);
        assert_eq!(t.slots_of_others(&a), 0);
        t.schedule(a);
        t.schedule(a);
        assert_eq!(t.ready_len(), 1, "scheduled once");
        t.check_invariants().unwrap();

        assert_eq!(t.pop_ready(), Some(a));
        t.check_invariants().unwrap();
        t.requeue(a);
        assert_eq!(t.ready_sessions().count(), 1);

        // The token from the handshake's address confirms the session.
        t.update(a, |s| s.on_authenticated(now, ADDR, 2, 50))
            .unwrap();
        assert_eq!(t.pending(), 1);
        t.set_expiry(a, now + Duration::from_secs(1));
        assert_eq!(t.expiry_due(now), Some(Uuid::from_u128(2)));
        t.check_invariants().unwrap();

        assert!(t.remove(&a).is_some());
        assert_eq!(
            (t.len(), t.pending(), t.slots(), t.ready_len()),
            (1, 1, 0, 0)
        );
        assert_eq!(t.next_expiry(), Some(now));
        t.check_invariants().unwrap();
        assert!(t.update(a, |_| ()).is_none());
    }

    /// A table whose books were changed behind its back says so.
    #[test]
    fn drift_is_reported() {
        let now = crate::clock::now();
        let a = Uuid::from_u128(1);
        let fresh = || {
            let mut t = SessionTable::default();
            t.insert(session(1, now), now);
            t.update(a, |s| ack(s, now)).unwrap();
            t.schedule(a);
            t.check_invariants().unwrap();
            t
        };
        type Corruption = fn(&mut SessionTable);
        let corruptions: [(&str, Corruption); 6] = [
            ("window slots", |t| t.slots += 1),
            ("pending handshakes", |t| t.pending = 0),
            ("expiry", |t| t.expiry.clear()),
            ("round-robin", |t| t.ready.push_back(Uuid::from_u128(1))),
            ("round-robin", |t| t.ready.push_back(Uuid::from_u128(9))),
            ("slots", |t| {
                t.entries.values_mut().for_each(|e| e.slots += 1);
                t.slots += 1;
            }),
        ];
        for (what, corrupt) in corruptions {
            let mut t = fresh();
            corrupt(&mut t);
            let err = t.check_invariants().unwrap_err();
            assert!(err.contains(what), "{what}: {err}");
        }
    }
}

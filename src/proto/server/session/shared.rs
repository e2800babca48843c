//! A session shared between endpoints through a store: the record another
//! endpoint needs to carry it on, restoring a session from one, and
//! carrying a stale copy forward to where its client got elsewhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Session;
use crate::proto::sequence::{RunningChecksum, Sequence};
use crate::proto::server::path::Path;
use crate::proto::server::record::SessionRecord;

impl Session {
    /// A session another endpoint started, carried on from its store
    /// record for a client at `addr` whose next needed index is `ack`.
    /// The client presented its token before the record was written, so
    /// the session is confirmed; `addr` has proven nothing here yet.
    pub(crate) fn restored(
        record: &SessionRecord,
        addr: SocketAddr,
        ack: u32,
        now: Instant,
    ) -> Self {
        let seq = Sequence::new(record.seed, record.len);
        let mut s = Self::new(
            record.uuid,
            record.token,
            addr,
            Path::unvalidated(),
            seq,
            0,
            now,
        );
        s.confirmed = true;
        let ack = ack.min(record.len);
        s.ack = ack;
        s.sacked.reset(ack);
        s.high_water = ack;
        s.summed = ack;
        s.checksum = checkpoint_to(&seq, record.checkpoint_index, record.checkpoint_sum, ack);
        s
    }

    /// The record a store keeps for this session.
    pub(crate) fn record(&self, lifetime: Duration) -> SessionRecord {
        SessionRecord {
            uuid: self.uuid,
            seed: self.seq.seed(),
            len: self.seq.len(),
            token: self.token,
            lifetime_ms: u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX),
            checkpoint_index: self.summed,
            checkpoint_sum: self.checksum.sum(),
        }
    }

    /// When the record was last handed to the store.
    pub(crate) fn stored_at(&self) -> Option<Instant> {
        self.stored_at
    }

    /// Notes that the record was handed to the store at `now`.
    pub(crate) fn set_stored_at(&mut self, now: Instant) {
        self.stored_at = Some(now);
    }

    /// Carries a stale copy on to `ack`, which the client reached on
    /// another endpoint that shares the store: everything in flight is
    /// forgotten (the client holds it) and the checksum summed up to
    /// `ack`.
    pub(crate) fn fast_forward(&mut self, ack: u32) {
        let ack = ack.min(self.seq.len());
        if ack <= self.high_water {
            return;
        }
        self.checksum = checkpoint_to(&self.seq, self.summed, self.checksum.sum(), ack);
        self.summed = ack;
        self.ack = ack;
        self.high_water = ack;
        self.slots.clear();
        self.sacked.reset(ack);
        self.send_queue.clear();
        self.flight.clear();
        self.highest_held = self.highest_held.max(ack.saturating_sub(1));
        self.loss_check = None;
    }
}

/// A checksum of `[0, to)` from a known sum of `[0, from)`: adds or takes
/// away the values between the two (O(|to − from|)).
fn checkpoint_to(seq: &Sequence, from: u32, sum: u64, to: u32) -> RunningChecksum {
    let sum = if to >= from {
        sum + seq.sum_range(from, to)
    } else {
        sum.saturating_sub(seq.sum_range(to, from))
    };
    RunningChecksum::from_parts(sum, u64::from(to))
}

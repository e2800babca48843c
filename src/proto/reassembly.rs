//! The client's reorder buffer: values that arrived past the next needed
//! index wait here until the ones before them arrive (as smoltcp's
//! `Assembler` and quinn's `assembler.rs` hold stream data).
//!
//! It covers `[next, next + capacity)` with a ring indexed by
//! `index % capacity`, so it holds O(window) state whatever the length of
//! the sequence. Beside each value it keeps when the index became eligible
//! (the ack that let the server send it), for delivery latency, and how
//! long the first hole has been missing, for the reordering window.

use std::time::{Duration, Instant};

use super::sack;

/// What [`ReorderBuffer::insert`] did with an arriving value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insert {
    /// Stored; `in_order` when it is the next index needed.
    Stored {
        /// The index was `next`.
        in_order: bool,
    },
    /// Already held or already delivered.
    Duplicate,
    /// Past the end of the buffer.
    OutOfWindow,
}

/// The reorder buffer. See the module docs.
#[derive(Debug)]
pub(crate) struct ReorderBuffer {
    /// Next index needed: everything below it was delivered.
    next: u32,
    /// Received values for `[next, next + cap)` at `index % cap`.
    ring: Vec<Option<u32>>,
    /// When each index in `[next, eligible_end)` became eligible, at
    /// `index % cap`.
    eligible_at: Vec<Option<Instant>>,
    /// First index not yet made eligible by an ack.
    eligible_end: u32,
    /// Values held (received, not yet delivered).
    held: u32,
    /// Highest index received so far.
    highest: Option<u32>,
    /// Since when the first hole (at `next`) has been seen missing.
    gap_since: Option<Instant>,
    /// Enough later indices arrived to call the first hole lost.
    gap_reported: bool,
}

impl ReorderBuffer {
    /// An empty buffer of `capacity` (at least 1) indices from `next` on.
    pub(crate) fn new(capacity: u32, next: u32) -> Self {
        let cap = capacity.max(1) as usize;
        Self {
            next,
            ring: vec![None; cap],
            eligible_at: vec![None; cap],
            eligible_end: next,
            held: 0,
            highest: None,
            gap_since: None,
            gap_reported: false,
        }
    }

    /// Next index needed.
    pub(crate) fn next(&self) -> u32 {
        self.next
    }

    /// Values waiting for an earlier hole.
    pub(crate) fn held(&self) -> u32 {
        self.held
    }

    /// Highest index received.
    pub(crate) fn highest(&self) -> Option<u32> {
        self.highest
    }

    /// First index the latest ack did not make eligible.
    pub(crate) fn eligible_end(&self) -> u32 {
        self.eligible_end
    }

    fn cap(&self) -> u32 {
        self.ring.len() as u32
    }

    /// Indices it can hold from `next` on.
    pub(crate) fn capacity(&self) -> u32 {
        self.cap()
    }

    /// Offset from `next` of the `k`-th missing index (`k` ≥ 1), or the
    /// last offset when fewer are missing.
    pub(crate) fn nth_missing(&self, k: u32) -> u32 {
        let cap = self.cap();
        let mut missing = 0;
        for off in 0..cap {
            if self.ring[self.slot(self.next.wrapping_add(off))].is_none() {
                missing += 1;
                if missing >= k {
                    return off;
                }
            }
        }
        cap - 1
    }

    fn slot(&self, index: u32) -> usize {
        (index % self.cap()) as usize
    }

    /// Stores `value` for `index`.
    pub(crate) fn insert(&mut self, index: u32, value: u32) -> Insert {
        if index < self.next {
            return Insert::Duplicate;
        }
        if index - self.next >= self.cap() {
            return Insert::OutOfWindow;
        }
        let slot = self.slot(index);
        if self.ring[slot].is_some() {
            return Insert::Duplicate;
        }
        self.ring[slot] = Some(value);
        self.held += 1;
        self.highest = Some(self.highest.map_or(index, |h| h.max(index)));
        Insert::Stored {
            in_order: index == self.next,
        }
    }

    /// Takes the value at `next`, if it arrived, with how long it waited
    /// since it became eligible; `next` moves on by one.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<(u32, u32, Duration)> {
        let slot = self.slot(self.next);
        let value = self.ring[slot].take()?;
        let latency = self.eligible_at[slot]
            .take()
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let index = self.next;
        self.held -= 1;
        self.next += 1;
        Some((index, value, latency))
    }

    /// After `delivered` values were popped at `now`: the eligibility mark
    /// follows `next`, and a new first hole's age starts now.
    pub(crate) fn after_delivery(&mut self, now: Instant, delivered: u32) {
        if self.eligible_end < self.next {
            self.eligible_end = self.next;
        }
        if delivered > 0 {
            self.gap_reported = false;
            self.gap_since = (self.held > 0).then_some(now);
        }
    }

    /// Records `now` as the time every index up to `end` (capped by the
    /// buffer) became eligible.
    pub(crate) fn mark_eligible(&mut self, now: Instant, end: u32) {
        let end = end.min(self.next.saturating_add(self.cap()));
        while self.eligible_end < end {
            let slot = self.slot(self.eligible_end);
            self.eligible_at[slot] = Some(now);
            self.eligible_end += 1;
        }
    }

    /// Notes that the first hole is missing at `now` (if not noted yet);
    /// returns since when it has been.
    pub(crate) fn note_gap(&mut self, now: Instant) -> Instant {
        *self.gap_since.get_or_insert(now)
    }

    /// How long the first hole has been missing.
    pub(crate) fn gap_age(&self, now: Instant) -> Duration {
        self.gap_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Whether the first hole was called lost.
    pub(crate) fn gap_reported(&self) -> bool {
        self.gap_reported
    }

    /// Calls the first hole lost.
    pub(crate) fn report_gap(&mut self) {
        self.gap_reported = true;
    }

    /// Writes the selective-ack bitmap of what is held past `next` into
    /// `out` (cleared when nothing is held).
    pub(crate) fn encode_sack(&self, out: &mut Vec<u8>) {
        let Some(highest) = self.highest.filter(|_| self.held > 0) else {
            out.clear();
            return;
        };
        let cap = self.cap();
        let ring = &self.ring;
        sack::encode(out, self.next, highest, |i| {
            ring[(i % cap) as usize].is_some()
        });
    }

    /// Empties the buffer and starts again at index 0 (a handshake that
    /// starts over under a new UUID).
    pub(crate) fn reset(&mut self) {
        self.ring.iter_mut().for_each(|v| *v = None);
        self.eligible_at.iter_mut().for_each(|v| *v = None);
        self.next = 0;
        self.eligible_end = 0;
        self.held = 0;
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_out_of_order_values_and_releases_them_in_order() {
        let t0 = crate::clock::now();
        let mut b = ReorderBuffer::new(8, 10);
        b.mark_eligible(t0, 18);
        assert_eq!(b.insert(12, 120), Insert::Stored { in_order: false });
        assert_eq!(b.insert(11, 110), Insert::Stored { in_order: false });
        assert_eq!(b.pop(t0), None, "10 is missing");
        assert_eq!(b.held(), 2);
        assert_eq!(b.highest(), Some(12));
        assert_eq!(b.insert(10, 100), Insert::Stored { in_order: true });
        let t1 = t0 + Duration::from_millis(3);
        let got: Vec<_> = std::iter::from_fn(|| b.pop(t1)).collect();
        assert_eq!(
            got,
            vec![
                (10, 100, Duration::from_millis(3)),
                (11, 110, Duration::from_millis(3)),
                (12, 120, Duration::from_millis(3)),
            ]
        );
        assert_eq!(b.next(), 13);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn refuses_duplicates_and_values_past_the_ring() {
        let mut b = ReorderBuffer::new(4, 0);
        assert_eq!(b.insert(4, 1), Insert::OutOfWindow);
        assert_eq!(b.insert(3, 1), Insert::Stored { in_order: false });
        assert_eq!(b.insert(3, 1), Insert::Duplicate);
        assert_eq!(b.insert(0, 1), Insert::Stored { in_order: true });
        assert!(b.pop(crate::clock::now()).is_some());
        assert_eq!(b.insert(0, 1), Insert::Duplicate, "already delivered");
        assert_eq!(b.held(), 1);
    }

    #[test]
    fn sack_describes_exactly_the_held_indices() {
        let mut b = ReorderBuffer::new(64, 100);
        let mut bitmap = Vec::new();
        b.encode_sack(&mut bitmap);
        assert!(bitmap.is_empty());
        for i in [102, 105, 140] {
            b.insert(i, i);
        }
        b.encode_sack(&mut bitmap);
        let held: Vec<u32> = sack::held(100, &bitmap).collect();
        assert_eq!(held, vec![102, 105, 140]);
    }

    #[test]
    fn gap_age_restarts_when_the_first_hole_is_filled() {
        let t0 = crate::clock::now();
        let mut b = ReorderBuffer::new(8, 0);
        b.insert(2, 2);
        assert_eq!(b.note_gap(t0), t0);
        b.report_gap();
        let t1 = t0 + Duration::from_millis(5);
        assert_eq!(b.note_gap(t1), t0, "the first note sticks");
        assert_eq!(b.gap_age(t1), Duration::from_millis(5));
        b.insert(0, 0);
        let n = std::iter::from_fn(|| b.pop(t1)).count() as u32;
        b.after_delivery(t1, n);
        assert!(!b.gap_reported());
        assert_eq!(b.gap_age(t1), Duration::ZERO, "hole at 1 is new");
    }
}

//! The client's reorder buffer: values that arrived past the next needed
//! index wait here until the ones before them arrive (as smoltcp's
//! `Assembler` and quinn's `assembler.rs` hold stream data).
//!
//! It covers `[next, next + capacity)` with a ring indexed by
//! `index % capacity`, so it holds O(window) state whatever the length of
//! the sequence. Beside each value it keeps when the index became eligible
//! (the ack that let the server send it), for delivery latency, and how
//! long the first hole has been missing, for the reordering window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::sack::RangeWriter;
use super::slot_bits::SlotBits;

/// Arrivals below `highest` (holes filled) that acks describe besides
/// their newest ranges: about three acks' worth (see
/// [`crate::proto::recovery::ACK_EVERY_MAX`]), so that one lost ack loses
/// no news. A fill left out would go unreported until the cumulative ack
/// passed it, and the server would resend it once more.
const RECENT_FILLS: usize = 192;

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
    /// Which slots of `ring` hold a value, for word-at-a-time searches.
    held_bits: SlotBits,
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
    /// Indices that lately filled a hole below `highest`, newest last.
    fills: VecDeque<u32>,
}

impl ReorderBuffer {
    /// An empty buffer of `capacity` (at least 1) indices from `next` on.
    pub(crate) fn new(capacity: u32, next: u32) -> Self {
        // A power of two, so that a slot is a mask, not a division.
        let cap = (capacity.max(1) as usize).next_power_of_two();
        Self {
            next,
            ring: vec![None; cap],
            held_bits: SlotBits::new(cap),
            eligible_at: vec![None; cap],
            eligible_end: next,
            held: 0,
            highest: None,
            gap_since: None,
            gap_reported: false,
            fills: VecDeque::with_capacity(RECENT_FILLS),
        }
    }

    /// Grows the buffer to hold `capacity` indices from `next` on (as TCP
    /// receive auto-tuning grows the window it offers): everything held
    /// is kept. O(capacity); the caller doubles, so it is amortised.
    pub(crate) fn grow(&mut self, capacity: u32) {
        let old = self.cap();
        if capacity <= old {
            return;
        }
        let cap = (capacity as usize).next_power_of_two();
        let capacity = cap as u32;
        let mut ring = vec![None; cap];
        let mut held_bits = SlotBits::new(cap);
        let mut eligible_at = vec![None; cap];
        for off in 0..old {
            let Some(index) = self.next.checked_add(off) else {
                break;
            };
            let from = (index % old) as usize;
            let to = (index % capacity) as usize;
            ring[to] = self.ring[from];
            if ring[to].is_some() {
                held_bits.set(to);
            }
            eligible_at[to] = self.eligible_at[from];
        }
        self.ring = ring;
        self.held_bits = held_bits;
        self.eligible_at = eligible_at;
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
        let cap = self.ring.len();
        let first = self.slot(self.next);
        let mut k = k.max(1);
        // Offsets 0.. are slots `first..cap`, then `0..first`.
        if let Some(s) = self.held_bits.nth(first, cap - 1, false, &mut k) {
            return (s - first) as u32;
        }
        if first > 0 {
            if let Some(s) = self.held_bits.nth(0, first - 1, false, &mut k) {
                return (cap - first + s) as u32;
            }
        }
        self.cap() - 1
    }

    /// The highest index in `floor..=from` that is held (`held`) or
    /// missing (`!held`); `from - floor` must be under the capacity.
    fn find_down(&self, from: u32, floor: u32, held: bool) -> Option<u32> {
        let mut hi = from;
        loop {
            let s = self.slot(hi);
            let span = (hi - floor) as usize;
            // The slots down from `s` without wrapping, as far as `floor`.
            let lo = s.saturating_sub(span);
            if let Some(k) = self.held_bits.rfind(lo, s, held) {
                return Some(hi - (s - k) as u32);
            }
            let covered = s - lo;
            if covered == span {
                return None;
            }
            hi -= covered as u32 + 1;
        }
    }

    fn slot(&self, index: u32) -> usize {
        index as usize & (self.ring.len() - 1)
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
        self.held_bits.set(slot);
        self.held += 1;
        if index != self.next && self.highest.is_some_and(|h| index < h) {
            if self.fills.len() == RECENT_FILLS {
                self.fills.pop_front();
            }
            self.fills.push_back(index);
        }
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
        self.held_bits.clear(slot);
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

    /// Writes the selective-ack ranges of what is held past `next` into
    /// `out` (cleared first; empty when nothing is held), at most `budget`
    /// bytes: the newest ranges first, from `highest` down, then the holes
    /// filled lately below them. Scans only what it writes.
    pub(crate) fn encode_sack(&self, out: &mut Vec<u8>, budget: usize) {
        // A quarter of the budget for the newest ranges, the rest for the
        // fills (while holes are repaired, the top stands still and the
        // news is in the fills).
        let mut w = RangeWriter::new(out, self.next, budget / 4);
        let Some(highest) = self.highest.filter(|_| self.held > 0) else {
            return;
        };
        let mut index = highest;
        let mut low = highest.saturating_add(1);
        // Runs of held indices, from the top down.
        while index > self.next {
            if self.ring[self.slot(index)].is_none() {
                // Down to the next held index above `next`, if any.
                let below = (index - 1 > self.next)
                    .then(|| self.find_down(index - 1, self.next + 1, true))
                    .flatten();
                match below {
                    Some(i) => index = i,
                    None => {
                        index = self.next;
                        break;
                    }
                }
            }
            let hi = index;
            // Down to the start of the run (at most `next`).
            index = self
                .find_down(index - 1, self.next, false)
                .map_or(self.next, |m| m + 1);
            if !w.push(index, hi) || w.is_full() {
                low = index;
                break;
            }
            low = index;
            index = index.saturating_sub(1);
        }
        w.set_budget(budget);
        if index > self.next {
            self.push_fills(&mut w, low);
        }
        w.finish();
    }

    /// Writes the held fills below `low`, newest index first, while the
    /// budget lasts.
    fn push_fills(&self, w: &mut RangeWriter<'_>, low: u32) {
        // On the stack (this runs for every ack), and sorted only when the
        // holes were not filled in index order: usually they were.
        let mut fills = [0_u32; RECENT_FILLS];
        let mut n = 0;
        let mut ascending = true;
        for i in self.fills.iter().copied() {
            if i > self.next && i < low && self.ring[self.slot(i)].is_some() {
                ascending &= n == 0 || fills[n - 1] < i;
                fills[n] = i;
                n += 1;
            }
        }
        let fills = &mut fills[..n];
        if !ascending {
            fills.sort_unstable();
        }
        let mut last = None;
        for &i in fills.iter().rev() {
            if last == Some(i) {
                continue;
            }
            last = Some(i);
            if !w.push(i, i) {
                break;
            }
        }
    }

    /// Empties the buffer and starts again at index 0 (a handshake that
    /// starts over under a new UUID).
    pub(crate) fn reset(&mut self) {
        self.ring.iter_mut().for_each(|v| *v = None);
        self.held_bits.clear_all();
        self.eligible_at.iter_mut().for_each(|v| *v = None);
        self.next = 0;
        self.eligible_end = 0;
        self.held = 0;
        self.highest = None;
        self.fills.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::sack;

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
        let mut ranges = Vec::new();
        b.encode_sack(&mut ranges, 64);
        assert!(ranges.is_empty());
        for i in [102, 105, 140, 141] {
            b.insert(i, i);
        }
        b.encode_sack(&mut ranges, 64);
        let held: Vec<u32> = sack::held(100, &ranges).collect();
        assert_eq!(held, vec![141, 140, 105, 102]);
    }

    #[test]
    fn a_small_budget_keeps_the_newest_ranges_and_the_latest_fills() {
        let mut b = ReorderBuffer::new(256, 0);
        // Every even index from 2 to 200 arrives; then 51 fills a hole.
        for i in (2..=200).step_by(2) {
            b.insert(i, i);
        }
        b.insert(51, 51);
        let mut ranges = Vec::new();
        // Two or three bytes a range: the newest few and the fill.
        b.encode_sack(&mut ranges, 16);
        let held: Vec<u32> = sack::held(0, &ranges).collect();
        assert_eq!(held[..2], [200, 198], "{held:?}");
        assert_eq!(held.last(), Some(&51), "{held:?}");
        assert!(held.len() < 10, "the budget holds: {held:?}");
    }

    #[test]
    fn growing_keeps_what_is_held() {
        let t0 = crate::clock::now();
        let mut b = ReorderBuffer::new(4, 10);
        b.mark_eligible(t0, 14);
        b.insert(12, 120);
        b.insert(13, 130);
        b.grow(16);
        assert_eq!(b.capacity(), 16);
        assert_eq!(b.insert(25, 250), Insert::Stored { in_order: false });
        assert_eq!(b.insert(12, 1), Insert::Duplicate);
        b.insert(10, 100);
        b.insert(11, 110);
        let got: Vec<u32> = std::iter::from_fn(|| b.pop(t0))
            .map(|(i, _, _)| i)
            .collect();
        assert_eq!(got, vec![10, 11, 12, 13]);
        assert_eq!(b.held(), 1);
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

    /// The ranges and holes the word-at-a-time searches find, against a
    /// walk of the ring slot by slot (the code before them), over random
    /// arrivals, deliveries and growth.
    #[test]
    fn word_searches_write_the_same_acks_as_a_walk() {
        use rand::{Rng, SeedableRng};
        fn walk_sack(b: &ReorderBuffer, budget: usize) -> Vec<u8> {
            let mut out = Vec::new();
            let mut w = RangeWriter::new(&mut out, b.next, budget / 4);
            let Some(highest) = b.highest.filter(|_| b.held > 0) else {
                return out;
            };
            let (mut index, mut low) = (highest, highest + 1);
            while index > b.next {
                if b.ring[b.slot(index)].is_none() {
                    index -= 1;
                    continue;
                }
                let hi = index;
                while index > b.next && b.ring[b.slot(index - 1)].is_some() {
                    index -= 1;
                }
                low = index;
                if !w.push(index, hi) || w.is_full() {
                    break;
                }
                index -= 1;
            }
            w.set_budget(budget);
            if index > b.next {
                // The fills are not what the searches changed.
                b.push_fills(&mut w, low);
            }
            w.finish();
            out
        }
        fn walk_nth_missing(b: &ReorderBuffer, k: u32) -> u32 {
            let mut missing = 0;
            for off in 0..b.cap() {
                if b.ring[b.slot(b.next + off)].is_none() {
                    missing += 1;
                    if missing >= k {
                        return off;
                    }
                }
            }
            b.cap() - 1
        }
        let t0 = crate::clock::now();
        for seed in 0..40u64 {
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let mut b = ReorderBuffer::new(rng.gen_range(1..100), rng.gen_range(0..1000));
            let loss = rng.gen_range(0.0..0.6);
            let mut out = Vec::new();
            for _ in 0..3000 {
                let cap = b.capacity();
                if cap < 2048 && rng.gen_bool(0.02) {
                    b.grow(cap * 2);
                }
                let index = b.next() + rng.gen_range(0..b.capacity());
                if !rng.gen_bool(loss) || index == b.next() {
                    b.insert(index, index);
                }
                while b.pop(t0).is_some() {}
                let budget = rng.gen_range(8..600);
                b.encode_sack(&mut out, budget);
                assert_eq!(out, walk_sack(&b, budget), "seed {seed}");
                let k = rng.gen_range(1..b.capacity() + 2);
                assert_eq!(
                    b.nth_missing(k),
                    walk_nth_missing(&b, k),
                    "seed {seed}, k {k}"
                );
            }
        }
    }
}

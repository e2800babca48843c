//! A bounded queue of datagrams ordered by the time they are due.
//!
//! Both halves of the shim hold delayed datagrams: outbound ones wait in the
//! background sender task, inbound ones wait until `recv_from` hands them
//! out. Items leave by due time, ties broken by arrival order (so equal
//! delays keep FIFO order). Most items arrive in due order (a constant
//! delay, or jitter smaller than the gap between datagrams): those go to
//! the back of a FIFO, in O(1); only an item due before the FIFO's last
//! waits in a min-heap beside it, and a pop takes the earlier of the two
//! fronts. (A heap alone cost a quarter of a delayed client's CPU at a
//! million datagrams a second: 25 ms of them is 25,000 entries, sifted on
//! every pop.) It is bounded so that a fast sender
//! and a long delay cannot make memory grow without limit: when full, the
//! caller drops the datagram, as a real router with a full buffer would.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use tokio::time::Instant;

/// The smallest bound of each shim queue, in datagrams (see
/// [`queue_capacity_for`]).
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

/// The largest bound [`queue_capacity_for`] gives, in datagrams (about
/// 128 MiB of held datagrams at the most).
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;

/// The arrival rate, in datagrams per second, that a shim queue sized by
/// [`queue_capacity_for`] holds for its whole delay: above what one
/// loopback transfer reaches on these machines (4-4.6M values/s).
pub const QUEUE_SIZING_RATE: u64 = 4_000_000;

/// The bound each delay queue of a shim with `config` gets: room for
/// [`QUEUE_SIZING_RATE`] datagrams a second over the longest hold either
/// direction can give (delay, jitter and the reorder hold-back), and never
/// less than [`DEFAULT_QUEUE_CAPACITY`] nor more than
/// [`MAX_QUEUE_CAPACITY`]. The queue models a delay line, not a router's
/// buffer: a fixed bound of 65,536 capped a 25 ms path at 2.6M datagrams a
/// second and dropped a third of a million datagrams of one fast transfer.
pub fn queue_capacity_for(config: &crate::ImpairmentConfig) -> usize {
    let hold = |d: &crate::DirectionConfig| {
        let reorder = if d.reorder > 0.0 {
            d.effective_reorder_gap()
        } else {
            std::time::Duration::ZERO
        };
        d.delay.saturating_add(d.jitter).saturating_add(reorder)
    };
    let longest = hold(&config.to_server).max(hold(&config.to_client));
    let need = longest
        .as_micros()
        .saturating_mul(u128::from(QUEUE_SIZING_RATE))
        / 1_000_000;
    usize::try_from(need)
        .unwrap_or(usize::MAX)
        .clamp(DEFAULT_QUEUE_CAPACITY, MAX_QUEUE_CAPACITY)
}

/// One queued item with its due time.
#[derive(Debug)]
struct Entry<T> {
    /// When the item may leave the queue.
    due: Instant,
    /// Insertion counter: keeps equal due times in FIFO order.
    seq: u64,
    /// The queued item.
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// A bounded queue of items by due time: a FIFO of the items that came in
/// due order, and a min-heap of those that did not.
#[derive(Debug)]
pub(crate) struct DueQueue<T> {
    /// Items pushed due no earlier than the one before them, in order.
    fifo: VecDeque<Entry<T>>,
    /// The others, earliest due on top.
    heap: BinaryHeap<Entry<T>>,
    /// Maximum number of entries.
    capacity: usize,
    /// Next insertion counter.
    next_seq: u64,
}

impl<T> DueQueue<T> {
    /// An empty queue holding at most `capacity` items.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            fifo: VecDeque::new(),
            heap: BinaryHeap::new(),
            capacity,
            next_seq: 0,
        }
    }

    /// Whether `n` more items fit.
    pub(crate) fn has_room_for(&self, n: usize) -> bool {
        self.fifo
            .len()
            .saturating_add(self.heap.len())
            .saturating_add(n)
            <= self.capacity
    }

    /// Queues `item` until `due`; hands it back if the queue is full.
    pub(crate) fn push(&mut self, due: Instant, item: T) -> Result<(), T> {
        if !self.has_room_for(1) {
            return Err(item);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let entry = Entry { due, seq, item };
        if self.fifo.back().is_none_or(|last| last.due <= due) {
            self.fifo.push_back(entry);
        } else {
            self.heap.push(entry);
        }
        Ok(())
    }

    /// Whether the earliest item is the FIFO's front (else the heap's top);
    /// `None` when empty.
    fn front_is_fifo(&self) -> Option<bool> {
        match (self.fifo.front(), self.heap.peek()) {
            (None, None) => None,
            (Some(_), None) => Some(true),
            (None, Some(_)) => Some(false),
            (Some(f), Some(h)) => Some((f.due, f.seq) <= (h.due, h.seq)),
        }
    }

    /// When the earliest item is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.front_is_fifo()? {
            self.fifo.front().map(|e| e.due)
        } else {
            self.heap.peek().map(|e| e.due)
        }
    }

    /// Removes and returns the earliest item if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_due()? > now {
            return None;
        }
        let entry = if self.front_is_fifo()? {
            self.fifo.pop_front()
        } else {
            self.heap.pop()
        };
        entry.map(|e| e.item)
    }

    /// Number of queued items.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The bound follows the longest hold of either direction, within
    /// its floor and ceiling.
    #[test]
    fn capacity_follows_the_delay() {
        use crate::{DirectionConfig, ImpairmentConfig};
        let with = |to_client: DirectionConfig| ImpairmentConfig {
            to_client,
            ..ImpairmentConfig::default()
        };
        let clean = with(DirectionConfig::default());
        assert_eq!(queue_capacity_for(&clean), DEFAULT_QUEUE_CAPACITY);
        let ms = Duration::from_millis;
        let delayed = |delay, jitter| DirectionConfig {
            delay,
            jitter,
            ..DirectionConfig::default()
        };
        // 25 ms at 4M/s: 100,000; jitter counts too.
        assert_eq!(queue_capacity_for(&with(delayed(ms(25), ms(0)))), 100_000);
        assert_eq!(queue_capacity_for(&with(delayed(ms(20), ms(5)))), 100_000);
        // The other direction's hold counts the same.
        let up = ImpairmentConfig {
            to_server: delayed(ms(50), ms(0)),
            ..ImpairmentConfig::default()
        };
        assert_eq!(queue_capacity_for(&up), 200_000);
        // A reordered datagram waits its hold-back on top of the delay.
        let reordered = DirectionConfig {
            reorder: 0.1,
            reorder_gap: ms(5),
            ..delayed(ms(25), ms(0))
        };
        assert_eq!(queue_capacity_for(&with(reordered)), 120_000);
        // Short delays keep the floor, long ones stop at the ceiling.
        assert_eq!(
            queue_capacity_for(&with(delayed(ms(1), ms(0)))),
            DEFAULT_QUEUE_CAPACITY
        );
        assert_eq!(
            queue_capacity_for(&with(delayed(ms(60_000), ms(0)))),
            MAX_QUEUE_CAPACITY
        );
    }

    #[test]
    fn pops_by_due_time_then_fifo() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = DueQueue::new(10);
        for (delay, name) in [(30, "c"), (10, "a"), (20, "b1"), (20, "b2"), (0, "now")] {
            assert!(q.push(t0 + ms(delay), name).is_ok());
        }
        assert_eq!(q.len(), 5);
        assert_eq!(q.pop_due(t0), Some("now"));
        assert_eq!(q.pop_due(t0 + ms(9)), None);
        assert_eq!(q.next_due(), Some(t0 + ms(10)));
        assert_eq!(q.pop_due(t0 + ms(25)), Some("a"));
        assert_eq!(q.pop_due(t0 + ms(25)), Some("b1"));
        assert_eq!(q.pop_due(t0 + ms(25)), Some("b2"));
        assert_eq!(q.pop_due(t0 + ms(25)), None);
        assert_eq!(q.pop_due(t0 + ms(30)), Some("c"));
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop_due(t0 + ms(1000)), None);
    }

    /// Against a sorted reference: any mix of in-order and out-of-order
    /// due times pops by (due, arrival), whatever the interleaving of
    /// pushes and pops.
    #[test]
    fn pops_like_a_sorted_list_for_any_push_order() {
        let t0 = Instant::now();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..200 {
            let mut q = DueQueue::new(64);
            let mut reference: Vec<(u64, u64)> = Vec::new();
            let mut now = 0_u64;
            let mut pushed = 0_u64;
            for _ in 0..300 {
                let r = next();
                if r % 3 != 0 {
                    // Mostly a constant delay, sometimes jitter either way.
                    let jitter = if r % 7 == 0 { next() % 50 } else { 25 };
                    let due = now + jitter;
                    let ok = q.push(t0 + Duration::from_millis(due), pushed).is_ok();
                    assert_eq!(ok, reference.len() < 64, "round {round}");
                    if ok {
                        reference.push((due, pushed));
                    }
                    pushed += 1;
                } else {
                    now += next() % 10;
                    reference.sort_unstable();
                    let want = reference.first().filter(|&&(d, _)| d <= now).copied();
                    let got = q.pop_due(t0 + Duration::from_millis(now));
                    assert_eq!(got, want.map(|(_, i)| i), "round {round} at {now}");
                    if want.is_some() {
                        reference.remove(0);
                    }
                }
                assert_eq!(q.len(), reference.len());
            }
        }
    }

    #[test]
    fn is_bounded() {
        let t0 = Instant::now();
        let mut q = DueQueue::new(3);
        assert!(q.has_room_for(3));
        assert!(!q.has_room_for(4));
        for i in 0..3 {
            assert_eq!(q.push(t0, i), Ok(()));
        }
        assert!(!q.has_room_for(1));
        assert_eq!(q.push(t0, 99), Err(99));
        assert_eq!(q.len(), 3);
        assert_eq!(q.pop_due(t0), Some(0));
        assert_eq!(q.push(t0, 3), Ok(()));
        let zero: DueQueue<u8> = DueQueue::new(0);
        assert!(!zero.has_room_for(1));
    }
}

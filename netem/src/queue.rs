//! A bounded queue of datagrams ordered by the time they are due.
//!
//! Both halves of the shim hold delayed datagrams: outbound ones wait in the
//! background sender task, inbound ones wait until `recv_from` hands them
//! out. A min-heap keyed by due time (ties broken by arrival order, so equal
//! delays keep FIFO order) serves both. It is bounded so that a fast sender
//! and a long delay cannot make memory grow without limit: when full, the
//! caller drops the datagram, as a real router with a full buffer would.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tokio::time::Instant;

/// The default bound of each shim queue, in datagrams.
pub const DEFAULT_QUEUE_CAPACITY: usize = 65_536;

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

/// A bounded min-heap of items by due time.
#[derive(Debug)]
pub(crate) struct DueQueue<T> {
    /// The queued entries, earliest due on top.
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
            heap: BinaryHeap::new(),
            capacity,
            next_seq: 0,
        }
    }

    /// Whether `n` more items fit.
    pub(crate) fn has_room_for(&self, n: usize) -> bool {
        self.heap.len().saturating_add(n) <= self.capacity
    }

    /// Queues `item` until `due`; hands it back if the queue is full.
    pub(crate) fn push(&mut self, due: Instant, item: T) -> Result<(), T> {
        if !self.has_room_for(1) {
            return Err(item);
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.heap.push(Entry { due, seq, item });
        Ok(())
    }

    /// When the earliest item is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.due)
    }

    /// Removes and returns the earliest item if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.next_due()? <= now {
            self.heap.pop().map(|e| e.item)
        } else {
            None
        }
    }

    /// Number of queued items.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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

//! Selective acks as ranges (wire protocol v3).
//!
//! A client acks cumulatively with `ack`, the next index it still needs, and
//! lists ranges of indices past it that it holds, **newest first**, as QUIC's
//! ACK frame does (RFC 9000 §19.3): the first range is given by the distance
//! of its top from `ack` and its length, each later one by the gap below the
//! previous range and its length. Every number is an unsigned LEB128 varint,
//! so a flight of any size is described in a few bytes per hole, and a
//! client whose holes do not all fit in one datagram sends the newest ones
//! (plus the holes it filled lately, see the client's reorder buffer): an
//! index left out is *not described*, never "missing", and the server
//! keeps what earlier acks told it.
//!
//! Layout of the range bytes (empty: nothing held past `ack`):
//!
//! ```text
//! top    varint   first range's highest index − ack   (≥ 1: ack is missing)
//! len    varint   first range's length − 1
//! then, for every further range, below the previous one:
//! gap    varint   indices between it and the previous range (≥ 0)
//! len    varint   its length − 1
//! ```

use super::wire::MAX_SACK_BYTES;

/// Most bytes of ranges one ack may carry.
pub const MAX_RANGE_BYTES: usize = MAX_SACK_BYTES;

/// Why range bytes are malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// A varint runs past the end, or past 32 bits.
    BadVarint,
    /// A range reaches down to `ack` or below, or past `u32::MAX`.
    OutOfOrder,
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes [`put_varint`] writes for `v`.
fn varint_len(v: u32) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        0x20_0000..=0xfff_ffff => 4,
        _ => 5,
    }
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u32, RangeError> {
    let mut v: u64 = 0;
    for shift in (0..35).step_by(7) {
        let &b = buf.get(*pos).ok_or(RangeError::BadVarint)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(v).map_err(|_| RangeError::BadVarint);
        }
    }
    Err(RangeError::BadVarint)
}

/// Writes ranges of held indices into `out` (cleared first), newest first.
#[derive(Debug)]
pub struct RangeWriter<'a> {
    out: &'a mut Vec<u8>,
    ack: u32,
    budget: usize,
    /// The lowest index of the last range written.
    low: Option<u32>,
    /// A range being extended downwards, not yet written: `(lo, hi)`.
    open: Option<(u32, u32)>,
}

impl<'a> RangeWriter<'a> {
    /// A writer for an ack of `ack`, writing at most `budget` bytes (capped
    /// at [`MAX_RANGE_BYTES`]).
    pub fn new(out: &'a mut Vec<u8>, ack: u32, budget: usize) -> Self {
        out.clear();
        Self {
            out,
            ack,
            budget: budget.min(MAX_RANGE_BYTES),
            low: None,
            open: None,
        }
    }

    /// Adds the range `[lo, hi]` (inclusive), which must lie below every
    /// range added before it; ranges touching the previous one merge.
    /// Returns false (and adds nothing) when it would overrun the budget or
    /// is not below what was added (the caller stops there).
    pub fn push(&mut self, lo: u32, hi: u32) -> bool {
        let lo = lo.max(self.ack.saturating_add(1));
        if hi < lo {
            return true;
        }
        if let Some((olo, ohi)) = self.open {
            if hi.saturating_add(1) >= olo {
                if lo >= olo {
                    return false;
                }
                self.open = Some((lo, ohi));
                return true;
            }
            if !self.flush() {
                return false;
            }
        }
        self.open = Some((lo, hi));
        true
    }

    /// Writes the open range if it fits; false when it did not.
    fn flush(&mut self) -> bool {
        let Some((lo, hi)) = self.open.take() else {
            return true;
        };
        let first = match self.low {
            None => hi - self.ack,
            Some(prev_lo) => prev_lo - hi - 1,
        };
        let need = varint_len(first) + varint_len(hi - lo);
        if self.out.len() + need > self.budget {
            return false;
        }
        put_varint(self.out, first);
        put_varint(self.out, hi - lo);
        self.low = Some(lo);
        true
    }

    /// Writes what is still open; returns how many bytes were written. A
    /// last range that does not fit is left out: the server learns of it
    /// from a later ack.
    pub fn finish(mut self) -> usize {
        self.flush();
        self.out.len()
    }

    /// Changes the byte budget (capped at [`MAX_RANGE_BYTES`]) for what is
    /// pushed from now on.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget.min(MAX_RANGE_BYTES);
    }

    /// True when no byte more would fit.
    pub fn is_full(&self) -> bool {
        self.out.len() + 2 > self.budget
    }
}

/// The ranges `bytes` describes after `ack`, newest first, as inclusive
/// `(lo, hi)` pairs; stops at the first malformation ([`validate`] says
/// whether there is one).
pub fn ranges(ack: u32, bytes: &[u8]) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut pos = 0;
    let mut low: Option<u32> = None;
    std::iter::from_fn(move || {
        if pos >= bytes.len() {
            return None;
        }
        next_range(ack, bytes, &mut pos, &mut low).ok()
    })
}

fn next_range(
    ack: u32,
    bytes: &[u8],
    pos: &mut usize,
    low: &mut Option<u32>,
) -> Result<(u32, u32), RangeError> {
    let first = get_varint(bytes, pos)?;
    let len = get_varint(bytes, pos)?;
    let hi = match *low {
        None if first >= 1 => ack.checked_add(first),
        None => None,
        Some(prev_lo) => prev_lo.checked_sub(first).and_then(|v| v.checked_sub(1)),
    }
    .ok_or(RangeError::OutOfOrder)?;
    let lo = hi.checked_sub(len).ok_or(RangeError::OutOfOrder)?;
    if lo <= ack {
        return Err(RangeError::OutOfOrder);
    }
    *low = Some(lo);
    Ok((lo, hi))
}

/// Checks that `bytes` is a well-formed list of ranges after `ack`.
pub fn validate(ack: u32, bytes: &[u8]) -> Result<(), RangeError> {
    let mut pos = 0;
    let mut low = None;
    while pos < bytes.len() {
        next_range(ack, bytes, &mut pos, &mut low)?;
    }
    Ok(())
}

/// Every index the ranges mark as held, newest first.
pub fn held(ack: u32, bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    ranges(ack, bytes).flat_map(|(lo, hi)| (lo..=hi).rev())
}

/// The highest index the ranges mark as held, if any.
pub fn highest(ack: u32, bytes: &[u8]) -> Option<u32> {
    ranges(ack, bytes).next().map(|(_, hi)| hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(ack: u32, set: &[(u32, u32)], budget: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = RangeWriter::new(&mut out, ack, budget);
        for &(lo, hi) in set {
            if !w.push(lo, hi) {
                break;
            }
        }
        w.finish();
        out
    }

    #[test]
    fn golden_bytes_newest_first() {
        // Held after ack 10: 11, 13, 20..=21.
        let out = encode(10, &[(20, 21), (13, 13), (11, 11)], 64);
        // top 21-10 = 11, len-1 = 1; gap 20-13-1 = 6, 0; gap 13-11-1 = 1, 0.
        assert_eq!(out, vec![11, 1, 6, 0, 1, 0]);
        assert_eq!(
            ranges(10, &out).collect::<Vec<_>>(),
            vec![(20, 21), (13, 13), (11, 11)]
        );
        assert_eq!(held(10, &out).collect::<Vec<_>>(), vec![21, 20, 13, 11]);
        assert_eq!(highest(10, &out), Some(21));
        assert!(encode(10, &[], 64).is_empty());
    }

    #[test]
    fn touching_ranges_merge_and_the_budget_holds() {
        let out = encode(0, &[(5, 9), (1, 4)], 64);
        assert_eq!(ranges(0, &out).collect::<Vec<_>>(), vec![(1, 9)]);
        // Two bytes per range: a 5-byte budget keeps two ranges.
        let out = encode(0, &[(30, 30), (20, 20), (10, 10)], 5);
        assert_eq!(out.len(), 4);
        assert_eq!(ranges(0, &out).count(), 2);
    }

    #[test]
    fn a_large_flight_fits_in_a_few_bytes() {
        // 65,536 indices held past one hole: four bytes.
        let out = encode(0, &[(1, 65_536)], 64);
        assert!(out.len() <= 6, "{out:?}");
        assert_eq!(ranges(0, &out).collect::<Vec<_>>(), vec![(1, 65_536)]);
        let near_end = encode(u32::MAX - 5, &[(u32::MAX - 1, u32::MAX)], 64);
        assert_eq!(
            ranges(u32::MAX - 5, &near_end).collect::<Vec<_>>(),
            vec![(u32::MAX - 1, u32::MAX)]
        );
    }

    #[test]
    fn malformed_ranges_are_refused() {
        assert_eq!(validate(0, &[0x80]), Err(RangeError::BadVarint));
        assert_eq!(
            validate(0, &[0xff, 0xff, 0xff, 0xff, 0x7f, 0]),
            Err(RangeError::BadVarint)
        );
        // top 0: would hold `ack` itself.
        assert_eq!(validate(10, &[0, 0]), Err(RangeError::OutOfOrder));
        // Length reaching down to ack.
        assert_eq!(validate(10, &[3, 3]), Err(RangeError::OutOfOrder));
        // Gap below the previous range past zero.
        assert_eq!(validate(10, &[3, 0, 5, 0]), Err(RangeError::OutOfOrder));
        // Top past u32::MAX.
        assert_eq!(validate(u32::MAX - 1, &[5, 0]), Err(RangeError::OutOfOrder));
        assert_eq!(validate(10, &[3, 0, 0, 0]), Ok(()), "13, then 11");
    }

    proptest::proptest! {
        #[test]
        fn round_trips_any_set(ack in 0u32..1_000_000, set in proptest::collection::btree_set(1u32..200_000, 0..300)) {
            let idx: Vec<u32> = set.iter().rev().map(|k| ack + k).collect();
            let mut out = Vec::new();
            let mut w = RangeWriter::new(&mut out, ack, MAX_RANGE_BYTES);
            let mut written = 0;
            for &i in &idx {
                if !w.push(i, i) { break; }
                written += 1;
            }
            w.finish();
            proptest::prop_assert!(validate(ack, &out).is_ok());
            let got: Vec<u32> = held(ack, &out).collect();
            // Everything written, newest first; a budget cut keeps a prefix.
            proptest::prop_assert!(got.len() <= written);
            proptest::prop_assert_eq!(&got[..], &idx[..got.len()]);
            proptest::prop_assert!(out.len() <= MAX_RANGE_BYTES);
        }

        #[test]
        fn decoding_never_panics(ack in proptest::num::u32::ANY, bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let ok = validate(ack, &bytes).is_ok();
            let n = ranges(ack, &bytes).count();
            if ok { proptest::prop_assert!(n <= bytes.len() / 2); }
        }
    }
}

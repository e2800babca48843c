//! The integer sequence a session streams, derived from a per-session seed.
//!
//! The server never stores a sequence: the value at index `i` is a pure
//! function of `(seed, i)`, so any index can be (re)sent at any time with
//! O(1) state, and a resumed session gets exactly the same values. The
//! original derived its values from the wall-clock second, so two sessions
//! started in the same second got the same sequence; here each session draws
//! a fresh 64-bit seed.
//!
//! The checksum is the plain sum of all values as `u64`, as in the original.
//! A sequence has at most `u32::MAX` elements of at most `u32::MAX` each, so
//! the sum is below 2^64 and cannot overflow.

/// The deterministic sequence of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    seed: u64,
    len: u32,
}

impl Sequence {
    /// A sequence of `len` values drawn from `seed`.
    pub fn new(seed: u64, len: u32) -> Self {
        Self { seed, len }
    }

    /// The seed the values are derived from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Number of values in the sequence.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True when the sequence has no values (the session goes straight to
    /// CLOSING).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value at `index`, or `None` past the end.
    pub fn get(&self, index: u32) -> Option<u32> {
        (index < self.len).then(|| value_at(self.seed, index))
    }

    /// Iterates over all values in order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).map(move |i| value_at(self.seed, i))
    }

    /// The checksum of the whole sequence (sum of all values as `u64`).
    ///
    /// This walks the sequence: O(len) time, O(1) memory. The server keeps a
    /// running sum instead (see [`RunningChecksum`]).
    pub fn checksum(&self) -> u64 {
        self.iter().map(u64::from).sum()
    }

    /// The sum of the values of `[from, to)` (indices past the end count
    /// nothing). O(to − from): what an endpoint that restores a session
    /// from a checkpoint pays to bring its checksum to the client's ack.
    pub fn sum_range(&self, from: u32, to: u32) -> u64 {
        let to = to.min(self.len);
        (from.min(to)..to)
            .map(|i| u64::from(value_at(self.seed, i)))
            .sum()
    }
}

/// The value at `index` for `seed`: a SplitMix64 finaliser over the seed and
/// index, truncated to the high 32 bits. Full-range `u32`, as the original.
pub fn value_at(seed: u64, index: u32) -> u32 {
    let mut z = seed ^ (u64::from(index).wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 32) as u32
}

/// A checksum accumulated one value at a time, in any order, without storing
/// the values. Used on both sides: the server as it first sends each index,
/// the client as it delivers each value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunningChecksum {
    sum: u64,
    count: u64,
}

impl RunningChecksum {
    /// Adds one value.
    pub fn add(&mut self, value: u32) {
        self.sum += u64::from(value);
        self.count += 1;
    }

    /// A checksum that already holds `count` values summing to `sum`
    /// (for resuming a transfer another client started).
    pub fn from_parts(sum: u64, count: u64) -> Self {
        Self { sum, count }
    }

    /// The sum so far.
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_values_and_different_seeds_differ() {
        let a = Sequence::new(7, 1000);
        let b = Sequence::new(7, 1000);
        let c = Sequence::new(8, 1000);
        assert!(a.iter().eq(b.iter()));
        let same = a.iter().zip(c.iter()).filter(|(x, y)| x == y).count();
        assert!(same < 5, "{same} equal values between seeds 7 and 8");
    }

    #[test]
    fn get_is_bounds_checked() {
        let s = Sequence::new(1, 3);
        assert!(s.get(2).is_some());
        assert_eq!(s.get(3), None);
        assert_eq!(s.get(u32::MAX), None);
        assert_eq!(Sequence::new(1, 0).checksum(), 0);
    }

    #[test]
    fn running_checksum_matches_full_sum_in_any_order() {
        let s = Sequence::new(42, 5000);
        let mut r = RunningChecksum::default();
        for i in (0..5000).rev() {
            r.add(s.get(i).unwrap());
        }
        assert_eq!(r.sum(), s.checksum());
        assert_eq!(r.count(), 5000);
    }

    #[test]
    fn values_use_the_full_u32_range() {
        let s = Sequence::new(3, 100_000);
        let max = s.iter().max().unwrap();
        let min = s.iter().min().unwrap();
        assert!(max > u32::MAX - u32::MAX / 1000, "max {max}");
        assert!(min < u32::MAX / 1000, "min {min}");
    }

    #[test]
    fn golden_values_pin_the_function() {
        // Computed independently (Python, 64-bit wrapping arithmetic).
        // Changing value_at would break resumption across versions.
        assert_eq!(value_at(0, 0), 3_793_791_033);
        assert_eq!(value_at(0, 1), 1_853_398_634);
        assert_eq!(value_at(42, 999), 2_584_618_845);
        assert_eq!(value_at(0xdead_beef, 7), 1_592_277_597);
    }
}

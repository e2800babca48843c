//! A fixed-size set of slot flags, searched a machine word at a time.
//!
//! The client's reorder buffer keeps one flag per ring slot (held or not)
//! so that writing an ack's ranges and finding the `k`-th hole cost a
//! word per 64 slots, not a step per slot (under heavy loss every ack
//! describes most of the window).

/// One flag per slot. See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct SlotBits {
    words: Vec<u64>,
}

impl SlotBits {
    /// `len` slots, all clear.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }

    /// Sets slot `i`.
    pub(crate) fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Clears slot `i`.
    pub(crate) fn clear(&mut self, i: usize) {
        self.words[i / 64] &= !(1 << (i % 64));
    }

    /// Clears every slot.
    pub(crate) fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    /// Word `w` with the bits equal to `value` set, restricted to slots
    /// `lo..=hi`.
    fn masked(&self, w: usize, lo: usize, hi: usize, value: bool) -> u64 {
        let word = if value { self.words[w] } else { !self.words[w] };
        let first = w * 64;
        let low_mask = if lo > first {
            !0u64 << (lo - first)
        } else {
            !0
        };
        let high_mask = if hi < first + 63 {
            !0u64 >> (63 - (hi - first))
        } else {
            !0
        };
        word & low_mask & high_mask
    }

    /// The highest slot in `lo..=hi` whose flag is `value`.
    pub(crate) fn rfind(&self, lo: usize, hi: usize, value: bool) -> Option<usize> {
        if lo > hi {
            return None;
        }
        for w in (lo / 64..=hi / 64).rev() {
            let m = self.masked(w, lo, hi, value);
            if m != 0 {
                return Some(w * 64 + 63 - m.leading_zeros() as usize);
            }
        }
        None
    }

    /// The `k`-th (1-based) slot in `lo..=hi`, counting up, whose flag is
    /// `value`; when there are fewer, `None` with `k` reduced by how many
    /// there were.
    pub(crate) fn nth(&self, lo: usize, hi: usize, value: bool, k: &mut u32) -> Option<usize> {
        if lo > hi {
            return None;
        }
        for w in lo / 64..=hi / 64 {
            let mut m = self.masked(w, lo, hi, value);
            let count = m.count_ones();
            if count < *k {
                *k -= count;
                continue;
            }
            for _ in 1..*k {
                m &= m - 1; // drop the lowest
            }
            return Some(w * 64 + m.trailing_zeros() as usize);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same answers as a slot-by-slot walk, for every range of a set
    /// with words partly and wholly full.
    #[test]
    fn searches_agree_with_a_walk() {
        let len = 200;
        let mut bits = SlotBits::new(len);
        let mut plain = vec![false; len];
        for i in (0..len).filter(|i| i % 7 == 0 || (64..140).contains(i)) {
            bits.set(i);
            plain[i] = true;
        }
        bits.clear(100);
        plain[100] = false;
        for lo in (0..len).step_by(3) {
            for hi in (lo..len).step_by(5) {
                for value in [true, false] {
                    let want = (lo..=hi).rev().find(|&i| plain[i] == value);
                    assert_eq!(bits.rfind(lo, hi, value), want, "rfind {lo}..={hi} {value}");
                    let all: Vec<usize> = (lo..=hi).filter(|&i| plain[i] == value).collect();
                    for k in 1..=all.len() as u32 + 1 {
                        let mut left = k;
                        let got = bits.nth(lo, hi, value, &mut left);
                        assert_eq!(
                            got,
                            all.get(k as usize - 1).copied(),
                            "nth {k} in {lo}..={hi}"
                        );
                        if got.is_none() {
                            assert_eq!(left, k - all.len() as u32);
                        }
                    }
                }
            }
        }
        bits.clear_all();
        assert_eq!(bits.rfind(0, len - 1, true), None);
    }
}

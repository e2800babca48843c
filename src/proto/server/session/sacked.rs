//! Which indices above the cumulative ack the client has selectively
//! acknowledged, a machine word per 64 indices.
//!
//! Every ack repeats the ranges of everything the client holds past its
//! cumulative ack: under 10% loss that is most of the window, ack after
//! ack. Walking each range slot by slot made applying acks the server's
//! largest cost; with this set an ack costs a word per 64 indices it
//! repeats, plus a step per index it acknowledges for the first time.
//! It mirrors `Slot::sacked` exactly (the session sets both together).

use std::collections::VecDeque;

/// The set. See the module docs.
#[derive(Debug, Default)]
pub(super) struct SackedSet {
    /// The index of bit 0 of `words[0]`: a multiple of 64, at or below the
    /// cumulative ack.
    base: u32,
    /// Bit `i % 64` of word `(i - base) / 64` is index `i`. Indices past
    /// the last word are not in the set.
    words: VecDeque<u64>,
}

impl SackedSet {
    /// Empties the set; the cumulative ack is now `ack`.
    pub(super) fn reset(&mut self, ack: u32) {
        self.words.clear();
        self.base = ack & !63;
    }

    /// Forgets the indices below `ack` (the new cumulative ack) a whole
    /// word at a time.
    pub(super) fn advance(&mut self, ack: u32) {
        while self.base.checked_add(64).is_some_and(|next| next <= ack) {
            if self.words.pop_front().is_none() {
                self.base = ack & !63;
                return;
            }
            self.base += 64;
        }
    }

    /// Adds `index`, which must be at or above the cumulative ack.
    pub(super) fn insert(&mut self, index: u32) {
        let Some(off) = index.checked_sub(self.base) else {
            return;
        };
        let w = (off / 64) as usize;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (off % 64);
    }

    /// Whether `index` is in the set.
    #[cfg(test)]
    fn contains(&self, index: u32) -> bool {
        index.checked_sub(self.base).is_some_and(|off| {
            self.words
                .get((off / 64) as usize)
                .is_some_and(|w| w & (1 << (off % 64)) != 0)
        })
    }

    /// The lowest index in `lo..=hi` that is not in the set.
    pub(super) fn first_absent(&self, lo: u32, hi: u32) -> Option<u32> {
        if lo > hi {
            return None;
        }
        let Some(mut off) = lo.checked_sub(self.base) else {
            return Some(lo); // below the set: never acknowledged here
        };
        let end = hi - self.base;
        while off <= end {
            let w = (off / 64) as usize;
            let Some(&word) = self.words.get(w) else {
                return Some(self.base + off);
            };
            let bit = off % 64;
            // The absent indices of this word from `bit` up.
            let absent = !word & (!0u64 << bit);
            if absent != 0 {
                let found = (w as u32) * 64 + absent.trailing_zeros();
                return (found <= end).then_some(self.base + found);
            }
            off = (w as u32 + 1).checked_mul(64)?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a plain set: every query over a set with full words, partial
    /// words and gaps, before and after the ack moves past some of it.
    #[test]
    fn answers_agree_with_a_plain_set() {
        let mut set = SackedSet::default();
        set.reset(100);
        let mut plain = std::collections::BTreeSet::new();
        for i in (100..700).filter(|i| i % 5 != 0 || (192..320).contains(i)) {
            set.insert(i);
            plain.insert(i);
        }
        for ack in [100, 130, 191, 256, 257, 500] {
            set.advance(ack);
            plain.retain(|&i| i >= ack);
            for lo in (ack..760).step_by(7) {
                for hi in (lo..760).step_by(11) {
                    let want = (lo..=hi).find(|i| !plain.contains(i));
                    assert_eq!(set.first_absent(lo, hi), want, "ack {ack}: {lo}..={hi}");
                }
                assert_eq!(set.contains(lo), plain.contains(&lo), "ack {ack}: {lo}");
            }
        }
        // Past every word: forgets all, then starts again at the new ack.
        set.advance(5_000);
        assert_eq!(set.first_absent(5_000, 5_100), Some(5_000));
        set.insert(5_000);
        assert_eq!(set.first_absent(5_000, 5_100), Some(5_001));
        set.reset(9_999);
        assert!(!set.contains(5_000));
        assert_eq!(set.first_absent(9_999, 9_999), Some(9_999));
    }

    /// Indices near `u32::MAX` neither overflow nor wrap.
    #[test]
    fn the_top_of_the_index_space() {
        let mut set = SackedSet::default();
        set.reset(u32::MAX - 70);
        for i in u32::MAX - 70..=u32::MAX {
            set.insert(i);
        }
        assert_eq!(set.first_absent(u32::MAX - 70, u32::MAX), None);
        set.advance(u32::MAX);
        assert!(set.contains(u32::MAX));
        assert_eq!(set.first_absent(u32::MAX, u32::MAX), None);
    }
}

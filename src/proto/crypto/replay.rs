//! The replay window: which packet numbers a receiver has already opened.
//!
//! A sliding bitmap of [`REPLAY_WINDOW`] packet numbers ending at the
//! highest one opened, as IPsec (RFC 4303 §3.4.3, RFC 6479) and WireGuard
//! keep: a number above the highest is new, one more than the window
//! below it is too old to tell, and one inside is new exactly once. The
//! bitmap is a ring of 64-bit words indexed by the packet number modulo
//! the window, so sliding forward clears only the words it passes.
//!
//! [`ReplayWindow::check`] changes nothing; the opener calls
//! [`ReplayWindow::commit`] only after the datagram authenticated, so a
//! forged datagram cannot move the window.

/// Packet numbers the window spans, the highest opened included.
pub const REPLAY_WINDOW: u64 = 2048;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// What the window says of a packet number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not opened before.
    Fresh,
    /// Opened before.
    Replayed,
    /// Below the window: it cannot tell.
    TooOld,
}

/// The packet numbers opened so far, as far back as the window reaches.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The highest packet number opened, if any.
    highest: Option<u64>,
    /// Bit `pn % REPLAY_WINDOW` set: `pn` opened (for `pn` in the window).
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has seen nothing.
    pub const fn new() -> Self {
        Self {
            highest: None,
            bits: [0; WORDS],
        }
    }

    /// The highest packet number opened.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn slot(pn: u64) -> (usize, u64) {
        let i = pn % REPLAY_WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    /// Whether `pn` is new, opened before, or too old to tell.
    pub fn check(&self, pn: u64) -> Verdict {
        let Some(highest) = self.highest else {
            return Verdict::Fresh;
        };
        if pn > highest {
            return Verdict::Fresh;
        }
        if highest - pn >= REPLAY_WINDOW {
            return Verdict::TooOld;
        }
        let (word, bit) = Self::slot(pn);
        if self.bits[word] & bit != 0 {
            Verdict::Replayed
        } else {
            Verdict::Fresh
        }
    }

    /// Whether `pn` is below the window (nothing at or below it can be
    /// opened any more).
    pub fn is_below(&self, pn: u64) -> bool {
        self.highest
            .is_some_and(|highest| highest >= pn && highest - pn >= REPLAY_WINDOW)
    }

    /// Records `pn` as opened (after [`check`](Self::check) said
    /// [`Verdict::Fresh`] and the datagram authenticated); slides the
    /// window when `pn` is the new highest.
    pub fn commit(&mut self, pn: u64) {
        match self.highest {
            Some(highest) if pn <= highest => {
                if highest - pn >= REPLAY_WINDOW {
                    return;
                }
            }
            Some(highest) => {
                // Clear the slots of the numbers passed over, highest+1
                // ..= pn: whole words where the span covers them.
                let span = pn - highest;
                if span >= REPLAY_WINDOW {
                    self.bits = [0; WORDS];
                } else {
                    for n in highest + 1..=pn {
                        let (word, bit) = Self::slot(n);
                        self.bits[word] &= !bit;
                    }
                }
                self.highest = Some(pn);
            }
            None => self.highest = Some(pn),
        }
        let (word, bit) = Self::slot(pn);
        self.bits[word] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn open(w: &mut ReplayWindow, pn: u64) -> Verdict {
        let v = w.check(pn);
        if v == Verdict::Fresh {
            w.commit(pn);
        }
        v
    }

    #[test]
    fn in_order_numbers_are_fresh_once() {
        let mut w = ReplayWindow::new();
        for pn in 0..5000 {
            assert_eq!(open(&mut w, pn), Verdict::Fresh);
            assert_eq!(open(&mut w, pn), Verdict::Replayed);
        }
        assert_eq!(w.highest(), Some(4999));
    }

    #[test]
    fn the_window_spans_2048_numbers_and_no_more() {
        let mut w = ReplayWindow::new();
        open(&mut w, 10_000);
        assert_eq!(w.check(10_000 - 2047), Verdict::Fresh);
        assert_eq!(w.check(10_000 - 2048), Verdict::TooOld);
        assert!(w.is_below(10_000 - 2048));
        assert!(!w.is_below(10_000 - 2047));
        assert_eq!(open(&mut w, 10_000 - 2047), Verdict::Fresh);
        assert_eq!(open(&mut w, 10_000 - 2047), Verdict::Replayed);
        assert_eq!(open(&mut w, 0), Verdict::TooOld);
    }

    #[test]
    fn check_alone_changes_nothing() {
        let mut w = ReplayWindow::new();
        open(&mut w, 5);
        for pn in [0, 4, 6, 100_000] {
            w.check(pn);
        }
        assert_eq!(w.highest(), Some(5));
        assert_eq!(w.check(4), Verdict::Fresh);
        assert_eq!(w.check(6), Verdict::Fresh);
    }

    #[test]
    fn a_jump_past_the_window_forgets_everything_below() {
        let mut w = ReplayWindow::new();
        for pn in 0..100 {
            open(&mut w, pn);
        }
        open(&mut w, 100 + 5000);
        // The slots of 0..100 are reused by numbers in the new window.
        for pn in 5100 - 2047..5100 {
            assert_eq!(w.check(pn), Verdict::Fresh, "{pn}");
        }
    }

    proptest! {
        /// Against a set of every number ever opened: fresh exactly when
        /// new and inside the window, replayed when seen and inside, too
        /// old when below.
        #[test]
        fn agrees_with_a_set_of_every_number_opened(
            steps in proptest::collection::vec((0u64..6000, any::<bool>()), 1..400)
        ) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut base = 0u64;
            for (delta, forward) in steps {
                let pn = if forward { base + delta } else { base.saturating_sub(delta) };
                base = base.max(pn);
                let highest = seen.iter().next_back().copied();
                let expected = match highest {
                    Some(h) if pn <= h && h - pn >= REPLAY_WINDOW => Verdict::TooOld,
                    _ if seen.contains(&pn) => Verdict::Replayed,
                    _ => Verdict::Fresh,
                };
                prop_assert_eq!(open(&mut w, pn), expected, "pn {}", pn);
                if expected == Verdict::Fresh {
                    seen.insert(pn);
                }
            }
        }
    }
}

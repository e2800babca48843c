//! Selective-ack bitmaps.
//!
//! A client acks cumulatively with `ack`, the next index it still needs, and
//! marks the indices it already holds after that in a bitmap: bit `k`
//! (most significant bit of each byte first) stands for index `ack + 1 + k`.
//! Index `ack` itself is missing by definition, so it needs no bit. The
//! bitmap ends at the last held index, so an ack with no holes carries none.

use super::wire::MAX_SACK_BYTES;

/// Highest number of indices a bitmap can describe.
pub const MAX_SACK_SPAN: u32 = (MAX_SACK_BYTES * 8) as u32;

/// Writes the bitmap for the indices after `ack` that `held` reports, up to
/// and including `highest`, into `out` (cleared first). Indices past
/// `ack + MAX_SACK_SPAN` are left out.
pub fn encode(out: &mut Vec<u8>, ack: u32, highest: u32, held: impl Fn(u32) -> bool) {
    out.clear();
    if highest <= ack {
        return;
    }
    let span = (highest - ack).min(MAX_SACK_SPAN);
    out.resize(span.div_ceil(8) as usize, 0);
    for k in 0..span {
        if held(ack + 1 + k) {
            out[(k / 8) as usize] |= 0x80 >> (k % 8);
        }
    }
    while out.last() == Some(&0) {
        out.pop();
    }
}

/// The indices a bitmap marks as held, in increasing order. Indices that
/// would overflow `u32` are skipped.
pub fn held(ack: u32, bitmap: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bitmap.iter().enumerate().flat_map(move |(byte, &bits)| {
        (0..8u32).filter_map(move |bit| {
            if bits & (0x80 >> bit) == 0 {
                return None;
            }
            let k = (byte as u32) * 8 + bit;
            ack.checked_add(1)?.checked_add(k)
        })
    })
}

/// The highest index a bitmap marks as held, if any.
pub fn highest(ack: u32, bitmap: &[u8]) -> Option<u32> {
    held(ack, bitmap).last()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_msb_first_and_trims() {
        let mut out = Vec::new();
        // Held: 11, 13, 20 after ack 10.
        encode(&mut out, 10, 20, |i| [11, 13, 20].contains(&i));
        assert_eq!(out, vec![0b1010_0000, 0b0100_0000]);
        assert_eq!(held(10, &out).collect::<Vec<_>>(), vec![11, 13, 20]);
        assert_eq!(highest(10, &out), Some(20));
        encode(&mut out, 10, 10, |_| true);
        assert!(out.is_empty());
        encode(&mut out, 10, 30, |_| false);
        assert!(out.is_empty(), "trailing zero bytes are trimmed");
    }

    #[test]
    fn span_is_bounded_and_overflow_is_skipped() {
        let mut out = Vec::new();
        encode(&mut out, 0, u32::MAX, |_| true);
        assert_eq!(out.len(), MAX_SACK_BYTES);
        let near_end = held(u32::MAX - 3, &[0xff]).collect::<Vec<_>>();
        assert_eq!(near_end, vec![u32::MAX - 2, u32::MAX - 1, u32::MAX]);
    }

    proptest::proptest! {
        #[test]
        fn round_trips_any_set(ack in 0u32..1_000_000, set in proptest::collection::btree_set(1u32..2000, 0..200)) {
            let idx: Vec<u32> = set.iter().map(|k| ack + k).collect();
            let mut out = Vec::new();
            let highest = idx.last().copied().unwrap_or(ack);
            encode(&mut out, ack, highest, |i| idx.contains(&i));
            proptest::prop_assert_eq!(held(ack, &out).collect::<Vec<_>>(), idx);
        }
    }
}

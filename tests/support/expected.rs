//! What a transfer must deliver, worked out by the test and not by the
//! server: the values of a session from its seed through a reference
//! written here from docs/PROTOCOL.md (section 6), not through the crate's
//! `Sequence`, and a check of every delivered value against it.
//!
//! A server bug that sends the wrong value for an index, the right values
//! at the wrong indices (two payloads swapped: the sum, which is all the
//! client's checksum compares, stays the same), or that breaks the value
//! function itself fails [`Expected::check`] even when the server's own
//! `Sequence` and checksum agree with what it sent.
//!
//! Over real sockets the client never learns its session's seed: the
//! server under test tells it ([`SessionSeeds`]), the in-process one
//! through its summary, a `risp-udp server` process in its "session
//! opened" log line. Only the seed comes from the server; the values are
//! worked out here.

use uuid::Uuid;

/// Where a test learns the seed a server drew for a session.
pub trait SessionSeeds {
    /// The seed of session `uuid`; panics (failing the test) when the
    /// server never opened it.
    fn session_seed(&self, uuid: Uuid) -> u64;

    /// What session `uuid` of `len` values must deliver.
    fn expected(&self, uuid: Uuid, len: u32) -> Expected {
        Expected::new(self.session_seed(uuid), len)
    }
}

/// The value at `index` of the session drawn from `seed`: SplitMix64's
/// finaliser applied to `seed XOR (index + 1) * golden gamma`, high 32 bits.
pub fn reference_value(seed: u64, index: u32) -> u32 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    const M1: u64 = 0xBF58_476D_1CE4_E5B9;
    const M2: u64 = 0x94D0_49BB_1331_11EB;
    let x = seed ^ GAMMA.wrapping_mul(u64::from(index) + 1);
    let x = M1.wrapping_mul(x ^ (x >> 30));
    let x = M2.wrapping_mul(x ^ (x >> 27));
    ((x ^ (x >> 31)) >> 32) as u32
}

/// A session's expected values: `len` of them from `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub seed: u64,
    pub len: u32,
}

impl Expected {
    pub fn new(seed: u64, len: u32) -> Self {
        Self { seed, len }
    }

    /// The value at `index` (the caller keeps `index < len`).
    pub fn value(&self, index: u32) -> u32 {
        assert!(index < self.len, "index {index} past len {}", self.len);
        reference_value(self.seed, index)
    }

    /// The checksum of the whole session: the sum of its values.
    pub fn checksum(&self) -> u64 {
        (0..self.len).map(|i| u64::from(self.value(i))).sum()
    }

    /// The sum of the values of `[from, to)`.
    pub fn sum_range(&self, from: u32, to: u32) -> u64 {
        (from..to.min(self.len))
            .map(|i| u64::from(self.value(i)))
            .sum()
    }

    /// Every value of the session, delivered in order, each once, each the
    /// right one: `Err` names the first index that is not.
    pub fn check(&self, delivered: &[u32]) -> Result<(), String> {
        self.check_prefix(delivered)?;
        if delivered.len() != self.len as usize {
            return Err(format!("{} of {} values", delivered.len(), self.len));
        }
        Ok(())
    }

    /// Like [`check`](Self::check) for a transfer still under way: the
    /// values so far are the session's first ones.
    pub fn check_prefix(&self, delivered: &[u32]) -> Result<(), String> {
        for (i, &v) in delivered.iter().enumerate() {
            let Ok(index) = u32::try_from(i) else {
                return Err(format!("{} values, more than u32 holds", delivered.len()));
            };
            if index >= self.len {
                return Err(format!("{} values for len {}", delivered.len(), self.len));
            }
            let want = self.value(index);
            if v != want {
                return Err(format!("index {index}: got {v}, expected {want}"));
            }
        }
        Ok(())
    }

    /// [`check`](Self::check) for `(index, value)` pairs as the drivers
    /// hand them out: indices must run 0, 1, 2, ...
    pub fn check_indexed(&self, delivered: &[(u32, u32)]) -> Result<(), String> {
        self.check(&in_index_order(delivered)?)
    }

    /// [`check_prefix`](Self::check_prefix) for `(index, value)` pairs: a
    /// transfer that stopped early delivered indices 0, 1, 2, ... with the
    /// session's values.
    pub fn check_indexed_prefix(&self, delivered: &[(u32, u32)]) -> Result<(), String> {
        self.check_prefix(&in_index_order(delivered)?)
    }

    /// The checksum the client's own check compares: the order-insensitive
    /// sum of what it received (what two swapped payloads do not change).
    pub fn sum_of(delivered: &[u32]) -> u64 {
        delivered.iter().map(|&v| u64::from(v)).sum()
    }
}

/// The values of `(index, value)` pairs whose indices run 0, 1, 2, ...;
/// `Err` names the first delivery out of place.
fn in_index_order(delivered: &[(u32, u32)]) -> Result<Vec<u32>, String> {
    if let Some((at, (i, _))) = delivered
        .iter()
        .enumerate()
        .find(|(at, (i, _))| *i as usize != *at)
    {
        return Err(format!("delivery {at} carries index {i}"));
    }
    Ok(delivered.iter().map(|&(_, v)| v).collect())
}

//! The seeded impairment model: given a datagram's direction, the time and
//! its length, decide what the network does to it.
//!
//! The model owns no clock and no socket (the sans-IO pattern of the core):
//! the caller passes the elapsed time, so the same model serves the tokio
//! shim, the deterministic simulator and plain unit tests.
//!
//! Reproducibility is the point of a seeded model, so two rules hold:
//!
//! * each direction has its own random stream, derived from the seed, so
//!   traffic in one direction never changes the decisions in the other;
//! * every call to [`Impairment::decide`] consumes exactly the same number of
//!   random draws, in the same order, whatever the outcome. The decision for
//!   the n-th datagram of a direction therefore depends only on the seed, the
//!   configuration, `n`, the elapsed time (for blackholes) and the length
//!   (for the corrupted bit). A side effect is that raising, say, the
//!   duplicate probability does not reshuffle which datagrams are lost.
//!
//! [`StdRng`] is used rather than `SmallRng` because its output is the same
//! on every platform, so a seed reported by CI reproduces on a laptop.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::config::{DirectionConfig, ImpairmentConfig};

/// Which way a datagram travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client to the server.
    ToServer,
    /// From the server to the client.
    ToClient,
}

impl Direction {
    /// The other direction.
    pub fn reverse(self) -> Self {
        match self {
            Self::ToServer => Self::ToClient,
            Self::ToClient => Self::ToServer,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::ToServer => 0,
            Self::ToClient => 1,
        }
    }
}

/// One copy of a datagram that reaches the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Delivery {
    /// How long after it was sent this copy arrives.
    pub delay: Duration,
    /// If set, flip this bit (see [`flip_bit`]) of this copy before handing it
    /// over. Always below the datagram length times 8.
    pub corrupt_bit: Option<usize>,
}

/// What happens to one datagram: dropped, delivered once, or delivered twice.
///
/// The default value is a dropped datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Storage for up to two copies; only the first `count` are meaningful.
    slots: [Delivery; 2],
    /// How many copies arrive: 0, 1 or 2.
    count: u8,
    /// Dropped because of a blackhole rather than random loss.
    blackholed: bool,
    /// The datagram was held back by the reorder rule.
    reordered: bool,
}

impl Verdict {
    /// The copies that arrive, in the order the model produced them (not
    /// necessarily the order of their delays). Empty when dropped.
    pub fn deliveries(&self) -> &[Delivery] {
        &self.slots[..usize::from(self.count)]
    }

    /// True when no copy arrives.
    pub fn is_dropped(&self) -> bool {
        self.count == 0
    }

    /// True when the datagram was dropped by a blackhole.
    pub fn is_blackholed(&self) -> bool {
        self.blackholed
    }

    /// True when two copies arrive.
    pub fn is_duplicated(&self) -> bool {
        self.count == 2
    }

    /// True when the datagram was held back so that later ones overtake it.
    pub fn is_reordered(&self) -> bool {
        self.reordered
    }

    /// True when one of the copies has a bit flipped.
    pub fn is_corrupted(&self) -> bool {
        self.deliveries().iter().any(|d| d.corrupt_bit.is_some())
    }
}

/// Counters for one direction.
///
/// Invariant: copies delivered = `seen - dropped + duplicated`
/// (see [`DirectionStats::delivered`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams the model decided on.
    pub seen: u64,
    /// Datagrams of which no copy arrives, for any reason (random loss,
    /// blackhole, full shim queue).
    pub dropped: u64,
    /// The part of `dropped` caused by blackholes.
    pub blackholed: u64,
    /// Datagrams delivered twice.
    pub duplicated: u64,
    /// Datagrams delivered with a flipped bit.
    pub corrupted: u64,
    /// Datagrams held back by the reorder rule.
    pub reordered: u64,
    /// The part of `dropped` caused by a full delay queue in the shim.
    pub overflowed: u64,
}

impl DirectionStats {
    /// How many copies arrive in total: `seen - dropped + duplicated`.
    pub fn delivered(&self) -> u64 {
        self.seen
            .saturating_sub(self.dropped)
            .saturating_add(self.duplicated)
    }
}

/// Counters for both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairmentStats {
    /// Client-to-server counters.
    pub to_server: DirectionStats,
    /// Server-to-client counters.
    pub to_client: DirectionStats,
}

impl ImpairmentStats {
    /// The counters of one direction.
    pub fn direction(&self, dir: Direction) -> DirectionStats {
        match dir {
            Direction::ToServer => self.to_server,
            Direction::ToClient => self.to_client,
        }
    }
}

/// Flips bit `bit` of `buf`: byte `bit / 8`, mask `1 << (bit % 8)`.
/// Does nothing if the bit is out of range.
pub fn flip_bit(buf: &mut [u8], bit: usize) {
    if let Some(byte) = buf.get_mut(bit / 8) {
        *byte ^= 1 << (bit % 8);
    }
}

/// How losses are drawn, precomputed from `loss` and `burst`.
#[derive(Debug, Clone, Copy)]
enum LossProcess {
    /// Each datagram lost with probability `p` (also covers 0 and 1).
    Independent { p: f64 },
    /// Two-state Gilbert–Elliott chain; the bad state drops everything.
    GilbertElliott {
        /// Probability of moving good -> bad at a datagram.
        enter: f64,
        /// Probability of moving bad -> good at a datagram; 1 / burst.
        leave: f64,
        /// Probability of starting in the bad state (the stationary one).
        start_bad: f64,
    },
}

impl LossProcess {
    fn new(config: &DirectionConfig) -> Self {
        let (loss, burst) = (config.loss, config.burst);
        if !(burst > 1.0 && loss > 0.0 && loss < 1.0) {
            return Self::Independent { p: loss };
        }
        // Stationary bad fraction enter / (enter + leave) = loss, and the
        // bad run length is geometric with mean 1 / leave = burst.
        let leave = 1.0 / burst;
        // Only an unvalidated (infeasible) config needs the clamp.
        let enter = (loss * leave / (1.0 - loss)).min(1.0);
        Self::GilbertElliott {
            enter,
            leave,
            start_bad: enter / (enter + leave),
        }
    }

    /// Advances the process by one datagram using the uniform draw `u` and
    /// says whether that datagram is lost.
    fn step(&self, u: f64, bad: &mut Option<bool>) -> bool {
        match *self {
            // A NaN probability compares false: never lost.
            Self::Independent { p } => u < p,
            Self::GilbertElliott {
                enter,
                leave,
                start_bad,
            } => {
                let next = match *bad {
                    None => u < start_bad,
                    Some(true) => u >= leave,
                    Some(false) => u < enter,
                };
                *bad = Some(next);
                next
            }
        }
    }
}

/// Random draws per decision; see the module docs for why it is fixed.
const DRAWS: usize = 7;

/// The state of one direction: its random stream and counters.
#[derive(Debug, Clone)]
struct DirectionState {
    /// Independent stream for this direction only.
    rng: StdRng,
    /// Loss parameters derived from the config.
    loss: LossProcess,
    /// Gilbert–Elliott state: `None` before the first datagram.
    bad: Option<bool>,
    /// Counters reported by [`Impairment::stats`].
    stats: DirectionStats,
}

impl DirectionState {
    fn new(config: &DirectionConfig, seed: u64, dir: Direction) -> Self {
        // Distinct, well-mixed seeds per direction (SplitMix64 finaliser).
        let salt = [0x5EED_0000_7053_E7E5_u64, 0x5EED_0000_C11E_A7E5][dir.index()];
        Self {
            rng: StdRng::seed_from_u64(mix(seed ^ salt)),
            loss: LossProcess::new(config),
            bad: None,
            stats: DirectionStats::default(),
        }
    }

    fn draws(&mut self) -> [u64; DRAWS] {
        let mut out = [0; DRAWS];
        for x in &mut out {
            *x = self.rng.next_u64();
        }
        out
    }
}

/// SplitMix64 finaliser: spreads nearby seeds far apart.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits of `x`.
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A value in `[0, n)` from one draw (multiply-shift; the bias is below
/// `n / 2^64`, far under anything a test could see). Returns 0 for `n == 0`.
fn below(x: u64, n: u128) -> u128 {
    // n <= 2^64 * 10^9 in practice, so the product fits in u128; saturate
    // anyway so that no input can overflow.
    (u128::from(x).saturating_mul(n)) >> 64
}

/// A uniform duration in `[0, max]`.
fn uniform_duration(x: u64, max: Duration) -> Duration {
    if max.is_zero() {
        // No jitter, the common case: skip the 128-bit division (it was
        // a tenth of a lossy client's CPU). The draw is still consumed.
        return Duration::ZERO;
    }
    let nanos = below(x, max.as_nanos().saturating_add(1));
    if let Ok(nanos) = u64::try_from(nanos) {
        return Duration::from_nanos(nanos); // 64-bit division
    }
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so the conversion always succeeds.
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Duration::new(secs, sub)
}

/// The seeded impairment model for both directions of one client/server
/// pair. See the module docs for its reproducibility guarantees.
#[derive(Debug, Clone)]
pub struct Impairment {
    /// The configuration as given (not necessarily validated).
    config: ImpairmentConfig,
    /// Per-direction state, indexed by [`Direction::index`].
    dirs: [DirectionState; 2],
    /// `config.rebind_at`, sorted.
    rebinds: Vec<Duration>,
    /// How many of `rebinds` have been reported.
    rebinds_taken: usize,
}

impl Impairment {
    /// Builds a model from `config` and `seed`.
    ///
    /// The config should have passed [`ImpairmentConfig::validate`]; if it
    /// did not, the model still never panics (out-of-range probabilities
    /// saturate, NaN means "never").
    pub fn new(config: ImpairmentConfig, seed: u64) -> Self {
        let mut rebinds = config.rebind_at.clone();
        rebinds.sort_unstable();
        Self {
            dirs: [
                DirectionState::new(&config.to_server, seed, Direction::ToServer),
                DirectionState::new(&config.to_client, seed, Direction::ToClient),
            ],
            config,
            rebinds,
            rebinds_taken: 0,
        }
    }

    /// Decides the fate of one datagram.
    ///
    /// `elapsed` is the time since the model started on the caller's clock
    /// (virtual or real); it only matters for blackholes. `len` is the
    /// datagram length in bytes; a corrupted bit is always below `len * 8`
    /// and an empty datagram is never corrupted.
    ///
    /// Of a duplicated datagram only the first copy may be corrupted; both
    /// copies share the reorder hold-back and draw their own jitter.
    pub fn decide(&mut self, dir: Direction, elapsed: Duration, len: usize) -> Verdict {
        let config = match dir {
            Direction::ToServer => &self.config.to_server,
            Direction::ToClient => &self.config.to_client,
        };
        let state = &mut self.dirs[dir.index()];
        // All draws happen up front so the stream advances the same way
        // whatever the outcome.
        let [x_loss, x_dup, x_corrupt, x_bit, x_reorder, x_jitter0, x_jitter1] = state.draws();
        state.stats.seen += 1;

        let lost = state.loss.step(unit(x_loss), &mut state.bad);
        if self.config.blackholes.iter().any(|b| b.contains(elapsed)) {
            state.stats.dropped += 1;
            state.stats.blackholed += 1;
            return Verdict {
                blackholed: true,
                ..Verdict::default()
            };
        }
        if lost {
            state.stats.dropped += 1;
            return Verdict::default();
        }

        let duplicated = unit(x_dup) < config.duplicate;
        let corrupt_bit = (len > 0 && unit(x_corrupt) < config.corrupt).then(|| {
            let bits = (len as u128).saturating_mul(8).min(usize::MAX as u128);
            usize::try_from(below(x_bit, bits)).unwrap_or(0)
        });
        let reordered = unit(x_reorder) < config.reorder;
        let hold = if reordered {
            config.effective_reorder_gap()
        } else {
            Duration::ZERO
        };
        let delay = |x| {
            config
                .delay
                .saturating_add(uniform_duration(x, config.jitter))
                .saturating_add(hold)
        };

        let first = Delivery {
            delay: delay(x_jitter0),
            corrupt_bit,
        };
        let second = Delivery {
            delay: delay(x_jitter1),
            corrupt_bit: None,
        };
        state.stats.duplicated += u64::from(duplicated);
        state.stats.corrupted += u64::from(corrupt_bit.is_some());
        state.stats.reordered += u64::from(reordered);
        Verdict {
            slots: [first, second],
            count: if duplicated { 2 } else { 1 },
            blackholed: false,
            reordered,
        }
    }

    /// Records that a verdict returned by [`decide`](Self::decide) could not
    /// be carried out at all (the shim's queue was full), so the counters
    /// keep describing what actually arrived.
    pub(crate) fn record_overflow(&mut self, dir: Direction, verdict: &Verdict) {
        if verdict.is_dropped() {
            return;
        }
        let stats = &mut self.dirs[dir.index()].stats;
        stats.dropped += 1;
        stats.overflowed += 1;
        stats.duplicated -= u64::from(verdict.is_duplicated()).min(stats.duplicated);
        stats.corrupted -= u64::from(verdict.is_corrupted()).min(stats.corrupted);
        stats.reordered -= u64::from(verdict.is_reordered()).min(stats.reordered);
    }

    /// How many scheduled rebinds (see [`ImpairmentConfig::rebind_at`]) are
    /// due at `elapsed` and have not been reported yet. Each one is reported
    /// exactly once; a late call reports all the ones it missed.
    pub fn take_rebinds(&mut self, elapsed: Duration) -> usize {
        let due = self.rebinds[self.rebinds_taken..]
            .iter()
            .take_while(|&&at| at <= elapsed)
            .count();
        self.rebinds_taken += due;
        due
    }

    /// The counters so far.
    pub fn stats(&self) -> ImpairmentStats {
        ImpairmentStats {
            to_server: self.dirs[0].stats,
            to_client: self.dirs[1].stats,
        }
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ImpairmentConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Blackhole;

    const N: usize = 100_000;
    const MS: Duration = Duration::from_millis(1);

    fn model(d: DirectionConfig, seed: u64) -> Impairment {
        let config = ImpairmentConfig::symmetric(d);
        assert_eq!(config.validate(), Ok(()));
        Impairment::new(config, seed)
    }

    /// Four standard errors of a proportion `p` estimated from `n` samples,
    /// inflated by `variance_factor` for correlated samples.
    fn tolerance(p: f64, n: usize, variance_factor: f64) -> f64 {
        4.0 * (variance_factor * p * (1.0 - p) / n as f64).sqrt()
    }

    fn assert_rate(what: &str, count: u64, n: usize, p: f64, variance_factor: f64) {
        let rate = count as f64 / n as f64;
        let tol = tolerance(p, n, variance_factor);
        assert!(
            (rate - p).abs() <= tol,
            "{what}: rate {rate:.5}, expected {p} +- {tol:.5}"
        );
    }

    #[test]
    fn independent_loss_rate_matches() {
        let mut m = model(DirectionConfig::with_loss(0.1), 1);
        let dropped = (0..N)
            .filter(|_| {
                m.decide(Direction::ToServer, Duration::ZERO, 100)
                    .is_dropped()
            })
            .count();
        assert_rate("loss", dropped as u64, N, 0.1, 1.0);
        let stats = m.stats().to_server;
        assert_eq!(stats.seen, N as u64);
        assert_eq!(stats.dropped, dropped as u64);
        assert_eq!(m.stats().to_client, DirectionStats::default());
    }

    #[test]
    fn zero_and_full_loss_are_exact() {
        let mut none = model(DirectionConfig::default(), 2);
        let mut all = model(
            DirectionConfig {
                loss: 1.0,
                burst: 8.0,
                ..DirectionConfig::default()
            },
            2,
        );
        for _ in 0..10_000 {
            let v = none.decide(Direction::ToClient, Duration::ZERO, 10);
            assert_eq!(v.deliveries(), &[Delivery::default()]);
            assert!(all
                .decide(Direction::ToClient, Duration::ZERO, 10)
                .is_dropped());
        }
    }

    /// Returns the drop pattern of `n` datagrams.
    fn drops(m: &mut Impairment, n: usize) -> Vec<bool> {
        (0..n)
            .map(|_| {
                m.decide(Direction::ToServer, Duration::ZERO, 64)
                    .is_dropped()
            })
            .collect()
    }

    /// Lengths of the runs of consecutive drops.
    fn runs(pattern: &[bool]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut current = 0;
        for &dropped in pattern {
            if dropped {
                current += 1;
            } else if current > 0 {
                out.push(current);
                current = 0;
            }
        }
        if current > 0 {
            out.push(current);
        }
        out
    }

    #[test]
    fn gilbert_elliott_matches_loss_and_burst() {
        let (loss, burst) = (0.1, 5.0);
        let mut m = model(
            DirectionConfig {
                loss,
                burst,
                ..DirectionConfig::default()
            },
            3,
        );
        let pattern = drops(&mut m, N);
        let dropped = pattern.iter().filter(|&&d| d).count();
        // Successive states are correlated: the variance of the bad-state
        // fraction is inflated by (1 + l) / (1 - l), where l = 1 - enter -
        // leave is the chain's second eigenvalue.
        let leave = 1.0 / burst;
        let enter = loss * leave / (1.0 - loss);
        let l = 1.0 - enter - leave;
        assert_rate("GE loss", dropped as u64, N, loss, (1.0 + l) / (1.0 - l));

        // Bad runs are geometric with mean `burst`, variance (1-q)/q^2.
        let runs = runs(&pattern);
        let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
        let sd = ((1.0 - leave) / (leave * leave)).sqrt();
        let tol = 4.0 * sd / (runs.len() as f64).sqrt();
        assert!(
            (mean - burst).abs() <= tol,
            "mean burst {mean:.3}, expected {burst} +- {tol:.3} over {} runs",
            runs.len()
        );
    }

    #[test]
    fn burst_at_most_one_is_independent() {
        let p = 0.3;
        let mut m = model(
            DirectionConfig {
                loss: p,
                burst: 1.0,
                ..DirectionConfig::default()
            },
            4,
        );
        let runs = runs(&drops(&mut m, N));
        // Independent losses: run lengths geometric with mean 1 / (1 - p).
        let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
        let q = 1.0 - p;
        let tol = 4.0 * (p / (q * q)).sqrt() / (runs.len() as f64).sqrt();
        assert!((mean - 1.0 / q).abs() <= tol, "mean run {mean}");
    }

    #[test]
    fn duplicate_and_corrupt_rates_match() {
        let mut m = model(
            DirectionConfig {
                duplicate: 0.05,
                corrupt: 0.02,
                ..DirectionConfig::default()
            },
            5,
        );
        let (mut dup, mut bad) = (0u64, 0u64);
        for i in 0..N {
            let len = 1 + i % 1500;
            let v = m.decide(Direction::ToClient, Duration::ZERO, len);
            assert!(!v.is_dropped());
            dup += u64::from(v.deliveries().len() == 2);
            for d in v.deliveries() {
                if let Some(bit) = d.corrupt_bit {
                    assert!(bit < len * 8, "bit {bit} outside {len} bytes");
                    bad += 1;
                }
            }
        }
        assert_rate("duplicate", dup, N, 0.05, 1.0);
        assert_rate("corrupt", bad, N, 0.02, 1.0);
        let stats = m.stats().to_client;
        assert_eq!((stats.duplicated, stats.corrupted), (dup, bad));
        assert_eq!(stats.delivered(), N as u64 + dup);
    }

    #[test]
    fn corrupt_bit_covers_the_whole_datagram_and_skips_empty_ones() {
        let mut m = model(
            DirectionConfig {
                corrupt: 1.0,
                ..DirectionConfig::default()
            },
            6,
        );
        // Every bit of a 2-byte datagram gets hit, and nothing outside it.
        let mut hits = [0u32; 16];
        for _ in 0..16_000 {
            let v = m.decide(Direction::ToServer, Duration::ZERO, 2);
            let bit = v.deliveries()[0].corrupt_bit.expect("corrupt = 1");
            hits[bit] += 1; // out of range would panic the test
        }
        // Expected 1000 each; 4 standard errors is about 125.
        assert!(hits.iter().all(|&h| (875..=1125).contains(&h)), "{hits:?}");
        for _ in 0..1000 {
            let v = m.decide(Direction::ToServer, Duration::ZERO, 0);
            assert_eq!(v.deliveries()[0].corrupt_bit, None);
        }
        assert_eq!(m.stats().to_server.corrupted, 16_000);
    }

    /// Due times of `n` datagrams sent every `spacing`.
    fn due_times(m: &mut Impairment, n: usize, spacing: Duration) -> Vec<Duration> {
        let mut at = Duration::ZERO;
        (0..n)
            .map(|_| {
                let v = m.decide(Direction::ToServer, at, 100);
                let due = at + v.deliveries()[0].delay;
                at += spacing;
                due
            })
            .collect()
    }

    fn inversions(due: &[Duration]) -> u64 {
        due.windows(2).filter(|w| w[1] < w[0]).count() as u64
    }

    #[test]
    fn jitter_reorders_at_the_expected_rate() {
        let jitter = 5 * MS;
        let spacing = Duration::from_micros(100);
        let mut m = model(
            DirectionConfig {
                delay: 20 * MS,
                jitter,
                ..DirectionConfig::default()
            },
            7,
        );
        let due = due_times(&mut m, N, spacing);
        for (i, d) in due.iter().enumerate() {
            let sent = spacing * i as u32;
            assert!(*d >= sent + 20 * MS && *d <= sent + 25 * MS);
        }
        // P(U2 - U1 < -s) for U uniform on [0, J] is (J - s)^2 / (2 J^2).
        let (j, s) = (jitter.as_secs_f64(), spacing.as_secs_f64());
        let p = (j - s) * (j - s) / (2.0 * j * j);
        // Adjacent pairs share a draw: variance at most 3x the independent.
        assert_rate("jitter inversions", inversions(&due), N - 1, p, 3.0);
    }

    #[test]
    fn reorder_holds_back_the_expected_fraction() {
        let mut m = model(
            DirectionConfig {
                reorder: 0.1,
                delay: 10 * MS,
                ..DirectionConfig::default()
            },
            8,
        );
        // The default 1 ms gap is ten spacings, so the next datagram always
        // overtakes a held one unless it is held too.
        let due = due_times(&mut m, N, Duration::from_micros(100));
        assert_rate("reordered", m.stats().to_server.reordered, N, 0.1, 1.0);
        assert_rate("inversions", inversions(&due), N - 1, 0.1 * 0.9, 3.0);
    }

    #[test]
    fn no_jitter_no_reorder_keeps_order() {
        let mut m = model(
            DirectionConfig {
                loss: 0.0,
                duplicate: 0.2,
                corrupt: 0.2,
                delay: 30 * MS,
                reorder_gap: 50 * MS,
                ..DirectionConfig::default()
            },
            9,
        );
        let due = due_times(&mut m, N, Duration::from_micros(1));
        assert_eq!(inversions(&due), 0);
        assert_eq!(m.stats().to_server.reordered, 0);
    }

    #[test]
    fn blackhole_drops_exactly_its_window() {
        let config = ImpairmentConfig {
            blackholes: vec![Blackhole {
                start: Duration::from_secs(1),
                duration: 500 * MS,
            }],
            ..ImpairmentConfig::default()
        };
        let mut m = Impairment::new(config, 10);
        for ms in 0..3000u64 {
            let at = Duration::from_millis(ms);
            let inside = (1000..1500).contains(&ms);
            for dir in [Direction::ToServer, Direction::ToClient] {
                let v = m.decide(dir, at, 10);
                assert_eq!(v.is_dropped(), inside, "{dir:?} at {ms} ms");
                assert_eq!(v.is_blackholed(), inside);
            }
        }
        for dir in [Direction::ToServer, Direction::ToClient] {
            let s = m.stats().direction(dir);
            assert_eq!((s.seen, s.dropped, s.blackholed), (3000, 500, 500));
        }
    }

    fn busy_config() -> ImpairmentConfig {
        ImpairmentConfig {
            to_server: DirectionConfig {
                loss: 0.2,
                burst: 3.0,
                duplicate: 0.1,
                corrupt: 0.1,
                reorder: 0.1,
                delay: 5 * MS,
                jitter: 3 * MS,
                ..DirectionConfig::default()
            },
            to_client: DirectionConfig {
                loss: 0.1,
                duplicate: 0.2,
                corrupt: 0.3,
                jitter: 10 * MS,
                ..DirectionConfig::default()
            },
            blackholes: vec![Blackhole {
                start: 100 * MS,
                duration: 10 * MS,
            }],
            rebind_at: Vec::new(),
        }
    }

    fn trace(m: &mut Impairment, n: usize) -> Vec<Verdict> {
        (0..n)
            .map(|i| {
                let dir = if i % 3 == 0 {
                    Direction::ToClient
                } else {
                    Direction::ToServer
                };
                m.decide(dir, Duration::from_micros(i as u64 * 50), 1 + i % 700)
            })
            .collect()
    }

    #[test]
    fn same_seed_same_verdicts_different_seed_differs() {
        let a = trace(&mut Impairment::new(busy_config(), 42), 10_000);
        let b = trace(&mut Impairment::new(busy_config(), 42), 10_000);
        let c = trace(&mut Impairment::new(busy_config(), 43), 10_000);
        assert_eq!(a, b);
        let differing = a.iter().zip(&c).filter(|(x, y)| x != y).count();
        // Nearly every verdict carries random jitter, so nearly all differ.
        assert!(differing > 9_000, "only {differing} verdicts differ");
    }

    #[test]
    fn directions_do_not_influence_each_other() {
        let mut alone = Impairment::new(busy_config(), 7);
        let mut mixed = Impairment::new(busy_config(), 7);
        for i in 0..20_000u64 {
            let at = Duration::from_micros(i * 20);
            // Extra, varying traffic in the other direction.
            for _ in 0..(i % 4) {
                mixed.decide(Direction::ToClient, at, 1200);
            }
            assert_eq!(
                alone.decide(Direction::ToServer, at, 300),
                mixed.decide(Direction::ToServer, at, 300),
                "datagram {i}"
            );
        }
        assert_eq!(alone.stats().to_server, mixed.stats().to_server);
    }

    #[test]
    fn changing_duplicate_rate_keeps_the_loss_pattern() {
        let base = DirectionConfig {
            loss: 0.3,
            ..DirectionConfig::default()
        };
        let mut a = model(base.clone(), 11);
        let mut b = model(
            DirectionConfig {
                duplicate: 0.5,
                corrupt: 0.5,
                ..base
            },
            11,
        );
        assert_eq!(drops(&mut a, 10_000), drops(&mut b, 10_000));
    }

    #[test]
    fn rebinds_are_reported_once() {
        let config = ImpairmentConfig {
            rebind_at: vec![
                Duration::from_secs(3),
                Duration::from_secs(1),
                Duration::from_secs(2),
            ],
            ..ImpairmentConfig::default()
        };
        let mut m = Impairment::new(config.clone(), 0);
        assert_eq!(m.take_rebinds(500 * MS), 0);
        assert_eq!(m.take_rebinds(Duration::from_secs(1)), 1);
        assert_eq!(m.take_rebinds(Duration::from_secs(1)), 0);
        assert_eq!(m.take_rebinds(Duration::from_millis(2500)), 1);
        assert_eq!(m.take_rebinds(Duration::from_secs(10)), 1);
        assert_eq!(m.take_rebinds(Duration::from_secs(20)), 0);

        let mut late = Impairment::new(config, 0);
        assert_eq!(late.take_rebinds(Duration::from_secs(60)), 3);
        assert_eq!(late.take_rebinds(Duration::MAX), 0);
    }

    #[test]
    fn unvalidated_configs_never_panic() {
        let weird = [f64::NAN, -1.0, 2.0, f64::INFINITY, f64::NEG_INFINITY, 0.5];
        for (i, &p) in weird.iter().enumerate() {
            for &burst in &weird {
                let d = DirectionConfig {
                    loss: p,
                    burst,
                    duplicate: p,
                    corrupt: p,
                    reorder: p,
                    reorder_gap: Duration::MAX,
                    delay: Duration::MAX,
                    jitter: Duration::MAX,
                };
                let mut config = ImpairmentConfig::symmetric(d);
                config.blackholes.push(Blackhole {
                    start: Duration::MAX,
                    duration: Duration::MAX,
                });
                config.rebind_at.push(Duration::MAX);
                let mut m = Impairment::new(config, i as u64);
                for len in [0, 1, usize::MAX] {
                    for at in [Duration::ZERO, Duration::MAX] {
                        let v = m.decide(Direction::ToServer, at, len);
                        assert!(v.deliveries().len() <= 2);
                    }
                }
                m.take_rebinds(Duration::MAX);
            }
        }
    }

    #[test]
    fn flip_bit_flips_one_bit_and_ignores_out_of_range() {
        let mut buf = [0u8; 3];
        flip_bit(&mut buf, 0);
        assert_eq!(buf, [1, 0, 0]);
        flip_bit(&mut buf, 23);
        assert_eq!(buf, [1, 0, 0x80]);
        flip_bit(&mut buf, 24);
        flip_bit(&mut buf, usize::MAX);
        assert_eq!(buf, [1, 0, 0x80]);
        flip_bit(&mut buf, 0);
        flip_bit(&mut buf, 23);
        assert_eq!(buf, [0, 0, 0]);
        flip_bit(&mut [], 0);
    }

    #[test]
    fn uniform_duration_stays_in_range() {
        assert_eq!(uniform_duration(u64::MAX, Duration::ZERO), Duration::ZERO);
        assert_eq!(uniform_duration(0, Duration::MAX), Duration::ZERO);
        assert!(uniform_duration(u64::MAX, Duration::MAX) <= Duration::MAX);
        assert!(uniform_duration(u64::MAX, 5 * MS) <= 5 * MS);
    }
}

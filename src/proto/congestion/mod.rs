//! Rate control: how much the client lets the server have outstanding.
//!
//! The client owns congestion control (the server only obeys the window it
//! is given). [`RateControl`] keeps a congestion window `cwnd` — the number
//! of indices that may be *not yet received* inside the advertised window,
//! new data and holes under repair together — and turns it into the
//! advertised window with [`RateControl::advertised_window`]. Because the
//! window is measured from the highest index received rather than from the
//! cumulative ack, it slides on while holes are repaired: new data keeps
//! flowing, later arrivals reveal a lost resend, and the next ack covers a
//! lost one.
//!
//! A loss is **not** by itself a reason to shrink. Random loss (a lossy
//! radio, a policer that is not ours) does not go away when we send less, so
//! halving on it only starves the transfer. A loss episode counts as
//! congestion only when the measurements say the pipe is full
//! (Westwood+/Veno-style loss differentiation):
//!
//! * the loss fraction of the current and previous round trip exceeds
//!   [`LOSS_CEILING`] — more than random loss a transfer can live with; or
//! * there is a **standing queue**: by Little's law a path holds
//!   `bw · min_rtt` in flight without queueing (delivery rate times the
//!   smallest RTT), and what is in flight beyond that waits in a queue,
//!   `bw · (rtt − min_rtt)`. The recent round-trip time more than [`Q_REL`]
//!   above `min_rtt` (plus [`Q_ABS`] datagrams' worth of time) means a queue
//!   is standing at a bottleneck, and the loss is its overflow. Queueing
//!   delays under [`QUEUE_FLOOR`] (0.5 ms) are not believed whatever the
//!   path: below the timer granularity they are scheduling noise (this
//!   only changes the test on paths under 2 ms, and heavy loss there is
//!   still caught by [`LOSS_CEILING`]). (Comparing
//!   `cwnd` itself with `bw · min_rtt` does not work here: `cwnd` also
//!   counts holes waiting for repair, which are not in flight — at 10%
//!   random loss that alone puts `cwnd` 40–50% above `bw · min_rtt`.)
//!
//! On congestion `cwnd` drops to `max(min_cwnd, min(BETA · cwnd,
//! (1 + Q_REL) · bw · min_rtt))`. Three consecutive probe timeouts mean
//! persistent congestion (RFC 9002 §7.6): `cwnd` drops to the minimum.
//!
//! The client calls it at well-defined points:
//! [`on_arrival`](RateControl::on_arrival) for every index received for the
//! first time, [`on_ack_sent`](RateControl::on_ack_sent) and
//! [`on_echo`](RateControl::on_echo) to time round trips,
//! [`on_loss_episode`](RateControl::on_loss_episode) when its loss detection
//! fires, [`on_probe_timeout`](RateControl::on_probe_timeout) on each probe
//! timer expiry, and [`advertised_window`](RateControl::advertised_window)
//! when it writes an ack. It holds O(1) state and never allocates.
//!
//! `model.rs` holds the path model (bandwidth estimate, `bw · min_rtt`,
//! pacing rate and gain phase), `episode.rs` the judgement of and response
//! to loss episodes; this file the state, rounds and window growth.

use std::time::{Duration, Instant};

/// Window to start with: large enough that a short transfer is one flight,
/// small enough (64 × 24-byte datagrams) not to hurt any path.
pub const INIT_CWND: u32 = 64;

/// Smallest `cwnd` after a congestion response. Below about two dozen
/// outstanding indices a lost resend or a lost ack can no longer be
/// revealed by later arrivals (everything in the window has been sent), and
/// recovery falls back on the timer; the design study's model gives 0.74×,
/// 0.82× and 0.84× the clean rate at 10% loss for 16, 24 and 32.
pub const MIN_CWND: u32 = 24;

/// Multiplicative decrease on congestion (as CUBIC's 0.7: a gentler cut
/// than halving, since the cut also aims at `(1 + Q_REL) · bw · min_rtt`).
pub const BETA: f64 = 0.7;

/// Relative standing-queue threshold: a recent round trip more than
/// `(1 + Q_REL)` times the smallest means a queue of more than a quarter of
/// the bandwidth-delay product (a full bottleneck typically shows 1.2–2;
/// random loss does not inflate the RTT at all). Also the headroom left
/// above the BDP when cutting.
pub const Q_REL: f64 = 0.25;

/// Absolute slack on the standing-queue test, in datagrams (converted to
/// time at the measured delivery rate), so that a queue of a few datagrams
/// — an ack arriving mid-burst, timer noise — is not a standing queue.
pub const Q_ABS: f64 = 4.0;

/// The smallest queueing delay the standing-queue test believes (the
/// threshold is `max(Q_REL · min_rtt + Q_ABS datagrams, QUEUE_FLOOR)`):
/// half the timer granularity ([`crate::proto::rtt::GRANULARITY`]).
/// Smaller inflations of the round trip are scheduling noise (two processes
/// on shared cores), not a queue at a bottleneck.
pub const QUEUE_FLOOR: Duration = Duration::from_micros(500);

/// A loss fraction above this over the current and previous round is
/// congestion whatever the queue test says: a path losing more than a
/// quarter of what we send gets no more from us.
pub const LOSS_CEILING: f64 = 0.25;

/// Fewest datagrams (received plus lost) the loss-ceiling test needs.
pub const LOSS_CEILING_MIN_SAMPLES: u32 = 20;

/// Slow start ends once this fraction of what it sent was lost (over at
/// least [`SLOW_START_MIN_SAMPLES`] datagrams and
/// [`SLOW_START_MIN_LOST`] losses): doubling into heavy loss only adds to it.
pub const SLOW_START_LOSS_EXIT: f64 = 0.2;

/// See [`SLOW_START_LOSS_EXIT`].
pub const SLOW_START_MIN_SAMPLES: u32 = 50;

/// See [`SLOW_START_LOSS_EXIT`].
pub const SLOW_START_MIN_LOST: u32 = 8;

/// Slow start ends when the delivery rate grew by less than this factor
/// for [`FULL_BW_ROUNDS`] rounds in a row (BBR's full-pipe test).
pub const FULL_BW_GROWTH: f64 = 1.25;

/// See [`FULL_BW_GROWTH`].
pub const FULL_BW_ROUNDS: u32 = 3;

/// The bandwidth estimate is the largest delivery rate of this many recent
/// rounds (a windowed max, as BBR's ten: rate samples are only ever too
/// low, and the window spans one whole [`PROBE_GAINS`] cycle).
pub const BW_ROUNDS: usize = 10;

/// Once the pipe is full, `cwnd` follows `CWND_GAIN · bw · min_rtt` (BBR's
/// cwnd gain): room for one bandwidth-delay product in flight and as much
/// again for holes under repair and acks that come late.
pub const CWND_GAIN: f64 = 2.0;

/// Pacing gain during start-up (BBR's 2/ln 2): fast enough to double the
/// delivery rate every round trip.
pub const STARTUP_PACING_GAIN: f64 = 2.885;

/// Pacing gains of the bandwidth-probing cycle, one round trip each (as
/// BBR's PROBE_BW): probe a quarter above the estimate, drain what that
/// queued, then cruise at the estimate.
pub const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];

/// Largest loss fraction the pacing rate makes up for: the server is asked
/// for `bw / (1 − loss)` so that what it sends, resends included, fills
/// the path (the delivery rate counts only what arrived).
pub const MAX_LOSS_COMPENSATION: f64 = 0.5;

/// The pacing rate never falls below this many datagrams per smallest
/// round trip.
pub const MIN_PACING_PER_RTT: f64 = 4.0;

/// Weight of one round in the smoothed loss fraction.
const LOSS_EWMA: f64 = 0.125;

/// Rounds needed before the standing-queue test is trusted.
/// The recent round-trip time is the smallest of the latest
/// [`RECENT_ROUNDS`] round durations, so that one delayed echo is no queue.
pub const MIN_BW_ROUNDS: u64 = 3;

/// See [`MIN_BW_ROUNDS`].
pub const RECENT_ROUNDS: usize = 2;

/// Fewest arrivals a round needs to give a delivery-rate sample.
pub const MIN_ROUND_ARRIVALS: u32 = 4;

/// Consecutive probe timeouts that mean persistent congestion.
pub const PERSISTENT_CONGESTION_PTOS: u32 = 3;

/// Growth of the bandwidth estimate over one probe cycle that says the
/// pipe is not full: a flow at its share cannot gain this much by probing
/// at 1.25 for one round (its part of a queue's output grows by less), and
/// one far below the link gains nearly 1.25 each cycle.
pub const REFILL_GROWTH: f64 = 1.2;

/// Start-up resumes only on paths whose smallest RTT is at least this: on
/// shorter ones a probe cycle takes a few milliseconds, so 1.25x a cycle
/// refills the pipe soon enough, and the rate samples of such short rounds
/// swing with the scheduler (as the queueing delays under
/// [`QUEUE_FLOOR`] do), which would resume start-up on noise.
pub const REFILL_MIN_RTT: Duration = Duration::from_millis(2);

/// Consecutive cycles of [`REFILL_GROWTH`] after which start-up resumes.
pub const REFILL_CYCLES: u32 = 2;

/// One round trip being timed. Rounds tile time: each starts when the
/// previous one closed, and closes at the first datagram echoing an ack sent
/// during it, so the arrivals it counts are one round trip's deliveries
/// even when they come in bursts (a burst answering an ack opens the next
/// round rather than closing this one with a single arrival).
#[derive(Debug, Clone, Copy)]
struct Round {
    /// The first ack sent in the round, and when: an echo at least this
    /// large closes the round, and the time from that ack to the echo is
    /// the round's RTT.
    ack: Option<(u64, Instant)>,
    start: Instant,
    /// New indices received in the round.
    recv: u32,
    /// Indices skipped over by arrivals in the round (lost or reordered).
    lost: u32,
}

/// What the loss-episode handler decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossVerdict {
    /// Part of an episode already judged: nothing done.
    SameEpisode,
    /// Judged random loss: `cwnd` unchanged.
    Random,
    /// Judged congestion: `cwnd` reduced.
    Congestive,
}

/// The client's congestion controller. See the module docs.
#[derive(Debug, Clone)]
pub struct RateControl {
    cwnd: u32,
    /// Arrivals counted toward the next +1 in congestion avoidance.
    credit: u32,
    min_cwnd: u32,
    max_cwnd: u32,
    slow_start: bool,
    /// Received and skipped-over indices since slow start began.
    ss_recv: u32,
    ss_lost: u32,
    /// While `Some(p)`, loss episodes detected with `highest <= p` belong to
    /// the episode already judged.
    recovery_until: Option<u32>,
    /// The current episode was judged congestive: no growth until it ends.
    recovery_congestive: bool,
    round: Option<Round>,
    /// `(recv, lost)` of the last closed round.
    last_round: (u32, u32),
    /// Delivery rates (datagrams per second) of the latest rounds.
    bw_samples: [f64; BW_ROUNDS],
    /// RTTs of the latest rounds (their ack to its first echo).
    round_rtts: [Duration; RECENT_ROUNDS],
    /// The same over the bandwidth window's rounds, for the BDP.
    round_rtt_window: [Duration; BW_ROUNDS],
    rounds: u64,
    full_bw: f64,
    full_bw_count: u32,
    /// The bandwidth estimate when the current probe cycle began.
    cycle_bw: f64,
    /// Consecutive probe cycles that ended with the estimate at least
    /// [`REFILL_GROWTH`] times its value at their start.
    cycle_growths: u32,
    /// Position in [`PROBE_GAINS`] once start-up is over; `None` while
    /// draining the start-up queue (one round at `1 / STARTUP_PACING_GAIN`).
    probe_phase: Option<usize>,
    /// Smoothed fraction of new indices lost per round.
    loss: f64,
    /// The smallest RTT, as last passed in (for the pacing rate).
    min_rtt: Option<Duration>,
    /// `target_cwnd` as of its inputs' last change (it is asked on every
    /// arrival and changes at most once a round).
    target: Option<u32>,
    /// The inputs changed since `target` was computed.
    target_stale: bool,
    /// Times start-up resumed (see `end_probe_cycle`).
    restarts: u64,
    /// Judge loss episodes (off: every episode is congestion, halving).
    differentiate: bool,
    /// React to congestion at all (off only for negative controls).
    respond: bool,
    min_seen: u32,
    max_seen: u32,
    reductions: u64,
    random_episodes: u64,
}

impl RateControl {
    /// A controller starting at `initial` (clamped to `[1, max]`), never
    /// above `max`, and never cut below [`MIN_CWND`] (or `max`, if smaller)
    /// by a congestion response.
    pub fn new(initial: u32, max: u32) -> Self {
        let max = max.max(1);
        let cwnd = initial.clamp(1, max);
        Self {
            cwnd,
            credit: 0,
            min_cwnd: MIN_CWND.min(max),
            max_cwnd: max,
            slow_start: true,
            ss_recv: 0,
            ss_lost: 0,
            recovery_until: None,
            recovery_congestive: false,
            round: None,
            last_round: (0, 0),
            bw_samples: [0.0; BW_ROUNDS],
            round_rtts: [Duration::ZERO; RECENT_ROUNDS],
            round_rtt_window: [Duration::ZERO; BW_ROUNDS],
            rounds: 0,
            full_bw: 0.0,
            full_bw_count: 0,
            cycle_bw: 0.0,
            cycle_growths: 0,
            probe_phase: None,
            loss: 0.0,
            min_rtt: None,
            target: None,
            target_stale: true,
            differentiate: true,
            respond: true,
            min_seen: cwnd,
            max_seen: cwnd,
            reductions: 0,
            random_episodes: 0,
            restarts: 0,
        }
    }

    /// For cumulative acks only (no selective-ack bitmap): every loss
    /// episode halves the window, down to 1, as before this controller.
    /// Without a bitmap the server cannot see past the first hole, so every
    /// loss is repaired by a probe that resends the whole window: keeping
    /// the window large through random loss would multiply what is resent.
    pub fn without_loss_differentiation(mut self) -> Self {
        self.differentiate = false;
        self.min_cwnd = 1;
        self.target_stale = true;
        self
    }

    /// Never shrinks: every loss episode is judged random and probe
    /// timeouts leave the window alone. Only for experiments and negative
    /// controls (a flow that ignores congestion overflows a bottleneck).
    pub fn without_loss_response(mut self) -> Self {
        self.respond = false;
        self
    }

    /// The congestion window: indices that may be outstanding.
    pub fn get(&self) -> u32 {
        self.cwnd
    }

    /// The cap (`--max-window`).
    pub fn max(&self) -> u32 {
        self.max_cwnd
    }

    /// Smallest `cwnd` so far.
    pub fn min_seen(&self) -> u32 {
        self.min_seen
    }

    /// Largest `cwnd` so far.
    pub fn max_seen(&self) -> u32 {
        self.max_seen
    }

    /// Takes in the extremes an earlier controller saw (the client's
    /// previous path, before a failover), so that
    /// [`min_seen`](Self::min_seen) and [`max_seen`](Self::max_seen)
    /// describe the whole transfer.
    pub fn keep_extremes_of(&mut self, earlier: &RateControl) {
        self.min_seen = self.min_seen.min(earlier.min_seen);
        self.max_seen = self.max_seen.max(earlier.max_seen);
    }

    /// Congestion responses so far (loss episodes judged congestive, and
    /// persistent congestion).
    pub fn reductions(&self) -> u64 {
        self.reductions
    }

    /// Times start-up resumed after probing found the pipe far from full.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Loss episodes judged random (no reduction).
    pub fn random_episodes(&self) -> u64 {
        self.random_episodes
    }

    /// True until the pipe was found full or lossy.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// True while a loss episode is open.
    pub fn in_recovery(&self) -> bool {
        self.recovery_until.is_some()
    }

    /// The window to advertise, measured from the next needed index.
    ///
    /// `base` is `highest + 1 − next` (0 when nothing past `next` is held),
    /// `held` how many indices in `[next, highest]` were received, `span`
    /// the reorder buffer, and `nth_missing(k)` the offset from `next` of
    /// the `k`-th missing index (1-based) in the buffer. `cwnd` bounds what
    /// is not yet received inside the window: with `holes = base − held`,
    /// the window is `base + cwnd − holes` when `holes < cwnd` (it slides
    /// with `highest`), else it ends just after the `cwnd`-th hole. Clamped
    /// to `[1, span]`.
    pub fn advertised_window(
        &self,
        base: u32,
        held: u32,
        span: u32,
        nth_missing: impl FnOnce(u32) -> u32,
    ) -> u32 {
        let holes = base.saturating_sub(held);
        let w = if holes < self.cwnd {
            base.saturating_add(self.cwnd - holes)
        } else {
            nth_missing(self.cwnd).saturating_add(1)
        };
        w.clamp(1, span.max(1))
    }

    /// An index arrived for the first time; `skipped` is how many indices
    /// it jumped over past the previous highest (0 when in sequence or when
    /// it filled a hole).
    pub fn on_arrival(&mut self, skipped: u32) {
        if let Some(r) = self.round.as_mut() {
            r.recv = r.recv.saturating_add(1);
            r.lost = r.lost.saturating_add(skipped);
        }
        if self.slow_start {
            self.ss_recv = self.ss_recv.saturating_add(1);
            self.ss_lost = self.ss_lost.saturating_add(skipped);
            let total = self.ss_recv.saturating_add(self.ss_lost);
            if total >= SLOW_START_MIN_SAMPLES
                && self.ss_lost >= SLOW_START_MIN_LOST
                && f64::from(self.ss_lost) > SLOW_START_LOSS_EXIT * f64::from(total)
            {
                // Doubling into this much loss only adds to it; the
                // congestion-avoidance rules (and the episode tests) judge
                // whether it is congestion.
                self.slow_start = false;
                return;
            }
        }
        if self.recovery_congestive {
            return;
        }
        if self.slow_start {
            self.set(self.cwnd.saturating_add(1));
        } else if let Some(target) = self.target_cwnd().filter(|_| self.differentiate) {
            // As BBR: grow by what arrives up to the model's target (a
            // window cut by a congestion episode is back within a round
            // trip once the episode ends), never above it.
            if self.cwnd < target {
                self.set(self.cwnd.saturating_add(1));
            }
        } else {
            // No model yet (no round closed), or halving on every loss
            // (cumulative acks): additive increase.
            self.credit += 1;
            if self.credit >= self.cwnd {
                self.credit = 0;
                self.set(self.cwnd.saturating_add(1));
            }
        }
    }

    /// An ack with timestamp `ts` went out: the first round starts, or the
    /// open round gets the ack whose echo will close it.
    pub fn on_ack_sent(&mut self, now: Instant, ts: u64) {
        let r = self.round.get_or_insert(Round {
            ack: None,
            start: now,
            recv: 0,
            lost: 0,
        });
        if r.ack.is_none() {
            r.ack = Some((ts, now));
        }
    }

    /// A data datagram echoed `echo` (0: no echo); call before
    /// [`on_arrival`](Self::on_arrival) for the same datagram. If it answers
    /// the open round's ack, the round closes with a delivery-rate sample
    /// and the next starts; `min_rtt` sets `cwnd` if the sample ends slow
    /// start.
    pub fn on_echo(&mut self, now: Instant, echo: u64, min_rtt: Option<Duration>) {
        let Some(r) = self.round else {
            return;
        };
        let Some((_, acked_at)) = r.ack.filter(|&(ts, _)| echo != 0 && echo >= ts) else {
            return;
        };
        self.round = Some(Round {
            ack: None,
            start: now,
            recv: 0,
            lost: 0,
        });
        self.last_round = (r.recv, r.lost);
        self.target_stale = true;
        if min_rtt.is_some() {
            self.min_rtt = min_rtt;
        }
        let elapsed = now.saturating_duration_since(r.start).as_secs_f64();
        if r.recv < MIN_ROUND_ARRIVALS || elapsed <= 0.0 {
            return;
        }
        let sample = f64::from(r.lost) / f64::from(r.recv + r.lost);
        self.loss += LOSS_EWMA * (sample - self.loss);
        if !self.slow_start {
            // One round trip per pacing phase; after the drain round the
            // cycle starts at its first cruising phase.
            self.probe_phase = Some(match self.probe_phase {
                None => 2,
                Some(i) => (i + 1) % PROBE_GAINS.len(),
            });
            if self.probe_phase == Some(0) {
                self.end_probe_cycle();
            }
            if let Some(target) = self.target_cwnd() {
                if self.cwnd > target {
                    self.set(target);
                }
            }
        }
        let rate = f64::from(r.recv) / elapsed;
        self.bw_samples[(self.rounds % BW_ROUNDS as u64) as usize] = rate;
        self.round_rtts[(self.rounds % RECENT_ROUNDS as u64) as usize] =
            now.saturating_duration_since(acked_at);
        self.round_rtt_window[(self.rounds % BW_ROUNDS as u64) as usize] =
            now.saturating_duration_since(acked_at);
        self.rounds += 1;
        self.target_stale = true;
        let round_rtt = now.saturating_duration_since(acked_at);
        if self.slow_start && self.queue_building(round_rtt, min_rtt) {
            // A queue is building (the round trip grew past the
            // standing-queue threshold, as HyStart's delay test): the pipe
            // is full before the rate plateau shows it, and another round
            // of doubling would overflow the bottleneck's buffer. Random
            // loss does not delay anything, so it never ends start-up here.
            self.exit_slow_start(min_rtt);
        } else if self.slow_start {
            let bw = self.bw();
            if bw >= self.full_bw * FULL_BW_GROWTH {
                self.full_bw = bw;
                self.full_bw_count = 0;
            } else {
                self.full_bw_count += 1;
                if self.full_bw_count >= FULL_BW_ROUNDS {
                    self.exit_slow_start(min_rtt);
                }
            }
        }
    }

    /// A probe cycle ended (the next round probes at the first gain). If
    /// the estimate grew by [`REFILL_GROWTH`] over each of the last
    /// [`REFILL_CYCLES`] cycles, start-up ended before the pipe was full
    /// (one round trip delayed by a busy host, a timeout at the start, a
    /// flow that left the bottleneck): growing 1.25x a cycle from there
    /// would take many seconds on a long path, so start-up resumes, and ends
    /// again as it always does, on a plateau or a building queue.
    fn end_probe_cycle(&mut self) {
        let bw = self.bw();
        if self.cycle_bw > 0.0 && bw >= REFILL_GROWTH * self.cycle_bw {
            self.cycle_growths += 1;
        } else {
            self.cycle_growths = 0;
        }
        self.cycle_bw = bw;
        let long_path = self.min_rtt.is_some_and(|r| r >= REFILL_MIN_RTT);
        if self.cycle_growths >= REFILL_CYCLES && long_path && self.respond && self.differentiate {
            self.cycle_growths = 0;
            self.cycle_bw = 0.0;
            self.slow_start = true;
            self.full_bw = bw;
            self.full_bw_count = 0;
            self.ss_recv = 0;
            self.ss_lost = 0;
            self.restarts += 1;
            tracing::debug!(
                bw = bw as u64,
                cwnd = self.cwnd,
                "start-up resumed: probing found the pipe far from full"
            );
        }
    }

    /// The pipe is full: leave slow start at the model's window, and drain
    /// for a round what start-up queued.
    fn exit_slow_start(&mut self, min_rtt: Option<Duration>) {
        self.slow_start = false;
        self.credit = 0;
        self.probe_phase = None;
        if let Some(bdp) = self.bdp(min_rtt) {
            let target = ((CWND_GAIN * bdp).ceil() as u32).max(self.min_cwnd);
            self.set(self.cwnd.min(target));
        }
    }

    fn set(&mut self, cwnd: u32) {
        self.cwnd = cwnd.clamp(1, self.max_cwnd);
        self.min_seen = self.min_seen.min(self.cwnd);
        self.max_seen = self.max_seen.max(self.cwnd);
    }
}

mod episode;
mod model;

#[cfg(test)]
mod tests;

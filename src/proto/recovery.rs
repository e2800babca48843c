//! Loss recovery policy that both ends share: when a missing index counts
//! as lost rather than overtaken, and how long the client waits before it
//! probes.
//!
//! The server decides what to resend (it holds the send order); the client
//! decides how much may be in flight (it advertises the window). Both use
//! the same two tests, as RACK (RFC 8985) and QUIC (RFC 9002 §6.1) do:
//! - a packet threshold: enough later datagrams arrived
//!   ([`REORDER_THRESHOLD`], lowered for small windows by
//!   [`loss_threshold`]);
//! - a time threshold: the hole is older than a reordering window
//!   ([`server_reorder_window`], [`client_reorder_window`]), since a
//!   datagram that was merely overtaken arrives within that time.

use std::time::{Duration, Instant};

use super::rtt::RttEstimator;

/// Largest window a client may advertise, and the largest flight a server
/// keeps state for: 2^20 indices (a 200 ms path at 5M datagrams/s). Ack
/// ranges describe any span; this only bounds memory (the client's
/// reorder buffer grows to twice the window as it needs, ~24 bytes an
/// index; the server-wide window budget bounds the server).
pub const MAX_WINDOW: u32 = 1 << 20;

/// Most bytes of selective-ack ranges a client puts in one ack: the newest
/// ranges and about 200 holes filled lately (see [`crate::proto::sack`]).
pub const ACK_RANGE_BUDGET: usize = 768;

/// A driver that sends only the last acks of a received batch also sends
/// every earlier ack after which this many changes to the held ranges came
/// (see [`crate::proto::client::Client::last_ack_news`]). An ack's newest ranges
/// (a quarter of [`ACK_RANGE_BUDGET`], about 96 ranges at a few bytes
/// each) then reach back over four such strides, so each change is in
/// several acks that go out: one lost ack does not hide it.
pub const ACK_NEWS_STRIDE: u32 = 24;

/// How many later indices must arrive before a missing one counts as lost
/// (reordering tolerance, as QUIC's packet threshold).
pub const REORDER_THRESHOLD: u32 = 3;

/// How many later indices mark a hole as lost when `outstanding` indices
/// can be in flight: [`REORDER_THRESHOLD`], lowered for small windows so that
/// fast retransmission still works there (early retransmit, RFC 5827).
pub fn loss_threshold(outstanding: u32) -> u32 {
    REORDER_THRESHOLD.min(outstanding.saturating_sub(1)).max(1)
}

/// The server's reordering window: one smallest RTT plus a quarter. A
/// transmission younger than that may still arrive; `None` before the first
/// RTT sample (then the packet threshold alone decides).
pub fn server_reorder_window(rtt: &RttEstimator) -> Option<Duration> {
    rtt.min().map(|m| m + m / 4)
}

/// The client's reordering window: a hole younger than a quarter of the
/// smoothed RTT may only have been overtaken, so it does not yet count as
/// a loss for the window.
pub fn client_reorder_window(rtt: &RttEstimator) -> Duration {
    rtt.srtt().map_or(Duration::ZERO, |s| s / 4)
}

/// When the client's probe timer fires, armed at `now` (see
/// [`RttEstimator::pto`]).
pub fn probe_deadline(rtt: &RttEstimator, now: Instant) -> Instant {
    now + rtt.pto()
}

/// Probe timeouts in a row, with nothing at all heard from the server in
/// between, after which a client that knows more than one server takes the
/// current one for gone and moves to the next ([`crate::proto::client`]).
///
/// Derived from the probe timer ([`RttEstimator::pto`]): the first expiry
/// is usually one lost ack and is answered by the probe itself; from the
/// second on, every probe goes out as two copies and the timer doubles. So
/// eight expiries are seven rounds of two-copy probes, none answered, over
/// 128 probe timeouts of silence (capped by `max_rto` per round): at 20%
/// loss each way a round goes unanswered with probability about 0.13, seven
/// in a row about 6·10⁻⁷, so a live but lossy server is almost never left.
/// On a LAN (PTO of 1–2 ms) that is 128–256 ms of silence; before any RTT
/// sample (a server that never answered) 5 ms doubled eight times, 1.3 s;
/// either way well inside the 30 s idle timeout, which still bounds the
/// whole search (RFC 1122 §4.2.3.5 gives TCP a similar, smaller threshold
/// R1 for trying another route).
pub const SILENT_PROBES_BEFORE_FAILOVER: u32 = 8;

/// Smallest reorder buffer (the span past the next needed index the client
/// holds, and the most it advertises). It is larger than the congestion
/// window so that the window can slide on past holes under repair; the
/// buffer is `max(REORDER_SPAN, max_window)`, at most [`MAX_WINDOW`].
pub const REORDER_SPAN: u32 = 1024;

/// Fewest new datagrams between two acks: the client acks every quarter of
/// its congestion window, within [`ACK_EVERY_MIN`] and [`ACK_EVERY_MAX`].
pub const ACK_EVERY_MIN: u32 = 4;
/// Most new datagrams between two acks (see [`ACK_EVERY_MIN`]).
pub const ACK_EVERY_MAX: u32 = 64;

/// What the server's loss detection makes of one sent, unacknowledged
/// index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lost: resend it.
    Lost,
    /// Past the packet threshold but inside the reordering window: look
    /// again at this time.
    RecheckAt(Instant),
    /// Not enough later datagrams were acknowledged yet.
    InFlight,
}

/// The server's loss test for one round of acknowledgements.
#[derive(Debug, Clone, Copy)]
pub struct LossTest {
    /// Transmissions numbered at or below this count as overtaken by enough
    /// acknowledged later ones.
    pub threshold_seq: u64,
    /// The reordering window ([`server_reorder_window`]).
    pub grace: Option<Duration>,
}

impl LossTest {
    /// The test after the transmission numbered `largest_acked_seq` was
    /// acknowledged, with `outstanding` indices in flight.
    pub fn new(largest_acked_seq: u64, outstanding: u32, rtt: &RttEstimator) -> Self {
        Self {
            threshold_seq: largest_acked_seq.saturating_sub(u64::from(loss_threshold(outstanding))),
            grace: server_reorder_window(rtt),
        }
    }

    /// The verdict for a transmission numbered `send_seq`, last sent at
    /// `last_sent`.
    pub fn verdict(&self, send_seq: u64, last_sent: Option<Instant>, now: Instant) -> Verdict {
        if send_seq > self.threshold_seq {
            return Verdict::InFlight;
        }
        let due = match (self.grace, last_sent) {
            (Some(g), Some(t)) => t + g,
            _ => now,
        };
        if due <= now {
            Verdict::Lost
        } else {
            Verdict::RecheckAt(due)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::rtt::RttConfig;

    #[test]
    fn loss_threshold_is_lowered_for_small_windows_never_below_one() {
        assert_eq!(loss_threshold(0), 1);
        assert_eq!(loss_threshold(1), 1);
        assert_eq!(loss_threshold(2), 1);
        assert_eq!(loss_threshold(3), 2);
        assert_eq!(loss_threshold(4), REORDER_THRESHOLD);
        assert_eq!(loss_threshold(1000), REORDER_THRESHOLD);
    }

    #[test]
    fn verdict_needs_both_the_packet_and_the_time_threshold() {
        let t0 = crate::clock::now();
        let mut rtt = RttEstimator::new(RttConfig::default());
        rtt.on_sample(Duration::from_millis(4));
        let test = LossTest::new(10, 100, &rtt);
        assert_eq!(test.threshold_seq, 10 - u64::from(REORDER_THRESHOLD));
        // Too few later datagrams acknowledged.
        assert_eq!(test.verdict(8, Some(t0), t0), Verdict::InFlight);
        // Enough, but younger than min RTT × 1.25 = 5 ms.
        let at = t0 + Duration::from_millis(5);
        assert_eq!(
            test.verdict(7, Some(t0), t0 + Duration::from_millis(1)),
            Verdict::RecheckAt(at)
        );
        assert_eq!(test.verdict(7, Some(t0), at), Verdict::Lost);
        // Without an RTT sample, the packet threshold alone decides.
        let bare = LossTest::new(10, 100, &RttEstimator::new(RttConfig::default()));
        assert_eq!(bare.verdict(7, Some(t0), t0), Verdict::Lost);
    }

    #[test]
    fn client_reorder_window_is_a_quarter_srtt() {
        let mut rtt = RttEstimator::new(RttConfig::default());
        assert_eq!(client_reorder_window(&rtt), Duration::ZERO);
        rtt.on_sample(Duration::from_millis(8));
        assert_eq!(client_reorder_window(&rtt), Duration::from_millis(2));
    }
}

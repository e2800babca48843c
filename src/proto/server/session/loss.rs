//! Loss detection for one session: which holes count as lost (see
//! [`LossTest`]), the loss timer for holes still inside the reordering
//! window, a probe's resend of the whole window, and the bookkeeping when a
//! sent index is first acknowledged.

use std::time::Instant;

use super::{Session, Slot, MAX_QUEUED_COPIES};
use crate::proto::recovery::{LossTest, Verdict, REORDER_THRESHOLD};
use crate::proto::server::outbox::Outbox;
use crate::proto::trace::{LossTrigger, TraceEvent};
use uuid::Uuid;

/// Counts (and traces) a transmission of `index` declared lost.
fn declare_lost(out: &mut Outbox, now: Instant, uuid: Uuid, index: u32, trigger: LossTrigger) {
    out.stats.losses += 1;
    out.trace
        .record(now, uuid, || TraceEvent::Lost { index, trigger });
}

impl Session {
    /// A probe may resend the window at most once per smallest RTT: the
    /// client's own probes come a probe timeout (more than an RTT) apart,
    /// so only a flood of probes is held back, read as plain acks.
    pub(super) fn probe_round_allowed(&mut self, now: Instant, out: &mut Outbox) -> bool {
        if let (Some(last), Some(min)) = (self.last_probe_round, self.rtt.min()) {
            if now < last + min {
                out.stats.probes_limited += 1;
                return false;
            }
        }
        self.last_probe_round = Some(now);
        true
    }

    /// The loss timer fired: queue the holes whose reordering window has
    /// passed; returns when to look again.
    pub(crate) fn on_loss_timer(&mut self, now: Instant, out: &mut Outbox) -> Option<Instant> {
        let queued = self.send_queue.len();
        self.loss_check = self.detect_losses_by(now, LossTrigger::Time, out);
        self.echo_held |= self.send_queue.len() > queued;
        self.loss_check
    }

    /// Queues the holes that count as lost (see [`LossTest`]); returns when
    /// to look again at the oldest transmission that passed the packet
    /// threshold but is still inside the reordering window. A probe makes
    /// every hole lost.
    ///
    /// Walks the transmissions in send order from the oldest: each is
    /// either acknowledged or superseded (dropped), lost (queued again and
    /// dropped), or the first that is not yet lost, and everything after it
    /// was sent later, so the walk stops there. An ack costs what it
    /// declares, not the window.
    pub(super) fn detect_losses(
        &mut self,
        now: Instant,
        probe: bool,
        out: &mut Outbox,
    ) -> Option<Instant> {
        if probe {
            self.resend_every_hole(now, out);
        }
        self.detect_losses_by(now, LossTrigger::Reordering, out)
    }

    /// The walk of [`detect_losses`](Self::detect_losses), its losses
    /// traced as caused by `trigger`.
    fn detect_losses_by(
        &mut self,
        now: Instant,
        trigger: LossTrigger,
        out: &mut Outbox,
    ) -> Option<Instant> {
        let outstanding = self.flight.len().min(REORDER_THRESHOLD as usize + 1) as u32;
        let test = LossTest::new(self.largest_acked_seq, outstanding, &self.rtt);
        while let Some(&(seq, index)) = self.flight.front() {
            let Some(off) = index.checked_sub(self.ack).map(|o| o as usize) else {
                self.flight.pop_front();
                continue;
            };
            let Some(slot) = self.slots.get_mut(off) else {
                self.flight.pop_front();
                continue;
            };
            if slot.sacked || slot.send_seq != seq {
                self.flight.pop_front();
                continue;
            }
            if slot.queued > 0 {
                // Already queued: judged again when it is sent again.
                self.flight.pop_front();
                continue;
            }
            // A lost transmission is resent even when the window has since
            // shrunk below it: it was in the window when first sent, and
            // the client's reorder buffer spans more than its window.
            if index > self.highest_held {
                // Nothing past it is known to have arrived: it is no hole
                // yet (without selective acks, only the first hole is).
                break;
            }
            match test.verdict(seq, slot.last_sent, now) {
                Verdict::Lost => {
                    slot.queued += 1;
                    self.send_queue.push_back(index);
                    self.flight.pop_front();
                    declare_lost(out, now, self.uuid, index, trigger);
                }
                Verdict::RecheckAt(due) => return Some(due),
                Verdict::InFlight => return None,
            }
        }
        self.judge_first_hole(&test, now, trigger, out)
    }

    /// The first hole (at the cumulative ack) is judged whatever the order
    /// of the send queue: with cumulative acks only it is the one hole the
    /// client can reveal.
    fn judge_first_hole(
        &mut self,
        test: &LossTest,
        now: Instant,
        trigger: LossTrigger,
        out: &mut Outbox,
    ) -> Option<Instant> {
        let slot = self.slots.front_mut()?;
        if slot.sacked || slot.sends == 0 || slot.queued > 0 {
            return None;
        }
        match test.verdict(slot.send_seq, slot.last_sent, now) {
            Verdict::Lost => {
                slot.queued += 1;
                self.send_queue.push_back(self.ack);
                declare_lost(out, now, self.uuid, self.ack, trigger);
                None
            }
            Verdict::RecheckAt(due) => Some(due),
            Verdict::InFlight => None,
        }
    }

    /// A probe: every hole in the window is queued again (once more, up to
    /// [`MAX_QUEUED_COPIES`]).
    fn resend_every_hole(&mut self, now: Instant, out: &mut Outbox) {
        let in_window = self.ack.saturating_add(self.window);
        // Slots first: the index range is then never stepped past the last
        // slot (no overflow at lengths near `u32::MAX`).
        for (slot, this) in self.slots.iter_mut().zip(self.ack..) {
            if this >= in_window {
                break;
            }
            if slot.sacked || slot.sends == 0 {
                continue;
            }
            if slot.queued < MAX_QUEUED_COPIES {
                slot.queued += 1;
                self.send_queue.push_back(this);
                declare_lost(out, now, self.uuid, this, LossTrigger::Probe);
            }
        }
    }

    /// Bookkeeping when a sent index is first acknowledged.
    ///
    /// The largest acknowledged send number (the packet-threshold
    /// reference) advances only if the ack can be for the latest
    /// transmission: a resent index acknowledged sooner than the smallest
    /// RTT after its last send was acknowledged for an earlier copy (RFC 8985
    /// §6.2 step 2), and taking the resend's number would declare
    /// everything sent before it lost.
    pub(super) fn on_acked(&mut self, slot: &Slot, now: Instant, latency: bool, out: &mut Outbox) {
        let early = slot.sends > 1
            && matches!((self.rtt.min(), slot.last_sent), (Some(min), Some(t))
                if now.saturating_duration_since(t) < min);
        if !early {
            self.largest_acked_seq = self.largest_acked_seq.max(slot.send_seq);
        }
        if let Some(first) = slot.first_sent {
            let lat = now.saturating_duration_since(first);
            if slot.sends == 1 {
                // Karn: only unambiguous samples feed the server's RTT.
                self.rtt.on_sample(lat);
            }
            if latency {
                out.ack_latency(self.uuid, lat, slot.sends > 1);
            }
        }
    }
}

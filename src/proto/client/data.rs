//! Receiving data: the reorder buffer, in-order delivery, loss episodes
//! for the rate controller, and the window and selective acks the client
//! advertises.

use std::time::Instant;

use super::{Client, ClientEvent};
use crate::proto::reassembly::Insert;
use crate::proto::recovery::{
    client_reorder_window, loss_threshold, ACK_NEWS_STRIDE, ACK_RANGE_BUDGET,
};
use crate::proto::timer::Timer;
use crate::proto::wire::State;

impl Client {
    /// The datagrams handed to [`Client::handle`] until
    /// [`Client::end_batch`] were received together (one `recvmmsg`): a
    /// new gap then makes an ack at once only after
    /// [`ACK_NEWS_STRIDE`]
    /// changes to the held ranges, and otherwise at the end of the batch.
    /// A driver that sends only some of a batch's acks would drop the
    /// others anyway, and writing each costs a walk of the held ranges.
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Ends what [`Client::begin_batch`] began: an ack held back for a new
    /// gap is due now.
    pub fn end_batch(&mut self) {
        self.batching = false;
        if std::mem::take(&mut self.gap_ack_deferred) {
            self.ack_now = true;
        }
    }

    pub(super) fn on_data(&mut self, now: Instant, index: u32, value: u32, echo: u64) {
        if index >= self.config.len {
            self.stats.invalid += 1;
            return;
        }
        if !matches!(self.state, State::Connecting | State::Connected) {
            self.stats.duplicates += 1;
            return;
        }
        let before = self.reorder.highest();
        let in_order = match self.reorder.insert(index, value) {
            Insert::Stored { in_order } => in_order,
            Insert::Duplicate => {
                self.stats.duplicates += 1;
                return;
            }
            Insert::OutOfWindow => {
                self.stats.out_of_window += 1;
                return;
            }
        };
        let highest = self.reorder.highest().unwrap_or(index);
        // A new hole, or a hole filled that is not the next needed index
        // (that one the cumulative ack reports): news for the next ack.
        if before.is_some_and(|h| index > h.saturating_add(1) || (index < h && !in_order)) {
            self.ack_news = self.ack_news.saturating_add(1);
        }
        if in_order && self.reorder.gap_reported() {
            // A hole reported lost is filled. If that took longer than the
            // reordering window it was lost and resent: a loss episode,
            // judged now, since it was too young to judge when detected.
            if self.reorder.gap_age(now) >= client_reorder_window(&self.rtt) {
                self.loss_episode(highest);
            }
        }
        // Indices this arrival jumped over: a new gap (lost or overtaken).
        let skipped = match before {
            Some(h) if index > h => index - h - 1,
            Some(_) => 0,
            None => index - self.reorder.next(),
        };
        self.rc.on_echo(now, echo, self.rtt.min());
        self.rc.on_highest(highest);
        self.rc.on_arrival(skipped);
        self.unacked += 1;
        // Something arrived: restart the probe timer from now.
        self.arm_retransmit(now);
        // Until the server's Accept confirms the session, hold values back:
        // if the handshake has to start over, nothing was delivered yet.
        if self.token.is_some() {
            self.deliver(now);
        }
        if !in_order {
            self.on_gap(now, highest, skipped);
        }
        if self.state == State::Connected {
            // Everything our last ack made eligible has arrived: the server
            // cannot send more until it hears from us.
            let window_used = highest.saturating_add(1) >= self.reorder.eligible_end();
            if self.unacked >= self.ack_every() || window_used {
                self.ack_now = true;
            } else if !self.timers.is_set(Timer::Ack) {
                let delay = self.config.max_ack_delay.min(self.rtt.pto() / 4);
                self.timers.set(Timer::Ack, now + delay);
            }
        }
        self.maybe_closing(now);
    }

    /// An index arrived past a hole (`skipped`: how many indices it
    /// jumped over past the previous highest, 0 inside a known gap): when
    /// to ack it, and whether the first hole now counts as lost.
    fn on_gap(&mut self, now: Instant, highest: u32, skipped: u32) {
        if skipped > 0 {
            // A new gap: report it at once (fills and arrivals inside
            // known gaps wait for the next regular ack); inside a
            // received batch, once enough news gathered or at its end
            // (see `Client::begin_batch`).
            if self.batching && self.ack_news < ACK_NEWS_STRIDE {
                self.gap_ack_deferred = true;
            } else {
                self.ack_now = true;
            }
        }
        // Count the first hole as a loss once enough later indices
        // arrived (reorder tolerance).
        let since = self.reorder.note_gap(now);
        let next = self.reorder.next();
        if highest >= next.saturating_add(loss_threshold(self.rc.get())) {
            self.reorder.report_gap();
            // Reordering tolerance in time (as RACK): a hole younger
            // than a quarter RTT may only have been overtaken.
            if now.saturating_duration_since(since) >= client_reorder_window(&self.rtt) {
                self.loss_episode(highest);
            }
        }
    }

    /// The loss detection fired (the first hole is lost): the rate
    /// controller judges whether it is congestion. Losses up to the end of
    /// what the latest ack made eligible belong to the same episode.
    pub(super) fn loss_episode(&mut self, highest: u32) {
        let recovery_point = self.reorder.eligible_end().saturating_sub(1);
        self.rc
            .on_loss_episode(highest, recovery_point, self.rtt.min());
    }

    /// The window to advertise now (see
    /// [`RateControl::advertised_window`]).
    pub(super) fn advertised_window(&mut self) -> u32 {
        let next = self.reorder.next();
        let base = match self.reorder.highest() {
            // Without a bitmap the server cannot tell what arrived past the
            // first hole: the window stays anchored at `next`.
            Some(h) if h >= next && self.config.sack => h - next + 1,
            _ => 0,
        };
        let held = if base == 0 { 0 } else { self.reorder.held() };
        // Receive auto-tuning: the buffer doubles while the window the
        // rate controller wants does not fit, up to its cap.
        let wanted = base.saturating_add(self.rc.get());
        let span = super::reorder_span(&self.config);
        while self.reorder.capacity() < wanted.min(span) {
            let cap = self.reorder.capacity();
            self.reorder.grow(cap.saturating_mul(2).min(span));
        }
        // The ring rounds its size up to a power of two; the span is the cap.
        let cap = self.reorder.capacity().min(span);
        self.rc
            .advertised_window(base, held, cap, |k| self.reorder.nth_missing(k))
    }

    /// Delivers held values from the next needed index on; returns how many.
    pub(super) fn deliver(&mut self, now: Instant) -> u32 {
        let mut n = 0;
        while self.reorder.next() < self.config.len {
            let Some((index, value, latency)) = self.reorder.pop(now) else {
                break;
            };
            self.events.push_back(ClientEvent::Value {
                index,
                value,
                latency,
            });
            self.sum.add(value);
            n += 1;
        }
        self.reorder.after_delivery(now, n);
        n
    }

    /// Records when the indices the next ack (advertising `window`) makes
    /// eligible became so.
    pub(super) fn mark_eligible(&mut self, now: Instant, window: u32) {
        let end = self
            .reorder
            .next()
            .saturating_add(window)
            .min(self.config.len);
        self.reorder.mark_eligible(now, end);
    }

    pub(super) fn fill_sack(&mut self) {
        if self.config.sack {
            self.reorder
                .encode_sack(&mut self.sack_buf, ACK_RANGE_BUDGET);
        } else {
            self.sack_buf.clear();
        }
    }
}

//! Turning a client's events into a [`TransferReport`].

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::interval::{IntervalMeter, IntervalStats};
use super::report::{TransferReport, WindowStats};
use crate::proto::client::{Client, ClientEvent};
use crate::proto::sequence::Sequence;

/// Records one transfer from its client's [`ClientEvent`]s. Every driver
/// feeds it the same way: each event as it is polled, with the time it was
/// polled at; the driver adds what only it can see (datagrams on the wire,
/// reconnects, link counters) through [`report_mut`](Self::report_mut).
#[derive(Debug)]
pub struct TransferRecorder {
    report: TransferReport,
    /// When the transfer started (times in the report count from here).
    started: Instant,
    /// Record the rtt, delivery and stall histograms.
    keep_histograms: bool,
    /// `Some` when values are checked against the server's sequence; that
    /// sequence is `None` until the driver learns it (values delivered
    /// before then count as wrong).
    check: Option<Option<Sequence>>,
    /// When the previous value was delivered (for the stall histogram).
    last_delivery: Option<Instant>,
    /// Interval reports, when asked for.
    intervals: Option<IntervalMeter>,
}

impl TransferRecorder {
    /// A recorder for a transfer of `len` values under `uuid` that starts
    /// at `started`; it keeps no histograms and checks no values until told
    /// to.
    pub fn new(uuid: Uuid, len: u32, started: Instant) -> Self {
        Self {
            report: TransferReport::new(uuid, len),
            started,
            keep_histograms: false,
            check: None,
            last_delivery: None,
            intervals: None,
        }
    }

    /// Also cuts the transfer into intervals of `every` (see
    /// [`tick`](Self::tick)); they end up in
    /// [`TransferReport::intervals`].
    pub fn intervals(mut self, every: Option<Duration>) -> Self {
        self.intervals = every.map(|e| IntervalMeter::new(e, self.started));
        self
    }

    /// When the current interval ends (`None` without intervals).
    pub fn interval_deadline(&self) -> Option<Instant> {
        self.intervals.as_ref().map(IntervalMeter::deadline)
    }

    /// Closes the current interval if it ended by `now`, and returns it.
    pub fn tick(&mut self, now: Instant, client: &Client) -> Option<&IntervalStats> {
        let delivered = u64::from(self.report.delivered);
        let done = self.intervals.as_mut()?.tick(now, delivered, client)?;
        self.report.intervals.push(done);
        self.report.intervals.last()
    }

    /// Also records the rtt, delivery and stall histograms.
    pub fn keep_histograms(mut self, keep: bool) -> Self {
        self.keep_histograms = keep;
        self
    }

    /// Checks every value against the server's sequence (given later with
    /// [`set_sequence`](Self::set_sequence)): in order, exactly once, the
    /// right value.
    pub fn check_values(mut self) -> Self {
        self.check = Some(None);
        self
    }

    /// The server's sequence for this session, once the driver knows it.
    pub fn set_sequence(&mut self, sequence: Option<Sequence>) {
        if let Some(s) = &mut self.check {
            *s = sequence;
        }
    }

    /// The report so far, for the counters only the driver sees.
    pub fn report_mut(&mut self) -> &mut TransferReport {
        &mut self.report
    }

    /// The report so far.
    pub fn report(&self) -> &TransferReport {
        &self.report
    }

    /// True once the client completed or failed.
    pub fn is_finished(&self) -> bool {
        self.report.finished_at.is_some()
    }

    /// Records one event, polled at `now`.
    pub fn record(&mut self, now: Instant, event: &ClientEvent) {
        let at = now.saturating_duration_since(self.started);
        let r = &mut self.report;
        match *event {
            ClientEvent::Connected | ClientEvent::ServerLost { .. } => {}
            ClientEvent::Restarted { uuid } => {
                r.uuid = uuid;
                r.restarts += 1;
            }
            ClientEvent::Value {
                index,
                value,
                latency,
            } => {
                if let Some(seq) = &self.check {
                    let expected = seq.as_ref().and_then(|s| s.get(index));
                    if index != r.delivered || expected != Some(value) {
                        r.wrong_values += 1;
                    }
                }
                r.delivered += 1;
                if self.keep_histograms {
                    r.hist.delivery.record_at(at, latency);
                    if let Some(prev) = self.last_delivery {
                        r.hist
                            .stall
                            .record_at(at, now.saturating_duration_since(prev));
                    }
                }
                if let Some(prev) = self.last_delivery {
                    r.max_stall = r.max_stall.max(now.saturating_duration_since(prev));
                }
                self.last_delivery = Some(now);
            }
            ClientEvent::RttSample(rtt) => {
                r.rtt_count += 1;
                r.min_rtt = Some(r.min_rtt.map_or(rtt, |m| m.min(rtt)));
                if let Some(m) = &mut self.intervals {
                    m.on_rtt(rtt);
                }
                if self.keep_histograms {
                    r.hist.rtt.record_at(at, rtt);
                }
            }
            ClientEvent::Verified { checksum } => r.checksum = Some(checksum),
            ClientEvent::Completed => r.finished_at = Some(at),
            ClientEvent::Failed(ref e) => {
                r.error = Some(e.clone());
                r.finished_at = Some(at);
            }
        }
    }

    /// Ends the record at `now`, with the client core's final counters,
    /// window and resume state.
    pub fn finish(mut self, now: Instant, client: &Client) -> TransferReport {
        let delivered = u64::from(self.report.delivered);
        if let Some(last) = self
            .intervals
            .as_mut()
            .and_then(|m| m.finish(now, delivered, client))
        {
            self.report.intervals.push(last);
        }
        let w = client.window();
        let r = &mut self.report;
        r.elapsed = now.saturating_duration_since(self.started);
        r.client = client.stats();
        r.window = WindowStats {
            min: w.min_seen(),
            max: w.max_seen(),
            last: w.get(),
        };
        r.resume = client.resume_state();
        self.report
    }
}

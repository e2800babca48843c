//! What the client records for a trace, when asked to
//! ([`ClientConfig::trace`](super::ClientConfig::trace)): the datagrams are
//! recorded where they are written and read; this file holds the rate
//! controller's figures, recorded whenever they change.

use std::time::Instant;

use super::Client;
use crate::proto::trace::{Metrics, TraceEvent, Traced};

impl Client {
    /// The next trace record (only with [`ClientConfig::trace`](super::ClientConfig::trace)).
    pub fn poll_trace(&mut self) -> Option<Traced> {
        self.trace.pop()
    }

    /// Records the rate controller's figures if they changed since the
    /// last record (tracing only).
    pub(super) fn trace_metrics(&mut self, now: Instant) {
        if !self.trace.is_on() {
            return;
        }
        let m = Metrics {
            window: self.rc.get(),
            in_flight: None,
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            min_rtt: self.rtt.min(),
            pacing_rate: self.rc.pacing_rate(),
            delivery_rate: Some(self.rc.bw().min(f64::from(u32::MAX)) as u32),
            phase: Some(self.rc.phase()),
        };
        if m != self.traced {
            self.traced = m;
            self.trace
                .record(now, self.config.uuid, || TraceEvent::Metrics(m));
        }
    }
}

//! The retransmission timer: what a timeout resends in each state, when
//! silence means the server is lost, and arming the timer again.

use std::time::Instant;

use super::{Client, LostReason};
use crate::proto::recovery::{probe_deadline, SILENT_PROBES_BEFORE_FAILOVER};
use crate::proto::timer::Timer;
use crate::proto::wire::State;

impl Client {
    pub(super) fn on_retransmit_timeout(&mut self, now: Instant) {
        self.stats.timeouts += 1;
        self.silent_probes += 1;
        if self.silent_probes >= SILENT_PROBES_BEFORE_FAILOVER && self.state != State::Closed {
            // Verified and closing (Closed) needs no server any more.
            if self.lose_server(LostReason::Silent {
                timeouts: self.silent_probes,
            }) {
                return;
            }
        }
        self.rtt.on_timeout();
        // Before any RTT sample the timer is short and doubles on every
        // expiry: one copy each. Afterwards, a second copy once timeouts
        // persist, so that heavy loss does not stall the ending.
        self.copies = if self.rtt.srtt().is_some() && self.rtt.backoff() >= 2 {
            2
        } else {
            1
        };
        match self.state {
            State::Connecting | State::Closing => self.send_pending = true,
            State::Connected => {
                // A probe timeout: two copies with the same timestamp (the
                // server treats the second as a plain ack), so that one lost
                // datagram does not cost another timeout.
                self.copies = 2;
                self.probe_due = true;
                self.rc.on_probe_timeout(self.rtt.backoff());
            }
            State::Closed => {
                self.close_tries += 1;
                if self.close_tries > self.config.close_retries {
                    // Verified already; the server will expire the session.
                    self.complete();
                    return;
                }
                self.send_pending = true;
            }
        }
        self.arm_retransmit(now);
    }

    pub(super) fn arm_retransmit(&mut self, now: Instant) {
        self.timers
            .set(Timer::Retransmit, probe_deadline(&self.rtt, now));
    }
}

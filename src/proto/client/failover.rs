//! Moving: a new socket after a killswitch or rebinding (resume from the
//! new address), and failover to the next server of the list when this one
//! stays silent or forgets the session.

use std::time::Instant;

use super::{rate_control, Client, ClientEvent, LostReason};
use crate::proto::rtt::RttEstimator;
use crate::proto::sequence::RunningChecksum;
use crate::proto::timer::Timer;
use crate::proto::wire::State;

impl Client {
    /// The driver moved to a new socket (new port or address): send
    /// CONNECTING again to resume the session from there.
    pub fn reconnect(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        if matches!(self.state, State::Connected) {
            self.set_state(State::Connecting);
        }
        self.send_pending = true;
        self.timers.stop(Timer::Ack);
        self.arm_retransmit(now);
    }

    /// The server the client talks to now, as an index into the driver's
    /// list of [`ClientConfig::servers`](super::ClientConfig::servers) (0 at the start; one up, round
    /// robin, per [`Client::failover`]).
    pub fn server_index(&self) -> u32 {
        self.server
    }

    /// Why the client asked to leave its server, until the driver calls
    /// [`Client::failover`] (see [`ClientEvent::ServerLost`]).
    pub fn wants_failover(&self) -> Option<LostReason> {
        self.lost
    }

    /// The driver now talks to the next server of its list (round robin;
    /// [`Client::server_index`] says which), from a new socket: resume the
    /// session there with CONNECTING, UUID and token, from the next needed
    /// index. A different server is a different path: the RTT estimate
    /// and the window start over. The driver may also call this unasked
    /// (the OS said that nothing listens at the server's address).
    pub fn failover(&mut self, now: Instant) {
        if self.finished {
            return;
        }
        self.stats.failovers += 1;
        self.server = (self.server + 1) % self.config.servers;
        tracing::debug!(uuid = %self.config.uuid, server = self.server, reason = ?self.lost, "failover");
        self.lost = None;
        self.silent_probes = 0;
        self.rtt = RttEstimator::new(self.config.rtt);
        let earlier = std::mem::replace(&mut self.rc, rate_control(&self.config));
        self.rc.keep_extremes_of(&earlier);
        self.retry_token = None;
        self.challenge = None;
        if self.token.is_none() {
            // No session yet: the next server opens a new one, with another
            // seed. What the last one sent is worth nothing there.
            self.reorder.reset();
            self.sum = RunningChecksum::default();
        }
        if matches!(self.state, State::Connected | State::Closing) {
            self.set_state(State::Connecting);
        }
        self.send_pending = true;
        self.probe_due = false;
        self.ack_now = false;
        self.copies = 1;
        self.unacked = 0;
        self.timers.stop(Timer::Ack);
        self.arm_retransmit(now);
    }

    /// Asks the driver to move to the next server, if there is one to
    /// move to; returns whether it asked.
    pub(super) fn lose_server(&mut self, reason: LostReason) -> bool {
        if self.config.servers < 2 {
            return false;
        }
        tracing::debug!(uuid = %self.config.uuid, server = self.server, %reason, "server lost");
        self.lost = Some(reason);
        self.send_pending = false;
        self.probe_due = false;
        self.ack_now = false;
        self.timers.stop(Timer::Ack);
        self.timers.stop(Timer::Retransmit);
        self.events.push_back(ClientEvent::ServerLost { reason });
        true
    }
}

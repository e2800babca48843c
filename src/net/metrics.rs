//! What the server driver counts beside the core's [`ServerStats`]:
//! datagrams in and out by kind, and the acknowledgement latencies as
//! fixed-bucket histograms, ready for a Prometheus exposition
//! ([`net::ops::metrics`](crate::net::ops::metrics) writes the page).
//!
//! The core counts what it decides (accepted, rejected by reason, resends);
//! the driver sees every datagram go by, so it classifies them here, at the
//! cost of one byte read per datagram received and one decode per batch
//! sent. Memory is fixed: a few arrays, whatever the uptime.
//!
//! [`ServerStats`]: crate::proto::server::ServerStats

use std::time::Duration;

use crate::proto::wire::{ServerMessage, State, MAGIC, VERSION};

/// The kind a received datagram claims in its prefix. It is read before
/// any check: a datagram that then fails to decode is counted here under
/// the kind it claims, and among the rejects under its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InKind {
    /// CONNECTING: a new session or a resume.
    Connecting,
    /// CONNECTED: an acknowledgement or a probe.
    Connected,
    /// CLOSING: asks for the checksum.
    Closing,
    /// CLOSED: ends the session.
    Closed,
    /// Too short, wrong magic or version, or an unknown kind.
    Other,
}

impl InKind {
    /// Every kind, in the order of [`DriverMetrics::received`].
    pub const ALL: [InKind; 5] = [
        InKind::Connecting,
        InKind::Connected,
        InKind::Closing,
        InKind::Closed,
        InKind::Other,
    ];

    /// The kind `datagram` claims.
    pub fn of(datagram: &[u8]) -> Self {
        match datagram {
            [m0, m1, version, kind, ..] if [*m0, *m1] == MAGIC && *version == VERSION => {
                match *kind {
                    k if k == State::Connecting as u8 => InKind::Connecting,
                    k if k == State::Connected as u8 => InKind::Connected,
                    k if k == State::Closing as u8 => InKind::Closing,
                    k if k == State::Closed as u8 => InKind::Closed,
                    _ => InKind::Other,
                }
            }
            _ => InKind::Other,
        }
    }

    /// A short snake_case name (the `kind` label).
    pub fn name(self) -> &'static str {
        match self {
            InKind::Connecting => "connecting",
            InKind::Connected => "connected",
            InKind::Closing => "closing",
            InKind::Closed => "closed",
            InKind::Other => "other",
        }
    }
}

/// The kind of a datagram the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// The reply to CONNECTING, with the session token.
    Accept,
    /// One value.
    Data,
    /// The reply to CLOSING.
    Checksum,
    /// The reply to CLOSED.
    Closed,
    /// A refusal.
    Error,
    /// A path challenge to an address a session moved to.
    Challenge,
    /// A retry token (stateless address validation).
    Retry,
    /// Anything the server's own decoder refuses (never expected).
    Other,
}

impl OutKind {
    /// Every kind, in the order of [`DriverMetrics::sent`].
    pub const ALL: [OutKind; 8] = [
        OutKind::Accept,
        OutKind::Data,
        OutKind::Checksum,
        OutKind::Closed,
        OutKind::Error,
        OutKind::Challenge,
        OutKind::Retry,
        OutKind::Other,
    ];

    /// The kind of an encoded server datagram. Decoding it in full (not
    /// peeking at the kind byte) keeps this list in step with
    /// [`ServerMessage`]: a new message kind does not compile until it is
    /// named here.
    pub fn of(datagram: &[u8]) -> Self {
        match ServerMessage::decode_unchecked(datagram) {
            Ok(ServerMessage::Accept { .. }) => OutKind::Accept,
            Ok(ServerMessage::Data { .. }) => OutKind::Data,
            Ok(ServerMessage::Checksum { .. }) => OutKind::Checksum,
            Ok(ServerMessage::Closed { .. }) => OutKind::Closed,
            Ok(ServerMessage::Error { .. }) => OutKind::Error,
            Ok(ServerMessage::Challenge { .. }) => OutKind::Challenge,
            Ok(ServerMessage::Retry { .. }) => OutKind::Retry,
            Err(_) => OutKind::Other,
        }
    }

    /// A short snake_case name (the `kind` label).
    pub fn name(self) -> &'static str {
        match self {
            OutKind::Accept => "accept",
            OutKind::Data => "data",
            OutKind::Checksum => "checksum",
            OutKind::Closed => "closed",
            OutKind::Error => "error",
            OutKind::Challenge => "challenge",
            OutKind::Retry => "retry",
            OutKind::Other => "other",
        }
    }
}

/// Upper bounds of the latency buckets, in microseconds: 100 µs to 10 s,
/// 1-2.5-5 steps (loopback to intercontinental round trips, and the
/// resends of a lossy one).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A Prometheus-style histogram of durations over [`LATENCY_BOUNDS_US`]:
/// a count per bucket, the count and the exact sum. Fixed size; the
/// cumulative counts are computed when read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Buckets {
    /// Samples per bucket: `counts[i]` for `bounds[i-1] < x <= bounds[i]`;
    /// the last one for everything above the largest bound.
    counts: [u64; LATENCY_BOUNDS_US.len() + 1],
    /// Sum of every sample, in microseconds.
    sum_us: u64,
    /// Samples recorded.
    count: u64,
}

impl Buckets {
    /// Records one sample (whole microseconds, rounded down).
    pub fn record(&mut self, d: Duration) {
        let us = crate::stats::duration_to_us(d);
        let i = LATENCY_BOUNDS_US.partition_point(|&b| b < us);
        self.counts[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all samples.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_us)
    }

    /// `(upper bound, samples in that bucket)` for every bound, ending
    /// with `(None, samples above the largest bound)` for `+Inf`.
    pub fn per_bucket(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = LATENCY_BOUNDS_US
            .iter()
            .map(|&us| Some(Duration::from_micros(us)))
            .chain(std::iter::once(None));
        bounds.zip(self.counts.iter().copied())
    }

    /// `(upper bound, samples at or below it)` for every bound, ending with
    /// `(None, count)` for `+Inf`.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = LATENCY_BOUNDS_US
            .iter()
            .map(|&us| Some(Duration::from_micros(us)))
            .chain(std::iter::once(None));
        bounds.zip(self.counts.iter().scan(0u64, |acc, &c| {
            *acc += c;
            Some(*acc)
        }))
    }
}

/// What the driver counts, published with the core's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverMetrics {
    /// Datagrams received, by [`InKind`] (indexed like [`InKind::ALL`]).
    pub received: [u64; InKind::ALL.len()],
    /// Datagrams the core handed out to send, by [`OutKind`] (indexed like
    /// [`OutKind::ALL`]); those the operating system refused are among
    /// them, and counted again as send errors.
    pub sent: [u64; OutKind::ALL.len()],
    /// First send to acknowledgement of values sent once: the server's
    /// RTT samples (Karn's rule), the client's ack delay included.
    pub rtt: Buckets,
    /// First send to acknowledgement of every value, resends included:
    /// how long delivery took.
    pub delivery: Buckets,
}

impl std::ops::AddAssign<&DriverMetrics> for DriverMetrics {
    /// Adds another worker's counts.
    fn add_assign(&mut self, o: &DriverMetrics) {
        for (a, b) in self.received.iter_mut().zip(&o.received) {
            *a += b;
        }
        for (a, b) in self.sent.iter_mut().zip(&o.sent) {
            *a += b;
        }
        self.rtt += &o.rtt;
        self.delivery += &o.delivery;
    }
}

impl std::ops::AddAssign<&Buckets> for Buckets {
    /// Adds another histogram's samples.
    fn add_assign(&mut self, o: &Buckets) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(o.sum_us);
        self.count += o.count;
    }
}

impl DriverMetrics {
    /// Counts one datagram received.
    pub fn on_received(&mut self, datagram: &[u8]) {
        self.received[InKind::of(datagram) as usize] += 1;
    }

    /// Counts `count` datagrams of the kind of `first` handed out to send
    /// (a batch is all of one kind).
    pub fn on_sent(&mut self, first: &[u8], count: usize) {
        self.sent[OutKind::of(first) as usize] += count as u64;
    }

    /// Records an acknowledgement latency.
    pub fn on_ack_latency(&mut self, latency: Duration, retransmitted: bool) {
        self.delivery.record(latency);
        if !retransmitted {
            self.rtt.record(latency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::wire::{ClientMessage, ErrorCode, SERVER_TOKEN_LEN};
    use std::collections::HashSet;
    use uuid::Uuid;

    fn client(state: State) -> Vec<u8> {
        let msg = ClientMessage {
            state,
            uuid: Uuid::from_u128(7),
            len: 10,
            window: 4,
            ack: 0,
            timestamp: 1,
            rate: 0,
            flags: 0,
            token: &[],
            sack: &[],
        };
        let mut buf = vec![0u8; msg.encoded_len()];
        let n = msg.encode(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn server(msg: ServerMessage) -> Vec<u8> {
        let mut buf = vec![0u8; msg.encoded_len()];
        msg.encode(Uuid::from_u128(7), &mut buf).unwrap();
        buf
    }

    #[test]
    fn received_datagrams_are_classified_by_the_kind_they_claim() {
        let states = [
            (State::Connecting, InKind::Connecting),
            (State::Connected, InKind::Connected),
            (State::Closing, InKind::Closing),
            (State::Closed, InKind::Closed),
        ];
        for (state, kind) in states {
            assert_eq!(InKind::of(&client(state)), kind, "{state:?}");
        }
        let mut wrong_version = client(State::Connected);
        wrong_version[2] = VERSION + 1;
        let mut unknown_kind = client(State::Connected);
        unknown_kind[3] = 0x42;
        for d in [
            &b""[..],
            b"RU",
            b"XX\x01\x01",
            &wrong_version,
            &unknown_kind,
        ] {
            assert_eq!(InKind::of(d), InKind::Other, "{d:?}");
        }
    }

    #[test]
    fn sent_datagrams_are_classified_by_decoding_them() {
        let cases = [
            (
                ServerMessage::Accept {
                    token: [1; SERVER_TOKEN_LEN],
                    lifetime_ms: 1,
                    max_window: 2,
                    echo: 3,
                },
                OutKind::Accept,
            ),
            (
                ServerMessage::Data {
                    index: 1,
                    payload: 2,
                    echo: 3,
                },
                OutKind::Data,
            ),
            (
                ServerMessage::Checksum {
                    checksum: 1,
                    echo: 2,
                },
                OutKind::Checksum,
            ),
            (ServerMessage::Closed { echo: 1 }, OutKind::Closed),
            (
                ServerMessage::Error {
                    code: ErrorCode::Busy,
                    detail: 1,
                    echo: 2,
                },
                OutKind::Error,
            ),
        ];
        for (msg, kind) in cases {
            assert_eq!(OutKind::of(&server(msg)), kind, "{msg:?}");
        }
        assert_eq!(OutKind::of(b"nonsense"), OutKind::Other);
    }

    #[test]
    fn kind_names_are_distinct_label_values() {
        let names: HashSet<_> = InKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), InKind::ALL.len(), "{names:?}");
        for (i, k) in InKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in declaration order");
        }
        let names: HashSet<_> = OutKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), OutKind::ALL.len(), "{names:?}");
        for (i, k) in OutKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "ALL is in declaration order");
        }
    }

    #[test]
    fn buckets_are_inclusive_upper_bounds_and_cumulative() {
        let mut h = Buckets::default();
        h.record(Duration::from_micros(100)); // le 0.0001
        h.record(Duration::from_micros(101)); // le 0.00025
        h.record(Duration::from_millis(3)); // le 0.005
        h.record(Duration::from_secs(60)); // +Inf only
        let cum: Vec<_> = h.cumulative().collect();
        assert_eq!(cum.len(), LATENCY_BOUNDS_US.len() + 1);
        assert_eq!(cum[0], (Some(Duration::from_micros(100)), 1));
        assert_eq!(cum[1], (Some(Duration::from_micros(250)), 2));
        assert_eq!(cum[4], (Some(Duration::from_micros(2_500)), 2));
        assert_eq!(cum[5], (Some(Duration::from_micros(5_000)), 3));
        assert_eq!(cum[15], (Some(Duration::from_secs(10)), 3));
        assert_eq!(cum[16], (None, 4));
        assert_eq!(h.count(), 4);
        assert_eq!(
            h.sum(),
            Duration::from_micros(100 + 101 + 3_000 + 60_000_000)
        );
        assert!(cum.windows(2).all(|w| w[0].1 <= w[1].1), "{cum:?}");
        // The buckets one by one add up to the cumulative counts.
        let mut running = 0;
        for ((bound, n), (cum_bound, c)) in h.per_bucket().zip(&cum) {
            running += n;
            assert_eq!((bound, running), (*cum_bound, *c));
        }
        assert_eq!(h.per_bucket().filter(|&(_, n)| n > 0).count(), 4);
    }

    #[test]
    fn only_values_sent_once_are_rtt_samples() {
        let mut m = DriverMetrics::default();
        m.on_ack_latency(Duration::from_millis(1), false);
        m.on_ack_latency(Duration::from_millis(9), true);
        assert_eq!(m.delivery.count(), 2);
        assert_eq!(m.rtt.count(), 1);
        assert_eq!(m.rtt.sum(), Duration::from_millis(1));
    }

    #[test]
    fn a_batch_counts_every_datagram_under_its_kind() {
        let mut m = DriverMetrics::default();
        let data = server(ServerMessage::Data {
            index: 0,
            payload: 0,
            echo: 0,
        });
        m.on_sent(&data, 64);
        m.on_received(&client(State::Connected));
        m.on_received(b"junk");
        assert_eq!(m.sent[OutKind::Data as usize], 64);
        assert_eq!(m.received[InKind::Connected as usize], 1);
        assert_eq!(m.received[InKind::Other as usize], 1);
    }
}

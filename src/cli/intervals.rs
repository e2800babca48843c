//! `--interval SECS` for `load` and `server`: iperf3-style lines while a
//! run goes on, cut from cumulative counters, and a sum line at its end.
//!
//! One [`IntervalLog`] serves both: each command says what its counters
//! are ([`Counters`]: `load` the clients' [`TotalsSnapshot`], the server
//! its [`ServerCounters`]) and how one interval of them reads. An interval
//! is the difference of two readings, and the last one is cut from the
//! final figures, so the intervals always add up to the run's totals
//! however many there were. (`client --interval` has its own meter, in
//! [`crate::transfer`], because it also takes RTT percentiles; all three
//! share the start of the line, [`interval_head`].)

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::net::server::ServerSummary;
use crate::net::stream::TotalsSnapshot;
use crate::proto::server::Reject;
use crate::transfer::interval_head;

/// Cumulative counters read at the end of each interval.
pub trait Counters: Clone + Default + PartialEq {
    /// One interval, as `--json` has it.
    type Row: Serialize + Clone + std::fmt::Debug;
    /// The interval `span` from the reading `before` to `self`.
    fn row(&self, before: &Self, span: Span) -> Self::Row;
    /// The interval for people, one line.
    fn line(row: &Self::Row) -> String;
    /// True when nothing happened in the interval worth a line (an idle
    /// server); such intervals are neither printed nor kept.
    fn idle(_row: &Self::Row) -> bool {
        false
    }
}

/// Where an interval lies, seconds since the run started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Its start.
    pub start_s: f64,
    /// Its end.
    pub end_s: f64,
}

impl Span {
    /// `n` per second over the span (0 for an empty span).
    pub fn rate(&self, n: u64) -> f64 {
        let secs = self.end_s - self.start_s;
        if secs > 0.0 {
            n as f64 / secs
        } else {
            0.0
        }
    }

    /// The part every row starts with: the span and `values` in it.
    pub fn head(&self, values: u64) -> IntervalHead {
        IntervalHead {
            start_s: self.start_s,
            end_s: self.end_s,
            values,
            values_per_s: self.rate(values),
        }
    }
}

/// What every interval row starts with (flattened into its JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntervalHead {
    /// Start, seconds since the run started.
    pub start_s: f64,
    /// End, seconds since the run started.
    pub end_s: f64,
    /// Values in the interval (what they are is the row's to say).
    pub values: u64,
    /// `values` per second of the interval.
    pub values_per_s: f64,
}

impl IntervalHead {
    /// `[   0.0-   1.0 s]   52.3k values   52.3k values/s`.
    pub fn line(&self) -> String {
        interval_head(self.start_s, self.end_s, self.values, self.values_per_s)
    }
}

/// The intervals of one run: a timer that says when the next ends, the
/// last reading, and the intervals kept for `--json`.
#[derive(Debug)]
pub struct IntervalLog<C: Counters> {
    timer: tokio::time::Interval,
    started: Instant,
    /// End of the last interval cut.
    from: Duration,
    last: C,
    /// Intervals cut, idle ones included.
    cuts: u64,
    /// The newest intervals, at most `keep` of them.
    rows: VecDeque<C::Row>,
    keep: usize,
    /// Intervals left out of `rows` to stay within `keep`.
    dropped: u64,
}

/// What a finished [`IntervalLog`] hands back.
#[derive(Debug)]
pub struct FinishedLog<R> {
    /// The intervals kept, oldest first (the idle ones are not).
    pub rows: Vec<R>,
    /// Intervals left out to stay within the log's limit (the oldest).
    pub dropped: u64,
    /// Still to print: the last interval's line, a separator, the sum.
    pub text: String,
}

/// The separator before the sum line, as iperf3's.
const SUM_SEPARATOR: &str = "- - - - - - - - - - - - - - - - - - - - - - - - -";

/// Intervals an [`IntervalLog`] keeps by default: a day of 1 s intervals
/// (a few tens of MiB), so that a server left running with `--interval`
/// does not grow without bound.
pub const MAX_KEPT: usize = 86_400;

impl<C: Counters> IntervalLog<C> {
    /// Intervals of `every` from `started` (call inside a tokio runtime),
    /// keeping the newest [`MAX_KEPT`].
    pub fn new(every: Duration, started: Instant) -> Self {
        let first = tokio::time::Instant::from_std(started + every);
        let mut timer = tokio::time::interval_at(first, every);
        // A late tick (a busy machine) shifts the next ones rather than
        // bunching them up: an interval is measured, not assumed.
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            timer,
            started,
            from: Duration::ZERO,
            last: C::default(),
            cuts: 0,
            rows: VecDeque::new(),
            keep: MAX_KEPT,
            dropped: 0,
        }
    }

    /// Keeps at most `keep` intervals (0: none, when only the lines are
    /// wanted).
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep;
        self
    }

    /// Ends the current interval at `now` with the counters `current`;
    /// returns its line, or `None` when it was idle.
    pub fn cut(&mut self, now: Instant, current: C) -> Option<String> {
        let end = now.saturating_duration_since(self.started).max(self.from);
        let span = Span {
            start_s: self.from.as_secs_f64(),
            end_s: end.as_secs_f64(),
        };
        let row = current.row(&self.last, span);
        self.cuts += 1;
        self.from = end;
        self.last = current;
        if C::idle(&row) {
            return None;
        }
        let line = C::line(&row);
        if self.rows.len() >= self.keep {
            self.dropped += 1;
            if self.rows.pop_front().is_none() {
                return Some(line);
            }
        }
        self.rows.push_back(row);
        Some(line)
    }

    /// Ends the run at `now` with the final counters: the last, partial
    /// interval is cut unless nothing happened in it, and the sum of the
    /// whole run is added to the text.
    pub fn finish(mut self, now: Instant, current: C) -> FinishedLog<C::Row> {
        let mut text = String::new();
        let at = now.saturating_duration_since(self.started);
        if current != self.last || at > self.from || self.cuts == 0 {
            if let Some(line) = self.cut(now, current.clone()) {
                text = line + "\n";
            }
        }
        let span = Span {
            start_s: 0.0,
            end_s: self.from.as_secs_f64(),
        };
        let sum = current.row(&C::default(), span);
        text += &format!("{SUM_SEPARATOR}\n{}  sum\n", C::line(&sum));
        FinishedLog {
            rows: self.rows.into(),
            dropped: self.dropped,
            text,
        }
    }
}

/// Completes when the log's current interval is due; never without a log.
pub async fn due<C: Counters>(log: &mut Option<IntervalLog<C>>) {
    match log {
        Some(log) => {
            log.timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// One interval of `risp-udp load`: what the clients counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadInterval {
    /// The span and the values delivered in it, all clients.
    #[serde(flatten)]
    pub head: IntervalHead,
    /// Clients under way at the end of the interval.
    pub sessions_active: u64,
    /// Clients that had ended by the end of the interval (verified or
    /// not).
    pub sessions_done: u64,
    /// Of those, the ones not verified.
    pub sessions_failed: u64,
    /// The clients' acks that asked for resends (the resends the clients
    /// can see: `load` does not see the server's counters).
    pub retransmit_requests: u64,
    /// The clients' probe-timer expiries.
    pub timeouts: u64,
    /// Datagrams the clients' lossy-socket shims dropped.
    pub shim_dropped: u64,
}

impl Counters for TotalsSnapshot {
    type Row = LoadInterval;

    fn row(&self, before: &Self, span: Span) -> LoadInterval {
        LoadInterval {
            head: span.head(self.delivered.saturating_sub(before.delivered)),
            sessions_active: self.active(),
            sessions_done: self.ended,
            sessions_failed: self.failed,
            retransmit_requests: self
                .retransmit_requests
                .saturating_sub(before.retransmit_requests),
            timeouts: self.timeouts.saturating_sub(before.timeouts),
            shim_dropped: self.shim_dropped.saturating_sub(before.shim_dropped),
        }
    }

    fn line(r: &LoadInterval) -> String {
        format!(
            "{}  sessions {:>4} active {:>4} done {:>3} failed  rexmit req {:>5}  timeouts {:>4}  shim dropped {:>5}",
            r.head.line(),
            r.sessions_active,
            r.sessions_done,
            r.sessions_failed,
            r.retransmit_requests,
            r.timeouts,
            r.shim_dropped
        )
    }
}

/// What `risp-udp server --interval` reads from the server's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerCounters {
    /// Data datagrams handed out to send (one value each, resends
    /// included).
    pub values_sent: u64,
    /// Of those, resends.
    pub retransmits: u64,
    /// Sessions held (a level, not a count).
    pub sessions_open: u64,
    /// Sessions created.
    pub sessions_opened: u64,
    /// Sessions that ended: closed, aborted or expired.
    pub sessions_ended: u64,
    /// Datagrams rejected, every reason.
    pub rejected: u64,
    /// Of those, new sessions refused at the session limit.
    pub refused_busy: u64,
}

impl ServerCounters {
    /// The counters of `s`.
    pub fn of(s: &ServerSummary) -> Self {
        let st = &s.stats;
        Self {
            values_sent: s.metrics.sent[crate::net::metrics::OutKind::Data as usize],
            retransmits: st.retransmits,
            sessions_open: s.sessions as u64,
            sessions_opened: st.sessions_opened,
            sessions_ended: st.sessions_closed + st.sessions_aborted + st.sessions_expired,
            rejected: st.rejected.iter().sum(),
            refused_busy: st.rejected(Reject::Busy),
        }
    }
}

/// One interval of `risp-udp server`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerInterval {
    /// The span and the values sent in it (data datagrams, resends
    /// included).
    #[serde(flatten)]
    pub head: IntervalHead,
    /// Of `values`, resends.
    pub retransmits: u64,
    /// Sessions held at the end of the interval.
    pub sessions_open: u64,
    /// Sessions created in the interval.
    pub sessions_opened: u64,
    /// Sessions that ended in the interval (closed, aborted, expired).
    pub sessions_closed: u64,
    /// Datagrams rejected in the interval, every reason.
    pub rejected: u64,
    /// Of those, new sessions refused at the session limit.
    pub refused_busy: u64,
}

impl Counters for ServerCounters {
    type Row = ServerInterval;

    fn row(&self, before: &Self, span: Span) -> ServerInterval {
        ServerInterval {
            head: span.head(self.values_sent.saturating_sub(before.values_sent)),
            retransmits: self.retransmits.saturating_sub(before.retransmits),
            sessions_open: self.sessions_open,
            sessions_opened: self.sessions_opened.saturating_sub(before.sessions_opened),
            sessions_closed: self.sessions_ended.saturating_sub(before.sessions_ended),
            rejected: self.rejected.saturating_sub(before.rejected),
            refused_busy: self.refused_busy.saturating_sub(before.refused_busy),
        }
    }

    fn idle(r: &ServerInterval) -> bool {
        let ServerInterval {
            head,
            retransmits,
            sessions_open,
            sessions_opened,
            sessions_closed,
            rejected,
            refused_busy,
        } = *r;
        [
            head.values,
            retransmits,
            sessions_open,
            sessions_opened,
            sessions_closed,
            rejected,
            refused_busy,
        ] == [0; 7]
    }

    fn line(r: &ServerInterval) -> String {
        format!(
            "{}  sessions {:>4} open {:>4} opened {:>4} closed  resent {:>5}  rejected {:>5} (busy {})",
            r.head.line(),
            r.sessions_open,
            r.sessions_opened,
            r.sessions_closed,
            r.retransmits,
            r.rejected,
            r.refused_busy
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(delivered: u64, started: u64, ended: u64) -> TotalsSnapshot {
        TotalsSnapshot {
            started,
            ended,
            delivered,
            retransmit_requests: delivered / 10,
            ..TotalsSnapshot::default()
        }
    }

    #[tokio::test]
    async fn intervals_are_differences_and_add_up_to_the_totals() {
        let t0 = crate::clock::now();
        let mut log = IntervalLog::new(Duration::from_secs(1), t0);
        let first = log.cut(t0 + Duration::from_secs(1), at(100, 3, 0));
        let first = first.expect("a load is never idle");
        assert!(first.contains("[   0.0-   1.0 s]"), "{first}");
        assert!(first.contains("100 values"), "{first}");
        log.cut(t0 + Duration::from_secs(2), at(250, 3, 1));
        let done = log.finish(t0 + Duration::from_millis(2500), at(300, 3, 3));
        let rows = &done.rows;
        let values: Vec<u64> = rows.iter().map(|r| r.head.values).collect();
        assert_eq!(values, [100, 150, 50]);
        assert_eq!(rows[2].head.values_per_s, 100.0);
        assert_eq!(rows.iter().map(|r| r.retransmit_requests).sum::<u64>(), 30);
        assert_eq!((rows[1].sessions_active, rows[1].sessions_done), (2, 1));
        let lines: Vec<&str> = done.text.lines().collect();
        assert_eq!(lines.len(), 3, "{}", done.text);
        assert_eq!(lines[1], SUM_SEPARATOR);
        assert!(lines[2].starts_with("[   0.0-   2.5 s]"), "{}", done.text);
        assert!(lines[2].contains("300 values") && lines[2].ends_with("sum"));
    }

    #[tokio::test]
    async fn an_empty_last_interval_is_not_cut_but_late_counts_are() {
        let t0 = crate::clock::now();
        let mut log = IntervalLog::new(Duration::from_secs(1), t0);
        log.cut(t0 + Duration::from_secs(1), at(100, 1, 1));
        let done = log.finish(t0 + Duration::from_secs(1), at(100, 1, 1));
        assert_eq!(done.rows.len(), 1);
        let mut log = IntervalLog::new(Duration::from_secs(1), t0);
        log.cut(t0 + Duration::from_secs(1), at(100, 1, 0));
        // Read at the same instant, yet more arrived: cut, so the sum holds.
        let done = log.finish(t0 + Duration::from_secs(1), at(120, 1, 1));
        assert_eq!(done.rows.iter().map(|r| r.head.values).sum::<u64>(), 120);
    }

    #[tokio::test]
    async fn idle_intervals_are_skipped_and_the_kept_ones_are_bounded() {
        let t0 = crate::clock::now();
        let sec = |n| t0 + Duration::from_secs(n);
        let busy = |sent| ServerCounters {
            values_sent: sent,
            ..ServerCounters::default()
        };
        let mut log = IntervalLog::new(Duration::from_secs(1), t0).keep(2);
        assert_eq!(log.cut(sec(1), ServerCounters::default()), None);
        for (n, sent) in [(2, 10), (3, 30), (4, 60)] {
            assert!(log.cut(sec(n), busy(sent)).is_some());
        }
        assert_eq!(log.cut(sec(5), busy(60)), None, "nothing sent, none open");
        let done = log.finish(sec(5), busy(60));
        let kept: Vec<(f64, u64)> = done
            .rows
            .iter()
            .map(|r| (r.head.start_s, r.head.values))
            .collect();
        assert_eq!(kept, [(2.0, 20), (3.0, 30)], "the newest two");
        assert_eq!(done.dropped, 1);
        assert!(done.text.contains("60 values"), "{}", done.text);
    }

    #[test]
    fn server_counters_read_the_summary() {
        let mut s = ServerSummary::default();
        s.metrics.sent[crate::net::metrics::OutKind::Data as usize] = 40;
        s.stats.retransmits = 4;
        s.stats.sessions_opened = 3;
        s.stats.sessions_closed = 1;
        s.stats.sessions_expired = 1;
        s.stats.rejected[Reject::Busy as usize] = 2;
        s.sessions = 1;
        let c = ServerCounters::of(&s);
        let row = c.row(
            &ServerCounters::default(),
            Span {
                start_s: 0.0,
                end_s: 2.0,
            },
        );
        assert_eq!(
            (row.head.values, row.head.values_per_s, row.retransmits),
            (40, 20.0, 4)
        );
        assert_eq!((row.sessions_opened, row.sessions_closed), (3, 2));
        assert_eq!((row.rejected, row.refused_busy), (2, 2));
        let line = ServerCounters::line(&row);
        assert!(line.contains("1 open") && line.contains("busy 2"), "{line}");
    }
}

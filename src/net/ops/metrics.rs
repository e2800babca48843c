//! The server's `/metrics` page: every counter the core and the driver
//! keep, encoded by [prometheus-client] in the Prometheus text format
//! 0.0.4.
//!
//! All metrics start with `risp_`. Counters end in `_total` (the encoder
//! adds it to the names below) and count since the process started;
//! durations are in seconds. The core's plain counters are exported by
//! [`STATS_COUNTERS`], one line per [`ServerStats`] field (the metric is
//! `risp_<field>_total`); the breakdowns (datagrams by kind, rejects by
//! reason, sessions by state) and the histograms are written out below it.
//! The figures are the server's own, read when a scrape comes, so the page
//! is a [`Collector`] of constant metrics over a snapshot of the summary.
//! docs/OPERATING.md lists every metric.
//!
//! [prometheus-client]: https://docs.rs/prometheus-client

use std::fmt;
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    prometheus_text, DescriptorEncoder, EncodeGaugeValue, EncodeMetric, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::net::metrics::{Buckets, DriverMetrics, InKind, OutKind};
use crate::net::server::ServerSummary;
use crate::proto::server::{Reject, ServerStats};

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Reads one counter of the core.
type Getter = fn(&ServerStats) -> u64;

/// The core's counters exported as they are: `(field, help, getter)`, each
/// written as `risp_<field>_total`. A new [`ServerStats`] counter is one
/// line here (a test fails until it is added). The three breakdowns
/// (`datagrams_received`, `datagrams_sent`, `rejected`) are written with
/// their labels instead.
pub const STATS_COUNTERS: &[(&str, &str, Getter)] = &[
    ("accepted", "Datagrams the server processed (received = accepted + rejected).", |s| s.accepted),
    ("retransmits", "Data datagrams that were resends.", |s| s.retransmits),
    ("losses", "Transmissions declared lost and queued to be sent again.", |s| s.losses),
    ("sessions_opened", "Sessions created.", |s| s.sessions_opened),
    ("sessions_resumed", "CONNECTINGs with a valid token for a live session.", |s| s.sessions_resumed),
    ("sessions_closed", "Sessions ended by the CLOSED handshake.", |s| s.sessions_closed),
    ("sessions_expired", "Sessions freed for idleness.", |s| s.sessions_expired),
    ("sessions_aborted", "Sessions the client abandoned (CLOSED with the abort flag, on Ctrl-C).", |s| s.sessions_aborted),
    ("migrations", "Times a session moved to a new client address.", |s| s.migrations),
    ("probes", "Probes (acks sent by a client's timer) that reached their session; clients send each probe twice.", |s| s.probes),
    ("probes_limited", "Probes read as plain acks: a probe had made the session resend its window less than one smallest RTT before.", |s| s.probes_limited),
    ("window_zero", "Windows of 0 raised to 1.", |s| s.window_zero),
    ("window_capped", "Windows capped at --max-window.", |s| s.window_capped),
    ("replies_dropped", "Control replies dropped because the reply queue was full.", |s| s.replies_dropped),
    ("events_dropped", "Events dropped because nobody polled them.", |s| s.events_dropped),
    ("path_challenges", "Path challenges sent to an address a session moved to.", |s| s.path_challenges),
    ("path_validations", "Addresses that answered a path challenge.", |s| s.path_validations),
    ("amplification_limited", "Data sends held back: the address was not validated and had used its budget (3x what it sent).", |s| s.amplification_limited),
    ("retry_validated", "Sessions opened by a CONNECTING with a valid retry token.", |s| s.retry_validated),
    ("pending_evicted", "Unproven handshakes freed to make room for a client that proved its address.", |s| s.pending_evicted),
    ("window_budget_capped", "Windows lowered to the session's share of the server-wide window budget.", |s| s.window_budget_capped),
    ("store_writes", "Session records handed to the shared store (first writes and refreshes).", |s| s.store_writes),
    ("store_refreshes", "Session records written again to renew their TTL (at most one per session per refresh interval).", |s| s.store_refreshes),
    ("store_removes", "Session records removed from the shared store (closed or aborted).", |s| s.store_removes),
    ("store_lookups", "Shared-store lookups for a session this worker did not hold.", |s| s.store_lookups),
    ("store_misses", "Lookups the store answered with nothing (the session is unknown).", |s| s.store_misses),
    ("store_lookups_failed", "Lookups that failed because the store was unreachable (the datagram is dropped; the client retransmits).", |s| s.store_lookups_failed),
    ("store_ops_dropped", "Store operations dropped because the core's queue to the driver was full.", |s| s.store_ops_dropped),
    ("sessions_restored", "Sessions carried on from a shared-store record (another worker, instance, or this one before a restart).", |s| s.sessions_restored),
    ("sessions_fast_forwarded", "Stale copies of a session carried forward to the ack its client reached on another worker or instance.", |s| s.sessions_fast_forwarded),
    ("handshakes", "Noise handshakes computed (X25519 work), only past Retry and the admission limits.", |s| s.handshakes),
    ("sessions_sealed", "Sessions opened sealed.", |s| s.sessions_sealed),
    ("handshake_repeats", "Repeated handshake messages answered with the stored reply.", |s| s.handshake_repeats),
    ("undecryptable", "Sealed datagrams that did not open (forged, damaged, for no session).", |s| s.undecryptable),
    ("replayed", "Sealed datagrams refused as replays.", |s| s.replayed),
];

/// The page for `summary` at `now`. Fails only if a value cannot be
/// written, which writing into a `String` never does.
pub fn render(
    summary: &ServerSummary,
    max_sessions: usize,
    now: Instant,
) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot::new(summary, max_sessions, now)));
    let mut page = String::new();
    prometheus_text::encode(&mut page, &registry)?;
    Ok(page)
}

/// What a scrape shows, copied out of the summary (a collector owns what
/// it encodes; this is a few hundred bytes, without the summary's
/// HdrHistogram).
#[derive(Debug)]
struct Snapshot {
    stats: ServerStats,
    metrics: DriverMetrics,
    sessions: usize,
    sessions_confirmed: usize,
    max_sessions: usize,
    peak_sessions: usize,
    /// The store's figures: `(up, write errors, writes dropped)`, with a
    /// store only.
    store: Option<(bool, u64, u64)>,
    send_errors: u64,
    datagrams_unsent: u64,
    loop_turns: u64,
    loop_age: Duration,
}

impl Snapshot {
    fn new(s: &ServerSummary, max_sessions: usize, now: Instant) -> Self {
        Self {
            stats: s.stats.clone(),
            metrics: s.metrics,
            sessions: s.sessions,
            sessions_confirmed: s.sessions_confirmed,
            max_sessions,
            peak_sessions: s.peak_sessions,
            store: s
                .store_up
                .map(|up| (up, s.store_write_errors, s.store_writes_dropped)),
            send_errors: s.send_errors,
            datagrams_unsent: s.datagrams_unsent,
            loop_turns: s.heartbeat.turns(),
            loop_age: s.heartbeat.age(now),
        }
    }

    /// Sessions, datagrams by kind and rejects by reason.
    fn encode_breakdowns(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        let handshake = self.sessions.saturating_sub(self.sessions_confirmed) as u64;
        let established = self.sessions_confirmed as u64;
        let by_state = [("handshake", handshake), ("established", established)];
        family(
            e,
            "risp_sessions",
            "Live sessions by state: handshake (token not confirmed yet) or established.",
            MetricType::Gauge,
            "state",
            by_state,
        )?;
        gauge(
            e,
            "risp_sessions_limit",
            "Most sessions held at once (--max-sessions); at it new clients are refused busy.",
            self.max_sessions as u64,
        )?;
        gauge(
            e,
            "risp_sessions_peak",
            "Most sessions the server has held at once since it started.",
            self.peak_sessions as u64,
        )?;
        let m = &self.metrics;
        family(
            e,
            "risp_datagrams_received",
            "Datagrams received, by the kind their prefix claims (other: no valid prefix).",
            MetricType::Counter,
            "kind",
            InKind::ALL.map(|k| (k.name(), m.received[k as usize])),
        )?;
        family(
            e,
            "risp_datagrams_sent",
            "Datagrams handed to the socket, by kind (those refused are also send errors).",
            MetricType::Counter,
            "kind",
            OutKind::ALL.map(|k| (k.name(), m.sent[k as usize])),
        )?;
        family(
            e,
            "risp_datagrams_rejected",
            "Datagrams not processed, by reason.",
            MetricType::Counter,
            "reason",
            Reject::ALL.map(|r| (r.name(), self.stats.rejected(r))),
        )
    }

    /// The driver's own counters, the store's, the histograms and the loop.
    fn encode_driver(&self, e: &mut DescriptorEncoder) -> fmt::Result {
        if let Some((up, write_errors, writes_dropped)) = self.store {
            gauge(
                e,
                "risp_store_up",
                "1 while the shared session store answers, 0 while it does not (new sessions are refused).",
                u64::from(up),
            )?;
            counter(
                e,
                "risp_store_write_errors",
                "Batches of store writes that failed (the store was unreachable).",
                write_errors,
            )?;
            counter(
                e,
                "risp_store_writes_dropped",
                "Store writes dropped because the writer task fell behind.",
                writes_dropped,
            )?;
        }
        counter(
            e,
            "risp_send_errors",
            "Sends the operating system refused (one destination's problem; logged rate-limited).",
            self.send_errors,
        )?;
        counter(
            e,
            "risp_datagrams_unsent",
            "Datagrams failed sends kept from going out (a failure ends the rest of its batch).",
            self.datagrams_unsent,
        )?;
        histogram(
            e,
            "risp_rtt",
            "First send to acknowledgement of values sent once (the server's RTT samples, the client's ack delay included).",
            &self.metrics.rtt,
        )?;
        histogram(
            e,
            "risp_delivery",
            "First send to acknowledgement of every value, resends included.",
            &self.metrics.delivery,
        )?;
        counter(
            e,
            "risp_loop_turns",
            "Turns of the server's I/O loop (at least five a second while it runs).",
            self.loop_turns,
        )?;
        let m = e.encode_descriptor(
            "risp_loop_last_turn_age",
            "Time since the I/O loop last turned (liveness).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.loop_age.as_secs_f64()).encode(m)
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        self.encode_breakdowns(&mut e)?;
        for (field, help, get) in STATS_COUNTERS {
            counter(&mut e, &format!("risp_{field}"), help, get(&self.stats))?;
        }
        self.encode_driver(&mut e)
    }
}

/// A counter family with one sample, `name_total`.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// A gauge family with one sample.
fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeGaugeValue,
) -> fmt::Result {
    let m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

/// A counter or gauge family with one sample per value of `label`.
fn family<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    label: &str,
    samples: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (value, count) in samples {
        let labels = [(label, value)];
        let sample = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(count).encode(sample)?,
            _ => ConstGauge::new(count).encode(sample)?,
        }
    }
    Ok(())
}

/// A histogram of durations, `name_seconds`: a bucket per bound and
/// `+Inf`, the sum and the count.
fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Buckets) -> fmt::Result {
    let buckets: Vec<(f64, u64)> = h
        .per_bucket()
        .map(|(bound, n)| (bound.map_or(f64::INFINITY, |b| b.as_secs_f64()), n))
        .collect();
    let mut m = e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum().as_secs_f64(), h.count(), &buckets, None)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::clock;
    use crate::net::heartbeat::Heartbeat;
    use prometheus_parse::{Scrape, Value};

    fn scrape(page: &str) -> Scrape {
        let lines = page.lines().map(|l| Ok(l.to_string()));
        Scrape::parse(lines).expect("the page parses")
    }

    /// `name{labels}` -> value, for counters and gauges.
    fn values(scrape: &Scrape) -> HashMap<String, f64> {
        scrape
            .samples
            .iter()
            .filter_map(|s| {
                let v = match s.value {
                    Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                    _ => return None,
                };
                let mut labels: Vec<_> = s.labels.iter().collect();
                labels.sort();
                let labels: Vec<_> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Some((format!("{}{{{}}}", s.metric, labels.join(",")), v))
            })
            .collect()
    }

    /// A summary where every counter has a distinct value.
    fn busy_summary(t0: Instant) -> ServerSummary {
        let mut s = ServerSummary {
            heartbeat: Heartbeat::new(t0),
            sessions: 5,
            sessions_confirmed: 3,
            send_errors: 7,
            datagrams_unsent: 9,
            peak_sessions: 6,
            ..ServerSummary::default()
        };
        s.heartbeat.beat(t0 + Duration::from_millis(100));
        s.stats.accepted = 11;
        s.stats.retransmits = 12;
        s.stats.sessions_opened = 13;
        s.stats.probes = 14;
        s.stats.probes_limited = 15;
        for (i, r) in Reject::ALL.iter().enumerate() {
            s.stats.rejected[*r as usize] = 100 + i as u64;
        }
        for k in InKind::ALL {
            s.metrics.received[k as usize] = 200 + k as u64;
        }
        for k in OutKind::ALL {
            s.metrics.sent[k as usize] = 300 + k as u64;
        }
        s.metrics.on_ack_latency(Duration::from_micros(800), false);
        s.metrics.on_ack_latency(Duration::from_millis(40), true);
        s
    }

    #[test]
    fn the_page_parses_and_holds_every_breakdown() {
        let t0 = clock::now();
        let page = render(&busy_summary(t0), 8, t0 + Duration::from_millis(600)).unwrap();
        let scrape = scrape(&page);
        let v = values(&scrape);
        assert_eq!(v["risp_sessions{state=handshake}"], 2.0);
        assert_eq!(v["risp_sessions{state=established}"], 3.0);
        assert_eq!(v["risp_sessions_limit{}"], 8.0);
        for (i, r) in Reject::ALL.iter().enumerate() {
            let key = format!("risp_datagrams_rejected_total{{reason={}}}", r.name());
            assert_eq!(v[&key], 100.0 + i as f64, "{key}");
        }
        for k in InKind::ALL {
            let key = format!("risp_datagrams_received_total{{kind={}}}", k.name());
            assert_eq!(v[&key], 200.0 + k as u64 as f64, "{key}");
        }
        for k in OutKind::ALL {
            let key = format!("risp_datagrams_sent_total{{kind={}}}", k.name());
            assert_eq!(v[&key], 300.0 + k as u64 as f64, "{key}");
        }
        assert_eq!(v["risp_accepted_total{}"], 11.0);
        assert_eq!(v["risp_retransmits_total{}"], 12.0);
        assert_eq!(v["risp_probes_total{}"], 14.0);
        assert_eq!(v["risp_probes_limited_total{}"], 15.0);
        assert_eq!(v["risp_send_errors_total{}"], 7.0);
        assert_eq!(v["risp_datagrams_unsent_total{}"], 9.0);
        assert_eq!(v["risp_sessions_peak{}"], 6.0);
        assert_eq!(v["risp_loop_turns_total{}"], 1.0);
        assert_eq!(v["risp_loop_last_turn_age_seconds{}"], 0.5);

        let hist = |name: &str| {
            let s = scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .unwrap_or_else(|| panic!("no {name}"));
            match &s.value {
                Value::Histogram(b) => b.clone(),
                other => panic!("{name} is not a histogram: {other:?}"),
            }
        };
        let rtt = hist("risp_rtt_seconds");
        assert_eq!(rtt.last().map(|b| b.count), Some(1.0));
        let delivery = hist("risp_delivery_seconds");
        assert_eq!(delivery.last().map(|b| b.count), Some(2.0));
        let le_1ms = delivery
            .iter()
            .find(|b| b.less_than == 0.001)
            .expect("1 ms");
        assert_eq!(le_1ms.count, 1.0);
        assert_eq!(v["risp_delivery_seconds_count{}"], 2.0);
        assert_eq!(v["risp_delivery_seconds_sum{}"], 0.0408);

        // Every family is typed and documented.
        let typed: BTreeSet<_> = page
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| typed.contains(base) && !typed.contains(name))
                })
                .unwrap_or(name);
            assert!(typed.contains(family), "{line} has no # TYPE");
            assert!(scrape.docs.contains_key(family), "{line} has no # HELP");
        }
    }

    /// The names, labels, types and help texts of every family, as they
    /// were when the page was written by hand (`metrics_page.txt`, the
    /// page without its values): dashboards and alerts written against the
    /// page keep working. A new metric is a new line there.
    #[test]
    fn the_page_keeps_every_name_label_type_and_help() {
        let t0 = clock::now();
        let mut summary = busy_summary(t0);
        summary.store_up = Some(true);
        let page = render(&summary, 8, t0).unwrap();
        assert!(page.ends_with('\n'), "a page ends with a newline");
        let shape: Vec<&str> = page
            .lines()
            .map(|l| match l.rsplit_once(' ') {
                Some((sample, _)) if !l.starts_with('#') => sample,
                _ => l,
            })
            .collect();
        if std::env::var_os("RISP_BLESS").is_some() {
            // Rewrites the golden page (review the diff before committing).
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/net/ops/metrics_page.txt");
            std::fs::write(path, shape.join("\n") + "\n").expect("write the golden page");
        }
        let golden: Vec<&str> = include_str!("metrics_page.txt").lines().collect();
        assert_eq!(shape, golden, "{page}");
        // Every sample line parses (prometheus-parse skips what it cannot
        // read rather than failing): buckets fold into their histogram.
        let parsed: usize = scrape(&page)
            .samples
            .iter()
            .map(|s| match &s.value {
                Value::Histogram(b) => b.len(),
                _ => 1,
            })
            .sum();
        let sample_lines = page.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(parsed, sample_lines, "{page}");
    }

    /// `(field, value)` of every field of `stats`, read from its `Debug`
    /// output (the one way to list a struct's fields by name).
    fn stats_fields(stats: &ServerStats) -> Vec<(String, String)> {
        let debug = format!("{stats:?}");
        let body = debug
            .strip_prefix("ServerStats { ")
            .and_then(|b| b.strip_suffix(" }"))
            .expect("a struct's Debug output");
        let mut fields = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in body.char_indices() {
            match c {
                '[' | '{' | '(' => depth += 1,
                ']' | '}' | ')' => depth -= 1,
                ',' if depth == 0 => {
                    fields.push(&body[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        fields.push(&body[start..]);
        fields
            .iter()
            .filter_map(|f| f.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    #[test]
    fn every_core_counter_is_exported() {
        let breakdowns = ["datagrams_received", "datagrams_sent", "rejected"];
        let exported: BTreeSet<_> = STATS_COUNTERS.iter().map(|(f, _, _)| *f).collect();
        assert_eq!(exported.len(), STATS_COUNTERS.len(), "no field twice");
        let fields = stats_fields(&ServerStats::default());
        assert!(fields.len() > 10, "{fields:?}");
        for (f, _) in &fields {
            assert!(
                exported.contains(f.as_str()) || breakdowns.contains(&f.as_str()),
                "ServerStats::{f} is not on the metrics page: add a line to STATS_COUNTERS"
            );
        }
        for f in exported {
            assert!(
                fields.iter().any(|(x, _)| x == f),
                "{f} is not a ServerStats field"
            );
        }
    }

    #[test]
    fn each_getter_reads_the_field_it_names() {
        // A distinct, non-zero value in every field (no `..Default`: a new
        // field must be given one here), so a getter reading a neighbour, a
        // missing one, or a zero that happens to match is caught.
        let stats = ServerStats {
            datagrams_received: 1,
            accepted: 2,
            datagrams_sent: 3,
            retransmits: 4,
            losses: 32,
            sessions_opened: 5,
            sessions_resumed: 6,
            sessions_closed: 7,
            sessions_aborted: 8,
            sessions_expired: 9,
            migrations: 10,
            window_zero: 11,
            window_capped: 12,
            replies_dropped: 13,
            events_dropped: 14,
            probes_limited: 15,
            path_challenges: 16,
            path_validations: 17,
            amplification_limited: 18,
            retry_validated: 19,
            pending_evicted: 20,
            window_budget_capped: 21,
            probes: 22,
            store_writes: 23,
            store_refreshes: 24,
            store_removes: 25,
            store_lookups: 26,
            store_misses: 27,
            store_lookups_failed: 28,
            store_ops_dropped: 29,
            sessions_restored: 30,
            sessions_fast_forwarded: 31,
            handshakes: 37,
            sessions_sealed: 33,
            handshake_repeats: 34,
            undecryptable: 35,
            replayed: 36,
            rejected: std::array::from_fn(|i| 1_000 + i as u64),
        };
        let scalars: Vec<_> = stats_fields(&stats)
            .into_iter()
            .filter(|(f, _)| f != "rejected")
            .map(|(_, v)| v.parse::<u64>().expect("a counter"))
            .collect();
        let distinct: BTreeSet<_> = scalars.iter().copied().collect();
        assert_eq!(distinct.len(), scalars.len(), "distinct: {scalars:?}");
        assert!(!distinct.contains(&0), "non-zero: {scalars:?}");
        let by_name: HashMap<_, _> = stats_fields(&stats).into_iter().collect();
        let t0 = clock::now();
        let summary = ServerSummary {
            stats: stats.clone(),
            ..ServerSummary::default()
        };
        let v = values(&scrape(&render(&summary, 1, t0).unwrap()));
        for (field, _, get) in STATS_COUNTERS {
            assert_eq!(get(&stats).to_string(), by_name[*field], "{field}");
            let key = format!("risp_{field}_total{{}}");
            assert_eq!(v[&key], get(&stats) as f64, "{key}");
        }
    }
}

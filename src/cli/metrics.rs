//! The server's `/metrics` page: every counter the core and the driver
//! keep, in the Prometheus text format ([`super::exposition`]).
//!
//! All metrics start with `risp_`. Counters end in `_total` and count since
//! the process started; durations are in seconds. The core's plain counters
//! are exported by [`STATS_COUNTERS`], one line per [`ServerStats`] field
//! (the metric is `risp_<field>_total`); the breakdowns (datagrams by kind,
//! rejects by reason, sessions by state) and the histograms are written out
//! below it. docs/OPERATING.md lists every metric.

use std::time::{Duration, Instant};

use super::exposition::{Exposition, MetricType};
use crate::net::metrics::{InKind, OutKind};
use crate::net::server::ServerSummary;
use crate::proto::server::{Reject, ServerStats};

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
];

/// Writes the page for `summary` at `now`.
pub fn render(summary: &ServerSummary, max_sessions: usize, now: Instant) -> String {
    let mut e = Exposition::new();
    let s = &summary.stats;
    let m = &summary.metrics;

    e.family(
        "risp_sessions",
        MetricType::Gauge,
        "Live sessions by state: handshake (token not confirmed yet) or established.",
    );
    let handshake = summary.sessions.saturating_sub(summary.sessions_confirmed) as u64;
    e.sample("risp_sessions", &[("state", "handshake")], handshake);
    let established = summary.sessions_confirmed as u64;
    e.sample("risp_sessions", &[("state", "established")], established);
    e.gauge(
        "risp_sessions_limit",
        "Most sessions held at once (--max-sessions); at it new clients are refused busy.",
        max_sessions as u64,
    );
    e.gauge(
        "risp_sessions_peak",
        "Most sessions the server has held at once since it started.",
        summary.peak_sessions as u64,
    );

    e.family(
        "risp_datagrams_received_total",
        MetricType::Counter,
        "Datagrams received, by the kind their prefix claims (other: no valid prefix).",
    );
    for kind in InKind::ALL {
        let v = m.received[kind as usize];
        e.sample("risp_datagrams_received_total", &[("kind", kind.name())], v);
    }
    e.family(
        "risp_datagrams_sent_total",
        MetricType::Counter,
        "Datagrams handed to the socket, by kind (those refused are also send errors).",
    );
    for kind in OutKind::ALL {
        let v = m.sent[kind as usize];
        e.sample("risp_datagrams_sent_total", &[("kind", kind.name())], v);
    }
    e.family(
        "risp_datagrams_rejected_total",
        MetricType::Counter,
        "Datagrams not processed, by reason.",
    );
    for reason in Reject::ALL {
        let v = s.rejected(reason);
        e.sample(
            "risp_datagrams_rejected_total",
            &[("reason", reason.name())],
            v,
        );
    }
    for (field, help, get) in STATS_COUNTERS {
        e.counter(&format!("risp_{field}_total"), help, get(s));
    }
    if let Some(up) = summary.store_up {
        e.gauge(
            "risp_store_up",
            "1 while the shared session store answers, 0 while it does not (new sessions are refused).",
            u64::from(up),
        );
        e.counter(
            "risp_store_write_errors_total",
            "Batches of store writes that failed (the store was unreachable).",
            summary.store_write_errors,
        );
        e.counter(
            "risp_store_writes_dropped_total",
            "Store writes dropped because the writer task fell behind.",
            summary.store_writes_dropped,
        );
    }
    e.counter(
        "risp_send_errors_total",
        "Sends the operating system refused (one destination's problem; logged rate-limited).",
        summary.send_errors,
    );
    e.counter(
        "risp_datagrams_unsent_total",
        "Datagrams failed sends kept from going out (a failure ends the rest of its batch).",
        summary.datagrams_unsent,
    );

    e.histogram(
        "risp_rtt_seconds",
        "First send to acknowledgement of values sent once (the server's RTT samples, the client's ack delay included).",
        &m.rtt,
    );
    e.histogram(
        "risp_delivery_seconds",
        "First send to acknowledgement of every value, resends included.",
        &m.delivery,
    );

    e.counter(
        "risp_loop_turns_total",
        "Turns of the server's I/O loop (at least five a second while it runs).",
        summary.heartbeat.turns(),
    );
    e.gauge(
        "risp_loop_last_turn_age_seconds",
        "Time since the I/O loop last turned (liveness).",
        seconds(summary.heartbeat.age(now)),
    );
    e.finish()
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
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
        let page = render(&busy_summary(t0), 8, t0 + Duration::from_millis(600));
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
        let v = values(&scrape(&render(&summary, 1, t0)));
        for (field, _, get) in STATS_COUNTERS {
            assert_eq!(get(&stats).to_string(), by_name[*field], "{field}");
            let key = format!("risp_{field}_total{{}}");
            assert_eq!(v[&key], get(&stats) as f64, "{key}");
        }
    }
}

//! qlog event logs, JSON-SEQ serialisation (the format of
//! draft-ietf-quic-qlog-main-schema, `qlog_version` 0.3, which qvis reads):
//! each record is led by the record separator 0x1E and ended by a newline.
//! The first record is the header (format, title, the trace's vantage
//! point, its common fields: the session UUID as `group_id` and the
//! reference time); every later one is an event with `time` (milliseconds
//! since the reference time), `name` and `data`.
//!
//! Events, with qvis's names where they fit:
//! - `connectivity:connection_started` and `connectivity:connection_closed`
//!   open and close a session;
//! - `transport:packet_sent` and `transport:packet_received`: one RISP
//!   datagram; `header.packet_type` is its kind (`data`, `ack`, `probe`,
//!   `connecting`, ...), `header.packet_number` its index (data) or its
//!   ack (client messages), and a `risp` object says the rest (`resend`
//!   marks a data datagram sent before, `window` and `rate` what an ack
//!   asks for);
//! - `recovery:packet_lost` with `trigger` `reordering_threshold`,
//!   `time_threshold` or `pto_expired` (a client's probe);
//! - `recovery:metrics_updated`: `congestion_window`, `bytes_in_flight`,
//!   `smoothed_rtt`, `rtt_variance`, `min_rtt` (ms), `pacing_rate`, and
//!   `risp.delivery_rate`. RISP's data datagrams all have one size, so the
//!   window, the flight and the rates count datagrams (and datagrams per
//!   second), not bytes: the header says so (`risp.units`);
//! - `recovery:congestion_state_updated`: the rate controller's phase
//!   (`startup`, `drain`, `probe_up`, `probe_down`, `cruise`).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::proto::trace::{phase_name, Datagram, DatagramKind, Metrics, TraceEvent, Traced};

/// The qlog version written.
pub const QLOG_VERSION: &str = "0.3";

/// The file extension of JSON-SEQ qlog.
pub const QLOG_EXTENSION: &str = "sqlog";

/// The JSON-SEQ record separator (RFC 7464).
pub const RECORD_SEPARATOR: u8 = 0x1E;

/// Whose view a trace is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vantage {
    /// The client's.
    Client,
    /// The server's (the data sender's).
    Server,
}

impl Vantage {
    /// qlog's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Vantage::Client => "client",
            Vantage::Server => "server",
        }
    }
}

/// What the header record says.
#[derive(Debug, Clone)]
pub struct QlogHeader {
    /// The file's title.
    pub title: String,
    /// Whose view.
    pub vantage: Vantage,
    /// Who wrote it (`vantage_point.name`).
    pub writer: String,
    /// The session.
    pub uuid: Uuid,
    /// The reference time: wall-clock milliseconds since the Unix epoch
    /// (`None`: the simulator's virtual clock, written as 0).
    pub reference_time_ms: Option<f64>,
}

/// Writes one session's qlog: the header at once, then one record per
/// event, times relative to `start`.
#[derive(Debug)]
pub struct QlogWriter<W: Write> {
    out: W,
    start: Instant,
    /// The rate-control phase last written.
    phase: Option<u8>,
    events: u64,
}

impl<W: Write> QlogWriter<W> {
    /// Writes the header to `out`; event times count from `start`.
    pub fn new(mut out: W, header: &QlogHeader, start: Instant) -> io::Result<Self> {
        let clock = if header.reference_time_ms.is_some() {
            "wall"
        } else {
            "virtual"
        };
        let record = json!({
            "qlog_version": QLOG_VERSION,
            "qlog_format": "JSON-SEQ",
            "title": header.title,
            "trace": {
                "title": header.title,
                "vantage_point": {"type": header.vantage.name(), "name": header.writer},
                "common_fields": {
                    "group_id": header.uuid.to_string(),
                    "protocol_type": ["RISP"],
                    "reference_time": header.reference_time_ms.unwrap_or(0.0),
                    "time_format": "relative",
                },
                "configuration": {"time_units": "ms"},
            },
            "risp": {"units": "datagrams", "clock": clock},
        });
        write_record(&mut out, &record)?;
        Ok(Self {
            out,
            start,
            phase: None,
            events: 0,
        })
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Writes one event.
    pub fn event(&mut self, at: Instant, name: &str, data: Value) -> io::Result<()> {
        let time = ms(at.saturating_duration_since(self.start));
        self.events += 1;
        write_record(
            &mut self.out,
            &json!({"time": time, "name": name, "data": data}),
        )
    }

    /// `connectivity:connection_started` for a transfer of `len` values.
    pub fn connection_started(&mut self, at: Instant, len: u32) -> io::Result<()> {
        self.event(
            at,
            "connectivity:connection_started",
            json!({"risp": {"len": len}}),
        )
    }

    /// `connectivity:connection_closed`: `clean` for a completed session,
    /// else an error, with the reason in words.
    pub fn connection_closed(&mut self, at: Instant, clean: bool, reason: &str) -> io::Result<()> {
        let trigger = if clean { "clean" } else { "error" };
        self.event(
            at,
            "connectivity:connection_closed",
            json!({"trigger": trigger, "reason": reason}),
        )
    }

    /// Writes what an endpoint recorded (a phase change of its rate
    /// controller adds a `congestion_state_updated`).
    pub fn record(&mut self, t: &Traced) -> io::Result<()> {
        match t.event {
            TraceEvent::Sent(d) => self.event(t.at, "transport:packet_sent", datagram(&d)),
            TraceEvent::Received(d) => self.event(t.at, "transport:packet_received", datagram(&d)),
            TraceEvent::Lost { index, trigger } => self.event(
                t.at,
                "recovery:packet_lost",
                json!({
                    "header": {"packet_type": DatagramKind::Data.name(), "packet_number": index},
                    "trigger": trigger.name(),
                }),
            ),
            TraceEvent::Metrics(m) => self.metrics(t.at, &m),
        }
    }

    /// `recovery:metrics_updated` with every figure `m` has, and a
    /// `congestion_state_updated` first if its phase changed.
    pub fn metrics(&mut self, at: Instant, m: &Metrics) -> io::Result<()> {
        if let Some(p) = m.phase {
            let old = self.phase.replace(p);
            if old.map(phase_name) != Some(phase_name(p)) {
                let mut data = Map::new();
                if let Some(o) = old {
                    data.insert("old".into(), phase_name(o).into());
                }
                data.insert("new".into(), phase_name(p).into());
                self.event(at, "recovery:congestion_state_updated", data.into())?;
            }
        }
        let mut data = Map::new();
        data.insert("congestion_window".into(), m.window.into());
        if let Some(f) = m.in_flight {
            data.insert("bytes_in_flight".into(), f.into());
        }
        for (key, v) in [
            ("smoothed_rtt", m.srtt),
            ("rtt_variance", m.rttvar),
            ("min_rtt", m.min_rtt),
        ] {
            if let Some(d) = v {
                data.insert(key.into(), ms(d).into());
            }
        }
        data.insert("pacing_rate".into(), m.pacing_rate.into());
        if let Some(r) = m.delivery_rate {
            data.insert("risp".into(), json!({"delivery_rate": r}));
        }
        self.event(at, "recovery:metrics_updated", data.into())
    }

    /// `recovery:metrics_updated` with the flight alone (where another
    /// endpoint supplies the rest of the figures: the simulator).
    pub fn flight(&mut self, at: Instant, in_flight: u32) -> io::Result<()> {
        self.event(
            at,
            "recovery:metrics_updated",
            json!({"bytes_in_flight": in_flight}),
        )
    }

    /// Flushes and hands back the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The `data` of a packet event.
fn datagram(d: &Datagram) -> Value {
    let mut risp = Map::new();
    risp.insert("kind".into(), d.kind.name().into());
    if d.kind.is_client() {
        risp.insert("ack".into(), d.index.into());
        risp.insert("window".into(), d.window.into());
        risp.insert("rate".into(), d.rate.into());
    } else if d.kind == DatagramKind::Data {
        risp.insert("index".into(), d.index.into());
        risp.insert("resend".into(), d.resend.into());
    }
    risp.insert("echo".into(), d.echo.into());
    json!({
        "header": {"packet_type": d.kind.name(), "packet_number": d.index},
        "raw": {"length": d.len},
        "risp": risp,
    })
}

/// Milliseconds, to the microsecond.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

fn write_record(out: &mut impl Write, v: &Value) -> io::Result<()> {
    out.write_all(&[RECORD_SEPARATOR])?;
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::trace::LossTrigger;

    fn header() -> QlogHeader {
        QlogHeader {
            title: "t".into(),
            vantage: Vantage::Server,
            writer: "test".into(),
            uuid: Uuid::nil(),
            reference_time_ms: None,
        }
    }

    #[test]
    fn records_are_framed_and_times_relative() {
        let t0 = crate::clock::now();
        let mut w = QlogWriter::new(Vec::new(), &header(), t0).unwrap();
        let lost = Traced {
            at: t0 + Duration::from_micros(1500),
            uuid: Uuid::nil(),
            event: TraceEvent::Lost {
                index: 7,
                trigger: LossTrigger::Probe,
            },
        };
        w.record(&lost).unwrap();
        let bytes = w.finish().unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let records: Vec<&str> = text.split('\u{1e}').skip(1).collect();
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|r| r.ends_with('\n')));
        let ev: Value = serde_json::from_str(records[1]).unwrap();
        assert_eq!(ev["time"], 1.5);
        assert_eq!(ev["data"]["trigger"], "pto_expired");
        assert_eq!(ev["data"]["header"]["packet_number"], 7);
    }

    #[test]
    fn a_phase_change_is_a_state_update_and_cruise_phases_are_one_state() {
        let t0 = crate::clock::now();
        let mut w = QlogWriter::new(Vec::new(), &header(), t0).unwrap();
        for phase in [0, 0, 1, 2, 4, 5] {
            let m = Metrics {
                phase: Some(phase),
                ..Metrics::default()
            };
            w.metrics(t0, &m).unwrap();
        }
        let text = String::from_utf8(w.finish().unwrap()).unwrap();
        let states: Vec<String> = text
            .split('\u{1e}')
            .skip(2)
            .map(|r| serde_json::from_str::<Value>(r).unwrap())
            .filter(|v| v["name"] == "recovery:congestion_state_updated")
            .map(|v| v["data"]["new"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(states, ["startup", "drain", "probe_up", "cruise"]);
    }
}

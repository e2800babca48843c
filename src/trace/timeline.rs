//! A transfer over time, read from a qlog trace (JSON-SEQ, as
//! [`super::qlog`] writes it): the series a timeline plot draws.
//!
//! Reading goes by the field names, not by this crate's types, so any
//! trace with the same event names and fields can be drawn. A trace need
//! not have every series: a client's has no losses, a server's no
//! delivery-rate estimate; the plot says which are empty.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::TraceError;
use super::qlog::RECORD_SEPARATOR;

/// Points `(time in ms, value)`.
pub type Series = Vec<(f64, f64)>;

/// The series of one transfer.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// The trace's title.
    pub title: String,
    /// Its vantage point (`client`, `server`).
    pub vantage: String,
    /// The congestion window (datagrams).
    pub window: Series,
    /// Datagrams in flight.
    pub flight: Series,
    /// Smoothed RTT (ms).
    pub srtt: Series,
    /// Smallest RTT (ms).
    pub min_rtt: Series,
    /// The rate controller's delivery-rate estimate (datagrams/s).
    pub delivery_rate: Series,
    /// Indices acknowledged per second, from the acks' progress.
    pub acked_rate: Series,
    /// Times (ms) of declared losses.
    pub losses: Vec<f64>,
    /// Times (ms) of resends.
    pub resends: Vec<f64>,
    /// Time of the last event (ms).
    pub end: f64,
}

/// The records of a JSON-SEQ text: split at each 0x1E, each parsed
/// alone. `path` names the input in errors.
pub fn parse_records(bytes: &[u8], path: &Path) -> Result<Vec<Value>, TraceError> {
    let bad = |reason: String| TraceError::NotQlog {
        path: path.to_path_buf(),
        reason,
    };
    let Some(first) = bytes.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Err(bad("the file is empty".into()));
    };
    if bytes[first] != RECORD_SEPARATOR {
        return Err(bad(
            "not JSON-SEQ: records must begin with the record separator 0x1E".into(),
        ));
    }
    bytes[first..]
        .split(|&b| b == RECORD_SEPARATOR)
        .skip(1)
        .enumerate()
        .filter(|(_, r)| !r.iter().all(u8::is_ascii_whitespace))
        .map(|(i, r)| serde_json::from_slice(r).map_err(|e| bad(format!("record {}: {e}", i + 1))))
        .collect()
}

impl Timeline {
    /// Reads the trace in `path`.
    pub fn load(path: &Path) -> Result<Self, TraceError> {
        let bytes = std::fs::read(path).map_err(|source| TraceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Reads a trace from `bytes` (`path` names it in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, TraceError> {
        let records = parse_records(bytes, path)?;
        let bad = |reason: &str| TraceError::NotQlog {
            path: PathBuf::from(path),
            reason: reason.into(),
        };
        let (header, events) = records.split_first().ok_or_else(|| bad("no records"))?;
        if header["qlog_format"] != "JSON-SEQ" || !header["trace"].is_object() {
            return Err(bad(
                "the first record is not a qlog JSON-SEQ header (qlog_format, trace)",
            ));
        }
        let mut t = Timeline {
            title: header["title"].as_str().unwrap_or_default().to_string(),
            vantage: header["trace"]["vantage_point"]["type"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            ..Timeline::default()
        };
        let mut acks = Vec::new();
        for ev in events {
            let (Some(time), Some(name)) = (ev["time"].as_f64(), ev["name"].as_str()) else {
                return Err(bad("an event without a numeric time and a name"));
            };
            t.end = t.end.max(time);
            t.add(time, name, &ev["data"], &mut acks);
        }
        t.acked_rate = rate_of(&acks, t.end);
        Ok(t)
    }

    fn add(&mut self, time: f64, name: &str, data: &Value, acks: &mut Series) {
        let risp = &data["risp"];
        match name {
            "recovery:metrics_updated" => {
                for (series, key) in [
                    (&mut self.window, "congestion_window"),
                    (&mut self.flight, "bytes_in_flight"),
                    (&mut self.srtt, "smoothed_rtt"),
                    (&mut self.min_rtt, "min_rtt"),
                ] {
                    if let Some(v) = data[key].as_f64() {
                        series.push((time, v));
                    }
                }
                if let Some(v) = risp["delivery_rate"].as_f64() {
                    self.delivery_rate.push((time, v));
                }
            }
            "recovery:packet_lost" => self.losses.push(time),
            "transport:packet_sent" if risp["resend"] == true => self.resends.push(time),
            "transport:packet_sent" | "transport:packet_received" => {
                if let Some(a) = risp["ack"].as_f64() {
                    acks.push((time, a));
                }
            }
            _ => {}
        }
    }

    /// Whether there is anything to draw.
    pub fn is_empty(&self) -> bool {
        [
            &self.window,
            &self.flight,
            &self.srtt,
            &self.min_rtt,
            &self.delivery_rate,
            &self.acked_rate,
        ]
        .iter()
        .all(|s| s.is_empty())
            && self.losses.is_empty()
            && self.resends.is_empty()
    }
}

/// Buckets of the acked rate over a trace.
const RATE_BUCKETS: usize = 60;

/// Indices acknowledged per second, in [`RATE_BUCKETS`] buckets of the
/// trace's length: each bucket's gain in the highest ack over its width.
fn rate_of(acks: &Series, end: f64) -> Series {
    if acks.len() < 2 || end <= 0.0 {
        return Vec::new();
    }
    let width = end / RATE_BUCKETS as f64;
    let mut out = Vec::with_capacity(RATE_BUCKETS);
    let mut highest = acks[0].1;
    let mut i = 0;
    for b in 0..RATE_BUCKETS {
        let stop = width * (b + 1) as f64;
        let before = highest;
        while i < acks.len() && acks[i].0 <= stop {
            highest = highest.max(acks[i].1);
            i += 1;
        }
        out.push((
            width * (b as f64 + 0.5),
            (highest - before) / (width / 1000.0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acked_rate_is_the_acks_progress_per_second() {
        // 100 indices acknowledged evenly over 600 ms: 166.7 per second.
        let acks: Series = (0..=60)
            .map(|i| (f64::from(i) * 10.0, f64::from(i) * 100.0 / 60.0))
            .collect();
        let r = rate_of(&acks, 600.0);
        assert_eq!(r.len(), RATE_BUCKETS);
        for (_, v) in &r[1..] {
            assert!((v - 1000.0 / 6.0).abs() < 1e-6, "{v}");
        }
    }

    #[test]
    fn text_that_is_not_json_seq_is_refused_with_the_reason() {
        let p = Path::new("x.sqlog");
        let e = Timeline::parse(b"{\"qlog_format\":\"JSON\"}", p).unwrap_err();
        assert!(e.to_string().contains("0x1E"), "{e}");
        let e = Timeline::parse(b"", p).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = Timeline::parse(b"\x1e{\"qlog_format\":\"JSON\"}\n", p).unwrap_err();
        assert!(e.to_string().contains("header"), "{e}");
        let e = Timeline::parse(b"\x1e{oops\n", p).unwrap_err();
        assert!(e.to_string().contains("record 1"), "{e}");
    }
}

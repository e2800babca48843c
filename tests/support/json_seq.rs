//! An independent JSON-SEQ reader (RFC 7464) for the qlog traces: split at
//! the record separator 0x1E, each record a `serde_json::Value` ended by a
//! newline. It shares nothing with the writer's types, so a trace that
//! only the writer could read back fails here.

use std::path::Path;

use serde_json::Value;

/// Every record of the JSON-SEQ file at `path`, the header first.
pub fn read_json_seq(path: &Path) -> Vec<Value> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.first(), Some(&0x1e), "starts with a record separator");
    bytes
        .split(|&b| b == 0x1e)
        .skip(1)
        .map(|r| {
            assert_eq!(r.last(), Some(&b'\n'), "record ends with a newline");
            serde_json::from_slice(r).expect("record is JSON")
        })
        .collect()
}

/// How many of `events` satisfy `f`.
pub fn count(events: &[Value], f: impl Fn(&Value) -> bool) -> u64 {
    events.iter().filter(|e| f(e)).count() as u64
}

/// The event times, in milliseconds, in file order.
pub fn times(events: &[Value]) -> Vec<f64> {
    events
        .iter()
        .map(|e| e["time"].as_f64().expect("every event has a time"))
        .collect()
}

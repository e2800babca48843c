//! The client's end-of-transfer report, as a human summary or one JSON
//! object: two renderings of one [`TransferReport`].

use std::fmt::Write as _;

use serde::Serialize;
use uuid::Uuid;

use crate::proto::client::ClientError;
use crate::stats::{duration_to_ms, duration_to_us, format_duration_us, Summary};
use crate::transfer::{IntervalStats, TransferReport, WindowStats};

/// The `--json` object of `risp-udp client`: one [`TransferReport`] with
/// the figures derived from it. Keys shared with the suite report mean the
/// same there (`rtt` and `delivery` are [`Summary`] objects, `p50_us` to
/// `p999_us`).
#[derive(Debug, Clone, Serialize)]
pub struct ClientJson {
    /// What ran, where and when (as iperf3's `start`); `None` outside the
    /// `client` command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<StartInfo>,
    /// Session key.
    pub uuid: Uuid,
    /// Values requested.
    pub len: u32,
    /// Values delivered.
    pub delivered: u32,
    /// Every value arrived and the checksum matched.
    pub verified: bool,
    /// The server's checksum (when the transfer got that far).
    pub checksum: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Stopped early by Ctrl-C or SIGTERM: the figures are the partial
    /// transfer's.
    pub interrupted: bool,
    /// The process exit code this run ends with.
    pub exit_code: u8,
    /// Wall time, milliseconds.
    pub elapsed_ms: f64,
    /// Values delivered per second.
    pub values_per_sec: f64,
    /// Datagrams the client sent.
    pub datagrams_sent: u64,
    /// Datagrams the client received.
    pub datagrams_received: u64,
    /// Data for values already held.
    pub duplicates: u64,
    /// Datagrams that failed the CRC32C check.
    pub corrupt: u64,
    /// Datagrams that made no sense (bad kind, index past the end).
    pub invalid: u64,
    /// Datagrams the lossy-socket shim dropped (both directions).
    pub shim_dropped: u64,
    /// Acks that asked for retransmission (holes or probes).
    pub retransmit_requests: u64,
    /// Retransmission-timer expiries.
    pub timeouts: u64,
    /// Killswitch reconnections.
    pub reconnects: u64,
    /// Moves to another server of the `--server` list.
    pub failovers: u64,
    /// The client's window.
    pub window: WindowStats,
    /// RTT samples.
    pub rtt: Summary,
    /// Eligible-to-delivered time per value.
    pub delivery: Summary,
    /// Gaps between in-order deliveries.
    pub stall: Summary,
    /// The longest gap between deliveries, ms.
    pub longest_stall_ms: f64,
    /// Peak resident set size of the client process, KiB (see
    /// [`peak_rss_kb`]); `None` where the platform does not say, or where
    /// the report is not the only thing in the process (the demo).
    pub peak_rss_kb: Option<u64>,
    /// Per-interval figures with `--interval` (absent without it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<IntervalStats>,
}

impl ClientJson {
    /// The JSON form of `r`, a run ending with `exit_code`.
    pub fn new(r: &TransferReport, exit_code: u8) -> Self {
        let stall = r.hist.stall.summary();
        Self {
            start: None,
            uuid: r.uuid,
            len: r.len,
            delivered: r.delivered,
            verified: r.verified(),
            checksum: r.checksum,
            error: r.error.as_ref().map(|e| failure_message(r, e)),
            interrupted: false,
            exit_code,
            elapsed_ms: duration_to_ms(r.elapsed),
            values_per_sec: r.values_per_sec(),
            datagrams_sent: r.client.datagrams_sent,
            datagrams_received: r.client.datagrams_received,
            duplicates: r.client.duplicates,
            corrupt: r.client.corrupt,
            invalid: r.client.invalid,
            shim_dropped: r.link.to_server.dropped + r.link.to_client.dropped,
            retransmit_requests: r.client.retransmit_requests,
            timeouts: r.client.timeouts,
            reconnects: r.reconnects,
            failovers: r.failovers(),
            window: r.window,
            rtt: r.hist.rtt.summary(),
            delivery: r.hist.delivery.summary(),
            stall,
            longest_stall_ms: stall.max_us as f64 / 1000.0,
            peak_rss_kb: None,
            intervals: r.intervals.clone(),
        }
    }
}

/// The `start` object of the client's JSON: what ran, where, when, and the
/// flags that shape the run.
#[derive(Debug, Clone, Serialize)]
pub struct StartInfo {
    /// `risp-udp --version`.
    pub version: &'static str,
    /// The wire protocol version spoken.
    pub protocol_version: u8,
    /// When the transfer started, seconds since the Unix epoch.
    pub time_unix_s: u64,
    /// This machine's host name, when the OS says.
    pub host: Option<String>,
    /// The server's address, resolved (with a list, all of them, ", "
    /// between).
    pub server: String,
    /// The flags that shape the run, as given or defaulted.
    pub flags: serde_json::Value,
}

impl StartInfo {
    /// Start metadata for a transfer from `servers` shaped by `flags`.
    pub fn now(servers: &[std::net::SocketAddr], flags: serde_json::Value) -> Self {
        let time_unix_s = crate::clock::wall_time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            version: crate::cli::VERSION,
            protocol_version: crate::proto::wire::VERSION,
            time_unix_s,
            host: host_name(),
            server: list_servers(servers),
            flags,
        }
    }
}

/// The server list for people: "A" or "A, B".
pub fn list_servers(servers: &[std::net::SocketAddr]) -> String {
    let names: Vec<String> = servers.iter().map(ToString::to_string).collect();
    names.join(", ")
}

/// The host name (Linux: `/proc/sys/kernel/hostname`), else `HOSTNAME`.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// A transfer error for people: as its `Display`, with durations rounded
/// (`30.0s`, not `30.004524228s`).
pub fn error_message(e: &ClientError) -> String {
    match e {
        ClientError::NoAnswer(d) => format!(
            "no answer from the server after {}",
            format_duration_us(duration_to_us(*d))
        ),
        ClientError::Timeout(d) => format!(
            "the server went silent for {}",
            format_duration_us(duration_to_us(*d))
        ),
        e => e.to_string(),
    }
}

/// Why the transfer `r` failed with `e`, for people: [`error_message`],
/// then, with more than one server, each server and why it was left.
pub fn failure_message(r: &TransferReport, e: &ClientError) -> String {
    let Some(tried) = r.servers_tried() else {
        return error_message(e);
    };
    let what = match e {
        ClientError::NoAnswer(d) => format!(
            "no answer from any server after {}",
            format_duration_us(duration_to_us(*d))
        ),
        ClientError::Timeout(d) => format!(
            "no server answered for {}",
            format_duration_us(duration_to_us(*d))
        ),
        ClientError::SessionExpired => {
            "every server refused the session (expired or unknown)".to_string()
        }
        e => error_message(e),
    };
    format!("{what}; {tried}")
}

/// The human summary of one transfer, several lines; `interrupted` when
/// Ctrl-C or SIGTERM stopped it.
pub fn human(r: &TransferReport, interrupted: bool) -> String {
    let mut s = String::new();
    let status = if r.verified() {
        "verified".to_string()
    } else if interrupted {
        "INTERRUPTED (partial figures)".to_string()
    } else {
        match &r.error {
            Some(e) => format!("FAILED: {}", failure_message(r, e)),
            None => "FAILED: incomplete".to_string(),
        }
    };
    let _ = writeln!(s, "risp-udp client: {status}");
    let _ = writeln!(s, "  uuid        {}", r.uuid);
    let checksum = r
        .checksum
        .map_or_else(|| "-".to_string(), |c| c.to_string());
    let _ = writeln!(
        s,
        "  values      {} of {} delivered, checksum {}",
        r.delivered, r.len, checksum
    );
    let _ = writeln!(
        s,
        "  elapsed     {} ({:.0} values/s)",
        format_duration_us(duration_to_us(r.elapsed)),
        r.values_per_sec()
    );
    let c = &r.client;
    let _ = writeln!(
        s,
        "  datagrams   sent {}, received {} (duplicates {}, corrupt dropped {}, invalid {})",
        c.datagrams_sent, c.datagrams_received, c.duplicates, c.corrupt, c.invalid
    );
    let _ = write!(
        s,
        "  recovery    retransmit requests {}, timeouts {}, shim dropped {}, reconnects {}",
        c.retransmit_requests,
        c.timeouts,
        r.link.to_server.dropped + r.link.to_client.dropped,
        r.reconnects
    );
    if r.failovers() > 0 {
        let _ = write!(s, ", failovers {}", r.failovers());
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "  window      min {}, max {}, final {}",
        r.window.min, r.window.max, r.window.last
    );
    for (name, h) in [
        ("rtt", &r.hist.rtt),
        ("delivery", &r.hist.delivery),
        ("stall", &r.hist.stall),
    ] {
        let _ = writeln!(s, "  {name:<11} {}", percentiles_row(&h.summary()));
    }
    s
}

/// "p50 … p90 … p99 … p99.9 … max …" with units, or "no samples".
pub fn percentiles_row(p: &Summary) -> String {
    if p.count == 0 {
        return "no samples".to_string();
    }
    let noun = if p.count == 1 { "sample" } else { "samples" };
    format!("{}  ({} {noun})", p.format_row(), p.count)
}

/// Peak resident set size of this process so far, in KiB (the library's,
/// which the health JSON reports too).
pub use crate::net::ops::peak_rss_kb;

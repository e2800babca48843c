//! The client's end-of-transfer report: a human summary or one JSON object.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::net::client::ClientOutcome;
use crate::stats::{format_duration_us, Summary};

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl From<Summary> for Percentiles {
    fn from(s: Summary) -> Self {
        Self {
            count: s.count,
            p50: s.p50_us,
            p90: s.p90_us,
            p99: s.p99_us,
            p999: s.p999_us,
            max: s.max_us,
        }
    }
}

/// Window extremes.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct WindowReport {
    /// Smallest.
    pub min: u32,
    /// Largest.
    pub max: u32,
    /// At the end.
    pub r#final: u32,
}

/// Everything the client reports (the `--json` object).
#[derive(Debug, Clone, Serialize)]
pub struct ClientReport {
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
    pub reconnects: u32,
    /// Window extremes.
    pub window: WindowReport,
    /// RTT samples, µs.
    pub rtt_us: Percentiles,
    /// Eligible-to-delivered time per value, µs.
    pub delivery_us: Percentiles,
    /// Gaps between in-order deliveries, µs.
    pub stall_us: Percentiles,
    /// The longest gap between deliveries, ms.
    pub longest_stall_ms: f64,
    /// Peak resident set size of the client process, KiB (see
    /// [`peak_rss_kb`]); `None` where the platform does not say, or where
    /// the report is not the only thing in the process (the demo).
    pub peak_rss_kb: Option<u64>,
}

impl ClientReport {
    /// Builds the report of one transfer.
    pub fn new(uuid: Uuid, len: u32, o: &ClientOutcome, exit_code: u8) -> Self {
        let secs = o.elapsed.as_secs_f64();
        let stall = o.hist.stall.summary();
        Self {
            uuid,
            len,
            delivered: o.delivered,
            verified: o.result.is_ok() && o.checksum.is_some(),
            checksum: o.checksum,
            error: o.result.as_ref().err().map(|e| e.to_string()),
            exit_code,
            elapsed_ms: secs * 1000.0,
            values_per_sec: if secs > 0.0 {
                f64::from(o.delivered) / secs
            } else {
                0.0
            },
            datagrams_sent: o.stats.datagrams_sent,
            datagrams_received: o.stats.datagrams_received,
            duplicates: o.stats.duplicates,
            corrupt: o.stats.corrupt,
            invalid: o.stats.invalid,
            shim_dropped: o.shim.to_server.dropped + o.shim.to_client.dropped,
            retransmit_requests: o.stats.retransmit_requests,
            timeouts: o.stats.timeouts,
            reconnects: o.reconnects,
            window: WindowReport {
                min: o.window.0,
                max: o.window.1,
                r#final: o.window.2,
            },
            rtt_us: o.hist.rtt.summary().into(),
            delivery_us: o.hist.delivery.summary().into(),
            stall_us: stall.into(),
            longest_stall_ms: stall.max_us as f64 / 1000.0,
            peak_rss_kb: None,
        }
    }

    /// The human summary, several lines.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let status = if self.verified {
            "verified".to_string()
        } else {
            format!("FAILED: {}", self.error.as_deref().unwrap_or("incomplete"))
        };
        let _ = writeln!(s, "risp-udp client: {status}");
        let _ = writeln!(s, "  uuid        {}", self.uuid);
        let checksum = self
            .checksum
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        let _ = writeln!(
            s,
            "  values      {} of {} delivered, checksum {}",
            self.delivered, self.len, checksum
        );
        let _ = writeln!(
            s,
            "  elapsed     {} ({:.0} values/s)",
            format_duration_us((self.elapsed_ms * 1000.0) as u64),
            self.values_per_sec
        );
        let _ = writeln!(
            s,
            "  datagrams   sent {}, received {} (duplicates {}, corrupt dropped {}, invalid {})",
            self.datagrams_sent,
            self.datagrams_received,
            self.duplicates,
            self.corrupt,
            self.invalid
        );
        let _ = writeln!(
            s,
            "  recovery    retransmit requests {}, timeouts {}, shim dropped {}, reconnects {}",
            self.retransmit_requests, self.timeouts, self.shim_dropped, self.reconnects
        );
        let _ = writeln!(
            s,
            "  window      min {}, max {}, final {}",
            self.window.min, self.window.max, self.window.r#final
        );
        for (name, p) in [
            ("rtt", &self.rtt_us),
            ("delivery", &self.delivery_us),
            ("stall", &self.stall_us),
        ] {
            let _ = writeln!(s, "  {name:<11} {}", percentiles_row(p));
        }
        s
    }
}

/// "p50 … p90 … p99 … p99.9 … max …" with units, or "no samples".
pub fn percentiles_row(p: &Percentiles) -> String {
    if p.count == 0 {
        return "no samples".to_string();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
        format_duration_us(p.p50),
        format_duration_us(p.p90),
        format_duration_us(p.p99),
        format_duration_us(p.p999),
        format_duration_us(p.max),
        p.count
    )
}

/// Peak resident set size of this process so far, in KiB.
///
/// On Linux this is the `VmHWM` ("high water mark") line of
/// `/proc/self/status`, which the kernel keeps for the whole life of the
/// process; elsewhere, or if the file cannot be read or parsed, `None`.
/// Call it last: the figure only grows.
pub fn peak_rss_kb() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_vm_hwm(&status)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The KiB figure of the `VmHWM:` line of a `/proc/PID/status` text.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let mut fields = line.split_whitespace();
    let kb = fields.next()?.parse().ok()?;
    matches!(fields.next(), Some("kB") | None).then_some(kb)
}

/// Milliseconds as a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_parsed() {
        let status =
            "Name:\trisp-udp\nVmPeak:\t  20000 kB\nVmHWM:\t    5432 kB\nVmRSS:\t 5000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(5432));
        assert_eq!(parse_vm_hwm("VmRSS:\t 5000 kB\n"), None);
        assert_eq!(parse_vm_hwm("VmHWM:\t lots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn peak_rss_of_this_process_is_known() {
        assert!(peak_rss_kb().is_some_and(|kb| kb > 0));
    }
}

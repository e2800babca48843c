//! The report as a terminal table, CSV and Markdown (JSON is
//! [`SuiteReport::to_json`]).

use std::io::{self, Write};

use super::run::{ProfileReport, SuiteReport};
use crate::stats::format_duration_us;

/// Column titles of the table and the Markdown table.
pub const TABLE_HEADERS: [&str; 17] = [
    "profile",
    "sack",
    "loss",
    "runs ok",
    "done p50",
    "done max",
    "values/s",
    "dgram/value",
    "min",
    "retx",
    "rtt p50",
    "rtt p99",
    "rtt max",
    "deliv p50",
    "deliv p99",
    "deliv max",
    "expect",
];

/// Column names of the CSV output, in order.
pub const CSV_HEADERS: [&str; 27] = [
    "profile",
    "sack",
    "len",
    "clients",
    "loss_to_client",
    "loss_to_server",
    "runs",
    "runs_verified",
    "transfers",
    "transfers_verified",
    "completion_p50_us",
    "completion_max_us",
    "values_per_sec",
    "datagrams_to_client",
    "datagrams_per_value",
    "min_datagrams_per_value",
    "retransmits",
    "rtt_p50_us",
    "rtt_p99_us",
    "rtt_max_us",
    "delivery_p50_us",
    "delivery_p99_us",
    "delivery_max_us",
    "expectations",
    "met",
    "failed",
    "trace_hashes",
];

/// A rate such as 0.1 as `10%`, 0.0199 as `1.99%`.
fn percent(p: f64) -> String {
    let s = format!("{:.2}", p * 100.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

fn loss_cell(p: &ProfileReport) -> String {
    if (p.loss_to_client - p.loss_to_server).abs() < 1e-12 {
        percent(p.loss_to_client)
    } else {
        format!(
            "{}/{}",
            percent(p.loss_to_client),
            percent(p.loss_to_server)
        )
    }
}

fn expect_cell(p: &ProfileReport) -> String {
    if p.expectations.is_empty() {
        "-".to_string()
    } else if p.met {
        "ok".to_string()
    } else {
        "FAIL".to_string()
    }
}

/// The human-readable cells of one profile, matching [`TABLE_HEADERS`].
pub fn table_row(p: &ProfileReport) -> Vec<String> {
    let d = format_duration_us;
    vec![
        p.name.clone(),
        if p.sack { "on" } else { "off" }.to_string(),
        loss_cell(p),
        format!("{}/{}", p.runs_verified, p.runs),
        d(p.completion_p50_us),
        d(p.completion_max_us),
        format!("{:.0}", p.values_per_sec),
        format!("{:.3}", p.datagrams_per_value),
        p.min_datagrams_per_value
            .map_or_else(|| "-".to_string(), |m| format!("{m:.3}")),
        p.retransmits.to_string(),
        d(p.rtt.p50_us),
        d(p.rtt.p99_us),
        d(p.rtt.max_us),
        d(p.delivery.p50_us),
        d(p.delivery.p99_us),
        d(p.delivery.max_us),
        expect_cell(p),
    ]
}

/// The aligned terminal table, then one line per failed expectation and a
/// verdict line.
pub fn write_table(report: &SuiteReport, out: &mut impl Write) -> io::Result<()> {
    let header: Vec<String> = TABLE_HEADERS.iter().map(|s| s.to_string()).collect();
    let rows: Vec<Vec<String>> = report.profiles.iter().map(table_row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            // Text columns left, numbers right.
            if i <= 2 || i == cells.len() - 1 {
                s.push_str(c);
                s.extend(std::iter::repeat_n(' ', pad));
            } else {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let mode = match report.mode {
        super::run::Mode::Virtual => "virtual time",
        super::run::Mode::Real => "real loopback sockets",
    };
    writeln!(out, "suite {} ({mode})", report.suite)?;
    writeln!(out, "{}", line(&header))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "runs ok: runs in which every transfer verified; done: transfer completion time; \
         dgram/value: server datagrams per value, min = 1/(1-p)"
    )?;
    let failures = report.failures();
    for f in &failures {
        writeln!(out, "FAIL {f}")?;
    }
    let with = report
        .profiles
        .iter()
        .filter(|p| !p.expectations.is_empty())
        .count();
    let met = report
        .profiles
        .iter()
        .filter(|p| !p.expectations.is_empty() && p.met)
        .count();
    writeln!(
        out,
        "{met}/{with} profiles with expectations met them{}",
        if failures.is_empty() { "" } else { " (FAILED)" }
    )
}

/// A CSV field, quoted when it must be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A rate for CSV: at most six decimals, trailing zeros dropped (`0.0595`,
/// not the `0.059500000000000004` that arithmetic on rates leaves).
fn csv_float(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A figure of a summary for CSV: empty (no value) when it has no samples.
fn csv_us(summary: &crate::stats::Summary, us: u64) -> String {
    if summary.count == 0 {
        String::new()
    } else {
        us.to_string()
    }
}

/// CSV: a header and one row per profile; raw numbers (µs, fractions).
pub fn write_csv(report: &SuiteReport, out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{}", CSV_HEADERS.join(","))?;
    for p in &report.profiles {
        let failed: Vec<&str> = p
            .expectations
            .iter()
            .filter(|e| !e.met)
            .map(|e| e.name)
            .collect();
        let names: Vec<&str> = p.expectations.iter().map(|e| e.name).collect();
        let hashes: Vec<&str> = p
            .runs_detail
            .iter()
            .map(|r| r.trace_hash.as_str())
            .collect();
        let cells = [
            p.name.clone(),
            p.sack.to_string(),
            p.len.to_string(),
            p.clients.to_string(),
            csv_float(p.loss_to_client),
            csv_float(p.loss_to_server),
            p.runs.to_string(),
            p.runs_verified.to_string(),
            p.transfers.to_string(),
            p.transfers_verified.to_string(),
            p.completion_p50_us.to_string(),
            p.completion_max_us.to_string(),
            format!("{:.1}", p.values_per_sec),
            p.datagrams_to_client.to_string(),
            format!("{:.6}", p.datagrams_per_value),
            p.min_datagrams_per_value
                .map_or_else(String::new, |m| format!("{m:.6}")),
            p.retransmits.to_string(),
            csv_us(&p.rtt, p.rtt.p50_us),
            csv_us(&p.rtt, p.rtt.p99_us),
            csv_us(&p.rtt, p.rtt.max_us),
            csv_us(&p.delivery, p.delivery.p50_us),
            csv_us(&p.delivery, p.delivery.p99_us),
            csv_us(&p.delivery, p.delivery.max_us),
            names.join(" "),
            p.met.to_string(),
            failed.join(" "),
            hashes.join(" "),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
        writeln!(out, "{}", row.join(","))?;
    }
    Ok(())
}

/// A GitHub-flavoured Markdown table: one row per profile, then the failed
/// expectations as a list.
pub fn write_markdown(report: &SuiteReport, out: &mut impl Write) -> io::Result<()> {
    let esc = |s: &str| s.replace('|', "\\|");
    writeln!(out, "| {} |", TABLE_HEADERS.join(" | "))?;
    let align: Vec<&str> = (0..TABLE_HEADERS.len())
        .map(|i| {
            if i <= 2 || i == TABLE_HEADERS.len() - 1 {
                ":--"
            } else {
                "--:"
            }
        })
        .collect();
    writeln!(out, "|{}|", align.join("|"))?;
    for p in &report.profiles {
        let cells: Vec<String> = table_row(p).iter().map(|c| esc(c)).collect();
        writeln!(out, "| {} |", cells.join(" | "))?;
    }
    let failures = report.failures();
    if !failures.is_empty() {
        writeln!(out)?;
        for f in failures {
            writeln!(out, "- FAIL {}", esc(&f))?;
        }
    }
    Ok(())
}

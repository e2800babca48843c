//! Figures about the process itself, for the JSON at `/` and the
//! commands' reports.

/// The process's peak resident set size in KiB, if the platform says.
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
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    let mut fields = line.split_whitespace();
    let kb = fields.next()?.parse().ok()?;
    matches!(fields.next(), Some("kB") | None).then_some(kb)
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

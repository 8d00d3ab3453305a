//! What each process of the network spent, read from Linux's `/proc`: resident
//! set size and its peak, and CPU time in clock ticks.

use std::collections::HashMap;

/// Resident set size of each process (KiB).
pub(super) fn rss_kib(pids: &HashMap<String, u32>) -> HashMap<String, u64> {
    pids.iter()
        .filter_map(|(n, p)| proc_status_kib(*p, "VmRSS:").map(|r| (n.clone(), r)))
        .collect()
}

/// Resets a process's peak RSS (`VmHWM`) to its current RSS (Linux: 5 written to
/// `clear_refs`), so each ciphersuite run on one network reports its own peak; if it
/// fails the lifetime peak is reported, which can only overstate.
pub(super) fn reset_peak_rss(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

pub(super) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// utime + stime of a process, in clock ticks.
pub(super) fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

pub(super) const CLOCK_TICKS_PER_SEC: f64 = 100.0;

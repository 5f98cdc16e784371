//! This process's resident set, for the benchmark examples' memory rows.
//! Shared as `counting.rs` is (`#[path = "support/rss.rs"] mod rss;`).

/// The resident set in bytes, from `VmRSS` of `/proc/self/status` (0
/// where there is none).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

//! Machine and process figures read from `/proc` at scrape time: upstream's `osmon_*` series
//! (RAM use, CPU use, load averages) and the process's resident memory. Where `/proc` is not
//! there (not Linux), the series are left out rather than invented.

use std::sync::Mutex;

use prometheus::proto::MetricFamily;

use crate::metrics::encode::gauge;

/// CPU time counters of `/proc/stat`'s `cpu` line: (busy, total) jiffies.
fn cpu_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().take(8).sum();
    // idle + iowait are not busy.
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Percentage of RAM in use: `100 - MemAvailable / MemTotal * 100`, as upstream computes it.
fn ram_usage(meminfo: &str) -> Option<f64> {
    let field = |name: &str| -> Option<f64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let total = field("MemTotal:")?;
    let available = field("MemAvailable:")?;
    (total > 0.0).then(|| 100.0 - available / total * 100.0)
}

/// Resident set size in bytes from `/proc/self/statm` (pages).
fn rss_bytes(statm: &str) -> Option<f64> {
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    (page > 0).then_some(pages * page as f64)
}

/// Reads the figures; remembers the last CPU sample so utilisation covers the time between
/// scrapes (the first scrape covers the time since boot).
#[derive(Default)]
pub struct System {
    last_cpu: Mutex<Option<(u64, u64)>>,
}

impl System {
    /// The `osmon_*` and process families available on this machine.
    pub fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let read = |p: &str| std::fs::read_to_string(p).ok();
        if let Some(ram) = read("/proc/meminfo").as_deref().and_then(ram_usage) {
            out.push(gauge(
                "osmon_ram_usage",
                "The total percentage usage of operative memory.",
                ram,
            ));
        }
        if let Some(now) = read("/proc/stat").as_deref().and_then(cpu_times) {
            let mut last = match self.last_cpu.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            let (busy0, total0) = last.unwrap_or((0, 0));
            *last = Some(now);
            let total = now.1.saturating_sub(total0);
            if total > 0 {
                out.push(gauge(
                    "osmon_cpu_util",
                    "The sum of the percentage shares of the CPU cycles spent in all busy processor states in average on all CPUs.",
                    now.0.saturating_sub(busy0) as f64 / total as f64 * 100.0,
                ));
            }
        }
        if let Some(la) = read("/proc/loadavg") {
            let avgs: Vec<f64> = la
                .split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect();
            if let [a1, a5, a15] = avgs[..] {
                out.push(gauge(
                    "osmon_cpu_avg1",
                    "The average system load in the last minute.",
                    a1,
                ));
                out.push(gauge(
                    "osmon_cpu_avg5",
                    "The average system load in the last five minutes.",
                    a5,
                ));
                out.push(gauge(
                    "osmon_cpu_avg15",
                    "The average system load in the last 15 minutes.",
                    a15,
                ));
            }
        }
        if let Some(rss) = read("/proc/self/statm").as_deref().and_then(rss_bytes) {
            out.push(gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            cpu_times("cpu  10 0 10 70 10 0 0 0 0 0\ncpu0 1 2 3 4\n"),
            Some((20, 100))
        );
        let ram = ram_usage("MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 250 kB\n");
        assert_eq!(ram, Some(75.0));
        assert!(rss_bytes("100 20 3 4 5 6 7").unwrap_or(0.0) > 0.0);
    }
}

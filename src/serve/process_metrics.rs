//! The standard `process_*` series on `serve`'s `/metrics` (CPU seconds, resident
//! and virtual memory, open and maximum file descriptors, start time), read from
//! `/proc/self` at each scrape, as the Prometheus client libraries of other
//! languages export them. `prometheus-client` has none; where `/proc` cannot be
//! read (not Linux) the series are left out rather than shown as 0.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux
/// architecture, part of the kernel's user-space interface whatever the kernel's
/// own `HZ`.
const TICKS_PER_SECOND: f64 = 100.0;

/// The process's figures now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    pub start_time_seconds: f64,
}

impl ProcessSample {
    /// Reads `/proc/self` (and the boot time in `/proc/stat`); `None` off Linux.
    pub fn read() -> Option<ProcessSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let (cpu_ticks, start_ticks) = parse_stat(&stat)?;
        let boot_time: f64 = boot
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| parse_max_open_files(&limits));
        Some(ProcessSample {
            cpu_seconds: cpu_ticks / TICKS_PER_SECOND,
            resident_bytes: status_kib(&status, "VmRSS:")? * 1024,
            virtual_bytes: status_kib(&status, "VmSize:")? * 1024,
            open_fds,
            max_fds,
            start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
        })
    }
}

/// User plus system CPU ticks, and the start time in ticks after boot, from
/// `/proc/self/stat` (fields 14, 15 and 22; the command name in field 2 may hold
/// spaces and parentheses, so fields are counted after its last `)`).
fn parse_stat(stat: &str) -> Option<(f64, f64)> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first one after the name.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    Some((field(14)? + field(15)?, field(22)?))
}

/// A `Name:   1234 kB` line of `/proc/self/status`, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits` (`None` when unlimited).
fn parse_max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Encodes a [`ProcessSample`] at each scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = ProcessSample::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(sample.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size",
                Some(Unit::Bytes),
                sample.resident_bytes as f64,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size",
                Some(Unit::Bytes),
                sample.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "Open file descriptors",
                None,
                sample.open_fds as f64,
            ),
            (
                "process_start_time",
                "When the process started (Unix time)",
                Some(Unit::Seconds),
                sample.start_time_seconds,
            ),
        ];
        let max_fds = sample.max_fds.map(|n| {
            (
                "process_max_fds",
                "Most file descriptors the process may open",
                None,
                n as f64,
            )
        });
        for (name, help, unit, value) in gauges.into_iter().chain(max_fds) {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 50 0 0 20 0 9 0 123456 10000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some((300.0, 123456.0)));
    }

    #[test]
    fn limits_and_status_lines_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(status_kib("Name:\tx\nVmRSS:\t   2048 kB\n", "VmRSS:"), Some(2048));
    }

    #[test]
    fn this_process_is_read_on_linux() {
        let sample = ProcessSample::read().expect("/proc/self on Linux");
        assert!(sample.resident_bytes > 0 && sample.open_fds > 0, "{sample:?}");
        assert!(sample.start_time_seconds > 1.0e9, "{sample:?}");
    }
}

//! CPU and memory use of this process, for the ServerManager.

use std::time::{Duration, Instant};

/// Cores this process may run on.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resident memory in KiB (0 where /proc is unavailable).
pub fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page_size).unwrap_or(4096) / 1024
}

/// CPU time (user + system) this process has used.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Share of the machine's CPU this process used over `interval`, in percent
/// (100 = every core busy).
pub async fn used_cpu_percent(interval: Duration) -> f64 {
    let (cpu0, t0) = (cpu_time(), Instant::now());
    tokio::time::sleep(interval).await;
    let (cpu1, elapsed) = (cpu_time(), t0.elapsed());
    if elapsed.is_zero() {
        return 0.0;
    }
    100.0 * (cpu1 - cpu0).as_secs_f64() / (elapsed.as_secs_f64() * cpu_count() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_some_memory_and_cpu() {
        assert!(resident_kib() > 0);
        assert!(cpu_count() >= 1);
        let busy_until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < busy_until {}
        assert!(cpu_time() > Duration::ZERO);
    }
}

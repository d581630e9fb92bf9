//! What the benchmarks share: running one child process to its end and reading what it took
//! (wall time, CPU time and peak RSS from `wait4`), without the timing of our own process
//! getting in the way.
#![allow(dead_code)]

use std::process::Command;
use std::time::{Duration, Instant};

/// What one finished child process took.
pub struct Measured {
    pub wall: Duration,
    /// User plus system time.
    pub cpu: Duration,
    /// Peak resident set, KiB.
    pub max_rss_kib: i64,
    /// Its exit code (`None` when a signal ended it).
    pub code: Option<i32>,
}

impl Measured {
    pub fn max_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Spawns `command` (configured by the caller: arguments, environment, where output goes) and
/// waits for it with `wait4`.
pub fn measure(command: &mut Command) -> Measured {
    let start = Instant::now();
    // Reaped below with wait4, which also returns the child's resource usage.
    #[allow(clippy::zombie_processes)]
    let child = command.spawn().expect("spawn the benchmarked program");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child; status and usage are valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(rc, pid, "wait4");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
    }
}

/// The whole machine's CPU time so far, from `/proc/stat`: what every process used, and what
/// the hypervisor took from this VM for others (steal).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    pub busy: Duration,
    pub steal: Duration,
}

impl MachineCpu {
    pub fn now() -> MachineCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .map(|l| l.split_whitespace().skip(1).filter_map(|t| t.parse().ok()).collect())
            .unwrap_or_default();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let secs = |t: u64| Duration::from_secs_f64(t as f64 / hz);
        MachineCpu { busy: secs(tick(0) + tick(1) + tick(2) + tick(5) + tick(6)), steal: secs(tick(7)) }
    }

    /// What was used since `earlier`.
    pub fn since(earlier: MachineCpu) -> MachineCpu {
        let now = MachineCpu::now();
        MachineCpu { busy: now.busy.saturating_sub(earlier.busy), steal: now.steal.saturating_sub(earlier.steal) }
    }
}

/// The last `n` lines of `text` (a failed run's stderr, for the message).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

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

/// The last `n` lines of `text` (a failed run's stderr, for the message).
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

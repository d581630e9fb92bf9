//! The resurrector's meltdown guard, as BOSH has it: when many instances go down together the
//! cause is rarely the VMs (a network partition, an IaaS outage, the director's own host), and
//! recreating them all would make things worse. So repairs are skipped, and the operator told
//! why, while at least `minimum_down` instances and at least `percent_threshold` percent of the
//! deployment went down within the last `time_threshold`.
//!
//! Pure: times are seconds on any monotonic clock the caller keeps; [`DownTracker`] remembers
//! when each instance was first seen down and forgets it once it is seen up again.

use std::collections::{BTreeMap, BTreeSet};

/// The guard's thresholds (BOSH's defaults: 5 instances, 20 %, 600 s).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeltdownConfig {
    pub minimum_down: usize,
    pub percent_threshold: f64,
    pub time_threshold_secs: u64,
}

impl Default for MeltdownConfig {
    fn default() -> MeltdownConfig {
        MeltdownConfig { minimum_down: 5, percent_threshold: 20.0, time_threshold_secs: 600 }
    }
}

/// Why repairs are held back.
#[derive(Debug, Clone, PartialEq)]
pub struct Meltdown {
    pub down: usize,
    pub total: usize,
}

impl Meltdown {
    pub fn explain(&self, cfg: &MeltdownConfig) -> String {
        format!(
            "meltdown: {} of {} instances went down within {} s (at least {} and at least {}% trip the guard); repairing nothing",
            self.down, self.total, cfg.time_threshold_secs, cfg.minimum_down, cfg.percent_threshold
        )
    }
}

/// Whether `down_recently` of `total` instances trips the guard.
pub fn check(down_recently: usize, total: usize, cfg: &MeltdownConfig) -> Option<Meltdown> {
    if total == 0 {
        return None;
    }
    let percent = down_recently as f64 * 100.0 / total as f64;
    (down_recently >= cfg.minimum_down && percent >= cfg.percent_threshold)
        .then_some(Meltdown { down: down_recently, total })
}

/// When each instance was first seen down, while it stays down.
#[derive(Debug, Clone, Default)]
pub struct DownTracker {
    since: BTreeMap<String, u64>,
}

impl DownTracker {
    /// Records a scan at `now`: `down` are the instances found down. Answers how many of them
    /// went down within the time threshold.
    pub fn observe(&mut self, now: u64, down: &BTreeSet<String>, cfg: &MeltdownConfig) -> usize {
        self.since.retain(|uuid, _| down.contains(uuid));
        for uuid in down {
            self.since.entry(uuid.clone()).or_insert(now);
        }
        self.since.values().filter(|&&at| now.saturating_sub(at) <= cfg.time_threshold_secs).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_thresholds_must_be_reached() {
        let cfg = MeltdownConfig::default();
        assert_eq!(check(4, 10, &cfg), None, "under minimum_down");
        assert_eq!(check(5, 10, &cfg), Some(Meltdown { down: 5, total: 10 }));
        assert_eq!(check(5, 30, &cfg), None, "5 of 30 is under 20%");
        assert_eq!(check(6, 30, &cfg), Some(Meltdown { down: 6, total: 30 }), "6 of 30 is exactly 20%");
        assert_eq!(check(1, 1, &cfg), None, "one instance alone never melts down with minimum 5");
        let one = MeltdownConfig { minimum_down: 1, percent_threshold: 50.0, time_threshold_secs: 60 };
        assert!(check(1, 2, &one).is_some());
        assert_eq!(check(0, 0, &cfg), None);
    }

    #[test]
    fn only_instances_down_within_the_window_count() {
        let cfg = MeltdownConfig { minimum_down: 2, percent_threshold: 10.0, time_threshold_secs: 600 };
        let mut t = DownTracker::default();
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(t.observe(0, &set(&["a"]), &cfg), 1);
        assert_eq!(t.observe(300, &set(&["a", "b"]), &cfg), 2);
        // a went down 700 s ago: outside the window.
        assert_eq!(t.observe(700, &set(&["a", "b"]), &cfg), 1);
        // a came back; going down again starts its clock again.
        assert_eq!(t.observe(710, &set(&["b"]), &cfg), 1);
        assert_eq!(t.observe(720, &set(&["a", "b"]), &cfg), 2);
    }
}

//! How converge tells the operator what it is doing, without knowing how it is drawn: a
//! [`Reporter`] receives stages (compile packages, create VMs, update group `web`), the steps of
//! each task inside a stage (an instance or a package) and their outcomes. `src/cli` implements
//! it with progress bars on a terminal, plain lines otherwise, and JSON events with `--json`.

use std::time::Duration;

/// One thing being worked on inside a stage: `web/3f2a…` or `kvd/1.0`.
pub type Task = str;

pub trait Reporter: Send + Sync {
    /// A stage begins, with how many tasks it has.
    fn stage(&self, name: &str, tasks: usize);
    /// A task moved on to `step` (`creating VM`, `starting`, …).
    fn step(&self, task: &Task, step: &str);
    /// A task finished: `Ok(summary)` or `Err(reason)`.
    fn finished(&self, task: &Task, outcome: Result<&str, &str>, elapsed: Duration);
    /// A line worth showing outside any task (a warning, a summary).
    fn note(&self, message: &str);
}

/// Reports nothing (tests, and callers that only want the result).
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn stage(&self, _: &str, _: usize) {}
    fn step(&self, _: &Task, _: &str) {}
    fn finished(&self, _: &Task, _: Result<&str, &str>, _: Duration) {}
    fn note(&self, _: &str) {}
}

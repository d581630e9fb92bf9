//! The resurrector (`rosh watch`): scan a deployment every interval and recreate the instances
//! whose VM is missing or whose agent does not answer, unless the meltdown guard holds repairs
//! back. Every decision is logged through the [`Reporter`] and recorded as an event.
//!
//! Repairs of one round run together, through the same [`Recreator`] cck uses (the converge
//! path, in parallel up to `max_in_flight`), and the next scan waits for them: an instance is
//! never repaired twice at once. Each round's repair holds the deployment lock a deploy takes
//! (`deployment:NAME`, taken by the recreator's deploy pipeline); while a deploy holds it the
//! round repairs nothing and says so, so the two never race. Failing processes are reported, not repaired here (a process that fails on
//! its own config would fail again on a new VM): `cck` offers to restart them.
//!
//! The loop ends, after the repair in flight, when `stop` is notified (Ctrl-C, SIGTERM).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::meltdown::{self, DownTracker, MeltdownConfig};
use super::problem::ProblemKind;
use super::resolve::Recreator;
use super::scan::{ScanOptions, scan};
use crate::converge::deploy::CpiSet;
use crate::converge::report::Reporter;
use crate::ssh::keys::DirectorKey;
use crate::state::{Event, State};

/// How the resurrector runs.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    pub interval: Duration,
    pub meltdown: MeltdownConfig,
    pub scan: ScanOptions,
    /// Stop after this many rounds (tests); `None` runs until stopped.
    pub rounds: Option<u64>,
}

/// What one round decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Round {
    Healthy,
    Repaired(BTreeSet<String>),
    RepairFailed(BTreeSet<String>, String),
    Meltdown { down: usize, total: usize },
    Locked(String),
}

/// Runs the loop until `stop` is notified (or the rounds are done).
#[allow(clippy::too_many_arguments)]
pub async fn watch(
    state: &State,
    cpis: &CpiSet,
    key: &DirectorKey,
    deployment: &str,
    recreator: &dyn Recreator,
    options: WatchOptions,
    reporter: &dyn Reporter,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tracker = DownTracker::default();
    let mut round = 0u64;
    reporter.note(&format!(
        "watching deployment {deployment} every {} s (meltdown: at least {} instances and {}% down within {} s)",
        options.interval.as_secs_f64(),
        options.meltdown.minimum_down,
        options.meltdown.percent_threshold,
        options.meltdown.time_threshold_secs
    ));
    loop {
        round += 1;
        let now = started.elapsed().as_secs();
        match one_round(state, cpis, key, deployment, recreator, &options, reporter, &mut tracker, now).await {
            Ok(_) => {}
            Err(e) => reporter.note(&format!("round {round}: scan failed: {e:#}")),
        }
        if options.rounds.is_some_and(|n| round >= n) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(options.interval) => {}
            _ = stop.notified() => {
                reporter.note("stopping: no repair in flight");
                return Ok(());
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn one_round(
    state: &State,
    cpis: &CpiSet,
    key: &DirectorKey,
    deployment: &str,
    recreator: &dyn Recreator,
    options: &WatchOptions,
    reporter: &dyn Reporter,
    tracker: &mut DownTracker,
    now: u64,
) -> anyhow::Result<Round> {
    let records = state.instances(deployment)?;
    let scanned = scan(state, cpis, key, &records, options.scan).await?;
    for p in scanned.problems.iter().filter(|p| p.kind == ProblemKind::FailingProcesses) {
        reporter.note(&format!("{}: {} (not repaired by watch; `rosh cck` restarts them)", p.instance, p.description));
    }
    let down: BTreeSet<String> = scanned
        .problems
        .iter()
        .filter(|p| matches!(p.kind, ProblemKind::MissingVm | ProblemKind::UnresponsiveAgent))
        .map(|p| p.uuid.clone())
        .collect();
    let recent = tracker.observe(now, &down, &options.meltdown);
    if down.is_empty() {
        let failing = scanned.problems.iter().filter(|p| p.kind == ProblemKind::FailingProcesses).count();
        reporter.note(&format!(
            "{} instance(s) scanned: no VM down{}",
            records.len(),
            if failing > 0 { format!(", {failing} with failing processes") } else { String::new() }
        ));
        return Ok(Round::Healthy);
    }
    reporter.note(&format!(
        "{} instance(s) scanned: {} down ({} within the meltdown window)",
        records.len(),
        down.len(),
        recent
    ));
    let event = |action: &str, object: &str, context: String| {
        let _ = state.record_event(&Event::new(action, "instance", object).deployment(deployment).context(context));
    };
    let with_vm = records.iter().filter(|r| r.vm.is_some()).count();
    if let Some(m) = meltdown::check(recent, with_vm, &options.meltdown) {
        let why = m.explain(&options.meltdown);
        reporter.note(&why);
        let _ =
            state.record_event(&Event::new("meltdown", "deployment", deployment).deployment(deployment).context(why));
        return Ok(Round::Meltdown { down: m.down, total: m.total });
    }
    // A deploy in progress holds the lock: repair nothing this round. The repair itself takes
    // the lock again through the recreator (the deploy pipeline), so it is released here.
    match state.lock(&format!("deployment:{deployment}"), None) {
        Ok(lock) => drop(lock),
        Err(e) => {
            let why = format!("not repairing {} instance(s) this round: {e}", down.len());
            reporter.note(&why);
            return Ok(Round::Locked(why));
        }
    }
    for p in scanned.problems.iter().filter(|p| down.contains(&p.uuid) && p.kind.is_vm()) {
        reporter.note(&format!("{}: {}: recreating", p.instance, p.kind));
        event("resurrect", &p.instance, format!("{}: recreate", p.kind));
    }
    let result = recreator.recreate(deployment, &down).await;
    let labels = |uuids: &BTreeSet<String>| -> Vec<String> {
        records.iter().filter(|r| uuids.contains(&r.uuid)).map(|r| r.label()).collect()
    };
    match result {
        Ok(()) => {
            for label in labels(&down) {
                reporter.note(&format!("{label}: recreated"));
                event("repair", &label, "resurrector: recreate".into());
            }
            Ok(Round::Repaired(down))
        }
        Err(e) => {
            let why = format!("{e:#}");
            for label in labels(&down) {
                reporter.note(&format!("{label}: recreate failed: {why}"));
                let _ = state.record_event(
                    &Event::new("repair", "instance", &label)
                        .deployment(deployment)
                        .context("resurrector: recreate")
                        .error(why.clone()),
                );
            }
            Ok(Round::RepairFailed(down, why))
        }
    }
}

//! `rosh -d NAME cck`, `recreate`, `watch` and `recover-state`: finding what is broken in a
//! deployment and getting it back (issue 7, DESIGN §1 item 3).
//!
//! The work is [`crate::health`]'s; this file owns the flags, the output (BOSH's summary lines,
//! numbered problems, `--json`), the interactive choice of resolutions on a terminal, the
//! signals that end `watch`, and the [`ConvergeRecreator`] through which every recreation runs
//! the deploy pipeline on the deployment's last deployed manifest
//! ([`super::deploy::redeploy_recorded`]: same stemcell, persistent disks re-attached, jobs
//! applied and started, and the deployment lock a deploy takes).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use super::deploy::{Director, redeploy_recorded};
use super::ops::{Selector, instances_of, require_deployment, runtime, select};
use super::progress;
use crate::converge::deploy::DeployOptions;
use crate::converge::report::Reporter;
use crate::health::meltdown::MeltdownConfig;
use crate::health::problem::{Problem, ProblemKind, Resolution, Summary, choose, parse_choice};
use crate::health::resolve::{Outcome, Recreator, Repairer};
use crate::health::scan::{Scan, ScanOptions, scan};
use crate::health::watch::{WatchOptions, watch};
use crate::ssh::keys::DirectorKey;

#[derive(Debug, clap::Args)]
pub struct CckArgs {
    /// Only report problems (exit 1 when there are any); change nothing.
    #[arg(long)]
    pub report: bool,
    /// Resolve every problem with its default resolution (the one marked [auto]).
    #[arg(long)]
    pub auto: bool,
    /// Resolve every problem of a kind this way (`unresponsive_agent=reboot`); repeatable.
    #[arg(long = "resolution", value_name = "PROBLEM=RESOLUTION", value_parser = parse_resolution)]
    pub resolutions: Vec<(ProblemKind, Resolution)>,
    /// How long an agent gets to answer over SSH before it counts as unresponsive.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub agent_timeout: u64,
    #[arg(long)]
    pub json: bool,
}

fn parse_resolution(text: &str) -> Result<(ProblemKind, Resolution), String> {
    parse_choice(text)
}

#[derive(Debug, clap::Args)]
pub struct RecreateArgs {
    /// GROUP, GROUP/INDEX or GROUP/ID; every instance when left out.
    #[arg(value_name = "GROUP[/ID]")]
    pub target: Option<String>,
    /// Only the instances cck would report (of the target, if given).
    #[arg(long)]
    pub failed: bool,
    /// Do not run drain scripts.
    #[arg(long)]
    pub skip_drain: bool,
    /// Override every group's max_in_flight.
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Seconds between scans.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub interval: f64,
    /// Meltdown guard: at least this many instances down…
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub minimum_down: usize,
    /// …and at least this percentage of the deployment…
    #[arg(long, default_value_t = 20.0, value_name = "PERCENT")]
    pub percent_threshold: f64,
    /// …gone down within this many seconds: repair nothing.
    #[arg(long, default_value_t = 600, value_name = "S")]
    pub time_threshold: u64,
    /// How long an agent gets to answer over SSH before it counts as unresponsive.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub agent_timeout: u64,
    /// Stop after this many scans (default: until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N")]
    pub rounds: Option<u64>,
    /// Log as JSON lines.
    #[arg(long)]
    pub json: bool,
}

/// Recreates instances through the deploy pipeline on the last deployed manifest.
pub struct ConvergeRecreator<'a> {
    pub director: &'a Director,
    pub reporter: &'a dyn Reporter,
    pub max_in_flight: Option<u64>,
    pub skip_drain: bool,
    pub cancel: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Recreator for ConvergeRecreator<'_> {
    async fn recreate(&self, deployment: &str, uuids: &BTreeSet<String>) -> anyhow::Result<()> {
        let options = DeployOptions {
            recreate: true,
            canaries: None,
            max_in_flight: self.max_in_flight,
            skip_drain: self.skip_drain,
            only: Some(uuids.clone()),
            ..DeployOptions::default()
        };
        redeploy_recorded(self.director, deployment, options, self.reporter, self.cancel.clone()).await?;
        Ok(())
    }
}

fn scan_options(agent_timeout: u64) -> ScanOptions {
    ScanOptions { agent_timeout: Duration::from_secs(agent_timeout.max(1)), ..ScanOptions::default() }
}

/// Scans deployment `name` (the instances `records`).
async fn scan_deployment(
    director: &Director,
    records: &[crate::state::InstanceRecord],
    options: ScanOptions,
) -> anyhow::Result<Scan> {
    let cpis = director.cpis()?;
    let key = DirectorKey::load_or_create(&director.state_dir)?;
    scan(&director.state, &cpis, &key, records, options).await
}

fn print_problems(problems: &[Problem]) {
    for (i, p) in problems.iter().enumerate() {
        println!("  {}: {}: {}", i + 1, p.kind, p.description);
        for (j, r) in p.kind.resolutions().iter().enumerate() {
            println!("       {}. {}{}", j + 1, r.describe(), if j == 0 { " [auto]" } else { "" });
        }
    }
}

pub fn cck(deployment: Option<String>, args: CckArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "cck")?;
    let director = Director::open()?;
    let records = instances_of(&director.state, &name)?;
    let rt = runtime()?;
    let scanned = rt.block_on(scan_deployment(&director, &records, scan_options(args.agent_timeout)))?;
    let summary = Summary::of(&scanned.observations, &scanned.problems);
    if args.json && args.report {
        let out = serde_json::json!({"deployment": name, "summary": summary, "problems": scanned.problems});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(if scanned.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if !args.json {
        println!("{}", summary.vm_line());
        println!("{}", summary.disk_line());
        println!();
        println!("{} problems", scanned.problems.len());
        print_problems(&scanned.problems);
    }
    if scanned.problems.is_empty() {
        if args.json {
            println!("{}", serde_json::json!({"deployment": name, "summary": summary, "problems": [], "outcomes": []}));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.report {
        return Ok(ExitCode::from(1));
    }

    let given: BTreeMap<ProblemKind, Resolution> = args.resolutions.iter().copied().collect();
    let mut chosen = choose(&scanned.problems, &given, args.auto);
    let open = chosen.iter().filter(|c| c.is_none()).count();
    if open > 0 {
        if !std::io::stdin().is_terminal() {
            bail!(
                "{open} problem(s) have no resolution: give --auto or --resolution PROBLEM=RESOLUTION (or run cck on a terminal to choose)"
            );
        }
        for (problem, choice) in scanned.problems.iter().zip(chosen.iter_mut()) {
            if choice.is_none() {
                *choice = Some(ask(problem)?);
            }
        }
    }
    let chosen: Vec<(Problem, Resolution)> = scanned
        .problems
        .iter()
        .cloned()
        .zip(chosen.into_iter().map(|c| c.expect("every problem has a resolution now")))
        .collect();

    let reporter = progress::reporter(args.json);
    let outcomes = rt.block_on(apply(&director, &name, &chosen, reporter.as_ref(), None, false))?;
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    if args.json {
        let out = serde_json::json!({"deployment": name, "summary": summary, "problems": scanned.problems, "outcomes": outcomes});
        println!("{out}");
    } else {
        println!();
        for o in &outcomes {
            match &o.error {
                None => println!("  {} {}: {}: done", o.problem.instance, o.problem.kind, o.resolution),
                Some(e) => println!("  {} {}: {}: FAILED: {e}", o.problem.instance, o.problem.kind, o.resolution),
            }
        }
        println!("\nResolved {} of {} problems", outcomes.len() - failed, outcomes.len());
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Applies the choices: every resolution but recreation under the deployment lock, then the
/// recreations together through the deploy pipeline (which takes the lock itself).
async fn apply(
    director: &Director,
    name: &str,
    chosen: &[(Problem, Resolution)],
    reporter: &dyn Reporter,
    max_in_flight: Option<u64>,
    skip_drain: bool,
) -> anyhow::Result<Vec<Outcome>> {
    let cpis = director.cpis()?;
    let recreator =
        ConvergeRecreator { director, reporter, max_in_flight, skip_drain, cancel: Arc::new(AtomicBool::new(false)) };
    let repairer = Repairer {
        state: &director.state,
        cpis: &cpis,
        reach: director.reach()?,
        recreator: &recreator,
        watch: Duration::from_secs(60),
    };
    let (recreates, others): (Vec<_>, Vec<_>) = chosen.iter().cloned().partition(|(_, r)| r.recreates());
    let mut outcomes = Vec::new();
    if !others.is_empty() {
        let _lock = director.state.lock(&format!("deployment:{name}"), Some(Duration::from_secs(5)))?;
        outcomes.extend(repairer.apply(&others).await);
    }
    if !recreates.is_empty() {
        outcomes.extend(repairer.apply(&recreates).await);
    }
    Ok(outcomes)
}

/// Asks the operator on the terminal which resolution to apply.
fn ask(problem: &Problem) -> anyhow::Result<Resolution> {
    let options = problem.kind.resolutions();
    let stdin = std::io::stdin();
    loop {
        println!("\nProblem: {}", problem.description);
        for (i, r) in options.iter().enumerate() {
            println!("  {}. {}{}", i + 1, r.describe(), if i == 0 { " [auto]" } else { "" });
        }
        print!("Please choose a resolution [1 - {}]: ", options.len());
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            bail!("no answer (end of input)");
        }
        match line.trim().parse::<usize>() {
            Ok(n) if (1..=options.len()).contains(&n) => return Ok(options[n - 1]),
            _ => println!("`{}` is not one of 1 - {}", line.trim(), options.len()),
        }
    }
}

pub fn recreate(deployment: Option<String>, args: RecreateArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "recreate")?;
    let director = Director::open()?;
    let records = instances_of(&director.state, &name)?;
    let selector = args.target.as_deref().map(Selector::parse).transpose()?;
    let mut chosen = select(&records, selector.as_ref(), &name)?;
    let rt = runtime()?;
    if args.failed {
        let scanned = rt.block_on(scan_deployment(&director, &chosen, ScanOptions::default()))?;
        let failed: BTreeSet<&str> = scanned.problems.iter().map(|p| p.uuid.as_str()).collect();
        chosen.retain(|r| failed.contains(r.uuid.as_str()));
    }
    if chosen.is_empty() {
        println!(
            "Nothing to recreate: no instance{} has a problem",
            if args.target.is_some() { " of the target" } else { "" }
        );
        return Ok(ExitCode::SUCCESS);
    }
    let uuids: BTreeSet<String> = chosen.iter().map(|r| r.uuid.clone()).collect();
    let reporter = progress::reporter(args.json);
    let started = Instant::now();
    let recreator = ConvergeRecreator {
        director: &director,
        reporter: reporter.as_ref(),
        max_in_flight: args.max_in_flight,
        skip_drain: args.skip_drain,
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let result = rt.block_on(recreator.recreate(&name, &uuids));
    let elapsed = started.elapsed();
    for r in &chosen {
        let mut event = crate::state::Event::new("recreate", "instance", r.label()).deployment(&name);
        if let Err(e) = &result {
            event = event.error(format!("{e:#}"));
        }
        let _ = director.state.record_event(&event);
    }
    result.map_err(|e| anyhow!("recreating {} instance(s): {e:#}", chosen.len()))?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"event": "summary", "recreated": chosen.iter().map(|r| r.label()).collect::<Vec<_>>(), "elapsed_ms": elapsed.as_millis() as u64})
        );
    } else {
        println!("Recreated {} instance(s) in {:.1}s", chosen.len(), elapsed.as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn watch_cmd(deployment: Option<String>, args: WatchArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "watch")?;
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    let director = Director::open()?;
    instances_of(&director.state, &name)?;
    let rt = runtime()?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let notify = stop.clone();
    let reporter = progress::reporter(args.json);
    rt.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("watch: stopping (a repair in flight finishes first)");
        notify.notify_one();
    });
    let options = WatchOptions {
        interval: Duration::from_secs_f64(args.interval),
        meltdown: MeltdownConfig {
            minimum_down: args.minimum_down,
            percent_threshold: args.percent_threshold,
            time_threshold_secs: args.time_threshold,
        },
        scan: scan_options(args.agent_timeout),
        rounds: args.rounds,
    };
    rt.block_on(async {
        let cpis = director.cpis()?;
        let key = DirectorKey::load_or_create(&director.state_dir)?;
        let recreator = ConvergeRecreator {
            director: &director,
            reporter: reporter.as_ref(),
            max_in_flight: None,
            skip_drain: false,
            cancel: Arc::new(AtomicBool::new(false)),
        };
        watch(&director.state, &cpis, &key, &name, &recreator, options, reporter.as_ref(), stop).await
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, clap::Args)]
pub struct RecoverStateArgs {
    #[arg(long)]
    pub json: bool,
}

/// `recover-state`: rebuilds the deployment's records from the CPIs' tagged VMs and their
/// agents (see [`crate::health::recover`] for what can and cannot be recovered).
pub fn recover_state(deployment: Option<String>, args: RecoverStateArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "recover-state")?;
    let director = Director::open()?;
    let config = director.cpi_config()?;
    let env = crate::converge::cpis::CpiEnv::new(&director.state_dir)?;
    let mut locals = BTreeMap::new();
    for def in config.cpis.iter().filter(|d| matches!(d.kind, crate::manifest::model::cpi_config::CpiKind::Local)) {
        locals.insert(def.name.clone(), crate::converge::cpis::open_local(def, &env)?);
    }
    let cpis = director.cpis()?;
    let key = DirectorKey::load_or_create(&director.state_dir)?;
    let _lock = director.state.lock(&format!("deployment:{name}"), Some(Duration::from_secs(5)))?;
    let recovered =
        runtime()?.block_on(crate::health::recover::recover(&director.state, &cpis, &locals, &key, &name))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&recovered)?);
    } else {
        for (label, answered) in &recovered.instances {
            println!(
                "  {label}: recovered{}",
                if *answered { "" } else { " (agent did not answer: marked dirty, the next deploy replaces its VM)" }
            );
        }
        for (what, why) in &recovered.skipped {
            println!("  {what}: not recovered: {why}");
        }
        println!(
            "\nRecovered {} instance(s) and {} disk(s) of deployment {name}. The deployed manifest is not kept in the cloud: deploy it again (unchanged instances are left alone) before `recreate` or `watch`.",
            recovered.instances.len(),
            recovered.disks
        );
    }
    Ok(if recovered.instances.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

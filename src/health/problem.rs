//! What cck finds and what it may do about it: the observation of one instance (what the CPI,
//! the state and the agent said), the problems read from it, their resolutions with the
//! `[auto]` default of each, and the summary lines.
//!
//! Pure: [`classify`] takes an [`Observation`] gathered by [`super::scan`] and answers the
//! problems; nothing here talks to a CPI, an agent or the state. The rule that separates a
//! missing VM from an unresponsive agent: a VM is missing when its CPI no longer knows it at
//! all (`has_vm` false and, where the CPI can list its VMs, not listed either); it is an
//! unresponsive agent when the VM still exists (`has_vm` true, or still listed) but its agent
//! does not answer over SSH within the scan's timeout. So a SIGKILLed local agent (its
//! directory kept, `has_vm` false) is an unresponsive agent, and a deleted VM directory is a
//! missing VM.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of problem, as `--resolution PROBLEM=RESOLUTION` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    MissingVm,
    UnresponsiveAgent,
    FailingProcesses,
    MissingDisk,
    InactiveDisk,
    MountInfoMismatch,
}

/// What may be done about a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// A new VM through the converge path, persistent disk re-attached.
    Recreate,
    /// The same, waiting for the jobs' processes to run (converge always watches them).
    RecreateAndWait,
    /// Forget the VM (or disk) in the state; nothing in the cloud is touched.
    DeleteReference,
    /// The CPI's `reboot_vm`, then wait for the agent.
    Reboot,
    /// Stop and start the instance's jobs.
    Restart,
    /// Make the disk the instance's active disk.
    Activate,
    /// Detach and delete the disk, and forget it.
    Delete,
    /// Attach the disk to the VM again and mount it.
    Reattach,
    /// Attach the disk, reboot the VM, mount it.
    ReattachAndReboot,
    Skip,
}

pub const ALL_KINDS: [ProblemKind; 6] = [
    ProblemKind::MissingVm,
    ProblemKind::UnresponsiveAgent,
    ProblemKind::FailingProcesses,
    ProblemKind::MissingDisk,
    ProblemKind::InactiveDisk,
    ProblemKind::MountInfoMismatch,
];

const ALL_RESOLUTIONS: [Resolution; 10] = [
    Resolution::Recreate,
    Resolution::RecreateAndWait,
    Resolution::DeleteReference,
    Resolution::Reboot,
    Resolution::Restart,
    Resolution::Activate,
    Resolution::Delete,
    Resolution::Reattach,
    Resolution::ReattachAndReboot,
    Resolution::Skip,
];

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::MissingVm => "missing_vm",
            ProblemKind::UnresponsiveAgent => "unresponsive_agent",
            ProblemKind::FailingProcesses => "failing_processes",
            ProblemKind::MissingDisk => "missing_disk",
            ProblemKind::InactiveDisk => "inactive_disk",
            ProblemKind::MountInfoMismatch => "mount_info_mismatch",
        }
    }

    /// The resolutions offered, the `[auto]` default first.
    pub fn resolutions(self) -> &'static [Resolution] {
        use Resolution::*;
        match self {
            ProblemKind::MissingVm => &[Recreate, RecreateAndWait, DeleteReference],
            ProblemKind::UnresponsiveAgent => &[Recreate, Reboot, Skip],
            ProblemKind::FailingProcesses => &[Restart, Recreate, Skip],
            ProblemKind::MissingDisk => &[DeleteReference, Skip],
            ProblemKind::InactiveDisk => &[Activate, Delete, Skip],
            ProblemKind::MountInfoMismatch => &[Reattach, ReattachAndReboot, Skip],
        }
    }

    /// The resolution `--auto` picks.
    pub fn auto(self) -> Resolution {
        self.resolutions()[0]
    }

    /// Whether the problem is about the instance's VM (else about one of its disks).
    pub fn is_vm(self) -> bool {
        matches!(self, ProblemKind::MissingVm | ProblemKind::UnresponsiveAgent | ProblemKind::FailingProcesses)
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProblemKind {
    type Err = String;
    fn from_str(s: &str) -> Result<ProblemKind, String> {
        ALL_KINDS.into_iter().find(|k| k.as_str() == s).ok_or_else(|| {
            format!("unknown problem `{s}`: expected one of {}", ALL_KINDS.map(|k| k.as_str()).join(", "))
        })
    }
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Recreate => "recreate",
            Resolution::RecreateAndWait => "recreate_and_wait",
            Resolution::DeleteReference => "delete_reference",
            Resolution::Reboot => "reboot",
            Resolution::Restart => "restart",
            Resolution::Activate => "activate",
            Resolution::Delete => "delete",
            Resolution::Reattach => "reattach",
            Resolution::ReattachAndReboot => "reattach_and_reboot",
            Resolution::Skip => "skip",
        }
    }

    /// What the operator is shown when choosing.
    pub fn describe(self) -> &'static str {
        match self {
            Resolution::Recreate => "Recreate VM (persistent disk re-attached)",
            Resolution::RecreateAndWait => "Recreate VM and wait for its processes to run",
            Resolution::DeleteReference => "Delete the reference from the state (nothing in the cloud is touched)",
            Resolution::Reboot => "Reboot VM",
            Resolution::Restart => "Restart the instance's jobs",
            Resolution::Activate => "Activate disk",
            Resolution::Delete => "Delete disk (detached first; its data is lost)",
            Resolution::Reattach => "Reattach disk to instance",
            Resolution::ReattachAndReboot => "Reattach disk and reboot instance",
            Resolution::Skip => "Skip for now",
        }
    }

    /// Whether it goes through the converge path (a new VM).
    pub fn recreates(self) -> bool {
        matches!(self, Resolution::Recreate | Resolution::RecreateAndWait)
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Resolution {
    type Err = String;
    fn from_str(s: &str) -> Result<Resolution, String> {
        ALL_RESOLUTIONS.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("unknown resolution `{s}`: expected one of {}", ALL_RESOLUTIONS.map(|r| r.as_str()).join(", "))
        })
    }
}

/// `--resolution PROBLEM=RESOLUTION`, checked against what the problem offers.
pub fn parse_choice(text: &str) -> Result<(ProblemKind, Resolution), String> {
    let (kind, resolution) =
        text.split_once('=').ok_or_else(|| format!("`{text}`: expected PROBLEM=RESOLUTION (missing_vm=recreate)"))?;
    let kind: ProblemKind = kind.trim().parse()?;
    let resolution: Resolution = resolution.trim().parse()?;
    if !kind.resolutions().contains(&resolution) {
        return Err(format!(
            "`{text}`: {kind} cannot be resolved with {resolution}; it offers {}",
            kind.resolutions().iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((kind, resolution))
}

/// What the agent of an instance's VM said, if it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "agent", rename_all = "snake_case")]
pub enum AgentObservation {
    /// Not asked: the VM does not exist (or there is none on record).
    NotAsked,
    /// No answer over SSH within the timeout, or not the agent's.
    Unresponsive { reason: String },
    Answered {
        /// Processes not running (`job/name state`) while the instance is meant to be started.
        failing: Vec<String>,
        /// Disk ids the agent has mounted at `store/`.
        mounted: Vec<String>,
    },
}

/// A disk of the instance, as the state, the CPI and the agent see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DiskObservation {
    pub cid: String,
    /// The state's active flag.
    pub active: bool,
    /// The CPI's `has_disk`.
    pub exists: bool,
    /// Whether the CPI's `get_disks` of the instance's VM lists it (`None`: not asked, no VM).
    pub attached: Option<bool>,
}

/// Everything the scan learnt about one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observation {
    pub deployment: String,
    /// `group/uuid`
    pub instance: String,
    pub uuid: String,
    pub index: u64,
    /// The VM cid on record, if any.
    pub vm_cid: Option<String>,
    /// The instance is meant to run its jobs (state `started`).
    pub started: bool,
    /// The CPI's `has_vm` (`None`: no VM on record, or the CPI failed to answer).
    pub has_vm: Option<bool>,
    /// Whether the CPI's `list_vms` has the VM (`None`: the CPI cannot list, or no VM).
    pub listed: Option<bool>,
    pub agent: AgentObservation,
    pub disks: Vec<DiskObservation>,
}

impl Observation {
    /// The VM exists as far as the CPI knows (see the module doc).
    pub fn vm_exists(&self) -> bool {
        self.has_vm == Some(true) || self.listed == Some(true)
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub deployment: String,
    /// `group/uuid`
    pub instance: String,
    pub uuid: String,
    pub index: u64,
    pub vm_cid: Option<String>,
    /// The disk the problem is about (disk problems).
    pub disk_cid: Option<String>,
    /// What was seen, for the operator.
    pub description: String,
}

impl Problem {
    fn new(obs: &Observation, kind: ProblemKind, disk: Option<&str>, description: String) -> Problem {
        Problem {
            kind,
            deployment: obs.deployment.clone(),
            instance: obs.instance.clone(),
            uuid: obs.uuid.clone(),
            index: obs.index,
            vm_cid: obs.vm_cid.clone(),
            disk_cid: disk.map(str::to_string),
            description,
        }
    }
}

/// The problems of one observed instance. An instance without a VM on record has no VM problem
/// (it was stopped with `--hard`, or its reference deleted: `deploy` makes it one).
pub fn classify(obs: &Observation) -> Vec<Problem> {
    let mut out = Vec::new();
    let label = format!("{} ({})", obs.instance, obs.index);
    if let Some(cid) = &obs.vm_cid {
        if !obs.vm_exists() {
            out.push(Problem::new(
                obs,
                ProblemKind::MissingVm,
                None,
                format!("VM for '{label}' with cloud ID '{cid}' missing"),
            ));
        } else {
            match &obs.agent {
                AgentObservation::Unresponsive { reason } => out.push(Problem::new(
                    obs,
                    ProblemKind::UnresponsiveAgent,
                    None,
                    format!("VM for '{label}' with cloud ID '{cid}' is not responding: {reason}"),
                )),
                AgentObservation::Answered { failing, .. } if obs.started && !failing.is_empty() => {
                    out.push(Problem::new(
                        obs,
                        ProblemKind::FailingProcesses,
                        None,
                        format!("'{label}' has processes not running: {}", failing.join(", ")),
                    ))
                }
                _ => {}
            }
        }
    }
    for disk in &obs.disks {
        if !disk.exists {
            out.push(Problem::new(
                obs,
                ProblemKind::MissingDisk,
                Some(&disk.cid),
                format!("Disk '{}' of '{label}' is missing from the cloud", disk.cid),
            ));
        } else if !disk.active {
            out.push(Problem::new(
                obs,
                ProblemKind::InactiveDisk,
                Some(&disk.cid),
                format!("Disk '{}' of '{label}' is inactive", disk.cid),
            ));
        } else if obs.vm_cid.is_some() && obs.vm_exists() {
            // Mount information needs a VM that exists and an agent that answered.
            let mounted = match &obs.agent {
                AgentObservation::Answered { mounted, .. } => Some(mounted.contains(&disk.cid)),
                _ => None,
            };
            let where_missing = match (disk.attached, mounted) {
                (Some(false), Some(false)) => Some("not attached by the CPI and not mounted by the agent"),
                (Some(false), _) => Some("not attached to its VM by the CPI"),
                (_, Some(false)) => Some("not mounted by the agent"),
                _ => None,
            };
            if let Some(what) = where_missing {
                out.push(Problem::new(
                    obs,
                    ProblemKind::MountInfoMismatch,
                    Some(&disk.cid),
                    format!("Disk '{}' of '{label}' is {what}", disk.cid),
                ));
            }
        }
    }
    out
}

/// BOSH's two summary lines: VMs (`N OK, N unresponsive, N missing, N failing`) and disks
/// (`N OK, N missing, N inactive, N mount mismatch`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub vms: usize,
    pub vms_ok: usize,
    pub unresponsive: usize,
    pub missing_vms: usize,
    pub failing: usize,
    pub disks: usize,
    pub disks_ok: usize,
    pub missing_disks: usize,
    pub inactive_disks: usize,
    pub mount_mismatch: usize,
}

impl Summary {
    pub fn of(observations: &[Observation], problems: &[Problem]) -> Summary {
        let count = |k: ProblemKind| problems.iter().filter(|p| p.kind == k).count();
        let with_vm = observations.iter().filter(|o| o.vm_cid.is_some()).count();
        let vm_problems: std::collections::BTreeSet<&str> =
            problems.iter().filter(|p| p.kind.is_vm()).map(|p| p.uuid.as_str()).collect();
        let disks = observations.iter().map(|o| o.disks.len()).sum::<usize>();
        let disk_problems: std::collections::BTreeSet<&str> =
            problems.iter().filter_map(|p| if p.kind.is_vm() { None } else { p.disk_cid.as_deref() }).collect();
        Summary {
            vms: with_vm,
            vms_ok: with_vm - vm_problems.len(),
            unresponsive: count(ProblemKind::UnresponsiveAgent),
            missing_vms: count(ProblemKind::MissingVm),
            failing: count(ProblemKind::FailingProcesses),
            disks,
            disks_ok: disks - disk_problems.len(),
            missing_disks: count(ProblemKind::MissingDisk),
            inactive_disks: count(ProblemKind::InactiveDisk),
            mount_mismatch: count(ProblemKind::MountInfoMismatch),
        }
    }

    pub fn vm_line(&self) -> String {
        format!(
            "Scanning {} VMs: {} OK, {} unresponsive, {} missing, {} failing",
            self.vms, self.vms_ok, self.unresponsive, self.missing_vms, self.failing
        )
    }

    pub fn disk_line(&self) -> String {
        format!(
            "Scanning {} persistent disks: {} OK, {} missing, {} inactive, {} mount mismatch",
            self.disks, self.disks_ok, self.missing_disks, self.inactive_disks, self.mount_mismatch
        )
    }
}

/// The resolution of each problem: `--resolution` choices by kind, else (with `auto`) the
/// default, else `None` (the operator is asked).
pub fn choose(problems: &[Problem], given: &BTreeMap<ProblemKind, Resolution>, auto: bool) -> Vec<Option<Resolution>> {
    problems.iter().map(|p| given.get(&p.kind).copied().or(auto.then(|| p.kind.auto()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs() -> Observation {
        Observation {
            deployment: "demo".into(),
            instance: "kv/u1".into(),
            uuid: "u1".into(),
            index: 0,
            vm_cid: Some("vm-1".into()),
            started: true,
            has_vm: Some(true),
            listed: Some(true),
            agent: AgentObservation::Answered { failing: vec![], mounted: vec!["disk-1".into()] },
            disks: vec![DiskObservation { cid: "disk-1".into(), active: true, exists: true, attached: Some(true) }],
        }
    }

    fn kinds(o: &Observation) -> Vec<ProblemKind> {
        classify(o).into_iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_healthy_instance_has_no_problem() {
        assert!(classify(&obs()).is_empty());
    }

    #[test]
    fn a_vm_the_cpi_still_lists_is_unresponsive_not_missing() {
        // A SIGKILLed local agent: has_vm false (the process is dead), still listed.
        let mut o = obs();
        o.has_vm = Some(false);
        o.agent = AgentObservation::Unresponsive { reason: "connection refused".into() };
        assert_eq!(kinds(&o), [ProblemKind::UnresponsiveAgent]);
        // A CPI that cannot list: has_vm alone decides.
        o.listed = None;
        assert_eq!(kinds(&o), [ProblemKind::MissingVm]);
        o.has_vm = Some(true);
        assert_eq!(kinds(&o), [ProblemKind::UnresponsiveAgent]);
    }

    #[test]
    fn a_vm_the_cpi_forgot_is_missing_and_its_mounts_are_not_judged() {
        let mut o = obs();
        o.has_vm = Some(false);
        o.listed = Some(false);
        o.agent = AgentObservation::NotAsked;
        o.disks[0].attached = None;
        assert_eq!(kinds(&o), [ProblemKind::MissingVm]);
    }

    #[test]
    fn failing_processes_count_only_for_started_instances() {
        let mut o = obs();
        o.agent =
            AgentObservation::Answered { failing: vec!["web/web failing".into()], mounted: vec!["disk-1".into()] };
        assert_eq!(kinds(&o), [ProblemKind::FailingProcesses]);
        o.started = false;
        assert!(kinds(&o).is_empty());
    }

    #[test]
    fn disk_problems_are_told_apart() {
        let mut o = obs();
        o.disks[0].attached = Some(false);
        assert_eq!(kinds(&o), [ProblemKind::MountInfoMismatch]);
        o.disks[0].attached = Some(true);
        o.agent = AgentObservation::Answered { failing: vec![], mounted: vec![] };
        assert_eq!(kinds(&o), [ProblemKind::MountInfoMismatch]);
        o.disks[0].active = false;
        assert_eq!(kinds(&o), [ProblemKind::InactiveDisk]);
        o.disks[0].exists = false;
        assert_eq!(kinds(&o), [ProblemKind::MissingDisk]);
        // No VM on record (stop --hard): the disk is not expected to be attached.
        let mut detached = obs();
        detached.vm_cid = None;
        detached.has_vm = None;
        detached.listed = None;
        detached.agent = AgentObservation::NotAsked;
        detached.disks[0].attached = None;
        assert!(kinds(&detached).is_empty());
    }

    #[test]
    fn defaults_and_choices_follow_the_issue() {
        assert_eq!(ProblemKind::MissingVm.auto(), Resolution::Recreate);
        assert_eq!(ProblemKind::UnresponsiveAgent.auto(), Resolution::Recreate);
        assert_eq!(ProblemKind::FailingProcesses.auto(), Resolution::Restart);
        assert_eq!(ProblemKind::MissingDisk.auto(), Resolution::DeleteReference);
        assert_eq!(ProblemKind::InactiveDisk.auto(), Resolution::Activate);
        assert_eq!(ProblemKind::MountInfoMismatch.auto(), Resolution::Reattach);
        assert_eq!(parse_choice("unresponsive_agent=reboot"), Ok((ProblemKind::UnresponsiveAgent, Resolution::Reboot)));
        assert!(
            parse_choice("missing_vm=reboot")
                .unwrap_err()
                .contains("offers recreate, recreate_and_wait, delete_reference")
        );
        assert!(parse_choice("missing_vm").is_err());
        assert!(parse_choice("lost_vm=skip").unwrap_err().contains("unknown problem"));

        let mut o = obs();
        o.has_vm = Some(false);
        o.listed = Some(false);
        let mut p = classify(&o);
        let mut f = obs();
        f.agent = AgentObservation::Answered { failing: vec!["x".into()], mounted: vec!["disk-1".into()] };
        p.extend(classify(&f));
        let given = BTreeMap::from([(ProblemKind::FailingProcesses, Resolution::Skip)]);
        assert_eq!(choose(&p, &given, true), [Some(Resolution::Recreate), Some(Resolution::Skip)]);
        assert_eq!(choose(&p, &given, false), [None, Some(Resolution::Skip)]);
    }

    #[test]
    fn summary_lines_count_vms_and_disks() {
        let mut missing = obs();
        missing.has_vm = Some(false);
        missing.listed = Some(false);
        missing.agent = AgentObservation::NotAsked;
        let mut detached_disk = obs();
        detached_disk.uuid = "u2".into();
        detached_disk.disks[0].cid = "disk-2".into();
        detached_disk.disks[0].attached = Some(false);
        let all = vec![obs(), missing, detached_disk];
        let problems: Vec<Problem> = all.iter().flat_map(classify).collect();
        let s = Summary::of(&all, &problems);
        assert_eq!(s.vm_line(), "Scanning 3 VMs: 2 OK, 0 unresponsive, 1 missing, 0 failing");
        assert_eq!(s.disk_line(), "Scanning 3 persistent disks: 2 OK, 0 missing, 0 inactive, 1 mount mismatch");
    }
}

//! The plan as a value: what `rosh plan` prints and saves and `deploy --plan` applies.
//!
//! A [`Plan`] holds where it was made from ([`Provenance`]: the state serial, digests of the
//! manifest inputs and configs, the release and stemcell versions), every instance's action
//! with its reasons and disk change ([`InstancePlan`]), what compiles and what the cache
//! already has, the rollout order (batches of groups with canaries and max_in_flight, and the
//! link dependencies that constrain them) and the manifest diff (already redacted). It holds no
//! secret: the diff is redacted before it gets here, and inputs are kept as digests. Pure:
//! built from values, rendered to text or JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::changes::Action;
use super::desired::{DesiredDeployment, GroupLifecycle};
use super::diff::{DiffLine, LineKind};
use super::graph::{LinkGraph, batches};
use super::reconcile::{InstancePlan, Reconciled};

/// The plan file's format version.
pub const FORMAT: u32 = 1;

/// What a plan was made from; `deploy --plan` refuses it when any of it changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub deployment: String,
    /// The state serial when the plan was made.
    pub state_serial: u64,
    /// sha256 over the manifest file, the ops files and the variables given on the command line.
    pub manifest_sha256: String,
    pub cloud_config_sha256: String,
    pub runtime_configs_sha256: String,
    /// `name/version`, sorted.
    pub releases: Vec<String>,
    pub stemcells: Vec<String>,
    /// `--recreate` and the like, as given.
    pub options: BTreeMap<String, String>,
}

impl Provenance {
    /// How `now` differs from `self` (the plan's), one sentence each; empty when current.
    pub fn changes_since(&self, now: &Provenance) -> Vec<String> {
        let mut out = Vec::new();
        if self.deployment != now.deployment {
            out.push(format!("the plan is for deployment `{}`, not `{}`", self.deployment, now.deployment));
        }
        if self.state_serial != now.state_serial {
            out.push(format!(
                "the state changed: the plan was made at state serial {}, the state is now at serial {}",
                self.state_serial, now.state_serial
            ));
        }
        let pairs = [
            ("the manifest, its ops files or variables", &self.manifest_sha256, &now.manifest_sha256),
            ("the cloud config", &self.cloud_config_sha256, &now.cloud_config_sha256),
            ("the runtime configs", &self.runtime_configs_sha256, &now.runtime_configs_sha256),
        ];
        for (what, then, current) in pairs {
            if then != current {
                out.push(format!("{what} changed since the plan was made"));
            }
        }
        if self.releases != now.releases {
            out.push(format!("releases were {}, are now {}", self.releases.join(", "), now.releases.join(", ")));
        }
        if self.stemcells != now.stemcells {
            out.push(format!("stemcells were {}, are now {}", self.stemcells.join(", "), now.stemcells.join(", ")));
        }
        if self.options != now.options {
            out.push(format!("the plan was made with options {:?}, the deploy has {:?}", self.options, now.options));
        }
        out
    }
}

/// One package for one stemcell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompileItem {
    pub release: String,
    pub package: String,
    pub version: String,
    /// `os/version` of the stemcell it is compiled for.
    pub stemcell: String,
    /// Already in the compiled-package cache.
    pub cached: bool,
}

/// A group's rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRollout {
    pub name: String,
    pub canaries: u64,
    pub max_in_flight: u64,
    /// Instances with something to do.
    pub changing: usize,
    pub instances: usize,
    /// `vm_strategy: create-swap-delete`: of the VMs this group replaces, how many get their
    /// new VM while the old one runs (the others hold a manual-network address: delete-create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swapped: Option<usize>,
}

/// A link dependency between groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkDependency {
    pub consumer: String,
    pub provider: String,
    pub link: String,
    pub optional: bool,
}

/// The counts of the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    /// Update, restart and recreate together.
    pub update: usize,
    pub recreate: usize,
    pub restart: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub compile: usize,
    pub cached: usize,
    pub disk_changes: usize,
}

impl Summary {
    pub fn has_changes(&self) -> bool {
        self.create + self.update + self.delete + self.compile + self.disk_changes > 0
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plan: {} to create, {} to update", self.create, self.update)?;
        let mut inner = Vec::new();
        if self.recreate > 0 {
            inner.push(format!("{} recreate", self.recreate));
        }
        if self.restart > 0 {
            inner.push(format!("{} restart", self.restart));
        }
        if !inner.is_empty() {
            write!(f, " ({})", inner.join(", "))?;
        }
        write!(f, ", {} to delete, {} packages to compile", self.delete, self.compile)
    }
}

/// Everything a deploy would do, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format: u32,
    pub made_from: Provenance,
    pub instances: Vec<InstancePlan>,
    pub compile: Vec<CompileItem>,
    /// Batches of groups in update order (groups of a batch update together).
    pub order: Vec<Vec<GroupRollout>>,
    pub links: Vec<LinkDependency>,
    /// Variables the deploy will generate (names only).
    pub generate: Vec<String>,
    pub diff: Vec<DiffLine>,
    pub warnings: Vec<String>,
    pub summary: Summary,
}

/// The plan of `desired` given its reconciliation, compile list and diff.
pub fn assemble(
    desired: &DesiredDeployment,
    made_from: Provenance,
    reconciled: &Reconciled,
    compile: Vec<CompileItem>,
    generate: Vec<String>,
    diff: Vec<DiffLine>,
) -> Plan {
    let instances: Vec<InstancePlan> = reconciled.all().cloned().collect();
    let mut summary = Summary::default();
    for p in &instances {
        match p.action {
            Action::NoOp => summary.unchanged += 1,
            Action::Create => summary.create += 1,
            Action::Update => summary.update += 1,
            Action::Restart => {
                summary.update += 1;
                summary.restart += 1;
            }
            Action::Recreate => {
                summary.update += 1;
                summary.recreate += 1;
            }
            Action::Delete => summary.delete += 1,
        }
        if p.disk.is_some() {
            summary.disk_changes += 1;
        }
    }
    summary.compile = compile.iter().filter(|c| !c.cached).count();
    summary.cached = compile.iter().filter(|c| c.cached).count();

    let by_name: BTreeMap<&str, _> = desired.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let service: Vec<_> = desired.groups.iter().filter(|g| g.lifecycle == GroupLifecycle::Service).cloned().collect();
    let order = batches(&service)
        .into_iter()
        .map(|batch| {
            batch
                .into_iter()
                .filter_map(|name| by_name.get(name.as_str()).copied())
                .map(|g| GroupRollout {
                    name: g.name.clone(),
                    canaries: g.update.canaries,
                    max_in_flight: g.update.max_in_flight,
                    changing: instances.iter().filter(|p| p.group == g.name && p.action != Action::NoOp).count(),
                    instances: g.instances.len(),
                    swapped: g.update.create_swap_delete.then(|| {
                        let replaced: BTreeSet<&str> = instances
                            .iter()
                            .filter(|p| p.group == g.name && p.action == Action::Recreate)
                            .map(|p| p.id.as_str())
                            .collect();
                        g.instances.iter().filter(|i| replaced.contains(i.id.as_str()) && i.can_swap_vms()).count()
                    }),
                })
                .collect()
        })
        .collect();
    let links = LinkGraph::new(desired)
        .edges()
        .iter()
        .map(|e| LinkDependency {
            consumer: e.consumer.clone(),
            provider: e.provider.clone(),
            link: e.link.clone(),
            optional: !e.required,
        })
        .collect();
    Plan {
        format: FORMAT,
        made_from,
        instances,
        compile,
        order,
        links,
        generate,
        diff,
        warnings: desired.warnings.clone(),
        summary,
    }
}

impl Plan {
    /// The plan as an operator reads it; `color` adds ANSI colours to the diff's `+`/`-` lines.
    pub fn render(&self, color: bool) -> String {
        let mut s = String::new();
        let m = &self.made_from;
        let _ = writeln!(s, "Deployment '{}' (state serial {})", m.deployment, m.state_serial);
        let _ = writeln!(s, "  releases: {}", m.releases.join(", "));
        let _ = writeln!(s, "  stemcells: {}", m.stemcells.join(", "));
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }

        let _ = writeln!(s, "\nManifest diff:");
        if self.diff.is_empty() {
            let _ = writeln!(s, "  (no changes)");
        }
        for line in &self.diff {
            let text = line.render();
            let _ = match (color, line.kind) {
                (true, LineKind::Added) => writeln!(s, "\x1b[32m{text}\x1b[0m"),
                (true, LineKind::Removed) => writeln!(s, "\x1b[31m{text}\x1b[0m"),
                _ => writeln!(s, "{text}"),
            };
        }

        let _ = writeln!(s, "\nInstances:");
        let width = self.instances.iter().map(|p| p.name().len()).max().unwrap_or(0);
        for p in &self.instances {
            let mut why: Vec<String> = p.reasons.iter().map(ToString::to_string).collect();
            if let Some(disk) = &p.disk {
                why.push(disk.to_string());
            }
            let az = p.az.as_deref().map(|a| format!(" {a}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<width$}  {:<9}{}{}",
                p.name(),
                p.action.to_string(),
                if why.is_empty() { String::new() } else { format!(" {}", why.join("; ")) },
                if p.action == Action::NoOp { String::new() } else { format!("  (index {}{az})", p.index) },
            );
        }

        if !self.generate.is_empty() {
            let _ = writeln!(s, "\nVariables to generate: {}", self.generate.join(", "));
        }

        let _ = writeln!(s, "\nCompilation:");
        let mut by_stemcell: BTreeMap<&str, (Vec<&CompileItem>, usize)> = BTreeMap::new();
        for c in &self.compile {
            let entry = by_stemcell.entry(c.stemcell.as_str()).or_default();
            if c.cached {
                entry.1 += 1;
            } else {
                entry.0.push(c);
            }
        }
        if by_stemcell.is_empty() {
            let _ = writeln!(s, "  (no packages)");
        }
        for (stemcell, (compile, cached)) in by_stemcell {
            let _ = writeln!(s, "  {stemcell}: {} to compile, {cached} in the cache", compile.len());
            for c in compile {
                let _ = writeln!(s, "    {}/{} {}", c.release, c.package, c.version);
            }
        }

        let _ = writeln!(s, "\nOrder:");
        for (i, batch) in self.order.iter().enumerate() {
            let groups: Vec<String> = batch
                .iter()
                .map(|g| {
                    let strategy = match g.swapped {
                        Some(n) => format!(", create-swap-delete: {n} new VM(s) made before the old one stops"),
                        None => String::new(),
                    };
                    format!(
                        "{} ({}/{} changing, canaries {}, max_in_flight {}{strategy})",
                        g.name, g.changing, g.instances, g.canaries, g.max_in_flight
                    )
                })
                .collect();
            let _ = writeln!(s, "  {}. {}", i + 1, groups.join(" + "));
        }
        let required: Vec<&LinkDependency> =
            self.links.iter().filter(|l| !l.optional && l.consumer != l.provider).collect();
        if !required.is_empty() {
            let _ = writeln!(s, "  links:");
            for l in required {
                let _ = writeln!(s, "    {} consumes {} from {}", l.consumer, l.link, l.provider);
            }
        }
        let _ = writeln!(s, "\n{}", self.summary);
        s
    }
}

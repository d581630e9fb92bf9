//! The per-instance plan: for every instance the manifest wants, and every recorded instance
//! it no longer wants, one [`Action`] with its [`Reason`]s and what happens to its persistent
//! disk.
//!
//! `deploy` and `plan` both call [`reconcile`], so what a plan shows is what a deploy does.
//! Pure: the caller passes what it knows of each recorded instance ([`Known`]) and a function
//! answering an instance's desired [`InstanceSpec`] (rendering templates and looking up
//! compiled packages is the caller's business); the rules themselves are
//! [`crate::plan::changes::decide`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::changes::{Action, InstanceSpec, Observed, Reason, decide};
use super::desired::{DesiredDeployment, DesiredGroup, DesiredInstance, GroupLifecycle};

/// What the state knows of one recorded instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    pub uuid: String,
    pub group: String,
    pub index: u64,
    pub az: Option<String>,
    pub has_vm: bool,
    pub dirty: bool,
    /// Stopped by `rosh stop` (the VM kept).
    pub stopped: bool,
    pub applied: Option<InstanceSpec>,
    pub disk: Option<KnownDisk>,
}

/// An instance's recorded persistent disk.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownDisk {
    pub cid: String,
    pub size_mb: u64,
    pub cloud_properties: Value,
}

/// What happens to an instance's persistent disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "disk", rename_all = "snake_case")]
pub enum DiskChange {
    Create {
        size_mb: u64,
    },
    /// Same disk type, new size: the CPI resizes it (or it is migrated where it cannot).
    Resize {
        from_mb: u64,
        to_mb: u64,
    },
    /// New disk cloud properties: a new disk, the data copied over, the old one orphaned.
    Migrate {
        from_mb: u64,
        to_mb: u64,
    },
    /// The group no longer has a persistent disk, or the instance leaves: detached and kept as
    /// an orphan.
    Orphan {
        cid: String,
        size_mb: u64,
    },
}

impl std::fmt::Display for DiskChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskChange::Create { size_mb } => write!(f, "create disk ({size_mb} MB)"),
            DiskChange::Resize { from_mb, to_mb } => write!(f, "resize disk {from_mb} MB -> {to_mb} MB"),
            DiskChange::Migrate { from_mb, to_mb } => {
                write!(f, "migrate disk ({from_mb} MB -> {to_mb} MB, new disk type)")
            }
            DiskChange::Orphan { cid, size_mb } => write!(f, "orphan disk {cid} ({size_mb} MB)"),
        }
    }
}

/// One instance's part of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstancePlan {
    pub group: String,
    pub id: String,
    pub index: u64,
    pub az: Option<String>,
    pub action: Action,
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskChange>,
}

impl InstancePlan {
    /// `group/id`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.group, self.id)
    }
}

/// Operator choices that change decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--recreate`: every VM acted on is recreated.
    pub recreate: bool,
    /// Act on these instance uuids only; every other instance is left exactly as it is (not
    /// even deleted when the manifest drops it).
    pub only: Option<BTreeSet<String>>,
}

/// Every instance's plan: the desired ones in manifest order, then those that leave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reconciled {
    pub instances: Vec<InstancePlan>,
    pub removed: Vec<InstancePlan>,
}

impl Reconciled {
    pub fn all(&self) -> impl Iterator<Item = &InstancePlan> {
        self.instances.iter().chain(&self.removed)
    }

    pub fn get(&self, uuid: &str) -> Option<&InstancePlan> {
        self.all().find(|p| p.id == uuid)
    }

    /// What a saved plan promises, comparable with a later reconciliation: every instance's
    /// group, index, action, reasons and disk change (a new instance's uuid is drawn afresh on
    /// each run, so it is left out).
    pub fn shape(&self) -> Vec<Shape> {
        shape_of(self.all())
    }
}

/// One instance's promised change (see [`Reconciled::shape`]).
pub type Shape = (String, u64, Action, Vec<Reason>, Option<DiskChange>);

/// The shape of a list of instance plans.
pub fn shape_of<'a>(plans: impl IntoIterator<Item = &'a InstancePlan>) -> Vec<Shape> {
    let mut out: Vec<Shape> =
        plans.into_iter().map(|p| (p.group.clone(), p.index, p.action, p.reasons.clone(), p.disk.clone())).collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

/// Decides every instance of `desired` (service groups; errands run on demand) against
/// `known`. `spec_of` is asked for the desired spec of each instance that has a converged VM
/// (it may answer `None` when the spec cannot matter).
pub fn reconcile<E>(
    desired: &DesiredDeployment,
    known: &[Known],
    options: &Options,
    mut spec_of: impl FnMut(&DesiredGroup, &DesiredInstance, &Known) -> Result<Option<InstanceSpec>, E>,
) -> Result<Reconciled, E> {
    let by_uuid: BTreeMap<&str, &Known> = known.iter().map(|k| (k.uuid.as_str(), k)).collect();
    let in_scope = |uuid: &str| options.only.as_ref().is_none_or(|only| only.contains(uuid));
    let mut out = Reconciled::default();
    for group in desired.groups.iter().filter(|g| g.lifecycle == GroupLifecycle::Service) {
        let group_known = known.iter().any(|k| k.group == group.name);
        for instance in &group.instances {
            let record = by_uuid.get(instance.id.as_str()).copied();
            let (mut action, mut reasons) = if !in_scope(&instance.id) {
                (Action::NoOp, Vec::new())
            } else {
                match record {
                    None if group_known => (Action::Create, vec![Reason::ScaleUp]),
                    None => decide(&InstanceSpec::empty(), None, false),
                    // No VM: created whatever the spec says (decide's first rule).
                    Some(k) if !k.has_vm => decide(&InstanceSpec::empty(), Some(&observed(k)), options.recreate),
                    // A VM a previous run did not finish with: replaced whatever the manifest
                    // says, so its spec does not matter.
                    Some(k) if k.dirty || k.applied.is_none() => {
                        let mut why = if options.recreate { vec![Reason::RecreateRequested] } else { Vec::new() };
                        why.push(Reason::Dirty);
                        (Action::Recreate, why)
                    }
                    Some(k) => match spec_of(group, instance, k)? {
                        Some(spec) => decide(&spec, Some(&observed(k)), options.recreate),
                        None => (Action::NoOp, Vec::new()),
                    },
                }
            };
            let disk =
                if in_scope(&instance.id) { disk_change(group, record.and_then(|k| k.disk.as_ref())) } else { None };
            if let Some(DiskChange::Migrate { .. }) = disk
                && !reasons.iter().any(|r| matches!(r, Reason::PersistentDiskChanged { .. }))
            {
                reasons.push(Reason::PersistentDiskTypeChanged);
            }
            if disk.is_some() && matches!(action, Action::NoOp | Action::Restart) {
                action = Action::Update;
                if let Some(DiskChange::Orphan { size_mb, .. } | DiskChange::Resize { from_mb: size_mb, .. }) = &disk
                    && !reasons.iter().any(|r| matches!(r, Reason::PersistentDiskChanged { .. }))
                {
                    let to_mb = group.persistent_disk.as_ref().map_or(0, |d| d.size_mb);
                    reasons.push(Reason::PersistentDiskChanged { from_mb: *size_mb, to_mb });
                }
            }
            out.instances.push(InstancePlan {
                group: group.name.clone(),
                id: instance.id.clone(),
                index: instance.index,
                az: instance.az.clone(),
                action,
                reasons,
                disk,
            });
        }
    }
    let wanted: BTreeSet<&str> =
        desired.groups.iter().flat_map(|g| g.instances.iter().map(|i| i.id.as_str())).collect();
    let groups: BTreeSet<&str> = desired.groups.iter().map(|g| g.name.as_str()).collect();
    let mut leaving: Vec<&Known> =
        known.iter().filter(|k| !wanted.contains(k.uuid.as_str()) && in_scope(&k.uuid)).collect();
    leaving.sort_by(|a, b| (&a.group, a.index).cmp(&(&b.group, b.index)));
    for k in leaving {
        let reason = if groups.contains(k.group.as_str()) { Reason::ScaleDown } else { Reason::RemovedFromManifest };
        out.removed.push(InstancePlan {
            group: k.group.clone(),
            id: k.uuid.clone(),
            index: k.index,
            az: k.az.clone(),
            action: Action::Delete,
            reasons: vec![reason],
            disk: k.disk.as_ref().map(|d| DiskChange::Orphan { cid: d.cid.clone(), size_mb: d.size_mb }),
        });
    }
    Ok(out)
}

fn observed(k: &Known) -> Observed {
    Observed { has_vm: k.has_vm, dirty: k.dirty, applied: k.applied.clone(), stopped: k.stopped }
}

/// The disk's change between the group's desired disk and the instance's recorded one.
fn disk_change(group: &DesiredGroup, known: Option<&KnownDisk>) -> Option<DiskChange> {
    match (&group.persistent_disk, known) {
        (None, None) => None,
        (Some(want), None) => Some(DiskChange::Create { size_mb: want.size_mb }),
        (None, Some(have)) => Some(DiskChange::Orphan { cid: have.cid.clone(), size_mb: have.size_mb }),
        (Some(want), Some(have)) => {
            let props_same = normalized(&want.cloud_properties) == normalized(&have.cloud_properties);
            if !props_same {
                Some(DiskChange::Migrate { from_mb: have.size_mb, to_mb: want.size_mb })
            } else if want.size_mb != have.size_mb {
                Some(DiskChange::Resize { from_mb: have.size_mb, to_mb: want.size_mb })
            } else {
                None
            }
        }
    }
}

/// `null` and `{}` are the same cloud properties.
fn normalized(v: &Value) -> Value {
    match v {
        Value::Null => Value::Object(Default::default()),
        other => other.clone(),
    }
}

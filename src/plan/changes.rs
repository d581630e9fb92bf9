//! What must happen to each instance, and why: the one function deploy (and later `plan`)
//! decides with.
//!
//! An instance's [`InstanceSpec`] is everything about it that the VM or its jobs depend on:
//! stemcell, cloud properties, networks, env, persistent disk, compiled packages and rendered
//! jobs (each by digest). Converge records the spec it applied; the next run compares the new
//! desired spec with that record (and with what it observed: is there a VM, did the last run
//! finish) to pick one [`Action`] and list its [`Reason`]s. The action drives converge; reasons
//! only explain. Pure: values in, values out.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an instance's VM and jobs are made of. Recorded after a successful converge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// `name/version`
    pub stemcell: String,
    pub cloud_properties: Value,
    /// Network name → IP (`None` on dynamic networks).
    pub networks: BTreeMap<String, Option<String>>,
    pub env: Value,
    pub persistent_disk_mb: u64,
    /// Package name → compiled blob digest.
    pub packages: BTreeMap<String, String>,
    /// Job name → rendered job digest.
    pub jobs: BTreeMap<String, String>,
    /// Job name → what its rendering was made of; explains a changed job digest, never decides.
    /// (Absent in specs recorded by older rosh versions.)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub job_details: BTreeMap<String, JobDetail>,
}

/// What one rendered job was made of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDetail {
    /// The release job's fingerprint (its templates and spec).
    pub fingerprint: String,
    /// sha256 of the job's manifest properties (as JSON): tells a property change without
    /// holding the values.
    pub properties: String,
    /// Rendered file (destination) → sha256 of its content.
    pub files: BTreeMap<String, String>,
}

impl InstanceSpec {
    /// The spec of nothing (what a new instance is compared with).
    pub fn empty() -> InstanceSpec {
        InstanceSpec {
            stemcell: String::new(),
            cloud_properties: Value::Null,
            networks: BTreeMap::new(),
            env: Value::Null,
            persistent_disk_mb: 0,
            packages: BTreeMap::new(),
            jobs: BTreeMap::new(),
            job_details: BTreeMap::new(),
        }
    }

    /// The spec's digest: sha256 of its JSON.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let json = serde_json::to_vec(self).expect("specs serialize");
        sha2::Sha256::digest(&json).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// What is known of an instance before the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The instance has a VM on record.
    pub has_vm: bool,
    /// A previous run created or changed the VM and did not finish converging it.
    pub dirty: bool,
    /// What the last successful converge applied.
    pub applied: Option<InstanceSpec>,
    /// Its jobs were stopped by `rosh stop` (the VM kept).
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    NoOp,
    /// A new VM for an instance that has none.
    Create,
    /// New packages or job configuration on the running VM: stop, apply, start.
    Update,
    /// Nothing to apply, but the jobs are started again (the instance was stopped).
    Restart,
    /// Delete the VM and make a new one (persistent disk kept).
    Recreate,
    /// The instance leaves the deployment.
    Delete,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::NoOp => "no change",
            Action::Create => "create",
            Action::Update => "update",
            Action::Restart => "restart",
            Action::Recreate => "recreate",
            Action::Delete => "delete",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    NewInstance,
    /// A new instance of a group that already had some.
    ScaleUp,
    /// An instance past the group's new size.
    ScaleDown,
    /// Stopped by `rosh stop`; the deploy starts it again.
    Stopped,
    VmMissing,
    Dirty,
    RecreateRequested,
    StemcellChanged {
        from: String,
        to: String,
    },
    CloudPropertiesChanged,
    NetworksChanged {
        from: BTreeMap<String, Option<String>>,
        to: BTreeMap<String, Option<String>>,
    },
    EnvChanged,
    PersistentDiskChanged {
        from_mb: u64,
        to_mb: u64,
    },
    /// The disk type (its cloud properties) changed.
    PersistentDiskTypeChanged,
    PackagesChanged {
        names: Vec<String>,
    },
    JobsChanged {
        names: Vec<String>,
    },
    /// The release's job changed (new job version); `files` are the rendered files that differ.
    JobTemplatesChanged {
        job: String,
        files: Vec<String>,
    },
    /// The job's manifest properties changed; `files` are the rendered files that differ.
    PropertiesChanged {
        job: String,
        files: Vec<String>,
    },
    RemovedFromManifest,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ips = |m: &BTreeMap<String, Option<String>>| {
            m.iter().map(|(n, ip)| format!("{n}:{}", ip.as_deref().unwrap_or("dynamic"))).collect::<Vec<_>>().join(",")
        };
        match self {
            Reason::NewInstance => f.write_str("new instance"),
            Reason::ScaleUp => f.write_str("scale up"),
            Reason::ScaleDown => f.write_str("scale down"),
            Reason::Stopped => f.write_str("stopped; the deploy starts it"),
            Reason::VmMissing => f.write_str("VM missing"),
            Reason::Dirty => f.write_str("a previous run did not finish with it"),
            Reason::RecreateRequested => f.write_str("--recreate"),
            Reason::StemcellChanged { from, to } => write!(f, "stemcell {from} -> {to}"),
            Reason::CloudPropertiesChanged => f.write_str("vm_type / vm_extensions / AZ cloud properties changed"),
            Reason::NetworksChanged { from, to } => write!(f, "networks {} -> {}", ips(from), ips(to)),
            Reason::EnvChanged => f.write_str("env changed"),
            Reason::PersistentDiskChanged { from_mb, to_mb } => write!(f, "persistent disk {from_mb} MB -> {to_mb} MB"),
            Reason::PersistentDiskTypeChanged => f.write_str("persistent disk type changed"),
            Reason::PackagesChanged { names } => write!(f, "packages changed: {}", names.join(", ")),
            Reason::JobsChanged { names } => write!(f, "jobs changed: {}", names.join(", ")),
            Reason::JobTemplatesChanged { job, files } => write!(f, "job {job} templates changed{}", file_list(files)),
            Reason::PropertiesChanged { job, files } => write!(f, "job {job} properties changed{}", file_list(files)),
            Reason::RemovedFromManifest => f.write_str("removed from the manifest"),
        }
    }
}

fn file_list(files: &[String]) -> String {
    if files.is_empty() { String::new() } else { format!(" ({})", files.join(", ")) }
}

/// Names whose digests differ between two maps (added, removed or changed).
fn changed_names(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut names: Vec<String> = new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    names.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    names.sort();
    names
}

/// Why jobs' rendered digests differ: per job, a new release job version or changed properties
/// (with the rendered files that differ) where the specs carry details, else plainly "changed".
fn job_reasons(applied: &InstanceSpec, desired: &InstanceSpec) -> Vec<Reason> {
    let mut plain = Vec::new();
    let mut detailed = Vec::new();
    for name in changed_names(&applied.jobs, &desired.jobs) {
        let (Some(old), Some(new)) = (applied.job_details.get(&name), desired.job_details.get(&name)) else {
            plain.push(name);
            continue;
        };
        let files = changed_names(&old.files, &new.files);
        if old.fingerprint != new.fingerprint {
            detailed.push(Reason::JobTemplatesChanged { job: name, files });
        } else if old.properties != new.properties {
            detailed.push(Reason::PropertiesChanged { job: name, files });
        } else {
            plain.push(name);
        }
    }
    if !plain.is_empty() {
        detailed.insert(0, Reason::JobsChanged { names: plain });
    }
    detailed
}

/// The action for an instance the manifest wants, given what is known of it (`None`: new).
pub fn decide(desired: &InstanceSpec, observed: Option<&Observed>, recreate: bool) -> (Action, Vec<Reason>) {
    let Some(observed) = observed else { return (Action::Create, vec![Reason::NewInstance]) };
    if !observed.has_vm {
        return (Action::Create, vec![Reason::VmMissing]);
    }
    let mut recreate_reasons = Vec::new();
    if recreate {
        recreate_reasons.push(Reason::RecreateRequested);
    }
    if observed.dirty {
        recreate_reasons.push(Reason::Dirty);
    }
    let Some(applied) = &observed.applied else {
        if recreate_reasons.is_empty() {
            recreate_reasons.push(Reason::Dirty);
        }
        return (Action::Recreate, recreate_reasons);
    };
    if applied.stemcell != desired.stemcell {
        recreate_reasons.push(Reason::StemcellChanged { from: applied.stemcell.clone(), to: desired.stemcell.clone() });
    }
    if applied.cloud_properties != desired.cloud_properties {
        recreate_reasons.push(Reason::CloudPropertiesChanged);
    }
    if applied.networks != desired.networks {
        recreate_reasons.push(Reason::NetworksChanged { from: applied.networks.clone(), to: desired.networks.clone() });
    }
    if applied.env != desired.env {
        recreate_reasons.push(Reason::EnvChanged);
    }
    let mut update_reasons = Vec::new();
    if applied.persistent_disk_mb != desired.persistent_disk_mb {
        update_reasons.push(Reason::PersistentDiskChanged {
            from_mb: applied.persistent_disk_mb,
            to_mb: desired.persistent_disk_mb,
        });
    }
    let packages = changed_names(&applied.packages, &desired.packages);
    if !packages.is_empty() {
        update_reasons.push(Reason::PackagesChanged { names: packages });
    }
    update_reasons.extend(job_reasons(applied, desired));
    if !recreate_reasons.is_empty() {
        recreate_reasons.extend(update_reasons);
        return (Action::Recreate, recreate_reasons);
    }
    if !update_reasons.is_empty() {
        return (Action::Update, update_reasons);
    }
    if observed.stopped {
        return (Action::Restart, vec![Reason::Stopped]);
    }
    (Action::NoOp, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            stemcell: "bosh-local/1".into(),
            cloud_properties: json!({"cpu": 1}),
            networks: [("default".to_string(), Some("127.77.0.10".to_string()))].into(),
            env: json!({}),
            persistent_disk_mb: 1024,
            packages: [("kvd".to_string(), "aa".to_string())].into(),
            jobs: [("kv-server".to_string(), "j1".to_string()), ("web".to_string(), "w1".to_string())].into(),
            job_details: BTreeMap::new(),
        }
    }

    fn running(applied: InstanceSpec) -> Observed {
        Observed { has_vm: true, dirty: false, applied: Some(applied), stopped: false }
    }

    #[test]
    fn each_change_alone_picks_its_action_and_reason() {
        let base = spec();
        assert_eq!(decide(&base, None, false), (Action::Create, vec![Reason::NewInstance]));
        let no_vm = Observed { has_vm: false, dirty: false, applied: Some(base.clone()), stopped: false };
        assert_eq!(decide(&base, Some(&no_vm), false), (Action::Create, vec![Reason::VmMissing]));
        assert_eq!(decide(&base, Some(&running(base.clone())), false), (Action::NoOp, vec![]));
        assert_eq!(
            decide(&base, Some(&running(base.clone())), true),
            (Action::Recreate, vec![Reason::RecreateRequested])
        );
        let dirty = Observed { has_vm: true, dirty: true, applied: Some(base.clone()), stopped: false };
        assert_eq!(decide(&base, Some(&dirty), false), (Action::Recreate, vec![Reason::Dirty]));

        let mut new = base.clone();
        new.stemcell = "bosh-local/2".into();
        assert_eq!(
            decide(&new, Some(&running(base.clone())), false),
            (
                Action::Recreate,
                vec![Reason::StemcellChanged { from: "bosh-local/1".into(), to: "bosh-local/2".into() }]
            )
        );
        let mut new = base.clone();
        new.cloud_properties = json!({"cpu": 2});
        assert_eq!(
            decide(&new, Some(&running(base.clone())), false),
            (Action::Recreate, vec![Reason::CloudPropertiesChanged])
        );
        let mut new = base.clone();
        new.jobs.insert("web".into(), "w2".into());
        assert_eq!(
            decide(&new, Some(&running(base.clone())), false),
            (Action::Update, vec![Reason::JobsChanged { names: vec!["web".into()] }])
        );
        let mut new = base.clone();
        new.packages.clear();
        assert_eq!(
            decide(&new, Some(&running(base.clone())), false),
            (Action::Update, vec![Reason::PackagesChanged { names: vec!["kvd".into()] }])
        );
    }

    #[test]
    fn several_changes_at_once_take_the_strongest_action_and_keep_every_reason() {
        let base = spec();
        let mut new = base.clone();
        new.env = json!({"bosh": {"x": 1}});
        new.jobs.insert("kv-server".into(), "j2".into());
        new.persistent_disk_mb = 2048;
        let (action, reasons) = decide(&new, Some(&running(base)), false);
        assert_eq!(action, Action::Recreate);
        assert_eq!(
            reasons,
            vec![
                Reason::EnvChanged,
                Reason::PersistentDiskChanged { from_mb: 1024, to_mb: 2048 },
                Reason::JobsChanged { names: vec!["kv-server".into()] },
            ]
        );
        assert_eq!(reasons[1].to_string(), "persistent disk 1024 MB -> 2048 MB");
    }

    #[test]
    fn the_digest_follows_the_content() {
        let a = spec();
        let mut b = spec();
        assert_eq!(a.digest(), b.digest());
        b.jobs.insert("web".into(), "w9".into());
        assert_ne!(a.digest(), b.digest());
    }
}

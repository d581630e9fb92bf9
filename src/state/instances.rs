//! Instances of deployments: where each is placed, its VM, its IPs, what converge last applied
//! to it, and whether it is `dirty` (a VM created or changed but not yet converged).
//!
//! Converge writes here right after each effect — the VM id the moment `create_vm` returns,
//! marked dirty; the applied spec once the agent took it, clearing dirty — so after a crash the
//! state names every VM rosh made, and says which ones the next run must converge or replace.
//!
//! Decisions worth knowing:
//! - **An IP is handed out once, across every deployment.** `instance_ips.ip` is unique; a
//!   request for an IP another instance holds is refused naming the holder. IPs are stored in
//!   canonical form (`std::net::IpAddr`), so two spellings of one address cannot both be held.
//! - **One VM, one instance**, and an instance with a VM cannot be deleted: delete the VM, record
//!   that, then the instance, so a VM is never forgotten while it still runs.
//! - **Deleting an instance orphans its disks**, never deletes them.
//! - The applied spec is opaque text that may hold rendered secrets: it is neither serialized
//!   (`--json`) nor shown by `Debug`; its digest is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::deployments::{ensure_deployment, find_deployment};
use super::{Event, NOW, Result, State, StateError, now, read_serial, record_fact};

/// What an instance is meant to be doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    #[default]
    Started,
    Stopped,
    /// Stopped with its VM deleted (`stop --hard`); the disk is kept.
    Detached,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Started => "started",
            InstanceState::Stopped => "stopped",
            InstanceState::Detached => "detached",
        }
    }

    /// The event action that puts an instance in this state.
    fn verb(self) -> &'static str {
        match self {
            InstanceState::Started => "start",
            InstanceState::Stopped => "stop",
            InstanceState::Detached => "detach",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceState {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<InstanceState, String> {
        [InstanceState::Started, InstanceState::Stopped, InstanceState::Detached]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown instance state `{s}`: expected started, stopped or detached"))
    }
}

/// An instance's VM, as its CPI created it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmRef {
    pub cid: String,
    /// The name of the CPI that made it (as the CPI config names it).
    pub cpi: String,
    /// How to reach its agent: a `rosh_cpi::SshEndpoint` as JSON; opaque to the state.
    pub endpoint_json: String,
    /// RFC 3339, UTC. Left empty, it is stamped when recorded (kept, for the same VM).
    pub created_at: String,
    /// Network name → the IP the CPI gave the VM where the infrastructure assigns it (dynamic
    /// networks). Addresses the director hands out are the instance's (`instance_ips`), not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ips: BTreeMap<String, String>,
}

impl VmRef {
    /// A VM to record; `created_at` is stamped by the state.
    pub fn new(cid: impl Into<String>, cpi: impl Into<String>, endpoint_json: impl Into<String>) -> VmRef {
        VmRef {
            cid: cid.into(),
            cpi: cpi.into(),
            endpoint_json: endpoint_json.into(),
            created_at: String::new(),
            ips: BTreeMap::new(),
        }
    }

    /// [`Self::ips`] as stored: JSON, `NULL` when there are none.
    pub(super) fn ips_json(&self) -> Option<String> {
        (!self.ips.is_empty()).then(|| serde_json::to_string(&self.ips).expect("a map of strings"))
    }

    fn same_vm(&self, other: &VmRef) -> bool {
        self.cid == other.cid && self.cpi == other.cpi
    }
}

/// One instance of a deployment's instance group.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InstanceRecord {
    pub deployment: String,
    pub group: String,
    pub index: u64,
    /// Stable for the instance's life; unique within its deployment.
    pub uuid: String,
    pub az: Option<String>,
    pub bootstrap: bool,
    pub state: InstanceState,
    /// A VM was created or changed and not yet converged: the next run converges or replaces it.
    pub dirty: bool,
    /// Left alone by deploys (`bosh ignore`).
    pub ignore: bool,
    pub vm: Option<VmRef>,
    /// What converge last applied, opaque; may hold secrets, so never serialized.
    #[serde(default, skip_serializing)]
    pub applied_json: Option<String>,
    pub applied_digest: Option<String>,
    /// Network name → IP.
    pub ips: BTreeMap<String, String>,
    /// RFC 3339, UTC; set by the state on every change (ignored by [`State::upsert_instance`]).
    pub updated_at: String,
}

impl InstanceRecord {
    /// `group/uuid`, as events and errors name an instance.
    pub fn label(&self) -> String {
        format!("{}/{}", self.group, self.uuid)
    }

    /// Network name → IP: the addresses the director gave the instance, and those its VM got
    /// from the infrastructure on dynamic networks.
    pub fn addresses(&self) -> BTreeMap<String, String> {
        let mut all = self.vm.as_ref().map(|vm| vm.ips.clone()).unwrap_or_default();
        all.extend(self.ips.clone());
        all
    }

    /// Equal in everything a write would store.
    fn same_facts(&self, other: &InstanceRecord) -> bool {
        InstanceRecord { updated_at: String::new(), ..self.clone() }
            == InstanceRecord { updated_at: String::new(), ..other.clone() }
    }
}

impl fmt::Debug for InstanceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstanceRecord")
            .field("deployment", &self.deployment)
            .field("group", &self.group)
            .field("index", &self.index)
            .field("uuid", &self.uuid)
            .field("az", &self.az)
            .field("bootstrap", &self.bootstrap)
            .field("state", &self.state)
            .field("dirty", &self.dirty)
            .field("ignore", &self.ignore)
            .field("vm", &self.vm)
            .field("applied_json", &self.applied_json.as_ref().map(|j| format!("<{} bytes>", j.len())))
            .field("applied_digest", &self.applied_digest)
            .field("ips", &self.ips)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl State {
    /// Every instance of `deployment`, by group name then index (none if it does not exist).
    pub fn instances(&self, deployment: &str) -> Result<Vec<InstanceRecord>> {
        self.read(|tx| {
            let Some(id) = find_deployment(tx, deployment)? else { return Ok(Vec::new()) };
            Ok(load(tx, deployment, id, None)?.into_iter().map(|(_, record)| record).collect())
        })
    }

    /// One instance of `deployment` by uuid.
    pub fn instance(&self, deployment: &str, uuid: &str) -> Result<Option<InstanceRecord>> {
        self.read(|tx| Ok(find(tx, deployment, uuid)?.map(|(_, record)| record)))
    }

    /// Records an instance whole — placement, state, VM, applied spec and IPs — creating it (and
    /// its deployment) if its uuid is new there. Refused if another instance of the deployment has
    /// its group and index, another instance has its VM, or another instance anywhere holds one of
    /// its IPs. Returns the serial, which moves only if something differs.
    pub fn upsert_instance(&self, instance: &InstanceRecord) -> Result<u64> {
        let mut record = instance.clone();
        record.ips = canonical_ips(&record.ips)?;
        self.write(|tx| {
            let existing = find(tx, &record.deployment, &record.uuid)?;
            if let Some((_, old)) = &existing {
                keep_vm_created_at(&mut record.vm, old.vm.as_ref());
                if old.same_facts(&record) {
                    return Ok(read_serial(tx)?);
                }
            }
            let deployment_id = ensure_deployment(tx, &record.deployment)?;
            let holder: Option<String> = tx
                .query_row(
                    "SELECT uuid FROM instances WHERE deployment_id = ?1 AND group_name = ?2 AND idx = ?3 AND uuid != ?4",
                    params![deployment_id, record.group, record.index as i64, record.uuid],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(holder) = holder {
                return Err(StateError::InstanceSlotTaken {
                    deployment: record.deployment.clone(),
                    group: record.group.clone(),
                    index: record.index,
                    uuid: record.uuid.clone(),
                    holder,
                });
            }
            let existing_id = existing.as_ref().map(|(id, _)| *id);
            if let Some(vm) = &record.vm {
                check_vm_free(tx, vm, existing_id)?;
            }
            let now = now(tx)?;
            let vm = record.vm.as_ref();
            let vm_created_at = vm.map(|v| if v.created_at.is_empty() { now.clone() } else { v.created_at.clone() });
            let values = params![
                deployment_id,
                record.group,
                record.index as i64,
                record.uuid,
                record.az,
                record.bootstrap,
                record.state.as_str(),
                record.dirty,
                record.ignore,
                vm.map(|v| &v.cid),
                vm.map(|v| &v.cpi),
                vm.map(|v| &v.endpoint_json),
                vm_created_at,
                record.applied_json,
                record.applied_digest,
                now,
                vm.and_then(VmRef::ips_json),
            ];
            let id = match existing_id {
                Some(id) => {
                    tx.execute(
                        "UPDATE instances SET deployment_id = ?1, group_name = ?2, idx = ?3, uuid = ?4, az = ?5,
                             bootstrap = ?6, state = ?7, dirty = ?8, ignored = ?9, vm_cid = ?10, vm_cpi = ?11,
                             vm_endpoint_json = ?12, vm_created_at = ?13, applied_json = ?14, applied_digest = ?15,
                             updated_at = ?16, vm_ips_json = ?17
                         WHERE deployment_id = ?1 AND uuid = ?4",
                        values,
                    )?;
                    id
                }
                None => {
                    tx.execute(
                        "INSERT INTO instances (deployment_id, group_name, idx, uuid, az, bootstrap, state, dirty,
                             ignored, vm_cid, vm_cpi, vm_endpoint_json, vm_created_at, applied_json, applied_digest,
                             updated_at, vm_ips_json)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                        values,
                    )?;
                    tx.last_insert_rowid()
                }
            };
            write_ips(tx, id, &record.ips)?;
            let action = if existing.is_some() { "update" } else { "create" };
            record_fact(tx, &Event::new(action, "instance", record.label()).deployment(&record.deployment))
        })
    }

    /// Records that the instance now has VM `vm` (or, with `None`, none: its VM was deleted), and
    /// whether it is dirty. Refused if another instance has that VM.
    pub fn set_instance_vm(&self, deployment: &str, uuid: &str, vm: Option<VmRef>, dirty: bool) -> Result<u64> {
        let mut vm = vm;
        self.write(|tx| {
            let (id, old) = find_or_fail(tx, deployment, uuid)?;
            keep_vm_created_at(&mut vm, old.vm.as_ref());
            if old.vm == vm && old.dirty == dirty {
                return Ok(read_serial(tx)?);
            }
            if let Some(vm) = &vm {
                check_vm_free(tx, vm, Some(id))?;
            }
            write_vm(tx, id, vm.as_ref(), dirty)?;
            let event = match (&old.vm, &vm) {
                (_, Some(new)) if !old.vm.as_ref().is_some_and(|o| o.same_vm(new)) => {
                    Event::new("create", "vm", &new.cid).context(format!("for instance {}", old.label()))
                }
                (Some(gone), None) => {
                    Event::new("delete", "vm", &gone.cid).context(format!("of instance {}", old.label()))
                }
                _ => Event::new("update", "instance", old.label()),
            };
            record_fact(tx, &event.deployment(deployment))
        })
    }

    /// Records what converge applied to the instance (its digest too) and the state it left it
    /// in; the instance is no longer dirty.
    pub fn set_instance_applied(
        &self,
        deployment: &str,
        uuid: &str,
        applied_json: &str,
        digest: &str,
        state: InstanceState,
    ) -> Result<u64> {
        self.write(|tx| {
            let (id, old) = find_or_fail(tx, deployment, uuid)?;
            if old.applied_json.as_deref() == Some(applied_json)
                && old.applied_digest.as_deref() == Some(digest)
                && old.state == state
                && !old.dirty
            {
                return Ok(read_serial(tx)?);
            }
            tx.execute(
                &format!(
                    "UPDATE instances SET applied_json = ?2, applied_digest = ?3, state = ?4, dirty = 0,
                         updated_at = {NOW}
                     WHERE id = ?1"
                ),
                params![id, applied_json, digest, state.as_str()],
            )?;
            record_fact(tx, &Event::new("apply", "instance", old.label()).deployment(deployment))
        })
    }

    /// Records the instance's state (`start`, `stop`, `detach` in the event log).
    pub fn set_instance_state(&self, deployment: &str, uuid: &str, state: InstanceState) -> Result<u64> {
        self.write(|tx| {
            let (id, old) = find_or_fail(tx, deployment, uuid)?;
            if old.state == state {
                return Ok(read_serial(tx)?);
            }
            tx.execute(
                &format!("UPDATE instances SET state = ?2, updated_at = {NOW} WHERE id = ?1"),
                params![id, state.as_str()],
            )?;
            record_fact(tx, &Event::new(state.verb(), "instance", old.label()).deployment(deployment))
        })
    }

    /// Marks the instance dirty (its VM must be converged or replaced) or clean.
    pub fn set_instance_dirty(&self, deployment: &str, uuid: &str, dirty: bool) -> Result<u64> {
        self.write(|tx| {
            let (id, old) = find_or_fail(tx, deployment, uuid)?;
            if old.dirty == dirty {
                return Ok(read_serial(tx)?);
            }
            tx.execute(
                &format!("UPDATE instances SET dirty = ?2, updated_at = {NOW} WHERE id = ?1"),
                params![id, dirty],
            )?;
            let action = if dirty { "mark dirty" } else { "mark clean" };
            record_fact(tx, &Event::new(action, "instance", old.label()).deployment(deployment))
        })
    }

    /// Deletes the instance record: its IPs are freed and its disks orphaned (kept). Refused
    /// while it still has a VM.
    pub fn delete_instance(&self, deployment: &str, uuid: &str) -> Result<u64> {
        self.write(|tx| {
            let (id, old) = find_or_fail(tx, deployment, uuid)?;
            if let Some(vm) = &old.vm {
                return Err(StateError::InstanceHasVm {
                    deployment: deployment.to_string(),
                    instance: old.label(),
                    cid: vm.cid.clone(),
                });
            }
            tx.execute(
                &format!(
                    "UPDATE disks SET instance_uuid = NULL, active = 0, orphaned_at = {NOW}
                     WHERE deployment = ?1 AND instance_uuid = ?2 AND orphaned_at IS NULL"
                ),
                [deployment, uuid],
            )?;
            tx.execute("DELETE FROM instance_ips WHERE instance_id = ?1", [id])?;
            tx.execute("DELETE FROM instances WHERE id = ?1", [id])?;
            record_fact(tx, &Event::new("delete", "instance", old.label()).deployment(deployment))
        })
    }

    /// Sets the instance's IPs to exactly `ips` (network → IP). Refused, changing nothing, if any
    /// of them is held by another instance of any deployment, or is not an IP address.
    pub fn set_instance_ips(&self, deployment: &str, uuid: &str, ips: &BTreeMap<String, String>) -> Result<u64> {
        let ips = canonical_ips(ips)?;
        self.write(|tx| {
            let (id, old) = find_or_fail(tx, deployment, uuid)?;
            if old.ips == ips {
                return Ok(read_serial(tx)?);
            }
            write_ips(tx, id, &ips)?;
            tx.execute(&format!("UPDATE instances SET updated_at = {NOW} WHERE id = ?1"), [id])?;
            record_fact(tx, &Event::new("update", "ips", old.label()).deployment(deployment))
        })
    }

    /// Every IP held by an instance of any deployment.
    pub fn ips_in_use(&self) -> Result<BTreeSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT ip FROM instance_ips")?;
        Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?)
    }
}

/// A VM recorded again without its creation time keeps the one it had.
fn keep_vm_created_at(vm: &mut Option<VmRef>, old: Option<&VmRef>) {
    if let (Some(vm), Some(old)) = (vm.as_mut(), old)
        && vm.created_at.is_empty()
        && vm.same_vm(old)
    {
        vm.created_at = old.created_at.clone();
    }
}

fn canonical_ips(ips: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    for (network, ip) in ips {
        let canonical = ip
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| StateError::InvalidIp { network: network.clone(), ip: ip.clone() })?
            .to_string();
        if let Some(first) = seen.insert(canonical.clone(), network) {
            return Err(StateError::IpInUse {
                ip: canonical,
                network: network.clone(),
                holder: format!("the same instance on network {first}"),
            });
        }
        out.insert(network.clone(), canonical);
    }
    Ok(out)
}

/// Replaces the IPs of instance `id` with `ips` (canonical already), refusing any another holds.
fn write_ips(tx: &Transaction<'_>, id: i64, ips: &BTreeMap<String, String>) -> Result<()> {
    for (network, ip) in ips {
        let holder: Option<(String, String, String, String)> = tx
            .query_row(
                "SELECT d.name, i.group_name, i.uuid, x.network FROM instance_ips x
                 JOIN instances i ON i.id = x.instance_id JOIN deployments d ON d.id = i.deployment_id
                 WHERE x.ip = ?1 AND x.instance_id != ?2",
                params![ip, id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        if let Some((deployment, group, uuid, their_network)) = holder {
            return Err(StateError::IpInUse {
                ip: ip.clone(),
                network: network.clone(),
                holder: format!("instance {group}/{uuid} of deployment {deployment} (network {their_network})"),
            });
        }
    }
    tx.execute("DELETE FROM instance_ips WHERE instance_id = ?1", [id])?;
    for (network, ip) in ips {
        tx.execute(
            "INSERT INTO instance_ips (instance_id, network, ip) VALUES (?1, ?2, ?3)",
            params![id, network, ip],
        )?;
    }
    Ok(())
}

fn check_vm_free(conn: &Connection, vm: &VmRef, own_id: Option<i64>) -> Result<()> {
    let holder: Option<(String, String, String)> = conn
        .query_row(
            "SELECT d.name, i.group_name, i.uuid FROM instances i JOIN deployments d ON d.id = i.deployment_id
             WHERE i.vm_cpi = ?1 AND i.vm_cid = ?2 AND i.id IS NOT ?3",
            params![vm.cpi, vm.cid, own_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match holder {
        Some((deployment, group, uuid)) => Err(StateError::VmInUse {
            cid: vm.cid.clone(),
            cpi: vm.cpi.clone(),
            holder: format!("instance {group}/{uuid} of deployment {deployment}"),
        }),
        None => Ok(()),
    }
}

/// Sets the VM columns of instance row `id` (no VM with `None`; a VM without a creation time is
/// stamped now) and its dirty flag: the one place that writes them.
pub(super) fn write_vm(tx: &Transaction<'_>, id: i64, vm: Option<&VmRef>, dirty: bool) -> Result<()> {
    let now = now(tx)?;
    let created_at = vm.map(|v| if v.created_at.is_empty() { now.clone() } else { v.created_at.clone() });
    tx.execute(
        "UPDATE instances SET vm_cid = ?2, vm_cpi = ?3, vm_endpoint_json = ?4, vm_created_at = ?5, dirty = ?6,
             updated_at = ?7, vm_ips_json = ?8
         WHERE id = ?1",
        params![
            id,
            vm.map(|v| &v.cid),
            vm.map(|v| &v.cpi),
            vm.map(|v| &v.endpoint_json),
            created_at,
            dirty,
            now,
            vm.and_then(VmRef::ips_json)
        ],
    )?;
    Ok(())
}

pub(super) fn find(conn: &Connection, deployment: &str, uuid: &str) -> Result<Option<(i64, InstanceRecord)>> {
    let Some(deployment_id) = find_deployment(conn, deployment)? else { return Ok(None) };
    Ok(load(conn, deployment, deployment_id, Some(uuid))?.into_iter().next())
}

/// [`VmRef::ips`] from its column (`NULL`, or unreadable JSON, is none).
pub(super) fn ips_from_json(json: Option<String>) -> BTreeMap<String, String> {
    json.and_then(|j| serde_json::from_str(&j).ok()).unwrap_or_default()
}

fn find_or_fail(conn: &Connection, deployment: &str, uuid: &str) -> Result<(i64, InstanceRecord)> {
    find(conn, deployment, uuid)?
        .ok_or_else(|| StateError::InstanceNotFound { deployment: deployment.to_string(), uuid: uuid.to_string() })
}

/// The instances of a deployment (one, given its uuid), with their IPs, by group then index.
fn load(
    conn: &Connection,
    deployment: &str,
    deployment_id: i64,
    uuid: Option<&str>,
) -> Result<Vec<(i64, InstanceRecord)>> {
    let mut stmt = conn.prepare(
        "SELECT id, group_name, idx, uuid, az, bootstrap, state, dirty, ignored, vm_cid, vm_cpi, vm_endpoint_json,
                vm_created_at, applied_json, applied_digest, updated_at, vm_ips_json
         FROM instances WHERE deployment_id = ?1 AND (?2 IS NULL OR uuid = ?2)
         ORDER BY group_name, idx",
    )?;
    let rows = stmt.query_map(params![deployment_id, uuid], |r| {
        let vm = match r.get::<_, Option<String>>(9)? {
            Some(cid) => Some(VmRef {
                cid,
                cpi: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
                endpoint_json: r.get::<_, Option<String>>(11)?.unwrap_or_default(),
                created_at: r.get::<_, Option<String>>(12)?.unwrap_or_default(),
                ips: ips_from_json(r.get(16)?),
            }),
            None => None,
        };
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(6)?,
            InstanceRecord {
                deployment: deployment.to_string(),
                group: r.get(1)?,
                index: r.get::<_, i64>(2)? as u64,
                uuid: r.get(3)?,
                az: r.get(4)?,
                bootstrap: r.get(5)?,
                state: InstanceState::Stopped,
                dirty: r.get(7)?,
                ignore: r.get(8)?,
                vm,
                applied_json: r.get(13)?,
                applied_digest: r.get(14)?,
                ips: BTreeMap::new(),
                updated_at: r.get(15)?,
            },
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, state, mut record) = row?;
        record.state = state.parse().map_err(|e: String| StateError::Corrupt {
            what: format!("state of instance {}", record.label()),
            source: serde::de::Error::custom(e),
        })?;
        let mut ips = conn.prepare_cached("SELECT network, ip FROM instance_ips WHERE instance_id = ?1")?;
        record.ips = ips.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
        out.push((id, record));
    }
    Ok(out)
}

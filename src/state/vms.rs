//! Orphaned VMs: VMs that no instance owns any more but that still exist in the cloud, kept on
//! record until they are deleted.
//!
//! `vm_strategy: create-swap-delete` makes an instance's new VM while the old one still runs.
//! The old VM leaves the instance's record for this table in the same transaction that marks
//! the instance dirty, before the new VM is asked for, so at every moment each VM rosh made is
//! named once: by its instance, or here. A run that dies mid-swap leaves the old VM here, and
//! the next deploy of that deployment deletes it first. Like a disk, an orphaned VM names its
//! deployment and instance by name rather than by row.

use rusqlite::{Connection, OptionalExtension, params};

use super::instances::{VmRef, find, ips_from_json, write_vm};
use super::{Event, NOW, Result, State, StateError, read_serial, record_fact};

/// A VM no instance owns, waiting to be deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrphanedVm {
    pub vm: VmRef,
    pub deployment: String,
    /// The instance it was, as `group/uuid`.
    pub instance: String,
    pub instance_uuid: String,
    /// RFC 3339, UTC.
    pub orphaned_at: String,
}

impl State {
    /// Moves instance `uuid`'s VM to the orphaned VMs and marks the instance dirty, as one
    /// fact. Answers the VM, `None` (and changes nothing) when the instance has none.
    pub fn orphan_instance_vm(&self, deployment: &str, uuid: &str) -> Result<Option<OrphanedVm>> {
        self.write(|tx| {
            let Some((id, record)) = find(tx, deployment, uuid)? else {
                return Err(StateError::InstanceNotFound {
                    deployment: deployment.to_string(),
                    uuid: uuid.to_string(),
                });
            };
            let Some(vm) = &record.vm else { return Ok(None) };
            let instance = record.label();
            tx.execute(
                &format!(
                    "INSERT INTO orphaned_vms (vm_cid, vm_cpi, vm_endpoint_json, vm_created_at, deployment, instance,
                                               instance_uuid, orphaned_at, vm_ips_json, instance_was_dirty)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, {NOW}, ?8, ?9)"
                ),
                params![
                    vm.cid,
                    vm.cpi,
                    vm.endpoint_json,
                    vm.created_at,
                    deployment,
                    instance,
                    uuid,
                    vm.ips_json(),
                    record.dirty
                ],
            )?;
            write_vm(tx, id, None, true)?;
            record_fact(
                tx,
                &Event::new("orphan", "vm", &vm.cid)
                    .deployment(deployment)
                    .context(format!("was instance {instance}'s")),
            )?;
            let orphaned = by_cid(tx, &vm.cpi, &vm.cid)?.expect("just inserted");
            Ok(Some(orphaned))
        })
    }

    /// Gives an orphaned VM back to the instance it was orphaned from, as dirty as it was then,
    /// when that instance has no VM (a create-swap-delete whose new VM could not be made: the
    /// old one still runs and stays the instance's). Answers whether it did; with the instance
    /// holding another VM, or gone, the VM stays orphaned.
    pub fn restore_orphaned_vm(&self, cpi: &str, cid: &str) -> Result<bool> {
        self.write(|tx| {
            let Some(orphan) = by_cid(tx, cpi, cid)? else { return Ok(false) };
            match find(tx, &orphan.deployment, &orphan.instance_uuid)? {
                Some((id, record)) if record.vm.is_none() => {
                    let was_dirty: bool = tx.query_row(
                        "SELECT instance_was_dirty FROM orphaned_vms WHERE vm_cpi = ?1 AND vm_cid = ?2",
                        [cpi, cid],
                        |r| r.get(0),
                    )?;
                    write_vm(tx, id, Some(&orphan.vm), was_dirty)?;
                    let why = format!("instance {}'s again: no VM replaced it", orphan.instance);
                    drop_row(tx, &orphan, "restore", why)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// The orphaned VMs of `deployment` (every deployment's when `None`), oldest first.
    pub fn orphaned_vms(&self, deployment: Option<&str>) -> Result<Vec<OrphanedVm>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM orphaned_vms WHERE ?1 IS NULL OR deployment = ?1 ORDER BY orphaned_at, id"
        ))?;
        let rows = stmt.query_map([deployment], row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Forgets an orphaned VM once its CPI deleted it. Already forgotten: nothing changes.
    pub fn forget_orphaned_vm(&self, cpi: &str, cid: &str) -> Result<u64> {
        self.write(|tx| {
            let Some(orphan) = by_cid(tx, cpi, cid)? else { return Ok(read_serial(tx)?) };
            let why = format!("orphaned, was instance {}'s", orphan.instance);
            drop_row(tx, &orphan, "delete", why)
        })
    }
}

/// Removes an orphaned VM's row, recording `action` on the VM with `why`.
fn drop_row(tx: &rusqlite::Transaction<'_>, orphan: &OrphanedVm, action: &str, why: String) -> Result<u64> {
    tx.execute("DELETE FROM orphaned_vms WHERE vm_cpi = ?1 AND vm_cid = ?2", [&orphan.vm.cpi, &orphan.vm.cid])?;
    record_fact(tx, &Event::new(action, "vm", &orphan.vm.cid).deployment(&orphan.deployment).context(why))
}

const COLUMNS: &str =
    "vm_cid, vm_cpi, vm_endpoint_json, vm_created_at, deployment, instance, instance_uuid, orphaned_at, vm_ips_json";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OrphanedVm> {
    Ok(OrphanedVm {
        vm: VmRef {
            cid: r.get(0)?,
            cpi: r.get(1)?,
            endpoint_json: r.get(2)?,
            created_at: r.get(3)?,
            ips: ips_from_json(r.get(8)?),
        },
        deployment: r.get(4)?,
        instance: r.get(5)?,
        instance_uuid: r.get(6)?,
        orphaned_at: r.get(7)?,
    })
}

fn by_cid(conn: &Connection, cpi: &str, cid: &str) -> Result<Option<OrphanedVm>> {
    Ok(conn
        .query_row(&format!("SELECT {COLUMNS} FROM orphaned_vms WHERE vm_cpi = ?1 AND vm_cid = ?2"), [cpi, cid], row)
        .optional()?)
}

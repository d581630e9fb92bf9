//! Persistent disks: which instance each belongs to, whether it is the instance's active disk,
//! and the orphans — disks no instance uses any more, kept until deleted on purpose.
//!
//! A disk names its deployment instead of referencing its row, so an orphaned disk outlives a
//! deleted deployment (`rosh disks --orphaned` still lists it). A disk cid is unique across CPIs
//! here, so [`State::orphan_disk`] and [`State::delete_disk_record`] need only the cid.
//! An instance has at most one active disk: recording one as active makes the instance's
//! others inactive in the same transaction, so a disk migration's switch is one fact.

use rusqlite::{Connection, OptionalExtension, params};

use super::deployments::find_deployment;
use super::{Event, NOW, Result, State, StateError, now, read_serial, record_fact};

/// A persistent disk as the state records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskRecord {
    /// The CPI's id of the disk.
    pub cid: String,
    /// The name of the CPI that holds it.
    pub cpi: String,
    pub deployment: String,
    /// The instance it belongs to; `None` when orphaned.
    pub instance_uuid: Option<String>,
    pub size_mb: u64,
    /// The disk type's `cloud_properties`, as JSON; opaque to the state.
    pub cloud_properties_json: String,
    /// The instance's disk in use (attached and mounted), as opposed to one being migrated from
    /// or to. Only a disk that belongs to an instance can be active.
    pub active: bool,
    /// RFC 3339, UTC. Left empty, it is stamped when first recorded.
    pub created_at: String,
    /// When it became an orphan; stamped by the state for a disk recorded without an instance.
    pub orphaned_at: Option<String>,
}

fn event(action: &str, disk: &DiskRecord) -> Event {
    Event::new(action, "disk", &disk.cid).deployment(&disk.deployment)
}

impl State {
    /// Records a disk, creating or replacing its record by cid. A disk with an instance must
    /// name an instance of its deployment and is not orphaned; a disk without one is an orphan
    /// and never active. Returns the serial, which moves only if something differs.
    pub fn record_disk(&self, disk: &DiskRecord) -> Result<u64> {
        self.write(|tx| record_in(tx, disk.clone()))
    }

    /// A disk migration's switch, as one fact: `new` (its data copied from `old`) becomes its
    /// instance's active disk and `old` an orphan, in one transaction — a crash leaves either
    /// the old disk in use or the new one, never both or neither.
    pub fn replace_disk(&self, old_cid: &str, new: &DiskRecord) -> Result<u64> {
        self.write(|tx| {
            record_in(tx, DiskRecord { active: true, ..new.clone() })?;
            orphan_in(tx, old_cid)
        })
    }

    /// The disks of `deployment`'s instances (not the orphans), by instance then age.
    pub fn disks(&self, deployment: &str) -> Result<Vec<DiskRecord>> {
        query(
            &self.conn(),
            "WHERE deployment = ?1 AND orphaned_at IS NULL ORDER BY instance_uuid, created_at, id",
            [deployment],
        )
    }

    /// The instance's active disk, if it has one.
    pub fn instance_disk(&self, deployment: &str, uuid: &str) -> Result<Option<DiskRecord>> {
        let conn = self.conn();
        let disks = query(
            &conn,
            "WHERE deployment = ?1 AND instance_uuid = ?2 AND active = 1 AND orphaned_at IS NULL",
            (deployment, uuid),
        )?;
        Ok(disks.into_iter().next())
    }

    /// Makes the disk an orphan: no instance, not active. Already an orphan: nothing changes.
    pub fn orphan_disk(&self, cid: &str) -> Result<u64> {
        self.write(|tx| orphan_in(tx, cid))
    }

    /// Every orphaned disk, oldest orphan first.
    pub fn orphaned_disks(&self) -> Result<Vec<DiskRecord>> {
        query(&self.conn(), "WHERE orphaned_at IS NOT NULL ORDER BY orphaned_at, id", ())
    }

    /// The disk with cid `cid`, in use or orphaned.
    pub fn disk(&self, cid: &str) -> Result<Option<DiskRecord>> {
        by_cid(&self.conn(), cid)
    }

    /// Forgets the disk (after the CPI deleted it).
    pub fn delete_disk_record(&self, cid: &str) -> Result<u64> {
        self.write(|tx| {
            let disk = by_cid(tx, cid)?.ok_or_else(|| StateError::DiskNotFound(cid.to_string()))?;
            tx.execute("DELETE FROM disks WHERE disk_cid = ?1", [cid])?;
            record_fact(tx, &event("delete", &disk))
        })
    }
}

const COLUMNS: &str =
    "disk_cid, cpi, deployment, instance_uuid, size_mb, cloud_properties_json, active, created_at, orphaned_at";

fn disk_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DiskRecord> {
    Ok(DiskRecord {
        cid: r.get(0)?,
        cpi: r.get(1)?,
        deployment: r.get(2)?,
        instance_uuid: r.get(3)?,
        size_mb: r.get::<_, i64>(4)? as u64,
        cloud_properties_json: r.get(5)?,
        active: r.get(6)?,
        created_at: r.get(7)?,
        orphaned_at: r.get(8)?,
    })
}

fn query(conn: &Connection, rest: &str, params: impl rusqlite::Params) -> Result<Vec<DiskRecord>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM disks {rest}"))?;
    Ok(stmt.query_map(params, disk_row)?.collect::<rusqlite::Result<_>>()?)
}

fn by_cid(conn: &Connection, cid: &str) -> Result<Option<DiskRecord>> {
    Ok(conn.query_row(&format!("SELECT {COLUMNS} FROM disks WHERE disk_cid = ?1"), [cid], disk_row).optional()?)
}

/// [`State::record_disk`] inside a transaction.
fn record_in(tx: &rusqlite::Transaction<'_>, mut disk: DiskRecord) -> Result<u64> {
    match &disk.instance_uuid {
        Some(uuid) => {
            let known: Option<i64> = match find_deployment(tx, &disk.deployment)? {
                Some(id) => tx
                    .query_row(
                        "SELECT id FROM instances WHERE deployment_id = ?1 AND uuid = ?2",
                        params![id, uuid],
                        |r| r.get(0),
                    )
                    .optional()?,
                None => None,
            };
            if known.is_none() {
                return Err(StateError::InstanceNotFound { deployment: disk.deployment.clone(), uuid: uuid.clone() });
            }
            disk.orphaned_at = None;
        }
        None => disk.active = false,
    }
    let old = by_cid(tx, &disk.cid)?;
    if let Some(old) = &old {
        if disk.created_at.is_empty() {
            disk.created_at = old.created_at.clone();
        }
        if disk.instance_uuid.is_none() && disk.orphaned_at.is_none() {
            disk.orphaned_at = old.orphaned_at.clone();
        }
        if *old == disk {
            return Ok(read_serial(tx)?);
        }
    }
    let now = now(tx)?;
    if disk.created_at.is_empty() {
        disk.created_at = now.clone();
    }
    if disk.instance_uuid.is_none() && disk.orphaned_at.is_none() {
        disk.orphaned_at = Some(now);
    }
    if disk.active {
        tx.execute(
            "UPDATE disks SET active = 0 WHERE deployment = ?1 AND instance_uuid = ?2 AND disk_cid != ?3",
            params![disk.deployment, disk.instance_uuid, disk.cid],
        )?;
    }
    tx.execute(
        "INSERT INTO disks (disk_cid, cpi, deployment, instance_uuid, size_mb, cloud_properties_json, active,
                                created_at, orphaned_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (disk_cid) DO UPDATE SET cpi = ?2, deployment = ?3, instance_uuid = ?4, size_mb = ?5,
                 cloud_properties_json = ?6, active = ?7, created_at = ?8, orphaned_at = ?9",
        params![
            disk.cid,
            disk.cpi,
            disk.deployment,
            disk.instance_uuid,
            disk.size_mb as i64,
            disk.cloud_properties_json,
            disk.active,
            disk.created_at,
            disk.orphaned_at
        ],
    )?;
    let mut event = event(if old.is_some() { "update" } else { "create" }, &disk);
    if let Some(uuid) = &disk.instance_uuid {
        event = event.context(format!("for instance {uuid}"));
    }
    record_fact(tx, &event)
}

/// [`State::orphan_disk`] inside a transaction.
fn orphan_in(tx: &rusqlite::Transaction<'_>, cid: &str) -> Result<u64> {
    let disk = by_cid(tx, cid)?.ok_or_else(|| StateError::DiskNotFound(cid.to_string()))?;
    if disk.orphaned_at.is_some() {
        return Ok(read_serial(tx)?);
    }
    tx.execute(
        &format!("UPDATE disks SET instance_uuid = NULL, active = 0, orphaned_at = {NOW} WHERE disk_cid = ?1"),
        [cid],
    )?;
    let mut event = event("orphan", &disk);
    if let Some(uuid) = &disk.instance_uuid {
        event = event.context(format!("was instance {uuid}'s"));
    }
    record_fact(tx, &event)
}

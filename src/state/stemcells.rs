//! Uploaded stemcells, and the cid each CPI gave a stemcell when it was uploaded there.
//!
//! A stemcell's image goes to a CPI the first time a deploy needs it on that CPI; the cid is
//! recorded per (stemcell, CPI name). Deleting a stemcell record drops its cids: deleting the
//! images from the CPIs first ([`State::stemcell_cids`] lists them) is the caller's job.

use rusqlite::{Connection, OptionalExtension};

use super::{Event, NOW, Recorded, Result, State, StateError, from_json, read_serial, record_fact, to_json};

/// A stemcell as uploaded: what its `stemcell.MF` says, and its id in the CPI once created there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StemcellRecord {
    pub name: String,
    pub version: String,
    pub operating_system: String,
    pub api_version: Option<u32>,
    /// The CPI's id for the stemcell (an AMI, a local image); filled in by later issues.
    pub cid: Option<String>,
    pub sha1: Option<String>,
    /// `cloud_properties` from `stemcell.MF`, as JSON; opaque to the state.
    pub cloud_properties_json: String,
    /// `stemcell_formats`.
    pub formats: Vec<String>,
    /// The blobstore name of a heavy stemcell's image; `None` for a light stemcell.
    #[serde(default)]
    pub image_sha256: Option<String>,
}

/// One line of `rosh stemcells`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StemcellSummary {
    pub name: String,
    pub version: String,
    pub operating_system: String,
    pub cid: Option<String>,
    /// Deployments using this stemcell, sorted.
    pub in_use_by: Vec<String>,
}

impl State {
    /// Records a stemcell; [`Recorded::AlreadyExists`], changing nothing, if name/version is there.
    pub fn record_stemcell(&self, stemcell: &StemcellRecord) -> Result<Recorded> {
        self.write(|tx| {
            if find_stemcell(tx, &stemcell.name, &stemcell.version)?.is_some() {
                return Ok(Recorded::AlreadyExists);
            }
            tx.execute(
                "INSERT INTO stemcells (name, version, operating_system, api_version, cid, sha1,
                                        cloud_properties_json, formats_json, image_sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                (
                    &stemcell.name,
                    &stemcell.version,
                    &stemcell.operating_system,
                    stemcell.api_version,
                    &stemcell.cid,
                    &stemcell.sha1,
                    &stemcell.cloud_properties_json,
                    to_json(&stemcell.formats),
                    &stemcell.image_sha256,
                ),
            )?;
            let name = format!("{}/{}", stemcell.name, stemcell.version);
            let serial = record_fact(tx, &Event::new("upload", "stemcell", name))?;
            Ok(Recorded::Created { serial })
        })
    }

    /// Every stemcell, by name then upload order.
    pub fn stemcells(&self) -> Result<Vec<StemcellSummary>> {
        self.read(|tx| {
            let mut stmt =
                tx.prepare("SELECT id, name, version, operating_system, cid FROM stemcells ORDER BY name, id")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    StemcellSummary {
                        name: r.get(1)?,
                        version: r.get(2)?,
                        operating_system: r.get(3)?,
                        cid: r.get(4)?,
                        in_use_by: Vec::new(),
                    },
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, mut summary) = row?;
                summary.in_use_by = deployments_using_stemcell(tx, id)?;
                out.push(summary);
            }
            Ok(out)
        })
    }

    pub fn stemcell(&self, name: &str, version: &str) -> Result<Option<StemcellRecord>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT name, version, operating_system, api_version, cid, sha1, cloud_properties_json, formats_json,
                        image_sha256
                 FROM stemcells WHERE name = ?1 AND version = ?2",
                [name, version],
                |r| {
                    Ok((
                        StemcellRecord {
                            name: r.get(0)?,
                            version: r.get(1)?,
                            operating_system: r.get(2)?,
                            api_version: r.get(3)?,
                            cid: r.get(4)?,
                            sha1: r.get(5)?,
                            cloud_properties_json: r.get(6)?,
                            formats: Vec::new(),
                            image_sha256: r.get(8)?,
                        },
                        r.get::<_, String>(7)?,
                    ))
                },
            )
            .optional()?;
        let Some((mut record, formats)) = row else { return Ok(None) };
        record.formats = from_json(|| format!("formats of stemcell {name}/{version}"), &formats)?;
        Ok(Some(record))
    }

    /// The cid CPI `cpi` gave stemcell `name`/`version`, if it was uploaded there.
    pub fn stemcell_cid(&self, cpi: &str, name: &str, version: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT c.cid FROM stemcell_cids c JOIN stemcells s ON s.id = c.stemcell_id
                 WHERE c.cpi = ?1 AND s.name = ?2 AND s.version = ?3",
                [cpi, name, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every (CPI name, cid) of stemcell `name`/`version`, by CPI name: what to delete from
    /// the CPIs before the stemcell's record goes.
    pub fn stemcell_cids(&self, name: &str, version: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT c.cpi, c.cid FROM stemcell_cids c JOIN stemcells s ON s.id = c.stemcell_id
             WHERE s.name = ?1 AND s.version = ?2 ORDER BY c.cpi",
        )?;
        Ok(stmt.query_map([name, version], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that CPI `cpi` holds stemcell `name`/`version` as `cid`, replacing an earlier cid
    /// there. The stemcell must be uploaded. Returns the serial, which moves only on a change.
    pub fn set_stemcell_cid(&self, cpi: &str, name: &str, version: &str, cid: &str) -> Result<u64> {
        let label = format!("{name}/{version}");
        self.write(|tx| {
            let id = find_stemcell(tx, name, version)?.ok_or_else(|| StateError::StemcellNotFound(label.clone()))?;
            let old: Option<String> = tx
                .query_row("SELECT cid FROM stemcell_cids WHERE stemcell_id = ?1 AND cpi = ?2", (id, cpi), |r| r.get(0))
                .optional()?;
            if old.as_deref() == Some(cid) {
                return Ok(read_serial(tx)?);
            }
            tx.execute(
                &format!(
                    "INSERT INTO stemcell_cids (stemcell_id, cpi, cid) VALUES (?1, ?2, ?3)
                     ON CONFLICT (stemcell_id, cpi) DO UPDATE SET cid = ?3, created_at = {NOW}"
                ),
                (id, cpi, cid),
            )?;
            let event = Event::new("upload", "stemcell", label.clone()).context(format!("to CPI {cpi} as {cid}"));
            record_fact(tx, &event)
        })
    }

    /// Deletes a stemcell; refused while a deployment uses it.
    pub fn delete_stemcell(&self, name: &str, version: &str) -> Result<()> {
        let label = format!("{name}/{version}");
        self.write(|tx| {
            let id = find_stemcell(tx, name, version)?.ok_or_else(|| StateError::StemcellNotFound(label.clone()))?;
            let users = deployments_using_stemcell(tx, id)?;
            if !users.is_empty() {
                return Err(StateError::StemcellInUse { stemcell: label.clone(), deployments: users });
            }
            tx.execute("DELETE FROM stemcells WHERE id = ?1", [id])?;
            record_fact(tx, &Event::new("delete", "stemcell", label.clone()))?;
            Ok(())
        })
    }
}

impl State {
    /// True when some uploaded stemcell still uses this image blob (so it must stay).
    pub fn stemcells_using_image(&self, sha256: &str) -> Result<bool> {
        let count: i64 =
            self.conn().query_row("SELECT count(*) FROM stemcells WHERE image_sha256 = ?1", [sha256], |r| r.get(0))?;
        Ok(count > 0)
    }
}

pub(super) fn find_stemcell(conn: &Connection, name: &str, version: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM stemcells WHERE name = ?1 AND version = ?2", [name, version], |r| r.get(0))
        .optional()
}

fn deployments_using_stemcell(conn: &Connection, stemcell_id: i64) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT d.name FROM deployment_stemcells ds JOIN deployments d ON d.id = ds.deployment_id
         WHERE ds.stemcell_id = ?1 ORDER BY d.name",
    )?;
    stmt.query_map([stemcell_id], |r| r.get(0))?.collect()
}

//! Uploaded stemcells.

use rusqlite::{Connection, OptionalExtension};

use super::{Event, Recorded, Result, State, StateError, from_json, record_fact, to_json};

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

//! Configs the director holds: the cloud config, runtime configs and the CPI config, each by
//! type and name (`default` unless named), every version kept.
//!
//! The content is stored exactly as given (comments, key order and all), with its SHA-256; what
//! it means is `manifest::model`'s business, and the CLI validates a config before storing it.
//! Updating with the content the latest version already has stores nothing and moves nothing.
//! Old versions stay because a deployment records which versions it was deployed with
//! ([`State::record_deployed_manifest`]); deleting a config only marks its versions deleted, so
//! those references still resolve through [`State::config_by_id`].

use std::fmt;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension};

use super::{Event, Result, State, StateError, record_fact};

/// The kinds of config, as `bosh configs --type` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigKind {
    Cloud,
    Runtime,
    Cpi,
}

impl ConfigKind {
    pub const ALL: [ConfigKind; 3] = [ConfigKind::Cloud, ConfigKind::Runtime, ConfigKind::Cpi];

    /// `cloud`, `runtime`, `cpi`: the stored `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Cloud => "cloud",
            ConfigKind::Runtime => "runtime",
            ConfigKind::Cpi => "cpi",
        }
    }

    /// The event object type: `cloud-config`, …
    fn object_type(self) -> String {
        format!("{}-config", self.as_str())
    }
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConfigKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ConfigKind, String> {
        ConfigKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown config type `{s}`: expected cloud, runtime or cpi"))
    }
}

/// One stored version of a config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// Unique across all configs; what deployments refer to.
    pub id: i64,
    pub kind: ConfigKind,
    pub name: String,
    /// 1 for the first version of this type and name, counting on from there.
    pub version: u64,
    /// The YAML as given.
    pub content: String,
    /// Hex SHA-256 of `content`.
    pub sha256: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// What [`State::update_config`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigVersion {
    /// The latest version's id: the new one, or the existing one when nothing changed.
    pub id: i64,
    pub kind: ConfigKind,
    pub name: String,
    pub version: u64,
    pub sha256: String,
    pub created_at: String,
    /// False when the latest version already had this content (nothing stored).
    pub changed: bool,
}

const COLUMNS: &str = "c.id, c.type, c.name, c.content, c.sha256, c.created_at,
    (SELECT count(*) FROM configs v WHERE v.type = c.type AND v.name = c.name AND v.id <= c.id)";

impl State {
    /// Stores `content` as the next version of the `kind` config `name`, unless the latest
    /// (not deleted) version already has exactly this content.
    pub fn update_config(&self, kind: ConfigKind, name: &str, content: &str) -> Result<ConfigVersion> {
        let sha256 = crate::release::digest::sha256_hex(content.as_bytes());
        self.write(|tx| {
            if let Some(latest) = latest(tx, kind, name)?
                && latest.content == content
            {
                return Ok(version_of(latest, false));
            }
            tx.execute(
                "INSERT INTO configs (type, name, content, sha256) VALUES (?1, ?2, ?3, ?4)",
                (kind.as_str(), name, content, &sha256),
            )?;
            let id = tx.last_insert_rowid();
            record_fact(tx, &Event::new("update", kind.object_type(), name))?;
            let stored = by_id(tx, id)?.ok_or_else(|| StateError::ConfigNotFound(format!("config {id}")))?;
            Ok(version_of(stored, true))
        })
    }

    /// The current version of the `kind` config `name`; `None` if there is none or it was deleted.
    pub fn latest_config(&self, kind: ConfigKind, name: &str) -> Result<Option<Config>> {
        latest(&self.conn(), kind, name)
    }

    /// The current version of every `kind` config that is not deleted, by name.
    pub fn latest_configs(&self, kind: ConfigKind) -> Result<Vec<Config>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM configs c
             WHERE c.type = ?1 AND c.deleted = 0
               AND c.id = (SELECT max(id) FROM configs l WHERE l.type = c.type AND l.name = c.name)
             ORDER BY c.name"
        ))?;
        let rows = stmt.query_map([kind.as_str()], config_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode).collect()
    }

    /// Any stored version by id, deleted or not (a deployment may have been deployed with it).
    pub fn config_by_id(&self, id: i64) -> Result<Option<Config>> {
        by_id(&self.conn(), id)
    }

    /// Marks every version of the `kind` config `name` deleted. Returns false, changing nothing,
    /// if there was no current version.
    pub fn delete_config(&self, kind: ConfigKind, name: &str) -> Result<bool> {
        self.write(|tx| {
            if latest(tx, kind, name)?.is_none() {
                return Ok(false);
            }
            tx.execute(
                "UPDATE configs SET deleted = 1 WHERE type = ?1 AND name = ?2 AND deleted = 0",
                (kind.as_str(), name),
            )?;
            record_fact(tx, &Event::new("delete", kind.object_type(), name))?;
            Ok(true)
        })
    }
}

/// Fails unless config `id` exists and is of `kind`: for a caller about to refer to it.
pub(super) fn check_config(conn: &Connection, id: i64, kind: ConfigKind) -> Result<()> {
    match by_id(conn, id)? {
        Some(config) if config.kind == kind => Ok(()),
        _ => Err(StateError::ConfigNotFound(format!("{kind} config with id {id}"))),
    }
}

type ConfigRow = (i64, String, String, String, String, String, i64);

fn config_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ConfigRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn decode((id, kind, name, content, sha256, created_at, version): ConfigRow) -> Result<Config> {
    let kind = kind.parse().map_err(|e: String| StateError::Corrupt {
        what: format!("type of config {id}"),
        source: serde::de::Error::custom(e),
    })?;
    Ok(Config { id, kind, name, version: version as u64, content, sha256, created_at })
}

fn version_of(config: Config, changed: bool) -> ConfigVersion {
    ConfigVersion {
        id: config.id,
        kind: config.kind,
        name: config.name,
        version: config.version,
        sha256: config.sha256,
        created_at: config.created_at,
        changed,
    }
}

fn latest(conn: &Connection, kind: ConfigKind, name: &str) -> Result<Option<Config>> {
    let row = conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM configs c WHERE c.type = ?1 AND c.name = ?2 AND c.deleted = 0
                 ORDER BY c.id DESC LIMIT 1"
            ),
            (kind.as_str(), name),
            config_row,
        )
        .optional()?;
    // Deleting marks every version, so the newest undeleted row is the current one.
    row.map(decode).transpose()
}

fn by_id(conn: &Connection, id: i64) -> Result<Option<Config>> {
    let row =
        conn.query_row(&format!("SELECT {COLUMNS} FROM configs c WHERE c.id = ?1"), [id], config_row).optional()?;
    row.map(decode).transpose()
}

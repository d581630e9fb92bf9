//! Versioned schema migrations of `state.db`.
//!
//! The database's `PRAGMA user_version` is the schema version; `schema_migrations` keeps the
//! history (which rosh applied which migration, when). Each migration runs in its own
//! `BEGIN IMMEDIATE` transaction that also sets `user_version`, so a crash mid-migration leaves the
//! previous version intact, and two rosh processes opening a fresh database at once migrate it once
//! (the second re-reads the version inside its transaction). A database whose version is above
//! [`LATEST`] was written by a newer rosh and is refused, never downgraded.
//!
//! To change the schema, append a migration: never edit one that has shipped.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{Result, StateError};

pub struct Migration {
    pub version: u32,
    pub description: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "releases, jobs, packages, stemcells, deployment usage, events, locks",
        sql: r#"
CREATE TABLE schema_migrations (
    version      INTEGER PRIMARY KEY,
    description  TEXT NOT NULL,
    rosh_version TEXT NOT NULL,
    applied_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

CREATE TABLE state_serial (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    serial INTEGER NOT NULL
);
INSERT INTO state_serial (id, serial) VALUES (1, 0);

CREATE TABLE releases (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE release_versions (
    id                  INTEGER PRIMARY KEY,
    release_id          INTEGER NOT NULL REFERENCES releases (id),
    version             TEXT NOT NULL,
    commit_hash         TEXT,
    uncommitted_changes INTEGER NOT NULL,
    uploaded_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (release_id, version)
);

-- One row per (name, fingerprint), shared by every release version that lists it.
-- `version`/`sha1`/`blob_sha256` are those of the first upload; the blob is what is stored.
CREATE TABLE packages (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL,
    fingerprint       TEXT NOT NULL,
    version           TEXT NOT NULL,
    sha1              TEXT NOT NULL,
    blob_sha256       TEXT,
    dependencies_json TEXT NOT NULL,
    UNIQUE (name, fingerprint)
);
CREATE INDEX packages_blob ON packages (blob_sha256);

CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    version       TEXT NOT NULL,
    sha1          TEXT NOT NULL,
    blob_sha256   TEXT NOT NULL,
    packages_json TEXT NOT NULL,
    spec_json     TEXT NOT NULL,
    UNIQUE (name, fingerprint)
);
CREATE INDEX jobs_blob ON jobs (blob_sha256);

-- `version` is what this release's manifest calls the package; `position` keeps manifest order.
CREATE TABLE release_version_packages (
    release_version_id INTEGER NOT NULL REFERENCES release_versions (id) ON DELETE CASCADE,
    package_id         INTEGER NOT NULL REFERENCES packages (id),
    version            TEXT NOT NULL,
    position           INTEGER NOT NULL,
    PRIMARY KEY (release_version_id, package_id)
);
CREATE INDEX release_version_packages_package ON release_version_packages (package_id);

CREATE TABLE release_version_jobs (
    release_version_id INTEGER NOT NULL REFERENCES release_versions (id) ON DELETE CASCADE,
    job_id             INTEGER NOT NULL REFERENCES jobs (id),
    version            TEXT NOT NULL,
    position           INTEGER NOT NULL,
    PRIMARY KEY (release_version_id, job_id)
);
CREATE INDEX release_version_jobs_job ON release_version_jobs (job_id);

CREATE TABLE stemcells (
    id                    INTEGER PRIMARY KEY,
    name                  TEXT NOT NULL,
    version               TEXT NOT NULL,
    operating_system      TEXT NOT NULL,
    api_version           INTEGER,
    cid                   TEXT,
    sha1                  TEXT,
    cloud_properties_json TEXT NOT NULL,
    formats_json          TEXT NOT NULL,
    uploaded_at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (name, version)
);

CREATE TABLE deployments (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

-- No ON DELETE CASCADE towards releases and stemcells: deleting one in use fails even if a
-- caller forgot to check.
CREATE TABLE deployment_releases (
    deployment_id      INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    release_version_id INTEGER NOT NULL REFERENCES release_versions (id),
    PRIMARY KEY (deployment_id, release_version_id)
);
CREATE INDEX deployment_releases_release ON deployment_releases (release_version_id);

CREATE TABLE deployment_stemcells (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    stemcell_id   INTEGER NOT NULL REFERENCES stemcells (id),
    PRIMARY KEY (deployment_id, stemcell_id)
);
CREATE INDEX deployment_stemcells_stemcell ON deployment_stemcells (stemcell_id);

-- `serial` is the state serial the event's fact produced; NULL for events that change nothing.
CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    time        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    serial      INTEGER,
    action      TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_name TEXT NOT NULL,
    deployment  TEXT,
    context     TEXT,
    error       TEXT
);

CREATE TABLE locks (
    name          TEXT PRIMARY KEY,
    token         TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    process_start TEXT,
    hostname      TEXT NOT NULL,
    command       TEXT NOT NULL,
    acquired_at   INTEGER NOT NULL
);
"#,
    },
    Migration {
        version: 2,
        description: "stemcell image blobs",
        sql: r#"
ALTER TABLE stemcells ADD COLUMN image_sha256 TEXT;
"#,
    },
];

/// The schema version this rosh writes.
pub const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

pub(super) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map(|v| v as u32)
}

/// Brings the database to [`LATEST`], one transaction per migration.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let open_err = |source| StateError::Open { path: path.to_path_buf(), source };
    let newer = |found| StateError::NewerSchema { path: path.to_path_buf(), found, supported: LATEST };
    let found = user_version(conn).map_err(open_err)?;
    if found > LATEST {
        return Err(newer(found));
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > found) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_err)?;
        let now = user_version(&tx).map_err(open_err)?;
        if now > LATEST {
            return Err(newer(now));
        }
        if now >= migration.version {
            continue; // another process got there first
        }
        tx.execute_batch(migration.sql).map_err(open_err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, description, rosh_version) VALUES (?1, ?2, ?3)",
            (migration.version, migration.description, env!("CARGO_PKG_VERSION")),
        )
        .map_err(open_err)?;
        tx.pragma_update(None, "user_version", migration.version).map_err(open_err)?;
        tx.commit().map_err(open_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, i + 1, "{}", migration.description);
        }
    }

    #[test]
    fn a_half_applied_migration_rolls_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut conn = Connection::open(&path).unwrap();
        // A table the first migration creates, made in advance: migration 1 fails part way.
        conn.execute_batch("CREATE TABLE locks (x)").unwrap();
        assert!(migrate(&mut conn, &path).is_err());
        assert_eq!(user_version(&conn).unwrap(), 0);
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name != 'locks'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing of the failed migration stays");
    }
}

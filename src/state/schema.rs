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
    Migration {
        version: 3,
        description: "configs, deployed manifests, instances, IPs, disks, compiled packages, variables",
        sql: r#"
-- Every version of every config is kept: a deployment names the versions it was deployed with.
-- The latest row of a (type, name) is the current one; `deleted` marks a removed config
-- without breaking those references.
CREATE TABLE configs (
    id         INTEGER PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type IN ('cloud', 'runtime', 'cpi')),
    name       TEXT NOT NULL DEFAULT 'default',
    content    TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    deleted    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX configs_type_name ON configs (type, name, id);

-- The last successful deploy, and a deploy in progress (NULL when none is).
ALTER TABLE deployments ADD COLUMN manifest_text TEXT;
ALTER TABLE deployments ADD COLUMN cloud_config_id INTEGER REFERENCES configs (id);
ALTER TABLE deployments ADD COLUMN deployed_at TEXT;
ALTER TABLE deployments ADD COLUMN deploying_since TEXT;

CREATE TABLE deployment_runtime_configs (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    config_id     INTEGER NOT NULL REFERENCES configs (id),
    position      INTEGER NOT NULL,
    PRIMARY KEY (deployment_id, config_id)
);

-- No ON DELETE CASCADE towards deployments: deleting a deployment that still has instances
-- fails even if a caller forgot to check.
CREATE TABLE instances (
    id               INTEGER PRIMARY KEY,
    deployment_id    INTEGER NOT NULL REFERENCES deployments (id),
    group_name       TEXT NOT NULL,
    idx              INTEGER NOT NULL,
    uuid             TEXT NOT NULL,
    az               TEXT,
    bootstrap        INTEGER NOT NULL DEFAULT 0,
    state            TEXT NOT NULL CHECK (state IN ('started', 'stopped', 'detached')),
    dirty            INTEGER NOT NULL DEFAULT 0,
    ignored          INTEGER NOT NULL DEFAULT 0,
    vm_cid           TEXT,
    vm_cpi           TEXT,
    vm_endpoint_json TEXT,
    vm_created_at    TEXT,
    applied_json     TEXT,
    applied_digest   TEXT,
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (deployment_id, uuid),
    UNIQUE (deployment_id, group_name, idx)
);
-- One VM belongs to one instance.
CREATE UNIQUE INDEX instances_vm ON instances (vm_cpi, vm_cid) WHERE vm_cid IS NOT NULL;

-- A director hands out an IP once, whichever deployment asks.
CREATE TABLE instance_ips (
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    network     TEXT NOT NULL,
    ip          TEXT NOT NULL UNIQUE,
    PRIMARY KEY (instance_id, network)
);

-- Disks name their deployment rather than reference it: an orphaned disk outlives its
-- deployment, and is kept until deleted on purpose.
CREATE TABLE disks (
    id                    INTEGER PRIMARY KEY,
    disk_cid              TEXT NOT NULL UNIQUE,
    cpi                   TEXT NOT NULL,
    deployment            TEXT NOT NULL,
    instance_uuid         TEXT,
    size_mb               INTEGER NOT NULL,
    cloud_properties_json TEXT NOT NULL,
    active                INTEGER NOT NULL,
    created_at            TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    orphaned_at           TEXT
);
CREATE INDEX disks_instance ON disks (deployment, instance_uuid);
CREATE UNIQUE INDEX disks_active ON disks (deployment, instance_uuid) WHERE active = 1 AND instance_uuid IS NOT NULL;

-- Shared by every deployment; kept when releases go (their blobs are referenced).
CREATE TABLE compiled_packages (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    fingerprint      TEXT NOT NULL,
    stemcell_os      TEXT NOT NULL,
    stemcell_version TEXT NOT NULL,
    dependency_key   TEXT NOT NULL,
    blob_sha256      TEXT NOT NULL,
    sha1             TEXT NOT NULL,
    size             INTEGER NOT NULL,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (name, fingerprint, stemcell_os, stemcell_version, dependency_key)
);
CREATE INDEX compiled_packages_blob ON compiled_packages (blob_sha256);

-- Generated credentials: secrets, never printed.
CREATE TABLE variables (
    deployment_id INTEGER NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    value_json    TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (deployment_id, name)
);
"#,
    },
    Migration {
        version: 4,
        description: "stemcell cids per CPI",
        sql: r#"
-- A stemcell is uploaded to each CPI that makes VMs from it, once: the CPI's id for it.
CREATE TABLE stemcell_cids (
    stemcell_id INTEGER NOT NULL REFERENCES stemcells (id) ON DELETE CASCADE,
    cpi         TEXT NOT NULL,
    cid         TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (stemcell_id, cpi)
);
"#,
    },
    Migration {
        version: 5,
        description: "release requirements",
        sql: r#"
-- The `requires:` block of a release's release.MF as JSON (docs/compat.md); NULL when the
-- release declares none, as every release uploaded before this migration.
ALTER TABLE release_versions ADD COLUMN requires_json TEXT;
"#,
    },
    Migration {
        version: 6,
        description: "orphaned VMs",
        sql: r#"
-- VMs no instance owns any more that still exist in the cloud (the old VM of a
-- create-swap-delete until it is deleted). Names its deployment and instance, as disks do.
CREATE TABLE orphaned_vms (
    id               INTEGER PRIMARY KEY,
    vm_cid           TEXT NOT NULL,
    vm_cpi           TEXT NOT NULL,
    vm_endpoint_json TEXT NOT NULL,
    vm_created_at    TEXT NOT NULL,
    deployment       TEXT NOT NULL,
    instance         TEXT NOT NULL,
    instance_uuid    TEXT NOT NULL,
    orphaned_at      TEXT NOT NULL,
    UNIQUE (vm_cpi, vm_cid)
);
"#,
    },
    Migration {
        version: 7,
        description: "IPs the CPI gave VMs; orphaned VMs remember their instance's dirty flag",
        sql: r#"
-- Network name -> IP, as JSON, for networks where the infrastructure assigns the address
-- (dynamic): what create_vm answered. NULL when the VM has none (every VM made before this).
ALTER TABLE instances ADD COLUMN vm_ips_json TEXT;
ALTER TABLE orphaned_vms ADD COLUMN vm_ips_json TEXT;
-- Whether the instance was dirty when the VM left it, so giving the VM back (no new VM could
-- be made) restores the instance as it was.
ALTER TABLE orphaned_vms ADD COLUMN instance_was_dirty INTEGER NOT NULL DEFAULT 1;
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

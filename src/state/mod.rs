//! The director database: what rosh holds and has done, in one SQLite file.
//!
//! Owns: `state.db` in the state directory (`$ROSH_STATE_DIR`, default `~/.rosh`), its schema and
//! migrations ([`schema`]), the records of uploaded releases and stemcells, which deployment uses
//! which of them, the event log, the state serial, and named locks between rosh processes.
//! Since schema version 3 it also holds what deploys need to remember: versioned configs
//! (`configs`), each deployment's last deployed manifest, its instances with their VMs, IPs
//! and what converge last applied (`instances`), persistent disks (`disks`), the compiled
//! package cache shared by all deployments (`compiled`) and generated variables
//! (`variables`).
//! Leaves to others: reading release and stemcell formats (`release`), the blobs themselves
//! (`blobstore`; the state only names them by SHA-256 and says which are still referenced),
//! what configs and manifests mean (`manifest`; the state keeps their text as given), and the
//! effects (`converge`: it records each effect here the moment it happens).
//!
//! Decisions worth knowing:
//! - **One transaction per recorded fact.** Each `record_*`/`delete_*`/`set_*` call is one
//!   `BEGIN IMMEDIATE` transaction that writes the fact, bumps the state serial and appends its
//!   event, so a crash at any point leaves either all of it or none. The database runs in WAL mode
//!   with `synchronous = FULL`: a committed fact survives power loss, not only a process crash.
//! - **The serial** ([`State::serial`]) counts changes to what rosh holds; a saved plan records it
//!   and is refused once it moved. Events recorded on their own ([`State::record_event`]), lock
//!   traffic and no-ops (uploading a release that is already there, writing an instance record
//!   as it already is, a config with the content it has) do not move it. Writes that may be
//!   no-ops return the serial, moved or not.
//! - **Secrets stay inside.** Generated variables and the specs converge applied (which may hold
//!   rendered secrets) are read through their getters only: events name variables, never their
//!   values, and `InstanceRecord` neither serializes nor `Debug`-prints its applied spec.
//! - **Dedupe by fingerprint.** Jobs and packages are stored once per (name, fingerprint) and
//!   joined to each release version that lists them, as the BOSH director does: the second
//!   release carrying a package reuses the first one's blob. Deleting the last release version
//!   that uses a job or package removes its row and reports its blob as orphaned; deleting the
//!   blob is the caller's job, after the transaction commits (a crash in between leaks a blob,
//!   which [`State::referenced_blobs`] against the blobstore's list finds; it never loses one).
//! - **Locks live in the database** (see [`lock`]), so they need nothing beyond the state dir and
//!   record who holds them; a holder that died on this host is taken over.
//! - `State` is `Send + Sync` and cheap to clone (one connection behind a mutex; SQLite
//!   serialises writers anyway).

mod compiled;
mod configs;
mod deployments;
mod disks;
mod events;
mod instances;
pub mod lock;
mod releases;
pub mod schema;
mod stemcells;
mod variables;
mod vms;

use std::fs::{self, DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use compiled::{CompiledKey, CompiledPackageRecord};
pub use configs::{Config, ConfigKind, ConfigVersion};
pub use deployments::{DeployedManifest, DeploymentSummary};
pub use disks::DiskRecord;
pub use events::{Event, EventRecord};
pub use instances::{InstanceRecord, InstanceState, VmRef};
pub use lock::{LockGuard, LockHolder, LockInfo};
pub use releases::{Deleted, JobRecord, PackageRecord, ReleaseRecord, ReleaseSummary};
pub use stemcells::{StemcellRecord, StemcellSummary};
pub use vms::OrphanedVm;

/// The file name of the database inside the state directory.
pub const DB_FILE: &str = "state.db";

/// How long a statement waits for another process's write transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {}: {action}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot find the state directory: set ROSH_STATE_DIR or HOME")]
    NoStateDir,
    #[error("opening the state database {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "the state database {} cannot use write-ahead logging (journal mode stays `{journal_mode}`); \
         put the state directory on a local filesystem",
        path.display()
    )]
    NoWal { path: PathBuf, journal_mode: String },
    #[error(
        "the state database {} has schema version {found}, but this rosh knows versions up to {supported}: \
         it was written by a newer rosh; use that rosh (refusing to open it rather than misread it)",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database: stored {what} does not decode: {source}")]
    Corrupt { what: String, source: serde_json::Error },
    #[error("release {0} is not uploaded")]
    ReleaseNotFound(String),
    #[error("stemcell {0} is not uploaded")]
    StemcellNotFound(String),
    #[error("release {release} is in use by deployment{} {}; delete or update {} first", plural(deployments), deployments.join(", "), them(deployments))]
    ReleaseInUse { release: String, deployments: Vec<String> },
    #[error("stemcell {stemcell} is in use by deployment{} {}; delete or update {} first", plural(deployments), deployments.join(", "), them(deployments))]
    StemcellInUse { stemcell: String, deployments: Vec<String> },
    #[error("deployment {0} does not exist")]
    DeploymentNotFound(String),
    #[error(
        "deployment {deployment} still has {instances} instance{} and {disks} active disk{}; \
         delete them first, or drop their records (--force)",
        if *instances == 1 { "" } else { "s" }, if *disks == 1 { "" } else { "s" }
    )]
    DeploymentInUse { deployment: String, instances: usize, disks: usize },
    #[error("deployment {deployment} has no instance {uuid}")]
    InstanceNotFound { deployment: String, uuid: String },
    #[error("deployment {deployment}: {group}/{index} is already instance {holder}, not {uuid}")]
    InstanceSlotTaken { deployment: String, group: String, index: u64, uuid: String, holder: String },
    #[error(
        "deployment {deployment}: instance {instance} still has VM {cid}; delete the VM and record that \
         (set_instance_vm with None) before deleting the instance"
    )]
    InstanceHasVm { deployment: String, instance: String, cid: String },
    #[error("VM {cid} (CPI {cpi}) already belongs to {holder}")]
    VmInUse { cid: String, cpi: String, holder: String },
    #[error("IP {ip} (network {network}) is already held by {holder}; a director hands out an IP once")]
    IpInUse { ip: String, network: String, holder: String },
    #[error("network {network}: `{ip}` is not an IP address")]
    InvalidIp { network: String, ip: String },
    #[error("disk {0} is not recorded")]
    DiskNotFound(String),
    #[error("{0} is not recorded")]
    ConfigNotFound(String),
    #[error("lock {name} is held by {holder}")]
    Locked { name: String, holder: LockHolder },
    #[error("lock {name} is held by {holder}; gave up after waiting {}s", waited.as_secs())]
    LockTimeout { name: String, holder: LockHolder, waited: Duration },
}

fn plural(items: &[String]) -> &'static str {
    if items.len() == 1 { "" } else { "s" }
}

fn them(items: &[String]) -> &'static str {
    if items.len() == 1 { "it" } else { "them" }
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The outcome of recording something that may already be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Newly recorded; the state serial is now `serial`.
    Created { serial: u64 },
    /// Already recorded under that name and version: nothing changed.
    AlreadyExists,
}

/// An open director database. Cheap to clone; every clone shares one connection.
#[derive(Clone)]
pub struct State {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    dir: PathBuf,
    db_path: PathBuf,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").field("db_path", &self.inner.db_path).finish_non_exhaustive()
    }
}

impl State {
    /// Opens the state in `dir`, creating the directory (0700) and `state.db` (0600) if needed, and
    /// migrates the schema to this rosh's version. Refuses a database from a newer rosh.
    pub fn open(dir: &Path) -> Result<State> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| StateError::Io {
            action: "creating it",
            path: dir.to_path_buf(),
            source,
        })?;
        let db_path = dir.join(DB_FILE);
        // Create the file ourselves so it is 0600 from the start; SQLite gives its -wal and -shm
        // files the database file's mode.
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(&db_path);
        let file =
            file.map_err(|source| StateError::Io { action: "creating state.db", path: db_path.clone(), source })?;
        let mode = file.metadata().map(|m| m.permissions().mode()).unwrap_or(0o600);
        if mode & 0o077 != 0 {
            fs::set_permissions(&db_path, fs::Permissions::from_mode(0o600)).map_err(|source| StateError::Io {
                action: "making state.db private",
                path: db_path.clone(),
                source,
            })?;
        }
        drop(file);

        let open_err = |source| StateError::Open { path: db_path.clone(), source };
        let mut conn = Connection::open(&db_path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(open_err)?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(StateError::NoWal { path: db_path, journal_mode: journal });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(open_err)?;
        schema::migrate(&mut conn, &db_path)?;
        Ok(State { inner: Arc::new(Inner { conn: Mutex::new(conn), dir: dir.to_path_buf(), db_path }) })
    }

    /// `$ROSH_STATE_DIR`, or `~/.rosh`.
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(dir) = std::env::var_os("ROSH_STATE_DIR").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(dir));
        }
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Ok(PathBuf::from(home).join(".rosh")),
            None => Err(StateError::NoStateDir),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn db_path(&self) -> &Path {
        &self.inner.db_path
    }

    /// The schema version of the open database (always [`schema::LATEST`] once opened).
    pub fn schema_version(&self) -> Result<u32> {
        Ok(schema::user_version(&self.conn())?)
    }

    /// The state serial: bumped once by every recorded fact, never decreasing.
    pub fn serial(&self) -> Result<u64> {
        Ok(read_serial(&self.conn())?)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves no open transaction behind (a dropped
        // rusqlite Transaction rolls back), so the poison carries no information.
        self.inner.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one write transaction, committed if `f` returns `Ok`.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in one read transaction, so it sees one consistent snapshot.
    fn read<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        f(&tx)
    }
}

fn read_serial(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT serial FROM state_serial WHERE id = 1", [], |r| r.get::<_, i64>(0)).map(|s| s as u64)
}

/// SQL for "now", in the form every timestamp in the state has (RFC 3339, UTC, seconds).
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

/// The database's clock, as every stored timestamp is written.
fn now(conn: &Connection) -> rusqlite::Result<String> {
    conn.query_row(&format!("SELECT {NOW}"), [], |r| r.get(0))
}

/// Bumps the serial inside the fact's transaction and writes the fact's event; returns the new serial.
fn record_fact(tx: &Transaction<'_>, event: &Event) -> Result<u64> {
    tx.execute("UPDATE state_serial SET serial = serial + 1 WHERE id = 1", [])?;
    let serial = read_serial(tx)?;
    events::insert(tx, Some(serial), event)?;
    Ok(serial)
}

fn to_json(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

fn from_json(what: impl FnOnce() -> String, text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|source| StateError::Corrupt { what: what(), source })
}

/// Everything the state holds except its logs (events) and locks, for before/after comparisons:
/// a refused upload must leave `snapshot()` equal to what it was.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub schema_version: u32,
    pub serial: u64,
    pub releases: Vec<ReleaseRecord>,
    pub stemcells: Vec<StemcellRecord>,
    pub deployments: Vec<DeploymentSummary>,
    pub referenced_blobs: Vec<String>,
    /// Rows per table (events, locks and the migration history left out), so a stray row that
    /// no record shows — a package no release lists — still makes two snapshots differ.
    pub row_counts: std::collections::BTreeMap<String, i64>,
}

impl State {
    /// See [`Snapshot`]. Several reads, not one transaction: take it while no other process
    /// writes (in a test, or holding the lock the writer would need).
    pub fn snapshot(&self) -> Result<Snapshot> {
        let releases = self.releases()?;
        let stemcells = self.stemcells()?;
        let mut snapshot = Snapshot {
            schema_version: self.schema_version()?,
            serial: self.serial()?,
            releases: Vec::new(),
            stemcells: Vec::new(),
            deployments: self.deployments()?,
            referenced_blobs: self.referenced_blobs()?,
            row_counts: Default::default(),
        };
        for r in releases {
            snapshot.releases.extend(self.release(&r.name, &r.version)?);
        }
        for s in stemcells {
            snapshot.stemcells.extend(self.stemcell(&s.name, &s.version)?);
        }
        self.read(|tx| {
            let tables: Vec<String> = tx
                .prepare(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                     AND name NOT IN ('events', 'locks', 'schema_migrations') ORDER BY name",
                )?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for table in tables {
                let n = tx.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0))?;
                snapshot.row_counts.insert(table, n);
            }
            Ok(())
        })?;
        Ok(snapshot)
    }
}

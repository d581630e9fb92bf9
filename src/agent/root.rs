//! A VM's root and where things live in it (`/var/vcap` on static and cloud VMs, the VM
//! directory on the local CPI).
//!
//! Owns the layout — `packages/<name>` and `jobs/<name>` (symlinks into `data/packages` and
//! `data/jobs`, one directory per content digest), `store/` (the persistent disk), `data/blobs`,
//! `data/compile`, `sys/log/<job>/`, `sys/run/` (state files, the supervisor socket, locks) — the
//! small state files the agent keeps there (`apply.json`, `desired.json`, `disks.json`, written
//! atomically), and the check that a name from a request is one path component. Leaves what the
//! files mean to the verbs and the supervisor.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::protocol::{ApplySpec, Sha256};
use super::{Context, Error, Result};

/// The root of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    path: PathBuf,
}

impl Root {
    /// A root at `path`, made absolute against the current directory (job processes and
    /// scripts run elsewhere and get it in `ROSH_ROOT`).
    pub fn new(path: impl AsRef<Path>) -> Root {
        let path = path.as_ref();
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf())
        };
        Root { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn packages_dir(&self) -> PathBuf {
        self.path.join("packages")
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.path.join("jobs")
    }

    pub fn job_dir(&self, job: &str) -> PathBuf {
        self.jobs_dir().join(job)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.path.join("store")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.path.join("data")
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.data_dir().join("blobs")
    }

    pub fn blob(&self, sha256: &str) -> PathBuf {
        self.blobs_dir().join(sha256)
    }

    pub fn compile_dir(&self) -> PathBuf {
        self.data_dir().join("compile")
    }

    pub fn log_dir(&self) -> PathBuf {
        self.path.join("sys/log")
    }

    pub fn job_log_dir(&self, job: &str) -> PathBuf {
        self.log_dir().join(job)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path.join("sys/run")
    }

    pub fn ssh_dir(&self) -> PathBuf {
        self.path.join("sys/ssh")
    }

    pub fn apply_file(&self) -> PathBuf {
        self.run_dir().join("apply.json")
    }

    pub fn desired_file(&self) -> PathBuf {
        self.run_dir().join("desired.json")
    }

    pub fn disks_file(&self) -> PathBuf {
        self.run_dir().join("disks.json")
    }

    pub fn supervisor_socket(&self) -> PathBuf {
        self.run_dir().join("supervisor.sock")
    }

    /// The running supervisor's pid (the agent's own under `serve`).
    pub fn supervisor_pid_file(&self) -> PathBuf {
        self.run_dir().join("supervisor.pid")
    }

    /// Held for its whole life by the one supervisor of this root.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.run_dir().join("supervisor.lock")
    }

    /// Held while a verb changes `packages/`, `jobs/` or the state files.
    pub fn agent_lock(&self) -> PathBuf {
        self.run_dir().join("agent.lock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("agent.pid")
    }

    pub fn ready_file(&self) -> PathBuf {
        self.run_dir().join("agent.ready")
    }

    /// Where unpacked packages (`kind` = `packages`) or jobs (`jobs`) of one digest live.
    pub fn unpacked(&self, kind: &str, name: &str, sha256: &str) -> PathBuf {
        self.data_dir().join(kind).join(name).join(sha256)
    }

    /// Creates the directories every verb may write to.
    pub fn ensure_dirs(&self) -> Result<()> {
        for dir in [self.packages_dir(), self.jobs_dir(), self.blobs_dir(), self.log_dir(), self.run_dir()] {
            fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Takes the agent lock (blocking until it is free) for a change to the root.
    pub fn lock(&self) -> Result<FileLock> {
        self.ensure_dirs()?;
        FileLock::acquire(&self.agent_lock(), true)?.ok_or_else(|| Error::new("agent lock: not acquired"))
    }
}

/// An exclusive `flock` on a file, released on drop. Works between threads of one process too:
/// each acquisition opens the file anew.
#[derive(Debug)]
pub struct FileLock {
    _file: fs::File,
}

impl FileLock {
    /// Locks `path` (created if missing). With `wait` false, `Ok(None)` when someone holds it.
    pub fn acquire(path: &Path, wait: bool) -> Result<Option<FileLock>> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx(|| format!("opening lock {}", path.display()))?;
        let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Some(FileLock { _file: file }));
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock if !wait => return Ok(None),
                _ => return Err(Error(format!("locking {}: {err}", path.display()))),
            }
        }
    }
}

/// Checks that `name` (of a job, package, process or script) is a single ordinary path
/// component, so it can never address anything outside its directory.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.len() <= 255
        && !name.contains(['/', '\0', '\n']);
    if ok { Ok(()) } else { Err(Error(format!("invalid {what} name `{name}`"))) }
}

/// Checks a digest from a request: 64 lowercase hex characters.
pub fn check_sha256(sha256: &str) -> Result<()> {
    if crate::release::digest::is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(Error(format!("invalid sha256 `{sha256}`: expected 64 lowercase hex characters")))
    }
}

/// Reads a JSON state file; `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).ctx(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error(format!("reading {}: {e}", path.display()))),
    }
}

/// Writes a JSON state file atomically: temp file beside it, fsync, rename.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).ctx(|| format!("encoding {}", path.display()))?;
    write_atomic(path, &bytes)
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .ctx(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes).ctx(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all().ctx(|| format!("syncing {}", path.display()))?;
    tmp.persist(path).ctx(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// `sys/run/apply.json`: the spec last applied and its digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppliedRecord {
    pub applied: Sha256,
    pub spec: ApplySpec,
}

/// `sys/run/desired.json`: the jobs whose processes should run. Written by whoever changes it
/// (the supervisor while one runs), read by a supervisor when it starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    pub jobs: Vec<String>,
}

impl Desired {
    pub fn load(root: &Root) -> Result<Desired> {
        Ok(read_json(&root.desired_file())?.unwrap_or_default())
    }

    pub fn save(&self, root: &Root) -> Result<()> {
        write_json(&root.desired_file(), self)
    }
}

/// `sys/run/disks.json`: the persistent disks `mount_disk` accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disks {
    pub disks: Vec<String>,
}

impl Disks {
    pub fn load(root: &Root) -> Result<Disks> {
        Ok(read_json(&root.disks_file())?.unwrap_or_default())
    }

    pub fn save(&self, root: &Root) -> Result<()> {
        write_json(&root.disks_file(), self)
    }
}

/// The names present in a directory of links (`jobs/`, `packages/`), sorted; dot-files (temp
/// links) skipped.
pub fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error(format!("listing {}: {e}", dir.display()))),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str()
            && !name.starts_with('.')
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// The digest a `jobs/<name>` or `packages/<name>` link points at (its last component).
pub fn linked_digest(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    let last = target.file_name()?.to_str()?;
    crate::release::digest::is_sha256_hex(last).then(|| last.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_one_plain_component() {
        for good in ["nginx", "bpm-1.0", "a_b", "x.y"] {
            check_name("job", good).unwrap();
        }
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a\nb"] {
            assert!(check_name("job", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn relative_root_becomes_absolute() {
        assert!(Root::new("some/dir").path().is_absolute());
    }

    #[test]
    fn lock_is_exclusive_within_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = FileLock::acquire(&path, false).unwrap();
        assert!(held.is_some());
        assert!(FileLock::acquire(&path, false).unwrap().is_none());
        drop(held);
        assert!(FileLock::acquire(&path, false).unwrap().is_some());
    }
}

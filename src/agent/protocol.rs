//! The agent protocol: the verbs a director runs on a VM and the JSON each takes and returns.
//!
//! A verb is one SSH exec of `<agent_command> <verb> [ARG]` (DESIGN §3.3): the request as JSON on
//! stdin, the answer as JSON on stdout, exit status 0. A failed verb exits non-zero and writes an
//! [`AgentError`] as JSON on stdout, so the director can tell the agent's own refusal from a
//! broken connection. Two verbs move bytes instead of JSON: `put_blob SHA256` reads the blob on
//! stdin (the agent verifies the digest before keeping it) and `get_blob SHA256` writes it on
//! stdout. The same types serve the agent (which decodes requests) and the director's
//! [`crate::ssh`] client (which encodes them), so both sides cannot drift apart.
//!
//! Paths inside a VM are relative to its root (`/var/vcap` on static and cloud VMs, the VM
//! directory on the local CPI): `packages/<name>`, `jobs/<name>`, `store/` (the persistent
//! disk), `data/` (ephemeral data, blobs, compile dirs), `sys/log/<job>/`, `sys/run/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The verbs, as written on the exec line.
pub mod verb {
    pub const GET_STATE: &str = "get_state";
    pub const HAS_BLOBS: &str = "has_blobs";
    pub const PUT_BLOB: &str = "put_blob";
    pub const GET_BLOB: &str = "get_blob";
    pub const APPLY: &str = "apply";
    pub const START: &str = "start";
    pub const STOP: &str = "stop";
    pub const DRAIN: &str = "drain";
    pub const RUN_SCRIPT: &str = "run_script";
    pub const COMPILE_PACKAGE: &str = "compile_package";
    pub const FETCH_LOGS: &str = "fetch_logs";
    pub const MOUNT_DISK: &str = "mount_disk";
    pub const UNMOUNT_DISK: &str = "unmount_disk";
    pub const MIGRATE_DISK: &str = "migrate_disk";
    pub const WIPE: &str = "wipe";
    pub const VERSION: &str = "version";
}

/// What a failed verb writes on stdout (with a non-zero exit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("agent {verb}: {message}")]
pub struct AgentError {
    pub verb: String,
    pub message: String,
}

/// A content digest: `sha256` in lowercase hex. Blobs on a VM are kept by it.
pub type Sha256 = String;

/// `get_state` → the VM's view of itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// The agent's version (the rosh version that built it).
    pub agent_version: String,
    /// The VM's root.
    pub root: String,
    /// `running` when every process runs, `failing` when any fails, `stopped` when none is
    /// meant to run (as BOSH's `job_state`).
    pub job_state: JobState,
    /// The last applied spec's digest, `None` before the first `apply`.
    pub applied: Option<Sha256>,
    pub jobs: Vec<AppliedJob>,
    pub packages: Vec<AppliedPackage>,
    pub processes: Vec<ProcessStatus>,
    /// Disk ids mounted at `store/`.
    pub persistent_disks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Failing,
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    Running,
    /// Exited and being restarted with backoff, or gave up.
    Failing,
    Stopped,
    /// Asked to start, not yet confirmed running.
    Starting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub job: String,
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    /// Restarts since the process was last started on purpose.
    pub restarts: u32,
    /// Seconds since it last started, while running.
    pub uptime_secs: Option<u64>,
    /// The last exit, when it has exited: `exit 1`, `signal 9`.
    pub last_exit: Option<String>,
}

/// `has_blobs` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HasBlobs {
    pub sha256: Vec<Sha256>,
}

/// `has_blobs` answer: which of the asked digests the VM lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingBlobs {
    pub missing: Vec<Sha256>,
}

/// `put_blob` answer (the request is the raw bytes on stdin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlob {
    pub sha256: Sha256,
    pub size: u64,
}

/// `apply`: make the VM hold exactly these packages and jobs (blobs already put). Jobs and
/// packages not named are removed. Processes are not started: `start` does that.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplySpec {
    pub deployment: String,
    /// `group/uuid`
    pub instance: String,
    pub packages: Vec<ApplyPackage>,
    pub jobs: Vec<ApplyJob>,
    /// Start these jobs once applied, in the same call, as `start` would (the director asks
    /// when no job has a pre-start script to run in between); the answer's `started` holds what
    /// `start` answers. An agent that predates this field ignores it and answers no `started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then_start: Option<JobSelection>,
}

/// A compiled package: a gzipped tarball of its install tree, unpacked at `packages/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyPackage {
    pub name: String,
    pub version: String,
    pub sha256: Sha256,
}

/// A rendered job: a gzipped tarball of its files (`bin/…`, `config/…`, `monit`), unpacked at
/// `jobs/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyJob {
    pub name: String,
    pub sha256: Sha256,
}

/// `apply` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Digest of the spec now applied.
    pub applied: Sha256,
    /// Jobs whose files changed (including added ones).
    pub changed_jobs: Vec<String>,
    pub removed_jobs: Vec<String>,
    /// `start`'s answer, when the request asked to start (`then_start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<Processes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedJob {
    pub name: String,
    pub sha256: Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedPackage {
    pub name: String,
    pub version: String,
    pub sha256: Sha256,
}

/// `start` / `stop` request: which jobs (all applied jobs when empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSelection {
    #[serde(default)]
    pub jobs: Vec<String>,
    /// `start` only: how long each process must have run before `start` answers it as running
    /// (milliseconds; the supervisor's own rule, 1 s, when absent). The director passes the
    /// watch time's minimum, so an operator's `0-…` is answered as soon as the processes have
    /// survived their first moments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle_ms: Option<u64>,
}

/// `start` / `stop` answer: the processes as they are when the verb returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Processes {
    pub processes: Vec<ProcessStatus>,
}

/// `drain` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// `update`, `shutdown` or `status` (as BOSH's drain script arguments).
    pub kind: String,
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// `drain` answer: how long the director should wait, the largest any job's drain asked for,
/// and the jobs that asked for a dynamic drain (a negative number: "ask me again with `status`
/// in that many seconds"), as BOSH's drain contract has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drained {
    pub wait_secs: u64,
    pub jobs: Vec<ScriptResult>,
    /// Jobs to ask again with kind `status`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub poll_jobs: Vec<String>,
    /// When to ask them again: the largest of their |n|.
    #[serde(default)]
    pub poll_secs: u64,
}

/// `run_script` request: run `jobs/<job>/bin/<script>` for every applied job that has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunScript {
    /// `pre-start`, `post-start`, `post-deploy`, `pre-stop`, or an errand's `run`.
    pub script: String,
    #[serde(default)]
    pub jobs: Vec<String>,
    /// Environment added for the script (`BOSH_DEPLOY_NEXT_STATE` and friends).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Give up after this many seconds (the script is killed and fails).
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptResult {
    pub job: String,
    pub exit_code: i32,
    /// The last 16 KiB of stdout and of stderr.
    pub stdout: String,
    pub stderr: String,
}

/// `run_script` answer: one result per job that had the script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptResults {
    pub results: Vec<ScriptResult>,
}

/// `compile_package`: unpack the source blob, install the compiled dependencies, run
/// `packaging`, and keep the install tree as a new blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompilePackage {
    pub name: String,
    pub version: String,
    /// The package's source tarball, as stored in the release.
    pub source_sha256: Sha256,
    /// Compiled dependencies (transitive), installed at `packages/<name>` for the script.
    pub dependencies: Vec<ApplyPackage>,
}

/// `compile_package` answer: the compiled tarball, fetchable with `get_blob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compiled {
    pub sha256: Sha256,
    pub sha1: String,
    pub size: u64,
    /// The tail of the packaging script's output, for the operator when it fails.
    pub log: String,
}

/// `fetch_logs` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchLogs {
    #[serde(default)]
    pub jobs: Vec<String>,
}

/// `fetch_logs` answer: a gzipped tarball of `sys/log` (or the named jobs' parts of it),
/// fetchable with `get_blob`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchedLogs {
    pub sha256: Sha256,
    pub size: u64,
}

/// `mount_disk` / `unmount_disk` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountDisk {
    pub disk_id: String,
    /// `attach_disk`'s hint from the CPI (a path for the local CPI).
    #[serde(default)]
    pub hint: serde_json::Value,
}

/// `migrate_disk` request: copy everything on the disk at `store/` (`from`) onto the disk
/// `to`, attached beside it where `hint` says (the CPI's `attach_disk` answer). Jobs must be
/// stopped; `store/` is left as it was, so the director then detaches `from` and mounts `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateDisk {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub hint: serde_json::Value,
}

/// `migrate_disk` answer: what was copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigratedDisk {
    pub from: String,
    pub to: String,
    /// Regular files copied and their bytes.
    pub files: u64,
    pub bytes: u64,
}

/// `mount_disk` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mounted {
    pub disk_id: String,
    /// Where the disk is, relative to the root (`store`).
    pub path: String,
}

/// `version` answer: lets the director decide whether to (re)install the agent binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub version: String,
}

/// The version an agent reports, and that the director expects: the crate version.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

//! The director's typed client for the agent verbs, over one [`Connection`].
//!
//! This module owns the director's half of the wire convention in [`crate::agent::protocol`]:
//! each verb is one exec of `<agent_command> <verb> [ARG]` with the request as JSON on stdin; a
//! zero exit carries the answer as JSON on stdout, a non-zero exit an [`AgentError`] (decoded
//! into [`AgentCallError::Refused`], so callers can tell the agent's refusal from a broken
//! connection or a missing binary). Blobs move as raw bytes and are checked against their
//! digest on both sides. Two policies live here: [`AgentClient::upload_blobs`] sends only the
//! blobs the VM lacks (`has_blobs` first), and [`ensure_agent`] installs the director's agent
//! binary ([`AgentBinary::for_machines`]) at `<root>/bosh/bin/rosh-agent` on VMs run by OpenSSH
//! when its digest differs.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use rosh_cpi::SshEndpoint;
use serde::Serialize;
use serde::de::DeserializeOwned;
// SHA-256 through aws-lc (already the SSH crypto backend, built optimised even in dev builds):
// the agent binary is tens of megabytes and is hashed once per director process.
use aws_lc_rs::digest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{Connection, ExitStatus, SshError, shell_quote};
use crate::agent::protocol::{
    AgentError, AgentState, Applied, ApplySpec, CompilePackage, Compiled, Drain, Drained, FetchLogs, FetchedLogs,
    HasBlobs, JobSelection, MigrateDisk, MigratedDisk, MissingBlobs, MountDisk, Mounted, Processes, RunScript,
    ScriptResults, Sha256, StoredBlob, Version, verb,
};

/// Why an agent verb failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentCallError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The agent ran and refused (its [`AgentError`]).
    #[error("{addr}: {error}")]
    Refused { addr: String, error: AgentError },
    /// The command failed without the agent's JSON: the binary is missing, crashed, or was
    /// killed.
    #[error("{addr}: agent {verb} ended with {status}: {stderr}")]
    Failed { addr: String, verb: String, status: ExitStatus, stderr: String },
    /// Exit 0 but stdout is not the verb's answer.
    #[error("{addr}: agent {verb} answered something other than its JSON: {message}")]
    BadAnswer { addr: String, verb: String, message: String },
    /// A blob arrived or was stored with another digest or size than asked for.
    #[error("{addr}: blob {sha256}: {message}")]
    Blob { addr: String, sha256: Sha256, message: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("installing the agent on {addr}: {message}")]
    Install { addr: String, message: String },
}

impl AgentCallError {
    /// The agent's own refusal, when that is what this is.
    pub fn agent_error(&self) -> Option<&AgentError> {
        match self {
            AgentCallError::Refused { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// What [`AgentClient::upload_blobs`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadSummary {
    pub uploaded: usize,
    /// Blobs the VM already held.
    pub skipped: usize,
    pub bytes_sent: u64,
}

/// Uploads at once in [`AgentClient::upload_blobs`]: enough to hide round trips for many small
/// blobs, few enough to leave channels for other steps on the connection.
const PARALLEL_UPLOADS: usize = 4;

/// The agent on one VM.
#[derive(Debug, Clone)]
pub struct AgentClient {
    conn: Connection,
    agent_command: String,
}

impl AgentClient {
    /// `agent_command` is the prefix the verbs are appended to (`rosh-agent`,
    /// `/var/vcap/bosh/bin/rosh agent --root /var/vcap`), already shell-quoted.
    pub fn new(conn: Connection, agent_command: impl Into<String>) -> AgentClient {
        AgentClient { conn, agent_command: agent_command.into() }
    }

    /// The agent named by a CPI's endpoint, as it is (see [`ensure_agent`] to install it first).
    pub fn for_endpoint(conn: Connection, endpoint: &SshEndpoint) -> AgentClient {
        AgentClient::new(conn, endpoint.agent_command.clone())
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn agent_command(&self) -> &str {
        &self.agent_command
    }

    fn command_line(&self, verb: &str, arg: Option<&str>) -> String {
        match arg {
            Some(arg) => format!("{} {verb} {}", self.agent_command, shell_quote(arg)),
            None => format!("{} {verb}", self.agent_command),
        }
    }

    /// One JSON verb: request on stdin, answer on stdout.
    async fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        verb: &str,
        req: &Req,
    ) -> Result<Resp, AgentCallError> {
        let body = serde_json::to_vec(req).expect("protocol requests serialize");
        let out = self.conn.exec(&self.command_line(verb, None), body.as_slice()).await?;
        if !out.status.success() {
            return Err(self.failure(verb, out.status, &out.stdout, &out.stderr));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| AgentCallError::BadAnswer {
            addr: self.conn.addr().to_string(),
            verb: verb.to_string(),
            message: format!("{e}; stdout began `{}`", excerpt(&out.stdout)),
        })
    }

    /// A non-zero exit: the agent's [`AgentError`] when stdout holds one, else the raw facts.
    fn failure(&self, verb: &str, status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> AgentCallError {
        let addr = self.conn.addr().to_string();
        match serde_json::from_slice::<AgentError>(stdout) {
            Ok(error) => AgentCallError::Refused { addr, error },
            Err(_) => AgentCallError::Failed {
                addr,
                verb: verb.to_string(),
                status,
                stderr: excerpt(if stderr.is_empty() { stdout } else { stderr }),
            },
        }
    }

    pub async fn version(&self) -> Result<Version, AgentCallError> {
        self.call(verb::VERSION, &serde_json::json!({})).await
    }

    pub async fn get_state(&self) -> Result<AgentState, AgentCallError> {
        self.call(verb::GET_STATE, &serde_json::json!({})).await
    }

    /// Which of `sha256` the VM lacks.
    pub async fn has_blobs(&self, sha256: &[Sha256]) -> Result<MissingBlobs, AgentCallError> {
        self.call(verb::HAS_BLOBS, &HasBlobs { sha256: sha256.to_vec() }).await
    }

    /// Streams `size` bytes from `reader` to the VM as blob `sha256`; the agent refuses them if
    /// their digest differs, and the answer must name the same digest and size.
    pub async fn put_blob(
        &self,
        sha256: &str,
        reader: impl AsyncRead + Unpin + Send,
        size: u64,
    ) -> Result<StoredBlob, AgentCallError> {
        let line = self.command_line(verb::PUT_BLOB, Some(sha256));
        let out = self.conn.exec(&line, reader).await?;
        if !out.status.success() {
            return Err(self.failure(verb::PUT_BLOB, out.status, &out.stdout, &out.stderr));
        }
        let stored: StoredBlob = serde_json::from_slice(&out.stdout).map_err(|e| AgentCallError::BadAnswer {
            addr: self.conn.addr().to_string(),
            verb: verb::PUT_BLOB.to_string(),
            message: format!("{e}; stdout began `{}`", excerpt(&out.stdout)),
        })?;
        if stored.sha256 != sha256 || stored.size != size {
            return Err(AgentCallError::Blob {
                addr: self.conn.addr().to_string(),
                sha256: sha256.to_string(),
                message: format!("sent {size} bytes, the agent stored {} bytes as {}", stored.size, stored.sha256),
            });
        }
        Ok(stored)
    }

    /// Streams blob `sha256` from the VM into `writer`, checking its digest on the way; answers
    /// its size. On any error the writer may hold a partial blob: the caller discards it.
    pub async fn get_blob<W: AsyncWrite + Unpin + Send + ?Sized>(
        &self,
        sha256: &str,
        writer: &mut W,
    ) -> Result<u64, AgentCallError> {
        let line = self.command_line(verb::GET_BLOB, Some(sha256));
        let mut tap = Tap::new(writer);
        let done = self.conn.exec_streaming(&line, tokio::io::empty(), &mut tap).await?;
        if !done.status.success() {
            return Err(self.failure(verb::GET_BLOB, done.status, &tap.head, &done.stderr));
        }
        let got = hex(tap.hasher.finish().as_ref());
        if got != sha256 {
            return Err(AgentCallError::Blob {
                addr: self.conn.addr().to_string(),
                sha256: sha256.to_string(),
                message: format!("received {} bytes with digest {got}", done.stdout_len),
            });
        }
        Ok(done.stdout_len)
    }

    /// Puts every listed blob the VM does not hold yet (one `has_blobs`, then a few `put_blob`s
    /// at once). Files are read as they are sent; a digest listed twice is sent once.
    pub async fn upload_blobs(&self, blobs: &[(Sha256, PathBuf)]) -> Result<UploadSummary, AgentCallError> {
        let mut wanted = BTreeSet::new();
        let unique: Vec<&(Sha256, PathBuf)> = blobs.iter().filter(|(sha, _)| wanted.insert(sha.clone())).collect();
        if unique.is_empty() {
            return Ok(UploadSummary::default());
        }
        let digests: Vec<Sha256> = unique.iter().map(|(sha, _)| sha.clone()).collect();
        let missing: BTreeSet<Sha256> = self.has_blobs(&digests).await?.missing.into_iter().collect();
        let mut summary =
            UploadSummary { skipped: unique.len() - missing.len().min(unique.len()), ..Default::default() };

        let mut todo = unique.into_iter().filter(|(sha, _)| missing.contains(sha)).cloned();
        let mut running = tokio::task::JoinSet::new();
        loop {
            while running.len() < PARALLEL_UPLOADS {
                let Some((sha, path)) = todo.next() else { break };
                let client = self.clone();
                running.spawn(async move { client.put_file(&sha, &path).await });
            }
            let Some(joined) = running.join_next().await else { break };
            let size = joined.expect("an upload task does not panic")?;
            summary.uploaded += 1;
            summary.bytes_sent += size;
        }
        Ok(summary)
    }

    async fn put_file(&self, sha256: &str, path: &Path) -> Result<u64, AgentCallError> {
        let _turn = bulk_transfer_turn().await;
        let io = |source| AgentCallError::Io { path: path.to_path_buf(), source };
        let file = tokio::fs::File::open(path).await.map_err(io)?;
        let size = file.metadata().await.map_err(io)?.len();
        self.put_blob(sha256, file, size).await?;
        Ok(size)
    }

    pub async fn apply(&self, spec: &ApplySpec) -> Result<Applied, AgentCallError> {
        self.call(verb::APPLY, spec).await
    }

    pub async fn start(&self, jobs: &JobSelection) -> Result<Processes, AgentCallError> {
        self.call(verb::START, jobs).await
    }

    pub async fn stop(&self, jobs: &JobSelection) -> Result<Processes, AgentCallError> {
        self.call(verb::STOP, jobs).await
    }

    pub async fn drain(&self, req: &Drain) -> Result<Drained, AgentCallError> {
        self.call(verb::DRAIN, req).await
    }

    /// The whole drain as BOSH runs it: every job's drain script with `kind`; jobs that ask for
    /// a dynamic drain are asked again (`status`) after the time they gave until they answer a
    /// static one; then the longest static wait. Each wait is capped at `cap`, and the whole
    /// drain fails after `limit`. Answers how long it waited.
    pub async fn drain_fully(&self, kind: &str, cap: Duration, limit: Duration) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let mut drained = self.drain(&Drain { kind: kind.into(), jobs: Vec::new() }).await?;
        let mut wait = drained.wait_secs;
        while !drained.poll_jobs.is_empty() {
            if started.elapsed() >= limit {
                anyhow::bail!(
                    "drain of {} still not finished after {} s (dynamic drain)",
                    drained.poll_jobs.join(", "),
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_secs(drained.poll_secs).min(cap)).await;
            drained = self.drain(&Drain { kind: "status".into(), jobs: drained.poll_jobs.clone() }).await?;
            wait = wait.max(drained.wait_secs);
        }
        tokio::time::sleep(Duration::from_secs(wait).min(cap)).await;
        Ok(started.elapsed())
    }

    pub async fn run_script(&self, req: &RunScript) -> Result<ScriptResults, AgentCallError> {
        self.call(verb::RUN_SCRIPT, req).await
    }

    pub async fn compile_package(&self, req: &CompilePackage) -> Result<Compiled, AgentCallError> {
        self.call(verb::COMPILE_PACKAGE, req).await
    }

    pub async fn fetch_logs(&self, req: &FetchLogs) -> Result<FetchedLogs, AgentCallError> {
        self.call(verb::FETCH_LOGS, req).await
    }

    pub async fn mount_disk(&self, req: &MountDisk) -> Result<Mounted, AgentCallError> {
        self.call(verb::MOUNT_DISK, req).await
    }

    pub async fn unmount_disk(&self, req: &MountDisk) -> Result<Mounted, AgentCallError> {
        self.call(verb::UNMOUNT_DISK, req).await
    }

    /// Copies the data of the disk at `store/` onto a second attached disk (jobs stopped).
    pub async fn migrate_disk(&self, req: &MigrateDisk) -> Result<MigratedDisk, AgentCallError> {
        self.call(verb::MIGRATE_DISK, req).await
    }

    /// Stops every job and removes the VM's job state (what a static machine goes through
    /// before it returns to the pool).
    pub async fn wipe(&self) -> Result<serde_json::Value, AgentCallError> {
        self.call(verb::WIPE, &serde_json::json!({})).await
    }
}

/// The first bytes of an output, for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]);
    text.trim().to_string()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A writer that hashes what passes through and keeps its first bytes (where a failed
/// `get_blob` puts its [`AgentError`]).
struct Tap<'w, W: ?Sized> {
    inner: &'w mut W,
    hasher: digest::Context,
    head: Vec<u8>,
}

const TAP_HEAD: usize = 16 * 1024;

impl<'w, W: ?Sized> Tap<'w, W> {
    fn new(inner: &'w mut W) -> Self {
        Tap { inner, hasher: digest::Context::new(&digest::SHA256), head: Vec::new() }
    }
}

impl<W: AsyncWrite + Unpin + ?Sized> AsyncWrite for Tap<'_, W> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            this.hasher.update(&buf[..n]);
            let room = TAP_HEAD.saturating_sub(this.head.len()).min(n);
            this.head.extend_from_slice(&buf[..room]);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.inner).poll_shutdown(cx)
    }
}

/// Waits for a turn to stream a file to a VM. Files to all VMs of a run share a few turns (four
/// per core): more at once would not move bytes faster, but every stream in flight holds up to
/// an SSH window (2 MB under OpenSSH) of encrypted data in this process, and at 50 VMs at once
/// that is most of the director's memory.
async fn bulk_transfer_turn() -> tokio::sync::SemaphorePermit<'static> {
    static TURNS: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let turns = TURNS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(4 * cores)
    });
    turns.acquire().await.expect("the semaphore is never closed")
}

/// The binary installed as the agent on OpenSSH machines, with its digest.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    pub path: PathBuf,
    pub sha256: Sha256,
    pub size: u64,
}

impl AgentBinary {
    /// Hashes the binary at `path`.
    pub fn at(path: &Path) -> Result<AgentBinary, AgentCallError> {
        let io = |source| AgentCallError::Io { path: path.to_path_buf(), source };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut hasher = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(AgentBinary { path: path.to_path_buf(), sha256: hex(hasher.finish().as_ref()), size })
    }

    /// The binary this director installs on OpenSSH machines, found once per process and hashed:
    /// `$ROSH_AGENT_BINARY` when set, else the `rosh-agent` built beside the running binary (or
    /// one directory up, where test harnesses run from `deps/`), else the running binary itself,
    /// which acts as the agent when installed under that name.
    pub fn for_machines() -> Result<&'static AgentBinary, AgentCallError> {
        static FOUND: OnceLock<Result<AgentBinary, String>> = OnceLock::new();
        let found = FOUND.get_or_init(|| {
            let path = match std::env::var_os("ROSH_AGENT_BINARY") {
                Some(path) => PathBuf::from(path),
                None => {
                    let exe = std::env::current_exe().map_err(|e| format!("finding the running binary: {e}"))?;
                    let beside = exe.parent().map(|dir| dir.join(STANDALONE_AGENT));
                    let above = exe.parent().and_then(Path::parent).map(|dir| dir.join(STANDALONE_AGENT));
                    [beside, above].into_iter().flatten().find(|p| p.is_file()).unwrap_or(exe)
                }
            };
            AgentBinary::at(&path).map_err(|e| e.to_string())
        });
        found
            .as_ref()
            .map_err(|message| AgentCallError::Install { addr: "this machine".into(), message: message.clone() })
    }
}

/// The agent's file name on OpenSSH machines: `<root>/bosh/bin/rosh-agent`.
pub const STANDALONE_AGENT: &str = "rosh-agent";

/// An agent ready for verbs, and whether its binary had to be (re)installed.
#[derive(Debug, Clone)]
pub struct EnsuredAgent {
    pub client: AgentClient,
    pub installed: bool,
}

/// Makes sure the VM runs this director's agent ([`AgentBinary::for_machines`]) and returns its
/// client.
pub async fn ensure_agent(conn: &Connection, endpoint: &SshEndpoint) -> Result<EnsuredAgent, AgentCallError> {
    if !endpoint.install_agent {
        return Ok(EnsuredAgent { client: AgentClient::for_endpoint(conn.clone(), endpoint), installed: false });
    }
    ensure_agent_binary(conn, endpoint, AgentBinary::for_machines()?).await
}

/// [`ensure_agent`] with the binary to install given: when `endpoint.install_agent`, the
/// machine's `<root>/bosh/bin/rosh-agent` is replaced by `binary` unless `<root>/bosh/bin/rosh-agent.sha256`
/// already names its digest. The agent is then run with `endpoint.agent_command`.
pub async fn ensure_agent_binary(
    conn: &Connection,
    endpoint: &SshEndpoint,
    binary: &AgentBinary,
) -> Result<EnsuredAgent, AgentCallError> {
    let client = AgentClient::for_endpoint(conn.clone(), endpoint);
    if !endpoint.install_agent {
        return Ok(EnsuredAgent { client, installed: false });
    }
    let install_failed = |message: String| AgentCallError::Install { addr: conn.addr().to_string(), message };
    let bin_dir = format!("{}/bosh/bin", endpoint.root.trim_end_matches('/'));
    let target = shell_quote(&format!("{bin_dir}/{STANDALONE_AGENT}"));
    let digest_file = shell_quote(&format!("{bin_dir}/{STANDALONE_AGENT}.sha256"));

    let check = format!("test -x {target} && cat {digest_file} 2>/dev/null; true");
    let out = conn.exec(&check, tokio::io::empty()).await?;
    if String::from_utf8_lossy(&out.stdout).trim() == binary.sha256 {
        return Ok(EnsuredAgent { client, installed: false });
    }

    // Written beside the target and renamed over it: a running agent keeps its old inode, and a
    // cut connection never leaves a half-written binary where the agent is expected. The bytes
    // come through the SSH channel's AEAD, so what arrives is what was sent or nothing; a cut
    // connection ends `cat` early, which the size check catches (hashing 5 MB on every machine
    // again would add CPU to every cold deploy for no further safety).
    let sha = &binary.sha256;
    let io = |source| AgentCallError::Io { path: binary.path.clone(), source };
    let _turn = bulk_transfer_turn().await;
    let file = tokio::fs::File::open(&binary.path).await.map_err(io)?;
    let size = file.metadata().await.map_err(io)?.len();
    let script = format!(
        "set -e\n\
         d={dir}\n\
         mkdir -p \"$d\"\n\
         t=\"$d/.rosh.$$\"\n\
         trap 'rm -f \"$t\" \"$t.sha256\"' EXIT\n\
         cat > \"$t\"\n\
         got=$(wc -c < \"$t\")\n\
         [ \"$got\" -eq {size} ] || {{ echo \"the agent binary arrived with $got of {size} bytes\" >&2; exit 3; }}\n\
         chmod 755 \"$t\"\n\
         mv -f \"$t\" {target}\n\
         echo {sha} > \"$t.sha256\"\n\
         mv -f \"$t.sha256\" {digest_file}\n",
        dir = shell_quote(&bin_dir),
    );
    let out = conn.exec(&script, file).await?;
    if !out.status.success() {
        return Err(install_failed(format!("{} ({}): {}", binary.path.display(), out.status, excerpt(&out.stderr))));
    }
    Ok(EnsuredAgent { client, installed: true })
}

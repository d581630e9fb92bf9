//! The local CPI, rosh's embedded default: VMs are agent processes on this machine.
//!
//! Needs no root, no cloud and no Docker (DESIGN §3.2). Everything lives under one directory
//! (`<state_dir>/cpi/local` when rosh drives it):
//!
//! - `vms/<vm_cid>/` is a VM: its root (`packages/`, `jobs/`, `store/`, `data/`, `sys/`) plus
//!   `cpi.json`, this CPI's record of it (address, agent id, networks, attached disks, metadata).
//!   The VM runs as a detached `rosh agent --root <dir> serve` process that listens for SSH on the
//!   VM's own loopback address (from the manual network's IP, e.g. 127.77.0.0/16; dynamic
//!   networks get one from 127.78.0.0/16), supervises the VM's job processes, and outlives the
//!   CLI that created it. It makes its own host key; `create_vm` returns the public half, which
//!   the director pins. `has_vm` is true while that process lives, so killing it is a VM crash and
//!   deleting the directory is a lost VM.
//! - `disks/<disk_cid>/` is a persistent disk (a directory holding `.rosh-disk-id`), with its
//!   record in `disks/<disk_cid>.json`. Attaching links the VM's `store` to it; a second disk
//!   attached while `store` is taken (a disk migration's target) is linked at
//!   `store_migration_target`, as BOSH mounts it. Disks outlive VMs. Sizes are recorded, not
//!   enforced: a directory has none.
//! - `stemcells/<cid>/` keeps an uploaded stemcell's image and cloud properties.
//! - `snapshots/<cid>/` are copies of disks.
//!
//! The agent is started through a double fork (the intermediate exits at once and is reaped),
//! so it is re-parented away from the director: no zombie of a crashed VM can make `has_vm` lie
//! while the director runs. Changes that must not interleave between rosh processes (address
//! allocation, attachment) hold an `flock` on `<dir>/.lock`. Records are written to a temporary
//! file and renamed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rosh_cpi::{
    Cid, Cpi, CpiError, CreateDisk, CreateStemcell, CreateVm, CreatedVm, DiskAttachment, DiskHint, ErrorKind, Info,
    NetworkSettings, ResizeDisk, SetVmMetadata, SnapshotDisk, SshEndpoint, VmListing,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The port every local VM's SSH server listens on (each VM has its own address). 6868 is the
/// port BOSH agents listen on for the director.
pub const DEFAULT_SSH_PORT: u16 = 6868;

/// Where dynamic networks get addresses from.
const DYNAMIC_RANGE: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(127, 78, 0, 2), Ipv4Addr::new(127, 78, 255, 254));

/// The file a VM's disk directory is identified by; the agent checks it at `mount_disk`.
pub const DISK_ID_FILE: &str = ".rosh-disk-id";

/// How the local CPI is set up.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Everything the CPI keeps lives here.
    pub dir: PathBuf,
    /// The `rosh` binary whose `agent … serve` is a VM.
    pub agent_exe: PathBuf,
    pub ssh_port: u16,
    /// How long `create_vm` waits for a new agent to listen.
    pub agent_start_timeout: Duration,
    /// How long `delete_vm` waits for an agent to stop its processes after SIGTERM.
    pub agent_stop_timeout: Duration,
}

impl LocalConfig {
    pub fn new(dir: impl Into<PathBuf>, agent_exe: impl Into<PathBuf>) -> LocalConfig {
        LocalConfig {
            dir: dir.into(),
            agent_exe: agent_exe.into(),
            ssh_port: DEFAULT_SSH_PORT,
            agent_start_timeout: Duration::from_secs(15),
            agent_stop_timeout: Duration::from_secs(15),
        }
    }
}

/// This CPI's record of a VM (`vms/<cid>/cpi.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub vm_cid: Cid,
    pub agent_id: String,
    pub stemcell_cid: Cid,
    pub ip: String,
    pub port: u16,
    pub networks: BTreeMap<String, NetworkSettings>,
    pub cloud_properties: Value,
    /// Attached disks, in attachment order; each is at one of [`DISK_SLOTS`].
    #[serde(default)]
    pub disks: Vec<Cid>,
    /// Tags set with `set_vm_metadata`.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Seconds since the epoch.
    pub created_at: u64,
}

/// This CPI's record of a disk (`disks/<cid>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskRecord {
    pub disk_cid: Cid,
    pub size_mb: u64,
    pub cloud_properties: Value,
    pub attached_to: Option<Cid>,
    pub created_at: u64,
}

/// The local CPI.
#[derive(Debug, Clone)]
pub struct LocalCpi {
    cfg: LocalConfig,
}

fn other(context: &str, path: &Path, e: impl std::fmt::Display) -> CpiError {
    CpiError::other(format!("{context} {}: {e}", path.display()))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A fresh cloud id: `prefix-` and 16 random hex digits.
fn new_cid(prefix: &str) -> Result<Cid, CpiError> {
    let hex: String = random_bytes::<8>()?.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Cid(format!("{prefix}-{hex}")))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], CpiError> {
    let mut bytes = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CpiError::other(format!("reading /dev/urandom: {e}")))?;
    Ok(bytes)
}

/// A cid must be a plain name: it becomes a directory name.
fn checked(cid: &Cid) -> Result<&str, CpiError> {
    let s = cid.0.as_str();
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(s)
    } else {
        Err(CpiError::new(ErrorKind::InvalidRequest, format!("`{s}` is not a cloud id of the local CPI")))
    }
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CpiError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| other("encoding", path, e))?;
    fs::write(&tmp, text).map_err(|e| other("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| other("renaming into place", path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, CpiError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| other("reading", path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(other("reading", path, e)),
    }
}

/// An exclusive `flock` on a file, released on drop.
struct DirLock(fs::File);

impl DirLock {
    fn take(path: &Path) -> Result<DirLock, CpiError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| other("opening", path, e))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(other("locking", path, io::Error::last_os_error()));
        }
        Ok(DirLock(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking the descriptor taken in `take`.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Whether `pid` is alive and is the agent of the VM at `root` (a recycled pid is not).
fn agent_alive(pid: u32, root: &Path) -> bool {
    // SAFETY: kill with signal 0 only checks the process exists.
    if unsafe { libc::kill(pid as libc::pid_t, 0) } != 0 {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // A zombie (state Z after the command name) is dead for our purposes.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if state == Some("Z") || state == Some("X") {
        return false;
    }
    let root = root.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == root)
}

impl LocalCpi {
    pub fn new(cfg: LocalConfig) -> Result<LocalCpi, CpiError> {
        for sub in ["vms", "disks", "stemcells", "snapshots"] {
            let dir = cfg.dir.join(sub);
            fs::create_dir_all(&dir).map_err(|e| other("creating", &dir, e))?;
        }
        Ok(LocalCpi { cfg })
    }

    pub fn config(&self) -> &LocalConfig {
        &self.cfg
    }

    /// The root directory of VM `cid` (whether or not it exists).
    pub fn vm_dir(&self, cid: &Cid) -> Result<PathBuf, CpiError> {
        Ok(self.cfg.dir.join("vms").join(checked(cid)?))
    }

    fn disk_dir(&self, cid: &Cid) -> Result<PathBuf, CpiError> {
        Ok(self.cfg.dir.join("disks").join(checked(cid)?))
    }

    fn disk_record_path(&self, cid: &Cid) -> Result<PathBuf, CpiError> {
        Ok(self.cfg.dir.join("disks").join(format!("{}.json", checked(cid)?)))
    }

    fn lock(&self) -> Result<DirLock, CpiError> {
        DirLock::take(&self.cfg.dir.join(".lock"))
    }

    /// The record of VM `cid`, `None` when the VM directory (or its record) is gone.
    pub fn vm_record(&self, cid: &Cid) -> Result<Option<VmRecord>, CpiError> {
        read_json(&self.vm_dir(cid)?.join("cpi.json"))
    }

    fn existing_vm(&self, cid: &Cid) -> Result<VmRecord, CpiError> {
        self.vm_record(cid)?.ok_or_else(|| CpiError::vm_not_found(cid))
    }

    fn save_vm(&self, record: &VmRecord) -> Result<(), CpiError> {
        write_json(&self.vm_dir(&record.vm_cid)?.join("cpi.json"), record)
    }

    pub fn disk_record(&self, cid: &Cid) -> Result<Option<DiskRecord>, CpiError> {
        read_json(&self.disk_record_path(cid)?)
    }

    fn existing_disk(&self, cid: &Cid) -> Result<DiskRecord, CpiError> {
        self.disk_record(cid)?.ok_or_else(|| CpiError::disk_not_found(cid))
    }

    /// Every VM this CPI has a record of, live or not: what a lost director state is rebuilt
    /// from (with each VM's metadata).
    pub fn vms(&self) -> Result<Vec<VmRecord>, CpiError> {
        let dir = self.cfg.dir.join("vms");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| other("listing", &dir, e))? {
            let entry = entry.map_err(|e| other("listing", &dir, e))?;
            if let Some(record) = read_json::<VmRecord>(&entry.path().join("cpi.json"))? {
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.vm_cid.cmp(&b.vm_cid));
        Ok(out)
    }

    /// The pid of VM `cid`'s agent while it lives.
    pub fn agent_pid(&self, cid: &Cid) -> Result<Option<u32>, CpiError> {
        let root = self.vm_dir(cid)?;
        let Ok(text) = fs::read_to_string(root.join("sys/run/agent.pid")) else { return Ok(None) };
        Ok(text.trim().parse::<u32>().ok().filter(|pid| agent_alive(*pid, &root)))
    }

    /// The address for a VM: the default network's IP, or a free one from the dynamic range.
    fn address_for(&self, req: &CreateVm) -> Result<String, CpiError> {
        let taken: Vec<String> = self
            .vms()?
            .into_iter()
            .filter(|vm| self.agent_pid(&vm.vm_cid).ok().flatten().is_some())
            .map(|vm| vm.ip)
            .collect();
        if let Some(ip) = req.primary_ip() {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                CpiError::new(ErrorKind::VmCreationFailed, format!("network IP `{ip}` is not an IPv4 address"))
            })?;
            if !parsed.is_loopback() {
                return Err(CpiError::new(
                    ErrorKind::VmCreationFailed,
                    format!(
                        "the local CPI runs VMs on loopback addresses (127.0.0.0/8); `{ip}` is not one: give the network a 127.x range"
                    ),
                ));
            }
            if taken.iter().any(|t| t == ip) {
                return Err(CpiError::new(
                    ErrorKind::VmCreationFailed,
                    format!("address {ip} is in use by another local VM"),
                ));
            }
            let port =
                req.cloud_properties.get("ssh_port").and_then(Value::as_u64).map_or(self.cfg.ssh_port, |p| p as u16);
            if let Err(e) = std::net::TcpListener::bind((parsed, port)) {
                return Err(CpiError::new(
                    ErrorKind::VmCreationFailed,
                    format!(
                        "{ip}:{port} cannot be listened on ({e}): another program, or a VM of another rosh state dir, holds it"
                    ),
                ));
            }
            return Ok(ip.to_string());
        }
        // Other directors on this machine (other state dirs) use the same range and this CPI
        // cannot see their VMs: start at a random place and skip addresses whose SSH port is
        // already bound by anyone.
        let (lo, hi) = (u32::from(DYNAMIC_RANGE.0), u32::from(DYNAMIC_RANGE.1));
        let span = hi - lo + 1;
        let start = u32::from_le_bytes(random_bytes::<4>()?) % span;
        let port = req.cloud_properties.get("ssh_port").and_then(Value::as_u64).map_or(self.cfg.ssh_port, |p| p as u16);
        (0..span)
            .map(|i| Ipv4Addr::from(lo + (start + i) % span))
            .find(|ip| !taken.contains(&ip.to_string()) && std::net::TcpListener::bind((*ip, port)).is_ok())
            .map(|ip| ip.to_string())
            .ok_or_else(|| CpiError::new(ErrorKind::VmCreationFailed, "no free address left in 127.78.0.0/16"))
    }

    /// Starts VM `cid`'s agent and waits until it listens; answers its host public key.
    fn start_agent(&self, record: &VmRecord) -> Result<String, CpiError> {
        let root = self.vm_dir(&record.vm_cid)?;
        let ready = root.join("sys/run/agent.ready");
        let pidfile = root.join("sys/run/agent.pid");
        for stale in [&ready, &pidfile] {
            let _ = fs::remove_file(stale);
        }
        let log_dir = root.join("sys/log");
        fs::create_dir_all(&log_dir).map_err(|e| other("creating", &log_dir, e))?;
        let log_path = log_dir.join("agent.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| other("opening", &log_path, e))?;
        let log2 = log.try_clone().map_err(|e| other("opening", &log_path, e))?;
        let mut cmd = Command::new(&self.cfg.agent_exe);
        cmd.arg("agent")
            .arg("--root")
            .arg(&root)
            .arg("serve")
            .arg("--listen")
            .arg(format!("{}:{}", record.ip, record.port))
            .arg("--authorized-keys")
            .arg(root.join("sys/ssh/authorized_keys"))
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: between fork and exec only async-signal-safe calls (fork, setsid, _exit).
        unsafe {
            cmd.pre_exec(|| match libc::fork() {
                -1 => Err(io::Error::last_os_error()),
                0 => {
                    if libc::setsid() == -1 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                }
                _ => libc::_exit(0),
            });
        }
        let mut intermediate = cmd.spawn().map_err(|e| {
            CpiError::new(ErrorKind::VmCreationFailed, format!("starting {}: {e}", self.cfg.agent_exe.display()))
        })?;
        let _ = intermediate.wait();

        let deadline = Instant::now() + self.cfg.agent_start_timeout;
        loop {
            if ready.exists() && self.agent_pid(&record.vm_cid)?.is_some() {
                break;
            }
            let pid_known = fs::read_to_string(&pidfile).ok().and_then(|t| t.trim().parse::<u32>().ok());
            let died = pid_known.is_some_and(|pid| !agent_alive(pid, &root));
            if died || Instant::now() >= deadline {
                let tail = fs::read_to_string(&log_path).unwrap_or_default();
                let tail: String =
                    tail.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
                let what = if died { "exited" } else { "did not start listening in time" };
                return Err(CpiError::new(
                    ErrorKind::VmCreationFailed,
                    format!(
                        "the agent of VM {} on {}:{} {what}; its log says:\n{tail}",
                        record.vm_cid, record.ip, record.port
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let key_path = root.join("sys/ssh/ssh_host_ed25519_key.pub");
        let key = fs::read_to_string(&key_path).map_err(|e| other("reading", &key_path, e))?;
        Ok(key.trim().to_string())
    }

    /// Stops VM `cid`'s agent (SIGTERM, then SIGKILL after the stop timeout). Answers whether
    /// it was running.
    fn stop_agent(&self, cid: &Cid) -> Result<bool, CpiError> {
        let Some(pid) = self.agent_pid(cid)? else { return Ok(false) };
        let root = self.vm_dir(cid)?;
        // SAFETY: signalling a pid just checked to be this VM's agent.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + self.cfg.agent_stop_timeout;
        while agent_alive(pid, &root) {
            if Instant::now() >= deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                let hard = Instant::now() + Duration::from_secs(5);
                while agent_alive(pid, &root) && Instant::now() < hard {
                    std::thread::sleep(Duration::from_millis(5));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(true)
    }

    fn endpoint(&self, record: &VmRecord, host_public_key: String) -> Result<SshEndpoint, CpiError> {
        Ok(SshEndpoint {
            host: record.ip.clone(),
            port: record.port,
            user: "vcap".to_string(),
            host_public_key,
            private_key_path: None,
            agent_command: "rosh-agent".to_string(),
            root: self.vm_dir(&record.vm_cid)?.to_string_lossy().into_owned(),
            install_agent: false,
        })
    }

    /// How to reach a running VM (its endpoint with the host key it made at creation).
    pub fn ssh_endpoint(&self, cid: &Cid) -> Result<SshEndpoint, CpiError> {
        let record = self.existing_vm(cid)?;
        let key_path = self.vm_dir(cid)?.join("sys/ssh/ssh_host_ed25519_key.pub");
        let key = fs::read_to_string(&key_path).map_err(|e| other("reading", &key_path, e))?;
        self.endpoint(&record, key.trim().to_string())
    }

    fn create_vm_blocking(&self, req: CreateVm) -> Result<CreatedVm, CpiError> {
        let stemcell_dir = self.cfg.dir.join("stemcells").join(checked(&req.stemcell_cid)?);
        if !stemcell_dir.is_dir() {
            return Err(CpiError::new(
                ErrorKind::VmCreationFailed,
                format!("stemcell `{}` not found", req.stemcell_cid),
            ));
        }
        let keys = req.authorized_keys();
        if keys.is_empty() {
            return Err(CpiError::new(
                ErrorKind::VmCreationFailed,
                "env.bosh.authorized_keys is empty: nobody could log in to the VM",
            ));
        }
        let guard = self.lock()?;
        // The director names a VM's agent after its instance (`<uuid>`), or after the instance
        // and the VM it replaces (`<uuid>/<old cid>`) when it makes the new VM beside the old one
        // (create-swap-delete). A VM with the same agent id, or one under it, is left from a run
        // that died between this call and recording its answer: it is deleted, so no VM is ever
        // orphaned that way. A VM being replaced has another id, so it is never taken.
        let under = format!("{}/", req.agent_id);
        for stale in self.vms()?.into_iter().filter(|vm| vm.agent_id == req.agent_id || vm.agent_id.starts_with(&under))
        {
            self.stop_agent(&stale.vm_cid)?;
            self.remove_vm(&stale.vm_cid)?;
        }
        let ip = self.address_for(&req)?;
        let vm_cid = new_cid("vm")?;
        let root = self.vm_dir(&vm_cid)?;
        let ssh_dir = root.join("sys/ssh");
        fs::create_dir_all(&ssh_dir).map_err(|e| other("creating", &ssh_dir, e))?;
        let keys_path = ssh_dir.join("authorized_keys");
        fs::write(&keys_path, keys.join("\n") + "\n").map_err(|e| other("writing", &keys_path, e))?;
        let mut networks = req.networks.clone();
        if let Some(net) = networks.values_mut().find(|n| n.ip.is_none() || n.ip.as_deref() == Some(ip.as_str())) {
            net.ip = Some(ip.clone());
        }
        let record = VmRecord {
            vm_cid: vm_cid.clone(),
            agent_id: req.agent_id.clone(),
            stemcell_cid: req.stemcell_cid.clone(),
            ip,
            port: req.cloud_properties.get("ssh_port").and_then(Value::as_u64).map_or(self.cfg.ssh_port, |p| p as u16),
            networks: networks.clone(),
            cloud_properties: req.cloud_properties.clone(),
            disks: Vec::new(),
            metadata: BTreeMap::new(),
            created_at: now(),
        };
        self.save_vm(&record)?;
        // The record exists, so a concurrent create sees the address as taken once the agent
        // runs; until then we hold the lock.
        let started = self.start_agent(&record);
        drop(guard);
        match started {
            Ok(key) => Ok(CreatedVm { vm_cid, networks, ssh: Some(self.endpoint(&record, key)?) }),
            Err(e) => {
                let _ = self.stop_agent(&record.vm_cid);
                let _ = fs::remove_dir_all(&root);
                Err(e)
            }
        }
    }

    fn delete_vm_blocking(&self, cid: Cid) -> Result<(), CpiError> {
        let root = self.vm_dir(&cid)?;
        if !root.is_dir() {
            return Err(CpiError::vm_not_found(&cid));
        }
        self.stop_agent(&cid)?;
        let _guard = self.lock()?;
        self.remove_vm(&cid)
    }

    /// Removes a stopped VM's directory, releasing its disks (the caller holds the lock).
    fn remove_vm(&self, cid: &Cid) -> Result<(), CpiError> {
        let root = self.vm_dir(cid)?;
        if let Some(record) = self.vm_record(cid)? {
            for disk in &record.disks {
                if let Some(mut d) = self.disk_record(disk)? {
                    d.attached_to = None;
                    write_json(&self.disk_record_path(disk)?, &d)?;
                }
            }
        }
        // The slots are links to disks: remove them first so the disks' files are not touched.
        for slot in DISK_SLOTS {
            let _ = fs::remove_file(root.join(slot));
        }
        fs::remove_dir_all(&root).map_err(|e| other("removing", &root, e))
    }

    fn attach_blocking(&self, req: DiskAttachment) -> Result<DiskHint, CpiError> {
        let _guard = self.lock()?;
        let mut vm = self.existing_vm(&req.vm_cid)?;
        let mut disk = self.existing_disk(&req.disk_cid)?;
        let disk_dir = self.disk_dir(&req.disk_cid)?;
        let vm_dir = self.vm_dir(&req.vm_cid)?;
        match &disk.attached_to {
            // Attached to a VM that is gone (its directory removed behind the CPI's back): the
            // attachment is stale, and the disk is free to move.
            Some(other_vm) if other_vm != &req.vm_cid && self.vm_record(other_vm)?.is_some() => {
                return Err(CpiError::other(format!("disk {} is attached to VM {other_vm}", req.disk_cid)));
            }
            Some(other_vm) if other_vm != &req.vm_cid => {}
            Some(_) => {
                if let Some(slot) = DISK_SLOTS.iter().find(|slot| links_to(&vm_dir.join(slot), &disk_dir)) {
                    return Ok(serde_json::json!({ "path": slot }));
                }
            }
            None => {}
        }
        // Each slot holds one disk; a slot whose link names a disk no longer attached is free.
        let attached: Vec<PathBuf> =
            vm.disks.iter().filter(|d| **d != req.disk_cid).map(|d| self.disk_dir(d)).collect::<Result<_, _>>()?;
        let slot = DISK_SLOTS
            .iter()
            .find(|slot| !attached.iter().any(|d| links_to(&vm_dir.join(slot), d)))
            .ok_or_else(|| {
                CpiError::other(format!(
                    "VM {} already has disks {} attached; the local CPI attaches at most {} (at {})",
                    req.vm_cid,
                    vm.disks.iter().map(|d| d.0.as_str()).collect::<Vec<_>>().join(", "),
                    DISK_SLOTS.len(),
                    DISK_SLOTS.join(" and ")
                ))
            })?;
        let link = vm_dir.join(slot);
        if fs::symlink_metadata(&link).is_ok() {
            // A stale link, or an empty store left from before the first attach (the agent may
            // create one).
            fs::remove_dir(&link).or_else(|_| fs::remove_file(&link)).map_err(|e| other("replacing", &link, e))?;
        }
        std::os::unix::fs::symlink(&disk_dir, &link).map_err(|e| other("linking", &link, e))?;
        if !vm.disks.contains(&req.disk_cid) {
            vm.disks.push(req.disk_cid.clone());
        }
        disk.attached_to = Some(req.vm_cid.clone());
        write_json(&self.disk_record_path(&req.disk_cid)?, &disk)?;
        self.save_vm(&vm)?;
        Ok(serde_json::json!({ "path": slot }))
    }

    fn detach_blocking(&self, req: DiskAttachment) -> Result<(), CpiError> {
        let _guard = self.lock()?;
        let mut vm = self.existing_vm(&req.vm_cid)?;
        let mut disk = self.existing_disk(&req.disk_cid)?;
        if !vm.disks.contains(&req.disk_cid) {
            return Err(CpiError::new(
                ErrorKind::DiskNotAttached,
                format!("disk {} is not attached to VM {}", req.disk_cid, req.vm_cid),
            ));
        }
        let (vm_dir, disk_dir) = (self.vm_dir(&req.vm_cid)?, self.disk_dir(&req.disk_cid)?);
        for link in DISK_SLOTS.iter().map(|slot| vm_dir.join(slot)).filter(|link| links_to(link, &disk_dir)) {
            fs::remove_file(&link).map_err(|e| other("unlinking", &link, e))?;
        }
        vm.disks.retain(|d| d != &req.disk_cid);
        disk.attached_to = None;
        self.save_vm(&vm)?;
        write_json(&self.disk_record_path(&req.disk_cid)?, &disk)
    }
}

/// Where attached disks are linked in a VM's root, in the order they are taken: the persistent
/// disk, then a migration's target beside it.
const DISK_SLOTS: [&str; 2] = ["store", "store_migration_target"];

/// Whether `link` is a symlink to `target`.
fn links_to(link: &Path, target: &Path) -> bool {
    fs::read_link(link).is_ok_and(|to| to == target)
}

/// Copies a directory tree (files, directories, symlinks as links).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Runs blocking file and process work off the async executor.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, CpiError> + Send + 'static) -> Result<T, CpiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| CpiError::other(format!("local CPI task failed: {e}")))?
}

#[async_trait]
impl Cpi for LocalCpi {
    async fn info(&self) -> Result<Info, CpiError> {
        Ok(Info { stemcell_formats: vec!["local".to_string()], api_version: rosh_cpi::API_VERSION })
    }

    async fn create_stemcell(&self, req: CreateStemcell) -> Result<Cid, CpiError> {
        let this = self.clone();
        blocking(move || {
            let cid = new_cid("sc")?;
            let dir = this.cfg.dir.join("stemcells").join(&cid.0);
            fs::create_dir_all(&dir).map_err(|e| other("creating", &dir, e))?;
            let image = Path::new(&req.image_path);
            fs::copy(image, dir.join("image")).map_err(|e| other("copying stemcell image", image, e))?;
            write_json(&dir.join("cloud_properties.json"), &req.cloud_properties)?;
            Ok(cid)
        })
        .await
    }

    async fn delete_stemcell(&self, cid: Cid) -> Result<(), CpiError> {
        let dir = self.cfg.dir.join("stemcells").join(checked(&cid)?);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            // Deleting what is gone is done (BOSH CPIs treat it so).
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(other("removing", &dir, e)),
        }
    }

    async fn create_vm(&self, req: CreateVm) -> Result<CreatedVm, CpiError> {
        let this = self.clone();
        blocking(move || this.create_vm_blocking(req)).await
    }

    async fn delete_vm(&self, cid: Cid) -> Result<(), CpiError> {
        let this = self.clone();
        blocking(move || this.delete_vm_blocking(cid)).await
    }

    async fn has_vm(&self, cid: Cid) -> Result<bool, CpiError> {
        Ok(self.vm_record(&cid)?.is_some() && self.agent_pid(&cid)?.is_some())
    }

    async fn reboot_vm(&self, cid: Cid) -> Result<(), CpiError> {
        let this = self.clone();
        blocking(move || {
            let record = this.existing_vm(&cid)?;
            this.stop_agent(&cid)?;
            this.start_agent(&record).map(|_| ())
        })
        .await
    }

    async fn set_vm_metadata(&self, req: SetVmMetadata) -> Result<(), CpiError> {
        let this = self.clone();
        blocking(move || {
            let _guard = this.lock()?;
            let mut record = this.existing_vm(&req.vm_cid)?;
            record.metadata.extend(req.metadata);
            this.save_vm(&record)
        })
        .await
    }

    async fn create_disk(&self, req: CreateDisk) -> Result<Cid, CpiError> {
        let this = self.clone();
        blocking(move || {
            let cid = new_cid("disk")?;
            let dir = this.disk_dir(&cid)?;
            fs::create_dir_all(&dir).map_err(|e| other("creating", &dir, e))?;
            let id_file = dir.join(DISK_ID_FILE);
            fs::write(&id_file, format!("{cid}\n")).map_err(|e| other("writing", &id_file, e))?;
            let record = DiskRecord {
                disk_cid: cid.clone(),
                size_mb: req.size_mb,
                cloud_properties: req.cloud_properties,
                attached_to: None,
                created_at: now(),
            };
            write_json(&this.disk_record_path(&cid)?, &record)?;
            Ok(cid)
        })
        .await
    }

    async fn delete_disk(&self, cid: Cid) -> Result<(), CpiError> {
        let this = self.clone();
        blocking(move || {
            let _guard = this.lock()?;
            let disk = this.existing_disk(&cid)?;
            if let Some(vm) = disk.attached_to {
                return Err(CpiError::other(format!("disk {cid} is attached to VM {vm}: detach it first")));
            }
            let dir = this.disk_dir(&cid)?;
            fs::remove_dir_all(&dir).map_err(|e| other("removing", &dir, e))?;
            let record = this.disk_record_path(&cid)?;
            fs::remove_file(&record).map_err(|e| other("removing", &record, e))
        })
        .await
    }

    async fn has_disk(&self, cid: Cid) -> Result<bool, CpiError> {
        Ok(self.disk_record(&cid)?.is_some() && self.disk_dir(&cid)?.is_dir())
    }

    async fn attach_disk(&self, req: DiskAttachment) -> Result<DiskHint, CpiError> {
        let this = self.clone();
        blocking(move || this.attach_blocking(req)).await
    }

    async fn detach_disk(&self, req: DiskAttachment) -> Result<(), CpiError> {
        let this = self.clone();
        blocking(move || this.detach_blocking(req)).await
    }

    async fn get_disks(&self, cid: Cid) -> Result<Vec<Cid>, CpiError> {
        Ok(self.existing_vm(&cid)?.disks)
    }

    async fn resize_disk(&self, req: ResizeDisk) -> Result<(), CpiError> {
        let this = self.clone();
        blocking(move || {
            let _guard = this.lock()?;
            let mut disk = this.existing_disk(&req.disk_cid)?;
            disk.size_mb = req.new_size_mb;
            write_json(&this.disk_record_path(&req.disk_cid)?, &disk)
        })
        .await
    }

    async fn snapshot_disk(&self, req: SnapshotDisk) -> Result<Cid, CpiError> {
        let this = self.clone();
        blocking(move || {
            this.existing_disk(&req.disk_cid)?;
            let cid = new_cid("snap")?;
            let to = this.cfg.dir.join("snapshots").join(&cid.0);
            let from = this.disk_dir(&req.disk_cid)?;
            copy_tree(&from, &to.join("data")).map_err(|e| other("copying", &from, e))?;
            write_json(&to.join("metadata.json"), &req.metadata)?;
            Ok(cid)
        })
        .await
    }

    async fn list_vms(&self) -> Result<Vec<VmListing>, CpiError> {
        Ok(self
            .vms()?
            .into_iter()
            .map(|vm| VmListing { vm_cid: vm.vm_cid, agent_id: vm.agent_id, metadata: vm.metadata })
            .collect())
    }

    async fn delete_snapshot(&self, cid: Cid) -> Result<(), CpiError> {
        let dir = self.cfg.dir.join("snapshots").join(checked(&cid)?);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(other("removing", &dir, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpi() -> (tempfile::TempDir, LocalCpi) {
        let dir = tempfile::tempdir().unwrap();
        let cpi = LocalCpi::new(LocalConfig::new(dir.path().join("cpi"), "/nonexistent/rosh")).unwrap();
        (dir, cpi)
    }

    #[test]
    fn cids_that_could_escape_the_directory_are_refused() {
        let (_d, cpi) = cpi();
        for bad in ["../x", "a/b", "", "."] {
            let err = cpi.vm_dir(&Cid::from(bad)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{bad}");
        }
        assert!(cpi.vm_dir(&Cid::from("vm-0a1b")).is_ok());
    }

    #[tokio::test]
    async fn missing_vms_and_disks_are_typed_errors() {
        let (_d, cpi) = cpi();
        assert_eq!(cpi.delete_vm(Cid::from("vm-none")).await.unwrap_err().kind, ErrorKind::VmNotFound);
        assert_eq!(cpi.reboot_vm(Cid::from("vm-none")).await.unwrap_err().kind, ErrorKind::VmNotFound);
        assert!(!cpi.has_vm(Cid::from("vm-none")).await.unwrap());
        assert_eq!(cpi.delete_disk(Cid::from("disk-none")).await.unwrap_err().kind, ErrorKind::DiskNotFound);
        assert!(!cpi.has_disk(Cid::from("disk-none")).await.unwrap());
    }

    #[tokio::test]
    async fn disks_are_directories_with_their_id_and_snapshots_copy_them() {
        let (_d, cpi) = cpi();
        let disk = cpi
            .create_disk(CreateDisk { size_mb: 1024, cloud_properties: Value::Null, vm_locality: None })
            .await
            .unwrap();
        assert!(cpi.has_disk(disk.clone()).await.unwrap());
        let dir = cpi.disk_dir(&disk).unwrap();
        assert_eq!(fs::read_to_string(dir.join(DISK_ID_FILE)).unwrap().trim(), disk.0);
        fs::write(dir.join("data.txt"), "kept").unwrap();
        cpi.resize_disk(ResizeDisk { disk_cid: disk.clone(), new_size_mb: 2048 }).await.unwrap();
        assert_eq!(cpi.disk_record(&disk).unwrap().unwrap().size_mb, 2048);
        let snap = cpi.snapshot_disk(SnapshotDisk { disk_cid: disk.clone(), metadata: BTreeMap::new() }).await.unwrap();
        let copy = cpi.cfg.dir.join("snapshots").join(&snap.0).join("data/data.txt");
        assert_eq!(fs::read_to_string(copy).unwrap(), "kept");
        cpi.delete_snapshot(snap).await.unwrap();
        cpi.delete_disk(disk.clone()).await.unwrap();
        assert!(!cpi.has_disk(disk).await.unwrap());
    }

    #[tokio::test]
    async fn create_vm_refuses_unknown_stemcells_missing_keys_and_non_loopback_addresses() {
        let (d, cpi) = cpi();
        let image = d.path().join("image");
        fs::write(&image, "host").unwrap();
        let sc = cpi
            .create_stemcell(CreateStemcell { image_path: image.display().to_string(), cloud_properties: Value::Null })
            .await
            .unwrap();
        let req = |stemcell: &Cid, ip: &str, keys: bool| CreateVm {
            agent_id: "a".into(),
            stemcell_cid: stemcell.clone(),
            cloud_properties: Value::Null,
            networks: BTreeMap::from([(
                "default".to_string(),
                NetworkSettings { ip: Some(ip.to_string()), ..Default::default() },
            )]),
            disk_cids: vec![],
            env: if keys {
                serde_json::json!({"bosh": {"authorized_keys": ["ssh-ed25519 AAAA"]}})
            } else {
                Value::Null
            },
        };
        let e = cpi.create_vm(req(&Cid::from("sc-missing"), "127.77.0.2", true)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::VmCreationFailed);
        assert!(e.message.contains("stemcell"), "{e}");
        let e = cpi.create_vm(req(&sc, "127.77.0.2", false)).await.unwrap_err();
        assert!(e.message.contains("authorized_keys"), "{e}");
        let e = cpi.create_vm(req(&sc, "10.0.0.5", true)).await.unwrap_err();
        assert!(e.message.contains("loopback"), "{e}");
        // The agent executable does not exist: the VM is not created and nothing is left.
        let e = cpi.create_vm(req(&sc, "127.77.0.2", true)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::VmCreationFailed);
        assert!(cpi.vms().unwrap().is_empty());
    }
}

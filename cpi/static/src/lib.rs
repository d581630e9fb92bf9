//! The static CPI: a pool of machines that already exist (bare metal, or made by other tools),
//! reached over OpenSSH.
//!
//! This crate owns the pool and who holds what: the machines come from config
//! ([`StaticConfig`], the `properties` of a `type: static` CPI), `create_vm` claims a free one
//! and `delete_vm` gives it back. Claims live in one JSON file in the director's state dir
//! (written to a temporary file and renamed, under an exclusive lock on `<file>.lock` so two rosh
//! processes cannot claim the same machine). A VM's cid is its machine's name.
//!
//! It deliberately knows no SSH: `create_vm` answers the [`SshEndpoint`] (address, pinned host
//! key, login key, `<root>/bosh/bin/rosh-agent --root <root>` with `install_agent`) and the
//! director does the rest; before a machine returns to the pool, `delete_vm` has an injected
//! [`Wiper`] (the rosh crate's, through the agent's `wipe` verb) remove the job state. `has_vm`
//! is a reachability check: claimed, and something answers with an SSH banner.
//!
//! Not supported (yet): persistent disks — a static machine's `store/` is a directory on its own
//! disk, so `create_disk`, `delete_disk`, `attach_disk`, `detach_disk` answer NotImplemented,
//! `has_disk` is false and `get_disks` is empty — and `reboot_vm` (NotImplemented).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rosh_cpi::{
    Cid, Cpi, CpiError, CreateDisk, CreateStemcell, CreateVm, CreatedVm, DiskAttachment, DiskHint, ErrorKind, Info,
    SetVmMetadata, SshEndpoint,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncReadExt;

/// Removes a machine's job state before it returns to the pool. The rosh crate implements it
/// with the agent's `wipe` verb; tests can record calls.
#[async_trait]
pub trait Wiper: Send + Sync {
    async fn wipe(&self, endpoint: &SshEndpoint) -> Result<(), String>;
}

/// A config the CPI cannot run with, named by its path (`machines[1].host_key: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The CPI's `properties`, as written in the CPI config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    machines: Vec<RawMachine>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    name: String,
    address: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_user")]
    user: String,
    /// The login key, a path on the director's machine; the director's own key when absent.
    #[serde(default)]
    private_key: Option<String>,
    /// The host's public key (`ssh-ed25519 AAAA… [comment]`).
    #[serde(default)]
    host_key: Option<String>,
    /// Or a known_hosts file holding it (the entry for `address`, or `[address]:port`).
    #[serde(default)]
    known_hosts: Option<String>,
    #[serde(default = "default_root")]
    root: String,
}

fn default_port() -> u16 {
    22
}

fn default_user() -> String {
    "root".to_string()
}

fn default_root() -> String {
    "/var/vcap".to_string()
}

/// One machine of the pool, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub private_key: Option<String>,
    /// `type base64`, the comment dropped.
    pub host_key: String,
    pub root: String,
}

impl Machine {
    /// How the director reaches this machine and runs the agent there.
    pub fn endpoint(&self) -> SshEndpoint {
        let root = self.root.trim_end_matches('/');
        let root = if root.is_empty() { "/" } else { root };
        SshEndpoint {
            host: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            host_public_key: self.host_key.clone(),
            private_key_path: self.private_key.clone(),
            agent_command: format!(
                "{} --root {}",
                shell_quote(&format!("{}/bosh/bin/rosh-agent", root.trim_end_matches('/'))),
                shell_quote(root)
            ),
            root: root.to_string(),
            install_agent: true,
        }
    }
}

/// The validated pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticConfig {
    pub machines: Vec<Machine>,
}

impl StaticConfig {
    /// Reads the CPI's `properties` (`machines: [{name, address, port, user, private_key,
    /// host_key | known_hosts, root}]`). known_hosts files are read here, once.
    pub fn from_value(properties: &Value) -> Result<StaticConfig, ConfigError> {
        let raw: RawConfig = serde_json::from_value(properties.clone())
            .map_err(|e| ConfigError(format!("static CPI properties: {e}")))?;
        if raw.machines.is_empty() {
            return Err(ConfigError("machines: a static CPI needs at least one machine".into()));
        }
        let mut machines: Vec<Machine> = Vec::with_capacity(raw.machines.len());
        for (i, m) in raw.machines.into_iter().enumerate() {
            let at = |field: &str| format!("machines[{i}].{field}");
            if m.name.is_empty() || m.name.contains('/') {
                return Err(ConfigError(format!("{}: `{}` is not a usable VM id", at("name"), m.name)));
            }
            if let Some(other) = machines.iter().position(|seen| seen.name == m.name) {
                return Err(ConfigError(format!("{}: `{}` is also the name of machines[{other}]", at("name"), m.name)));
            }
            let host_key = match (&m.host_key, &m.known_hosts) {
                (Some(line), None) => key_of_line(line)
                    .ok_or_else(|| ConfigError(format!("{}: `{line}` is not `type base64`", at("host_key"))))?,
                (None, Some(path)) => {
                    let text = fs::read_to_string(path)
                        .map_err(|e| ConfigError(format!("{}: {path}: {e}", at("known_hosts"))))?;
                    known_host_key(&text, &m.address, m.port).ok_or_else(|| {
                        ConfigError(format!(
                            "{}: {path} has no entry for {} (hashed entries are not read; add `host_key` instead)",
                            at("known_hosts"),
                            host_pattern(&m.address, m.port)
                        ))
                    })?
                }
                (Some(_), Some(_)) => {
                    return Err(ConfigError(format!("machines[{i}]: give `host_key` or `known_hosts`, not both")));
                }
                (None, None) => {
                    return Err(ConfigError(format!(
                        "machines[{i}]: `host_key` or `known_hosts` is required: the director never accepts an unknown host key"
                    )));
                }
            };
            if !m.root.starts_with('/') {
                return Err(ConfigError(format!("{}: `{}` is not an absolute path", at("root"), m.root)));
            }
            machines.push(Machine {
                name: m.name,
                address: m.address,
                port: m.port,
                user: m.user,
                private_key: m.private_key,
                host_key,
                root: m.root,
            });
        }
        Ok(StaticConfig { machines })
    }
}

/// `type base64` of a public key line, when it looks like one.
fn key_of_line(line: &str) -> Option<String> {
    let mut fields = line.split_whitespace();
    let (kind, data) = (fields.next()?, fields.next()?);
    let plausible = (kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-"))
        && data.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    plausible.then(|| format!("{kind} {data}"))
}

/// How known_hosts names a host: `address` on port 22, `[address]:port` otherwise.
fn host_pattern(address: &str, port: u16) -> String {
    if port == 22 { address.to_string() } else { format!("[{address}]:{port}") }
}

/// The host key known_hosts lists for `address:port` (an ed25519 one when there are several).
fn known_host_key(text: &str, address: &str, port: u16) -> Option<String> {
    let wanted = [host_pattern(address, port), format!("[{address}]:{port}")];
    let mut found: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        // Comments, blanks, `@cert-authority` / `@revoked` markers, and hashed hosts are skipped.
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let Some((hosts, key)) = line.split_once(char::is_whitespace) else { continue };
        if hosts.split(',').any(|h| wanted.iter().any(|w| w == h))
            && let Some(key) = key_of_line(key)
        {
            found.push(key);
        }
    }
    found.iter().find(|k| k.starts_with("ssh-ed25519 ")).or(found.first()).cloned()
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// The claims file: which machines are taken.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Claims {
    #[serde(default)]
    machines: BTreeMap<String, Claim>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Claim {
    agent_id: String,
    /// Seconds since the epoch.
    claimed_at: u64,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// The static CPI.
pub struct StaticCpi {
    config: StaticConfig,
    claims_path: PathBuf,
    wiper: Arc<dyn Wiper>,
    /// Serialises this process's claim updates; the file lock serialises processes.
    guard: tokio::sync::Mutex<()>,
    /// How long `has_vm` waits for a machine's SSH banner.
    pub reach_timeout: Duration,
}

impl std::fmt::Debug for StaticCpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCpi").field("config", &self.config).field("claims_path", &self.claims_path).finish()
    }
}

impl StaticCpi {
    /// A CPI over `config`'s machines, recording claims in `claims_path` (a JSON file in the
    /// director's state dir; created on the first claim).
    pub fn new(config: StaticConfig, claims_path: impl Into<PathBuf>, wiper: Arc<dyn Wiper>) -> StaticCpi {
        StaticCpi {
            config,
            claims_path: claims_path.into(),
            wiper,
            guard: tokio::sync::Mutex::new(()),
            reach_timeout: Duration::from_secs(3),
        }
    }

    pub fn config(&self) -> &StaticConfig {
        &self.config
    }

    fn machine(&self, name: &str) -> Option<&Machine> {
        self.config.machines.iter().find(|m| m.name == name)
    }

    /// The machines claimed now, by name (for status views and tests).
    pub async fn claimed(&self) -> Result<Vec<String>, CpiError> {
        let _in_process = self.guard.lock().await;
        self.update_claims(|claims| Ok((claims.machines.keys().cloned().collect(), false)))
    }

    /// Reads the claims under the file lock, lets `change` look (and answer whether it changed
    /// them), and writes them back atomically when it did.
    fn update_claims<R>(&self, change: impl FnOnce(&mut Claims) -> Result<(R, bool), CpiError>) -> Result<R, CpiError> {
        let failed = |what: &str, e: std::io::Error| {
            CpiError::other(format!("static CPI claims {what} {}: {e}", self.claims_path.display()))
        };
        if let Some(dir) = self.claims_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| failed("directory of", e))?;
        }
        let lock_path = with_suffix(&self.claims_path, ".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| failed("lock beside", e))?;
        lock.lock().map_err(|e| failed("lock beside", e))?;

        let mut claims: Claims = match fs::read(&self.claims_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                CpiError::other(format!("static CPI claims file {} is corrupt: {e}", self.claims_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Claims::default(),
            Err(e) => return Err(failed("file", e)),
        };
        let (answer, changed) = change(&mut claims)?;
        if changed {
            let tmp = with_suffix(&self.claims_path, &format!(".tmp.{}", std::process::id()));
            let body = serde_json::to_vec_pretty(&claims).expect("claims serialize");
            let mut file = fs::File::create(&tmp).map_err(|e| failed("temp file for", e))?;
            file.write_all(&body).and_then(|()| file.sync_all()).map_err(|e| failed("temp file for", e))?;
            fs::rename(&tmp, &self.claims_path).map_err(|e| failed("file", e))?;
        }
        Ok(answer)
    }

    /// Whether something at the machine's address answers with an SSH banner in time.
    async fn answers_ssh(&self, machine: &Machine) -> bool {
        let probe = async {
            let mut tcp = tokio::net::TcpStream::connect((machine.address.as_str(), machine.port)).await.ok()?;
            let mut banner = [0u8; 4];
            tcp.read_exact(&mut banner).await.ok()?;
            Some(&banner == b"SSH-")
        };
        matches!(tokio::time::timeout(self.reach_timeout, probe).await, Ok(Some(true)))
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[async_trait]
impl Cpi for StaticCpi {
    async fn info(&self) -> Result<Info, CpiError> {
        Ok(Info { stemcell_formats: vec!["local".into(), "raw".into()], api_version: rosh_cpi::API_VERSION })
    }

    /// The machines bring their own OS: a stemcell is only recorded by name and version.
    async fn create_stemcell(&self, req: CreateStemcell) -> Result<Cid, CpiError> {
        let props = &req.cloud_properties;
        let name = props.get("name").and_then(Value::as_str);
        let version = props
            .get("version")
            .and_then(|v| v.as_str().map(str::to_string).or_else(|| v.as_number().map(|n| n.to_string())));
        Ok(match (name, version) {
            (Some(name), Some(version)) => Cid(format!("static-{name}-{version}")),
            _ => Cid("static".into()),
        })
    }

    async fn delete_stemcell(&self, _stemcell_cid: Cid) -> Result<(), CpiError> {
        Ok(())
    }

    async fn create_vm(&self, req: CreateVm) -> Result<CreatedVm, CpiError> {
        let asked = req.cloud_properties.get("machine").and_then(Value::as_str).map(str::to_string);
        let _in_process = self.guard.lock().await;
        let machine = self.update_claims(|claims| {
            let machine = match &asked {
                Some(name) => {
                    let machine = self.machine(name).ok_or_else(|| {
                        CpiError::new(
                            ErrorKind::VmCreationFailed,
                            format!("no static machine is named `{name}` (cloud_properties.machine)"),
                        )
                    })?;
                    if let Some(claim) = claims.machines.get(name) {
                        return Err(CpiError::new(
                            ErrorKind::VmCreationFailed,
                            format!("static machine `{name}` is already claimed (by agent {})", claim.agent_id),
                        ));
                    }
                    machine
                }
                None => {
                    self.config.machines.iter().find(|m| !claims.machines.contains_key(&m.name)).ok_or_else(|| {
                        let names: Vec<&str> = self.config.machines.iter().map(|m| m.name.as_str()).collect();
                        CpiError::new(
                            ErrorKind::VmCreationFailed,
                            format!(
                                "all {} static machines are claimed ({}): add machines or delete VMs",
                                names.len(),
                                names.join(", ")
                            ),
                        )
                    })?
                }
            };
            claims.machines.insert(
                machine.name.clone(),
                Claim { agent_id: req.agent_id.clone(), claimed_at: now_secs(), metadata: BTreeMap::new() },
            );
            Ok((machine.clone(), true))
        })?;

        // The machine's address is its IP on networks where the infrastructure assigns one.
        let mut networks = req.networks.clone();
        if machine.address.parse::<IpAddr>().is_ok() {
            for net in networks.values_mut().filter(|n| n.ip.is_none()) {
                net.ip = Some(machine.address.clone());
            }
        }
        Ok(CreatedVm { vm_cid: Cid(machine.name.clone()), networks, ssh: Some(machine.endpoint()) })
    }

    /// Wipes the machine through the [`Wiper`] and releases it. The claim holds while wiping, so
    /// the machine cannot be handed out half-wiped; a failed wipe keeps it (ok to retry).
    async fn delete_vm(&self, vm_cid: Cid) -> Result<(), CpiError> {
        let machine = {
            let _in_process = self.guard.lock().await;
            self.update_claims(|claims| {
                let claimed = claims.machines.contains_key(&vm_cid.0);
                match self.machine(&vm_cid.0) {
                    Some(machine) if claimed => Ok((machine.clone(), false)),
                    // A claim on a machine no longer configured is stale: drop it.
                    None if claimed => {
                        claims.machines.remove(&vm_cid.0);
                        Err(CpiError::vm_not_found(&vm_cid))
                    }
                    _ => Err(CpiError::vm_not_found(&vm_cid)),
                }
            })?
        };
        self.wiper.wipe(&machine.endpoint()).await.map_err(|message| {
            CpiError::retryable(
                ErrorKind::Other,
                format!("wiping static machine `{}` before releasing it: {message}", machine.name),
            )
        })?;
        let _in_process = self.guard.lock().await;
        self.update_claims(|claims| Ok(((), claims.machines.remove(&vm_cid.0).is_some())))
    }

    async fn has_vm(&self, vm_cid: Cid) -> Result<bool, CpiError> {
        let machine = {
            let _in_process = self.guard.lock().await;
            self.update_claims(|claims| {
                Ok((claims.machines.contains_key(&vm_cid.0).then(|| self.machine(&vm_cid.0).cloned()).flatten(), false))
            })?
        };
        match machine {
            Some(machine) => Ok(self.answers_ssh(&machine).await),
            None => Ok(false),
        }
    }

    async fn reboot_vm(&self, _vm_cid: Cid) -> Result<(), CpiError> {
        Err(CpiError::not_implemented("reboot_vm"))
    }

    async fn set_vm_metadata(&self, req: SetVmMetadata) -> Result<(), CpiError> {
        let _in_process = self.guard.lock().await;
        self.update_claims(|claims| match claims.machines.get_mut(&req.vm_cid.0) {
            Some(claim) => {
                claim.metadata = req.metadata.clone();
                Ok(((), true))
            }
            None => Err(CpiError::vm_not_found(&req.vm_cid)),
        })
    }

    async fn create_disk(&self, _req: CreateDisk) -> Result<Cid, CpiError> {
        Err(CpiError::not_implemented("create_disk"))
    }

    async fn delete_disk(&self, _disk_cid: Cid) -> Result<(), CpiError> {
        Err(CpiError::not_implemented("delete_disk"))
    }

    /// No disk is ever made here, so none exists.
    async fn has_disk(&self, _disk_cid: Cid) -> Result<bool, CpiError> {
        Ok(false)
    }

    async fn attach_disk(&self, _req: DiskAttachment) -> Result<DiskHint, CpiError> {
        Err(CpiError::not_implemented("attach_disk"))
    }

    async fn detach_disk(&self, _req: DiskAttachment) -> Result<(), CpiError> {
        Err(CpiError::not_implemented("detach_disk"))
    }

    async fn get_disks(&self, _vm_cid: Cid) -> Result<Vec<Cid>, CpiError> {
        Ok(Vec::new())
    }
}

impl StaticCpi {
    /// The metadata recorded for a claimed machine.
    pub async fn metadata(&self, vm_cid: &Cid) -> Result<BTreeMap<String, String>, CpiError> {
        let _in_process = self.guard.lock().await;
        self.update_claims(|claims| match claims.machines.get(&vm_cid.0) {
            Some(claim) => Ok((claim.metadata.clone(), false)),
            None => Err(CpiError::vm_not_found(vm_cid)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use serde_json::json;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK5oAGx1vqzL8eBhzW3F4mNTZ0h+vH5L0gU8o1ZJ4q5r";

    /// Records what it was asked to wipe; fails while `fail` is set.
    #[derive(Default)]
    struct Recorder {
        wiped: Mutex<Vec<String>>,
        fail: Mutex<bool>,
    }

    #[async_trait]
    impl Wiper for Recorder {
        async fn wipe(&self, endpoint: &SshEndpoint) -> Result<(), String> {
            if *self.fail.lock().unwrap() {
                return Err("agent unreachable".into());
            }
            self.wiped.lock().unwrap().push(format!("{}:{}", endpoint.host, endpoint.port));
            Ok(())
        }
    }

    fn pool(names: &[&str]) -> StaticConfig {
        let machines: Vec<Value> = names
            .iter()
            .enumerate()
            .map(|(i, n)| json!({"name": n, "address": format!("10.0.0.{}", i + 1), "host_key": KEY}))
            .collect();
        StaticConfig::from_value(&json!({ "machines": machines })).unwrap()
    }

    fn request(agent: &str, cloud_properties: Value) -> CreateVm {
        serde_json::from_value(json!({
            "agent_id": agent, "stemcell_cid": "static", "cloud_properties": cloud_properties,
            "networks": {"default": {"type": "dynamic"}}, "disk_cids": [], "env": {}
        }))
        .unwrap()
    }

    fn cpi(dir: &Path, names: &[&str]) -> (StaticCpi, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        (StaticCpi::new(pool(names), dir.join("state/static-claims.json"), recorder.clone()), recorder)
    }

    #[tokio::test]
    async fn create_vm_claims_free_machines_in_order_until_none_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let (cpi, _) = cpi(dir.path(), &["m1", "m2"]);
        let a = cpi.create_vm(request("a", json!({}))).await.unwrap();
        assert_eq!(a.vm_cid, Cid::from("m1"));
        let ssh = a.ssh.unwrap();
        assert_eq!((ssh.host.as_str(), ssh.port, ssh.user.as_str()), ("10.0.0.1", 22, "root"));
        assert_eq!(ssh.agent_command, "/var/vcap/bosh/bin/rosh-agent --root /var/vcap");
        assert_eq!(ssh.host_public_key, KEY);
        assert!(ssh.install_agent);
        assert_eq!(a.networks["default"].ip.as_deref(), Some("10.0.0.1"));

        assert_eq!(cpi.create_vm(request("b", json!({}))).await.unwrap().vm_cid, Cid::from("m2"));
        let err = cpi.create_vm(request("c", json!({}))).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::VmCreationFailed);
        assert!(err.message.contains("all 2 static machines are claimed (m1, m2)"), "{}", err.message);
        assert_eq!(cpi.claimed().await.unwrap(), vec!["m1", "m2"]);
    }

    #[tokio::test]
    async fn a_machine_can_be_asked_for_by_name_and_is_refused_when_taken_or_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let (cpi, _) = cpi(dir.path(), &["m1", "m2"]);
        let vm = cpi.create_vm(request("a", json!({"machine": "m2"}))).await.unwrap();
        assert_eq!(vm.vm_cid, Cid::from("m2"));
        let taken = cpi.create_vm(request("b", json!({"machine": "m2"}))).await.unwrap_err();
        assert_eq!(taken.kind, ErrorKind::VmCreationFailed);
        assert!(taken.message.contains("`m2` is already claimed (by agent a)"), "{}", taken.message);
        let unknown = cpi.create_vm(request("b", json!({"machine": "m9"}))).await.unwrap_err();
        assert_eq!(unknown.kind, ErrorKind::VmCreationFailed);
        assert!(unknown.message.contains("no static machine is named `m9`"), "{}", unknown.message);
        // The free one is still free.
        assert_eq!(cpi.create_vm(request("b", json!({}))).await.unwrap().vm_cid, Cid::from("m1"));
    }

    #[tokio::test]
    async fn delete_vm_wipes_then_releases_and_refuses_unclaimed_machines() {
        let dir = tempfile::tempdir().unwrap();
        let (cpi, recorder) = cpi(dir.path(), &["m1"]);
        let missing = cpi.delete_vm(Cid::from("m1")).await.unwrap_err();
        assert_eq!(missing.kind, ErrorKind::VmNotFound);
        assert_eq!(cpi.delete_vm(Cid::from("nope")).await.unwrap_err().kind, ErrorKind::VmNotFound);
        assert!(recorder.wiped.lock().unwrap().is_empty());

        cpi.create_vm(request("a", json!({}))).await.unwrap();
        *recorder.fail.lock().unwrap() = true;
        let failed = cpi.delete_vm(Cid::from("m1")).await.unwrap_err();
        assert!(failed.ok_to_retry && failed.message.contains("agent unreachable"), "{failed:?}");
        assert_eq!(cpi.claimed().await.unwrap(), vec!["m1"], "a failed wipe keeps the claim");

        *recorder.fail.lock().unwrap() = false;
        cpi.delete_vm(Cid::from("m1")).await.unwrap();
        assert_eq!(*recorder.wiped.lock().unwrap(), vec!["10.0.0.1:22"]);
        assert!(cpi.claimed().await.unwrap().is_empty());
        assert_eq!(cpi.create_vm(request("b", json!({}))).await.unwrap().vm_cid, Cid::from("m1"));
    }

    #[tokio::test]
    async fn claims_survive_a_new_cpi_on_the_same_file_and_metadata_is_kept_there() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = cpi(dir.path(), &["m1", "m2"]);
        first.create_vm(request("a", json!({}))).await.unwrap();
        let tags: BTreeMap<String, String> = [("deployment".to_string(), "web".to_string())].into();
        first.set_vm_metadata(SetVmMetadata { vm_cid: Cid::from("m1"), metadata: tags.clone() }).await.unwrap();
        let unknown = first.set_vm_metadata(SetVmMetadata { vm_cid: Cid::from("m2"), metadata: tags.clone() }).await;
        assert_eq!(unknown.unwrap_err().kind, ErrorKind::VmNotFound);

        let (second, _) = cpi(dir.path(), &["m1", "m2"]);
        assert_eq!(second.metadata(&Cid::from("m1")).await.unwrap(), tags);
        assert_eq!(second.create_vm(request("b", json!({}))).await.unwrap().vm_cid, Cid::from("m2"));
        let text = fs::read_to_string(dir.path().join("state/static-claims.json")).unwrap();
        assert!(text.contains("\"deployment\": \"web\""), "{text}");
    }

    #[tokio::test]
    async fn concurrent_creates_never_hand_out_a_machine_twice() {
        let dir = tempfile::tempdir().unwrap();
        let (cpi, _) = cpi(dir.path(), &["m1", "m2", "m3"]);
        let cpi = Arc::new(cpi);
        let mut tasks = Vec::new();
        for i in 0..6 {
            let cpi = cpi.clone();
            tasks.push(tokio::spawn(async move { cpi.create_vm(request(&format!("a{i}"), json!({}))).await }));
        }
        let mut got = Vec::new();
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(vm) => got.push(vm.vm_cid.0),
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::VmCreationFailed);
                    refused += 1;
                }
            }
        }
        got.sort();
        assert_eq!(got, vec!["m1", "m2", "m3"]);
        assert_eq!(refused, 3);
    }

    #[tokio::test]
    async fn has_vm_is_false_for_unclaimed_and_unreachable_machines() {
        let dir = tempfile::tempdir().unwrap();
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = StaticConfig::from_value(
            &json!({"machines": [{"name": "m1", "address": "127.0.0.1", "port": port, "host_key": KEY}]}),
        )
        .unwrap();
        let mut cpi = StaticCpi::new(config, dir.path().join("claims.json"), Arc::new(Recorder::default()));
        cpi.reach_timeout = Duration::from_millis(500);
        assert!(!cpi.has_vm(Cid::from("m1")).await.unwrap());
        cpi.create_vm(request("a", json!({}))).await.unwrap();
        assert!(!cpi.has_vm(Cid::from("m1")).await.unwrap());
        assert!(!cpi.has_vm(Cid::from("m2")).await.unwrap());
    }

    #[tokio::test]
    async fn disks_are_not_implemented_and_info_names_the_formats() {
        let dir = tempfile::tempdir().unwrap();
        let (cpi, _) = cpi(dir.path(), &["m1"]);
        let info = cpi.info().await.unwrap();
        assert_eq!(info.stemcell_formats, vec!["local", "raw"]);
        assert_eq!(info.api_version, 2);
        let disk = cpi.create_disk(CreateDisk { size_mb: 1, cloud_properties: json!({}), vm_locality: None }).await;
        assert_eq!(disk.unwrap_err().kind, ErrorKind::NotImplemented);
        assert_eq!(cpi.reboot_vm(Cid::from("m1")).await.unwrap_err().kind, ErrorKind::NotImplemented);
        assert!(cpi.get_disks(Cid::from("m1")).await.unwrap().is_empty());
    }

    #[test]
    fn config_errors_name_the_machine_and_field() {
        let cases = [
            (json!({"machines": []}), "machines: a static CPI needs at least one machine"),
            (
                json!({"machines": [{"name": "m", "address": "h"}]}),
                "machines[0]: `host_key` or `known_hosts` is required",
            ),
            (json!({"machines": [{"name": "m", "address": "h", "host_key": "nonsense"}]}), "machines[0].host_key"),
            (
                json!({"machines": [{"name": "m", "address": "h", "host_key": KEY}, {"name": "m", "address": "i", "host_key": KEY}]}),
                "machines[1].name: `m` is also the name of machines[0]",
            ),
            (json!({"machines": [{"name": "m", "address": "h", "host_key": KEY, "root": "var"}]}), "machines[0].root"),
            (
                json!({"machines": [{"name": "m", "address": "h", "host_key": KEY, "colour": 1}]}),
                "unknown field `colour`",
            ),
        ];
        for (config, expected) in cases {
            let err = StaticConfig::from_value(&config).unwrap_err();
            assert!(err.0.contains(expected), "{config}: {err}");
        }
    }

    #[test]
    fn known_hosts_entries_are_found_by_address_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7";
        fs::write(
            &file,
            format!(
                "# comment\n|1|abc=|def= {KEY}\nother.example {rsa}\n10.0.0.5,web {rsa}\n10.0.0.5 {KEY} root@web\n[10.0.0.6]:2222 {rsa}\n@revoked 10.0.0.7 {KEY}\n"
            ),
        )
        .unwrap();
        let config = |address: &str, port: u16| {
            StaticConfig::from_value(
                &json!({"machines": [{"name": "m", "address": address, "port": port, "known_hosts": file}]}),
            )
        };
        assert_eq!(config("10.0.0.5", 22).unwrap().machines[0].host_key, KEY, "ed25519 preferred, comment dropped");
        assert_eq!(config("10.0.0.6", 2222).unwrap().machines[0].host_key, rsa);
        let err = config("10.0.0.6", 22).unwrap_err();
        assert!(err.0.contains("has no entry for 10.0.0.6"), "{err}");
        assert!(config("10.0.0.7", 22).is_err(), "revoked keys are not pinned");
    }

    #[test]
    fn roots_and_keys_are_carried_into_the_endpoint_quoted() {
        let config = StaticConfig::from_value(&json!({"machines": [{
            "name": "m", "address": "h", "port": 2222, "user": "vcap", "private_key": "/keys/m",
            "host_key": format!("{KEY} comment"), "root": "/srv/my vm/"
        }]}))
        .unwrap();
        let ssh = config.machines[0].endpoint();
        assert_eq!(ssh.root, "/srv/my vm");
        assert_eq!(ssh.agent_command, "'/srv/my vm/bosh/bin/rosh-agent' --root '/srv/my vm'");
        assert_eq!(ssh.private_key_path.as_deref(), Some("/keys/m"));
        assert_eq!(ssh.host_public_key, KEY);
        assert_eq!(ssh.user, "vcap");
    }
}

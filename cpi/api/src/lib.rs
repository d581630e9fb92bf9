//! The CPI contract of rosh: how the director asks an infrastructure for VMs and disks.
//!
//! This crate owns the async [`Cpi`] trait (BOSH CPI v2's methods, one request struct per call),
//! the typed [`CpiError`] that converge code matches on by [`ErrorKind`] (never by message text),
//! and the BOSH CPI JSON envelope in both directions: [`protocol`] encodes and decodes
//! `{method, arguments, context, api_version}` → `{result, error, log}`, [`external`] drives an
//! external BOSH CPI executable through it, and [`protocol::serve`] lets anything that speaks
//! the protocol drive one of rosh's own CPIs. It knows nothing of SSH, state or manifests.
//!
//! One deliberate extension of BOSH's contract: rosh converges VMs over SSH, so `create_vm` may
//! answer with [`SshEndpoint`] — where the VM's SSH server listens and the public half of its
//! host key — which the director pins. In the envelope it travels as a third element of the v2
//! `create_vm` result (`[vm_cid, networks, {"ssh": …}]`); BOSH directors read only the first two.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod external;
pub mod protocol;

/// The CPI API version rosh speaks (BOSH CPI v2: `create_vm` returns networks, `attach_disk`
/// returns a disk hint).
pub const API_VERSION: u32 = 2;

/// A cloud id, as BOSH calls identifiers the infrastructure hands out (`i-0abc…`, `vm-3f…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cid(pub String);

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Cid {
    fn from(s: &str) -> Self {
        Cid(s.to_string())
    }
}

impl From<String> for Cid {
    fn from(s: String) -> Self {
        Cid(s)
    }
}

/// What kind of failure a CPI call ended in. Converge and cck decide on this, never on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// `Bosh::Clouds::VMNotFound`
    VmNotFound,
    /// `Bosh::Clouds::DiskNotFound`
    DiskNotFound,
    /// `Bosh::Clouds::NotImplemented` (and `NotSupported`)
    NotImplemented,
    /// `Bosh::Clouds::VMCreationFailed`
    VmCreationFailed,
    /// `Bosh::Clouds::DiskNotAttached`
    DiskNotAttached,
    /// `Bosh::Clouds::NoDiskSpace`
    NoDiskSpace,
    /// The request itself was malformed (`Bosh::Clouds::CpiError` with a bad argument).
    InvalidRequest,
    /// Anything else: `Bosh::Clouds::CloudError`, `CpiError`, an executable that crashed.
    Other,
}

impl ErrorKind {
    /// The BOSH error type this kind is written as in the envelope.
    pub fn bosh_type(self) -> &'static str {
        match self {
            ErrorKind::VmNotFound => "Bosh::Clouds::VMNotFound",
            ErrorKind::DiskNotFound => "Bosh::Clouds::DiskNotFound",
            ErrorKind::NotImplemented => "Bosh::Clouds::NotImplemented",
            ErrorKind::VmCreationFailed => "Bosh::Clouds::VMCreationFailed",
            ErrorKind::DiskNotAttached => "Bosh::Clouds::DiskNotAttached",
            ErrorKind::NoDiskSpace => "Bosh::Clouds::NoDiskSpace",
            ErrorKind::InvalidRequest => "InvalidCall",
            ErrorKind::Other => "Bosh::Clouds::CloudError",
        }
    }

    /// The kind for a BOSH error type. Unknown types are [`ErrorKind::Other`].
    pub fn from_bosh_type(name: &str) -> ErrorKind {
        match name {
            "Bosh::Clouds::VMNotFound" => ErrorKind::VmNotFound,
            "Bosh::Clouds::DiskNotFound" => ErrorKind::DiskNotFound,
            "Bosh::Clouds::NotImplemented" | "Bosh::Clouds::NotSupported" => ErrorKind::NotImplemented,
            "Bosh::Clouds::VMCreationFailed" => ErrorKind::VmCreationFailed,
            "Bosh::Clouds::DiskNotAttached" => ErrorKind::DiskNotAttached,
            "Bosh::Clouds::NoDiskSpace" => ErrorKind::NoDiskSpace,
            "InvalidCall" | "Bosh::Clouds::InvalidCall" => ErrorKind::InvalidRequest,
            _ => ErrorKind::Other,
        }
    }
}

/// A failed CPI call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}{}: {message}", if *ok_to_retry { " (ok to retry)" } else { "" })]
pub struct CpiError {
    pub kind: ErrorKind,
    pub message: String,
    /// The CPI says the same call may succeed if made again.
    pub ok_to_retry: bool,
}

impl CpiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CpiError {
        CpiError { kind, message: message.into(), ok_to_retry: false }
    }

    pub fn retryable(kind: ErrorKind, message: impl Into<String>) -> CpiError {
        CpiError { kind, message: message.into(), ok_to_retry: true }
    }

    pub fn vm_not_found(vm: &Cid) -> CpiError {
        CpiError::new(ErrorKind::VmNotFound, format!("VM `{vm}` not found"))
    }

    pub fn disk_not_found(disk: &Cid) -> CpiError {
        CpiError::new(ErrorKind::DiskNotFound, format!("disk `{disk}` not found"))
    }

    pub fn not_implemented(method: &str) -> CpiError {
        CpiError::new(ErrorKind::NotImplemented, format!("method `{method}` is not implemented by this CPI"))
    }

    pub fn other(message: impl Into<String>) -> CpiError {
        CpiError::new(ErrorKind::Other, message)
    }
}

/// `info`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub stemcell_formats: Vec<String>,
    #[serde(default = "default_api_version")]
    pub api_version: u32,
}

fn default_api_version() -> u32 {
    1
}

/// `create_stemcell(image_path, cloud_properties)`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateStemcell {
    /// The stemcell's `image` file, unpacked where the CPI can read it.
    pub image_path: String,
    /// `cloud_properties` of the stemcell's `stemcell.MF`.
    pub cloud_properties: Value,
}

/// `create_vm(agent_id, stemcell_cid, cloud_properties, networks, disk_cids, environment)`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateVm {
    /// The instance's agent id (rosh uses the instance uuid).
    pub agent_id: String,
    pub stemcell_cid: Cid,
    /// The vm_type's (and vm_extensions', and AZ's) merged cloud properties.
    pub cloud_properties: Value,
    /// Network name → BOSH network settings (`type`, `ip`, `netmask`, `gateway`, `dns`,
    /// `default`, `cloud_properties`).
    pub networks: BTreeMap<String, NetworkSettings>,
    /// Disks the VM should be placed near.
    pub disk_cids: Vec<Cid>,
    /// The `env` hash: `bosh.authorized_keys` (the director's SSH public keys), `bosh.group`,
    /// `bosh.tags`, and whatever the manifest's `env` adds.
    pub env: Value,
}

impl CreateVm {
    /// The OpenSSH public keys under `env.bosh.authorized_keys`.
    pub fn authorized_keys(&self) -> Vec<String> {
        self.env
            .pointer("/bosh/authorized_keys")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// The IP of the default network (the one with `default` listing `gateway`, else the only
    /// one, else the first by name), when it has one.
    pub fn primary_ip(&self) -> Option<&str> {
        let default = self
            .networks
            .values()
            .find(|n| n.default.iter().any(|d| d == "gateway"))
            .or_else(|| self.networks.values().next());
        default.and_then(|n| n.ip.as_deref())
    }
}

/// One network of a VM as BOSH passes it to the CPI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkSettings {
    /// `manual`, `dynamic` or `vip`.
    #[serde(rename = "type", default = "manual")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// Which defaults this network provides (`dns`, `gateway`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default: Vec<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub cloud_properties: Value,
}

fn manual() -> String {
    "manual".to_string()
}

/// Where the director reaches a VM's SSH server, and the host key it must present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshEndpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// The host's public key in OpenSSH form (`ssh-ed25519 AAAA…`). The director refuses any
    /// other key.
    pub host_public_key: String,
    /// The private key to log in with, when the machine wants one other than the director's
    /// own (a static machine's configured key). A path on the director's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_path: Option<String>,
    /// The command prefix that runs the agent there: `rosh-agent` on a local VM (its SSH server
    /// is the agent), `<root>/bosh/bin/rosh-agent --root <root>` under OpenSSH.
    pub agent_command: String,
    /// The VM's root (`/var/vcap` on static and cloud VMs, the VM directory on the local CPI).
    pub root: String,
    /// Whether the agent binary must be installed (and kept at the director's version) over
    /// SSH before use: true under OpenSSH, false where the SSH server is the agent itself.
    #[serde(default)]
    pub install_agent: bool,
}

/// `create_vm`'s answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedVm {
    pub vm_cid: Cid,
    /// Network settings as the infrastructure assigned them (dynamic IPs filled in).
    pub networks: BTreeMap<String, NetworkSettings>,
    /// How to reach the VM over SSH, when the CPI knows (rosh's own CPIs always do).
    pub ssh: Option<SshEndpoint>,
}

/// `set_vm_metadata(vm_cid, metadata)`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetVmMetadata {
    pub vm_cid: Cid,
    /// Tags: director, deployment, instance_group, id, index, name, created_at, custom tags.
    pub metadata: BTreeMap<String, String>,
}

/// `create_disk(size, cloud_properties, vm_locality)`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateDisk {
    /// Size in MiB, as BOSH passes it.
    pub size_mb: u64,
    pub cloud_properties: Value,
    /// The VM the disk will be attached to, for placement.
    pub vm_locality: Option<Cid>,
}

/// `attach_disk(vm_cid, disk_cid)` and `detach_disk(vm_cid, disk_cid)`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskAttachment {
    pub vm_cid: Cid,
    pub disk_cid: Cid,
}

/// `resize_disk(disk_cid, new_size)`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResizeDisk {
    pub disk_cid: Cid,
    pub new_size_mb: u64,
}

/// `snapshot_disk(disk_cid, metadata)`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDisk {
    pub disk_cid: Cid,
    pub metadata: BTreeMap<String, String>,
}

/// A VM as [`Cpi::list_vms`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmListing {
    pub vm_cid: Cid,
    /// The agent id it was created with (rosh: the instance uuid, or a compilation VM's name).
    pub agent_id: String,
    pub metadata: BTreeMap<String, String>,
}

/// The answer of `attach_disk` under API v2: how the agent finds the disk (a device path, or
/// for the local CPI the directory it is attached at).
pub type DiskHint = Value;

/// A cloud: BOSH CPI v2's methods. Every method may fail with a [`CpiError`]; methods a CPI does
/// not support answer [`ErrorKind::NotImplemented`] (the default bodies below).
#[async_trait::async_trait]
pub trait Cpi: Send + Sync {
    async fn info(&self) -> Result<Info, CpiError>;

    async fn create_stemcell(&self, req: CreateStemcell) -> Result<Cid, CpiError>;
    async fn delete_stemcell(&self, stemcell_cid: Cid) -> Result<(), CpiError>;

    async fn create_vm(&self, req: CreateVm) -> Result<CreatedVm, CpiError>;
    /// Deleting a VM that does not exist is [`ErrorKind::VmNotFound`].
    async fn delete_vm(&self, vm_cid: Cid) -> Result<(), CpiError>;
    async fn has_vm(&self, vm_cid: Cid) -> Result<bool, CpiError>;
    async fn reboot_vm(&self, vm_cid: Cid) -> Result<(), CpiError>;
    async fn set_vm_metadata(&self, req: SetVmMetadata) -> Result<(), CpiError>;

    async fn create_disk(&self, req: CreateDisk) -> Result<Cid, CpiError>;
    async fn delete_disk(&self, disk_cid: Cid) -> Result<(), CpiError>;
    async fn has_disk(&self, disk_cid: Cid) -> Result<bool, CpiError>;
    async fn attach_disk(&self, req: DiskAttachment) -> Result<DiskHint, CpiError>;
    async fn detach_disk(&self, req: DiskAttachment) -> Result<(), CpiError>;
    async fn get_disks(&self, vm_cid: Cid) -> Result<Vec<Cid>, CpiError>;

    async fn resize_disk(&self, _req: ResizeDisk) -> Result<(), CpiError> {
        Err(CpiError::not_implemented("resize_disk"))
    }
    async fn snapshot_disk(&self, _req: SnapshotDisk) -> Result<Cid, CpiError> {
        Err(CpiError::not_implemented("snapshot_disk"))
    }
    async fn delete_snapshot(&self, _snapshot_cid: Cid) -> Result<(), CpiError> {
        Err(CpiError::not_implemented("delete_snapshot"))
    }

    /// Every VM the CPI holds, with its agent id and tags. Not a BOSH CPI method (external CPIs
    /// answer [`ErrorKind::NotImplemented`]); rosh's own CPIs answer it, so the director can
    /// find VMs a crashed run created but never recorded, and rebuild a lost state.
    async fn list_vms(&self) -> Result<Vec<VmListing>, CpiError> {
        Err(CpiError::not_implemented("list_vms"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bosh_error_types_round_trip_through_kinds() {
        for kind in [
            ErrorKind::VmNotFound,
            ErrorKind::DiskNotFound,
            ErrorKind::NotImplemented,
            ErrorKind::VmCreationFailed,
            ErrorKind::DiskNotAttached,
            ErrorKind::NoDiskSpace,
            ErrorKind::InvalidRequest,
            ErrorKind::Other,
        ] {
            assert_eq!(ErrorKind::from_bosh_type(kind.bosh_type()), kind);
        }
        assert_eq!(ErrorKind::from_bosh_type("Bosh::Clouds::NotSupported"), ErrorKind::NotImplemented);
        assert_eq!(ErrorKind::from_bosh_type("Something::Else"), ErrorKind::Other);
    }

    #[test]
    fn authorized_keys_and_primary_ip_come_from_the_request() {
        let req: CreateVm = serde_json::from_value(serde_json::json!({
            "agent_id": "a", "stemcell_cid": "s", "cloud_properties": {},
            "networks": {
                "a-net": {"type": "manual", "ip": "127.77.0.9"},
                "default": {"type": "manual", "ip": "127.77.0.2", "default": ["dns", "gateway"]}
            },
            "disk_cids": [],
            "env": {"bosh": {"authorized_keys": ["ssh-ed25519 AAAA x"]}}
        }))
        .unwrap();
        assert_eq!(req.primary_ip(), Some("127.77.0.2"));
        assert_eq!(req.authorized_keys(), vec!["ssh-ed25519 AAAA x".to_string()]);
    }
}

//! The BOSH CPI JSON envelope, and the typed mapping between it and the [`Cpi`] trait.
//!
//! This module owns the wire format an external CPI executable speaks on stdin/stdout: the
//! [`Request`] (`method`, positional `arguments`, opaque `context`, `api_version`) and the
//! [`Response`] (`result`, `error {type, message, ok_to_retry}`, `log`); the [`Call`] enum that
//! turns positional arguments into the request structs of the crate root and back, in BOSH's
//! exact argument order; the encoding of results under API v1 and v2 ([`encode_result`]) and
//! their tolerant decoding ([`decode_result`] and the `decode_*` helpers); and [`serve`], which
//! answers one request with any [`Cpi`]. It does no IO of its own: bytes and values in, bytes and
//! values out. Running an executable is [`crate::external`]'s job.
//!
//! Decisions worth knowing:
//! - Requests are decoded strictly (a wrong count or type is [`ErrorKind::InvalidRequest`]
//!   naming the method and `arguments[i]`), except where BOSH itself allows a `null`
//!   (`vm_locality`, `disk_cids`, `environment`) or an omitted trailing argument (legacy
//!   `create_disk` without `vm_locality`).
//! - Results are decoded in every shape a CPI has been seen to answer: `create_vm` as a plain
//!   cid (v1), `[cid, networks]` (v2) or `[cid, networks, {"ssh": …}]` (rosh). When the CPI
//!   reports no networks, the requested ones stand, as they do for a BOSH director under v1.
//! - Metadata values that are numbers or booleans (a YAML tag `cost_center: 1234`) are
//!   stringified rather than refused; nested values are refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{
    Cid, Cpi, CpiError, CreateDisk, CreateStemcell, CreateVm, CreatedVm, DiskAttachment, DiskHint, ErrorKind, Info,
    NetworkSettings, ResizeDisk, SetVmMetadata, SnapshotDisk, SshEndpoint,
};

/// One CPI call as it travels to the executable: `{"method", "arguments", "context",
/// "api_version"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub method: String,
    /// Positional arguments, in the order of the BOSH method's signature.
    #[serde(default)]
    pub arguments: Vec<Value>,
    /// `director_uuid`, `request_id`, `vm.stemcell.api_version` and whatever the CPI config
    /// adds. Opaque here: it is passed through, never interpreted.
    #[serde(default = "empty_object")]
    pub context: Value,
    /// The CPI API version the caller speaks; absent means v1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<u32>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// The executable's answer: `{"result", "error", "log"}`. Exactly one of `result` and `error`
/// is meaningful; `result` is `null` when `error` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default)]
    pub result: Value,
    #[serde(default)]
    pub error: Option<ResponseError>,
    /// What the CPI did, for the operator's debug log.
    #[serde(default)]
    pub log: String,
}

/// The `error` of a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseError {
    /// The BOSH error class, e.g. `Bosh::Clouds::VMNotFound` (see [`ErrorKind::bosh_type`]).
    #[serde(rename = "type")]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
    /// The same call, unchanged, may succeed if made again.
    #[serde(default)]
    pub ok_to_retry: bool,
}

impl Response {
    /// A successful answer carrying an already encoded `result`.
    pub fn success(result: Value) -> Response {
        Response { result, error: None, log: String::new() }
    }

    /// A failed answer: `result` is `null`.
    pub fn failure(error: &CpiError) -> Response {
        Response { result: Value::Null, error: Some(error.into()), log: String::new() }
    }

    /// The `result` when the call succeeded, else the error as a [`CpiError`].
    pub fn into_result(self) -> Result<Value, CpiError> {
        match self.error {
            Some(error) => Err(error.to_cpi_error()),
            None => Ok(self.result),
        }
    }
}

impl ResponseError {
    /// The typed error: its kind comes from the BOSH type, message and retry flag as sent.
    pub fn to_cpi_error(&self) -> CpiError {
        CpiError {
            kind: ErrorKind::from_bosh_type(&self.error_type),
            message: self.message.clone(),
            ok_to_retry: self.ok_to_retry,
        }
    }
}

impl From<&CpiError> for ResponseError {
    fn from(error: &CpiError) -> ResponseError {
        ResponseError {
            error_type: error.kind.bosh_type().to_string(),
            message: error.message.clone(),
            ok_to_retry: error.ok_to_retry,
        }
    }
}

/// One CPI method call with its typed arguments: the bridge between the [`Cpi`] trait and the
/// positional [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `info()`
    Info,
    /// `create_stemcell(image_path, cloud_properties)`
    CreateStemcell(CreateStemcell),
    /// `delete_stemcell(stemcell_cid)`
    DeleteStemcell(Cid),
    /// `create_vm(agent_id, stemcell_cid, cloud_properties, networks, disk_cids, environment)`
    CreateVm(CreateVm),
    /// `delete_vm(vm_cid)`
    DeleteVm(Cid),
    /// `has_vm(vm_cid)`
    HasVm(Cid),
    /// `reboot_vm(vm_cid)`
    RebootVm(Cid),
    /// `set_vm_metadata(vm_cid, metadata)`
    SetVmMetadata(SetVmMetadata),
    /// `create_disk(size, cloud_properties, vm_locality)`
    CreateDisk(CreateDisk),
    /// `delete_disk(disk_cid)`
    DeleteDisk(Cid),
    /// `has_disk(disk_cid)`
    HasDisk(Cid),
    /// `attach_disk(vm_cid, disk_cid)`
    AttachDisk(DiskAttachment),
    /// `detach_disk(vm_cid, disk_cid)`
    DetachDisk(DiskAttachment),
    /// `get_disks(vm_cid)`
    GetDisks(Cid),
    /// `resize_disk(disk_cid, new_size)`
    ResizeDisk(ResizeDisk),
    /// `snapshot_disk(disk_cid, metadata)`
    SnapshotDisk(SnapshotDisk),
    /// `delete_snapshot(snapshot_cid)`
    DeleteSnapshot(Cid),
}

/// Every method name [`Call`] knows, in the order of the BOSH documentation.
pub const METHODS: &[&str] = &[
    "info",
    "create_stemcell",
    "delete_stemcell",
    "create_vm",
    "delete_vm",
    "has_vm",
    "reboot_vm",
    "set_vm_metadata",
    "create_disk",
    "delete_disk",
    "has_disk",
    "attach_disk",
    "detach_disk",
    "get_disks",
    "resize_disk",
    "snapshot_disk",
    "delete_snapshot",
];

impl Call {
    /// The BOSH method name (`create_vm`).
    pub fn method_name(&self) -> &'static str {
        match self {
            Call::Info => "info",
            Call::CreateStemcell(_) => "create_stemcell",
            Call::DeleteStemcell(_) => "delete_stemcell",
            Call::CreateVm(_) => "create_vm",
            Call::DeleteVm(_) => "delete_vm",
            Call::HasVm(_) => "has_vm",
            Call::RebootVm(_) => "reboot_vm",
            Call::SetVmMetadata(_) => "set_vm_metadata",
            Call::CreateDisk(_) => "create_disk",
            Call::DeleteDisk(_) => "delete_disk",
            Call::HasDisk(_) => "has_disk",
            Call::AttachDisk(_) => "attach_disk",
            Call::DetachDisk(_) => "detach_disk",
            Call::GetDisks(_) => "get_disks",
            Call::ResizeDisk(_) => "resize_disk",
            Call::SnapshotDisk(_) => "snapshot_disk",
            Call::DeleteSnapshot(_) => "delete_snapshot",
        }
    }

    /// The positional arguments, in BOSH's order.
    pub fn arguments(&self) -> Vec<Value> {
        fn cid(c: &Cid) -> Value {
            Value::String(c.0.clone())
        }
        fn object_or_empty(v: &Value) -> Value {
            if v.is_null() { empty_object() } else { v.clone() }
        }
        match self {
            Call::Info => vec![],
            Call::CreateStemcell(req) => {
                vec![Value::String(req.image_path.clone()), object_or_empty(&req.cloud_properties)]
            }
            Call::CreateVm(req) => vec![
                Value::String(req.agent_id.clone()),
                cid(&req.stemcell_cid),
                object_or_empty(&req.cloud_properties),
                to_value(&req.networks),
                Value::Array(req.disk_cids.iter().map(cid).collect()),
                object_or_empty(&req.env),
            ],
            Call::SetVmMetadata(req) => vec![cid(&req.vm_cid), to_value(&req.metadata)],
            Call::CreateDisk(req) => vec![
                json!(req.size_mb),
                object_or_empty(&req.cloud_properties),
                req.vm_locality.as_ref().map_or(Value::Null, cid),
            ],
            Call::AttachDisk(req) | Call::DetachDisk(req) => vec![cid(&req.vm_cid), cid(&req.disk_cid)],
            Call::ResizeDisk(req) => vec![cid(&req.disk_cid), json!(req.new_size_mb)],
            Call::SnapshotDisk(req) => vec![cid(&req.disk_cid), to_value(&req.metadata)],
            Call::DeleteStemcell(c)
            | Call::DeleteVm(c)
            | Call::HasVm(c)
            | Call::RebootVm(c)
            | Call::DeleteDisk(c)
            | Call::HasDisk(c)
            | Call::GetDisks(c)
            | Call::DeleteSnapshot(c) => vec![cid(c)],
        }
    }

    /// The envelope for this call. `context` is passed through as given (`null` becomes `{}`,
    /// as BOSH always sends an object); `api_version` `None` leaves the field out (v1).
    pub fn to_request(&self, context: Value, api_version: Option<u32>) -> Request {
        Request {
            method: self.method_name().to_string(),
            arguments: self.arguments(),
            context: if context.is_null() { empty_object() } else { context },
            api_version,
        }
    }

    /// The typed call a request stands for. An unknown method is [`ErrorKind::NotImplemented`];
    /// a wrong argument count or type is [`ErrorKind::InvalidRequest`] naming the method and
    /// the argument.
    pub fn from_request(request: &Request) -> Result<Call, CpiError> {
        let method = request.method.as_str();
        let args = |names: &'static [&'static str], optional_tail: usize| {
            Args::new(method, &request.arguments, names, optional_tail)
        };
        let call = match method {
            "info" => {
                args(&[], 0)?;
                Call::Info
            }
            "create_stemcell" => {
                let a = args(&["image_path", "cloud_properties"], 0)?;
                Call::CreateStemcell(CreateStemcell { image_path: a.string(0)?, cloud_properties: a.object(1)? })
            }
            "delete_stemcell" => Call::DeleteStemcell(args(&["stemcell_cid"], 0)?.cid(0)?),
            "create_vm" => {
                let a =
                    args(&["agent_id", "stemcell_cid", "cloud_properties", "networks", "disk_cids", "environment"], 0)?;
                Call::CreateVm(CreateVm {
                    agent_id: a.string(0)?,
                    stemcell_cid: a.cid(1)?,
                    cloud_properties: a.object(2)?,
                    networks: a.networks(3)?,
                    disk_cids: a.cids(4)?,
                    env: a.object(5)?,
                })
            }
            "delete_vm" => Call::DeleteVm(args(&["vm_cid"], 0)?.cid(0)?),
            "has_vm" => Call::HasVm(args(&["vm_cid"], 0)?.cid(0)?),
            "reboot_vm" => Call::RebootVm(args(&["vm_cid"], 0)?.cid(0)?),
            "set_vm_metadata" => {
                let a = args(&["vm_cid", "metadata"], 0)?;
                Call::SetVmMetadata(SetVmMetadata { vm_cid: a.cid(0)?, metadata: a.metadata(1)? })
            }
            "create_disk" => {
                // Directors before CPI API v1's `vm_locality` sent two arguments.
                let a = args(&["size", "cloud_properties", "vm_locality"], 1)?;
                Call::CreateDisk(CreateDisk {
                    size_mb: a.size(0)?,
                    cloud_properties: a.object(1)?,
                    vm_locality: a.optional_cid(2)?,
                })
            }
            "delete_disk" => Call::DeleteDisk(args(&["disk_cid"], 0)?.cid(0)?),
            "has_disk" => Call::HasDisk(args(&["disk_cid"], 0)?.cid(0)?),
            "attach_disk" | "detach_disk" => {
                let a = args(&["vm_cid", "disk_cid"], 0)?;
                let attachment = DiskAttachment { vm_cid: a.cid(0)?, disk_cid: a.cid(1)? };
                if method == "attach_disk" { Call::AttachDisk(attachment) } else { Call::DetachDisk(attachment) }
            }
            "get_disks" => Call::GetDisks(args(&["vm_cid"], 0)?.cid(0)?),
            "resize_disk" => {
                let a = args(&["disk_cid", "new_size"], 0)?;
                Call::ResizeDisk(ResizeDisk { disk_cid: a.cid(0)?, new_size_mb: a.size(1)? })
            }
            "snapshot_disk" => {
                let a = args(&["disk_cid", "metadata"], 0)?;
                Call::SnapshotDisk(SnapshotDisk { disk_cid: a.cid(0)?, metadata: a.metadata(1)? })
            }
            "delete_snapshot" => Call::DeleteSnapshot(args(&["snapshot_cid"], 0)?.cid(0)?),
            other => return Err(CpiError::not_implemented(other)),
        };
        Ok(call)
    }
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // Maps of strings and plain structs always serialize; a failure here is a bug in lib.rs.
    serde_json::to_value(value).expect("CPI request types serialize to JSON")
}

/// The positional arguments of one request, with errors that name `method` and `arguments[i]`.
struct Args<'a> {
    method: &'a str,
    values: &'a [Value],
    names: &'static [&'static str],
}

impl<'a> Args<'a> {
    /// Checks the count: all of `names`, of which the last `optional_tail` may be omitted.
    fn new(
        method: &'a str,
        values: &'a [Value],
        names: &'static [&'static str],
        optional_tail: usize,
    ) -> Result<Args<'a>, CpiError> {
        let max = names.len();
        let min = max - optional_tail;
        if values.len() < min || values.len() > max {
            let expected = if min == max { format!("{max}") } else { format!("{min} to {max}") };
            return Err(invalid(format!(
                "{method}: expected {expected} argument{} ({}), got {}",
                if max == 1 { "" } else { "s" },
                names.join(", "),
                values.len()
            )));
        }
        Ok(Args { method, values, names })
    }

    fn value(&self, i: usize) -> &Value {
        self.values.get(i).unwrap_or(&Value::Null)
    }

    fn wrong(&self, i: usize, expected: &str) -> CpiError {
        self.error(i, format!("expected {expected}, got {}", json_type(self.value(i))))
    }

    fn error(&self, i: usize, what: impl std::fmt::Display) -> CpiError {
        invalid(format!("{}: arguments[{i}] ({}): {what}", self.method, self.names[i]))
    }

    fn string(&self, i: usize) -> Result<String, CpiError> {
        self.value(i).as_str().map(str::to_string).ok_or_else(|| self.wrong(i, "a string"))
    }

    fn cid(&self, i: usize) -> Result<Cid, CpiError> {
        let cid = self.value(i).as_str().ok_or_else(|| self.wrong(i, "a cid string"))?;
        if cid.is_empty() {
            return Err(self.error(i, "the cid is empty"));
        }
        Ok(Cid::from(cid))
    }

    fn optional_cid(&self, i: usize) -> Result<Option<Cid>, CpiError> {
        match self.value(i) {
            Value::Null => Ok(None),
            _ => self.cid(i).map(Some),
        }
    }

    /// An opaque hash (`cloud_properties`, `environment`); `null` is an empty one.
    fn object(&self, i: usize) -> Result<Value, CpiError> {
        match self.value(i) {
            Value::Null => Ok(empty_object()),
            v @ Value::Object(_) => Ok(v.clone()),
            _ => Err(self.wrong(i, "an object")),
        }
    }

    /// A size in MiB: a non-negative integer.
    fn size(&self, i: usize) -> Result<u64, CpiError> {
        self.value(i).as_u64().ok_or_else(|| self.wrong(i, "a non-negative integer (MiB)"))
    }

    fn cids(&self, i: usize) -> Result<Vec<Cid>, CpiError> {
        match self.value(i) {
            Value::Null => Ok(vec![]),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(j, item)| match item.as_str() {
                    Some(s) => Ok(Cid::from(s)),
                    None => Err(self.error(i, format!("item {j}: expected a cid string, got {}", json_type(item)))),
                })
                .collect(),
            _ => Err(self.wrong(i, "an array of cids")),
        }
    }

    fn networks(&self, i: usize) -> Result<BTreeMap<String, NetworkSettings>, CpiError> {
        decode_networks(self.value(i)).map_err(|what| self.error(i, what))
    }

    fn metadata(&self, i: usize) -> Result<BTreeMap<String, String>, CpiError> {
        let Value::Object(map) = self.value(i) else {
            return Err(self.wrong(i, "an object of tags"));
        };
        map.iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => String::new(),
                    other => {
                        return Err(self.error(i, format!("tag `{key}`: expected a string, got {}", json_type(other))));
                    }
                };
                Ok((key.clone(), text))
            })
            .collect()
    }
}

fn invalid(message: String) -> CpiError {
    CpiError::new(ErrorKind::InvalidRequest, message)
}

/// `a string`, `an object`…, for error messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Network name → settings. Keys set to `null` are dropped first, since directors send
/// `"netmask": null` for dynamic networks where rosh's types want the key absent.
fn decode_networks(value: &Value) -> Result<BTreeMap<String, NetworkSettings>, String> {
    let Value::Object(map) = value else {
        return Err(format!("expected an object of networks, got {}", json_type(value)));
    };
    map.iter()
        .map(|(name, settings)| {
            let Value::Object(fields) = settings else {
                return Err(format!("network `{name}`: expected an object, got {}", json_type(settings)));
            };
            let fields: Map<String, Value> =
                fields.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
            let settings =
                serde_json::from_value(Value::Object(fields)).map_err(|e| format!("network `{name}`: {e}"))?;
            Ok((name.clone(), settings))
        })
        .collect()
}

/// What a [`Cpi`] method answered, before it is encoded for a particular API version.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `info`
    Info(Info),
    /// `create_stemcell`, `create_disk`, `snapshot_disk`
    Cid(Cid),
    /// `create_vm`
    Vm(CreatedVm),
    /// `has_vm`, `has_disk`
    Exists(bool),
    /// `get_disks`
    Disks(Vec<Cid>),
    /// `attach_disk`
    DiskHint(DiskHint),
    /// Every method with no result.
    Done,
}

/// The `result` value for an outcome under `api_version` (`None` is v1).
///
/// Under v2 `create_vm` answers `[vm_cid, networks]`, plus `{"ssh": …}` as a third element when
/// the VM has an SSH endpoint (rosh's extension; BOSH reads the first two), and `attach_disk`
/// answers the disk hint. Under v1 `create_vm` answers the cid alone and `attach_disk` `null`.
pub fn encode_result(outcome: &Outcome, api_version: Option<u32>) -> Value {
    let v2 = api_version.is_some_and(|v| v >= 2);
    match outcome {
        Outcome::Info(info) => to_value(info),
        Outcome::Cid(cid) => Value::String(cid.0.clone()),
        Outcome::Vm(vm) if v2 => {
            let mut result = vec![Value::String(vm.vm_cid.0.clone()), to_value(&vm.networks)];
            if let Some(ssh) = &vm.ssh {
                result.push(json!({ "ssh": ssh }));
            }
            Value::Array(result)
        }
        Outcome::Vm(vm) => Value::String(vm.vm_cid.0.clone()),
        Outcome::Exists(exists) => Value::Bool(*exists),
        Outcome::Disks(disks) => Value::Array(disks.iter().map(|d| Value::String(d.0.clone())).collect()),
        Outcome::DiskHint(hint) if v2 => hint.clone(),
        Outcome::DiskHint(_) | Outcome::Done => Value::Null,
    }
}

/// The typed outcome of `call` from the `result` a CPI answered, accepting the v1 and v2
/// shapes alike. A result of the wrong shape is [`ErrorKind::Other`]: the CPI, not the
/// request, is at fault.
pub fn decode_result(call: &Call, result: Value) -> Result<Outcome, CpiError> {
    let method = call.method_name();
    Ok(match call {
        Call::Info => Outcome::Info(decode_info(result)?),
        Call::CreateStemcell(_) | Call::CreateDisk(_) | Call::SnapshotDisk(_) => {
            Outcome::Cid(decode_cid(method, &result)?)
        }
        Call::CreateVm(req) => Outcome::Vm(decode_created_vm(&result, &req.networks)?),
        Call::HasVm(_) | Call::HasDisk(_) => Outcome::Exists(decode_bool(method, &result)?),
        Call::GetDisks(_) => Outcome::Disks(decode_cids(method, &result)?),
        Call::AttachDisk(_) => Outcome::DiskHint(result),
        // BOSH ignores the result of methods that return nothing; so does rosh.
        Call::DeleteStemcell(_)
        | Call::DeleteVm(_)
        | Call::RebootVm(_)
        | Call::SetVmMetadata(_)
        | Call::DeleteDisk(_)
        | Call::DetachDisk(_)
        | Call::ResizeDisk(_)
        | Call::DeleteSnapshot(_) => Outcome::Done,
    })
}

fn bad_result(method: &str, what: impl std::fmt::Display) -> CpiError {
    CpiError::other(format!("CPI answered {method} with an unexpected result: {what}"))
}

/// `info`'s result: `{"stemcell_formats": […], "api_version": n}` (`api_version` defaults to 1).
pub fn decode_info(result: Value) -> Result<Info, CpiError> {
    serde_json::from_value(result).map_err(|e| bad_result("info", e))
}

/// A cid result (`create_stemcell`, `create_disk`, `snapshot_disk`).
pub fn decode_cid(method: &str, result: &Value) -> Result<Cid, CpiError> {
    match result.as_str() {
        Some(cid) if !cid.is_empty() => Ok(Cid::from(cid)),
        _ => Err(bad_result(method, format!("expected a cid string, got {}", json_type(result)))),
    }
}

/// A boolean result (`has_vm`, `has_disk`).
pub fn decode_bool(method: &str, result: &Value) -> Result<bool, CpiError> {
    result.as_bool().ok_or_else(|| bad_result(method, format!("expected a boolean, got {}", json_type(result))))
}

/// A list of cids (`get_disks`); `null` is an empty list.
pub fn decode_cids(method: &str, result: &Value) -> Result<Vec<Cid>, CpiError> {
    match result {
        Value::Null => Ok(vec![]),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(Cid::from)
                    .ok_or_else(|| bad_result(method, format!("expected cid strings, got {}", json_type(item))))
            })
            .collect(),
        other => Err(bad_result(method, format!("expected an array of cids, got {}", json_type(other)))),
    }
}

/// `create_vm`'s result in any of its shapes: `"cid"` (v1), `["cid", networks]` (v2),
/// `["cid", networks, {"ssh": …}]` (rosh). Missing, `null` or empty networks mean the
/// `requested` ones stand.
pub fn decode_created_vm(result: &Value, requested: &BTreeMap<String, NetworkSettings>) -> Result<CreatedVm, CpiError> {
    const METHOD: &str = "create_vm";
    let (cid, networks, extra) = match result {
        Value::String(_) => (result, &Value::Null, &Value::Null),
        Value::Array(items) if (1..=3).contains(&items.len()) => {
            (&items[0], items.get(1).unwrap_or(&Value::Null), items.get(2).unwrap_or(&Value::Null))
        }
        other => {
            return Err(bad_result(METHOD, format!("expected a cid or [cid, networks], got {}", json_type(other))));
        }
    };
    let vm_cid = decode_cid(METHOD, cid)?;
    let networks = match networks {
        Value::Null => requested.clone(),
        Value::Object(map) if map.is_empty() => requested.clone(),
        other => decode_networks(other).map_err(|e| bad_result(METHOD, e))?,
    };
    let ssh = match extra {
        Value::Null => None,
        Value::Object(map) => match map.get("ssh") {
            None | Some(Value::Null) => None,
            Some(ssh) => Some(
                serde_json::from_value::<SshEndpoint>(ssh.clone())
                    .map_err(|e| bad_result(METHOD, format!("ssh: {e}")))?,
            ),
        },
        other => {
            return Err(bad_result(METHOD, format!("third element: expected an object, got {}", json_type(other))));
        }
    };
    Ok(CreatedVm { vm_cid, networks, ssh })
}

/// Makes `call` on `cpi`, the typed way.
pub async fn dispatch(cpi: &dyn Cpi, call: Call) -> Result<Outcome, CpiError> {
    Ok(match call {
        Call::Info => Outcome::Info(cpi.info().await?),
        Call::CreateStemcell(req) => Outcome::Cid(cpi.create_stemcell(req).await?),
        Call::DeleteStemcell(cid) => {
            cpi.delete_stemcell(cid).await?;
            Outcome::Done
        }
        Call::CreateVm(req) => Outcome::Vm(cpi.create_vm(req).await?),
        Call::DeleteVm(cid) => {
            cpi.delete_vm(cid).await?;
            Outcome::Done
        }
        Call::HasVm(cid) => Outcome::Exists(cpi.has_vm(cid).await?),
        Call::RebootVm(cid) => {
            cpi.reboot_vm(cid).await?;
            Outcome::Done
        }
        Call::SetVmMetadata(req) => {
            cpi.set_vm_metadata(req).await?;
            Outcome::Done
        }
        Call::CreateDisk(req) => Outcome::Cid(cpi.create_disk(req).await?),
        Call::DeleteDisk(cid) => {
            cpi.delete_disk(cid).await?;
            Outcome::Done
        }
        Call::HasDisk(cid) => Outcome::Exists(cpi.has_disk(cid).await?),
        Call::AttachDisk(req) => Outcome::DiskHint(cpi.attach_disk(req).await?),
        Call::DetachDisk(req) => {
            cpi.detach_disk(req).await?;
            Outcome::Done
        }
        Call::GetDisks(cid) => Outcome::Disks(cpi.get_disks(cid).await?),
        Call::ResizeDisk(req) => {
            cpi.resize_disk(req).await?;
            Outcome::Done
        }
        Call::SnapshotDisk(req) => Outcome::Cid(cpi.snapshot_disk(req).await?),
        Call::DeleteSnapshot(cid) => {
            cpi.delete_snapshot(cid).await?;
            Outcome::Done
        }
    })
}

/// Answers one request read from `input` with `cpi`: the bytes of one JSON [`Response`] on one
/// line (newline-terminated). Never fails: undecodable input is an `InvalidCall` error, an
/// unknown method `Bosh::Clouds::NotImplemented`, a failed call its own error type.
pub async fn serve(cpi: &dyn Cpi, input: &[u8]) -> Vec<u8> {
    let response = match decode_request(input) {
        Err(error) => Response::failure(&error),
        Ok(request) => match Call::from_request(&request) {
            Err(error) => Response::failure(&error),
            Ok(call) => match dispatch(cpi, call).await {
                Ok(outcome) => Response::success(encode_result(&outcome, request.api_version)),
                Err(error) => Response::failure(&error),
            },
        },
    };
    let mut out = serde_json::to_vec(&response).expect("a Response always serializes");
    out.push(b'\n');
    out
}

/// Parses the request bytes, with an error a person can act on.
pub fn decode_request(input: &[u8]) -> Result<Request, CpiError> {
    if input.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("no CPI request: the input is empty (expected one JSON object)".to_string()));
    }
    serde_json::from_slice(input).map_err(|e| invalid(format!("not a valid CPI request: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str) -> NetworkSettings {
        NetworkSettings {
            kind: "manual".into(),
            ip: Some(ip.into()),
            netmask: Some("255.255.255.0".into()),
            gateway: Some("10.0.0.1".into()),
            dns: vec!["8.8.8.8".into()],
            default: vec!["dns".into(), "gateway".into()],
            cloud_properties: json!({"subnet": "s-1"}),
        }
    }

    fn tags() -> BTreeMap<String, String> {
        [("deployment", "cf"), ("index", "0")].into_iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    /// One call of every method, with arguments that differ from their defaults.
    fn every_call() -> Vec<Call> {
        vec![
            Call::Info,
            Call::CreateStemcell(CreateStemcell {
                image_path: "/tmp/stemcell/image".into(),
                cloud_properties: json!({"name": "bosh-ubuntu", "version": "1.430"}),
            }),
            Call::DeleteStemcell("sc-1".into()),
            Call::CreateVm(CreateVm {
                agent_id: "agent-1".into(),
                stemcell_cid: "sc-1".into(),
                cloud_properties: json!({"instance_type": "m5.large"}),
                networks: [("default".to_string(), net("10.0.0.5"))].into(),
                disk_cids: vec!["disk-1".into()],
                env: json!({"bosh": {"group": "d-cf-router"}}),
            }),
            Call::DeleteVm("vm-1".into()),
            Call::HasVm("vm-1".into()),
            Call::RebootVm("vm-1".into()),
            Call::SetVmMetadata(SetVmMetadata { vm_cid: "vm-1".into(), metadata: tags() }),
            Call::CreateDisk(CreateDisk {
                size_mb: 10240,
                cloud_properties: json!({"type": "gp3"}),
                vm_locality: Some("vm-1".into()),
            }),
            Call::CreateDisk(CreateDisk { size_mb: 1, cloud_properties: json!({}), vm_locality: None }),
            Call::DeleteDisk("disk-1".into()),
            Call::HasDisk("disk-1".into()),
            Call::AttachDisk(DiskAttachment { vm_cid: "vm-1".into(), disk_cid: "disk-1".into() }),
            Call::DetachDisk(DiskAttachment { vm_cid: "vm-1".into(), disk_cid: "disk-1".into() }),
            Call::GetDisks("vm-1".into()),
            Call::ResizeDisk(ResizeDisk { disk_cid: "disk-1".into(), new_size_mb: 20480 }),
            Call::SnapshotDisk(SnapshotDisk { disk_cid: "disk-1".into(), metadata: tags() }),
            Call::DeleteSnapshot("snap-1".into()),
        ]
    }

    #[test]
    fn every_method_round_trips_through_the_envelope() {
        let mut seen = Vec::new();
        for call in every_call() {
            let request = call.to_request(json!({"director_uuid": "d-1"}), Some(2));
            // Through bytes too, so the serde names are exercised.
            let bytes = serde_json::to_vec(&request).unwrap();
            let parsed: Request = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(parsed, request);
            assert_eq!(parsed.method, call.method_name());
            assert_eq!(parsed.api_version, Some(2));
            assert_eq!(parsed.context["director_uuid"], "d-1");
            assert_eq!(Call::from_request(&parsed).unwrap(), call, "{}", call.method_name());
            seen.push(call.method_name());
        }
        seen.dedup();
        assert_eq!(seen, METHODS);
    }

    #[test]
    fn arguments_are_in_boshs_positional_order() {
        let calls = every_call();
        let args = |method: &str| {
            calls.iter().find(|c| c.method_name() == method).unwrap().to_request(Value::Null, None).arguments
        };
        assert_eq!(
            args("create_stemcell"),
            vec![json!("/tmp/stemcell/image"), json!({"name": "bosh-ubuntu", "version": "1.430"})]
        );
        let create_vm = args("create_vm");
        assert_eq!(create_vm[0], "agent-1");
        assert_eq!(create_vm[1], "sc-1");
        assert_eq!(create_vm[2], json!({"instance_type": "m5.large"}));
        assert_eq!(create_vm[3]["default"]["ip"], "10.0.0.5");
        assert_eq!(create_vm[3]["default"]["type"], "manual");
        assert_eq!(create_vm[4], json!(["disk-1"]));
        assert_eq!(create_vm[5], json!({"bosh": {"group": "d-cf-router"}}));
        assert_eq!(args("create_disk"), vec![json!(10240), json!({"type": "gp3"}), json!("vm-1")]);
        assert_eq!(args("attach_disk"), vec![json!("vm-1"), json!("disk-1")]);
        assert_eq!(args("detach_disk"), vec![json!("vm-1"), json!("disk-1")]);
        assert_eq!(args("resize_disk"), vec![json!("disk-1"), json!(20480)]);
        assert_eq!(args("set_vm_metadata"), vec![json!("vm-1"), json!({"deployment": "cf", "index": "0"})]);
        assert_eq!(args("info"), Vec::<Value>::new());
    }

    #[test]
    fn v1_requests_leave_api_version_out_and_default_the_context() {
        let request = Call::Info.to_request(Value::Null, None);
        let text = serde_json::to_string(&request).unwrap();
        assert!(!text.contains("api_version"), "{text}");
        assert_eq!(request.context, json!({}));
    }

    #[test]
    fn create_disk_without_locality_and_null_locality_both_decode() {
        for arguments in [vec![json!(512), json!({})], vec![json!(512), json!({}), Value::Null]] {
            let request = Request { method: "create_disk".into(), arguments, context: json!({}), api_version: None };
            assert_eq!(
                Call::from_request(&request).unwrap(),
                Call::CreateDisk(CreateDisk { size_mb: 512, cloud_properties: json!({}), vm_locality: None })
            );
        }
    }

    fn request(method: &str, arguments: Value) -> Request {
        serde_json::from_value(json!({"method": method, "arguments": arguments})).unwrap()
    }

    fn invalid_message(method: &str, arguments: Value) -> String {
        let err = Call::from_request(&request(method, arguments)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
        err.message
    }

    #[test]
    fn wrong_argument_count_names_the_method_and_the_expected_arguments() {
        let msg = invalid_message("attach_disk", json!(["vm-1"]));
        assert!(msg.starts_with("attach_disk: expected 2 arguments (vm_cid, disk_cid), got 1"), "{msg}");
        let msg = invalid_message("info", json!([1]));
        assert!(msg.starts_with("info: expected 0 arguments"), "{msg}");
        let msg = invalid_message("create_disk", json!([1]));
        assert!(msg.contains("expected 2 to 3 arguments"), "{msg}");
    }

    #[test]
    fn wrong_argument_type_names_the_index_and_the_argument() {
        let msg = invalid_message("create_disk", json!(["10G", {}, null]));
        assert_eq!(msg, "create_disk: arguments[0] (size): expected a non-negative integer (MiB), got a string");
        let msg = invalid_message("create_vm", json!(["a", "sc", {}, [], [], {}]));
        assert_eq!(msg, "create_vm: arguments[3] (networks): expected an object of networks, got an array");
        let msg = invalid_message("create_vm", json!(["a", "sc", {}, {"n": {"type": 7}}, [], {}]));
        assert!(msg.starts_with("create_vm: arguments[3] (networks): network `n`:"), "{msg}");
        let msg = invalid_message("create_vm", json!(["a", "sc", {}, {}, [1], {}]));
        assert!(msg.starts_with("create_vm: arguments[4] (disk_cids): item 0"), "{msg}");
        let msg = invalid_message("delete_vm", json!([42]));
        assert_eq!(msg, "delete_vm: arguments[0] (vm_cid): expected a cid string, got a number");
        let msg = invalid_message("set_vm_metadata", json!(["vm", {"nested": {"a": 1}}]));
        assert!(msg.contains("arguments[1] (metadata): tag `nested`"), "{msg}");
        let msg = invalid_message("resize_disk", json!(["d", -1]));
        assert!(msg.starts_with("resize_disk: arguments[1] (new_size)"), "{msg}");
    }

    #[test]
    fn unknown_methods_are_not_implemented() {
        let err = Call::from_request(&request("calculate_vm_cloud_properties", json!([{}]))).unwrap_err();
        assert_eq!(err.kind, ErrorKind::NotImplemented);
        assert!(err.message.contains("calculate_vm_cloud_properties"));
    }

    #[test]
    fn director_quirks_are_accepted() {
        // Dynamic networks arrive with null keys; tags may be numbers; env may be null.
        let call = Call::from_request(&request(
            "create_vm",
            json!(["a", "sc", {}, {"d": {"type": "dynamic", "netmask": null, "dns": null}}, null, null]),
        ))
        .unwrap();
        let Call::CreateVm(req) = call else { panic!("{call:?}") };
        assert_eq!(req.networks["d"].kind, "dynamic");
        assert_eq!(req.networks["d"].netmask, None);
        assert!(req.disk_cids.is_empty());
        assert_eq!(req.env, json!({}));

        let call = Call::from_request(&request("snapshot_disk", json!(["d", {"index": 0, "paused": true}]))).unwrap();
        let Call::SnapshotDisk(req) = call else { panic!("{call:?}") };
        assert_eq!(req.metadata["index"], "0");
        assert_eq!(req.metadata["paused"], "true");
    }

    fn created(ssh: Option<SshEndpoint>) -> CreatedVm {
        CreatedVm { vm_cid: "vm-9".into(), networks: [("default".to_string(), net("10.0.0.9"))].into(), ssh }
    }

    fn endpoint() -> SshEndpoint {
        SshEndpoint {
            host: "127.77.0.9".into(),
            port: 2222,
            user: "vcap".into(),
            host_public_key: "ssh-ed25519 AAAA host".into(),
            private_key_path: None,
            agent_command: "rosh-agent".into(),
            root: "/var/vcap".into(),
            install_agent: false,
        }
    }

    #[test]
    fn create_vm_result_depends_on_the_api_version() {
        let vm = Outcome::Vm(created(None));
        assert_eq!(encode_result(&vm, None), json!("vm-9"));
        assert_eq!(encode_result(&vm, Some(1)), json!("vm-9"));
        let v2 = encode_result(&vm, Some(2));
        assert_eq!(v2[0], "vm-9");
        assert_eq!(v2[1]["default"]["ip"], "10.0.0.9");
        assert_eq!(v2.as_array().unwrap().len(), 2);

        let with_ssh = encode_result(&Outcome::Vm(created(Some(endpoint()))), Some(2));
        assert_eq!(with_ssh.as_array().unwrap().len(), 3);
        assert_eq!(with_ssh[2]["ssh"]["port"], 2222);
    }

    #[test]
    fn attach_disk_answers_the_hint_only_under_v2() {
        let hint = Outcome::DiskHint(json!("/dev/sdf"));
        assert_eq!(encode_result(&hint, Some(2)), json!("/dev/sdf"));
        assert_eq!(encode_result(&hint, Some(1)), Value::Null);
        assert_eq!(encode_result(&hint, None), Value::Null);
    }

    #[test]
    fn every_create_vm_result_shape_decodes() {
        let requested: BTreeMap<_, _> = [("default".to_string(), net("10.0.0.9"))].into();
        let Call::CreateVm(mut req) = every_call().remove(3) else { unreachable!() };
        req.networks = requested.clone();
        let call = Call::CreateVm(req);

        for (result, expected) in [
            (json!("vm-9"), created(None)),
            (json!(["vm-9"]), created(None)),
            (json!(["vm-9", null]), created(None)),
            (json!(["vm-9", {}]), created(None)),
            (encode_result(&Outcome::Vm(created(None)), Some(2)), created(None)),
            (encode_result(&Outcome::Vm(created(Some(endpoint()))), Some(2)), created(Some(endpoint()))),
        ] {
            assert_eq!(decode_result(&call, result.clone()).unwrap(), Outcome::Vm(expected), "{result}");
        }

        // Networks the CPI assigned win over the requested ones.
        let assigned = json!(["vm-9", {"default": {"type": "dynamic", "ip": "10.0.0.77"}}]);
        let Outcome::Vm(vm) = decode_result(&call, assigned).unwrap() else { unreachable!() };
        assert_eq!(vm.networks["default"].ip.as_deref(), Some("10.0.0.77"));

        for bad in [json!(null), json!(42), json!([]), json!([1, {}]), json!(["vm", {}, "x"])] {
            let err = decode_result(&call, bad.clone()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Other, "{bad}");
            assert!(err.message.contains("create_vm"), "{err}");
        }
    }

    #[test]
    fn scalar_results_decode_and_reject_wrong_shapes() {
        assert_eq!(decode_result(&Call::HasVm("v".into()), json!(true)).unwrap(), Outcome::Exists(true));
        assert!(decode_result(&Call::HasVm("v".into()), json!("true")).is_err());
        assert_eq!(
            decode_result(&Call::GetDisks("v".into()), json!(["d1", "d2"])).unwrap(),
            Outcome::Disks(vec!["d1".into(), "d2".into()])
        );
        assert_eq!(decode_result(&Call::GetDisks("v".into()), Value::Null).unwrap(), Outcome::Disks(vec![]));
        assert_eq!(decode_result(&Call::DeleteSnapshot("s".into()), json!("ignored")).unwrap(), Outcome::Done);
        assert_eq!(
            decode_result(&Call::Info, json!({"stemcell_formats": ["warden-tar"]})).unwrap(),
            Outcome::Info(Info { stemcell_formats: vec!["warden-tar".into()], api_version: 1 })
        );
        let err = decode_result(&every_call()[1], json!(null)).unwrap_err();
        assert_eq!(
            err.message,
            "CPI answered create_stemcell with an unexpected result: expected a cid string, got null"
        );
    }

    #[test]
    fn response_errors_map_to_kinds_and_back() {
        let response: Response = serde_json::from_value(json!({
            "result": null,
            "error": {"type": "Bosh::Clouds::VMNotFound", "message": "no i-1", "ok_to_retry": false},
            "log": "looked"
        }))
        .unwrap();
        let err = response.into_result().unwrap_err();
        assert_eq!(err, CpiError::new(ErrorKind::VmNotFound, "no i-1"));

        let wire = serde_json::to_value(Response::failure(&CpiError::retryable(ErrorKind::Other, "busy"))).unwrap();
        assert_eq!(
            wire,
            json!({"result": null, "error": {"type": "Bosh::Clouds::CloudError", "message": "busy", "ok_to_retry": true}, "log": ""})
        );
    }

    #[test]
    fn empty_and_malformed_input_say_what_is_wrong() {
        let err = decode_request(b"  \n").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("empty"), "{err}");
        let err = decode_request(b"{\"arguments\": []}").unwrap_err();
        assert!(err.message.contains("missing field `method`"), "{err}");
    }
}

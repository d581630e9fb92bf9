//! The cloud config: [`RawCloudConfig`] mirrors the YAML, [`CloudConfig`] is the validated model.
//!
//! Owns azs, networks (manual with subnets; dynamic with optional subnets; vip), vm_types,
//! vm_extensions, disk_types and compilation, and every rule inside the cloud config itself:
//! names defined once per list, a subnet's azs and the compilation az, network and vm_type
//! defined, a manual subnet's gateway, reserved and static addresses inside its range and static
//! addresses clear of the reserved ones and the gateway. Values that are still `((variables))`
//! (bosh-deployment's cloud configs are full of them) skip the checks that need them.

use serde::Deserialize;

use super::deployment::{RawVmResources, VmResources, read_vm_resources};
use super::ip::IpSpan;
use super::param::Param;
use super::problem::{Document, Item, Loaded, ModelError, Outcome, Problem, ProblemKind};
use super::raw::{self, Flag, Int, Names, Raw, Reader, map_shaped};
use crate::manifest::yaml::{Mapping, Value, YamlPath};

// ---------------------------------------------------------------------------------------------
// raw

#[derive(Debug, Default, Deserialize)]
pub struct RawCloudConfig {
    pub azs: Option<Raw<Vec<Raw<RawAz>>>>,
    pub networks: Option<Raw<Vec<Raw<RawNetwork>>>>,
    pub vm_types: Option<Raw<Vec<Raw<RawVmType>>>>,
    pub vm_extensions: Option<Raw<Vec<Raw<RawVmType>>>>,
    pub disk_types: Option<Raw<Vec<Raw<RawDiskType>>>>,
    pub compilation: Option<Raw<RawCompilation>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawAz {
    pub name: Option<Raw<String>>,
    pub cloud_properties: Option<Raw<Mapping>>,
    pub cpi: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawNetwork {
    pub name: Option<Raw<String>>,
    #[serde(rename = "type")]
    pub kind: Option<Raw<String>>,
    pub subnets: Option<Raw<Vec<Raw<RawSubnet>>>>,
    /// Dynamic networks without subnets.
    pub dns: Option<Raw<Vec<Raw<String>>>>,
    pub cloud_properties: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawSubnet {
    pub range: Option<Raw<String>>,
    pub gateway: Option<Raw<String>>,
    pub dns: Option<Raw<Vec<Raw<String>>>>,
    pub reserved: Option<Raw<Vec<Raw<String>>>>,
    #[serde(rename = "static")]
    pub static_ips: Option<Raw<Vec<Raw<String>>>>,
    pub az: Option<Raw<String>>,
    pub azs: Option<Raw<Vec<Raw<String>>>>,
    pub cloud_properties: Option<Raw<Mapping>>,
    /// Prefix delegation: the size of the prefix handed to each VM.
    pub prefix: Option<Raw<Int>>,
    /// Managed networks name their subnets.
    pub name: Option<Raw<String>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

/// Also the shape of `vm_extensions` entries.
#[derive(Debug, Default, Deserialize)]
pub struct RawVmType {
    pub name: Option<Raw<String>>,
    pub cloud_properties: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawDiskType {
    pub name: Option<Raw<String>>,
    pub disk_size: Option<Raw<Int>>,
    pub cloud_properties: Option<Raw<Mapping>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize)]
pub struct RawCompilation {
    pub workers: Option<Raw<Int>>,
    pub reuse_compilation_vms: Option<Raw<Flag>>,
    pub az: Option<Raw<String>>,
    pub vm_type: Option<Raw<String>>,
    pub vm_resources: Option<Raw<RawVmResources>>,
    pub cloud_properties: Option<Raw<Mapping>>,
    pub network: Option<Raw<String>>,
    pub env: Option<Raw<Mapping>>,
    pub orphan_workers: Option<Raw<Flag>>,
    #[serde(flatten)]
    pub unknown: Mapping,
}

map_shaped!(RawCloudConfig, RawAz, RawNetwork, RawSubnet, RawVmType, RawDiskType, RawCompilation);

impl RawCloudConfig {
    /// Reads a parsed cloud config into its raw form; fails only when it is not a map.
    pub fn from_value(value: &Value) -> Result<Self, Problem> {
        raw::document(value, &Document::CloudConfig)
    }
}

// ---------------------------------------------------------------------------------------------
// model

/// A cloud config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CloudConfig {
    pub azs: Vec<Az>,
    pub networks: Vec<Network>,
    pub vm_types: Vec<VmType>,
    pub vm_extensions: Vec<VmExtension>,
    pub disk_types: Vec<DiskType>,
    pub compilation: Option<Compilation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Az {
    pub path: YamlPath,
    pub name: String,
    pub cloud_properties: Param<Mapping>,
    /// The CPI (from the CPI config) that serves this az.
    pub cpi: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetworkType {
    /// The director assigns IPs from the subnets (the default type).
    Manual,
    /// The IaaS assigns IPs.
    Dynamic,
    /// Addresses not bound to a NIC (elastic IPs).
    Vip,
}

impl NetworkType {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Manual => "manual",
            NetworkType::Dynamic => "dynamic",
            NetworkType::Vip => "vip",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub path: YamlPath,
    pub name: String,
    pub kind: Param<NetworkType>,
    /// An unresolved `subnets:` is kept as a variable: nothing about it can be checked.
    pub subnets: Param<Vec<Subnet>>,
    /// Network-level `dns` (dynamic networks without subnets).
    pub dns: Option<Param<Vec<Param<String>>>>,
    /// Network-level `cloud_properties` (dynamic and vip networks).
    pub cloud_properties: Param<Mapping>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subnet {
    pub path: YamlPath,
    /// A CIDR block.
    pub range: Option<Param<String>>,
    pub gateway: Option<Param<String>>,
    pub dns: Option<Param<Vec<Param<String>>>>,
    /// Addresses and ranges the director never assigns.
    pub reserved: Option<Param<Vec<Param<String>>>>,
    /// Addresses and ranges instances may request as `static_ips` (`static:` in YAML).
    pub static_ips: Option<Param<Vec<Param<String>>>>,
    /// `az: z1` and `azs: [z1, z2]` both land here.
    pub azs: Option<Param<Vec<Param<String>>>>,
    pub cloud_properties: Param<Mapping>,
    pub prefix: Option<Param<u64>>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmType {
    pub path: YamlPath,
    pub name: String,
    pub cloud_properties: Param<Mapping>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VmExtension {
    pub path: YamlPath,
    pub name: String,
    pub cloud_properties: Param<Mapping>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskType {
    pub path: YamlPath,
    pub name: String,
    /// Size in MB.
    pub disk_size: Param<u64>,
    pub cloud_properties: Param<Mapping>,
}

/// Where and on what packages are compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Compilation {
    pub path: YamlPath,
    pub workers: Param<u64>,
    pub reuse_compilation_vms: Option<Param<bool>>,
    pub az: Option<Param<String>>,
    pub vm_type: Option<Param<String>>,
    pub vm_resources: Option<VmResources>,
    pub cloud_properties: Option<Param<Mapping>>,
    pub network: Param<String>,
    pub env: Param<Mapping>,
    pub orphan_workers: Option<Param<bool>>,
}

impl CloudConfig {
    /// Reads a parsed cloud config; any problem fails the read.
    pub fn from_value(value: &Value) -> Result<Loaded<CloudConfig>, ModelError> {
        Self::read(value).into_result()
    }

    /// Best-effort read: the model, every problem and every warning.
    pub fn read(value: &Value) -> Outcome<CloudConfig> {
        match RawCloudConfig::from_value(value) {
            Ok(raw) => Self::from_raw(raw),
            Err(problem) => {
                let mut r = Reader::new(Document::CloudConfig);
                r.push(problem);
                r.finish(CloudConfig::default())
            }
        }
    }

    /// Builds the model from its raw form.
    pub fn from_raw(raw: RawCloudConfig) -> Outcome<CloudConfig> {
        let mut r = Reader::new(Document::CloudConfig);
        let root = YamlPath::root();
        r.unknown_keys(&raw.unknown, &root);

        let mut names = Names::new();
        let mut azs = Vec::new();
        for (path, raw) in r.entries(raw.azs, &root.key("azs")) {
            r.unknown_keys(&raw.unknown, &path);
            let Some(name) = r.name(raw.name, &path, "name") else { continue };
            let cloud_properties = r.map(raw.cloud_properties, path.key("cloud_properties"));
            let cpi = r.string(raw.cpi, path.key("cpi"));
            if names.add(&mut r, Item::Az, &name, &path) {
                azs.push(Az { path, name, cloud_properties, cpi });
            }
        }

        let mut names = Names::new();
        let mut networks = Vec::new();
        for (path, raw) in r.entries(raw.networks, &root.key("networks")) {
            if let Some(network) = read_network(&mut r, raw, &path, &azs)
                && names.add(&mut r, Item::Network, &network.name, &path)
            {
                networks.push(network);
            }
        }

        let mut names = Names::new();
        let mut vm_types = Vec::new();
        for (path, raw) in r.entries(raw.vm_types, &root.key("vm_types")) {
            r.unknown_keys(&raw.unknown, &path);
            let Some(name) = r.name(raw.name, &path, "name") else { continue };
            let cloud_properties = r.map(raw.cloud_properties, path.key("cloud_properties"));
            if names.add(&mut r, Item::VmType, &name, &path) {
                vm_types.push(VmType { path, name, cloud_properties });
            }
        }

        let mut names = Names::new();
        let mut vm_extensions = Vec::new();
        for (path, raw) in r.entries(raw.vm_extensions, &root.key("vm_extensions")) {
            r.unknown_keys(&raw.unknown, &path);
            let Some(name) = r.name(raw.name, &path, "name") else { continue };
            let cloud_properties = r.map(raw.cloud_properties, path.key("cloud_properties"));
            if names.add(&mut r, Item::VmExtension, &name, &path) {
                vm_extensions.push(VmExtension { path, name, cloud_properties });
            }
        }

        let mut names = Names::new();
        let mut disk_types = Vec::new();
        for (path, raw) in r.entries(raw.disk_types, &root.key("disk_types")) {
            r.unknown_keys(&raw.unknown, &path);
            let Some(name) = r.name(raw.name, &path, "name") else { continue };
            let disk_size = r.required(raw.disk_size, &path, "disk_size").map(|p| p.map(|Int(n)| n));
            let cloud_properties = r.map(raw.cloud_properties, path.key("cloud_properties"));
            if names.add(&mut r, Item::DiskType, &name, &path) {
                disk_types.push(DiskType {
                    path,
                    name,
                    disk_size: disk_size.unwrap_or_else(Param::unknown),
                    cloud_properties,
                });
            }
        }

        let mut config = CloudConfig { azs, networks, vm_types, vm_extensions, disk_types, compilation: None };
        config.compilation = read_compilation(&mut r, raw.compilation, &config);
        r.finish(config)
    }

    pub fn az(&self, name: &str) -> Option<&Az> {
        self.azs.iter().find(|a| a.name == name)
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }

    pub fn vm_type(&self, name: &str) -> Option<&VmType> {
        self.vm_types.iter().find(|v| v.name == name)
    }

    pub fn vm_extension(&self, name: &str) -> Option<&VmExtension> {
        self.vm_extensions.iter().find(|v| v.name == name)
    }

    pub fn disk_type(&self, name: &str) -> Option<&DiskType> {
        self.disk_types.iter().find(|d| d.name == name)
    }
}

/// Reports each literal az in `azs` that the cloud config does not define.
fn check_azs(r: &mut Reader, azs: &Option<Param<Vec<Param<String>>>>, at: &YamlPath, defined: &[Az], single: bool) {
    let Some(Param::Literal(list)) = azs else { return };
    for (i, az) in list.iter().enumerate() {
        if let Param::Literal(name) = az
            && !defined.iter().any(|a| &a.name == name)
        {
            let path = if single { at.clone() } else { at.index(i) };
            r.error(path, ProblemKind::UnknownReference { what: Item::Az, name: name.clone() });
        }
    }
}

fn read_network(r: &mut Reader, raw: RawNetwork, at: &YamlPath, azs: &[Az]) -> Option<Network> {
    r.unknown_keys(&raw.unknown, at);
    let name = r.name(raw.name, at, "name")?;
    let kind = match r.field(raw.kind, at.key("type")) {
        None if r.has_problem_at(&at.key("type")) => Param::unknown(),
        None => Param::Literal(NetworkType::Manual),
        Some(Param::Var(v)) => Param::Var(v),
        Some(Param::Literal(text)) => match text.as_str() {
            "manual" => Param::Literal(NetworkType::Manual),
            "dynamic" => Param::Literal(NetworkType::Dynamic),
            "vip" => Param::Literal(NetworkType::Vip),
            other => {
                r.invalid(at.key("type"), format!("network type '{other}' is not one of: manual, dynamic, vip"));
                Param::unknown()
            }
        },
    };
    let subnets_given = raw.subnets.is_some();
    let subnets = match raw.subnets {
        Some(Raw::Var(v)) => Param::Var(v),
        other => {
            let mut out = Vec::new();
            for (path, raw) in r.entries(other, &at.key("subnets")) {
                out.push(read_subnet(r, raw, &path, kind.literal().copied(), azs));
            }
            Param::Literal(out)
        }
    };
    if kind == Param::Literal(NetworkType::Manual) {
        if !subnets_given {
            r.error(at.clone(), ProblemKind::MissingKey { key: "subnets" });
        } else if matches!(&subnets, Param::Literal(s) if s.is_empty()) && !r.has_problem_at(&at.key("subnets")) {
            r.invalid(at.key("subnets"), "a manual network needs at least one subnet");
        }
    }
    let dns = r.references(raw.dns, at.key("dns"));
    let cloud_properties = r.map(raw.cloud_properties, at.key("cloud_properties"));
    Some(Network { path: at.clone(), name, kind, subnets, dns, cloud_properties })
}

fn read_subnet(r: &mut Reader, raw: RawSubnet, at: &YamlPath, kind: Option<NetworkType>, azs: &[Az]) -> Subnet {
    r.unknown_keys(&raw.unknown, at);
    let manual = kind == Some(NetworkType::Manual);
    let range = if manual && raw.range.is_none() {
        r.error(at.clone(), ProblemKind::MissingKey { key: "range" });
        None
    } else {
        r.reference(raw.range, at.key("range"))
    };
    let gateway = if manual && raw.gateway.is_none() {
        r.error(at.clone(), ProblemKind::MissingKey { key: "gateway" });
        None
    } else {
        r.reference(raw.gateway, at.key("gateway"))
    };
    let dns = r.references(raw.dns, at.key("dns"));
    let reserved = r.references(raw.reserved, at.key("reserved"));
    let static_ips = r.references(raw.static_ips, at.key("static"));
    let single_az = r.reference(raw.az.clone(), at.key("az"));
    let many_azs = r.references(raw.azs, at.key("azs"));
    let azs_list = match (single_az, many_azs) {
        (Some(_), Some(list)) => {
            r.invalid(at.clone(), "give either az or azs, not both");
            Some(list)
        }
        (Some(one), None) => {
            check_azs(r, &Some(Param::Literal(vec![one.clone()])), &at.key("az"), azs, true);
            Some(Param::Literal(vec![one]))
        }
        (None, list) => {
            check_azs(r, &list, &at.key("azs"), azs, false);
            list
        }
    };
    let cloud_properties = r.map(raw.cloud_properties, at.key("cloud_properties"));
    let prefix = r.int(raw.prefix, at.key("prefix"));
    let name = r.string(raw.name, at.key("name"));

    // What only manual networks use.
    if let Some(kind @ (NetworkType::Dynamic | NetworkType::Vip)) = kind {
        let unused: &[(&str, bool)] = &[
            ("range", range.is_some()),
            ("gateway", gateway.is_some()),
            ("reserved", reserved.is_some()),
            ("static", static_ips.is_some() && kind == NetworkType::Dynamic),
        ];
        for (key, given) in unused {
            if *given {
                r.warn(at.key(*key), ProblemKind::Invalid(format!("{key} is ignored on a {} network", kind.as_str())));
            }
        }
    }
    let subnet = Subnet {
        path: at.clone(),
        range,
        gateway,
        dns,
        reserved,
        static_ips,
        azs: azs_list,
        cloud_properties,
        prefix,
        name,
    };
    if manual {
        check_subnet_addresses(r, &subnet);
    }
    subnet
}

/// The literal spans of a list of addresses, each with its index; `None` if any entry is
/// unresolved or malformed (malformed ones are reported).
fn spans(r: &mut Reader, list: &Option<Param<Vec<Param<String>>>>, at: &YamlPath) -> Option<Vec<(usize, IpSpan)>> {
    let Some(Param::Literal(entries)) = list else {
        return if list.is_none() { Some(Vec::new()) } else { None };
    };
    let mut out = Vec::new();
    let mut complete = true;
    for (i, entry) in entries.iter().enumerate() {
        match entry {
            Param::Var(_) => complete = false,
            Param::Literal(text) => match IpSpan::parse(text) {
                Ok(span) => out.push((i, span)),
                Err(message) => {
                    r.invalid(at.index(i), message);
                    complete = false;
                }
            },
        }
    }
    complete.then_some(out)
}

fn check_subnet_addresses(r: &mut Reader, subnet: &Subnet) {
    let at = &subnet.path;
    let range = match &subnet.range {
        Some(Param::Literal(text)) => match IpSpan::cidr(text) {
            Ok(span) => Some(span),
            Err(message) => {
                r.invalid(at.key("range"), message);
                None
            }
        },
        _ => None,
    };
    let gateway = match &subnet.gateway {
        Some(Param::Literal(text)) => match text.parse() {
            Ok(ip) => Some(IpSpan::single(ip)),
            Err(_) => {
                r.invalid(at.key("gateway"), format!("'{text}' is not an IP address"));
                None
            }
        },
        _ => None,
    };
    let reserved = spans(r, &subnet.reserved, &at.key("reserved"));
    let statics = spans(r, &subnet.static_ips, &at.key("static"));
    if let Some(range) = range {
        if let Some(gw) = gateway
            && !range.contains(&gw)
        {
            r.invalid(
                at.key("gateway"),
                format!("gateway {gw} is outside the subnet range {}", subnet.range.as_ref().unwrap()),
            );
        }
        for (list, key) in [(&reserved, "reserved"), (&statics, "static")] {
            for (i, span) in list.iter().flatten() {
                if !range.contains(span) {
                    r.invalid(
                        at.key(key).index(*i),
                        format!(
                            "{key} {span} is outside the subnet range {range_text}",
                            range_text = subnet.range.as_ref().unwrap()
                        ),
                    );
                }
            }
        }
    }
    for (i, span) in statics.iter().flatten() {
        if let Some((_, taken)) = reserved.iter().flatten().find(|(_, res)| res.overlaps(span)) {
            r.invalid(at.key("static").index(*i), format!("static {span} overlaps reserved {taken}"));
        }
        if let Some(gw) = gateway
            && span.contains(&gw)
        {
            r.invalid(at.key("static").index(*i), format!("static {span} includes the gateway {gw}"));
        }
    }
}

fn read_compilation(r: &mut Reader, raw: Option<Raw<RawCompilation>>, config: &CloudConfig) -> Option<Compilation> {
    let at = YamlPath::root().key("compilation");
    if raw.is_none() {
        r.error(YamlPath::root(), ProblemKind::MissingKey { key: "compilation" });
        return None;
    }
    let raw = match r.field(raw, at.clone())? {
        Param::Literal(raw) => raw,
        Param::Var(var) => {
            r.warn(at, ProblemKind::Unresolved { var });
            return None;
        }
    };
    r.unknown_keys(&raw.unknown, &at);
    let workers = r.required(raw.workers, &at, "workers").map(|p| p.map(|Int(n)| n)).unwrap_or_else(Param::unknown);
    if workers == Param::Literal(0) {
        r.invalid(at.key("workers"), "workers must be at least 1");
    }
    let reuse_compilation_vms = r.flag(raw.reuse_compilation_vms, at.key("reuse_compilation_vms"));
    let az = r.reference(raw.az.clone(), at.key("az"));
    match &az {
        Some(Param::Literal(name)) if config.az(name).is_none() => {
            r.error(at.key("az"), ProblemKind::UnknownReference { what: Item::Az, name: name.clone() })
        }
        None if raw.az.is_none() && !config.azs.is_empty() => {
            r.error(at.clone(), ProblemKind::MissingKey { key: "az" })
        }
        _ => {}
    }
    let vm_type = r.reference(raw.vm_type, at.key("vm_type"));
    if let Some(Param::Literal(name)) = &vm_type
        && config.vm_type(name).is_none()
    {
        r.error(at.key("vm_type"), ProblemKind::UnknownReference { what: Item::VmType, name: name.clone() });
    }
    let vm_resources = read_vm_resources(r, raw.vm_resources, &at.key("vm_resources"));
    let cloud_properties = r.field(raw.cloud_properties, at.key("cloud_properties"));
    let given = [vm_type.is_some(), vm_resources.is_some(), cloud_properties.is_some()].iter().filter(|g| **g).count();
    if given > 1 {
        r.invalid(at.clone(), "give only one of vm_type, vm_resources and cloud_properties");
    }
    let network = match raw.network {
        None => {
            r.error(at.clone(), ProblemKind::MissingKey { key: "network" });
            Param::unknown()
        }
        some => r.reference(some, at.key("network")).unwrap_or_else(Param::unknown),
    };
    if let Param::Literal(name) = &network
        && config.network(name).is_none()
    {
        r.error(at.key("network"), ProblemKind::UnknownReference { what: Item::Network, name: name.clone() });
    }
    let env = r.map(raw.env, at.key("env"));
    let orphan_workers = r.flag(raw.orphan_workers, at.key("orphan_workers"));
    Some(Compilation {
        path: at,
        workers,
        reuse_compilation_vms,
        az,
        vm_type,
        vm_resources,
        cloud_properties,
        network,
        env,
        orphan_workers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::yaml::parse;

    fn read(text: &str) -> Outcome<CloudConfig> {
        CloudConfig::read(&parse(text, "cc.yml").unwrap())
    }

    fn problems(text: &str) -> Vec<String> {
        read(text).problems.iter().map(|p| p.to_string()).collect()
    }

    const COMPILATION: &str = "compilation: {workers: 2, az: z1, vm_type: small, network: default}\n";

    #[test]
    fn a_cloud_config_reads_into_the_model() {
        let text = format!(
            "{COMPILATION}
azs: [{{name: z1, cloud_properties: {{zone: a}}}}, {{name: z2, cpi: aws}}]
vm_types: [{{name: small, cloud_properties: {{instance_type: m5.large}}}}]
vm_extensions: [{{name: lb}}]
disk_types: [{{name: large, disk_size: 50_000}}]
networks:
- name: default
  subnets:
  - range: 10.0.0.0/24
    gateway: 10.0.0.1
    reserved: [10.0.0.2-10.0.0.10]
    static: [10.0.0.11 - 10.0.0.50]
    az: z1
  - {{range: ((cidr)), gateway: ((gw)), azs: [z2], static: ((statics))}}
- {{name: public, type: vip}}
- name: dyn
  type: dynamic
  dns: [8.8.8.8]
  cloud_properties: {{subnet: s-1}}
"
        );
        let outcome = read(&text);
        assert_eq!(outcome.problems, vec![]);
        assert_eq!(outcome.warnings, vec![]);
        let cc = outcome.model;
        assert_eq!(cc.disk_types[0].disk_size, Param::Literal(50_000));
        assert_eq!(cc.az("z2").unwrap().cpi.as_deref(), Some("aws"));
        let net = cc.network("default").unwrap();
        assert_eq!(net.kind, Param::Literal(NetworkType::Manual));
        let subnets = net.subnets.literal().unwrap();
        assert_eq!(subnets[0].azs, Some(Param::Literal(vec![Param::Literal("z1".to_string())])));
        assert_eq!(subnets[1].static_ips, Some(Param::Var("((statics))".into())));
        assert_eq!(cc.network("dyn").unwrap().kind, Param::Literal(NetworkType::Dynamic));
        assert_eq!(cc.compilation.unwrap().workers, Param::Literal(2));
    }

    #[test]
    fn subnet_and_compilation_references_must_exist() {
        let text = "
azs: [{name: z1}]
vm_types: [{name: small}]
networks:
- name: default
  subnets:
  - {range: 10.0.0.0/24, gateway: 10.0.0.1, az: z9}
  - {range: 10.0.1.0/24, gateway: 10.0.1.1, azs: [z1, z4]}
compilation: {workers: 0, az: z2, vm_type: huge, network: private}
";
        assert_eq!(
            problems(text),
            vec![
                "networks[0].subnets[0].az: az 'z9' is not defined in the cloud config's azs",
                "networks[0].subnets[1].azs[1]: az 'z4' is not defined in the cloud config's azs",
                "compilation.workers: workers must be at least 1",
                "compilation.az: az 'z2' is not defined in the cloud config's azs",
                "compilation.vm_type: vm_type 'huge' is not defined in the cloud config's vm_types",
                "compilation.network: network 'private' is not defined in the cloud config's networks",
            ]
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let text = format!(
            "{COMPILATION}
azs: [{{name: z1}}, {{name: z1}}]
vm_types: [{{name: small}}, {{name: small}}]
vm_extensions: [{{name: lb}}, {{name: lb}}]
disk_types: [{{name: 5GB, disk_size: 5120}}, {{name: 5GB, disk_size: 5000}}]
networks: [{{name: default, type: dynamic}}, {{name: default, type: vip}}]
"
        );
        assert_eq!(
            problems(&text),
            vec![
                "azs[1]: az 'z1' is defined more than once (first at azs[0])",
                "networks[1]: network 'default' is defined more than once (first at networks[0])",
                "vm_types[1]: vm_type 'small' is defined more than once (first at vm_types[0])",
                "vm_extensions[1]: vm_extension 'lb' is defined more than once (first at vm_extensions[0])",
                "disk_types[1]: disk_type '5GB' is defined more than once (first at disk_types[0])",
            ]
        );
    }

    #[test]
    fn manual_subnet_addresses_must_fit_the_range() {
        let text = format!(
            "{COMPILATION}
azs: [{{name: z1}}]
vm_types: [{{name: small}}]
networks:
- name: default
  subnets:
  - range: 10.0.0.0/24
    gateway: 10.0.1.1
    reserved: [10.0.0.1 - 10.0.0.20, 10.0.2.5]
    static: [10.0.0.15 - 10.0.0.30, nonsense]
    az: z1
- name: other
  type: bogus
- name: third
"
        );
        assert_eq!(
            problems(&text),
            vec![
                "networks[0].subnets[0].static[1]: 'nonsense' is not an IP address",
                "networks[0].subnets[0].gateway: gateway 10.0.1.1 is outside the subnet range 10.0.0.0/24",
                "networks[0].subnets[0].reserved[1]: reserved 10.0.2.5 is outside the subnet range 10.0.0.0/24",
                "networks[1].type: network type 'bogus' is not one of: manual, dynamic, vip",
                "networks[2]: missing required key 'subnets'",
            ]
        );
        // `static` is only compared once every entry parses; fix the typo and the overlap shows.
        let fixed = text.replace(", nonsense]", "]").replace("gateway: 10.0.1.1", "gateway: 10.0.0.1");
        assert_eq!(
            problems(&fixed)[..2],
            [
                "networks[0].subnets[0].reserved[1]: reserved 10.0.2.5 is outside the subnet range 10.0.0.0/24",
                "networks[0].subnets[0].static[0]: static 10.0.0.15 - 10.0.0.30 overlaps reserved 10.0.0.1 - 10.0.0.20",
            ]
        );
    }

    #[test]
    fn compilation_is_required() {
        assert_eq!(problems("azs: []\n"), vec!["(document root): missing required key 'compilation'"]);
    }
}

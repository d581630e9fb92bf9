//! The v1 import: a BOSH v1 deployment manifest (top-level `jobs` with `templates`,
//! `resource_pools`, `disk_pools`, `networks`, `compilation`) becomes a v2 deployment manifest
//! plus the cloud config it needs, the way operators moved to cloud config with the director's
//! `migrated_from`. Owns only the conversion; reading and writing files is `cli::migrate`'s job,
//! and checking the result against a director's uploads is `validate`'s.
//!
//! The conversion rules, in the order they are applied:
//! - **Refusals.** A spiff template (any value that is a whole `(( … ))` spiff expression; BOSH
//!   v2 `((name))` variables are not spiff) is refused with the path of its first expression; a
//!   v2 manifest (`instance_groups`) needs no migration; a stub without `jobs` or without the
//!   other v1 sections is not a manifest yet.
//! - **AZs.** One cloud-config az per distinct `cloud_properties.availability_zone` found on
//!   subnets, resource pools and compilation, with `cloud_properties: {availability_zone: …}`.
//!   Jobs whose resource pool has none get their az from the `_zN` convention (pool name, then
//!   job name), else from their networks' subnets, else the only az there is. An az is named
//!   `zN` when the manifest's own `_zN` names agree on it, otherwise `z1`, `z2`, … in order of
//!   first appearance. A manifest with no zone information at all stays az-less (v2 allows it).
//! - **Subnets** keep `range`, `gateway`, `dns`, `reserved`, `static` and `cloud_properties`;
//!   their `availability_zone` moves into `az:`. A subnet without one gets the az(s) of the jobs
//!   whose static IPs fall in it, else of the jobs using its network (`azs:` when several) —
//!   a guess, so it is reported. Dynamic networks get one subnet per network with the azs of
//!   their users; vip networks are kept as they are. `type` defaults to `manual`.
//! - **Resource pools** become `vm_types` of the same name whose `cloud_properties` lose
//!   `availability_zone` (the az carries it now); their stemcells become the manifest's
//!   `stemcells`, deduplicated, with an alias derived from the stemcell's OS (`ubuntu-trusty`),
//!   widened with the version or name only when two would collide; their `env` moves to each
//!   instance group using the pool. `network` and `size` are dropped (reported).
//! - **Disk pools** become `disk_types`; `persistent_disk_pool` becomes `persistent_disk_type`;
//!   `persistent_disk: N` stays.
//! - **Compilation** keeps `workers`, `network`, `reuse_compilation_vms`, `env` and its
//!   `cloud_properties` (minus `availability_zone`, which becomes its `az`).
//! - **Jobs** become instance groups: `templates` (or `template`, a string or a list) become
//!   `jobs` entries that each name their release (the template's, the job's, or the only one).
//!   Jobs `foo_z1`, `foo_z2`, … with the same templates, lifecycle and resource-pool family
//!   (`small_z1` ~ `small_z2`) and equivalent VMs merge into ONE group `foo` with `azs`, summed
//!   `instances`, networks merged (static IPs concatenated) and `migrated_from: [{name: foo_z1,
//!   az: z1}, …]`; a lone `foo_z1` is renamed `foo` the same way. When the members sit on
//!   parallel networks (`cf1` in z1, `cf2` in z2) those networks become one network holding the
//!   subnets of both. Where members differ in what one group can hold (properties, disks,
//!   update), the first member wins and every difference is reported with its path.
//! - **Properties.** v1 job-level properties are merged by BOSH over the global properties.
//!   v2 keeps that exact behaviour for instance-group-level `properties` and global
//!   `properties` (both legacy but accepted), whereas `jobs[].properties` *replace* the global
//!   ones for that job. So job-level properties stay at the instance-group level and global
//!   properties stay global, and both are reported so the operator can move them later.
//! - **Everything dropped or guessed is a warning** naming its path in the v1 manifest; nothing
//!   is lost silently. Keys rosh does not know are kept where v2 has a place for them (top
//!   level, instance groups, job entries, network entries) and dropped elsewhere, reported
//!   either way.
//!
//! Pure: values in, values out ([`migrate`]), or text in ([`migrate_text`], which also spots
//! spiff templates whose `<<: (( merge ))` the YAML layer cannot merge). Errors are
//! [`MigrateError`], each with the [`YamlPath`] of the offending value in the v1 manifest.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use super::yaml::{self, Mapping, Value, YamlPath};

/// The result of a migration: the v2 manifest, the cloud config it needs, and everything the
/// conversion dropped or guessed, each message starting with its path in the v1 manifest.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub manifest: Value,
    pub cloud_config: Value,
    pub warnings: Vec<String>,
}

/// Counts of what a migration produced, for a one-line report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub instance_groups: usize,
    pub azs: usize,
    pub vm_types: usize,
    pub disk_types: usize,
    pub networks: usize,
    pub stemcells: usize,
}

impl Migrated {
    pub fn summary(&self) -> Summary {
        let count = |doc: &Value, key: &str| doc.get(key).and_then(Value::as_sequence).map_or(0, Vec::len);
        Summary {
            instance_groups: count(&self.manifest, "instance_groups"),
            azs: count(&self.cloud_config, "azs"),
            vm_types: count(&self.cloud_config, "vm_types"),
            disk_types: count(&self.cloud_config, "disk_types"),
            networks: count(&self.cloud_config, "networks"),
            stemcells: count(&self.manifest, "stemcells"),
        }
    }
}

/// Why a document could not be migrated. Every variant carries the path of the value at fault.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "{path}: `{expression}` is a spiff expression: this file is a spiff template, not a \
         deployment manifest; merge it with spiff first (`spiff merge TEMPLATE STUB…`) and \
         migrate the merged manifest"
    )]
    SpiffTemplate { path: YamlPath, expression: String },
    #[error("{path}: this is already a v2 manifest (it has `instance_groups`); it needs no migration")]
    AlreadyV2 { path: YamlPath },
    #[error("{path}: not a complete v1 deployment manifest: {reason}")]
    NotV1Manifest { path: YamlPath, reason: String },
    #[error("{path}: missing: {why}")]
    Missing { path: YamlPath, why: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongType { path: YamlPath, expected: &'static str, found: &'static str },
    #[error("{path}: {kind} `{name}` is not defined under `{section}`")]
    UnknownReference { path: YamlPath, kind: &'static str, name: String, section: &'static str },
    #[error("{path}: {kind} `{name}` is defined twice (first at {first})")]
    Duplicate { path: YamlPath, kind: &'static str, name: String, first: YamlPath },
    #[error("{path}: {message}")]
    Invalid { path: YamlPath, message: String },
}

impl MigrateError {
    /// The path, in the v1 manifest, of the value at fault.
    pub fn path(&self) -> &YamlPath {
        match self {
            Self::SpiffTemplate { path, .. }
            | Self::AlreadyV2 { path }
            | Self::NotV1Manifest { path, .. }
            | Self::Missing { path, .. }
            | Self::WrongType { path, .. }
            | Self::UnknownReference { path, .. }
            | Self::Duplicate { path, .. }
            | Self::Invalid { path, .. } => path,
        }
    }
}

type Result<T, E = MigrateError> = std::result::Result<T, E>;

/// Converts a v1 deployment manifest into a v2 manifest and a cloud config.
pub fn migrate(v1: &Value) -> Result<Migrated> {
    let root_path = YamlPath::root();
    let Value::Mapping(root) = v1 else {
        return Err(MigrateError::NotV1Manifest {
            path: root_path,
            reason: format!("the document is {}, not a map", yaml::kind(v1)),
        });
    };
    if let Some((path, expression)) = first_spiff_expression(v1, &root_path) {
        return Err(MigrateError::SpiffTemplate { path, expression });
    }
    if root.contains_key("instance_groups") {
        return Err(MigrateError::AlreadyV2 { path: root_path.key("instance_groups") });
    }
    if field(root, "jobs").is_none() {
        return Err(MigrateError::NotV1Manifest {
            path: root_path,
            reason: "it has no `jobs` (a stub or fragment must be merged into its template first)".into(),
        });
    }
    let missing: Vec<&str> = ["name", "releases", "networks", "resource_pools", "compilation", "update"]
        .into_iter()
        .filter(|key| field(root, key).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(MigrateError::NotV1Manifest {
            path: root_path,
            reason: format!(
                "it has no {} (a stub or fragment must be merged into its template first)",
                missing.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let mut m = Migration::read(root)?;
    m.assign_zones()?;
    m.assign_subnet_zones();
    m.plan_groups();
    Ok(m.render())
}

/// A v1 manifest text could not be migrated: it is not YAML, or [`migrate`] refused it.
#[derive(Debug, thiserror::Error)]
pub enum MigrateTextError {
    #[error(transparent)]
    Parse(#[from] yaml::ParseError),
    #[error("{source_name}: {error}")]
    Migrate { source_name: String, error: MigrateError },
}

impl MigrateTextError {
    /// The migration error, when the text was YAML.
    pub fn migrate_error(&self) -> Option<&MigrateError> {
        match self {
            Self::Parse(_) => None,
            Self::Migrate { error, .. } => Some(error),
        }
    }
}

/// Parses `text` (named `source_name` in errors) and migrates it. Spiff templates are
/// recognised before the YAML layer applies `<<` merge keys, because spiff's own
/// `<<: (( merge ))` is not valid YAML merging and would otherwise hide what the file is.
pub fn migrate_text(text: &str, source_name: &str) -> Result<Migrated, MigrateTextError> {
    let wrap = |error: MigrateError| MigrateTextError::Migrate { source_name: source_name.to_string(), error };
    if let Ok(raw) = serde_yaml_ng::from_str::<Value>(text)
        && let Some((path, expression)) = first_spiff_expression(&raw, &YamlPath::root())
    {
        return Err(wrap(MigrateError::SpiffTemplate { path, expression }));
    }
    let document = yaml::parse(text, source_name)?;
    migrate(&document).map_err(wrap)
}

// ---------------------------------------------------------------------------------------------
// Spiff detection

static WHOLE_EXPRESSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?s)^\s*\(\((.*)\)\)\s*$").unwrap());
static V2_VARIABLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^!?[-/.\w]+$").unwrap());

/// Whether a string value is a spiff expression: the whole value is `(( … ))` and the inside is
/// not a BOSH v2 variable name (`((name))`: no spaces, only `[-/.\w]`, an optional leading `!`).
pub fn is_spiff_expression(text: &str) -> bool {
    let Some(captures) = WHOLE_EXPRESSION.captures(text) else { return false };
    let inside = &captures[1];
    // `((a)) ((b))` is two v2 variables in one string, not one spiff expression.
    if inside.contains("((") || inside.contains("))") || inside.trim().is_empty() {
        return false;
    }
    !V2_VARIABLE.is_match(inside)
}

fn first_spiff_expression(value: &Value, path: &YamlPath) -> Option<(YamlPath, String)> {
    match value {
        Value::String(s) if is_spiff_expression(s) => Some((path.clone(), s.trim().to_string())),
        Value::Sequence(items) => {
            items.iter().enumerate().find_map(|(i, item)| first_spiff_expression(item, &path.index(i)))
        }
        Value::Mapping(map) => map.iter().find_map(|(k, v)| first_spiff_expression(v, &path.key(key_text(k)))),
        Value::Tagged(tagged) => first_spiff_expression(&tagged.value, path),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading helpers

fn key_text(key: &Value) -> String {
    yaml::scalar_text(key).unwrap_or_else(|| yaml::to_string(key).trim().to_string())
}

/// A mapping entry, with YAML `null` read as absent (`persistent_disk: ~` means no disk).
fn field<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn untag(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => untag(&tagged.value),
        other => other,
    }
}

fn wrong(path: &YamlPath, expected: &'static str, found: &Value) -> MigrateError {
    MigrateError::WrongType { path: path.clone(), expected, found: yaml::kind(found) }
}

fn as_map<'a>(value: &'a Value, path: &YamlPath) -> Result<&'a Mapping> {
    match untag(value) {
        Value::Mapping(map) => Ok(map),
        other => Err(wrong(path, "a map", other)),
    }
}

fn as_seq<'a>(value: &'a Value, path: &YamlPath) -> Result<&'a [Value]> {
    match untag(value) {
        Value::Sequence(items) => Ok(items),
        other => Err(wrong(path, "an array", other)),
    }
}

fn as_name(value: &Value, path: &YamlPath) -> Result<String> {
    match untag(value) {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(wrong(path, "a string", other)),
    }
}

fn as_count(value: &Value, path: &YamlPath) -> Result<u64> {
    match untag(value) {
        Value::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
        other => Err(wrong(path, "a whole number", other)),
    }
}

const SECTION: &str = "every v1 deployment manifest has this section";

fn required<'a>(map: &'a Mapping, key: &str, path: &YamlPath, why: &str) -> Result<&'a Value> {
    field(map, key).ok_or_else(|| MigrateError::Missing { path: path.key(key), why: why.to_string() })
}

fn name_of(map: &Mapping, path: &YamlPath, what: &str) -> Result<String> {
    as_name(required(map, "name", path, &format!("every {what} has a name"))?, &path.key("name"))
}

/// `cloud_properties` without `availability_zone`, and the zone it named.
fn split_cloud_properties(map: &Mapping, path: &YamlPath) -> Result<(Option<Mapping>, Option<String>)> {
    let Some(value) = field(map, "cloud_properties") else { return Ok((None, None)) };
    let path = path.key("cloud_properties");
    let mut props = as_map(value, &path)?.clone();
    let zone = match props.remove("availability_zone") {
        None | Some(Value::Null) => None,
        Some(zone) => Some(as_name(&zone, &path.key("availability_zone"))?),
    };
    Ok((Some(props), zone))
}

fn string_value(s: &str) -> Value {
    Value::String(s.to_string())
}

fn mapping<const N: usize>(pairs: [(&str, Value); N]) -> Mapping {
    let mut map = Mapping::new();
    for (k, v) in pairs {
        map.insert(string_value(k), v);
    }
    map
}

fn names_list(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

// ---------------------------------------------------------------------------------------------
// IP addresses, for matching static IPs to subnets

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ip {
    v6: bool,
    bits: u128,
}

fn parse_ip(text: &str) -> Option<Ip> {
    match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some(Ip { v6: false, bits: u128::from(u32::from(a)) }),
        IpAddr::V6(a) => Some(Ip { v6: true, bits: u128::from(a) }),
    }
}

/// An inclusive address range: `10.0.0.5`, `10.0.0.5 - 10.0.0.9`, or `10.0.0.0/24`.
#[derive(Debug, Clone, Copy)]
struct IpRange {
    first: Ip,
    last: Ip,
}

impl IpRange {
    fn parse(text: &str) -> Option<IpRange> {
        if let Some((addr, len)) = text.split_once('/') {
            let base = parse_ip(addr)?;
            let width = if base.v6 { 128u32 } else { 32 };
            let len: u32 = len.trim().parse().ok().filter(|l| *l <= width)?;
            let host_bits = width - len;
            let host_mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
            let first = Ip { v6: base.v6, bits: base.bits & !host_mask };
            return Some(IpRange { first, last: Ip { v6: base.v6, bits: first.bits | host_mask } });
        }
        if let Some((a, b)) = text.split_once('-') {
            let (first, last) = (parse_ip(a)?, parse_ip(b)?);
            return (first.v6 == last.v6 && first.bits <= last.bits).then_some(IpRange { first, last });
        }
        let ip = parse_ip(text)?;
        Some(IpRange { first: ip, last: ip })
    }

    fn contains(&self, ip: Ip) -> bool {
        ip.v6 == self.first.v6 && self.first.bits <= ip.bits && ip.bits <= self.last.bits
    }

    fn len(&self) -> u64 {
        u64::try_from(self.last.bits - self.first.bits).map_or(u64::MAX, |n| n.saturating_add(1))
    }
}

/// How many addresses a `static_ips` entry stands for; a placeholder that is not an address
/// (`REPLACE_WITH_ELASTIC_IP`, `((ip))`) counts as one.
fn static_ip_count(entry: &Value) -> u64 {
    yaml::scalar_text(entry).and_then(|t| IpRange::parse(&t)).map_or(1, |r| r.len())
}

fn value_ranges(value: Option<&Value>) -> Vec<IpRange> {
    let entries: Vec<&Value> = match value.map(untag) {
        Some(Value::Sequence(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => vec![],
    };
    entries.into_iter().filter_map(yaml::scalar_text).filter_map(|t| IpRange::parse(&t)).collect()
}

// ---------------------------------------------------------------------------------------------
// The v1 document, read into what the conversion needs

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetKind {
    Manual,
    Dynamic,
    Vip,
}

impl NetKind {
    fn as_str(self) -> &'static str {
        match self {
            NetKind::Manual => "manual",
            NetKind::Dynamic => "dynamic",
            NetKind::Vip => "vip",
        }
    }
}

struct Net {
    name: String,
    path: YamlPath,
    kind: NetKind,
    /// Keys other than `name`, `type` and `subnets`, kept in their order.
    fields: Mapping,
    subnets: Vec<Subnet>,
}

struct Subnet {
    path: YamlPath,
    /// The subnet as written, with `availability_zone` taken out of its `cloud_properties`.
    fields: Mapping,
    cloud_zone: Option<String>,
    range: Option<IpRange>,
    statics: Vec<IpRange>,
    /// Filled in by `assign_subnet_zones` (zone indexes).
    zones: Vec<usize>,
}

impl Subnet {
    fn holds(&self, ip: Ip) -> bool {
        self.range.is_some_and(|r| r.contains(ip)) || self.statics.iter().any(|r| r.contains(ip))
    }
}

struct Pool {
    name: String,
    path: YamlPath,
    stemcell: usize,
    cloud_properties: Mapping,
    cloud_zone: Option<String>,
    env: Option<Value>,
}

struct Stemcell {
    spec: Mapping,
    alias: String,
}

struct Compilation {
    path: YamlPath,
    map: Mapping,
    network: usize,
    cloud_properties: Option<Mapping>,
    cloud_zone: Option<String>,
}

struct JobNet {
    net: usize,
    path: YamlPath,
    static_ips: Vec<Value>,
    /// Keys other than `name` and `static_ips` (`default`, …), kept in their order.
    fields: Mapping,
}

struct Job {
    path: YamlPath,
    name: String,
    instances: u64,
    entries: Vec<Value>,
    signature: Vec<(String, String)>,
    pool: usize,
    networks: Vec<JobNet>,
    disk: Option<(&'static str, Value)>,
    properties: Option<Value>,
    update: Option<Value>,
    lifecycle: Option<Value>,
    env: Option<Value>,
    extra: Vec<(Value, Value)>,
    zone: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ZoneKey {
    /// An IaaS availability zone named by `cloud_properties.availability_zone`.
    Cloud(String),
    /// Only known from the `_zN` naming convention.
    Suffix(u32),
}

struct Zone {
    key: ZoneKey,
    /// The `N`s of the `_zN` pool and job names that landed in this zone.
    evidence: BTreeSet<u32>,
    name: String,
}

/// An instance group to produce: one v1 job, or several `_zN` jobs merged.
struct Group {
    name: String,
    members: Vec<usize>,
    /// For each member, the index in its `networks` of the network paired with each of the first
    /// member's networks.
    pairing: Vec<Vec<usize>>,
}

static ZONE_SUFFIX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(.+)_z(\d+)$").unwrap());
static NETWORK_SUFFIX: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(.+?)[-_]?z?\d+$").unwrap());

/// `foo_z2` → (`foo`, 2).
fn zone_suffix(name: &str) -> Option<(String, u32)> {
    let captures = ZONE_SUFFIX.captures(name)?;
    Some((captures[1].to_string(), captures[2].parse().ok()?))
}

fn pool_family(name: &str) -> String {
    zone_suffix(name).map_or_else(|| name.to_string(), |(base, _)| base)
}

struct Migration {
    warnings: Vec<String>,
    name: Value,
    releases: Value,
    release_names: Vec<String>,
    update: Value,
    properties: Option<Value>,
    extra_top: Vec<(Value, Value)>,
    networks: Vec<Net>,
    disk_types: Vec<Value>,
    pools: Vec<Pool>,
    stemcells: Vec<Stemcell>,
    compilation: Compilation,
    jobs: Vec<Job>,
    zones: Vec<Zone>,
    compilation_zone: Option<usize>,
    groups: Vec<Group>,
    /// Union-find parent of each network: networks in one class become one v2 network.
    net_parent: Vec<usize>,
}

impl Migration {
    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    fn read(root: &Mapping) -> Result<Migration> {
        let top = YamlPath::root();
        let mut warnings = Vec::new();

        let name = required(root, "name", &top, "the deployment needs a name")?.clone();
        as_name(&name, &top.key("name"))?;

        let releases_path = top.key("releases");
        let releases = required(root, "releases", &top, SECTION)?.clone();
        let mut release_names = Vec::new();
        for (i, release) in as_seq(&releases, &releases_path)?.iter().enumerate() {
            let path = releases_path.index(i);
            release_names.push(name_of(as_map(release, &path)?, &path, "release")?);
        }

        let update = required(root, "update", &top, SECTION)?.clone();
        as_map(&update, &top.key("update"))?;

        let properties = field(root, "properties").cloned();
        if let Some(props) = &properties {
            as_map(props, &top.key("properties"))?;
            warnings.push(
                "properties: kept as global `properties`: the v2 format still accepts them (deprecated) and \
                 BOSH still merges each instance group's properties over them, as v1 did; move them into \
                 the jobs that read them when convenient"
                    .to_string(),
            );
        }
        if let Some(uuid) = field(root, "director_uuid") {
            warnings.push(format!(
                "director_uuid: dropped (`{}`): a v2 manifest does not name its director; the CLI's \
                 environment does",
                yaml::scalar_text(uuid).unwrap_or_default()
            ));
        }

        const KNOWN: [&str; 10] = [
            "name",
            "director_uuid",
            "releases",
            "networks",
            "resource_pools",
            "disk_pools",
            "compilation",
            "update",
            "jobs",
            "properties",
        ];
        let mut extra_top = Vec::new();
        for (key, value) in root {
            let text = key_text(key);
            if !KNOWN.contains(&text.as_str()) {
                warnings.push(format!("{text}: not a v1 manifest section rosh knows; kept as is in the manifest"));
                extra_top.push((key.clone(), value.clone()));
            }
        }

        let networks = read_networks(root)?;
        let disk_types = read_disk_pools(root)?;
        let (pools, stemcells) = read_resource_pools(root, &mut warnings)?;
        let compilation = read_compilation(root, &networks)?;

        let mut m = Migration {
            warnings,
            name,
            releases,
            release_names,
            update,
            properties,
            extra_top,
            net_parent: (0..networks.len()).collect(),
            networks,
            disk_types,
            pools,
            stemcells,
            compilation,
            jobs: Vec::new(),
            zones: Vec::new(),
            compilation_zone: None,
            groups: Vec::new(),
        };
        m.read_jobs(root)?;
        Ok(m)
    }

    fn read_jobs(&mut self, root: &Mapping) -> Result<()> {
        let jobs_path = YamlPath::root().key("jobs");
        let items = as_seq(required(root, "jobs", &YamlPath::root(), SECTION)?, &jobs_path)?;
        let mut seen: HashMap<String, YamlPath> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = jobs_path.index(i);
            let job = self.read_job(as_map(item, &path)?, &path)?;
            if let Some(first) = seen.get(&job.name) {
                return Err(MigrateError::Duplicate { path, kind: "job", name: job.name, first: first.clone() });
            }
            seen.insert(job.name.clone(), path);
            self.jobs.push(job);
        }
        if self.jobs.is_empty() {
            return Err(MigrateError::NotV1Manifest { path: jobs_path, reason: "`jobs` is empty".into() });
        }
        Ok(())
    }

    fn read_job(&mut self, map: &Mapping, path: &YamlPath) -> Result<Job> {
        let name = name_of(map, path, "job")?;

        // Templates: `templates: [{name, release}]`, or legacy `template: name | [names]`.
        let job_release = field(map, "release").map(|r| as_name(r, &path.key("release"))).transpose()?;
        if let Some(release) = &job_release
            && !self.release_names.contains(release)
        {
            return Err(MigrateError::UnknownReference {
                path: path.key("release"),
                kind: "release",
                name: release.clone(),
                section: "releases",
            });
        }
        let (list_path, templates): (YamlPath, Vec<(YamlPath, Mapping)>) =
            match (field(map, "templates"), field(map, "template")) {
                (Some(_), Some(_)) => {
                    return Err(MigrateError::Invalid {
                        path: path.key("template"),
                        message: "a job names its templates with `templates` or `template`, not both".into(),
                    });
                }
                (Some(list), None) => {
                    let list_path = path.key("templates");
                    let mut templates = Vec::new();
                    for (j, t) in as_seq(list, &list_path)?.iter().enumerate() {
                        let t_path = list_path.index(j);
                        let entry = match untag(t) {
                            Value::String(s) => mapping([("name", string_value(s))]),
                            other => as_map(other, &t_path)?.clone(),
                        };
                        templates.push((t_path, entry));
                    }
                    (list_path, templates)
                }
                (None, Some(single)) => {
                    let t_path = path.key("template");
                    let names: Vec<(YamlPath, Value)> = match untag(single) {
                        Value::Sequence(items) => {
                            items.iter().enumerate().map(|(j, v)| (t_path.index(j), v.clone())).collect()
                        }
                        other => vec![(t_path.clone(), other.clone())],
                    };
                    let mut templates = Vec::new();
                    for (p, v) in names {
                        let n = as_name(&v, &p)?;
                        templates.push((p, mapping([("name", string_value(&n))])));
                    }
                    (t_path, templates)
                }
                (None, None) => {
                    return Err(MigrateError::Missing {
                        path: path.key("templates"),
                        why: "a v1 job lists its templates under `templates` (or `template`)".into(),
                    });
                }
            };
        if templates.is_empty() {
            return Err(MigrateError::Invalid { path: list_path, message: "a job needs at least one template".into() });
        }
        let mut entries = Vec::new();
        let mut signature = Vec::new();
        let mut seen_templates: HashMap<String, YamlPath> = HashMap::new();
        for (t_path, template) in templates {
            let t_name = name_of(&template, &t_path, "template")?;
            let release = match field(&template, "release") {
                Some(r) => {
                    let r = as_name(r, &t_path.key("release"))?;
                    if !self.release_names.contains(&r) {
                        return Err(MigrateError::UnknownReference {
                            path: t_path.key("release"),
                            kind: "release",
                            name: r,
                            section: "releases",
                        });
                    }
                    r
                }
                None => match (&job_release, self.release_names.as_slice()) {
                    (Some(r), _) => r.clone(),
                    (None, [only]) => only.clone(),
                    (None, _) => {
                        return Err(MigrateError::Missing {
                            path: t_path.key("release"),
                            why: format!(
                                "the manifest lists {} releases, so template `{t_name}` must say which one it comes from",
                                self.release_names.len()
                            ),
                        });
                    }
                },
            };
            if let Some(first) = seen_templates.get(&t_name) {
                return Err(MigrateError::Duplicate {
                    path: t_path,
                    kind: "template",
                    name: t_name,
                    first: first.clone(),
                });
            }
            seen_templates.insert(t_name.clone(), t_path.clone());
            let mut entry = mapping([("name", string_value(&t_name)), ("release", string_value(&release))]);
            for (k, v) in &template {
                if !matches!(key_text(k).as_str(), "name" | "release") {
                    entry.insert(k.clone(), v.clone());
                }
            }
            entries.push(Value::Mapping(entry));
            signature.push((t_name, release));
        }

        let instances = as_count(
            required(map, "instances", path, "every v1 job says how many instances it runs")?,
            &path.key("instances"),
        )?;

        let pool_path = path.key("resource_pool");
        let pool_name = as_name(
            required(map, "resource_pool", path, "every v1 job names the resource pool its VMs come from")?,
            &pool_path,
        )?;
        let pool =
            self.pools.iter().position(|p| p.name == pool_name).ok_or_else(|| MigrateError::UnknownReference {
                path: pool_path.clone(),
                kind: "resource pool",
                name: pool_name,
                section: "resource_pools",
            })?;

        let nets_path = path.key("networks");
        let nets = as_seq(required(map, "networks", path, "every v1 job names its networks")?, &nets_path)?;
        if nets.is_empty() {
            return Err(MigrateError::Invalid { path: nets_path, message: "a job needs at least one network".into() });
        }
        let mut networks = Vec::new();
        for (j, n) in nets.iter().enumerate() {
            let n_path = nets_path.index(j);
            let n_map = as_map(n, &n_path)?;
            let n_name = name_of(n_map, &n_path, "job network")?;
            let net =
                self.networks.iter().position(|x| x.name == n_name).ok_or_else(|| MigrateError::UnknownReference {
                    path: n_path.key("name"),
                    kind: "network",
                    name: n_name.clone(),
                    section: "networks",
                })?;
            if networks.iter().any(|x: &JobNet| x.net == net) {
                return Err(MigrateError::Invalid {
                    path: n_path,
                    message: format!("network `{n_name}` is listed twice for this job"),
                });
            }
            let static_ips = match field(n_map, "static_ips").map(untag) {
                None => vec![],
                Some(Value::Sequence(items)) => items.clone(),
                Some(single) => vec![single.clone()],
            };
            let mut fields = Mapping::new();
            for (k, v) in n_map {
                if !matches!(key_text(k).as_str(), "name" | "static_ips") {
                    fields.insert(k.clone(), v.clone());
                }
            }
            networks.push(JobNet { net, path: n_path, static_ips, fields });
        }

        let disk_keys: Vec<&str> = ["persistent_disk", "persistent_disk_pool", "persistent_disk_type"]
            .into_iter()
            .filter(|k| field(map, k).is_some())
            .collect();
        let disk = match disk_keys.as_slice() {
            [] => None,
            ["persistent_disk"] => {
                let size = field(map, "persistent_disk").cloned().unwrap_or_default();
                as_count(&size, &path.key("persistent_disk"))?;
                Some(("persistent_disk", size))
            }
            [key] => {
                let d_path = path.key(*key);
                let d_name = as_name(field(map, key).unwrap_or(&Value::Null), &d_path)?;
                let known = self
                    .disk_types
                    .iter()
                    .any(|d| d.get("name").and_then(yaml::scalar_text).as_deref() == Some(&d_name));
                if !known {
                    return Err(MigrateError::UnknownReference {
                        path: d_path,
                        kind: "disk pool",
                        name: d_name,
                        section: "disk_pools",
                    });
                }
                Some(("persistent_disk_type", string_value(&d_name)))
            }
            several => {
                return Err(MigrateError::Invalid {
                    path: path.key(several[1]),
                    message: format!("a job names its persistent disk one way only, found {}", several.join(" and ")),
                });
            }
        };

        let properties = field(map, "properties").cloned();
        if let Some(p) = &properties {
            as_map(p, &path.key("properties"))?;
        }
        let update = field(map, "update").cloned();
        let lifecycle = field(map, "lifecycle").cloned();
        let env = field(map, "env").cloned();
        if env.is_some() && self.pools[pool].env.is_some() {
            return Err(MigrateError::Invalid {
                path: path.key("env"),
                message: format!("both the job and its resource pool `{}` declare `env`", self.pools[pool].name),
            });
        }

        const KNOWN: [&str; 15] = [
            "name",
            "release",
            "templates",
            "template",
            "instances",
            "resource_pool",
            "networks",
            "persistent_disk",
            "persistent_disk_pool",
            "persistent_disk_type",
            "properties",
            "update",
            "lifecycle",
            "env",
            "azs",
        ];
        let mut extra = Vec::new();
        for (k, v) in map {
            let text = key_text(k);
            if text == "azs" {
                return Err(MigrateError::Invalid {
                    path: path.key("azs"),
                    message: "a v1 job has no `azs`; this manifest is half migrated".into(),
                });
            }
            if !KNOWN.contains(&text.as_str()) {
                self.warn(format!(
                    "{}: not a v1 job key rosh knows; kept as is on the instance group",
                    path.key(text.clone())
                ));
                extra.push((k.clone(), v.clone()));
            }
        }

        Ok(Job {
            path: path.clone(),
            name,
            instances,
            entries,
            signature,
            pool,
            networks,
            disk,
            properties,
            update,
            lifecycle,
            env,
            extra,
            zone: None,
        })
    }

    // -----------------------------------------------------------------------------------------
    // AZs

    fn zone_of(&mut self, key: ZoneKey) -> usize {
        if let Some(i) = self.zones.iter().position(|z| z.key == key) {
            return i;
        }
        self.zones.push(Zone { key, evidence: BTreeSet::new(), name: String::new() });
        self.zones.len() - 1
    }

    fn assign_zones(&mut self) -> Result<()> {
        // 1. Zones the IaaS names, in order of first appearance.
        for n in 0..self.networks.len() {
            for s in 0..self.networks[n].subnets.len() {
                if let Some(zone) = self.networks[n].subnets[s].cloud_zone.clone() {
                    self.zone_of(ZoneKey::Cloud(zone));
                }
            }
        }
        let mut pool_zones = Vec::new();
        for p in 0..self.pools.len() {
            let zone = self.pools[p].cloud_zone.clone().map(|z| self.zone_of(ZoneKey::Cloud(z)));
            if let (Some(z), Some((_, n))) = (zone, zone_suffix(&self.pools[p].name)) {
                self.zones[z].evidence.insert(n);
            }
            pool_zones.push(zone);
        }
        if let Some(zone) = self.compilation.cloud_zone.clone() {
            self.compilation_zone = Some(self.zone_of(ZoneKey::Cloud(zone)));
        }
        for j in 0..self.jobs.len() {
            if let Some(z) = pool_zones[self.jobs[j].pool] {
                self.jobs[j].zone = Some(z);
                if let Some((_, n)) = zone_suffix(&self.jobs[j].name) {
                    self.zones[z].evidence.insert(n);
                }
            }
        }

        // 2. Jobs whose pool names no zone: the `_zN` convention, pool name first.
        for j in 0..self.jobs.len() {
            if self.jobs[j].zone.is_some() {
                continue;
            }
            let pool_name = self.pools[self.jobs[j].pool].name.clone();
            let Some(n) = zone_suffix(&pool_name).or_else(|| zone_suffix(&self.jobs[j].name)).map(|(_, n)| n) else {
                continue;
            };
            let agreeing = self
                .zones
                .iter()
                .position(|z| matches!(z.key, ZoneKey::Cloud(_)) && z.evidence.len() == 1 && z.evidence.contains(&n));
            let z = agreeing.unwrap_or_else(|| self.zone_of(ZoneKey::Suffix(n)));
            self.zones[z].evidence.insert(n);
            self.jobs[j].zone = Some(z);
            if matches!(self.zones[z].key, ZoneKey::Suffix(_)) {
                continue;
            }
            let (path, job_name) = (self.jobs[j].path.clone(), self.jobs[j].name.clone());
            self.warn(format!(
                "{path}: resource pool `{pool_name}` names no availability_zone; job `{job_name}` placed in the \
                 zone the other `_z{n}` pools use (guessed from the names)"
            ));
        }

        // 3. Jobs with no zone information at all.
        if self.zones.is_empty() {
            return Ok(()); // an az-less deployment, which v2 allows
        }
        for j in 0..self.jobs.len() {
            if self.jobs[j].zone.is_some() {
                continue;
            }
            let mut from_subnets = BTreeSet::new();
            for jn in &self.jobs[j].networks {
                for s in &self.networks[jn.net].subnets {
                    if let Some(zone) = &s.cloud_zone
                        && let Some(z) = self.zones.iter().position(|x| x.key == ZoneKey::Cloud(zone.clone()))
                    {
                        from_subnets.insert(z);
                    }
                }
            }
            let (z, how) = if from_subnets.len() == 1 {
                (*from_subnets.iter().next().unwrap_or(&0), "from the availability_zone of its networks' subnets")
            } else if self.zones.len() == 1 {
                (0, "as the only zone of the deployment")
            } else {
                let job = &self.jobs[j];
                return Err(MigrateError::Invalid {
                    path: job.path.clone(),
                    message: format!(
                        "cannot tell which availability zone job `{}` runs in: resource pool `{}` names no \
                         availability_zone, neither name follows the `_zN` convention, and the deployment \
                         has {} zones",
                        job.name,
                        self.pools[job.pool].name,
                        self.zones.len()
                    ),
                });
            };
            self.jobs[j].zone = Some(z);
            let (path, pool_name) = (self.jobs[j].path.clone(), self.pools[self.jobs[j].pool].name.clone());
            self.warn(format!("{path}: resource pool `{pool_name}` names no availability_zone; zone guessed {how}"));
        }
        self.name_zones();
        Ok(())
    }

    /// `zN` where the manifest's own `_zN` names agree on a zone, then `z1`, `z2`, … in order of
    /// first appearance for the rest.
    fn name_zones(&mut self) {
        let mut wanted: HashMap<u32, usize> = HashMap::new();
        for z in &self.zones {
            if z.evidence.len() == 1 {
                *wanted.entry(*z.evidence.iter().next().unwrap_or(&0)).or_default() += 1;
            }
        }
        let mut taken = HashSet::new();
        for z in &mut self.zones {
            if z.evidence.len() == 1 {
                let n = *z.evidence.iter().next().unwrap_or(&0);
                if n > 0 && wanted.get(&n) == Some(&1) {
                    z.name = format!("z{n}");
                    taken.insert(n);
                }
            }
        }
        let mut next = 1;
        for z in &mut self.zones {
            if z.name.is_empty() {
                while taken.contains(&next) {
                    next += 1;
                }
                z.name = format!("z{next}");
                taken.insert(next);
            }
        }
        for z in 0..self.zones.len() {
            if let ZoneKey::Suffix(n) = self.zones[z].key {
                let name = self.zones[z].name.clone();
                self.warn(format!(
                    "azs: az `{name}` has empty cloud_properties: no availability_zone in the v1 manifest, \
                     it exists only because of the `_z{n}` names; fill it in for your IaaS"
                ));
            }
        }
    }

    fn assign_subnet_zones(&mut self) {
        if self.zones.is_empty() {
            return;
        }
        for n in 0..self.networks.len() {
            // Zones of the jobs on this network, in job order; and those with static IPs here.
            let mut users: Vec<usize> = Vec::new();
            let mut statics: Vec<Vec<usize>> = vec![Vec::new(); self.networks[n].subnets.len()];
            for job in &self.jobs {
                let Some(z) = job.zone else { continue };
                for jn in job.networks.iter().filter(|jn| jn.net == n) {
                    if !users.contains(&z) {
                        users.push(z);
                    }
                    for ip in jn.static_ips.iter().filter_map(yaml::scalar_text).filter_map(|t| parse_ip(&t)) {
                        if let Some(s) = self.networks[n].subnets.iter().position(|s| s.holds(ip))
                            && !statics[s].contains(&z)
                        {
                            statics[s].push(z);
                        }
                    }
                }
            }
            if let Some(z) = self.compilation_zone
                && self.compilation.network == n
                && !users.contains(&z)
            {
                users.push(z);
            }
            let single = self.networks[n].subnets.len() == 1;
            let zones_all = &self.zones;
            let mut guesses = Vec::new();
            for (subnet, held) in self.networks[n].subnets.iter_mut().zip(&statics) {
                if let Some(zone) = &subnet.cloud_zone {
                    let z = zones_all.iter().position(|x| x.key == ZoneKey::Cloud(zone.clone())).unwrap_or(0);
                    subnet.zones = vec![z];
                    continue;
                }
                let (mut zones, how) = if !held.is_empty() {
                    let mut zones = held.clone();
                    if single {
                        zones.extend(users.iter().filter(|z| !held.contains(z)));
                    }
                    (zones, "the jobs whose static IPs it holds")
                } else if !users.is_empty() {
                    (users.clone(), "the jobs that use its network")
                } else if zones_all.len() == 1 {
                    (vec![0], "the only zone of the deployment (no job uses it)")
                } else {
                    ((0..zones_all.len()).collect(), "all zones (no job uses it)")
                };
                zones.sort_unstable();
                let names: Vec<String> = zones.iter().map(|z| zones_all[*z].name.clone()).collect();
                guesses.push(format!(
                    "{}: no availability_zone in its cloud_properties; az {} guessed from {how}",
                    subnet.path,
                    names.join(", ")
                ));
                subnet.zones = zones;
            }
            self.warnings.extend(guesses);
        }
        if self.compilation_zone.is_none() {
            let net = &self.networks[self.compilation.network];
            let z = net.subnets.first().and_then(|s| s.zones.first().copied()).or_else(|| {
                self.jobs
                    .iter()
                    .find(|j| j.networks.iter().any(|jn| jn.net == self.compilation.network))
                    .and_then(|j| j.zone)
            });
            let z = z.unwrap_or(0);
            self.compilation_zone = Some(z);
            let message = format!(
                "{}: no availability_zone in cloud_properties; compilation az `{}` guessed from network `{}`",
                self.compilation.path, self.zones[z].name, net.name
            );
            self.warn(message);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Instance groups: merging `_zN` jobs

    fn plan_groups(&mut self) {
        // Candidate buckets: same base name, lifecycle, templates and pool family.
        type Key = (String, Option<Value>, Vec<(String, String)>, String);
        let mut buckets: Vec<(Key, Vec<usize>)> = Vec::new();
        for (j, job) in self.jobs.iter().enumerate() {
            let Some((base, _)) = zone_suffix(&job.name) else { continue };
            let key: Key =
                (base, job.lifecycle.clone(), job.signature.clone(), pool_family(&self.pools[job.pool].name));
            match buckets.iter().position(|(k, _)| *k == key) {
                Some(b) => buckets[b].1.push(j),
                None => buckets.push((key, vec![j])),
            }
        }

        // A bucket takes its base name only when nothing else could: no job has that name and no
        // other bucket has the same base (same base, different templates).
        let job_names: HashSet<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
        let mut usable = Vec::new();
        let mut messages = Vec::new();
        for (key, members) in &buckets {
            let same_base = buckets.iter().filter(|(k, _)| k.0 == key.0).count();
            let ok = same_base == 1 && !job_names.contains(key.0.as_str());
            if !ok {
                let names: Vec<String> = members.iter().map(|m| self.jobs[*m].name.clone()).collect();
                let why = if same_base > 1 {
                    format!("other `{}_zN` jobs differ in templates, lifecycle or resource pool", key.0)
                } else {
                    format!("a job named `{}` already exists", key.0)
                };
                messages.push(format!(
                    "{}: {} keep their v1 names and are not merged: {why}",
                    self.jobs[members[0]].path,
                    names_list(&names)
                ));
            }
            usable.push(ok);
        }
        self.warnings.extend(messages);

        let mut placed = vec![false; self.jobs.len()];
        // Jobs turned away from their bucket's group: they keep their v1 name.
        let mut alone = vec![false; self.jobs.len()];
        let mut groups = Vec::new();
        for j in 0..self.jobs.len() {
            if placed[j] {
                continue;
            }
            let bucket = buckets.iter().position(|(_, m)| m.contains(&j));
            let Some(b) = bucket.filter(|b| usable[*b] && !alone[j]) else {
                placed[j] = true;
                let n = self.jobs[j].networks.len();
                groups.push(Group {
                    name: self.jobs[j].name.clone(),
                    members: vec![j],
                    pairing: vec![(0..n).collect()],
                });
                continue;
            };
            let base = buckets[b].0.0.clone();
            let mut group =
                Group { name: base, members: vec![j], pairing: vec![(0..self.jobs[j].networks.len()).collect()] };
            placed[j] = true;
            for &other in &buckets[b].1[1..] {
                match self.try_join(j, other) {
                    Ok(pairing) => {
                        group.members.push(other);
                        group.pairing.push(pairing);
                        placed[other] = true;
                    }
                    Err(why) => {
                        alone[other] = true;
                        let (path, name, first) =
                            (self.jobs[other].path.clone(), self.jobs[other].name.clone(), self.jobs[j].name.clone());
                        self.warn(format!(
                            "{path}: job `{name}` is not merged with `{first}` into instance group `{}` ({why}); \
                             it stays an instance group of its own",
                            group.name
                        ));
                    }
                }
            }
            groups.push(group);
        }
        self.groups = groups;
    }

    /// Whether job `other` can join the group led by `first`, and if so the network pairing;
    /// parallel networks are united (`cf1` in z1 + `cf2` in z2 → one network).
    fn try_join(&mut self, first: usize, other: usize) -> std::result::Result<Vec<usize>, String> {
        let (a, b) = (&self.jobs[first], &self.jobs[other]);
        let (pa, pb) = (&self.pools[a.pool], &self.pools[b.pool]);
        if pa.cloud_properties != pb.cloud_properties {
            return Err(format!(
                "resource pools `{}` and `{}` differ in cloud_properties beyond availability_zone",
                pa.name, pb.name
            ));
        }
        if pa.stemcell != pb.stemcell {
            return Err(format!("resource pools `{}` and `{}` use different stemcells", pa.name, pb.name));
        }
        if a.env.as_ref().or(pa.env.as_ref()) != b.env.as_ref().or(pb.env.as_ref()) {
            return Err("their VMs have different `env`".into());
        }
        if a.networks.len() != b.networks.len() {
            return Err("they use a different number of networks".into());
        }
        // Same-named networks pair up; the rest pair in order.
        let mut pairing = vec![usize::MAX; a.networks.len()];
        let mut used = vec![false; b.networks.len()];
        for (p, na) in a.networks.iter().enumerate() {
            if let Some(q) = b.networks.iter().position(|nb| nb.net == na.net) {
                pairing[p] = q;
                used[q] = true;
            }
        }
        let mut rest = (0..b.networks.len()).filter(|q| !used[*q]);
        for slot in pairing.iter_mut().filter(|s| **s == usize::MAX) {
            *slot = rest.next().unwrap_or(0);
        }

        let mut parent = self.net_parent.clone();
        for (p, &q) in pairing.iter().enumerate() {
            union(&mut parent, a.networks[p].net, b.networks[q].net);
        }
        self.check_network_classes(&parent)?;
        self.net_parent = parent;
        Ok(pairing)
    }

    fn check_network_classes(&self, parent: &[usize]) -> std::result::Result<(), String> {
        let mut classes: HashMap<usize, Vec<usize>> = HashMap::new();
        for n in 0..self.networks.len() {
            classes.entry(find(parent, n)).or_default().push(n);
        }
        for members in classes.values().filter(|m| m.len() > 1) {
            let first = &self.networks[members[0]];
            for &n in &members[1..] {
                let net = &self.networks[n];
                if net.kind != first.kind {
                    return Err(format!(
                        "their networks `{}` ({}) and `{}` ({}) are of different types",
                        first.name,
                        first.kind.as_str(),
                        net.name,
                        net.kind.as_str()
                    ));
                }
                if net.kind == NetKind::Vip
                    && net.fields.get("cloud_properties") != first.fields.get("cloud_properties")
                {
                    return Err(format!("vip networks `{}` and `{}` differ in cloud_properties", first.name, net.name));
                }
            }
        }
        for job in &self.jobs {
            let roots: HashSet<usize> = job.networks.iter().map(|jn| find(parent, jn.net)).collect();
            if roots.len() != job.networks.len() {
                return Err(format!("job `{}` uses both networks that would have to become one network", job.name));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Output

    fn render(mut self) -> Migrated {
        let net_names = self.network_names();
        let cloud_config = self.render_cloud_config(&net_names);
        let manifest = self.render_manifest(&net_names);
        let mut warnings = std::mem::take(&mut self.warnings);
        warnings.extend(check_references(&manifest, &cloud_config));
        Migrated { manifest, cloud_config, warnings }
    }

    /// The v2 name of every v1 network: its own, or for united networks a shared stem (`cf1` +
    /// `cf2` → `cf`) when that is free, else the first member's name.
    fn network_names(&mut self) -> Vec<String> {
        let mut names: Vec<String> = self.networks.iter().map(|n| n.name.clone()).collect();
        let mut classes: Vec<(usize, Vec<usize>)> = Vec::new();
        for n in 0..self.networks.len() {
            let root = find(&self.net_parent, n);
            match classes.iter_mut().find(|(r, _)| *r == root) {
                Some((_, members)) => members.push(n),
                None => classes.push((root, vec![n])),
            }
        }
        let mut taken: HashSet<String> =
            classes.iter().filter(|(_, m)| m.len() == 1).map(|(_, m)| self.networks[m[0]].name.clone()).collect();
        let mut messages = Vec::new();
        for (_, members) in classes.iter().filter(|(_, m)| m.len() > 1) {
            let stems: Vec<Option<String>> = members
                .iter()
                .map(|n| NETWORK_SUFFIX.captures(&self.networks[*n].name).map(|c| c[1].to_string()))
                .collect();
            let first_name = self.networks[members[0]].name.clone();
            let stem = stems[0].clone().filter(|s| stems.iter().all(|x| x.as_deref() == Some(s.as_str())));
            let name = match stem {
                Some(s) if !taken.contains(&s) && !self.networks.iter().any(|n| n.name == s) => s,
                _ => first_name,
            };
            taken.insert(name.clone());
            let old: Vec<String> = members.iter().map(|n| self.networks[*n].name.clone()).collect();
            for &n in members {
                names[n] = name.clone();
            }
            let mut referencing = Vec::new();
            if let Some(props) = &self.properties {
                find_strings(props, &old, &YamlPath::root().key("properties"), &mut referencing);
            }
            for job in &self.jobs {
                if let Some(props) = &job.properties {
                    find_strings(props, &old, &job.path.key("properties"), &mut referencing);
                }
            }
            let mut message = format!(
                "{}: networks {} become one network `{name}` holding all their subnets, because instance \
                 groups merged across azs use them side by side",
                self.networks[members[0]].path,
                names_list(&old)
            );
            if !referencing.is_empty() {
                message.push_str(&format!(
                    "; these properties name the old networks and need updating: {}",
                    referencing.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
            }
            messages.push(message);
        }
        self.warnings.extend(messages);
        names
    }

    fn zone_names(&self, zones: &[usize]) -> Vec<Value> {
        zones.iter().map(|z| string_value(&self.zones[*z].name)).collect()
    }

    fn render_cloud_config(&mut self, net_names: &[String]) -> Value {
        let mut cc = Mapping::new();
        let az_mode = !self.zones.is_empty();

        if az_mode {
            let mut order: Vec<usize> = (0..self.zones.len()).collect();
            order.sort_by_key(|z| self.zones[*z].name.trim_start_matches('z').parse::<u32>().unwrap_or(u32::MAX));
            let azs = order
                .iter()
                .map(|z| {
                    let zone = &self.zones[*z];
                    let props = match &zone.key {
                        ZoneKey::Cloud(az) => mapping([("availability_zone", string_value(az))]),
                        ZoneKey::Suffix(_) => Mapping::new(),
                    };
                    Value::Mapping(mapping([
                        ("name", string_value(&zone.name)),
                        ("cloud_properties", Value::Mapping(props)),
                    ]))
                })
                .collect();
            cc.insert(string_value("azs"), Value::Sequence(azs));
        }

        let used_pools: HashSet<usize> = self.jobs.iter().map(|j| j.pool).collect();
        let mut vm_types = Vec::new();
        let mut unused = Vec::new();
        for (p, pool) in self.pools.iter().enumerate() {
            vm_types.push(Value::Mapping(mapping([
                ("name", string_value(&pool.name)),
                ("cloud_properties", Value::Mapping(pool.cloud_properties.clone())),
            ])));
            if !used_pools.contains(&p) {
                unused
                    .push(format!("{}: resource pool `{}` is used by no job; kept as a vm_type", pool.path, pool.name));
            }
        }
        self.warnings.extend(unused);
        cc.insert(string_value("vm_types"), Value::Sequence(vm_types));
        if !self.disk_types.is_empty() {
            cc.insert(string_value("disk_types"), Value::Sequence(self.disk_types.clone()));
        }

        let mut networks = Vec::new();
        let mut emitted: HashSet<String> = HashSet::new();
        for n in 0..self.networks.len() {
            let name = &net_names[n];
            if !emitted.insert(name.clone()) {
                continue;
            }
            let members: Vec<usize> = (0..self.networks.len()).filter(|m| net_names[*m] == *name).collect();
            networks.push(self.render_network(name, &members, az_mode));
        }
        cc.insert(string_value("networks"), Value::Sequence(networks));

        let mut compilation = Mapping::new();
        for (k, v) in &self.compilation.map {
            match key_text(k).as_str() {
                "network" => {
                    compilation.insert(k.clone(), string_value(&net_names[self.compilation.network]));
                }
                "cloud_properties" => {
                    if let Some(z) = self.compilation_zone.filter(|_| az_mode) {
                        compilation.insert(string_value("az"), string_value(&self.zones[z].name));
                    }
                    let props = self.compilation.cloud_properties.clone().unwrap_or_default();
                    compilation.insert(k.clone(), Value::Mapping(props));
                }
                _ => {
                    compilation.insert(k.clone(), v.clone());
                }
            }
        }
        if az_mode
            && !compilation.contains_key("az")
            && let Some(z) = self.compilation_zone
        {
            compilation.insert(string_value("az"), string_value(&self.zones[z].name));
        }
        cc.insert(string_value("compilation"), Value::Mapping(compilation));
        Value::Mapping(cc)
    }

    fn render_network(&self, name: &str, members: &[usize], az_mode: bool) -> Value {
        let first = &self.networks[members[0]];
        let mut out = mapping([("name", string_value(name)), ("type", string_value(first.kind.as_str()))]);
        let subnets_of = |net: &Net| -> Vec<Value> {
            net.subnets
                .iter()
                .map(|s| {
                    let mut m = Mapping::new();
                    match s.zones.as_slice() {
                        [] => {}
                        [z] => {
                            m.insert(string_value("az"), string_value(&self.zones[*z].name));
                        }
                        zones => {
                            m.insert(string_value("azs"), Value::Sequence(self.zone_names(zones)));
                        }
                    }
                    for (k, v) in &s.fields {
                        m.insert(k.clone(), v.clone());
                    }
                    Value::Mapping(m)
                })
                .collect()
        };
        match first.kind {
            NetKind::Manual => {
                for (k, v) in &first.fields {
                    out.insert(k.clone(), v.clone());
                }
                let subnets = members.iter().flat_map(|n| subnets_of(&self.networks[*n])).collect();
                out.insert(string_value("subnets"), Value::Sequence(subnets));
            }
            NetKind::Dynamic if az_mode => {
                // v2 places dynamic networks by az through subnets: one per v1 network, with the
                // azs of the jobs that use it (or its own subnets, when it had some).
                let mut subnets = Vec::new();
                for &n in members {
                    let net = &self.networks[n];
                    if !net.subnets.is_empty() {
                        subnets.extend(subnets_of(net));
                        continue;
                    }
                    let mut zones: Vec<usize> = Vec::new();
                    for job in &self.jobs {
                        if job.networks.iter().any(|jn| jn.net == n)
                            && let Some(z) = job.zone
                            && !zones.contains(&z)
                        {
                            zones.push(z);
                        }
                    }
                    if zones.is_empty() {
                        zones = (0..self.zones.len()).collect();
                    }
                    zones.sort_unstable();
                    let mut subnet = Mapping::new();
                    if zones.len() == 1 {
                        subnet.insert(string_value("az"), string_value(&self.zones[zones[0]].name));
                    } else {
                        subnet.insert(string_value("azs"), Value::Sequence(self.zone_names(&zones)));
                    }
                    for (k, v) in &net.fields {
                        subnet.insert(k.clone(), v.clone());
                    }
                    subnets.push(Value::Mapping(subnet));
                }
                out.insert(string_value("subnets"), Value::Sequence(subnets));
            }
            NetKind::Dynamic | NetKind::Vip => {
                for (k, v) in &first.fields {
                    out.insert(k.clone(), v.clone());
                }
                if !first.subnets.is_empty() {
                    let subnets = members.iter().flat_map(|n| subnets_of(&self.networks[*n])).collect();
                    out.insert(string_value("subnets"), Value::Sequence(subnets));
                }
            }
        }
        Value::Mapping(out)
    }

    fn render_manifest(&mut self, net_names: &[String]) -> Value {
        self.alias_stemcells();
        let az_mode = !self.zones.is_empty();
        let mut out = Mapping::new();
        out.insert(string_value("name"), self.name.clone());
        out.insert(string_value("releases"), self.releases.clone());

        let mut used_stemcells: Vec<usize> = Vec::new();
        for group in &self.groups {
            let s = self.pools[self.jobs[group.members[0]].pool].stemcell;
            if !used_stemcells.contains(&s) {
                used_stemcells.push(s);
            }
        }
        used_stemcells.sort_unstable();
        let stemcells = used_stemcells
            .iter()
            .map(|s| {
                let mut m = mapping([("alias", string_value(&self.stemcells[*s].alias))]);
                for (k, v) in &self.stemcells[*s].spec {
                    m.insert(k.clone(), v.clone());
                }
                Value::Mapping(m)
            })
            .collect();
        out.insert(string_value("stemcells"), Value::Sequence(stemcells));
        out.insert(string_value("update"), self.update.clone());

        let mut groups = Vec::new();
        let mut property_groups = Vec::new();
        let group_count = self.groups.len();
        for g in 0..group_count {
            let (value, has_properties) = self.render_group(g, net_names, az_mode);
            if has_properties {
                property_groups.push(self.groups[g].name.clone());
            }
            groups.push(value);
        }
        if !property_groups.is_empty() {
            self.warn(format!(
                "jobs[*].properties: v1 job-level properties are kept as instance-group `properties` (groups {}), \
                 which BOSH merges over the global properties exactly as v1 did; copying them into `jobs[].properties` \
                 instead would hide the global properties from those jobs",
                names_list(&property_groups)
            ));
        }
        out.insert(string_value("instance_groups"), Value::Sequence(groups));
        if let Some(props) = &self.properties {
            out.insert(string_value("properties"), props.clone());
        }
        for (k, v) in &self.extra_top {
            out.insert(k.clone(), v.clone());
        }
        Value::Mapping(out)
    }

    fn render_group(&mut self, g: usize, net_names: &[String], az_mode: bool) -> (Value, bool) {
        let group = &self.groups[g];
        let lead = &self.jobs[group.members[0]];
        let pool = &self.pools[lead.pool];
        let mut messages = Vec::new();
        let mut out = mapping([("name", string_value(&group.name))]);
        if let Some(lifecycle) = &lead.lifecycle {
            out.insert(string_value("lifecycle"), lifecycle.clone());
        }
        if az_mode {
            let mut zones: Vec<usize> = Vec::new();
            for m in &group.members {
                if let Some(z) = self.jobs[*m].zone
                    && !zones.contains(&z)
                {
                    zones.push(z);
                }
            }
            out.insert(string_value("azs"), Value::Sequence(self.zone_names(&zones)));
        }
        let instances: u64 = group.members.iter().map(|m| self.jobs[*m].instances).sum();
        out.insert(string_value("instances"), Value::from(instances));
        out.insert(string_value("vm_type"), string_value(&pool.name));
        out.insert(string_value("stemcell"), string_value(&self.stemcells[pool.stemcell].alias));
        if let Some((key, value)) = &lead.disk {
            out.insert(string_value(key), value.clone());
        }
        if let Some(env) = lead.env.as_ref().or(pool.env.as_ref()) {
            out.insert(string_value("env"), env.clone());
        }
        if let Some(update) = &lead.update {
            out.insert(string_value("update"), update.clone());
        }

        let mut networks = Vec::new();
        for (p, jn) in lead.networks.iter().enumerate() {
            let mut net = mapping([("name", string_value(&net_names[jn.net]))]);
            let mut ips: Vec<Value> = Vec::new();
            let mut count = 0u64;
            let mut holders = 0;
            for (i, m) in group.members.iter().enumerate() {
                let member_net = &self.jobs[*m].networks[group.pairing[i][p]];
                if !member_net.static_ips.is_empty() {
                    holders += 1;
                }
                count += member_net.static_ips.iter().map(static_ip_count).sum::<u64>();
                ips.extend(member_net.static_ips.iter().cloned());
                if i > 0 && member_net.fields != jn.fields {
                    messages.push(format!(
                        "{}: differs from {} in `default` or other keys; merged instance group `{}` keeps {}",
                        member_net.path, jn.path, group.name, jn.path
                    ));
                }
            }
            if !ips.is_empty() {
                net.insert(string_value("static_ips"), Value::Sequence(ips));
                if count != instances || holders != group.members.len() {
                    messages.push(format!(
                        "{}: instance group `{}` has {instances} instances but {count} static IPs on network `{}`; \
                         v2 needs one static IP per instance",
                        jn.path, group.name, net_names[jn.net]
                    ));
                }
            }
            for (k, v) in &jn.fields {
                net.insert(k.clone(), v.clone());
            }
            networks.push(Value::Mapping(net));
        }
        out.insert(string_value("networks"), Value::Sequence(networks));
        out.insert(string_value("jobs"), Value::Sequence(lead.entries.clone()));
        let has_properties = lead.properties.is_some();
        if let Some(props) = &lead.properties {
            out.insert(string_value("properties"), props.clone());
        }
        for (k, v) in &lead.extra {
            out.insert(k.clone(), v.clone());
        }

        // Differences between merged members: the lead wins, every difference is reported.
        for m in &group.members[1..] {
            let other = &self.jobs[*m];
            let mut diffs = Vec::new();
            diff_values(lead.properties.as_ref(), other.properties.as_ref(), &other.path.key("properties"), &mut diffs);
            diff_values(lead.update.as_ref(), other.update.as_ref(), &other.path.key("update"), &mut diffs);
            let (ld, od) = (lead.disk.as_ref().map(|d| &d.1), other.disk.as_ref().map(|d| &d.1));
            if lead.disk.as_ref().map(|d| d.0) != other.disk.as_ref().map(|d| d.0) || ld != od {
                diffs.push(other.path.key(other.disk.as_ref().map_or("persistent_disk", |d| d.0)));
            }
            let extra_other: Mapping = other.extra.iter().cloned().collect();
            let extra_lead: Mapping = lead.extra.iter().cloned().collect();
            if extra_other != extra_lead {
                diffs.push(other.path.clone());
            }
            if !diffs.is_empty() {
                let shown: Vec<String> = diffs.iter().take(8).map(ToString::to_string).collect();
                let more = if diffs.len() > 8 { format!(" and {} more", diffs.len() - 8) } else { String::new() };
                messages.push(format!(
                    "{}: job `{}` differs from `{}` at {}{more}; merged instance group `{}` keeps `{}`'s values \
                     (per-az values can use `spec.az` in templates)",
                    other.path,
                    other.name,
                    lead.name,
                    shown.join(", "),
                    group.name,
                    lead.name
                ));
            }
        }

        if az_mode || group.members.iter().any(|m| self.jobs[*m].name != group.name) {
            let migrated: Vec<Value> = group
                .members
                .iter()
                .map(|m| {
                    let job = &self.jobs[*m];
                    let mut entry = mapping([("name", string_value(&job.name))]);
                    if let Some(z) = job.zone {
                        entry.insert(string_value("az"), string_value(&self.zones[z].name));
                    }
                    Value::Mapping(entry)
                })
                .collect();
            out.insert(string_value("migrated_from"), Value::Sequence(migrated));
        }
        self.warnings.extend(messages);
        (Value::Mapping(out), has_properties)
    }

    /// Aliases from the stemcell's OS (`bosh-aws-xen-hvm-ubuntu-trusty-go_agent` →
    /// `ubuntu-trusty`), widened with the version, then the full name, only where two collide.
    fn alias_stemcells(&mut self) {
        let text = |spec: &Mapping, key: &str| spec.get(key).and_then(yaml::scalar_text).unwrap_or_default();
        let candidates: [&dyn Fn(&Mapping) -> String; 3] = [
            &|spec| os_alias(&text(spec, "os"), &text(spec, "name")),
            &|spec| format!("{}-{}", os_alias(&text(spec, "os"), &text(spec, "name")), text(spec, "version")),
            &|spec| {
                let n = text(spec, "name");
                let n = if n.is_empty() { text(spec, "os") } else { n };
                format!("{n}-{}", text(spec, "version"))
            },
        ];
        let mut aliases: Vec<String> = vec![String::new(); self.stemcells.len()];
        for level in candidates {
            let proposed: Vec<String> = self.stemcells.iter().map(|s| sanitize_alias(&level(&s.spec))).collect();
            for (i, alias) in proposed.iter().enumerate() {
                if aliases[i].is_empty() && proposed.iter().filter(|a| *a == alias).count() == 1 {
                    aliases[i] = alias.clone();
                }
            }
        }
        let mut taken: HashSet<String> = aliases.iter().filter(|a| !a.is_empty()).cloned().collect();
        for (i, alias) in aliases.iter_mut().enumerate() {
            if alias.is_empty() {
                let mut k = i + 1;
                while taken.contains(&format!("stemcell-{k}")) {
                    k += 1;
                }
                *alias = format!("stemcell-{k}");
                taken.insert(alias.clone());
            }
        }
        for (s, alias) in self.stemcells.iter_mut().zip(aliases) {
            s.alias = alias;
        }
    }
}

fn os_alias(os: &str, name: &str) -> String {
    if !os.is_empty() {
        return os.to_string();
    }
    const OSES: [&str; 8] = ["ubuntu", "centos", "rhel", "windows", "opensuse", "sles", "photon", "alpine"];
    let tokens: Vec<&str> = name.split('-').collect();
    let end = if tokens.last() == Some(&"go_agent") { tokens.len() - 1 } else { tokens.len() };
    match tokens.iter().position(|t| OSES.iter().any(|os| t.starts_with(os))) {
        Some(start) if start < end => tokens[start..end].join("-"),
        _ => name.to_string(),
    }
}

fn sanitize_alias(alias: &str) -> String {
    alias.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect()
}

fn find(parent: &[usize], mut n: usize) -> usize {
    while parent[n] != n {
        n = parent[n];
    }
    n
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        // The earlier network stays the root, so a united network is named and placed after it.
        let (root, child) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent[child] = root;
    }
}

/// Paths where two optional values differ (down to the leaves of mappings).
fn diff_values(a: Option<&Value>, b: Option<&Value>, path: &YamlPath, out: &mut Vec<YamlPath>) {
    match (a.map(untag), b.map(untag)) {
        (None, None) => {}
        (Some(Value::Mapping(ma)), Some(Value::Mapping(mb))) => {
            for (k, va) in ma {
                diff_values(Some(va), mb.get(k), &path.key(key_text(k)), out);
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    diff_values(None, Some(vb), &path.key(key_text(k)), out);
                }
            }
        }
        (x, y) if x == y => {}
        _ => out.push(path.clone()),
    }
}

/// Paths of string values equal to one of `needles`.
fn find_strings(value: &Value, needles: &[String], path: &YamlPath, out: &mut Vec<YamlPath>) {
    match value {
        Value::String(s) if needles.contains(s) => out.push(path.clone()),
        Value::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                find_strings(item, needles, &path.index(i), out);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map {
                find_strings(v, needles, &path.key(key_text(k)), out);
            }
        }
        Value::Tagged(t) => find_strings(&t.value, needles, path, out),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the v1 sections

fn read_networks(root: &Mapping) -> Result<Vec<Net>> {
    let list_path = YamlPath::root().key("networks");
    let mut networks: Vec<Net> = Vec::new();
    for (i, item) in as_seq(required(root, "networks", &YamlPath::root(), SECTION)?, &list_path)?.iter().enumerate() {
        let path = list_path.index(i);
        let map = as_map(item, &path)?;
        let name = name_of(map, &path, "network")?;
        if let Some(first) = networks.iter().find(|n| n.name == name) {
            return Err(MigrateError::Duplicate { path, kind: "network", name, first: first.path.clone() });
        }
        let kind = match field(map, "type").map(|t| as_name(t, &path.key("type"))).transpose()?.as_deref() {
            None | Some("manual") => NetKind::Manual,
            Some("dynamic") => NetKind::Dynamic,
            Some("vip") => NetKind::Vip,
            Some(other) => {
                return Err(MigrateError::Invalid {
                    path: path.key("type"),
                    message: format!("unknown network type `{other}` (manual, dynamic or vip)"),
                });
            }
        };
        let mut fields = Mapping::new();
        for (k, v) in map {
            if !matches!(key_text(k).as_str(), "name" | "type" | "subnets") {
                fields.insert(k.clone(), v.clone());
            }
        }
        let mut subnets = Vec::new();
        match field(map, "subnets") {
            Some(list) => {
                let s_list = path.key("subnets");
                for (j, s) in as_seq(list, &s_list)?.iter().enumerate() {
                    let s_path = s_list.index(j);
                    let s_map = as_map(s, &s_path)?;
                    let (props, cloud_zone) = split_cloud_properties(s_map, &s_path)?;
                    let mut s_fields = Mapping::new();
                    for (k, v) in s_map {
                        match key_text(k).as_str() {
                            "cloud_properties" => {
                                s_fields.insert(k.clone(), Value::Mapping(props.clone().unwrap_or_default()));
                            }
                            "az" | "azs" => {
                                return Err(MigrateError::Invalid {
                                    path: s_path.key(key_text(k)),
                                    message: "a v1 subnet has no az; this manifest is half migrated".into(),
                                });
                            }
                            _ => {
                                s_fields.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    let range = field(s_map, "range").and_then(yaml::scalar_text).and_then(|t| IpRange::parse(&t));
                    let statics = value_ranges(field(s_map, "static"));
                    subnets.push(Subnet { path: s_path, fields: s_fields, cloud_zone, range, statics, zones: vec![] });
                }
            }
            None if kind == NetKind::Manual => {
                return Err(MigrateError::Missing {
                    path: path.key("subnets"),
                    why: format!("manual network `{name}` needs subnets"),
                });
            }
            None => {}
        }
        networks.push(Net { name, path, kind, fields, subnets });
    }
    Ok(networks)
}

fn read_disk_pools(root: &Mapping) -> Result<Vec<Value>> {
    let Some(list) = field(root, "disk_pools") else { return Ok(Vec::new()) };
    let list_path = YamlPath::root().key("disk_pools");
    let mut seen: HashMap<String, YamlPath> = HashMap::new();
    let mut out = Vec::new();
    for (i, item) in as_seq(list, &list_path)?.iter().enumerate() {
        let path = list_path.index(i);
        let map = as_map(item, &path)?;
        let name = name_of(map, &path, "disk pool")?;
        if let Some(first) = seen.get(&name) {
            return Err(MigrateError::Duplicate { path, kind: "disk pool", name, first: first.clone() });
        }
        as_count(required(map, "disk_size", &path, "a disk pool has a disk_size in MiB")?, &path.key("disk_size"))?;
        seen.insert(name, path);
        out.push(Value::Mapping(map.clone()));
    }
    Ok(out)
}

fn read_resource_pools(root: &Mapping, warnings: &mut Vec<String>) -> Result<(Vec<Pool>, Vec<Stemcell>)> {
    let list_path = YamlPath::root().key("resource_pools");
    let mut pools: Vec<Pool> = Vec::new();
    let mut stemcells: Vec<Stemcell> = Vec::new();
    for (i, item) in
        as_seq(required(root, "resource_pools", &YamlPath::root(), SECTION)?, &list_path)?.iter().enumerate()
    {
        let path = list_path.index(i);
        let map = as_map(item, &path)?;
        let name = name_of(map, &path, "resource pool")?;
        if let Some(first) = pools.iter().find(|p| p.name == name) {
            return Err(MigrateError::Duplicate { path, kind: "resource pool", name, first: first.path.clone() });
        }
        let s_path = path.key("stemcell");
        let s_map = as_map(required(map, "stemcell", &path, "a resource pool names its stemcell")?, &s_path)?;
        let mut spec = Mapping::new();
        for (k, v) in s_map {
            match key_text(k).as_str() {
                "name" | "os" => {
                    as_name(v, &s_path.key(key_text(k)))?;
                    spec.insert(k.clone(), v.clone());
                }
                "version" => {
                    spec.insert(k.clone(), v.clone());
                }
                other => warnings.push(format!(
                    "{}: dropped: a v2 manifest's stemcells have only name/os and version",
                    s_path.key(other)
                )),
            }
        }
        if !spec.contains_key("name") && !spec.contains_key("os") {
            return Err(MigrateError::Missing { path: s_path.key("name"), why: "a stemcell has a name".into() });
        }
        if !spec.contains_key("version") {
            return Err(MigrateError::Missing {
                path: s_path.key("version"),
                why: "a stemcell has a version (`latest` is allowed)".into(),
            });
        }
        let stemcell = match stemcells.iter().position(|s| s.spec == spec) {
            Some(s) => s,
            None => {
                stemcells.push(Stemcell { spec, alias: String::new() });
                stemcells.len() - 1
            }
        };
        let (props, cloud_zone) = split_cloud_properties(map, &path)?;
        let env = field(map, "env").cloned();
        for (k, v) in map {
            match key_text(k).as_str() {
                "name" | "stemcell" | "cloud_properties" | "env" => {}
                "network" => warnings.push(format!(
                    "{}: dropped (`{}`): v2 vm_types carry no network; each instance group names its own",
                    path.key("network"),
                    yaml::scalar_text(v).unwrap_or_default()
                )),
                "size" => warnings.push(format!(
                    "{}: dropped: v2 sizes instance groups by their `instances`, not resource pools",
                    path.key("size")
                )),
                other => {
                    warnings.push(format!("{}: dropped: not a resource pool key v2 has a place for", path.key(other)))
                }
            }
        }
        pools.push(Pool { name, path, stemcell, cloud_properties: props.unwrap_or_default(), cloud_zone, env });
    }
    Ok((pools, stemcells))
}

fn read_compilation(root: &Mapping, networks: &[Net]) -> Result<Compilation> {
    let path = YamlPath::root().key("compilation");
    let map = as_map(required(root, "compilation", &YamlPath::root(), SECTION)?, &path)?.clone();
    let net_path = path.key("network");
    let net_name = as_name(required(&map, "network", &path, "compilation names its network")?, &net_path)?;
    let Some(network) = networks.iter().position(|n| n.name == net_name) else {
        return Err(MigrateError::UnknownReference {
            path: net_path,
            kind: "network",
            name: net_name,
            section: "networks",
        });
    };
    let (cloud_properties, cloud_zone) = split_cloud_properties(&map, &path)?;
    Ok(Compilation { path, map, network, cloud_properties, cloud_zone })
}

// ---------------------------------------------------------------------------------------------
// Checking the result

/// Everything an instance group names must exist in the cloud config (or the manifest's
/// stemcells), and every az it uses must be reachable on each of its networks. Returns one
/// message per broken reference; a correct migration returns none.
pub fn check_references(manifest: &Value, cloud_config: &Value) -> Vec<String> {
    let names = |doc: &Value, section: &str, key: &str| -> Vec<String> {
        doc.get(section)
            .and_then(Value::as_sequence)
            .map(|items| items.iter().filter_map(|i| i.get(key).and_then(yaml::scalar_text)).collect())
            .unwrap_or_default()
    };
    let azs = names(cloud_config, "azs", "name");
    let vm_types = names(cloud_config, "vm_types", "name");
    let disk_types = names(cloud_config, "disk_types", "name");
    let stemcells = names(manifest, "stemcells", "alias");
    let networks: HashMap<String, &Value> = cloud_config
        .get("networks")
        .and_then(Value::as_sequence)
        .map(|items| items.iter().filter_map(|n| Some((n.get("name").and_then(yaml::scalar_text)?, n))).collect())
        .unwrap_or_default();
    let strings = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::Sequence(items)) => items.iter().filter_map(yaml::scalar_text).collect(),
            Some(other) => yaml::scalar_text(other).into_iter().collect(),
            None => vec![],
        }
    };

    let mut problems = Vec::new();
    let groups = manifest.get("instance_groups").and_then(Value::as_sequence).cloned().unwrap_or_default();
    for (i, group) in groups.iter().enumerate() {
        let path = YamlPath::root().key("instance_groups").index(i);
        let mut check = |key: &str, known: &[String], what: &str| {
            if let Some(name) = group.get(key).and_then(yaml::scalar_text)
                && !known.contains(&name)
            {
                problems.push(format!("{}: {what} `{name}` is not defined", path.key(key)));
            }
        };
        check("vm_type", &vm_types, "vm_type");
        check("stemcell", &stemcells, "stemcell");
        check("persistent_disk_type", &disk_types, "disk_type");
        let group_azs = strings(group.get("azs"));
        for az in &group_azs {
            if !azs.contains(az) {
                problems.push(format!("{}: az `{az}` is not defined", path.key("azs")));
            }
        }
        for (j, net) in group.get("networks").and_then(Value::as_sequence).into_iter().flatten().enumerate() {
            let Some(name) = net.get("name").and_then(yaml::scalar_text) else { continue };
            let Some(def) = networks.get(&name) else {
                problems.push(format!("{}: network `{name}` is not defined", path.key("networks").index(j)));
                continue;
            };
            let Some(subnets) = def.get("subnets").and_then(Value::as_sequence) else { continue };
            for az in &group_azs {
                let reachable =
                    subnets.iter().any(|s| strings(s.get("az")).contains(az) || strings(s.get("azs")).contains(az));
                if !reachable {
                    problems.push(format!(
                        "{}: network `{name}` has no subnet in az `{az}`",
                        path.key("networks").index(j)
                    ));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Migrated {
        migrate(&yaml::parse(text, "t.yml").unwrap()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fail(text: &str) -> MigrateError {
        match migrate(&yaml::parse(text, "t.yml").unwrap()) {
            Ok(m) => panic!("migrated unexpectedly: {}", yaml::to_string(&m.manifest)),
            Err(e) => e,
        }
    }

    fn group<'a>(m: &'a Migrated, name: &str) -> &'a Value {
        m.manifest["instance_groups"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|g| g["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no instance group {name} in\n{}", yaml::to_string(&m.manifest)))
    }

    fn y(text: &str) -> Value {
        yaml::parse(text, "expected.yml").unwrap()
    }

    const TWO_ZONES: &str = r#"
name: cf
director_uuid: abc
releases: [{name: cf, version: latest}]
networks:
- name: cf1
  subnets:
  - range: 10.0.16.0/24
    static: [10.0.16.100 - 10.0.16.105]
    cloud_properties: {subnet: subnet-a}
- name: cf2
  subnets:
  - range: 10.0.17.0/24
    static: [10.0.17.100 - 10.0.17.105]
    cloud_properties: {subnet: subnet-b}
resource_pools:
- name: small_z1
  network: cf1
  stemcell: {name: bosh-aws-xen-hvm-ubuntu-trusty-go_agent, version: 3262}
  cloud_properties: {availability_zone: us-east-1a, instance_type: m3.medium}
- name: small_z2
  network: cf2
  stemcell: {name: bosh-aws-xen-hvm-ubuntu-trusty-go_agent, version: 3262}
  cloud_properties: {availability_zone: us-east-1b, instance_type: m3.medium}
compilation:
  workers: 2
  network: cf1
  cloud_properties: {availability_zone: us-east-1a, instance_type: c3.large}
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
jobs:
- name: etcd_z1
  instances: 2
  resource_pool: small_z1
  templates: [{name: etcd}]
  networks: [{name: cf1, static_ips: [10.0.16.101, 10.0.16.102]}]
  properties: {etcd: {zone: z1}}
- name: etcd_z2
  instances: 1
  resource_pool: small_z2
  templates: [{name: etcd}]
  networks: [{name: cf2, static_ips: [10.0.17.101]}]
  properties: {etcd: {zone: z2}}
properties:
  networks: {apps: cf1}
"#;

    #[test]
    fn z1_z2_jobs_merge_into_one_group_with_migrated_from() {
        let m = run(TWO_ZONES);
        let groups = m.manifest["instance_groups"].as_sequence().unwrap();
        assert_eq!(groups.len(), 1);
        let etcd = group(&m, "etcd");
        assert_eq!(etcd["azs"], y("[z1, z2]"));
        assert_eq!(etcd["instances"], Value::from(3));
        assert_eq!(etcd["migrated_from"], y("[{name: etcd_z1, az: z1}, {name: etcd_z2, az: z2}]"));
        assert_eq!(etcd["jobs"], y("[{name: etcd, release: cf}]"));
        assert_eq!(etcd["vm_type"], Value::from("small_z1"));
        assert_eq!(etcd["stemcell"], Value::from("ubuntu-trusty"));
        // cf1 and cf2 were used side by side by the merged group: one network, both subnets.
        assert_eq!(etcd["networks"], y("[{name: cf, static_ips: [10.0.16.101, 10.0.16.102, 10.0.17.101]}]"));
        let nets = m.cloud_config["networks"].as_sequence().unwrap();
        assert_eq!(nets.len(), 1);
        assert_eq!(nets[0]["subnets"][0]["az"], Value::from("z1"));
        assert_eq!(nets[0]["subnets"][1]["az"], Value::from("z2"));
        assert_eq!(
            m.cloud_config["azs"],
            y("[{name: z1, cloud_properties: {availability_zone: us-east-1a}}, \
                {name: z2, cloud_properties: {availability_zone: us-east-1b}}]")
        );
        // vm_types keep the resource pool names; the az left their cloud_properties.
        assert_eq!(
            m.cloud_config["vm_types"],
            y("[{name: small_z1, cloud_properties: {instance_type: m3.medium}}, \
                {name: small_z2, cloud_properties: {instance_type: m3.medium}}]")
        );
        assert_eq!(m.cloud_config["compilation"]["az"], Value::from("z1"));
        assert_eq!(m.cloud_config["compilation"]["cloud_properties"], y("{instance_type: c3.large}"));
        assert_eq!(
            m.manifest["stemcells"],
            y("[{alias: ubuntu-trusty, name: bosh-aws-xen-hvm-ubuntu-trusty-go_agent, version: 3262}]")
        );
        // Lost or guessed things are reported with their paths.
        let all = m.warnings.join("\n");
        assert!(all.contains("jobs[1].properties.etcd.zone"), "{all}");
        assert!(all.contains("properties.networks.apps"), "{all}");
        assert!(all.contains("director_uuid"), "{all}");
        assert!(all.contains("resource_pools[0].network"), "{all}");
        assert!(check_references(&m.manifest, &m.cloud_config).is_empty());
    }

    #[test]
    fn job_properties_stay_at_instance_group_level_global_properties_stay_global() {
        let m = run(TWO_ZONES);
        assert_eq!(group(&m, "etcd")["properties"], y("{etcd: {zone: z1}}"));
        assert!(group(&m, "etcd")["jobs"][0].get("properties").is_none());
        assert_eq!(m.manifest["properties"], y("{networks: {apps: cf1}}"));
        assert!(m.warnings.iter().any(|w| w.starts_with("properties: kept as global")), "{:?}", m.warnings);
    }

    const ONE_ZONE: &str = r#"
name: dep
releases: [{name: r1, version: latest}]
networks:
- name: default
  subnets:
  - {range: 10.0.0.0/24, gateway: 10.0.0.1, cloud_properties: {subnet: s}}
resource_pools:
- name: small
  stemcell: {name: bosh-warden-boshlite-ubuntu-trusty-go_agent, version: latest}
  cloud_properties: {availability_zone: az-a}
  env: {bosh: {password: x}}
compilation: {workers: 1, network: default, cloud_properties: {}}
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
jobs:
- name: web
  template: nginx
  instances: 2
  resource_pool: small
  networks: [{name: default}]
"#;

    #[test]
    fn single_template_string_uses_the_only_release() {
        let m = run(ONE_ZONE);
        let web = group(&m, "web");
        assert_eq!(web["jobs"], y("[{name: nginx, release: r1}]"));
        assert_eq!(web["azs"], y("[z1]"));
        assert_eq!(web["env"], y("{bosh: {password: x}}"));
        // Not renamed, but its existing instances still need an az.
        assert_eq!(web["migrated_from"], y("[{name: web, az: z1}]"));
        assert_eq!(m.cloud_config["networks"][0]["subnets"][0]["az"], Value::from("z1"));
        assert!(m.warnings.iter().any(|w| w.starts_with("networks[0].subnets[0]: no availability_zone")));
        assert_eq!(m.cloud_config["compilation"]["az"], Value::from("z1"));
    }

    #[test]
    fn template_list_and_job_release() {
        let text = ONE_ZONE
            .replace(
                "releases: [{name: r1, version: latest}]",
                "releases: [{name: r1, version: 1}, {name: r2, version: 2}]",
            )
            .replace("  template: nginx\n", "  template: [nginx, proxy]\n  release: r2\n");
        let m = run(&text);
        assert_eq!(group(&m, "web")["jobs"], y("[{name: nginx, release: r2}, {name: proxy, release: r2}]"));
    }

    #[test]
    fn template_without_release_among_several_is_an_error_with_path() {
        let text = ONE_ZONE.replace(
            "releases: [{name: r1, version: latest}]",
            "releases: [{name: r1, version: 1}, {name: r2, version: 2}]",
        );
        let err = fail(&text);
        assert_eq!(err.path().to_string(), "jobs[0].template.release");
    }

    #[test]
    fn disk_pools_become_disk_types() {
        let text = ONE_ZONE.replace(
            "compilation:",
            "disk_pools:\n- {name: fast, disk_size: 10240, cloud_properties: {type: gp2}}\ncompilation:",
        ) + "  persistent_disk_pool: fast\n- name: db\n  template: pg\n  instances: 1\n  persistent_disk: 2048\n  resource_pool: small\n  networks: [{name: default}]\n";
        let m = run(&text);
        assert_eq!(m.cloud_config["disk_types"], y("[{name: fast, disk_size: 10240, cloud_properties: {type: gp2}}]"));
        assert_eq!(group(&m, "web")["persistent_disk_type"], Value::from("fast"));
        assert!(group(&m, "web").get("persistent_disk_pool").is_none());
        assert_eq!(group(&m, "db")["persistent_disk"], Value::from(2048));
    }

    #[test]
    fn unknown_disk_pool_is_an_error_with_path() {
        let err = fail(&(ONE_ZONE.to_string() + "  persistent_disk_pool: nope\n"));
        assert_eq!(err.path().to_string(), "jobs[0].persistent_disk_pool");
        assert!(err.to_string().contains("disk pool `nope`"), "{err}");
    }

    #[test]
    fn dynamic_networks_get_a_subnet_per_az() {
        let text = r#"
name: dep
releases: [{name: r1, version: latest}]
networks:
- name: dyn
  type: dynamic
  dns: [8.8.8.8]
  cloud_properties: {net_id: abc}
- name: public
  type: vip
resource_pools:
- name: small_z1
  stemcell: {name: bosh-openstack-kvm-ubuntu-trusty-go_agent, version: 3}
  cloud_properties: {availability_zone: nova-a, instance_type: m1.small}
- name: small_z2
  stemcell: {name: bosh-openstack-kvm-ubuntu-trusty-go_agent, version: 3}
  cloud_properties: {availability_zone: nova-b, instance_type: m1.small}
compilation: {workers: 1, network: dyn, cloud_properties: {availability_zone: nova-a}}
update: {canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}
jobs:
- {name: router_z1, template: gorouter, instances: 1, resource_pool: small_z1, networks: [{name: dyn, default: [dns, gateway]}, {name: public, static_ips: [1.2.3.4]}]}
- {name: router_z2, template: gorouter, instances: 1, resource_pool: small_z2, networks: [{name: dyn, default: [dns, gateway]}, {name: public, static_ips: [1.2.3.5]}]}
"#;
        let m = run(text);
        assert_eq!(
            m.cloud_config["networks"],
            y(
                "[{name: dyn, type: dynamic, subnets: [{azs: [z1, z2], dns: [8.8.8.8], cloud_properties: {net_id: abc}}]}, \
                {name: public, type: vip}]"
            )
        );
        let router = group(&m, "router");
        assert_eq!(router["azs"], y("[z1, z2]"));
        assert_eq!(
            router["networks"],
            y("[{name: dyn, default: [dns, gateway]}, {name: public, static_ips: [1.2.3.4, 1.2.3.5]}]")
        );
        assert!(check_references(&m.manifest, &m.cloud_config).is_empty());
    }

    #[test]
    fn job_without_resource_pool_is_an_error_with_path() {
        let err = fail(&ONE_ZONE.replace("  resource_pool: small\n", ""));
        assert_eq!(err.path().to_string(), "jobs[0].resource_pool");
        assert!(matches!(err, MigrateError::Missing { .. }));
        assert!(err.to_string().starts_with("jobs[0].resource_pool: missing"), "{err}");
    }

    #[test]
    fn unknown_resource_pool_is_an_error_with_path() {
        let err = fail(&ONE_ZONE.replace("  resource_pool: small\n", "  resource_pool: large\n"));
        assert_eq!(err.path().to_string(), "jobs[0].resource_pool");
        assert!(err.to_string().contains("resource pool `large` is not defined under `resource_pools`"), "{err}");
    }

    #[test]
    fn members_with_different_vm_properties_are_not_merged() {
        let text = TWO_ZONES.replace(
            "cloud_properties: {availability_zone: us-east-1b, instance_type: m3.medium}",
            "cloud_properties: {availability_zone: us-east-1b, instance_type: m3.large}",
        );
        let m = run(&text);
        let names: Vec<&Value> =
            m.manifest["instance_groups"].as_sequence().unwrap().iter().map(|g| &g["name"]).collect();
        assert_eq!(names, vec![&Value::from("etcd"), &Value::from("etcd_z2")]);
        assert!(m.warnings.iter().any(|w| w.starts_with("jobs[1]: job `etcd_z2` is not merged")), "{:?}", m.warnings);
        // Without the merge cf1 and cf2 stay separate networks.
        assert_eq!(m.cloud_config["networks"].as_sequence().unwrap().len(), 2);
        assert!(check_references(&m.manifest, &m.cloud_config).is_empty());
    }

    #[test]
    fn zones_known_only_from_names_become_azs_without_cloud_properties() {
        let text = TWO_ZONES
            .replace("availability_zone: us-east-1a, ", "")
            .replace("availability_zone: us-east-1b, ", "")
            .replace("{availability_zone: us-east-1a, instance_type: c3.large}", "{instance_type: c3.large}");
        let m = run(&text);
        assert_eq!(m.cloud_config["azs"], y("[{name: z1, cloud_properties: {}}, {name: z2, cloud_properties: {}}]"));
        assert_eq!(group(&m, "etcd")["azs"], y("[z1, z2]"));
        assert!(m.warnings.iter().any(|w| w.contains("az `z2` has empty cloud_properties")));
    }

    #[test]
    fn az_names_follow_the_z_suffixes_not_the_listing_order() {
        // small_z2 is listed before small_z1; its zone is still z2.
        let z1 = "- name: small_z1\n  network: cf1\n  stemcell: {name: bosh-aws-xen-hvm-ubuntu-trusty-go_agent, version: 3262}\n  cloud_properties: {availability_zone: us-east-1a, instance_type: m3.medium}\n";
        let z2 = z1.replace("small_z1", "small_z2").replace("cf1", "cf2").replace("us-east-1a", "us-east-1b");
        assert!(TWO_ZONES.contains(z1) && TWO_ZONES.contains(&z2));
        let text = TWO_ZONES.replace(z1, "@@").replace(&z2, z1).replace("@@", &z2);
        let text = text.replace(
            "cloud_properties: {availability_zone: us-east-1a, instance_type: c3.large}",
            "cloud_properties: {instance_type: c3.large}",
        );
        let m = run(&text);
        assert_eq!(
            m.cloud_config["azs"],
            y("[{name: z1, cloud_properties: {availability_zone: us-east-1a}}, \
                {name: z2, cloud_properties: {availability_zone: us-east-1b}}]")
        );
        assert_eq!(group(&m, "etcd")["migrated_from"], y("[{name: etcd_z1, az: z1}, {name: etcd_z2, az: z2}]"));
    }

    #[test]
    fn spiff_expressions_are_told_apart_from_v2_variables() {
        for spiff in [
            "(( merge ))",
            "(( meta.environment ))",
            r#"(( "a" "b" ))"#,
            "(( static_ips(0, 1) ))",
            "((a || b))",
            "(( name ))",
        ] {
            assert!(is_spiff_expression(spiff), "{spiff}");
        }
        for plain in [
            "((name))",
            "((/director/dep/secret))",
            "((cert.private_key))",
            "((!literal))",
            "https://((domain))",
            "((a)) ((b))",
            "plain",
            "(not)",
        ] {
            assert!(!is_spiff_expression(plain), "{plain}");
        }
    }

    #[test]
    fn spiff_templates_are_refused_with_the_first_expression() {
        let err = fail("name: x\njobs:\n- name: a\n  instances: (( merge ))\n  networks: (( other ))\n");
        assert_eq!(err.path().to_string(), "jobs[0].instances");
        assert!(err.to_string().contains("spiff"), "{err}");
        assert!(err.to_string().contains("(( merge ))"), "{err}");
    }

    #[test]
    fn v2_manifests_and_stubs_are_refused() {
        let err = fail("name: x\ninstance_groups: []\n");
        assert!(matches!(err, MigrateError::AlreadyV2 { .. }));
        assert!(err.to_string().contains("needs no migration"), "{err}");
        let err = fail("properties: {a: 1}\n");
        assert!(err.to_string().contains("no `jobs`"), "{err}");
        let err = fail("jobs: [{name: a, instances: 1}]\n");
        assert!(
            err.to_string().contains("`name`, `releases`, `networks`, `resource_pools`, `compilation`, `update`"),
            "{err}"
        );
    }

    #[test]
    fn stemcells_are_deduplicated_and_aliases_widen_only_on_collision() {
        let text = ONE_ZONE.replace(
            "compilation:",
            "- name: big\n  stemcell: {name: bosh-warden-boshlite-ubuntu-trusty-go_agent, version: latest}\n  cloud_properties: {availability_zone: az-a}\n- name: new\n  stemcell: {name: bosh-warden-boshlite-ubuntu-trusty-go_agent, version: 3421}\n  cloud_properties: {availability_zone: az-a}\ncompilation:",
        ) + "- {name: a, template: x, instances: 1, resource_pool: big, networks: [{name: default}]}\n- {name: b, template: y, instances: 1, resource_pool: new, networks: [{name: default}]}\n";
        let m = run(&text);
        let aliases: Vec<&Value> = m.manifest["stemcells"].as_sequence().unwrap().iter().map(|s| &s["alias"]).collect();
        assert_eq!(aliases, vec![&Value::from("ubuntu-trusty-latest"), &Value::from("ubuntu-trusty-3421")]);
        assert_eq!(group(&m, "a")["stemcell"], Value::from("ubuntu-trusty-latest"));
        assert_eq!(group(&m, "b")["stemcell"], Value::from("ubuntu-trusty-3421"));
    }

    #[test]
    fn a_deployment_without_any_zone_stays_az_less() {
        let text = ONE_ZONE.replace("  cloud_properties: {availability_zone: az-a}\n", "");
        let m = run(&text);
        assert!(m.cloud_config.get("azs").is_none());
        assert!(group(&m, "web").get("azs").is_none());
        assert!(group(&m, "web").get("migrated_from").is_none());
        assert!(m.cloud_config["networks"][0]["subnets"][0].get("az").is_none());
        assert!(m.cloud_config["compilation"].get("az").is_none());
    }

    #[test]
    fn ip_ranges() {
        let r = IpRange::parse("10.0.16.100 - 10.0.16.105").unwrap();
        assert_eq!(r.len(), 6);
        assert!(r.contains(parse_ip("10.0.16.103").unwrap()));
        let cidr = IpRange::parse("10.0.16.0/24").unwrap();
        assert!(cidr.contains(parse_ip("10.0.16.255").unwrap()));
        assert!(!cidr.contains(parse_ip("10.0.17.0").unwrap()));
        assert_eq!(static_ip_count(&Value::from("REPLACE_WITH_ELASTIC_IP")), 1);
    }
}

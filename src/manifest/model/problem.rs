//! What is wrong with a document, said with the place it is wrong.
//!
//! Owns [`Problem`] (which document, which YAML path, what kind of problem), the kinds
//! ([`ProblemKind`], a `thiserror` enum whose `Display` is the message an operator reads), the
//! named things a manifest refers to ([`Item`]), and the two ways a read ends: [`Outcome`] (best
//! effort: the model with broken entries left out, plus every problem and warning — what
//! `validate` uses) and `Result<Loaded<T>, ModelError>` (strict: any problem is an error).
//! Callers match on [`ProblemKind`] variants, never on message text.

use std::fmt;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::manifest::yaml::YamlPath;

/// The document a problem was found in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Document {
    Manifest,
    CloudConfig,
    /// A runtime config, by the name it was given (`bosh update-runtime-config --name`, or its
    /// file).
    RuntimeConfig(String),
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Document::Manifest => f.write_str("manifest"),
            Document::CloudConfig => f.write_str("cloud config"),
            Document::RuntimeConfig(name) => write!(f, "runtime config '{name}'"),
        }
    }
}

/// A named thing that documents define and refer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Item {
    Az,
    Network,
    VmType,
    VmExtension,
    DiskType,
    Release,
    Stemcell,
    InstanceGroup,
    Job,
    Variable,
    Addon,
    PersistentDisk,
    StaticIp,
}

impl Item {
    /// The word bosh operators use for it, as in `vm_type 'large'`.
    pub fn as_str(self) -> &'static str {
        match self {
            Item::Az => "az",
            Item::Network => "network",
            Item::VmType => "vm_type",
            Item::VmExtension => "vm_extension",
            Item::DiskType => "disk_type",
            Item::Release => "release",
            Item::Stemcell => "stemcell",
            Item::InstanceGroup => "instance group",
            Item::Job => "job",
            Item::Variable => "variable",
            Item::Addon => "addon",
            Item::PersistentDisk => "persistent disk",
            Item::StaticIp => "static IP",
        }
    }

    /// How "not found" reads for a reference to this item.
    fn not_found(self) -> &'static str {
        match self {
            Item::Az => "is not defined in the cloud config's azs",
            Item::Network => "is not defined in the cloud config's networks",
            Item::VmType => "is not defined in the cloud config's vm_types",
            Item::VmExtension => "is not defined in the cloud config's vm_extensions",
            Item::DiskType => "is not defined in the cloud config's disk_types",
            Item::Release => "is not listed under releases",
            Item::Stemcell => "is not an alias listed under stemcells",
            Item::InstanceGroup => "is not an instance group of this deployment",
            Item::Job => "is not a job of this instance group",
            Item::Variable => "is not listed under variables",
            Item::Addon => "is not an addon",
            Item::PersistentDisk => "is not a persistent disk",
            Item::StaticIp => "is not a static IP",
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is wrong. The `Display` text is the message shown after the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    /// The value has the wrong shape (`instances: two`).
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: String },
    /// A required key is absent; the path is the map that lacks it.
    #[error("missing required key '{key}'")]
    MissingKey { key: &'static str },
    /// A name is defined twice in one list.
    #[error("{what} '{name}' is defined more than once (first at {first})")]
    Duplicate { what: Item, name: String, first: YamlPath },
    /// A reference to a name that is not defined where it has to be.
    #[error("{what} '{name}' {}", .what.not_found())]
    UnknownReference { what: Item, name: String },
    /// A value of the right shape that bosh would refuse; the text says why.
    #[error("{0}")]
    Invalid(String),
    /// A key rosh does not know (a warning: it is ignored).
    #[error("unknown key '{key}' is ignored")]
    UnknownKey { key: String },
    /// An entry that is an unresolved variable where rosh needs to see inside it (a warning:
    /// what it holds is not checked).
    #[error("'{var}' is an unresolved variable; its contents are not checked")]
    Unresolved { var: String },
}

impl ProblemKind {
    /// A stable short code for machine consumers (`--json`).
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::WrongType { .. } => "wrong-type",
            ProblemKind::MissingKey { .. } => "missing-key",
            ProblemKind::Duplicate { .. } => "duplicate",
            ProblemKind::UnknownReference { .. } => "unknown-reference",
            ProblemKind::Invalid(_) => "invalid",
            ProblemKind::UnknownKey { .. } => "unknown-key",
            ProblemKind::Unresolved { .. } => "unresolved",
        }
    }
}

/// One problem: where (document and YAML path) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct Problem {
    pub document: Document,
    pub path: YamlPath,
    pub kind: ProblemKind,
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match &self.document {
            Document::Manifest => map.serialize_entry("document", "manifest")?,
            Document::CloudConfig => map.serialize_entry("document", "cloud_config")?,
            Document::RuntimeConfig(name) => {
                map.serialize_entry("document", "runtime_config")?;
                map.serialize_entry("runtime_config", name)?;
            }
        }
        map.serialize_entry("path", &self.path.to_string())?;
        map.serialize_entry("code", self.kind.code())?;
        map.serialize_entry("message", &self.kind.to_string())?;
        map.end()
    }
}

/// A best-effort read: the model with every entry that could be built, and everything found
/// wrong on the way. An entry whose name is missing or malformed is left out of `model`; any
/// other required value that is missing or malformed is [`Param::unknown`](super::Param::unknown)
/// there, so that the checks which need it skip it instead of reporting it twice.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    pub model: T,
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl<T> Outcome<T> {
    /// Strict view: any problem makes the read fail.
    pub fn into_result(self) -> Result<Loaded<T>, ModelError> {
        if self.problems.is_empty() {
            Ok(Loaded { model: self.model, warnings: self.warnings })
        } else {
            Err(ModelError { problems: self.problems })
        }
    }
}

/// A document that read without problems, and the warnings it carries (unknown keys, …).
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub model: T,
    pub warnings: Vec<Problem>,
}

/// A document that did not read: every problem found, in document order.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", render_all(.problems))]
pub struct ModelError {
    pub problems: Vec<Problem>,
}

fn render_all(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| format!("{}: {p}", p.document)).collect();
    lines.join("\n")
}

//! The validated deployment model: v2 deployment manifests, cloud configs and runtime configs,
//! and the checks between them.
//!
//! Raw, then validated: each document has a raw serde struct that mirrors its YAML
//! ([`RawDeployment`], [`RawCloudConfig`], [`RawRuntimeConfig`]) and a model built from it
//! ([`Deployment`], [`CloudConfig`], [`RuntimeConfig`]) whose `from_value` / `from_raw` resolve
//! every reference inside the document and report problems with the YAML path they are at
//! (`instance_groups[2].jobs[0]: release 'nginx' is not listed under releases`). [`validate`]
//! then checks a manifest against a cloud config and runtime configs and returns a [`Report`]
//! of every problem found, not just the first.
//!
//! Documents may still hold `((variables))` anywhere; a value that is one stays a
//! [`Param::Var`] and the checks that need it are skipped. Pure: parsed YAML in, models and
//! problems out; reading files and interpolating variables are `cli`'s business.

mod cloud_config;
mod common;
pub mod cpi_config;
mod deployment;
pub mod ip;
mod param;
mod problem;
mod raw;
mod runtime_config;
mod validate;

pub use cloud_config::{
    Az, CloudConfig, Compilation, DiskType, Network, NetworkType, RawAz, RawCloudConfig, RawCompilation, RawDiskType,
    RawNetwork, RawSubnet, RawVmType, Subnet, VmExtension, VmType,
};
pub use common::{
    Addon, CustomProvider, Job, JobRule, Lifecycle, Placement, RawAddon, RawCustomProvider, RawJob, RawJobRule,
    RawPlacement, RawRelease, RawReleaseStemcell, RawStemcellRule, RawVariable, Release, ReleaseStemcell, UpdateMode,
    VARIABLE_TYPES, Variable, Version,
};
pub use deployment::{
    Amount, AzUpdateStrategy, DefaultFor, Deployment, Features, InstanceGroup, MigratedFrom, NetworkRef,
    PersistentDisk, RawDeployment, RawFeatures, RawInstanceGroup, RawMigratedFrom, RawNetworkRef, RawPersistentDisk,
    RawStemcell, RawUpdate, RawVmResources, Stemcell, Update, UpdateOrder, VmResources, VmStrategy, WatchTime,
};
pub use param::{Param, has_var};
pub use problem::{Document, Item, Loaded, ModelError, Outcome, Problem, ProblemKind};
pub use raw::{Flag, Int, Raw, Shape, Text};
pub use runtime_config::{RawRuntimeConfig, RuntimeConfig};
pub use validate::{Report, check, validate};

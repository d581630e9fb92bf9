//! PURE: from a manifest, its configs and the uploaded releases to what should exist
//! ([`desired`], built by [`build`]), the graphs that order it ([`graph`]), and from there to
//! the changes that make it so. No IO here: records and observations are passed in, values
//! come out.

mod addons;
pub mod build;
pub mod changes;
pub mod desired;
pub mod diff;
pub mod graph;
mod ips;
mod links;
mod placement;
pub mod reconcile;
pub mod rollout;
pub mod versions;

pub use build::{DesiredInput, KnownInstance, PlanError, PlanErrorKind, build, random_id};
pub use graph::{CycleError, LinkEdge, LinkGraph, OrderError, batches, package_order};

//! rosh — a BOSH-like deployment orchestrator.
//!
//! The crate is a library with a thin binary on top (`src/main.rs`). Layers, from the top:
//! `cli` (commands, output, progress) → `manifest` (YAML, go-patch ops, `((variables))`,
//! variable generation, the validated deployment model, v1 import). `manifest` does no IO of its
//! own: files are read by `cli` and handed down as text.

pub mod agent;
pub mod blobstore;
pub mod cli;
pub mod compat;
pub mod compile;
pub mod converge;
pub mod health;
pub mod manifest;
pub mod plan;
pub mod release;
pub mod ssh;
pub mod state;
pub mod template;

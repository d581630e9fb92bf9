//! Executes plans against the world: CPIs, SSH, the blobstore and the state, recording the
//! state after each effect. So far it owns the choice of CPI ([`cpis`]); the converge steps land
//! with the deploy pipeline.

pub mod cpis;
pub mod deploy;
pub mod report;
pub mod spec;
pub mod vm;

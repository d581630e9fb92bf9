//! Keeping a deployed deployment healthy (DESIGN §2 `health/`): the cck scan ([`scan`]), the
//! problems it reads and the resolutions it offers ([`problem`], pure), applying them
//! ([`resolve`]; recreating goes through the converge path, handed in as a
//! [`resolve::Recreator`]), the meltdown guard ([`meltdown`], pure), the resurrector loop
//! ([`watch`]) and rebuilding a lost state from the cloud ([`recover`]).
//!
//! Leaves to others: what a deployment should be (`plan`), making and converging VMs
//! (`converge`), drawing anything (`cli`).

pub mod meltdown;
pub mod problem;
pub mod recover;
pub mod resolve;
pub mod scan;
pub mod watch;

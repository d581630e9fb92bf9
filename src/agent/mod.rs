//! The VM side of rosh (run as `rosh agent …`): the agent verbs, the process supervisor, and on
//! the local CPI the SSH server that is the VM's front door. See [`protocol`] for the verbs.
//!
//! Owns everything that happens inside a VM's root: blobs put by the director ([`blobs`]),
//! packages and jobs unpacked and linked by `apply`, scripts and packaging runs ([`exec`]),
//! job processes kept running ([`supervisor`], defined by [`procdef`], controlled through
//! [`control`]), and the embedded SSH server ([`server`]). Leaves to the director
//! ([`crate::ssh`]) deciding what to apply and when; the agent does what it is told and reports.
//!
//! One code path serves both ways a verb arrives: [`run_verb`] takes the request on a reader and
//! writes the answer on a writer, so `rosh agent --root R VERB` under OpenSSH and an exec on the
//! embedded server behave identically. Likewise the supervisor always listens on
//! `sys/run/supervisor.sock`, whether it runs in `serve` or as the `supervise` daemon, so verbs
//! never need to know which.

pub mod blobs;
pub mod control;
pub mod exec;
mod os;
pub mod procdef;
pub mod protocol;
pub mod root;
pub mod server;
pub mod supervisor;
pub mod verbs;

pub use root::Root;
pub use server::{ServeOptions, serve};
pub use supervisor::supervise;
pub use verbs::run_verb;

/// Why a verb (or a step of one) failed: a message for the operator, carried to the director
/// inside [`protocol::AgentError`]. A plain message rather than an enum: nothing matches on the
/// cause, which travels as text over SSH anyway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a lower-level error: `.ctx(|| format!("reading {path}"))`.
pub(crate) trait Context<T> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what().into())))
    }
}

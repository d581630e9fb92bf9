//! The director side of the agent protocol: an SSH client with pinned host keys.
//!
//! [`keys`] holds the director's login key and host-key comparison, [`client`] one SSH
//! connection per VM (pinned host key, retries while a VM boots, many execs as channels,
//! per-step timeouts), [`agent_client`] the typed agent verbs on top of it (blob uploads that
//! skip what the VM holds, installing the agent binary on OpenSSH machines), and [`wipe`] the
//! static CPI's hook for returning a machine to its pool. Nothing here decides what to converge:
//! that is the caller's plan.

pub mod agent_client;
pub mod client;
pub mod keys;
pub mod wipe;

pub use agent_client::{
    AgentBinary, AgentCallError, AgentClient, EnsuredAgent, UploadSummary, ensure_agent, ensure_agent_binary,
};
pub use client::{ConnectOptions, Connection, ExecOutput, ExitStatus, SshError, StreamedExit};
pub use keys::{DirectorKey, KeyError};
pub use wipe::AgentWiper;

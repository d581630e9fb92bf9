//! The VM side of rosh (run as `rosh agent …`): the agent verbs, the process supervisor, and on
//! the local CPI the SSH server that is the VM's front door. See [`protocol`] for the verbs.

pub mod protocol;

//! The director side of the agent protocol: an SSH client with pinned host keys.

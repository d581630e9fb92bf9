//! Rebuilding a lost state from the cloud (placeholder, filled in below).

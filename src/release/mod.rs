//! Releases and stemcells in BOSH's formats: the documents inside them ([`manifest`]), reading
//! and verifying tarballs, and building releases from a source directory.
//!
//! Parsing is pure (text in, values out); reading archives works on any `Read` handed in, so the
//! caller decides where bytes come from (a file, an HTTP body) and where verified blobs go.

pub mod create;
pub mod fingerprint;
pub mod manifest;
pub mod stemcell_create;

//! Releases and stemcells in BOSH's formats: the documents inside them ([`manifest`]), reading
//! and verifying tarballs, and building releases from a source directory.
//!
//! Parsing ([`manifest`]) is pure: text in, values out. Reading archives works on any `Read`
//! handed in, so the caller decides where bytes come from (a file, an HTTP body) and where
//! verified blobs go. Building (`create`, `fingerprint`, `stemcell_create`) reads a release
//! source directory and writes its build records and tarballs there, as bosh-cli does.

pub mod archive;
pub mod create;
pub mod digest;
pub mod fingerprint;
pub mod manifest;
pub mod stemcell;
pub mod stemcell_create;
pub mod tarball;

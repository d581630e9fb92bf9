//! The blobstore: content-addressed storage for job, package, compiled-package and stemcell blobs.
//!
//! Owns: the [`Blobstore`] trait (so an S3 backend can sit beside the local one), blob names
//! (the lowercase hex SHA-256 of the content), and the guarantee that a stored blob is complete and
//! has the digest it is named by: writes are atomic and the digest is re-checked on every read.
//! Leaves to others: which blobs are still needed (the state's `referenced_blobs` answers that; the
//! caller deletes what a release deletion orphaned) and what the bytes mean.
//!
//! Decisions worth knowing:
//! - A blob is named by SHA-256 only; SHA-1 is computed alongside because BOSH release manifests
//!   still carry SHA-1 digests, so a caller can check either without reading the stream twice.
//! - Writes can be staged ([`Blobstore::stage`]) and committed or dropped later, so an upload
//!   that is refused after some of its artifacts were stored leaves the store as it was — and never
//!   deletes a blob another upload put there meanwhile, as "put, then delete on failure" would.
//! - `put` of content already present keeps the existing file (one copy) when its size matches.
//!   It does not re-read the old copy: use [`Blobstore::verify`], then `delete` and `put`, to repair
//!   a corrupt blob (what `--fix` does).
//! - [`Blobstore::open`] checks the digest when the reader reaches EOF, so the check costs no second
//!   pass; a caller that stops early must drain the reader to get the check.

mod local;

use std::io::{self, Read};
use std::path::PathBuf;

// Digests are a release-format concept (`sha1:` fields); the blobstore hashes with them.
pub use crate::release::digest::{DigestParseError, DigestingReader, ExpectedDigest, Hasher, Hashes};
pub use local::LocalBlobstore;

/// What [`Blobstore::put`] stored: the blob's name (`sha256`), its SHA-1 and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlobRef {
    /// Lowercase hex SHA-256; the blob's name.
    pub sha256: String,
    /// Lowercase hex SHA-1.
    pub sha1: String,
    pub size: u64,
}

impl From<Hashes> for BlobRef {
    fn from(h: Hashes) -> BlobRef {
        BlobRef { sha256: h.sha256, sha1: h.sha1, size: h.size }
    }
}

impl From<BlobRef> for Hashes {
    fn from(b: BlobRef) -> Hashes {
        Hashes { sha1: b.sha1, sha256: b.sha256, size: b.size }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobstoreError {
    #[error("blobstore: {action} {}: {source}", path.display())]
    Io { action: &'static str, path: PathBuf, source: io::Error },
    #[error("blobstore: reading the blob to store: {0}")]
    Source(#[source] io::Error),
    #[error("blob sha256:{0} is not in the blobstore")]
    NotFound(String),
    #[error("`{0}` is not a blob name (expected 64 lowercase hex characters of a SHA-256)")]
    InvalidName(String),
    #[error("digest mismatch: expected {expected}, the content has {actual} ({size} bytes); nothing was stored")]
    DigestMismatch { expected: ExpectedDigest, actual: ExpectedDigest, size: u64 },
    /// For backends other than the local directory (S3 and the like).
    #[error("blobstore backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = BlobstoreError> = std::result::Result<T, E>;

/// A content-addressed store of blobs named by their SHA-256.
pub trait Blobstore: Send + Sync {
    /// Streams `reader` into provisional storage, hashing it on the way. The blob is not in the
    /// store (not listed, not `contains`) until [`StagedBlob::commit`]; dropping the staged blob
    /// discards it. This is how an upload stores a release's artifacts before it has judged the
    /// release: commit all if it is accepted, drop all if not, and the store is as it was.
    fn stage(&self, reader: &mut dyn Read) -> Result<Box<dyn StagedBlob>>;

    /// Streams `reader` into the store and returns its name and digests. Atomic: on error nothing
    /// is left behind and an existing blob is untouched.
    fn put(&self, reader: &mut dyn Read) -> Result<BlobRef> {
        self.stage(reader)?.commit()
    }

    /// Like [`Blobstore::put`], but refuses — storing nothing — when the stream's digest is not
    /// `expected`.
    fn put_expecting(&self, reader: &mut dyn Read, expected: &ExpectedDigest) -> Result<BlobRef> {
        let staged = self.stage(reader)?;
        let hashes = Hashes::from(staged.blob().clone());
        if !expected.matches(&hashes) {
            return Err(BlobstoreError::DigestMismatch {
                expected: expected.clone(),
                actual: expected.actual(&hashes),
                size: hashes.size,
            });
        }
        staged.commit()
    }

    /// A reader over the blob. At EOF it checks the content against the name and fails with
    /// `io::ErrorKind::InvalidData`, naming the blob, if they differ.
    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>>;

    fn contains(&self, sha256: &str) -> Result<bool>;

    /// Removes the blob; `Ok(false)` if it was not there.
    fn delete(&self, sha256: &str) -> Result<bool>;

    /// Re-reads the blob: `Ok(false)` if its content no longer hashes to its name.
    fn verify(&self, sha256: &str) -> Result<bool>;

    fn size(&self, sha256: &str) -> Result<u64>;

    /// Every blob name, sorted.
    fn list(&self) -> Result<Vec<String>>;
}

/// A blob written and hashed by [`Blobstore::stage`] but not yet in the store. Dropping it
/// discards it.
pub trait StagedBlob: Send {
    /// What the blob will be stored as.
    fn blob(&self) -> &BlobRef;

    /// Makes the blob part of the store (durably). Content already stored keeps its one copy.
    fn commit(self: Box<Self>) -> Result<BlobRef>;
}

/// The read error [`Blobstore::open`]'s reader returns when the content does not match its name.
pub(crate) fn corrupt_blob_error(sha256: &str, actual: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("blob sha256:{sha256} is corrupt: its content hashes to sha256:{actual}"),
    )
}

//! The local-directory blobstore, rosh's default (`<state dir>/blobs`).
//!
//! Layout: `sha256/ab/cdef…` holds the blob whose SHA-256 is `abcdef…` (the first two hex
//! characters as a directory keep directories small); `tmp/` holds writes in progress and staged
//! blobs. Staging streams into `tmp/` (same filesystem, so the rename is atomic), hashing as it
//! writes; committing fsyncs the file, renames it into `sha256/` and fsyncs the directory. A crash therefore leaves at
//! worst a file in `tmp/`, never a partial blob under `sha256/`; leftovers in `tmp/` older than a
//! day are swept when the store is opened (a put in progress keeps touching its file).
//! Files are created 0600 and directories 0700: blobs can hold credentials baked into packages.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::{BlobRef, Blobstore, BlobstoreError, Result, StagedBlob, corrupt_blob_error};
use crate::release::digest::{Hasher, Hashes, hex, is_sha256_hex};

/// Read and write in 1 MiB chunks: large enough that syscalls vanish next to hashing.
const CHUNK: usize = 1 << 20;

/// Chunks in flight between the reading (hashing) thread and the writing thread.
const BUFFERS: usize = 3;

/// Temp files older than this are leftovers of a crashed put.
const STALE_TMP: Duration = Duration::from_secs(24 * 60 * 60);

/// A blobstore in a local directory. See the module documentation for the layout.
#[derive(Debug, Clone)]
pub struct LocalBlobstore {
    root: PathBuf,
}

impl LocalBlobstore {
    /// Opens (creating if needed) the store at `root`, and sweeps stale temp files.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalBlobstore> {
        let store = LocalBlobstore { root: root.into() };
        for dir in [store.root.clone(), store.tmp_dir(), store.blobs_dir()] {
            create_dir(&dir)?;
        }
        store.sweep_tmp();
        Ok(store)
    }

    /// The default root for a state directory: `<state dir>/blobs`.
    pub fn default_root(state_dir: &Path) -> PathBuf {
        state_dir.join("blobs")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `sha256` lives (whether or not it is there).
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf> {
        check_name(sha256)?;
        Ok(self.blobs_dir().join(&sha256[..2]).join(&sha256[2..]))
    }

    /// Files in `tmp/`: staged blobs and writes in progress, or leftovers of a crash. Empty when
    /// nothing is in flight — what a test checks after a refused upload.
    pub fn temp_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.tmp_dir();
        let mut files = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_err("listing", &dir, e))? {
            files.push(entry.map_err(|e| io_err("listing", &dir, e))?.path());
        }
        files.sort();
        Ok(files)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    fn sweep_tmp(&self) {
        // Best effort: a leftover that cannot be removed costs disk space, not correctness.
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else { return };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn stage_local(&self, reader: &mut dyn Read) -> Result<LocalStaged> {
        let (tmp, mut file) = TempFile::create(&self.tmp_dir())?;
        let hashes = copy_hashing(reader, &mut file).map_err(|e| match e {
            CopyError::Read(e) => BlobstoreError::Source(e),
            CopyError::Write(e) => io_err("writing", &tmp.path, e),
        })?;
        // Closed now (a release stages hundreds of blobs); commit reopens it to fsync.
        drop(file);
        Ok(LocalStaged { store: self.clone(), tmp, blob: hashes.into() })
    }

    fn commit(&self, mut staged: LocalStaged) -> Result<BlobRef> {
        let blob = staged.blob.clone();
        let final_path = self.path_of(&blob.sha256)?;
        if fs::metadata(&final_path).is_ok_and(|m| m.is_file() && m.len() == blob.size) {
            // Already stored: keep the one copy; the temp file goes with `staged`'s drop.
            return Ok(blob);
        }
        let tmp_path = staged.tmp.path.clone();
        File::open(&tmp_path).and_then(|f| f.sync_all()).map_err(|e| io_err("syncing", &tmp_path, e))?;
        let parent = final_path.parent().expect("blob paths have a parent");
        if !parent.is_dir() {
            create_dir(parent)?;
            sync_dir(&self.blobs_dir())?;
        }
        fs::rename(&tmp_path, &final_path).map_err(|e| io_err("renaming into place", &final_path, e))?;
        staged.tmp.persisted = true;
        sync_dir(parent)?;
        Ok(blob)
    }
}

/// A blob written to `tmp/`, hashed, not yet in `sha256/`.
struct LocalStaged {
    store: LocalBlobstore,
    tmp: TempFile,
    blob: BlobRef,
}

impl StagedBlob for LocalStaged {
    fn blob(&self) -> &BlobRef {
        &self.blob
    }

    fn commit(self: Box<Self>) -> Result<BlobRef> {
        let store = self.store.clone();
        store.commit(*self)
    }
}

impl Blobstore for LocalBlobstore {
    fn stage(&self, reader: &mut dyn Read) -> Result<Box<dyn StagedBlob>> {
        Ok(Box::new(self.stage_local(reader)?))
    }

    fn open(&self, sha256: &str) -> Result<Box<dyn Read + Send>> {
        let path = self.path_of(sha256)?;
        let file = File::open(&path).map_err(|e| not_found_or(sha256, "opening", &path, e))?;
        Ok(Box::new(VerifyingReader {
            inner: BufReader::with_capacity(CHUNK, file),
            hasher: Sha256::new(),
            name: sha256.to_string(),
            verdict: None,
        }))
    }

    fn contains(&self, sha256: &str) -> Result<bool> {
        let path = self.path_of(sha256)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("reading", &path, e)),
        }
    }

    fn delete(&self, sha256: &str) -> Result<bool> {
        let path = self.path_of(sha256)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("deleting", &path, e)),
        }
    }

    fn verify(&self, sha256: &str) -> Result<bool> {
        let path = self.path_of(sha256)?;
        let mut file = File::open(&path).map_err(|e| not_found_or(sha256, "opening", &path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("reading", &path, e)),
            }
        }
        Ok(hex(&hasher.finalize()) == sha256)
    }

    fn size(&self, sha256: &str) -> Result<u64> {
        let path = self.path_of(sha256)?;
        fs::metadata(&path).map(|m| m.len()).map_err(|e| not_found_or(sha256, "reading", &path, e))
    }

    fn list(&self) -> Result<Vec<String>> {
        let dir = self.blobs_dir();
        let mut names = Vec::new();
        for prefix in fs::read_dir(&dir).map_err(|e| io_err("listing", &dir, e))? {
            let prefix = prefix.map_err(|e| io_err("listing", &dir, e))?;
            let prefix_path = prefix.path();
            if !prefix_path.is_dir() {
                continue;
            }
            let Some(prefix_name) = prefix.file_name().to_str().map(str::to_string) else { continue };
            for entry in fs::read_dir(&prefix_path).map_err(|e| io_err("listing", &prefix_path, e))? {
                let entry = entry.map_err(|e| io_err("listing", &prefix_path, e))?;
                if let Some(rest) = entry.file_name().to_str() {
                    let name = format!("{prefix_name}{rest}");
                    if is_sha256_hex(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `reader` into `file`, hashing on the way: the calling thread reads and hashes while a
/// second thread writes, so hashing (about 1.4 s per GiB for SHA-1 + SHA-256 with SHA-NI) overlaps
/// the write into the page cache instead of adding to it.
fn copy_hashing(reader: &mut dyn Read, file: &mut File) -> std::result::Result<Hashes, CopyError> {
    let (full_tx, full_rx) = mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        let _ = free_tx.send(vec![0u8; CHUNK]);
    }
    thread::scope(|scope| {
        let writer = scope.spawn(move || -> io::Result<()> {
            for (buf, n) in full_rx {
                file.write_all(&buf[..n])?;
                // The reader may be gone already (it failed); then the buffer is simply dropped.
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let mut hasher = Hasher::new();
        let read = (|| {
            // A closed channel means the writer stopped on an error, which its join reports.
            while let Ok(mut buf) = free_rx.recv() {
                let n = read_full(reader, &mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                if full_tx.send((buf, n)).is_err() {
                    break;
                }
            }
            Ok(())
        })();
        drop(full_tx);
        let written = writer.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        read.map_err(CopyError::Read)?;
        written.map_err(CopyError::Write)?;
        Ok(hasher.finish())
    })
}

/// Reads until `buf` is full or the stream ends, so small reads (a decompressor's) still travel
/// to the writer in large chunks.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Hashes what it reads and checks the digest against the blob's name at EOF.
struct VerifyingReader {
    inner: BufReader<File>,
    hasher: Sha256,
    name: String,
    /// Set at EOF: `Err(actual digest)` if the content does not match.
    verdict: Option<std::result::Result<(), String>>,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(verdict) = &self.verdict {
            return match verdict {
                Ok(()) => Ok(0),
                Err(actual) => Err(corrupt_blob_error(&self.name, actual)),
            };
        }
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            let actual = hex(&std::mem::take(&mut self.hasher).finalize());
            let verdict = if actual == self.name { Ok(()) } else { Err(actual) };
            self.verdict = Some(verdict);
            return self.read(buf);
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A file in `tmp/`, removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create(dir: &Path) -> Result<(TempFile, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let name = format!("put-{}-{}-{nanos:08x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let path = dir.join(name);
            match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => return Ok((TempFile { path, persisted: false }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &path, e)),
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn check_name(sha256: &str) -> Result<()> {
    if is_sha256_hex(sha256) { Ok(()) } else { Err(BlobstoreError::InvalidName(sha256.to_string())) }
}

fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| io_err("creating directory", dir, e))
}

/// Makes a rename or a new entry in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("syncing directory", dir, e))
}

fn io_err(action: &'static str, path: &Path, source: io::Error) -> BlobstoreError {
    BlobstoreError::Io { action, path: path.to_path_buf(), source }
}

fn not_found_or(sha256: &str, action: &'static str, path: &Path, source: io::Error) -> BlobstoreError {
    if source.kind() == io::ErrorKind::NotFound {
        BlobstoreError::NotFound(sha256.to_string())
    } else {
        io_err(action, path, source)
    }
}

//! The VM's blob store (`data/blobs/<sha256>`) and what is made from blobs: packages and jobs
//! unpacked into `data/{packages,jobs}/<name>/<sha256>` and linked at `packages/<name>` and
//! `jobs/<name>`, and tarballs packed from a directory (compiled packages, logs).
//!
//! Every write is atomic (temp file in the store, fsync, rename) and every digest is checked:
//! `put_blob` hashes while writing and keeps nothing on a mismatch; unpacking hashes the blob as
//! it streams through the safe extractor ([`crate::release::archive`]) and only renames the
//! result into place when the digest still matches, so a blob corrupted on disk never becomes a
//! package. Links are swapped with a rename, so a reader sees the old tree or the new one.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;

use super::protocol::{Sha256, StoredBlob};
use super::root::{Root, check_name, check_sha256};
use super::{Context, Error, Result};
use crate::release::archive;
use crate::release::digest::{DigestingReader, Hasher, Hashes};

const COPY_BUFFER: usize = 256 * 1024;

/// Reads a blob from `input` to its end and keeps it as `sha256` if the bytes have that digest.
pub fn put(root: &Root, sha256: &str, input: &mut dyn Read) -> Result<StoredBlob> {
    check_sha256(sha256)?;
    root.ensure_dirs()?;
    let dir = root.blobs_dir();
    let mut tmp = tempfile::Builder::new()
        .prefix(".put-")
        .tempfile_in(&dir)
        .ctx(|| format!("creating a temp file in {}", dir.display()))?;
    let hashes = {
        let mut writer =
            HashingWriter::new(io::BufWriter::with_capacity(COPY_BUFFER, tmp.as_file_mut()), Hasher::sha256_only());
        copy(input, &mut writer).ctx(|| format!("receiving blob {sha256}"))?;
        let (inner, hashes) = writer.finish();
        inner.into_inner().map_err(|e| Error(format!("writing blob {sha256}: {}", e.error())))?;
        hashes
    };
    if hashes.sha256 != sha256 {
        return Err(Error(format!(
            "blob digest mismatch: expected sha256 {sha256}, received {} bytes with sha256 {}; nothing was kept",
            hashes.size, hashes.sha256
        )));
    }
    tmp.as_file().sync_all().ctx(|| format!("syncing blob {sha256}"))?;
    tmp.persist(root.blob(sha256)).ctx(|| format!("storing blob {sha256}"))?;
    sync_dir(&dir);
    Ok(StoredBlob { sha256: sha256.to_string(), size: hashes.size })
}

/// The digests among `wanted` that the VM does not hold.
pub fn missing(root: &Root, wanted: &[Sha256]) -> Result<Vec<Sha256>> {
    let mut missing = Vec::new();
    for sha256 in wanted {
        check_sha256(sha256)?;
        if !root.blob(sha256).is_file() && !missing.contains(sha256) {
            missing.push(sha256.clone());
        }
    }
    Ok(missing)
}

/// Writes blob `sha256` to `out`. The bytes are hashed on the way; a blob whose content no
/// longer matches its name is removed (so the director puts it again) and the verb fails after
/// the bytes were sent.
pub fn get(root: &Root, sha256: &str, out: &mut dyn Write) -> Result<u64> {
    check_sha256(sha256)?;
    let path = root.blob(sha256);
    let file = fs::File::open(&path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error(format!("blob {sha256} is not on this VM")),
        _ => Error(format!("opening blob {sha256}: {e}")),
    })?;
    let mut reader = DigestingReader::sha256_only(file);
    copy(&mut reader, out).ctx(|| format!("sending blob {sha256}"))?;
    out.flush().ctx(|| format!("sending blob {sha256}"))?;
    let hashes = reader.finish();
    if hashes.sha256 != sha256 {
        let _ = fs::remove_file(&path);
        return Err(Error(format!(
            "blob {sha256} is corrupt on the VM (its content hashes to {}); removed",
            hashes.sha256
        )));
    }
    Ok(hashes.size)
}

/// What an archive is unpacked as: its directory under `data/` and its link directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Package,
    Job,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Package => "packages",
            Kind::Job => "jobs",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Package => "package",
            Kind::Job => "job",
        }
    }

    pub fn link(self, root: &Root, name: &str) -> PathBuf {
        root.path().join(self.dir()).join(name)
    }
}

/// Unpacks blob `sha256` as `kind` `name` (unless already unpacked) and points the link at it.
/// Returns whether the link changed.
pub fn install(root: &Root, kind: Kind, name: &str, sha256: &str) -> Result<bool> {
    unpack(root, kind, name, sha256)?;
    link(root, kind, name, sha256)
}

/// `packages/<name>` → `../data/packages/<name>/<sha256>`: relative, so the tree stays valid if
/// the root is seen through another path.
fn relative_target(kind: Kind, name: &str, sha256: &str) -> PathBuf {
    Path::new("../data").join(kind.dir()).join(name).join(sha256)
}

/// Unpacks blob `sha256` into `data/<kind>/<name>/<sha256>` unless it is there already.
pub fn unpack(root: &Root, kind: Kind, name: &str, sha256: &str) -> Result<PathBuf> {
    check_name(kind.noun(), name)?;
    check_sha256(sha256)?;
    let dest = root.unpacked(kind.dir(), name, sha256);
    if dest.is_dir() {
        return Ok(dest);
    }
    let parent = dest.parent().expect("digest dir has a parent");
    fs::create_dir_all(parent).ctx(|| format!("creating {}", parent.display()))?;
    let staged = parent.join(format!(".{sha256}.unpacking-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = fs::remove_dir_all(&staged);
    extract_verified(root, sha256, &format!("{} {name} ({sha256})", kind.noun()), &staged)?;
    if kind == Kind::Job
        && let Err(e) = make_bin_executable(&staged)
    {
        let _ = fs::remove_dir_all(&staged);
        return Err(e);
    }
    match fs::rename(&staged, &dest) {
        Ok(()) => Ok(dest),
        // Unpacked concurrently by another verb: theirs is as good as ours.
        Err(_) if dest.is_dir() => {
            let _ = fs::remove_dir_all(&staged);
            Ok(dest)
        }
        Err(e) => Err(Error(format!("renaming into {}: {e}", dest.display()))),
    }
}

/// Extracts blob `sha256` into `dest` (which must not exist) with the safe extractor, hashing
/// the blob as it streams. On a digest mismatch the extraction and the blob are removed.
pub fn extract_verified(root: &Root, sha256: &str, source_name: &str, dest: &Path) -> Result<()> {
    let blob = root.blob(sha256);
    let file = fs::File::open(&blob).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error(format!("{source_name}: blob {sha256} is not on the VM (put_blob it first)")),
        _ => Error(format!("opening blob {sha256}: {e}")),
    })?;
    let mut reader = DigestingReader::sha256_only(BufReader::with_capacity(COPY_BUFFER, file));
    if let Err(e) = archive::extract_to(&mut reader, source_name, dest) {
        let _ = fs::remove_dir_all(dest);
        return Err(Error(e.to_string()));
    }
    let hashes = reader.finish();
    if hashes.sha256 != sha256 {
        let _ = fs::remove_dir_all(dest);
        let _ = fs::remove_file(&blob);
        return Err(Error(format!(
            "{source_name}: the blob on the VM hashes to {}; removed it, put it again",
            hashes.sha256
        )));
    }
    Ok(())
}

/// Points `kind` `name`'s link at its unpacked digest `sha256`; whether the link changed.
pub fn link(root: &Root, kind: Kind, name: &str, sha256: &str) -> Result<bool> {
    let link = kind.link(root, name);
    let target = relative_target(kind, name, sha256);
    if fs::read_link(&link).is_ok_and(|current| current == target) {
        return Ok(false);
    }
    swap_link(&link, &target)?;
    Ok(true)
}

/// A rendered job's `bin/*` are its scripts and must run whatever modes the tarball carried.
fn make_bin_executable(job_dir: &Path) -> Result<()> {
    let bin = job_dir.join("bin");
    let Ok(entries) = fs::read_dir(&bin) else { return Ok(()) };
    for entry in entries {
        let entry = entry.ctx(|| format!("listing {}", bin.display()))?;
        let meta = fs::symlink_metadata(entry.path()).ctx(|| format!("reading {}", entry.path().display()))?;
        if meta.is_file() {
            let mode = meta.permissions().mode() | 0o755;
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode))
                .ctx(|| format!("chmod {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Points `link` at `target` atomically: a temp link beside it renamed over it. Whatever else
/// stood at `link` (a directory from a compilation) is removed first.
pub fn swap_link(link: &Path, target: &Path) -> Result<()> {
    let dir = link.parent().expect("links live in a directory");
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    if let Ok(meta) = fs::symlink_metadata(link)
        && meta.is_dir()
    {
        fs::remove_dir_all(link).ctx(|| format!("removing {}", link.display()))?;
    }
    let name = link.file_name().expect("link has a name").to_string_lossy();
    let tmp = dir.join(format!(".{name}.link-{}-{:?}", std::process::id(), std::thread::current().id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).ctx(|| format!("creating link {}", tmp.display()))?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error(format!("replacing {}: {e}", link.display()))
    })
}

/// Removes `kind` `name`: its link and every unpacked digest of it.
pub fn uninstall(root: &Root, kind: Kind, name: &str) -> Result<()> {
    check_name(kind.noun(), name)?;
    remove_any(&kind.link(root, name))?;
    remove_any(&root.data_dir().join(kind.dir()).join(name))
}

/// Removes the unpacked digests of `kind` `name` other than the one linked.
pub fn prune(root: &Root, kind: Kind, name: &str, keep: &str) -> Result<()> {
    let dir = root.data_dir().join(kind.dir()).join(name);
    let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
    for entry in entries {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        if entry.file_name().to_str() != Some(keep) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes a file, link or directory tree; a missing path is fine.
pub fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error(format!("removing {}: {e}", path.display()))),
        _ => Ok(()),
    }
}

/// Packs the tree at `dir` (only its top-level entries named in `only`, when given) into a
/// gzipped tarball kept as a blob; entries are relative to `dir`, sorted, with zero owners and
/// times, so packing the same tree twice gives the same bytes.
pub fn pack(root: &Root, dir: &Path, only: Option<&[String]>) -> Result<Hashes> {
    root.ensure_dirs()?;
    let blobs = root.blobs_dir();
    let mut tmp = tempfile::Builder::new()
        .prefix(".pack-")
        .tempfile_in(&blobs)
        .ctx(|| format!("creating a temp file in {}", blobs.display()))?;
    let hashes = {
        // A compiled package's SHA-1 goes into compiled releases' manifests, so both here.
        let hashing = HashingWriter::new(io::BufWriter::with_capacity(COPY_BUFFER, tmp.as_file_mut()), Hasher::new());
        let gz = GzEncoder::new(hashing, Compression::default());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        let mut paths = Vec::new();
        walk(dir, Path::new(""), &mut paths).ctx(|| format!("listing {}", dir.display()))?;
        for rel in paths {
            if let Some(only) = only {
                let top = rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned());
                if !top.is_some_and(|top| only.contains(&top)) {
                    continue;
                }
            }
            append(&mut tar, &dir.join(&rel), &rel).ctx(|| format!("packing {}", dir.join(&rel).display()))?;
        }
        let gz = tar.into_inner().ctx(|| "finishing the tarball")?;
        let hashing = gz.finish().ctx(|| "finishing the tarball")?;
        let (inner, hashes) = hashing.finish();
        inner.into_inner().map_err(|e| Error(format!("writing the tarball: {}", e.error())))?;
        hashes
    };
    tmp.as_file().sync_all().ctx(|| "syncing the tarball")?;
    tmp.persist(root.blob(&hashes.sha256)).ctx(|| "storing the tarball")?;
    sync_dir(&blobs);
    Ok(hashes)
}

/// Every path under `dir` (relative), parents before children, each directory's entries sorted.
fn walk(base: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(base.join(rel))?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let child = rel.join(entry.file_name());
        out.push(child.clone());
        if entry.file_type()?.is_dir() {
            walk(base, &child, out)?;
        }
    }
    Ok(())
}

fn append<W: Write>(tar: &mut tar::Builder<W>, path: &Path, name: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let mut header = tar::Header::new_gnu();
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mode(meta.permissions().mode() & 0o7777);
    if meta.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        tar.append_data(&mut header, name, io::empty())
    } else if meta.file_type().is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, name, fs::read_link(path)?)
    } else if meta.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        tar.append_data(&mut header, name, fs::File::open(path)?)
    } else {
        // Sockets, fifos and devices have no place in a package or a log archive.
        Ok(())
    }
}

fn copy(input: &mut dyn Read, out: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(file) = fs::File::open(dir) {
        let _ = file.sync_all();
    }
}

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W, hasher: Hasher) -> Self {
        HashingWriter { inner, hasher }
    }

    fn finish(self) -> (W, Hashes) {
        (self.inner, self.hasher.finish())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::digest::sha256_hex;

    fn tgz(files: &[(&str, &str, u32)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, body, mode) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(*mode);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, body.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn put_checks_the_digest_and_keeps_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let body = b"hello blob";
        let sha = sha256_hex(body);
        let stored = put(&root, &sha, &mut &body[..]).unwrap();
        assert_eq!(stored.size, body.len() as u64);
        assert_eq!(fs::read(root.blob(&sha)).unwrap(), body);

        let wrong = sha256_hex(b"other");
        let err = put(&root, &wrong, &mut &body[..]).unwrap_err();
        assert!(err.0.contains("mismatch"), "{err}");
        assert!(!root.blob(&wrong).exists());
        assert_eq!(fs::read_dir(root.blobs_dir()).unwrap().count(), 1, "a temp file was left behind");
    }

    #[test]
    fn install_unpacks_links_and_makes_bin_executable() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let blob = tgz(&[("bin/ctl", "#!/bin/sh\n", 0o644), ("config/x.yml", "a: 1\n", 0o644)]);
        let sha = sha256_hex(&blob);
        put(&root, &sha, &mut &blob[..]).unwrap();
        assert!(install(&root, Kind::Job, "web", &sha).unwrap());
        assert!(!install(&root, Kind::Job, "web", &sha).unwrap(), "second install changed nothing");
        let ctl = root.job_dir("web").join("bin/ctl");
        assert_eq!(fs::metadata(&ctl).unwrap().permissions().mode() & 0o111, 0o111);
        assert_eq!(fs::read_to_string(root.job_dir("web").join("config/x.yml")).unwrap(), "a: 1\n");
    }

    #[test]
    fn a_corrupted_blob_is_not_unpacked() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let blob = tgz(&[("packaging", "true\n", 0o644)]);
        let sha = sha256_hex(&blob);
        put(&root, &sha, &mut &blob[..]).unwrap();
        let other = tgz(&[("packaging", "false\n", 0o644)]);
        fs::write(root.blob(&sha), other).unwrap();
        let err = install(&root, Kind::Package, "p", &sha).unwrap_err();
        assert!(err.0.contains("hashes to"), "{err}");
        assert!(!root.packages_dir().join("p").exists());
        assert!(!root.unpacked("packages", "p", &sha).exists());
    }

    #[test]
    fn pack_is_deterministic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path().join("root"));
        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("bin")).unwrap();
        fs::write(tree.join("bin/tool"), "#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(tree.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(tree.join("README"), "r").unwrap();
        std::os::unix::fs::symlink("bin/tool", tree.join("link")).unwrap();
        let first = pack(&root, &tree, None).unwrap();
        let second = pack(&root, &tree, None).unwrap();
        assert_eq!(first, second);
        let out = dir.path().join("out");
        archive::extract_to(fs::File::open(root.blob(&first.sha256)).unwrap(), "packed", &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("bin/tool")).unwrap(), "#!/bin/sh\necho hi\n");
        assert_eq!(fs::read_link(out.join("link")).unwrap(), Path::new("bin/tool"));
    }
}

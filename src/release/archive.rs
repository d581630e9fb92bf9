//! Safe reading of tar archives, gzip-compressed or plain: the one place rosh parses untrusted
//! archives (release and stemcell tarballs, the job and package tarballs inside them, packages
//! extracted for compilation).
//!
//! [`visit`] walks the entries of a stream once and hands each accepted entry, with a reader over
//! its data, to a callback; [`extract_to`] builds on it to unpack into a directory. Both refuse,
//! naming the archive and the entry: absolute paths and `..` components; symlinks whose target
//! resolves outside the root (lexically, and at the end of the archive also through the other
//! symlinks in it, so a chain of individually harmless links cannot climb out); hard links to
//! anything but a regular file earlier in the archive; entries below a symlink (nothing is ever
//! written through a link); device, fifo, sparse and unknown entry types; two entries at one
//! path with different types (the same type twice is tar's "last one wins"); entry data shorter
//! than its header says; and any gzip or read error, wherever it happens — after the last entry
//! the rest of the stream is read to its end, so the gzip trailer (CRC and length) is always
//! checked, and an archive without the end-of-archive marker is refused as truncated.
//!
//! Decisions: compression is detected by the gzip magic bytes, not the file name; names must be
//! UTF-8; `./` prefixes and repeated slashes are normalised away and entries named `.` or empty
//! are skipped; pax global headers are skipped. Extraction ignores the archive's owners, times
//! and special bits: files become 0755 when any execute bit was set and 0644 otherwise,
//! directories 0755 (both under the process umask).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Read buffer between the source, the decompressor and the tar parser: big enough that a
/// 1 GiB stream costs few system calls, small enough to keep memory flat.
const BUFFER: usize = 256 * 1024;

/// Symlinks followed while resolving one target before it is called a loop (Linux's limit).
const MAX_LINK_HOPS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An entry rosh will not accept.
    #[error("{source_name}: entry `{entry}`: {reason}")]
    Refused { source_name: String, entry: String, reason: Refusal },
    /// The stream could not be read as a (compressed) tar archive.
    #[error("{source_name}: corrupt or truncated archive{}: {message}", at_entry(.entry))]
    Corrupt { source_name: String, entry: Option<String>, message: String },
    #[error("{source_name}: extracting to {}: {source}", .path.display())]
    Io { source_name: String, path: PathBuf, source: io::Error },
    #[error("{source_name}: cannot extract to {}: it already exists", .path.display())]
    DestinationExists { source_name: String, path: PathBuf },
}

impl ArchiveError {
    /// A read error inside entry `entry` of archive `source_name`.
    pub fn corrupt_entry(source_name: &str, entry: &str, e: &std::io::Error) -> ArchiveError {
        ArchiveError::Corrupt {
            source_name: source_name.to_string(),
            entry: Some(entry.to_string()),
            message: e.to_string(),
        }
    }
}

fn at_entry(entry: &Option<String>) -> String {
    entry.as_ref().map(|e| format!(" at entry `{e}`")).unwrap_or_default()
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("absolute paths are refused")]
    AbsolutePath,
    #[error("paths with a `..` component are refused")]
    ParentComponent,
    #[error("the name is not UTF-8")]
    NotUtf8,
    #[error("symlink to `{target}` points outside the archive")]
    SymlinkOutside { target: String },
    #[error("symlink to `{target}` never resolves (more than {MAX_LINK_HOPS} links followed)")]
    SymlinkLoop { target: String },
    #[error("hard link to `{target}` points outside the archive")]
    HardLinkOutside { target: String },
    #[error("hard link to `{target}`, which is not a regular file earlier in the archive")]
    HardLinkTarget { target: String },
    #[error("{kind} entries are refused")]
    SpecialFile { kind: &'static str },
    #[error("unsupported entry type {type_byte:#04x}")]
    UnsupportedType { type_byte: u8 },
    #[error("it lies below the symlink `{link}`, and nothing is written through a link")]
    BelowSymlink { link: String },
    #[error("`{path}` is {earlier} earlier in the archive and {later} here")]
    TypeConflict { path: String, earlier: &'static str, later: &'static str },
    #[error("its data ends after {actual} of the {expected} bytes its header gives (truncated archive)")]
    Truncated { expected: u64, actual: u64 },
}

/// What an accepted entry is. Link targets are as written in the archive (symlinks: relative
/// to the link's directory; hard links: normalised archive paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink(String),
    HardLink(String),
}

impl EntryKind {
    fn describe(&self) -> &'static str {
        match self {
            EntryKind::File => "a file",
            EntryKind::Directory => "a directory",
            EntryKind::Symlink(_) => "a symlink",
            EntryKind::HardLink(_) => "a hard link",
        }
    }
}

/// An accepted entry, as handed to a [`visit`] callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// Normalised relative path: no leading `./`, no empty or `.` components, no `..`.
    pub path: String,
    pub kind: EntryKind,
    /// Data size from the header (zero for anything but files).
    pub size: u64,
    /// Permission bits from the header (`0o7777` at most).
    pub mode: u32,
}

impl EntryInfo {
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }
}

/// Normalises an entry name: `Ok(None)` for names that denote the root (`.`, `./`, empty).
pub fn normalise_path(raw: &[u8]) -> Result<Option<String>, Refusal> {
    let text = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?;
    if text.starts_with('/') {
        return Err(Refusal::AbsolutePath);
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Refusal::ParentComponent),
            name => parts.push(name),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts.join("/")) })
}

/// Reads `reader` as a tar archive (gzip-compressed or not) and calls `f` once per accepted
/// entry, in archive order, with a reader over its data. `f` may read all, part or none of the
/// data. Any refusal or read error ends the walk; an error `f` returns is passed through,
/// except that when the archive itself failed while `f` was reading, the archive's error is
/// returned (so a sink that fails on a corrupt stream is reported as a corrupt archive).
pub fn visit<E: From<ArchiveError>>(
    reader: impl Read,
    source_name: &str,
    mut f: impl FnMut(&EntryInfo, &mut dyn Read) -> Result<(), E>,
) -> Result<(), E> {
    let stream = StreamState::default();
    let decompressed = decompress(reader).map_err(|e| corrupt(source_name, None, &e))?;
    let mut archive = tar::Archive::new(Tracked { inner: decompressed, state: &stream });
    let mut tree = Tree::default();
    let mut last: Option<String> = None;
    {
        let entries = archive.entries().map_err(|e| corrupt(source_name, None, &e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| header_error(source_name, last.as_deref(), &stream, &e))?;
            let refuse = |entry: &str, reason| ArchiveError::Refused {
                source_name: source_name.to_string(),
                entry: entry.to_string(),
                reason,
            };
            let raw_path = entry.path_bytes().into_owned();
            let display = String::from_utf8_lossy(&raw_path).into_owned();
            let header = entry.header();
            let entry_type = header.entry_type();
            if entry_type.is_pax_global_extensions() {
                drain(&mut entry, source_name, &display)?;
                continue;
            }
            let mode = header.mode().map_err(|e| corrupt(source_name, Some(&display), &e))? & 0o7777;
            let path = match normalise_path(&raw_path).map_err(|r| refuse(&display, r))? {
                Some(path) => path,
                None => {
                    drain(&mut entry, source_name, &display)?;
                    continue;
                }
            };
            let link = || entry.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
            let kind = match entry_type {
                tar::EntryType::Regular | tar::EntryType::Continuous if display.ends_with('/') => EntryKind::Directory,
                tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
                tar::EntryType::Directory => EntryKind::Directory,
                tar::EntryType::Symlink => {
                    EntryKind::Symlink(symlink_target(&path, &link()).map_err(|r| refuse(&display, r))?)
                }
                tar::EntryType::Link => {
                    EntryKind::HardLink(hard_link_target(&link()).map_err(|r| refuse(&display, r))?)
                }
                tar::EntryType::Char => {
                    return Err(refuse(&display, Refusal::SpecialFile { kind: "character device" }).into());
                }
                tar::EntryType::Block => {
                    return Err(refuse(&display, Refusal::SpecialFile { kind: "block device" }).into());
                }
                tar::EntryType::Fifo => return Err(refuse(&display, Refusal::SpecialFile { kind: "fifo" }).into()),
                other => {
                    return Err(refuse(&display, Refusal::UnsupportedType { type_byte: other.as_byte() }).into());
                }
            };
            tree.add(&path, &kind).map_err(|r| refuse(&display, r))?;
            let size = if kind == EntryKind::File { entry.size() } else { 0 };
            let info = EntryInfo { path, kind, size, mode };
            let mut data = Checked { inner: &mut entry, expected: size, remaining: size, failure: None };
            let result = f(&info, &mut data);
            if let Some(failure) = data.failure.take() {
                return Err(failure.into_error(source_name, &display).into());
            }
            result?;
            io::copy(&mut data, &mut io::sink()).map_err(|e| match data.failure.take() {
                Some(failure) => failure.into_error(source_name, &display),
                None => corrupt(source_name, Some(&display), &e),
            })?;
            // Whatever the header says about links and directories, their data is skipped.
            if info.kind != EntryKind::File {
                drain(&mut entry, source_name, &display)?;
            }
            last = Some(display);
        }
    }
    if stream.eof.get() {
        let message = match &last {
            Some(last) => format!("the stream ends after entry `{last}` without the end-of-archive marker"),
            None => "the stream is empty".to_string(),
        };
        return Err(ArchiveError::Corrupt { source_name: source_name.to_string(), entry: None, message }.into());
    }
    // Read to the very end: the gzip trailer (CRC, length) is checked only there.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| {
        let message = format!("after the end-of-archive marker: {e}");
        ArchiveError::Corrupt { source_name: source_name.to_string(), entry: None, message }
    })?;
    tree.check_symlinks().map_err(|(entry, reason)| ArchiveError::Refused {
        source_name: source_name.to_string(),
        entry,
        reason,
    })?;
    Ok(())
}

/// Extracts the archive into `dest`, which must not exist. Everything is first written into a
/// fresh directory beside `dest` and renamed to `dest` only once the whole archive has been
/// read and accepted; on any error that directory is removed and nothing is left behind.
pub fn extract_to(reader: impl Read, source_name: &str, dest: &Path) -> Result<(), ArchiveError> {
    let io_err = |path: &Path, source| ArchiveError::Io {
        source_name: source_name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    if fs::symlink_metadata(dest).is_ok() {
        return Err(ArchiveError::DestinationExists { source_name: source_name.to_string(), path: dest.to_path_buf() });
    }
    let staging = Staging::create(dest).map_err(|e| io_err(dest, e))?;
    let root = staging.path.clone();
    visit(reader, source_name, |info, data| {
        use std::os::unix::fs::OpenOptionsExt;
        let target = root.join(&info.path);
        let in_place = |result: io::Result<()>| result.map_err(|e| io_err(&target, e));
        if let Some(parent) = target.parent() {
            in_place(fs::create_dir_all(parent))?;
        }
        if info.kind != EntryKind::Directory && fs::symlink_metadata(&target).is_ok() {
            // Same-type duplicate (tar's "last one wins"); removing first also unshares a
            // file that an earlier hard link pointed at.
            in_place(fs::remove_file(&target))?;
        }
        match &info.kind {
            EntryKind::Directory => in_place(fs::create_dir_all(&target)),
            EntryKind::File => {
                let mode = if info.is_executable() { 0o755 } else { 0o644 };
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&target)
                    .map_err(|e| io_err(&target, e))?;
                in_place(io::copy(data, &mut file).map(drop))
            }
            EntryKind::Symlink(link) => in_place(std::os::unix::fs::symlink(link, &target)),
            EntryKind::HardLink(original) => in_place(fs::hard_link(root.join(original), &target)),
        }
    })?;
    fs::rename(&staging.path, dest).map_err(|e| io_err(dest, e))?;
    staging.keep();
    Ok(())
}

/// A directory beside the destination that is removed on drop unless kept.
struct Staging {
    path: PathBuf,
    kept: Cell<bool>,
}

impl Staging {
    fn create(dest: &Path) -> io::Result<Staging> {
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "destination has no file name"))?;
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let pid = std::process::id();
        for attempt in 0u32.. {
            let mut staged = std::ffi::OsString::from(".");
            staged.push(name);
            staged.push(format!(".partial-{pid}-{attempt}"));
            let path = parent.join(staged);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Staging { path, kept: Cell::new(false) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => continue,
                Err(e) => return Err(e),
            }
        }
        unreachable!("the attempt loop returns")
    }

    fn keep(&self) {
        self.kept.set(true);
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.kept.get() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Wraps the input in a gzip decoder when it starts with the gzip magic bytes.
fn decompress<'r>(mut reader: impl Read + 'r) -> io::Result<Box<dyn Read + 'r>> {
    let mut magic = [0u8; 2];
    let mut len = 0;
    while len < magic.len() {
        match reader.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = BufReader::with_capacity(BUFFER, io::Cursor::new(magic[..len].to_vec()).chain(reader));
    Ok(if len == 2 && magic == [0x1f, 0x8b] {
        // Multi-member, like gzip(1): concatenated members are one stream.
        Box::new(BufReader::with_capacity(BUFFER, flate2::bufread::MultiGzDecoder::new(whole)))
    } else {
        Box::new(whole)
    })
}

/// What the tar parser's source saw: the end of the stream, or its first error.
#[derive(Default)]
struct StreamState {
    eof: Cell<bool>,
    error: RefCell<Option<String>>,
}

struct Tracked<'s, R> {
    inner: R,
    state: &'s StreamState,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(0) if !buf.is_empty() => {
                self.state.eof.set(true);
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.state.error.borrow_mut().get_or_insert_with(|| e.to_string());
                }
                Err(e)
            }
        }
    }
}

/// An entry's data, checked against the header's size and remembering how it failed.
struct Checked<'a> {
    inner: &'a mut dyn Read,
    expected: u64,
    remaining: u64,
    failure: Option<Failure>,
}

enum Failure {
    Truncated { expected: u64, actual: u64 },
    Stream(String),
}

impl Failure {
    fn into_error(self, source_name: &str, entry: &str) -> ArchiveError {
        match self {
            Failure::Truncated { expected, actual } => ArchiveError::Refused {
                source_name: source_name.to_string(),
                entry: entry.to_string(),
                reason: Refusal::Truncated { expected, actual },
            },
            Failure::Stream(message) => {
                ArchiveError::Corrupt { source_name: source_name.to_string(), entry: Some(entry.to_string()), message }
            }
        }
    }
}

impl Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..max]) {
            Ok(0) => {
                let failure = Failure::Truncated { expected: self.expected, actual: self.expected - self.remaining };
                let message = format!(
                    "archive entry data ends after {} of {} bytes (truncated archive)",
                    self.expected - self.remaining,
                    self.expected
                );
                self.failure.get_or_insert(failure);
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, message))
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.failure.get_or_insert_with(|| Failure::Stream(e.to_string()));
                Err(e)
            }
        }
    }
}

/// Skips the data of an entry nobody reads (tar's own reader stops at the header's size).
fn drain(entry: &mut dyn Read, source_name: &str, display: &str) -> Result<(), ArchiveError> {
    io::copy(entry, &mut io::sink()).map(drop).map_err(|e| corrupt(source_name, Some(display), &e))
}

fn corrupt(source_name: &str, entry: Option<&str>, e: &io::Error) -> ArchiveError {
    ArchiveError::Corrupt {
        source_name: source_name.to_string(),
        entry: entry.map(str::to_string),
        message: e.to_string(),
    }
}

/// A failure reading the next header: from the stream (gzip, IO) or from the tar format.
fn header_error(source_name: &str, last: Option<&str>, stream: &StreamState, e: &io::Error) -> ArchiveError {
    let message = match stream.error.borrow().as_ref() {
        Some(stream_error) => stream_error.clone(),
        None if stream.eof.get() => format!("{e} (the stream ends inside a header or entry)"),
        None => {
            // tar's own message can quote a whole garbage field; the start says enough.
            let detail: String = e.to_string().chars().take(80).collect();
            match last {
                None => format!("not a tar archive (gzip-compressed or plain): {detail}"),
                Some(_) => format!("not a valid tar header: {detail}"),
            }
        }
    };
    let message = match last {
        Some(last) => format!("{message} (after entry `{last}`)"),
        None => message,
    };
    ArchiveError::Corrupt { source_name: source_name.to_string(), entry: None, message }
}

/// A symlink's target, refused when it is absolute or climbs out of the root lexically.
fn symlink_target(path: &str, raw: &[u8]) -> Result<String, Refusal> {
    let target = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?.to_string();
    let outside = || Refusal::SymlinkOutside { target: target.clone() };
    if target.is_empty() || target.starts_with('/') {
        return Err(outside());
    }
    let mut depth = path.split('/').count() - 1;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => depth = depth.checked_sub(1).ok_or_else(outside)?,
            _ => depth += 1,
        }
    }
    Ok(target)
}

fn hard_link_target(raw: &[u8]) -> Result<String, Refusal> {
    let text = String::from_utf8_lossy(raw).into_owned();
    match normalise_path(raw) {
        Ok(Some(target)) => Ok(target),
        Ok(None) | Err(Refusal::AbsolutePath | Refusal::ParentComponent) => {
            Err(Refusal::HardLinkOutside { target: text })
        }
        Err(other) => Err(other),
    }
}

/// The archive's paths so far, with what each is (directories also when only implied).
#[derive(Default)]
struct Tree {
    nodes: HashMap<String, EntryKind>,
}

impl Tree {
    fn add(&mut self, path: &str, kind: &EntryKind) -> Result<(), Refusal> {
        for (i, _) in path.match_indices('/') {
            let prefix = &path[..i];
            match self.nodes.get(prefix) {
                None => {
                    self.nodes.insert(prefix.to_string(), EntryKind::Directory);
                }
                Some(EntryKind::Directory) => {}
                Some(EntryKind::Symlink(_)) => return Err(Refusal::BelowSymlink { link: prefix.to_string() }),
                Some(earlier) => {
                    return Err(Refusal::TypeConflict {
                        path: prefix.to_string(),
                        earlier: earlier.describe(),
                        later: "a directory",
                    });
                }
            }
        }
        if let EntryKind::HardLink(target) = kind {
            match self.nodes.get(target.as_str()) {
                Some(EntryKind::File | EntryKind::HardLink(_)) => {}
                _ => return Err(Refusal::HardLinkTarget { target: target.clone() }),
            }
        }
        if let Some(earlier) = self.nodes.get(path)
            && std::mem::discriminant(earlier) != std::mem::discriminant(kind)
        {
            return Err(Refusal::TypeConflict {
                path: path.to_string(),
                earlier: earlier.describe(),
                later: kind.describe(),
            });
        }
        self.nodes.insert(path.to_string(), kind.clone());
        Ok(())
    }

    /// Resolves every symlink through the others, as the kernel would once all are on disk.
    fn check_symlinks(&self) -> Result<(), (String, Refusal)> {
        let mut links: Vec<(&String, &String)> = self
            .nodes
            .iter()
            .filter_map(|(path, kind)| match kind {
                EntryKind::Symlink(target) => Some((path, target)),
                _ => None,
            })
            .collect();
        links.sort();
        for (path, target) in links {
            self.resolve(path, target).map_err(|reason| (path.clone(), reason))?;
        }
        Ok(())
    }

    fn resolve(&self, path: &str, target: &str) -> Result<(), Refusal> {
        let outside = || Refusal::SymlinkOutside { target: target.to_string() };
        let mut resolved: Vec<&str> = path.split('/').collect();
        resolved.pop();
        let mut pending: Vec<&str> = target.split('/').rev().collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part {
                "" | "." => {}
                ".." => {
                    resolved.pop().ok_or_else(outside)?;
                }
                name => {
                    resolved.push(name);
                    if let Some(EntryKind::Symlink(next)) = self.nodes.get(&resolved.join("/")) {
                        hops += 1;
                        if hops > MAX_LINK_HOPS {
                            return Err(Refusal::SymlinkLoop { target: target.to_string() });
                        }
                        if next.starts_with('/') {
                            return Err(outside());
                        }
                        resolved.pop();
                        pending.extend(next.split('/').rev());
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        assert_eq!(normalise_path(b"./jobs/a.tgz").unwrap().as_deref(), Some("jobs/a.tgz"));
        assert_eq!(normalise_path(b"a//b/./c/").unwrap().as_deref(), Some("a/b/c"));
        assert_eq!(normalise_path(b"./").unwrap(), None);
        assert_eq!(normalise_path(b"").unwrap(), None);
        assert_eq!(normalise_path(b"/etc/passwd").unwrap_err(), Refusal::AbsolutePath);
        assert_eq!(normalise_path(b"a/../../b").unwrap_err(), Refusal::ParentComponent);
        assert_eq!(normalise_path(b"a\xff").unwrap_err(), Refusal::NotUtf8);
    }

    #[test]
    fn symlink_targets_are_resolved_lexically() {
        assert!(symlink_target("a/b/link", b"../c").is_ok());
        assert!(symlink_target("a/link", b"../c").is_ok());
        assert!(symlink_target("link", b"../c").is_err());
        assert!(symlink_target("a/link", b"./../../c").is_err());
        assert!(symlink_target("a/link", b"/usr/bin").is_err());
    }

    #[test]
    fn symlink_chains_that_climb_out_are_found() {
        let mut tree = Tree::default();
        // a/b/s -> .. is `a`; t -> a/b/s/../../.. is the root lexically but `a/../..` physically.
        tree.add("a/b/s", &EntryKind::Symlink("..".into())).unwrap();
        tree.add("t", &EntryKind::Symlink("a/b/s/../../..".into())).unwrap();
        let (entry, reason) = tree.check_symlinks().unwrap_err();
        assert_eq!(entry, "t");
        assert!(matches!(reason, Refusal::SymlinkOutside { .. }));

        let mut tree = Tree::default();
        tree.add("x", &EntryKind::Symlink("y".into())).unwrap();
        tree.add("y", &EntryKind::Symlink("x".into())).unwrap();
        assert!(matches!(tree.check_symlinks().unwrap_err().1, Refusal::SymlinkLoop { .. }));
    }

    #[test]
    fn types_at_one_path_must_agree() {
        let mut tree = Tree::default();
        tree.add("a/b", &EntryKind::File).unwrap();
        tree.add("a/b", &EntryKind::File).unwrap();
        tree.add("a", &EntryKind::Directory).unwrap();
        assert!(matches!(tree.add("a", &EntryKind::Symlink("x".into())), Err(Refusal::TypeConflict { .. })));
        assert!(matches!(tree.add("a/b/c", &EntryKind::File), Err(Refusal::TypeConflict { .. })));
        tree.add("l", &EntryKind::Symlink("a".into())).unwrap();
        assert!(matches!(tree.add("l/x", &EntryKind::File), Err(Refusal::BelowSymlink { .. })));
        assert!(matches!(tree.add("h", &EntryKind::HardLink("a".into())), Err(Refusal::HardLinkTarget { .. })));
        tree.add("h", &EntryKind::HardLink("a/b".into())).unwrap();
    }
}

//! Reading a BOSH release tarball in one streaming pass, verifying it against its `release.MF`.
//!
//! The outer archive (`.tgz` or `.tar`) holds `release.MF`, `jobs/<name>.tgz`,
//! `packages/<name>.tgz`, `compiled_packages/<name>.tgz` and `license.tgz`, in any order; other
//! top-level entries are ignored, anything else under the artifact directories is refused. Each
//! artifact's bytes are handed to the caller's [`Sink`] as they stream by, and only after the
//! whole stream has been read is the release judged: every artifact listed in `release.MF`
//! present exactly once and every present one listed, every digest equal to what the sink
//! measured (`sha1` may be 40-hex SHA-1 or `sha256:<hex>`), every inner archive acceptable to
//! [`archive`] (no escaping paths, devices, truncation, corrupt gzip), each job's `job.MF` named
//! like its entry and listing only templates it carries, and every package dependency and job
//! package naming a package of the release (compiled packages depend on compiled packages).
//! Digests are judged before the contents of inner archives, so a tampered artifact is reported
//! as a digest mismatch, not as whatever its damaged bytes happen to look like.
//!
//! **The sink contract.** The sink is called once per artifact, in archive order, with the
//! artifact's raw tarball bytes; it must read them to the end and return the SHA-1, SHA-256 and
//! size of what it read (the blobstore hashes while it writes, so the bytes are read once). It
//! is called before the artifact can be judged — `release.MF` may come last — so it must write
//! somewhere provisional: when [`read_release`] returns `Err`, the caller discards everything the
//! sink stored during the call; only on `Ok` may it commit (and record) them. A sink error
//! aborts the read and is returned as [`TarballError::Sink`]; a sink that returns without
//! reading everything is a bug, reported as [`Problem::SinkContract`].
//!
//! Memory stays flat whatever the size of the release: packages, compiled packages and the
//! license are never buffered. Their inner archives are checked on a second thread that reads a
//! copy of the bytes as the sink consumes them (bounded channel, so it costs a core, not
//! memory). Jobs are small and are buffered (up to [`JOB_LIMIT`]) to read `job.MF`,
//! `templates/` and `monit` before the same bytes go to the sink.

use std::collections::{BTreeMap, HashMap, HashSet};

use std::io::{self, Read};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::archive::{self, ArchiveError, EntryKind};
use super::manifest::{self, CompiledPackage, FormatError, JobSpec, ReleaseArtifact, ReleaseManifest};

/// Largest job tarball, and largest total of its contents, read into memory.
pub const JOB_LIMIT: u64 = 64 * 1024 * 1024;
/// Largest `release.MF` (cf-deployment's biggest releases have ~100 KiB ones).
pub const MANIFEST_LIMIT: u64 = 16 * 1024 * 1024;
/// Chunk size copied to the thread that checks an inner archive.
const TEE_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactKind {
    Job,
    Package,
    CompiledPackage,
    License,
}

impl ArtifactKind {
    /// The artifact's path in a release tarball.
    pub fn entry_path(self, name: &str) -> String {
        match self {
            ArtifactKind::Job => format!("jobs/{name}.tgz"),
            ArtifactKind::Package => format!("packages/{name}.tgz"),
            ArtifactKind::CompiledPackage => format!("compiled_packages/{name}.tgz"),
            ArtifactKind::License => "license.tgz".to_string(),
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ArtifactKind::Job => "job",
            ArtifactKind::Package => "package",
            ArtifactKind::CompiledPackage => "compiled package",
            ArtifactKind::License => "license",
        }
    }
}

pub use super::digest::{ExpectedDigest, Hashes};

/// Called once per inner artifact with a reader over its bytes; must consume it and return
/// the hashes of what it read (the caller stores it in the blobstore while hashing). The name
/// is the artifact's (`nginx`; `license` for the license), the bytes are its `.tgz`.
pub type Sink<'a> = dyn FnMut(ArtifactKind, &str, &mut dyn Read) -> io::Result<Hashes> + 'a;

/// A release tarball that was read whole and verified. Artifacts are in `release.MF` order.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseTarball {
    pub manifest: ReleaseManifest,
    pub jobs: Vec<JobArtifact>,
    pub packages: Vec<(ReleaseArtifact, Hashes)>,
    pub compiled_packages: Vec<(CompiledPackage, Hashes)>,
    pub license: Option<Hashes>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobArtifact {
    pub entry: ReleaseArtifact,
    /// `job.MF`.
    pub spec: JobSpec,
    /// Path under `templates/` → contents.
    pub templates: BTreeMap<String, Vec<u8>>,
    pub monit: Option<String>,
    pub hashes: Hashes,
}

#[derive(Debug, thiserror::Error)]
pub enum TarballError {
    /// The outer archive, or (for jobs) an inner one, was refused or could not be read.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// `release.MF` or a `job.MF` is not a valid document (the message names which).
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{source_name}: {problem}")]
    Invalid { source_name: String, problem: Problem },
    /// The sink failed; nothing about the release was judged.
    #[error("{source_name}: storing {artifact}: {source}")]
    Sink { source_name: String, artifact: String, source: io::Error },
}

/// What is wrong with a release tarball. `artifact` is the entry path (`packages/nginx.tgz`).
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("release.MF is missing")]
    MissingManifest,
    #[error("{entry} is not UTF-8 text")]
    NotText { entry: String },
    #[error("{entry} is larger than {limit} bytes")]
    TooLarge { entry: String, limit: u64 },
    #[error("{entry} appears twice in the tarball")]
    Duplicate { entry: String },
    #[error(
        "unexpected entry {entry} (artifacts are jobs/<name>.tgz, packages/<name>.tgz, compiled_packages/<name>.tgz)"
    )]
    UnexpectedEntry { entry: String },
    #[error("release.MF lists {kind} `{name}` twice")]
    ListedTwice { kind: &'static str, name: String },
    #[error("release.MF lists {kind} `{name}`, but {artifact} is not in the tarball")]
    Missing { kind: &'static str, name: String, artifact: String },
    #[error("{artifact} is in the tarball but not listed in release.MF")]
    Unlisted { artifact: String },
    #[error("{artifact}: release.MF gives the digest `{digest}`, which is neither 40-hex SHA-1 nor sha256:<64 hex>")]
    BadDigest { artifact: String, digest: String },
    #[error("{artifact}: digest mismatch: release.MF says {expected}, the tarball holds {actual}")]
    DigestMismatch { artifact: String, expected: String, actual: String },
    #[error("{artifact}: job.MF is missing")]
    MissingJobManifest { artifact: String },
    #[error("{artifact}: job.MF names the job `{found}`")]
    JobNameMismatch { artifact: String, found: String },
    #[error("{artifact}: job.MF lists the template `{template}`, which is not under templates/")]
    MissingTemplate { artifact: String, template: String },
    #[error("{artifact}: depends on `{dependency}`, which is not a {kind} of this release")]
    UnknownDependency { artifact: String, dependency: String, kind: &'static str },
    #[error("{artifact}: uses the package `{package}`, which is not in this release")]
    UnknownJobPackage { artifact: String, package: String },
    #[error("{artifact}: the sink read {read} bytes and reported {reported} of {expected} (it must read everything)")]
    SinkContract { artifact: String, expected: u64, read: u64, reported: u64 },
}

/// An artifact as it went by, before it is judged.
struct Seen {
    hashes: Hashes,
    /// The inner archive's verdict, kept until the digest has been checked.
    contents: Result<Option<JobContents>, TarballError>,
}

struct JobContents {
    spec: JobSpec,
    templates: BTreeMap<String, Vec<u8>>,
    monit: Option<String>,
}

enum Role {
    Manifest,
    Artifact(ArtifactKind, String),
    Unexpected,
    Ignored,
}

fn role(path: &str) -> Role {
    if path == "release.MF" {
        return Role::Manifest;
    }
    if path == "license.tgz" {
        return Role::Artifact(ArtifactKind::License, "license".to_string());
    }
    let Some((dir, rest)) = path.split_once('/') else { return Role::Ignored };
    let kind = match dir {
        "jobs" => ArtifactKind::Job,
        "packages" => ArtifactKind::Package,
        "compiled_packages" => ArtifactKind::CompiledPackage,
        _ => return Role::Ignored,
    };
    match rest.strip_suffix(".tgz") {
        Some(name) if !name.is_empty() && !name.contains('/') => Role::Artifact(kind, name.to_string()),
        _ => Role::Unexpected,
    }
}

/// Reads and verifies a release tarball, streaming each artifact to `sink`. See the module doc
/// for what is checked and for the sink contract.
pub fn read_release(reader: impl Read, source_name: &str, sink: &mut Sink<'_>) -> Result<ReleaseTarball, TarballError> {
    let invalid = |problem| TarballError::Invalid { source_name: source_name.to_string(), problem };
    let mut manifest: Option<ReleaseManifest> = None;
    let mut seen: HashMap<(ArtifactKind, String), Seen> = HashMap::new();
    let mut order: Vec<(ArtifactKind, String)> = Vec::new();

    archive::visit(reader, source_name, |info, data| -> Result<(), TarballError> {
        let role = role(&info.path);
        if info.kind == EntryKind::Directory && !matches!(role, Role::Manifest | Role::Artifact(..)) {
            return Ok(());
        }
        if info.kind != EntryKind::File && !matches!(role, Role::Ignored) {
            return Err(invalid(Problem::UnexpectedEntry { entry: info.path.clone() }));
        }
        match role {
            Role::Ignored => Ok(()),
            Role::Unexpected => Err(invalid(Problem::UnexpectedEntry { entry: info.path.clone() })),
            Role::Manifest => {
                if manifest.is_some() {
                    return Err(invalid(Problem::Duplicate { entry: info.path.clone() }));
                }
                let bytes = read_limited(data, MANIFEST_LIMIT)
                    .map_err(|e| corrupt(source_name, &info.path, &e))?
                    .ok_or_else(|| invalid(Problem::TooLarge { entry: info.path.clone(), limit: MANIFEST_LIMIT }))?;
                let text =
                    String::from_utf8(bytes).map_err(|_| invalid(Problem::NotText { entry: info.path.clone() }))?;
                manifest = Some(manifest::parse(&text, &format!("{source_name}: release.MF"))?);
                Ok(())
            }
            Role::Artifact(kind, name) => {
                let key = (kind, name);
                if seen.contains_key(&key) {
                    return Err(invalid(Problem::Duplicate { entry: info.path.clone() }));
                }
                let ((stored, read), contents) = if kind == ArtifactKind::Job {
                    let bytes = read_limited(data, JOB_LIMIT)
                        .map_err(|e| corrupt(source_name, &info.path, &e))?
                        .ok_or_else(|| invalid(Problem::TooLarge { entry: info.path.clone(), limit: JOB_LIMIT }))?;
                    let contents = read_job(&bytes, source_name, &info.path, &key.1).map(Some);
                    let mut slice = bytes.as_slice();
                    let mut counted = Tee::new(&mut slice, None);
                    let stored = sink(kind, &key.1, &mut counted);
                    ((stored, counted.finish()), contents)
                } else {
                    let inner_source = format!("{source_name}: {}", info.path);
                    stream_checked(kind, &key.1, inner_source, data, sink)
                };
                let hashes = stored.map_err(|source| TarballError::Sink {
                    source_name: source_name.to_string(),
                    artifact: info.path.clone(),
                    source,
                })?;
                if read != info.size || hashes.size != info.size {
                    return Err(invalid(Problem::SinkContract {
                        artifact: info.path.clone(),
                        expected: info.size,
                        read,
                        reported: hashes.size,
                    }));
                }
                order.push(key.clone());
                seen.insert(key, Seen { hashes, contents });
                Ok(())
            }
        }
    })?;

    let manifest = manifest.ok_or_else(|| invalid(Problem::MissingManifest))?;
    verify(&manifest, &mut seen, &order).map_err(|e| match e {
        Verdict::Problem(problem) => invalid(problem),
        Verdict::Contents(error) => error,
    })?;

    let mut take = |kind: ArtifactKind, name: &str| seen.remove(&(kind, name.to_string())).expect("verified present");
    let mut jobs = Vec::new();
    for entry in &manifest.jobs {
        let Seen { hashes, contents } = take(ArtifactKind::Job, &entry.name);
        let JobContents { spec, templates, monit } = contents.ok().flatten().expect("verified job contents");
        jobs.push(JobArtifact { entry: entry.clone(), spec, templates, monit, hashes });
    }
    let packages = manifest.packages.iter().map(|p| (p.clone(), take(ArtifactKind::Package, &p.name).hashes)).collect();
    let compiled_packages = manifest
        .compiled_packages
        .iter()
        .map(|p| (p.clone(), take(ArtifactKind::CompiledPackage, &p.name).hashes))
        .collect();
    let license = manifest.license.as_ref().map(|_| take(ArtifactKind::License, "license").hashes);
    Ok(ReleaseTarball { manifest, jobs, packages, compiled_packages, license })
}

enum Verdict {
    Problem(Problem),
    Contents(TarballError),
}

impl From<Problem> for Verdict {
    fn from(problem: Problem) -> Verdict {
        Verdict::Problem(problem)
    }
}

/// The checks made once the whole stream has gone by, in the order an operator wants to hear
/// about them: what is missing or extra, then digests, then what is inside.
fn verify(
    manifest: &ReleaseManifest,
    seen: &mut HashMap<(ArtifactKind, String), Seen>,
    order: &[(ArtifactKind, String)],
) -> Result<(), Verdict> {
    // (kind, name, digest text) of every listed artifact, in release.MF order.
    let mut listed: Vec<(ArtifactKind, &str, &str)> = Vec::new();
    listed.extend(manifest.jobs.iter().map(|a| (ArtifactKind::Job, a.name.as_str(), a.sha1.as_str())));
    listed.extend(manifest.packages.iter().map(|a| (ArtifactKind::Package, a.name.as_str(), a.sha1.as_str())));
    listed.extend(
        manifest.compiled_packages.iter().map(|a| (ArtifactKind::CompiledPackage, a.name.as_str(), a.sha1.as_str())),
    );
    listed.extend(manifest.license.iter().map(|l| (ArtifactKind::License, "license", l.sha1.as_str())));

    let mut unique = HashSet::new();
    for &(kind, name, _) in &listed {
        if !unique.insert((kind, name)) {
            return Err(Problem::ListedTwice { kind: kind.noun(), name: name.to_string() }.into());
        }
        if !seen.contains_key(&(kind, name.to_string())) {
            let artifact = kind.entry_path(name);
            return Err(Problem::Missing { kind: kind.noun(), name: name.to_string(), artifact }.into());
        }
    }
    if let Some((kind, name)) = order.iter().find(|(kind, name)| !unique.contains(&(*kind, name.as_str()))) {
        return Err(Problem::Unlisted { artifact: kind.entry_path(name) }.into());
    }

    for &(kind, name, digest) in &listed {
        let artifact = kind.entry_path(name);
        let expected = ExpectedDigest::parse(digest)
            .map_err(|_| Problem::BadDigest { artifact: artifact.clone(), digest: digest.into() })?;
        let hashes = &seen[&(kind, name.to_string())].hashes;
        if !expected.matches(hashes) {
            let actual = expected.actual(hashes).to_string();
            return Err(Problem::DigestMismatch { artifact, expected: expected.to_string(), actual }.into());
        }
    }

    for &(kind, name, _) in &listed {
        let entry = seen.get_mut(&(kind, name.to_string())).expect("checked present");
        if entry.contents.is_err() {
            let error = std::mem::replace(&mut entry.contents, Ok(None)).err().expect("checked error");
            return Err(Verdict::Contents(error));
        }
    }

    let packages: HashSet<&str> = manifest.packages.iter().map(|p| p.name.as_str()).collect();
    let compiled: HashSet<&str> = manifest.compiled_packages.iter().map(|p| p.name.as_str()).collect();
    for package in &manifest.packages {
        if let Some(dependency) = package.dependencies.iter().find(|d| !packages.contains(d.as_str())) {
            let artifact = ArtifactKind::Package.entry_path(&package.name);
            return Err(Problem::UnknownDependency { artifact, dependency: dependency.clone(), kind: "package" }.into());
        }
    }
    for package in &manifest.compiled_packages {
        if let Some(dependency) = package.dependencies.iter().find(|d| !compiled.contains(d.as_str())) {
            let artifact = ArtifactKind::CompiledPackage.entry_path(&package.name);
            let kind = "compiled package";
            return Err(Problem::UnknownDependency { artifact, dependency: dependency.clone(), kind }.into());
        }
    }
    for job in &manifest.jobs {
        let contents = seen[&(ArtifactKind::Job, job.name.clone())].contents.as_ref();
        let from_job_mf =
            contents.ok().and_then(Option::as_ref).map(|c| c.spec.packages.as_slice()).unwrap_or_default();
        let used = job.packages.iter().chain(from_job_mf);
        if let Some(package) =
            used.into_iter().find(|p| !packages.contains(p.as_str()) && !compiled.contains(p.as_str()))
        {
            let artifact = ArtifactKind::Job.entry_path(&job.name);
            return Err(Problem::UnknownJobPackage { artifact, package: package.clone() }.into());
        }
    }
    Ok(())
}

/// Reads a buffered job tarball: `job.MF` (named `name`, listing only templates it carries),
/// `templates/**`, `monit`.
fn read_job(bytes: &[u8], source_name: &str, artifact: &str, name: &str) -> Result<JobContents, TarballError> {
    let invalid = |problem| TarballError::Invalid { source_name: source_name.to_string(), problem };
    let inner_source = format!("{source_name}: {artifact}");
    let mut budget = JOB_LIMIT;
    let mut job_mf = None;
    let mut monit = None;
    let mut templates = BTreeMap::new();
    archive::visit(bytes, &inner_source, |info, data| -> Result<(), TarballError> {
        if info.kind != EntryKind::File {
            return Ok(());
        }
        let template = info.path.strip_prefix("templates/");
        if template.is_none() && info.path != "job.MF" && info.path != "monit" {
            return Ok(());
        }
        let entry = format!("{artifact}: {}", info.path);
        let contents = read_limited(data, budget)
            .map_err(|e| corrupt(&inner_source, &info.path, &e))?
            .ok_or_else(|| invalid(Problem::TooLarge { entry: entry.clone(), limit: JOB_LIMIT }))?;
        budget -= contents.len() as u64;
        match template {
            Some(template) => {
                templates.insert(template.to_string(), contents);
            }
            None => {
                let text = String::from_utf8(contents).map_err(|_| invalid(Problem::NotText { entry }))?;
                *(if info.path == "monit" { &mut monit } else { &mut job_mf }) = Some(text);
            }
        }
        Ok(())
    })?;
    let text = job_mf.ok_or_else(|| invalid(Problem::MissingJobManifest { artifact: artifact.to_string() }))?;
    let spec: JobSpec = manifest::parse(&text, &format!("{inner_source}: job.MF"))?;
    if spec.name != name {
        return Err(invalid(Problem::JobNameMismatch { artifact: artifact.to_string(), found: spec.name }));
    }
    if let Some(template) = spec.templates.keys().find(|t| !templates.contains_key(t.as_str())) {
        let template = template.clone();
        return Err(invalid(Problem::MissingTemplate { artifact: artifact.to_string(), template }));
    }
    Ok(JobContents { spec, templates, monit })
}

/// Streams a non-job artifact to the sink while a second thread checks the inner archive from a
/// copy of the same bytes. Returns what the sink said, how many bytes it read, and the verdict.
fn stream_checked(
    kind: ArtifactKind,
    name: &str,
    inner_source: String,
    data: &mut dyn Read,
    sink: &mut Sink<'_>,
) -> ((io::Result<Hashes>, u64), Result<Option<JobContents>, TarballError>) {
    let (copy, copies) = mpsc::sync_channel::<Vec<u8>>(4);
    std::thread::scope(|scope| {
        let checker = scope.spawn(move || {
            let copies = ChannelReader { copies, chunk: Vec::new(), pos: 0 };
            archive::visit(copies, &inner_source, |_, _| Ok::<(), ArchiveError>(()))
        });
        let mut tee = Tee::new(data, Some(copy));
        let stored = sink(kind, name, &mut tee);
        // Closes the channel, so the checker sees the end even when the sink stopped early.
        let read = tee.finish();
        let verdict = checker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        ((stored, read), verdict.map(|()| None).map_err(TarballError::from))
    })
}

/// Counts what is read through it and, when given a channel, sends a copy along it in chunks.
/// A closed channel (the checker has its verdict) just stops the copies.
pub(super) struct Tee<'a> {
    inner: &'a mut dyn Read,
    copy: Option<mpsc::SyncSender<Vec<u8>>>,
    pending: Vec<u8>,
    read: u64,
}

impl<'a> Tee<'a> {
    pub(super) fn new(inner: &'a mut dyn Read, copy: Option<mpsc::SyncSender<Vec<u8>>>) -> Tee<'a> {
        let pending = if copy.is_some() { Vec::with_capacity(TEE_CHUNK) } else { Vec::new() };
        Tee { inner, copy, pending, read: 0 }
    }

    fn send_pending(&mut self) {
        if let Some(copy) = &self.copy
            && !self.pending.is_empty()
        {
            let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(TEE_CHUNK));
            if copy.send(chunk).is_err() {
                self.copy = None;
            }
        }
    }

    /// Sends what is left and closes the channel; returns the bytes read.
    pub(super) fn finish(mut self) -> u64 {
        self.send_pending();
        self.copy = None;
        self.read
    }
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.copy.is_some() {
            self.pending.extend_from_slice(&buf[..n]);
            if self.pending.len() >= TEE_CHUNK {
                self.send_pending();
            }
        }
        Ok(n)
    }
}

/// The checker's side of the channel: chunks in, a byte stream out; a closed channel is the end.
struct ChannelReader {
    copies: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.pos == self.chunk.len() {
            match self.copies.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Reads everything, or `None` when there is more than `limit`.
pub(super) fn read_limited(data: &mut dyn Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    data.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// A read error inside an entry. [`archive::visit`] replaces it with its own account when the
/// archive failed, so this is only what remains.
fn corrupt(source_name: &str, entry: &str, e: &io::Error) -> TarballError {
    TarballError::Archive(ArchiveError::corrupt_entry(source_name, entry, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sorted_into_roles() {
        assert!(matches!(role("release.MF"), Role::Manifest));
        assert!(matches!(role("jobs/web.tgz"), Role::Artifact(ArtifactKind::Job, n) if n == "web"));
        assert!(
            matches!(role("compiled_packages/a.b.tgz"), Role::Artifact(ArtifactKind::CompiledPackage, n) if n == "a.b")
        );
        assert!(matches!(role("license.tgz"), Role::Artifact(ArtifactKind::License, _)));
        assert!(matches!(role("packages/a/b.tgz"), Role::Unexpected));
        assert!(matches!(role("packages/.tgz"), Role::Unexpected));
        assert!(matches!(role("jobs/readme.txt"), Role::Unexpected));
        assert!(matches!(role("jobs"), Role::Ignored));
        assert!(matches!(role("LICENSE"), Role::Ignored));
    }
}

//! `create-release`: builds a BOSH release from a release source directory, as bosh-cli does,
//! into the same files bosh-cli keeps, and optionally a release tarball.
//!
//! What it owns: reading the source directory (through [`fingerprint`]), checking that package
//! dependencies and job packages name real packages and form no cycle, building each job,
//! package and license into a gzipped tarball, the build indexes, release versions, and the
//! release tarball's layout. What it leaves: parsing documents ([`crate::release::manifest`]),
//! printing ([`crate::cli::create_release`]), uploading (the upload commands call
//! [`create_release`] with [`Options::tarball`] set and upload the file).
//!
//! # Files it reads and writes in the release directory (bosh-cli's layout)
//! - `.dev_builds/{jobs,packages}/<name>/index.yml` and `.dev_builds/license/index.yml`:
//!   `builds: {<fingerprint>: {version: <fingerprint>, sha1: sha256:<hex>}}`. The built tarball
//!   sits beside its index as `<fingerprint>.tgz` (bosh-cli keeps it in `~/.bosh/cache`; keeping
//!   it in the directory makes a release directory self-contained and leaves `$HOME` alone).
//! - `.final_builds/…` the same for final builds. bosh-cli uploads final blobs to the release
//!   blobstore of `config/final.yml` and records a `blobstore_id`; rosh has no release blobstore
//!   yet, so final blobs stay beside their index (git-ignored by bosh's `.gitignore` template)
//!   and `blobstore_id` is left out.
//! - `dev_releases/<name>/index.yml` and `dev_releases/<name>/<name>-<version>.yml` (the
//!   release.MF); `releases/<name>/…` the same for final releases.
//! - rosh's own addition: `config/requires.yml`, the release's declared requirements
//!   ([`crate::compat::requires`]), copied into release.MF as `requires:`. A changed
//!   requirement makes a new version even when no job or package changed.
//!
//! An artifact whose fingerprint is in the dev or final index, and whose tarball is there with
//! the recorded digest, is reused with its recorded version; otherwise it is built and added to
//! the dev index with its fingerprint as version. Dev release versions go `0+dev.1`, `0+dev.2`, …
//! after the latest dev or final version (`1` → `1+dev.1`); final versions increment the last
//! component of the latest final version (`1` → `2`, `56.26.0` → `56.26.1`, bosh-cli's rule),
//! starting at `1`. `--version` sets either explicitly and is refused if it exists.
//!
//! **One deliberate difference from bosh-cli**: bosh-cli makes a new dev version on every run.
//! rosh compares the jobs, packages and license (names and fingerprints) with the latest
//! release (dev or final for a dev build, final for `--final`); when nothing changed it creates
//! no version and says so ([`Created::new_version`] is false), unless forced. `--tarball` still
//! writes that existing version's tarball.
//!
//! Like bosh-cli, a directory inside a git work tree with uncommitted changes is refused unless
//! forced (`git status --short`); `commit_hash` is `git rev-parse --short HEAD`, `non-git`
//! outside a work tree (or without a `git` program), `empty` before the first commit.
//! `uncommitted_changes` is true when forced past local modifications. Unlike bosh-cli,
//! `--final` does not also record a dev release.
//!
//! # Tarballs
//! Every tarball rosh writes is reproducible: entries in a fixed order, directories 0755, files
//! 0644 or 0755 (from the execute bit, like bosh-cli), symlinks 0777, uid/gid 0, no user names,
//! mtime [`MTIME`], gzip header without time or OS. Identical inputs give identical bytes. Digests
//! are `sha256:<hex>`. Layouts: a job holds `job.MF` (the spec's bytes), `monit` and
//! `templates/…`; a package holds `packaging` and its files at their paths; the license holds
//! the `LICENSE*`/`NOTICE*` files; the release tarball holds `release.MF`, `jobs/<j>.tgz`,
//! `packages/<p>.tgz`, `license.tgz` and the license files themselves. Everything is written to
//! a temporary file in the destination directory and renamed into place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::compat::requires::{self, Requires};
use crate::manifest::yaml;
use crate::release::fingerprint::{self, Content, Kind, SourceArtifact, SourceError, hex};
use crate::release::manifest::{
    self, BuildEntry, BuildIndex, FinalConfig, FormatError, JobSpec, LicenseArtifact, PackageSpec, ReleaseArtifact,
    ReleaseManifest,
};

/// The modification time of every tarball entry rosh writes: 2000-01-01T00:00:00Z. Fixed so
/// builds are reproducible; not 0, which some tools read as "unknown".
pub const MTIME: u64 = 946_684_800;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Release name; default `final_name` (or `name`) of `config/final.yml`.
    pub name: Option<String>,
    /// Release version; default the next dev (or final) version.
    pub version: Option<String>,
    /// Build a final release (`.final_builds/`, `releases/`).
    pub final_release: bool,
    /// Also write the release tarball here.
    pub tarball: Option<PathBuf>,
    /// Build despite uncommitted git changes, and make a new version even when nothing changed.
    pub force: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a release directory (it has neither jobs/ nor packages/)", dir.display())]
    NotAReleaseDir { dir: PathBuf },
    #[error("config/final.yml: no final_name (or name); name the release with --name")]
    NoName,
    #[error("invalid release name `{0}`: use letters, digits, `-`, `_` and `.`")]
    BadName(String),
    #[error("invalid version `{version}`: {message}")]
    BadVersion { version: String, message: String },
    #[error("{index}: version `{version}`: {message}")]
    BadIndexVersion { index: String, version: String, message: String },
    #[error("{spec}: dependencies[{index}]: unknown package `{dependency}`")]
    UnknownDependency { spec: String, index: usize, dependency: String },
    #[error("package dependency cycle: {}", cycle.join(" -> "))]
    DependencyCycle { cycle: Vec<String> },
    #[error("{spec}: packages[{index}]: unknown package `{package}`")]
    UnknownPackage { spec: String, index: usize, package: String },
    #[error("release {name}/{version} already exists ({})", path.display())]
    VersionExists { name: String, version: String, path: PathBuf },
    #[error("git repository has local modifications (use --force to build anyway):\n\n{status}")]
    Dirty { status: String },
    #[error("{}: git: {message}", dir.display())]
    Git { dir: PathBuf, message: String },
    #[error("{}: changed while it was being archived; run create-release again", path.display())]
    Changed { path: PathBuf },
    #[error("{what}: {message}")]
    Yaml { what: String, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CreateError + '_ {
    move |source| CreateError::Io { path: path.to_path_buf(), source }
}

/// Whether an artifact was built by this run or found already built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    New,
    Reused,
}

/// A job, package or license with its built tarball.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltArtifact {
    pub kind: Kind,
    pub name: String,
    pub version: String,
    pub fingerprint: String,
    /// `sha256:<hex>` of the tarball.
    pub sha1: String,
    pub status: BuildStatus,
    /// The built tarball (in `.dev_builds/` or `.final_builds/`).
    pub archive: PathBuf,
    /// Jobs: the packages they use. Packages: their dependencies.
    pub uses: Vec<String>,
}

/// The outcome of [`create_release`].
#[derive(Debug, Clone)]
pub struct Created {
    /// The release (also what `release.MF` holds in the tarball).
    pub manifest: ReleaseManifest,
    /// `dev_releases/<name>/<name>-<version>.yml` or `releases/<name>/<name>-<version>.yml`.
    pub manifest_path: PathBuf,
    pub final_release: bool,
    /// False when nothing changed since `manifest`, an existing version: no version was created.
    pub new_version: bool,
    pub jobs: Vec<BuiltArtifact>,
    pub packages: Vec<BuiltArtifact>,
    pub license: Option<BuiltArtifact>,
    /// Where the release tarball was written, when asked.
    pub tarball_path: Option<PathBuf>,
}

/// Builds the release in `dir` (see the module doc).
pub fn create_release(dir: &Path, options: &Options) -> Result<Created, CreateError> {
    if !dir.join("jobs").is_dir() && !dir.join("packages").is_dir() {
        return Err(CreateError::NotAReleaseDir { dir: dir.to_path_buf() });
    }
    let name = match &options.name {
        Some(name) => name.clone(),
        None => release_name_from_config(dir)?,
    };
    check_name(&name)?;
    if let Some(version) = &options.version {
        Version::parse(version).map_err(|message| CreateError::BadVersion { version: version.clone(), message })?;
    }

    let git = git_state(dir)?;
    if let Some(status) = &git.local_changes
        && !options.force
    {
        return Err(CreateError::Dirty { status: status.clone() });
    }

    let source = read_source(dir)?;
    let dev_builds = BuildsDir::new(dir.join(".dev_builds"));
    let final_builds = BuildsDir::new(dir.join(".final_builds"));

    let mut built = Vec::new();
    for artifact in source.all() {
        built.push(resolve(artifact, &dev_builds, &final_builds, &source)?);
    }
    let (mut jobs, mut packages, mut license) = (Vec::new(), Vec::new(), None);
    for b in built {
        match b.kind {
            Kind::Job => jobs.push(b),
            Kind::Package => packages.push(b),
            Kind::License => license = Some(b),
        }
    }

    let dev_releases = ReleaseIndex::new(dir.join("dev_releases"), &name);
    let final_releases = ReleaseIndex::new(dir.join("releases"), &name);
    let requires = read_requires(dir)?;
    let outcome = choose_version(options, &dev_releases, &final_releases, &jobs, &packages, &license, &requires)?;
    let mut created = match outcome {
        Outcome::Unchanged { previous, manifest_path, final_release } => {
            let identity = Identity {
                commit_hash: previous.commit_hash.clone(),
                uncommitted_changes: previous.uncommitted_changes,
            };
            Created {
                manifest: compose(&previous.name, &previous.version, &identity, &jobs, &packages, &license, &requires),
                manifest_path,
                final_release,
                new_version: false,
                jobs,
                packages,
                license,
                tarball_path: None,
            }
        }
        Outcome::New(version) => {
            if options.final_release {
                for artifact in jobs.iter_mut().chain(packages.iter_mut()).chain(license.iter_mut()) {
                    finalize(artifact, &final_builds)?;
                }
            }
            let identity = Identity {
                commit_hash: Some(git.commit_hash.clone()),
                uncommitted_changes: git.local_changes.is_some(),
            };
            let manifest = compose(&name, &version, &identity, &jobs, &packages, &license, &requires);
            let index = if options.final_release { &final_releases } else { &dev_releases };
            Created {
                manifest_path: index.add(&manifest)?,
                manifest,
                final_release: options.final_release,
                new_version: true,
                jobs,
                packages,
                license,
                tarball_path: None,
            }
        }
    };
    if let Some(out) = &options.tarball {
        created.tarball_path = Some(write_release_tarball(&created, &source, out)?);
    }
    Ok(created)
}

/// What a build becomes.
enum Outcome {
    /// Nothing changed since this existing release.
    Unchanged { previous: Box<ReleaseManifest>, manifest_path: PathBuf, final_release: bool },
    /// A new version.
    New(String),
}

/// The version to create, or the existing release it would only repeat (see the module doc).
fn choose_version(
    options: &Options,
    dev_releases: &ReleaseIndex,
    final_releases: &ReleaseIndex,
    jobs: &[BuiltArtifact],
    packages: &[BuiltArtifact],
    license: &Option<BuiltArtifact>,
    requires: &Option<Requires>,
) -> Result<Outcome, CreateError> {
    let index = if options.final_release { final_releases } else { dev_releases };
    if let Some(version) = &options.version {
        if index.contains(version)? {
            let path = index.manifest_path(version);
            return Err(CreateError::VersionExists { name: index.name.clone(), version: version.clone(), path });
        }
        return Ok(Outcome::New(version.clone()));
    }

    // A dev version follows the latest dev or final version; a final one the latest final.
    let candidates = if options.final_release { vec![final_releases] } else { vec![dev_releases, final_releases] };
    let mut latest: Option<(Version, &ReleaseIndex)> = None;
    for candidate in candidates {
        if let Some(v) = candidate.latest()?
            && latest.as_ref().is_none_or(|(best, _)| v.cmp(best).is_gt())
        {
            latest = Some((v, candidate));
        }
    }
    if let Some((version, latest_index)) = &latest
        && !options.force
        && let Some(previous) = latest_index.manifest(&version.text)?
        && same_content(&previous, jobs, packages, license)
        && previous.requires == *requires
    {
        return Ok(Outcome::Unchanged {
            manifest_path: latest_index.manifest_path(&previous.version),
            final_release: std::ptr::eq(*latest_index, final_releases),
            previous: Box::new(previous),
        });
    }

    let next = if options.final_release {
        match latest {
            Some((v, _)) => v.increment_release(),
            None => Version::parse("1"),
        }
    } else {
        match latest {
            Some((v, _)) => v.increment_post_release(),
            None => Version::parse("0+dev.1"),
        }
    };
    let next = next.map_err(|message| CreateError::BadVersion { version: "(next version)".to_string(), message })?;
    Ok(Outcome::New(next.text))
}

/// The fields of a release manifest that say where it was built from.
struct Identity {
    commit_hash: Option<String>,
    uncommitted_changes: bool,
}

/// The release's declared requirements, from `config/requires.yml` when there is one; an empty
/// document declares none.
fn read_requires(dir: &Path) -> Result<Option<Requires>, CreateError> {
    let path = dir.join(requires::SOURCE_PATH);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CreateError::Io { path, source }),
    };
    let parsed = requires::parse(&text, requires::SOURCE_PATH)?;
    Ok(Some(parsed).filter(|r| !r.is_empty()))
}

fn release_name_from_config(dir: &Path) -> Result<String, CreateError> {
    let path = dir.join("config").join("final.yml");
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(CreateError::NoName),
        Err(source) => return Err(CreateError::Io { path, source }),
    };
    let config: FinalConfig = manifest::parse(&text, "config/final.yml")?;
    config.release_name().map(str::to_string).ok_or(CreateError::NoName)
}

/// Names become file names (`dev_releases/<name>/<name>-<v>.yml`), so keep them plain.
fn check_name(name: &str) -> Result<(), CreateError> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(CreateError::BadName(name.to_string())) }
}

/// The jobs, packages and license of a source directory, fingerprinted and checked.
struct Source {
    jobs: Vec<(JobSpec, SourceArtifact)>,
    packages: Vec<(PackageSpec, SourceArtifact)>,
    license: Option<SourceArtifact>,
}

impl Source {
    fn all(&self) -> impl Iterator<Item = &SourceArtifact> {
        self.jobs.iter().map(|(_, a)| a).chain(self.packages.iter().map(|(_, a)| a)).chain(self.license.iter())
    }

    fn uses(&self, artifact: &SourceArtifact) -> Vec<String> {
        match artifact.kind {
            Kind::Job => self.jobs.iter().find(|(s, _)| s.name == artifact.name).map(|(s, _)| s.packages.clone()),
            Kind::Package => {
                self.packages.iter().find(|(s, _)| s.name == artifact.name).map(|(s, _)| s.dependencies.clone())
            }
            Kind::License => None,
        }
        .unwrap_or_default()
    }
}

/// Directory names under `dir`, sorted, skipping files and hidden entries.
fn subdirs(dir: &Path) -> Result<Vec<String>, CreateError> {
    let mut names = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(source) => return Err(CreateError::Io { path: dir.to_path_buf(), source }),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn read_source(dir: &Path) -> Result<Source, CreateError> {
    let mut packages = Vec::new();
    for name in subdirs(&dir.join("packages"))? {
        packages.push(fingerprint::read_package(dir, &name)?);
    }
    let mut jobs = Vec::new();
    for name in subdirs(&dir.join("jobs"))? {
        jobs.push(fingerprint::read_job(dir, &name)?);
    }
    let license = fingerprint::read_license(dir)?;
    check_references(&packages, &jobs)?;
    Ok(Source { jobs, packages, license })
}

/// Every dependency and job package names a package of the release, and dependencies form no
/// cycle.
fn check_references(
    packages: &[(PackageSpec, SourceArtifact)],
    jobs: &[(JobSpec, SourceArtifact)],
) -> Result<(), CreateError> {
    let deps: BTreeMap<&str, &[String]> =
        packages.iter().map(|(s, _)| (s.name.as_str(), &s.dependencies[..])).collect();
    for (spec, _) in packages {
        for (index, dependency) in spec.dependencies.iter().enumerate() {
            if !deps.contains_key(dependency.as_str()) {
                return Err(CreateError::UnknownDependency {
                    spec: format!("packages/{}/spec", spec.name),
                    index,
                    dependency: dependency.clone(),
                });
            }
        }
    }
    for (spec, _) in jobs {
        for (index, package) in spec.packages.iter().enumerate() {
            if !deps.contains_key(package.as_str()) {
                return Err(CreateError::UnknownPackage {
                    spec: format!("jobs/{}/spec", spec.name),
                    index,
                    package: package.clone(),
                });
            }
        }
    }

    // Depth-first search; a package met again while still on the path closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        OnPath,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        deps: &BTreeMap<&'a str, &'a [String]>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::OnPath) => {
                let start = path.iter().position(|p| *p == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_string());
                return Err(cycle);
            }
            None => {}
        }
        marks.insert(name, Mark::OnPath);
        path.push(name);
        for dep in deps.get(name).copied().unwrap_or_default() {
            visit(dep, deps, marks, path)?;
        }
        path.pop();
        marks.insert(name, Mark::Done);
        Ok(())
    }
    let mut marks = BTreeMap::new();
    for name in deps.keys() {
        visit(name, &deps, &mut marks, &mut Vec::new()).map_err(|cycle| CreateError::DependencyCycle { cycle })?;
    }
    Ok(())
}

/// `.dev_builds/` or `.final_builds/`: an index per artifact and the built tarballs beside it.
struct BuildsDir {
    root: PathBuf,
}

impl BuildsDir {
    fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// bosh-cli keeps one license index, without a name directory.
    fn dir(&self, kind: Kind, name: &str) -> PathBuf {
        match kind {
            Kind::License => self.root.join(kind.builds_dir()),
            _ => self.root.join(kind.builds_dir()).join(name),
        }
    }

    fn index_path(&self, kind: Kind, name: &str) -> PathBuf {
        self.dir(kind, name).join("index.yml")
    }

    fn archive_path(&self, kind: Kind, name: &str, fingerprint: &str) -> PathBuf {
        self.dir(kind, name).join(format!("{fingerprint}.tgz"))
    }

    fn index(&self, kind: Kind, name: &str) -> Result<BuildIndex, CreateError> {
        let path = self.index_path(kind, name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(manifest::parse(&text, &path.display().to_string())?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BuildIndex::default()),
            Err(source) => Err(CreateError::Io { path, source }),
        }
    }

    fn entry(&self, kind: Kind, name: &str, fingerprint: &str) -> Result<Option<BuildEntry>, CreateError> {
        Ok(self.index(kind, name)?.builds.remove(fingerprint))
    }

    /// The archive recorded for `fingerprint`, if it is here with the recorded digest. An entry
    /// with a SHA-1 digest (written by bosh-cli without `--sha2`) cannot be checked: rebuilt.
    fn verified_archive(&self, kind: Kind, name: &str, fingerprint: &str, entry: &BuildEntry) -> Option<PathBuf> {
        let path = self.archive_path(kind, name, fingerprint);
        let recorded = entry.sha1.as_deref()?;
        let actual = fingerprint::sha256_file(&path).ok()?;
        (recorded == actual).then_some(path)
    }

    fn record(&self, kind: Kind, name: &str, fingerprint: &str, entry: BuildEntry) -> Result<(), CreateError> {
        let mut index = self.index(kind, name)?;
        index.builds.insert(fingerprint.to_string(), entry);
        index.format_version = Some("2".to_string());
        let path = self.index_path(kind, name);
        write_atomic(&path, to_yaml(&index, &path)?.as_bytes())
    }
}

/// Finds `artifact` built in the dev or final builds, or builds it into the dev builds.
fn resolve(
    artifact: &SourceArtifact,
    dev: &BuildsDir,
    finals: &BuildsDir,
    source: &Source,
) -> Result<BuiltArtifact, CreateError> {
    let (kind, name, fp) = (artifact.kind, artifact.name.as_str(), artifact.fingerprint.as_str());
    let uses = source.uses(artifact);
    let final_entry = finals.entry(kind, name, fp)?;
    let dev_entry = dev.entry(kind, name, fp)?;
    // A final build's version wins: old final releases numbered their packages.
    let version =
        final_entry.as_ref().or(dev_entry.as_ref()).map(|e| e.version.clone()).unwrap_or_else(|| fp.to_string());
    let found = dev_entry
        .as_ref()
        .and_then(|e| dev.verified_archive(kind, name, fp, e).map(|p| (p, e)))
        .or_else(|| final_entry.as_ref().and_then(|e| finals.verified_archive(kind, name, fp, e).map(|p| (p, e))));
    if let Some((archive, entry)) = found {
        return Ok(BuiltArtifact {
            kind,
            name: name.to_string(),
            version,
            fingerprint: fp.to_string(),
            sha1: entry.sha1.clone().unwrap_or_default(),
            status: BuildStatus::Reused,
            archive,
            uses,
        });
    }
    let archive = dev.archive_path(kind, name, fp);
    let sha1 = build_archive(artifact, &archive)?;
    dev.record(kind, name, fp, BuildEntry { version: fp.to_string(), blobstore_id: None, sha1: Some(sha1.clone()) })?;
    Ok(BuiltArtifact {
        kind,
        name: name.to_string(),
        version,
        fingerprint: fp.to_string(),
        sha1,
        status: BuildStatus::New,
        archive,
        uses,
    })
}

/// Records `artifact` in the final builds unless it is there already.
fn finalize(artifact: &mut BuiltArtifact, finals: &BuildsDir) -> Result<(), CreateError> {
    let (kind, name, fp) = (artifact.kind, artifact.name.clone(), artifact.fingerprint.clone());
    if let Some(entry) = finals.entry(kind, &name, &fp)? {
        artifact.version = entry.version.clone();
        if let Some(path) = finals.verified_archive(kind, &name, &fp, &entry) {
            artifact.archive = path;
        }
        return Ok(());
    }
    let target = finals.archive_path(kind, &name, &fp);
    copy_atomic(&artifact.archive, &target)?;
    finals.record(
        kind,
        &name,
        &fp,
        BuildEntry { version: fp.clone(), blobstore_id: None, sha1: Some(artifact.sha1.clone()) },
    )?;
    artifact.version = fp;
    artifact.archive = target;
    Ok(())
}

/// The release manifest for `jobs`, `packages` and `license`.
fn compose(
    name: &str,
    version: &str,
    identity: &Identity,
    jobs: &[BuiltArtifact],
    packages: &[BuiltArtifact],
    license: &Option<BuiltArtifact>,
    requires: &Option<Requires>,
) -> ReleaseManifest {
    let entry = |b: &BuiltArtifact| ReleaseArtifact {
        name: b.name.clone(),
        version: b.version.clone(),
        fingerprint: b.fingerprint.clone(),
        sha1: b.sha1.clone(),
        dependencies: if b.kind == Kind::Package { b.uses.clone() } else { Vec::new() },
        packages: if b.kind == Kind::Job { b.uses.clone() } else { Vec::new() },
    };
    ReleaseManifest {
        name: name.to_string(),
        version: version.to_string(),
        commit_hash: identity.commit_hash.clone(),
        uncommitted_changes: identity.uncommitted_changes,
        jobs: jobs.iter().map(entry).collect(),
        packages: packages.iter().map(entry).collect(),
        compiled_packages: Vec::new(),
        license: license.as_ref().map(|b| LicenseArtifact {
            version: b.version.clone(),
            fingerprint: b.fingerprint.clone(),
            sha1: b.sha1.clone(),
        }),
        requires: requires.clone(),
    }
}

/// Same jobs, packages and license, by name and fingerprint.
fn same_content(
    previous: &ReleaseManifest,
    jobs: &[BuiltArtifact],
    packages: &[BuiltArtifact],
    license: &Option<BuiltArtifact>,
) -> bool {
    let ids = |items: &[ReleaseArtifact]| -> BTreeSet<(String, String)> {
        items.iter().map(|a| (a.name.clone(), a.fingerprint.clone())).collect()
    };
    let built = |items: &[BuiltArtifact]| -> BTreeSet<(String, String)> {
        items.iter().map(|a| (a.name.clone(), a.fingerprint.clone())).collect()
    };
    ids(&previous.jobs) == built(jobs)
        && ids(&previous.packages) == built(packages)
        && previous.license.as_ref().map(|l| &l.fingerprint) == license.as_ref().map(|l| &l.fingerprint)
}

/// `dev_releases/<name>/` or `releases/<name>/`.
struct ReleaseIndex {
    dir: PathBuf,
    name: String,
}

impl ReleaseIndex {
    fn new(root: PathBuf, name: &str) -> Self {
        Self { dir: root.join(name), name: name.to_string() }
    }

    fn index_path(&self) -> PathBuf {
        self.dir.join("index.yml")
    }

    fn manifest_path(&self, version: &str) -> PathBuf {
        self.dir.join(format!("{}-{version}.yml", self.name))
    }

    fn read(&self) -> Result<BuildIndex, CreateError> {
        let path = self.index_path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(manifest::parse(&text, &path.display().to_string())?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BuildIndex::default()),
            Err(source) => Err(CreateError::Io { path, source }),
        }
    }

    fn contains(&self, version: &str) -> Result<bool, CreateError> {
        Ok(self.read()?.builds.values().any(|e| e.version == version))
    }

    fn latest(&self) -> Result<Option<Version>, CreateError> {
        let index = self.read()?;
        let mut latest: Option<Version> = None;
        for entry in index.builds.values() {
            let v = Version::parse(&entry.version).map_err(|message| CreateError::BadIndexVersion {
                index: self.index_path().display().to_string(),
                version: entry.version.clone(),
                message,
            })?;
            if latest.as_ref().is_none_or(|best| v.cmp(best).is_gt()) {
                latest = Some(v);
            }
        }
        Ok(latest)
    }

    fn manifest(&self, version: &str) -> Result<Option<ReleaseManifest>, CreateError> {
        let path = self.manifest_path(version);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(manifest::parse(&text, &path.display().to_string())?)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CreateError::Io { path, source }),
        }
    }

    /// Writes the release file, then the index entry (keyed, like bosh-cli's, by a UUID; rosh
    /// derives it from name and version so the same release gets the same key).
    fn add(&self, manifest: &ReleaseManifest) -> Result<PathBuf, CreateError> {
        let path = self.manifest_path(&manifest.version);
        write_atomic(&path, to_yaml(manifest, &path)?.as_bytes())?;
        let mut index = self.read()?;
        let key = uuid_for(&format!("{}/{}", manifest.name, manifest.version));
        index.builds.insert(key, BuildEntry { version: manifest.version.clone(), blobstore_id: None, sha1: None });
        index.format_version = Some("2".to_string());
        let index_path = self.index_path();
        write_atomic(&index_path, to_yaml(&index, &index_path)?.as_bytes())?;
        Ok(path)
    }
}

/// A UUID-shaped key (version 4 layout) from the SHA-256 of `text`.
fn uuid_for(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn to_yaml<T: Serialize>(value: &T, path: &Path) -> Result<String, CreateError> {
    let value = serde_yaml_ng::to_value(value)
        .map_err(|e| CreateError::Yaml { what: path.display().to_string(), message: e.to_string() })?;
    Ok(yaml::to_string(&value))
}

struct GitState {
    commit_hash: String,
    /// `git status --short` output when the work tree has changes.
    local_changes: Option<String>,
}

/// bosh-cli's view of the release directory's git state.
fn git_state(dir: &Path) -> Result<GitState, CreateError> {
    let non_git = GitState { commit_hash: "non-git".to_string(), local_changes: None };
    let run = |args: &[&str]| Command::new("git").args(args).current_dir(dir).output();
    let head = match run(&["rev-parse", "--short", "HEAD"]) {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(non_git),
        Err(e) => return Err(CreateError::Git { dir: dir.to_path_buf(), message: e.to_string() }),
    };
    let stderr = String::from_utf8_lossy(&head.stderr).to_lowercase();
    let commit_hash = if head.status.success() {
        String::from_utf8_lossy(&head.stdout).trim().to_string()
    } else if stderr.contains("not a git repository") {
        return Ok(non_git);
    } else if stderr.contains("needed a single revision") || stderr.contains("unknown revision") {
        "empty".to_string()
    } else {
        return Err(CreateError::Git { dir: dir.to_path_buf(), message: stderr.trim().to_string() });
    };
    let status =
        run(&["status", "--short"]).map_err(|e| CreateError::Git { dir: dir.to_path_buf(), message: e.to_string() })?;
    if !status.status.success() {
        let message = String::from_utf8_lossy(&status.stderr).trim().to_string();
        return Err(CreateError::Git { dir: dir.to_path_buf(), message });
    }
    let changes = String::from_utf8_lossy(&status.stdout).trim_end().to_string();
    Ok(GitState { commit_hash, local_changes: (!changes.is_empty()).then_some(changes) })
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A reproducible `.tgz` being written to a temporary file beside its destination; see the
/// module doc for the header conventions.
pub(crate) struct Tgz {
    builder: tar::Builder<GzEncoder<Hashing<fs::File>>>,
    temp: PathBuf,
    target: PathBuf,
}

impl Tgz {
    pub(crate) fn create(target: &Path) -> Result<Self, CreateError> {
        let temp = temp_path(target)?;
        let file = fs::File::create(&temp).map_err(io_err(&temp))?;
        let gz = flate2::GzBuilder::new().write(Hashing { inner: file, hasher: Sha256::new() }, Compression::default());
        Ok(Self { builder: tar::Builder::new(gz), temp, target: target.to_path_buf() })
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(MTIME);
        header
    }

    pub(crate) fn dir(&mut self, path: &str) -> Result<(), CreateError> {
        let mut header = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.builder.append_data(&mut header, format!("{path}/"), io::empty()).map_err(io_err(&self.temp))
    }

    pub(crate) fn bytes(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), CreateError> {
        let mut header = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.builder.append_data(&mut header, path, data).map_err(io_err(&self.temp))
    }

    /// Appends `source`'s bytes at `path`, returning their `sha256:` digest.
    fn file(&mut self, path: &str, mode: u32, source: &Path) -> Result<String, CreateError> {
        let file = fs::File::open(source).map_err(io_err(source))?;
        let size = file.metadata().map_err(io_err(source))?.len();
        let mut reader = HashingReader { inner: file.take(size), hasher: Sha256::new() };
        let mut header = Self::header(tar::EntryType::Regular, mode, size);
        self.builder.append_data(&mut header, path, &mut reader).map_err(io_err(source))?;
        Ok(format!("sha256:{}", hex(&reader.hasher.finalize())))
    }

    fn symlink(&mut self, path: &str, target: &Path) -> Result<(), CreateError> {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder.append_link(&mut header, path, target).map_err(io_err(&self.temp))
    }

    /// Finishes the archive, syncs it, renames it into place and returns its `sha256:` digest.
    pub(crate) fn finish(self) -> Result<String, CreateError> {
        let Self { builder, temp, target } = self;
        let result = (|| {
            let gz = builder.into_inner()?;
            let hashing = gz.finish()?;
            hashing.inner.sync_all()?;
            Ok::<_, io::Error>(hex(&hashing.hasher.finalize()))
        })();
        let digest = match result {
            Ok(digest) => digest,
            Err(source) => {
                let _ = fs::remove_file(&temp);
                return Err(CreateError::Io { path: target, source });
            }
        };
        fs::rename(&temp, &target).map_err(io_err(&target))?;
        Ok(format!("sha256:{digest}"))
    }
}

/// `<dir>/.<file>.tmp-<pid>` beside `target`, creating `<dir>`.
fn temp_path(target: &Path) -> Result<PathBuf, CreateError> {
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let file = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(parent.join(format!(".{file}.tmp-{}", std::process::id())))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CreateError> {
    let temp = temp_path(path)?;
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    result.map_err(|source| {
        let _ = fs::remove_file(&temp);
        CreateError::Io { path: path.to_path_buf(), source }
    })
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), CreateError> {
    let temp = temp_path(to)?;
    let result =
        fs::copy(from, &temp).and_then(|_| fs::File::open(&temp)?.sync_all()).and_then(|_| fs::rename(&temp, to));
    result.map_err(|source| {
        let _ = fs::remove_file(&temp);
        CreateError::Io { path: to.to_path_buf(), source }
    })
}

/// The parent directories of `paths`, each once, as archive paths.
fn parent_dirs<'a>(paths: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for path in paths {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            dirs.insert(path[..end].to_string());
            end += 1;
        }
    }
    dirs
}

/// Builds one job, package or license tarball at `target`; returns its `sha256:` digest.
fn build_archive(artifact: &SourceArtifact, target: &Path) -> Result<String, CreateError> {
    let mut tgz = Tgz::create(target)?;
    let dirs = parent_dirs(artifact.files.iter().map(|f| f.path.as_str()));
    // Directories and files in one path order, so each directory precedes what it holds.
    let mut entries: Vec<(&str, Option<&fingerprint::ArtifactFile>)> =
        dirs.iter().map(|d| (d.as_str(), None)).collect();
    entries.extend(artifact.files.iter().map(|f| (f.path.as_str(), Some(f))));
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (path, file) in entries {
        let Some(file) = file else {
            tgz.dir(path)?;
            continue;
        };
        match &file.content {
            Content::Symlink { target } => tgz.symlink(path, target)?,
            Content::File { executable } => {
                let digest = tgz.file(path, if *executable { 0o755 } else { 0o644 }, &file.source)?;
                if digest != file.digest {
                    return Err(CreateError::Changed { path: file.source.clone() });
                }
            }
        }
    }
    tgz.finish()
}

/// Writes the release tarball of `created` to `out` (see the module doc for the layout).
fn write_release_tarball(created: &Created, source: &Source, out: &Path) -> Result<PathBuf, CreateError> {
    let mut tgz = Tgz::create(out)?;
    let manifest = to_yaml(&created.manifest, Path::new("release.MF"))?;
    tgz.bytes("release.MF", 0o644, manifest.as_bytes())?;
    for (dir, artifacts) in [("jobs", &created.jobs), ("packages", &created.packages)] {
        if artifacts.is_empty() {
            continue;
        }
        tgz.dir(dir)?;
        let mut sorted: Vec<&BuiltArtifact> = artifacts.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        for artifact in sorted {
            let digest = tgz.file(&format!("{dir}/{}.tgz", artifact.name), 0o644, &artifact.archive)?;
            if digest != artifact.sha1 {
                return Err(CreateError::Changed { path: artifact.archive.clone() });
            }
        }
    }
    if let (Some(built), Some(license)) = (&created.license, &source.license) {
        let digest = tgz.file("license.tgz", 0o644, &built.archive)?;
        if digest != built.sha1 {
            return Err(CreateError::Changed { path: built.archive.clone() });
        }
        // bosh-cli also puts the license files themselves at the top of the release tarball.
        for file in &license.files {
            match &file.content {
                Content::Symlink { target } => tgz.symlink(&file.path, target)?,
                Content::File { .. } => {
                    tgz.file(&file.path, 0o644, &file.source)?;
                }
            }
        }
    }
    tgz.finish()?;
    Ok(out.to_path_buf())
}

/// A release version in bosh's semi-semantic form, `release[-pre][+post]`, each segment
/// dot-separated integers and words: compared and incremented as bosh-cli does
/// (go-semi-semantic).
#[derive(Debug, Clone)]
struct Version {
    text: String,
    release: Segment,
    pre: Segment,
    post: Segment,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Segment(Vec<Component>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    Int(u64),
    Word(String),
}

impl Segment {
    fn parse(text: &str) -> Result<Self, String> {
        text.split('.')
            .map(|part| {
                if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                    part.parse().map(Component::Int).map_err(|e| format!("`{part}`: {e}"))
                } else if !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    Ok(Component::Word(part.to_string()))
                } else {
                    Err(format!("`{part}` is neither a number nor a word"))
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Segment)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Longer segments compare equal to shorter ones when the extra components are all zero.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let n = self.0.len().min(other.0.len());
        for (a, b) in self.0[..n].iter().zip(&other.0[..n]) {
            let ord = match (a, b) {
                (Component::Int(x), Component::Int(y)) => x.cmp(y),
                (Component::Word(x), Component::Word(y)) => x.cmp(y),
                (Component::Word(_), Component::Int(_)) => Ordering::Greater,
                (Component::Int(_), Component::Word(_)) => Ordering::Less,
            };
            if ord.is_ne() {
                return ord;
            }
        }
        let zero = |c: &Component| *c == Component::Int(0);
        if self.0[n..].iter().any(|c| !zero(c)) {
            Ordering::Greater
        } else if other.0[n..].iter().any(|c| !zero(c)) {
            Ordering::Less
        } else {
            Ordering::Equal
        }
    }

    fn increment(&self) -> Result<Self, String> {
        let mut next = self.clone();
        match next.0.last_mut() {
            Some(Component::Int(n)) => *n += 1,
            _ => return Err(format!("cannot increment `{}`: its last component is not a number", self.text())),
        }
        Ok(next)
    }

    fn text(&self) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|c| match c {
                Component::Int(n) => n.to_string(),
                Component::Word(w) => w.clone(),
            })
            .collect();
        parts.join(".")
    }
}

impl Version {
    fn parse(text: &str) -> Result<Self, String> {
        let (rest, post) = match text.split_once('+') {
            Some((rest, post)) => (rest, Segment::parse(post)?),
            None => (text, Segment::default()),
        };
        let (release, pre) = match rest.split_once('-') {
            Some((release, pre)) => (release, Segment::parse(pre)?),
            None => (rest, Segment::default()),
        };
        if release.is_empty() {
            return Err("a version needs a release part (`1`, `0.5`, …)".to_string());
        }
        let release = Segment::parse(release)?;
        Ok(Self { text: text.to_string(), release, pre, post })
    }

    fn from_segments(release: Segment, pre: Segment, post: Segment) -> Self {
        let mut text = release.text();
        if !pre.is_empty() {
            text = format!("{text}-{}", pre.text());
        }
        if !post.is_empty() {
            text = format!("{text}+{}", post.text());
        }
        Self { text, release, pre, post }
    }

    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let ord = self.release.cmp(&other.release);
        if ord.is_ne() {
            return ord;
        }
        // A pre-release sorts before the release itself; a post-release after it.
        let ord = match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => self.pre.cmp(&other.pre),
        };
        if ord.is_ne() {
            return ord;
        }
        match (self.post.is_empty(), other.post.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => self.post.cmp(&other.post),
        }
    }

    /// The next final version: last release component + 1, no pre- or post-release.
    fn increment_release(&self) -> Result<Self, String> {
        Ok(Self::from_segments(self.release.increment()?, Segment::default(), Segment::default()))
    }

    /// The next dev version: `+dev.1` added, or the post-release's last component + 1.
    fn increment_post_release(&self) -> Result<Self, String> {
        let post = if self.post.is_empty() {
            Segment(vec![Component::Word("dev".to_string()), Component::Int(1)])
        } else {
            self.post.increment()?
        };
        Ok(Self::from_segments(self.release.clone(), self.pre.clone(), post))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap()
    }

    #[test]
    fn versions_order_and_increment_like_bosh() {
        assert!(v("0+dev.10").cmp(&v("0+dev.9")).is_gt());
        assert!(v("1").cmp(&v("0+dev.3")).is_gt());
        assert!(v("1+dev.1").cmp(&v("1")).is_gt());
        assert!(v("1.0-rc.1").cmp(&v("1.0")).is_lt());
        assert!(v("1.0.0").cmp(&v("1")).is_eq());
        assert_eq!(v("0+dev.0").increment_post_release().unwrap().text, "0+dev.1");
        assert_eq!(v("3").increment_post_release().unwrap().text, "3+dev.1");
        assert_eq!(v("0+dev.9").increment_post_release().unwrap().text, "0+dev.10");
        assert_eq!(v("56.26.0").increment_release().unwrap().text, "56.26.1");
        assert_eq!(v("1+dev.4").increment_release().unwrap().text, "2");
        assert!(Version::parse("1..2").is_err());
        assert!(Version::parse("+dev.1").is_err());
    }

    #[test]
    fn cycles_are_reported_as_a_path() {
        let spec = |name: &str, deps: &[&str]| {
            let spec = PackageSpec {
                name: name.to_string(),
                dependencies: deps.iter().map(|d| d.to_string()).collect(),
                files: Vec::new(),
                excluded_files: Vec::new(),
            };
            let artifact = SourceArtifact {
                kind: Kind::Package,
                name: name.to_string(),
                files: Vec::new(),
                chunks: Vec::new(),
                fingerprint: String::new(),
            };
            (spec, artifact)
        };
        let packages = vec![spec("a", &["b"]), spec("b", &["c"]), spec("c", &["a"]), spec("d", &[])];
        let err = check_references(&packages, &[]).unwrap_err().to_string();
        assert_eq!(err, "package dependency cycle: a -> b -> c -> a");
        let packages = vec![spec("a", &["nope"])];
        let err = check_references(&packages, &[]).unwrap_err().to_string();
        assert_eq!(err, "packages/a/spec: dependencies[0]: unknown package `nope`");
    }

    #[test]
    fn parent_dirs_of_nested_paths() {
        let dirs = parent_dirs(["templates/a/b.hbs", "templates/c", "job.MF"].into_iter());
        assert_eq!(dirs.into_iter().collect::<Vec<_>>(), ["templates", "templates/a"]);
    }

    #[test]
    fn uuid_keys_are_stable_and_shaped() {
        let key = uuid_for("hello/0+dev.1");
        assert_eq!(key, uuid_for("hello/0+dev.1"));
        assert_eq!(key.len(), 36);
        assert_eq!(&key[14..15], "4");
    }
}

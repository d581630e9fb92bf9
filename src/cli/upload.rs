//! `rosh upload-release` and `rosh upload-stemcell`: bring an artifact into the blobstore and the
//! state, verified, or change nothing.
//!
//! Owns where the bytes come from (a file, a release source directory built first with
//! `create-release`, or an http(s) URL downloaded with a progress bar) and the import itself:
//! the tarball is read in one streaming pass by `release::tarball` / `release::stemcell`, every
//! artifact is *staged* in the blobstore while it is hashed, and only when the whole archive has
//! been judged good — and `--sha1` matched the file — are the staged blobs committed and the
//! release recorded, in that order, under the `release:<name>` lock. A refused upload drops the
//! staged blobs: the blobstore and the state are as they were. Uploading a name/version that is
//! already there is a no-op that says so; with `--fix` the stored blobs are re-verified and any
//! missing or corrupt one is replaced from the upload.

use std::fs::File;
use std::io::{BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::blobstore::{Blobstore, DigestingReader, ExpectedDigest, LocalBlobstore, StagedBlob};
use crate::release::create::{self, Options as CreateOptions};
use crate::release::stemcell::read_stemcell;
use crate::release::tarball::{self, Hashes};
use crate::state::{
    CompiledKey, CompiledPackageRecord, JobRecord, PackageRecord, Recorded, ReleaseRecord, State, StemcellRecord,
};

/// How long an upload waits for another upload of the same release to finish.
const LOCK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, clap::Args)]
pub struct UploadReleaseArgs {
    /// A release tarball, a release source directory, or an http(s) URL.
    #[arg(value_name = "PATH|URL")]
    pub source: String,
    /// Expected digest of the tarball: 40-hex SHA-1 or sha256:<hex>.
    #[arg(long)]
    pub sha1: Option<String>,
    /// Re-verify the stored blobs of an already uploaded release and replace broken ones.
    #[arg(long)]
    pub fix: bool,
    /// With --version: skip the download when this release version is already uploaded.
    #[arg(long, requires = "release_version")]
    pub name: Option<String>,
    #[arg(long = "version", id = "release_version", requires = "name")]
    pub version: Option<String>,
    /// Print the outcome as JSON (no progress bar).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct UploadStemcellArgs {
    /// A stemcell tarball or an http(s) URL.
    #[arg(value_name = "PATH|URL")]
    pub source: String,
    /// Expected digest of the tarball: 40-hex SHA-1 or sha256:<hex>.
    #[arg(long)]
    pub sha1: Option<String>,
    /// Replace the stored image of an already uploaded stemcell when it is missing or corrupt.
    #[arg(long)]
    pub fix: bool,
    #[arg(long)]
    pub json: bool,
}

/// What an upload did.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub kind: &'static str,
    pub name: String,
    pub version: String,
    /// `uploaded`, `already_uploaded`, `fixed`.
    pub result: &'static str,
    pub blobs_stored: usize,
    pub blobs_repaired: usize,
}

impl Outcome {
    fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(self)?);
            return Ok(());
        }
        let what = format!("{} {}/{}", self.kind, self.name, self.version);
        match self.result {
            "already_uploaded" => println!("{what} is already uploaded; nothing to do"),
            "fixed" => println!("{what}: {} blob(s) repaired", self.blobs_repaired),
            _ => println!("Uploaded {what} ({} new blob(s))", self.blobs_stored),
        }
        Ok(())
    }
}

/// The state and blobstore of `$ROSH_STATE_DIR` (default `~/.rosh`).
pub fn open_director() -> anyhow::Result<(State, LocalBlobstore)> {
    let dir = State::default_dir()?;
    let state = State::open(&dir)?;
    let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&dir))?;
    Ok((state, blobs))
}

pub fn run_release(args: UploadReleaseArgs) -> anyhow::Result<ExitCode> {
    let (state, blobs) = open_director()?;
    if let (Some(name), Some(version)) = (&args.name, &args.version)
        && !args.fix
        && state.release(name, version)?.is_some()
    {
        Outcome {
            kind: "release",
            name: name.clone(),
            version: version.clone(),
            result: "already_uploaded",
            blobs_stored: 0,
            blobs_repaired: 0,
        }
        .print(args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let source = Source::resolve(&args.source, &state, args.json, true)?;
    let expected = args.sha1.as_deref().map(ExpectedDigest::parse).transpose()?;
    let outcome =
        import_release(&state, &blobs, &source.path, &source.display, expected.as_ref(), args.fix, !args.json)?;
    outcome.print(args.json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_stemcell(args: UploadStemcellArgs) -> anyhow::Result<ExitCode> {
    let (state, blobs) = open_director()?;
    let source = Source::resolve(&args.source, &state, args.json, false)?;
    let expected = args.sha1.as_deref().map(ExpectedDigest::parse).transpose()?;
    let outcome =
        import_stemcell(&state, &blobs, &source.path, &source.display, expected.as_ref(), args.fix, !args.json)?;
    outcome.print(args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// A local file to import, and the temporary file it lives in when it was downloaded or built.
struct Source {
    path: PathBuf,
    display: String,
    _temp: Option<tempfile::TempDir>,
}

impl Source {
    fn resolve(source: &str, state: &State, quiet: bool, directories: bool) -> anyhow::Result<Source> {
        if source.starts_with("http://") || source.starts_with("https://") {
            let temp = tempfile::Builder::new().prefix("download-").tempdir_in(state.dir())?;
            let path = temp.path().join("artifact.tgz");
            download(source, &path, quiet).with_context(|| format!("downloading {source}"))?;
            return Ok(Source { path, display: source.to_string(), _temp: Some(temp) });
        }
        let path = PathBuf::from(source);
        if path.is_dir() {
            if !directories {
                bail!("{source} is a directory; upload-stemcell takes a stemcell tarball");
            }
            let temp = tempfile::Builder::new().prefix("build-").tempdir_in(state.dir())?;
            let tarball = temp.path().join("release.tgz");
            let options = CreateOptions { tarball: Some(tarball.clone()), ..Default::default() };
            create::create_release(&path, &options).with_context(|| format!("building the release in {source}"))?;
            return Ok(Source { path: tarball, display: source.to_string(), _temp: Some(temp) });
        }
        if !path.is_file() {
            bail!("{source}: no such file, directory or URL");
        }
        Ok(Source { path, display: source.to_string(), _temp: None })
    }
}

fn download(url: &str, dest: &Path, quiet: bool) -> anyhow::Result<()> {
    let response = ureq::get(url).call()?;
    let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let bar = progress(length, "downloading", quiet);
    let mut body = bar.wrap_read(response.into_body().into_reader());
    let mut file = File::create(dest)?;
    std::io::copy(&mut body, &mut file)?;
    file.sync_all()?;
    bar.finish_and_clear();
    Ok(())
}

/// A byte-count progress bar, drawn only on a terminal and when not `quiet`.
fn progress(length: Option<u64>, message: &'static str, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match length {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(message);
    bar
}

/// Opens `path` for one streaming pass that also hashes the whole file (for `--sha1`) and
/// draws progress.
fn open_counted(path: &Path, show: bool) -> anyhow::Result<(DigestingReader<impl Read>, ProgressBar)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().ok().map(|m| m.len());
    let bar = progress(len, "verifying", !show);
    let reader = DigestingReader::new(bar.wrap_read(BufReader::with_capacity(1 << 20, file)));
    Ok((reader, bar))
}

fn check_outer(expected: Option<&ExpectedDigest>, hashes: &Hashes, display: &str) -> anyhow::Result<()> {
    if let Some(want) = expected
        && !want.matches(hashes)
    {
        bail!(
            "{display}: digest mismatch: --sha1 says {want}, the file is {}; nothing was uploaded",
            want.actual(hashes)
        );
    }
    Ok(())
}

fn to_tarball_hashes(blob: &crate::blobstore::BlobRef) -> Hashes {
    Hashes { sha1: blob.sha1.clone(), sha256: blob.sha256.clone(), size: blob.size }
}

/// `--fix`: replaces the stored copy of a staged blob when it is missing or no longer matches its
/// name. Returns whether it did.
fn repair(blobs: &dyn Blobstore, staged: Box<dyn StagedBlob>) -> anyhow::Result<bool> {
    let sha = staged.blob().sha256.clone();
    if blobs.contains(&sha)? && blobs.verify(&sha)? {
        return Ok(false);
    }
    // A corrupt copy of the same size would be kept by commit: remove it first.
    blobs.delete(&sha)?;
    staged.commit()?;
    Ok(true)
}

/// Imports a release tarball: see the module doc for the guarantees.
pub fn import_release(
    state: &State,
    blobs: &dyn Blobstore,
    path: &Path,
    display: &str,
    expected: Option<&ExpectedDigest>,
    fix: bool,
    show_progress: bool,
) -> anyhow::Result<Outcome> {
    let (mut reader, bar) = open_counted(path, show_progress)?;
    let mut staged: Vec<(String, Box<dyn StagedBlob>)> = Vec::new();
    let mut sink = |kind: tarball::ArtifactKind, name: &str, input: &mut dyn Read| -> std::io::Result<Hashes> {
        let blob = blobs.stage(input).map_err(std::io::Error::other)?;
        let hashes = to_tarball_hashes(blob.blob());
        staged.push((kind.entry_path(name), blob));
        Ok(hashes)
    };
    // On any error below, `staged` is dropped and the staged files go with it.
    let release = tarball::read_release(&mut reader, display, &mut sink)?;
    bar.finish_and_clear();
    check_outer(expected, &reader.finish(), display)?;
    let manifest = &release.manifest;
    // A compiled release's packages: each for the stemcell it names (refused up front when a
    // name is malformed, before anything is stored).
    let compiled = compiled_records(&release, display)?;

    let _lock = state.lock(&format!("release:{}", manifest.name), Some(LOCK_WAIT))?;
    let existing = state.release(&manifest.name, &manifest.version)?;
    let mut outcome = Outcome {
        kind: "release",
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        result: "uploaded",
        blobs_stored: 0,
        blobs_repaired: 0,
    };
    if existing.is_some() {
        outcome.result = "already_uploaded";
        // Compiled packages of a version already held (its source uploaded here, its compiled
        // release exported elsewhere) join the compiled-package cache.
        if !compiled.is_empty() {
            let added = store_compiled(state, blobs, &mut staged, &compiled, &mut outcome)?;
            if added > 0 {
                outcome.result = "compiled_packages_added";
            }
        }
        if fix {
            outcome.result = "fixed";
            for (entry, blob) in staged {
                // license.tgz is never stored (see below), so it is not missing either.
                if entry == tarball::ArtifactKind::License.entry_path("") {
                    continue;
                }
                if repair(blobs, blob)? {
                    outcome.blobs_repaired += 1;
                }
            }
        }
        return Ok(outcome);
    }

    // Jobs and packages already stored under the same name and fingerprint are reused (the state
    // keeps the first upload's blob), so their blobs from this tarball are not kept.
    let mut known = std::collections::HashSet::new();
    for job in &release.jobs {
        if state.job_by_fingerprint(&job.entry.name, &job.entry.fingerprint)?.is_some() {
            known.insert(tarball::ArtifactKind::Job.entry_path(&job.entry.name));
        }
    }
    for (package, _) in &release.packages {
        if state.package_by_fingerprint(&package.name, &package.fingerprint)?.is_some() {
            known.insert(tarball::ArtifactKind::Package.entry_path(&package.name));
        }
    }
    for (entry, blob) in staged {
        // The director has no use for license.tgz and no record to keep it by: not stored.
        if entry == tarball::ArtifactKind::License.entry_path("") || known.contains(&entry) {
            continue;
        }
        let sha = blob.blob().sha256.clone();
        if !blobs.contains(&sha)? {
            outcome.blobs_stored += 1;
        }
        blob.commit().with_context(|| format!("storing {entry}"))?;
    }
    let record = ReleaseRecord {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        commit_hash: manifest.commit_hash.clone(),
        uncommitted_changes: manifest.uncommitted_changes,
        jobs: release
            .jobs
            .iter()
            .map(|job| {
                Ok(JobRecord {
                    name: job.entry.name.clone(),
                    version: job.entry.version.clone(),
                    fingerprint: job.entry.fingerprint.clone(),
                    sha1: job.entry.sha1.clone(),
                    blob_sha256: job.hashes.sha256.clone(),
                    packages: job.spec.packages.clone(),
                    spec_json: serde_json::to_string(&job.spec)?,
                })
            })
            .collect::<anyhow::Result<_>>()?,
        packages: release
            .packages
            .iter()
            .map(|(entry, hashes)| PackageRecord {
                name: entry.name.clone(),
                version: entry.version.clone(),
                fingerprint: entry.fingerprint.clone(),
                sha1: entry.sha1.clone(),
                blob_sha256: Some(hashes.sha256.clone()),
                dependencies: entry.dependencies.clone(),
            })
            .chain(
                // Compiled-only packages: no source to compile from.
                release
                    .compiled_packages
                    .iter()
                    .filter(|(c, _)| !release.packages.iter().any(|(p, _)| p.name == c.name))
                    .map(|(c, _)| PackageRecord {
                        name: c.name.clone(),
                        version: c.version.clone(),
                        fingerprint: c.fingerprint.clone(),
                        sha1: c.sha1.clone(),
                        blob_sha256: None,
                        dependencies: c.dependencies.clone(),
                    }),
            )
            .collect(),
    };
    for record in &compiled {
        state.record_compiled_package(record)?;
    }
    // rosh's `requires:` block travels with the version (the compatibility gate reads it).
    let requires_json = manifest.requires.as_ref().map(serde_json::to_string).transpose()?;
    match state.record_release_with_requires(&record, requires_json.as_deref())? {
        Recorded::Created { .. } => Ok(outcome),
        // Unreachable under the lock, but never report a no-op as an upload.
        Recorded::AlreadyExists => Ok(Outcome { result: "already_uploaded", ..outcome }),
    }
}

/// The compiled-package records a compiled release brings: each package's cache key (name,
/// fingerprint, the stemcell's OS and version from `os/version`, and the dependency key over
/// the release's own packages) and its blob.
fn compiled_records(release: &tarball::ReleaseTarball, display: &str) -> anyhow::Result<Vec<CompiledPackageRecord>> {
    let manifest = &release.manifest;
    let mut all: std::collections::BTreeMap<String, crate::plan::desired::PackageRef> =
        std::collections::BTreeMap::new();
    let mut add = |name: &str, fingerprint: &str, dependencies: &[String]| {
        all.entry(name.to_string()).or_insert_with(|| crate::plan::desired::PackageRef {
            name: name.to_string(),
            release: manifest.name.clone(),
            version: String::new(),
            fingerprint: fingerprint.to_string(),
            sha256: String::new(),
            dependencies: dependencies.to_vec(),
        });
    };
    for (p, _) in &release.packages {
        add(&p.name, &p.fingerprint, &p.dependencies);
    }
    for (c, _) in &release.compiled_packages {
        add(&c.name, &c.fingerprint, &c.dependencies);
    }
    release
        .compiled_packages
        .iter()
        .enumerate()
        .map(|(i, (c, hashes))| {
            let Some((os, version)) = c.stemcell.split_once('/').filter(|(os, v)| !os.is_empty() && !v.is_empty())
            else {
                bail!("{display}: release.MF: compiled_packages[{i}].stemcell: `{}` is not OS/VERSION", c.stemcell);
            };
            let dependency_key = crate::compile::dependency_key(&all[&c.name], &all)
                .map_err(|e| anyhow::anyhow!("{display}: release.MF: compiled_packages[{i}]: {e}"))?;
            Ok(CompiledPackageRecord {
                key: CompiledKey {
                    name: c.name.clone(),
                    fingerprint: c.fingerprint.clone(),
                    os: os.to_string(),
                    stemcell_version: version.to_string(),
                    dependency_key,
                },
                blob_sha256: hashes.sha256.clone(),
                sha1: c.sha1.clone(),
                size: hashes.size,
                created_at: String::new(),
            })
        })
        .collect()
}

/// Stores the staged blobs of `compiled` and records them in the cache; answers how many were
/// new to it.
fn store_compiled(
    state: &State,
    blobs: &dyn Blobstore,
    staged: &mut Vec<(String, Box<dyn StagedBlob>)>,
    compiled: &[CompiledPackageRecord],
    outcome: &mut Outcome,
) -> anyhow::Result<usize> {
    let mut added = 0;
    for record in compiled {
        let entry = tarball::ArtifactKind::CompiledPackage.entry_path(&record.key.name);
        if let Some(pos) = staged.iter().position(|(e, _)| e == &entry) {
            let (_, blob) = staged.remove(pos);
            if !blobs.contains(&blob.blob().sha256)? {
                outcome.blobs_stored += 1;
            }
            blob.commit().with_context(|| format!("storing {entry}"))?;
        }
        if matches!(state.record_compiled_package(record)?, Recorded::Created { .. }) {
            added += 1;
        }
    }
    Ok(added)
}

/// Imports a stemcell tarball: its image (if heavy) goes to the blobstore, its manifest to the state.
pub fn import_stemcell(
    state: &State,
    blobs: &dyn Blobstore,
    path: &Path,
    display: &str,
    expected: Option<&ExpectedDigest>,
    fix: bool,
    show_progress: bool,
) -> anyhow::Result<Outcome> {
    let (mut reader, bar) = open_counted(path, show_progress)?;
    let mut staged: Option<Box<dyn StagedBlob>> = None;
    let mut sink = |input: &mut dyn Read| -> std::io::Result<Hashes> {
        let blob = blobs.stage(input).map_err(std::io::Error::other)?;
        let hashes = to_tarball_hashes(blob.blob());
        staged = Some(blob);
        Ok(hashes)
    };
    let stemcell = read_stemcell(&mut reader, display, &mut sink)?;
    bar.finish_and_clear();
    check_outer(expected, &reader.finish(), display)?;
    let m = &stemcell.manifest;
    let _lock = state.lock(&format!("stemcell:{}", m.name), Some(LOCK_WAIT))?;
    let mut outcome = Outcome {
        kind: "stemcell",
        name: m.name.clone(),
        version: m.version.clone(),
        result: "uploaded",
        blobs_stored: 0,
        blobs_repaired: 0,
    };
    if state.stemcell(&m.name, &m.version)?.is_some() {
        outcome.result = "already_uploaded";
        if fix && let Some(blob) = staged {
            outcome.result = "fixed";
            outcome.blobs_repaired = usize::from(repair(blobs, blob)?);
        }
        return Ok(outcome);
    }
    let image_sha256 = match staged {
        Some(blob) => {
            let sha = blob.blob().sha256.clone();
            if !blobs.contains(&sha)? {
                outcome.blobs_stored = 1;
            }
            blob.commit().context("storing the stemcell image")?;
            Some(sha)
        }
        None => None,
    };
    let record = StemcellRecord {
        name: m.name.clone(),
        version: m.version.clone(),
        operating_system: m.operating_system.clone(),
        api_version: m.api_version,
        cid: None,
        sha1: m.sha1.clone(),
        cloud_properties_json: serde_json::to_string(&crate::manifest::yaml::to_json(&serde_yaml_ng::Value::Mapping(
            m.cloud_properties.clone(),
        )))?,
        formats: m.stemcell_formats.clone(),
        image_sha256,
    };
    match state.record_stemcell(&record)? {
        Recorded::Created { .. } => Ok(outcome),
        Recorded::AlreadyExists => Ok(Outcome { result: "already_uploaded", ..outcome }),
    }
}

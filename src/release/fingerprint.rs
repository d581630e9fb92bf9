//! Fingerprints of a release source directory's jobs, packages and license, computed the way
//! bosh-cli computes them, and the sets of files they are computed over.
//!
//! A fingerprint names an artifact's *content*: an unchanged job or package keeps its fingerprint
//! (and so its version) from build to build, and the same directory gets the fingerprint bosh-cli
//! would give it — `bosh create-release --sha2`, whose SHA-256 digests are what modern releases
//! carry (64-hex fingerprints, `sha256:` archive digests). bosh-cli without `--sha2` runs the same
//! algorithm with SHA-1 everywhere; rosh does not produce those.
//!
//! # Which files
//! - **Job** `jobs/<j>/`: `spec` (counted under the name `job.MF`, the name it has inside the
//!   job tarball), `monit` and `properties_schema.json` when present, and `templates/<src>` for
//!   every key of the spec's `templates` map (a listed template that is missing is an error).
//!   Symlinks are followed: a linked template counts as the file it points to. The directory name
//!   must equal the spec's `name`.
//! - **Package** `packages/<p>/` (named as its directory, as for jobs): `packaging` (required),
//!   then every path matched by the spec's `files` globs, each glob resolved against `src/` and
//!   then `blobs/` (a path found in `src/` wins over the same path in `blobs/`; a glob that
//!   matches nothing in either is an error), less the paths matched by `excluded_files` in
//!   either directory. Globs are bosh's doublestar globs: `*`, `?`, `[…]` and `{a,b}` stay within
//!   one path segment, `**` spans any number of segments, and a leading dot is not special.
//!   Directories are never files of a package; symlinks are kept as symlinks. The package's
//!   `spec` itself is *not* a file of the package: its `dependencies` enter as an additional
//!   chunk (below), its `files` through the files they select. `pre_packaging` (deprecated by
//!   bosh, which runs it with bash at build time) is refused.
//! - **License**: every `LICENSE*` and `NOTICE*` file at the top of the release directory,
//!   symlinks kept. None means the release has no license.
//!
//! # How they combine
//! Each file contributes one chunk, `name + digest + mode`:
//! - `name` is the file's path inside the artifact (`job.MF`, `templates/bpm.yml.erb`,
//!   `packaging`, `nginx/nginx-1.25.tar.gz`); license files use their base name.
//! - `digest` is `sha256:<hex>` of the file's bytes, or, for a symlink kept as a link, of the
//!   link's target path text.
//! - `mode` is `100755` when any execute bit is set, else `100644` (git's two modes, so a fresh
//!   checkout keeps its fingerprints), and `symlink` for a kept symlink. A followed symlink takes
//!   the link's own mode (always executable), as bosh-cli's `lstat` does. `packaging` and the
//!   license files contribute no mode.
//!
//! The chunks are ordered by the file's path inside the artifact (byte order), preceded by the
//! format marker `v2` and, for packages with dependencies, followed by one last chunk: the
//! dependency names, sorted and joined with `,`. The fingerprint is the lowercase hex SHA-256 of
//! the concatenation, without separators. A dependency's *fingerprint* does not enter: changing
//! a package changes its own fingerprint and no other (the compiled-package cache key adds the
//! dependencies' fingerprints, DESIGN §3.4).
//!
//! Unlike the document parsing of [`crate::release::manifest`], this module reads the
//! filesystem: a fingerprint is a function of files on disk, and selecting them is half of the
//! algorithm.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

use crate::release::manifest::{self, FormatError, JobSpec, PackageSpec};

/// The format marker bosh-cli puts before the file chunks.
pub const FORMAT_MARKER: &str = "v2";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{spec}: name: `{name}` does not match the directory it is in (`{dir}`)")]
    NameMismatch { spec: String, name: String, dir: String },
    #[error("{spec}: templates.{template}: no such file {path}")]
    MissingTemplate { spec: String, template: String, path: String },
    #[error("{dir}: no packaging script ({dir}/packaging)")]
    MissingPackaging { dir: String },
    #[error(
        "{dir}/pre_packaging: pre_packaging scripts are not supported (bosh deprecated them); do that work in packaging"
    )]
    PrePackaging { dir: String },
    #[error("{spec}: files[{index}]: `{pattern}` matches no file under src/ or blobs/")]
    NoMatch { spec: String, index: usize, pattern: String },
    #[error("{spec}: {field}[{index}]: invalid glob `{pattern}`: {message}")]
    BadGlob { spec: String, field: &'static str, index: usize, pattern: String, message: String },
    #[error("{spec}: files: `{file}` is the package's own script and must not be listed in files")]
    SpecialFile { spec: String, file: String },
    #[error("{}: is a directory; a job file must be a file", path.display())]
    NotAFile { path: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io { path: path.to_path_buf(), source }
}

/// How a file's bytes enter its artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A regular file, or a followed symlink: its bytes.
    File { executable: bool },
    /// A symlink kept as a link (packages): its target path.
    Symlink { target: PathBuf },
}

/// One file of an artifact: where it is, where it goes in the artifact's tarball, and how it
/// counts in the fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// On disk.
    pub source: PathBuf,
    /// Inside the artifact's tarball; also the order of the fingerprint's chunks.
    pub path: String,
    pub content: Content,
    /// `sha256:<hex>` of the bytes (or of the symlink target text).
    pub digest: String,
    /// Counted by base name rather than path (license files).
    pub use_basename: bool,
    /// Contributes no mode (`packaging`, license files).
    pub exclude_mode: bool,
}

impl ArtifactFile {
    /// Reads `source` for inclusion at `path`. `follow_symlinks`: jobs follow, packages keep.
    pub fn read(source: &Path, path: &str, follow_symlinks: bool) -> Result<Self, SourceError> {
        let meta = fs::symlink_metadata(source).map_err(io_err(source))?;
        let content_and_digest = if meta.file_type().is_symlink() && !follow_symlinks {
            let target = fs::read_link(source).map_err(io_err(source))?;
            let digest = sha256_bytes(target.as_os_str().as_bytes());
            (Content::Symlink { target }, digest)
        } else {
            // Following a link: the bytes come from the target, the mode from the link itself.
            if fs::metadata(source).map_err(io_err(source))?.is_dir() {
                return Err(SourceError::NotAFile { path: source.to_path_buf() });
            }
            let executable = meta.permissions().mode() & 0o111 != 0;
            (Content::File { executable }, sha256_file(source)?)
        };
        let (content, digest) = content_and_digest;
        Ok(Self {
            source: source.to_path_buf(),
            path: path.to_string(),
            content,
            digest,
            use_basename: false,
            exclude_mode: false,
        })
    }

    /// This file's chunk: `name + digest + mode`.
    pub fn chunk(&self) -> String {
        let name = if self.use_basename { self.path.rsplit('/').next().unwrap_or(&self.path) } else { &self.path };
        let mode = match (&self.content, self.exclude_mode) {
            (_, true) => "",
            (Content::Symlink { .. }, false) => "symlink",
            (Content::File { executable: true }, false) => "100755",
            (Content::File { executable: false }, false) => "100644",
        };
        format!("{name}{}{mode}", self.digest)
    }
}

/// What an artifact is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Job,
    Package,
    License,
}

impl Kind {
    /// The directory name bosh uses for this kind under `.dev_builds/` and `.final_builds/`.
    pub fn builds_dir(self) -> &'static str {
        match self {
            Kind::Job => "jobs",
            Kind::Package => "packages",
            Kind::License => "license",
        }
    }
}

/// A job, package or license as found in the source directory, fingerprinted.
#[derive(Debug, Clone)]
pub struct SourceArtifact {
    pub kind: Kind,
    pub name: String,
    /// Ordered by `path`.
    pub files: Vec<ArtifactFile>,
    /// Additional chunks (a package's dependency names).
    pub chunks: Vec<String>,
    pub fingerprint: String,
}

impl SourceArtifact {
    fn new(kind: Kind, name: String, mut files: Vec<ArtifactFile>, chunks: Vec<String>) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let fingerprint = fingerprint(&files, &chunks);
        Self { kind, name, files, chunks, fingerprint }
    }
}

/// The fingerprint of `files` with `additional_chunks` (see the module doc).
pub fn fingerprint(files: &[ArtifactFile], additional_chunks: &[String]) -> String {
    let mut ordered: Vec<&ArtifactFile> = files.iter().collect();
    ordered.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    hasher.update(FORMAT_MARKER.as_bytes());
    for file in ordered {
        hasher.update(file.chunk().as_bytes());
    }
    if !additional_chunks.is_empty() {
        let mut sorted = additional_chunks.to_vec();
        sorted.sort();
        hasher.update(sorted.join(",").as_bytes());
    }
    hex(&hasher.finalize())
}

/// Reads `jobs/<dir_name>/` of `release_dir`.
pub fn read_job(release_dir: &Path, dir_name: &str) -> Result<(JobSpec, SourceArtifact), SourceError> {
    let job_dir = release_dir.join("jobs").join(dir_name);
    let spec_name = format!("jobs/{dir_name}/spec");
    let spec_path = job_dir.join("spec");
    let text = fs::read_to_string(&spec_path).map_err(io_err(&spec_path))?;
    let spec: JobSpec = manifest::parse(&text, &spec_name)?;
    if spec.name != dir_name {
        return Err(SourceError::NameMismatch { spec: spec_name, name: spec.name, dir: dir_name.to_string() });
    }

    let mut files = vec![ArtifactFile::read(&spec_path, "job.MF", true)?];
    for optional in ["monit", "properties_schema.json"] {
        let path = job_dir.join(optional);
        if fs::symlink_metadata(&path).is_ok() {
            files.push(ArtifactFile::read(&path, optional, true)?);
        }
    }
    for template in spec.templates.keys() {
        let path = job_dir.join("templates").join(template);
        if fs::metadata(&path).is_err() {
            return Err(SourceError::MissingTemplate {
                spec: spec_name,
                template: template.clone(),
                path: format!("jobs/{dir_name}/templates/{template}"),
            });
        }
        files.push(ArtifactFile::read(&path, &format!("templates/{template}"), true)?);
    }
    let artifact = SourceArtifact::new(Kind::Job, spec.name.clone(), files, Vec::new());
    Ok((spec, artifact))
}

/// Reads `packages/<dir_name>/` of `release_dir`, resolving its `files` against `src/` and
/// `blobs/`.
pub fn read_package(release_dir: &Path, dir_name: &str) -> Result<(PackageSpec, SourceArtifact), SourceError> {
    let package_dir = release_dir.join("packages").join(dir_name);
    let dir_label = format!("packages/{dir_name}");
    let spec_name = format!("{dir_label}/spec");
    let spec_path = package_dir.join("spec");
    let text = fs::read_to_string(&spec_path).map_err(io_err(&spec_path))?;
    let spec: PackageSpec = manifest::parse(&text, &spec_name)?;
    if spec.name != dir_name {
        return Err(SourceError::NameMismatch { spec: spec_name, name: spec.name, dir: dir_name.to_string() });
    }

    let packaging = package_dir.join("packaging");
    if fs::symlink_metadata(&packaging).is_err() {
        return Err(SourceError::MissingPackaging { dir: dir_label });
    }
    if fs::symlink_metadata(package_dir.join("pre_packaging")).is_ok() {
        return Err(SourceError::PrePackaging { dir: dir_label });
    }
    let mut packaging = ArtifactFile::read(&packaging, "packaging", false)?;
    packaging.exclude_mode = true;

    let src = Tree::list(&release_dir.join("src"))?;
    let blobs = Tree::list(&release_dir.join("blobs"))?;
    let matcher = |field: &'static str, index: usize, pattern: &str| {
        compile_glob(pattern).map_err(|message| SourceError::BadGlob {
            spec: spec_name.clone(),
            field,
            index,
            pattern: pattern.to_string(),
            message,
        })
    };

    // Relative path → file; earlier globs and src/ win, as in bosh-cli.
    let mut selected: std::collections::BTreeMap<String, &Path> = Default::default();
    for (index, pattern) in spec.files.iter().enumerate() {
        let glob = matcher("files", index, pattern)?;
        let mut found = false;
        for tree in [&src, &blobs] {
            for (rel, path) in tree.matching(&glob) {
                found = true;
                selected.entry(rel.to_string()).or_insert(path);
            }
        }
        if !found {
            return Err(SourceError::NoMatch { spec: spec_name, index, pattern: pattern.clone() });
        }
    }
    for (index, pattern) in spec.excluded_files.iter().enumerate() {
        let glob = matcher("excluded_files", index, pattern)?;
        for tree in [&src, &blobs] {
            for (rel, _) in tree.matching(&glob) {
                selected.remove(rel);
            }
        }
    }
    for special in ["packaging", "pre_packaging"] {
        if selected.contains_key(special) {
            return Err(SourceError::SpecialFile { spec: spec_name, file: special.to_string() });
        }
    }

    let mut files = vec![packaging];
    for (rel, path) in selected {
        files.push(ArtifactFile::read(path, &rel, false)?);
    }
    let artifact = SourceArtifact::new(Kind::Package, spec.name.clone(), files, spec.dependencies.clone());
    Ok((spec, artifact))
}

/// Reads the `LICENSE*` and `NOTICE*` files at the top of `release_dir`; `None` when there are
/// none.
pub fn read_license(release_dir: &Path) -> Result<Option<SourceArtifact>, SourceError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(release_dir).map_err(io_err(release_dir))? {
        let entry = entry.map_err(io_err(release_dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("LICENSE") || name.starts_with("NOTICE")) {
            continue;
        }
        let path = entry.path();
        if fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
            continue;
        }
        let mut file = ArtifactFile::read(&path, &name, false)?;
        file.use_basename = true;
        file.exclude_mode = true;
        files.push(file);
    }
    if files.is_empty() {
        return Ok(None);
    }
    Ok(Some(SourceArtifact::new(Kind::License, "license".to_string(), files, Vec::new())))
}

/// Compiles one bosh `files` glob. Go's `filepath.Join` cleans a leading `./` away.
fn compile_glob(pattern: &str) -> Result<GlobMatcher, String> {
    let cleaned = pattern.trim_start_matches("./");
    let glob: Glob = GlobBuilder::new(cleaned)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())?;
    Ok(glob.compile_matcher())
}

/// Every non-directory entry under a directory (`src/` or `blobs/`), by path relative to it.
/// Symlinks are entries (a symlink to a directory included); they are not descended into.
struct Tree {
    entries: Vec<(String, PathBuf)>,
}

impl Tree {
    fn list(root: &Path) -> Result<Self, SourceError> {
        let mut entries = Vec::new();
        if fs::metadata(root).map(|m| m.is_dir()).unwrap_or(false) {
            walk(root, "", &mut entries)?;
        }
        entries.sort();
        Ok(Self { entries })
    }

    fn matching(&self, glob: &GlobMatcher) -> Vec<(&str, &Path)> {
        self.entries
            .iter()
            .filter(|(rel, _)| glob.is_match(rel))
            .map(|(rel, path)| (rel.as_str(), path.as_path()))
            .collect()
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), SourceError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let rel = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let file_type = entry.file_type().map_err(io_err(&path))?;
        if file_type.is_dir() {
            walk(&path, &format!("{rel}/"), out)?;
        } else {
            out.push((rel, path));
        }
    }
    Ok(())
}

/// `sha256:<hex>` of a file's bytes, read in blocks.
pub fn sha256_file(path: &Path) -> Result<String, SourceError> {
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex(&hasher.finalize())))
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The expected value was derived outside rosh, with coreutils, from the module doc:
    ///
    /// ```sh
    /// printf 'echo hi\n'   | sha256sum  # packaging (mode not counted) → ab0850…286e
    /// printf 'a\n'         | sha256sum  # src/lib/a.txt (0644)         → 87428f…25c7
    /// printf '#!/bin/sh\n' | sha256sum  # src/lib/run.sh (0755)        → a8076d…5abf
    /// printf 'v2lib/a.txtsha256:<a>100644lib/run.shsha256:<run>100755packagingsha256:<packaging>base,zlib' | sha256sum
    /// ```
    #[test]
    fn package_fingerprint_matches_a_hand_derivation() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(
            &root.join("packages/p/spec"),
            "name: p\ndependencies: [zlib, base]\nfiles: [lib/**/*]\nexcluded_files: [lib/*_test.txt]\n",
            0o644,
        );
        write(&root.join("packages/p/packaging"), "echo hi\n", 0o755);
        write(&root.join("src/lib/a.txt"), "a\n", 0o644);
        write(&root.join("src/lib/run.sh"), "#!/bin/sh\n", 0o755);
        write(&root.join("src/lib/a_test.txt"), "excluded\n", 0o644);
        write(&root.join("src/other.txt"), "not selected\n", 0o644);

        let (_, artifact) = read_package(root, "p").unwrap();
        let paths: Vec<&str> = artifact.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["lib/a.txt", "lib/run.sh", "packaging"]);
        assert_eq!(artifact.files[0].digest, "sha256:87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7");
        assert_eq!(artifact.fingerprint, "cbc2339b49d0d2e65893487d4009120af2437fc5f2fa40fc8816570ffe8a241e");
    }

    #[test]
    fn job_files_are_spec_as_job_mf_monit_and_listed_templates() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("jobs/j/spec"), "name: j\ntemplates:\n  run.sh.hbs: bin/run\n", 0o644);
        write(&root.join("jobs/j/monit"), "check process j\n", 0o644);
        write(&root.join("jobs/j/templates/run.sh.hbs"), "#!/bin/sh\n", 0o755);
        write(&root.join("jobs/j/templates/unlisted"), "x\n", 0o644);
        let (spec, artifact) = read_job(root, "j").unwrap();
        assert_eq!(spec.name, "j");
        let chunks: Vec<String> = artifact.files.iter().map(|f| f.chunk()).collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks[0].starts_with("job.MFsha256:") && chunks[0].ends_with("100644"), "{chunks:?}");
        assert!(chunks[1].starts_with("monitsha256:"), "{chunks:?}");
        assert!(chunks[2].starts_with("templates/run.sh.hbssha256:") && chunks[2].ends_with("100755"), "{chunks:?}");
    }

    #[test]
    fn kept_symlinks_count_by_target_text() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        symlink("nowhere/at/all", &link).unwrap();
        let file = ArtifactFile::read(&link, "x/link", false).unwrap();
        assert_eq!(file.chunk(), format!("x/link{}symlink", sha256_bytes(b"nowhere/at/all")));
    }

    #[test]
    fn a_glob_matching_nothing_names_the_package_and_glob() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("packages/p/spec"), "name: p\nfiles:\n- lib/*\n- missing/**/*.c\n", 0o644);
        write(&root.join("packages/p/packaging"), "true\n", 0o644);
        write(&root.join("blobs/lib/x.tgz"), "blob\n", 0o644);
        let err = read_package(root, "p").unwrap_err().to_string();
        assert_eq!(err, "packages/p/spec: files[1]: `missing/**/*.c` matches no file under src/ or blobs/");
    }

    #[test]
    fn star_stays_within_a_segment_and_double_star_spans_them() {
        let glob = compile_glob("a/*").unwrap();
        assert!(glob.is_match("a/.hidden") && !glob.is_match("a/b/c"));
        let glob = compile_glob("a/**/*.c").unwrap();
        assert!(glob.is_match("a/x.c") && glob.is_match("a/b/c/x.c") && !glob.is_match("b/x.c"));
        let glob = compile_glob("./a/{x,y}.h").unwrap();
        assert!(glob.is_match("a/y.h"));
    }
}

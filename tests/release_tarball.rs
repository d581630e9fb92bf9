//! Release and stemcell tarballs (issue 3, items 1 and 3), built here with `tar` and `flate2`
//! the way bosh-cli lays them out, read back through a sink that stores each artifact in a
//! temporary directory while hashing it, as the blobstore will.

mod common;

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use rosh::release::archive::{ArchiveError, Refusal};
use rosh::release::stemcell::{StemcellError, StemcellProblem, read_stemcell};
use rosh::release::tarball::{ArtifactKind, Hashes, Problem, ReleaseTarball, TarballError, read_release};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hashes(bytes: &[u8]) -> Hashes {
    Hashes {
        sha1: hex(Sha1::digest(bytes).as_slice()),
        sha256: hex(Sha256::digest(bytes).as_slice()),
        size: bytes.len() as u64,
    }
}

/// Bytes that do not compress, so package tarballs are bigger than one copy chunk.
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

/// A gzip-compressed tar of regular files: (path, contents, mode).
fn tgz(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, data, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(data.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

const WEB_JOB_MF: &str = "---
name: web
description: Serves the site
templates:
  ctl.erb: bin/ctl
  nginx.conf.erb: config/nginx.conf
packages:
- nginx
properties:
  web.port:
    description: Port to listen on
    default: 8080
consumes:
- name: backend
  type: http
  optional: true
provides:
- name: web
  type: http
  properties: [web.port]
";

const WEB_MONIT: &str = "check process web\n  with pidfile /var/vcap/sys/run/bpm/web/web.pid\n";

#[derive(Default)]
struct Options {
    /// The name written in the web job's job.MF (default `web`).
    job_mf_name: Option<&'static str>,
    /// An extra dependency of the nginx package in release.MF.
    nginx_extra_dependency: Option<&'static str>,
    /// Packages as compiled packages for `ubuntu-jammy/1.406`.
    compiled: bool,
}

/// The artifacts of a small release (entry path, bytes) and the release.MF describing them.
struct Release {
    artifacts: Vec<(String, Vec<u8>)>,
    manifest: String,
}

impl Release {
    fn new(options: &Options) -> Release {
        let web_job_mf =
            WEB_JOB_MF.replace("name: web\n", &format!("name: {}\n", options.job_mf_name.unwrap_or("web")));
        let web = tgz(&[
            ("./job.MF", web_job_mf.as_bytes(), 0o644),
            ("./monit", WEB_MONIT.as_bytes(), 0o644),
            ("./templates/ctl.erb", b"#!/bin/bash\nexec nginx -p <%= p('web.port') %>\n", 0o644),
            ("./templates/nginx.conf.erb", b"listen <%= p('web.port') %>;\n", 0o644),
        ]);
        let worker = tgz(&[
            ("./job.MF", b"name: worker\ntemplates:\n  run.erb: bin/run\npackages: [pcre]\n", 0o644),
            ("./monit", b"check process worker\n", 0o644),
            ("./templates/run.erb", b"#!/bin/sh\n", 0o644),
        ]);
        let pcre = tgz(&[
            ("./packaging", b"set -e\ntar xzf pcre/pcre-8.45.tar.gz\n", 0o755),
            ("./pcre/pcre-8.45.tar.gz", &noise(10_000, 1), 0o644),
        ]);
        let nginx = tgz(&[
            ("./packaging", b"set -e\ntar xzf nginx/nginx-1.25.3.tar.gz\n", 0o755),
            ("./nginx/nginx-1.25.3.tar.gz", &noise(700_000, 2), 0o644),
        ]);
        let license = tgz(&[("./LICENSE", b"Apache-2.0\n", 0o644), ("./NOTICE", b"Copyright\n", 0o644)]);

        let package_dir = if options.compiled { "compiled_packages" } else { "packages" };
        let stemcell = if options.compiled { "  stemcell: ubuntu-jammy/1.406\n" } else { "" };
        let extra = options.nginx_extra_dependency.map(|d| format!(", {d}")).unwrap_or_default();
        let manifest = format!(
            "---
name: web-release
version: 1.2.3
commit_hash: 5a4b3c2
uncommitted_changes: false
jobs:
- name: web
  version: fp-web
  fingerprint: fp-web
  sha1: sha256:{web_sha256}
  packages: [nginx]
- name: worker
  version: fp-worker
  fingerprint: fp-worker
  sha1: {worker_sha1}
  packages: [pcre]
{package_dir}:
- name: pcre
  version: fp-pcre
  fingerprint: fp-pcre
  sha1: {pcre_sha1}
{stemcell}  dependencies: []
- name: nginx
  version: fp-nginx
  fingerprint: fp-nginx
  sha1: sha256:{nginx_sha256}
{stemcell}  dependencies: [pcre{extra}]
license:
  version: fp-license
  fingerprint: fp-license
  sha1: sha256:{license_sha256}
",
            web_sha256 = hashes(&web).sha256,
            worker_sha1 = hashes(&worker).sha1,
            pcre_sha1 = hashes(&pcre).sha1,
            nginx_sha256 = hashes(&nginx).sha256,
            license_sha256 = hashes(&license).sha256,
        );
        let artifacts = vec![
            ("jobs/web.tgz".to_string(), web),
            ("jobs/worker.tgz".to_string(), worker),
            (format!("{package_dir}/pcre.tgz"), pcre),
            (format!("{package_dir}/nginx.tgz"), nginx),
            ("license.tgz".to_string(), license),
        ];
        Release { artifacts, manifest }
    }

    fn artifact(&mut self, path: &str) -> &mut Vec<u8> {
        &mut self.artifacts.iter_mut().find(|(p, _)| p == path).unwrap().1
    }

    /// The outer tarball, with bosh-cli's `./` prefixes and directory entries.
    fn tarball(&self, manifest_last: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let mut append = |path: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_700_000_000);
            builder.append_data(&mut header, path, data).unwrap();
        };
        if !manifest_last {
            append("./release.MF", self.manifest.as_bytes());
        }
        for (path, data) in &self.artifacts {
            append(&format!("./{path}"), data);
        }
        if manifest_last {
            append("./release.MF", self.manifest.as_bytes());
        }
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_size(0);
        dir.set_mode(0o755);
        builder.append_data(&mut dir, "./jobs/", io::empty()).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    }
}

/// What the sink stored: (kind, name, file).
type Stored = Vec<(ArtifactKind, String, PathBuf)>;

/// Reads `tarball` with a sink that writes each artifact under `dir` while hashing it.
fn read(tarball: impl Read, dir: &Path) -> (Result<ReleaseTarball, TarballError>, Stored) {
    let mut stored = Stored::new();
    let mut sink = |kind: ArtifactKind, name: &str, data: &mut dyn Read| -> io::Result<Hashes> {
        let path = dir.join(format!("{kind:?}-{name}"));
        let mut file = fs::File::create(&path)?;
        let (mut sha1, mut sha256, mut size) = (Sha1::new(), Sha256::new(), 0u64);
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = data.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sha1.update(&buf[..n]);
            sha256.update(&buf[..n]);
            file.write_all(&buf[..n])?;
            size += n as u64;
        }
        stored.push((kind, name.to_string(), path));
        Ok(Hashes { sha1: hex(sha1.finalize().as_slice()), sha256: hex(sha256.finalize().as_slice()), size })
    };
    let result = read_release(tarball, "web-release-1.2.3.tgz", &mut sink);
    (result, stored)
}

fn read_err(release: &Release) -> TarballError {
    let dir = tempfile::tempdir().unwrap();
    let err = read(release.tarball(false).as_slice(), dir.path()).0.expect_err("the release must be refused");
    assert!(err.to_string().starts_with("web-release-1.2.3.tgz: "), "{err}");
    err
}

fn problem(err: &TarballError) -> &Problem {
    match err {
        TarballError::Invalid { problem, .. } => problem,
        other => panic!("expected a problem with the release, got: {other}"),
    }
}

#[test]
fn release_tarball_is_read_and_verified() {
    let release = Release::new(&Options::default());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web-release-1.2.3.tgz");
    fs::write(&path, release.tarball(false)).unwrap();
    let store = dir.path().join("store");
    fs::create_dir(&store).unwrap();

    let (result, stored) = read(fs::File::open(&path).unwrap(), &store);
    let tarball = result.unwrap();

    assert_eq!(tarball.manifest.name, "web-release");
    assert_eq!(tarball.manifest.version, "1.2.3");
    assert_eq!(tarball.manifest.commit_hash.as_deref(), Some("5a4b3c2"));

    let names: Vec<&str> = tarball.jobs.iter().map(|j| j.entry.name.as_str()).collect();
    assert_eq!(names, ["web", "worker"]);
    let web = &tarball.jobs[0];
    assert_eq!(web.spec.name, "web");
    assert_eq!(web.spec.templates["nginx.conf.erb"], "config/nginx.conf");
    assert_eq!(web.spec.packages, ["nginx"]);
    assert_eq!(web.spec.properties["web.port"].default, Some(8080.into()));
    assert_eq!(web.spec.consumes[0].name, "backend");
    assert!(web.spec.consumes[0].optional);
    assert_eq!(web.spec.provides[0].properties, ["web.port"]);
    assert_eq!(web.templates.keys().collect::<Vec<_>>(), ["ctl.erb", "nginx.conf.erb"]);
    assert_eq!(web.templates["nginx.conf.erb"], b"listen <%= p('web.port') %>;\n");
    assert_eq!(web.monit.as_deref(), Some(WEB_MONIT));
    assert_eq!(web.hashes, hashes(&release.artifacts[0].1));
    assert_eq!(tarball.jobs[1].spec.packages, ["pcre"]);

    let packages: Vec<(&str, &[String])> =
        tarball.packages.iter().map(|(p, _)| (p.name.as_str(), p.dependencies.as_slice())).collect();
    assert_eq!(packages, [("pcre", &[][..]), ("nginx", &["pcre".to_string()][..])]);
    assert_eq!(tarball.packages[1].1, hashes(&release.artifacts[3].1));
    assert!(tarball.compiled_packages.is_empty());
    assert_eq!(tarball.license, Some(hashes(&release.artifacts[4].1)));

    // The sink saw every artifact once, in archive order, and stored exactly its bytes.
    let kinds: Vec<(ArtifactKind, &str)> = stored.iter().map(|(k, n, _)| (*k, n.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (ArtifactKind::Job, "web"),
            (ArtifactKind::Job, "worker"),
            (ArtifactKind::Package, "pcre"),
            (ArtifactKind::Package, "nginx"),
            (ArtifactKind::License, "license"),
        ]
    );
    for ((_, _, file), (_, bytes)) in stored.iter().zip(&release.artifacts) {
        assert!(fs::read(file).unwrap() == *bytes, "{} differs from what was streamed", file.display());
    }
}

#[test]
fn release_mf_may_come_last() {
    let release = Release::new(&Options::default());
    let dir = tempfile::tempdir().unwrap();
    let tarball = read(release.tarball(true).as_slice(), dir.path()).0.unwrap();
    assert_eq!(tarball.jobs.len(), 2);
    assert_eq!(tarball.packages.len(), 2);
}

#[test]
fn compiled_release_is_read() {
    let release = Release::new(&Options { compiled: true, ..Options::default() });
    let dir = tempfile::tempdir().unwrap();
    let (result, stored) = read(release.tarball(false).as_slice(), dir.path());
    let tarball = result.unwrap();
    assert!(tarball.packages.is_empty());
    let compiled: Vec<(&str, &str, &[String])> = tarball
        .compiled_packages
        .iter()
        .map(|(p, _)| (p.name.as_str(), p.stemcell.as_str(), p.dependencies.as_slice()))
        .collect();
    assert_eq!(
        compiled,
        [("pcre", "ubuntu-jammy/1.406", &[][..]), ("nginx", "ubuntu-jammy/1.406", &["pcre".to_string()][..])]
    );
    assert_eq!(tarball.compiled_packages[1].1, hashes(&release.artifacts[3].1));
    assert!(stored.iter().any(|(kind, name, _)| *kind == ArtifactKind::CompiledPackage && name == "nginx"));
}

#[test]
fn flipped_byte_in_a_package_is_a_digest_mismatch() {
    let mut release = Release::new(&Options::default());
    let nginx = release.artifact("packages/nginx.tgz");
    let middle = nginx.len() / 2;
    nginx[middle] ^= 0x01;
    let actual = format!("sha256:{}", hashes(nginx).sha256);
    let err = read_err(&release);
    match problem(&err) {
        Problem::DigestMismatch { artifact, expected, actual: found } => {
            assert_eq!(artifact, "packages/nginx.tgz");
            assert!(release.manifest.contains(&format!("sha1: {expected}")), "{expected}");
            assert_eq!(found, &actual);
        }
        other => panic!("{other}"),
    }
    let message = err.to_string();
    assert!(message.contains("packages/nginx.tgz: digest mismatch: release.MF says sha256:"), "{message}");
    assert!(message.contains(&actual), "{message}");
}

#[test]
fn flipped_byte_in_a_sha1_package_names_both_sha1_digests() {
    let mut release = Release::new(&Options::default());
    let pcre = release.artifact("packages/pcre.tgz");
    let last = pcre.len() - 10;
    pcre[last] ^= 0x80;
    let actual = hashes(pcre).sha1;
    let err = read_err(&release);
    assert!(
        matches!(problem(&err), Problem::DigestMismatch { artifact, actual: a, .. } if artifact == "packages/pcre.tgz" && *a == actual),
        "{err}"
    );
}

#[test]
fn listed_artifact_missing_from_the_tarball() {
    let mut release = Release::new(&Options::default());
    release.artifacts.retain(|(path, _)| path != "packages/pcre.tgz");
    let err = read_err(&release);
    assert!(
        matches!(problem(&err), Problem::Missing { artifact, name, .. } if artifact == "packages/pcre.tgz" && name == "pcre"),
        "{err}"
    );
    assert!(err.to_string().contains("release.MF lists package `pcre`, but packages/pcre.tgz is not in the tarball"));
}

#[test]
fn unlisted_artifact_in_the_tarball() {
    let mut release = Release::new(&Options::default());
    release.artifacts.push(("packages/extra.tgz".to_string(), tgz(&[("./packaging", b"true\n", 0o755)])));
    let err = read_err(&release);
    assert!(matches!(problem(&err), Problem::Unlisted { artifact } if artifact == "packages/extra.tgz"), "{err}");
    assert!(err.to_string().contains("packages/extra.tgz is in the tarball but not listed in release.MF"));
}

#[test]
fn dependency_on_an_unknown_package() {
    let release = Release::new(&Options { nginx_extra_dependency: Some("openssl"), ..Options::default() });
    let err = read_err(&release);
    assert!(
        matches!(problem(&err), Problem::UnknownDependency { artifact, dependency, .. }
            if artifact == "packages/nginx.tgz" && dependency == "openssl"),
        "{err}"
    );
    assert!(err.to_string().contains("depends on `openssl`, which is not a package of this release"), "{err}");
}

#[test]
fn job_mf_naming_another_job() {
    let release = Release::new(&Options { job_mf_name: Some("webserver"), ..Options::default() });
    let err = read_err(&release);
    assert!(
        matches!(problem(&err), Problem::JobNameMismatch { artifact, found } if artifact == "jobs/web.tgz" && found == "webserver"),
        "{err}"
    );
}

#[test]
fn release_mf_that_is_not_yaml() {
    let mut release = Release::new(&Options::default());
    release.manifest = "name: web-release\njobs: [unclosed\n  - {\n".to_string();
    let err = read_err(&release);
    assert!(matches!(err, TarballError::Format(_)), "{err}");
    assert!(err.to_string().contains("web-release-1.2.3.tgz: release.MF"), "{err}");
}

#[test]
fn hostile_entry_inside_a_package_is_refused_after_its_digest() {
    // A package whose own tarball escapes with `..`, correctly listed with its digest.
    let mut evil = tar::Header::new_gnu();
    evil.as_old_mut().name[..11].copy_from_slice(b"../escape.s");
    evil.set_size(3);
    evil.set_mode(0o644);
    evil.set_cksum();
    let mut inner = evil.as_bytes().to_vec();
    inner.extend_from_slice(b"abc");
    inner.resize(512 * 2, 0);
    inner.extend_from_slice(&[0; 1024]);
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(&inner).unwrap();
    let package = encoder.finish().unwrap();

    let mut release = Release::new(&Options::default());
    let old = hashes(&release.artifact("packages/pcre.tgz").clone()).sha1;
    release.manifest = release.manifest.replace(&old, &hashes(&package).sha1);
    *release.artifact("packages/pcre.tgz") = package;
    let err = read_err(&release);
    match &err {
        TarballError::Archive(ArchiveError::Refused { source_name, entry, reason }) => {
            assert_eq!(source_name, "web-release-1.2.3.tgz: packages/pcre.tgz");
            assert_eq!(entry, "../escape.s");
            assert_eq!(*reason, Refusal::ParentComponent);
        }
        other => panic!("{other}"),
    }
}

#[test]
fn failing_sink_is_reported_with_the_artifact() {
    let release = Release::new(&Options::default());
    let mut sink = |kind: ArtifactKind, _: &str, data: &mut dyn Read| -> io::Result<Hashes> {
        if kind == ArtifactKind::Package {
            return Err(io::Error::other("disk full"));
        }
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        Ok(hashes(&bytes))
    };
    let err = read_release(release.tarball(false).as_slice(), "r.tgz", &mut sink).unwrap_err();
    assert_eq!(err.to_string(), "r.tgz: storing packages/pcre.tgz: disk full");
}

#[test]
fn tarball_written_by_create_release_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("hello");
    common::copy_release_source(&Path::new(env!("CARGO_MANIFEST_DIR")).join("releases/hello"), &source);
    let out = tmp.path().join("hello.tgz");
    let options = rosh::release::create::Options { tarball: Some(out.clone()), force: true, ..Default::default() };
    let created = rosh::release::create::create_release(&source, &options).unwrap();

    let store = tmp.path().join("store");
    fs::create_dir(&store).unwrap();
    let read = read(fs::File::open(&out).unwrap(), &store).0.unwrap();
    assert_eq!(read.manifest, created.manifest);
    assert_eq!(read.jobs.len(), created.manifest.jobs.len());
    assert_eq!(read.packages.len(), created.manifest.packages.len());
    assert_eq!(read.license.is_some(), created.manifest.license.is_some());
    for job in &read.jobs {
        assert_eq!(job.spec.name, job.entry.name);
        assert!(job.monit.is_some(), "{}", job.entry.name);
        assert_eq!(job.templates.len(), job.spec.templates.len());
    }
}

// --- stemcells -------------------------------------------------------------------------------

fn stemcell(manifest: &str, image: Option<&[u8]>) -> Vec<u8> {
    let mut entries: Vec<(&str, &[u8], u32)> = vec![("stemcell.MF", manifest.as_bytes(), 0o644)];
    entries.push(("packages.txt", b"ii  openssl 3.0.2\n", 0o644));
    if let Some(image) = image {
        entries.push(("image", image, 0o644));
    }
    entries.push(("stemcell_dpkg_l.txt", b"ii  bash\n", 0o644));
    tgz(&entries)
}

/// Reads a stemcell with a sink that stores the image under `dir`.
fn read_stemcell_into(bytes: &[u8], dir: &Path) -> Result<rosh::release::stemcell::StemcellTarball, StemcellError> {
    let mut sink = |data: &mut dyn Read| -> io::Result<Hashes> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes)?;
        fs::write(dir.join("image"), &bytes)?;
        Ok(hashes(&bytes))
    };
    read_stemcell(bytes, "bosh-stemcell-1.406-openstack.tgz", &mut sink)
}

fn heavy_manifest(sha1: &str) -> String {
    format!(
        "---
name: bosh-openstack-kvm-ubuntu-jammy-go_agent
version: '1.406'
api_version: 3
bosh_protocol: '1'
sha1: {sha1}
operating_system: ubuntu-jammy
stemcell_formats:
- openstack-qcow2
cloud_properties:
  name: bosh-openstack-kvm-ubuntu-jammy-go_agent
  version: '1.406'
  disk: 5120
  disk_format: qcow2
"
    )
}

#[test]
fn heavy_stemcell_with_good_and_bad_image_digests() {
    let image = noise(300_000, 7);
    let dir = tempfile::tempdir().unwrap();
    for digest in [hashes(&image).sha1, format!("sha256:{}", hashes(&image).sha256)] {
        let read = read_stemcell_into(&stemcell(&heavy_manifest(&digest), Some(&image)), dir.path()).unwrap();
        assert_eq!(read.manifest.operating_system, "ubuntu-jammy");
        assert_eq!(read.manifest.version, "1.406");
        assert_eq!(read.image, Some(hashes(&image)));
        assert!(!read.is_light());
        assert!(fs::read(dir.path().join("image")).unwrap() == image);
    }

    let wrong = hashes(b"another image").sha1;
    let err = read_stemcell_into(&stemcell(&heavy_manifest(&wrong), Some(&image)), dir.path()).unwrap_err();
    match &err {
        StemcellError::Invalid { problem: StemcellProblem::DigestMismatch { expected, actual }, .. } => {
            assert_eq!(expected, &wrong);
            assert_eq!(actual, &hashes(&image).sha1);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().starts_with("bosh-stemcell-1.406-openstack.tgz: image: digest mismatch"), "{err}");

    let err = read_stemcell_into(&stemcell(&heavy_manifest("md5:abc"), Some(&image)), dir.path()).unwrap_err();
    assert!(matches!(err, StemcellError::Invalid { problem: StemcellProblem::BadDigest { .. }, .. }), "{err}");
}

#[test]
fn light_aws_stemcell_needs_no_image() {
    // As published: the sha1 describes the heavy image the AMIs were made from.
    let manifest = "---
name: bosh-aws-xen-hvm-ubuntu-jammy-go_agent
version: '1.406'
api_version: 3
sha1: f0c10bb5e8b7fee9c29db15bbb4ae481e398eab6
operating_system: ubuntu-jammy
stemcell_formats:
- aws-light
cloud_properties:
  ami:
    us-east-1: ami-0a1b2c3d4e5f60718
    eu-central-1: ami-08192a3b4c5d6e7f8
";
    let dir = tempfile::tempdir().unwrap();
    for image in [None, Some(&b""[..])] {
        let read = read_stemcell_into(&stemcell(manifest, image), dir.path()).unwrap();
        assert_eq!(read.image, None);
        assert!(read.is_light());
        assert!(read.manifest.cloud_properties.contains_key("ami"));
    }
    assert!(!dir.path().join("image").exists(), "an empty image placeholder is not stored");
}

#[test]
fn heavy_format_stemcell_without_image_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_stemcell_into(&stemcell(&heavy_manifest(&"0".repeat(40)), None), dir.path()).unwrap_err();
    assert!(matches!(err, StemcellError::Invalid { problem: StemcellProblem::MissingImage { .. }, .. }), "{err}");
    assert!(err.to_string().contains("`image` is missing"), "{err}");
    assert!(err.to_string().contains("openstack-qcow2"), "{err}");

    let err = read_stemcell_into(&tgz(&[("packages.txt", b"", 0o644)]), dir.path()).unwrap_err();
    assert!(err.to_string().ends_with("stemcell.MF is missing"), "{err}");
}

//! `rosh export-release NAME/VERSION OS/VERSION`: a compiled release, as `bosh export-release`
//! makes one — the release's jobs and every package compiled for that stemcell, in a tarball
//! whose `release.MF` lists them under `compiled_packages` — so another director (or a
//! deployment elsewhere) skips compilation: `upload-release` of the tarball fills its
//! compiled-package cache.
//!
//! Packages the cache lacks are compiled first, on compilation VMs made from the stored cloud
//! config's `compilation` section (as a deploy would), for the uploaded stemcell of that OS and
//! version.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};

use super::deploy::{Director, compilation_cpi, compile_workers, ensure_stemcell};
use super::progress;
use crate::blobstore::Blobstore;
use crate::compile::{self, Target};
use crate::manifest::model::CloudConfig;
use crate::manifest::yaml;
use crate::plan::desired::PackageRef;
use crate::release::create::Tgz;
use crate::release::manifest::{CompiledPackage, ReleaseArtifact, ReleaseManifest};
use crate::state::ConfigKind;

#[derive(Debug, clap::Args)]
pub struct ExportReleaseArgs {
    /// The uploaded release: NAME/VERSION.
    #[arg(value_name = "NAME/VERSION")]
    pub release: String,
    /// The uploaded stemcell to compile for: OS/VERSION (e.g. ubuntu-jammy/1.406).
    #[arg(value_name = "OS/VERSION")]
    pub stemcell: String,
    /// Where to write the tarball (default: ./NAME-VERSION-OS-VERSION.tgz).
    #[arg(long, value_name = "PATH")]
    pub tarball: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn split<'a>(text: &'a str, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    text.split_once('/')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or_else(|| anyhow!("{what} `{text}` is not NAME/VERSION"))
}

pub fn run(args: ExportReleaseArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    let state = &director.state;
    let (name, version) = split(&args.release, "release")?;
    let (os, os_version) = split(&args.stemcell, "stemcell")?;
    let record = state.release(name, version)?.ok_or_else(|| anyhow!("release {name}/{version} is not uploaded"))?;
    let stemcell = state
        .stemcells()?
        .into_iter()
        .find(|s| s.operating_system == os && s.version == os_version)
        .ok_or_else(|| anyhow!("no uploaded stemcell of OS {os} version {os_version} (see `rosh stemcells`)"))?;

    let refs: Vec<PackageRef> = record
        .packages
        .iter()
        .map(|p| PackageRef {
            name: p.name.clone(),
            release: name.to_string(),
            version: p.version.clone(),
            fingerprint: p.fingerprint.clone(),
            sha256: p.blob_sha256.clone().unwrap_or_default(),
            dependencies: p.dependencies.clone(),
        })
        .collect();
    let refs = crate::plan::graph::package_order(&refs).map_err(|e| anyhow!("release {name}/{version}: {e}"))?;

    // Compile what the cache lacks (as a deploy would), then read every record.
    let missing = compile::cached(state, &refs, os, os_version)?.iter().filter(|e| e.found.is_none()).count();
    let mut compiled_now = 0;
    if missing > 0 {
        let reporter = progress::reporter(args.json);
        let config = state
            .latest_config(ConfigKind::Cloud, "default")?
            .ok_or_else(|| anyhow!("{missing} packages must be compiled first, and there is no cloud config to make compilation VMs with (`rosh update-cloud-config`)"))?;
        let doc = yaml::parse(&config.content, "cloud config")?;
        let cloud = CloudConfig::from_value(&doc).map_err(|e| anyhow!("cloud config: {e}"))?.model;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        compiled_now = runtime.block_on(async {
            let cpis = director.cpis()?;
            let reach = director.reach()?;
            let cpi_name = compilation_cpi(&cloud, &cpis)?;
            let (_, cpi) = cpis.get(Some(&cpi_name))?;
            let stemcell_cid =
                ensure_stemcell(&director, &cpi_name, cpi.as_ref(), &stemcell.name, &stemcell.version).await?;
            let workers = compile_workers(&cloud, &cpis, &reach, &format!("export-{name}"))?;
            let target = Target { os: os.to_string(), version: os_version.to_string(), stemcell_cid };
            let done = compile::compile(
                state,
                &director.blobs,
                &reach,
                &workers,
                &[(target, refs.clone())],
                reporter.as_ref(),
            )
            .await?;
            anyhow::Ok(done.compiled)
        })?;
    }
    let entries = compile::cached(state, &refs, os, os_version)?;

    let out = args.tarball.clone().unwrap_or_else(|| PathBuf::from(format!("{name}-{version}-{os}-{os_version}.tgz")));
    let mut compiled_packages = Vec::new();
    for entry in &entries {
        let found = entry.found.as_ref().ok_or_else(|| anyhow!("package {} was not compiled", entry.package.name))?;
        compiled_packages.push(CompiledPackage {
            name: entry.package.name.clone(),
            version: entry.package.version.clone(),
            fingerprint: entry.package.fingerprint.clone(),
            sha1: found.sha1.clone(),
            stemcell: format!("{os}/{os_version}"),
            dependencies: entry.package.dependencies.clone(),
        });
    }
    let manifest = ReleaseManifest {
        name: record.name.clone(),
        version: record.version.clone(),
        commit_hash: record.commit_hash.clone(),
        uncommitted_changes: record.uncommitted_changes,
        jobs: record
            .jobs
            .iter()
            .map(|j| ReleaseArtifact {
                name: j.name.clone(),
                version: j.version.clone(),
                fingerprint: j.fingerprint.clone(),
                sha1: j.sha1.clone(),
                dependencies: Vec::new(),
                packages: j.packages.clone(),
            })
            .collect(),
        packages: Vec::new(),
        compiled_packages,
        license: None,
        requires: match state.release_requires(name, version)? {
            Some(json) => Some(serde_json::from_str(&json).context("reading the release's recorded requires")?),
            None => None,
        },
    };

    let read_blob = |sha: &str, what: &str| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut director.blobs.open(sha)?, &mut bytes)
            .with_context(|| format!("reading {what} ({sha})"))?;
        Ok(bytes)
    };
    let mut tgz = Tgz::create(&out)?;
    tgz.bytes("release.MF", 0o644, serde_yaml_ng::to_string(&manifest)?.as_bytes())?;
    tgz.dir("jobs")?;
    for job in &record.jobs {
        tgz.bytes(
            &format!("jobs/{}.tgz", job.name),
            0o644,
            &read_blob(&job.blob_sha256, &format!("job {}", job.name))?,
        )?;
    }
    tgz.dir("compiled_packages")?;
    for entry in &entries {
        let found = entry.found.as_ref().expect("checked above");
        let bytes = read_blob(&found.blob_sha256, &format!("compiled package {}", entry.package.name))?;
        tgz.bytes(&format!("compiled_packages/{}.tgz", entry.package.name), 0o644, &bytes)?;
    }
    let digest = tgz.finish()?;

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "release": format!("{name}/{version}"), "stemcell": format!("{os}/{os_version}"),
                "tarball": out.display().to_string(), "sha256": digest,
                "packages": entries.len(), "compiled": compiled_now, "from_cache": entries.len() - compiled_now,
            })
        );
    } else {
        println!(
            "Exported {name}/{version} compiled for {os}/{os_version} to {} ({} packages: {compiled_now} compiled now, {} from the cache; {digest})",
            out.display(),
            entries.len(),
            entries.len() - compiled_now
        );
    }
    Ok(ExitCode::SUCCESS)
}

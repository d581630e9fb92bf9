//! `rosh releases`, `rosh stemcells`, `rosh inspect-release`, `rosh delete-release` and
//! `rosh delete-stemcell`: what the director holds, and removing it.
//!
//! Tables on a terminal, JSON with `--json`. Deletes take the artifact's lock, are refused while a
//! deployment uses the version (the state says which), and remove from the blobstore only the
//! blobs no remaining release references.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::blobstore::Blobstore;
use crate::cli::upload::open_director;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectReleaseArgs {
    /// NAME/VERSION
    #[arg(value_name = "NAME/VERSION")]
    pub release: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteReleaseArgs {
    /// NAME (every version) or NAME/VERSION
    #[arg(value_name = "NAME[/VERSION]")]
    pub release: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteStemcellArgs {
    #[arg(value_name = "NAME/VERSION")]
    pub stemcell: String,
    #[arg(long)]
    pub json: bool,
}

fn split_slug(slug: &str, what: &str) -> anyhow::Result<(String, String)> {
    match slug.split_once('/') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => Ok((name.to_string(), version.to_string())),
        _ => bail!("expected {what} as NAME/VERSION, got '{slug}'"),
    }
}

/// Prints rows as a left-aligned table with a header.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

pub fn releases(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (state, _) = open_director()?;
    let releases = state.releases()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&releases)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            let commit = match (&r.commit_hash, r.uncommitted_changes) {
                (Some(c), true) => format!("{c}+"),
                (Some(c), false) => c.clone(),
                (None, _) => "-".to_string(),
            };
            let version = if r.in_use_by.is_empty() { r.version.clone() } else { format!("{}*", r.version) };
            vec![r.name.clone(), version, commit]
        })
        .collect();
    table(&["Name", "Version", "Commit Hash"], &rows);
    println!("\n(*) Currently deployed; (+) Uncommitted changes\n\n{} releases", releases.len());
    Ok(ExitCode::SUCCESS)
}

pub fn stemcells(args: ListArgs) -> anyhow::Result<ExitCode> {
    let (state, _) = open_director()?;
    let stemcells = state.stemcells()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stemcells)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = stemcells
        .iter()
        .map(|s| {
            let version = if s.in_use_by.is_empty() { s.version.clone() } else { format!("{}*", s.version) };
            vec![s.name.clone(), version, s.operating_system.clone(), s.cid.clone().unwrap_or_else(|| "-".into())]
        })
        .collect();
    table(&["Name", "Version", "OS", "CID"], &rows);
    println!("\n(*) Currently deployed\n\n{} stemcells", stemcells.len());
    Ok(ExitCode::SUCCESS)
}

pub fn inspect_release(args: InspectReleaseArgs) -> anyhow::Result<ExitCode> {
    let (name, version) = split_slug(&args.release, "a release")?;
    let (state, _) = open_director()?;
    let release =
        state.release(&name, &version)?.with_context(|| format!("release {name}/{version} is not uploaded"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&release)?);
        return Ok(ExitCode::SUCCESS);
    }
    let jobs: Vec<Vec<String>> = release
        .jobs
        .iter()
        .map(|j| {
            vec![format!("{}/{}", j.name, j.fingerprint), j.blob_sha256.clone(), j.sha1.clone(), j.packages.join(", ")]
        })
        .collect();
    table(&["Job", "Blobstore ID", "Digest", "Packages"], &jobs);
    println!();
    let packages: Vec<Vec<String>> = release
        .packages
        .iter()
        .map(|p| {
            vec![
                format!("{}/{}", p.name, p.fingerprint),
                p.blob_sha256.clone().unwrap_or_else(|| "(compiled only)".into()),
                p.sha1.clone(),
                p.dependencies.join(", "),
            ]
        })
        .collect();
    table(&["Package", "Blobstore ID", "Digest", "Dependencies"], &packages);
    println!("\n{} jobs, {} packages", release.jobs.len(), release.packages.len());
    Ok(ExitCode::SUCCESS)
}

pub fn delete_release(args: DeleteReleaseArgs) -> anyhow::Result<ExitCode> {
    let (name, version) = match args.release.split_once('/') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (args.release.clone(), None),
    };
    let (state, blobs) = open_director()?;
    let _lock = state.lock(&format!("release:{name}"), Some(Duration::from_secs(60)))?;
    let deleted = state.delete_release(&name, version.as_deref())?;
    let mut removed = 0;
    for sha in &deleted.orphaned_blobs {
        if blobs.delete(sha)? {
            removed += 1;
        }
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"name": name, "versions": deleted.versions, "blobs_deleted": removed})
            )?
        );
    } else {
        println!("Deleted release {name} version(s) {} ({removed} blob(s) freed)", deleted.versions.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete_stemcell(args: DeleteStemcellArgs) -> anyhow::Result<ExitCode> {
    let (name, version) = split_slug(&args.stemcell, "a stemcell")?;
    let (state, blobs) = open_director()?;
    let _lock = state.lock(&format!("stemcell:{name}"), Some(Duration::from_secs(60)))?;
    let record =
        state.stemcell(&name, &version)?.with_context(|| format!("stemcell {name}/{version} is not uploaded"))?;
    state.delete_stemcell(&name, &version)?;
    let mut removed = 0;
    if let Some(sha) = &record.image_sha256
        && !state.stemcells_using_image(sha)?
        && blobs.delete(sha)?
    {
        removed = 1;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"name": name, "version": version, "blobs_deleted": removed})
            )?
        );
    } else {
        println!("Deleted stemcell {name}/{version}");
    }
    Ok(ExitCode::SUCCESS)
}

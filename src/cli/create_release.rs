//! `rosh create-release`: builds a release from a release source directory, like `bosh
//! create-release`, through [`crate::release::create`], and prints what it built.
//!
//! Output is a summary like bosh-cli's (name, version, commit hash, archive, then a jobs table
//! and a packages table with each artifact's fingerprint, digest, and whether it was built now
//! or reused), or with `--json` the same as one JSON object. When nothing changed since the
//! latest release, no version is created: that is said on stdout, and the exit code is 0.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::release::create::{self, BuildStatus, BuiltArtifact, Created, Options};

#[derive(Debug, clap::Args)]
pub struct CreateReleaseArgs {
    /// Release source directory (jobs/, packages/, src/, config/final.yml).
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Release name (default: final_name in config/final.yml).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Release version (default: the next dev version, or the next final version with --final).
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Make a final release (.final_builds/, releases/<name>/).
    #[arg(long = "final")]
    pub final_release: bool,
    /// Also write the release tarball to this path.
    #[arg(long, value_name = "PATH")]
    pub tarball: Option<PathBuf>,
    /// Build despite uncommitted git changes, and create a new version even if nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CreateReleaseArgs) -> anyhow::Result<ExitCode> {
    let options = Options {
        name: args.name.clone(),
        version: args.version.clone(),
        final_release: args.final_release,
        tarball: args.tarball.clone(),
        force: args.force,
    };
    let created = create::create_release(&args.dir, &options)
        .with_context(|| format!("creating release from {}", args.dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(&created))?);
    } else {
        print!("{}", to_text(&created));
    }
    Ok(ExitCode::SUCCESS)
}

fn status(b: &BuiltArtifact) -> &'static str {
    match b.status {
        BuildStatus::New => "new",
        BuildStatus::Reused => "reused",
    }
}

fn kind_of(created: &Created) -> &'static str {
    if created.final_release { "final" } else { "dev" }
}

/// The text summary.
pub fn to_text(created: &Created) -> String {
    let m = &created.manifest;
    let mut out = String::new();
    let commit = m.commit_hash.clone().unwrap_or_default();
    let mark = if m.uncommitted_changes { "+" } else { "" };
    let mut summary = vec![
        ("Name", m.name.clone()),
        ("Version", m.version.clone()),
        ("Commit Hash", format!("{commit}{mark}")),
        ("Manifest", created.manifest_path.display().to_string()),
    ];
    if let Some(path) = &created.tarball_path {
        summary.push(("Archive", path.display().to_string()));
    }
    out.push_str(&table(&[], &summary.iter().map(|(k, v)| vec![k.to_string(), v.clone()]).collect::<Vec<_>>()));
    out.push('\n');

    let rows = |items: &[BuiltArtifact]| -> Vec<Vec<String>> {
        items
            .iter()
            .map(|b| {
                let uses = if b.uses.is_empty() { "-".to_string() } else { b.uses.join(", ") };
                vec![format!("{}/{}", b.name, b.fingerprint), b.sha1.clone(), uses, status(b).to_string()]
            })
            .collect()
    };
    out.push_str(&table(&["Job", "Digest", "Packages", "Status"], &rows(&created.jobs)));
    out.push_str(&format!("\n{} jobs\n\n", created.jobs.len()));
    out.push_str(&table(&["Package", "Digest", "Dependencies", "Status"], &rows(&created.packages)));
    out.push_str(&format!("\n{} packages\n\n", created.packages.len()));
    if let Some(license) = &created.license {
        out.push_str(&table(
            &["License", "Digest", "Status"],
            &[vec![format!("license/{}", license.fingerprint), license.sha1.clone(), status(license).to_string()]],
        ));
        out.push('\n');
    }

    if created.new_version {
        out.push_str(&format!("Created {} release {}/{}\n", kind_of(created), m.name, m.version));
    } else {
        out.push_str(&format!(
            "No changes since {}/{}: no new version created (use --force to create one)\n",
            m.name, m.version
        ));
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; no trailing spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut all: Vec<Vec<String>> = Vec::new();
    if !header.is_empty() {
        all.push(header.iter().map(|h| h.to_string()).collect());
    }
    all.extend(rows.iter().cloned());
    let columns = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| all.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &all {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 < row.len() {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            } else {
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The JSON form: the release manifest's fields, where it was written, and per artifact its
/// status.
pub fn to_json(created: &Created) -> serde_json::Value {
    let m = &created.manifest;
    let artifact = |b: &BuiltArtifact| {
        let uses_key = if b.kind == crate::release::fingerprint::Kind::Job { "packages" } else { "dependencies" };
        json!({
            "name": b.name,
            "version": b.version,
            "fingerprint": b.fingerprint,
            "sha1": b.sha1,
            uses_key: b.uses,
            "status": status(b),
        })
    };
    json!({
        "name": m.name,
        "version": m.version,
        "final": created.final_release,
        "new_version": created.new_version,
        "commit_hash": m.commit_hash,
        "uncommitted_changes": m.uncommitted_changes,
        "manifest_path": created.manifest_path,
        "tarball": created.tarball_path,
        "jobs": created.jobs.iter().map(artifact).collect::<Vec<_>>(),
        "packages": created.packages.iter().map(artifact).collect::<Vec<_>>(),
        "license": created.license.as_ref().map(|l| json!({
            "version": l.version,
            "fingerprint": l.fingerprint,
            "sha1": l.sha1,
            "status": status(l),
        })),
    })
}

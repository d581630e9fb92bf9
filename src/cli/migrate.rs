//! `rosh migrate-manifest`: converts a v1 manifest file into a v2 manifest file and a cloud-config
//! file. The conversion itself is [`crate::manifest::v1`]; this file reads the input, refuses to
//! clobber existing outputs (unless `--force`), writes both outputs only once the conversion has
//! succeeded (each through a temporary file renamed into place), prints the warnings on stderr
//! and a one-line summary on stdout.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::manifest::{v1, yaml};

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The v1 manifest to convert (jobs, resource_pools, disk_pools, networks, compilation).
    #[arg(value_name = "OLD.yml")]
    pub manifest: PathBuf,
    /// Where to write the v2 deployment manifest.
    #[arg(long, value_name = "PATH")]
    pub out_manifest: PathBuf,
    /// Where to write the cloud config.
    #[arg(long, value_name = "PATH")]
    pub out_cloud_config: PathBuf,
    /// Overwrite the output files if they exist.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let input = args.manifest.display().to_string();
    check_outputs(&args)?;

    let text = fs::read_to_string(&args.manifest).with_context(|| format!("reading {input}"))?;
    let migrated = v1::migrate_text(&text, &input)?;

    let header = format!("# Migrated from {input} by `rosh migrate-manifest`.\n");
    let manifest_text = format!("{header}{}", yaml::to_string(&migrated.manifest));
    let cloud_config_text = format!("{header}{}", yaml::to_string(&migrated.cloud_config));
    write_all(&[(&args.out_manifest, &manifest_text), (&args.out_cloud_config, &cloud_config_text)])?;

    for warning in &migrated.warnings {
        eprintln!("warning: {warning}");
    }
    let s = migrated.summary();
    println!(
        "{input}: {} instance groups, {} azs, {} vm_types, {} disk_types, {} networks, {} stemcells; \
         {} warnings; wrote {} and {}",
        s.instance_groups,
        s.azs,
        s.vm_types,
        s.disk_types,
        s.networks,
        s.stemcells,
        migrated.warnings.len(),
        args.out_manifest.display(),
        args.out_cloud_config.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Refuses outputs that would overwrite the input, each other, or (without `--force`) an
/// existing file — before any work is done.
fn check_outputs(args: &MigrateArgs) -> anyhow::Result<()> {
    let same = |a: &Path, b: &Path| a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same(&args.out_manifest, &args.out_cloud_config) {
        bail!("--out-manifest and --out-cloud-config are the same file: {}", args.out_manifest.display());
    }
    for out in [&args.out_manifest, &args.out_cloud_config] {
        if same(out, &args.manifest) {
            bail!("{}: refusing to overwrite the input manifest", out.display());
        }
        if !args.force && fs::symlink_metadata(out).is_ok() {
            bail!("{}: already exists (use --force to overwrite it)", out.display());
        }
    }
    Ok(())
}

/// Writes every file to a temporary sibling first and renames them into place only when all
/// temporaries are written, so a failure leaves no half-written output.
fn write_all(files: &[(&PathBuf, &String)]) -> anyhow::Result<()> {
    let mut temporaries: Vec<(PathBuf, &PathBuf)> = Vec::new();
    let cleanup = |temporaries: &[(PathBuf, &PathBuf)]| {
        for (tmp, _) in temporaries {
            let _ = fs::remove_file(tmp);
        }
    };
    for (path, text) in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.rosh-tmp-{}", std::process::id()));
        if let Err(e) = fs::write(&tmp, text.as_bytes()) {
            cleanup(&temporaries);
            let _ = fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
        temporaries.push((tmp, path));
    }
    for (i, (tmp, path)) in temporaries.iter().enumerate() {
        if let Err(e) = fs::rename(tmp, path) {
            cleanup(&temporaries[i..]);
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
    }
    Ok(())
}

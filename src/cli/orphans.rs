//! What deploys leave behind on purpose, and how an operator clears it, as `bosh` names it:
//! `rosh disks --orphaned` lists the persistent disks no instance uses any more (a removed
//! instance's, a migrated disk's old copy, a deleted deployment's), `rosh delete-disk CID`
//! deletes one through its CPI, and `rosh orphaned-vms` lists VMs no instance owns that still
//! exist (the old VM of a create-swap-delete a run did not finish; the next deploy of their
//! deployment deletes them).
//!
//! A disk that still belongs to an instance is never deleted here: it must be orphaned first
//! (removed from the manifest, or its instance deleted).

use std::process::ExitCode;

use anyhow::{Context, bail};

use super::deploy::Director;
use super::ops::{print_table, runtime};
use crate::converge::vm;

#[derive(Debug, clap::Args)]
pub struct DisksArgs {
    /// List the orphaned disks (the only listing there is, as in bosh).
    #[arg(long)]
    pub orphaned: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DeleteDiskArgs {
    /// The orphaned disk's cid (see `rosh disks --orphaned`).
    #[arg(value_name = "CID")]
    pub cid: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct OrphanedVmsArgs {
    #[arg(long)]
    pub json: bool,
}

pub fn disks(args: DisksArgs) -> anyhow::Result<ExitCode> {
    if !args.orphaned {
        bail!(
            "`rosh disks` lists orphaned disks only: add --orphaned (a deployment's disks are in `rosh -d NAME instances --details`)"
        );
    }
    let director = Director::open()?;
    let orphans = director.state.orphaned_disks()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&orphans)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = orphans
        .iter()
        .map(|d| {
            vec![
                d.cid.clone(),
                format!("{} MB", d.size_mb),
                d.deployment.clone(),
                d.cpi.clone(),
                d.cloud_properties_json.clone(),
                d.orphaned_at.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["Disk CID", "Size", "Deployment", "CPI", "Cloud properties", "Orphaned at"], &rows);
    println!("\n{} orphaned disks", orphans.len());
    Ok(ExitCode::SUCCESS)
}

pub fn delete_disk(args: DeleteDiskArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    let state = &director.state;
    let Some(disk) = state.disk(&args.cid)? else {
        bail!("no orphaned disk {} on record (see `rosh disks --orphaned`)", args.cid)
    };
    if disk.orphaned_at.is_none() {
        bail!(
            "disk {} is not orphaned: it belongs to instance {} of deployment `{}`; \
             it is orphaned when its instance leaves the manifest or loses its persistent disk",
            disk.cid,
            disk.instance_uuid.as_deref().unwrap_or("?"),
            disk.deployment
        );
    }
    let cpis = director.cpis()?;
    let (_, cpi) = cpis
        .get(Some(&disk.cpi))
        .with_context(|| format!("disk {} is on CPI `{}`, which the CPI config no longer has", disk.cid, disk.cpi))?;
    // Already gone in the cloud counts as deleted: only the record is left to remove.
    runtime()?
        .block_on(vm::delete_disk(cpi.as_ref(), &disk.cid))
        .with_context(|| format!("deleting disk {} on CPI {}", disk.cid, disk.cpi))?;
    state.delete_disk_record(&disk.cid)?;
    if args.json {
        println!("{}", serde_json::json!({ "deleted": disk.cid, "size_mb": disk.size_mb, "cpi": disk.cpi }));
    } else {
        println!("Deleted orphaned disk {} ({} MB, CPI {})", disk.cid, disk.size_mb, disk.cpi);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn orphaned_vms(args: OrphanedVmsArgs) -> anyhow::Result<ExitCode> {
    let director = Director::open()?;
    let orphans = director.state.orphaned_vms(None)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&orphans)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = orphans
        .iter()
        .map(|o| {
            vec![
                o.vm.cid.clone(),
                o.deployment.clone(),
                o.instance.clone(),
                o.vm.cpi.clone(),
                o.vm.ips.values().cloned().collect::<Vec<_>>().join(", "),
                o.orphaned_at.clone(),
            ]
        })
        .collect();
    print_table(&["VM CID", "Deployment", "Was instance", "CPI", "IPs", "Orphaned at"], &rows);
    println!("\n{} orphaned VMs (the next deploy of their deployment deletes them)", orphans.len());
    Ok(ExitCode::SUCCESS)
}

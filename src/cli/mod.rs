//! The command line: clap definitions, dispatch, and how outcomes reach the operator.
//!
//! Each command lives in its own file with its `Args` struct and a `run` function. Commands read
//! files and environment, call the pure library code, print results on stdout and errors on
//! stderr, and return the exit code: 0 success, 1 error (`validate` also exits 1 when it finds
//! problems).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod agent;
pub mod artifacts;
pub mod compat;
pub mod configs;
pub mod cpi;
pub mod create_release;
pub mod create_stemcell;
pub mod deploy;
pub mod errand;
pub mod export_release;
pub mod health;
pub mod interpolate;
pub mod migrate;
pub mod ops;
pub mod ops_lifecycle;
pub mod ops_show;
pub mod ops_ssh;
pub mod orphans;
pub mod plan;
pub mod progress;
pub mod upload;
pub mod validate;

#[derive(Debug, Parser)]
#[command(name = "rosh", version, about = "A BOSH-like deployment orchestrator", propagate_version = true)]
pub struct Cli {
    /// The deployment a command acts on (as `bosh -d`).
    #[arg(short = 'd', long = "deployment", global = true, env = "ROSH_DEPLOYMENT", value_name = "NAME")]
    pub deployment: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Interpolate variables and apply ops files to a YAML file, like `bosh interpolate`.
    #[command(alias = "int")]
    Interpolate(interpolate::InterpolateArgs),
    /// Check a deployment manifest against a cloud config (and runtime configs): every
    /// vm_type, vm_extension, disk_type, network, az, release and stemcell it names must exist.
    Validate(validate::ValidateArgs),
    /// Convert a v1 manifest (jobs/resource_pools/disk_pools) into a v2 manifest and a cloud config.
    MigrateManifest(migrate::MigrateArgs),
    /// Build a release from a release source directory, like `bosh create-release`.
    #[command(disable_version_flag = true)]
    CreateRelease(create_release::CreateReleaseArgs),
    /// Build the local CPI's stemcell for this host (`--local`).
    CreateStemcell(create_stemcell::CreateStemcellArgs),
    /// Upload a release tarball, release directory or URL into the director, verified.
    #[command(disable_version_flag = true)]
    UploadRelease(upload::UploadReleaseArgs),
    /// Upload a stemcell tarball or URL into the director, verified.
    UploadStemcell(upload::UploadStemcellArgs),
    /// List uploaded releases.
    Releases(artifacts::ListArgs),
    /// List uploaded stemcells.
    Stemcells(artifacts::ListArgs),
    /// Show the jobs and packages of an uploaded release.
    InspectRelease(artifacts::InspectReleaseArgs),
    /// Delete a release version (NAME/VERSION) or every version (NAME).
    DeleteRelease(artifacts::DeleteReleaseArgs),
    /// Delete a stemcell (NAME/VERSION).
    DeleteStemcell(artifacts::DeleteStemcellArgs),
    /// The VM side: agent verbs, the process supervisor, the local VM's SSH server.
    #[command(hide = true)]
    Agent(agent::AgentArgs),
    /// Check that a manifest's releases, stemcells and CPIs are known to work together.
    #[command(subcommand_required = true)]
    Compat(compat::CompatArgs),
    /// Deploy a manifest: compile what is missing, create and converge VMs (`rosh -d NAME deploy M`).
    Deploy(deploy::DeployArgs),
    /// Export a release compiled for a stemcell (`rosh export-release NAME/V OS/V`), as bosh does.
    #[command(disable_version_flag = true)]
    ExportRelease(export_release::ExportReleaseArgs),
    /// What a deploy of a manifest would do and why, with nothing changed (`rosh -d NAME plan M`).
    Plan(plan::PlanArgs),
    /// Run an errand of the deployed manifest (`rosh -d NAME run-errand smoke-tests`).
    RunErrand(errand::RunErrandArgs),
    /// List deployments: releases, stemcells, instance count, last deployed.
    Deployments(ops_show::DeploymentsArgs),
    /// List a deployment's instances with their process state (`--ps` per process).
    Instances(ops_show::InstancesArgs),
    /// List a deployment's VMs.
    Vms(ops_show::VmsArgs),
    /// Run a command on instances (`rosh -d NAME ssh GROUP[/ID] -c CMD`).
    Ssh(ops_ssh::SshArgs),
    /// Fetch instances' logs as tarballs, or follow them (`--follow`).
    Logs(ops_ssh::LogsArgs),
    /// Start the jobs of instances (all by default).
    Start(ops_lifecycle::StartArgs),
    /// Stop the jobs of instances (all by default); `--hard` deletes their VMs, keeping disks.
    Stop(ops_lifecycle::StopArgs),
    /// Stop and start the jobs of instances (all by default).
    Restart(ops_lifecycle::RestartArgs),
    /// Delete a deployment: its VMs and records; persistent disks are orphaned, not deleted.
    DeleteDeployment(ops_lifecycle::DeleteDeploymentArgs),
    /// Print the manifest a deployment was last deployed with.
    Manifest(ops_show::ManifestArgs),
    /// Show the event log, newest first (`-d NAME` for one deployment's).
    Events(ops_show::EventsArgs),
    /// List orphaned persistent disks (`rosh disks --orphaned`).
    Disks(orphans::DisksArgs),
    /// Delete an orphaned persistent disk through its CPI.
    DeleteDisk(orphans::DeleteDiskArgs),
    /// List VMs no instance owns that still exist (left by an unfinished create-swap-delete).
    OrphanedVms(orphans::OrphanedVmsArgs),
    /// Scan a deployment's VMs and disks for problems and resolve them (`--report`, `--auto`).
    Cck(health::CckArgs),
    /// Recreate instances' VMs from the last deployed manifest (`--failed`: those cck reports).
    Recreate(health::RecreateArgs),
    /// The resurrector: scan periodically and recreate failed instances (meltdown guarded).
    Watch(health::WatchArgs),
    /// Rebuild a deployment's instance, VM, disk and IP records from the cloud and its agents.
    RecoverState(health::RecoverStateArgs),
    /// rosh's own CPIs behind the BOSH CPI protocol (`rosh cpi serve local`).
    Cpi(cpi::CpiArgs),
    /// Validate a cloud config and store it as the director's next version.
    UpdateCloudConfig(configs::UpdateArgs),
    /// Print the stored cloud config.
    CloudConfig(configs::ShowArgs),
    /// Validate a runtime config and store it as the next version of its name.
    UpdateRuntimeConfig(configs::UpdateRuntimeArgs),
    /// Print a stored runtime config.
    RuntimeConfig(configs::ShowRuntimeArgs),
    /// Validate a CPI config and store it as the director's next version.
    UpdateCpiConfig(configs::UpdateArgs),
    /// Print the stored CPI config.
    CpiConfig(configs::ShowArgs),
    /// List the current version of every stored config.
    Configs(configs::ConfigsArgs),
}

/// Runs the CLI with the process arguments and returns the exit code.
pub fn main() -> ExitCode {
    if agent::invoked_as_standalone() {
        return agent::standalone_main();
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Interpolate(args) => interpolate::run(args),
        Command::Validate(args) => validate::run(args),
        Command::MigrateManifest(args) => migrate::run(args),
        Command::CreateRelease(args) => create_release::run(args),
        Command::CreateStemcell(args) => create_stemcell::run(args),
        Command::UploadRelease(args) => upload::run_release(args),
        Command::UploadStemcell(args) => upload::run_stemcell(args),
        Command::Releases(args) => artifacts::releases(args),
        Command::Stemcells(args) => artifacts::stemcells(args),
        Command::InspectRelease(args) => artifacts::inspect_release(args),
        Command::DeleteRelease(args) => artifacts::delete_release(args),
        Command::DeleteStemcell(args) => artifacts::delete_stemcell(args),
        Command::Agent(args) => agent::run(args),
        Command::Cpi(args) => cpi::run(args),
        Command::Compat(args) => compat::run(cli.deployment, args),
        Command::Deploy(args) => deploy::run(cli.deployment, args),
        Command::ExportRelease(args) => export_release::run(args),
        Command::Plan(args) => plan::run(cli.deployment, args),
        Command::RunErrand(args) => errand::run(cli.deployment, args),
        Command::Deployments(args) => ops_show::deployments(args),
        Command::Instances(args) => ops_show::instances(cli.deployment, args),
        Command::Vms(args) => ops_show::vms(cli.deployment, args),
        Command::Ssh(args) => ops_ssh::ssh(cli.deployment, args),
        Command::Logs(args) => ops_ssh::logs(cli.deployment, args),
        Command::Start(args) => ops_lifecycle::start(cli.deployment, args),
        Command::Stop(args) => ops_lifecycle::stop(cli.deployment, args),
        Command::Restart(args) => ops_lifecycle::restart(cli.deployment, args),
        Command::DeleteDeployment(args) => ops_lifecycle::delete_deployment(cli.deployment, args),
        Command::Manifest(args) => ops_show::manifest(cli.deployment, args),
        Command::Events(args) => ops_show::events(cli.deployment, args),
        Command::Disks(args) => orphans::disks(args),
        Command::DeleteDisk(args) => orphans::delete_disk(args),
        Command::OrphanedVms(args) => orphans::orphaned_vms(args),
        Command::Cck(args) => health::cck(cli.deployment, args),
        Command::Recreate(args) => health::recreate(cli.deployment, args),
        Command::Watch(args) => health::watch_cmd(cli.deployment, args),
        Command::RecoverState(args) => health::recover_state(cli.deployment, args),
        Command::UpdateCloudConfig(args) => configs::update_cloud_config(args),
        Command::CloudConfig(args) => configs::cloud_config(args),
        Command::UpdateRuntimeConfig(args) => configs::update_runtime_config(args),
        Command::RuntimeConfig(args) => configs::runtime_config(args),
        Command::UpdateCpiConfig(args) => configs::update_cpi_config(args),
        Command::CpiConfig(args) => configs::cpi_config(args),
        Command::Configs(args) => configs::configs(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_definition_is_consistent() {
        // clap checks flag clashes (like a command's --version against the global one) only when
        // that command is parsed; this checks all of them.
        super::Cli::command().debug_assert();
    }
}

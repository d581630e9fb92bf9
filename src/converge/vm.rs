//! One VM from the director's side: made through a CPI, reached over SSH with its pinned host
//! key, its agent installed when the machine needs it, and blobs moved between the blobstore and
//! the VM. Compilation and instance updates both go through here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rosh_cpi::{Cid, Cpi, CpiError, DiskAttachment, ErrorKind, SshEndpoint};

use crate::blobstore::{Blobstore, ExpectedDigest, LocalBlobstore};
use crate::ssh::agent_client::{AgentBinary, AgentClient, UploadSummary, ensure_agent_binary};
use crate::ssh::client::{ConnectOptions, Connection};
use crate::ssh::keys::DirectorKey;

/// What every VM connection of one run shares: who the director is and which agent binary it
/// installs.
#[derive(Clone)]
pub struct Reach {
    pub key: DirectorKey,
    pub agent_binary: Arc<AgentBinary>,
    /// How long to keep trying a VM that does not answer yet (a booting one).
    pub boot_timeout: Duration,
    pub step_timeout: Duration,
}

impl Reach {
    /// Connects to the VM at `endpoint` and makes sure its agent is ready.
    pub async fn agent(&self, endpoint: &SshEndpoint) -> anyhow::Result<AgentClient> {
        let options = ConnectOptions {
            retry_until: self.boot_timeout,
            step_timeout: self.step_timeout,
            ..ConnectOptions::default()
        };
        let conn = Connection::connect(endpoint, &self.key, &options)
            .await
            .with_context(|| format!("connecting to {}:{}", endpoint.host, endpoint.port))?;
        let ensured = ensure_agent_binary(&conn, endpoint, &self.agent_binary)
            .await
            .with_context(|| format!("preparing the agent on {}", endpoint.host))?;
        Ok(ensured.client)
    }
}

/// A VM made for this run (a compilation VM), deleted by [`TempVm::delete`].
pub struct TempVm {
    pub cid: Cid,
    /// Its place among the run's compilation VMs.
    pub slot: usize,
    pub endpoint: SshEndpoint,
    pub agent: AgentClient,
}

impl TempVm {
    pub async fn delete(self, cpi: &dyn Cpi) -> anyhow::Result<()> {
        self.agent.connection().close().await;
        delete_vm(cpi, &self.cid.0).await
    }
}

/// Has the CPI delete VM `cid`; one already gone is deleted.
pub async fn delete_vm(cpi: &dyn Cpi, cid: &str) -> anyhow::Result<()> {
    match cpi.delete_vm(Cid(cid.to_string())).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind == ErrorKind::VmNotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("deleting VM {cid}")),
    }
}

/// Has the CPI detach disk `disk` from VM `vm`; a disk not attached to it is detached already.
pub async fn detach_disk(cpi: &dyn Cpi, vm: &str, disk: &str) -> Result<(), CpiError> {
    match cpi.detach_disk(DiskAttachment { vm_cid: Cid(vm.to_string()), disk_cid: Cid(disk.to_string()) }).await {
        Err(e) if e.kind == ErrorKind::DiskNotAttached => Ok(()),
        other => other,
    }
}

/// Has the CPI delete disk `cid`; one already gone is deleted.
pub async fn delete_disk(cpi: &dyn Cpi, cid: &str) -> Result<(), CpiError> {
    match cpi.delete_disk(Cid(cid.to_string())).await {
        Err(e) if e.kind == ErrorKind::DiskNotFound => Ok(()),
        other => other,
    }
}

/// Puts the listed blobs on the VM, skipping the ones it holds.
pub async fn upload(agent: &AgentClient, blobs: &LocalBlobstore, digests: &[String]) -> anyhow::Result<UploadSummary> {
    let files: Vec<(String, PathBuf)> =
        digests.iter().map(|sha| Ok((sha.clone(), blobs.path_of(sha)?))).collect::<anyhow::Result<_>>()?;
    Ok(agent.upload_blobs(&files).await?)
}

/// Fetches blob `sha256` from the VM into the blobstore (verified on the way in).
pub async fn fetch(agent: &AgentClient, blobs: &LocalBlobstore, sha256: &str) -> anyhow::Result<()> {
    if blobs.contains(sha256)? {
        return Ok(());
    }
    let tmp = tempfile::NamedTempFile::new_in(blobs.root()).context("making a temporary file for a fetched blob")?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    agent.get_blob(sha256, &mut file).await.with_context(|| format!("fetching blob {sha256}"))?;
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    let expected = ExpectedDigest::parse(&format!("sha256:{sha256}"))?;
    let blobs = blobs.clone();
    let path = tmp.path().to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut reader = std::fs::File::open(&path)?;
        blobs.put_expecting(&mut reader, &expected)?;
        Ok(())
    })
    .await??;
    Ok(())
}

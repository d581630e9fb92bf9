//! An instance's desired [`InstanceSpec`]: its jobs rendered for the VM's root (job templates
//! read from the blobstore once and kept), its compiled packages by digest, and the rest of
//! what its VM is made of.
//!
//! Rendering only reads: `deploy` stores the rendered job tarballs in the blobstore before
//! pushing them to the VM ([`SpecRenderer::store`]); `plan` renders to compare and stores
//! nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use sha2::Digest;

use crate::blobstore::{Blobstore, LocalBlobstore};
use crate::plan::changes::{InstanceSpec, JobDetail};
use crate::plan::desired::{DesiredDeployment, DesiredGroup, DesiredInstance};
use crate::template::{JobTemplates, RenderContext, RenderedJob, render_job};

/// Renders instance specs, reading each job's templates from the blobstore once.
pub struct SpecRenderer<'a> {
    blobs: &'a LocalBlobstore,
    templates: Mutex<HashMap<String, Arc<JobTemplates>>>,
}

/// A spec and the rendered jobs its `jobs` digests name.
pub struct Rendered {
    pub spec: InstanceSpec,
    pub jobs: Vec<RenderedJob>,
}

fn hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl<'a> SpecRenderer<'a> {
    pub fn new(blobs: &'a LocalBlobstore) -> SpecRenderer<'a> {
        SpecRenderer { blobs, templates: Mutex::new(HashMap::new()) }
    }

    fn job_templates(&self, sha256: &str, name: &str) -> anyhow::Result<Arc<JobTemplates>> {
        if let Some(t) = self.templates.lock().expect("not poisoned").get(sha256) {
            return Ok(t.clone());
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut self.blobs.open(sha256)?, &mut bytes)
            .with_context(|| format!("reading job {name} ({sha256})"))?;
        let templates = Arc::new(JobTemplates::from_job_tarball(&bytes, &format!("job {name}"))?);
        self.templates.lock().expect("not poisoned").insert(sha256.to_string(), templates.clone());
        Ok(templates)
    }

    /// The instance's spec on a VM whose root is `root`, with `packages` (name → compiled blob
    /// digest, or any stand-in that differs from every real digest when not compiled yet).
    pub fn render(
        &self,
        deployment: &DesiredDeployment,
        group: &DesiredGroup,
        instance: &DesiredInstance,
        packages: BTreeMap<String, String>,
        root: &str,
    ) -> anyhow::Result<Rendered> {
        let mut jobs = BTreeMap::new();
        let mut job_details = BTreeMap::new();
        let mut rendered_jobs = Vec::new();
        for job in &group.jobs {
            let templates = self.job_templates(&job.sha256, &job.name)?;
            let release_version = deployment
                .releases
                .iter()
                .find(|(name, _)| name == &job.release)
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let ctx = RenderContext {
                deployment: deployment.name.clone(),
                instance,
                job,
                release_version,
                root: root.to_string(),
                persistent_disk_mb: group.persistent_disk.as_ref().map_or(0, |d| d.size_mb),
            };
            let rendered = render_job(&templates, &ctx).with_context(|| format!("rendering {}", instance.name()))?;
            jobs.insert(job.name.clone(), rendered.sha256.clone());
            job_details.insert(
                job.name.clone(),
                JobDetail {
                    fingerprint: job.fingerprint.clone(),
                    properties: hex(&serde_json::to_vec(&job.properties)?),
                    files: rendered.files.iter().map(|(name, bytes)| (name.clone(), hex(bytes))).collect(),
                },
            );
            rendered_jobs.push(rendered);
        }
        let spec = InstanceSpec {
            stemcell: format!("{}/{}", group.stemcell.name, group.stemcell.version),
            cloud_properties: instance.cloud_properties.clone(),
            networks: instance.networks.iter().map(|n| (n.name.clone(), n.ip.clone())).collect(),
            env: group.env.clone(),
            persistent_disk_mb: group.persistent_disk.as_ref().map_or(0, |d| d.size_mb),
            packages,
            jobs,
            job_details,
        };
        Ok(Rendered { spec, jobs: rendered_jobs })
    }

    /// Puts the rendered jobs in the blobstore (those it lacks).
    pub fn store(&self, rendered: &Rendered) -> anyhow::Result<()> {
        for job in &rendered.jobs {
            if !self.blobs.contains(&job.sha256)? {
                self.blobs.put(&mut job.tarball.as_slice())?;
            }
        }
        Ok(())
    }
}

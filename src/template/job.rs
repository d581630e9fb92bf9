//! A job's template sources as the renderer reads them: its spec (`job.MF`) and the files of its
//! job tarball that get rendered — `templates/<source>` and `monit` — held in memory.
//!
//! [`JobTemplates::from_job_tarball`] reads a BOSH job tarball from bytes through
//! [`crate::release::archive::visit`], so it refuses what every rosh archive reader refuses
//! (absolute paths, `..`, links out of the archive, corrupt or truncated streams). Entries may
//! carry a leading `./` or not. Hard links and symlinks to files inside the tarball are
//! followed, since `bosh create-release` from a source tree with links produces them; anything
//! else in the tarball (directories, stray files) is ignored. Whether every template the spec
//! lists is present is judged when rendering, where the error can name the job and template.

use std::collections::BTreeMap;
use std::io::Read;

use crate::release::archive::{self, ArchiveError, EntryKind};
use crate::release::manifest::{self, FormatError, JobSpec};
use crate::release::tarball::JOB_LIMIT;

/// How many links are followed from one entry before it is called a loop (Linux's limit).
const MAX_LINK_HOPS: usize = 40;

/// The template sources of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTemplates {
    /// The job's spec (`job.MF`).
    pub spec: JobSpec,
    /// `templates/<source>` → contents, and `monit` when the job has one.
    pub files: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobTarballError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{source_name}: {message}")]
    Invalid { source_name: String, message: String },
}

impl JobTemplates {
    /// From parts already read (for example a release tarball's job artifact): `templates` is
    /// keyed by the path under `templates/`.
    pub fn new(spec: JobSpec, templates: BTreeMap<String, Vec<u8>>, monit: Option<Vec<u8>>) -> JobTemplates {
        let mut files: BTreeMap<String, Vec<u8>> =
            templates.into_iter().map(|(source, bytes)| (format!("templates/{source}"), bytes)).collect();
        if let Some(monit) = monit {
            files.insert("monit".to_string(), monit);
        }
        JobTemplates { spec, files }
    }

    /// Reads a job tarball (gzipped or plain tar holding `job.MF`, `monit`, `templates/…`)
    /// from memory. `source_name` names it in errors.
    pub fn from_job_tarball(bytes: &[u8], source_name: &str) -> Result<JobTemplates, JobTarballError> {
        let invalid = |message: String| JobTarballError::Invalid { source_name: source_name.to_string(), message };
        let mut budget = JOB_LIMIT;
        let mut job_mf: Option<Vec<u8>> = None;
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        // Link path → the archive path it points at.
        let mut links: BTreeMap<String, String> = BTreeMap::new();
        archive::visit(bytes, source_name, |info, data| -> Result<(), JobTarballError> {
            let wanted = info.path == "job.MF" || info.path == "monit" || info.path.starts_with("templates/");
            if !wanted {
                return Ok(());
            }
            match &info.kind {
                EntryKind::File => {
                    let mut contents = Vec::new();
                    data.take(budget + 1)
                        .read_to_end(&mut contents)
                        .map_err(|e| ArchiveError::corrupt_entry(source_name, &info.path, &e))?;
                    if contents.len() as u64 > budget {
                        return Err(invalid(format!("the job's files are larger than {JOB_LIMIT} bytes")));
                    }
                    budget -= contents.len() as u64;
                    links.remove(&info.path);
                    if info.path == "job.MF" {
                        job_mf = Some(contents);
                    } else {
                        files.insert(info.path.clone(), contents);
                    }
                }
                EntryKind::HardLink(target) => {
                    links.insert(info.path.clone(), target.clone());
                }
                EntryKind::Symlink(target) => {
                    links.insert(info.path.clone(), join_relative(&info.path, target));
                }
                EntryKind::Directory => {}
            }
            Ok(())
        })?;
        for (path, target) in &links {
            let resolved = follow(target, &links, &files)
                .ok_or_else(|| invalid(format!("{path} links to {target}, which is not a file in the tarball")))?;
            files.insert(path.clone(), resolved.to_vec());
        }
        let job_mf = job_mf.ok_or_else(|| invalid("job.MF is missing".to_string()))?;
        let text = String::from_utf8(job_mf).map_err(|_| invalid("job.MF is not UTF-8 text".to_string()))?;
        let spec: JobSpec = manifest::parse(&text, &format!("{source_name}: job.MF"))?;
        Ok(JobTemplates { spec, files })
    }

    /// The source of template `source` (a key of the spec's `templates`).
    pub fn template(&self, source: &str) -> Option<&[u8]> {
        self.files.get(&format!("templates/{source}")).map(Vec::as_slice)
    }

    /// The `monit` file, when the job has one.
    pub fn monit(&self) -> Option<&[u8]> {
        self.files.get("monit").map(Vec::as_slice)
    }
}

/// A symlink's target as an archive path (the archive reader already refused targets that
/// climb out).
fn join_relative(link: &str, target: &str) -> String {
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    parts.join("/")
}

fn follow<'a>(
    target: &str,
    links: &BTreeMap<String, String>,
    files: &'a BTreeMap<String, Vec<u8>>,
) -> Option<&'a [u8]> {
    let mut at = target;
    for _ in 0..MAX_LINK_HOPS {
        if let Some(bytes) = files.get(at).filter(|_| !links.contains_key(at)) {
            return Some(bytes);
        }
        at = links.get(at)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain (uncompressed) tar from `(path, kind, data)`; kind `0` file, `1` hard link, `2`
    /// symlink (data is the link target).
    fn tar(entries: &[(&str, u8, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_size(0);
            match kind {
                0 => {
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_bytes()).unwrap();
                }
                1 => {
                    header.set_entry_type(tar::EntryType::Link);
                    builder.append_link(&mut header, path, data).unwrap();
                }
                _ => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    builder.append_link(&mut header, path, data).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn reads_templates_and_monit_with_or_without_dot_slash() {
        let bytes = tar(&[
            ("./job.MF", 0, "name: web\ntemplates: {a.hbs: a}\n"),
            ("./templates/a.hbs", 0, "A"),
            ("monit", 0, "M"),
            ("templates/sub/b.hbs", 0, "B"),
            ("packages/ignored", 0, "x"),
        ]);
        let job = JobTemplates::from_job_tarball(&bytes, "web.tgz").unwrap();
        assert_eq!(job.spec.name, "web");
        assert_eq!(job.files.keys().collect::<Vec<_>>(), ["monit", "templates/a.hbs", "templates/sub/b.hbs"]);
        assert_eq!(job.template("a.hbs"), Some(&b"A"[..]));
        assert_eq!(job.monit(), Some(&b"M"[..]));
    }

    #[test]
    fn links_to_files_in_the_tarball_are_followed() {
        let bytes = tar(&[
            ("job.MF", 0, "name: web\n"),
            ("templates/real.hbs", 0, "R"),
            ("templates/hard.hbs", 1, "templates/real.hbs"),
            ("templates/sub/soft.hbs", 2, "../real.hbs"),
        ]);
        let job = JobTemplates::from_job_tarball(&bytes, "web.tgz").unwrap();
        assert_eq!(job.template("hard.hbs"), Some(&b"R"[..]));
        assert_eq!(job.template("sub/soft.hbs"), Some(&b"R"[..]));
    }

    #[test]
    fn refuses_climbing_paths_and_a_missing_job_mf() {
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.as_gnu_mut().unwrap().name[..16].copy_from_slice(b"templates/../../");
        header.set_cksum();
        let mut raw = header.as_bytes().to_vec();
        raw.extend_from_slice(&[b'x'; 512]);
        raw.extend_from_slice(&[0; 1024]);
        let err = JobTemplates::from_job_tarball(&raw, "evil.tgz").unwrap_err();
        assert!(matches!(err, JobTarballError::Archive(ArchiveError::Refused { .. })), "{err}");

        let err = JobTemplates::from_job_tarball(&tar(&[("monit", 0, "")]), "web.tgz").unwrap_err();
        assert_eq!(err.to_string(), "web.tgz: job.MF is missing");
    }
}

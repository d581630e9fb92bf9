//! `create-stemcell --local`: builds the stemcell of the local CPI from its definition
//! (`stemcells/local/stemcell.yml`, compiled in as [`DEFAULT_DEFINITION`]).
//!
//! A local VM is a process on this machine (DESIGN §3.2), so there is no disk image to boot.
//! The local stemcell's `image` is instead a description of the host the VMs will run on: a
//! gzipped tarball holding one file, `host.yml`, with the operating system (as in
//! `stemcell.MF`), the identifying fields of `/etc/os-release`, the machine architecture, and
//! where each tool named by the definition's `tools` is on `PATH` (`null` when missing). The
//! local CPI reads it at `create_stemcell` and can refuse a VM on a host that no longer
//! matches. The stemcell tarball holds `stemcell.MF` and `image`, written reproducibly like
//! release tarballs ([`crate::release::create`]): the same host gives the same bytes.
//!
//! `operating_system` is `ID-VERSION_CODENAME` from os-release (`debian-bookworm`,
//! `ubuntu-jammy`, as BOSH names stemcell OSes), else `ID-VERSION_ID` (`alpine-3.20`), else
//! `ID`. The definition's `name` may say `{operating_system}` to include it. `sha1` is
//! `sha256:<hex>` of `image`, `api_version` and `stemcell_formats` come from the definition.
//!
//! Reading os-release and `PATH` is this module's only input from the host, kept in
//! [`Host::detect`]; everything else is a function of its arguments.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::yaml;
use crate::release::create::{CreateError, Tgz};
use crate::release::manifest::{self, FormatError, StemcellManifest, de_version};

/// `stemcells/local/stemcell.yml`, the definition used when none is given.
pub const DEFAULT_DEFINITION: &str = include_str!("../../stemcells/local/stemcell.yml");

/// The os-release fields recorded in the image.
const OS_RELEASE_FIELDS: [&str; 5] = ["ID", "ID_LIKE", "VERSION_ID", "VERSION_CODENAME", "PRETTY_NAME"];

#[derive(Debug, thiserror::Error)]
pub enum StemcellError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Write(#[from] CreateError),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot tell the host's operating system: {0}")]
    UnknownOs(String),
}

/// A local stemcell definition.
#[derive(Debug, Clone, Deserialize)]
pub struct LocalDefinition {
    /// May contain `{operating_system}`.
    pub name: String,
    #[serde(deserialize_with = "de_version")]
    pub version: String,
    #[serde(default)]
    pub api_version: Option<u32>,
    #[serde(default)]
    pub stemcell_formats: Vec<String>,
    #[serde(default)]
    pub cloud_properties: serde_yaml_ng::Mapping,
    #[serde(default)]
    pub tools: Vec<String>,
}

impl LocalDefinition {
    /// Parses a definition; `source_name` names it in errors.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, StemcellError> {
        Ok(manifest::parse(text, source_name)?)
    }
}

/// What the image records about the host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Host {
    pub operating_system: String,
    pub os_release: BTreeMap<String, String>,
    pub architecture: String,
    /// Tool name → absolute path on the host, `None` when not on `PATH`.
    pub tools: BTreeMap<String, Option<PathBuf>>,
}

impl Host {
    /// Reads `/etc/os-release` (or `/usr/lib/os-release`) and looks `tools` up on `PATH`.
    pub fn detect(tools: &[String]) -> Result<Self, StemcellError> {
        let mut text = None;
        for path in ["/etc/os-release", "/usr/lib/os-release"] {
            if let Ok(t) = fs::read_to_string(path) {
                text = Some(t);
                break;
            }
        }
        let text = text.ok_or_else(|| StemcellError::UnknownOs("no /etc/os-release or /usr/lib/os-release".into()))?;
        let path_var = std::env::var_os("PATH").unwrap_or_default();
        let dirs: Vec<PathBuf> = std::env::split_paths(&path_var).collect();
        Self::from_parts(&text, std::env::consts::ARCH, tools, |tool| find_on(&dirs, tool))
    }

    /// The host from os-release text, an architecture, and a tool lookup.
    pub fn from_parts(
        os_release: &str,
        architecture: &str,
        tools: &[String],
        lookup: impl Fn(&str) -> Option<PathBuf>,
    ) -> Result<Self, StemcellError> {
        let fields = parse_os_release(os_release);
        let operating_system =
            operating_system(&fields).ok_or_else(|| StemcellError::UnknownOs("os-release has no ID".into()))?;
        let os_release =
            OS_RELEASE_FIELDS.iter().filter_map(|k| fields.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
        let tools = tools.iter().map(|t| (t.clone(), lookup(t))).collect();
        Ok(Self { operating_system, os_release, architecture: architecture.to_string(), tools })
    }

    pub fn missing_tools(&self) -> Vec<&str> {
        self.tools.iter().filter(|(_, p)| p.is_none()).map(|(t, _)| t.as_str()).collect()
    }
}

/// `KEY=value` lines of os-release, quotes removed.
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            fields.insert(key.trim().to_string(), unquoted.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
    }
    fields
}

/// `ID-VERSION_CODENAME`, else `ID-VERSION_ID`, else `ID`.
pub fn operating_system(fields: &BTreeMap<String, String>) -> Option<String> {
    let id = fields.get("ID").filter(|v| !v.is_empty())?;
    let suffix = fields.get("VERSION_CODENAME").or(fields.get("VERSION_ID")).filter(|v| !v.is_empty());
    Some(match suffix {
        Some(suffix) => format!("{id}-{suffix}"),
        None => id.clone(),
    })
}

fn find_on(dirs: &[PathBuf], tool: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    dirs.iter()
        .map(|d| d.join(tool))
        .find(|p| fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// A local stemcell written to disk.
#[derive(Debug, Clone)]
pub struct CreatedStemcell {
    pub manifest: StemcellManifest,
    pub host: Host,
    pub tarball_path: PathBuf,
}

/// The manifest for `definition` on `host`, given the image's digest.
pub fn stemcell_manifest(definition: &LocalDefinition, host: &Host, image_sha256: &str) -> StemcellManifest {
    StemcellManifest {
        name: definition.name.replace("{operating_system}", &host.operating_system),
        version: definition.version.clone(),
        operating_system: host.operating_system.clone(),
        api_version: definition.api_version,
        sha1: Some(image_sha256.to_string()),
        bosh_protocol: None,
        cloud_properties: definition.cloud_properties.clone(),
        stemcell_formats: definition.stemcell_formats.clone(),
    }
}

/// Builds the local stemcell of `definition` on `host`, into `out` or
/// `<dir>/<name>-<version>.tgz`.
pub fn create_local_stemcell(
    definition: &LocalDefinition,
    host: Host,
    out: Option<&Path>,
    dir: &Path,
) -> Result<CreatedStemcell, StemcellError> {
    let host_yml = to_yaml(&host)?;

    // The image goes beside the output first: its digest is part of stemcell.MF.
    let name = definition.name.replace("{operating_system}", &host.operating_system);
    let tarball_path = match out {
        Some(out) => out.to_path_buf(),
        None => dir.join(format!("{name}-{}.tgz", definition.version)),
    };
    let image_path = tarball_path.with_file_name(format!(
        ".{}.image-{}",
        tarball_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let mut image = Tgz::create(&image_path)?;
    image.bytes("host.yml", 0o644, host_yml.as_bytes())?;
    let image_sha = image.finish()?;

    let manifest = stemcell_manifest(definition, &host, &image_sha);
    let result = (|| {
        let mut tgz = Tgz::create(&tarball_path)?;
        tgz.bytes("stemcell.MF", 0o644, to_yaml(&manifest)?.as_bytes())?;
        let image_bytes =
            fs::read(&image_path).map_err(|source| StemcellError::Io { path: image_path.clone(), source })?;
        tgz.bytes("image", 0o644, &image_bytes)?;
        tgz.finish()?;
        Ok::<_, StemcellError>(())
    })();
    let _ = fs::remove_file(&image_path);
    result?;
    Ok(CreatedStemcell { manifest, host, tarball_path })
}

fn to_yaml<T: Serialize>(value: &T) -> Result<String, StemcellError> {
    let value = serde_yaml_ng::to_value(value)
        .map_err(|e| CreateError::Yaml { what: "stemcell".to_string(), message: e.to_string() })?;
    Ok(yaml::to_string(&value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str =
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";

    #[test]
    fn operating_system_prefers_the_codename() {
        assert_eq!(operating_system(&parse_os_release(DEBIAN)).as_deref(), Some("debian-bookworm"));
        let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.1\n";
        assert_eq!(operating_system(&parse_os_release(alpine)).as_deref(), Some("alpine-3.20.1"));
        assert_eq!(operating_system(&parse_os_release("ID=arch\nBUILD_ID=rolling\n")).as_deref(), Some("arch"));
        assert_eq!(operating_system(&parse_os_release("NAME=x\n")), None);
    }

    #[test]
    fn the_default_definition_names_the_host_os() {
        let host = Host::from_parts(DEBIAN, "x86_64", &["python3".into(), "nope".into()], |t| {
            (t == "python3").then(|| PathBuf::from("/usr/bin/python3"))
        })
        .unwrap();
        assert_eq!(host.missing_tools(), ["nope"]);
        let definition = LocalDefinition::parse(DEFAULT_DEFINITION, "stemcell.yml").unwrap();
        let m = stemcell_manifest(&definition, &host, "sha256:00");
        assert_eq!(m.name, "bosh-local-debian-bookworm-rosh");
        assert_eq!(m.operating_system, "debian-bookworm");
        assert_eq!(m.api_version, Some(3));
        assert_eq!(m.stemcell_formats, ["local"]);
        assert_eq!(m.sha1.as_deref(), Some("sha256:00"));
    }
}

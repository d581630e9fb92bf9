//! Reading a stemcell tarball: `stemcell.MF` and, for heavy stemcells, the `image`.
//!
//! A heavy stemcell carries the machine image in its `image` entry; it is streamed to the
//! caller's sink (never buffered) and, when `stemcell.MF` has a `sha1` (40-hex SHA-1 or
//! `sha256:<hex>`), verified against it once the whole archive has been read. A light stemcell
//! only points at images the IaaS already has (AWS: `cloud_properties.ami` per region) and is
//! valid without one. Light stemcells from bosh.io carry an empty `image` placeholder while their
//! `sha1` still describes the heavy image they were made from, so an empty `image` counts as no
//! image: the sink is not called and nothing is verified. A stemcell is light when one of its `stemcell_formats` ends in
//! `-light`, or, for old stemcells that list no formats, when its `cloud_properties` have an
//! `ami`; any other stemcell without an image is refused. `stemcell.MF` is required; other
//! entries (`packages.txt`, `stemcell_dpkg_l.txt`, …) are ignored, though the archive checks of
//! [`archive`] apply to all of them.
//!
//! The sink contract is that of [`super::tarball`]: read everything, return the hashes, store
//! provisionally, and discard on `Err`.

use std::io::{self, Read};

use super::archive::{self, ArchiveError, EntryKind};
use super::digest::{ExpectedDigest, Hashes};
use super::manifest::{self, FormatError, StemcellManifest};
use super::tarball::{MANIFEST_LIMIT, Tee, read_limited};

#[derive(Debug, Clone, PartialEq)]
pub struct StemcellTarball {
    pub manifest: StemcellManifest,
    /// Present when the tarball has a non-empty `image` entry.
    pub image: Option<Hashes>,
}

impl StemcellTarball {
    pub fn is_light(&self) -> bool {
        is_light(&self.manifest)
    }
}

/// Whether a stemcell needs no image of its own (see the module doc).
pub fn is_light(manifest: &StemcellManifest) -> bool {
    if manifest.stemcell_formats.is_empty() {
        return manifest.cloud_properties.contains_key("ami");
    }
    manifest.stemcell_formats.iter().any(|f| f.ends_with("-light"))
}

#[derive(Debug, thiserror::Error)]
pub enum StemcellError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// `stemcell.MF` is not a valid document.
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{source_name}: {problem}")]
    Invalid { source_name: String, problem: StemcellProblem },
    #[error("{source_name}: storing image: {source}")]
    Sink { source_name: String, source: io::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum StemcellProblem {
    #[error("stemcell.MF is missing")]
    MissingManifest,
    #[error("{entry} appears twice in the tarball")]
    Duplicate { entry: String },
    #[error("stemcell.MF is not UTF-8 text")]
    NotText,
    #[error("stemcell.MF is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("`image` is missing, and the stemcell is not light (stemcell_formats: [{formats}])")]
    MissingImage { formats: String },
    #[error("image: stemcell.MF gives the digest `{digest}`, which is neither 40-hex SHA-1 nor sha256:<64 hex>")]
    BadDigest { digest: String },
    #[error("image: digest mismatch: stemcell.MF says {expected}, the tarball holds {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("image: the sink read {read} bytes and reported {reported} of {expected} (it must read everything)")]
    SinkContract { expected: u64, read: u64, reported: u64 },
}

/// Reads and verifies a stemcell tarball, streaming its image (if any) to `image_sink`.
pub fn read_stemcell(
    reader: impl Read,
    source_name: &str,
    image_sink: &mut dyn FnMut(&mut dyn Read) -> io::Result<Hashes>,
) -> Result<StemcellTarball, StemcellError> {
    let invalid = |problem| StemcellError::Invalid { source_name: source_name.to_string(), problem };
    let mut manifest: Option<StemcellManifest> = None;
    let mut image: Option<Hashes> = None;
    archive::visit(reader, source_name, |info, data| -> Result<(), StemcellError> {
        if info.kind != EntryKind::File {
            return Ok(());
        }
        match info.path.as_str() {
            "stemcell.MF" => {
                if manifest.is_some() {
                    return Err(invalid(StemcellProblem::Duplicate { entry: info.path.clone() }));
                }
                let bytes = read_limited(data, MANIFEST_LIMIT)
                    .map_err(|e| corrupt(source_name, &info.path, &e))?
                    .ok_or_else(|| invalid(StemcellProblem::TooLarge { limit: MANIFEST_LIMIT }))?;
                let text = String::from_utf8(bytes).map_err(|_| invalid(StemcellProblem::NotText))?;
                manifest = Some(manifest::parse(&text, &format!("{source_name}: stemcell.MF"))?);
            }
            "image" if info.size == 0 => {}
            "image" => {
                if image.is_some() {
                    return Err(invalid(StemcellProblem::Duplicate { entry: info.path.clone() }));
                }
                let mut counted = Tee::new(data, None);
                let stored = image_sink(&mut counted);
                let read = counted.finish();
                let hashes =
                    stored.map_err(|source| StemcellError::Sink { source_name: source_name.to_string(), source })?;
                if read != info.size || hashes.size != info.size {
                    let (expected, reported) = (info.size, hashes.size);
                    return Err(invalid(StemcellProblem::SinkContract { expected, read, reported }));
                }
                image = Some(hashes);
            }
            _ => {}
        }
        Ok(())
    })?;

    let manifest = manifest.ok_or_else(|| invalid(StemcellProblem::MissingManifest))?;
    match (&image, manifest.sha1.as_deref()) {
        (None, _) if !is_light(&manifest) => {
            return Err(invalid(StemcellProblem::MissingImage { formats: manifest.stemcell_formats.join(", ") }));
        }
        (Some(hashes), Some(digest)) => {
            let expected = ExpectedDigest::parse(digest)
                .map_err(|_| invalid(StemcellProblem::BadDigest { digest: digest.into() }))?;
            if !expected.matches(hashes) {
                let actual = expected.actual(hashes).to_string();
                return Err(invalid(StemcellProblem::DigestMismatch { expected: expected.to_string(), actual }));
            }
        }
        _ => {}
    }
    Ok(StemcellTarball { manifest, image })
}

fn corrupt(source_name: &str, entry: &str, e: &io::Error) -> StemcellError {
    StemcellError::Archive(ArchiveError::corrupt_entry(source_name, entry, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn light_is_a_format_or_old_amis() {
        let parse = |text: &str| manifest::parse::<StemcellManifest>(text, "stemcell.MF").unwrap();
        let base = "name: s\nversion: 1\noperating_system: ubuntu-jammy\n";
        assert!(is_light(&parse(&format!("{base}stemcell_formats: [aws-light]\n"))));
        assert!(!is_light(&parse(&format!("{base}stemcell_formats: [openstack-qcow2, openstack-raw]\n"))));
        assert!(is_light(&parse(&format!("{base}cloud_properties: {{ami: {{us-east-1: ami-1}}}}\n"))));
        assert!(!is_light(&parse(base)));
    }
}

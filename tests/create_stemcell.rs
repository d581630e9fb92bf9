//! `rosh create-stemcell --local` end to end: the tarball holds a `stemcell.MF` naming this
//! host's OS and an `image` whose SHA-256 is the manifest's `sha1`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use common::{rosh, stderr, stdout};
use rosh::release::manifest::{self, StemcellManifest};
use sha2::{Digest, Sha256};

fn entries(tgz: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(path, bytes);
    }
    out
}

/// The host OS as BOSH names it, read here independently of rosh.
fn host_os() -> String {
    let text = fs::read_to_string("/etc/os-release").or_else(|_| fs::read_to_string("/usr/lib/os-release")).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
    };
    let id = field("ID").unwrap();
    match field("VERSION_CODENAME").or_else(|| field("VERSION_ID")) {
        Some(v) => format!("{id}-{v}"),
        None => id,
    }
}

#[test]
fn local_stemcell_names_the_host_os_and_its_image_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("stemcell.tgz");
    let json = rosh(&["create-stemcell", "--local", "--tarball", out.to_str().unwrap(), "--json"], tmp.path());
    assert!(json.status.success(), "{}", stderr(&json));
    let json: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();

    let bytes = fs::read(&out).unwrap();
    let files = entries(&bytes);
    assert_eq!(files.keys().map(String::as_str).collect::<Vec<_>>(), ["image", "stemcell.MF"]);
    let mf: StemcellManifest =
        manifest::parse(std::str::from_utf8(&files["stemcell.MF"]).unwrap(), "stemcell.MF").unwrap();
    let os = host_os();
    assert_eq!(mf.operating_system, os);
    assert_eq!(mf.name, format!("bosh-local-{os}-rosh"));
    assert_eq!(mf.api_version, Some(3));
    assert_eq!(mf.stemcell_formats, ["local"]);
    let digest: String = Sha256::digest(&files["image"]).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(mf.sha1.as_deref(), Some(format!("sha256:{digest}").as_str()));
    assert_eq!(json["sha1"], mf.sha1.as_deref().unwrap());
    assert_eq!(json["operating_system"], os.as_str());

    // The image describes the host the local CPI's VMs run on.
    let image = entries(&files["image"]);
    let host = rosh::manifest::yaml::parse(std::str::from_utf8(&image["host.yml"]).unwrap(), "host.yml").unwrap();
    assert_eq!(host["operating_system"].as_str(), Some(os.as_str()));
    assert_eq!(host["architecture"].as_str(), Some(std::env::consts::ARCH));
    assert!(host["tools"]["sh"].as_str().is_some_and(|p| p.ends_with("/sh")), "{:?}", host["tools"]);

    // The same host gives the same bytes; the default name is <name>-<version>.tgz here.
    let again = rosh(&["create-stemcell", "--local"], tmp.path());
    assert!(again.status.success(), "{}", stderr(&again));
    let default = tmp.path().join(format!("bosh-local-{os}-rosh-{}.tgz", mf.version));
    assert_eq!(fs::read(&default).unwrap(), bytes);
    assert!(stdout(&again).contains(&format!("Operating System  {os}")), "{}", stdout(&again));
}

#[test]
fn only_local_stemcells_are_created() {
    let tmp = tempfile::tempdir().unwrap();
    let out = rosh(&["create-stemcell"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--local"), "{}", stderr(&out));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing written");
}

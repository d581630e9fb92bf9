//! Every release document in ../shared/corpus reads into rosh's release types: final release
//! files (both `releases/<name>/` and flat layouts, and the 2015 files with `!binary` values and
//! integer versions), build indexes, job and package specs, and `config/final.yml`.

mod common;

use std::path::{Path, PathBuf};

use rosh::release::manifest::{self, BuildIndex, FinalConfig, JobSpec, PackageSpec, ReleaseManifest};

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read<T: for<'de> serde::Deserialize<'de>>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap();
    manifest::parse(&text, &path.display().to_string()).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_corpus_release_document_parses() {
    let root = common::corpus();
    let (mut finals, mut indexes, mut jobs, mut packages, mut configs) = (0, 0, 0, 0, 0);
    for path in files(&root.join("releases")).into_iter().chain(files(&root.join("v1-schema-2015-2016"))) {
        let rel = path.strip_prefix(&root).unwrap().to_string_lossy().to_string();
        let parent = path.parent().unwrap().file_name().unwrap().to_string_lossy().to_string();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name == "index.yml" {
            let index: BuildIndex = read(&path);
            assert!(!index.builds.is_empty(), "{rel}");
            indexes += 1;
        } else if rel.contains("/releases/") && name.ends_with(".yml") {
            let m: ReleaseManifest = read(&path);
            assert!(!m.jobs.is_empty() || !m.packages.is_empty(), "{rel}");
            assert!(name.starts_with(&format!("{}-", m.name)), "{rel} names release {}", m.name);
            assert!(name.contains(&m.version), "{rel} is version {}", m.version);
            for p in &m.packages {
                assert!(!p.sha1.is_empty() && !p.fingerprint.is_empty(), "{rel}: {}", p.name);
            }
            finals += 1;
        } else if name == "spec" && rel.contains("/jobs/") {
            let spec: JobSpec = read(&path);
            assert_eq!(spec.name, parent, "{rel}");
            jobs += 1;
        } else if name == "spec" && rel.contains("/packages/") {
            let spec: PackageSpec = read(&path);
            assert_eq!(spec.name, parent, "{rel}");
            packages += 1;
        } else if name == "final.yml" {
            let config: FinalConfig = read(&path);
            assert!(config.release_name().is_some(), "{rel}");
            configs += 1;
        }
    }
    // Counts of the corpus (`find releases v1-schema-2015-2016 -name …`): every file was read.
    assert_eq!((finals, indexes, jobs, packages, configs), (10, 45, 81, 145, 9));
}

#[test]
fn old_release_files_decode_binary_values() {
    let path = common::corpus().join("v1-schema-2015-2016/cf-release-v207/releases/cf-198.yml");
    let m: ReleaseManifest = read(&path);
    assert_eq!(m.version, "198");
    let hm = m.packages.iter().find(|p| p.name == "hm9000").unwrap();
    assert_eq!(hm.version, "ce5b3ae4b0fa4ece6c5e741fd9b675751e78eb73");
    assert_eq!(hm.sha1, "8b1917f4c867615faa00461387edb006323e3049");
}

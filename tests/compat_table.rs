//! The shipped compatibility table (`src/compat/known-sets.yml`) is what the corpus in
//! `../shared/corpus/compatibility/` says, and nothing else: this test derives the table from
//! the corpus and compares it with the shipped file byte for byte, so the two cannot drift.
//! After the corpus changes, regenerate the file with
//!
//! ```sh
//! ROSH_WRITE_COMPAT_TABLE=1 cargo test --test compat_table
//! ```
//!
//! What becomes a tested set (see docs/compat.md):
//! - `release-notes-stated-pairs.yml`: each `cf_release` / `diego_release` pair the maintainers
//!   stated, with its issue URL as the source.
//! - `derived-cf-release-to-diego-release.csv`: for each cf-release final with a match in the
//!   Diego team's CI records, one `{cf, X}` set per diego, garden and etcd version found for
//!   it. Pairs only with cf: when a row lists several diego and garden versions, the CSV does not
//!   say which went with which. Garden versions below 1.0.0 are garden-linux, 1.0.0 and later
//!   garden-runc (the CI records switch columns at cf v246).
//! - `cf-deployment-release-pins.csv`: each cf-deployment version's pinned releases, as one set
//!   (cf-deployment ships them together; stemcell pins are not release versions and are left out).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rosh::compat::{Table, Version};

fn corpus_file(name: &str) -> String {
    let path = common::corpus().join("compatibility").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Rows of a simple CSV (no quoted fields in these files) as header → value maps.
fn csv(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), header.len(), "a quoted or ragged CSV line: {line}");
            header.iter().zip(fields).map(|(h, f)| (h.to_string(), f.to_string())).collect()
        })
        .collect()
}

struct Set {
    releases: BTreeMap<String, String>,
    source: String,
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap() // a JSON string is a valid double-quoted YAML scalar
}

fn derive() -> String {
    let mut stated = Vec::new();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&corpus_file("release-notes-stated-pairs.yml")).unwrap();
    for pair in doc["pairs"].as_sequence().expect("pairs") {
        let text = |k: &str| pair[k].as_str().unwrap_or_else(|| panic!("pairs[].{k}")).to_string();
        stated.push(Set {
            releases: BTreeMap::from([
                ("cf".to_string(), text("cf_release")),
                ("diego".to_string(), text("diego_release")),
            ]),
            source: text("source"),
        });
    }

    let mut derived = Vec::new();
    for row in csv(&corpus_file("derived-cf-release-to-diego-release.csv")) {
        let cf = &row["cf_release_version"];
        let source = format!(
            "diego-cf-compatibility CI records for cf-release v{cf} (commit {})",
            row["cf_release_commit_hash"]
        );
        let mut add = |release: &str, version: &str| {
            derived.push(Set {
                releases: BTreeMap::from([("cf".to_string(), cf.clone()), (release.to_string(), version.to_string())]),
                source: source.clone(),
            })
        };
        let list = |column: &str| -> Vec<String> {
            row[column].split(';').filter(|v| !v.is_empty() && *v != "N/A").map(str::to_string).collect()
        };
        for v in list("diego_release_versions") {
            add("diego", &v);
        }
        for v in list("garden_release_versions") {
            let name = if Version::parse(&v).unwrap() < Version::parse("1.0.0").unwrap() {
                "garden-linux"
            } else {
                "garden-runc"
            };
            add(name, &v);
        }
        for v in list("etcd_release_versions") {
            add("etcd", &v);
        }
    }

    let mut pins: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut order = Vec::new();
    for row in csv(&corpus_file("cf-deployment-release-pins.csv")) {
        if row["kind"] != "release" {
            continue;
        }
        let version = row["cf_deployment_version"].clone();
        if !order.contains(&version) {
            order.push(version.clone());
        }
        let previous = pins.entry(version).or_default().insert(row["name"].clone(), row["version"].clone());
        assert!(previous.is_none(), "a release pinned twice: {row:?}");
    }
    let pinned: Vec<Set> = order
        .into_iter()
        .map(|v| Set { releases: pins.remove(&v).unwrap(), source: format!("cf-deployment {v} (its pinned releases)") })
        .collect();

    let mut out = String::new();
    out.push_str(
        "# rosh's compatibility table: release versions known to work together (docs/compat.md).\n\
         # GENERATED from ../shared/corpus/compatibility/ by tests/compat_table.rs - do not edit by hand;\n\
         # regenerate with: ROSH_WRITE_COMPAT_TABLE=1 cargo test --test compat_table\n\
         # Operators add sets in $ROSH_STATE_DIR/compatibility.yml or with --compat-table FILE.\n\
         tested:\n",
    );
    let sections = [
        ("release-notes-stated-pairs.yml: cf-release finals and the diego-release their maintainers named", stated),
        (
            "derived-cf-release-to-diego-release.csv: what the Diego team's CI tested each cf-release final with",
            derived,
        ),
        ("cf-deployment-release-pins.csv: the releases each cf-deployment version pins together", pinned),
    ];
    for (comment, sets) in sections {
        writeln!(out, "# {comment}").unwrap();
        for set in sets {
            writeln!(out, "- source: {}", yaml_str(&set.source)).unwrap();
            out.push_str("  releases:\n");
            for (name, version) in &set.releases {
                writeln!(out, "    {name}: {}", yaml_str(version)).unwrap();
            }
        }
    }
    out.push_str("# None of the corpus's sources declares a pair incompatible.\nincompatible: []\n");
    out
}

#[test]
fn shipped_table_is_what_the_corpus_gives() {
    let derived = derive();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/compat/known-sets.yml");
    if std::env::var_os("ROSH_WRITE_COMPAT_TABLE").is_some() {
        std::fs::write(&path, &derived).unwrap();
    }
    let shipped = std::fs::read_to_string(&path).unwrap();
    assert!(
        shipped == derived,
        "src/compat/known-sets.yml differs from what the corpus gives; run ROSH_WRITE_COMPAT_TABLE=1 cargo test --test compat_table"
    );
    // The embedded copy is the file (a stale build would embed an old one).
    assert_eq!(rosh::compat::table::SHIPPED, shipped);
}

#[test]
fn shipped_table_holds_the_corpus_facts() {
    let table = Table::shipped();
    let v = |s: &str| Version::parse(s).unwrap();
    // Stated by the maintainers, and older than the CI records.
    assert!(table.sources_of("cf", &v("207"), "diego", &v("0.1099.0"))[0].contains("cf-release/issues/665"));
    // The CI records: the example of diego-release's own docs (cf 222 → diego 0.1437.0, garden 0.308.0, etcd 16).
    for (release, version) in [("diego", "0.1437.0"), ("garden-linux", "0.308.0"), ("etcd", "16")] {
        assert!(!table.sources_of("cf", &v("222"), release, &v(version)).is_empty(), "{release} {version}");
    }
    assert!(!table.sources_of("cf", &v("238"), "diego", &v("0.1476.0")).is_empty());
    assert!(!table.sources_of("cf", &v("250"), "garden-runc", &v("1.0.4")).is_empty());
    // cf-deployment v1.0.0 pins diego 1.30.0 with garden-runc 1.9.6.
    assert!(table.sources_of("diego", &v("1.30.0"), "garden-runc", &v("1.9.6"))[0].contains("cf-deployment v1.0.0"));
    // Rows without a match in the CI records (cf 207 and older, 217, 244, 272) add nothing.
    assert!(table.tested_pairs("cf", "diego").iter().all(|p| p.a != v("217") && p.a != v("206")));
    assert!(table.incompatible.is_empty());
}

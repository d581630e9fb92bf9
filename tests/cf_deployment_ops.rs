//! cf-deployment v58.0.0's own ops-file test tables (`units/tests/*/operations.yml`, 138
//! entries), run the way that repository's test helper runs `bosh interpolate`: from the suite's
//! ops directory, against `cf-deployment.yml`, with `-v system_domain=foo.bar.com`, `--var-errs`,
//! and a fresh copy of `scripts/fixtures/unit-test-vars-store.yml` as the vars store (so the
//! certificates the old fixture lacks are generated, as bosh does). Entries with a
//! `pathvalidator` also check the value `--path` prints.
//!
//! One test per suite; within a suite the entries run on a small thread pool, and every failure
//! is collected so one run reports all of them.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::{cf_deployment, parse, rosh, stderr, stdout};
use serde_yaml_ng::Value;

struct Case {
    name: String,
    ops: Vec<String>,
    vars: Vec<String>,
    vars_files: Vec<String>,
    path_check: Option<(String, String)>,
}

fn cases(suite: &str) -> Vec<Case> {
    let file = cf_deployment("v58.0.0").join("units/tests").join(suite).join("operations.yml");
    let doc = parse(&std::fs::read_to_string(&file).unwrap());
    let list = |v: &Value, key: &str| -> Vec<String> {
        v.get(key)
            .and_then(Value::as_sequence)
            .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    doc.as_mapping()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().unwrap().to_string();
            let ops = match list(v, "ops") {
                ops if ops.is_empty() => vec![name.clone()],
                ops => ops,
            };
            let path_check = v.get("pathvalidator").map(|pv| {
                (pv["path"].as_str().unwrap().to_string(), pv["expectedvalue"].as_str().unwrap().to_string())
            });
            Case { name, ops, vars: list(v, "vars"), vars_files: list(v, "varsfiles"), path_check }
        })
        .collect()
}

/// Runs one entry; returns a description of the failure, if any.
fn run_case(dir: &Path, case: &Case) -> Option<String> {
    let root = cf_deployment("v58.0.0");
    let store_dir = tempfile::tempdir().unwrap();
    let store = store_dir.path().join("vars-store.yml");
    std::fs::copy(root.join("scripts/fixtures/unit-test-vars-store.yml"), &store).unwrap();

    let manifest = root.join("cf-deployment.yml");
    let mut args: Vec<String> = vec!["int".into(), manifest.display().to_string()];
    args.extend(["--vars-store".into(), store.display().to_string(), "--var-errs".into()]);
    args.extend(["-v".into(), "system_domain=foo.bar.com".into()]);
    for op in &case.ops {
        args.extend(["-o".into(), op.clone()]);
    }
    for var in &case.vars {
        args.extend(["-v".into(), var.clone()]);
    }
    for file in &case.vars_files {
        args.extend(["-l".into(), file.clone()]);
    }
    if let Some((path, _)) = &case.path_check {
        args.extend(["--path".into(), path.clone()]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = rosh(&argv, dir);
    if !out.status.success() {
        return Some(format!("{}: exit {:?}\n{}", case.name, out.status.code(), stderr(&out)));
    }
    let printed = stdout(&out);
    match &case.path_check {
        Some((path, expected)) if printed.trim() != expected.trim() => {
            Some(format!("{}: --path {path} printed {printed:?}, expected {expected:?}", case.name))
        }
        Some(_) => None,
        None => {
            // The full manifest must come back as YAML with every variable resolved.
            let doc = parse(&printed);
            if doc.get("instance_groups").is_none() {
                return Some(format!("{}: output has no instance_groups", case.name));
            }
            printed.contains("((").then(|| {
                let line = printed.lines().find(|l| l.contains("((")).unwrap_or_default();
                format!("{}: unresolved reference left in output: {line}", case.name)
            })
        }
    }
}

fn run_suite(suite: &str, ops_dir: &str, expected_entries: usize) {
    let dir: PathBuf = cf_deployment("v58.0.0").join(ops_dir);
    let cases = cases(suite);
    assert_eq!(cases.len(), expected_entries, "entries in {suite}");
    let failures = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = {
                        let mut n = next.lock().unwrap();
                        *n += 1;
                        *n - 1
                    };
                    let Some(case) = cases.get(i) else { break };
                    if let Some(f) = run_case(&dir, case) {
                        failures.lock().unwrap().push(f);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {} entries failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn standard_suite() {
    run_suite("standard_test", "operations", 61);
}

#[test]
fn experimental_suite() {
    run_suite("experimental_test", "operations/experimental", 41);
}

#[test]
fn backup_and_restore_suite() {
    run_suite("backup_and_restore_test", "operations/backup-and-restore", 20);
}

#[test]
fn test_suite() {
    run_suite("test_test", "operations/test", 11);
}

#[test]
fn addons_suite() {
    run_suite("addons_test", "operations/addons", 4);
}

#[test]
fn iaas_suite() {
    run_suite("iaas_test", "iaas-support/softlayer", 1);
}

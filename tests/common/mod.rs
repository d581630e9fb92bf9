//! Helpers shared by the integration tests: where the corpus is, and running the real binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `../shared/corpus` beside the repository (override with `ROSH_CORPUS`).
pub fn corpus() -> PathBuf {
    match std::env::var_os("ROSH_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    }
}

pub fn cf_deployment(version: &str) -> PathBuf {
    corpus().join("cf-deployment").join(version)
}

/// Runs the `rosh` binary built for this test run.
pub fn rosh(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rosh"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output()
        .expect("run rosh")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs rosh and returns stdout, failing the test with stderr when it exits non-zero.
pub fn rosh_ok(args: &[&str], cwd: &Path) -> String {
    let out = rosh(args, cwd);
    assert!(out.status.success(), "rosh {args:?} failed ({}):\n{}", out.status, stderr(&out));
    stdout(&out)
}

pub fn parse(text: &str) -> serde_yaml_ng::Value {
    rosh::manifest::yaml::parse(text, "output").expect("rosh prints valid YAML")
}

/// Copies a release source directory without its build output (`.dev_builds`, `dev_releases`,
/// `.final_builds`, tarballs), so a build of the copy leaves nothing in the repository and does
/// not see the repository's uncommitted changes.
pub fn copy_release_source(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if [".dev_builds", "dev_releases", ".final_builds"].contains(&name.as_str()) || name.ends_with(".tgz") {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_release_source(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

/// A state database at `path` created as an older rosh left it: the schema migrations up to
/// and including `version` only, each recorded as rosh 0.1.0 applied it.
pub fn state_db_at_schema(path: &Path, version: u32) -> rusqlite::Connection {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    for migration in rosh::state::schema::MIGRATIONS.iter().filter(|m| m.version <= version) {
        let tx = conn.transaction().unwrap();
        tx.execute_batch(migration.sql).unwrap();
        tx.execute(
            "INSERT INTO schema_migrations (version, description, rosh_version) VALUES (?1, ?2, '0.1.0')",
            (migration.version, migration.description),
        )
        .unwrap();
        tx.pragma_update(None, "user_version", migration.version).unwrap();
        tx.commit().unwrap();
    }
    conn
}

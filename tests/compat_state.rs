//! The `requires:` of a release in the state: a database made before rosh kept them (schema 4)
//! upgrades, and its release versions read as declaring nothing; new records keep theirs.

mod common;

use rosh::state::{Recorded, ReleaseRecord, State, schema};

fn record(version: &str) -> ReleaseRecord {
    ReleaseRecord {
        name: "cf".into(),
        version: version.into(),
        commit_hash: None,
        uncommitted_changes: false,
        jobs: Vec::new(),
        packages: Vec::new(),
    }
}

#[test]
fn releases_recorded_before_requires_existed_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let conn = common::state_db_at_schema(&dir.path().join("state.db"), 4);
    conn.execute_batch(
        "INSERT INTO releases (id, name) VALUES (1, 'cf');
         INSERT INTO release_versions (id, release_id, version, uncommitted_changes) VALUES (1, 1, '207', 0);",
    )
    .unwrap();
    drop(conn);

    let state = State::open(dir.path()).unwrap();
    assert_eq!(state.schema_version().unwrap(), schema::LATEST);
    assert_eq!(state.release("cf", "207").unwrap(), Some(record("207")));
    assert_eq!(state.release_requires("cf", "207").unwrap(), None);

    let requires = r#"{"releases":[{"name":"diego","version":">= 0.1476"}]}"#;
    assert!(matches!(
        state.record_release_with_requires(&record("238"), Some(requires)).unwrap(),
        Recorded::Created { .. }
    ));
    assert_eq!(state.release_requires("cf", "238").unwrap().as_deref(), Some(requires));
    assert_eq!(state.release("cf", "238").unwrap(), Some(record("238")));
    assert_eq!(state.release_requires("cf", "999").unwrap(), None);
    assert_eq!(state.release_requires("nope", "1").unwrap(), None);
}

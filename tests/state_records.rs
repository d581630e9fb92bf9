//! The director database on a real SQLite file: migrations, releases and stemcells with their
//! dedupe and deletion rules, the serial, events, file modes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rosh::state::{
    Event, JobRecord, PackageRecord, Recorded, ReleaseRecord, State, StateError, StemcellRecord, schema,
};

fn blob(tag: &str) -> String {
    rosh::release::digest::sha256_hex(tag.as_bytes())
}

fn package(name: &str, fingerprint: &str, deps: &[&str]) -> PackageRecord {
    PackageRecord {
        name: name.into(),
        version: fingerprint.into(),
        fingerprint: fingerprint.into(),
        sha1: format!("sha256:{}", blob(&format!("pkg {name} {fingerprint}"))),
        blob_sha256: Some(blob(&format!("pkg {name} {fingerprint}"))),
        dependencies: deps.iter().map(|d| d.to_string()).collect(),
    }
}

fn job(name: &str, fingerprint: &str, packages: &[&str]) -> JobRecord {
    JobRecord {
        name: name.into(),
        version: fingerprint.into(),
        fingerprint: fingerprint.into(),
        sha1: "0123456789abcdef0123456789abcdef01234567".into(),
        blob_sha256: blob(&format!("job {name} {fingerprint}")),
        packages: packages.iter().map(|p| p.to_string()).collect(),
        spec_json: format!(r#"{{"name":"{name}","templates":{{"ctl.erb":"bin/ctl"}}}}"#),
    }
}

/// nats/1 and routing/2 both carry the same `golang` package; each has one package of its own.
fn nats(version: &str) -> ReleaseRecord {
    ReleaseRecord {
        name: "nats".into(),
        version: version.into(),
        commit_hash: Some("116b086".into()),
        uncommitted_changes: false,
        jobs: vec![job("nats", &format!("natsjob{version}"), &["gnatsd"])],
        packages: vec![
            package("golang-1.22", "go122", &[]),
            package("gnatsd", &format!("gnatsd{version}"), &["golang-1.22"]),
        ],
    }
}

fn routing() -> ReleaseRecord {
    ReleaseRecord {
        name: "routing".into(),
        version: "2".into(),
        commit_hash: None,
        uncommitted_changes: true,
        jobs: vec![job("gorouter", "gorouter2", &["gorouter"])],
        packages: vec![package("gorouter", "gorouter2", &["golang-1.22"]), package("golang-1.22", "go122", &[])],
    }
}

fn stemcell(version: &str) -> StemcellRecord {
    StemcellRecord {
        image_sha256: None,
        name: "bosh-warden-boshlite-ubuntu-jammy-go_agent".into(),
        version: version.into(),
        operating_system: "ubuntu-jammy".into(),
        api_version: Some(3),
        cid: None,
        sha1: Some("0123456789abcdef0123456789abcdef01234567".into()),
        cloud_properties_json: "{}".into(),
        formats: vec!["warden-tar".into()],
    }
}

fn open() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().unwrap();
    let state = State::open(&dir.path().join("state")).unwrap();
    (dir, state)
}

fn count(db: &Path, table: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).unwrap()
}

#[test]
fn state_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<State>();
}

#[test]
fn a_new_state_is_migrated_to_the_latest_schema_and_reopening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("nested/state");
    let state = State::open(&state_dir).unwrap();
    assert_eq!(state.schema_version().unwrap(), schema::LATEST);
    assert_eq!(state.serial().unwrap(), 0);
    state.record_release(&nats("1")).unwrap();
    drop(state);

    let state = State::open(&state_dir).unwrap();
    assert_eq!(state.schema_version().unwrap(), schema::LATEST);
    assert_eq!(state.serial().unwrap(), 1);
    assert_eq!(state.releases().unwrap().len(), 1);
    assert_eq!(count(&state_dir.join("state.db"), "schema_migrations"), schema::MIGRATIONS.len() as i64);

    let conn = rusqlite::Connection::open(state_dir.join("state.db")).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_database_from_a_newer_rosh_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(State::open(dir.path()).unwrap());
    let newer = schema::LATEST + 7;
    rusqlite::Connection::open(dir.path().join("state.db"))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();

    let err = State::open(dir.path()).unwrap_err();

    assert!(matches!(err, StateError::NewerSchema { found, .. } if found == newer), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("schema version {newer}")) && message.contains("newer rosh"), "{message}");
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, newer);
}

#[test]
fn state_files_are_private() {
    let (dir, state) = open();
    state.record_stemcell(&stemcell("1.406")).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let state_dir = dir.path().join("state");
    assert_eq!(mode(&state_dir), 0o700);
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        assert_eq!(mode(&state_dir.join(file)), 0o600, "{file}");
    }

    // An existing database left readable by others is made private on open.
    drop(state);
    fs::set_permissions(state_dir.join("state.db"), fs::Permissions::from_mode(0o644)).unwrap();
    drop(State::open(&state_dir).unwrap());
    assert_eq!(mode(&state_dir.join("state.db")), 0o600);
}

#[test]
fn a_release_round_trips_in_manifest_order() {
    let (_dir, state) = open();
    assert_eq!(state.record_release(&nats("1")).unwrap(), Recorded::Created { serial: 1 });
    assert_eq!(state.release("nats", "1").unwrap(), Some(nats("1")));
    assert_eq!(state.release("nats", "2").unwrap(), None);
    assert_eq!(state.release("nope", "1").unwrap(), None);

    let listed = state.releases().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].version.as_str()), ("nats", "1"));
    assert_eq!(listed[0].commit_hash.as_deref(), Some("116b086"));
    assert!(listed[0].in_use_by.is_empty());

    let golang = state.package_by_fingerprint("golang-1.22", "go122").unwrap().unwrap();
    assert_eq!(golang, package("golang-1.22", "go122", &[]));
    assert_eq!(state.job_by_fingerprint("nats", "natsjob1").unwrap(), Some(job("nats", "natsjob1", &["gnatsd"])));
    assert_eq!(state.package_by_fingerprint("golang-1.22", "other").unwrap(), None);
}

#[test]
fn a_package_shared_by_two_releases_is_stored_once_and_orphaned_only_with_the_last() {
    let (dir, state) = open();
    let db = dir.path().join("state/state.db");
    state.record_release(&nats("1")).unwrap();
    state.record_release(&routing()).unwrap();
    state.record_release(&nats("2")).unwrap();

    // golang (shared by all three), gnatsd1, gnatsd2, gorouter.
    assert_eq!(count(&db, "packages"), 4);
    assert_eq!(count(&db, "release_version_packages"), 6);
    assert_eq!(state.release("routing", "2").unwrap(), Some(routing()));

    // Deleting nats/1 orphans only what nats/1 alone had.
    let deleted = state.delete_release("nats", Some("1")).unwrap();
    assert_eq!(deleted.versions, vec!["1"]);
    let mut expected = vec![blob("pkg gnatsd gnatsd1"), blob("job nats natsjob1")];
    expected.sort();
    assert_eq!(deleted.orphaned_blobs, expected);
    assert_eq!(count(&db, "packages"), 3);

    // Deleting every remaining nats version leaves golang to routing.
    let deleted = state.delete_release("nats", None).unwrap();
    assert_eq!(deleted.versions, vec!["2"]);
    assert!(!deleted.orphaned_blobs.contains(&blob("pkg golang-1.22 go122")));
    assert!(deleted.orphaned_blobs.contains(&blob("pkg gnatsd gnatsd2")));
    assert!(state.package_by_fingerprint("golang-1.22", "go122").unwrap().is_some());

    let deleted = state.delete_release("routing", Some("2")).unwrap();
    assert!(deleted.orphaned_blobs.contains(&blob("pkg golang-1.22 go122")));
    assert!(state.referenced_blobs().unwrap().is_empty());
    assert_eq!(count(&db, "packages"), 0);
    assert_eq!(count(&db, "jobs"), 0);
    assert_eq!(count(&db, "releases"), 0);
    assert!(state.releases().unwrap().is_empty());
}

#[test]
fn referenced_blobs_are_what_the_releases_need() {
    let (_dir, state) = open();
    state.record_release(&nats("1")).unwrap();
    state.record_release(&routing()).unwrap();
    let mut expected: Vec<String> = [
        "pkg golang-1.22 go122",
        "pkg gnatsd gnatsd1",
        "job nats natsjob1",
        "pkg gorouter gorouter2",
        "job gorouter gorouter2",
    ]
    .iter()
    .map(|t| blob(t))
    .collect();
    expected.sort();
    assert_eq!(state.referenced_blobs().unwrap(), expected);
}

#[test]
fn a_compiled_only_package_gains_its_source_blob_when_a_source_release_brings_it() {
    let (_dir, state) = open();
    let mut compiled = nats("1");
    compiled.version = "1-compiled".into();
    for p in &mut compiled.packages {
        p.blob_sha256 = None;
    }
    state.record_release(&compiled).unwrap();
    assert_eq!(state.package_by_fingerprint("golang-1.22", "go122").unwrap().unwrap().blob_sha256, None);
    state.record_release(&nats("1")).unwrap();
    assert_eq!(
        state.package_by_fingerprint("golang-1.22", "go122").unwrap().unwrap().blob_sha256,
        Some(blob("pkg golang-1.22 go122"))
    );
}

#[test]
fn uploading_the_same_release_again_changes_nothing() {
    let (dir, state) = open();
    state.record_release(&nats("1")).unwrap();
    let events_before = state.events(100).unwrap();

    let mut different = nats("1");
    different.commit_hash = Some("deadbee".into());
    assert_eq!(state.record_release(&different).unwrap(), Recorded::AlreadyExists);

    assert_eq!(state.serial().unwrap(), 1);
    assert_eq!(state.events(100).unwrap(), events_before);
    assert_eq!(state.release("nats", "1").unwrap(), Some(nats("1")));
    assert_eq!(count(&dir.path().join("state/state.db"), "release_versions"), 1);
}

#[test]
fn a_release_in_use_cannot_be_deleted_until_the_deployment_lets_go() {
    let (_dir, state) = open();
    state.record_release(&nats("1")).unwrap();
    state.record_release(&nats("2")).unwrap();
    state.set_deployment_usage("cf", &[("nats".into(), "1".into())], &[]).unwrap();
    state.set_deployment_usage("diego", &[("nats".into(), "1".into())], &[]).unwrap();
    let serial = state.serial().unwrap();

    let err = state.delete_release("nats", Some("1")).unwrap_err();
    assert!(matches!(&err, StateError::ReleaseInUse { deployments, .. } if deployments == &["cf", "diego"]));
    assert_eq!(err.to_string(), "release nats/1 is in use by deployments cf, diego; delete or update them first");
    let err = state.delete_release("nats", None).unwrap_err();
    assert!(matches!(err, StateError::ReleaseInUse { .. }), "{err}");
    assert_eq!(state.serial().unwrap(), serial);
    assert_eq!(state.releases().unwrap().len(), 2);
    assert_eq!(state.releases().unwrap()[0].in_use_by, vec!["cf", "diego"]);

    // An unused version of the same release can go.
    state.delete_release("nats", Some("2")).unwrap();

    state.set_deployment_usage("cf", &[], &[]).unwrap();
    state.set_deployment_usage("diego", &[], &[]).unwrap();
    assert_eq!(state.delete_release("nats", None).unwrap().versions, vec!["1"]);
}

#[test]
fn deleting_what_is_not_there_says_so() {
    let (_dir, state) = open();
    state.record_release(&nats("1")).unwrap();
    let err = state.delete_release("nats", Some("9")).unwrap_err();
    assert_eq!(err.to_string(), "release nats/9 is not uploaded");
    assert!(matches!(state.delete_release("routing", None), Err(StateError::ReleaseNotFound(_))));
    assert!(matches!(state.delete_stemcell("s", "1"), Err(StateError::StemcellNotFound(_))));
    let err = state.set_deployment_usage("cf", &[("nats".into(), "9".into())], &[]).unwrap_err();
    assert_eq!(err.to_string(), "release nats/9 is not uploaded");
    assert_eq!(state.serial().unwrap(), 1);
}

#[test]
fn stemcells_record_list_get_and_delete_unless_used() {
    let (_dir, state) = open();
    assert_eq!(state.record_stemcell(&stemcell("1.406")).unwrap(), Recorded::Created { serial: 1 });
    assert_eq!(state.record_stemcell(&stemcell("1.406")).unwrap(), Recorded::AlreadyExists);
    assert_eq!(state.record_stemcell(&stemcell("1.410")).unwrap(), Recorded::Created { serial: 2 });
    assert_eq!(state.stemcell(&stemcell("1.406").name, "1.406").unwrap(), Some(stemcell("1.406")));
    let listed = state.stemcells().unwrap();
    assert_eq!(listed.iter().map(|s| s.version.as_str()).collect::<Vec<_>>(), ["1.406", "1.410"]);

    let name = stemcell("1").name;
    state.set_deployment_usage("cf", &[], &[(name.clone(), "1.406".into())]).unwrap();
    assert_eq!(state.stemcells().unwrap()[0].in_use_by, vec!["cf"]);
    let err = state.delete_stemcell(&name, "1.406").unwrap_err();
    assert_eq!(err.to_string(), format!("stemcell {name}/1.406 is in use by deployment cf; delete or update it first"));
    state.delete_stemcell(&name, "1.410").unwrap();
    state.set_deployment_usage("cf", &[], &[]).unwrap();
    state.delete_stemcell(&name, "1.406").unwrap();
    assert!(state.stemcells().unwrap().is_empty());
}

#[test]
fn the_serial_moves_once_per_fact_and_each_fact_leaves_one_event() {
    let (_dir, state) = open();
    let stemcell_name = stemcell("1").name;
    type Fact<'a> = (&'a str, Box<dyn Fn(&State)>);
    let facts: Vec<Fact> = vec![
        (
            "upload release nats/1",
            Box::new(|s| assert!(matches!(s.record_release(&nats("1")).unwrap(), Recorded::Created { .. }))),
        ),
        ("upload release routing/2", Box::new(|s| assert!(s.record_release(&routing()).is_ok()))),
        ("upload stemcell", Box::new(|s| assert!(s.record_stemcell(&stemcell("1.406")).is_ok()))),
        (
            "update deployment cf",
            Box::new(move |s| {
                s.set_deployment_usage(
                    "cf",
                    &[("nats".into(), "1".into())],
                    &[(stemcell_name.clone(), "1.406".into())],
                )
                .unwrap();
            }),
        ),
        ("delete release routing", Box::new(|s| drop(s.delete_release("routing", None).unwrap()))),
    ];
    for (i, (what, fact)) in facts.iter().enumerate() {
        fact(&state);
        assert_eq!(state.serial().unwrap(), i as u64 + 1, "after {what}");
        let events = state.events(100).unwrap();
        assert_eq!(events.len(), i + 1, "after {what}");
        assert_eq!(events[0].serial, Some(i as u64 + 1), "after {what}");
    }

    // Setting the same usage again is not a new fact.
    let serial = state.serial().unwrap();
    let name = stemcell("1").name;
    assert_eq!(
        state.set_deployment_usage("cf", &[("nats".into(), "1".into())], &[(name, "1.406".into())]).unwrap(),
        serial
    );

    let events = state.events(100).unwrap();
    let summary: Vec<(String, String, String)> =
        events.iter().rev().map(|e| (e.action.clone(), e.object_type.clone(), e.object_name.clone())).collect();
    let expected: Vec<(String, String, String)> = [
        ("upload", "release", "nats/1"),
        ("upload", "release", "routing/2"),
        ("upload", "stemcell", "bosh-warden-boshlite-ubuntu-jammy-go_agent/1.406"),
        ("update", "deployment", "cf"),
        ("delete", "release", "routing"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(events[1].deployment.as_deref(), Some("cf"));
    assert!(events[0].context.as_deref().is_some_and(|c| c.contains("state_records")), "{:?}", events[0].context);
    assert!(events[0].time.starts_with("20") && events[0].time.ends_with('Z'), "{}", events[0].time);
}

#[test]
fn events_recorded_by_callers_keep_their_fields_and_leave_the_serial_alone() {
    let (_dir, state) = open();
    let event = Event::new("upload", "release", "nats/1")
        .context("task 7")
        .error("digest mismatch: expected 0123…, the content has 4567…");
    let id = state.record_event(&event).unwrap();
    state.record_event(&Event::new("start", "deploy", "cf").deployment("cf")).unwrap();
    assert_eq!(state.serial().unwrap(), 0);

    let events = state.events(1).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "start");
    let older = &state.events(10).unwrap()[1];
    assert_eq!(older.id, id);
    assert_eq!(older.serial, None);
    assert_eq!(older.context.as_deref(), Some("task 7"));
    assert_eq!(older.error, event.error);
}

#[test]
fn a_failed_fact_leaves_no_trace() {
    let (dir, state) = open();
    state.record_release(&nats("1")).unwrap();
    state.record_stemcell(&stemcell("1.406")).unwrap();
    state.set_deployment_usage("cf", &[("nats".into(), "1".into())], &[]).unwrap();
    let before = state.snapshot().unwrap();
    // The same package listed twice violates the join table's key halfway through the transaction.
    let mut broken = routing();
    broken.packages.push(broken.packages[0].clone());
    assert!(state.record_release(&broken).is_err());

    assert!(state.delete_release("nats", None).is_err());
    assert!(state.record_stemcell(&stemcell("1.406")).is_ok());

    assert_eq!(state.snapshot().unwrap(), before);
    let db = dir.path().join("state/state.db");
    assert_eq!(state.serial().unwrap(), 3);
    assert_eq!(state.events(10).unwrap().len(), 3);
    assert_eq!(count(&db, "releases"), 1);
    assert_eq!(count(&db, "packages"), 2);
    assert_eq!(state.release("routing", "2").unwrap(), None);

    // And the snapshot does see a change, even one no record shows.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("INSERT INTO packages (name, fingerprint, version, sha1, dependencies_json) VALUES ('x', 'x', 'x', 'x', '[]')", [])
        .unwrap();
    assert_ne!(state.snapshot().unwrap(), before);
}

//! The state shared by real processes: named locks between them, crash durability, concurrent
//! first opens and uploads. The other processes are this test binary re-executed to run
//! `child_helper` in a role given by the environment.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rosh::state::{JobRecord, PackageRecord, Recorded, ReleaseRecord, State, StateError, StemcellRecord, schema};

const ROLE: &str = "ROSH_STATE_TEST_ROLE";
const LOCK: &str = "release:nats";

/// Not a test of its own: the other process in the tests below. Without the role variable (an
/// ordinary `cargo test` run) it does nothing.
#[test]
fn child_helper() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let dir = PathBuf::from(std::env::var("ROSH_STATE_DIR").expect("ROSH_STATE_DIR"));
    let state = State::open(&dir).expect("open state");
    let say = |line: &str| {
        println!("{line}");
        std::io::stdout().flush().unwrap();
    };
    match role.as_str() {
        // Takes the lock, says so, and holds it until stdin closes.
        "hold-lock" => {
            let guard = state.lock(LOCK, None).expect("lock");
            say(&format!("LOCKED {}", std::process::id()));
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            drop(guard);
            say("RELEASED");
        }
        // Records two facts, says so, and waits to be killed.
        "record-and-hang" => {
            state.record_release(&release()).expect("record release");
            state.record_stemcell(&stemcell()).expect("record stemcell");
            say("RECORDED");
            std::thread::sleep(Duration::from_secs(600));
        }
        // Takes the lock, says so, and waits to be killed.
        "lock-and-hang" => {
            let _guard = state.lock(LOCK, None).expect("lock");
            say(&format!("LOCKED {}", std::process::id()));
            std::thread::sleep(Duration::from_secs(600));
        }
        // Uploads the release under the lock, waiting for it, and says what happened.
        "upload" => {
            let _guard = state.lock(LOCK, Some(Duration::from_secs(30))).expect("lock");
            match state.record_release(&release()).expect("record") {
                Recorded::Created { .. } => say("CREATED"),
                Recorded::AlreadyExists => say("EXISTS"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn release() -> ReleaseRecord {
    let blob = rosh::release::digest::sha256_hex;
    ReleaseRecord {
        name: "nats".into(),
        version: "56".into(),
        commit_hash: Some("116b086".into()),
        uncommitted_changes: false,
        jobs: vec![JobRecord {
            name: "nats".into(),
            version: "j1".into(),
            fingerprint: "j1".into(),
            sha1: format!("sha256:{}", blob(b"job")),
            blob_sha256: blob(b"job"),
            packages: vec!["gnatsd".into()],
            spec_json: "{}".into(),
        }],
        packages: vec![PackageRecord {
            name: "gnatsd".into(),
            version: "p1".into(),
            fingerprint: "p1".into(),
            sha1: format!("sha256:{}", blob(b"pkg")),
            blob_sha256: Some(blob(b"pkg")),
            dependencies: vec![],
        }],
    }
}

fn stemcell() -> StemcellRecord {
    StemcellRecord {
        image_sha256: None,
        name: "bosh-warden-boshlite-ubuntu-jammy-go_agent".into(),
        version: "1.406".into(),
        operating_system: "ubuntu-jammy".into(),
        api_version: Some(3),
        cid: None,
        sha1: None,
        cloud_properties_json: "{}".into(),
        formats: vec!["warden-tar".into()],
    }
}

struct Helper {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(role: &str, state_dir: &Path) -> Helper {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_helper", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env("ROSH_STATE_DIR", state_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Helper { child, stdout }
    }

    /// Reads the child's output until a line with `prefix`, and returns it from `prefix` on.
    fn wait_for(&mut self, prefix: &str) -> String {
        self.wait_for_any(&[prefix])
    }

    fn wait_for_any(&mut self, prefixes: &[&str]) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "child {} ended before saying {prefixes:?}", self.child.id());
            // libtest prints `test child_helper ... ` on the same line, before the child's output.
            if let Some(at) = prefixes.iter().filter_map(|p| line.find(p)).min() {
                return line[at..].trim().to_string();
            }
        }
    }

    /// Closes the child's stdin (a `hold-lock` child then releases) and waits for it to exit.
    fn finish(mut self) {
        drop(self.child.stdin.take());
        assert!(self.child.wait().unwrap().success());
    }

    /// SIGKILL: no destructor, no clean shutdown.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Helper {
    /// A failed assertion must not leave a child sleeping for ten minutes.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    State::open(&state_dir).unwrap();
    (dir, state_dir)
}

#[test]
fn a_second_process_is_refused_with_the_holders_identity() {
    let (_dir, state_dir) = state_dir();
    let mut holder = Helper::spawn("hold-lock", &state_dir);
    let pid: u32 = holder.wait_for("LOCKED").trim_start_matches("LOCKED ").parse().unwrap();
    let state = State::open(&state_dir).unwrap();

    let err = state.lock(LOCK, None).unwrap_err();

    let StateError::Locked { name, holder: who } = &err else { panic!("{err}") };
    assert_eq!(name, LOCK);
    assert_eq!(who.pid, pid);
    assert!(who.command.starts_with("state_processes-") && who.command.contains("child_helper"), "{}", who.command);
    let message = err.to_string();
    assert!(message.starts_with(&format!("lock release:nats is held by pid {pid} (state_processes-")), "{message}");
    assert!(message.contains(" since 20") && message.ends_with('Z'), "{message}");

    // Another name is another lock.
    drop(state.lock("release:routing", None).unwrap());
    let listed = state.locks().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].holder.pid, pid);

    holder.finish();
    drop(state.lock(LOCK, None).unwrap());
}

#[test]
fn a_waiting_process_gets_the_lock_once_the_holder_releases_it() {
    let (_dir, state_dir) = state_dir();
    let mut holder = Helper::spawn("hold-lock", &state_dir);
    holder.wait_for("LOCKED");
    let state = State::open(&state_dir).unwrap();
    let released = Arc::new(AtomicBool::new(false));

    let waiter = {
        let state = state.clone();
        let released = released.clone();
        std::thread::spawn(move || {
            let guard = state.lock(LOCK, Some(Duration::from_secs(60))).unwrap();
            assert!(released.load(Ordering::SeqCst), "got the lock while the other process held it");
            guard
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    released.store(true, Ordering::SeqCst);
    holder.finish();

    let guard = waiter.join().unwrap();
    assert_eq!(state.locks().unwrap()[0].holder.pid, std::process::id());
    guard.release().unwrap();
    assert!(state.locks().unwrap().is_empty());
}

#[test]
fn waiting_gives_up_after_the_limit_naming_the_holder() {
    let (_dir, state_dir) = state_dir();
    let mut holder = Helper::spawn("hold-lock", &state_dir);
    let pid = holder.wait_for("LOCKED").trim_start_matches("LOCKED ").to_string();
    let state = State::open(&state_dir).unwrap();

    let err = state.lock(LOCK, Some(Duration::from_millis(300))).unwrap_err();

    assert!(matches!(err, StateError::LockTimeout { .. }), "{err}");
    assert!(err.to_string().contains(&format!("held by pid {pid} (")), "{err}");
    holder.finish();
}

#[test]
fn a_lock_whose_holder_died_is_taken_over() {
    let (_dir, state_dir) = state_dir();
    let mut holder = Helper::spawn("lock-and-hang", &state_dir);
    let pid = holder.wait_for("LOCKED").trim_start_matches("LOCKED ").to_string();
    holder.crash();
    let state = State::open(&state_dir).unwrap();
    assert_eq!(state.locks().unwrap()[0].holder.pid.to_string(), pid, "the dead holder's row is still there");

    let guard = state.lock(LOCK, None).unwrap();

    assert_eq!(state.locks().unwrap()[0].holder.pid, std::process::id());
    let event = &state.events(1).unwrap()[0];
    assert_eq!((event.action.as_str(), event.object_name.as_str()), ("take over", LOCK));
    assert!(event.context.as_deref().unwrap().contains(&format!("from pid {pid} (")), "{event:?}");
    assert_eq!(state.serial().unwrap(), 0, "lock traffic is not a fact");
    drop(guard);
}

#[test]
fn a_lock_whose_pid_now_belongs_to_another_process_is_taken_over() {
    let (_dir, state_dir) = state_dir();
    let state = State::open(&state_dir).unwrap();
    let guard = state.lock(LOCK, None).unwrap();
    // Make the row look as if an earlier process with our pid took it: same host, same (live) pid,
    // another start time — what a container restart that recycles pids leaves behind.
    let conn = rusqlite::Connection::open(state_dir.join("state.db")).unwrap();
    assert_eq!(conn.execute("UPDATE locks SET process_start = '1', token = 'old'", []).unwrap(), 1);
    std::mem::forget(guard);

    let guard = state.lock(LOCK, None).unwrap();
    assert_eq!(state.events(1).unwrap()[0].action, "take over");
    guard.release().unwrap();
    assert!(state.locks().unwrap().is_empty());
}

#[test]
fn a_lock_held_by_a_live_process_on_another_host_is_not_taken_over_but_can_be_broken() {
    let (_dir, state_dir) = state_dir();
    let conn = rusqlite::Connection::open(state_dir.join("state.db")).unwrap();
    conn.execute(
        "INSERT INTO locks (name, token, pid, hostname, command, acquired_at)
         VALUES (?1, 't', 1, 'director-vm-2', 'rosh -d cf deploy cf.yml', 1767225600)",
        [LOCK],
    )
    .unwrap();
    let state = State::open(&state_dir).unwrap();

    let err = state.lock(LOCK, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lock release:nats is held by pid 1 (rosh -d cf deploy cf.yml) on director-vm-2 since 2026-01-01T00:00:00Z"
    );

    let broken = state.break_lock(LOCK).unwrap().unwrap();
    assert_eq!(broken.hostname, "director-vm-2");
    drop(state.lock(LOCK, None).unwrap());
    assert_eq!(state.break_lock(LOCK).unwrap(), None);
}

#[test]
fn locks_in_one_process_are_not_reentrant_and_release_on_drop() {
    let (_dir, state_dir) = state_dir();
    let state = State::open(&state_dir).unwrap();
    let guard = state.lock("deployment:cf", None).unwrap();
    let err = state.lock("deployment:cf", None).unwrap_err();
    assert!(matches!(&err, StateError::Locked { holder, .. } if holder.pid == std::process::id()), "{err}");
    drop(guard);
    drop(state.lock("deployment:cf", None).unwrap());
    assert!(state.locks().unwrap().is_empty());
}

#[test]
fn facts_survive_the_recording_process_being_killed() {
    let (_dir, state_dir) = state_dir();
    let mut recorder = Helper::spawn("record-and-hang", &state_dir);
    recorder.wait_for("RECORDED");
    recorder.crash();

    let state = State::open(&state_dir).unwrap();
    assert_eq!(state.release("nats", "56").unwrap(), Some(release()));
    assert_eq!(state.stemcell(&stemcell().name, "1.406").unwrap(), Some(stemcell()));
    assert_eq!(state.serial().unwrap(), 2);
    assert_eq!(state.events(10).unwrap().len(), 2);
    let conn = rusqlite::Connection::open(state_dir.join("state.db")).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}

#[test]
fn processes_opening_a_new_state_and_uploading_at_once_leave_one_consistent_record() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("fresh");
    let uploaders: Vec<Helper> = (0..4).map(|_| Helper::spawn("upload", &state_dir)).collect();
    let mut outcomes: Vec<String> = uploaders
        .into_iter()
        .map(|mut uploader| {
            let line = uploader.wait_for_any(&["CREATED", "EXISTS"]);
            uploader.finish();
            line
        })
        .collect();
    outcomes.sort();

    assert_eq!(outcomes, ["CREATED", "EXISTS", "EXISTS", "EXISTS"]);
    let state = State::open(&state_dir).unwrap();
    assert_eq!(state.schema_version().unwrap(), schema::LATEST);
    assert_eq!(state.serial().unwrap(), 1);
    assert_eq!(state.releases().unwrap().len(), 1);
    let conn = rusqlite::Connection::open(state_dir.join("state.db")).unwrap();
    let migrations: i64 = conn.query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
    assert_eq!(migrations, schema::MIGRATIONS.len() as i64);
}

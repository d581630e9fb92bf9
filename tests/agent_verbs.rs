//! The agent's verbs, run through the real `rosh agent --root R VERB` binary against a temp
//! root, as the director runs them under OpenSSH: blobs, apply, the supervisor (bpm and monit
//! jobs, restarts, failing, stop), scripts, drain, compilation, logs and disks.

#[path = "agent_support.rs"]
mod support;

use std::fs;
use std::time::Duration;

use rosh::agent::protocol::{
    AgentState, Applied, ApplyJob, ApplyPackage, ApplySpec, CompilePackage, Compiled, Drained, FetchedLogs,
    JobSelection, JobState, MissingBlobs, Mounted, ProcessState, Processes, ScriptResults, StoredBlob,
};
use serde_json::json;
use support::{Vm, alive, bpm_job, process, sha256, tgz, wait_until};

fn spec(jobs: &[(&str, &str)], packages: &[(&str, &str)]) -> ApplySpec {
    ApplySpec {
        deployment: "test".into(),
        instance: "web/0".into(),
        jobs: jobs.iter().map(|(name, sha)| ApplyJob { name: name.to_string(), sha256: sha.to_string() }).collect(),
        packages: packages
            .iter()
            .map(|(name, sha)| ApplyPackage { name: name.to_string(), version: "1".into(), sha256: sha.to_string() })
            .collect(),
        then_start: None,
    }
}

fn state(vm: &Vm) -> AgentState {
    vm.ok("get_state", &json!({}))
}

#[test]
fn put_blob_keeps_only_bytes_matching_their_digest() {
    let vm = Vm::new();
    let body = b"some package bytes".repeat(1000);
    let sha = sha256(&body);
    let (code, out) = vm.run("put_blob", Some(&sha), &body);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&out));
    let stored: StoredBlob = serde_json::from_slice(&out).unwrap();
    assert_eq!(stored, StoredBlob { sha256: sha.clone(), size: body.len() as u64 });
    assert_eq!(fs::read(vm.root().join("data/blobs").join(&sha)).unwrap(), body);

    let claimed = sha256(b"something else");
    let (code, out) = vm.run("put_blob", Some(&claimed), &body);
    assert_eq!(code, 1);
    let err: rosh::agent::protocol::AgentError = serde_json::from_slice(&out).unwrap();
    assert_eq!(err.verb, "put_blob");
    assert!(err.message.contains("mismatch"), "{}", err.message);
    let kept: Vec<_> = fs::read_dir(vm.root().join("data/blobs")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(kept, vec![std::ffi::OsString::from(&sha)], "the refused blob left something behind");

    let missing: MissingBlobs = vm.ok("has_blobs", &json!({ "sha256": [sha, claimed] }));
    assert_eq!(missing.missing, vec![claimed.clone()]);

    let (code, out) = vm.run("get_blob", Some(&sha), b"");
    assert_eq!(code, 0);
    assert_eq!(out, body);
    let (code, _) = vm.run("put_blob", Some("not-a-digest"), b"x");
    assert_eq!(code, 1);
}

#[test]
fn apply_with_then_start_starts_the_jobs_in_the_same_call_and_get_state_agrees() {
    let vm = Vm::new();
    let job = vm.put(&bpm_job("server", "exec sleep 1000"));
    let request = ApplySpec {
        then_start: Some(JobSelection { jobs: vec![], settle_ms: Some(0) }),
        ..spec(&[("web", &job)], &[])
    };
    let started = std::time::Instant::now();
    let applied: Applied = vm.ok("apply", &request);
    let processes = applied.started.expect("apply answered start's processes").processes;
    let server = process(&processes, "web", "server").clone();
    assert_eq!(server.state, ProcessState::Running, "{server:?}");
    assert!(alive(server.pid.unwrap()));
    assert!(started.elapsed() < Duration::from_millis(900), "settled on the short minimum, not the 1 s default");
    // What `start` answered holds for later reports: the process is not `starting` again.
    let current = state(&vm);
    assert_eq!(current.job_state, JobState::Running);
    assert_eq!(process(&current.processes, "web", "server").state, ProcessState::Running);
    // Without then_start, apply starts nothing and answers no `started`.
    let again: Applied = vm.ok("apply", &spec(&[("web", &job)], &[]));
    assert!(again.started.is_none());
    vm.ok::<Processes>("stop", &json!({}));
}

#[test]
fn bpm_process_runs_comes_back_after_kill_and_stops() {
    let vm = Vm::new();
    let job =
        vm.put(&bpm_job("server", "echo started; while :; do echo tick >> \"$ROSH_ROOT/data/ticks\"; sleep 0.1; done"));
    let applied: Applied = vm.ok("apply", &spec(&[("web", &job)], &[]));
    assert_eq!(applied.changed_jobs, vec!["web"]);
    assert_eq!(state(&vm).job_state, JobState::Stopped);

    let started: Processes = vm.ok("start", &json!({}));
    let first = process(&started.processes, "web", "server").clone();
    assert!(matches!(first.state, ProcessState::Running), "{first:?}");
    let pid = first.pid.expect("a running process has a pid");
    assert!(alive(pid));
    let current = state(&vm);
    assert_eq!(current.job_state, JobState::Running);
    assert_eq!(current.applied.as_deref(), Some(applied.applied.as_str()));
    assert!(wait_until(Duration::from_secs(5), || vm.root().join("data/ticks").exists()), "the process never ran");

    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let came_back = wait_until(Duration::from_secs(10), || {
        let current = state(&vm);
        let p = process(&current.processes, "web", "server");
        p.state == ProcessState::Running && p.restarts >= 1 && p.pid.is_some_and(|new| new != pid && alive(new))
    });
    assert!(came_back, "not restarted: {:?}", state(&vm).processes);
    let restarted = process(&state(&vm).processes, "web", "server").clone();
    assert_eq!(restarted.last_exit.as_deref(), Some("signal 9"));
    let log = fs::read_to_string(vm.root().join("sys/log/web/server.stdout.log")).unwrap();
    assert_eq!(log.matches("started").count(), 2, "{log}");

    let stopped: Processes = vm.ok("stop", &json!({}));
    assert_eq!(process(&stopped.processes, "web", "server").state, ProcessState::Stopped);
    let new_pid = restarted.pid.unwrap();
    assert!(!alive(new_pid), "pid {new_pid} survived stop");
    let after = state(&vm);
    assert_eq!(after.job_state, JobState::Stopped);
    assert_eq!(process(&after.processes, "web", "server").state, ProcessState::Stopped);

    let logs: FetchedLogs = vm.ok("fetch_logs", &json!({ "jobs": ["web"] }));
    let (code, tarball) = vm.run("get_blob", Some(&logs.sha256), b"");
    assert_eq!(code, 0);
    assert_eq!(sha256(&tarball), logs.sha256);
    let names = tar_names(&tarball);
    assert!(names.contains(&"web/server.stdout.log".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("supervisor")), "{names:?}");
}

fn tar_names(tgz: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

#[test]
fn a_process_that_keeps_exiting_is_failing() {
    let vm = Vm::new();
    let job = vm.put(&bpm_job("crash", "echo boom >&2; exit 3"));
    vm.ok::<Applied>("apply", &spec(&[("bad", &job)], &[]));
    let started: Processes = vm.ok("start", &json!({ "jobs": ["bad"] }));
    assert_eq!(process(&started.processes, "bad", "crash").state, ProcessState::Failing);
    let failing = wait_until(Duration::from_secs(5), || {
        let current = state(&vm);
        let p = process(&current.processes, "bad", "crash");
        current.job_state == JobState::Failing && p.restarts >= 1 && p.last_exit.as_deref() == Some("exit 3")
    });
    assert!(failing, "{:?}", state(&vm));
    let stderr = fs::read_to_string(vm.root().join("sys/log/bad/crash.stderr.log")).unwrap();
    assert!(stderr.contains("boom"));
    let stopped: Processes = vm.ok("stop", &json!({ "jobs": ["bad"] }));
    assert_eq!(process(&stopped.processes, "bad", "crash").state, ProcessState::Stopped);
}

#[test]
fn monit_job_with_pidfile_under_var_vcap() {
    let vm = Vm::new();
    let monit = r#"check process legacy
  with pidfile /var/vcap/sys/run/legacy/legacy.pid
  start program "/var/vcap/jobs/legacy/bin/legacy_ctl start"
  stop program "/var/vcap/jobs/legacy/bin/legacy_ctl stop"
  group vcap
"#;
    let ctl = r#"#!/bin/sh
PIDFILE=$ROSH_ROOT/sys/run/legacy/legacy.pid
case $1 in
  start)
    mkdir -p "$(dirname "$PIDFILE")"
    nohup sleep 100 >/dev/null 2>&1 &
    echo $! > "$PIDFILE"
    ;;
  stop)
    echo "stop $(cat "$PIDFILE")" >> "$ROSH_ROOT/data/legacy-stops"
    kill "$(cat "$PIDFILE")"
    rm -f "$PIDFILE"
    ;;
esac
"#;
    // The tarball's mode is not executable: apply makes bin/* executable.
    let job = vm.put(&tgz(&[("monit", monit, 0o644), ("bin/legacy_ctl", ctl, 0o644)]));
    vm.ok::<Applied>("apply", &spec(&[("legacy", &job)], &[]));
    let started: Processes = vm.ok("start", &json!({}));
    let p = process(&started.processes, "legacy", "legacy");
    assert_eq!(p.state, ProcessState::Running, "{p:?}");
    let pid = p.pid.unwrap();
    let pidfile = vm.root().join("sys/run/legacy/legacy.pid");
    assert_eq!(fs::read_to_string(&pidfile).unwrap().trim(), pid.to_string());
    assert!(alive(pid));

    let stopped: Processes = vm.ok("stop", &json!({}));
    assert_eq!(process(&stopped.processes, "legacy", "legacy").state, ProcessState::Stopped);
    assert!(wait_until(Duration::from_secs(2), || !alive(pid)), "pid {pid} survived stop");
    let stops = fs::read_to_string(vm.root().join("data/legacy-stops")).unwrap();
    assert_eq!(stops.trim(), format!("stop {pid}"), "the stop program did not run");
}

#[test]
fn reapply_without_a_job_stops_and_removes_it() {
    let vm = Vm::new();
    let a = vm.put(&bpm_job("a", "while :; do sleep 0.1; done"));
    let b = vm.put(&bpm_job("b", "while :; do sleep 0.1; done"));
    let pkg = vm.put(&tgz(&[("lib/x", "x", 0o644)]));
    vm.ok::<Applied>("apply", &spec(&[("a", &a), ("b", &b)], &[("p", &pkg)]));
    let started: Processes = vm.ok("start", &json!({}));
    let pid_a = process(&started.processes, "a", "a").pid.unwrap();
    let pid_b = process(&started.processes, "b", "b").pid.unwrap();

    let applied: Applied = vm.ok("apply", &spec(&[("a", &a)], &[]));
    assert_eq!(applied.removed_jobs, vec!["b"]);
    assert!(applied.changed_jobs.is_empty(), "{applied:?}");
    assert!(!alive(pid_b), "removed job's process still runs");
    assert!(alive(pid_a), "kept job's process was stopped");
    assert!(!vm.root().join("jobs/b").exists());
    assert!(!vm.root().join("data/jobs/b").exists());
    assert!(!vm.root().join("packages/p").exists());
    let current = state(&vm);
    assert_eq!(current.jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), vec!["a"]);
    assert!(current.processes.iter().all(|p| p.job == "a"), "{:?}", current.processes);
    assert_eq!(current.job_state, JobState::Running);

    // A job whose blob is missing changes nothing.
    let err = vm.err("apply", &spec(&[("a", &a), ("c", &sha256(b"never put"))], &[]));
    assert!(err.message.contains("not on the VM"), "{}", err.message);
    assert!(!vm.root().join("jobs/c").exists());
    assert_eq!(state(&vm).applied, Some(applied.applied));
}

#[test]
fn run_script_reports_each_jobs_outcome() {
    let vm = Vm::new();
    let ok = vm.put(&tgz(&[(
        "bin/pre-start",
        "#!/bin/sh\necho \"ready $BOSH_JOB_NAME $NEXT_STATE $(basename $BOSH_JOB_DIR)\"\n",
        0o755,
    )]));
    let bad = vm.put(&tgz(&[("bin/pre-start", "#!/bin/sh\necho partial\necho oops >&2\nexit 7\n", 0o755)]));
    let slow = vm.put(&tgz(&[("bin/pre-start", "#!/bin/sh\nsleep 30\n", 0o755)]));
    let none = vm.put(&tgz(&[("config/x", "", 0o644)]));
    vm.ok::<Applied>("apply", &spec(&[("ok", &ok), ("bad", &bad), ("slow", &slow), ("none", &none)], &[]));

    let results: ScriptResults = vm.ok(
        "run_script",
        &json!({ "script": "pre-start", "jobs": ["ok", "bad", "none"], "env": { "NEXT_STATE": "running" } }),
    );
    assert_eq!(results.results.len(), 2, "{results:?}");
    let ok = results.results.iter().find(|r| r.job == "ok").unwrap();
    assert_eq!((ok.exit_code, ok.stdout.as_str()), (0, "ready ok running ok\n"));
    let bad = results.results.iter().find(|r| r.job == "bad").unwrap();
    assert_eq!(bad.exit_code, 7);
    assert_eq!(bad.stdout, "partial\n");
    assert_eq!(bad.stderr, "oops\n");

    let started = std::time::Instant::now();
    let results: ScriptResults =
        vm.ok("run_script", &json!({ "script": "pre-start", "jobs": ["slow"], "timeout_secs": 1 }));
    assert_eq!(results.results[0].exit_code, 124);
    assert!(results.results[0].stderr.contains("timed out"));
    assert!(started.elapsed() < Duration::from_secs(10));

    let err = vm.err("run_script", &json!({ "script": "../../bin/sh" }));
    assert!(err.message.contains("invalid script name"), "{}", err.message);
}

#[test]
fn drain_waits_as_long_as_the_longest_job_asks() {
    let vm = Vm::new();
    let five =
        vm.put(&tgz(&[("bin/drain", "#!/bin/sh\necho \"$1 $2\" > \"$ROSH_ROOT/data/drain-args\"\necho 5\n", 0o755)]));
    let dynamic = vm.put(&tgz(&[("bin/drain", "#!/bin/sh\necho -8\n", 0o755)]));
    let none = vm.put(&tgz(&[("config/x", "", 0o644)]));
    vm.ok::<Applied>("apply", &spec(&[("five", &five), ("none", &none)], &[]));
    let drained: Drained = vm.ok("drain", &json!({ "kind": "shutdown" }));
    assert_eq!(drained.wait_secs, 5);
    assert_eq!(drained.jobs.len(), 1);
    assert_eq!(fs::read_to_string(vm.root().join("data/drain-args")).unwrap(), "job_shutdown hash_unchanged\n");

    vm.ok::<Applied>("apply", &spec(&[("five", &five), ("dynamic", &dynamic)], &[]));
    let drained: Drained = vm.ok("drain", &json!({ "kind": "update" }));
    // The dynamic one (-8) is to be asked again in 8 s; the static one waits 5.
    assert_eq!((drained.wait_secs, drained.poll_secs), (5, 8));
    assert_eq!(drained.poll_jobs, ["dynamic"]);

    let noisy = vm.put(&tgz(&[("bin/drain", "#!/bin/sh\necho soon\n", 0o755)]));
    vm.ok::<Applied>("apply", &spec(&[("noisy", &noisy)], &[]));
    let err = vm.err("drain", &json!({ "kind": "update" }));
    assert!(err.message.contains("not an integer"), "{}", err.message);
}

#[test]
fn compile_package_against_a_dependency() {
    let vm = Vm::new();
    let dep = vm.put(&tgz(&[("lib/greeting.txt", "hello from dep\n", 0o644)]));
    let packaging = r#"set -e
mkdir -p "$BOSH_INSTALL_TARGET/bin"
cp "$BOSH_PACKAGES_DIR/dep/lib/greeting.txt" "$BOSH_INSTALL_TARGET/greeting"
cp app/tool.sh "$BOSH_INSTALL_TARGET/bin/tool"
chmod +x "$BOSH_INSTALL_TARGET/bin/tool"
echo "compiled $BOSH_PACKAGE_NAME $BOSH_PACKAGE_VERSION in $(basename "$BOSH_COMPILE_TARGET" | cut -d- -f1)"
"#;
    let source = vm.put(&tgz(&[("packaging", packaging, 0o644), ("app/tool.sh", "#!/bin/sh\necho tool\n", 0o644)]));
    let request = CompilePackage {
        name: "app".into(),
        version: "1.0".into(),
        source_sha256: source.clone(),
        dependencies: vec![ApplyPackage { name: "dep".into(), version: "2".into(), sha256: dep }],
    };
    let compiled: Compiled = vm.ok("compile_package", &request);
    assert!(compiled.log.contains("compiled app 1.0 in app"), "{}", compiled.log);

    let (code, tarball) = vm.run("get_blob", Some(&compiled.sha256), b"");
    assert_eq!(code, 0);
    assert_eq!(sha256(&tarball), compiled.sha256);
    assert_eq!(tarball.len() as u64, compiled.size);
    let out = tempfile::tempdir().unwrap();
    tar::Archive::new(flate2::read::GzDecoder::new(&tarball[..])).unpack(out.path()).unwrap();
    assert_eq!(fs::read_to_string(out.path().join("greeting")).unwrap(), "hello from dep\n");
    let tool = std::process::Command::new(out.path().join("bin/tool")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&tool.stdout), "tool\n");

    // The compile dir and the install target are cleaned up; compiling again gives the same blob.
    assert_eq!(fs::read_dir(vm.root().join("data/compile")).unwrap().count(), 0);
    assert!(!vm.root().join("packages/app").exists());
    let again: Compiled = vm.ok("compile_package", &request);
    assert_eq!(again.sha256, compiled.sha256);

    let broken = vm.put(&tgz(&[("packaging", "echo step one\necho 'cc: error: bad.c' >&2\nexit 2\n", 0o644)]));
    let err = vm.err(
        "compile_package",
        &CompilePackage { name: "broken".into(), version: "1".into(), source_sha256: broken, dependencies: vec![] },
    );
    assert!(err.message.contains("exit 2"), "{}", err.message);
    assert!(err.message.contains("step one\ncc: error: bad.c"), "{}", err.message);
    assert_eq!(fs::read_dir(vm.root().join("data/compile")).unwrap().count(), 0);
}

#[test]
fn mount_disk_refuses_a_store_holding_another_disk() {
    let vm = Vm::new();
    let err = vm.err("mount_disk", &json!({ "disk_id": "disk-a" }));
    assert!(err.message.contains("not attached"), "{}", err.message);

    fs::create_dir_all(vm.root().join("store")).unwrap();
    fs::write(vm.root().join("store/.rosh-disk-id"), "disk-a\n").unwrap();
    let err = vm.err("mount_disk", &json!({ "disk_id": "disk-b" }));
    assert!(err.message.contains("holds disk `disk-a`"), "{}", err.message);
    assert!(state(&vm).persistent_disks.is_empty());

    let mounted: Mounted = vm.ok("mount_disk", &json!({ "disk_id": "disk-a" }));
    assert_eq!(mounted.path, "store");
    assert_eq!(state(&vm).persistent_disks, vec!["disk-a"]);
    vm.ok::<Mounted>("unmount_disk", &json!({ "disk_id": "disk-a" }));
    assert!(state(&vm).persistent_disks.is_empty());

    // A disk found where the CPI's hint says is linked at store/.
    let other = Vm::new();
    let disk = tempfile::tempdir().unwrap();
    fs::write(disk.path().join(".rosh-disk-id"), "disk-c").unwrap();
    other.ok::<Mounted>("mount_disk", &json!({ "disk_id": "disk-c", "hint": { "path": disk.path() } }));
    assert_eq!(fs::read_link(other.root().join("store")).unwrap(), disk.path());
}

#[test]
fn migrate_disk_copies_store_onto_the_hinted_disk_and_refuses_any_other_disk() {
    use std::os::unix::fs::PermissionsExt;
    let vm = Vm::new();
    let store = vm.root().join("store");
    fs::create_dir_all(store.join("db/wal")).unwrap();
    fs::write(store.join(".rosh-disk-id"), "disk-old\n").unwrap();
    fs::write(store.join("db/wal/0001"), vec![7u8; 5000]).unwrap();
    fs::write(store.join("db/secret"), "s3cret").unwrap();
    fs::set_permissions(store.join("db/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("wal/0001", store.join("db/current")).unwrap();
    let target = vm.root().join("store_migration_target");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join(".rosh-disk-id"), "disk-new\n").unwrap();

    // Only from the disk at store/, only onto the disk the hint names.
    let hint = json!({ "path": "store_migration_target" });
    let err = vm.err("migrate_disk", &json!({ "from": "disk-x", "to": "disk-new", "hint": hint }));
    assert!(err.message.contains("does not hold disk `disk-x`"), "{}", err.message);
    let err = vm.err("migrate_disk", &json!({ "from": "disk-old", "to": "disk-y", "hint": hint }));
    assert!(err.message.contains("disk `disk-y` is not attached"), "{}", err.message);
    fs::write(target.join("stray"), "x").unwrap();
    let err = vm.err("migrate_disk", &json!({ "from": "disk-old", "to": "disk-new", "hint": hint }));
    assert!(err.message.contains("not empty (it holds stray)"), "{}", err.message);
    fs::remove_file(target.join("stray")).unwrap();

    let migrated: serde_json::Value =
        vm.ok("migrate_disk", &json!({ "from": "disk-old", "to": "disk-new", "hint": hint }));
    assert_eq!((migrated["files"].as_u64(), migrated["bytes"].as_u64()), (Some(2), Some(5006)), "{migrated}");
    assert_eq!(fs::read(target.join("db/wal/0001")).unwrap(), vec![7u8; 5000]);
    let mode = fs::metadata(target.join("db/secret")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "modes are kept");
    assert_eq!(fs::read_link(target.join("db/current")).unwrap(), std::path::Path::new("wal/0001"));
    assert_eq!(fs::read_to_string(target.join(".rosh-disk-id")).unwrap(), "disk-new\n", "the copy keeps its own name");
    assert_eq!(fs::read_to_string(store.join(".rosh-disk-id")).unwrap(), "disk-old\n", "the source is untouched");
    assert!(store.join("db/wal/0001").is_file());
}

#[test]
fn wipe_stops_everything_and_empties_the_root() {
    let vm = Vm::new();
    let job = vm.put(&bpm_job("w", "while :; do sleep 0.1; done"));
    vm.ok::<Applied>("apply", &spec(&[("w", &job)], &[]));
    let started: Processes = vm.ok("start", &json!({}));
    let pid = process(&started.processes, "w", "w").pid.unwrap();
    let supervisor: u32 = fs::read_to_string(vm.root().join("sys/run/supervisor.pid")).unwrap().trim().parse().unwrap();
    fs::create_dir_all(vm.root().join("store")).unwrap();
    fs::write(vm.root().join("store/keep"), "data").unwrap();

    vm.ok::<serde_json::Value>("wipe", &json!({}));
    assert!(!alive(pid));
    assert!(wait_until(Duration::from_secs(5), || !alive(supervisor)), "the supervisor did not exit");
    assert!(fs::read_dir(vm.root().join("jobs")).unwrap().next().is_none());
    assert!(!vm.root().join("data/blobs").join(&job).exists());
    assert!(!vm.root().join("sys/run/desired.json").exists());
    assert_eq!(fs::read_to_string(vm.root().join("store/keep")).unwrap(), "data", "wipe touched the persistent disk");
    let current = state(&vm);
    assert_eq!(current.job_state, JobState::Stopped);
    assert!(current.applied.is_none() && current.processes.is_empty());
}

#[test]
fn a_restarted_supervisor_resumes_desired_jobs() {
    let vm = Vm::new();
    let job = vm.put(&bpm_job("r", "while :; do sleep 0.1; done"));
    vm.ok::<Applied>("apply", &spec(&[("r", &job)], &[]));
    let started: Processes = vm.ok("start", &json!({}));
    let pid = process(&started.processes, "r", "r").pid.unwrap();
    let supervisor: i32 = fs::read_to_string(vm.root().join("sys/run/supervisor.pid")).unwrap().trim().parse().unwrap();

    // A crashed supervisor takes its processes with it (parent-death signal)...
    unsafe { libc::kill(supervisor, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "job process outlived its supervisor");
    let down = state(&vm);
    assert_eq!(down.job_state, JobState::Failing, "desired but not running: {down:?}");
    assert_eq!(process(&down.processes, "r", "r").state, ProcessState::Stopped);

    // ...and the next `start` brings up a new one that resumes them.
    let again: Processes = vm.ok("start", &json!({ "jobs": ["r"] }));
    let p = process(&again.processes, "r", "r");
    assert_eq!(p.state, ProcessState::Running);
    assert!(alive(p.pid.unwrap()));
}

#[test]
fn concurrent_starts_share_one_supervisor() {
    let vm = Vm::new();
    let job = vm.put(&bpm_job("c", "while :; do sleep 0.1; done"));
    vm.ok::<Applied>("apply", &spec(&[("c", &job)], &[]));
    let pids: Vec<u32> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    let started: Processes = vm.ok("start", &json!({}));
                    process(&started.processes, "c", "c").pid.unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert!(pids.iter().all(|&p| p == pids[0]), "one process, started once: {pids:?}");
    let supervisors = || {
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| fs::read(e.unwrap().path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains("supervise") && c.contains(&vm.root().display().to_string()))
            .count()
    };
    // Daemons that lost the race for the lock exit on their own.
    assert!(wait_until(Duration::from_secs(5), || supervisors() == 1), "{} supervisors", supervisors());
}

//! The static CPI driving a machine run by a real OpenSSH sshd: the director claims it, installs
//! the `rosh` binary over SSH as the agent, speaks the agent verbs through it, and on `delete_vm`
//! has the agent wipe the machine before it returns to the pool.

#[path = "ssh_support/mod.rs"]
mod ssh_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rosh::agent::protocol::AGENT_VERSION;
use rosh::ssh::{
    AgentBinary, AgentCallError, AgentWiper, ConnectOptions, Connection, DirectorKey, ensure_agent_binary,
};
use rosh_cpi::{Cid, Cpi, CreateVm, ErrorKind};
use rosh_cpi_static::{StaticConfig, StaticCpi};
use serde_json::json;
use sha2::{Digest, Sha256};
use ssh_support::Sshd;

fn options() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        retry_until: Duration::from_secs(2),
        step_timeout: Duration::from_secs(60),
        max_sessions: 8,
    }
}

fn request(agent: &str) -> CreateVm {
    serde_json::from_value(json!({
        "agent_id": agent, "stemcell_cid": "static", "cloud_properties": {},
        "networks": {"default": {"type": "manual", "ip": "127.0.0.1"}}, "disk_cids": [], "env": {}
    }))
    .unwrap()
}

/// The `rosh-agent` binary cargo built for these tests (the test binary itself is not an
/// agent), hashed once for all tests here.
fn rosh_binary() -> AgentBinary {
    static BINARY: std::sync::OnceLock<AgentBinary> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| AgentBinary::at(Path::new(env!("CARGO_BIN_EXE_rosh-agent"))).unwrap()).clone()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A static CPI whose one machine is `sshd`, its root a directory inside the sshd's tempdir.
fn static_cpi(sshd: &Sshd, state: &Path, key: &DirectorKey, binary: &AgentBinary) -> StaticCpi {
    let config = StaticConfig::from_value(&json!({"machines": [{
        "name": "m1",
        "address": "127.0.0.1",
        "port": sshd.port,
        "user": sshd.user,
        "private_key": sshd.client_key,
        "host_key": sshd.host_public_key,
        "root": sshd.dir.path().join("vcap"),
    }]}))
    .unwrap();
    let wiper = AgentWiper::new(key.clone(), options()).with_agent_binary(binary.clone());
    StaticCpi::new(config, state.join("static-claims.json"), Arc::new(wiper))
}

#[tokio::test]
async fn a_static_machine_is_claimed_given_the_agent_over_ssh_driven_and_wiped_on_release() {
    let mut sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    // The director's own key is not authorized there: the machine's `private_key` is used.
    let key = DirectorKey::load_or_create(state.path()).unwrap();
    let binary = rosh_binary();
    let cpi = static_cpi(&sshd, state.path(), &key, &binary);

    let created = cpi.create_vm(request("agent-1")).await.unwrap();
    assert_eq!(created.vm_cid, Cid::from("m1"));
    let endpoint = created.ssh.unwrap();
    let root = sshd.dir.path().join("vcap");
    assert_eq!(endpoint.root, root.display().to_string());
    assert!(cpi.has_vm(Cid::from("m1")).await.unwrap());

    let conn = Connection::connect(&endpoint, &key, &options()).await.unwrap();
    let first = ensure_agent_binary(&conn, &endpoint, &binary).await.unwrap();
    assert!(first.installed);
    let installed = root.join("bosh/bin/rosh-agent");
    assert_eq!(hex(&Sha256::digest(std::fs::read(&installed).unwrap())), binary.sha256);
    assert_eq!(std::fs::read_to_string(root.join("bosh/bin/rosh-agent.sha256")).unwrap().trim(), binary.sha256);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
    // Same digest on the machine: nothing is sent again.
    assert!(!ensure_agent_binary(&conn, &endpoint, &binary).await.unwrap().installed);
    let agent = first.client;

    assert_eq!(agent.version().await.unwrap().version, AGENT_VERSION);

    let blob_dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).flat_map(|i| (i.wrapping_mul(2654435761)).to_le_bytes()).collect();
    let sha = hex(&Sha256::digest(&data));
    let path = blob_dir.path().join("blob");
    std::fs::write(&path, &data).unwrap();
    let blobs = vec![(sha.clone(), path.clone())];
    let sent = agent.upload_blobs(&blobs).await.unwrap();
    assert_eq!((sent.uploaded, sent.skipped, sent.bytes_sent), (1, 0, data.len() as u64));
    let again = agent.upload_blobs(&blobs).await.unwrap();
    assert_eq!((again.uploaded, again.skipped, again.bytes_sent), (0, 1, 0), "the VM already holds that digest");

    let mut fetched = Vec::new();
    assert_eq!(agent.get_blob(&sha, &mut fetched).await.unwrap(), data.len() as u64);
    assert_eq!(fetched, data);

    // The agent's own refusals arrive as its AgentError, not as a transport failure.
    let wrong = "0".repeat(64);
    let err = agent.put_blob(&wrong, b"not that".as_slice(), 8).await.unwrap_err();
    match &err {
        AgentCallError::Refused { error, .. } => {
            assert_eq!(error.verb, "put_blob");
            assert!(error.message.contains("digest mismatch"), "{}", error.message);
        }
        other => panic!("expected the agent's refusal, got {other:?}"),
    }
    let missing = agent.get_blob(&wrong, &mut Vec::new()).await.unwrap_err();
    assert!(missing.agent_error().is_some_and(|e| e.verb == "get_blob"), "{missing:?}");

    let state_now = agent.get_state().await.unwrap();
    assert_eq!(state_now.agent_version, AGENT_VERSION);
    assert_eq!(Path::new(&state_now.root), root.as_path());
    assert!(state_now.jobs.is_empty());

    // Release: the agent wipes the machine's job state (the blob goes) and the claim is freed.
    cpi.delete_vm(Cid::from("m1")).await.unwrap();
    assert!(!root.join("data/blobs").join(&sha).exists(), "wiped");
    assert!(cpi.claimed().await.unwrap().is_empty());
    assert_eq!(cpi.delete_vm(Cid::from("m1")).await.unwrap_err().kind, ErrorKind::VmNotFound);

    // The machine goes to the next claimant; its agent binary is still current.
    let second = cpi.create_vm(request("agent-2")).await.unwrap();
    assert_eq!(second.vm_cid, Cid::from("m1"));
    let ensured = ensure_agent_binary(&conn, &second.ssh.unwrap(), &binary).await.unwrap();
    assert!(!ensured.installed);
    assert_eq!(ensured.client.has_blobs(std::slice::from_ref(&sha)).await.unwrap().missing, vec![sha.clone()]);

    // A machine whose sshd is gone is no longer there.
    conn.close().await;
    sshd.kill();
    assert!(!cpi.has_vm(Cid::from("m1")).await.unwrap());
}

#[tokio::test]
async fn an_agent_of_another_version_is_replaced_and_a_missing_one_is_reported_as_such() {
    let sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    let key = sshd.director_key();
    let binary = rosh_binary();
    let cpi = static_cpi(&sshd, state.path(), &key, &binary);
    let endpoint = cpi.create_vm(request("a")).await.unwrap().ssh.unwrap();
    let conn = Connection::connect(&endpoint, &key, &options()).await.unwrap();

    // Before installing, the agent command fails without the agent's JSON.
    let absent = rosh::ssh::AgentClient::for_endpoint(conn.clone(), &endpoint).version().await.unwrap_err();
    assert!(matches!(&absent, AgentCallError::Failed { status, .. } if status.code() == Some(127)), "{absent:?}");

    assert!(ensure_agent_binary(&conn, &endpoint, &binary).await.unwrap().installed);
    // Another director version recorded on the machine: the binary is sent again.
    let digest_file = sshd.dir.path().join("vcap/bosh/bin/rosh-agent.sha256");
    std::fs::write(&digest_file, format!("{}\n", "f".repeat(64))).unwrap();
    let replaced = ensure_agent_binary(&conn, &endpoint, &binary).await.unwrap();
    assert!(replaced.installed);
    assert_eq!(std::fs::read_to_string(&digest_file).unwrap().trim(), binary.sha256);
    assert_eq!(replaced.client.version().await.unwrap().version, AGENT_VERSION);
    // No temporary files are left beside it.
    let mut names: Vec<String> = std::fs::read_dir(sshd.dir.path().join("vcap/bosh/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["rosh-agent", "rosh-agent.sha256"]);
}

/// Runs `binary ARGS` with `{"…"}` on stdin; its exit code and stdout, stderr.
fn run_agent(binary: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(binary).args(args).stdin(std::process::Stdio::null()).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_small_agent_and_a_rosh_binary_named_rosh_agent_answer_the_same_command_lines() {
    let small = Path::new(env!("CARGO_BIN_EXE_rosh-agent"));
    let full = Path::new(env!("CARGO_BIN_EXE_rosh"));
    let small_size = std::fs::metadata(small).unwrap().len();
    let full_size = std::fs::metadata(full).unwrap().len();
    assert!(small_size * 2 < full_size, "rosh-agent ({small_size} bytes) is not much smaller than rosh ({full_size})");

    let dir = tempfile::tempdir().unwrap();
    // The fallback when no rosh-agent was built: the director's own binary under that name.
    let renamed = dir.path().join("bin/rosh-agent");
    std::fs::create_dir_all(renamed.parent().unwrap()).unwrap();
    std::fs::copy(full, &renamed).unwrap();
    let root = dir.path().join("vm");
    let root = root.to_str().unwrap();
    for binary in [small, renamed.as_path()] {
        // As the static CPI's agent_command has it, and as the supervisor restarts itself.
        for args in [vec!["--root", root, "version"], vec!["agent", "--root", root, "version"]] {
            let (code, stdout, stderr) = run_agent(binary, &args);
            assert_eq!(code, Some(0), "{} {args:?}: {stderr}", binary.display());
            let answer: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(answer["version"], AGENT_VERSION, "{stdout}");
        }
        // An unknown verb is the agent's JSON refusal, exit 1.
        let (code, stdout, _) = run_agent(binary, &["--root", root, "no_such_verb"]);
        assert_eq!(code, Some(1));
        assert!(stdout.contains("no_such_verb"), "{stdout}");
    }
    // `serve` is the local CPI's VM: only the full binary, under its own name, has it.
    let (code, _, stderr) =
        run_agent(small, &["--root", root, "serve", "--listen", "127.0.0.1:0", "--authorized-keys", "/nonexistent"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("`serve` is the local CPI's VM and needs the full binary"), "{stderr}");
}

/// A gzipped tarball holding `files` (path, body).
fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, path, body.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// Whether a process of this machine lives (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        !matches!(state, Some(Some('Z' | 'X')) | None)
    })
}

#[tokio::test]
async fn jobs_are_applied_started_and_stopped_over_openssh_and_wiping_ends_them() {
    use rosh::agent::protocol::{ApplyJob, ApplySpec, JobSelection, JobState, ProcessState, RunScript};

    let sshd = Sshd::start();
    let state = tempfile::tempdir().unwrap();
    let key = sshd.director_key();
    let binary = rosh_binary();
    let cpi = static_cpi(&sshd, state.path(), &key, &binary);
    let endpoint = cpi.create_vm(request("a")).await.unwrap().ssh.unwrap();
    let conn = Connection::connect(&endpoint, &key, &options()).await.unwrap();
    let agent = ensure_agent_binary(&conn, &endpoint, &binary).await.unwrap().client;

    let bpm = "processes:\n  - name: ticker\n    executable: /bin/sh\n    args: [\"-c\", \"while :; do sleep 0.1; done\"]\n    shutdown_timeout: 2\n";
    let job = tgz(&[("config/bpm.yml", bpm), ("bin/pre-start", "#!/bin/sh\necho prepared \"$ROSH_ROOT\"\n")]);
    let job_sha = hex(&Sha256::digest(&job));
    let job_path = state.path().join("job.tgz");
    std::fs::write(&job_path, &job).unwrap();
    assert_eq!(agent.upload_blobs(&[(job_sha.clone(), job_path)]).await.unwrap().uploaded, 1);

    let spec = ApplySpec {
        deployment: "d".into(),
        instance: "web/0".into(),
        packages: vec![],
        jobs: vec![ApplyJob { name: "web".into(), sha256: job_sha }],
        then_start: None,
    };
    let applied = agent.apply(&spec).await.unwrap();
    assert_eq!(applied.changed_jobs, vec!["web"]);
    let ran = agent
        .run_script(&RunScript {
            script: "pre-start".into(),
            jobs: vec![],
            env: Default::default(),
            timeout_secs: Some(30),
        })
        .await
        .unwrap();
    assert_eq!(ran.results.len(), 1);
    assert_eq!(ran.results[0].exit_code, 0);
    assert!(ran.results[0].stdout.contains("prepared"), "{:?}", ran.results[0]);

    // `start` leaves a supervisor running on the machine: the exec must still end (the daemon
    // does not hold the session's output open).
    let started = agent.start(&JobSelection::default()).await.unwrap();
    let ticker = started.processes.iter().find(|p| p.name == "ticker").expect("the bpm process is listed").clone();
    assert_eq!(ticker.state, ProcessState::Running, "{ticker:?}");
    let pid = ticker.pid.unwrap();
    assert!(alive(pid));
    let now = agent.get_state().await.unwrap();
    assert_eq!(now.job_state, JobState::Running);
    assert_eq!(now.applied.as_deref(), Some(applied.applied.as_str()));

    let stopped = agent.stop(&JobSelection::default()).await.unwrap();
    assert!(stopped.processes.iter().all(|p| p.state == ProcessState::Stopped), "{stopped:?}");
    assert!(!alive(pid));
    let restarted = agent.start(&JobSelection::default()).await.unwrap();
    let pid = restarted.processes[0].pid.unwrap();
    assert!(alive(pid));

    // Releasing the machine wipes it through the agent: the processes end and the jobs go.
    conn.close().await;
    cpi.delete_vm(Cid::from("m1")).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(std::time::Instant::now() < deadline, "pid {pid} outlived the wipe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!sshd.dir.path().join("vcap/jobs/web").exists());
}

//! `rosh agent serve`, the local CPI's VM, driven by the OpenSSH client: verbs and plain
//! commands over exec channels, public-key auth against the authorized-keys file, many channels
//! on one connection, and what SIGKILL and SIGTERM of the VM process do to its jobs.

#[path = "agent_support.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rosh::agent::protocol::{AgentError, AgentState, Applied, JobState, ProcessState, Processes, StoredBlob, Version};
use serde_json::json;
use support::{KillOnDrop, ROSH, Vm, alive, bpm_job, process, sha256, wait_until};

/// A serving agent and a client key it accepts.
struct Served {
    vm: Vm,
    keys: tempfile::TempDir,
    agent: KillOnDrop,
    port: u16,
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(status.success());
    path
}

fn start_agent(root: &Path, keys: &Path) -> (KillOnDrop, u16) {
    let _ = std::fs::remove_file(root.join("sys/run/agent.ready"));
    let log = std::fs::File::create(keys.join("agent.log")).unwrap();
    let child = Command::new(ROSH)
        .args(["agent", "--root"])
        .arg(root)
        .args(["serve", "--listen", "127.0.0.1:0", "--authorized-keys"])
        .arg(keys.join("authorized_keys"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let agent = KillOnDrop(child);
    let ready = root.join("sys/run/agent.ready");
    assert!(wait_until(Duration::from_secs(20), || ready.exists()), "agent never became ready: {}", agent_log(keys));
    let addr: std::net::SocketAddr = std::fs::read_to_string(&ready).unwrap().trim().parse().unwrap();
    let pid: u32 = std::fs::read_to_string(root.join("sys/run/agent.pid")).unwrap().trim().parse().unwrap();
    assert_eq!(pid, agent.0.id());
    let public = std::fs::read_to_string(root.join("sys/ssh/ssh_host_ed25519_key.pub")).unwrap();
    std::fs::write(keys.join("known_hosts"), format!("[127.0.0.1]:{} {public}", addr.port())).unwrap();
    (agent, addr.port())
}

fn agent_log(keys: &Path) -> String {
    std::fs::read_to_string(keys.join("agent.log")).unwrap_or_default()
}

impl Served {
    fn new() -> Served {
        let vm = Vm::new();
        let keys = tempfile::tempdir().unwrap();
        let key = keygen(keys.path(), "id");
        std::fs::copy(key.with_extension("pub"), keys.path().join("authorized_keys")).unwrap();
        let (agent, port) = start_agent(vm.root(), keys.path());
        Served { vm, keys, agent, port }
    }

    fn root(&self) -> &Path {
        self.vm.root()
    }

    fn ssh_command(&self, key: &Path) -> Command {
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-i"])
            .arg(key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .args(["-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.keys.path().join("known_hosts").display()))
            .arg("-p")
            .arg(self.port.to_string());
        command
    }

    /// Runs `cmd` on the VM with `stdin`, authenticating with `key`.
    fn ssh_as(&self, key: &Path, cmd: &str, stdin: &[u8]) -> Output {
        let mut command = self.ssh_command(key);
        command.arg("vcap@127.0.0.1").arg(cmd);
        run_with_stdin(command, stdin)
    }

    fn ssh(&self, cmd: &str, stdin: &[u8]) -> Output {
        self.ssh_as(&self.keys.path().join("id"), cmd, stdin)
    }

    /// Runs a JSON verb over SSH that must succeed.
    fn verb<T: serde::de::DeserializeOwned>(&self, verb: &str, request: &serde_json::Value) -> T {
        let out = self.ssh(&format!("rosh-agent {verb}"), &serde_json::to_vec(request).unwrap());
        assert!(out.status.success(), "{verb}: {:?} {}", out.status, String::from_utf8_lossy(&out.stdout));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn put(&self, bytes: &[u8]) -> String {
        let sha = sha256(bytes);
        let out = self.ssh(&format!("rosh-agent put_blob {sha}"), bytes);
        assert!(out.status.success(), "put_blob: {}", String::from_utf8_lossy(&out.stdout));
        sha
    }

    /// Applies and starts a job whose process loops forever; its pid.
    fn run_job(&self) -> u32 {
        let job = self.put(&bpm_job("loop", "while :; do sleep 0.1; done"));
        let spec =
            json!({ "deployment": "d", "instance": "g/0", "packages": [], "jobs": [{ "name": "j", "sha256": job }] });
        self.verb::<Applied>("apply", &spec);
        let started: Processes = self.verb("start", &json!({}));
        let p = process(&started.processes, "j", "loop");
        assert_eq!(p.state, ProcessState::Running, "{p:?}");
        p.pid.unwrap()
    }
}

fn run_with_stdin(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn openssh_runs_verbs_and_commands() {
    let served = Served::new();
    let state: AgentState = served.verb("get_state", &json!({}));
    assert_eq!(Path::new(&state.root), served.root());
    assert_eq!(state.job_state, JobState::Stopped);

    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let sha = sha256(&blob);
    let out = served.ssh(&format!("rosh-agent put_blob {sha}"), &blob);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let stored: StoredBlob = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stored.size, blob.len() as u64);
    let out = served.ssh(&format!("rosh-agent get_blob {sha}"), b"");
    assert!(out.status.success());
    assert!(out.stdout == blob, "get_blob returned different bytes");

    let wrong = sha256(b"nope");
    let out = served.ssh(&format!("rosh-agent put_blob {wrong}"), &blob[..1000]);
    assert_eq!(out.status.code(), Some(1));
    let err: AgentError = serde_json::from_slice(&out.stdout).unwrap();
    assert!(err.message.contains("mismatch"), "{}", err.message);
    assert!(!served.root().join("data/blobs").join(&wrong).exists());

    let out = served.ssh("echo $ROSH_ROOT; pwd", b"");
    let root = served.root().display().to_string();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{root}\n{root}\n"));
    let out = served.ssh("echo to-stderr >&2; exit 3", b"");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    let out = served.ssh("tr a-z A-Z", b"shout\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "SHOUT\n");
}

#[test]
fn keys_not_authorized_are_refused() {
    let served = Served::new();
    let stranger = keygen(served.keys.path(), "stranger");
    let out = served.ssh_as(&stranger, "rosh-agent get_state", b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");

    // The file is read at each attempt: listing the key lets it in.
    let mut listed = std::fs::read_to_string(served.keys.path().join("authorized_keys")).unwrap();
    listed.push_str(&std::fs::read_to_string(stranger.with_extension("pub")).unwrap());
    std::fs::write(served.keys.path().join("authorized_keys"), listed).unwrap();
    assert!(served.ssh_as(&stranger, "true", b"").status.success());
}

#[test]
fn many_channels_share_one_connection() {
    let served = Served::new();
    let control = served.keys.path().join("mux");
    let mut master = served.ssh_command(&served.keys.path().join("id"));
    master
        .args(["-M", "-N", "-o", "ControlPersist=no", "-S"])
        .arg(&control)
        .arg("vcap@127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _master = KillOnDrop(master.spawn().unwrap());
    assert!(wait_until(Duration::from_secs(10), || control.exists()), "ssh master never connected");

    let started = Instant::now();
    let runs: Vec<_> = (0..12)
        .map(|i| {
            let mut command = served.ssh_command(&served.keys.path().join("id"));
            command.arg("-S").arg(&control).arg("vcap@127.0.0.1");
            if i % 2 == 0 {
                command.arg("rosh-agent version");
            } else {
                command.arg(format!("sleep 0.5; echo {i}"));
            }
            std::thread::spawn(move || (i, run_with_stdin(command, b"")))
        })
        .collect();
    for run in runs {
        let (i, out) = run.join().unwrap();
        assert!(out.status.success(), "channel {i}: {out:?}");
        if i % 2 == 0 {
            let version: Version = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(version.version, rosh::agent::protocol::AGENT_VERSION);
        } else {
            assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{i}\n"));
        }
    }
    // Six half-second sleeps in parallel, not in a row.
    assert!(started.elapsed() < Duration::from_millis(2500), "channels ran serially: {:?}", started.elapsed());
}

#[test]
fn sigkill_of_the_vm_process_takes_its_jobs_down() {
    let mut served = Served::new();
    let pid = served.run_job();
    assert!(alive(pid));
    served.agent.0.kill().unwrap();
    served.agent.0.wait().unwrap();
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "job process {pid} outlived its VM");
}

#[test]
fn sigterm_stops_jobs_exits_cleanly_and_a_restart_resumes_them() {
    let mut served = Served::new();
    let host_key = std::fs::read_to_string(served.root().join("sys/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let pid = served.run_job();
    let agent_pid = served.agent.0.id() as i32;
    unsafe { libc::kill(agent_pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = served.agent.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "agent did not exit after SIGTERM: {}", agent_log(served.keys.path()));
        std::thread::sleep(Duration::from_millis(25));
    };
    assert!(status.success(), "{status:?}: {}", agent_log(served.keys.path()));
    assert!(!alive(pid), "job process survived SIGTERM of its VM");
    assert!(!served.root().join("sys/run/agent.ready").exists());
    assert!(agent_log(served.keys.path()).contains("j/loop: stopped"));

    // Reboot: same host key, and the job that was meant to run runs again.
    let (agent, port) = start_agent(served.root(), served.keys.path());
    served.agent = agent;
    served.port = port;
    assert_eq!(std::fs::read_to_string(served.root().join("sys/ssh/ssh_host_ed25519_key.pub")).unwrap(), host_key);
    let resumed = wait_until(Duration::from_secs(10), || {
        let state: AgentState = served.verb("get_state", &json!({}));
        state.job_state == JobState::Running && state.processes.iter().any(|p| p.state == ProcessState::Running)
    });
    assert!(resumed, "job not resumed after restart");
}

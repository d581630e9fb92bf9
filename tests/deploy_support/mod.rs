//! What the deploy end-to-end tests share: a director of their own (a state dir with the local
//! stemcell, the sample releases and a cloud config uploaded), manifests copied from
//! `manifests/` onto a loopback range of the test's own, the `rosh` binary run against it, and
//! ways to look at the result as an operator would: the state's instance records, each VM's
//! agent (`get_state` over SSH with the director's key), the VM directories, the live agent
//! processes, and HTTP against the web instances.
//!
//! Several test binaries (and people) deploy on this machine at once, so nothing here is
//! shared: each [`Director`] has its own state dir and its own `127.N.0.0/16`, and its
//! compilation VMs (which the local CPI puts on 127.78.0.0/16 whoever asks) listen on a port of
//! their own. Dropping a [`Director`] kills every process whose command line names its state dir
//! (VM agents and their jobs), so a failed test leaves nothing running.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rosh::agent::protocol::{AgentState, JobState, ProcessState};
use rosh::ssh::{AgentClient, ConnectOptions, Connection, DirectorKey};
use rosh::state::{InstanceRecord, State};
use rosh_cpi::SshEndpoint;
use serde_yaml_ng::Value;

pub const ROSH: &str = env!("CARGO_BIN_EXE_rosh");

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A director of the test's own, with everything a deploy needs uploaded.
pub struct Director {
    pub tmp: tempfile::TempDir,
    pub state_dir: PathBuf,
    /// The second octet of this director's loopback range: `127.<octet>.0.0/16`.
    pub octet: u8,
}

/// The report of `deploy --json`'s final `summary` event.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Summary {
    pub created: usize,
    pub updated: usize,
    pub recreated: usize,
    pub deleted: usize,
    pub unchanged: usize,
    pub packages_compiled: usize,
    pub packages_cached: usize,
}

/// One finished `rosh deploy`.
#[derive(Debug)]
pub struct Deployed {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub summary: Option<Summary>,
}

impl Deployed {
    /// The summary of a deploy that must have succeeded.
    pub fn expect_ok(&self) -> Summary {
        assert!(self.ok, "deploy failed ({:?}):\n{}\n{}", self.code, self.stderr, self.stdout);
        self.summary.clone().unwrap_or_else(|| panic!("deploy printed no summary:\n{}", self.stdout))
    }
}

impl Director {
    /// A fresh director on `127.<octet>.0.0/16`: stemcell, both sample releases and the local
    /// cloud config (on that range) uploaded.
    pub fn new(octet: u8) -> Director {
        let director = Director::bare(octet);
        for name in ["kv", "web"] {
            let source = director.copy_release(name);
            director.upload_release(&source);
        }
        director
    }

    /// A fresh director with the stemcell and the cloud config but no release.
    pub fn bare(octet: u8) -> Director {
        let tmp = tempfile::Builder::new().prefix("rosh-deploy-e2e-").tempdir().expect("tempdir");
        let state_dir = tmp.path().join("state");
        let director = Director { tmp, state_dir, octet };
        let stemcell = director.path("stemcell.tgz");
        director.ok(&["create-stemcell", "--local", "--tarball", stemcell.to_str().unwrap()]);
        director.ok(&["upload-stemcell", stemcell.to_str().unwrap()]);
        let cloud = director.write("cloud-config.yml", &director.cloud_config());
        director.ok(&["update-cloud-config", cloud.to_str().unwrap()]);
        director
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).expect("write a test file");
        path
    }

    /// `manifests/cloud-config-local.yml` on this director's range; compilation VMs listen on a
    /// free port of their own (the local CPI gives every director's compilation VMs addresses
    /// from the same 127.78.0.0/16, so two directors compiling at once would both take
    /// 127.78.0.2:6868).
    pub fn cloud_config(&self) -> String {
        let text = self.on_my_range(&fs::read_to_string(repo().join("manifests/cloud-config-local.yml")).unwrap());
        let mut doc: Value = serde_yaml_ng::from_str(&text).unwrap();
        // Instead of the vm_type (whose cloud properties are empty): the two go not together.
        doc["compilation"].as_mapping_mut().unwrap().remove("vm_type");
        doc["compilation"]["cloud_properties"] = yaml(&format!("{{ssh_port: {}}}", free_port()));
        serde_yaml_ng::to_string(&doc).unwrap()
    }

    /// `text` with the sample's `127.77.` addresses moved to this director's range.
    pub fn on_my_range(&self, text: &str) -> String {
        text.replace("127.77.", &format!("127.{}.", self.octet))
    }

    /// An address of this director's range: `ip(0, 10)` is `127.<octet>.0.10`.
    pub fn ip(&self, third: u8, fourth: u8) -> String {
        format!("127.{}.{third}.{fourth}", self.octet)
    }

    /// `manifests/demo.yml` on this director's range, as a YAML value to change.
    pub fn demo(&self) -> Manifest {
        let text = self.on_my_range(&fs::read_to_string(repo().join("manifests/demo.yml")).unwrap());
        Manifest(serde_yaml_ng::from_str(&text).unwrap())
    }

    /// Copies `releases/<name>` (sources only, no build output) into the temp dir, outside any
    /// git work tree, so other people's uncommitted edits do not matter.
    pub fn copy_release(&self, name: &str) -> PathBuf {
        let to = self.path(&format!("src-{name}"));
        copy_tree(&repo().join("releases").join(name), &to);
        to
    }

    /// `create-release DIR --force` and `upload-release` of the tarball; answers create-release's
    /// output.
    pub fn upload_release(&self, source: &Path) -> String {
        let tarball = source.with_extension("tgz");
        let out =
            self.ok(&["create-release", source.to_str().unwrap(), "--force", "--tarball", tarball.to_str().unwrap()]);
        self.ok(&["upload-release", tarball.to_str().unwrap()]);
        out
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(ROSH);
        cmd.args(args)
            .current_dir(self.tmp.path())
            .env("ROSH_STATE_DIR", &self.state_dir)
            .env_remove("ROSH_DEPLOYMENT")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    pub fn rosh(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run rosh")
    }

    /// Runs rosh, failing the test when it fails; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.rosh(args);
        assert!(
            out.status.success(),
            "rosh {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes `manifest` as `<file>` and deploys it as deployment `name` with `--json`.
    pub fn deploy(&self, name: &str, manifest: &Manifest, file: &str, extra: &[&str]) -> Deployed {
        let path = self.write(file, &manifest.text());
        let mut args = vec!["-d", name, "deploy", path.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        deployed(self.rosh(&args))
    }

    /// Starts a deploy without waiting for it (for the crash test); killed when dropped.
    pub fn spawn_deploy(&self, name: &str, manifest: &Manifest, file: &str) -> KillOnDrop {
        let path = self.write(file, &manifest.text());
        let child = self
            .command(&["-d", name, "deploy", path.to_str().unwrap(), "--json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rosh deploy");
        KillOnDrop(Some(child))
    }

    /// Starts a deploy whose `--json` events the caller reads (killed when dropped).
    pub fn spawn_deploy_events(
        &self,
        name: &str,
        manifest: &Manifest,
        file: &str,
    ) -> (KillOnDrop, std::process::ChildStdout) {
        let path = self.write(file, &manifest.text());
        let mut child = self
            .command(&["-d", name, "deploy", path.to_str().unwrap(), "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rosh deploy");
        let stdout = child.stdout.take().unwrap();
        (KillOnDrop(Some(child)), stdout)
    }

    pub fn state(&self) -> State {
        State::open(&self.state_dir).expect("open the state")
    }

    /// The deployment's instance records, by group then index.
    pub fn instances(&self, deployment: &str) -> Vec<InstanceRecord> {
        let mut list = self.state().instances(deployment).expect("read instances");
        list.sort_by_key(|r| (r.group.clone(), r.index));
        list
    }

    pub fn group(&self, deployment: &str, group: &str) -> Vec<InstanceRecord> {
        self.instances(deployment).into_iter().filter(|r| r.group == group).collect()
    }

    pub fn vms_dir(&self) -> PathBuf {
        self.state_dir.join("cpi/local/vms")
    }

    /// The VM directories the local CPI has, by cid.
    pub fn vm_dirs(&self) -> BTreeSet<String> {
        match fs::read_dir(self.vms_dir()) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Live `rosh agent … serve` processes of this state dir: VM cid → pid.
    pub fn live_agents(&self) -> BTreeMap<String, u32> {
        let vms = self.vms_dir();
        let mut out = BTreeMap::new();
        for (pid, args) in processes_naming(&self.state_dir) {
            let is_agent = args.iter().any(|a| a == "agent") && args.iter().any(|a| a == "serve");
            let root = args.iter().position(|a| a == "--root").and_then(|i| args.get(i + 1));
            if let (true, Some(root)) = (is_agent, root) {
                let root = Path::new(root);
                if root.parent() == Some(vms.as_path()) {
                    out.insert(root.file_name().unwrap().to_string_lossy().into_owned(), pid);
                }
            }
        }
        out
    }

    /// The pid the local CPI recorded for VM `cid`'s agent.
    pub fn agent_pid(&self, cid: &str) -> Option<u32> {
        fs::read_to_string(self.vms_dir().join(cid).join("sys/run/agent.pid")).ok()?.trim().parse().ok()
    }

    /// The VM's agent state, asked over SSH with the director's key and the pinned host key.
    pub fn agent_state(&self, record: &InstanceRecord) -> AgentState {
        let vm = record.vm.as_ref().unwrap_or_else(|| panic!("{} has no VM", record.label()));
        let endpoint: SshEndpoint = serde_json::from_str(&vm.endpoint_json).expect("an endpoint");
        let key = DirectorKey::load_or_create(&self.state_dir).expect("the director key");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let options = ConnectOptions {
                connect_timeout: Duration::from_secs(5),
                retry_until: Duration::from_secs(2),
                step_timeout: Duration::from_secs(30),
                max_sessions: 2,
            };
            let conn = Connection::connect(&endpoint, &key, &options)
                .await
                .unwrap_or_else(|e| panic!("connecting to {}: {e}", record.label()));
            let state = AgentClient::for_endpoint(conn.clone(), &endpoint).get_state().await;
            conn.close().await;
            state.unwrap_or_else(|e| panic!("get_state of {}: {e}", record.label()))
        })
    }

    /// Asserts the instance's agent runs every process of its jobs; answers process → pid.
    pub fn assert_running(&self, record: &InstanceRecord) -> BTreeMap<String, u32> {
        let state = self.agent_state(record);
        assert!(!state.processes.is_empty(), "{} runs no process: {state:?}", record.label());
        assert_eq!(state.job_state, JobState::Running, "{}: {state:?}", record.label());
        state
            .processes
            .iter()
            .map(|p| {
                assert_eq!(p.state, ProcessState::Running, "{}: {p:?}", record.label());
                (format!("{}/{}", p.job, p.name), p.pid.expect("a running process has a pid"))
            })
            .collect()
    }

    /// The orphan check: every live agent of this state dir is a VM of an instance record, and
    /// every instance record's VM has a live agent (the one the CPI recorded) and a directory;
    /// no VM directory is left without a record.
    pub fn assert_no_orphans(&self, deployments: &[&str], context: &str) {
        let recorded: BTreeMap<String, String> = deployments
            .iter()
            .flat_map(|d| self.instances(d))
            .filter_map(|r| Some((r.vm.as_ref()?.cid.clone(), r.label())))
            .collect();
        let agents = self.live_agents();
        let dirs = self.vm_dirs();
        let unrecorded_agents: Vec<&String> = agents.keys().filter(|cid| !recorded.contains_key(*cid)).collect();
        assert!(unrecorded_agents.is_empty(), "{context}: live agents with no instance record: {unrecorded_agents:?}");
        for (cid, label) in &recorded {
            assert!(dirs.contains(cid), "{context}: {label}'s VM {cid} has no directory");
            let live = agents.get(cid);
            assert!(live.is_some(), "{context}: {label}'s VM {cid} has no live agent");
            assert_eq!(live.copied(), self.agent_pid(cid), "{context}: {label}'s VM {cid}: agent pid");
        }
        let unrecorded_dirs: Vec<&String> = dirs.iter().filter(|cid| !recorded.contains_key(*cid)).collect();
        assert!(unrecorded_dirs.is_empty(), "{context}: VM directories with no instance record: {unrecorded_dirs:?}");
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        kill_processes_naming(&self.state_dir);
    }
}

/// A deployment manifest being changed by a test.
#[derive(Debug, Clone)]
pub struct Manifest(pub Value);

impl Manifest {
    pub fn text(&self) -> String {
        serde_yaml_ng::to_string(&self.0).unwrap()
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Manifest {
        self.0[key] = yaml(value);
        self
    }

    /// Instance group `name`.
    pub fn group(&mut self, name: &str) -> &mut Value {
        self.0["instance_groups"]
            .as_sequence_mut()
            .unwrap()
            .iter_mut()
            .find(|g| g["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no instance group {name}"))
    }

    pub fn remove_group(&mut self, name: &str) -> &mut Manifest {
        self.0["instance_groups"].as_sequence_mut().unwrap().retain(|g| g["name"].as_str() != Some(name));
        self
    }

    /// Sets the watch times of `update:`, the deployment's and every group's own.
    pub fn watch_times(&mut self, canary: &str, update: &str) -> &mut Manifest {
        let set = |u: &mut Value| {
            u["canary_watch_time"] = Value::String(canary.into());
            u["update_watch_time"] = Value::String(update.into());
        };
        set(&mut self.0["update"]);
        for group in self.0["instance_groups"].as_sequence_mut().unwrap() {
            if let Some(own) = group.get_mut("update") {
                set(own);
            }
        }
        self
    }

    /// The properties of the first job of group `group`.
    pub fn job_properties(&mut self, group: &str) -> &mut Value {
        &mut self.group(group)["jobs"][0]["properties"]
    }

    pub fn greeting(&mut self, text: &str) -> &mut Manifest {
        self.job_properties("web")["web"]["greeting"] = Value::String(text.into());
        self
    }

    pub fn instances(&mut self, group: &str, n: u64) -> &mut Manifest {
        self.group(group)["instances"] = Value::Number(n.into());
        self
    }
}

pub fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn deployed(out: Output) -> Deployed {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let summary = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "summary")
        .map(|e| serde_json::from_value(e["report"].clone()).expect("a summary report"));
    Deployed {
        ok: out.status.success(),
        code: out.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        summary,
    }
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    /// Whether the child has exited by itself.
    pub fn exited(&mut self) -> bool {
        self.0.as_mut().is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// SIGKILLs the child; answers whether it was still running.
    pub fn kill(&mut self) -> bool {
        let Some(mut child) = self.0.take() else { return false };
        let running = child.try_wait().ok().flatten().is_none();
        let _ = child.kill();
        let _ = child.wait();
        running
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free on every address right now.
pub fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// Processes (other than this one) whose command line has an argument containing `dir`.
pub fn processes_naming(dir: &Path) -> Vec<(u32, Vec<String>)> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> =
            raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.iter().any(|a| a.contains(&needle)) {
            out.push((pid, args));
        }
    }
    out
}

/// SIGKILLs the agents of `dir`'s VMs first, then anything else naming `dir` (their jobs).
pub fn kill_processes_naming(dir: &Path) {
    for _ in 0..3 {
        let procs = processes_naming(dir);
        if procs.is_empty() {
            return;
        }
        let (agents, rest): (Vec<_>, Vec<_>) =
            procs.into_iter().partition(|(_, args)| args.iter().any(|a| a == "agent"));
        for (pid, _) in agents.iter().chain(rest.iter()) {
            // SAFETY: plain kill(2) of a pid just read from /proc whose command line names the
            // test's own temporary state dir.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether process `pid` is alive (and not a zombie).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            !matches!(stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()), Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// `GET path` on `ip:port`: status and body.
pub fn http_get(ip: &str, port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&format!("{ip}:{port}").parse().unwrap(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// `GET path` that must answer 200; answers the body, trimmed.
pub fn get_ok(ip: &str, port: u16, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match http_get(ip, port, path) {
            Ok((200, body)) => return body.trim().to_string(),
            other if Instant::now() >= deadline => panic!("GET http://{ip}:{port}{path}: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The instance's IP on network `default`.
pub fn ip_of(record: &InstanceRecord) -> String {
    record.ips.get("default").cloned().unwrap_or_else(|| panic!("{} has no IP", record.label()))
}

pub use crate::common::copy_release_source as copy_tree;

/// A small seeded PRNG (splitmix64): the crash test prints its seed so a run can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The CF + Diego sample (`releases/cf-lite`, `releases/diego-lite`, `manifests/cf-lite.yml`).
impl Director {
    /// A fresh director on `127.<octet>.0.0/16` with the stemcell, the cloud config and the given
    /// sample releases (copied out of the work tree) uploaded.
    pub fn with_releases(octet: u8, releases: &[&str]) -> Director {
        let director = Director::bare(octet);
        for name in releases {
            let source = director.copy_release(name);
            director.upload_release(&source);
        }
        director
    }

    /// `manifests/cf-lite.yml` on this director's range, as a YAML value to change.
    pub fn cf_lite(&self) -> Manifest {
        let text = self.on_my_range(&fs::read_to_string(repo().join("manifests/cf-lite.yml")).unwrap());
        Manifest(serde_yaml_ng::from_str(&text).unwrap())
    }
}

/// One HTTP/1.0 request to `ip:port` with optional basic auth and body: status and body.
pub fn http_request(
    ip: &str,
    port: u16,
    method: &str,
    path: &str,
    basic_auth: Option<(&str, &str)>,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use base64::Engine as _;
    let mut stream = TcpStream::connect_timeout(&format!("{ip}:{port}").parse().unwrap(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {ip}\r\nContent-Length: {}\r\n", body.len());
    if let Some((user, password)) = basic_auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        head.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// SIGKILLs `pid` (a VM's agent or a job of this test's own state dir) and waits until it is
/// gone.
pub fn kill_and_wait(pid: u32) {
    // SAFETY: kill(2) of a pid the test read from its own state dir's VM.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "pid {pid} survived SIGKILL");
}

impl Director {
    /// `cck --report --json` of `deployment`: its exit status, the (problem kind, instance)
    /// pairs it lists, and the whole document.
    pub fn cck_report(&self, deployment: &str) -> (Option<i32>, BTreeSet<(String, String)>, serde_json::Value) {
        let out = self.rosh(&["-d", deployment, "cck", "--report", "--json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("cck --report --json: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
        let found = doc["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["kind"].as_str().unwrap().to_string(), p["instance"].as_str().unwrap().to_string()))
            .collect();
        (out.status.code(), found, doc)
    }
}

impl Director {
    /// Builds and uploads the local stemcell again as version `version` (the repository's
    /// definition with only the version changed).
    pub fn upload_stemcell_version(&self, version: &str) {
        let definition = fs::read_to_string(repo().join("stemcells/local/stemcell.yml"))
            .unwrap()
            .replace("version: \"1.0\"", &format!("version: \"{version}\""));
        let def = self.write(&format!("stemcell-{version}.yml"), &definition);
        let tarball = self.path(&format!("stemcell-{version}.tgz"));
        self.ok(&[
            "create-stemcell",
            "--local",
            "--definition",
            def.to_str().unwrap(),
            "--tarball",
            tarball.to_str().unwrap(),
        ]);
        self.ok(&["upload-stemcell", tarball.to_str().unwrap()]);
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Writes release `rack`'s source into `dir`: its job `peer` lists its peers (link `peers`)
/// in `config/peers.txt`, runs one process that does not listen on anything (so it runs on any
/// network, dynamic ones included), and has pre-start and post-deploy scripts that leave marks
/// in the VM's root; package `data` holds a text file the process checks.
pub fn rack_release(dir: &Path) {
    write(&dir.join("config/final.yml"), "final_name: rack\n");
    write(&dir.join("packages/data/spec"), "name: data\nfiles: [data/**/*]\n");
    write(&dir.join("packages/data/packaging"), "cp -a data/* \"$BOSH_INSTALL_TARGET/\"\n");
    write(&dir.join("src/data/motd.txt"), "served from a static machine\n");
    write(
        &dir.join("jobs/peer/spec"),
        "name: peer\ntemplates:\n  peers.hbs: config/peers.txt\n  bpm.yml.hbs: config/bpm.yml\n  \
         pre-start.hbs: bin/pre-start\n  post-deploy.hbs: bin/post-deploy\npackages: [data]\n\
         consumes:\n- {name: peers, type: peer}\nprovides:\n- {name: peers, type: peer}\nproperties: {}\n",
    );
    write(&dir.join("jobs/peer/monit"), "");
    write(
        &dir.join("jobs/peer/templates/peers.hbs"),
        "{{#with (link \"peers\")}}{{#each instances}}{{address}}\n{{/each}}{{/with}}",
    );
    write(
        &dir.join("jobs/peer/templates/bpm.yml.hbs"),
        "processes:\n- name: peer\n  executable: /bin/sh\n  args: [-c, 'test -s {{spec.root}}/packages/data/motd.txt && exec sleep 100000']\n",
    );
    write(&dir.join("jobs/peer/templates/pre-start.hbs"), "#!/bin/sh\ndate > \"$ROSH_ROOT/pre-start.ran\"\n");
    write(&dir.join("jobs/peer/templates/post-deploy.hbs"), "#!/bin/sh\ndate >> \"$ROSH_ROOT/post-deploy.ran\"\n");
}

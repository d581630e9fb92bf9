//! The operator commands end to end: the `rosh` binary against a director of its own (a state
//! dir with the local stemcell, the sample releases and the local cloud config moved to
//! `127.88.0.0/16`), the sample deployed once, then `deployments`, `instances`, `vms`,
//! `manifest`, `events`, `ssh`, `logs`, `stop`/`start`/`restart`, `stop --hard`, a crashed VM,
//! and `delete-deployment` — asserting what an operator sees and what is left on the machine.
//!
//! The commands change one deployment in sequence (stop, then start, then delete), so they
//! run as one test, in the order an operator would. Dropping the [`Director`] SIGKILLs every
//! process whose command line names its state dir, so a failing run leaves no VM behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rosh::state::{InstanceRecord, State};
use serde_json::Value;

const ROSH: &str = env!("CARGO_BIN_EXE_rosh");
/// This test's loopback range (the sample uses 127.77, other deploy tests 127.15x).
const OCTET: u8 = 88;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Director {
    tmp: tempfile::TempDir,
    state_dir: PathBuf,
}

impl Drop for Director {
    fn drop(&mut self) {
        for _ in 0..3 {
            let procs = processes_naming(&self.state_dir);
            if procs.is_empty() {
                break;
            }
            for (pid, _) in procs {
                // SAFETY: kill(2) of a pid just read from /proc whose command line names this
                // test's own temporary state dir.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Director {
    /// A director with no deployment and nothing uploaded.
    fn empty() -> Director {
        let tmp = tempfile::Builder::new().prefix("rosh-ops-").tempdir().unwrap();
        let state_dir = tmp.path().join("state");
        Director { tmp, state_dir }
    }

    /// A director with the stemcell, both sample releases and the cloud config uploaded.
    fn ready() -> Director {
        let d = Director::empty();
        let stemcell = d.path("stemcell.tgz");
        d.ok(&["create-stemcell", "--local", "--tarball", s(&stemcell)]);
        d.ok(&["upload-stemcell", s(&stemcell)]);
        for name in ["kv", "web"] {
            // create-release writes into its source: build from a copy.
            let source = d.path(&format!("src-{name}"));
            copy_tree(&repo().join("releases").join(name), &source);
            let tarball = d.path(&format!("{name}.tgz"));
            d.ok(&["create-release", s(&source), "--force", "--tarball", s(&tarball)]);
            d.ok(&["upload-release", s(&tarball)]);
        }
        let mut cloud: serde_yaml_ng::Value = serde_yaml_ng::from_str(&on_my_range(
            &fs::read_to_string(repo().join("manifests/cloud-config-local.yml")).unwrap(),
        ))
        .unwrap();
        // Compilation VMs share one range on this machine: give ours a port of its own.
        let port = std::net::TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port();
        let compilation = cloud["compilation"].as_mapping_mut().unwrap();
        compilation.remove("vm_type");
        compilation
            .insert("cloud_properties".into(), serde_yaml_ng::from_str(&format!("{{ssh_port: {port}}}")).unwrap());
        let cloud_path = d.write("cloud-config.yml", &serde_yaml_ng::to_string(&cloud).unwrap());
        d.ok(&["update-cloud-config", s(&cloud_path)]);
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(ROSH)
            .args(args)
            .current_dir(self.tmp.path())
            .env("ROSH_STATE_DIR", &self.state_dir)
            .env_remove("ROSH_DEPLOYMENT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs and insists on exit 0; answers stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "rosh {args:?} failed ({}):\n{}\n{}",
            out.status,
            text(&out.stderr),
            text(&out.stdout)
        );
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("rosh {args:?} did not print JSON ({e}):\n{out}"))
    }

    fn state(&self) -> State {
        State::open(&self.state_dir).unwrap()
    }

    fn record(&self, group: &str, index: u64) -> InstanceRecord {
        self.state().instances("demo").unwrap().into_iter().find(|r| r.group == group && r.index == index).unwrap()
    }

    /// The VM root of an instance, from its recorded endpoint.
    fn vm_root(&self, group: &str, index: u64) -> PathBuf {
        let vm = self.record(group, index).vm.expect("a VM");
        let endpoint: Value = serde_json::from_str(&vm.endpoint_json).unwrap();
        PathBuf::from(endpoint["root"].as_str().unwrap())
    }

    fn agents(&self) -> Vec<(u32, Vec<String>)> {
        processes_naming(&self.state_dir).into_iter().filter(|(_, args)| args.iter().any(|a| a == "agent")).collect()
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn on_my_range(text: &str) -> String {
    text.replace("127.77.", &format!("127.{OCTET}."))
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Processes (other than this one) with an argument naming `dir`.
fn processes_naming(dir: &Path) -> Vec<(u32, Vec<String>)> {
    let needle = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<String> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(text).collect();
        if args.iter().any(|a| a.contains(&needle)) {
            out.push((pid, args));
        }
    }
    out
}

/// Processes whose working directory is `dir` (commands run on a local VM run from its root).
fn processes_in(dir: &Path) -> Vec<(u32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if fs::read_link(entry.path().join("cwd")).ok().as_deref() != Some(dir) {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else { continue };
        out.push((pid, raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(text).collect()));
    }
    out
}

/// `instances --ps --json`, by `group/index`.
fn instances(d: &Director) -> std::collections::BTreeMap<String, Value> {
    let list = d.json(&["-d", "demo", "instances", "--ps", "--json"]);
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| (format!("{}/{}", i["group"].as_str().unwrap(), i["index"]), i.clone()))
        .collect()
}

fn process_state(d: &Director, slug: &str) -> String {
    instances(d)[slug]["process_state"].as_str().unwrap_or("-").to_string()
}

#[test]
fn commands_that_act_on_a_deployment_name_the_flag_when_it_is_missing() {
    let d = Director::empty();
    let commands: [&[&str]; 10] = [
        &["instances"],
        &["vms"],
        &["ssh", "web/0", "-c", "true"],
        &["logs", "web/0"],
        &["start"],
        &["stop"],
        &["restart"],
        &["delete-deployment"],
        &["manifest"],
        &["instances", "--ps", "--json"],
    ];
    for args in commands {
        let out = d.run(args);
        assert_eq!(out.status.code(), Some(1), "rosh {args:?}: {}", text(&out.stdout));
        let err = text(&out.stderr);
        assert!(err.contains("-d/--deployment NAME"), "rosh {args:?} should name the flag: {err}");
    }
    // A deployment that does not exist is said so, not shown empty.
    let out = d.run(&["-d", "nope", "instances"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("deployment `nope` does not exist"), "{}", text(&out.stderr));
    // Lists that need no deployment work on an empty director.
    assert_eq!(d.json(&["deployments", "--json"]), serde_json::json!([]));
    assert_eq!(d.json(&["events", "--json"]).as_array().map(Vec::len), Some(0));
}

#[test]
fn operator_commands_on_the_deployed_sample() {
    let d = Director::ready();
    let manifest = d.write("demo.yml", &on_my_range(&fs::read_to_string(repo().join("manifests/demo.yml")).unwrap()));
    d.ok(&["-d", "demo", "deploy", s(&manifest), "-n"]);

    // deployments: the sample with both releases and its three instances.
    let deployments = d.json(&["deployments", "--json"]);
    assert_eq!(deployments.as_array().unwrap().len(), 1, "{deployments}");
    let demo = &deployments[0];
    assert_eq!(demo["name"], "demo");
    assert_eq!(demo["instances"], 3);
    let releases: Vec<&str> = demo["releases"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(releases, ["kv", "web"]);
    assert!(demo["last_deployed_at"].is_string(), "{demo}");
    assert!(d.ok(&["deployments"]).contains("demo"));

    // instances --ps: every instance running, each with its processes running.
    let all = instances(&d);
    assert_eq!(all.keys().cloned().collect::<Vec<_>>(), ["kv/0", "web/0", "web/1"]);
    for (slug, i) in &all {
        assert_eq!(i["process_state"], "running", "{slug}: {i}");
        let processes = i["processes"].as_array().unwrap();
        assert!(!processes.is_empty(), "{slug} lists no process: {i}");
        assert!(processes.iter().all(|p| p["state"] == "running"), "{slug}: {i}");
    }
    assert_eq!(all["kv/0"]["processes"][0]["name"], "kvd");
    assert_eq!(all["web/0"]["processes"][0]["name"], "web");
    assert_eq!(all["kv/0"]["ips"], serde_json::json!([format!("127.{OCTET}.0.10")]));
    let kv_disk = all["kv/0"]["disk_cids"][0].as_str().expect("kv has a disk").to_string();
    let table = d.ok(&["-d", "demo", "instances", "--ps"]);
    assert!(table.lines().next().unwrap().starts_with("Instance"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("  kvd") && l.contains("running")), "a process row under kv:\n{table}");
    let details = d.ok(&["-d", "demo", "instances", "--details"]);
    assert!(details.contains(&kv_disk) && details.contains("VM CID"), "{details}");

    // vms: three VMs on the local CPI.
    let vms = d.json(&["-d", "demo", "vms", "--json"]);
    let vms = vms.as_array().unwrap();
    assert_eq!(vms.len(), 3, "{vms:?}");
    assert!(vms.iter().all(|v| v["cpi"] == "local" && v["vm_cid"].is_string()), "{vms:?}");

    // manifest: what was deployed (on our range).
    let shown: serde_yaml_ng::Value = serde_yaml_ng::from_str(&d.ok(&["-d", "demo", "manifest"])).unwrap();
    assert_eq!(shown["name"].as_str(), Some("demo"));
    assert_eq!(
        shown["instance_groups"][0]["networks"][0]["static_ips"][0].as_str(),
        Some(&*format!("127.{OCTET}.0.10"))
    );

    // events: the deploy, with the command that did it.
    let events = d.json(&["-d", "demo", "events", "--json", "--limit", "500"]);
    let deploy = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "deploy" && e["object_type"] == "deployment" && e["object_name"] == "demo")
        .unwrap_or_else(|| panic!("no deploy event: {events}"));
    assert!(deploy["context"].as_str().unwrap().contains("deploy"), "{deploy}");
    let ids: Vec<i64> = events.as_array().unwrap().iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(d.json(&["events", "--json", "--limit", "2"]).as_array().unwrap().len(), 2);

    // ssh: the command runs on the VM, from its root, with ROSH_ROOT; its status comes back.
    let config = d.ok(&["-d", "demo", "ssh", "web/0", "-c", "cat jobs/web/config/*"]);
    assert!(config.contains("\"port\": 8080") && config.contains("Hello from rosh"), "{config}");
    let root = d.ok(&["-d", "demo", "ssh", "web/0", "-c", "echo $ROSH_ROOT; pwd"]);
    let web0_root = d.vm_root("web", 0);
    assert_eq!(root.lines().collect::<Vec<_>>(), [s(&web0_root), s(&web0_root)]);
    let out = d.run(&["-d", "demo", "ssh", "web/0", "-c", "echo to-stderr >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("to-stderr"), "{}", text(&out.stderr));
    let by_id = format!("web/{}", d.record("web", 1).uuid);
    assert_eq!(d.ok(&["-d", "demo", "ssh", &by_id, "-c", "echo one"]), "one\n");
    let both = d.ok(&["-d", "demo", "ssh", "web", "-c", "echo hi"]);
    for index in [0, 1] {
        let line = format!("web/{}: hi", d.record("web", index).uuid);
        assert!(both.lines().any(|l| l == line), "{line} in:\n{both}");
    }
    let out = d.run(&["-d", "demo", "ssh", "web/0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("interactive shell is not supported"), "{}", text(&out.stderr));

    // logs: a tarball named after the instance, holding the job's logs.
    let logs_dir = d.path("logs");
    let printed = d.ok(&["-d", "demo", "logs", "kv/0", "--dir", s(&logs_dir)]);
    let tarball = PathBuf::from(printed.trim());
    let file_name = tarball.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        tarball.starts_with(&logs_dir) && file_name.starts_with("demo.kv.0.") && file_name.ends_with(".tgz"),
        "{printed}"
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(&tarball).unwrap()));
    let entries: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    assert!(entries.iter().any(|e| e.starts_with("kv-server/") && e.ends_with(".log")), "{entries:?}");

    // logs --follow: the job logs stream until Ctrl-C, and the tail on the VM ends with it.
    let kv_root = d.vm_root("kv", 0);
    let mut follow = Command::new(ROSH)
        .args(["-d", "demo", "logs", "kv/0", "--follow"])
        .env("ROSH_STATE_DIR", &d.state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("kvd: listening")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("logs --follow showed no kvd log line in 15 s: {seen:?}"),
        }
    }
    let tails =
        || processes_in(&kv_root).into_iter().filter(|(_, args)| args.first().is_some_and(|a| a == "tail")).count();
    assert_eq!(tails(), 1, "one tail runs on the VM");
    // SAFETY: kill(2) of the child this test spawned.
    unsafe { libc::kill(follow.id() as libc::pid_t, libc::SIGINT) };
    let status = follow.wait().unwrap();
    assert!(status.success(), "Ctrl-C ends --follow cleanly: {status}");
    let gone = Instant::now() + Duration::from_secs(5);
    while tails() > 0 && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(tails(), 0, "the tail on the VM ended with the connection");

    // stop / start / restart, with the state following.
    d.ok(&["-d", "demo", "stop", "web/0"]);
    let now = instances(&d);
    assert_eq!(now["web/0"]["process_state"], "stopped");
    assert_eq!(now["web/0"]["state"], "stopped");
    assert_eq!(now["web/1"]["process_state"], "running", "only web/0 was stopped");
    d.ok(&["-d", "demo", "start", "web/0"]);
    let now = instances(&d);
    assert_eq!(now["web/0"]["process_state"], "running");
    assert_eq!(now["web/0"]["state"], "started");
    let pid_before = now["web/1"]["processes"][0]["pid"].as_u64().unwrap();
    d.ok(&["-d", "demo", "restart", "web"]);
    let now = instances(&d);
    assert!(now.values().all(|i| i["process_state"] == "running"), "{now:?}");
    assert_ne!(now["web/1"]["processes"][0]["pid"].as_u64().unwrap(), pid_before, "restart starts a new process");

    // stop --hard: the VM goes, the disk stays (in the state and on the CPI).
    d.ok(&["-d", "demo", "stop", "--hard", "kv/0"]);
    let now = instances(&d);
    assert_eq!(now["kv/0"]["state"], "detached");
    assert!(now["kv/0"]["vm_cid"].is_null() && now["kv/0"]["process_state"].is_null(), "{}", now["kv/0"]);
    assert_eq!(now["kv/0"]["disk_cids"], serde_json::json!([kv_disk]));
    let record = d.record("kv", 0);
    assert!(record.vm.is_none() && !record.dirty, "{record:?}");
    assert_eq!(d.state().instance_disk("demo", &record.uuid).unwrap().map(|disk| disk.cid), Some(kv_disk.clone()));
    let disk_dir = d.state_dir.join("cpi/local/disks").join(&kv_disk);
    assert!(disk_dir.is_dir(), "the CPI keeps the disk at {}", disk_dir.display());
    assert!(!kv_root.exists(), "the VM directory is gone");
    assert_eq!(d.json(&["-d", "demo", "vms", "--json"]).as_array().unwrap().len(), 2);
    assert!(d.ok(&["-d", "demo", "instances"]).contains("- (detached)"));
    let out = d.run(&["-d", "demo", "start", "kv/0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("deploy"),
        "start of a detached instance points at deploy: {}",
        text(&out.stderr)
    );

    // A VM whose agent dies is an unresponsive agent within a few seconds.
    let web1_root = d.vm_root("web", 1);
    let pid: i32 = fs::read_to_string(web1_root.join("sys/run/agent.pid")).unwrap().trim().parse().unwrap();
    // SAFETY: kill(2) of this test's own VM agent.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let started = Instant::now();
    let state = process_state(&d, "web/1");
    assert_eq!(state, "unresponsive agent");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(process_state(&d, "web/0"), "running");

    // delete-deployment: a VM the CPI cannot delete stops it and is named; --force goes on.
    let web0 = d.record("web", 0);
    fs::write(web0_root.join("cpi.json"), "not the CPI's record").unwrap();
    let out = d.run(&["-d", "demo", "delete-deployment"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(&web0.label()) && err.contains("--force"), "{err}");
    let left = d.json(&["deployments", "--json"]);
    assert_eq!(left[0]["instances"], 1, "only the instance whose VM failed is left: {left}");
    d.ok(&["-d", "demo", "delete-deployment", "--force"]);
    assert_eq!(d.json(&["deployments", "--json"]), serde_json::json!([]));
    assert!(d.agents().is_empty(), "agents left running: {:?}", d.agents());
    let orphans: Vec<String> = d.state().orphaned_disks().unwrap().into_iter().map(|disk| disk.cid).collect();
    assert_eq!(orphans, [kv_disk], "the persistent disk is orphaned, not deleted");
    assert!(disk_dir.is_dir());
    let out = d.run(&["-d", "demo", "instances"]);
    assert_eq!(out.status.code(), Some(1));
    // Deleting what is gone is not an error (scripts can run it twice).
    assert!(d.ok(&["-d", "demo", "delete-deployment"]).contains("does not exist"));
}

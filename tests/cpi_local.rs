//! The local CPI through the BOSH CPI protocol: every call is a separate `rosh cpi serve local`
//! process fed a JSON request on stdin, as a BOSH director would run a CPI executable. The VMs it
//! creates are reached with OpenSSH's own `ssh` client, pinning the host key the CPI returned.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A state dir, a director key made by ssh-keygen, and the VMs created, deleted on drop.
struct Director {
    dir: tempfile::TempDir,
    key: PathBuf,
    public_key: String,
    vms: Vec<String>,
}

impl Director {
    fn new() -> Director {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "director", "-f"])
            .arg(&key)
            .output()
            .expect("ssh-keygen (openssh-client) is installed");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let public_key = std::fs::read_to_string(key.with_extension("pub")).unwrap().trim().to_string();
        Director { dir, key, public_key, vms: Vec::new() }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// One CPI call through `rosh cpi serve local`; the whole response.
    fn call(&self, method: &str, arguments: Value) -> Value {
        let request = json!({
            "method": method,
            "arguments": arguments,
            "context": {"director_uuid": "test", "request_id": "1"},
            "api_version": 2,
        });
        let mut child = Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(["cpi", "serve", "local"])
            .env("ROSH_STATE_DIR", self.state_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "cpi serve exited {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// A call that must succeed; its result.
    fn ok(&self, method: &str, arguments: Value) -> Value {
        let response = self.call(method, arguments);
        assert!(response["error"].is_null(), "{method} failed: {response}");
        response["result"].clone()
    }

    fn stemcell(&self) -> String {
        let image = self.dir.path().join("image");
        std::fs::write(&image, "local stemcell image").unwrap();
        self.ok("create_stemcell", json!([image, {"infrastructure": "local"}])).as_str().unwrap().to_string()
    }

    /// create_vm on `ip`; the v2 result `[cid, networks, {"ssh": …}]`.
    fn create_vm(&mut self, stemcell: &str, ip: &str) -> Value {
        self.create_vm_as("agent-1", stemcell, ip)
    }

    /// [`Self::create_vm`] with agent id `agent`.
    fn create_vm_as(&mut self, agent: &str, stemcell: &str, ip: &str) -> Value {
        let networks = json!({"default": {
            "type": "manual", "ip": ip, "netmask": "255.255.0.0", "gateway": "127.77.0.1",
            "default": ["dns", "gateway"], "cloud_properties": {}
        }});
        let env = json!({"bosh": {"authorized_keys": [self.public_key]}});
        let result = self.ok("create_vm", json!([agent, stemcell, {}, networks, [], env]));
        self.vms.push(result[0].as_str().unwrap().to_string());
        result
    }

    /// Runs `command` on the VM with OpenSSH, trusting only `host_key` for it.
    fn ssh(&self, ssh: &Value, host_key: &str, command: &str, stdin: &[u8]) -> Output {
        let known_hosts = self.dir.path().join(format!("known_hosts-{}", ssh["host"].as_str().unwrap()));
        std::fs::write(&known_hosts, format!("[{}]:{} {host_key}\n", ssh["host"].as_str().unwrap(), ssh["port"]))
            .unwrap();
        let mut child = Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "ConnectTimeout=10",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .arg("-i")
            .arg(&self.key)
            .arg("-p")
            .arg(ssh["port"].to_string())
            .arg(format!("vcap@{}", ssh["host"].as_str().unwrap()))
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh (openssh-client) is installed");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn agent(&self, ssh: &Value, verb: &str, request: Value) -> Value {
        let out = self.ssh(
            ssh,
            ssh["host_public_key"].as_str().unwrap(),
            &format!("rosh-agent {verb}"),
            request.to_string().as_bytes(),
        );
        assert!(
            out.status.success(),
            "{verb}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Director {
    fn drop(&mut self) {
        for vm in std::mem::take(&mut self.vms) {
            let _ = self.call("delete_vm", json!([vm]));
        }
    }
}

fn agent_pid(vm_root: &Path) -> i32 {
    std::fs::read_to_string(vm_root.join("sys/run/agent.pid")).unwrap().trim().parse().unwrap()
}

/// Whether `pid` is a live process (a zombie waiting to be reaped is not).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|s| s != "Z" && s != "X"),
        Err(_) => false,
    }
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_vm_made_over_the_protocol_answers_over_ssh_with_its_pinned_key_until_it_is_killed() {
    let mut d = Director::new();
    let info = d.ok("info", json!([]));
    assert_eq!(info["stemcell_formats"], json!(["local"]));
    assert_eq!(info["api_version"], 2);
    let stemcell = d.stemcell();

    let created = d.create_vm(&stemcell, "127.77.1.2");
    let cid = created[0].as_str().unwrap().to_string();
    assert_eq!(created[1]["default"]["ip"], "127.77.1.2");
    let ssh = created[2]["ssh"].clone();
    assert_eq!(ssh["host"], "127.77.1.2");
    assert_eq!(ssh["agent_command"], "rosh-agent");
    assert!(ssh["host_public_key"].as_str().unwrap().starts_with("ssh-ed25519 "), "{ssh}");

    // The CPI process has exited; the VM lives on and its agent answers over SSH.
    let state = d.agent(&ssh, "get_state", json!({}));
    let root = PathBuf::from(ssh["root"].as_str().unwrap());
    assert_eq!(Path::new(state["root"].as_str().unwrap()), root);
    assert_eq!(state["job_state"], "stopped");
    let out = d.ssh(&ssh, ssh["host_public_key"].as_str().unwrap(), "echo \"$ROSH_ROOT\"", b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), root.to_str().unwrap());

    // Any other host key is refused by the client: the key really is the VM's own.
    let impostor = Director::new();
    let out = d.ssh(&ssh, &impostor.public_key, "true", b"");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(d.ok("has_vm", json!([cid])), json!(true));
    d.ok("set_vm_metadata", json!([cid, {"deployment": "demo", "instance_group": "web", "index": "0"}]));
    let record: Value = serde_json::from_slice(&std::fs::read(root.join("cpi.json")).unwrap()).unwrap();
    assert_eq!(record["metadata"]["instance_group"], "web");

    // A command running over SSH when the VM crashes goes down with it.
    let known_hosts = d.dir.path().join("known_hosts-long");
    std::fs::write(
        &known_hosts,
        format!("[{}]:{} {}\n", ssh["host"].as_str().unwrap(), ssh["port"], ssh["host_public_key"].as_str().unwrap()),
    )
    .unwrap();
    let mut long = Command::new("ssh")
        .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .arg("-i")
        .arg(&d.key)
        .arg("-p")
        .arg(ssh["port"].to_string())
        .arg(format!("vcap@{}", ssh["host"].as_str().unwrap()))
        .arg("echo $$; exec sleep 120")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(long.stdout.take().unwrap()), &mut line).unwrap();
    let sleeper: i32 = line.trim().parse().unwrap();
    assert_eq!(unsafe { libc::kill(sleeper, 0) }, 0, "the command runs");

    // SIGKILL the agent: the VM has crashed.
    let pid = agent_pid(&root);
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("has_vm is false", Duration::from_secs(5), || d.ok("has_vm", json!([cid])) == json!(false));
    wait_until("the command died with the VM", Duration::from_secs(5), || !alive(sleeper));
    let _ = long.kill();
    let _ = long.wait();

    d.ok("delete_vm", json!([cid]));
    assert!(!root.exists(), "delete_vm removes the VM directory");
    d.vms.clear();
    let again = d.call("delete_vm", json!([cid]));
    assert_eq!(again["error"]["type"], "Bosh::Clouds::VMNotFound", "{again}");
    assert_eq!(again["error"]["ok_to_retry"], false);
}

#[test]
fn unknown_methods_and_bad_requests_answer_bosh_errors() {
    let d = Director::new();
    let unknown = d.call("calculate_vm_cloud_properties", json!([{"cpu": 1}]));
    assert_eq!(unknown["error"]["type"], "Bosh::Clouds::NotImplemented", "{unknown}");
    let missing = d.call("has_vm", json!([]));
    assert!(!missing["error"].is_null(), "{missing}");
    let no_stemcell = d.call(
        "create_vm",
        json!(["a", "sc-nothere", {}, {"default": {"type": "manual", "ip": "127.77.1.9"}}, [], {"bosh": {"authorized_keys": [d.public_key]}}]),
    );
    assert_eq!(no_stemcell["error"]["type"], "Bosh::Clouds::VMCreationFailed", "{no_stemcell}");
}

#[test]
fn a_persistent_disk_keeps_its_data_when_its_vm_is_deleted_and_moves_to_a_new_vm() {
    let mut d = Director::new();
    let stemcell = d.stemcell();
    let first = d.create_vm(&stemcell, "127.77.2.2");
    let vm1 = first[0].as_str().unwrap().to_string();
    let ssh1 = first[2]["ssh"].clone();

    let disk = d.ok("create_disk", json!([1024, {}, vm1])).as_str().unwrap().to_string();
    let hint = d.ok("attach_disk", json!([vm1, disk]));
    assert_eq!(d.ok("get_disks", json!([vm1])), json!([disk]));
    let mounted = d.agent(&ssh1, "mount_disk", json!({"disk_id": disk, "hint": hint}));
    assert_eq!(mounted["disk_id"], disk);
    let out = d.ssh(
        &ssh1,
        ssh1["host_public_key"].as_str().unwrap(),
        "cat > store/precious.txt",
        b"written before the VM was deleted\n",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A disk attached to one VM cannot be deleted or attached elsewhere.
    assert!(!d.call("delete_disk", json!([disk]))["error"].is_null());

    d.ok("detach_disk", json!([vm1, disk]));
    let not_attached = d.call("detach_disk", json!([vm1, disk]));
    assert_eq!(not_attached["error"]["type"], "Bosh::Clouds::DiskNotAttached", "{not_attached}");
    d.ok("delete_vm", json!([vm1]));
    d.vms.retain(|v| v != &vm1);
    assert_eq!(d.ok("has_disk", json!([disk])), json!(true), "the disk outlives its VM");

    let second = d.create_vm(&stemcell, "127.77.2.3");
    let vm2 = second[0].as_str().unwrap().to_string();
    let ssh2 = second[2]["ssh"].clone();
    let hint = d.ok("attach_disk", json!([vm2, disk]));
    d.agent(&ssh2, "mount_disk", json!({"disk_id": disk, "hint": hint}));
    let out = d.ssh(&ssh2, ssh2["host_public_key"].as_str().unwrap(), "cat store/precious.txt", b"");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "written before the VM was deleted\n");

    // The agent refuses to mount a disk that is not the one at store.
    let wrong = d.ssh(
        &ssh2,
        ssh2["host_public_key"].as_str().unwrap(),
        "rosh-agent mount_disk",
        json!({"disk_id": "disk-other"}).to_string().as_bytes(),
    );
    assert!(!wrong.status.success());

    d.ok("detach_disk", json!([vm2, disk]));
    d.ok("delete_disk", json!([disk]));
    assert_eq!(d.ok("has_disk", json!([disk])), json!(false));
}

#[test]
fn a_second_disk_is_attached_beside_the_first_for_a_migration_and_a_third_is_refused() {
    let mut d = Director::new();
    let stemcell = d.stemcell();
    let vm = d.create_vm(&stemcell, "127.77.5.2")[0].as_str().unwrap().to_string();
    let root = d.state_dir().join("cpi/local/vms").join(&vm);
    let disks = d.state_dir().join("cpi/local/disks");
    let [a, b, c] = [0, 1, 2].map(|_| d.ok("create_disk", json!([1024, {}, vm])).as_str().unwrap().to_string());

    assert_eq!(d.ok("attach_disk", json!([vm, a])), json!({"path": "store"}));
    assert_eq!(d.ok("attach_disk", json!([vm, b])), json!({"path": "store_migration_target"}));
    assert_eq!(
        d.ok("attach_disk", json!([vm, b])),
        json!({"path": "store_migration_target"}),
        "attaching again answers the same place"
    );
    assert_eq!(fs::read_link(root.join("store")).unwrap(), disks.join(&a));
    assert_eq!(fs::read_link(root.join("store_migration_target")).unwrap(), disks.join(&b));
    assert_eq!(d.ok("get_disks", json!([vm])), json!([a, b]));
    let third = d.call("attach_disk", json!([vm, c]));
    assert!(third["error"]["message"].as_str().unwrap().contains("attaches at most 2"), "{third}");

    // Detaching the first frees `store` and leaves the second where it is; the next attach
    // takes `store` again.
    d.ok("detach_disk", json!([vm, a]));
    assert!(fs::symlink_metadata(root.join("store")).is_err());
    assert_eq!(fs::read_link(root.join("store_migration_target")).unwrap(), disks.join(&b));
    d.ok("detach_disk", json!([vm, b]));
    assert_eq!(d.ok("attach_disk", json!([vm, b])), json!({"path": "store"}));
    assert_eq!(fs::read_link(root.join("store")).unwrap(), disks.join(&b));
    assert!(fs::symlink_metadata(root.join("store_migration_target")).is_err());
    assert_eq!(d.ok("get_disks", json!([vm])), json!([b]));

    // Deleting the VM releases both of its places and leaves every disk's files alone.
    assert_eq!(d.ok("attach_disk", json!([vm, c])), json!({"path": "store_migration_target"}));
    d.ok("delete_vm", json!([vm]));
    d.vms.retain(|v| v != &vm);
    for disk in [&a, &b, &c] {
        assert!(disks.join(disk).join(".rosh-disk-id").is_file(), "{disk} kept");
        d.ok("delete_disk", json!([disk]));
    }
}

#[test]
fn a_leftover_vm_of_the_same_agent_is_cleared_but_a_vm_being_replaced_is_not() {
    let mut d = Director::new();
    let stemcell = d.stemcell();
    let cid = |v: Value| v[0].as_str().unwrap().to_string();
    let has = |d: &Director, vm: &str| d.ok("has_vm", json!([vm])) == json!(true);
    let old = cid(d.create_vm_as("inst", &stemcell, "127.77.6.2"));
    // A new VM beside the old one (create-swap-delete) names the one it replaces: both live.
    let beside = format!("inst/{old}");
    let first_try = cid(d.create_vm_as(&beside, &stemcell, "127.77.6.3"));
    assert!(has(&d, &old) && has(&d, &first_try));
    // The same request again (a run that died before recording the answer): the leftover goes,
    // the VM being replaced stays.
    let second_try = cid(d.create_vm_as(&beside, &stemcell, "127.77.6.4"));
    assert!(has(&d, &old) && has(&d, &second_try));
    assert!(!has(&d, &first_try), "the leftover of the same request is deleted");
    // A VM made for the instance itself clears every VM under its name.
    let fresh = cid(d.create_vm_as("inst", &stemcell, "127.77.6.5"));
    assert!(!has(&d, &old) && !has(&d, &second_try) && has(&d, &fresh));
    assert_eq!(fs::read_dir(d.state_dir().join("cpi/local/vms")).unwrap().count(), 1, "one VM directory left");
}

#[test]
fn an_address_another_program_listens_on_is_refused_at_once() {
    let d = Director::new();
    let stemcell = d.stemcell();
    let _squatter = std::net::TcpListener::bind("127.77.4.2:6868").unwrap();
    let started = Instant::now();
    let refused = d.call(
        "create_vm",
        json!(["a", stemcell, {}, {"default": {"type": "manual", "ip": "127.77.4.2"}}, [], {"bosh": {"authorized_keys": [d.public_key]}}]),
    );
    assert_eq!(refused["error"]["type"], "Bosh::Clouds::VMCreationFailed", "{refused}");
    assert!(refused["error"]["message"].as_str().unwrap().contains("cannot be listened on"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused before any agent start timeout");
}

#[test]
fn reboot_restarts_the_agent_with_the_same_host_key() {
    let mut d = Director::new();
    let stemcell = d.stemcell();
    let created = d.create_vm(&stemcell, "127.77.3.2");
    let cid = created[0].as_str().unwrap().to_string();
    let ssh = created[2]["ssh"].clone();
    let root = PathBuf::from(ssh["root"].as_str().unwrap());
    let before = agent_pid(&root);
    d.ok("reboot_vm", json!([cid]));
    assert_ne!(agent_pid(&root), before, "a new agent process");
    // The pinned key still matches.
    d.agent(&ssh, "get_state", json!({}));
    // Two VMs cannot share an address.
    let clash = d.call(
        "create_vm",
        json!(["b", stemcell, {}, {"default": {"type": "manual", "ip": "127.77.3.2"}}, [], {"bosh": {"authorized_keys": [d.public_key]}}]),
    );
    assert_eq!(clash["error"]["type"], "Bosh::Clouds::VMCreationFailed", "{clash}");
    assert!(clash["error"]["message"].as_str().unwrap().contains("in use"), "{clash}");

    // A second VM for the same agent id is what a director that died right after create_vm asks
    // for when it tries again: the first VM is deleted, not orphaned.
    let old_pid = agent_pid(&root);
    let again = d.create_vm(&stemcell, "127.77.3.3");
    assert_ne!(again[0], json!(cid));
    assert!(!root.exists(), "the stale VM's directory is gone");
    assert!(!alive(old_pid), "the stale VM's agent is gone");
    assert_eq!(d.ok("has_vm", json!([cid])), json!(false));
    d.vms.retain(|v| v != &cid);
}

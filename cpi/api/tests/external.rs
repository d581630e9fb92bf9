//! `ExternalCpi` against real external CPIs: `#!/bin/sh` scripts written into a temporary
//! directory, run as BOSH runs `bin/cpi` (one process per call, JSON on stdin and stdout).
//! Each script finds its directory in `$CPI_DIR`, so it can keep a call counter and save the
//! request it was given.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rosh_cpi::external::{ExternalCpi, RetryPolicy};
use rosh_cpi::{Cid, Cpi, CreateDisk, CreateVm, DiskAttachment, ErrorKind, NetworkSettings};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Shell that counts the calls in `$CPI_DIR/calls` and leaves the count in `$n`.
const COUNT: &str = r#"n=$(cat "$CPI_DIR/calls" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "$CPI_DIR/calls""#;

/// Shell that saves the request (stdin) to `$CPI_DIR/request-$n.json`.
const SAVE_REQUEST: &str = r#"cat > "$CPI_DIR/request-$n.json""#;

struct Fixture {
    dir: TempDir,
    exe: PathBuf,
}

impl Fixture {
    /// A CPI executable whose body (after the shebang) is `body`.
    fn new(body: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("cpi");
        fs::write(&exe, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        Fixture { dir, exe }
    }

    /// A client with fast retries, pointed at the script and its directory.
    fn cpi(&self) -> ExternalCpi {
        ExternalCpi::new(self.exe.clone())
            .env("CPI_DIR", self.dir.path())
            .retry(RetryPolicy { max_attempts: 3, backoff: Duration::from_millis(10) })
    }

    fn calls(&self) -> u32 {
        fs::read_to_string(self.dir.path().join("calls")).map_or(0, |s| s.trim().parse().unwrap())
    }

    fn request(&self, n: u32) -> Value {
        let text = fs::read_to_string(self.dir.path().join(format!("request-{n}.json"))).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn create_vm_request() -> CreateVm {
    CreateVm {
        agent_id: "agent-7".into(),
        stemcell_cid: "ami-478585".into(),
        cloud_properties: json!({"instance_type": "m5.large"}),
        networks: BTreeMap::from([(
            "private".to_string(),
            NetworkSettings {
                kind: "manual".into(),
                ip: Some("10.230.13.6".into()),
                netmask: Some("255.255.255.0".into()),
                gateway: Some("10.230.13.1".into()),
                dns: vec![],
                default: vec!["dns".into(), "gateway".into()],
                cloud_properties: json!({"subnet": "subnet-48rt54"}),
            },
        )]),
        disk_cids: vec!["vol-3475945".into()],
        env: json!({"bosh": {"group": "my-group"}}),
    }
}

fn v2_create_vm_script() -> String {
    format!(
        r#"{COUNT}
{SAVE_REQUEST}
echo "creating instance" >&2
echo "some chatter on stdout first"
echo '{{"result": ["i-384959", {{"private": {{"type": "manual", "ip": "10.230.13.6", "netmask": "255.255.255.0", "gateway": "10.230.13.1", "dns": ["8.8.8.8"], "default": ["dns", "gateway"]}}}}], "error": null, "log": "created i-384959"}}'"#
    )
}

#[tokio::test]
async fn create_vm_v2_answer_decodes_into_created_vm() {
    let fx = Fixture::new(&v2_create_vm_script());
    let cpi = fx.cpi();

    let vm = cpi.create_vm(create_vm_request()).await.unwrap();

    assert_eq!(vm.vm_cid, Cid::from("i-384959"));
    assert_eq!(vm.networks["private"].ip.as_deref(), Some("10.230.13.6"));
    // The networks are the ones the CPI answered, not the ones requested.
    assert_eq!(vm.networks["private"].dns, vec!["8.8.8.8".to_string()]);
    assert_eq!(vm.ssh, None);
    let logs = cpi.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].method, "create_vm");
    assert_eq!(logs[0].log, "created i-384959");
    assert_eq!(logs[0].stderr.trim(), "creating instance");
}

#[tokio::test]
async fn the_request_on_stdin_is_boshs_envelope() {
    let fx = Fixture::new(&format!("echo \"$@\" > \"$CPI_DIR/args\"\n{}", v2_create_vm_script()));
    let cpi = fx.cpi().args(["-configPath", "/etc/cpi.json"]).context(json!({"director_uuid": "dir-1"}));

    cpi.create_vm(create_vm_request()).await.unwrap();
    cpi.delete_vm("i-384959".into()).await.unwrap();

    let request = fx.request(1);
    assert_eq!(request["method"], "create_vm");
    assert_eq!(request["api_version"], 2);
    assert_eq!(
        request["arguments"],
        json!([
            "agent-7",
            "ami-478585",
            {"instance_type": "m5.large"},
            {"private": {
                "type": "manual", "ip": "10.230.13.6", "netmask": "255.255.255.0",
                "gateway": "10.230.13.1", "default": ["dns", "gateway"],
                "cloud_properties": {"subnet": "subnet-48rt54"}
            }},
            ["vol-3475945"],
            {"bosh": {"group": "my-group"}}
        ])
    );
    assert_eq!(request["context"]["director_uuid"], "dir-1");
    let first_id = request["context"]["request_id"].as_str().unwrap().to_string();
    assert!(first_id.starts_with("cpi-"), "{first_id}");

    let request = fx.request(2);
    assert_eq!(request["method"], "delete_vm");
    assert_eq!(request["arguments"], json!(["i-384959"]));
    assert_ne!(request["context"]["request_id"], first_id.as_str(), "each call gets a fresh request_id");
    assert_eq!(fs::read_to_string(fx.path("args")).unwrap().trim(), "-configPath /etc/cpi.json");
}

#[tokio::test]
async fn disk_calls_send_size_in_mib_and_bosh_argument_order() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
{SAVE_REQUEST}
case "$n" in
  1) echo '{{"result": "vol-1", "error": null, "log": ""}}' ;;
  *) echo '{{"result": "/dev/sdf", "error": null, "log": ""}}' ;;
esac"#
    ));
    let cpi = fx.cpi();

    let disk = cpi
        .create_disk(CreateDisk { size_mb: 10240, cloud_properties: json!({"type": "gp3"}), vm_locality: None })
        .await
        .unwrap();
    let hint = cpi.attach_disk(DiskAttachment { vm_cid: "i-1".into(), disk_cid: disk.clone() }).await.unwrap();

    assert_eq!(disk, Cid::from("vol-1"));
    assert_eq!(hint, json!("/dev/sdf"));
    assert_eq!(fx.request(1)["arguments"], json!([10240, {"type": "gp3"}, null]));
    assert_eq!(fx.request(2)["method"], "attach_disk");
    assert_eq!(fx.request(2)["arguments"], json!(["i-1", "vol-1"]));
}

#[tokio::test]
async fn api_version_one_is_sent_when_asked_and_a_plain_cid_answer_decodes() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
{SAVE_REQUEST}
echo '{{"result": "i-v1", "error": null, "log": ""}}'"#
    ));
    let cpi = fx.cpi().api_version(1);

    let request = create_vm_request();
    let vm = cpi.create_vm(request.clone()).await.unwrap();

    assert_eq!(fx.request(1)["api_version"], 1);
    assert_eq!(vm.vm_cid, Cid::from("i-v1"));
    // A v1 CPI reports no networks: the requested ones stand.
    assert_eq!(vm.networks, request.networks);
}

#[tokio::test]
async fn a_retryable_error_is_retried_and_the_second_answer_wins() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
cat > /dev/null
if [ "$n" -eq 1 ]; then
  echo '{{"result": null, "error": {{"type": "Bosh::Clouds::CloudError", "message": "rate limited", "ok_to_retry": true}}, "log": "throttled"}}'
else
  echo '{{"result": true, "error": null, "log": "found it"}}'
fi"#
    ));
    let cpi = fx.cpi();

    let exists = cpi.has_vm("i-1".into()).await.unwrap();

    assert!(exists);
    assert_eq!(fx.calls(), 2);
    let logs = cpi.logs();
    assert_eq!(
        logs.iter().map(|l| (l.attempt, l.log.as_str())).collect::<Vec<_>>(),
        [(1, "throttled"), (2, "found it")]
    );
    assert_ne!(logs[0].request_id, logs[1].request_id);
}

#[tokio::test]
async fn a_retryable_error_forever_gives_up_after_max_attempts_with_doubling_backoff() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
cat > /dev/null
echo '{{"result": null, "error": {{"type": "Bosh::Clouds::VMCreationFailed", "message": "no capacity in zone", "ok_to_retry": true}}, "log": ""}}'"#
    ));
    let cpi = fx.cpi().retry(RetryPolicy { max_attempts: 3, backoff: Duration::from_millis(60) });

    let started = Instant::now();
    let err = cpi.create_vm(create_vm_request()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::VmCreationFailed);
    assert_eq!(err.message, "no capacity in zone");
    assert!(err.ok_to_retry);
    assert_eq!(fx.calls(), 3);
    // 60 ms before the second attempt, 120 ms before the third.
    assert!(started.elapsed() >= Duration::from_millis(180), "{:?}", started.elapsed());
}

#[tokio::test]
async fn vm_not_found_is_typed_and_not_retried() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
cat > /dev/null
echo '{{"result": null, "error": {{"type": "Bosh::Clouds::VMNotFound", "message": "VM `i-gone` not found", "ok_to_retry": false}}, "log": ""}}'"#
    ));
    let cpi = fx.cpi();

    let err = cpi.delete_vm("i-gone".into()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::VmNotFound);
    assert_eq!(err.message, "VM `i-gone` not found");
    assert!(!err.ok_to_retry);
    assert_eq!(fx.calls(), 1);
}

#[tokio::test]
async fn a_response_wins_over_a_non_zero_exit_as_in_bosh() {
    let fx = Fixture::new(
        r#"cat > /dev/null
echo '{"result": null, "error": {"type": "Bosh::Clouds::DiskNotFound", "message": "vol-9 is gone", "ok_to_retry": false}, "log": ""}'
exit 1"#,
    );

    let err = fx.cpi().delete_disk("vol-9".into()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::DiskNotFound);
    assert_eq!(err.message, "vol-9 is gone");
}

#[tokio::test]
async fn garbage_output_is_an_other_error_with_the_output() {
    let fx = Fixture::new(
        r#"cat > /dev/null
echo "cpi.rb:12: undefined method 'each' for nil" >&2
echo "this is not json""#,
    );

    let err = fx.cpi().has_disk("vol-1".into()).await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Other);
    assert!(!err.ok_to_retry);
    assert!(err.message.contains(&fx.exe.display().to_string()), "{}", err.message);
    assert!(err.message.contains("has_disk: answered no JSON response"), "{}", err.message);
    assert!(err.message.contains("undefined method 'each' for nil"), "{}", err.message);
    assert!(err.message.contains("this is not json"), "{}", err.message);
}

#[tokio::test]
async fn a_non_zero_exit_without_a_response_is_an_other_error_with_stderr() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
echo "cannot read config /etc/cpi.json" >&2
exit 3"#
    ));

    let cpi = fx.cpi();

    let err = cpi.info().await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Other);
    assert!(err.message.contains("exit status: 3"), "{}", err.message);
    assert!(err.message.contains("cannot read config /etc/cpi.json"), "{}", err.message);
    assert_eq!(fx.calls(), 1, "a crash is not retried");
    // The stderr is kept for the debug log even though there was no response.
    let logs = cpi.logs();
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].log, "");
    assert!(logs[0].stderr.contains("cannot read config"), "{:?}", logs[0]);
}

#[tokio::test]
async fn a_call_that_runs_too_long_is_killed_and_says_it_timed_out() {
    let fx = Fixture::new(&format!(
        r#"{COUNT}
echo $$ > "$CPI_DIR/pid"
exec sleep 30"#
    ));
    let cpi = fx.cpi().timeout(Duration::from_millis(300));

    let started = Instant::now();
    let err = cpi.reboot_vm("i-1".into()).await.unwrap_err();

    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(err.kind, ErrorKind::Other);
    assert!(err.message.contains("reboot_vm: timed out after 300ms"), "{}", err.message);
    assert_eq!(fx.calls(), 1);
    // The child (now `sleep`, through exec) was killed, not left behind.
    let pid = fs::read_to_string(fx.path("pid")).unwrap().trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(&pid) {
        assert!(Instant::now() < deadline, "CPI process {pid} still running after the timeout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn is_running(pid: &str) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_missing_executable_is_an_other_error_naming_it() {
    let exe = Path::new("/nonexistent/bosh-cpi");

    let err = ExternalCpi::new(exe.into()).info().await.unwrap_err();

    assert_eq!(err.kind, ErrorKind::Other);
    assert!(err.message.contains("/nonexistent/bosh-cpi"), "{}", err.message);
}

#[tokio::test]
async fn every_call_is_appended_to_the_log_file() {
    let fx = Fixture::new(
        r#"read -r request
case "$request" in
  *'"method":"info"'*) echo '{"result": {"stemcell_formats": ["warden-tar"], "api_version": 2}, "error": null, "log": "info asked"}' ;;
  *) echo "deleting" >&2; echo '{"result": null, "error": null, "log": "deleted sc-1"}' ;;
esac"#,
    );
    let log_file = fx.path("cpi.log");
    let cpi = fx.cpi().log_file(&log_file);

    let info = cpi.info().await.unwrap();
    cpi.delete_stemcell("sc-1".into()).await.unwrap();

    assert_eq!(info.stemcell_formats, vec!["warden-tar".to_string()]);
    assert_eq!(info.api_version, 2);
    let text = fs::read_to_string(&log_file).unwrap();
    let info_at = text.find("info attempt 1").expect(&text);
    let delete_at = text.find("delete_stemcell attempt 1").expect(&text);
    assert!(info_at < delete_at, "{text}");
    assert!(text.contains("info asked"), "{text}");
    assert!(text.contains("deleted sc-1"), "{text}");
    assert!(text.contains("--- stderr\ndeleting"), "{text}");
    assert_eq!(cpi.take_logs().len(), 2);
    assert!(cpi.logs().is_empty());
}

//! The sample releases (`releases/kv`, `releases/web`) and manifests (`manifests/`) that the
//! deploy pipeline deploys, checked with the tools that exist without a deploy:
//! - `rosh create-release` builds both (on copies outside the git work tree), and a second run
//!   creates no new version: fingerprints are stable, also across fresh copies, and tarballs are
//!   byte-identical.
//! - `rosh validate` accepts `manifests/demo.yml` against `manifests/cloud-config-local.yml`;
//!   `rosh int` applies `operations/scale-web.yml`.
//! - Each package is compiled the way a compilation VM does it: its tarball taken out of the
//!   release tarball, unpacked, and its `packaging` run by `sh -e` with `BOSH_COMPILE_TARGET` and
//!   `BOSH_INSTALL_TARGET` set. Then the programs run on 127.0.0.1 and free ports: kvd answers
//!   the line protocol and keeps answered writes across a SIGKILL and a torn record; the web app
//!   answers `/`, `/health` and a `/count` shared by two instances through kvd; the smoke test
//!   passes against them and fails against a dead instance.
//! - The job templates render with rosh's renderer (from the job tarballs, with the properties,
//!   links and `spec` a deploy gives them) into a VM-like root, and the processes their
//!   `config/bpm.yml` defines, read as the agent reads it, serve as above; `bin/pre-start`
//!   passes and the errand's `bin/run` succeeds.
//!
//! Every child process is killed when its guard drops, and every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rosh, stderr, stdout};
use rosh::agent::procdef::{ProcessKind, parse_bpm};
use rosh::plan::desired::{DesiredInstance, DesiredJob, ResolvedLink};
use rosh::template::{JobTemplates, RenderContext, render_job};
use serde_json::{Value, json};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const START_TIMEOUT: Duration = Duration::from_secs(20);

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Copies `releases/<name>` (its source, no build output) to a fresh directory outside any git
/// work tree, so other people's uncommitted changes do not make create-release refuse it.
fn copy_release(name: &str, tmp: &Path) -> PathBuf {
    let dir = tmp.join(name);
    common::copy_release_source(&repo().join("releases").join(name), &dir);
    dir
}

/// `rosh create-release DIR --tarball OUT --json`, which must succeed.
fn create_release(dir: &Path, tarball: &Path) -> serde_json::Value {
    let out = rosh(
        &["create-release", dir.to_str().unwrap(), "--tarball", tarball.to_str().unwrap(), "--json"],
        dir.parent().unwrap(),
    );
    assert!(out.status.success(), "create-release {} failed:\n{}", dir.display(), stderr(&out));
    serde_json::from_str(&stdout(&out)).expect("create-release --json prints JSON")
}

/// name → fingerprint of the jobs or packages of a create-release result.
fn fingerprints(json: &serde_json::Value, kind: &str) -> Vec<(String, String)> {
    json[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_string(), a["fingerprint"].as_str().unwrap().to_string()))
        .collect()
}

fn names(list: &[(String, String)]) -> Vec<&str> {
    list.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn both_releases_build_and_a_second_build_is_the_same_release() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, jobs, packages) in [
        ("kv", vec!["kv-server"], vec!["kvd"]),
        ("web", vec!["smoke-test", "web"], vec!["python3-shim", "smoke-tests", "webapp"]),
    ] {
        let dir = copy_release(name, tmp.path());
        let first_tgz = tmp.path().join(format!("{name}-1.tgz"));
        let first = create_release(&dir, &first_tgz);
        assert_eq!(first["name"], name);
        assert_eq!(first["version"], "0+dev.1");
        assert_eq!(first["new_version"], true);
        let first_jobs = fingerprints(&first, "jobs");
        let mut job_names = names(&first_jobs);
        job_names.sort();
        assert_eq!(job_names, jobs, "{name}: jobs");
        let first_packages = fingerprints(&first, "packages");
        let mut package_names = names(&first_packages);
        package_names.sort();
        assert_eq!(package_names, packages, "{name}: packages");

        let second_tgz = tmp.path().join(format!("{name}-2.tgz"));
        let second = create_release(&dir, &second_tgz);
        assert_eq!(second["new_version"], false, "{name}: nothing changed, so no new version");
        assert_eq!(second["version"], "0+dev.1");
        for kind in ["jobs", "packages"] {
            assert_eq!(fingerprints(&first, kind), fingerprints(&second, kind), "{name}: {kind}");
            for artifact in second[kind].as_array().unwrap() {
                assert_eq!(artifact["status"], "reused", "{name}: {artifact}");
            }
        }
        assert_eq!(fs::read(&first_tgz).unwrap(), fs::read(&second_tgz).unwrap(), "{name}: reproducible tarball");

        // A fresh copy (new inodes and mtimes) has the same fingerprints.
        let other = tempfile::tempdir().unwrap();
        let fresh = create_release(&copy_release(name, other.path()), &other.path().join("fresh.tgz"));
        for kind in ["jobs", "packages"] {
            assert_eq!(fingerprints(&first, kind), fingerprints(&fresh, kind), "{name}: {kind} in a fresh copy");
        }
    }
}

#[test]
fn the_demo_manifest_validates_against_the_local_cloud_config() {
    let out = rosh(
        &["validate", "manifests/demo.yml", "--cloud-config", "manifests/cloud-config-local.yml", "--json"],
        repo(),
    );
    assert!(out.status.success(), "validate failed:\n{}{}", stdout(&out), stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["warnings"], serde_json::json!([]), "no warnings either: {report}");

    // The two groups deployed, the errand, and the releases they come from.
    let manifest = common::parse(&fs::read_to_string(repo().join("manifests/demo.yml")).unwrap());
    let groups: Vec<(&str, u64, Option<&str>)> = manifest["instance_groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["instances"].as_u64().unwrap(), g["lifecycle"].as_str()))
        .collect();
    assert_eq!(groups, [("kv", 1, None), ("web", 2, None), ("smoke-tests", 1, Some("errand"))]);
    assert_eq!(manifest["instance_groups"][0]["persistent_disk"].as_u64(), Some(1024));
    for release in manifest["releases"].as_sequence().unwrap() {
        assert_eq!(release["version"].as_str(), Some("latest"));
    }
}

#[test]
fn the_scale_web_ops_file_sets_the_number_of_web_instances() {
    let out = rosh(
        &["int", "manifests/demo.yml", "-o", "manifests/operations/scale-web.yml", "-v", "web_instances=3"],
        repo(),
    );
    assert!(out.status.success(), "int failed:\n{}", stderr(&out));
    let manifest = common::parse(&stdout(&out));
    let web = manifest["instance_groups"].as_sequence().unwrap().iter().find(|g| g["name"] == "web").unwrap();
    assert_eq!(web["instances"].as_u64(), Some(3));

    // And it still validates, scaled.
    let out = rosh(
        &[
            "validate",
            "manifests/demo.yml",
            "--cloud-config",
            "manifests/cloud-config-local.yml",
            "-o",
            "manifests/operations/scale-web.yml",
            "-v",
            "web_instances=3",
        ],
        repo(),
    );
    assert!(out.status.success(), "validate (scaled) failed:\n{}{}", stdout(&out), stderr(&out));
}

/// Compiled packages of one release, made as a compilation VM makes them.
struct Compiled {
    _tmp: tempfile::TempDir,
    packages: PathBuf,
    /// The release tarball they were compiled from.
    tarball: PathBuf,
}

impl Compiled {
    fn package(&self, name: &str) -> PathBuf {
        self.packages.join(name)
    }
}

/// Builds `release` into a tarball with create-release, then compiles `packages` (dependencies
/// first) from their package tarballs inside it: unpacked into a compile directory, `packaging`
/// run there by `sh -e` with the environment the agent's compile_package gives it.
fn compile(release: &str, packages: &[&str]) -> Compiled {
    let tmp = tempfile::tempdir().unwrap();
    let dir = copy_release(release, tmp.path());
    let tarball = tmp.path().join("release.tgz");
    create_release(&dir, &tarball);

    let installed = tmp.path().join("root/packages");
    fs::create_dir_all(&installed).unwrap();
    for package in packages {
        let work = tmp.path().join("compile").join(package);
        fs::create_dir_all(&work).unwrap();
        let package_tgz = read_entry(&tarball, &format!("packages/{package}.tgz"));
        tar::Archive::new(flate2::read::GzDecoder::new(package_tgz.as_slice())).unpack(&work).unwrap();
        assert!(work.join("packaging").is_file(), "{release}/{package}: packaging at the top of its tarball");
        let install = installed.join(package);
        fs::create_dir_all(&install).unwrap();
        let out = Command::new("sh")
            .args(["-e", "packaging"])
            .current_dir(&work)
            .env("BOSH_COMPILE_TARGET", &work)
            .env("BOSH_INSTALL_TARGET", &install)
            .env("BOSH_PACKAGES_DIR", &installed)
            .env("BOSH_PACKAGE_NAME", package)
            .output()
            .unwrap();
        assert!(out.status.success(), "packaging of {release}/{package} failed:\n{}{}", stdout(&out), stderr(&out));
    }
    Compiled { _tmp: tmp, packages: installed, tarball }
}

/// The bytes of `path` inside the gzipped tarball `tgz`.
fn read_entry(tgz: &Path, path: &str) -> Vec<u8> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(fs::File::open(tgz).unwrap()));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(path) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{}: no {path}", tgz.display());
}

/// A child process killed (and reaped) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(name: &str, command: &mut Command, log: PathBuf) -> Running {
        let file = fs::File::create(&log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Running { child, log }
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: what a crash does; nothing gets flushed on the way out.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nobody listens on right now (the caller retries if it is taken before it binds).
fn free_port() -> u16 {
    TcpListener::bind((LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// Starts a server with `start(port)` and waits until `ready(port)` says it answers; a server
/// that exits first (its port was taken meanwhile) is tried again on another port.
fn start_server(
    name: &str,
    port: Option<u16>,
    mut start: impl FnMut(u16) -> Running,
    ready: impl Fn(u16) -> bool,
) -> (Running, u16) {
    for _ in 0..5 {
        let port = port.unwrap_or_else(free_port);
        let mut server = start(port);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if server.exited() {
                break;
            }
            if ready(port) {
                return (server, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if !server.exited() {
            panic!("{name} did not answer on port {port} within {START_TIMEOUT:?}:\n{}", server.log());
        }
        eprintln!("{name} exited before answering on port {port}, retrying:\n{}", server.log());
    }
    panic!("{name} could not be started");
}

fn start_kvd(bin: &Path, data: &Path, logs: &Path, port: Option<u16>) -> (Running, u16) {
    start_server(
        "kvd",
        port,
        |port| {
            Running::spawn(
                "kvd",
                Command::new(bin).args(["-l", "127.0.0.1", "-p", &port.to_string(), "-d", data.to_str().unwrap()]),
                logs.join(format!("kvd-{port}.log")),
            )
        },
        |port| KvClient::connect(port).is_ok_and(|mut kv| kv.ask("PING").is_ok_and(|answer| answer == "PONG")),
    )
}

/// One connection speaking kvd's line protocol.
struct KvClient {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl KvClient {
    fn connect(port: u16) -> std::io::Result<KvClient> {
        let stream = TcpStream::connect_timeout(&(LOCALHOST, port).into(), IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(KvClient { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    fn send(&mut self, bytes: &str) -> std::io::Result<()> {
        self.writer.write_all(bytes.as_bytes())
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "kvd closed the connection"));
        }
        Ok(line.trim_end_matches('\n').to_string())
    }

    fn ask(&mut self, command: &str) -> std::io::Result<String> {
        self.send(&format!("{command}\n"))?;
        self.line()
    }

    fn must(&mut self, command: &str) -> String {
        self.ask(command).unwrap_or_else(|e| panic!("kvd: {command}: {e}"))
    }
}

#[test]
fn kvd_compiled_by_its_packaging_script_serves_and_keeps_its_data() {
    let compiled = compile("kv", &["kvd"]);
    let bin = compiled.package("kvd").join("bin/kvd");
    assert!(bin.is_file(), "packaging installs bin/kvd");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("store/kv");

    let (mut kvd, port) = start_kvd(&bin, &data, tmp.path(), None);
    let mut kv = KvClient::connect(port).unwrap();
    assert_eq!(kv.must("PING"), "PONG");
    assert_eq!(kv.must("GET greeting"), "NIL");
    assert_eq!(kv.must("SET greeting hello, persistent world"), "OK");
    assert_eq!(kv.must("GET greeting"), "VALUE hello, persistent world");
    assert_eq!(kv.must("SET greeting hello again"), "OK");
    assert_eq!(kv.must("INCR hits"), "VALUE 1");
    assert_eq!(kv.must("INCR hits"), "VALUE 2");
    assert_eq!(kv.must("INCR greeting"), "ERR not an integer");
    assert!(kv.must("FLY away").starts_with("ERR"));
    assert!(kv.must("SET lonely-key").starts_with("ERR"), "SET needs a value");
    assert_eq!(kv.must("PING\r"), "PONG", "a trailing CR is ignored");

    // Several commands in one write, and clients served together: one holds half a line while
    // another is answered, then finishes it.
    kv.send("SET a 1\nSET b 2\nGET a\n").unwrap();
    assert_eq!([kv.line().unwrap(), kv.line().unwrap(), kv.line().unwrap()], ["OK", "OK", "VALUE 1"]);
    let mut slow = KvClient::connect(port).unwrap();
    slow.send("GET gre").unwrap();
    let mut others: Vec<KvClient> = (0..20).map(|_| KvClient::connect(port).unwrap()).collect();
    for (i, other) in others.iter_mut().enumerate() {
        assert_eq!(other.must(&format!("SET client{i} {i}")), "OK");
    }
    slow.send("eting\n").unwrap();
    assert_eq!(slow.line().unwrap(), "VALUE hello again");
    drop(others);

    // A crash (SIGKILL) loses nothing that was answered.
    kvd.kill();
    assert!(data.join("kv.log").is_file(), "kvd keeps its data under the directory it is given");
    let (mut kvd, port) = start_kvd(&bin, &data, tmp.path(), None);
    let mut kv = KvClient::connect(port).unwrap();
    assert_eq!(kv.must("GET greeting"), "VALUE hello again");
    assert_eq!(kv.must("GET hits"), "VALUE 2");
    assert_eq!(kv.must("GET client19"), "VALUE 19");

    // A record torn by a crash mid-write was never answered: it is dropped, and what follows
    // it is written cleanly.
    kvd.kill();
    let mut log = fs::OpenOptions::new().append(true).open(data.join("kv.log")).unwrap();
    log.write_all(b"SET torn half-writ").unwrap();
    drop(log);
    let (mut kvd, port) = start_kvd(&bin, &data, tmp.path(), None);
    let mut kv = KvClient::connect(port).unwrap();
    assert_eq!(kv.must("GET torn"), "NIL");
    assert_eq!(kv.must("SET after-tear fine"), "OK");
    kvd.kill();
    let (_kvd, port) = start_kvd(&bin, &data, tmp.path(), None);
    let mut kv = KvClient::connect(port).unwrap();
    assert_eq!(kv.must("GET after-tear"), "VALUE fine");
    assert_eq!(kv.must("GET hits"), "VALUE 2");
}

/// `GET path` over HTTP/1.0: (status, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&(LOCALHOST, port).into(), IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an HTTP response: {response:?}"));
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let body = response.split_once("\r\n\r\n").ok_or_else(bad)?.1.to_string();
    Ok((status, body))
}

fn must_get(port: u16, path: &str) -> (u16, String) {
    http_get(port, path).unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

/// Writes the web job's config (what `web.json.hbs` renders) and starts the server the way its
/// bpm.yml does: python3-shim's run-python with webapp's server.py and the config.
fn start_web(compiled: &Compiled, dir: &Path, name: &str, kv_port: u16) -> (Running, u16) {
    start_server(
        name,
        None,
        |port| {
            let config = dir.join(format!("{name}.json"));
            let json = serde_json::json!({
                "bind": "127.0.0.1",
                "port": port,
                "greeting": "Hello from the \"test\"",
                "instance": name,
                "kv": {"hosts": ["127.0.0.1"], "port": kv_port, "key": "web.count", "timeout": 2},
            });
            fs::write(&config, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
            Running::spawn(
                name,
                Command::new(compiled.package("python3-shim").join("bin/run-python"))
                    .arg(compiled.package("webapp").join("server.py"))
                    .arg(&config),
                dir.join(format!("{name}.log")),
            )
        },
        |port| http_get(port, "/health").is_ok_and(|(status, _)| status == 200),
    )
}

#[test]
fn the_web_app_greets_and_counts_in_kvd_across_instances() {
    let kv = compile("kv", &["kvd"]);
    let web = compile("web", &["python3-shim", "webapp"]);
    let shim = web.package("python3-shim").join("bin/run-python");
    assert!(shim.is_file(), "python3-shim's packaging writes bin/run-python");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("store/kv");
    let (mut kvd, kv_port) = start_kvd(&kv.package("kvd").join("bin/kvd"), &data, tmp.path(), None);

    // What the web job's pre-start runs after its python check.
    let config = tmp.path().join("check.json");
    fs::write(
        &config,
        r#"{"bind": "127.0.0.1", "port": 1, "greeting": "hi", "kv": {"hosts": ["127.0.0.1"], "port": 2}}"#,
    )
    .unwrap();
    let check =
        Command::new(&shim).arg(web.package("webapp").join("server.py")).arg("--check").arg(&config).output().unwrap();
    assert!(check.status.success(), "server.py --check:\n{}", stderr(&check));
    fs::write(&config, r#"{"bind": "127.0.0.1", "port": 1}"#).unwrap();
    let check =
        Command::new(&shim).arg(web.package("webapp").join("server.py")).arg("--check").arg(&config).output().unwrap();
    assert!(!check.status.success(), "a config without greeting and kv is refused");
    assert!(stderr(&check).contains("greeting"), "{}", stderr(&check));

    let (web_0, port_0) = start_web(&web, tmp.path(), "web-0", kv_port);
    let (_web_1, port_1) = start_web(&web, tmp.path(), "web-1", kv_port);

    assert_eq!(must_get(port_0, "/"), (200, "Hello from the \"test\"\n".to_string()));
    assert_eq!(must_get(port_0, "/health"), (200, "ok\n".to_string()));
    assert_eq!(must_get(port_0, "/nothing-here").0, 404);
    // One counter for every instance, kept by kvd.
    assert_eq!(must_get(port_0, "/count"), (200, "1\n".to_string()));
    assert_eq!(must_get(port_0, "/count"), (200, "2\n".to_string()));
    assert_eq!(must_get(port_1, "/count"), (200, "3\n".to_string()));
    assert_eq!(KvClient::connect(kv_port).unwrap().must("GET web.count"), "VALUE 3");

    // Without kvd, /count says so (and the server stays up); with kvd back, the count goes on.
    kvd.kill();
    let (status, body) = must_get(port_1, "/count");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("kv unreachable"), "{body}");
    assert_eq!(must_get(port_1, "/health").0, 200);
    let (_kvd, _) = start_kvd(&kv.package("kvd").join("bin/kvd"), &data, tmp.path(), Some(kv_port));
    assert_eq!(must_get(port_1, "/count"), (200, "4\n".to_string()));
    assert!(web_0.log().contains("GET /count"), "requests are logged to stderr:\n{}", web_0.log());
}

#[test]
fn the_smoke_test_passes_against_healthy_web_instances_and_fails_otherwise() {
    let kv = compile("kv", &["kvd"]);
    let web = compile("web", &["python3-shim", "webapp", "smoke-tests"]);
    let tmp = tempfile::tempdir().unwrap();
    let (_kvd, kv_port) = start_kvd(&kv.package("kvd").join("bin/kvd"), &tmp.path().join("store/kv"), tmp.path(), None);
    let (_web_0, port_0) = start_web(&web, tmp.path(), "web-0", kv_port);
    let (_web_1, port_1) = start_web(&web, tmp.path(), "web-1", kv_port);

    // What the errand's bin/run runs, with the config targets.json.hbs renders.
    let smoke = |targets: serde_json::Value| {
        let config = tmp.path().join("targets.json");
        fs::write(&config, serde_json::to_vec(&serde_json::json!({"timeout": 2, "targets": targets})).unwrap())
            .unwrap();
        Command::new(web.package("python3-shim").join("bin/run-python"))
            .arg(web.package("smoke-tests").join("smoke.py"))
            .arg(&config)
            .output()
            .unwrap()
    };
    let target = |name: &str, port: u16| serde_json::json!({"name": name, "url": format!("http://127.0.0.1:{port}")});

    let out = smoke(serde_json::json!([target("web/0", port_0), target("web/1", port_1)]));
    assert!(out.status.success(), "smoke test failed:\n{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("2 of 2 web instances passed"), "{}", stdout(&out));

    let dead = free_port();
    let out = smoke(serde_json::json!([target("web/0", port_0), target("web/1", dead)]));
    assert!(!out.status.success(), "a dead instance fails the smoke test:\n{}", stdout(&out));
    assert!(stdout(&out).contains(&format!("FAIL  web/1 http://127.0.0.1:{dead}")), "{}", stdout(&out));

    let out = smoke(serde_json::json!([]));
    assert!(!out.status.success(), "no instances at all is a failure too");
}

/// A VM-like root (`packages/`, `jobs/`, `store/`) that rendered jobs are installed into.
struct Vm {
    root: PathBuf,
}

impl Vm {
    /// Links the compiled packages in, as the agent links `packages/<name>` to their content.
    fn new(root: PathBuf, compiled: &[(&Compiled, &[&str])]) -> Vm {
        fs::create_dir_all(root.join("packages")).unwrap();
        for (release, packages) in compiled {
            for package in *packages {
                std::os::unix::fs::symlink(release.package(package), root.join("packages").join(package)).unwrap();
            }
        }
        Vm { root }
    }

    /// Renders `job` of the release tarball `tarball` for `instance` with rosh's renderer, and
    /// installs the files under `jobs/<job>/` (`bin/*` executable, as the agent makes them).
    fn render(
        &self,
        tarball: &Path,
        release: &str,
        job: &str,
        instance: &DesiredInstance,
        properties: Value,
        links: BTreeMap<String, ResolvedLink>,
    ) -> BTreeMap<String, String> {
        let bytes = read_entry(tarball, &format!("jobs/{job}.tgz"));
        let templates = JobTemplates::from_job_tarball(&bytes, job).unwrap();
        let desired = DesiredJob {
            name: job.to_string(),
            release: release.to_string(),
            spec: templates.spec.clone(),
            fingerprint: String::new(),
            sha256: String::new(),
            properties,
            links,
        };
        let ctx = RenderContext {
            deployment: "demo".to_string(),
            instance,
            job: &desired,
            release_version: "0+dev.1".to_string(),
            root: self.root.display().to_string(),
            persistent_disk_mb: 1024,
        };
        let rendered = render_job(&templates, &ctx).unwrap_or_else(|e| panic!("rendering {job}: {e}"));
        let dir = self.root.join("jobs").join(job);
        let _ = fs::remove_dir_all(&dir);
        let mut files = BTreeMap::new();
        for (path, bytes) in rendered.files {
            let target = dir.join(&path);
            fs::create_dir_all(target.parent().unwrap()).unwrap();
            fs::write(&target, &bytes).unwrap();
            if path.starts_with("bin/") {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).unwrap();
            }
            files.insert(path, String::from_utf8(bytes).unwrap());
        }
        files
    }

    /// The environment the agent gives a job's processes and scripts.
    fn job_env(&self, job: &str) -> Vec<(String, String)> {
        vec![
            ("ROSH_ROOT".to_string(), self.root.display().to_string()),
            ("BOSH_JOB_DIR".to_string(), self.root.join("jobs").join(job).display().to_string()),
            ("BOSH_JOB_NAME".to_string(), job.to_string()),
            ("BOSH_PACKAGES_DIR".to_string(), self.root.join("packages").display().to_string()),
        ]
    }

    /// Starts the single process the job's rendered `config/bpm.yml` defines, as the agent does.
    fn start_bpm(&self, job: &str) -> Running {
        let text = fs::read_to_string(self.root.join("jobs").join(job).join("config/bpm.yml")).unwrap();
        let defs = parse_bpm(&text, &self.root, job).unwrap_or_else(|e| panic!("{job}: bpm.yml: {e}\n{text}"));
        assert_eq!(defs.len(), 1, "{job}: one process");
        let ProcessKind::Bpm { executable, args, env, workdir, .. } = &defs[0].kind else {
            panic!("{job}: not a bpm process")
        };
        assert!(executable.starts_with(&self.root), "{job}: runs from the VM root: {}", executable.display());
        Running::spawn(
            &defs[0].name,
            Command::new(executable).args(args).envs(env).envs(self.job_env(job)).current_dir(workdir),
            self.root.join(format!("{job}.log")),
        )
    }

    /// Runs a rendered script of the job (`bin/pre-start`, `bin/run`) as the agent does.
    fn run_script(&self, job: &str, script: &str) -> std::process::Output {
        Command::new(self.root.join("jobs").join(job).join(script))
            .envs(self.job_env(job))
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn instance(group: &str, index: u64) -> DesiredInstance {
    serde_json::from_value(json!({
        "group": group,
        "index": index,
        "id": format!("{group}-{index}-0000-4000-8000-000000000000"),
        "az": "z1",
        "bootstrap": index == 0,
        "networks": [{
            "name": "default", "type": "manual", "ip": "127.0.0.1", "netmask": "255.0.0.0",
            "gateway": "127.0.0.1", "dns": [], "default": ["dns", "gateway"], "cloud_properties": {},
            "static_ip": false,
        }],
        "cloud_properties": {},
        "cpi": null,
    }))
    .unwrap()
}

/// A link to `instances` (all at 127.0.0.1) of `group`/`job`, exposing `properties`.
fn link(name: &str, kind: &str, group: &str, job: &str, properties: Value, count: u64) -> ResolvedLink {
    serde_json::from_value(json!({
        "name": name,
        "type": kind,
        "group": group,
        "job": job,
        "deployment": "demo",
        "properties": properties,
        "instances": (0..count).map(|i| {
            let inst = instance(group, i);
            json!({"name": group, "id": inst.id, "index": i, "az": "z1", "address": "127.0.0.1", "bootstrap": i == 0})
        }).collect::<Vec<_>>(),
    }))
    .unwrap()
}

#[test]
fn the_jobs_render_and_run_as_their_bpm_yml_says() {
    let kv = compile("kv", &["kvd"]);
    let web = compile("web", &["python3-shim", "webapp", "smoke-tests"]);
    let tmp = tempfile::tempdir().unwrap();
    let vm = Vm::new(tmp.path().join("vm"), &[(&kv, &["kvd"]), (&web, &["python3-shim", "webapp", "smoke-tests"])]);

    // kv-server: kvd on the instance's address and kv.port, its data under store/kv.
    let kv_instance = instance("kv", 0);
    let (_kvd, kv_port) = start_server(
        "kv-server",
        None,
        |port| {
            let files =
                vm.render(&kv.tarball, "kv", "kv-server", &kv_instance, json!({"kv": {"port": port}}), BTreeMap::new());
            assert_eq!(files.keys().collect::<Vec<_>>(), ["config/bpm.yml", "monit"]);
            vm.start_bpm("kv-server")
        },
        |port| KvClient::connect(port).is_ok_and(|mut kv| kv.ask("PING").is_ok_and(|answer| answer == "PONG")),
    );
    assert!(vm.root.join("store/kv/kv.log").is_file(), "kvd keeps its data on the persistent disk");

    // web: consumes kv (two instances: the first is asked, the others are fallbacks).
    let kv_link = link("kv", "kv", "kv", "kv-server", json!({"kv": {"port": kv_port}}), 2);
    let web_instance = instance("web", 0);
    let (_web, web_port) = start_server(
        "web",
        None,
        |port| {
            let properties = json!({"web": {"port": port, "greeting": "Hello from a \"rendered\" job"}});
            let links = BTreeMap::from([("kv".to_string(), kv_link.clone())]);
            let files = vm.render(&web.tarball, "web", "web", &web_instance, properties, links);
            assert_eq!(
                files.keys().collect::<Vec<_>>(),
                ["bin/post-deploy", "bin/pre-start", "config/bpm.yml", "config/web.json", "monit"]
            );
            let config: Value = serde_json::from_str(&files["config/web.json"])
                .unwrap_or_else(|e| panic!("web.json is JSON: {e}\n{}", files["config/web.json"]));
            assert_eq!(config["bind"], "127.0.0.1");
            assert_eq!(config["port"], port);
            assert_eq!(config["kv"]["hosts"], json!(["127.0.0.1", "127.0.0.1"]));
            assert_eq!(config["kv"]["port"], kv_port);
            assert_eq!(config["kv"]["key"], "web.count", "the spec default");
            assert_eq!(config["instance"], format!("web/{}", web_instance.id));
            let pre_start = vm.run_script("web", "bin/pre-start");
            assert!(pre_start.status.success(), "pre-start failed:\n{}{}", stdout(&pre_start), stderr(&pre_start));
            assert!(stdout(&pre_start).contains("ok"), "{}", stdout(&pre_start));
            vm.start_bpm("web")
        },
        |port| http_get(port, "/health").is_ok_and(|(status, _)| status == 200),
    );
    assert_eq!(must_get(web_port, "/"), (200, "Hello from a \"rendered\" job\n".to_string()));
    assert_eq!(must_get(web_port, "/count"), (200, "1\n".to_string()));

    // The errand, against a two-instance http link (both at the one server on 127.0.0.1).
    let http_link = link("http", "http", "web", "web", json!({"web": {"port": web_port}}), 2);
    let files = vm.render(
        &web.tarball,
        "web",
        "smoke-test",
        &instance("smoke-tests", 0),
        json!({"smoke_test": {"timeout": 5}}),
        BTreeMap::from([("http".to_string(), http_link)]),
    );
    let targets: Value = serde_json::from_str(&files["config/targets.json"])
        .unwrap_or_else(|e| panic!("targets.json is JSON: {e}\n{}", files["config/targets.json"]));
    assert_eq!(targets["timeout"], 5);
    assert_eq!(targets["targets"].as_array().unwrap().len(), 2);
    assert_eq!(targets["targets"][1]["url"], format!("http://127.0.0.1:{web_port}"));
    let run = vm.run_script("smoke-test", "bin/run");
    assert!(run.status.success(), "the errand failed:\n{}{}", stdout(&run), stderr(&run));
    assert!(stdout(&run).contains("2 of 2 web instances passed"), "{}", stdout(&run));
    assert_eq!(must_get(web_port, "/count"), (200, "6\n".to_string()), "the errand counted twice per target");
}

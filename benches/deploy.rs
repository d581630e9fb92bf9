//! Benchmark of the deploy path (issue 5): the same work on N machines (N = 1, 10, 50;
//! `ROSH_BENCH_NS=1,10` to change): a 20 MB compiled package pushed to every machine and unpacked,
//! a config rendered from a template listing every peer's IP (a link the group provides to
//! itself), a long-running process started and verified running; then the same deploy again when
//! nothing changed. Prints wall time and the director's peak RSS for both.
//!
//! Three runs (`ROSH_BENCH_RUNS=local,static,plain` to pick):
//! - `local`: rosh on the embedded local CPI's VMs;
//! - `static`: rosh through the static CPI on N real OpenSSH sshd, each on its own loopback
//!   address, starting from machines that have never seen rosh (the `rosh-agent` binary, 5 MB,
//!   is installed over SSH as part of the cold run). The machines are on a dynamic network, so
//!   the peers file lists the instances' DNS names (as BOSH renders such links);
//! - `plain`: the reference, plain OpenSSH on the same sshd, one connection per host
//!   (curve25519, aes128-gcm): copy the package as a tarball, unpack it, write the peers file,
//!   start the process and check it runs; the no-op run checks the tarball's digest, the peers
//!   file and the process.
//!
//! The package is compiled once before anything is measured (`rosh export-release`), so every
//! cold run uploads a compiled package, as the issue states the work.
//!
//! `cargo bench --bench deploy`

#[path = "support/machines.rs"]
mod machines;
#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs rosh; answers wall time and peak RSS (MiB).
fn rosh(args: &[&str], cwd: &Path, state: &Path) -> support::Measured {
    let run = support::measure(
        Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(args)
            .current_dir(cwd)
            .env("ROSH_STATE_DIR", state)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cwd.join("rosh.err")).unwrap()),
    );
    if !run.success() {
        let err = std::fs::read_to_string(cwd.join("rosh.err")).unwrap_or_default();
        panic!("rosh {args:?} failed:\n{}", support::tail(&err, 15));
    }
    run
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A release with one 20 MB package and one job whose config lists its peers.
fn release(dir: &Path) {
    write(&dir.join("config/final.yml"), "final_name: bench\n");
    write(&dir.join("packages/payload/spec"), "name: payload\nfiles: [payload/**/*]\n");
    write(&dir.join("packages/payload/packaging"), "cp -a payload/* \"$BOSH_INSTALL_TARGET/\"\n");
    let mut data = vec![0u8; 20 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::create_dir_all(dir.join("src/payload")).unwrap();
    std::fs::write(dir.join("src/payload/blob.bin"), data).unwrap();
    write(
        &dir.join("jobs/svc/spec"),
        "name: svc\ntemplates:\n  peers.hbs: config/peers.txt\n  bpm.yml.hbs: config/bpm.yml\npackages: [payload]\n\
         consumes:\n- {name: peers, type: svc}\nprovides:\n- {name: peers, type: svc}\nproperties: {}\n",
    );
    write(&dir.join("jobs/svc/monit"), "");
    write(
        &dir.join("jobs/svc/templates/peers.hbs"),
        "{{#with (link \"peers\")}}{{#each instances}}{{address}}\n{{/each}}{{/with}}",
    );
    write(
        &dir.join("jobs/svc/templates/bpm.yml.hbs"),
        "processes:\n- name: svc\n  executable: /bin/sh\n  args: [-c, 'test -s {{spec.root}}/packages/payload/blob.bin && exec sleep 100000']\n",
    );
}

/// The deployment: N instances in `az` on `network`, one canary, then all the rest at once.
fn manifest(n: usize, os: &str, az: &str, network: &str) -> String {
    format!(
        "name: bench\nreleases: [{{name: bench, version: latest}}]\nstemcells: [{{alias: default, os: {os}, version: latest}}]\n\
         update: {{canaries: 1, max_in_flight: 100%, canary_watch_time: 0-10000, update_watch_time: 0-10000}}\n\
         instance_groups:\n- name: svc\n  azs: [{az}]\n  instances: {n}\n  vm_type: default\n  stemcell: default\n  networks: [{{name: {network}}}]\n  jobs: [{{name: svc, release: bench}}]\n"
    )
}

/// Local VMs for everything (z1); the static run adds an AZ on the machines (see [`static_run`]).
const CLOUD_CONFIG: &str = "azs: [{name: z1}]\nvm_types: [{name: default}]\n\
networks:\n- name: default\n  type: manual\n  subnets:\n  - {range: 127.81.0.0/16, gateway: 127.81.0.1, azs: [z1]}\n\
compilation: {workers: 2, az: z1, vm_type: default, network: default}\n";

/// Compilation stays on local VMs (z1, CPI `laptop`); instances go to the machines (z2, CPI
/// `rack`), whose addresses the static CPI reports on the dynamic network.
const STATIC_CLOUD_CONFIG: &str = "azs: [{name: z1, cpi: laptop}, {name: z2, cpi: rack}]\nvm_types: [{name: default}]\n\
networks:\n- name: default\n  type: manual\n  subnets:\n  - {range: 127.81.0.0/16, gateway: 127.81.0.1, azs: [z1]}\n\
- name: machines\n  type: dynamic\n  subnets:\n  - {azs: [z2]}\n\
compilation: {workers: 2, az: z1, vm_type: default, network: default}\n";

/// Where a cold run's CPU went: the whole machine (every sshd, agent and process), the
/// director's own share, and what the hypervisor stole.
fn cpu_line(machine: &support::MachineCpu, director: Option<Duration>) -> String {
    let director = director.map(|d| format!(", rosh itself {:.1} s", d.as_secs_f64())).unwrap_or_default();
    format!(
        "machine CPU {:.1} s{director}; stolen by the hypervisor {:.1} s",
        machine.busy.as_secs_f64(),
        machine.steal.as_secs_f64()
    )
}

/// Kills every agent of the state dir (the benchmark's local VMs).
fn kill_vms(state: &Path) {
    machines::kill_under(state, &[]);
}

struct Bench {
    work: PathBuf,
    state: PathBuf,
    os: String,
    ns: Vec<usize>,
}

impl Bench {
    fn rosh(&self, args: &[&str]) -> support::Measured {
        rosh(args, &self.work, &self.state)
    }

    /// What a `--json` listing of rosh printed.
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out =
            Command::new(env!("CARGO_BIN_EXE_rosh")).args(args).env("ROSH_STATE_DIR", &self.state).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Deploys `manifest` twice (cold, then unchanged) and prints the line for `n`.
    fn cold_and_noop(&self, n: usize, manifest: &str) {
        write(&self.work.join("bench.yml"), manifest);
        let machine = support::MachineCpu::now();
        let cold = self.rosh(&["-d", "bench", "deploy", "-n", "bench.yml"]);
        let machine = support::MachineCpu::since(machine);
        let noop = self.rosh(&["-d", "bench", "deploy", "-n", "bench.yml"]);
        println!(
            "  N = {n:>3}: cold {:>6.2} s (peak RSS {:>5.1} MiB)   no-op {:>5.2} s (peak RSS {:>5.1} MiB)",
            cold.wall.as_secs_f64(),
            cold.max_rss_mib(),
            noop.wall.as_secs_f64(),
            noop.max_rss_mib()
        );
        println!("           cold: {}", cpu_line(&machine, Some(cold.cpu)));
    }

    /// Forgets the deployment so the next N starts cold.
    fn delete_deployment(&self) {
        let ok = Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(["-d", "bench", "delete-deployment", "-n", "--force"])
            .env("ROSH_STATE_DIR", &self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "delete the deployment for the next N");
    }
}

fn local_run(b: &Bench) {
    println!("rosh, local CPI (N local VMs):");
    b.rosh(&["update-cloud-config", "cloud.yml"]);
    for &n in &b.ns {
        b.cold_and_noop(n, &manifest(n, &b.os, "z1", "default"));
        kill_vms(&b.state);
        b.delete_deployment();
    }
}

fn static_run(b: &Bench, machines: &machines::Machines) {
    println!("rosh, static CPI (N OpenSSH sshd, login user `{}`; cold includes installing rosh-agent):", machines.user);
    write(&b.work.join("static-cloud.yml"), STATIC_CLOUD_CONFIG);
    b.rosh(&["update-cloud-config", "static-cloud.yml"]);
    for &n in &b.ns {
        let cpi = format!(
            "cpis:\n- {{name: laptop, type: local}}\n- name: rack\n  type: static\n  properties:\n    machines:\n{}",
            machines.static_cpi_machines(n)
        );
        write(&b.work.join("cpi.yml"), &cpi);
        b.rosh(&["update-cpi-config", "cpi.yml"]);
        b.cold_and_noop(n, &manifest(n, &b.os, "z2", "machines"));
        b.delete_deployment();
        machines.wipe();
    }
}

/// The reference: plain OpenSSH, one connection per host, all hosts at once.
fn plain_run(b: &Bench, machines: &machines::Machines) {
    println!("plain OpenSSH (one connection per host, curve25519 + aes128-gcm), same sshd:");
    let tarball = b.work.join("payload.tgz");
    let packed = Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(b.work.join("release/src/payload"))
        .arg("blob.bin")
        .status()
        .unwrap();
    assert!(packed.success(), "tar czf payload.tgz");
    let digest = String::from_utf8(Command::new("sha256sum").arg(&tarball).output().unwrap().stdout).unwrap();
    let digest = digest.split_whitespace().next().unwrap().to_string();
    for &n in &b.ns {
        let hosts = &machines.list[..n];
        let peers: String = hosts.iter().map(|m| format!("{}\n", m.address)).collect();
        let cold_script = |root: &Path| {
            let r = root.display();
            format!(
                "set -e; d={r}/plain; mkdir -p $d; cat > $d/payload.tgz; tar xzf $d/payload.tgz -C $d; \
                 printf '{peers}' > $d/peers.txt; \
                 (setsid sh -c 'test -s {r}/plain/blob.bin && exec sleep 100000' </dev/null >/dev/null 2>&1 & echo $! > $d/pid); \
                 sleep 0.1; kill -0 $(cat $d/pid)"
            )
        };
        let noop_script = |root: &Path| {
            let r = root.display();
            format!(
                "set -e; d={r}/plain; echo '{digest}  '$d/payload.tgz | sha256sum -c --status; \
                 printf '{peers}' | cmp -s - $d/peers.txt; kill -0 $(cat $d/pid)"
            )
        };
        let run_all = |script: &dyn Fn(&Path) -> String, with_payload: bool| -> Duration {
            let started = Instant::now();
            std::thread::scope(|scope| {
                let handles: Vec<_> = hosts
                    .iter()
                    .map(|m| {
                        let command = script(&m.root);
                        let tarball = &tarball;
                        scope.spawn(move || {
                            let mut child = machines
                                .ssh_command(m)
                                .arg(command)
                                .stdin(Stdio::piped())
                                .stdout(Stdio::null())
                                .stderr(Stdio::piped())
                                .spawn()
                                .expect("ssh");
                            let mut stdin = child.stdin.take().unwrap();
                            if with_payload {
                                std::io::copy(&mut std::fs::File::open(tarball).unwrap(), &mut stdin).unwrap();
                            }
                            drop(stdin);
                            let out = child.wait_with_output().unwrap();
                            assert!(
                                out.status.success(),
                                "plain ssh to {}: {}",
                                m.address,
                                String::from_utf8_lossy(&out.stderr)
                            );
                        })
                    })
                    .collect();
                for h in handles {
                    h.join().unwrap();
                }
            });
            started.elapsed()
        };
        let machine = support::MachineCpu::now();
        let cold = run_all(&cold_script, true);
        let machine = support::MachineCpu::since(machine);
        let noop = run_all(&noop_script, false);
        println!("  N = {n:>3}: cold {:>6.2} s   no-op {:>5.2} s", cold.as_secs_f64(), noop.as_secs_f64());
        println!("           cold: {}", cpu_line(&machine, None));
        machines.wipe();
    }
}

fn main() {
    let ns: Vec<usize> = std::env::var("ROSH_BENCH_NS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 50]);
    let runs = std::env::var("ROSH_BENCH_RUNS").unwrap_or_else(|_| "local,static,plain".into());
    let wants = |run: &str| runs.split(',').any(|r| r.trim() == run);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().to_path_buf();
    release(&work.join("release"));
    write(&work.join("cloud.yml"), CLOUD_CONFIG);
    let state = work.join("state");
    // However the benchmark ends, its VMs go with it.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            kill_vms(&self.0);
        }
    }
    let _cleanup = Cleanup(state.clone());
    let mut b = Bench { work, state, os: String::new(), ns };
    b.rosh(&["create-stemcell", "--local", "--tarball", "sc.tgz"]);
    b.rosh(&["upload-stemcell", "sc.tgz"]);
    b.rosh(&["create-release", "release", "--tarball", "bench.tgz"]);
    b.rosh(&["upload-release", "bench.tgz"]);
    b.rosh(&["update-cloud-config", "cloud.yml"]);
    let stemcell = {
        let v = b.json(&["stemcells", "--json"]);
        (v[0]["operating_system"].as_str().unwrap().to_string(), v[0]["version"].as_str().unwrap().to_string())
    };
    b.os = stemcell.0.clone();

    println!(
        "deploy of N machines: 20 MB compiled package, peers config, a long-running process ({} cores)",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    let release = format!("bench/{}", b.json(&["releases", "--json"])[0]["version"].as_str().unwrap());
    let compile =
        b.rosh(&["export-release", &release, &format!("{}/{}", stemcell.0, stemcell.1), "--tarball", "compiled.tgz"]);
    println!("compiling the package once (export-release, not counted below): {:.2} s", compile.wall.as_secs_f64());
    std::io::stdout().flush().unwrap();

    if wants("local") {
        local_run(&b);
    }
    if wants("static") || wants("plain") {
        let user = machines::login_user();
        let port = std::net::TcpListener::bind("127.90.0.1:0").unwrap().local_addr().unwrap().port();
        let machines = machines::Machines::start(b.ns.iter().copied().max().unwrap_or(1), &user, port);
        if wants("static") {
            static_run(&b, &machines);
        }
        if wants("plain") {
            plain_run(&b, &machines);
        }
    }
}

//! Benchmark of the deploy path (issue 5) on the local CPI: the same work on N machines
//! (N = 1, 10, 50; `ROSH_BENCH_NS=1,10` to change): a 20 MB compiled package pushed to every VM and
//! unpacked, a config rendered from a template listing every peer's IP (a link the group
//! provides to itself), a long-running process started and verified running; then the same
//! deploy again when nothing changed. Prints wall time and the director's peak RSS for both, and
//! the compile time of the one package (done once, cached for the later N).
//!
//! `cargo bench --bench deploy`

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs rosh; answers wall time and peak RSS (MiB).
fn rosh(args: &[&str], cwd: &Path, state: &Path) -> (Duration, f64) {
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
    (run.wall, run.max_rss_mib())
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

fn manifest(n: usize, os: &str) -> String {
    format!(
        "name: bench\nreleases: [{{name: bench, version: latest}}]\nstemcells: [{{alias: default, os: {os}, version: latest}}]\n\
         update: {{canaries: 1, max_in_flight: 100%, canary_watch_time: 0-10000, update_watch_time: 0-10000}}\n\
         instance_groups:\n- name: svc\n  azs: [z1]\n  instances: {n}\n  vm_type: default\n  stemcell: default\n  networks: [{{name: default}}]\n  jobs: [{{name: svc, release: bench}}]\n"
    )
}

const CLOUD_CONFIG: &str = "azs: [{name: z1}]\nvm_types: [{name: default}]\n\
networks:\n- name: default\n  type: manual\n  subnets:\n  - {range: 127.81.0.0/16, gateway: 127.81.0.1, azs: [z1]}\n\
compilation: {workers: 2, az: z1, vm_type: default, network: default}\n";

/// Kills every agent of the state dir (the benchmark's VMs).
fn kill_vms(state: &Path) {
    let needle = state.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: signalling a process of this benchmark's own state dir.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn main() {
    let ns: Vec<usize> = std::env::var("ROSH_BENCH_NS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 10, 50]);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    release(&work.join("release"));
    write(&work.join("cloud.yml"), CLOUD_CONFIG);
    let state = work.join("state");
    // However the benchmark ends, its VMs go with it.
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            kill_vms(&self.0);
        }
    }
    let _cleanup = Cleanup(state.clone());
    rosh(&["create-stemcell", "--local", "--tarball", "sc.tgz"], work, &state);
    rosh(&["upload-stemcell", "sc.tgz"], work, &state);
    rosh(&["create-release", "release", "--tarball", "bench.tgz"], work, &state);
    rosh(&["upload-release", "bench.tgz"], work, &state);
    rosh(&["update-cloud-config", "cloud.yml"], work, &state);
    let os = {
        let out = Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(["stemcells", "--json"])
            .env("ROSH_STATE_DIR", &state)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["operating_system"].as_str().unwrap_or("debian-bookworm").to_string()
    };

    println!(
        "deploy of N local VMs: 20 MB package, peers config, a long-running process ({} cores)",
        std::thread::available_parallelism().map_or(1, |p| p.get())
    );
    for (i, n) in ns.iter().enumerate() {
        write(&work.join("bench.yml"), &manifest(*n, &os));
        let (cold, cold_rss) = rosh(&["-d", "bench", "deploy", "bench.yml"], work, &state);
        let (noop, noop_rss) = rosh(&["-d", "bench", "deploy", "bench.yml"], work, &state);
        let note = if i == 0 { " (includes compiling the package once)" } else { "" };
        println!(
            "N = {n:>3}: cold {:>7.2} s (peak RSS {cold_rss:>5.1} MiB){note}   no-op {:>6.2} s (peak RSS {noop_rss:>5.1} MiB)",
            cold.as_secs_f64(),
            noop.as_secs_f64()
        );
        // The next N starts from no VMs: drop this deployment's VMs and records.
        kill_vms(&state);
        let db = rusqlite_free_reset(&state);
        assert!(db, "reset the deployment for the next N");
    }
}

/// Forgets the deployment (its VMs are already killed) so the next N starts cold: the state is
/// removed except for releases, stemcells and the compile cache, by deleting the deployment
/// with `delete-deployment --force`.
fn rusqlite_free_reset(state: &Path) -> bool {
    Command::new(env!("CARGO_BIN_EXE_rosh"))
        .args(["-d", "bench", "delete-deployment", "--force"])
        .env("ROSH_STATE_DIR", state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

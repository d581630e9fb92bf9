//! Benchmark of `rosh interpolate` on cf-deployment v58 (../shared/corpus), the figures the
//! manifest-engine issue asks for. Runs the release binary as an operator would and prints wall
//! time (median and minimum of several runs), CPU time and peak memory (max RSS) of each
//! scenario:
//!
//! 1. generating all variables of cf-deployment into an empty vars store (bosh's key sizes);
//! 2. cf-deployment with a complete vars file (`-l`);
//! 3. the same plus 10 ops files;
//! 4. the same with `--vars-store` instead of `-l` (nothing left to generate).
//!
//! `cargo bench --bench interpolate` (set ROSH_BENCH_RUNS to change the repeat count).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

// Ordered so each applies cleanly after the ones before it.
const OPS: [&str; 10] = [
    "operations/use-compiled-releases.yml",
    "operations/rename-network-and-deployment.yml",
    "operations/use-external-blobstore.yml",
    "operations/use-s3-blobstore.yml",
    "operations/use-external-dbs.yml",
    "operations/scale-to-one-az.yml",
    "operations/windows2019-cell.yml",
    "operations/enable-nfs-volume-service.yml",
    "operations/enable-smb-volume-service.yml",
    "operations/use-metric-store.yml",
];

const VARS_FILES: [&str; 4] = [
    "operations/example-vars-files/vars-use-s3-blobstore.yml",
    "operations/example-vars-files/vars-use-external-dbs.yml",
    "operations/example-vars-files/vars-rename-network.yml",
    "operations/example-vars-files/vars-rename-deployment.yml",
];

struct Sample {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: i64,
}

/// Runs the binary once and reads its own resource usage with wait4.
fn run(args: &[String], cwd: &Path) -> Sample {
    let run = support::measure(
        Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(args)
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    assert!(run.success(), "rosh {args:?} failed (exit {:?})", run.code);
    Sample { wall: run.wall, cpu: run.cpu, max_rss_kib: run.max_rss_kib }
}

fn report(label: &str, mut samples: Vec<Sample>) {
    samples.sort_by_key(|s| s.wall);
    let median = &samples[samples.len() / 2];
    let rss = samples.iter().map(|s| s.max_rss_kib).max().unwrap_or(0);
    // The minimum too: on a shared machine it is the figure least disturbed by other work.
    println!(
        "{label:<58} wall {:>8.1} ms (median of {}, min {:.1})  cpu {:>8.1} ms  max RSS {:>6.1} MiB",
        median.wall.as_secs_f64() * 1e3,
        samples.len(),
        samples[0].wall.as_secs_f64() * 1e3,
        median.cpu.as_secs_f64() * 1e3,
        rss as f64 / 1024.0
    );
}

fn main() {
    let root: PathBuf = std::env::var_os("ROSH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"))
        .join("cf-deployment/v58.0.0");
    let runs: usize = std::env::var("ROSH_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store.yml");
    let s = |x: &str| x.to_string();
    let base = vec![s("int"), s("cf-deployment.yml"), s("-v"), s("system_domain=example.com")];

    let ops_count: usize = OPS
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(f)).expect("ops file");
            rosh::manifest::patch::parse_ops(&rosh::manifest::yaml::parse(&text, f).expect("yaml"), f)
                .expect("ops")
                .len()
        })
        .sum();

    let mut generate = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_file(&store);
        let mut args = base.clone();
        args.extend([s("--vars-store"), store.display().to_string()]);
        generate.push(run(&args, &root));
    }
    let generated = rosh::manifest::yaml::parse(&std::fs::read_to_string(&store).unwrap(), "store").unwrap();
    let count = generated.as_mapping().map(|m| m.len()).unwrap_or(0);
    report(&format!("generate all {count} variables into an empty store"), generate);

    // Top the store up with what the ops files add, so every scenario below has all its values.
    let mut top_up = base.clone();
    top_up.extend([s("--vars-store"), store.display().to_string()]);
    for op in OPS {
        top_up.extend([s("-o"), s(op)]);
    }
    for vf in VARS_FILES {
        top_up.extend([s("-l"), s(vf)]);
    }
    run(&top_up, &root);

    let mut with_vars = base.clone();
    with_vars.extend([s("-l"), store.display().to_string(), s("--var-errs")]);
    report("cf-deployment, complete vars file (-l)", (0..runs).map(|_| run(&with_vars, &root)).collect());

    let mut with_ops = with_vars.clone();
    for op in OPS {
        with_ops.extend([s("-o"), s(op)]);
    }
    for vf in VARS_FILES {
        with_ops.extend([s("-l"), s(vf)]);
    }
    report(&format!("  + 10 ops files ({ops_count} ops)"), (0..runs).map(|_| run(&with_ops, &root)).collect());

    // Same values, read through the vars-store path instead of `-l`.
    let mut via_store = with_ops.clone();
    if let Some(i) = via_store.iter().position(|a| *a == store.display().to_string()) {
        via_store[i - 1] = s("--vars-store");
    }
    report("  same, with --vars-store instead of -l", (0..runs).map(|_| run(&via_store, &root)).collect());
}

//! Benchmark of planning cf-deployment v44.5.0 (+ scale-to-one-az) with its releases uploaded
//! (the fixture of `tests/cf_corpus`: seven releases built from the corpus specs, set up once in
//! a temp state dir).
//!
//! In process, N runs each (`ROSH_BENCH_RUNS`, default 20), min and median, then the peak RSS:
//! - reading the manifest as deploy does (ops files, variables from the vars file);
//! - the desired model from it (`cli::deploy::desire`: releases and stemcells from the state,
//!   then `plan::build`);
//! - both, as one plan starts.
//!
//! Then whole `rosh` processes ([`Scenario`]s, wall time and the child's peak RSS from wait4):
//! `rosh -d cf plan` against the state with nothing deployed, and against the state with cf
//! recorded as deployed (`CfFixture::record_as_deployed`: every instance with the spec a deploy
//! applies, no VMs) and a new stemcell uploaded and pinned — the target, under 200 ms:
//! every instance's jobs are rendered and compared, every package is looked up in the cache.
//!
//! `cargo bench --bench plan`

#[path = "../tests/cf_corpus/mod.rs"]
mod cf_corpus;
#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cf_corpus::{CfFixture, cf_manifest};
use rosh::cli::deploy::{cloud_config, desire, read_manifest};

/// Peak resident set of this process so far, MiB (`VmHWM`).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Starts the peak RSS over from the current RSS (Linux: `5` into clear_refs).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// min / median of `runs` runs of `f`.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[0], samples[samples.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One `rosh` command line to time as a whole process.
struct Scenario {
    label: &'static str,
    args: Vec<String>,
}

/// Runs rosh once; wall time and the child's peak RSS (MiB), or its stderr when it fails.
fn run_rosh(args: &[String], cwd: &Path, state: &Path) -> Result<(Duration, f64), String> {
    let run = support::measure(
        Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(args)
            .current_dir(cwd)
            .env("ROSH_STATE_DIR", state)
            .env_remove("ROSH_DEPLOYMENT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cwd.join("rosh.err")).unwrap()),
    );
    // `plan --detailed-exitcode` exits 2 for "changes": still a plan made.
    if !matches!(run.code, Some(0 | 2)) {
        let err = std::fs::read_to_string(cwd.join("rosh.err")).unwrap_or_default();
        return Err(support::tail(&err, 8));
    }
    Ok((run.wall, run.max_rss_mib()))
}

fn main() {
    let runs: usize = std::env::var("ROSH_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(20).max(1);
    let tmp = tempfile::Builder::new().prefix("rosh-bench-plan-").tempdir().expect("tempdir");
    let started = Instant::now();
    let f = CfFixture::build(tmp.path());
    println!(
        "fixture: cf-deployment v44.5.0 + scale-to-one-az, {} releases uploaded, in {:.1}s",
        f.versions.len(),
        started.elapsed().as_secs_f64()
    );

    // In process.
    let director = f.director();
    let flags = f.flags(&[]);
    let (cloud, _) = cloud_config(&director, Some(&f.cloud_config)).expect("cloud config");
    let (_, manifest) = read_manifest(&director, &cf_manifest(), &flags, Some("cf")).expect("manifest");
    let desired = desire(&director, &manifest, &cloud, &[]).expect("desired model");
    let instances: usize = desired.groups.iter().map(|g| g.instances.len()).sum();
    let packages: usize = desired.groups.iter().map(|g| g.packages.len()).sum();
    println!("model: {} groups, {instances} instances, {packages} group packages", desired.groups.len());

    reset_peak_rss();
    let before = peak_rss_mib();
    let (min, median) = time(runs, || read_manifest(&director, &cf_manifest(), &flags, Some("cf")).unwrap());
    println!("read manifest (ops, vars)      min {:>9}  median {:>9}  ({runs} runs)", ms(min), ms(median));
    let (min, median) = time(runs, || desire(&director, &manifest, &cloud, &[]).unwrap());
    println!("desired model (state + build)  min {:>9}  median {:>9}  ({runs} runs)", ms(min), ms(median));
    let (min, median) = time(runs, || f.desired_with(&director, &[]).unwrap());
    println!("both                           min {:>9}  median {:>9}  ({runs} runs)", ms(min), ms(median));
    println!("peak RSS while planning: {:.1} MiB (was {before:.1} MiB before the runs)", peak_rss_mib());

    // Whole processes.
    let mut plan_args: Vec<String> = vec!["-d".into(), "cf".into(), "plan".into(), cf_manifest().display().to_string()];
    plan_args.extend(f.interpolate_args(&[]));
    plan_args.extend(["-l".into(), f.vars_store.display().to_string()]);
    plan_args.extend(["--cloud-config".into(), f.cloud_config.display().to_string()]);
    plan_args.push("--allow-unordered-links".into());
    let process_runs = runs.min(10);
    run_scenario(&Scenario { label: "rosh plan, nothing deployed", args: plan_args.clone() }, &f, process_runs);

    // cf recorded as deployed (every instance with the spec a deploy applies), then a new
    // stemcell uploaded and pinned: every VM recreates, every package compiles again.
    f.record_as_deployed();
    let (_, pin) = f.upload_next_stemcell();
    let mut deployed_args = plan_args;
    deployed_args.extend(["-o".into(), pin.display().to_string(), "--detailed-exitcode".into()]);
    run_scenario(&Scenario { label: "rosh plan, deployed, new stemcell", args: deployed_args }, &f, process_runs);
}

/// Times `process_runs` runs of a whole `rosh` process and prints min, median and peak RSS.
fn run_scenario(s: &Scenario, f: &CfFixture, process_runs: usize) {
    let mut samples = Vec::new();
    let mut rss: f64 = 0.0;
    let mut failed = None;
    for _ in 0..process_runs {
        match run_rosh(&s.args, &f.root, &f.state_dir) {
            Ok((t, r)) => {
                samples.push(t);
                rss = rss.max(r);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        println!("{:<30} failed:\n{e}", s.label);
        return;
    }
    samples.sort();
    println!(
        "{:<30} min {:>9}  median {:>9}  peak RSS {rss:.1} MiB  ({process_runs} runs)",
        s.label,
        ms(samples[0]),
        ms(samples[samples.len() / 2])
    );
}

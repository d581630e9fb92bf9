//! Benchmark of the release-upload path (issue 3): builds a release source directory whose one
//! package holds a large incompressible file (default 1 GiB; `ROSH_BENCH_SIZE_MB` to change),
//! times `create-release --tarball` on it and on a release with 200 small files, then times
//! `upload-release` of the big tarball against `sha256sum` of the same file and reports the
//! upload's peak RSS.
//!
//! `cargo bench --bench upload`

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(program: &str, args: &[&str], cwd: &Path, state: &Path) -> (Duration, i64) {
    let run = support::measure(
        Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env("ROSH_STATE_DIR", state)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    assert!(run.success(), "{program} {args:?} failed");
    (run.wall, run.max_rss_kib)
}

fn release_dir(root: &Path, name: &str, files: &[(&str, u64)]) {
    std::fs::create_dir_all(root.join("config")).unwrap();
    std::fs::write(root.join("config/final.yml"), format!("final_name: {name}\n")).unwrap();
    std::fs::create_dir_all(root.join("jobs/j/templates")).unwrap();
    std::fs::write(root.join("jobs/j/spec"), "name: j\ntemplates: {}\npackages: [p]\nproperties: {}\n").unwrap();
    std::fs::write(root.join("jobs/j/monit"), "").unwrap();
    std::fs::create_dir_all(root.join("packages/p")).unwrap();
    std::fs::write(root.join("packages/p/spec"), "name: p\ndependencies: []\nfiles:\n- p/**/*\n").unwrap();
    std::fs::write(root.join("packages/p/packaging"), "cp -a p/* \"$BOSH_INSTALL_TARGET\"\n").unwrap();
    for (path, size) in files {
        let file = root.join("src/p").join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        // xorshift: incompressible, so gzip cannot shrink the benchmark away.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size;
        let mut left = *size;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            for chunk in buf.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            let n = left.min(buf.len() as u64) as usize;
            out.write_all(&buf[..n]).unwrap();
            left -= n as u64;
        }
    }
}

fn main() {
    let rosh = env!("CARGO_BIN_EXE_rosh");
    let mb: u64 = std::env::var("ROSH_BENCH_SIZE_MB").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path();
    let state = work.join("state");

    let small: Vec<(String, u64)> = (0..200).map(|i| (format!("d{}/f{i}.txt", i % 10), 512)).collect();
    let small_refs: Vec<(&str, u64)> = small.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    release_dir(&work.join("small"), "small", &small_refs);
    let (t, _) = run(rosh, &["create-release", "small", "--tarball", "small.tgz"], work, &state);
    println!("create-release, 200 small files:            {:>9.1} ms", t.as_secs_f64() * 1e3);
    let (t, _) = run(rosh, &["create-release", "small", "--tarball", "small2.tgz", "--force"], work, &state);
    println!("create-release, 200 small files (cached):   {:>9.1} ms", t.as_secs_f64() * 1e3);

    release_dir(&work.join("big"), "big", &[("blob.bin", mb << 20)]);
    let (t, _) = run(rosh, &["create-release", "big", "--tarball", "big.tgz"], work, &state);
    let size = std::fs::metadata(work.join("big.tgz")).unwrap().len();
    println!("create-release, one {mb} MiB package:      {:>9.1} s", t.as_secs_f64());

    let (sha, _) = run("sha256sum", &["big.tgz"], work, &state);
    let (up, rss) = run(rosh, &["upload-release", "big.tgz"], work, &state);
    let mib = size as f64 / (1 << 20) as f64;
    println!(
        "sha256sum of the {mib:.0} MiB tarball:           {:>9.2} s ({:.0} MiB/s)",
        sha.as_secs_f64(),
        mib / sha.as_secs_f64()
    );
    println!(
        "upload-release of it:                       {:>9.2} s ({:.0} MiB/s)",
        up.as_secs_f64(),
        mib / up.as_secs_f64()
    );
    println!(
        "throughput ratio upload / sha256sum:        {:>9.2} (target >= 0.8)",
        sha.as_secs_f64() / up.as_secs_f64()
    );
    println!("upload-release peak RSS:                    {:>9.1} MiB (target < 64)", rss as f64 / 1024.0);
}

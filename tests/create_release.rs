//! `rosh create-release` end to end on a copy of `releases/hello`: versions, fingerprints that
//! change only with what they cover, reproducible tarballs whose `release.MF` digests match
//! their entries, final releases, and refusals of broken sources.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{rosh, stderr, stdout};
use rosh::release::manifest::{self, BuildIndex, ReleaseManifest};
use sha2::{Digest, Sha256};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("releases/hello")
}

/// Copies the sample release source (not any build output) into a fresh temporary directory.
fn copy_of_sample() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello");
    common::copy_release_source(&sample(), &dir);
    (tmp, dir)
}

/// What `create-release --json` says about one run.
struct Run {
    json: serde_json::Value,
}

impl Run {
    fn version(&self) -> &str {
        self.json["version"].as_str().unwrap()
    }

    fn new_version(&self) -> bool {
        self.json["new_version"].as_bool().unwrap()
    }

    /// name → (fingerprint, status) of the jobs, packages and the license.
    fn artifacts(&self) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for kind in ["jobs", "packages"] {
            for a in self.json[kind].as_array().unwrap() {
                let entry = (a["fingerprint"].as_str().unwrap().to_string(), a["status"].as_str().unwrap().to_string());
                out.insert(format!("{kind}/{}", a["name"].as_str().unwrap()), entry);
            }
        }
        let l = &self.json["license"];
        out.insert(
            "license".to_string(),
            (l["fingerprint"].as_str().unwrap().to_string(), l["status"].as_str().unwrap().to_string()),
        );
        out
    }

    fn fingerprint(&self, name: &str) -> String {
        self.artifacts()[name].0.clone()
    }

    fn status(&self, name: &str) -> String {
        self.artifacts()[name].1.clone()
    }
}

fn create(dir: &Path, extra: &[&str]) -> Run {
    let dir_arg = dir.to_str().unwrap();
    let mut args = vec!["create-release", dir_arg, "--json"];
    args.extend_from_slice(extra);
    let out = rosh(&args, dir.parent().unwrap());
    assert!(out.status.success(), "rosh {args:?} failed:\n{}", stderr(&out));
    Run { json: serde_json::from_str(&stdout(&out)).expect("--json prints JSON") }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn read_index(path: &Path) -> BuildIndex {
    manifest::parse(&fs::read_to_string(path).unwrap(), &path.display().to_string()).unwrap()
}

/// Entries of a gzipped tarball: path → bytes (directories left out).
fn entries(tgz: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.insert(path, bytes);
    }
    out
}

#[test]
fn versions_and_fingerprints_follow_what_changed() {
    let (_tmp, dir) = copy_of_sample();

    let first = create(&dir, &[]);
    assert_eq!(first.version(), "0+dev.1");
    assert!(first.new_version());
    let names: Vec<String> = first.artifacts().into_keys().collect();
    assert_eq!(names, ["jobs/hello", "license", "packages/greeting-lib", "packages/hello-server"]);
    assert!(first.artifacts().values().all(|(fp, status)| fp.len() == 64 && status == "new"));
    assert!(dir.join("dev_releases/hello/hello-0+dev.1.yml").is_file());
    let fp = first.fingerprint("packages/greeting-lib");
    let built = dir.join(format!(".dev_builds/packages/greeting-lib/{fp}.tgz"));
    assert!(built.is_file());
    let index = read_index(&dir.join(".dev_builds/packages/greeting-lib/index.yml"));
    assert_eq!(index.builds[&fp].version, fp, "a dev artifact's version is its fingerprint");
    assert_eq!(
        index.builds[&fp].sha1.as_deref(),
        Some(format!("sha256:{}", sha256_hex(&fs::read(&built).unwrap())).as_str())
    );

    // Nothing changed: no new version, same fingerprints, all reused.
    let out = rosh(&["create-release", dir.to_str().unwrap()], &dir);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("No changes since hello/0+dev.1"), "{}", stdout(&out));
    let again = create(&dir, &[]);
    assert!(!again.new_version());
    assert_eq!(again.version(), "0+dev.1");
    for (name, (fingerprint, status)) in again.artifacts() {
        assert_eq!(fingerprint, first.fingerprint(&name), "{name}");
        assert_eq!(status, "reused", "{name}");
    }
    assert_eq!(read_index(&dir.join("dev_releases/hello/index.yml")).builds.len(), 1);

    // A file the package excludes (excluded_files) is not part of it.
    fs::write(dir.join("src/hello-server/server_test.py"), "print('changed test')\n").unwrap();
    assert!(!create(&dir, &[]).new_version());

    // One file of greeting-lib: only greeting-lib changes. hello-server depends on it, but bosh's
    // algorithm feeds dependencies in by name, not by fingerprint, so hello-server keeps its own.
    let path = dir.join("src/greeting-lib/greeting.py");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replace("{greeting}, {name}!", "{greeting}, dear {name}!")).unwrap();
    let second = create(&dir, &[]);
    assert_eq!(second.version(), "0+dev.2");
    assert_ne!(second.fingerprint("packages/greeting-lib"), first.fingerprint("packages/greeting-lib"));
    assert_eq!(second.status("packages/greeting-lib"), "new");
    for name in ["packages/hello-server", "jobs/hello", "license"] {
        assert_eq!(second.fingerprint(name), first.fingerprint(name), "{name}");
        assert_eq!(second.status(name), "reused", "{name}");
    }

    // A job template: only the job changes.
    let path = dir.join("jobs/hello/templates/config.json.hbs");
    fs::write(&path, fs::read_to_string(&path).unwrap().replace("\"port\"", "\"listen_port\"")).unwrap();
    let third = create(&dir, &[]);
    assert_eq!(third.version(), "0+dev.3");
    assert_ne!(third.fingerprint("jobs/hello"), second.fingerprint("jobs/hello"));
    for name in ["packages/greeting-lib", "packages/hello-server", "license"] {
        assert_eq!(third.fingerprint(name), second.fingerprint(name), "{name}");
    }

    // The execute bit is part of a file's fingerprint (git's 100644/100755).
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir.join("src/greeting-lib/greeting.py"), fs::Permissions::from_mode(0o755)).unwrap();
    let fourth = create(&dir, &[]);
    assert_eq!(fourth.version(), "0+dev.4");
    assert_ne!(fourth.fingerprint("packages/greeting-lib"), third.fingerprint("packages/greeting-lib"));

    // --force makes a version even with no change.
    let forced = create(&dir, &["--force"]);
    assert_eq!(forced.version(), "0+dev.5");
    assert_eq!(forced.artifacts(), {
        let mut a = fourth.artifacts();
        a.values_mut().for_each(|v| v.1 = "reused".to_string());
        a
    });
}

/// The fingerprint of greeting-lib, derived here from the algorithm in `release::fingerprint`'s
/// module doc: `v2`, then per file (ordered by path) path + `sha256:<hex>` + mode, where
/// `packaging` has no mode, and no dependency chunk.
#[test]
fn fingerprints_follow_the_documented_algorithm_and_not_the_location() {
    let (_tmp, dir) = copy_of_sample();
    let file = |p: &str| format!("sha256:{}", sha256_hex(&fs::read(dir.join(p)).unwrap()));
    let chunks = format!(
        "v2greeting-lib/greeting.py{}100644packaging{}",
        file("src/greeting-lib/greeting.py"),
        file("packages/greeting-lib/packaging")
    );
    let run = create(&dir, &[]);
    assert_eq!(run.fingerprint("packages/greeting-lib"), sha256_hex(chunks.as_bytes()));

    // The same sources elsewhere have the same fingerprints.
    let (_tmp2, elsewhere) = copy_of_sample();
    assert_eq!(create(&elsewhere, &[]).artifacts(), run.artifacts());
}

#[test]
fn tarballs_are_reproducible_and_their_digests_match() {
    let (tmp, dir) = copy_of_sample();
    let a = tmp.path().join("a.tgz");
    let b = tmp.path().join("out/b.tgz");
    let c = tmp.path().join("c.tgz");
    let run = create(&dir, &["--tarball", a.to_str().unwrap()]);
    assert_eq!(run.json["tarball"].as_str(), Some(a.to_str().unwrap()));
    create(&dir, &["--tarball", b.to_str().unwrap()]);
    let bytes = fs::read(&a).unwrap();
    assert_eq!(bytes, fs::read(&b).unwrap(), "unchanged input, identical tarball");

    // Built again from nothing (cache removed): still the same bytes.
    fs::remove_dir_all(dir.join(".dev_builds")).unwrap();
    let rebuilt = create(&dir, &["--tarball", c.to_str().unwrap()]);
    assert!(!rebuilt.new_version());
    assert_eq!(rebuilt.status("packages/hello-server"), "new");
    assert_eq!(bytes, fs::read(&c).unwrap(), "rebuilt artifacts, identical tarball");

    let files = entries(&bytes);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "LICENSE",
            "jobs/hello.tgz",
            "license.tgz",
            "packages/greeting-lib.tgz",
            "packages/hello-server.tgz",
            "release.MF"
        ]
    );
    let mf: ReleaseManifest =
        manifest::parse(std::str::from_utf8(&files["release.MF"]).unwrap(), "release.MF").unwrap();
    assert_eq!((mf.name.as_str(), mf.version.as_str()), ("hello", "0+dev.1"));
    assert_eq!(mf.commit_hash.as_deref(), Some("non-git"));
    for job in &mf.jobs {
        assert_eq!(job.sha1, format!("sha256:{}", sha256_hex(&files[&format!("jobs/{}.tgz", job.name)])));
        assert_eq!(job.version, job.fingerprint);
    }
    for package in &mf.packages {
        assert_eq!(package.sha1, format!("sha256:{}", sha256_hex(&files[&format!("packages/{}.tgz", package.name)])));
    }
    let license = mf.license.as_ref().unwrap();
    assert_eq!(license.sha1, format!("sha256:{}", sha256_hex(&files["license.tgz"])));
    assert_eq!(mf.jobs[0].packages, ["hello-server"]);
    assert_eq!(mf.packages[1].dependencies, ["greeting-lib"]);

    // Inside: the job holds its spec as job.MF, monit and the listed templates; a package its
    // packaging script and its files (less excluded_files) at their paths under src/.
    let job = entries(&files["jobs/hello.tgz"]);
    assert_eq!(
        job.keys().map(String::as_str).collect::<Vec<_>>(),
        ["job.MF", "monit", "templates/config.json.hbs", "templates/start.sh.hbs"]
    );
    assert_eq!(job["job.MF"], fs::read(dir.join("jobs/hello/spec")).unwrap());
    let server = entries(&files["packages/hello-server.tgz"]);
    assert_eq!(server.keys().map(String::as_str).collect::<Vec<_>>(), ["hello-server/server.py", "packaging"]);
    assert_eq!(entries(&files["license.tgz"]).keys().collect::<Vec<_>>(), ["LICENSE"]);

    // Headers carry nothing of the machine or the moment.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&files["jobs/hello.tgz"][..]));
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 946_684_800));
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mode = h.mode().unwrap();
        let expected = if h.entry_type().is_dir() || path == "templates/start.sh.hbs" { 0o755 } else { 0o644 };
        assert_eq!(mode, expected, "{path}");
    }
}

#[test]
fn final_releases_are_recorded_where_bosh_keeps_them() {
    let (_tmp, dir) = copy_of_sample();
    let run = create(&dir, &["--final"]);
    assert_eq!(run.version(), "1");
    assert_eq!(run.json["final"], true);

    let text = fs::read_to_string(dir.join("releases/hello/hello-1.yml")).unwrap();
    let release: ReleaseManifest = manifest::parse(&text, "hello-1.yml").unwrap();
    assert_eq!(release.version, "1");
    assert_eq!(release.packages.len(), 2);
    let index = read_index(&dir.join("releases/hello/index.yml"));
    assert_eq!(index.builds.values().map(|e| e.version.as_str()).collect::<Vec<_>>(), ["1"]);
    assert_eq!(index.format_version.as_deref(), Some("2"));
    let fp = run.fingerprint("packages/hello-server");
    let final_index = read_index(&dir.join(".final_builds/packages/hello-server/index.yml"));
    assert_eq!(final_index.builds[&fp].version, fp);
    assert!(dir.join(format!(".final_builds/packages/hello-server/{fp}.tgz")).is_file());
    assert!(read_index(&dir.join(".final_builds/license/index.yml")).builds.len() == 1);
    assert!(!dir.join("dev_releases").exists(), "--final records no dev release");

    // Unchanged: no version 2 unless forced; --version picks one; an existing one is refused.
    assert!(!create(&dir, &["--final"]).new_version());
    assert_eq!(create(&dir, &["--final", "--force"]).version(), "2");
    assert_eq!(create(&dir, &["--final", "--version", "2.5.0"]).version(), "2.5.0");
    assert_eq!(create(&dir, &["--final", "--force"]).version(), "2.5.1");
    let out = rosh(&["create-release", dir.to_str().unwrap(), "--final", "--version", "2"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("release hello/2 already exists"), "{}", stderr(&out));

    // A dev release after a final one continues from it.
    fs::write(dir.join("LICENSE"), "Licensed differently.\n").unwrap();
    assert_eq!(create(&dir, &[]).version(), "2.5.1+dev.1");
}

/// Runs create-release expecting a refusal; returns stderr and checks nothing was recorded.
fn refused(dir: &Path) -> String {
    let out = rosh(&["create-release", dir.to_str().unwrap()], dir);
    assert_eq!(out.status.code(), Some(1), "stdout: {}\nstderr: {}", stdout(&out), stderr(&out));
    assert!(!dir.join("dev_releases").exists(), "a refused build records no release");
    stderr(&out)
}

#[test]
fn broken_sources_are_refused_naming_the_problem() {
    let (_tmp, dir) = copy_of_sample();
    let spec = |p: &str| dir.join(p).join("spec");
    let edit = |path: PathBuf, from: &str, to: &str| {
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{}", path.display());
        fs::write(&path, text.replace(from, to)).unwrap();
    };

    edit(spec("packages/greeting-lib"), "dependencies: []", "dependencies: [hello-server]");
    let err = refused(&dir);
    assert!(err.contains("package dependency cycle: greeting-lib -> hello-server -> greeting-lib"), "{err}");
    edit(spec("packages/greeting-lib"), "dependencies: [hello-server]", "dependencies: []");

    edit(spec("packages/hello-server"), "- greeting-lib\n", "- greeting-lib\n- openssl\n");
    let err = refused(&dir);
    assert!(err.contains("packages/hello-server/spec: dependencies[1]: unknown package `openssl`"), "{err}");
    edit(spec("packages/hello-server"), "- openssl\n", "");

    edit(spec("jobs/hello"), "- hello-server\n", "- hello-server\n- nginx\n");
    let err = refused(&dir);
    assert!(err.contains("jobs/hello/spec: packages[1]: unknown package `nginx`"), "{err}");
    edit(spec("jobs/hello"), "- nginx\n", "");

    edit(spec("packages/greeting-lib"), "- greeting-lib/greeting.py", "- greeting-lib/*.rb");
    let err = refused(&dir);
    assert!(err.contains("packages/greeting-lib/spec: files[0]: `greeting-lib/*.rb` matches no file"), "{err}");
    edit(spec("packages/greeting-lib"), "- greeting-lib/*.rb", "- greeting-lib/greeting.py");

    fs::remove_file(dir.join("jobs/hello/templates/start.sh.hbs")).unwrap();
    let err = refused(&dir);
    assert!(err.contains("jobs/hello/spec: templates.start.sh.hbs: no such file"), "{err}");
}

#[test]
fn a_git_work_tree_with_changes_is_refused_unless_forced() {
    let (_tmp, dir) = copy_of_sample();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "hello"]);
    let head = git(&["rev-parse", "--short", "HEAD"]);

    let clean = create(&dir, &[]);
    assert_eq!(clean.json["commit_hash"], head.as_str());
    assert_eq!(clean.json["uncommitted_changes"], false);
    // The sample's .gitignore keeps the build output from dirtying the tree.
    assert!(!create(&dir, &[]).new_version());

    fs::write(dir.join("jobs/hello/monit"), "check process hello\n").unwrap();
    let out = rosh(&["create-release", dir.to_str().unwrap()], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("local modifications"), "{}", stderr(&out));
    assert!(stderr(&out).contains("jobs/hello/monit"), "{}", stderr(&out));

    let forced = create(&dir, &["--force"]);
    assert_eq!(forced.version(), "0+dev.2");
    assert_eq!(forced.json["uncommitted_changes"], true);
}

/// rosh writes `index.yml` files with bosh's `format-version` key, and reads bosh's.
#[test]
fn build_indexes_use_bosh_format_version_key() {
    let corpus = common::corpus().join("releases/nats-56.26.0/.final_builds/jobs/nats/index.yml");
    assert_eq!(read_index(&corpus).format_version.as_deref(), Some("2"));
    let (_tmp, dir) = copy_of_sample();
    create(&dir, &[]);
    let text = fs::read_to_string(dir.join(".dev_builds/license/index.yml")).unwrap();
    assert!(text.ends_with("format-version: '2'\n"), "{text}");
}

//! `rosh compat check` end to end: small releases built with `create-release` (one named `cf`,
//! one `diego`, at the versions the corpus talks about) and uploaded with the local stemcell into
//! a state dir of the test's own, then checked as an operator would. Also: a release's
//! `config/requires.yml` travels create-release → release.MF → upload → the state's record, and
//! `compat check` writes nothing (no generated variable kept, state.db unchanged). No VM is made.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rosh::compat::Requires;
use rosh::state::State;

struct Director {
    tmp: tempfile::TempDir,
    state_dir: PathBuf,
    os: String,
}

impl Director {
    /// A state dir with the local stemcell uploaded.
    fn new() -> Director {
        let tmp = tempfile::Builder::new().prefix("rosh-compat-").tempdir().unwrap();
        let state_dir = tmp.path().join("state");
        let mut director = Director { tmp, state_dir, os: String::new() };
        let stemcell = director.path("stemcell.tgz");
        director.ok(&["create-stemcell", "--local", "--tarball", stemcell.to_str().unwrap()]);
        director.ok(&["upload-stemcell", stemcell.to_str().unwrap()]);
        let list: serde_json::Value = serde_json::from_str(&director.ok(&["stemcells", "--json"])).unwrap();
        director.os = list[0]["operating_system"].as_str().unwrap().to_string();
        director
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn rosh(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rosh"))
            .args(args)
            .env("ROSH_STATE_DIR", &self.state_dir)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.rosh(args);
        assert!(out.status.success(), "rosh {args:?} failed:\n{}{}", common::stderr(&out), common::stdout(&out));
        common::stdout(&out)
    }

    /// Builds a one-job release `name`/`version` (its job is `name`-job, with a `password`
    /// property), with `requires` as its config/requires.yml, and uploads it.
    fn release(&self, name: &str, version: &str, requires: Option<&str>) -> PathBuf {
        let dir = self.path(&format!("src-{name}-{version}"));
        let job = dir.join("jobs").join(format!("{name}-job"));
        fs::create_dir_all(job.join("templates")).unwrap();
        fs::create_dir_all(dir.join("packages")).unwrap();
        fs::write(
            job.join("spec"),
            format!("name: {name}-job\ntemplates: {{}}\npackages: []\nproperties:\n  password: {{}}\n"),
        )
        .unwrap();
        fs::write(job.join("monit"), "").unwrap();
        if let Some(requires) = requires {
            fs::create_dir_all(dir.join("config")).unwrap();
            fs::write(dir.join("config/requires.yml"), requires).unwrap();
        }
        let tarball = self.path(&format!("{name}-{version}.tgz"));
        self.ok(&[
            "create-release",
            dir.to_str().unwrap(),
            "--name",
            name,
            "--version",
            version,
            "--tarball",
            tarball.to_str().unwrap(),
        ]);
        self.ok(&["upload-release", tarball.to_str().unwrap()]);
        tarball
    }

    /// A manifest with one group per release, each running the release's job.
    fn manifest(&self, file: &str, releases: &[(&str, &str)]) -> PathBuf {
        let mut text = String::from("name: compat\nreleases:\n");
        for (name, version) in releases {
            text.push_str(&format!("- {{name: {name}, version: \"{version}\"}}\n"));
        }
        text.push_str(&format!(
            "stemcells:\n- {{alias: default, os: {}, version: latest}}\n\
             update: {{canaries: 1, max_in_flight: 1, canary_watch_time: 1000, update_watch_time: 1000}}\n\
             variables:\n- {{name: secret, type: password}}\ninstance_groups:\n",
            self.os
        ));
        for (name, _) in releases {
            text.push_str(&format!(
                "- name: {name}-group\n  instances: 1\n  azs: [z1]\n  vm_type: default\n  stemcell: default\n  \
                 networks: [{{name: default}}]\n  jobs:\n  - name: {name}-job\n    release: {name}\n    \
                 properties: {{password: ((secret))}}\n"
            ));
        }
        let path = self.path(file);
        fs::write(&path, text).unwrap();
        path
    }

    fn check(&self, manifest: &Path, extra: &[&str]) -> Output {
        let cloud = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/cloud-config-local.yml");
        let mut args = vec!["compat", "check", manifest.to_str().unwrap(), "--cloud-config", cloud.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.rosh(&args)
    }
}

/// The database's bytes, with its write-ahead log (where SQLite puts writes first).
fn sha256(db: &Path) -> Vec<u8> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(fs::read(db).unwrap());
    hasher.update(fs::read(db.with_extension("db-wal")).unwrap_or_default());
    hasher.finalize().to_vec()
}

#[test]
fn compat_check_of_uploaded_releases() {
    let d = Director::new();
    d.release("cf", "238", None);
    d.release("cf", "207", None);
    d.release("diego", "0.1476.0", None);
    d.release("diego", "0.1099.0", None);
    d.release("diego", "1.0.0", None);

    // A tested pair: exit 0, shown as ok.
    let manifest = d.manifest("tested.yml", &[("cf", "238"), ("diego", "0.1476.0")]);
    let db = d.state_dir.join("state.db");
    let before = sha256(&db);
    let out = d.check(&manifest, &[]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{}{text}", common::stderr(&out));
    assert!(text.contains("ok: cf 238 with diego 0.1476.0: tested together (diego-cf-compatibility"), "{text}");
    assert!(text.ends_with("Compatibility: 0 error(s), 0 warning(s)\n"), "{text}");
    // Nothing written: the generated `secret` was not kept, the database is byte for byte the same.
    let state = State::open(&d.state_dir).unwrap();
    assert!(state.variables("compat").unwrap().is_empty());
    drop(state);
    assert_eq!(sha256(&db), before, "compat check changed state.db");

    // The pair the maintainers stated.
    let out = d.check(&d.manifest("stated.yml", &[("cf", "207"), ("diego", "0.1099.0")]), &[]);
    assert!(out.status.success() && common::stdout(&out).contains("issues/665"), "{}", common::stdout(&out));

    // Untested: a warning naming the nearest tested pairs, still exit 0; --json carries it.
    let untested = d.manifest("untested.yml", &[("cf", "207"), ("diego", "1.0.0")]);
    let out = d.check(&untested, &[]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning: cf 207 with diego 1.0.0 is not a tested pair"), "{text}");
    assert!(text.contains("cf 207 → diego 0.1099.0; cf 208 → diego 0.1198.0"), "{text}");
    let out = d.check(&untested, &["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["warnings"][0]["rule"], "untested");
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);

    // Declared incompatible by the operator in the state dir: exit 1 with the reason.
    fs::write(
        d.state_dir.join("compatibility.yml"),
        "incompatible:\n- releases: {cf: '207', diego: '>= 1.0.0'}\n  reason: tried it, the cells never register\n",
    )
    .unwrap();
    let out = d.check(&untested, &[]);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error: cf 207 with diego 1.0.0 are declared incompatible"), "{text}");
    assert!(text.contains("tried it, the cells never register"), "{text}");
    // ... which --skip-compat-check reports as bypassed.
    let out = d.check(&untested, &["--skip-compat-check"]);
    let text = common::stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("error (bypassed by --skip-compat-check): cf 207 with diego 1.0.0 are declared incompatible"),
        "{text}"
    );
    fs::remove_file(d.state_dir.join("compatibility.yml")).unwrap();

    // The same through --compat-table; a bad table is refused naming the file and the path.
    let table = d.path("table.yml");
    fs::write(&table, "incompatible:\n- releases: {cf: '>= 238', diego: '0.1476.0'}\n").unwrap();
    let out = d.check(&manifest, &["--compat-table", table.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    fs::write(&table, "tested:\n- releases: {cf: '238', diego: '>= 1'}\n").unwrap();
    let out = d.check(&manifest, &["--compat-table", table.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains(&format!("{}: tested[0].releases.diego: ", table.display())), "{err}");
}

#[test]
fn a_release_requiring_a_newer_stemcell_fails_the_check_and_its_requires_travel() {
    let d = Director::new();
    let requires = "rosh: '>= 0.1'\nreleases:\n- name: cf\n  version: '~> 238'\nstemcells:\n- version: '>= 2.0'\n";
    let tarball = d.release("diego", "0.1476.0", Some(requires));
    d.release("cf", "238", None);

    // create-release put it into release.MF (in the tarball and in dev_releases/) ...
    let release_mf = String::from_utf8(
        Command::new("tar").args(["xzf", tarball.to_str().unwrap(), "-O", "release.MF"]).output().unwrap().stdout,
    )
    .unwrap();
    let from_mf: rosh::release::manifest::ReleaseManifest =
        rosh::release::manifest::parse(&release_mf, "release.MF").unwrap();
    let expected: Requires = rosh::compat::requires::parse(requires, "config/requires.yml").unwrap();
    assert_eq!(from_mf.requires.as_ref(), Some(&expected));
    let dev = fs::read_to_string(d.path("src-diego-0.1476.0/dev_releases/diego/diego-0.1476.0.yml")).unwrap();
    assert_eq!(
        rosh::release::manifest::parse::<rosh::release::manifest::ReleaseManifest>(&dev, "dev").unwrap().requires,
        Some(expected.clone())
    );
    // ... and upload-release into the state's record of the version; a release without one has none.
    let state = State::open(&d.state_dir).unwrap();
    let json = state.release_requires("diego", "0.1476.0").unwrap().expect("recorded requires");
    assert_eq!(serde_json::from_str::<Requires>(&json).unwrap(), expected);
    assert_eq!(state.release_requires("cf", "238").unwrap(), None);
    drop(state);

    let out = d.check(&d.manifest("needy.yml", &[("cf", "238"), ("diego", "0.1476.0")]), &[]);
    let text = common::stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", common::stderr(&out));
    let os = &d.os;
    assert!(
        text.contains(&format!(
            "error: release diego/0.1476.0 requires a stemcell any OS >= 2.0, but instance groups diego-group run its jobs \
             on stemcell bosh-local-{os}-rosh/1.0 ({os} 1.0)"
        )),
        "{text}"
    );
    assert!(text.contains("Compatibility: 1 error(s), 0 warning(s)"), "{text}");

    // deploy runs the same gate first: refused before any stemcell reaches the CPI or any VM
    // exists, with the same sentence.
    let cloud = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/cloud-config-local.yml");
    let manifest = d.path("needy.yml");
    let out =
        d.rosh(&["-d", "compat", "deploy", manifest.to_str().unwrap(), "--cloud-config", cloud.to_str().unwrap()]);
    let err = common::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("requires a stemcell any OS >= 2.0"), "{err}");
    let empty = |dir: &str| fs::read_dir(d.state_dir.join(dir)).map_or(true, |mut entries| entries.next().is_none());
    assert!(empty("cpi/local/vms"), "no VM");
    assert!(empty("cpi/local/stemcells"), "no stemcell was uploaded to the CPI");
}

#[test]
fn a_bad_requires_file_is_refused_by_create_release_with_its_path() {
    let d = Director::new();
    let dir = d.path("src");
    fs::create_dir_all(dir.join("jobs/j/templates")).unwrap();
    fs::create_dir_all(dir.join("config")).unwrap();
    fs::write(dir.join("jobs/j/spec"), "name: j\ntemplates: {}\n").unwrap();
    fs::write(dir.join("jobs/j/monit"), "").unwrap();
    fs::write(dir.join("config/requires.yml"), "stemcells:\n- os: ubuntu-jammy\n  version: '>= 1.4,'\n").unwrap();
    let out = d.rosh(&["create-release", dir.to_str().unwrap(), "--name", "r"]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("config/requires.yml: stemcells[0].version: "), "{err}");
    assert!(!dir.join("dev_releases").exists(), "nothing created");
}

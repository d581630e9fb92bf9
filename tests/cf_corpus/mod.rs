//! cf-deployment v44.5.0 as a fixture: its releases built for real from the job and package
//! specs in `../shared/corpus/releases/`, uploaded with the real `rosh` binary into a state dir
//! of the fixture's own, a local stemcell of the version the manifest pins, a local cloud config
//! on 127.200.0.0/16, and the variables generated once. Tests (`tests/plan_cf_deployment.rs`)
//! and the plan benchmark (`benches/plan.rs`) include this module.
//!
//! # The releases
//! Each corpus release becomes a release SOURCE directory: its `config/final.yml`, LICENSE and
//! NOTICE; every job's real `spec`, with an empty `monit` and an empty file for every template
//! the spec lists (nothing renders them while planning); every package's real `spec` (files,
//! excluded files and dependencies as written), one empty file under `src/` for each `files`
//! glob so that it matches, and a one-line packaging script. Packages the release tarball carries
//! but the source tree only vendors (`golang-1.23-linux`, `ruby-3.2`, `cf-cli-8-linux`, …: in
//! the release manifest under `releases/`, with no spec in `packages/`) are added as plain
//! packages with the dependencies the release manifest gives them, as a built tarball holds them.
//!
//! Every packaging script names the package's upstream fingerprint from the corpus release
//! manifest, so two same-named packages of different releases have equal fingerprints here
//! exactly when they have them upstream: nats', routing's and garden-runc's vendored
//! `golang-1.23-linux` are one package (compiled once), diego's is another. The releases are
//! created as the versions cf-deployment v44.5.0 pins (`create-release --final --version V`),
//! whatever version the corpus copy says.
//!
//! # Releases the corpus does not hold
//! cf-deployment v44.5.0 uses 30 releases; the corpus holds the job and package specs of 7 (bpm,
//! capi, diego, garden-runc, nats, routing, uaa). The others (loggregator, loggregator-agent,
//! log-cache, cf-networking, silk, pxc, credhub, statsd-injector, cflinuxfs4, the eleven
//! buildpacks, cf-smoke-tests, cf-cli, bosh-dns-aliases) are REMOVED by the test ops file
//! `tests/cf_corpus/remove-releases-not-in-corpus.yml`, which lists each removed job with its
//! release: made-up stand-ins for them would have invented specs, so neither their properties
//! nor their links would test anything real. What the removal takes out:
//! - jobs of those releases from the groups that keep a corpus job (database keeps only
//!   routing's route_registrar, log-cache and log-api likewise);
//! - the groups left with no job: smoke-tests, doppler, credhub;
//! - the addons loggregator_agent, forwarder_agent, loggr-syslog-agent, prom_scraper and
//!   bosh-dns-aliases (bpm's addon stays);
//! - those releases from `releases:`.
//!
//! No job of the seven requires a link that only a removed job provides, so no consumer had to
//! go (optional links such as cloud_controller_ng's `database` or `credhub` simply resolve to
//! nothing). Every job of the seven releases that the manifest names stays, with its properties.
//!
//! The ops file also points the stemcell at this machine's OS (`((stemcell_os))`): the local
//! stemcell is built as `bosh-local-<host os>` version 1.621, the version the manifest pins.
//!
//! `operations/scale-to-one-az.yml` is not in the corpus copy of v44.5.0; the v58.0.0 one is
//! used. Every path it changes exists in v44.5.0 (the same fourteen instance groups), and it is
//! applied before the removal, so its doppler and credhub lines still find their groups.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use rosh::cli::deploy::{Director, cloud_config, desire, read_manifest};
use rosh::cli::interpolate::VarFlags;
use rosh::plan::desired::DesiredDeployment;
use serde_yaml_ng::Value;

/// The loopback range of this fixture's cloud config.
pub const RANGE: &str = "127.200";
/// The deployment's system domain.
pub const SYSTEM_DOMAIN: &str = "cf.rosh.test";
/// The releases whose specs the corpus holds.
pub const CORPUS_RELEASES: [&str; 7] = ["bpm", "capi", "diego", "garden-runc", "nats", "routing", "uaa"];

/// `../shared/corpus` beside the repository (override with `ROSH_CORPUS`).
pub fn corpus() -> PathBuf {
    match std::env::var_os("ROSH_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"),
    }
}

/// The corpus cf-deployment v44.5.0 manifest.
pub fn cf_manifest() -> PathBuf {
    corpus().join("cf-deployment/v44.5.0/cf-deployment.yml")
}

/// `operations/scale-to-one-az.yml` (v58.0.0's; see the module doc).
pub fn scale_to_one_az() -> PathBuf {
    corpus().join("cf-deployment/v58.0.0/operations/scale-to-one-az.yml")
}

/// The test ops file that removes what the corpus has no specs for.
pub fn removal_ops() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cf_corpus/remove-releases-not-in-corpus.yml")
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().map(|s| s.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// A package as the upstream release manifest lists it.
#[derive(Debug, Clone)]
pub struct UpstreamPackage {
    pub name: String,
    pub fingerprint: String,
    pub dependencies: Vec<String>,
}

/// One corpus release: where its source files are and what its upstream release manifest
/// (`releases/**/NAME-VERSION.yml`) says.
#[derive(Debug, Clone)]
pub struct CorpusRelease {
    pub name: String,
    /// The corpus copy's version.
    pub corpus_version: String,
    pub dir: PathBuf,
    /// Job name → the packages its spec lists.
    pub jobs: BTreeMap<String, Vec<String>>,
    pub packages: BTreeMap<String, UpstreamPackage>,
}

impl CorpusRelease {
    /// The packages `job` needs, transitively (job-listed and their dependencies).
    pub fn closure(&self, job: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<String> = self.jobs.get(job).cloned().unwrap_or_default();
        while let Some(p) = stack.pop() {
            if out.insert(p.clone()) {
                stack.extend(self.packages[&p].dependencies.iter().cloned());
            }
        }
        out
    }

    /// A package's upstream dependency key: its transitive dependencies' `name:fingerprint`,
    /// sorted.
    pub fn dependency_key(&self, package: &str) -> String {
        let mut seen = BTreeSet::new();
        let mut stack = self.packages[package].dependencies.clone();
        while let Some(p) = stack.pop() {
            let dep = &self.packages[&p];
            if seen.insert(format!("{}:{}", dep.name, dep.fingerprint)) {
                stack.extend(dep.dependencies.iter().cloned());
            }
        }
        seen.into_iter().collect::<Vec<_>>().join(",")
    }
}

/// The seven corpus releases, read from `../shared/corpus/releases/`.
pub fn corpus_releases() -> Vec<CorpusRelease> {
    let root = corpus().join("releases");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    for dir in dirs {
        let Some(mf) = release_manifest(&dir.join("releases")) else { continue };
        let doc = read_yaml(&mf);
        let name = doc["name"].as_str().unwrap().to_string();
        // The packages each job lists, from its spec (older release manifests leave them out).
        let jobs = doc["jobs"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|j| {
                let name = j["name"].as_str().unwrap().to_string();
                let spec = read_yaml(&dir.join("jobs").join(&name).join("spec"));
                (name, strings(&spec["packages"]))
            })
            .collect();
        let packages = doc["packages"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap().to_string();
                let package = UpstreamPackage {
                    name: name.clone(),
                    fingerprint: p["fingerprint"].as_str().unwrap().to_string(),
                    dependencies: strings(&p["dependencies"]),
                };
                (name, package)
            })
            .collect();
        out.push(CorpusRelease { name, corpus_version: scalar(&doc["version"]), dir, jobs, packages });
    }
    assert_eq!(
        out.iter().map(|r| r.name.as_str()).collect::<BTreeSet<_>>(),
        CORPUS_RELEASES.into_iter().collect::<BTreeSet<_>>(),
        "the corpus releases changed"
    );
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("expected a scalar, found {other:?}"),
    }
}

/// The release manifest under `releases/` (`NAME-VERSION.yml`, not `index.yml`), at any depth.
fn release_manifest(dir: &Path) -> Option<PathBuf> {
    let mut found = None;
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            found = found.or_else(|| release_manifest(&path));
        } else if path.extension().is_some_and(|e| e == "yml") && path.file_name().is_some_and(|n| n != "index.yml") {
            found = Some(path);
        }
    }
    found
}

/// Release name → version, as the corpus manifest pins them.
pub fn pinned_versions() -> BTreeMap<String, String> {
    let doc = read_yaml(&cf_manifest());
    doc["releases"].as_sequence().unwrap().iter().map(|r| (scalar(&r["name"]), scalar(&r["version"]))).collect()
}

/// A concrete relative path that `pattern` (a bosh `files` glob) matches: the first of each
/// `{a,b}`, `x` for each `*`, `**` and `?`, the first character of each `[…]`.
pub fn glob_example(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push('x');
            }
            '?' => out.push('x'),
            '[' => {
                let mut first = None;
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                    if first.is_none() && c != '!' && c != '^' {
                        first = Some(c);
                    }
                }
                out.push(first.unwrap_or('x'));
            }
            '{' => {
                // The first alternative; the rest up to the matching `}` is skipped.
                let mut depth = 1;
                let mut taking = true;
                let mut alt = String::new();
                for c in chars.by_ref() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => taking = false,
                        _ => {}
                    }
                    if taking {
                        alt.push(c);
                    }
                }
                out.push_str(&glob_example(&alt));
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Builds the release source directory of `release` at `to` (see the module doc).
pub fn build_source(release: &CorpusRelease, to: &Path) {
    std::fs::copy(release.dir.join("config/final.yml"), {
        std::fs::create_dir_all(to.join("config")).unwrap();
        to.join("config/final.yml")
    })
    .unwrap();
    for file in ["LICENSE", "NOTICE"] {
        if release.dir.join(file).is_file() {
            std::fs::copy(release.dir.join(file), to.join(file)).unwrap();
        }
    }
    for job in release.jobs.keys() {
        let spec_path = release.dir.join("jobs").join(job).join("spec");
        let mut text = std::fs::read_to_string(&spec_path).unwrap();
        let mut spec = read_yaml(&spec_path);
        // rosh renders handlebars, not ERB: the (empty) templates are renamed `.hbs`, keeping
        // their destinations, so instances render as a deployed VM's would.
        if let Some(templates) = spec["templates"].as_mapping_mut()
            && templates.keys().any(|k| k.as_str().is_some_and(|k| k.ends_with(".erb")))
        {
            let renamed: serde_yaml_ng::Mapping = templates
                .iter()
                .map(|(k, v)| {
                    let k = k.as_str().unwrap();
                    (
                        Value::String(k.strip_suffix(".erb").map_or(k.to_string(), |base| format!("{base}.hbs"))),
                        v.clone(),
                    )
                })
                .collect();
            *templates = renamed;
            text = serde_yaml_ng::to_string(&spec).unwrap();
        }
        let dir = to.join("jobs").join(job);
        write(&dir.join("spec"), &text);
        write(&dir.join("monit"), "");
        if let Some(templates) = spec["templates"].as_mapping() {
            for key in templates.keys() {
                write(&dir.join("templates").join(key.as_str().unwrap()), "");
            }
        }
    }
    for (name, package) in &release.packages {
        let dir = to.join("packages").join(name);
        let spec_path = release.dir.join("packages").join(name).join("spec");
        if spec_path.is_file() {
            let text = std::fs::read_to_string(&spec_path).unwrap();
            for pattern in strings(&read_yaml(&spec_path)["files"]) {
                let file = to.join("src").join(glob_example(&pattern));
                if !file.exists() {
                    write(&file, "");
                }
            }
            write(&dir.join("spec"), &text);
        } else {
            // Vendored upstream: only the built release carries it.
            let deps: Vec<String> = package.dependencies.iter().map(|d| format!("- {d}\n")).collect();
            let deps = if deps.is_empty() { " []\n".to_string() } else { format!("\n{}", deps.concat()) };
            write(&dir.join("spec"), &format!("---\nname: {name}\ndependencies:{deps}files: []\n"));
        }
        write(
            &dir.join("packaging"),
            &format!("# {name}, upstream fingerprint {}: nothing to build in this fixture\n", package.fingerprint),
        );
    }
}

/// Everything a plan of cf-deployment v44.5.0 needs, in a directory of its own.
pub struct CfFixture {
    pub root: PathBuf,
    pub state_dir: PathBuf,
    pub cloud_config: PathBuf,
    /// Generated once for this fixture: every variable of the manifest.
    pub vars_store: PathBuf,
    /// The local stemcell's OS (this machine's).
    pub stemcell_os: String,
    pub releases: Vec<CorpusRelease>,
    /// Release name → the version built and uploaded.
    pub versions: BTreeMap<String, String>,
}

/// The fixture's cloud config: every AZ, vm_type, vm_extension, disk_type and network
/// cf-deployment names, on [`RANGE`].
pub fn cloud_config_text() -> String {
    let subnets: String = (1..=3)
        .map(|z| {
            format!(
                "  - range: {RANGE}.{z}.0/24\n    gateway: {RANGE}.{z}.1\n    reserved: [{RANGE}.{z}.2 - {RANGE}.{z}.9]\n    \
                 static: [{RANGE}.{z}.10 - {RANGE}.{z}.19]\n    azs: [z{z}]\n    cloud_properties: {{subnet: z{z}}}\n"
            )
        })
        .collect();
    format!(
        "azs:\n- {{name: z1, cloud_properties: {{zone: a}}}}\n- {{name: z2, cloud_properties: {{zone: b}}}}\n- {{name: z3, cloud_properties: {{zone: c}}}}\n\
         vm_types:\n- {{name: minimal}}\n- {{name: small}}\n- {{name: small-highmem}}\n- {{name: medium}}\n\
         vm_extensions:\n- {{name: 50GB_ephemeral_disk, cloud_properties: {{ephemeral_disk_mb: 51200}}}}\n\
         - {{name: 100GB_ephemeral_disk, cloud_properties: {{ephemeral_disk_mb: 102400}}}}\n\
         - {{name: cf-router-network-properties, cloud_properties: {{lb: router}}}}\n\
         - {{name: cf-tcp-router-network-properties, cloud_properties: {{lb: tcp-router}}}}\n\
         - {{name: diego-ssh-proxy-network-properties, cloud_properties: {{lb: ssh-proxy}}}}\n\
         disk_types:\n- {{name: 10GB, disk_size: 10240}}\n- {{name: 100GB, disk_size: 102400}}\n\
         networks:\n- name: default\n  type: manual\n  subnets:\n{subnets}\
         compilation: {{workers: 2, az: z1, vm_type: minimal, network: default, reuse_compilation_vms: true}}\n"
    )
}

/// Runs `rosh` with `ROSH_STATE_DIR=state_dir` in `cwd`; panics with its stderr on failure.
pub fn rosh_ok(state_dir: &Path, cwd: &Path, args: &[&str]) -> String {
    let out = rosh(state_dir, cwd, args);
    assert!(out.status.success(), "rosh {args:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn rosh(state_dir: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rosh"))
        .args(args)
        .current_dir(cwd)
        .env("ROSH_STATE_DIR", state_dir)
        .env_remove("ROSH_DEPLOYMENT")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run rosh")
}

static SHARED: OnceLock<CfFixture> = OnceLock::new();

extern "C" fn remove_shared() {
    if let Some(f) = SHARED.get() {
        let _ = std::fs::remove_dir_all(&f.root);
    }
}

impl CfFixture {
    /// Builds the fixture in `root` (created; it should be empty).
    pub fn build(root: &Path) -> CfFixture {
        std::fs::create_dir_all(root).unwrap();
        let root = root.to_path_buf();
        let state_dir = root.join("state");
        let pinned = pinned_versions();

        // The stemcell: this machine's OS, the version the manifest pins.
        let stemcell_version = {
            let doc = read_yaml(&cf_manifest());
            scalar(&doc["stemcells"][0]["version"])
        };
        let definition = root.join("stemcell.yml");
        write(
            &definition,
            &format!(
                "name: bosh-local-{{operating_system}}\nversion: \"{stemcell_version}\"\napi_version: 3\n\
                 stemcell_formats: [local]\ncloud_properties: {{infrastructure: local}}\ntools: [sh]\n"
            ),
        );
        let tarball = root.join("stemcell.tgz");
        let created = rosh_ok(
            &state_dir,
            &root,
            &["create-stemcell", "--local", "--definition", path(&definition), "--tarball", path(&tarball), "--json"],
        );
        let created: serde_json::Value = serde_json::from_str(&created).expect("create-stemcell --json");
        let stemcell_os = created["operating_system"].as_str().expect("operating_system").to_string();
        rosh_ok(&state_dir, &root, &["upload-stemcell", path(&tarball)]);

        // The releases, as the pinned versions.
        let releases = corpus_releases();
        let mut versions = BTreeMap::new();
        for r in &releases {
            let version = pinned.get(&r.name).unwrap_or_else(|| panic!("cf-deployment pins no {}", r.name)).clone();
            let source = root.join("src").join(&r.name);
            build_source(r, &source);
            let tarball = root.join(format!("{}-{version}.tgz", r.name));
            rosh_ok(
                &state_dir,
                &root,
                &["create-release", path(&source), "--final", "--version", &version, "--tarball", path(&tarball)],
            );
            rosh_ok(&state_dir, &root, &["upload-release", path(&tarball)]);
            versions.insert(r.name.clone(), version);
        }

        let cloud_config = root.join("cloud-config.yml");
        write(&cloud_config, &cloud_config_text());

        // Every variable, generated once into a store the plans then only read.
        let vars_store = root.join("vars-store.yml");
        let fixture =
            CfFixture { root: root.clone(), state_dir, cloud_config, vars_store, stemcell_os, releases, versions };
        fixture.generate_variables();
        fixture
    }

    /// Fills [`Self::vars_store`]: `rosh interpolate --vars-store` generates the manifest's ~130
    /// variables (91 certificates: most of a minute in a debug build on a busy machine), so the
    /// store is kept in cargo's target tmp dir under the digest of the manifest and ops files,
    /// and later fixtures (other test binaries, the benchmark) copy it.
    fn generate_variables(&self) {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        for file in [cf_manifest(), scale_to_one_az(), removal_ops()] {
            digest.update(std::fs::read(&file).unwrap());
        }
        digest.update(SYSTEM_DOMAIN.as_bytes());
        let hex: String = digest.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cf-v44.5.0-vars-{hex}.yml"));
        if std::fs::copy(&cache, &self.vars_store).is_ok() {
            return;
        }
        let mut args: Vec<String> = vec!["interpolate".into(), cf_manifest().display().to_string()];
        args.extend(self.interpolate_args(&[]));
        args.extend(["--vars-store".into(), self.vars_store.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        rosh_ok(&self.state_dir, &self.root, &args);
        // Another process may be writing the same cache: a rename of a whole file either way.
        let partial = cache.with_extension(format!("{}.tmp", std::process::id()));
        if std::fs::copy(&self.vars_store, &partial).is_ok() {
            let _ = std::fs::rename(&partial, &cache);
        }
    }

    /// One fixture per test binary, removed when the process exits.
    pub fn shared() -> &'static CfFixture {
        SHARED.get_or_init(|| {
            let root = std::env::temp_dir().join(format!("rosh-cf-corpus-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            // SAFETY: registers a plain function with no captured state.
            unsafe { libc::atexit(remove_shared) };
            let started = std::time::Instant::now();
            let f = CfFixture::build(&root);
            eprintln!(
                "cf-deployment v44.5.0 fixture built in {:.1}s at {}",
                started.elapsed().as_secs_f64(),
                root.display()
            );
            f
        })
    }

    /// The ops files and `-v` flags of the plan, as `rosh` arguments (`extra_ops` last).
    pub fn interpolate_args(&self, extra_ops: &[PathBuf]) -> Vec<String> {
        let mut args = Vec::new();
        for ops in [scale_to_one_az(), removal_ops()].iter().chain(extra_ops) {
            args.extend(["-o".to_string(), ops.display().to_string()]);
        }
        args.extend(["-v".into(), format!("system_domain={SYSTEM_DOMAIN}")]);
        args.extend(["-v".into(), format!("stemcell_os={}", self.stemcell_os)]);
        args
    }

    /// The interpolation flags of a plan: both ops files (then `extra_ops`), the `-v`s, and the
    /// generated variables as a vars file.
    pub fn flags(&self, extra_ops: &[PathBuf]) -> VarFlags {
        let mut ops_files = vec![scale_to_one_az(), removal_ops()];
        ops_files.extend(extra_ops.iter().cloned());
        VarFlags {
            ops_files,
            vars: vec![format!("system_domain={SYSTEM_DOMAIN}"), format!("stemcell_os={}", self.stemcell_os)],
            var_files: vec![],
            vars_files: vec![self.vars_store.clone()],
            vars_env: vec![],
            vars_store: None,
            var_errs: true,
            var_errs_unused: false,
        }
    }

    /// The director of the fixture's state dir.
    pub fn director(&self) -> Director {
        let state = rosh::state::State::open(&self.state_dir).expect("open the fixture's state");
        let blobs =
            rosh::blobstore::LocalBlobstore::open(rosh::blobstore::LocalBlobstore::default_root(&self.state_dir))
                .expect("open the fixture's blobstore");
        Director { state, blobs, state_dir: self.state_dir.clone() }
    }

    /// The desired deployment, built as `rosh deploy` builds it (`read_manifest`,
    /// `cloud_config`, `desire`), with `extra_ops` applied after the fixture's ops files.
    pub fn desired_with(&self, director: &Director, extra_ops: &[PathBuf]) -> anyhow::Result<DesiredDeployment> {
        let (_, manifest) = read_manifest(director, &cf_manifest(), &self.flags(extra_ops), Some("cf"))?;
        let (cloud, _) = cloud_config(director, Some(&self.cloud_config))?;
        desire(director, &manifest, &cloud, &[])
    }

    pub fn desired(&self) -> anyhow::Result<DesiredDeployment> {
        self.desired_with(&self.director(), &[])
    }

    /// Uploads a local stemcell one version past the manifest's and writes an ops file pinning
    /// the manifest to it; answers the new version and the ops file.
    pub fn upload_next_stemcell(&self) -> (String, PathBuf) {
        let current = self.desired().expect("desired model").stemcells[0].version.clone();
        let next = format!("{current}1");
        let definition = self.root.join("stemcell-next.yml");
        write(
            &definition,
            &format!(
                "name: bosh-local-{{operating_system}}\nversion: \"{next}\"\napi_version: 3\nstemcell_formats: [local]\n\
                 cloud_properties: {{infrastructure: local}}\ntools: [sh]\n"
            ),
        );
        let tarball = self.root.join("stemcell-next.tgz");
        rosh_ok(
            &self.state_dir,
            &self.root,
            &["create-stemcell", "--local", "--definition", path(&definition), "--tarball", path(&tarball)],
        );
        rosh_ok(&self.state_dir, &self.root, &["upload-stemcell", path(&tarball)]);
        let pin = self.root.join("pin-stemcell.yml");
        write(&pin, &format!("- type: replace\n  path: /stemcells/alias=default/version\n  value: \"{next}\"\n"));
        (next, pin)
    }

    /// Records cf as deployed in the fixture's state, without making VMs (CF's jobs here have
    /// empty templates and could not run): the cloud config stored, every package of the
    /// stemcell in the compiled-package cache (a stand-in blob digest), every instance with a
    /// VM record and exactly the spec a deploy would have applied to it (rendered by the same
    /// code), its IPs and persistent disk, and the manifest as deployed. This is everything
    /// `rosh plan` reads of a deployed deployment.
    pub fn record_as_deployed(&self) {
        use rosh::state::{CompiledPackageRecord, DiskRecord, InstanceRecord, InstanceState, VmRef};
        rosh_ok(&self.state_dir, &self.root, &["update-cloud-config", path(&self.cloud_config)]);
        let director = self.director();
        let state = &director.state;
        let (doc, manifest) = read_manifest(&director, &cf_manifest(), &self.flags(&[]), Some("cf")).unwrap();
        let (cloud, cloud_id) = cloud_config(&director, None).unwrap();
        let desired = desire(&director, &manifest, &cloud, &[]).unwrap();
        let renderer = rosh::converge::spec::SpecRenderer::new(&director.blobs);
        for group in &desired.groups {
            let entries =
                rosh::compile::cached(state, &group.packages, &group.stemcell.os, &group.stemcell.version).unwrap();
            let mut digests = BTreeMap::new();
            for entry in entries {
                let digest = match entry.found {
                    Some(record) => record.blob_sha256,
                    None => {
                        // A stand-in for the compiled blob: unique per cache key.
                        let digest = sha256_of(&format!("{:?}", entry.key));
                        state
                            .record_compiled_package(&CompiledPackageRecord {
                                key: entry.key.clone(),
                                blob_sha256: digest.clone(),
                                sha1: "0".repeat(40),
                                size: 1,
                                created_at: String::new(),
                            })
                            .unwrap();
                        digest
                    }
                };
                if group.runtime_packages().any(|p| p == &entry.package) {
                    digests.insert(entry.package.name.clone(), digest);
                }
            }
            if group.lifecycle != rosh::plan::desired::GroupLifecycle::Service {
                continue;
            }
            for instance in &group.instances {
                let record = InstanceRecord {
                    deployment: desired.name.clone(),
                    group: group.name.clone(),
                    index: instance.index,
                    uuid: instance.id.clone(),
                    az: instance.az.clone(),
                    bootstrap: instance.bootstrap,
                    state: InstanceState::Started,
                    ..InstanceRecord::default()
                };
                state.upsert_instance(&record).unwrap();
                let ips = instance.networks.iter().filter_map(|n| Some((n.name.clone(), n.ip.clone()?))).collect();
                state.set_instance_ips(&desired.name, &instance.id, &ips).unwrap();
                let root = format!("/nonexistent/cf-vms/{}", instance.id);
                let endpoint = serde_json::json!({
                    "host": instance.address().unwrap_or("127.0.0.1"), "port": 22, "user": "vcap",
                    "host_public_key": "ssh-ed25519 AAAA", "agent_command": "rosh-agent", "root": root,
                });
                let vm = VmRef::new(format!("vm-{}", instance.id), "local", endpoint.to_string());
                state.set_instance_vm(&desired.name, &instance.id, Some(vm), false).unwrap();
                if let Some(disk) = &group.persistent_disk {
                    state
                        .record_disk(&DiskRecord {
                            cid: format!("disk-{}", instance.id),
                            cpi: "local".into(),
                            deployment: desired.name.clone(),
                            instance_uuid: Some(instance.id.clone()),
                            size_mb: disk.size_mb,
                            cloud_properties_json: disk.cloud_properties.to_string(),
                            active: true,
                            created_at: String::new(),
                            orphaned_at: None,
                        })
                        .unwrap();
                }
                let spec = renderer.render(&desired, group, instance, digests.clone(), &root).unwrap().spec;
                state
                    .set_instance_applied(
                        &desired.name,
                        &instance.id,
                        &serde_json::to_string(&spec).unwrap(),
                        &spec.digest(),
                        InstanceState::Started,
                    )
                    .unwrap();
            }
        }
        let stemcells: Vec<(String, String)> =
            desired.stemcells.iter().map(|s| (s.name.clone(), s.version.clone())).collect();
        state.set_deployment_usage(&desired.name, &desired.releases, &stemcells).unwrap();
        state.record_deployed_manifest(&desired.name, &rosh::manifest::yaml::to_string(&doc), cloud_id, &[]).unwrap();
    }
}

fn sha256_of(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

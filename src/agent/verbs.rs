//! The agent verbs: decode the request, do the work against the root, encode the answer.
//!
//! Owns the dispatch from a verb name to its implementation ([`run_verb`]) and the verbs that
//! are not just blob moves: `get_state`, `apply` (which also starts the jobs when asked to),
//! `start`/`stop` (through the supervisor's socket, starting the daemon when none answers),
//! `drain`, `run_script`, `compile_package`, `fetch_logs`, `mount_disk`/`unmount_disk`,
//! `migrate_disk` (a persistent disk's data onto a second disk attached beside it), `wipe`,
//! `version`. Every verb is blocking code on a reader and a writer; the SSH server runs it on a
//! blocking thread, the CLI on stdin/stdout.
//!
//! Verbs that change `packages/`, `jobs/` or the state files hold the root's agent lock, so
//! concurrent execs on one VM (the director runs several per connection) cannot interleave.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Serialize, de::DeserializeOwned};

use super::blobs::{self, Kind};
use super::control::{self, Request};
use super::exec::{self, Script};
use super::procdef;
use super::protocol::{
    AGENT_VERSION, AgentError, AgentState, Applied, AppliedJob, AppliedPackage, ApplySpec, CompilePackage, Compiled,
    Drain, Drained, FetchLogs, FetchedLogs, HasBlobs, JobSelection, JobState, MigrateDisk, MigratedDisk, MissingBlobs,
    MountDisk, Mounted, ProcessState, ProcessStatus, Processes, RunScript, ScriptResult, ScriptResults, Version, verb,
};
use super::root::{AppliedRecord, Desired, Disks, Root, check_name, check_sha256, list_names, read_json, write_json};
use super::supervisor::log;
use super::{Context, Error, Result};
use crate::release::digest::sha256_hex;

/// How long `start` may take (the supervisor answers within its own bounded wait).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `stop` may take: every process's shutdown timeout, run concurrently, and more.
const STOP_TIMEOUT: Duration = Duration::from_secs(900);
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The file on a persistent disk that names it.
pub const DISK_ID_FILE: &str = ".rosh-disk-id";

/// Runs `words[0]` with `words[1..]` as its arguments, as `rosh agent --root R VERB [ARG]` and
/// the SSH server's `rosh-agent VERB [ARG]` do: on failure the [`AgentError`] goes on `output`
/// as JSON and the exit code is 1.
pub fn run_cli_verb(root: &Root, words: &[String], input: &mut dyn Read, output: &mut dyn Write) -> u8 {
    let (verb, args) = match words.split_first() {
        Some((verb, args)) => (verb.as_str(), args),
        None => ("", &[][..]),
    };
    match run_verb(root, verb, args, input, output) {
        Ok(()) => 0,
        Err(err) => {
            log(&format!("{}: {}", err.verb, err.message));
            if let Ok(text) = serde_json::to_string(&err) {
                let _ = writeln!(output, "{text}");
                let _ = output.flush();
            }
            1
        }
    }
}

/// Runs one verb: the request is read from `input` (JSON, or raw bytes for `put_blob`), the
/// answer written to `output` (JSON, or raw bytes for `get_blob`).
pub fn run_verb(
    root: &Root,
    verb: &str,
    args: &[String],
    input: &mut dyn Read,
    output: &mut dyn Write,
) -> std::result::Result<(), AgentError> {
    dispatch(root, verb, args, input, output).map_err(|e| AgentError { verb: verb.to_string(), message: e.0 })
}

fn dispatch(root: &Root, name: &str, args: &[String], input: &mut dyn Read, output: &mut dyn Write) -> Result<()> {
    let takes_digest = matches!(name, verb::PUT_BLOB | verb::GET_BLOB);
    match (takes_digest, args.len()) {
        (true, 1) | (false, 0) => {}
        (true, _) => return Err(Error(format!("{name} takes one argument, the blob's sha256"))),
        (false, _) => return Err(Error(format!("{name} takes no arguments (the request is JSON on stdin)"))),
    }
    match name {
        verb::GET_STATE => answer(output, &get_state(root)?),
        verb::HAS_BLOBS => {
            let request: HasBlobs = read_request(input)?;
            answer(output, &MissingBlobs { missing: blobs::missing(root, &request.sha256)? })
        }
        verb::PUT_BLOB => {
            widen_stdin_pipe();
            answer(output, &blobs::put(root, &args[0], input)?)
        }
        verb::GET_BLOB => blobs::get(root, &args[0], output).map(drop),
        verb::APPLY => {
            let spec: ApplySpec = read_request(input)?;
            let then_start = spec.then_start.clone();
            let mut applied = apply(root, spec)?;
            if let Some(selection) = then_start {
                applied.started = Some(start(root, selection)?);
            }
            answer(output, &applied)
        }
        verb::START => answer(output, &start(root, read_request(input)?)?),
        verb::STOP => answer(output, &stop(root, read_request(input)?)?),
        verb::DRAIN => answer(output, &drain(root, read_request(input)?)?),
        verb::RUN_SCRIPT => answer(output, &run_script(root, read_request(input)?)?),
        verb::COMPILE_PACKAGE => answer(output, &compile_package(root, read_request(input)?)?),
        verb::FETCH_LOGS => answer(output, &fetch_logs(root, read_request(input)?)?),
        verb::MOUNT_DISK => answer(output, &mount_disk(root, read_request(input)?)?),
        verb::UNMOUNT_DISK => answer(output, &unmount_disk(root, read_request(input)?)?),
        verb::MIGRATE_DISK => answer(output, &migrate_disk(root, read_request(input)?)?),
        verb::WIPE => answer(output, &wipe(root)?),
        verb::VERSION => answer(output, &Version { version: AGENT_VERSION.to_string() }),
        "" => Err(Error::new("no verb given")),
        other => Err(Error(format!("unknown verb `{other}`"))),
    }
}

/// Lets the process feeding stdin (sshd, with a blob) hand over up to 1 MiB per write instead
/// of a pipe's default 64 KiB: fewer, larger writes out of its channel buffer. Nothing happens
/// when stdin is not a pipe (a test's buffer, the local VM's in-process server).
fn widen_stdin_pipe() {
    #[cfg(target_os = "linux")]
    // SAFETY: fcntl on fd 0 with an integer argument; it fails harmlessly on a non-pipe.
    unsafe {
        libc::fcntl(0, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Reads the JSON request; an empty stdin is `{}` (every field defaulted).
fn read_request<T: DeserializeOwned>(input: &mut dyn Read) -> Result<T> {
    let mut text = String::new();
    input.read_to_string(&mut text).ctx(|| "reading the request")?;
    let text = if text.trim().is_empty() { "{}" } else { text.as_str() };
    serde_json::from_str(text).ctx(|| "invalid request")
}

fn answer<T: Serialize>(output: &mut dyn Write, value: &T) -> Result<()> {
    let mut text = serde_json::to_string(value).ctx(|| "encoding the answer")?;
    text.push('\n');
    output.write_all(text.as_bytes()).ctx(|| "writing the answer")?;
    output.flush().ctx(|| "writing the answer")
}

/// The jobs a request names, or every applied job when it names none. A named job that is not
/// applied is an error.
fn selected_jobs(root: &Root, names: &[String]) -> Result<Vec<String>> {
    if names.is_empty() {
        return list_names(&root.jobs_dir());
    }
    for name in names {
        check_name("job", name)?;
        if !root.job_dir(name).is_dir() {
            return Err(Error(format!("job `{name}` is not applied on this VM")));
        }
    }
    Ok(names.to_vec())
}

/// Every process the applied jobs define, as `stopped` (what is reported without a supervisor).
fn defined_processes(root: &Root, jobs: &[String]) -> Vec<ProcessStatus> {
    let mut out = Vec::new();
    for job in jobs {
        match procdef::read_job(root.path(), job, &root.job_dir(job)) {
            Ok(defs) => out.extend(defs.into_iter().map(|def| ProcessStatus {
                job: def.job,
                name: def.name,
                state: ProcessState::Stopped,
                pid: None,
                restarts: 0,
                uptime_secs: None,
                last_exit: None,
            })),
            Err(e) => log(&format!("get_state: {e}")),
        }
    }
    out
}

fn get_state(root: &Root) -> Result<AgentState> {
    let record: Option<AppliedRecord> = read_json(&root.apply_file())?;
    let desired = Desired::load(root)?;
    let supervised = control::call(root, &Request::Status, STATUS_TIMEOUT)?;
    let applied_jobs: Vec<String> = match &record {
        Some(record) => record.spec.jobs.iter().map(|j| j.name.clone()).collect(),
        None => list_names(&root.jobs_dir())?,
    };
    let mut processes = supervised.clone().unwrap_or_default();
    for process in defined_processes(root, &applied_jobs) {
        if !processes.iter().any(|p| p.job == process.job && p.name == process.name) {
            processes.push(process);
        }
    }
    let job_state = if processes.iter().any(|p| p.state == ProcessState::Failing) {
        JobState::Failing
    } else if desired.jobs.is_empty() {
        JobState::Stopped
    } else {
        let desired_up = processes
            .iter()
            .filter(|p| desired.jobs.contains(&p.job))
            .all(|p| matches!(p.state, ProcessState::Running | ProcessState::Starting));
        if desired_up { JobState::Running } else { JobState::Failing }
    };
    let (jobs, packages) = match record.as_ref() {
        Some(record) => (
            record.spec.jobs.iter().map(|j| AppliedJob { name: j.name.clone(), sha256: j.sha256.clone() }).collect(),
            record
                .spec
                .packages
                .iter()
                .map(|p| AppliedPackage { name: p.name.clone(), version: p.version.clone(), sha256: p.sha256.clone() })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(AgentState {
        agent_version: AGENT_VERSION.to_string(),
        root: root.path().display().to_string(),
        job_state,
        applied: record.map(|r| r.applied),
        jobs,
        packages,
        processes,
        persistent_disks: Disks::load(root)?.disks,
    })
}

/// The digest of a spec: SHA-256 of its JSON in field order.
pub fn spec_digest(spec: &ApplySpec) -> String {
    sha256_hex(&serde_json::to_vec(spec).expect("an apply spec always encodes"))
}

fn apply(root: &Root, spec: ApplySpec) -> Result<Applied> {
    let mut seen = BTreeSet::new();
    for package in &spec.packages {
        check_name("package", &package.name)?;
        check_sha256(&package.sha256)?;
        if !seen.insert(("package", package.name.as_str())) {
            return Err(Error(format!("package `{}` is listed twice", package.name)));
        }
    }
    for job in &spec.jobs {
        check_name("job", &job.name)?;
        check_sha256(&job.sha256)?;
        if !seen.insert(("job", job.name.as_str())) {
            return Err(Error(format!("job `{}` is listed twice", job.name)));
        }
    }
    let _lock = root.lock()?;
    // Unpack everything before touching a link: a missing or bad blob changes nothing.
    for package in &spec.packages {
        blobs::unpack(root, Kind::Package, &package.name, &package.sha256)?;
    }
    for job in &spec.jobs {
        blobs::unpack(root, Kind::Job, &job.name, &job.sha256)?;
    }

    let named_jobs: BTreeSet<&str> = spec.jobs.iter().map(|j| j.name.as_str()).collect();
    let removed_jobs: Vec<String> =
        list_names(&root.jobs_dir())?.into_iter().filter(|j| !named_jobs.contains(j.as_str())).collect();
    if !removed_jobs.is_empty() {
        let stop = Request::Stop { jobs: removed_jobs.clone() };
        if control::call(root, &stop, STOP_TIMEOUT)?.is_none() {
            let mut desired = Desired::load(root)?;
            desired.jobs.retain(|j| !removed_jobs.contains(j));
            desired.save(root)?;
        }
        for job in &removed_jobs {
            blobs::uninstall(root, Kind::Job, job)?;
        }
    }

    let mut changed_jobs = Vec::new();
    for job in &spec.jobs {
        if blobs::link(root, Kind::Job, &job.name, &job.sha256)? {
            changed_jobs.push(job.name.clone());
        }
        blobs::prune(root, Kind::Job, &job.name, &job.sha256)?;
    }
    let named_packages: BTreeSet<&str> = spec.packages.iter().map(|p| p.name.as_str()).collect();
    for package in &spec.packages {
        blobs::link(root, Kind::Package, &package.name, &package.sha256)?;
        blobs::prune(root, Kind::Package, &package.name, &package.sha256)?;
    }
    for package in list_names(&root.packages_dir())? {
        if !named_packages.contains(package.as_str()) {
            blobs::uninstall(root, Kind::Package, &package)?;
        }
    }
    let applied = spec_digest(&spec);
    write_json(&root.apply_file(), &AppliedRecord { applied: applied.clone(), spec })?;
    Ok(Applied { applied, changed_jobs, removed_jobs, started: None })
}

fn start(root: &Root, selection: JobSelection) -> Result<Processes> {
    let jobs = selected_jobs(root, &selection.jobs)?;
    control::ensure_supervisor(root)?;
    let request = Request::Start { jobs, settle_ms: selection.settle_ms };
    let processes =
        control::call(root, &request, START_TIMEOUT)?.ok_or_else(|| Error::new("the supervisor stopped answering"))?;
    Ok(Processes { processes })
}

fn stop(root: &Root, selection: JobSelection) -> Result<Processes> {
    for name in &selection.jobs {
        check_name("job", name)?;
    }
    let request = Request::Stop { jobs: selection.jobs.clone() };
    if let Some(processes) = control::call(root, &request, STOP_TIMEOUT)? {
        return Ok(Processes { processes });
    }
    // No supervisor: nothing runs; just forget that the jobs should.
    let _lock = root.lock()?;
    let mut desired = Desired::load(root)?;
    let jobs = if selection.jobs.is_empty() { desired.jobs.clone() } else { selection.jobs };
    desired.jobs.retain(|j| !jobs.contains(j));
    desired.save(root)?;
    let present: Vec<String> = jobs.into_iter().filter(|j| root.job_dir(j).is_dir()).collect();
    Ok(Processes { processes: defined_processes(root, &present) })
}

/// Runs `script` with `args` for each job in `jobs` that has `bin/<script>`, in parallel.
fn run_job_scripts(
    root: &Root,
    jobs: &[String],
    script: &str,
    args: &[String],
    extra_env: &[(String, String)],
    timeout: Option<Duration>,
) -> Result<Vec<ScriptResult>> {
    let with_script: Vec<(String, PathBuf)> = jobs
        .iter()
        .map(|job| (job.clone(), root.job_dir(job).join("bin").join(script)))
        .filter(|(_, path)| path.is_file())
        .collect();
    let outcomes: Vec<(String, Result<exec::Outcome>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = with_script
            .iter()
            .map(|(job, path)| {
                let mut env = exec::job_env(root, job);
                env.extend(extra_env.iter().cloned());
                let mut run = Script::new(path, root.job_dir(job), env);
                run.args = args.to_vec();
                run.timeout = timeout;
                (job.clone(), scope.spawn(move || exec::run(&run)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(job, handle)| (job, handle.join().unwrap_or_else(|_| Err(Error::new("script thread panicked")))))
            .collect()
    });
    outcomes
        .into_iter()
        .map(|(job, outcome)| {
            let outcome = outcome.map_err(|e| Error(format!("job `{job}`: {e}")))?;
            Ok(ScriptResult { job, exit_code: outcome.exit_code, stdout: outcome.stdout, stderr: outcome.stderr })
        })
        .collect()
}

/// BOSH's drain arguments for each kind of drain.
fn drain_args(kind: &str) -> Result<[&'static str; 2]> {
    Ok(match kind {
        "update" => ["job_changed", "hash_changed"],
        "shutdown" => ["job_shutdown", "hash_unchanged"],
        "status" => ["job_check_status", "hash_unchanged"],
        other => return Err(Error(format!("unknown drain kind `{other}` (expected update, shutdown or status)"))),
    })
}

fn drain(root: &Root, request: Drain) -> Result<Drained> {
    let args: Vec<String> = drain_args(&request.kind)?.iter().map(|s| s.to_string()).collect();
    let jobs = selected_jobs(root, &request.jobs)?;
    let env = [("BOSH_DRAIN_KIND".to_string(), request.kind.clone())];
    let results = run_job_scripts(root, &jobs, "drain", &args, &env, None)?;
    let mut wait_secs = 0u64;
    let mut poll_jobs = Vec::new();
    let mut poll_secs = 0u64;
    for result in &results {
        if result.exit_code != 0 {
            return Err(Error(format!(
                "drain of job `{}` failed (exit {}): {}",
                result.job,
                result.exit_code,
                tail_for_message(&result.stdout, &result.stderr)
            )));
        }
        let printed = result.stdout.trim();
        let secs: i64 = printed.parse().map_err(|_| {
            Error(format!("drain of job `{}` printed `{printed}`, not an integer number of seconds", result.job))
        })?;
        if secs < 0 {
            // Dynamic drain: the director asks again (`job_check_status`) in |n| seconds.
            log(&format!(
                "drain of job `{}` asked for a dynamic drain: again in {} s",
                result.job,
                secs.unsigned_abs()
            ));
            poll_jobs.push(result.job.clone());
            poll_secs = poll_secs.max(secs.unsigned_abs());
        } else {
            wait_secs = wait_secs.max(secs.unsigned_abs());
        }
    }
    Ok(Drained { wait_secs, jobs: results, poll_jobs, poll_secs })
}

fn tail_for_message(stdout: &str, stderr: &str) -> String {
    let text = format!("{}{}", stdout, stderr);
    let text = text.trim();
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_string()
}

fn run_script(root: &Root, request: RunScript) -> Result<ScriptResults> {
    check_name("script", &request.script)?;
    let jobs = selected_jobs(root, &request.jobs)?;
    let env: Vec<(String, String)> = request.env.into_iter().collect();
    let timeout = request.timeout_secs.map(Duration::from_secs);
    let results = run_job_scripts(root, &jobs, &request.script, &[], &env, timeout)?;
    Ok(ScriptResults { results })
}

/// Removes a directory tree when dropped (the compile dir, the install target).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = blobs::remove_any(&self.0);
    }
}

fn compile_package(root: &Root, request: CompilePackage) -> Result<Compiled> {
    check_name("package", &request.name)?;
    check_sha256(&request.source_sha256)?;
    for dep in &request.dependencies {
        check_name("package", &dep.name)?;
        check_sha256(&dep.sha256)?;
        if dep.name == request.name {
            return Err(Error(format!("package `{}` depends on itself", request.name)));
        }
    }
    if !root.blob(&request.source_sha256).is_file() {
        return Err(Error(format!(
            "source of package `{}`: blob {} is not on the VM (put_blob it first)",
            request.name, request.source_sha256
        )));
    }
    {
        let _lock = root.lock()?;
        for dep in &request.dependencies {
            blobs::install(root, Kind::Package, &dep.name, &dep.sha256)?;
        }
    }
    let compile_dir = root.compile_dir();
    fs::create_dir_all(&compile_dir).ctx(|| format!("creating {}", compile_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{}-", request.name))
        .tempdir_in(&compile_dir)
        .ctx(|| format!("creating a compile dir in {}", compile_dir.display()))?
        .keep();
    let _work_guard = RemoveOnDrop(work.clone());
    // extract_to wants a fresh destination: the random name is reserved, then handed over.
    fs::remove_dir(&work).ctx(|| format!("preparing {}", work.display()))?;
    let source_name = format!("source of package {} ({})", request.name, request.source_sha256);
    blobs::extract_verified(root, &request.source_sha256, &source_name, &work)?;
    if !work.join("packaging").is_file() {
        return Err(Error(format!("{source_name}: no `packaging` script at the top of the tarball")));
    }

    let install = root.packages_dir().join(&request.name);
    blobs::remove_any(&install)?;
    fs::create_dir_all(&install).ctx(|| format!("creating {}", install.display()))?;
    let _install_guard = RemoveOnDrop(install.clone());

    let mut env = exec::base_env(root);
    for (key, value) in [
        ("BOSH_COMPILE_TARGET", work.display().to_string()),
        ("BOSH_INSTALL_TARGET", install.display().to_string()),
        ("BOSH_PACKAGES_DIR", root.packages_dir().display().to_string()),
        ("BOSH_PACKAGE_NAME", request.name.clone()),
        ("BOSH_PACKAGE_VERSION", request.version.clone()),
    ] {
        env.insert(key.to_string(), value);
    }
    let mut script = Script::new(exec::shell(), &work, env);
    script.args = vec!["-e".to_string(), "packaging".to_string()];
    script.merge_output = true;
    let outcome = exec::run(&script)?;
    let log_dir = root.log_dir().join("compile");
    if fs::create_dir_all(&log_dir).is_ok() {
        let _ = fs::write(log_dir.join(format!("{}.log", request.name)), &outcome.stdout);
    }
    if outcome.exit_code != 0 {
        return Err(Error(format!(
            "packaging of `{}` failed (exit {}); output ends:\n{}",
            request.name, outcome.exit_code, outcome.stdout
        )));
    }
    let hashes = blobs::pack(root, &install, None)?;
    Ok(Compiled { sha256: hashes.sha256, sha1: hashes.sha1, size: hashes.size, log: outcome.stdout })
}

fn fetch_logs(root: &Root, request: FetchLogs) -> Result<FetchedLogs> {
    for job in &request.jobs {
        check_name("job", job)?;
    }
    let log_dir = root.log_dir();
    fs::create_dir_all(&log_dir).ctx(|| format!("creating {}", log_dir.display()))?;
    let only = (!request.jobs.is_empty()).then_some(request.jobs.as_slice());
    let hashes = blobs::pack(root, &log_dir, only)?;
    Ok(FetchedLogs { sha256: hashes.sha256, size: hashes.size })
}

fn disk_id_in(dir: &Path) -> Option<String> {
    fs::read_to_string(dir.join(DISK_ID_FILE)).ok().map(|s| s.trim().to_string())
}

/// The path a CPI's hint names (a string, or a map with `path`), relative to the VM's root
/// unless absolute.
fn hint_path(root: &Root, hint: &serde_json::Value) -> Option<PathBuf> {
    let path = match hint {
        serde_json::Value::String(path) => path.as_str(),
        serde_json::Value::Object(map) => map.get("path")?.as_str()?,
        _ => return None,
    };
    Some(root.path().join(path))
}

fn mount_disk(root: &Root, request: MountDisk) -> Result<Mounted> {
    let disk_id = request.disk_id.trim();
    if disk_id.is_empty() || disk_id.contains('\n') {
        return Err(Error(format!("invalid disk id `{}`", request.disk_id)));
    }
    let _lock = root.lock()?;
    let store = root.store_dir();
    match disk_id_in(&store) {
        Some(found) if found == disk_id => {}
        Some(found) => {
            return Err(Error(format!("store/ holds disk `{found}`, not `{disk_id}`: refusing to mount it")));
        }
        None => {
            let hinted = hint_path(root, &request.hint).filter(|path| disk_id_in(path).as_deref() == Some(disk_id));
            let Some(hinted) = hinted else {
                return Err(Error(match fs::symlink_metadata(&store) {
                    Ok(_) => format!("store/ holds no {DISK_ID_FILE}: disk `{disk_id}` is not attached"),
                    Err(_) => format!("no persistent disk at store/: disk `{disk_id}` is not attached"),
                }));
            };
            // The disk is where the hint says: make store/ point at it (only over nothing, an
            // old link or an empty directory — never over data).
            if let Ok(meta) = fs::symlink_metadata(&store)
                && meta.is_dir()
            {
                fs::remove_dir(&store)
                    .map_err(|_| Error(format!("store/ is a non-empty directory without {DISK_ID_FILE}")))?;
            }
            blobs::swap_link(&store, &hinted)?;
        }
    }
    let mut disks = Disks::load(root)?;
    if !disks.disks.iter().any(|d| d == disk_id) {
        disks.disks.push(disk_id.to_string());
    }
    disks.save(root)?;
    Ok(Mounted { disk_id: disk_id.to_string(), path: "store".to_string() })
}

fn unmount_disk(root: &Root, request: MountDisk) -> Result<Mounted> {
    let _lock = root.lock()?;
    let mut disks = Disks::load(root)?;
    disks.disks.retain(|d| d != request.disk_id.trim());
    disks.save(root)?;
    Ok(Mounted { disk_id: request.disk_id.trim().to_string(), path: "store".to_string() })
}

/// Copies the persistent disk at `store/` onto the disk attached where the hint says, as
/// `cp -a` does (modes, owners, times, links), then names the copy as disk `to` again (the copy
/// brought `from`'s id file along) and flushes it to storage. Refused unless `store/` holds
/// `from` and the hinted place holds `to`, so a copy never lands on the wrong disk; the target
/// must hold nothing but its id file.
fn migrate_disk(root: &Root, request: MigrateDisk) -> Result<MigratedDisk> {
    let (from, to) = (request.from.trim(), request.to.trim());
    let _lock = root.lock()?;
    let store = root.store_dir();
    if disk_id_in(&store).as_deref() != Some(from) {
        return Err(Error(format!("store/ does not hold disk `{from}`: refusing to migrate from it")));
    }
    let target = hint_path(root, &request.hint)
        .filter(|path| disk_id_in(path).as_deref() == Some(to))
        .ok_or_else(|| Error(format!("disk `{to}` is not attached where the hint says ({})", request.hint)))?;
    let leftovers: Vec<String> = fs::read_dir(&target)
        .ctx(|| format!("listing {}", target.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name != DISK_ID_FILE)
        .collect();
    if !leftovers.is_empty() {
        return Err(Error(format!(
            "disk `{to}` is not empty (it holds {}): refusing to copy onto it",
            leftovers.join(", ")
        )));
    }
    let copy =
        std::process::Command::new("cp").arg("-a").arg(store.join(".")).arg(&target).output().ctx(|| "running cp")?;
    if !copy.status.success() {
        return Err(Error(format!(
            "copying store/ onto disk `{to}` failed ({}): {}",
            copy.status,
            String::from_utf8_lossy(&copy.stderr).trim()
        )));
    }
    let id_file = target.join(DISK_ID_FILE);
    fs::write(&id_file, format!("{to}\n")).ctx(|| format!("writing {}", id_file.display()))?;
    let (files, bytes) = tree_size(&target)?;
    // syncfs(2) of the target's filesystem: the copy is on storage before the old disk goes.
    let synced = std::process::Command::new("sync").arg("-f").arg(&target).status().ctx(|| "running sync")?;
    if !synced.success() {
        return Err(Error(format!("flushing disk `{to}` to storage failed ({synced})")));
    }
    Ok(MigratedDisk { from: from.to_string(), to: to.to_string(), files, bytes })
}

/// Regular files under `dir` (links not followed) and their total size; the id file left out.
fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))? {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let kind = entry.file_type().ctx(|| format!("reading {}", entry.path().display()))?;
        if kind.is_dir() {
            let (f, b) = tree_size(&entry.path())?;
            files += f;
            bytes += b;
        } else if kind.is_file() && entry.file_name() != DISK_ID_FILE {
            files += 1;
            bytes += entry.metadata().ctx(|| format!("reading {}", entry.path().display()))?.len();
        }
    }
    Ok((files, bytes))
}

/// `sys/run` entries `wipe` keeps: those of a live `serve` process and the locks.
const WIPE_KEEPS: &[&str] =
    &["agent.pid", "agent.ready", "agent.lock", "supervisor.lock", "supervisor.sock", "supervisor.pid"];

fn wipe(root: &Root) -> Result<serde_json::Value> {
    // Stops every process; a standalone supervisor exits after answering.
    control::request(root, &Request::Shutdown, STOP_TIMEOUT)?;
    let _lock = root.lock()?;
    for dir in [root.jobs_dir(), root.packages_dir(), root.data_dir(), root.log_dir()] {
        blobs::remove_any(&dir)?;
    }
    let run = root.run_dir();
    for name in list_names(&run)? {
        if !WIPE_KEEPS.contains(&name.as_str()) {
            blobs::remove_any(&run.join(&name))?;
        }
    }
    root.ensure_dirs()?;
    Ok(serde_json::json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_kinds_map_to_bosh_arguments() {
        assert_eq!(drain_args("shutdown").unwrap(), ["job_shutdown", "hash_unchanged"]);
        assert!(drain_args("later").is_err());
    }

    #[test]
    fn unknown_verbs_and_stray_arguments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let mut out = Vec::new();
        let err = run_verb(&root, "frobnicate", &[], &mut &b""[..], &mut out).unwrap_err();
        assert_eq!(err.verb, "frobnicate");
        let err = run_verb(&root, verb::VERSION, &["x".into()], &mut &b""[..], &mut out).unwrap_err();
        assert!(err.message.contains("no arguments"), "{err}");
        run_verb(&root, verb::VERSION, &[], &mut &b""[..], &mut out).unwrap();
        let version: Version = serde_json::from_slice(&out).unwrap();
        assert_eq!(version.version, AGENT_VERSION);
    }

    #[test]
    fn spec_digest_changes_with_the_spec() {
        let mut spec = ApplySpec {
            deployment: "d".into(),
            instance: "g/1".into(),
            packages: vec![],
            jobs: vec![],
            then_start: None,
        };
        let first = spec_digest(&spec);
        spec.instance = "g/2".into();
        assert_ne!(first, spec_digest(&spec));
    }
}

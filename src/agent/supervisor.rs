//! The process supervisor: keeps each started job's processes running and reports their state.
//!
//! Owns the per-process keepers, the control socket they are driven through
//! ([`super::control`] protocol), the desired state on disk (`sys/run/desired.json`, so a
//! restarted supervisor resumes what should run) and the `supervise` daemon. The same
//! [`Supervisor`] runs inside `rosh agent serve` (local CPI) and as the standalone daemon on
//! OpenSSH machines; at most one per root, guarded by a lock file held for its life.
//!
//! A keeper is one tokio task per process: launch (bpm: pre-start hook, then spawn; monit: start
//! program, then wait for a live pid in the pidfile), wait for the exit or a stop, and after an
//! exit restart with exponential backoff (0.5 s doubling to 30 s, back to 0.5 s once a run lasted
//! 60 s). A process is `starting` until it has run for its settle time ([`STABLE_AFTER`], or
//! the shorter one its `start` asked for, kept for every later report), `failing` while it
//! keeps exiting (including that time after a restart), `running` after. Stopping sends the
//! process group its shutdown signal (or runs monit's stop program), waits up to the shutdown
//! timeout, then SIGKILLs the group. Children are spawned from runtime worker threads with
//! PR_SET_PDEATHSIG, so they die with the supervisor even when it is SIGKILLed; daemons that a
//! monit start program forks off are not covered (the death signal is not inherited across fork).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use super::control::{Request, Response, SocketPath};
use super::exec;
use super::os;
use super::procdef::{self, ProcessDef, ProcessKind};
use super::protocol::{ProcessState, ProcessStatus};
use super::root::{Desired, FileLock, Root, linked_digest, list_names};
use super::{Context, Error, Result};

/// How long a process must have run to count as `running` rather than `starting`/`failing`.
pub const STABLE_AFTER: Duration = Duration::from_secs(1);
/// The shortest run `start` accepts as running when asked for less (see
/// [`crate::agent::protocol::JobSelection::settle_ms`]): a process that dies at once (a missing
/// executable or library, a script that fails its first check) is caught even under a watch time
/// of `0-…` — the check a hand-written `sleep 0.1; kill -0 $pid` makes. A program that takes
/// longer to fail on a bad config wants a watch time minimum of its own.
pub const MIN_SETTLE: Duration = Duration::from_millis(100);
/// How long `start` waits for each process to be running or failing.
pub const START_WAIT: Duration = Duration::from_secs(5);
const BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run at least this long resets the backoff.
const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// How long a monit start program gets to produce a live pid in its pidfile (monit's default).
const MONIT_START_TIMEOUT: Duration = Duration::from_secs(30);
/// After a monit start program exited cleanly, how long its daemon gets to write the pidfile.
const MONIT_PIDFILE_GRACE: Duration = Duration::from_secs(5);
const MONIT_POLL: Duration = Duration::from_millis(100);

/// One root's supervisor.
pub struct Supervisor {
    root: Root,
    /// Job → its keepers. The mutex also serialises start/stop requests.
    jobs: Mutex<BTreeMap<String, JobRun>>,
    standalone: bool,
    shutdown: Notify,
    _lock: FileLock,
}

struct JobRun {
    /// The job's digest when its keepers were started: a re-applied job is restarted by `start`.
    sha256: Option<String>,
    keepers: Vec<Keeper>,
}

struct Keeper {
    status: Arc<StdMutex<Status>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

#[derive(Debug, Clone)]
struct Status {
    job: String,
    name: String,
    phase: Phase,
    restarts: u32,
    last_exit: Option<String>,
    /// How long it must run to count as running: the settle time of the `start` that started
    /// it, kept so later reports agree with what `start` answered.
    settle: Duration,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Launching,
    Up { pid: u32, since: Instant },
    Backoff,
    Stopping { pid: Option<u32> },
    Stopped,
}

impl Status {
    /// The status, a process counting as running once it has run for its settle time.
    fn report(&self) -> ProcessStatus {
        let settle = self.settle;
        let (state, pid, uptime) = match self.phase {
            Phase::Launching if self.restarts == 0 => (ProcessState::Starting, None, None),
            Phase::Launching | Phase::Backoff => (ProcessState::Failing, None, None),
            Phase::Up { pid, since } => {
                let up = since.elapsed();
                let state = if up >= settle {
                    ProcessState::Running
                } else if self.restarts == 0 {
                    ProcessState::Starting
                } else {
                    ProcessState::Failing
                };
                (state, Some(pid), Some(up.as_secs()))
            }
            Phase::Stopping { pid } => (ProcessState::Running, pid, None),
            Phase::Stopped => (ProcessState::Stopped, None, None),
        };
        ProcessStatus {
            job: self.job.clone(),
            name: self.name.clone(),
            state,
            pid,
            restarts: self.restarts,
            uptime_secs: uptime,
            last_exit: self.last_exit.clone(),
        }
    }
}

impl Supervisor {
    /// Takes the root's supervisor lock, listens on its control socket, and resumes the desired
    /// jobs. Fails when another supervisor holds the root.
    pub async fn start(root: Root, standalone: bool) -> Result<Arc<Supervisor>> {
        root.ensure_dirs()?;
        let lock = FileLock::acquire(&root.supervisor_lock(), false)?
            .ok_or_else(|| Error(format!("another supervisor is running for {}", root.path().display())))?;
        let socket = root.supervisor_socket();
        let _ = fs::remove_file(&socket);
        let bind_path = SocketPath::new(&socket)?;
        let listener = UnixListener::bind(&bind_path.path).ctx(|| format!("listening on {}", socket.display()))?;
        drop(bind_path);
        super::root::write_atomic(&root.supervisor_pid_file(), format!("{}\n", std::process::id()).as_bytes())?;
        let supervisor = Arc::new(Supervisor {
            root,
            jobs: Mutex::new(BTreeMap::new()),
            standalone,
            shutdown: Notify::new(),
            _lock: lock,
        });
        tokio::spawn(accept_loop(supervisor.clone(), listener));
        let desired = Desired::load(&supervisor.root)?;
        if !desired.jobs.is_empty() {
            let present: Vec<String> =
                desired.jobs.iter().filter(|job| supervisor.root.job_dir(job).is_dir()).cloned().collect();
            log(&format!("resuming jobs: {}", present.join(", ")));
            if let Err(e) = supervisor.launch_jobs(&present).await {
                log(&format!("resuming jobs failed: {e}"));
            }
        }
        Ok(supervisor)
    }

    /// Resolves once a `shutdown` request asked a standalone supervisor to exit.
    pub async fn exit_requested(&self) {
        self.shutdown.notified().await
    }

    async fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::Start { jobs, settle_ms } => {
                let settle =
                    settle_ms.map_or(STABLE_AFTER, |ms| Duration::from_millis(ms).clamp(MIN_SETTLE, STABLE_AFTER));
                self.start_jobs(jobs, settle).await
            }
            Request::Stop { jobs } => self.stop_jobs(jobs).await,
            Request::Status => Ok(self.statuses(None).await),
            Request::Shutdown => Ok(self.stop_all().await),
        };
        match result {
            Ok(processes) => Response::ok(processes),
            Err(e) => Response::failed(e.0),
        }
    }

    /// Starts `jobs` and answers once every process has run for `settle` (reported running) or
    /// is failing, or after [`START_WAIT`].
    async fn start_jobs(&self, jobs: Vec<String>, settle: Duration) -> Result<Vec<ProcessStatus>> {
        let jobs = if jobs.is_empty() { list_names(&self.root.jobs_dir())? } else { jobs };
        for job in &jobs {
            super::root::check_name("job", job)?;
            if !self.root.job_dir(job).is_dir() {
                return Err(Error(format!("job `{job}` is not applied on this VM")));
            }
        }
        let mut desired = Desired::load(&self.root)?;
        for job in &jobs {
            if !desired.jobs.contains(job) {
                desired.jobs.push(job.clone());
            }
        }
        self.launch_jobs(&jobs).await?;
        desired.save(&self.root)?;
        let selected: BTreeSet<&str> = jobs.iter().map(String::as_str).collect();
        for run in self.jobs.lock().await.iter().filter(|(job, _)| selected.contains(job.as_str())).map(|(_, run)| run)
        {
            for keeper in &run.keepers {
                keeper.status.lock().expect("status lock").settle = settle;
            }
        }
        let deadline = Instant::now() + START_WAIT;
        loop {
            let statuses = self.statuses(Some(&selected)).await;
            let settled = statuses.iter().all(|s| matches!(s.state, ProcessState::Running | ProcessState::Failing));
            if settled || Instant::now() >= deadline {
                return Ok(statuses);
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts keepers for `jobs` unless they already run the applied version.
    async fn launch_jobs(&self, jobs: &[String]) -> Result<()> {
        // Read every definition first: one bad bpm.yml refuses the whole request.
        let mut defs = Vec::new();
        for job in jobs {
            let job_dir = self.root.job_dir(job);
            defs.push((job.clone(), linked_digest(&job_dir), procdef::read_job(self.root.path(), job, &job_dir)?));
        }
        let mut map = self.jobs.lock().await;
        for (job, sha256, processes) in defs {
            if let Some(run) = map.get(&job) {
                if run.sha256 == sha256 {
                    continue;
                }
                let old = map.remove(&job).expect("present");
                stop_keepers(old.keepers).await;
            }
            let keepers = processes.into_iter().map(|def| spawn_keeper(&self.root, def)).collect();
            map.insert(job, JobRun { sha256, keepers });
        }
        Ok(())
    }

    async fn stop_jobs(&self, jobs: Vec<String>) -> Result<Vec<ProcessStatus>> {
        let mut map = self.jobs.lock().await;
        let mut desired = Desired::load(&self.root)?;
        let names: Vec<String> = if jobs.is_empty() {
            let mut all: BTreeSet<String> = map.keys().cloned().collect();
            all.extend(desired.jobs.iter().cloned());
            all.into_iter().collect()
        } else {
            jobs
        };
        // Forget them first: if this supervisor dies mid-stop, the next one does not restart them.
        desired.jobs.retain(|job| !names.contains(job));
        desired.save(&self.root)?;
        let mut keepers = Vec::new();
        for job in &names {
            if let Some(run) = map.remove(job) {
                keepers.extend(run.keepers);
            }
        }
        drop(map);
        Ok(stop_keepers(keepers).await)
    }

    /// Stops every process, leaving the desired state untouched.
    pub async fn stop_all(&self) -> Vec<ProcessStatus> {
        let mut map = self.jobs.lock().await;
        let keepers: Vec<Keeper> = std::mem::take(&mut *map).into_values().flat_map(|run| run.keepers).collect();
        drop(map);
        stop_keepers(keepers).await
    }

    async fn statuses(&self, only: Option<&BTreeSet<&str>>) -> Vec<ProcessStatus> {
        let map = self.jobs.lock().await;
        map.iter()
            .filter(|(job, _)| only.is_none_or(|only| only.contains(job.as_str())))
            .flat_map(|(_, run)| run.keepers.iter().map(|k| k.status.lock().expect("status lock").report()))
            .collect()
    }

    /// Removes the control socket and pid file (the lock goes with the supervisor).
    pub fn close(&self) {
        let _ = fs::remove_file(self.root.supervisor_socket());
        let _ = fs::remove_file(self.root.supervisor_pid_file());
    }
}

async fn accept_loop(supervisor: Arc<Supervisor>, listener: UnixListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                log(&format!("control socket: {e}"));
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let supervisor = supervisor.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut exit_after = false;
                let response = match serde_json::from_str::<Request>(&line) {
                    Ok(request) => {
                        exit_after = request == Request::Shutdown && supervisor.standalone;
                        supervisor.handle(request).await
                    }
                    Err(e) => Response::failed(format!("bad request: {e}")),
                };
                let mut text = serde_json::to_string(&response).unwrap_or_else(|e| {
                    serde_json::to_string(&Response::failed(e.to_string())).expect("plain response encodes")
                });
                text.push('\n');
                let written = write.write_all(text.as_bytes()).await.is_ok();
                // Only once the answer is out, so the client never sees a silent close.
                if exit_after {
                    supervisor.shutdown.notify_one();
                }
                if !written {
                    break;
                }
            }
        });
    }
}

/// Signals every keeper to stop, then waits for all of them (they stop concurrently).
async fn stop_keepers(keepers: Vec<Keeper>) -> Vec<ProcessStatus> {
    for keeper in &keepers {
        let _ = keeper.stop.send(true);
    }
    let mut statuses = Vec::new();
    for keeper in keepers {
        let _ = keeper.task.await;
        statuses.push(keeper.status.lock().expect("status lock").report());
    }
    statuses
}

fn spawn_keeper(root: &Root, def: ProcessDef) -> Keeper {
    let status = Arc::new(StdMutex::new(Status {
        job: def.job.clone(),
        name: def.name.clone(),
        phase: Phase::Launching,
        restarts: 0,
        last_exit: None,
        settle: STABLE_AFTER,
    }));
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(keep(root.clone(), def, status.clone(), stop_rx));
    Keeper { status, stop, task }
}

fn set_phase(status: &StdMutex<Status>, phase: Phase) {
    status.lock().expect("status lock").phase = phase;
}

/// A keeper: runs one process until told to stop, restarting it when it exits.
async fn keep(root: Root, def: ProcessDef, status: Arc<StdMutex<Status>>, mut stop: watch::Receiver<bool>) {
    let mut backoff = BACKOFF_INITIAL;
    let what = format!("{}/{}", def.job, def.name);
    loop {
        if *stop.borrow() {
            break;
        }
        set_phase(&status, Phase::Launching);
        let launched = tokio::select! {
            launched = launch(&root, &def) => launched,
            _ = stop.changed() => break,
        };
        let ran_for = match launched {
            Ok(mut live) => {
                let since = Instant::now();
                set_phase(&status, Phase::Up { pid: live.pid(), since });
                log(&format!("{what}: started, pid {}", live.pid()));
                tokio::select! {
                    exit = live.wait() => {
                        log(&format!("{what}: exited ({exit})"));
                        status.lock().expect("status lock").last_exit = Some(exit);
                    }
                    _ = stop.changed() => {
                        set_phase(&status, Phase::Stopping { pid: Some(live.pid()) });
                        live.stop(&root, &def).await;
                        log(&format!("{what}: stopped"));
                        break;
                    }
                }
                since.elapsed()
            }
            Err(failure) => {
                log(&format!("{what}: {failure}"));
                status.lock().expect("status lock").last_exit = Some(failure);
                Duration::ZERO
            }
        };
        if ran_for >= BACKOFF_RESET {
            backoff = BACKOFF_INITIAL;
        }
        set_phase(&status, Phase::Backoff);
        tokio::select! {
            _ = sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        status.lock().expect("status lock").restarts += 1;
    }
    set_phase(&status, Phase::Stopped);
}

/// A launched process.
enum Live {
    Bpm {
        child: Child,
        pid: u32,
    },
    Monit {
        /// The start program while it still runs (it may be the process itself).
        start_child: Option<Child>,
        start_pid: Option<u32>,
        pid: u32,
        pidfile: Option<PathBuf>,
        stop_program: Option<String>,
    },
}

impl Live {
    fn pid(&self) -> u32 {
        match self {
            Live::Bpm { pid, .. } | Live::Monit { pid, .. } => *pid,
        }
    }

    /// Waits for the process to end; describes how.
    async fn wait(&mut self) -> String {
        match self {
            Live::Bpm { child, .. } => match child.wait().await {
                Ok(status) => os::describe_exit(status),
                Err(e) => format!("wait failed: {e}"),
            },
            Live::Monit { start_child, start_pid, pid, pidfile, .. } => loop {
                if let Some(child) = start_child
                    && let Ok(Some(status)) = child.try_wait()
                {
                    *start_child = None;
                    if Some(*pid) == *start_pid {
                        return os::describe_exit(status);
                    }
                }
                if let Some(path) = pidfile
                    && let Some(current) = read_pidfile(path)
                    && current != *pid
                    && os::pid_alive(current)
                {
                    *pid = current;
                }
                if !os::pid_alive(*pid) {
                    return "exited".to_string();
                }
                sleep(MONIT_POLL).await;
            },
        }
    }

    /// Stops the process: shutdown signal (or monit's stop program), bounded wait, SIGKILL.
    async fn stop(&mut self, root: &Root, def: &ProcessDef) {
        let deadline = Instant::now() + def.shutdown_timeout;
        match self {
            Live::Bpm { child, pid } => {
                os::signal_group(*pid, def.shutdown_signal);
                if timeout(def.shutdown_timeout, child.wait()).await.is_err() {
                    log(&format!("{}/{}: still running after {:?}, killing", def.job, def.name, def.shutdown_timeout));
                }
                os::signal_group(*pid, libc::SIGKILL);
                let _ = child.wait().await;
            }
            Live::Monit { start_child, start_pid, pid, pidfile, stop_program } => {
                match stop_program {
                    Some(program) => {
                        let mut command = shell_command(root, def, program);
                        command.kill_on_drop(true);
                        match command.spawn() {
                            Ok(mut stopper) => {
                                if timeout(def.shutdown_timeout, stopper.wait()).await.is_err() {
                                    if let Some(stopper_pid) = stopper.id() {
                                        os::signal_group(stopper_pid, libc::SIGKILL);
                                    }
                                    log(&format!("{}/{}: stop program timed out", def.job, def.name));
                                }
                            }
                            Err(e) => log(&format!("{}/{}: stop program: {e}", def.job, def.name)),
                        }
                    }
                    None => {
                        os::signal_pid(*pid, def.shutdown_signal);
                    }
                }
                while os::pid_alive(*pid) && Instant::now() < deadline {
                    if let Some(child) = start_child {
                        let _ = child.try_wait();
                    }
                    sleep(Duration::from_millis(50)).await;
                }
                os::signal_pid(*pid, libc::SIGKILL);
                if let Some(start_pid) = start_pid {
                    os::signal_group(*start_pid, libc::SIGKILL);
                }
                if let Some(mut child) = start_child.take() {
                    let _ = child.wait().await;
                }
                if let Some(path) = pidfile
                    && read_pidfile(path) == Some(*pid)
                {
                    let _ = fs::remove_file(path);
                }
            }
        }
    }
}

/// Launches a process once; the error describes why it did not come up.
async fn launch(root: &Root, def: &ProcessDef) -> std::result::Result<Live, String> {
    let log_dir = root.job_log_dir(&def.job);
    fs::create_dir_all(&log_dir).map_err(|e| format!("creating {}: {e}", log_dir.display()))?;
    match &def.kind {
        ProcessKind::Bpm { executable, args, env, workdir, pre_start } => {
            let mut full_env = exec::job_env(root, &def.job);
            full_env.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
            if let Some(hook) = pre_start {
                let mut command = Command::new(hook);
                command.current_dir(workdir).env_clear().envs(&full_env).kill_on_drop(true);
                prepare(&mut command, root, def)?;
                let status = command
                    .spawn()
                    .map_err(|e| format!("pre_start hook {}: {e}", hook.display()))?
                    .wait()
                    .await
                    .map_err(|e| format!("pre_start hook: {e}"))?;
                if !status.success() {
                    return Err(format!("pre_start hook failed ({})", os::describe_exit(status)));
                }
            }
            let mut command = Command::new(executable);
            command.args(args).current_dir(workdir).env_clear().envs(&full_env);
            prepare(&mut command, root, def)?;
            let child = command.spawn().map_err(|e| format!("spawning {}: {e}", executable.display()))?;
            let pid = child.id().ok_or("the process exited before it was seen")?;
            Ok(Live::Bpm { child, pid })
        }
        ProcessKind::Monit { start, stop, pidfile } => {
            if let Some(path) = pidfile
                && let Some(pid) = read_pidfile(path)
                && os::pid_alive(pid)
            {
                // Already running (started before this supervisor): monit adopts it too.
                return Ok(Live::Monit {
                    start_child: None,
                    start_pid: None,
                    pid,
                    pidfile: pidfile.clone(),
                    stop_program: stop.clone(),
                });
            }
            let mut command = shell_command(root, def, start);
            prepare(&mut command, root, def)?;
            let child = command.spawn().map_err(|e| format!("start program: {e}"))?;
            let start_pid = child.id();
            let Some(path) = pidfile else {
                let pid = start_pid.ok_or("the start program exited before it was seen")?;
                return Ok(Live::Monit {
                    start_child: Some(child),
                    start_pid,
                    pid,
                    pidfile: None,
                    stop_program: stop.clone(),
                });
            };
            let started = Instant::now();
            let mut exited_at = None;
            let mut start_child = Some(child);
            loop {
                if let Some(pid) = read_pidfile(path)
                    && os::pid_alive(pid)
                {
                    return Ok(Live::Monit {
                        start_child,
                        start_pid,
                        pid,
                        pidfile: Some(path.clone()),
                        stop_program: stop.clone(),
                    });
                }
                if let Some(c) = start_child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    start_child = None;
                    if !status.success() {
                        return Err(format!("start program failed ({})", os::describe_exit(status)));
                    }
                    exited_at = Some(Instant::now());
                }
                let waited_out = exited_at.is_some_and(|at| at.elapsed() > MONIT_PIDFILE_GRACE)
                    || started.elapsed() > MONIT_START_TIMEOUT;
                if waited_out {
                    if let Some(pid) = start_pid {
                        os::signal_group(pid, libc::SIGKILL);
                    }
                    return Err(format!("pidfile {} names no running process", path.display()));
                }
                sleep(MONIT_POLL).await;
            }
        }
    }
}

/// `/bin/sh -c PROGRAM` as monit runs start and stop programs: from the root, with the job's
/// environment.
fn shell_command(root: &Root, def: &ProcessDef, program: &str) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg("-c").arg(program).current_dir(root.path()).env_clear().envs(exec::job_env(root, &def.job));
    command
}

/// What every supervised child gets: its own process group, death with the supervisor, no
/// stdin, output appended to `sys/log/<job>/<process>.{stdout,stderr}.log`.
fn prepare(command: &mut Command, root: &Root, def: &ProcessDef) -> std::result::Result<(), String> {
    let log_dir = root.job_log_dir(&def.job);
    let open = |suffix: &str| -> std::result::Result<fs::File, String> {
        let path = log_dir.join(format!("{}.{suffix}.log", def.name));
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("opening {}: {e}", path.display()))
    };
    command.stdin(Stdio::null()).stdout(open("stdout")?).stderr(open("stderr")?);
    command.process_group(0);
    let parent = std::process::id();
    // SAFETY: die_with_parent only makes async-signal-safe calls.
    unsafe {
        command.pre_exec(move || os::die_with_parent(parent));
    }
    Ok(())
}

fn read_pidfile(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A line on the supervisor's log (stderr: `sys/log/agent.log` under serve,
/// `sys/log/supervisor.log` for the daemon).
pub(crate) fn log(message: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    eprintln!("[{}.{:03}] {message}", now.as_secs(), now.subsec_millis());
}

/// `rosh agent --root R supervise`: the supervisor as a foreground daemon, until SIGTERM/SIGINT
/// (processes stopped, desired state kept) or a `shutdown` request.
pub fn supervise(root: &Root) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ctx(|| "starting the async runtime")?;
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ctx(|| "SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).ctx(|| "SIGINT handler")?;
        // The daemon has its own session; a stray hangup must not kill it.
        let mut hup = signal(SignalKind::hangup()).ctx(|| "SIGHUP handler")?;
        let supervisor = Supervisor::start(root.clone(), true).await?;
        log(&format!("supervisor for {} running, pid {}", root.path().display(), std::process::id()));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => continue,
                _ = supervisor.exit_requested() => break,
            }
        }
        supervisor.stop_all().await;
        supervisor.close();
        log("supervisor exiting");
        Ok(())
    })
}

//! Running one short-lived program for a verb — a job's `pre-start`, `drain`, an errand, a
//! package's `packaging` — with the environment BOSH gives it, a timeout, and the tails of its
//! output.
//!
//! Owns the environment every job process and script starts from ([`base_env`], [`job_env`]):
//! a clean one (PATH, HOME, LANG from the agent, nothing else leaks from the SSH session that
//! started it) plus `ROSH_ROOT` and BOSH's `BOSH_JOB_DIR`, `BOSH_JOB_NAME`,
//! `BOSH_PACKAGES_DIR`. A program runs in its own process group, so a timeout kills whatever it
//! started too. Output is read on two threads into bounded tails, so a chatty script costs
//! 16 KiB per stream however much it prints; a program that leaves a background child holding
//! its output open is not waited for beyond a short grace after it exits.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::os;
use super::root::Root;
use super::{Context, Result};

/// How much of each output stream is kept.
pub const TAIL_BYTES: usize = 16 * 1024;

/// How long output is still read after the program exited (a background child may hold it).
const OUTPUT_GRACE: Duration = Duration::from_millis(500);

/// PATH when the agent itself has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The exit code reported for a program killed by its timeout, as coreutils `timeout` does.
pub const TIMEOUT_EXIT: i32 = 124;

/// The environment every job process and script starts from.
pub fn base_env(root: &Root) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("PATH".to_string(), std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string()));
    for inherited in ["HOME", "LANG", "TZ"] {
        if let Ok(value) = std::env::var(inherited) {
            env.insert(inherited.to_string(), value);
        }
    }
    env.insert("ROSH_ROOT".to_string(), root.path().display().to_string());
    env
}

/// [`base_env`] plus what BOSH tells a job's scripts about the job.
pub fn job_env(root: &Root, job: &str) -> BTreeMap<String, String> {
    let mut env = base_env(root);
    env.insert("BOSH_JOB_DIR".to_string(), root.job_dir(job).display().to_string());
    env.insert("BOSH_JOB_NAME".to_string(), job.to_string());
    env.insert("BOSH_PACKAGES_DIR".to_string(), root.packages_dir().display().to_string());
    env
}

/// A program to run.
#[derive(Debug, Clone)]
pub struct Script {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    /// Send stderr into the stdout tail (one interleaved log, as for `packaging`).
    pub merge_output: bool,
}

impl Script {
    pub fn new(program: impl Into<PathBuf>, cwd: impl Into<PathBuf>, env: BTreeMap<String, String>) -> Script {
        Script { program: program.into(), args: Vec::new(), cwd: cwd.into(), env, timeout: None, merge_output: false }
    }
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code, 128 + signal when killed, [`TIMEOUT_EXIT`] on timeout.
    pub exit_code: i32,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `script` to its end (or its timeout) and returns how it ended. An error means it could
/// not be started at all.
pub fn run(script: &Script) -> Result<Outcome> {
    let mut command = Command::new(&script.program);
    command.args(&script.args).current_dir(&script.cwd).env_clear().envs(&script.env).stdin(Stdio::null());
    command.process_group(0);
    let parent = std::process::id();
    // SAFETY: die_with_parent only makes async-signal-safe calls.
    unsafe {
        command.pre_exec(move || os::die_with_parent(parent));
    }
    let stdout_tail = Arc::new(Mutex::new(Tail::new(TAIL_BYTES)));
    let stderr_tail = Arc::new(Mutex::new(Tail::new(TAIL_BYTES)));
    let mut readers = Vec::new();
    let spawned = if script.merge_output {
        let (reader, writer) = std::io::pipe().ctx(|| "creating a pipe")?;
        let writer2 = writer.try_clone().ctx(|| "creating a pipe")?;
        command.stdout(writer).stderr(writer2);
        let child = command.spawn();
        // The command holds the write ends: drop it so the reader sees EOF when the child exits.
        drop(command);
        readers.push(pump(reader, stdout_tail.clone()));
        child
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn();
        if let Ok(child) = child.as_mut() {
            readers.push(pump(child.stdout.take().expect("piped"), stdout_tail.clone()));
            readers.push(pump(child.stderr.take().expect("piped"), stderr_tail.clone()));
        }
        child
    };
    let mut child = spawned.ctx(|| format!("running {}", script.program.display()))?;
    let pid = child.id();

    let (done_tx, done_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done_tx.send(());
        status
    });
    let mut timed_out = false;
    match script.timeout {
        Some(timeout) => {
            if done_rx.recv_timeout(timeout).is_err() {
                timed_out = true;
                os::signal_group(pid, libc::SIGKILL);
            }
        }
        None => {
            let _ = done_rx.recv();
        }
    }
    let status = waiter.join().map_err(|_| super::Error::new("waiter thread panicked"))?;
    let status = status.ctx(|| format!("waiting for {}", script.program.display()))?;

    let deadline = Instant::now() + OUTPUT_GRACE;
    for reader in readers {
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = reader.recv_timeout(left);
    }
    let stdout = stdout_tail.lock().map(|t| t.text()).unwrap_or_default();
    let mut stderr = stderr_tail.lock().map(|t| t.text()).unwrap_or_default();
    let exit_code = if timed_out {
        let secs = script.timeout.map(|t| t.as_secs_f64()).unwrap_or_default();
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str(&format!("rosh: timed out after {secs} s, killed\n"));
        TIMEOUT_EXIT
    } else {
        os::exit_code(status)
    };
    Ok(Outcome { exit_code, timed_out, stdout, stderr })
}

/// Reads `source` into `tail` on a thread; the receiver gets a message when it hit EOF.
fn pump(mut source: impl Read + Send + 'static, tail: Arc<Mutex<Tail>>) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 8192];
        loop {
            match source.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut tail) = tail.lock() {
                        tail.push(&buf[..n]);
                    }
                }
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// The last `limit` bytes of a stream.
#[derive(Debug, Clone)]
pub struct Tail {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Tail {
    pub fn new(limit: usize) -> Tail {
        Tail { buf: Vec::new(), limit, truncated: false }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim in amortised steps, not on every push.
        if self.buf.len() > 2 * self.limit {
            let cut = self.buf.len() - self.limit;
            self.buf.drain(..cut);
            self.truncated = true;
        }
    }

    /// The kept bytes as text (a character cut in half at the start is dropped).
    pub fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(self.limit);
        let mut bytes = &self.buf[start..];
        if self.truncated || start > 0 {
            while let Some((&b, rest)) = bytes.split_first() {
                if b & 0b1100_0000 != 0b1000_0000 {
                    break;
                }
                bytes = rest;
            }
        }
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// The shell a script runs under: bash when the machine has it (BOSH runs `packaging` with
/// `bash -e`), otherwise sh.
pub fn shell() -> PathBuf {
    for candidate in ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    PathBuf::from("/bin/sh")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Script {
        let mut s = Script::new("/bin/sh", "/", BTreeMap::new());
        s.args = vec!["-c".to_string(), script.to_string()];
        s
    }

    #[test]
    fn captures_exit_code_and_both_streams() {
        let out = run(&sh("echo out; echo err >&2; exit 3")).unwrap();
        assert_eq!(out.exit_code, 3);
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn keeps_only_the_tail() {
        let out = run(&sh("i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxx; i=$((i+1)); done")).unwrap();
        assert!(out.stdout.len() <= TAIL_BYTES);
        assert!(out.stdout.ends_with("line-2999-xxxxxxxxxx\n"));
        assert!(!out.stdout.contains("line-0-"));
    }

    #[test]
    fn timeout_kills_the_group() {
        let mut script = sh("sleep 30 & sleep 30");
        script.timeout = Some(Duration::from_millis(200));
        let started = Instant::now();
        let out = run(&script).unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, TIMEOUT_EXIT);
        assert!(out.stderr.contains("timed out"));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn merged_output_interleaves() {
        let mut script = sh("echo a; echo b >&2; echo c");
        script.merge_output = true;
        let out = run(&script).unwrap();
        assert_eq!(out.stdout, "a\nb\nc\n");
        assert_eq!(out.stderr, "");
    }

    #[test]
    fn tail_drops_a_split_character() {
        let mut tail = Tail::new(3);
        tail.push("aé".as_bytes());
        tail.push("éé".as_bytes());
        tail.push(&[b'x'; 3]);
        assert_eq!(tail.text(), "xxx");
        let mut tail = Tail::new(4);
        tail.push("ééé".as_bytes());
        assert_eq!(tail.text(), "éé");
    }
}

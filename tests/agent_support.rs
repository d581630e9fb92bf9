//! Helpers shared by the agent tests (included with `#[path]` by `agent_verbs.rs` and
//! `agent_ssh.rs`; as a test target of its own it holds no tests): a VM root in a temp dir that
//! runs verbs through the real `rosh` binary, gzipped tarballs built in memory, polling with a
//! deadline, and cleanup of every process a test started.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use rosh::agent::protocol::{AgentError, ProcessStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

pub const ROSH: &str = env!("CARGO_BIN_EXE_rosh");

/// A VM root in a temp dir. Dropping it stops whatever supervisor the test started there.
pub struct Vm {
    pub dir: tempfile::TempDir,
}

impl Default for Vm {
    fn default() -> Vm {
        Vm { dir: tempfile::tempdir().unwrap() }
    }
}

impl Vm {
    pub fn new() -> Vm {
        Vm::default()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `rosh agent --root R VERB [ARG]` with `stdin`; (exit code, stdout).
    pub fn run(&self, verb: &str, arg: Option<&str>, stdin: &[u8]) -> (i32, Vec<u8>) {
        let mut command = Command::new(ROSH);
        command.arg("agent").arg("--root").arg(self.root()).arg(verb);
        if let Some(arg) = arg {
            command.arg(arg);
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let output = child.wait_with_output().unwrap();
        feeder.join().unwrap();
        if !output.stderr.is_empty() {
            eprintln!("[agent {verb} stderr] {}", String::from_utf8_lossy(&output.stderr));
        }
        (output.status.code().unwrap_or(-1), output.stdout)
    }

    /// Runs a JSON verb that must succeed.
    pub fn ok<T: DeserializeOwned>(&self, verb: &str, request: &impl Serialize) -> T {
        let (code, out) = self.run(verb, None, &serde_json::to_vec(request).unwrap());
        assert_eq!(code, 0, "{verb} failed: {}", String::from_utf8_lossy(&out));
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{verb} answer: {e}: {}", String::from_utf8_lossy(&out)))
    }

    /// Runs a JSON verb that must fail; its error.
    pub fn err(&self, verb: &str, request: &impl Serialize) -> AgentError {
        let (code, out) = self.run(verb, None, &serde_json::to_vec(request).unwrap());
        assert_eq!(code, 1, "{verb} should fail: {}", String::from_utf8_lossy(&out));
        serde_json::from_slice(&out).unwrap()
    }

    /// Puts `bytes` as a blob; its sha256.
    pub fn put(&self, bytes: &[u8]) -> String {
        let sha = sha256(bytes);
        let (code, out) = self.run("put_blob", Some(&sha), bytes);
        assert_eq!(code, 0, "put_blob failed: {}", String::from_utf8_lossy(&out));
        sha
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        stop_supervisor(self.root());
    }
}

/// Stops the standalone supervisor of `root`, if one runs (its job processes die with it).
pub fn stop_supervisor(root: &Path) {
    let Ok(text) = std::fs::read_to_string(root.join("sys/run/supervisor.pid")) else { return };
    let Ok(pid) = text.trim().parse::<i32>() else { return };
    if pid <= 1 || pid == std::process::id() as i32 {
        return;
    }
    // Only a rosh agent: the file outlives a SIGKILLed supervisor and its pid may be reused.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if !cmdline.contains("rosh") || !cmdline.contains("agent") {
        return;
    }
    unsafe { libc::kill(pid, libc::SIGTERM) };
    if !wait_until(Duration::from_secs(15), || !alive(pid as u32)) {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A gzipped tarball of `(path, content, mode)` files.
pub fn tgz(files: &[(&str, &str, u32)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    for (path, body, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(*mode);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, body.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A job tarball whose bpm.yml runs `script` under /bin/sh as process `name`.
pub fn bpm_job(name: &str, script: &str) -> Vec<u8> {
    let bpm = format!(
        "processes:\n  - name: {name}\n    executable: /bin/sh\n    args: [\"-c\", {}]\n    shutdown_timeout: 2\n",
        serde_json::to_string(script).unwrap()
    );
    tgz(&[("config/bpm.yml", &bpm, 0o644)])
}

/// Whether `pid` is alive (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    if unsafe { libc::kill(pid as i32, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start().chars().next();
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Polls `check` every 25 ms until it holds or `limit` passes; whether it held.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Finds process `job`/`name` in a status list.
pub fn process<'a>(processes: &'a [ProcessStatus], job: &str, name: &str) -> &'a ProcessStatus {
    processes
        .iter()
        .find(|p| p.job == job && p.name == name)
        .unwrap_or_else(|| panic!("no process {job}/{name} in {processes:?}"))
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn path_text(path: &Path) -> String {
    path.display().to_string()
}

pub fn temp_path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

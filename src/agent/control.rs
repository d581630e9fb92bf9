//! The supervisor's control protocol and its client: one JSON request per line on the Unix
//! socket `sys/run/supervisor.sock`, one JSON response per line.
//!
//! Owns the request/response types (shared with [`super::supervisor`], which serves them), the
//! blocking client the verbs use, and starting a detached `rosh agent --root R supervise` when
//! no supervisor answers. Socket paths longer than `sun_path` allows (deep local-CPI state dirs)
//! are reached through `/proc/self/fd/N/…` of an open handle on `sys/run`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::os;
use super::protocol::ProcessStatus;
use super::root::Root;
use super::{Context, Error, Result};

/// A request to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Start the processes of these jobs (every applied job when empty) and mark them desired;
    /// answers once each runs or fails, or after a bounded wait.
    Start {
        #[serde(default)]
        jobs: Vec<String>,
        /// How long a process must have run to be answered as running (see
        /// [`crate::agent::protocol::JobSelection::settle_ms`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settle_ms: Option<u64>,
    },
    /// Stop these jobs' processes (every running job when empty) and mark them not desired;
    /// answers once they are gone.
    Stop {
        #[serde(default)]
        jobs: Vec<String>,
    },
    /// Every supervised process's status.
    Status,
    /// Stop every process, leaving the desired state as it is (so a new supervisor resumes
    /// it); a standalone supervisor then exits.
    Shutdown,
}

/// The supervisor's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default)]
    pub processes: Vec<ProcessStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(processes: Vec<ProcessStatus>) -> Response {
        Response { ok: true, processes, error: None }
    }

    pub fn failed(message: impl Into<String>) -> Response {
        Response { ok: false, processes: Vec::new(), error: Some(message.into()) }
    }
}

/// The longest socket path `bind`/`connect` take directly (`sun_path` is 108 bytes with NUL).
const SUN_PATH_MAX: usize = 100;

/// A path through which the socket can be bound or connected, and what keeps it valid.
pub struct SocketPath {
    pub path: PathBuf,
    _dir: Option<fs::File>,
}

impl SocketPath {
    pub fn new(socket: &Path) -> Result<SocketPath> {
        if socket.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(SocketPath { path: socket.to_path_buf(), _dir: None });
        }
        let dir = socket.parent().expect("socket in a directory");
        let handle = fs::File::open(dir).ctx(|| format!("opening {}", dir.display()))?;
        let name = socket.file_name().expect("socket has a name");
        let path = PathBuf::from(format!("/proc/self/fd/{}", handle.as_raw_fd())).join(name);
        Ok(SocketPath { path, _dir: Some(handle) })
    }
}

/// Sends `request` to the root's supervisor. `Ok(None)` when no supervisor is listening.
pub fn request(root: &Root, request: &Request, timeout: Duration) -> Result<Option<Response>> {
    let socket = SocketPath::new(&root.supervisor_socket())?;
    let mut stream = match UnixStream::connect(&socket.path) {
        Ok(stream) => stream,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            return Ok(None);
        }
        Err(e) => return Err(Error(format!("connecting to the supervisor: {e}"))),
    };
    stream.set_read_timeout(Some(timeout)).ctx(|| "supervisor socket")?;
    stream.set_write_timeout(Some(timeout)).ctx(|| "supervisor socket")?;
    let mut line = serde_json::to_string(request).ctx(|| "encoding the supervisor request")?;
    line.push('\n');
    stream.write_all(line.as_bytes()).ctx(|| "sending to the supervisor")?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).ctx(|| "reading the supervisor's answer")?;
    if answer.is_empty() {
        return Err(Error::new("the supervisor closed the connection without answering"));
    }
    let response: Response = serde_json::from_str(&answer).ctx(|| "decoding the supervisor's answer")?;
    Ok(Some(response))
}

/// Like [`request`], but a supervisor's refusal is an error and a missing one is `None`.
pub fn call(root: &Root, req: &Request, timeout: Duration) -> Result<Option<Vec<ProcessStatus>>> {
    match request(root, req, timeout)? {
        None => Ok(None),
        Some(Response { ok: true, processes, .. }) => Ok(Some(processes)),
        Some(Response { error, .. }) => Err(Error(format!("supervisor: {}", error.unwrap_or_default()))),
    }
}

/// Makes sure a supervisor answers on the root's socket, starting `rosh agent --root R
/// supervise` detached (own session, output to `sys/log/supervisor.log`) if none does.
pub fn ensure_supervisor(root: &Root) -> Result<()> {
    if request(root, &Request::Status, Duration::from_secs(5))?.is_some() {
        return Ok(());
    }
    root.ensure_dirs()?;
    let exe = std::env::current_exe().ctx(|| "finding the rosh binary")?;
    let log_path = root.log_dir().join("supervisor.log");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .ctx(|| format!("opening {}", log_path.display()))?;
    let log2 = log.try_clone().ctx(|| format!("opening {}", log_path.display()))?;
    let mut command = Command::new(&exe);
    command
        .arg("agent")
        .arg("--root")
        .arg(root.path())
        .arg("supervise")
        .current_dir(root.path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(os::new_session);
    }
    let mut child = command.spawn().ctx(|| format!("starting {} agent supervise", exe.display()))?;
    let mut deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = None;
    loop {
        if request(root, &Request::Status, Duration::from_secs(5))?.is_some() {
            // The daemon lives on in its own session, no longer ours to wait for.
            drop(child);
            return Ok(());
        }
        if exited.is_none()
            && let Ok(Some(status)) = child.try_wait()
        {
            // Most likely another verb's supervisor won the lock: give it a moment to listen.
            exited = Some(status);
            deadline = deadline.min(Instant::now() + Duration::from_secs(2));
        }
        if Instant::now() > deadline {
            return Err(Error(match exited {
                Some(status) => {
                    format!("the supervisor exited at once ({}); see {}", os::describe_exit(status), log_path.display())
                }
                None => format!("the supervisor did not answer within 10 s; see {}", log_path.display()),
            }));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_op() {
        let text = serde_json::to_string(&Request::Start { jobs: vec!["web".into()], settle_ms: None }).unwrap();
        assert_eq!(text, r#"{"op":"start","jobs":["web"]}"#);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"status"}"#).unwrap(), Request::Status);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"stop"}"#).unwrap(), Request::Stop { jobs: vec![] });
    }

    #[test]
    fn long_socket_paths_go_through_proc() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        fs::create_dir_all(&deep).unwrap();
        let socket = SocketPath::new(&deep.join("supervisor.sock")).unwrap();
        assert!(socket.path.starts_with("/proc/self/fd"));
        let listener = std::os::unix::net::UnixListener::bind(&socket.path).unwrap();
        assert!(deep.join("supervisor.sock").exists());
        let _client = UnixStream::connect(&socket.path).unwrap();
        drop(listener);
    }
}

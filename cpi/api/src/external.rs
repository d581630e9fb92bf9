//! [`ExternalCpi`]: a [`Cpi`] backed by an external BOSH CPI executable (`bosh-aws-cpi`'s
//! `bin/cpi`, a warden CPI, a test script), run once per call as BOSH's director does.
//!
//! This module owns the process side of the protocol: starting the executable with its args and
//! environment, writing one [`Request`](crate::protocol::Request) on its stdin and closing it, reading all of stdout and
//! stderr, finding the [`Response`], the per-call timeout (the child is killed), retrying calls
//! the CPI says are `ok_to_retry` with doubling backoff, and keeping every call's `log` (and
//! stderr) for the operator. The envelope itself (argument order, result shapes) is
//! [`crate::protocol`]'s.
//!
//! Decisions worth knowing:
//! - A response on stdout wins over the exit status, as in BOSH's director and bosh-cli (a CPI
//!   may exit non-zero after answering `VMNotFound`); only when stdout holds no response does a
//!   non-zero exit become the error. Either way it is [`ErrorKind::Other`] with the executable's
//!   path and the tail of its stderr and stdout.
//! - The response is the last JSON object on stdout holding `result` or `error`, so a CPI that
//!   prints chatter before its answer still works.
//! - Each attempt is its own process invocation and gets its own `request_id` in the context.
//! - Only errors the CPI marks `ok_to_retry` are retried; a crash or a timeout is not, since the
//!   call may have had effects rosh cannot see.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::protocol::{Call, Response, decode_bool, decode_cid, decode_cids, decode_created_vm, decode_info};
use crate::{
    Cid, Cpi, CpiError, CreateDisk, CreateStemcell, CreateVm, CreatedVm, DiskAttachment, DiskHint, ErrorKind, Info,
    ResizeDisk, SetVmMetadata, SnapshotDisk,
};

/// How often, and how patiently, a call the CPI marked `ok_to_retry` is made again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (0 is treated as 1).
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled before each one after it.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy { max_attempts: 3, backoff: Duration::from_secs(1) }
    }
}

impl RetryPolicy {
    /// One attempt, no retry.
    pub fn never() -> RetryPolicy {
        RetryPolicy { max_attempts: 1, backoff: Duration::ZERO }
    }
}

/// What one invocation of the executable left for the operator's debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLog {
    /// The CPI method (`create_vm`).
    pub method: String,
    /// The `request_id` sent in the context.
    pub request_id: String,
    /// 1 for the first attempt of a call, 2 for its first retry…
    pub attempt: u32,
    /// The response's `log` (empty when there was no response).
    pub log: String,
    /// The tail of what the executable wrote on stderr (the whole of it goes to the log file).
    pub stderr: String,
}

/// The default per-attempt timeout: long enough for a cloud to create a VM.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How much of stderr/stdout an error message or an in-memory log keeps (the end of it).
const TAIL_BYTES: usize = 4 * 1024;

/// A [`Cpi`] that runs an external BOSH CPI executable once per call.
///
/// ```no_run
/// # use std::time::Duration;
/// # use rosh_cpi::external::{ExternalCpi, RetryPolicy};
/// let cpi = ExternalCpi::new("/var/vcap/jobs/aws_cpi/bin/cpi".into())
///     .arg("-configPath")
///     .arg("/var/vcap/jobs/aws_cpi/config/cpi.json")
///     .context(serde_json::json!({"director_uuid": "4a3f…"}))
///     .timeout(Duration::from_secs(300))
///     .retry(RetryPolicy { max_attempts: 5, backoff: Duration::from_secs(2) });
/// ```
#[derive(Debug)]
pub struct ExternalCpi {
    exe: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    context: Map<String, Value>,
    api_version: u32,
    timeout: Duration,
    retry: RetryPolicy,
    log_file: Option<PathBuf>,
    logs: Mutex<Vec<CallLog>>,
    /// Distinguishes this client's request ids from another process's.
    request_prefix: String,
    requests: AtomicU64,
}

impl ExternalCpi {
    /// A client for the executable at `exe`: API v2, no extra args or env, an empty context,
    /// a 10-minute timeout and the default [`RetryPolicy`].
    pub fn new(exe: PathBuf) -> ExternalCpi {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        ExternalCpi {
            exe,
            args: Vec::new(),
            env: Vec::new(),
            context: Map::new(),
            api_version: crate::API_VERSION,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            log_file: None,
            logs: Mutex::new(Vec::new()),
            request_prefix: format!("{:x}{:05x}", std::process::id(), nanos & 0xfffff),
            requests: AtomicU64::new(0),
        }
    }

    /// Adds one command-line argument (e.g. `-configPath`, then the path).
    pub fn arg(mut self, arg: impl Into<OsString>) -> ExternalCpi {
        self.args.push(arg.into());
        self
    }

    /// Adds command-line arguments.
    pub fn args<I, S>(mut self, args: I) -> ExternalCpi
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the executable (on top of rosh's own environment).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> ExternalCpi {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The context sent with every call (`director_uuid`, CPI-config properties…). Each call
    /// adds its own `request_id`. A value that is not an object is an empty context.
    pub fn context(mut self, context: Value) -> ExternalCpi {
        self.context = match context {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        self
    }

    /// The CPI API version sent as `api_version` (default 2).
    pub fn api_version(mut self, version: u32) -> ExternalCpi {
        self.api_version = version;
        self
    }

    /// How long one attempt may run before the executable is killed (default 10 minutes).
    pub fn timeout(mut self, timeout: Duration) -> ExternalCpi {
        self.timeout = timeout;
        self
    }

    /// How calls the CPI marks `ok_to_retry` are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> ExternalCpi {
        self.retry = policy;
        self
    }

    /// Appends every call's log and stderr to this file (created if missing).
    pub fn log_file(mut self, path: impl Into<PathBuf>) -> ExternalCpi {
        self.log_file = Some(path.into());
        self
    }

    /// The executable this client runs.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Every invocation's log so far, oldest first.
    pub fn logs(&self) -> Vec<CallLog> {
        self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Every invocation's log so far, leaving none behind.
    pub fn take_logs(&self) -> Vec<CallLog> {
        std::mem::take(&mut *self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Makes `call` (retrying as the policy allows) and returns its raw `result`.
    pub async fn invoke(&self, call: &Call) -> Result<Value, CpiError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut backoff = self.retry.backoff;
        let mut attempt = 1;
        loop {
            let outcome = self.attempt(call, attempt).await.and_then(Response::into_result);
            match outcome {
                Err(error) if error.ok_to_retry && attempt < max_attempts => {
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// One invocation of the executable: the response it gave, or why it gave none.
    async fn attempt(&self, call: &Call, attempt: u32) -> Result<Response, CpiError> {
        let method = call.method_name();
        let request_id = format!("cpi-{}-{}", self.request_prefix, self.requests.fetch_add(1, Ordering::Relaxed) + 1);
        let mut context = self.context.clone();
        context.insert("request_id".to_string(), Value::String(request_id.clone()));
        let request = call.to_request(Value::Object(context), Some(self.api_version));
        let input = serde_json::to_vec(&request).expect("a Request always serializes");

        let mut command = Command::new(&self.exe);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A timed-out attempt drops the child below; this is what kills it.
            .kill_on_drop(true);
        let mut child = self.spawn(&mut command).await?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let write = async move {
            let written = stdin.write_all(&input).await;
            drop(stdin); // EOF: the CPI reads until it.
            written
        };
        // Write and read at once: a CPI may print before it has read all of its input.
        let run = async { tokio::join!(write, child.wait_with_output()) };
        let (written, output) = match tokio::time::timeout(self.timeout, run).await {
            Ok(finished) => finished,
            Err(_) => {
                self.record(CallLog {
                    method: method.into(),
                    request_id,
                    attempt,
                    log: String::new(),
                    stderr: String::new(),
                })
                .await;
                return Err(self.failure(
                    method,
                    &format!("timed out after {} and was killed", human(self.timeout)),
                    "",
                    "",
                ));
            }
        };
        let output = output.map_err(|e| self.failure(method, &format!("could not be waited for: {e}"), "", ""))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let response = parse_response(&stdout);

        self.record(CallLog {
            method: method.into(),
            request_id,
            attempt,
            log: response.as_ref().map(|r| r.log.clone()).unwrap_or_default(),
            stderr: stderr.to_string(),
        })
        .await;

        match response {
            Some(response) => Ok(response),
            None => {
                let what = if !output.status.success() {
                    format!("exited with {} without a response", output.status)
                } else {
                    match written {
                        // It stopped reading its input early; worth saying, since that is
                        // probably why it did not answer.
                        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
                            format!("answered no JSON response (writing its request failed: {e})")
                        }
                        _ => "answered no JSON response".to_string(),
                    }
                };
                Err(self.failure(method, &what, &stderr, &stdout))
            }
        }
    }

    /// Starts the executable. A CPI written moments ago may still be open for writing in a
    /// process forked meanwhile (ETXTBSY); that passes within milliseconds, so it is retried.
    async fn spawn(&self, command: &mut Command) -> Result<tokio::process::Child, CpiError> {
        let mut busy_retries = 0;
        loop {
            match command.spawn() {
                Ok(child) => return Ok(child),
                Err(e) if e.kind() == io::ErrorKind::ExecutableFileBusy && busy_retries < 20 => {
                    busy_retries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    return Err(CpiError::other(format!(
                        "external CPI `{}` could not be started: {e}",
                        self.exe.display()
                    )));
                }
            }
        }
    }

    /// An [`ErrorKind::Other`] naming the executable and the method, with output tails.
    fn failure(&self, method: &str, what: &str, stderr: &str, stdout: &str) -> CpiError {
        let mut message = format!("external CPI `{}` {method}: {what}", self.exe.display());
        for (name, text) in [("stderr", stderr), ("stdout", stdout)] {
            let text = tail(text.trim(), TAIL_BYTES);
            if !text.is_empty() {
                let _ = write!(message, "\n{name}: {text}");
            }
        }
        CpiError::new(ErrorKind::Other, message)
    }

    /// Keeps the invocation's log in memory (stderr's tail) and in the log file (all of it).
    async fn record(&self, mut entry: CallLog) {
        if let Some(path) = &self.log_file {
            let mut text = format!(
                "[{}] {} {} attempt {}\n",
                SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
                entry.request_id,
                entry.method,
                entry.attempt
            );
            for (name, body) in [("log", &entry.log), ("stderr", &entry.stderr)] {
                if !body.trim().is_empty() {
                    let _ = writeln!(text, "--- {name}\n{}", body.trim_end());
                }
            }
            // The debug log must never decide a call's outcome: a failure to write it is
            // ignored rather than turned into a CPI error.
            let _ = append(path, text.as_bytes()).await;
        }
        entry.stderr = tail(&entry.stderr, TAIL_BYTES).to_string();
        self.logs.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(entry);
    }
}

async fn append(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // One write per entry, in append mode, so concurrent calls do not interleave within one.
    let mut file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
    file.write_all(bytes).await?;
    file.flush().await
}

/// The last JSON object on stdout that holds a `result` or an `error`. Candidates start at the
/// beginning of a line, so both a one-line and a pretty-printed response are found, and any
/// output after it is ignored.
pub fn parse_response(stdout: &str) -> Option<Response> {
    let mut line_starts: Vec<usize> = std::iter::once(0)
        .chain(stdout.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i < stdout.len())
        .collect();
    line_starts.reverse();
    line_starts.into_iter().find_map(|start| {
        let line = &stdout[start..];
        let object = &line[line.len() - line.trim_start().len()..];
        if !object.starts_with('{') {
            return None;
        }
        let value = serde_json::Deserializer::from_str(object).into_iter::<Value>().next()?.ok()?;
        let map = value.as_object()?;
        if !map.contains_key("result") && !map.contains_key("error") {
            return None;
        }
        serde_json::from_value(value).ok()
    })
}

/// The last `max` bytes of `text` (on a character boundary), marked when cut.
fn tail(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..]).into()
}

fn human(duration: Duration) -> String {
    if duration.as_secs() >= 1 && duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[async_trait::async_trait]
impl Cpi for ExternalCpi {
    async fn info(&self) -> Result<Info, CpiError> {
        decode_info(self.invoke(&Call::Info).await?)
    }

    async fn create_stemcell(&self, req: CreateStemcell) -> Result<Cid, CpiError> {
        decode_cid("create_stemcell", &self.invoke(&Call::CreateStemcell(req)).await?)
    }

    async fn delete_stemcell(&self, stemcell_cid: Cid) -> Result<(), CpiError> {
        self.invoke(&Call::DeleteStemcell(stemcell_cid)).await.map(drop)
    }

    async fn create_vm(&self, req: CreateVm) -> Result<CreatedVm, CpiError> {
        let requested = req.networks.clone();
        decode_created_vm(&self.invoke(&Call::CreateVm(req)).await?, &requested)
    }

    async fn delete_vm(&self, vm_cid: Cid) -> Result<(), CpiError> {
        self.invoke(&Call::DeleteVm(vm_cid)).await.map(drop)
    }

    async fn has_vm(&self, vm_cid: Cid) -> Result<bool, CpiError> {
        decode_bool("has_vm", &self.invoke(&Call::HasVm(vm_cid)).await?)
    }

    async fn reboot_vm(&self, vm_cid: Cid) -> Result<(), CpiError> {
        self.invoke(&Call::RebootVm(vm_cid)).await.map(drop)
    }

    async fn set_vm_metadata(&self, req: SetVmMetadata) -> Result<(), CpiError> {
        self.invoke(&Call::SetVmMetadata(req)).await.map(drop)
    }

    async fn create_disk(&self, req: CreateDisk) -> Result<Cid, CpiError> {
        decode_cid("create_disk", &self.invoke(&Call::CreateDisk(req)).await?)
    }

    async fn delete_disk(&self, disk_cid: Cid) -> Result<(), CpiError> {
        self.invoke(&Call::DeleteDisk(disk_cid)).await.map(drop)
    }

    async fn has_disk(&self, disk_cid: Cid) -> Result<bool, CpiError> {
        decode_bool("has_disk", &self.invoke(&Call::HasDisk(disk_cid)).await?)
    }

    /// Under API v1 the CPI answers `null`, which is the hint returned.
    async fn attach_disk(&self, req: DiskAttachment) -> Result<DiskHint, CpiError> {
        self.invoke(&Call::AttachDisk(req)).await
    }

    async fn detach_disk(&self, req: DiskAttachment) -> Result<(), CpiError> {
        self.invoke(&Call::DetachDisk(req)).await.map(drop)
    }

    async fn get_disks(&self, vm_cid: Cid) -> Result<Vec<Cid>, CpiError> {
        decode_cids("get_disks", &self.invoke(&Call::GetDisks(vm_cid)).await?)
    }

    async fn resize_disk(&self, req: ResizeDisk) -> Result<(), CpiError> {
        self.invoke(&Call::ResizeDisk(req)).await.map(drop)
    }

    async fn snapshot_disk(&self, req: SnapshotDisk) -> Result<Cid, CpiError> {
        decode_cid("snapshot_disk", &self.invoke(&Call::SnapshotDisk(req)).await?)
    }

    async fn delete_snapshot(&self, snapshot_cid: Cid) -> Result<(), CpiError> {
        self.invoke(&Call::DeleteSnapshot(snapshot_cid)).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_last_response_on_stdout_wins_over_chatter() {
        let stdout = "loading config\n{\"result\": \"old\", \"error\": null, \"log\": \"\"}\n\
                      {\"not\": \"a response\"}\n{\"result\": \"i-1\", \"error\": null, \"log\": \"made\"}\ntrailing words\n";
        let response = parse_response(stdout).unwrap();
        assert_eq!(response.result, json!("i-1"));
        assert_eq!(response.log, "made");
    }

    #[test]
    fn a_pretty_printed_response_is_found() {
        let stdout =
            "warming up\n{\n  \"result\": [\n    \"i-2\",\n    {}\n  ],\n  \"error\": null,\n  \"log\": \"\"\n}\n";
        assert_eq!(parse_response(stdout).unwrap().result, json!(["i-2", {}]));
    }

    #[test]
    fn output_without_a_response_is_none() {
        assert_eq!(parse_response(""), None);
        assert_eq!(parse_response("Traceback (most recent call last):\n{ broken"), None);
        assert_eq!(parse_response("{\"other\": 1}\n"), None);
    }

    #[test]
    fn tails_keep_the_end_on_a_char_boundary() {
        assert_eq!(tail("short", 10), "short");
        assert_eq!(tail("abcdefgh", 3), "…fgh");
        // 'é' is two bytes: a cut inside it moves forward.
        assert_eq!(tail("aé", 1), "…");
        assert_eq!(tail("aéz", 2), "…z");
    }

    #[test]
    fn builder_defaults_are_boshs() {
        let cpi = ExternalCpi::new("/bin/cpi".into());
        assert_eq!(cpi.api_version, 2);
        assert_eq!(cpi.timeout, Duration::from_secs(600));
        assert_eq!(cpi.retry.max_attempts, 3);
        let cpi = cpi.context(json!("not an object"));
        assert!(cpi.context.is_empty());
    }
}

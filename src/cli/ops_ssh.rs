//! `rosh -d NAME ssh GROUP[/ID] -c CMD` and `rosh -d NAME logs GROUP[/ID] [--follow]`: running
//! a command on instances and getting their logs, over the director's own SSH client.
//!
//! `ssh` is an exec, never a shell: the command runs from the VM's root with `ROSH_ROOT` set
//! (the local agent does that itself; under OpenSSH the command line sets it), stdout streams
//! through as it arrives, stderr follows when the command ends (the SSH client collects it),
//! and the exit status is the command's (`128 + N` for a signal, as a shell reports it). With a
//! whole group it runs on every instance at once and each output line is prefixed with the
//! instance's name; the exit status is then the first failing instance's. An interactive
//! shell is not offered yet.
//!
//! `logs` asks the agent to pack `sys/log` (`fetch_logs`) and streams the tarball back with
//! `get_blob` (digest checked) into `DIR/<deployment>.<group>.<index>.<timestamp>.tgz`, written
//! beside and renamed into place so a failed fetch leaves no partial file. `--follow` is
//! `tail -F` of the job logs through the same exec path, until Ctrl-C.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use tokio::io::AsyncWrite;

use super::deploy::Director;
use super::ops::{Selector, display_name, endpoint_of, instances_of, require_deployment, runtime, select, utc_stamp};
use crate::agent::protocol::FetchLogs;
use crate::converge::vm::Reach;
use crate::ssh::agent_client::AgentClient;
use crate::ssh::client::{ExitStatus, shell_quote};
use crate::state::InstanceRecord;

#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// The instance(s): GROUP (all of its instances), GROUP/INDEX or GROUP/ID.
    #[arg(value_name = "GROUP[/ID]")]
    pub target: String,
    /// The command to run (by /bin/sh, from the VM's root, with ROSH_ROOT set).
    #[arg(short = 'c', long = "command", value_name = "CMD")]
    pub command: Option<String>,
    /// Collect each instance's output and exit status and print them as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The instance(s): GROUP (all of its instances), GROUP/INDEX or GROUP/ID.
    #[arg(value_name = "GROUP[/ID]")]
    pub target: String,
    /// Where the tarballs go (default: the current directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Only these jobs' logs (repeatable).
    #[arg(long = "job", value_name = "NAME")]
    pub jobs: Vec<String>,
    /// Stream the job logs (`tail -F`) until Ctrl-C instead of fetching a tarball.
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[arg(long)]
    pub json: bool,
}

/// Effectively no limit for an operator's command: it ends when it ends (or on Ctrl-C).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// The selected instances, each with a VM (an instance without one is an error naming it).
fn targets(director: &Director, name: &str, target: &str) -> anyhow::Result<Vec<InstanceRecord>> {
    let selector = Selector::parse(target)?;
    let chosen = select(&instances_of(&director.state, name)?, Some(&selector), name)?;
    let without: Vec<String> = chosen.iter().filter(|r| r.vm.is_none()).map(display_name).collect();
    if !without.is_empty() {
        bail!(
            "{} of deployment `{name}` {} no VM (stopped with --hard, or never created): `rosh -d {name} deploy MANIFEST` recreates it",
            without.join(", "),
            if without.len() == 1 { "has" } else { "have" }
        );
    }
    Ok(chosen)
}

/// How this director reaches the VMs of an operator command: no waiting for a VM to boot.
fn quick_reach(director: &Director) -> anyhow::Result<Reach> {
    Ok(Reach { boot_timeout: Duration::ZERO, step_timeout: Duration::from_secs(120), ..director.reach()? })
}

async fn connect(reach: &Reach, record: &InstanceRecord) -> anyhow::Result<AgentClient> {
    let endpoint = endpoint_of(record)?.ok_or_else(|| anyhow!("{} has no VM", record.label()))?;
    tokio::time::timeout(Duration::from_secs(15), reach.agent(&endpoint))
        .await
        .map_err(|_| anyhow!("the VM did not answer within 15s"))?
        .context("reaching the VM")
}

/// `command` as the VM runs it: from the root, with `ROSH_ROOT` set. (A local VM's agent does
/// both already; OpenSSH hands the line to the login shell, which does neither.)
fn remote_command(root: &str, command: &str) -> String {
    let root = shell_quote(root);
    format!("ROSH_ROOT={root}; export ROSH_ROOT; cd {root} && exec /bin/sh -c {}", shell_quote(command))
}

/// The exit code a shell would report for `status`.
fn exit_code(status: &ExitStatus) -> u8 {
    match status {
        ExitStatus::Code(code) => u8::try_from(*code).unwrap_or(255),
        ExitStatus::Signal(name) => {
            let number = match name.trim_start_matches("SIG") {
                "HUP" => 1,
                "INT" => 2,
                "QUIT" => 3,
                "ILL" => 4,
                "ABRT" => 6,
                "FPE" => 8,
                "KILL" => 9,
                "USR1" => 10,
                "SEGV" => 11,
                "USR2" => 12,
                "PIPE" => 13,
                "ALRM" => 14,
                "TERM" => 15,
                _ => return 255,
            };
            128 + number
        }
    }
}

/// Where one instance's stdout goes: straight through, prefixed line by line, or kept.
enum Sink {
    Plain,
    Prefixed { prefix: String, partial: Vec<u8> },
    Kept(Vec<u8>),
}

impl Sink {
    fn for_run(prefix: Option<String>, keep: bool) -> Sink {
        match (keep, prefix) {
            (true, _) => Sink::Kept(Vec::new()),
            (false, Some(prefix)) => Sink::Prefixed { prefix, partial: Vec::new() },
            (false, None) => Sink::Plain,
        }
    }

    fn push(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::Prefixed { prefix, partial } => {
                partial.extend_from_slice(bytes);
                if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
                    let complete: Vec<u8> = partial.drain(..=end).collect();
                    write_prefixed(&mut std::io::stdout().lock(), prefix, &complete)?;
                }
                Ok(())
            }
            Sink::Kept(kept) => {
                kept.extend_from_slice(bytes);
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> std::io::Result<()> {
        if let Sink::Prefixed { prefix, partial } = self
            && !partial.is_empty()
        {
            partial.push(b'\n');
            write_prefixed(&mut std::io::stdout().lock(), prefix, partial)?;
            partial.clear();
        }
        Ok(())
    }
}

/// Writes every line of `bytes` (which ends with a newline) after `prefix`, under one lock so
/// instances' lines never interleave mid-line.
fn write_prefixed(out: &mut impl Write, prefix: &str, bytes: &[u8]) -> std::io::Result<()> {
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        out.write_all(prefix.as_bytes())?;
        out.write_all(line)?;
    }
    out.flush()
}

impl AsyncWrite for Sink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        // Terminal writes are short and blocking is what a terminal does anyway.
        Poll::Ready(self.push(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.finish())
    }
}

/// How one instance's run ended.
#[derive(Debug, Serialize)]
struct RunResult {
    instance: String,
    /// `None` when the command could not be run (the error says why).
    exit_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stdout: Option<String>,
    stderr: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs `command` on `record`'s VM, its stdout into a sink.
async fn run_on(
    reach: &Reach,
    record: &InstanceRecord,
    command: &str,
    prefix: Option<String>,
    keep: bool,
) -> RunResult {
    let instance = record.label();
    let mut sink = Sink::for_run(prefix.clone(), keep);
    let outcome = async {
        let agent = connect(reach, record).await?;
        let endpoint = endpoint_of(record)?.expect("a VM was checked for");
        let conn = agent.connection().with_step_timeout(COMMAND_TIMEOUT);
        let line = remote_command(&endpoint.root, command);
        let done = conn.exec_streaming(&line, tokio::io::empty(), &mut sink).await;
        conn.close().await;
        anyhow::Ok(done?)
    }
    .await;
    let _ = sink.finish();
    let stdout = match sink {
        Sink::Kept(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    };
    match outcome {
        Ok(done) => {
            let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
            if !keep && !stderr.is_empty() {
                let mut err = std::io::stderr().lock();
                let text = if stderr.ends_with('\n') { stderr.clone() } else { format!("{stderr}\n") };
                let _ = match &prefix {
                    Some(prefix) => write_prefixed(&mut err, prefix, text.as_bytes()),
                    None => err.write_all(text.as_bytes()),
                };
            }
            RunResult { instance, exit_code: Some(exit_code(&done.status)), stdout, stderr, error: None }
        }
        Err(e) => RunResult { instance, exit_code: None, stdout, stderr: String::new(), error: Some(format!("{e:#}")) },
    }
}

pub fn ssh(deployment: Option<String>, args: SshArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "ssh")?;
    let Some(command) = args.command.clone() else {
        bail!(
            "an interactive shell is not supported yet: run a command with `rosh -d {name} ssh {} -c CMD`",
            args.target
        );
    };
    let director = Director::open()?;
    let chosen = targets(&director, &name, &args.target)?;
    let reach = quick_reach(&director)?;
    let many = chosen.len() > 1;
    let results = runtime()?.block_on(futures::future::join_all(chosen.iter().map(|r| {
        let prefix = many.then(|| format!("{}: ", r.label()));
        run_on(&reach, r, &command, prefix, args.json)
    })));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    for r in results.iter().filter(|r| r.error.is_some()) {
        eprintln!("{}: {}", r.instance, r.error.as_deref().unwrap_or_default());
    }
    let code = results.iter().find_map(|r| match r.exit_code {
        Some(0) => None,
        Some(code) => Some(code),
        None => Some(1),
    });
    Ok(ExitCode::from(code.unwrap_or(0)))
}

/// One fetched log tarball.
#[derive(Debug, Serialize)]
struct Fetched {
    instance: String,
    path: PathBuf,
    sha256: String,
    size: u64,
}

pub fn logs(deployment: Option<String>, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let name = require_deployment(deployment, "logs")?;
    let director = Director::open()?;
    let chosen = targets(&director, &name, &args.target)?;
    let reach = quick_reach(&director)?;
    let runtime = runtime()?;
    if args.follow {
        return runtime.block_on(follow(&reach, &chosen, &args.jobs));
    }
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::current_dir().context("finding the current directory")?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = utc_stamp();
    let results = runtime.block_on(futures::future::join_all(chosen.iter().map(|r| {
        let path = dir.join(format!("{name}.{}.{}.{stamp}.tgz", r.group, r.index));
        fetch_logs(&reach, r, &args.jobs, path)
    })));
    let mut fetched = Vec::new();
    let mut failed = Vec::new();
    for (record, result) in chosen.iter().zip(results) {
        match result {
            Ok(f) => fetched.push(f),
            Err(e) => failed.push(format!("{}: {e:#}", record.label())),
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&fetched)?);
    } else {
        for f in &fetched {
            println!("{}", f.path.display());
        }
    }
    if !failed.is_empty() {
        bail!("fetching logs failed:\n  {}", failed.join("\n  "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn fetch_logs(reach: &Reach, record: &InstanceRecord, jobs: &[String], path: PathBuf) -> anyhow::Result<Fetched> {
    let agent = connect(reach, record).await?;
    let packed = agent.fetch_logs(&FetchLogs { jobs: jobs.to_vec() }).await.context("packing the logs")?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let tmp = tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("making a file in {}", dir.display()))?;
    let mut file = tokio::fs::File::from_std(tmp.reopen()?);
    let size = agent.get_blob(&packed.sha256, &mut file).await.context("downloading the logs")?;
    tokio::io::AsyncWriteExt::flush(&mut file).await?;
    file.sync_all().await?;
    tmp.persist(&path).with_context(|| format!("writing {}", path.display()))?;
    agent.connection().close().await;
    Ok(Fetched { instance: record.label(), path, sha256: packed.sha256, size })
}

/// Streams the job logs of every chosen instance until Ctrl-C (or until every tail ends).
async fn follow(reach: &Reach, chosen: &[InstanceRecord], jobs: &[String]) -> anyhow::Result<ExitCode> {
    let globs: Vec<String> = if jobs.is_empty() {
        vec!["sys/log/*/*.log".to_string()]
    } else {
        jobs.iter().map(|j| format!("sys/log/{}/*.log", shell_quote(j))).collect()
    };
    let command = format!("exec tail -n 20 -F {}", globs.join(" "));
    let many = chosen.len() > 1;
    let tails = futures::future::join_all(chosen.iter().map(|r| {
        let prefix = many.then(|| format!("{}: ", r.label()));
        run_on(reach, r, &command, prefix, false)
    }));
    tokio::select! {
        results = tails => {
            for r in results.iter().filter(|r| r.error.is_some()) {
                eprintln!("{}: {}", r.instance, r.error.as_deref().unwrap_or_default());
            }
            Ok(ExitCode::from(if results.iter().all(|r| r.exit_code == Some(0)) { 0 } else { 1 }))
        }
        // Dropping the tails closes their connections; the agents end `tail` with them.
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_exit_as_a_shell_reports_them() {
        assert_eq!(exit_code(&ExitStatus::Code(3)), 3);
        assert_eq!(exit_code(&ExitStatus::Code(300)), 255);
        assert_eq!(exit_code(&ExitStatus::Signal("KILL".into())), 137);
        assert_eq!(exit_code(&ExitStatus::Signal("Custom(\"XCPU\")".into())), 255);
    }

    #[test]
    fn prefixed_lines_stay_whole() {
        let mut out = Vec::new();
        write_prefixed(&mut out, "web/1: ", b"a\nb\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "web/1: a\nweb/1: b\n");
    }

    #[test]
    fn the_command_runs_from_the_root_with_rosh_root() {
        let line = remote_command("/var/vcap", "cat 'x y'");
        assert_eq!(line, r"ROSH_ROOT=/var/vcap; export ROSH_ROOT; cd /var/vcap && exec /bin/sh -c 'cat '\''x y'\'''");
    }
}

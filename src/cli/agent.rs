//! `rosh agent --root ROOT …`: the VM side, run on every VM (hidden from help; the director
//! runs it, operators do not).
//!
//! - `rosh agent --root R VERB [ARG]`: one agent verb, request JSON on stdin, answer on stdout,
//!   exit 0; on failure exit 1 with an `AgentError` as JSON on stdout.
//! - `rosh agent --root R supervise`: the process supervisor as a foreground daemon.
//! - `rosh agent --root R serve --listen IP:PORT --authorized-keys FILE`: the local CPI's VM,
//!   an SSH server and the supervisor in one process.
//!
//! [`standalone_main`] is the `rosh-agent` binary (`src/bin/rosh-agent.rs`): the same verbs and
//! `supervise`, without the director and without `serve`, so it is a few MB where `rosh` is tens.
//! The director installs it on OpenSSH machines as `<root>/bosh/bin/rosh-agent`. A `rosh` binary
//! named `rosh-agent` (installed when the small one was not built) behaves the same way.

use std::ffi::OsString;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::agent::{self, Root, ServeOptions};
use crate::ssh::agent_client::STANDALONE_AGENT;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    /// The VM's root: /var/vcap on static and cloud VMs, the VM directory on the local CPI.
    #[arg(long, value_name = "ROOT", env = "ROSH_ROOT")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: AgentCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AgentCommand {
    /// Serve SSH for this VM and supervise its processes (the local CPI's VM process).
    Serve {
        /// Address to listen on (port 0: any free port, written to sys/run/agent.ready).
        #[arg(long, value_name = "IP:PORT")]
        listen: SocketAddr,
        /// OpenSSH authorized_keys file listing the keys allowed in.
        #[arg(long, value_name = "FILE")]
        authorized_keys: PathBuf,
    },
    /// Run the process supervisor in the foreground.
    Supervise,
    /// An agent verb (get_state, apply, start, …) and its argument.
    #[command(external_subcommand)]
    Verb(Vec<String>),
}

pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AgentCommand::Serve { listen, authorized_keys } => {
            agent::serve(&ServeOptions { root: args.root, listen, authorized_keys })?;
            Ok(ExitCode::SUCCESS)
        }
        command => run_verb_or_supervise(&args.root, command),
    }
}

/// `rosh-agent [agent] --root R (supervise | VERB [ARG])`. The optional `agent` word keeps the
/// command lines of `rosh agent …` valid, which is how the supervisor restarts itself.
pub fn standalone_main() -> ExitCode {
    #[derive(Debug, clap::Parser)]
    #[command(name = "rosh-agent", version, about = "The rosh agent, as run on a VM by the director over SSH")]
    struct Standalone {
        #[command(flatten)]
        agent: AgentArgs,
    }
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|word| word == "agent") {
        argv.remove(1);
    }
    let args = <Standalone as clap::Parser>::parse_from(argv).agent;
    run_verb_or_supervise(&args.root, args.command).unwrap_or_else(|e| {
        eprintln!("rosh-agent: {e:#}");
        ExitCode::FAILURE
    })
}

/// Whether this process was started under the agent's name (a `rosh` binary installed as
/// `rosh-agent`).
pub fn invoked_as_standalone() -> bool {
    std::env::args_os()
        .next()
        .and_then(|argv0| std::path::Path::new(&argv0).file_name().map(|name| name == STANDALONE_AGENT))
        .unwrap_or(false)
}

/// The verbs and `supervise`; `serve` (which `run` handles itself) is refused, so the standalone
/// binary does not link the SSH server.
fn run_verb_or_supervise(root: &std::path::Path, command: AgentCommand) -> anyhow::Result<ExitCode> {
    let root = Root::new(root);
    match command {
        AgentCommand::Serve { .. } => {
            anyhow::bail!(
                "`serve` is the local CPI's VM and needs the full binary: run `rosh agent --root ROOT serve …`"
            )
        }
        AgentCommand::Supervise => {
            agent::supervise(&root)?;
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::Verb(words) => {
            let stdin = io::stdin();
            let mut input = stdin.lock();
            let stdout = io::stdout();
            let mut output = io::BufWriter::with_capacity(256 * 1024, stdout.lock());
            let code = agent::verbs::run_cli_verb(&root, &words, &mut input, &mut output);
            output.flush()?;
            Ok(ExitCode::from(code))
        }
    }
}

//! `rosh agent --root ROOT …`: the VM side, run on every VM (hidden from help; the director
//! runs it, operators do not).
//!
//! - `rosh agent --root R VERB [ARG]`: one agent verb, request JSON on stdin, answer on stdout,
//!   exit 0; on failure exit 1 with an `AgentError` as JSON on stdout.
//! - `rosh agent --root R supervise`: the process supervisor as a foreground daemon.
//! - `rosh agent --root R serve --listen IP:PORT --authorized-keys FILE`: the local CPI's VM,
//!   an SSH server and the supervisor in one process.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::agent::{self, Root, ServeOptions};

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
    let root = Root::new(&args.root);
    match args.command {
        AgentCommand::Serve { listen, authorized_keys } => {
            agent::serve(&ServeOptions { root: root.path().to_path_buf(), listen, authorized_keys })?;
            Ok(ExitCode::SUCCESS)
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

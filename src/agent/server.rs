//! `rosh agent --root R serve`: a local-CPI VM's front door — an SSH server (russh) and the
//! process supervisor in one detached process.
//!
//! Owns the host key (`sys/ssh/ssh_host_ed25519_key`, made on first start, its public half
//! beside it for the director to pin), public-key authentication against an OpenSSH
//! authorized-keys file (re-read on every attempt, any user name, nothing else accepted), and
//! exec channels: `rosh-agent VERB [ARG]` runs the verb in-process on a blocking thread with the
//! channel's data as its stdin and its output streamed back; any other command runs as
//! `/bin/sh -c CMD` from the root with `ROSH_ROOT` set. No PTY, no shell. The readiness
//! contract with the local CPI: the pid goes to `sys/run/agent.pid` once the listener is bound,
//! `sys/run/agent.ready` (holding the listen address) once SSH and the supervisor's socket both
//! accept. SIGTERM/SIGINT stop every job process and exit 0; SIGKILL takes them down through
//! their parent-death signal.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, MethodKind, MethodSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::root::{Root, write_atomic};
use super::supervisor::{Supervisor, log};
use super::verbs::run_cli_verb;
use super::{Context, Error, Result};

/// The exec prefix that runs an agent verb in-process.
pub const VERB_PREFIX: &str = "rosh-agent ";

/// How `serve` is started.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub root: PathBuf,
    /// Where to listen; port 0 picks a free port (the ready file says which).
    pub listen: SocketAddr,
    pub authorized_keys: PathBuf,
}

/// The host key's path under a root; the public half is this plus `.pub`.
pub fn host_key_path(root: &Root) -> PathBuf {
    root.ssh_dir().join("ssh_host_ed25519_key")
}

/// Loads the root's ed25519 host key, creating it (and always rewriting its `.pub`) if missing.
pub fn load_or_create_host_key(root: &Root) -> Result<PrivateKey> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = host_key_path(root);
    let key = match std::fs::read(&path) {
        Ok(text) => PrivateKey::from_openssh(&text).ctx(|| format!("reading host key {}", path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            aws_lc_rs::rand::fill(&mut seed).map_err(|_| Error::new("no randomness for the host key"))?;
            let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            key.set_comment(format!("rosh-agent@{}", root.path().display()));
            let text = key.to_openssh(LineEnding::LF).ctx(|| "encoding the host key")?;
            std::fs::create_dir_all(root.ssh_dir()).ctx(|| format!("creating {}", root.ssh_dir().display()))?;
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .ctx(|| format!("writing {}", tmp.display()))?;
            file.write_all(text.as_bytes()).ctx(|| format!("writing {}", tmp.display()))?;
            file.sync_all().ctx(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).ctx(|| format!("writing {}", path.display()))?;
            key
        }
        Err(e) => return Err(Error(format!("reading host key {}: {e}", path.display()))),
    };
    let public = key.public_key().to_openssh().ctx(|| "encoding the host public key")?;
    write_atomic(&path.with_extension("pub"), format!("{public}\n").as_bytes())?;
    Ok(key)
}

/// Runs the VM until SIGTERM/SIGINT.
pub fn serve(options: &ServeOptions) -> Result<()> {
    let root = Root::new(&options.root);
    root.ensure_dirs()?;
    let host_key = load_or_create_host_key(&root)?;
    // Two workers are plenty (verbs run on the blocking pool) and keep 50 local VMs light.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .ctx(|| "starting the async runtime")?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).ctx(|| "SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).ctx(|| "SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).ctx(|| "SIGHUP handler")?;

        let listener = TcpListener::bind(options.listen).await.ctx(|| format!("listening on {}", options.listen))?;
        let local = listener.local_addr().ctx(|| "reading the listen address")?;
        write_atomic(&root.pid_file(), format!("{}\n", std::process::id()).as_bytes())?;
        let supervisor = Supervisor::start(root.clone(), false).await?;

        let config = russh::server::Config {
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            keys: vec![host_key],
            nodelay: true,
            // Public keys leak nothing through timing; a slow refusal only slows tests and cck.
            auth_rejection_time: Duration::from_millis(50),
            auth_rejection_time_initial: Some(Duration::ZERO),
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        let mut server = AgentServer { root: root.clone(), authorized_keys: Arc::new(options.authorized_keys.clone()) };
        let running = server.run_on_socket(Arc::new(config), &listener);
        let handle = running.handle();
        write_atomic(&root.ready_file(), format!("{local}\n").as_bytes())?;
        log(&format!("agent serving {} on {local}, pid {}", root.path().display(), std::process::id()));

        let mut running = running;
        let outcome = loop {
            tokio::select! {
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                _ = hup.recv() => continue,
                result = &mut running => break result.ctx(|| "SSH server"),
            }
        };
        log("agent stopping");
        let _ = std::fs::remove_file(root.ready_file());
        handle.shutdown("agent stopping".to_string());
        supervisor.stop_all().await;
        supervisor.close();
        let _ = std::fs::remove_file(root.pid_file());
        log("agent stopped");
        outcome
    })
}

#[derive(Clone)]
struct AgentServer {
    root: Root,
    authorized_keys: Arc<PathBuf>,
}

impl russh::server::Server for AgentServer {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection { root: self.root.clone(), authorized_keys: self.authorized_keys.clone(), peer }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        log(&format!("ssh session: {error}"));
    }
}

/// One client connection.
struct Connection {
    root: Root,
    authorized_keys: Arc<PathBuf>,
    peer: Option<SocketAddr>,
}

impl Connection {
    fn check(&self, user: &str, key: &PublicKey) -> Auth {
        if is_authorized(&self.authorized_keys, key) {
            Auth::Accept
        } else {
            let peer = self.peer.map(|p| p.to_string()).unwrap_or_default();
            log(&format!("refused key {} for user {user} from {peer}", key.fingerprint(Default::default())));
            Auth::reject()
        }
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        Ok(self.check(user, offer.public_key))
    }

    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        Ok(self.check(user, key.public_key))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(serve_channel(channel, self.root.clone()));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The command itself reaches the channel's task as ChannelMsg::Exec.
        session.channel_success(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)
    }
}

/// Whether `key` is listed in the authorized-keys file (OpenSSH format; options before the key
/// type are skipped, not honoured).
fn is_authorized(file: &Path, key: &PublicKey) -> bool {
    let Ok(text) = std::fs::read_to_string(file) else {
        log(&format!("cannot read authorized keys {}", file.display()));
        return false;
    };
    text.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).any(|line| {
        // The key may follow options (`from="…" ssh-ed25519 AAAA…`): try each word as its start.
        line.char_indices()
            .filter(|&(i, c)| !c.is_whitespace() && (i == 0 || line[..i].ends_with(char::is_whitespace)))
            .any(|(i, _)| PublicKey::from_openssh(&line[i..]).is_ok_and(|listed| listed.key_data() == key.key_data()))
    })
}

/// Runs one session channel: waits for its exec request, runs it, sends exit status, EOF, close.
async fn serve_channel(channel: Channel<Msg>, root: Root) {
    let (mut read, write) = channel.split();
    let command = loop {
        match read.wait().await {
            Some(ChannelMsg::Exec { command, .. }) => break String::from_utf8_lossy(&command).into_owned(),
            Some(ChannelMsg::Close) | None => return,
            Some(_) => {}
        }
    };
    let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(32);
    let (closed_tx, closed_rx) = watch::channel(false);
    tokio::spawn(pump_input(read, stdin_tx, closed_tx));
    let code = match command.strip_prefix(VERB_PREFIX) {
        Some(rest) => run_verb_on_channel(&root, rest, stdin_rx, &write).await,
        None => run_shell_on_channel(&root, &command, stdin_rx, closed_rx, &write).await,
    };
    let _ = write.exit_status(code).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

/// Forwards the channel's data to `stdin` until EOF (then drops it), and reports close.
async fn pump_input(mut read: ChannelReadHalf, stdin: mpsc::Sender<Vec<u8>>, closed: watch::Sender<bool>) {
    let mut stdin = Some(stdin);
    while let Some(message) = read.wait().await {
        match message {
            ChannelMsg::Data { data } => {
                if let Some(tx) = &stdin
                    && tx.send(data.to_vec()).await.is_err()
                {
                    // The command stopped reading; the rest is discarded.
                    stdin = None;
                }
            }
            ChannelMsg::Eof => stdin = None,
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let _ = closed.send(true);
}

async fn run_verb_on_channel(
    root: &Root,
    command: &str,
    stdin: mpsc::Receiver<Vec<u8>>,
    write: &ChannelWriteHalf<Msg>,
) -> u32 {
    let words = split_words(command);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(8);
    let root = root.clone();
    let verb = tokio::task::spawn_blocking(move || {
        let mut input = ChannelInput { rx: stdin, chunk: Vec::new(), at: 0 };
        let mut output = io::BufWriter::with_capacity(64 * 1024, ChannelOutput { tx: out_tx });
        let code = run_cli_verb(&root, &words, &mut input, &mut output);
        let _ = output.flush();
        code
    });
    while let Some(chunk) = out_rx.recv().await {
        if write.data_bytes(chunk).await.is_err() {
            // The client is gone: dropping the receiver makes the verb's writes fail.
            break;
        }
    }
    drop(out_rx);
    u32::from(verb.await.unwrap_or(1))
}

/// Splits a verb line into words as a shell would for the plain words and `'…'`/`"…"` quoting
/// a director may use around an argument (no expansion: the line never reaches a shell).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The channel's data as a blocking reader (for a verb on a blocking thread).
struct ChannelInput {
    rx: mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelInput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A blocking writer whose bytes go out on the channel.
struct ChannelOutput {
    tx: mpsc::Sender<Vec<u8>>,
}

impl Write for ChannelOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .blocking_send(buf.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the SSH channel closed"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

async fn run_shell_on_channel(
    root: &Root,
    command: &str,
    mut stdin: mpsc::Receiver<Vec<u8>>,
    mut closed: watch::Receiver<bool>,
    write: &ChannelWriteHalf<Msg>,
) -> u32 {
    let mut shell = tokio::process::Command::new("/bin/sh");
    shell
        .arg("-c")
        .arg(command)
        .current_dir(root.path())
        .env("ROSH_ROOT", root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // A command run over SSH dies with the VM, like its job processes (this runs on a tokio
    // worker thread, which lives as long as the agent).
    let parent = std::process::id();
    // SAFETY: die_with_parent only makes async-signal-safe calls.
    unsafe {
        shell.pre_exec(move || super::os::die_with_parent(parent));
    }
    let spawned = shell.spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let _ = write.extended_data_bytes(1, format!("rosh-agent: cannot run /bin/sh: {e}\n").into_bytes()).await;
            return 127;
        }
    };
    let pid = child.id();
    let mut child_stdin = child.stdin.take().expect("piped");
    let mut child_stdout = child.stdout.take().expect("piped");
    let mut child_stderr = child.stderr.take().expect("piped");
    let feed = tokio::spawn(async move {
        while let Some(chunk) = stdin.recv().await {
            if child_stdin.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let out = async {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = child_stdout.read(&mut buf).await {
            if n == 0 || write.data_bytes(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    };
    let err = async {
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = child_stderr.read(&mut buf).await {
            if n == 0 || write.extended_data_bytes(1, buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    };
    let run = async {
        tokio::join!(out, err);
        child.wait().await
    };
    let status = tokio::select! {
        status = run => status,
        _ = closed.wait_for(|closed| *closed) => {
            // The client went away: the command goes with it.
            if let Some(pid) = pid {
                super::os::signal_group(pid, libc::SIGKILL);
            }
            feed.abort();
            return 255;
        }
    };
    feed.abort();
    match status {
        Ok(status) => super::os::exit_code(status) as u32,
        Err(_) => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verb_lines_split_like_a_shell_would() {
        assert_eq!(split_words("put_blob abc"), ["put_blob", "abc"]);
        assert_eq!(split_words("  get_blob  'ab c' "), ["get_blob", "ab c"]);
        assert_eq!(split_words("x \"it's\" ''"), ["x", "it's", ""]);
    }

    #[test]
    fn authorized_keys_lines_may_carry_options_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let key = load_or_create_host_key(&root).unwrap();
        let public = key.public_key().to_openssh().unwrap();
        let file = dir.path().join("authorized_keys");
        std::fs::write(&file, "# comment\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbogus x\n").unwrap();
        assert!(!is_authorized(&file, key.public_key()));
        std::fs::write(&file, format!("from=\"127.0.0.1\",no-pty {public} someone@host\n")).unwrap();
        assert!(is_authorized(&file, key.public_key()));
        // The same host key is loaded again, not replaced.
        let again = load_or_create_host_key(&root).unwrap();
        assert_eq!(again.public_key().key_data(), key.public_key().key_data());
    }
}

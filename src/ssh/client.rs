//! One SSH connection to one VM: connect with a pinned host key, then run many commands on it.
//!
//! This module owns the transport: TCP (with TCP_NODELAY), the SSH handshake with the host key
//! the CPI reported (any other key is [`SshError::HostKeyMismatch`], never retried), public-key
//! login, retries with backoff while a booting VM refuses connections (bounded by
//! [`ConnectOptions::retry_until`]), and per-step timeouts. A [`Connection`] is an `Arc` inside:
//! clones share the one SSH session, and every [`Connection::exec`] is its own channel, so steps
//! can run concurrently. OpenSSH allows 10 sessions per connection by default (`MaxSessions`),
//! so execs beyond [`ConnectOptions::max_sessions`] wait for a free channel instead of failing.
//! What the commands mean is the business of [`super::agent_client`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rosh_cpi::SshEndpoint;
use russh::client::{self, AuthResult};
use russh::keys::{Algorithm, HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Preferred, cipher, kex};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::keys::{DirectorKey, KeyError, fingerprint, parse_public_key, same_key};

/// How patient to be with a VM.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// One attempt's limit: TCP connect, then the SSH handshake, then login, each.
    pub connect_timeout: Duration,
    /// Keep retrying refused or unreachable connections (a booting VM) until this long after
    /// the first attempt; zero means one attempt.
    pub retry_until: Duration,
    /// The default limit for one exec, from opening its channel to the command's exit.
    pub step_timeout: Duration,
    /// Channels open at once on the connection; more execs wait their turn.
    pub max_sessions: usize,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: Duration::from_secs(10),
            retry_until: Duration::ZERO,
            step_timeout: Duration::from_secs(600),
            max_sessions: 8,
        }
    }
}

/// Why talking to a VM failed. Callers match on the variant: unreachable (try later, or the VM
/// is gone) is not refused (wrong key or user) is not an impostor (host key).
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A single attempt failed in a way that is not plain unreachability (the peer hung up
    /// during the handshake, spoke something other than SSH).
    #[error("connecting to {addr}: {message}")]
    Connect { addr: String, message: String },
    /// Nothing accepted the TCP connection until the deadline.
    #[error("{addr} unreachable (gave up after {waited:.1?}): {last}")]
    Unreachable { addr: String, waited: Duration, last: String },
    #[error("{user}@{addr} refused the login key {key_fingerprint}")]
    AuthRefused { addr: String, user: String, key_fingerprint: String },
    /// The server presented another host key than the one pinned for it.
    #[error("host key mismatch for {host}: expected {expected_fingerprint}, the server presented {got_fingerprint}")]
    HostKeyMismatch { host: String, expected_fingerprint: String, got_fingerprint: String },
    /// The connection went away while a command ran: no exit status was received.
    #[error("{addr}: the connection closed during `{command}`")]
    ChannelClosed { addr: String, command: String },
    #[error("{addr}: {step} did not finish within {after:.1?}")]
    Timeout { addr: String, step: String, after: Duration },
    /// The server would not open a channel or run the command.
    #[error("{addr}: `{command}` refused: {message}")]
    ExecRefused { addr: String, command: String, message: String },
    /// Reading the exec's stdin or writing its stdout failed on this side.
    #[error("{addr}: `{command}`: local {what}: {source}")]
    LocalIo { addr: String, command: String, what: &'static str, source: std::io::Error },
    /// The SSH session failed after it was established.
    #[error("{addr}: {message}")]
    Session { addr: String, message: String },
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u32),
    /// Killed by a signal (`KILL`, `TERM`, …).
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(code) => Some(*code),
            ExitStatus::Signal(_) => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(code) => write!(f, "exit {code}"),
            ExitStatus::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// A finished command with its output collected.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A finished command whose stdout went to a writer.
#[derive(Debug, Clone)]
pub struct StreamedExit {
    pub status: ExitStatus,
    /// Bytes written to the writer.
    pub stdout_len: u64,
    pub stderr: Vec<u8>,
}

/// An SSH connection to one VM. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
    step_timeout: Duration,
}

struct Inner {
    handle: client::Handle<PinnedHost>,
    addr: String,
    sessions: Semaphore,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection").field("addr", &self.inner.addr).finish()
    }
}

/// The handshake's judge: the server must present exactly the pinned key.
struct PinnedHost {
    expected: PublicKey,
}

#[derive(Debug)]
enum HandshakeError {
    Ssh(russh::Error),
    Mismatch { got_fingerprint: String },
}

impl From<russh::Error> for HandshakeError {
    fn from(e: russh::Error) -> Self {
        HandshakeError::Ssh(e)
    }
}

impl client::Handler for PinnedHost {
    type Error = HandshakeError;

    async fn check_server_key(&mut self, presented: &PublicKeyOrCertificate) -> Result<bool, HandshakeError> {
        match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } if same_key(key, &self.expected) => Ok(true),
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                Err(HandshakeError::Mismatch { got_fingerprint: fingerprint(key) })
            }
            // Certificates are never advertised (Preferred::host_key_certificates is empty), so a
            // server sending one anyway is refused like any other unknown key.
            PublicKeyOrCertificate::Certificate(cert) => Err(HandshakeError::Mismatch {
                got_fingerprint: format!("certificate for {}", cert.public_key().fingerprint(HashAlg::Sha256)),
            }),
        }
    }
}

/// The client configuration for a host whose key is `expected`.
fn client_config(expected: &PublicKey) -> client::Config {
    // Only the pinned key's algorithm is offered for the host key: a server holding several
    // host keys (ed25519, ecdsa, rsa) must present the one that was recorded, as OpenSSH does
    // with known_hosts.
    let host_key_algorithms: Vec<Algorithm> = match expected.algorithm() {
        Algorithm::Rsa { .. } => vec![
            Algorithm::Rsa { hash: Some(HashAlg::Sha512) },
            Algorithm::Rsa { hash: Some(HashAlg::Sha256) },
            Algorithm::Rsa { hash: None },
        ],
        other => vec![other],
    };
    let preferred = Preferred {
        // curve25519 first: cheapest and supported by every OpenSSH since 6.5. The ext-info and
        // strict-kex markers must stay (strict kex closes the Terrapin prefix-truncation attack).
        kex: vec![
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::MLKEM768X25519_SHA256,
            kex::DH_GEX_SHA256,
            kex::DH_G14_SHA256,
            kex::EXTENSION_SUPPORT_AS_CLIENT,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
        ]
        .into(),
        key: host_key_algorithms.into(),
        // AES-GCM runs on AES-NI/ARMv8 crypto instructions; chacha20 is the fallback.
        cipher: vec![
            cipher::AES_128_GCM,
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_GCM,
            cipher::AES_128_CTR,
            cipher::AES_256_CTR,
        ]
        .into(),
        // Blobs are gzipped already: compressing them again costs CPU for nothing.
        compression: vec![russh::compression::NONE].into(),
        ..Preferred::default()
    };
    client::Config {
        preferred,
        nodelay: true,
        // Notice a VM that vanished mid-step within a minute instead of waiting on a dead socket.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        ..client::Config::default()
    }
}

/// `host:port`, with brackets around an IPv6 literal.
fn display_addr(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// How one connection attempt failed.
enum AttemptError {
    /// Nothing accepted the TCP connection (refused, unreachable, resolution, timeout).
    Tcp(String),
    /// TCP connected but the SSH handshake did not finish in time.
    HandshakeTimeout,
    /// TCP connected but the handshake failed.
    Handshake(String),
    /// Retrying cannot help.
    Fatal(SshError),
}

impl Connection {
    /// Connects to `endpoint`, verifying its host key against `endpoint.host_public_key`, and
    /// logs in as `endpoint.user` with the endpoint's own key when it names one
    /// (`private_key_path`), else with `key`.
    pub async fn connect(
        endpoint: &SshEndpoint,
        key: &DirectorKey,
        options: &ConnectOptions,
    ) -> Result<Connection, SshError> {
        let expected = parse_public_key(&endpoint.host_public_key)?;
        let login_key = match &endpoint.private_key_path {
            Some(path) => DirectorKey::load(std::path::Path::new(path))?,
            None => key.clone(),
        };
        let addr = display_addr(&endpoint.host, endpoint.port);
        let config = Arc::new(client_config(&expected));

        let started = Instant::now();
        let deadline = started + options.retry_until;
        let mut backoff = Duration::from_millis(50);
        let mut handle = loop {
            let failure = match Connection::attempt(endpoint, &addr, &config, &expected, options).await {
                Ok(handle) => break handle,
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(failure) => failure,
            };
            let now = Instant::now();
            if now + backoff > deadline {
                let waited = now - started;
                return Err(match failure {
                    AttemptError::Tcp(last) => SshError::Unreachable { addr, waited, last },
                    AttemptError::HandshakeTimeout => {
                        SshError::Timeout { addr, step: "the SSH handshake".into(), after: options.connect_timeout }
                    }
                    AttemptError::Handshake(message) => SshError::Connect { addr, message },
                    AttemptError::Fatal(e) => e,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        };

        let rsa_hash = if login_key.private_key().algorithm().is_rsa() {
            handle.best_supported_rsa_hash().await.ok().flatten().flatten()
        } else {
            None
        };
        let login = PrivateKeyWithHashAlg::new(login_key.private_key().clone(), rsa_hash);
        let auth = tokio::time::timeout(options.connect_timeout, handle.authenticate_publickey(&endpoint.user, login))
            .await
            .map_err(|_| SshError::Timeout {
                addr: addr.clone(),
                step: "login".into(),
                after: options.connect_timeout,
            })?
            .map_err(|e| SshError::Session { addr: addr.clone(), message: format!("login: {e}") })?;
        if let AuthResult::Failure { .. } = auth {
            return Err(SshError::AuthRefused {
                addr,
                user: endpoint.user.clone(),
                key_fingerprint: login_key.fingerprint(),
            });
        }
        Ok(Connection {
            inner: Arc::new(Inner { handle, addr, sessions: Semaphore::new(options.max_sessions.max(1)) }),
            step_timeout: options.step_timeout,
        })
    }

    async fn attempt(
        endpoint: &SshEndpoint,
        addr: &str,
        config: &Arc<client::Config>,
        expected: &PublicKey,
        options: &ConnectOptions,
    ) -> Result<client::Handle<PinnedHost>, AttemptError> {
        let tcp = match tokio::time::timeout(
            options.connect_timeout,
            TcpStream::connect((endpoint.host.as_str(), endpoint.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(AttemptError::Tcp(e.to_string())),
            Err(_) => return Err(AttemptError::Tcp(format!("no answer within {:.1?}", options.connect_timeout))),
        };
        // Agent verbs are small request/answer exchanges: Nagle would add a round trip to each.
        tcp.set_nodelay(true).map_err(|e| AttemptError::Tcp(e.to_string()))?;
        let judge = PinnedHost { expected: expected.clone() };
        match tokio::time::timeout(options.connect_timeout, client::connect_stream(config.clone(), tcp, judge)).await {
            Ok(Ok(handle)) => Ok(handle),
            Ok(Err(HandshakeError::Mismatch { got_fingerprint })) => {
                Err(AttemptError::Fatal(SshError::HostKeyMismatch {
                    host: addr.to_string(),
                    expected_fingerprint: fingerprint(expected),
                    got_fingerprint,
                }))
            }
            Ok(Err(HandshakeError::Ssh(e))) => Err(AttemptError::Handshake(e.to_string())),
            Err(_) => Err(AttemptError::HandshakeTimeout),
        }
    }

    /// `host:port` of the VM.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// The same connection with another limit per exec (a compile may take an hour, a
    /// `get_state` should not take a minute).
    pub fn with_step_timeout(&self, step_timeout: Duration) -> Connection {
        Connection { inner: self.inner.clone(), step_timeout }
    }

    pub fn step_timeout(&self) -> Duration {
        self.step_timeout
    }

    /// Whether the SSH session has ended (the VM went away or the server hung up).
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Runs `command` on the VM (OpenSSH hands it to the user's shell; a local VM's agent runs
    /// its own verbs directly), streaming `stdin` to it, and collects stdout and stderr. A
    /// non-zero exit is not an error here: the caller reads [`ExecOutput::status`].
    pub async fn exec(&self, command: &str, stdin: impl AsyncRead + Unpin + Send) -> Result<ExecOutput, SshError> {
        let mut stdout = Vec::new();
        let done = self.exec_streaming(command, stdin, &mut stdout).await?;
        Ok(ExecOutput { status: done.status, stdout, stderr: done.stderr })
    }

    /// Like [`Connection::exec`], with stdout written to `stdout` as it arrives (blobs).
    pub async fn exec_streaming<W>(
        &self,
        command: &str,
        mut stdin: impl AsyncRead + Unpin + Send,
        stdout: &mut W,
    ) -> Result<StreamedExit, SshError>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let addr = &self.inner.addr;
        let deadline = Instant::now() + self.step_timeout;
        let timed_out =
            || SshError::Timeout { addr: addr.clone(), step: format!("`{command}`"), after: self.step_timeout };

        let _permit =
            tokio::time::timeout_at(deadline, self.inner.sessions.acquire()).await.map_err(|_| timed_out())?;
        let channel = tokio::time::timeout_at(deadline, self.inner.handle.channel_open_session())
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| self.session_error(command, e))?;
        let (mut rx, tx) = channel.split();
        let io = async {
            tx.exec(true, command).await.map_err(|e| self.session_error(command, e))?;

            // Feeding stdin and draining the output run together: a command may answer before
            // it has read everything, or stop reading altogether (it failed). The output side
            // decides when the exec is over.
            let feed = async {
                let mut writer = tx.make_writer();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = stdin.read(&mut buf).await.map_err(|source| self.local_io(command, "stdin", source))?;
                    if n == 0 {
                        break;
                    }
                    if writer.write_all(&buf[..n]).await.is_err() {
                        // The remote side closed its stdin; its exit status will say why.
                        return Ok(());
                    }
                }
                let _ = writer.shutdown().await;
                Ok::<(), SshError>(())
            };
            let drain = async {
                let mut status = None;
                let mut stderr = Vec::new();
                let mut stdout_len = 0u64;
                while let Some(msg) = rx.wait().await {
                    match msg {
                        ChannelMsg::Data { data } => {
                            stdout.write_all(&data).await.map_err(|source| self.local_io(command, "stdout", source))?;
                            stdout_len += data.len() as u64;
                        }
                        ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                        ChannelMsg::ExitStatus { exit_status } => status = Some(ExitStatus::Code(exit_status)),
                        ChannelMsg::ExitSignal { signal_name, .. } => {
                            status = Some(ExitStatus::Signal(format!("{signal_name:?}")))
                        }
                        ChannelMsg::Failure => {
                            return Err(SshError::ExecRefused {
                                addr: addr.clone(),
                                command: command.to_string(),
                                message: "the server refused the exec request".into(),
                            });
                        }
                        ChannelMsg::Close => break,
                        _ => {}
                    }
                }
                stdout.flush().await.map_err(|source| self.local_io(command, "stdout", source))?;
                match status {
                    Some(status) => Ok(StreamedExit { status, stdout_len, stderr }),
                    None => Err(SshError::ChannelClosed { addr: addr.clone(), command: command.to_string() }),
                }
            };
            tokio::pin!(feed, drain);
            let mut fed = false;
            loop {
                tokio::select! {
                    result = &mut feed, if !fed => {
                        result?;
                        fed = true;
                    }
                    result = &mut drain => return result,
                }
            }
        };
        match tokio::time::timeout_at(deadline, io).await {
            Ok(result) => result,
            Err(_) => {
                // sshd does not stop a command when its channel closes: ask it to signal the
                // command first (OpenSSH ≥ 8.1 honours `signal` requests), then hang up.
                let _ = tx.signal(russh::Sig::TERM).await;
                let _ = tx.close().await;
                Err(timed_out())
            }
        }
    }

    /// Ends the session politely; execs still running fail with [`SshError::ChannelClosed`].
    pub async fn close(&self) {
        let _ = self.inner.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }

    fn session_error(&self, command: &str, e: russh::Error) -> SshError {
        match e {
            russh::Error::ChannelOpenFailure(reason) => SshError::ExecRefused {
                addr: self.inner.addr.clone(),
                command: command.to_string(),
                message: format!("channel open failed: {reason:?}"),
            },
            russh::Error::SendError | russh::Error::Disconnect | russh::Error::RecvError => {
                SshError::ChannelClosed { addr: self.inner.addr.clone(), command: command.to_string() }
            }
            other => SshError::Session { addr: self.inner.addr.clone(), message: format!("`{command}`: {other}") },
        }
    }

    fn local_io(&self, command: &str, what: &'static str, source: std::io::Error) -> SshError {
        SshError::LocalIo { addr: self.inner.addr.clone(), command: command.to_string(), what, source }
    }
}

/// Quotes `word` for a POSIX shell: the remote side runs exec commands through the login shell.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty() && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b));
    if plain { word.to_string() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/var/vcap/bosh/bin/rosh"), "/var/vcap/bosh/bin/rosh");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(display_addr("::1", 22), "[::1]:22");
        assert_eq!(display_addr("10.0.0.1", 2222), "10.0.0.1:2222");
    }
}

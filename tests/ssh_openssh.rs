//! The director's SSH client against a real OpenSSH sshd on loopback: commands and their
//! streams, one connection shared by many execs, and every way a VM can fail to answer — a
//! wrong host key, nothing listening, a listener that never speaks SSH, a command that hangs,
//! a connection cut mid-command — each reported as its own error within a bounded time.

#[path = "ssh_support/mod.rs"]
mod ssh_support;

use std::time::{Duration, Instant};

use rosh::ssh::{ConnectOptions, Connection, DirectorKey, ExitStatus, SshError};
use sha2::{Digest, Sha256};
use ssh_support::{Sshd, free_port, keygen};

fn quick() -> ConnectOptions {
    ConnectOptions {
        connect_timeout: Duration::from_secs(5),
        retry_until: Duration::ZERO,
        step_timeout: Duration::from_secs(30),
        max_sessions: 8,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn exec_streams_stdin_and_reports_stdout_stderr_and_exit_status() {
    let sshd = Sshd::start();
    let conn = Connection::connect(&sshd.endpoint(), &sshd.director_key(), &quick()).await.unwrap();

    let out = conn.exec("echo hello", tokio::io::empty()).await.unwrap();
    assert_eq!((out.status.clone(), out.stdout.as_slice()), (ExitStatus::Code(0), b"hello\n".as_slice()));

    let out = conn.exec("tr a-z A-Z; echo oops >&2; exit 3", b"round trip\n".as_slice()).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
    assert!(!out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "ROUND TRIP\n");
    assert_eq!(String::from_utf8(out.stderr).unwrap(), "oops\n");

    let killed = conn.exec("kill -KILL $$", tokio::io::empty()).await.unwrap();
    assert_eq!(killed.status, ExitStatus::Signal("KILL".into()));
}

#[tokio::test]
async fn twenty_megabytes_of_stdin_arrive_intact_and_stream_back() {
    let sshd = Sshd::start();
    let conn = Connection::connect(&sshd.endpoint(), &sshd.director_key(), &quick()).await.unwrap();
    // Incompressible-looking bytes: a cheap xorshift stream.
    let mut x = 0x9e3779b97f4a7c15u64;
    let data: Vec<u8> = (0..20_000_000 / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let local = hex(&Sha256::digest(&data));

    let started = Instant::now();
    let out = conn.exec("sha256sum", data.as_slice()).await.unwrap();
    let up = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let remote = String::from_utf8(out.stdout).unwrap();
    assert_eq!(remote.split_whitespace().next(), Some(local.as_str()));

    let mut echoed = Vec::new();
    let started = Instant::now();
    let done = conn.exec_streaming("cat", data.as_slice(), &mut echoed).await.unwrap();
    let round = started.elapsed();
    assert!(done.status.success());
    assert_eq!(done.stdout_len, data.len() as u64);
    assert_eq!(hex(&Sha256::digest(&echoed)), local);
    eprintln!("20 MB up in {up:.2?}, up and back in {round:.2?}");
}

#[tokio::test]
async fn many_concurrent_execs_share_one_connection() {
    let sshd = Sshd::start();
    let conn = Connection::connect(&sshd.endpoint(), &sshd.director_key(), &quick()).await.unwrap();
    let mut tasks = Vec::new();
    // More than sshd's MaxSessions (10): the connection queues them instead of failing.
    for i in 0..40 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let out = conn.exec(&format!("sleep 0.05; echo {i}"), tokio::io::empty()).await.unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().parse::<u32>().unwrap()
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap());
    }
    assert_eq!(got, (0..40).collect::<Vec<_>>());
    assert_eq!(sshd.accepted_logins(), 1, "one login for all execs:\n{}", sshd.log());
}

#[tokio::test]
async fn a_wrong_pinned_host_key_is_refused_at_once_without_retrying() {
    let sshd = Sshd::start();
    let other = DirectorKey::generate("impostor").unwrap();
    let mut endpoint = sshd.endpoint();
    endpoint.host_public_key = other.public_openssh();
    let options = ConnectOptions { retry_until: Duration::from_secs(20), ..quick() };

    let started = Instant::now();
    let err = Connection::connect(&endpoint, &sshd.director_key(), &options).await.unwrap_err();
    let elapsed = started.elapsed();
    let real = rosh::ssh::keys::fingerprint(&rosh::ssh::keys::parse_public_key(&sshd.host_public_key).unwrap());
    match &err {
        SshError::HostKeyMismatch { host, expected_fingerprint, got_fingerprint } => {
            assert_eq!(host, &format!("127.0.0.1:{}", sshd.port));
            assert_eq!(expected_fingerprint, &other.fingerprint());
            assert_eq!(got_fingerprint, &real);
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(3), "no retry on a mismatch, took {elapsed:?}");
    assert_eq!(sshd.accepted_logins(), 0, "no login was attempted");

    // The same host with its real key pinned, but a comment that differs, is accepted.
    let mut endpoint = sshd.endpoint();
    endpoint.host_public_key = format!("{} another-comment", sshd.host_public_key.rsplit_once(' ').unwrap().0);
    Connection::connect(&endpoint, &sshd.director_key(), &quick()).await.unwrap();
}

#[tokio::test]
async fn a_key_the_server_does_not_authorize_is_refused_not_unreachable() {
    let sshd = Sshd::start();
    let stranger = DirectorKey::generate("stranger").unwrap();
    let err = Connection::connect(&sshd.endpoint(), &stranger, &quick()).await.unwrap_err();
    match err {
        SshError::AuthRefused { user, key_fingerprint, .. } => {
            assert_eq!(user, sshd.user);
            assert_eq!(key_fingerprint, stranger.fingerprint());
        }
        other => panic!("expected AuthRefused, got {other:?}"),
    }

    // The endpoint's own key (a static machine's `private_key`) wins over the director's.
    let mut endpoint = sshd.endpoint();
    endpoint.private_key_path = Some(sshd.client_key.display().to_string());
    let conn = Connection::connect(&endpoint, &stranger, &quick()).await.unwrap();
    assert!(conn.exec("true", tokio::io::empty()).await.unwrap().status.success());
}

#[tokio::test]
async fn nothing_listening_is_unreachable_once_the_deadline_passes() {
    let port = free_port();
    let sshd = Sshd::prepare(port); // keys and config, but no process
    let retry_until = Duration::from_secs(1);
    let options = ConnectOptions { retry_until, connect_timeout: Duration::from_millis(500), ..quick() };
    let started = Instant::now();
    let err = Connection::connect(&sshd.endpoint(), &sshd.director_key(), &options).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        SshError::Unreachable { addr, waited, last } => {
            assert_eq!(addr, &format!("127.0.0.1:{port}"));
            assert!(*waited >= Duration::from_millis(500), "it kept retrying: {waited:?}");
            assert!(last.contains("refused"), "{last}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(elapsed < retry_until * 2, "took {elapsed:?}");
}

#[tokio::test]
async fn a_booting_vm_is_reached_once_its_sshd_starts() {
    let port = free_port();
    let sshd = Sshd::prepare(port);
    let (endpoint, key) = (sshd.endpoint(), sshd.director_key());
    let boot = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(800));
        sshd.launch()
    });
    let options = ConnectOptions { retry_until: Duration::from_secs(15), ..quick() };
    let started = Instant::now();
    let conn = Connection::connect(&endpoint, &key, &options).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(700));
    assert_eq!(conn.exec("echo up", tokio::io::empty()).await.unwrap().stdout, b"up\n");
    drop(boot.await.unwrap());
}

#[tokio::test]
async fn a_listener_that_never_speaks_ssh_times_out_instead_of_hanging() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts every connection and holds it open, silent.
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let host_key = keygen(&dir.path().join("host"), "silent");
    let endpoint = rosh_cpi::SshEndpoint {
        host: "127.0.0.1".into(),
        port,
        user: "root".into(),
        host_public_key: host_key,
        private_key_path: None,
        agent_command: "false".into(),
        root: "/".into(),
        install_agent: false,
    };
    let options =
        ConnectOptions { retry_until: Duration::from_secs(1), connect_timeout: Duration::from_millis(300), ..quick() };
    let started = Instant::now();
    let err = Connection::connect(&endpoint, &DirectorKey::generate("d").unwrap(), &options).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        SshError::Timeout { step, .. } => assert!(step.contains("handshake"), "{step}"),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(elapsed < (options.retry_until + options.connect_timeout) * 2, "took {elapsed:?}");
    silent.abort();
}

#[tokio::test]
async fn a_step_that_overruns_its_timeout_fails_and_the_connection_stays_usable() {
    let sshd = Sshd::start();
    let conn = Connection::connect(&sshd.endpoint(), &sshd.director_key(), &quick()).await.unwrap();
    let short = conn.with_step_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = short.exec("sleep 3", tokio::io::empty()).await.unwrap_err();
    assert!(matches!(&err, SshError::Timeout { step, .. } if step.contains("sleep 3")), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(conn.exec("echo still here", tokio::io::empty()).await.unwrap().stdout, b"still here\n");

    // A command still talking when its step times out is stopped on the VM, not left running:
    // its channel is closed, so its next write fails. (A silent one is only stopped where sshd
    // honours `signal` requests: OpenSSH refuses them for root sessions.)
    let marker = format!("rosh-timeout-{}", std::process::id());
    let talker = format!("while echo tick; do sleep 0.1; done # {marker}");
    assert!(matches!(short.exec(&talker, tokio::io::empty()).await, Err(SshError::Timeout { .. })));
    // Read /proc (procps may be missing); `[r]` keeps the pattern from matching the looker.
    let look = format!("grep -ls 'done # [r]{}' /proc/[0-9]*/cmdline || true", &marker[1..]);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = conn.exec(&look, tokio::io::empty()).await.unwrap();
        if left.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out command still runs: {}",
            String::from_utf8_lossy(&left.stdout)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_connection_cut_mid_command_is_channel_closed_not_an_exit_status() {
    let sshd = Sshd::start();
    let conn = Connection::connect(&sshd.endpoint(), &sshd.director_key(), &quick()).await.unwrap();
    // The command's parent is the sshd process serving this connection: killing it cuts the
    // connection the way a VM crash would.
    let err = conn.exec("kill -KILL $PPID; sleep 5", tokio::io::empty()).await.unwrap_err();
    assert!(matches!(&err, SshError::ChannelClosed { command, .. } if command.starts_with("kill")), "{err:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(conn.is_closed());
    let again = conn.exec("true", tokio::io::empty()).await.unwrap_err();
    assert!(matches!(again, SshError::ChannelClosed { .. } | SshError::Session { .. }), "{again:?}");
}

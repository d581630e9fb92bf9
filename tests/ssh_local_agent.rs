//! The director's SSH client against the local CPI's VMs, whose SSH server is the agent itself
//! (`rosh agent serve`, russh): verbs and blobs over one pinned connection, and a VM whose agent
//! is killed reported as gone — the running exec as a closed channel, a new connection as
//! unreachable — within the deadline instead of hanging.

#[path = "ssh_support/mod.rs"]
mod ssh_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rosh::agent::protocol::AGENT_VERSION;
use rosh::ssh::{AgentClient, ConnectOptions, Connection, DirectorKey, SshError, ensure_agent};
use rosh_cpi::{Cpi, CreateStemcell, CreateVm, NetworkSettings};
use rosh_cpi_local::{LocalConfig, LocalCpi};
use serde_json::json;
use sha2::{Digest, Sha256};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A local CPI in a temp dir whose VMs listen on a port of their own (tests run in parallel).
async fn local_vm(dir: &std::path::Path, key: &DirectorKey, ip: &str) -> (LocalCpi, rosh_cpi::CreatedVm) {
    let mut config = LocalConfig::new(dir.join("cpi"), env!("CARGO_BIN_EXE_rosh"));
    config.ssh_port = ssh_support::free_port();
    let cpi = LocalCpi::new(config).unwrap();
    let image = dir.join("image");
    std::fs::write(&image, "local stemcell").unwrap();
    let stemcell = cpi
        .create_stemcell(CreateStemcell { image_path: image.display().to_string(), cloud_properties: json!({}) })
        .await
        .unwrap();
    let network = NetworkSettings { kind: "manual".into(), ip: Some(ip.into()), ..Default::default() };
    let created = cpi
        .create_vm(CreateVm {
            agent_id: "agent-1".into(),
            stemcell_cid: stemcell,
            cloud_properties: json!({}),
            networks: BTreeMap::from([("default".to_string(), network)]),
            disk_cids: vec![],
            env: json!({"bosh": {"authorized_keys": [key.public_openssh()]}}),
        })
        .await
        .unwrap();
    (cpi, created)
}

#[tokio::test]
async fn verbs_and_blobs_reach_a_local_vm_and_a_killed_agent_is_reported_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let key = DirectorKey::generate("director").unwrap();
    let (cpi, created) = local_vm(dir.path(), &key, "127.77.200.2").await;
    let endpoint = created.ssh.clone().unwrap();
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        retry_until: Duration::from_secs(1),
        step_timeout: Duration::from_secs(30),
        max_sessions: 8,
    };

    let conn = Connection::connect(&endpoint, &key, &options).await.unwrap();
    // The local VM's server is the agent: nothing to install.
    let ensured = ensure_agent(&conn, &endpoint).await.unwrap();
    assert!(!ensured.installed);
    let agent: AgentClient = ensured.client;
    assert_eq!(agent.version().await.unwrap().version, AGENT_VERSION);

    let data = vec![7u8; 3_000_000];
    let sha = hex(&Sha256::digest(&data));
    let path = dir.path().join("blob");
    std::fs::write(&path, &data).unwrap();
    let blobs = [(sha.clone(), path)];
    assert_eq!(agent.upload_blobs(&blobs).await.unwrap().uploaded, 1);
    assert_eq!(agent.upload_blobs(&blobs).await.unwrap().skipped, 1);
    let mut back = Vec::new();
    agent.get_blob(&sha, &mut back).await.unwrap();
    assert_eq!(back, data);
    let state = agent.get_state().await.unwrap();
    assert_eq!(state.root, endpoint.root);

    // Concurrent verbs on the one connection.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let agent = agent.clone();
        tasks.push(tokio::spawn(async move { agent.get_state().await.map(|s| s.agent_version) }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), AGENT_VERSION);
    }

    // A wrong pinned key is refused by this server too.
    let mut impostor = endpoint.clone();
    impostor.host_public_key = DirectorKey::generate("other").unwrap().public_openssh();
    let refused = Connection::connect(&impostor, &key, &options).await.unwrap_err();
    assert!(matches!(refused, SshError::HostKeyMismatch { .. }), "{refused:?}");

    // The VM crashes in the middle of a step.
    let pid = cpi.agent_pid(&created.vm_cid).unwrap().expect("the VM's agent runs");
    // A step that keeps talking, so it also ends on its own once its output has nowhere to go.
    let long = agent.connection().exec("while echo tick; do sleep 0.1; done", tokio::io::empty());
    let crash = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        // SAFETY: a plain kill(2) of the agent process this test's CPI started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    };
    let started = Instant::now();
    let (cut, ()) = tokio::join!(long, crash);
    assert!(matches!(cut, Err(SshError::ChannelClosed { .. })), "{cut:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());

    let started = Instant::now();
    let gone = Connection::connect(&endpoint, &key, &options).await.unwrap_err();
    assert!(matches!(gone, SshError::Unreachable { .. }), "{gone:?}");
    assert!(started.elapsed() < options.retry_until * 2 + options.connect_timeout, "took {:?}", started.elapsed());
    assert!(!cpi.has_vm(created.vm_cid.clone()).await.unwrap());
    cpi.delete_vm(created.vm_cid).await.unwrap();
}

/// A job tarball holding only `bin/drain` with `script`.
fn drain_job(script: &str) -> Vec<u8> {
    use flate2::{Compression, write::GzEncoder};
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let mut header = tar::Header::new_gnu();
    header.set_size(script.len() as u64);
    header.set_mode(0o755);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "bin/drain", script.as_bytes()).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// BOSH's dynamic drain: a drain script printing a negative number is asked again with
/// `job_check_status` after that many seconds until it prints a static wait, which is then
/// waited; one that never finishes fails the drain after the limit.
#[tokio::test]
async fn a_dynamic_drain_is_polled_until_it_answers_a_static_wait() {
    use rosh::agent::protocol::{ApplyJob, ApplySpec};
    let dir = tempfile::tempdir().unwrap();
    let key = DirectorKey::generate("director").unwrap();
    let (cpi, created) = local_vm(dir.path(), &key, "127.77.200.3").await;
    let endpoint = created.ssh.clone().unwrap();
    let options = ConnectOptions {
        connect_timeout: Duration::from_secs(2),
        retry_until: Duration::from_secs(5),
        step_timeout: Duration::from_secs(30),
        max_sessions: 4,
    };
    let conn = Connection::connect(&endpoint, &key, &options).await.unwrap();
    let agent = ensure_agent(&conn, &endpoint).await.unwrap().client;

    // Every call appends its arguments; the second status check says "wait 1 s more".
    let script = "#!/bin/sh\nlog=\"$ROSH_ROOT/data/drain-calls\"\necho \"$1\" >> \"$log\"\n\
                  if [ \"$1\" = job_check_status ] && [ \"$(grep -c job_check_status \"$log\")\" -ge 2 ]; then echo 1; else echo -1; fi\n";
    let apply = |tarball: Vec<u8>, name: &'static str| {
        let agent = agent.clone();
        let dir = dir.path().to_path_buf();
        async move {
            let sha = hex(&Sha256::digest(&tarball));
            let path = dir.join(format!("{name}.tgz"));
            std::fs::write(&path, &tarball).unwrap();
            agent.upload_blobs(&[(sha.clone(), path)]).await.unwrap();
            agent
                .apply(&ApplySpec {
                    deployment: "d".into(),
                    instance: "g/1".into(),
                    packages: vec![],
                    jobs: vec![ApplyJob { name: name.into(), sha256: sha }],
                    then_start: None,
                })
                .await
                .unwrap();
        }
    };
    apply(drain_job(script), "slow").await;
    let waited = agent.drain_fully("update", Duration::from_secs(5), Duration::from_secs(60)).await.unwrap();
    let calls = std::fs::read_to_string(std::path::Path::new(&endpoint.root).join("data/drain-calls")).unwrap();
    assert_eq!(calls, "job_changed\njob_check_status\njob_check_status\n");
    // 1 s before each status check, then the final 1 s.
    assert!(waited >= Duration::from_secs(3), "waited {waited:?}");

    // A drain that never settles fails after the limit.
    apply(drain_job("#!/bin/sh\necho -1\n"), "stuck").await;
    let started = Instant::now();
    let err = agent.drain_fully("shutdown", Duration::from_secs(5), Duration::from_secs(2)).await.unwrap_err();
    assert!(err.to_string().contains("stuck still not finished after 2 s"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(10));
    cpi.delete_vm(created.vm_cid).await.unwrap();
}

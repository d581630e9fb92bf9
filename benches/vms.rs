//! Benchmark of the VM layer (issue 4): create N local VMs (default 50, `ROSH_BENCH_VMS` to
//! change) through the local CPI and reach every agent over SSH (`get_state`), then `get_state`
//! on all of them again over fresh connections. Prints wall time, the director's CPU time, the
//! whole machine's CPU time (agents included, from /proc/stat) and the director's peak RSS.
//!
//! `cargo bench --bench vms`

use std::sync::Arc;
use std::time::{Duration, Instant};

use rosh::ssh::agent_client::AgentClient;
use rosh::ssh::client::{ConnectOptions, Connection};
use rosh::ssh::keys::DirectorKey;
use rosh_cpi::{Cid, Cpi, CreateStemcell, CreateVm, NetworkSettings, SshEndpoint};
use rosh_cpi_local::{LocalConfig, LocalCpi};

/// This process's user+system CPU time.
fn own_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn peak_rss_mib() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// CPU time of every process on the machine (user + nice + system), from /proc/stat.
fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> =
        stat.lines().next().unwrap().split_whitespace().skip(1).take(3).map(|f| f.parse().unwrap()).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(fields.iter().sum::<u64>() * 1000 / hz)
}

struct Span {
    wall: Instant,
    own: Duration,
    machine: Duration,
}

impl Span {
    fn start() -> Span {
        Span { wall: Instant::now(), own: own_cpu(), machine: machine_cpu() }
    }

    fn report(&self, what: &str, n: usize) {
        let wall = self.wall.elapsed();
        let own = own_cpu() - self.own;
        let machine = machine_cpu() - self.machine;
        println!(
            "{what:<46} wall {:>7.2} s   director CPU {:>6.2} s ({:>5.1} ms/VM)   all CPU {:>6.2} s",
            wall.as_secs_f64(),
            own.as_secs_f64(),
            own.as_secs_f64() * 1e3 / n as f64,
            machine.as_secs_f64()
        );
    }
}

async fn reach(endpoint: &SshEndpoint, key: &DirectorKey) -> Connection {
    let options = ConnectOptions { retry_until: Duration::from_secs(10), ..ConnectOptions::default() };
    let conn = Connection::connect(endpoint, key, &options).await.expect("connect");
    let state = AgentClient::for_endpoint(conn.clone(), endpoint).get_state().await.expect("get_state");
    assert_eq!(state.root, endpoint.root);
    conn
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("ROSH_BENCH_VMS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let tmp = tempfile::tempdir().unwrap();
    let cpi = Arc::new(LocalCpi::new(LocalConfig::new(tmp.path().join("cpi"), env!("CARGO_BIN_EXE_rosh"))).unwrap());
    let key = Arc::new(DirectorKey::generate("bench").unwrap());
    let image = tmp.path().join("image");
    std::fs::write(&image, "bench").unwrap();
    let stemcell = cpi
        .create_stemcell(CreateStemcell {
            image_path: image.display().to_string(),
            cloud_properties: serde_json::json!({}),
        })
        .await
        .unwrap();

    println!("{n} local VMs on loopback, {} cores", std::thread::available_parallelism().map_or(1, |p| p.get()));
    let span = Span::start();
    let mut tasks = Vec::new();
    for i in 0..n {
        let (cpi, key, stemcell) = (cpi.clone(), key.clone(), stemcell.clone());
        tasks.push(tokio::spawn(async move {
            let ip = format!("127.79.{}.{}", i / 250, i % 250 + 2);
            let req = CreateVm {
                agent_id: format!("bench-{i}"),
                stemcell_cid: stemcell,
                cloud_properties: serde_json::json!({}),
                networks: [("default".to_string(), NetworkSettings { ip: Some(ip), ..Default::default() })].into(),
                disk_cids: vec![],
                env: serde_json::json!({"bosh": {"authorized_keys": [key.public_openssh()]}}),
            };
            let vm = cpi.create_vm(req).await.expect("create_vm");
            let endpoint = vm.ssh.expect("the local CPI returns an endpoint");
            reach(&endpoint, &key).await.close().await;
            (vm.vm_cid, endpoint)
        }));
    }
    let mut vms: Vec<(Cid, SshEndpoint)> = Vec::new();
    for t in tasks {
        vms.push(t.await.unwrap());
    }
    span.report("create VMs and reach every agent (get_state)", n);

    let span = Span::start();
    let mut tasks = Vec::new();
    for (_, endpoint) in &vms {
        let (endpoint, key) = (endpoint.clone(), key.clone());
        tasks.push(tokio::spawn(async move { reach(&endpoint, &key).await.close().await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    span.report("get_state over fresh connections (target < 1 s)", n);

    let span = Span::start();
    let mut tasks = Vec::new();
    for (cid, _) in vms {
        let cpi = cpi.clone();
        tasks.push(tokio::spawn(async move { cpi.delete_vm(cid).await.expect("delete_vm") }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    span.report("delete VMs", n);
    println!("director peak RSS {:.1} MiB", peak_rss_mib());
}

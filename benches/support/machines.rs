//! N machines reached through OpenSSH, for the deploy benchmark's static-CPI run: one real sshd
//! per machine on its own loopback address (127.90.0.1, 127.90.0.2, …), each with its own host
//! key and root directory, all accepting one login key for one login user. Nothing of the system
//! is touched but `/run/sshd` (which sshd insists on) and, when run as root, a login user made
//! once (see [`login_user`]).
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// The account the machines are logged into. A stemcell's login user has a plain shell; this
/// machine's root has a `.bashrc` that runs `pyenv init` for every SSH command, which would be
/// measured as rosh's time. So: `$ROSH_BENCH_SSH_USER` when set; as root, a system user
/// `rosh-bench` with `/bin/sh` (made with useradd if missing); otherwise the current user.
pub fn login_user() -> String {
    if let Ok(user) = std::env::var("ROSH_BENCH_SSH_USER") {
        return user;
    }
    if output("id", &["-u"]) != "0" {
        return output("id", &["-un"]);
    }
    let user = "rosh-bench";
    let exists = Command::new("id").arg(user).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !exists.is_ok_and(|s| s.success()) {
        // `-p '*'`: no password, but not locked (sshd refuses locked accounts without PAM).
        let made = Command::new("useradd")
            .args(["--system", "--home-dir", "/", "--no-create-home", "--shell", "/bin/sh", "-p", "*", user])
            .status()
            .expect("useradd");
        assert!(made.success(), "useradd {user} failed");
        println!("(made the login user `{user}`, shell /bin/sh, for the OpenSSH machines)");
    }
    user.to_string()
}

fn output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `ssh-keygen -t ed25519` into `path`; the public line.
fn keygen(path: &Path, comment: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

pub struct Machine {
    pub name: String,
    pub address: String,
    /// The host key's public line.
    pub host_key: String,
    /// Where rosh (or the plain-SSH run) keeps its files on this machine.
    pub root: PathBuf,
}

pub struct Machines {
    pub dir: tempfile::TempDir,
    pub user: String,
    pub port: u16,
    /// The login key, readable by the director only.
    pub client_key: PathBuf,
    pub list: Vec<Machine>,
    sshds: Vec<Child>,
}

impl Machines {
    /// Starts `n` sshd listening on 127.90.0.1..=n, port `port`.
    pub fn start(n: usize, user: &str, port: u16) -> Machines {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: install Debian's openssh-server");
        assert!(n <= 250, "at most 250 machines");
        let _ = fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().unwrap();
        // The login user reads authorized_keys and works in its root under this directory.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let client_key = dir.path().join("director_ed25519");
        keygen(&client_key, "bench-director");
        let authorized = client_key.with_extension("pub");
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).unwrap();
        let (uid, gid) = (output("id", &["-u", user]), output("id", &["-g", user]));
        let mut machines =
            Machines { dir, user: user.to_string(), port, client_key, list: Vec::new(), sshds: Vec::new() };
        for i in 1..=n {
            let name = format!("m{i}");
            let address = format!("127.90.0.{i}");
            let home = machines.dir.path().join(&name);
            fs::create_dir_all(&home).unwrap();
            let host_key = keygen(&home.join("host_ed25519"), &name);
            let root = home.join("root");
            fs::create_dir_all(&root).unwrap();
            let chowned = Command::new("chown").arg(format!("{uid}:{gid}")).arg(&root).status().unwrap();
            assert!(chowned.success(), "chown {}", root.display());
            let h = home.display();
            fs::write(
                home.join("sshd_config"),
                format!(
                    "Port {port}\nListenAddress {address}\nHostKey {h}/host_ed25519\nPidFile {h}/sshd.pid\n\
                     AuthorizedKeysFile {}\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\nStrictModes no\nPermitRootLogin prohibit-password\nUsePAM no\n\
                     MaxStartups 200\nMaxSessions 64\nLogLevel ERROR\n",
                    authorized.display()
                ),
            )
            .unwrap();
            let log = fs::File::create(home.join("sshd.log")).unwrap();
            let child = Command::new(SSHD)
                .args(["-D", "-e", "-f"])
                .arg(home.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("sshd starts");
            machines.sshds.push(child);
            machines.list.push(Machine { name, address, host_key, root });
        }
        for m in &machines.list {
            wait_for_banner(&m.address, port);
        }
        machines
    }

    /// The first `n` machines as a static CPI's `properties.machines` (YAML flow lines).
    pub fn static_cpi_machines(&self, n: usize) -> String {
        self.list[..n]
            .iter()
            .map(|m| {
                format!(
                    "    - {{name: {}, address: {}, port: {}, user: {}, private_key: {}, host_key: '{}', root: {}}}\n",
                    m.name,
                    m.address,
                    self.port,
                    self.user,
                    self.client_key.display(),
                    m.host_key,
                    m.root.display()
                )
            })
            .collect()
    }

    /// Ends every process started under the machines' roots (agents, supervisors, jobs) and
    /// empties the roots: the machines are as fresh as when they were started.
    pub fn wipe(&self) {
        let listeners: Vec<u32> = self.sshds.iter().map(Child::id).collect();
        kill_under(self.dir.path(), &listeners);
        for m in &self.list {
            for entry in fs::read_dir(&m.root).unwrap().flatten() {
                let path = entry.path();
                let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            }
        }
    }

    /// The OpenSSH client options of the plain-SSH reference: the director's key, each host's
    /// key pinned, curve25519 and aes128-gcm as in the reference figures.
    pub fn ssh_command(&self, m: &Machine) -> Command {
        let known = self.dir.path().join(&m.name).join("known_hosts");
        if !known.exists() {
            fs::write(&known, format!("[{}]:{} {}\n", m.address, self.port, m.host_key)).unwrap();
        }
        let mut cmd = Command::new("ssh");
        cmd.arg("-i")
            .arg(&self.client_key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
            .args(["-o", "KexAlgorithms=curve25519-sha256", "-c", "aes128-gcm@openssh.com"])
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@{}", self.user, m.address));
        cmd
    }
}

impl Drop for Machines {
    fn drop(&mut self) {
        for child in &mut self.sshds {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_under(self.dir.path(), &[]);
    }
}

/// SIGKILLs every process whose command line mentions `dir` (agents, supervisors) but those in
/// `spare`, and every process of their sessions: job processes run in their supervisor's session
/// and, once exec'd, no longer name the directory. Our own session is never touched.
pub fn kill_under(dir: &Path, spare: &[u32]) {
    let needle = dir.to_string_lossy().into_owned();
    let session_of = |pid: i32| -> Option<i32> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the parenthesised command: state ppid pgrp session …
        stat.rsplit_once(')')?.1.split_whitespace().nth(3)?.parse().ok()
    };
    let own_session = session_of(std::process::id() as i32);
    let pids: Vec<i32> = fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| !spare.contains(&(*pid as u32)) && *pid != std::process::id() as i32)
        .collect();
    let named: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect();
    let sessions: Vec<i32> =
        named.iter().filter_map(|pid| session_of(*pid)).filter(|s| Some(*s) != own_session).collect();
    for pid in pids {
        if named.contains(&pid) || session_of(pid).is_some_and(|s| sessions.contains(&s)) {
            // SAFETY: signalling a process of this benchmark's own machines.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn wait_for_banner(address: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut tcp) = TcpStream::connect((address, port)) {
            tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut banner = [0u8; 4];
            if tcp.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                return;
            }
        }
        assert!(Instant::now() < deadline, "sshd on {address}:{port} did not answer within 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

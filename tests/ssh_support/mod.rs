//! A real OpenSSH sshd for tests: started on 127.0.0.1 and a free port with its own config, host
//! key and authorized_keys in a temporary directory (no system service, no /etc), killed on drop.
//! Included by `tests/ssh_openssh.rs` and `tests/static_cpi.rs` with `#[path]`.

#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rosh::ssh::DirectorKey;
use rosh_cpi::SshEndpoint;

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    child: Option<Child>,
    /// The loopback address it listens on (127.0.0.1 unless [`Sshd::start_at`]).
    pub address: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// `ssh-ed25519 AAAA…` of the server's host key.
    pub host_public_key: String,
    /// A login key made by ssh-keygen and authorized for `user`.
    pub client_key: PathBuf,
    pub user: String,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `ssh-keygen -t ed25519` into `path`; the public line.
pub fn keygen(path: &Path, comment: &str) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) is installed");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    fs::read_to_string(path.with_extension("pub")).unwrap().trim().to_string()
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

impl Sshd {
    /// An sshd accepting the key at [`Sshd::client_key`].
    pub fn start() -> Sshd {
        Sshd::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Sshd {
        let sshd = Sshd::prepare(port);
        sshd.launch()
    }

    /// An sshd on another loopback address (`127.x.y.z`), on a port free there: machines with
    /// addresses of their own.
    pub fn start_at(address: &str) -> Sshd {
        let port = TcpListener::bind((address, 0)).unwrap().local_addr().unwrap().port();
        Sshd::prepare_at(address, port).launch()
    }

    /// Everything but the process: for tests that start it late (a booting VM).
    pub fn prepare(port: u16) -> Sshd {
        Sshd::prepare_at("127.0.0.1", port)
    }

    fn prepare_at(address: &str, port: u16) -> Sshd {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: install Debian's openssh-server (.ci/run does)");
        // The privilege-separation directory sshd insists on; the package's service makes it.
        let _ = fs::create_dir_all("/run/sshd");
        let dir = tempfile::tempdir().unwrap();
        let host_public_key = keygen(&dir.path().join("host_ed25519"), "test-host");
        let client_key = dir.path().join("client_ed25519");
        let client_public = keygen(&client_key, "test-director");
        fs::write(dir.path().join("authorized_keys"), format!("{client_public}\n")).unwrap();
        let d = dir.path().display();
        fs::write(
            dir.path().join("sshd_config"),
            format!(
                "Port {port}\n\
                 ListenAddress {address}\n\
                 HostKey {d}/host_ed25519\n\
                 PidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\n\
                 PubkeyAuthentication yes\n\
                 PasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n\
                 StrictModes no\n\
                 PermitRootLogin prohibit-password\n\
                 UsePAM no\n\
                 MaxStartups 100\n\
                 LogLevel INFO\n"
            ),
        )
        .unwrap();
        Sshd { child: None, address: address.to_string(), port, dir, host_public_key, client_key, user: current_user() }
    }

    /// Starts the prepared sshd and waits until it answers with its banner.
    pub fn launch(mut self) -> Sshd {
        let log = fs::File::create(self.log_path()).unwrap();
        let child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("sshd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut tcp) = TcpStream::connect((self.address.as_str(), self.port)) {
                tcp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut banner = [0u8; 4];
                if tcp.read_exact(&mut banner).is_ok() && &banner == b"SSH-" {
                    return self;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sshd exited ({status}) before listening:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "sshd did not listen on {} within 10s:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// What sshd wrote on stderr (`-e`): connections, logins, refusals.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many logins sshd accepted so far.
    pub fn accepted_logins(&self) -> usize {
        self.log().matches("Accepted publickey").count()
    }

    /// The login key, as the director loads it.
    pub fn director_key(&self) -> DirectorKey {
        DirectorKey::load(&self.client_key).unwrap()
    }

    /// The endpoint of this sshd, with no agent behind it.
    pub fn endpoint(&self) -> SshEndpoint {
        SshEndpoint {
            host: self.address.clone(),
            port: self.port,
            user: self.user.clone(),
            host_public_key: self.host_public_key.clone(),
            private_key_path: None,
            agent_command: "false".into(),
            root: self.dir.path().join("root").display().to_string(),
            install_agent: false,
        }
    }

    /// Stops the listening sshd (sessions already open live on in their own processes).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

//! SSH keys on the director's side: its own login key pair, keys loaded from a path, and host
//! public keys as the director pins them.
//!
//! The director logs in to every VM with one ed25519 key kept at
//! `<state_dir>/director/ssh/id_ed25519` (OpenSSH format, file 0600, directory 0700), created on
//! first use; its public half goes into `env.bosh.authorized_keys` of every `create_vm`. A static
//! machine may name a key of its own (`private_key_path`), loaded with [`DirectorKey::load`].
//! Host keys are compared by key data only: the comment of a `known_hosts` or `host_key` line
//! never matters. Nothing here touches the network.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding};
use russh::keys::{PrivateKey, PublicKey};

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not an OpenSSH private key: {message}")]
    BadPrivateKey { path: PathBuf, message: String },
    #[error("not an OpenSSH public key (`type base64 [comment]`): {message}: `{line}`")]
    BadPublicKey { line: String, message: String },
    #[error("generating an ed25519 key: {0}")]
    Generate(String),
}

/// A private key the director logs in with: its own, or a static machine's.
#[derive(Clone)]
pub struct DirectorKey {
    key: Arc<PrivateKey>,
    /// Where it was loaded from or saved to; `None` for a key that lives only in memory.
    path: Option<PathBuf>,
}

impl std::fmt::Debug for DirectorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret: the fingerprint says which key it is.
        f.debug_struct("DirectorKey").field("path", &self.path).field("fingerprint", &self.fingerprint()).finish()
    }
}

impl DirectorKey {
    /// Where the director's own key lives under a state directory.
    pub fn default_path(state_dir: &Path) -> PathBuf {
        state_dir.join("director").join("ssh").join("id_ed25519")
    }

    /// The director's own key: loaded from `<state_dir>/director/ssh/id_ed25519`, or created
    /// there (with its `.pub` beside it) when missing.
    pub fn load_or_create(state_dir: &Path) -> Result<DirectorKey, KeyError> {
        let path = DirectorKey::default_path(state_dir);
        if path.exists() {
            return DirectorKey::load(&path);
        }
        let dir = path.parent().expect("the key path has a parent");
        let io = |source| KeyError::Io { path: dir.to_path_buf(), source };
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
        // `recursive` leaves an existing directory's mode alone; the key's directory must not be
        // readable by others whoever made it.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        let key = DirectorKey::generate("rosh-director")?;
        if !key.save_new(&path)? {
            // Another rosh process made it first: everyone uses that one.
            return DirectorKey::load(&path);
        }
        Ok(DirectorKey { path: Some(path), ..key })
    }

    /// A fresh ed25519 key held in memory only.
    pub fn generate(comment: &str) -> Result<DirectorKey, KeyError> {
        let mut seed = [0u8; 32];
        aws_lc_rs::rand::fill(&mut seed).map_err(|e| KeyError::Generate(e.to_string()))?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(comment);
        Ok(DirectorKey { key: Arc::new(key), path: None })
    }

    /// A private key file in OpenSSH (or PEM/PKCS#8) format, unencrypted.
    pub fn load(path: &Path) -> Result<DirectorKey, KeyError> {
        let text = fs::read_to_string(path).map_err(|source| KeyError::Io { path: path.to_path_buf(), source })?;
        let key = russh::keys::decode_secret_key(&text, None)
            .map_err(|e| KeyError::BadPrivateKey { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(DirectorKey { key: Arc::new(key), path: Some(path.to_path_buf()) })
    }

    /// Writes the key (0600) at `path` unless a key is already there, and its `.pub` beside it;
    /// false when one was. The file appears whole: written aside, then hard-linked into place,
    /// which fails instead of replacing a key another process just made.
    fn save_new(&self, path: &Path) -> Result<bool, KeyError> {
        let io = |source| KeyError::Io { path: path.to_path_buf(), source };
        let pem = self.key.to_openssh(LineEnding::LF).map_err(|e| KeyError::Generate(e.to_string()))?;
        // Unique per process and per call: racers must not share a temp file.
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let n = SAVES.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io)?;
        file.write_all(pem.as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io(e)),
        }
        let public = path.with_extension("pub");
        fs::write(&public, format!("{}\n", self.public_openssh()))
            .map_err(|source| KeyError::Io { path: public.clone(), source })?;
        Ok(true)
    }

    /// The file the key came from or was saved to.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The key itself, for authentication.
    pub fn private_key(&self) -> &Arc<PrivateKey> {
        &self.key
    }

    pub fn public_key(&self) -> &PublicKey {
        self.key.public_key()
    }

    /// The public half as an `authorized_keys` line (`ssh-ed25519 AAAA… rosh-director`).
    pub fn public_openssh(&self) -> String {
        self.key.public_key().to_openssh().expect("an in-memory public key encodes")
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.key.public_key())
    }
}

/// Parses an OpenSSH public key line (`type base64 [comment]`), as `host_key`, a `known_hosts`
/// entry without its host field, or an `authorized_keys` line without options.
pub fn parse_public_key(line: &str) -> Result<PublicKey, KeyError> {
    let line = line.trim();
    PublicKey::from_openssh(line).map_err(|e| KeyError::BadPublicKey { line: line.to_string(), message: e.to_string() })
}

/// `SHA256:…` of a public key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Whether two public keys are the same key (comments aside).
pub fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_director_key_is_created_once_with_private_modes_and_then_reloaded() {
        let state = tempfile::tempdir().unwrap();
        let first = DirectorKey::load_or_create(state.path()).unwrap();
        let path = DirectorKey::default_path(state.path());
        assert_eq!(first.path(), Some(path.as_path()));
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(fs::read_to_string(&path).unwrap().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert_eq!(fs::read_to_string(path.with_extension("pub")).unwrap().trim(), first.public_openssh());

        let again = DirectorKey::load_or_create(state.path()).unwrap();
        assert_eq!(again.public_openssh(), first.public_openssh());
        assert!(first.public_openssh().starts_with("ssh-ed25519 AAAA"));
        assert!(first.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn directors_racing_to_create_the_key_all_end_up_with_the_one_on_disk() {
        let state = tempfile::tempdir().unwrap();
        let keys: Vec<String> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|_| s.spawn(|| DirectorKey::load_or_create(state.path()).unwrap().public_openssh()))
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let on_disk = DirectorKey::load(&DirectorKey::default_path(state.path())).unwrap().public_openssh();
        assert!(keys.iter().all(|k| *k == on_disk), "{keys:?} vs {on_disk}");
        let leftovers: Vec<_> =
            fs::read_dir(state.path().join("director/ssh")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "only the key and its .pub: {leftovers:?}");
    }

    #[test]
    fn host_keys_compare_by_key_data_not_comment() {
        let a = DirectorKey::generate("a").unwrap();
        let b = DirectorKey::generate("b").unwrap();
        let line = a.public_openssh();
        let data = line.rsplit_once(' ').unwrap().0;
        let renamed = parse_public_key(&format!("{data} root@elsewhere")).unwrap();
        assert!(same_key(&renamed, a.public_key()));
        assert!(!same_key(&renamed, b.public_key()));
        assert!(matches!(parse_public_key("ssh-ed25519 not-base64"), Err(KeyError::BadPublicKey { .. })));
    }

    #[test]
    fn a_missing_or_garbled_key_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = DirectorKey::load(&missing).unwrap_err();
        assert!(matches!(&err, KeyError::Io { path, .. } if *path == missing), "{err}");
        let garbled = dir.path().join("garbled");
        fs::write(&garbled, "hello").unwrap();
        assert!(matches!(DirectorKey::load(&garbled), Err(KeyError::BadPrivateKey { .. })));
    }
}

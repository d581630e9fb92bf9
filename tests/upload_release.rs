//! upload-release / upload-stemcell end to end through the real binary, on a fresh state dir:
//! the sample release `releases/hello` built, uploaded, listed, inspected and deleted; refused
//! uploads (a flipped byte, a hostile entry, a wrong --sha1) leave the state and the blobstore
//! exactly as they were; an http:// URL served on 127.0.0.1; two concurrent uploads of one release.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use rosh::blobstore::{Blobstore, LocalBlobstore};
use rosh::state::State;

struct Director {
    _tmp: tempfile::TempDir,
    state_dir: PathBuf,
    work: PathBuf,
}

impl Director {
    fn new() -> Director {
        let tmp = tempfile::tempdir().unwrap();
        let state_dir = tmp.path().join("state");
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        Director { _tmp: tmp, state_dir, work }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rosh"));
        cmd.args(args).current_dir(&self.work).env("ROSH_STATE_DIR", &self.state_dir);
        cmd
    }

    fn rosh(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.rosh(args);
        assert!(out.status.success(), "rosh {args:?}: {}", common::stderr(&out));
        common::stdout(&out)
    }

    /// A copy of releases/hello built into a tarball; returns its path.
    fn hello_tarball(&self) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("releases/hello");
        let dir = self.work.join("hello");
        copy_dir(&src, &dir);
        let tarball = self.work.join("hello.tgz");
        self.ok(&["create-release", "hello", "--tarball", tarball.to_str().unwrap()]);
        tarball
    }

    /// Everything a refused upload must not change: the state's records and serial, the blob
    /// names, and no leftover temporary files.
    fn snapshot(&self) -> (String, Vec<String>, Vec<PathBuf>) {
        let state = State::open(&self.state_dir).unwrap();
        let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&self.state_dir)).unwrap();
        (format!("{:?}", state.snapshot().unwrap()), blobs.list().unwrap(), blobs.temp_files().unwrap())
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Rewrites a release tarball: `edit` may change each entry's bytes; `extra` entries (raw tar
/// blocks) are appended before the end marker.
fn rewrite(tarball: &Path, out: &Path, edit: impl Fn(&str, &mut Vec<u8>), extra: &[u8]) {
    let mut input = tar::Archive::new(GzDecoder::new(std::fs::File::open(tarball).unwrap()));
    let mut builder = tar::Builder::new(Vec::new());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        edit(&path, &mut data);
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    let mut bytes = builder.into_inner().unwrap();
    // into_inner wrote the end marker: put the extra entries before it.
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(extra);
    bytes.extend_from_slice(&[0; 1024]);
    let mut gz = GzEncoder::new(std::fs::File::create(out).unwrap(), Compression::default());
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap();
}

#[test]
fn upload_list_inspect_and_delete_the_sample_release() {
    let d = Director::new();
    let tarball = d.hello_tarball();
    let out = d.ok(&["upload-release", tarball.to_str().unwrap()]);
    assert!(out.contains("Uploaded release hello/0+dev.1"), "{out}");
    let again = d.ok(&["upload-release", tarball.to_str().unwrap()]);
    assert!(again.contains("already uploaded; nothing to do"), "{again}");

    let list: serde_json::Value = serde_json::from_str(&d.ok(&["releases", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "hello");
    assert_eq!(list[0]["version"], "0+dev.1");

    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect-release", "hello/0+dev.1", "--json"])).unwrap();
    let packages: Vec<&str> =
        inspect["packages"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(packages.len(), 2, "{packages:?}");
    assert!(packages.contains(&"greeting-lib") && packages.contains(&"hello-server"));
    // Every recorded blob is in the blobstore and intact.
    let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&d.state_dir)).unwrap();
    for artifact in inspect["jobs"].as_array().unwrap().iter().chain(inspect["packages"].as_array().unwrap()) {
        let sha = artifact["blob_sha256"].as_str().unwrap();
        assert!(blobs.verify(sha).unwrap(), "{sha}");
    }

    let deleted = d.ok(&["delete-release", "hello/0+dev.1"]);
    assert!(deleted.contains("Deleted release hello"), "{deleted}");
    assert_eq!(d.ok(&["releases", "--json"]).trim(), "[]");
    assert!(blobs.list().unwrap().is_empty(), "blobs of a deleted release are freed");
    let missing = d.rosh(&["inspect-release", "hello/0+dev.1"]);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn upload_from_a_release_directory_builds_it_first() {
    let d = Director::new();
    d.hello_tarball();
    let out = d.ok(&["upload-release", "hello", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["name"], "hello");
    assert_eq!(json["result"], "uploaded");
}

#[test]
fn refused_uploads_change_nothing() {
    let d = Director::new();
    let tarball = d.hello_tarball();
    // Something already uploaded, so "unchanged" is not trivially "empty".
    d.ok(&["create-stemcell", "--local", "--tarball", "stemcell.tgz"]);
    d.ok(&["upload-stemcell", "stemcell.tgz"]);
    let before = d.snapshot();

    let flipped = d.work.join("flipped.tgz");
    rewrite(
        &tarball,
        &flipped,
        |path, data| {
            if path.ends_with("packages/greeting-lib.tgz") {
                let mid = data.len() / 2;
                data[mid] ^= 0x40;
            }
        },
        &[],
    );
    let out = d.rosh(&["upload-release", flipped.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(err.contains("packages/greeting-lib.tgz") && err.contains("digest"), "{err}");
    assert_eq!(d.snapshot(), before, "a flipped byte changes nothing");

    // An outer entry climbing out of the archive.
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..8].copy_from_slice(b"../evil\0");
    header.set_size(4);
    header.set_mode(0o644);
    header.set_cksum();
    let mut evil = header.as_bytes().to_vec();
    evil.extend_from_slice(b"boom");
    evil.resize(1024, 0);
    let hostile = d.work.join("hostile.tgz");
    rewrite(&tarball, &hostile, |_, _| {}, &evil);
    let out = d.rosh(&["upload-release", hostile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("../evil"), "{}", common::stderr(&out));
    assert_eq!(d.snapshot(), before, "a hostile entry changes nothing");

    let wrong = "sha256:".to_string() + &"0".repeat(64);
    let out = d.rosh(&["upload-release", tarball.to_str().unwrap(), "--sha1", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    assert!(common::stderr(&out).contains("digest mismatch"), "{}", common::stderr(&out));
    assert_eq!(d.snapshot(), before, "a wrong --sha1 changes nothing");
}

/// Serves `body` to `count` HTTP requests on 127.0.0.1; returns the URL.
fn serve(body: Vec<u8>, count: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hello.tgz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    url
}

#[test]
fn upload_from_an_http_url_checks_sha1() {
    let d = Director::new();
    let tarball = d.hello_tarball();
    let bytes = std::fs::read(&tarball).unwrap();
    let sha1 = {
        let mut hasher = rosh::blobstore::Hasher::new();
        hasher.update(&bytes);
        hasher.finish().sha1
    };
    let url = serve(bytes, 2);
    let before = d.snapshot();
    let wrong = "0".repeat(40);
    let out = d.rosh(&["upload-release", &url, "--sha1", &wrong]);
    assert_eq!(out.status.code(), Some(1), "{}", common::stdout(&out));
    assert!(common::stderr(&out).contains("digest mismatch"), "{}", common::stderr(&out));
    assert_eq!(d.snapshot(), before);

    let out = d.ok(&["upload-release", &url, "--sha1", &sha1]);
    assert!(out.contains("Uploaded release hello/0+dev.1"), "{out}");
}

#[test]
fn concurrent_uploads_of_one_release_leave_one_record() {
    let d = Director::new();
    let tarball = d.hello_tarball();
    let path = tarball.to_str().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            d.command(&["upload-release", path, "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", common::stderr(&out));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            json["result"].as_str().unwrap().to_string()
        })
        .collect();
    let mut sorted = results.clone();
    sorted.sort();
    assert_eq!(sorted, ["already_uploaded", "uploaded"], "one uploads, the other waits and finds it");
    let state = State::open(&d.state_dir).unwrap();
    assert_eq!(state.releases().unwrap().len(), 1);
    let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&d.state_dir)).unwrap();
    assert!(blobs.temp_files().unwrap().is_empty());
}

#[test]
fn upload_stemcell_and_delete_it() {
    let d = Director::new();
    d.ok(&["create-stemcell", "--local", "--tarball", "stemcell.tgz"]);
    let out = d.ok(&["upload-stemcell", "stemcell.tgz", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["result"], "uploaded");
    let name = json["name"].as_str().unwrap().to_string();
    let version = json["version"].as_str().unwrap().to_string();
    let list: serde_json::Value = serde_json::from_str(&d.ok(&["stemcells", "--json"])).unwrap();
    assert_eq!(list[0]["name"], name.as_str());
    d.ok(&["delete-stemcell", &format!("{name}/{version}")]);
    assert_eq!(d.ok(&["stemcells", "--json"]).trim(), "[]");
    let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&d.state_dir)).unwrap();
    assert!(blobs.list().unwrap().is_empty(), "the image blob is freed");
}

#[test]
fn a_second_version_reuses_unchanged_packages() {
    let d = Director::new();
    let first = d.hello_tarball();
    d.ok(&["upload-release", first.to_str().unwrap()]);
    let spec = d.work.join("hello/jobs/hello/spec");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}\n# a changed job spec\n")).unwrap();
    let second = d.work.join("hello2.tgz");
    d.ok(&["create-release", "hello", "--tarball", second.to_str().unwrap()]);
    let out: serde_json::Value =
        serde_json::from_str(&d.ok(&["upload-release", second.to_str().unwrap(), "--json"])).unwrap();
    assert_eq!(out["version"], "0+dev.2");
    assert_eq!(out["blobs_stored"], 1, "only the changed job is new: {out}");
    let state = State::open(&d.state_dir).unwrap();
    let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&d.state_dir)).unwrap();
    let mut referenced = state.referenced_blobs().unwrap();
    referenced.sort();
    assert_eq!(referenced, blobs.list().unwrap(), "every stored blob is referenced, and only those");
}

#[test]
fn fix_replaces_a_corrupted_blob() {
    let d = Director::new();
    let tarball = d.hello_tarball();
    let path = tarball.to_str().unwrap();
    d.ok(&["upload-release", path]);
    let blobs = LocalBlobstore::open(LocalBlobstore::default_root(&d.state_dir)).unwrap();
    let victim = blobs.list().unwrap()[0].clone();
    let file = blobs.path_of(&victim).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[10] ^= 0x01;
    let mut perms = std::fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
    std::fs::set_permissions(&file, perms).unwrap();
    std::fs::write(&file, bytes).unwrap();
    assert!(!blobs.verify(&victim).unwrap());

    let plain: serde_json::Value = serde_json::from_str(&d.ok(&["upload-release", path, "--json"])).unwrap();
    assert_eq!(plain["result"], "already_uploaded");
    let fixed: serde_json::Value = serde_json::from_str(&d.ok(&["upload-release", path, "--fix", "--json"])).unwrap();
    assert_eq!(fixed["result"], "fixed");
    assert_eq!(fixed["blobs_repaired"], 1);
    assert!(blobs.verify(&victim).unwrap(), "the blob is whole again");
}

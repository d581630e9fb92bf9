//! The local blobstore against a real directory: round trips, refusals that leave nothing behind,
//! corruption caught on read, dedupe, file modes.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rosh::blobstore::{Blobstore, BlobstoreError, ExpectedDigest, LocalBlobstore};
use rosh::release::digest::sha256_hex;

fn store() -> (tempfile::TempDir, LocalBlobstore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobstore::open(LocalBlobstore::default_root(dir.path())).unwrap();
    (dir, store)
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

fn read_all(store: &LocalBlobstore, sha256: &str) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store.open(sha256).unwrap().read_to_end(&mut out)?;
    Ok(out)
}

/// Three and a half chunks of not-quite-repeating bytes, so chunk boundaries are crossed.
fn content() -> Vec<u8> {
    (0..(3 * (1 << 20) + 12345u32)).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()
}

#[test]
fn put_then_open_round_trips_and_names_the_blob_by_sha256() {
    let (_dir, store) = store();
    let data = content();
    let blob = store.put(&mut &data[..]).unwrap();

    assert_eq!(blob.sha256, sha256_hex(&data));
    assert_eq!(blob.size, data.len() as u64);
    assert_eq!(blob.sha1.len(), 40);
    assert_eq!(read_all(&store, &blob.sha256).unwrap(), data);
    assert!(store.contains(&blob.sha256).unwrap());
    assert!(store.verify(&blob.sha256).unwrap());
    assert_eq!(store.size(&blob.sha256).unwrap(), data.len() as u64);
    assert_eq!(store.list().unwrap(), vec![blob.sha256.clone()]);

    let path = store.root().join("sha256").join(&blob.sha256[..2]).join(&blob.sha256[2..]);
    assert_eq!(store.path_of(&blob.sha256).unwrap(), path);
    assert!(path.is_file());
}

#[test]
fn put_expecting_accepts_either_digest_it_matches() {
    let (_dir, store) = store();
    let blob = store.put(&mut &b"package bytes"[..]).unwrap();
    let other = LocalBlobstore::open(store.root().join("other")).unwrap();
    let by_sha1 = ExpectedDigest::parse(&blob.sha1).unwrap();
    let by_sha256 = ExpectedDigest::parse(&format!("sha256:{}", blob.sha256)).unwrap();
    assert_eq!(other.put_expecting(&mut &b"package bytes"[..], &by_sha1).unwrap(), blob);
    assert_eq!(other.put_expecting(&mut &b"package bytes"[..], &by_sha256).unwrap(), blob);
}

#[test]
fn digest_mismatch_refuses_and_leaves_nothing_in_sha256_or_tmp() {
    let (_dir, store) = store();
    let expected = ExpectedDigest::parse(&format!("sha256:{}", sha256_hex(b"what the release promised"))).unwrap();

    let err = store.put_expecting(&mut &content()[..], &expected).unwrap_err();

    let BlobstoreError::DigestMismatch { expected: e, actual, .. } = &err else { panic!("{err}") };
    assert_eq!(e, &expected);
    assert_eq!(actual, &ExpectedDigest::Sha256(sha256_hex(&content())));
    assert!(err.to_string().contains(&expected.to_string()), "{err}");
    assert!(files_under(&store.root().join("sha256")).is_empty());
    assert!(files_under(&store.root().join("tmp")).is_empty());

    let sha1 = ExpectedDigest::parse("0123456789abcdef0123456789abcdef01234567").unwrap();
    assert!(store.put_expecting(&mut &b"x"[..], &sha1).is_err());
    assert!(files_under(store.root()).is_empty());
}

#[test]
fn a_failing_source_leaves_nothing_behind() {
    struct Fails(usize);
    impl Read for Fails {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, "download interrupted"));
            }
            self.0 -= 1;
            buf.fill(7);
            Ok(buf.len())
        }
    }
    let (_dir, store) = store();
    let err = store.put(&mut Fails(3)).unwrap_err();
    assert!(err.to_string().contains("download interrupted"), "{err}");
    assert!(files_under(store.root()).is_empty());
}

#[test]
fn a_flipped_byte_fails_open_at_eof_and_verify() {
    let (_dir, store) = store();
    let data = content();
    let blob = store.put(&mut &data[..]).unwrap();
    let path = store.path_of(&blob.sha256).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[1_500_000] ^= 0x01;
    fs::write(&path, &bytes).unwrap();

    let err = read_all(&store, &blob.sha256).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains(&blob.sha256), "{err}");
    assert!(!store.verify(&blob.sha256).unwrap());

    // Reading up to the last byte succeeds; the check comes with EOF.
    let mut reader = store.open(&blob.sha256).unwrap();
    let mut first = vec![0u8; data.len()];
    reader.read_exact(&mut first).unwrap();
    assert_eq!(reader.read(&mut [0u8; 16]).unwrap_err().kind(), io::ErrorKind::InvalidData);

    // Repair: delete and put the right content again.
    assert!(store.delete(&blob.sha256).unwrap());
    store.put(&mut &data[..]).unwrap();
    assert!(store.verify(&blob.sha256).unwrap());
}

#[test]
fn staged_blobs_are_invisible_until_committed_and_vanish_when_dropped() {
    let (_dir, store) = store();
    let kept = store.stage(&mut &b"jobs/nats.tgz"[..]).unwrap();
    let dropped = store.stage(&mut &b"packages/gnatsd.tgz"[..]).unwrap();
    let kept_name = kept.blob().sha256.clone();
    assert_eq!(kept_name, sha256_hex(b"jobs/nats.tgz"));
    assert!(!store.contains(&kept_name).unwrap());
    assert!(store.list().unwrap().is_empty());
    assert_eq!(files_under(&store.root().join("tmp")).len(), 2);

    assert_eq!(store.temp_files().unwrap().len(), 2);
    drop(dropped);
    assert_eq!(kept.commit().unwrap().sha256, kept_name);
    assert!(store.temp_files().unwrap().is_empty());

    assert_eq!(store.list().unwrap(), vec![kept_name.clone()]);
    assert!(files_under(&store.root().join("tmp")).is_empty());
    assert_eq!(read_all(&store, &kept_name).unwrap(), b"jobs/nats.tgz");
}

#[test]
fn a_refused_upload_that_drops_its_staged_blobs_never_removes_what_another_stored() {
    let (_dir, store) = store();
    // Upload A stages a shared package; upload B stores the same bytes and succeeds; A is refused.
    let staged_by_a = store.stage(&mut &b"golang-1.22.tgz"[..]).unwrap();
    let stored_by_b = store.put(&mut &b"golang-1.22.tgz"[..]).unwrap();
    drop(staged_by_a);
    assert!(store.verify(&stored_by_b.sha256).unwrap());
    assert!(files_under(&store.root().join("tmp")).is_empty());
}

#[test]
fn the_same_content_twice_is_stored_once() {
    let (_dir, store) = store();
    let a = store.put(&mut &b"same"[..]).unwrap();
    let b = store.put(&mut &b"same"[..]).unwrap();
    let c = store.put(&mut &b"different"[..]).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.sha256, c.sha256);
    assert_eq!(files_under(&store.root().join("sha256")).len(), 2);
    assert!(files_under(&store.root().join("tmp")).is_empty());
    let mut expected = vec![a.sha256.clone(), c.sha256.clone()];
    expected.sort();
    assert_eq!(store.list().unwrap(), expected);
}

#[test]
fn concurrent_puts_through_a_shared_trait_object_keep_one_copy() {
    let (_dir, store) = store();
    let root = store.root().to_path_buf();
    let shared: std::sync::Arc<dyn Blobstore> = std::sync::Arc::new(store);
    let data = std::sync::Arc::new(content());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (shared, data) = (shared.clone(), data.clone());
            std::thread::spawn(move || shared.put(&mut &data[..]).unwrap())
        })
        .collect();
    let blobs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(blobs.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(files_under(&root.join("sha256")).len(), 1);
    assert!(files_under(&root.join("tmp")).is_empty());
    assert!(shared.verify(&blobs[0].sha256).unwrap());
}

#[test]
fn a_truncated_copy_is_replaced_by_the_next_put() {
    let (_dir, store) = store();
    let blob = store.put(&mut &b"complete content"[..]).unwrap();
    fs::write(store.path_of(&blob.sha256).unwrap(), b"compl").unwrap();
    store.put(&mut &b"complete content"[..]).unwrap();
    assert_eq!(read_all(&store, &blob.sha256).unwrap(), b"complete content");
}

#[test]
fn missing_and_malformed_names_are_clear_errors() {
    let (_dir, store) = store();
    let missing = sha256_hex(b"never stored");
    assert!(matches!(store.open(&missing), Err(BlobstoreError::NotFound(_))));
    assert!(matches!(store.verify(&missing), Err(BlobstoreError::NotFound(_))));
    assert!(!store.contains(&missing).unwrap());
    assert!(!store.delete(&missing).unwrap());
    let err = store.open("../../etc/passwd").err().unwrap();
    assert!(matches!(err, BlobstoreError::InvalidName(_)), "{err}");
}

#[test]
fn blobs_are_0600_in_0700_directories() {
    let (_dir, store) = store();
    let blob = store.put(&mut &b"secret-ish"[..]).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let path = store.path_of(&blob.sha256).unwrap();
    assert_eq!(mode(&path), 0o600);
    for dir in [
        store.root().to_path_buf(),
        store.root().join("tmp"),
        store.root().join("sha256"),
        path.parent().unwrap().into(),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
}

#[test]
fn stale_temp_files_are_swept_on_open_and_fresh_ones_kept() {
    let (_dir, store) = store();
    let stale = store.root().join("tmp/put-1-0-0");
    let fresh = store.root().join("tmp/put-2-0-0");
    fs::File::create(&stale).unwrap().write_all(b"partial").unwrap();
    fs::File::create(&fresh).unwrap().write_all(b"in progress").unwrap();
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 24 * 3600);
    fs::File::options().write(true).open(&stale).unwrap().set_modified(two_days_ago).unwrap();

    LocalBlobstore::open(store.root()).unwrap();
    assert!(!stale.exists());
    assert!(fresh.exists());
}

/// Prints `put` throughput next to `sha256sum` on the same 1 GiB file. Run it by hand:
/// `cargo test --release --test blobstore_local -- --ignored --nocapture put_throughput`.
#[test]
#[ignore]
fn put_throughput_vs_sha256sum() {
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.bin");
    {
        let mut f = io::BufWriter::new(fs::File::create(&input).unwrap());
        let mut block = vec![0u8; 1 << 20];
        let mut x = 0x9e3779b97f4a7c15u64;
        for _ in 0..1024 {
            for b in block.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&block).unwrap();
        }
    }
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        f();
        started.elapsed().as_secs_f64()
    };
    let mut sum_hex = String::new();
    let mut sha256sum = || {
        let out = std::process::Command::new("sha256sum").arg(&input).output().unwrap();
        sum_hex = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string();
    };
    sha256sum(); // warm the page cache: both sides then read from memory
    let sum_secs = time(&mut sha256sum);

    // The floor for any store that keeps the bytes: write them and fsync.
    let copy_secs = time(&mut || {
        let mut out = fs::File::create(dir.path().join("copy.bin")).unwrap();
        io::copy(&mut fs::File::open(&input).unwrap(), &mut out).unwrap();
        out.sync_all().unwrap();
    });
    fs::remove_file(dir.path().join("copy.bin")).unwrap();

    let store = LocalBlobstore::open(dir.path().join("blobs")).unwrap();
    let mut blob = None;
    let put_secs = time(&mut || blob = Some(store.put(&mut fs::File::open(&input).unwrap()).unwrap()));
    let blob = blob.unwrap();
    assert_eq!(blob.sha256, sum_hex);
    let again_secs = time(&mut || drop(store.put(&mut fs::File::open(&input).unwrap()).unwrap()));
    let verify_secs = time(&mut || assert!(store.verify(&blob.sha256).unwrap()));

    let rate = |secs: f64| 1024.0 / secs;
    println!(
        "1 GiB, MiB/s: sha256sum {:.0}; cp+fsync {:.0}; put {:.0} (ratio to sha256sum {:.2}); put again (dedupe) {:.0}; verify {:.0}",
        rate(sum_secs),
        rate(copy_secs),
        rate(put_secs),
        sum_secs / put_secs,
        rate(again_secs),
        rate(verify_secs)
    );
}

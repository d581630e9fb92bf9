//! Hostile archives (issue 3, item 7): each is refused with an error naming the archive and the
//! entry, and `extract_to` leaves nothing behind — neither the destination nor anything else
//! beside it. Headers are written by hand, since well-behaved writers refuse to make them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use rosh::release::archive::{self, ArchiveError, EntryKind, Refusal};
use tar::{EntryType, Header};

/// One raw tar entry: a header with `name` and `link` written byte for byte, and `data` padded
/// to the block size. `size` is what the header claims (normally `data.len()`).
fn raw(name: &[u8], kind: EntryType, link: &[u8], data: &[u8], size: u64, mode: u32) -> Vec<u8> {
    let mut header = Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

fn file(name: &str, data: &[u8]) -> Vec<u8> {
    raw(name.as_bytes(), EntryType::Regular, b"", data, data.len() as u64, 0o644)
}

fn link(name: &str, kind: EntryType, target: &str) -> Vec<u8> {
    raw(name.as_bytes(), kind, target.as_bytes(), b"", 0, 0o777)
}

/// A complete tar: the entries, then the two zero blocks that end an archive.
fn tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = entries.concat();
    out.extend_from_slice(&[0; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Extracts `bytes` (as `name`) into a fresh directory's `dest`; asserts it failed and left the
/// parent as it was (one unrelated file in it); returns the error. The same bytes must also be
/// refused by a plain [`archive::visit`].
fn refused(name: &str, bytes: &[u8]) -> ArchiveError {
    let parent = tempfile::tempdir().unwrap();
    fs::write(parent.path().join("unrelated"), "x").unwrap();
    let before = listing(parent.path());
    let dest = parent.path().join("dest");
    let err = archive::extract_to(bytes, name, &dest).expect_err("the archive must be refused");
    assert_eq!(listing(parent.path()), before, "extract_to left something behind after: {err}");
    assert!(!dest.exists());
    let visited = archive::visit(bytes, name, |_, _| Ok::<(), ArchiveError>(())).expect_err("visit must refuse too");
    assert_eq!(visited.to_string(), err.to_string());
    err
}

fn assert_refusal(err: &ArchiveError, entry: &str, check: impl Fn(&Refusal) -> bool) {
    match err {
        ArchiveError::Refused { source_name, entry: named, reason } => {
            assert_eq!(source_name, "hostile.tgz");
            assert_eq!(named, entry, "{err}");
            assert!(check(reason), "unexpected reason: {err}");
        }
        other => panic!("expected a refusal of `{entry}`, got: {other}"),
    }
    let message = err.to_string();
    assert!(message.starts_with("hostile.tgz: entry `"), "{message}");
    assert!(message.contains(entry), "{message}");
}

/// Every hostile case comes after an ordinary file, so something was already extracted.
fn after_benign(hostile: Vec<u8>) -> Vec<u8> {
    gzip(&tar(&[file("./README", b"hello\n"), raw(b"./bin/", EntryType::Directory, b"", b"", 0, 0o755), hostile]))
}

#[test]
fn absolute_path_is_refused() {
    let err = refused("hostile.tgz", &after_benign(file("/tmp/rosh-evil", b"pwned")));
    assert_refusal(&err, "/tmp/rosh-evil", |r| *r == Refusal::AbsolutePath);
    assert!(err.to_string().contains("absolute"), "{err}");
}

#[test]
fn dot_dot_path_is_refused() {
    let err = refused("hostile.tgz", &after_benign(file("../rosh-evil", b"pwned")));
    assert_refusal(&err, "../rosh-evil", |r| *r == Refusal::ParentComponent);
    let err = refused("hostile.tgz", &after_benign(file("./bin/../../rosh-evil", b"pwned")));
    assert_refusal(&err, "./bin/../../rosh-evil", |r| *r == Refusal::ParentComponent);
    assert!(err.to_string().contains("`..`"), "{err}");
}

#[test]
fn absolute_symlink_is_refused() {
    let err = refused("hostile.tgz", &after_benign(link("./bin/etc", EntryType::Symlink, "/etc")));
    assert_refusal(&err, "./bin/etc", |r| matches!(r, Refusal::SymlinkOutside { target } if target == "/etc"));
    assert!(err.to_string().contains("points outside"), "{err}");
}

#[test]
fn symlink_climbing_out_with_dot_dot_is_refused() {
    let err = refused("hostile.tgz", &after_benign(link("./bin/up", EntryType::Symlink, "../../outside")));
    assert_refusal(&err, "./bin/up", |r| matches!(r, Refusal::SymlinkOutside { .. }));
}

#[test]
fn symlink_chain_climbing_out_is_refused() {
    // Each link stays inside on its own; `t` through `a/b/s` (which is `a`) is `a/../..`.
    let archive = gzip(&tar(&[
        link("a/b/s", EntryType::Symlink, ".."),
        file("a/b/f", b"x"),
        link("t", EntryType::Symlink, "a/b/s/../../.."),
    ]));
    let err = refused("hostile.tgz", &archive);
    assert_refusal(&err, "t", |r| matches!(r, Refusal::SymlinkOutside { .. }));
}

#[test]
fn writing_through_a_symlink_is_refused() {
    // The symlink itself stays inside; a file below it would be written through it.
    let archive = gzip(&tar(&[link("./dir", EntryType::Symlink, "bin"), file("./dir/x", b"x")]));
    let err = refused("hostile.tgz", &archive);
    assert_refusal(&err, "./dir/x", |r| matches!(r, Refusal::BelowSymlink { link } if link == "dir"));
}

#[test]
fn hard_link_pointing_outside_is_refused() {
    let err = refused("hostile.tgz", &after_benign(link("./bin/passwd", EntryType::Link, "../../etc/passwd")));
    assert_refusal(&err, "./bin/passwd", |r| matches!(r, Refusal::HardLinkOutside { .. }));
    let err = refused("hostile.tgz", &after_benign(link("./bin/passwd", EntryType::Link, "/etc/passwd")));
    assert_refusal(&err, "./bin/passwd", |r| matches!(r, Refusal::HardLinkOutside { .. }));
    // Inside the root, but not to a file the archive made.
    let err = refused("hostile.tgz", &after_benign(link("./bin/l", EntryType::Link, "bin")));
    assert_refusal(&err, "./bin/l", |r| matches!(r, Refusal::HardLinkTarget { .. }));
}

#[test]
fn character_device_is_refused() {
    let err = refused("hostile.tgz", &after_benign(raw(b"./dev-null", EntryType::Char, b"", b"", 0, 0o666)));
    assert_refusal(&err, "./dev-null", |r| matches!(r, Refusal::SpecialFile { kind: "character device" }));
    let err = refused("hostile.tgz", &after_benign(raw(b"./fifo", EntryType::Fifo, b"", b"", 0, 0o666)));
    assert_refusal(&err, "./fifo", |r| matches!(r, Refusal::SpecialFile { kind: "fifo" }));
    let err = refused("hostile.tgz", &after_benign(raw(b"./sda", EntryType::Block, b"", b"", 0, 0o666)));
    assert_refusal(&err, "./sda", |r| matches!(r, Refusal::SpecialFile { kind: "block device" }));
}

#[test]
fn header_size_beyond_the_data_is_refused() {
    // The header promises 4000 bytes; the archive ends after 100 of them.
    let mut truncated =
        [file("./README", b"hello\n"), raw(b"./big", EntryType::Regular, b"", &[7; 100], 4000, 0o644)].concat();
    truncated.truncate(truncated.len() - (512 - 100));
    let check = |err: &ArchiveError| {
        assert_refusal(err, "./big", |r| *r == Refusal::Truncated { expected: 4000, actual: 100 });
        assert!(err.to_string().contains("truncated"), "{err}");
    };
    check(&refused("hostile.tgz", &truncated));
    // The same through a gzip stream that is itself intact.
    check(&refused("hostile.tgz", &gzip(&truncated)));
}

#[test]
fn archive_without_end_marker_is_refused() {
    // Cut exactly at an entry boundary: tar readers that stop at EOF would call this complete.
    let cut = [file("./README", b"hello\n"), file("./b", b"b")].concat();
    match refused("hostile.tgz", &gzip(&cut)) {
        ArchiveError::Corrupt { entry, message, .. } => {
            assert_eq!(entry, None);
            assert!(message.contains("after entry `./b` without the end-of-archive marker"), "{message}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn corrupt_gzip_is_refused() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut bytes = gzip(&tar(&[file("./README", b"hello\n"), file("./data", &payload)]));
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5a;
    }
    let err = refused("hostile.tgz", &bytes);
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    assert!(err.to_string().starts_with("hostile.tgz: corrupt or truncated archive"), "{err}");
}

#[test]
fn truncated_gzip_is_refused() {
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let bytes = gzip(&tar(&[file("./README", b"hello\n"), file("./data", &payload)]));
    let err = refused("hostile.tgz", &bytes[..bytes.len() / 2]);
    assert!(matches!(&err, ArchiveError::Corrupt { entry: Some(e), .. } if e == "./data"), "{err}");
    // Only the trailer (CRC and length) missing: every entry reads fine, the stream does not.
    let err = refused("hostile.tgz", &bytes[..bytes.len() - 4]);
    assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
}

#[test]
fn same_path_with_two_types_is_refused() {
    let archive = gzip(&tar(&[file("./bin", b"x"), link("./bin", EntryType::Symlink, "README")]));
    let err = refused("hostile.tgz", &archive);
    assert_refusal(&err, "./bin", |r| matches!(r, Refusal::TypeConflict { earlier: "a file", later: "a symlink", .. }));
    // A file where the archive already has a directory's contents.
    let archive = gzip(&tar(&[file("./d/x", b"x"), file("./d", b"y")]));
    let err = refused("hostile.tgz", &archive);
    assert_refusal(&err, "./d", |r| matches!(r, Refusal::TypeConflict { earlier: "a directory", .. }));
}

#[test]
fn empty_stream_and_garbage_are_refused() {
    assert!(matches!(refused("hostile.tgz", b""), ArchiveError::Corrupt { .. }));
    let err = refused("hostile.tgz", &[b'x'; 2048]);
    assert!(err.to_string().contains("not a tar archive"), "{err}");
}

#[test]
fn benign_archive_extracts_with_modes_and_internal_links() {
    let archive = gzip(&tar(&[
        raw(b"./", EntryType::Directory, b"", b"", 0, 0o755),
        raw(b"./bin/", EntryType::Directory, b"", b"", 0, 0o700),
        raw(b"./bin/run", EntryType::Regular, b"", b"#!/bin/sh\necho hi\n", 18, 0o4755),
        raw(b"./lib/data.txt", EntryType::Regular, b"", b"data\n", 5, 0o600),
        link("./bin/data", EntryType::Symlink, "../lib/data.txt"),
        link("./current", EntryType::Symlink, "bin"),
        link("./lib/same.txt", EntryType::Link, "./lib/data.txt"),
        raw(b"./empty/", EntryType::Directory, b"", b"", 0, 0o755),
        file(".", b""),
    ]));
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("pkg");
    archive::extract_to(archive.as_slice(), "benign.tgz", &dest).unwrap();
    assert_eq!(listing(parent.path()), ["pkg"]);
    assert_eq!(listing(&dest), ["bin", "current", "empty", "lib"]);

    let run = dest.join("bin/run");
    assert_eq!(fs::read_to_string(&run).unwrap(), "#!/bin/sh\necho hi\n");
    let umask_allows = |mode: u32| mode & !0o022 == mode;
    let mode = fs::metadata(&run).unwrap().permissions().mode() & 0o7777;
    assert!(mode & 0o100 != 0 && mode & 0o6000 == 0, "run has mode {mode:o}");
    if umask_allows(mode) {
        assert_eq!(mode, 0o755);
    }
    let mode = fs::metadata(dest.join("lib/data.txt")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o111, 0, "data.txt has mode {mode:o}");

    assert_eq!(fs::read_link(dest.join("bin/data")).unwrap(), Path::new("../lib/data.txt"));
    assert_eq!(fs::read_to_string(dest.join("bin/data")).unwrap(), "data\n");
    assert_eq!(fs::read_link(dest.join("current")).unwrap(), Path::new("bin"));
    assert_eq!(fs::read_to_string(dest.join("lib/same.txt")).unwrap(), "data\n");
    assert!(dest.join("empty").is_dir());

    // What a visitor sees: normalised paths, kinds, sizes.
    let mut seen = Vec::new();
    archive::visit(archive.as_slice(), "benign.tgz", |info, _| {
        seen.push((info.path.clone(), info.kind.clone(), info.size));
        Ok::<(), ArchiveError>(())
    })
    .unwrap();
    assert_eq!(seen[1], ("bin/run".to_string(), EntryKind::File, 18));
    assert_eq!(seen[3], ("bin/data".to_string(), EntryKind::Symlink("../lib/data.txt".into()), 0));
    assert_eq!(seen[5], ("lib/same.txt".to_string(), EntryKind::HardLink("lib/data.txt".into()), 0));
    assert_eq!(seen.len(), 7, "`./` and `.` are skipped: {seen:?}");

    // Plain tar is accepted too; an existing destination is not overwritten.
    let err = archive::extract_to(tar(&[file("a", b"a")]).as_slice(), "plain.tar", &dest).unwrap_err();
    assert!(matches!(err, ArchiveError::DestinationExists { .. }), "{err}");
    let plain = parent.path().join("plain");
    archive::extract_to(tar(&[file("a", b"a")]).as_slice(), "plain.tar", &plain).unwrap();
    assert_eq!(fs::read_to_string(plain.join("a")).unwrap(), "a");
}

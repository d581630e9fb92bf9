//! Digests as BOSH writes them, and hashing of whatever streams through rosh.
//!
//! Owns: [`ExpectedDigest`], the digest an operator or a `release.MF` promises (`sha1:` fields and
//! `--sha1` flags), and [`Hashes`]/[`Hasher`]/[`DigestingReader`], which compute SHA-1, SHA-256 and
//! the size of a stream in one pass, so a release tarball entry or an uploaded file is read once.
//! Leaves to others: what to do on a mismatch (the blobstore refuses to store, the release reader
//! refuses the upload).
//!
//! BOSH syntax (bosh-utils `ParseDigestString`): a bare 40-hex string is SHA-1, `algo:<hex>` names
//! the algorithm. rosh accepts `sha1:<40 hex>` and `sha256:<64 hex>`, in either case, and prints
//! them back the way BOSH writes them: bare hex for SHA-1, `sha256:<hex>` for SHA-256. Other
//! algorithms (`sha512:`) and bosh's `;`-separated multi-digests are refused with the text named.
//!
//! SHA-1 and SHA-256 both use the CPU's SHA extensions when present (RustCrypto detects them at run
//! time; the 0.11 crates have no `asm` feature to turn on).

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The digest a source promises for a blob, in BOSH's `sha1:` field syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExpectedDigest {
    /// 40 lowercase hex characters.
    Sha1(String),
    /// 64 lowercase hex characters.
    Sha256(String),
}

/// A digest string that is neither 40-hex SHA-1 nor `sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest `{text}`: {reason}; expected 40 hex characters (SHA-1) or `sha256:` and 64 hex characters")]
pub struct DigestParseError {
    pub text: String,
    pub reason: String,
}

impl ExpectedDigest {
    /// Parses BOSH's digest syntax: `<40 hex>`, `sha1:<40 hex>` or `sha256:<64 hex>`.
    pub fn parse(text: &str) -> Result<ExpectedDigest, DigestParseError> {
        let err = |reason: String| DigestParseError { text: text.to_string(), reason };
        let trimmed = text.trim();
        if trimmed.contains(';') {
            return Err(err("several digests in one are not supported".into()));
        }
        let (algorithm, hex) = match trimmed.split_once(':') {
            Some((algorithm, hex)) => (algorithm.to_ascii_lowercase(), hex),
            None => ("sha1".to_string(), trimmed),
        };
        let (name, want_len, build): (&str, usize, fn(String) -> ExpectedDigest) = match algorithm.as_str() {
            "sha1" => ("SHA-1", 40, ExpectedDigest::Sha1),
            "sha256" => ("SHA-256", 64, ExpectedDigest::Sha256),
            _ => return Err(err(format!("unsupported algorithm `{algorithm}`"))),
        };
        if hex.is_empty() {
            return Err(err("empty".into()));
        }
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err("not hexadecimal".into()));
        }
        if hex.len() != want_len {
            return Err(err(format!("{} hex characters, but a {name} has {want_len}", hex.len())));
        }
        Ok(build(hex.to_ascii_lowercase()))
    }

    /// The lowercase hex of the digest, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        match self {
            ExpectedDigest::Sha1(hex) | ExpectedDigest::Sha256(hex) => hex,
        }
    }

    /// `"sha1"` or `"sha256"`.
    pub fn algorithm(&self) -> &'static str {
        match self {
            ExpectedDigest::Sha1(_) => "sha1",
            ExpectedDigest::Sha256(_) => "sha256",
        }
    }

    /// Whether `hashes` (of the whole stream) carry this digest.
    pub fn matches(&self, hashes: &Hashes) -> bool {
        match self {
            ExpectedDigest::Sha1(hex) => *hex == hashes.sha1,
            ExpectedDigest::Sha256(hex) => *hex == hashes.sha256,
        }
    }

    /// The digest of the same algorithm actually computed, in BOSH syntax, for error messages.
    pub fn actual(&self, hashes: &Hashes) -> ExpectedDigest {
        match self {
            ExpectedDigest::Sha1(_) => ExpectedDigest::Sha1(hashes.sha1.clone()),
            ExpectedDigest::Sha256(_) => ExpectedDigest::Sha256(hashes.sha256.clone()),
        }
    }
}

impl fmt::Display for ExpectedDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedDigest::Sha1(hex) => f.write_str(hex),
            ExpectedDigest::Sha256(hex) => write!(f, "sha256:{hex}"),
        }
    }
}

impl FromStr for ExpectedDigest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExpectedDigest::parse(s)
    }
}

/// SHA-1, SHA-256 (lowercase hex) and size of a complete stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Hashes {
    pub sha1: String,
    pub sha256: String,
    pub size: u64,
}

/// Incremental SHA-1 + SHA-256 + size, for callers that see the bytes as slices.
#[derive(Clone)]
pub struct Hasher {
    /// `None` when only SHA-256 is wanted ([`Hasher::sha256_only`]).
    sha1: Option<Sha1>,
    sha256: Sha256,
    size: u64,
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher { sha1: Some(Sha1::default()), sha256: Sha256::default(), size: 0 }
    }
}

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    /// SHA-256 and size only (the finished [`Hashes::sha1`] is empty): half the work where
    /// nothing reads a SHA-1, as on a VM taking blobs by their SHA-256.
    pub fn sha256_only() -> Hasher {
        Hasher { sha1: None, ..Hasher::default() }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(sha1) = &mut self.sha1 {
            sha1.update(bytes);
        }
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes seen so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Hashes {
        let sha1 = self.sha1.map(|sha1| hex(&sha1.finalize())).unwrap_or_default();
        Hashes { sha1, sha256: hex(&self.sha256.finalize()), size: self.size }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hasher").field("size", &self.size).finish_non_exhaustive()
    }
}

/// A reader that hashes everything read through it.
///
/// The hashes cover exactly the bytes the caller consumed: read to EOF (for example with
/// `io::copy` into `io::sink()`) before calling [`DigestingReader::finish`] when the digest must
/// cover the whole stream.
#[derive(Debug)]
pub struct DigestingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> DigestingReader<R> {
    pub fn new(inner: R) -> DigestingReader<R> {
        DigestingReader { inner, hasher: Hasher::new() }
    }

    /// A reader that hashes SHA-256 only (see [`Hasher::sha256_only`]).
    pub fn sha256_only(inner: R) -> DigestingReader<R> {
        DigestingReader { inner, hasher: Hasher::sha256_only() }
    }

    /// Bytes read so far.
    pub fn size(&self) -> u64 {
        self.hasher.size()
    }

    /// The hashes of the bytes read so far.
    pub fn finish(self) -> Hashes {
        self.hasher.finish()
    }

    /// The hashes of the bytes read so far, and the inner reader.
    pub fn into_parts(self) -> (R, Hashes) {
        (self.inner, self.hasher.finish())
    }
}

impl<R: Read> Read for DigestingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Whether `text` is a SHA-256 as the blobstore names blobs: 64 lowercase hex characters.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA1: &str = "a9993e364706816aba3e25717850c26c9cd0d89d";
    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn bare_40_hex_is_sha1() {
        assert_eq!(ExpectedDigest::parse(ABC_SHA1).unwrap(), ExpectedDigest::Sha1(ABC_SHA1.into()));
        assert_eq!(
            ExpectedDigest::parse(&format!("sha1:{}", ABC_SHA1.to_uppercase())).unwrap(),
            ExpectedDigest::Sha1(ABC_SHA1.into())
        );
    }

    #[test]
    fn sha256_prefix_is_sha256_and_prints_back() {
        let text = format!("sha256:{ABC_SHA256}");
        let digest = ExpectedDigest::parse(&text).unwrap();
        assert_eq!(digest, ExpectedDigest::Sha256(ABC_SHA256.into()));
        assert_eq!(digest.to_string(), text);
        assert_eq!(ExpectedDigest::parse(ABC_SHA1).unwrap().to_string(), ABC_SHA1);
    }

    #[test]
    fn garbage_is_refused_naming_the_text() {
        for text in [
            "",
            "abc",
            "sha256:00ff",
            &format!("sha512:{ABC_SHA256}{ABC_SHA256}"),
            ABC_SHA256,
            &format!("sha256:{ABC_SHA1}"),
            "zz993e364706816aba3e25717850c26c9cd0d89d",
            &format!("{ABC_SHA1};sha256:{ABC_SHA256}"),
        ] {
            let err = ExpectedDigest::parse(text).unwrap_err();
            assert!(err.to_string().contains(&format!("`{text}`")), "{err}");
        }
        assert_eq!(
            ExpectedDigest::parse("sha256:00ff").unwrap_err().to_string(),
            "invalid digest `sha256:00ff`: 4 hex characters, but a SHA-256 has 64; \
             expected 40 hex characters (SHA-1) or `sha256:` and 64 hex characters"
        );
    }

    #[test]
    fn digesting_reader_hashes_what_passes_through() {
        let mut reader = DigestingReader::new(&b"abc"[..]);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        let hashes = reader.finish();
        assert_eq!(out, b"abc");
        assert_eq!(hashes, Hashes { sha1: ABC_SHA1.into(), sha256: ABC_SHA256.into(), size: 3 });
        assert!(ExpectedDigest::Sha1(ABC_SHA1.into()).matches(&hashes));
        assert!(!ExpectedDigest::Sha256(ABC_SHA1.into()).matches(&hashes));
        assert_eq!(sha256_hex(b"abc"), ABC_SHA256);

        // SHA-256 only: the same SHA-256 and size, no SHA-1 (so no SHA-1 digest matches it).
        let mut reader = DigestingReader::sha256_only(&b"abc"[..]);
        reader.read_to_end(&mut Vec::new()).unwrap();
        let hashes = reader.finish();
        assert_eq!(hashes, Hashes { sha1: String::new(), sha256: ABC_SHA256.into(), size: 3 });
        assert!(!ExpectedDigest::Sha1(ABC_SHA1.into()).matches(&hashes));
    }
}

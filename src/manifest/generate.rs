//! Variable generation: the values bosh makes for `password`, `certificate`, `rsa` and `ssh`
//! variables, with the same output keys and formats, and the key pool that makes RSA keys ahead
//! of need.
//!
//! Owns turning one variable definition (`type` + already-interpolated `options`) into a value.
//! It leaves to the vars store deciding *whether* to generate (existing values win), naming the
//! variable in errors, ordering CAs before the certificates they sign, and persisting the result:
//! signing CAs are read back through the caller's `lookup`. No file IO here.
//!
//! Decisions worth knowing:
//! - Output matches what bosh writes (checked against a bosh-generated vars store,
//!   `cf-deployment/scripts/fixtures/unit-test-vars-store.yml`): subject `C=USA, O=<organization>,
//!   CN=<common_name>` as PrintableStrings; a 128-bit random serial; the Subject Key Identifier
//!   is SHA-1 of the RSA modulus (bosh's rule, so a certificate rosh signs with a bosh-made CA
//!   carries that CA's identifier and vice versa); the Authority Key Identifier is copied from
//!   the issuer's certificate, so chains built with CAs from anywhere still link up; private keys
//!   are PKCS#1 (`RSA PRIVATE KEY`); an ssh `public_key` is one `ssh-rsa AAAA…` line ending in a
//!   newline, as Go's `MarshalAuthorizedKey` writes it.
//! - Options are checked strictly: an unknown option or a value of the wrong type is an error
//!   naming it, not silently ignored as bosh does, because a misspelt `alternative_names` would
//!   otherwise surface as a TLS failure on a VM an hour later.
//! - RSA keys come from aws-lc (its plain, non-FIPS `RSA_generate_key_ex`, which is what
//!   `aws_lc_rs::rsa::KeyPair::generate` already calls). A 3072-bit key costs about a quarter of
//!   a second, so [`Generator::prefetch`] starts every key a deployment will need on all cores
//!   up front; [`Generator::generate`] then mostly just picks one up.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use md5::{Digest, Md5};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use serde_yaml_ng::{Mapping, Value};
use time::OffsetDateTime;

/// The variable types rosh can generate, as named in a manifest's `variables[].type`.
pub const SUPPORTED_TYPES: [&str; 4] = ["certificate", "password", "rsa", "ssh"];

/// Key lengths a certificate may ask for with `key_length`.
pub const CERTIFICATE_KEY_LENGTHS: [u32; 3] = [2048, 3072, 4096];

const DEFAULT_CERTIFICATE_KEY_LENGTH: u32 = 3072;
const DEFAULT_ORGANIZATION: &str = "Cloud Foundry";
const DEFAULT_DURATION_DAYS: u64 = 365;
const DEFAULT_PASSWORD_LENGTH: u64 = 20;
const MAX_PASSWORD_LENGTH: usize = 1 << 20;
// bosh's `rsa` and `ssh` generators have no key length option.
const RSA_AND_SSH_KEY_LENGTH: u32 = 2048;
// What bosh puts in every subject. Not a valid ISO 3166 alpha-2 code, but it is what every
// existing vars store holds; matching it keeps rosh- and bosh-made certificates alike.
const SUBJECT_COUNTRY: &str = "USA";
const PASSWORD_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

const CERTIFICATE_OPTIONS: &[&str] = &[
    "alternative_names",
    "ca",
    "common_name",
    "duration",
    "extended_key_usage",
    "is_ca",
    "key_length",
    "organization",
];
const PASSWORD_OPTIONS: &[&str] = &["length"];
const NO_OPTIONS: &[&str] = &[];

/// Why a value could not be generated. The caller adds the variable's name.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("unsupported variable type '{0}' (rosh generates: certificate, password, rsa, ssh)")]
    UnsupportedType(String),

    #[error("{kind} options must be a map, got {found}")]
    OptionsNotAMap { kind: &'static str, found: &'static str },

    #[error(
        "unknown {kind} option{}: {}; {}",
        plural(unknown.len()),
        unknown.join(", "),
        supported_list(supported)
    )]
    UnknownOptions { kind: &'static str, unknown: Vec<String>, supported: &'static [&'static str] },

    #[error("{kind} option '{option}' must be {expected}, got {found}")]
    InvalidOption { kind: &'static str, option: &'static str, expected: &'static str, found: String },

    #[error(
        "certificate option 'extended_key_usage' has unknown usage '{0}' \
         (supported: client_auth, server_auth)"
    )]
    UnknownExtendedKeyUsage(String),

    #[error(
        "certificate is not a CA (is_ca is not true) and has no 'ca' option: \
         missing required CA name"
    )]
    MissingCaName,

    #[error(
        "signing CA '{ca}' has no value: generate it (a certificate with is_ca: true) before \
         the certificates it signs, or provide it"
    )]
    CaNotFound { ca: String },

    #[error("signing CA '{ca}' cannot be used: {reason}")]
    CaUnusable { ca: String, reason: String },

    #[error("generating a {bits}-bit RSA key failed")]
    KeyGeneration { bits: u32 },

    #[error("the system's secure random number generator failed")]
    Randomness,

    #[error("building the certificate failed: {0}")]
    Certificate(#[from] rcgen::Error),
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn supported_list(supported: &[&str]) -> String {
    if supported.is_empty() {
        "this type takes no options".to_string()
    } else {
        format!("supported: {}", supported.join(", "))
    }
}

/// Generates variable values. Holds the RSA key pool, so make one per deployment run and use it
/// for every variable: keys started by [`prefetch`](Self::prefetch) are only found by the same
/// `Generator`.
pub struct Generator {
    pool: KeyPool,
}

impl Default for Generator {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").finish_non_exhaustive()
    }
}

impl Generator {
    pub fn new() -> Self {
        Self { pool: KeyPool::new() }
    }

    /// Starts generating RSA keys of these bit lengths on background threads (one per core) so
    /// later [`generate`](Self::generate) calls find them ready. Call it once up front with
    /// [`key_length_for`] of every definition that will be generated; lengths rosh cannot make
    /// are skipped (`generate` reports them).
    pub fn prefetch(&self, key_lengths: &[u32]) {
        self.pool.prefetch(key_lengths);
    }

    /// Generates one value. `kind` is the definition's `type`, `options` its interpolated
    /// `options` (`Null` when absent). `lookup(name)` returns another variable's current value;
    /// it is asked only for the signing CA named by a certificate's `ca` option.
    pub fn generate(
        &self,
        kind: &str,
        options: &Value,
        lookup: &mut dyn FnMut(&str) -> Option<Value>,
    ) -> Result<Value, GenerateError> {
        match kind {
            "password" => password(options),
            "certificate" => self.certificate(options, lookup),
            "rsa" => self.rsa(options),
            "ssh" => self.ssh(options),
            other => Err(GenerateError::UnsupportedType(other.to_string())),
        }
    }

    fn certificate(
        &self,
        options: &Value,
        lookup: &mut dyn FnMut(&str) -> Option<Value>,
    ) -> Result<Value, GenerateError> {
        // Everything that can be wrong with the definition is found before a key is spent.
        let opts = CertificateOptions::parse(options)?;
        let signer = opts.ca.map(|name| SigningCa::load(name, lookup)).transpose()?;
        let not_before = OffsetDateTime::now_utc();
        let not_after = opts.not_after(not_before)?;

        let key = NewKey::from_pkcs8(self.pool.take(opts.key_length)?, opts.key_length)?;

        let mut params = CertificateParams::default();
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&random_serial()?));
        params.distinguished_name = subject(opts.organization, opts.common_name);
        params.subject_alt_names = opts.alternative_names;
        params.key_identifier_method = KeyIdMethod::PreSpecified(key.subject_key_id()?);
        // An issuer without a key identifier gives nothing to point at; rcgen would otherwise
        // invent one from its key that matches nothing.
        params.use_authority_key_identifier_extension = signer.as_ref().is_none_or(|ca| ca.has_key_id);
        if opts.is_ca {
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.extended_key_usages = opts.extended_key_usage.unwrap_or_default();
        } else {
            // Written out as CA:FALSE (not omitted), as bosh does.
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
            params.extended_key_usages =
                opts.extended_key_usage.unwrap_or_else(|| vec![ExtendedKeyUsagePurpose::ServerAuth]);
        }

        let (ca_pem, certificate_pem) = match &signer {
            None => {
                let pem = params.self_signed(&key.pair)?.pem();
                (pem.clone(), pem)
            }
            Some(ca) => {
                let cert = params.signed_by(&key.pair, &ca.issuer)?;
                ca.check_issuer_name(cert.der())?;
                (ca.certificate_pem.clone(), cert.pem())
            }
        };

        let mut out = Mapping::new();
        out.insert("ca".into(), with_newline(ca_pem).into());
        out.insert("certificate".into(), with_newline(certificate_pem).into());
        out.insert("private_key".into(), key.pkcs1_pem()?.into());
        Ok(Value::Mapping(out))
    }

    fn rsa(&self, options: &Value) -> Result<Value, GenerateError> {
        Options::new("rsa", options, NO_OPTIONS)?;
        let key = NewKey::from_pkcs8(self.pool.take(RSA_AND_SSH_KEY_LENGTH)?, RSA_AND_SSH_KEY_LENGTH)?;
        let mut out = Mapping::new();
        out.insert("private_key".into(), key.pkcs1_pem()?.into());
        out.insert("public_key".into(), with_newline(key.pair.public_key_pem()).into());
        Ok(Value::Mapping(out))
    }

    fn ssh(&self, options: &Value) -> Result<Value, GenerateError> {
        Options::new("ssh", options, NO_OPTIONS)?;
        let key = NewKey::from_pkcs8(self.pool.take(RSA_AND_SSH_KEY_LENGTH)?, RSA_AND_SSH_KEY_LENGTH)?;
        let blob = key.ssh_public_key_blob()?;
        let public_key = format!("ssh-rsa {}\n", base64::engine::general_purpose::STANDARD.encode(&blob));
        let fingerprint: Vec<String> = Md5::digest(&blob).iter().map(|b| format!("{b:02x}")).collect();
        let mut out = Mapping::new();
        out.insert("private_key".into(), key.pkcs1_pem()?.into());
        out.insert("public_key".into(), public_key.into());
        out.insert("public_key_fingerprint".into(), fingerprint.join(":").into());
        Ok(Value::Mapping(out))
    }
}

/// The RSA key length a definition will need, for [`Generator::prefetch`]: `Some(bits)` for
/// `certificate`, `rsa` and `ssh`, `None` for other types and for a certificate whose
/// `key_length` is invalid (generating it reports the error).
pub fn key_length_for(kind: &str, options: &Value) -> Option<u32> {
    match kind {
        "certificate" => match options.get("key_length") {
            None | Some(Value::Null) => Some(DEFAULT_CERTIFICATE_KEY_LENGTH),
            Some(value) => value
                .as_u64()
                .and_then(|bits| u32::try_from(bits).ok())
                .filter(|bits| CERTIFICATE_KEY_LENGTHS.contains(bits)),
        },
        "rsa" | "ssh" => Some(RSA_AND_SSH_KEY_LENGTH),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// password

fn password(options: &Value) -> Result<Value, GenerateError> {
    let opts = Options::new("password", options, PASSWORD_OPTIONS)?;
    let length = opts.positive_integer("length")?.unwrap_or(DEFAULT_PASSWORD_LENGTH);
    // No password needs more, and a typo like 2000000000 should be an error, not an
    // out-of-memory abort.
    let length = usize::try_from(length)
        .ok()
        .filter(|&length| length <= MAX_PASSWORD_LENGTH)
        .ok_or_else(|| opts.invalid("length", "at most 1048576", length))?;
    let mut password = String::with_capacity(length);
    let mut random = [0u8; 64];
    while password.len() < length {
        aws_lc_rs::rand::fill(&mut random).map_err(|_| GenerateError::Randomness)?;
        // 252 = 7 × 36: dropping the top four byte values keeps every character equally likely.
        for &byte in random.iter().filter(|&&b| b < 252) {
            if password.len() == length {
                break;
            }
            password.push(PASSWORD_ALPHABET[usize::from(byte) % 36] as char);
        }
    }
    Ok(Value::String(password))
}

// ---------------------------------------------------------------------------------------------
// certificate options and the signing CA

struct CertificateOptions<'a> {
    common_name: Option<&'a str>,
    organization: &'a str,
    alternative_names: Vec<SanType>,
    is_ca: bool,
    ca: Option<&'a str>,
    extended_key_usage: Option<Vec<ExtendedKeyUsagePurpose>>,
    duration_days: u64,
    key_length: u32,
}

impl<'a> CertificateOptions<'a> {
    fn parse(options: &'a Value) -> Result<Self, GenerateError> {
        let opts = Options::new("certificate", options, CERTIFICATE_OPTIONS)?;
        let alternative_names = opts
            .strings("alternative_names")?
            .unwrap_or_default()
            .into_iter()
            .map(|name| match name.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => name
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|_| opts.invalid("alternative_names", "a list of ASCII host names or IPs", name)),
            })
            .collect::<Result<_, _>>()?;
        let extended_key_usage = opts
            .strings("extended_key_usage")?
            .map(|usages| {
                usages
                    .into_iter()
                    .map(|usage| match usage {
                        "client_auth" => Ok(ExtendedKeyUsagePurpose::ClientAuth),
                        "server_auth" => Ok(ExtendedKeyUsagePurpose::ServerAuth),
                        other => Err(GenerateError::UnknownExtendedKeyUsage(other.to_string())),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let key_length = match opts.positive_integer("key_length")? {
            None => DEFAULT_CERTIFICATE_KEY_LENGTH,
            Some(bits) => u32::try_from(bits)
                .ok()
                .filter(|bits| CERTIFICATE_KEY_LENGTHS.contains(bits))
                .ok_or_else(|| opts.invalid("key_length", "2048, 3072 or 4096", bits))?,
        };
        let parsed = Self {
            common_name: opts.string("common_name")?,
            organization: opts.string("organization")?.unwrap_or(DEFAULT_ORGANIZATION),
            alternative_names,
            is_ca: opts.boolean("is_ca")?.unwrap_or(false),
            ca: opts.string("ca")?.filter(|name| !name.is_empty()),
            extended_key_usage,
            duration_days: opts.positive_integer("duration")?.unwrap_or(DEFAULT_DURATION_DAYS),
            key_length,
        };
        if !parsed.is_ca && parsed.ca.is_none() {
            return Err(GenerateError::MissingCaName);
        }
        Ok(parsed)
    }

    fn not_after(&self, not_before: OffsetDateTime) -> Result<OffsetDateTime, GenerateError> {
        // Bounded first: `Duration::days` panics where the count overflows.
        i64::try_from(self.duration_days)
            .ok()
            .filter(|&days| days <= 10_000 * 366)
            .map(time::Duration::days)
            .and_then(|duration| not_before.checked_add(duration))
            // X.509 times stop at year 9999.
            .filter(|end| end.year() <= 9999)
            .ok_or_else(|| GenerateError::InvalidOption {
                kind: "certificate",
                option: "duration",
                expected: "a number of days ending before the year 10000",
                found: self.duration_days.to_string(),
            })
    }
}

/// Subject names are written as Go writes them for bosh: C, O, CN, each a PrintableString when
/// the text allows it, else UTF8String.
fn subject(organization: &str, common_name: Option<&str>) -> DistinguishedName {
    let text = |s: &str| match s.to_string().try_into() {
        Ok(printable) => DnValue::PrintableString(printable),
        Err(_) => DnValue::Utf8String(s.to_string()),
    };
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, text(SUBJECT_COUNTRY));
    name.push(DnType::OrganizationName, text(organization));
    if let Some(cn) = common_name.filter(|cn| !cn.is_empty()) {
        name.push(DnType::CommonName, text(cn));
    }
    name
}

fn random_serial() -> Result<[u8; 16], GenerateError> {
    let mut serial = [0u8; 16];
    // A zero serial is invalid; at 2^-128 this loop runs once.
    while serial == [0u8; 16] {
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| GenerateError::Randomness)?;
    }
    Ok(serial)
}

/// The CA named by a certificate's `ca` option, read from its current value.
struct SigningCa {
    /// The CA variable's name, for errors.
    name: String,
    /// As stored, so a leaf's `ca` is byte for byte its CA's `certificate`.
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's subject exactly as encoded in its certificate.
    subject_der: Vec<u8>,
    has_key_id: bool,
}

impl SigningCa {
    fn load(name: &str, lookup: &mut dyn FnMut(&str) -> Option<Value>) -> Result<Self, GenerateError> {
        let unusable = |reason: String| GenerateError::CaUnusable { ca: name.to_string(), reason };
        let value = lookup(name).ok_or_else(|| GenerateError::CaNotFound { ca: name.to_string() })?;
        let Value::Mapping(map) = &value else {
            return Err(unusable(format!(
                "its value is {}, not a certificate (a map with certificate and private_key)",
                describe(&value)
            )));
        };
        let field = |key: &str| {
            map.get(key)
                .and_then(Value::as_str)
                .filter(|text| !text.trim().is_empty())
                .ok_or_else(|| unusable(format!("its value has no {key}")))
        };
        let certificate_pem = field("certificate")?;
        let private_key_pem = field("private_key")?;

        // A `certificate` may carry a chain; the first certificate is the CA itself.
        let certificate_der = pem::parse_many(certificate_pem)
            .ok()
            .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
            .ok_or_else(|| unusable("its certificate is not a PEM certificate".to_string()))?
            .into_contents();
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate_der)
            .map_err(|e| unusable(format!("its certificate cannot be parsed: {e}")))?;
        let key =
            KeyPair::from_pem(private_key_pem).map_err(|e| unusable(format!("its private_key cannot be read: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(unusable("its private_key does not belong to its certificate".into()));
        }
        let has_key_id = parsed.iter_extensions().any(|ext| {
            matches!(ext.parsed_extension(), x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(_))
        });
        let subject_der = parsed.subject().as_raw().to_vec();
        let issuer = Issuer::from_ca_cert_der(&certificate_der.as_slice().into(), key)
            .map_err(|e| unusable(format!("its certificate cannot be used to sign: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            certificate_pem: certificate_pem.to_string(),
            issuer,
            subject_der,
            has_key_id,
        })
    }

    /// rcgen re-encodes the CA's subject from its parsed form. A subject it cannot reproduce
    /// byte for byte (repeated attributes, unusual string types) would give certificates whose
    /// issuer matches no CA, so refuse rather than hand out a chain that never verifies.
    fn check_issuer_name(&self, certificate_der: &[u8]) -> Result<(), GenerateError> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(certificate_der).map_err(|e| rcgen::Error::X509(e.to_string()))?;
        if parsed.issuer().as_raw() == self.subject_der.as_slice() {
            Ok(())
        } else {
            Err(GenerateError::CaUnusable {
                ca: self.name.clone(),
                reason: "its subject name cannot be reproduced exactly as the issuer of the \
                         certificates it signs (repeated or multi-valued name attributes are \
                         not supported)"
                    .to_string(),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// new keys

/// A freshly generated RSA key, in the forms the outputs need.
struct NewKey {
    pkcs8: Vec<u8>,
    pair: KeyPair,
    bits: u32,
}

impl NewKey {
    fn from_pkcs8(pkcs8: Vec<u8>, bits: u32) -> Result<Self, GenerateError> {
        let pair = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_slice().into(), &rcgen::PKCS_RSA_SHA256)
            .map_err(|_| GenerateError::KeyGeneration { bits })?;
        Ok(Self { pkcs8, pair, bits })
    }

    fn public_key(&self) -> Result<pkcs1::RsaPublicKey<'_>, GenerateError> {
        pkcs1::RsaPublicKey::try_from(self.pair.der_bytes())
            .map_err(|_| GenerateError::KeyGeneration { bits: self.bits })
    }

    /// bosh's rule: SHA-1 over the modulus' big-endian bytes (not RFC 5280's hash of the whole
    /// public key), so identifiers look like those in existing vars stores.
    fn subject_key_id(&self) -> Result<Vec<u8>, GenerateError> {
        let modulus = self.public_key()?.modulus.as_bytes();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, modulus);
        Ok(digest.as_ref().to_vec())
    }

    /// `-----BEGIN RSA PRIVATE KEY-----`, what bosh writes: the PKCS#1 structure that PKCS#8
    /// wraps.
    fn pkcs1_pem(&self) -> Result<String, GenerateError> {
        let info = pkcs8::PrivateKeyInfo::try_from(self.pkcs8.as_slice())
            .map_err(|_| GenerateError::KeyGeneration { bits: self.bits })?;
        Ok(pem_text("RSA PRIVATE KEY", info.private_key.to_vec()))
    }

    /// The SSH wire form of the public key: string "ssh-rsa", mpint e, mpint n (RFC 4253 §6.6).
    fn ssh_public_key_blob(&self) -> Result<Vec<u8>, GenerateError> {
        let public = self.public_key()?;
        let mut blob = Vec::new();
        ssh_string(&mut blob, b"ssh-rsa");
        ssh_mpint(&mut blob, public.public_exponent.as_bytes());
        ssh_mpint(&mut blob, public.modulus.as_bytes());
        Ok(blob)
    }
}

fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("SSH field longer than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `magnitude` is big-endian without leading zeros; an mpint needs a zero byte in front when
/// the top bit is set, or it would read as negative.
fn ssh_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(magnitude.len() + 1);
        padded.push(0);
        padded.extend_from_slice(magnitude);
        ssh_string(out, &padded);
    } else {
        ssh_string(out, magnitude);
    }
}

fn pem_text(tag: &str, contents: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    with_newline(pem::encode_config(&pem::Pem::new(tag, contents), config))
}

fn with_newline(mut text: String) -> String {
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

fn generate_key(bits: u32) -> Result<Vec<u8>, GenerateError> {
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        _ => return Err(GenerateError::KeyGeneration { bits }),
    };
    let pair = RsaKeyPair::generate(size).map_err(|_| GenerateError::KeyGeneration { bits })?;
    let pkcs8 = pair.as_der().map_err(|_| GenerateError::KeyGeneration { bits })?;
    Ok(pkcs8.as_ref().to_vec())
}

fn can_generate(bits: u32) -> bool {
    matches!(bits, 2048 | 3072 | 4096)
}

// ---------------------------------------------------------------------------------------------
// the key pool

/// RSA keys made ahead of need on background threads.
///
/// Keys are interchangeable within a length, so the pool only counts: per length, keys ready,
/// keys being made, and callers waiting. A caller takes a ready key, else waits if more keys
/// are being made than there are callers already waiting for them, else makes its own (taking
/// a queued job of that length off the queue, so the total made stays what was asked for).
/// Every wake-up re-checks those counts, so a caller can never wait for a key that someone else
/// took or that failed. Each key is handed out once.
///
/// Workers are detached threads. Dropping the pool empties the queue: a worker finishes the key
/// in hand (under a second), drops it and exits. Nothing joins them, so a process that exits
/// while they run simply ends them.
struct KeyPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    state: Mutex<PoolState>,
    changed: Condvar,
}

#[derive(Default)]
struct PoolState {
    queued: VecDeque<u32>,
    ready: HashMap<u32, Vec<Vec<u8>>>,
    in_flight: HashMap<u32, usize>,
    waiting: HashMap<u32, usize>,
    workers: usize,
    closed: bool,
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is plain counters and byte vectors, consistent between statements, so a
        // panic elsewhere while holding the lock leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn count(map: &HashMap<u32, usize>, bits: u32) -> usize {
    map.get(&bits).copied().unwrap_or(0)
}

impl KeyPool {
    fn new() -> Self {
        Self { shared: Arc::new(PoolShared { state: Mutex::new(PoolState::default()), changed: Condvar::new() }) }
    }

    fn prefetch(&self, key_lengths: &[u32]) {
        let threads = thread::available_parallelism().map_or(1, |n| n.get());
        let mut state = self.shared.lock();
        state.queued.extend(key_lengths.iter().copied().filter(|&bits| can_generate(bits)));
        while state.workers < threads.min(state.queued.len()) {
            let shared = Arc::clone(&self.shared);
            let spawned = thread::Builder::new().name("rosh-keygen".into()).spawn(move || worker(&shared));
            match spawned {
                Ok(_) => state.workers += 1,
                // Queued jobs are still made, by the callers that need them (see `take`).
                Err(_) => break,
            }
        }
    }

    fn take(&self, bits: u32) -> Result<Vec<u8>, GenerateError> {
        let mut state = self.shared.lock();
        loop {
            if let Some(key) = state.ready.get_mut(&bits).and_then(Vec::pop) {
                return Ok(key);
            }
            if count(&state.in_flight, bits) > count(&state.waiting, bits) {
                *state.waiting.entry(bits).or_default() += 1;
                state = self.shared.changed.wait(state).unwrap_or_else(PoisonError::into_inner);
                *state.waiting.entry(bits).or_default() -= 1;
                continue;
            }
            if let Some(position) = state.queued.iter().position(|&queued| queued == bits) {
                state.queued.remove(position);
            }
            break;
        }
        drop(state);
        generate_key(bits)
    }
}

fn worker(shared: &PoolShared) {
    let mut state = shared.lock();
    while let Some(bits) = state.queued.pop_front() {
        *state.in_flight.entry(bits).or_default() += 1;
        drop(state);
        let key = generate_key(bits);
        state = shared.lock();
        *state.in_flight.entry(bits).or_default() -= 1;
        // A failed key is simply not there: a waiting caller sees the count drop and makes its
        // own, which reports the error if it fails again.
        if let (Ok(key), false) = (key, state.closed) {
            state.ready.entry(bits).or_default().push(key);
        }
        shared.changed.notify_all();
    }
    state.workers -= 1;
}

impl Drop for KeyPool {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        state.queued.clear();
        state.ready.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// options

/// A definition's `options`, checked against the names its type accepts.
struct Options<'a> {
    kind: &'static str,
    map: Option<&'a Mapping>,
}

impl<'a> Options<'a> {
    fn new(kind: &'static str, options: &'a Value, supported: &'static [&'static str]) -> Result<Self, GenerateError> {
        let map = match options {
            Value::Null => None,
            Value::Mapping(map) => Some(map),
            other => {
                return Err(GenerateError::OptionsNotAMap { kind, found: describe(other) });
            }
        };
        let unknown: Vec<String> = map
            .into_iter()
            .flat_map(Mapping::keys)
            .filter(|key| !key.as_str().is_some_and(|key| supported.contains(&key)))
            .map(|key| match key.as_str() {
                Some(name) => name.to_string(),
                None => serde_yaml_ng::to_string(key).unwrap_or_default().trim().to_string(),
            })
            .collect();
        if !unknown.is_empty() {
            return Err(GenerateError::UnknownOptions { kind, unknown, supported });
        }
        Ok(Self { kind, map })
    }

    /// An explicit `null` reads as absent, as it does in bosh.
    fn get(&self, option: &str) -> Option<&'a Value> {
        self.map.and_then(|map| map.get(option)).filter(|value| !value.is_null())
    }

    fn invalid(&self, option: &'static str, expected: &'static str, found: impl std::fmt::Display) -> GenerateError {
        GenerateError::InvalidOption { kind: self.kind, option, expected, found: found.to_string() }
    }

    fn mistyped(&self, option: &'static str, expected: &'static str, value: &Value) -> GenerateError {
        self.invalid(option, expected, describe(value))
    }

    fn string(&self, option: &'static str) -> Result<Option<&'a str>, GenerateError> {
        self.get(option).map(|value| value.as_str().ok_or_else(|| self.mistyped(option, "a string", value))).transpose()
    }

    fn boolean(&self, option: &'static str) -> Result<Option<bool>, GenerateError> {
        self.get(option)
            .map(|value| value.as_bool().ok_or_else(|| self.mistyped(option, "true or false", value)))
            .transpose()
    }

    fn positive_integer(&self, option: &'static str) -> Result<Option<u64>, GenerateError> {
        self.get(option)
            .map(|value| {
                value.as_u64().filter(|&n| n > 0).ok_or_else(|| match value.as_i64() {
                    Some(n) => self.invalid(option, "a positive integer", n),
                    None => self.mistyped(option, "a positive integer", value),
                })
            })
            .transpose()
    }

    fn strings(&self, option: &'static str) -> Result<Option<Vec<&'a str>>, GenerateError> {
        let expected = "a list of strings";
        self.get(option)
            .map(|value| {
                let items = value.as_sequence().ok_or_else(|| self.mistyped(option, expected, value))?;
                items.iter().map(|item| item.as_str().ok_or_else(|| self.mistyped(option, expected, item))).collect()
            })
            .transpose()
    }
}

/// What kind of YAML value the operator wrote, for "must be X, got Y" errors.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a map",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use x509_parser::certificate::X509Certificate;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;

    use super::*;

    fn yaml(text: &str) -> Value {
        serde_yaml_ng::from_str(text).expect("test YAML")
    }

    /// Generates with `store` as the other variables' values.
    fn generate_with(
        generator: &Generator,
        kind: &str,
        options: &str,
        store: &HashMap<&str, Value>,
    ) -> Result<Value, GenerateError> {
        generator.generate(kind, &yaml(options), &mut |name| store.get(name).cloned())
    }

    fn generate(kind: &str, options: &str) -> Result<Value, GenerateError> {
        generate_with(&Generator::new(), kind, options, &HashMap::new())
    }

    fn field<'v>(value: &'v Value, key: &str) -> &'v str {
        value.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no {key} in {value:?}"))
    }

    fn der(pem_text: &str) -> Vec<u8> {
        pem::parse(pem_text).expect("PEM").into_contents()
    }

    fn with_cert<T>(pem_text: &str, check: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
        let der = der(pem_text);
        let (rest, cert) = x509_parser::parse_x509_certificate(&der).expect("certificate");
        assert!(rest.is_empty());
        check(&cert)
    }

    fn subject_key_id(cert: &X509Certificate<'_>) -> Vec<u8> {
        cert.iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .expect("subject key identifier")
    }

    fn authority_key_id(cert: &X509Certificate<'_>) -> Vec<u8> {
        cert.iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref().map(|id| id.0.to_vec()),
                _ => None,
            })
            .expect("authority key identifier")
    }

    fn subject_parts(cert: &X509Certificate<'_>) -> (String, String, String) {
        let name = cert.subject();
        let first = |mut attrs: Box<dyn Iterator<Item = _>>| -> String {
            let attr: &x509_parser::x509::AttributeTypeAndValue<'_> = attrs.next().expect("attribute");
            attr.as_str().expect("text").to_string()
        };
        (
            first(Box::new(name.iter_country())),
            first(Box::new(name.iter_organization())),
            first(Box::new(name.iter_common_name())),
        )
    }

    /// (modulus without leading zeros, public exponent) read from a PKCS#1 private key PEM.
    fn private_key_numbers(private_key_pem: &str) -> (Vec<u8>, Vec<u8>) {
        let block = pem::parse(private_key_pem).expect("PEM");
        assert_eq!(block.tag(), "RSA PRIVATE KEY");
        let key = pkcs1::RsaPrivateKey::try_from(block.contents()).expect("PKCS#1 private key");
        (key.modulus.as_bytes().to_vec(), key.public_exponent.as_bytes().to_vec())
    }

    fn bits(modulus: &[u8]) -> usize {
        modulus.len() * 8 - modulus[0].leading_zeros() as usize
    }

    fn sha1(bytes: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref().to_vec()
    }

    fn have(tool: &str) -> bool {
        Command::new(tool).arg("version").output().is_ok()
    }

    // --- password ---------------------------------------------------------------------------

    #[test]
    fn password_is_20_lowercase_letters_and_digits_by_default() {
        let passwords: Vec<String> =
            (0..20).map(|_| generate("password", "~").unwrap().as_str().unwrap().to_string()).collect();
        for password in &passwords {
            assert_eq!(password.len(), 20, "{password}");
            assert!(password.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{password}");
        }
        let all: String = passwords.concat();
        assert!(all.bytes().any(|b| b.is_ascii_digit()) && all.bytes().any(|b| b.is_ascii_lowercase()));
        let mut distinct = passwords.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), passwords.len());
    }

    #[test]
    fn password_length_option_sets_the_length() {
        for length in [1, 32, 200] {
            let value = generate("password", &format!("length: {length}")).unwrap();
            assert_eq!(value.as_str().unwrap().len(), length);
        }
    }

    #[test]
    fn password_rejects_a_bad_length_and_unknown_options() {
        let err = generate("password", "length: 0").unwrap_err();
        assert_eq!(err.to_string(), "password option 'length' must be a positive integer, got 0");
        let err = generate("password", "length: twenty").unwrap_err();
        assert_eq!(err.to_string(), "password option 'length' must be a positive integer, got a string");
        let err = generate("password", "length: 2000000000").unwrap_err();
        assert_eq!(err.to_string(), "password option 'length' must be at most 1048576, got 2000000000");
        let err = generate("password", "lenght: 30").unwrap_err();
        assert_eq!(err.to_string(), "unknown password option: lenght; supported: length");
    }

    // --- types and options --------------------------------------------------------------------

    #[test]
    fn unknown_type_is_refused_naming_the_supported_ones() {
        let err = generate("passwd", "~").unwrap_err();
        assert!(matches!(&err, GenerateError::UnsupportedType(t) if t == "passwd"));
        assert_eq!(
            err.to_string(),
            "unsupported variable type 'passwd' (rosh generates: certificate, password, rsa, ssh)"
        );
    }

    #[test]
    fn options_must_be_a_map() {
        let err = generate("certificate", "[is_ca]").unwrap_err();
        assert_eq!(err.to_string(), "certificate options must be a map, got a list");
    }

    #[test]
    fn rsa_and_ssh_take_no_options() {
        let err = generate("ssh", "key_length: 4096").unwrap_err();
        assert_eq!(err.to_string(), "unknown ssh option: key_length; this type takes no options");
    }

    #[test]
    fn certificate_options_are_validated_before_a_key_is_made() {
        let cases = [
            ("{is_ca: true, key_length: 1024}", "certificate option 'key_length' must be 2048, 3072 or 4096, got 1024"),
            (
                "{is_ca: true, key_length: '3072'}",
                "certificate option 'key_length' must be a positive integer, got a string",
            ),
            (
                "{is_ca: true, alt_names: [a], common: x}",
                "unknown certificate options: alt_names, common; supported: alternative_names, ca, common_name, duration, extended_key_usage, is_ca, key_length, organization",
            ),
            (
                "{ca: root, extended_key_usage: [code_signing]}",
                "certificate option 'extended_key_usage' has unknown usage 'code_signing' (supported: client_auth, server_auth)",
            ),
            (
                "{ca: root, extended_key_usage: server_auth}",
                "certificate option 'extended_key_usage' must be a list of strings, got a string",
            ),
            (
                "{common_name: leaf}",
                "certificate is not a CA (is_ca is not true) and has no 'ca' option: missing required CA name",
            ),
            ("{is_ca: 'yes'}", "certificate option 'is_ca' must be true or false, got a string"),
            ("{is_ca: true, duration: -1}", "certificate option 'duration' must be a positive integer, got -1"),
            (
                "{is_ca: true, duration: 5000000}",
                "certificate option 'duration' must be a number of days ending before the year 10000, got 5000000",
            ),
            (
                "{ca: root, alternative_names: [bücher.example]}",
                "certificate option 'alternative_names' must be a list of ASCII host names or IPs, got bücher.example",
            ),
            (
                "{ca: root, key_length: 2048}",
                "signing CA 'root' has no value: generate it (a certificate with is_ca: true) before the certificates it signs, or provide it",
            ),
        ];
        // One key of each length the cases would use, ready before they run: none is spent.
        let generator = Generator::new();
        generator.prefetch(&[2048, 3072]);
        let ready_counts = || {
            let state = generator.pool.shared.lock();
            [2048, 3072].map(|bits| state.ready.get(&bits).map_or(0, Vec::len))
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ready_counts() != [1, 1] {
            assert!(Instant::now() < deadline, "prefetched keys never arrived");
            thread::sleep(Duration::from_millis(10));
        }
        for (options, message) in cases {
            let err = generate_with(&generator, "certificate", options, &HashMap::new()).expect_err(options);
            assert_eq!(err.to_string(), message, "options {options}");
        }
        assert_eq!(ready_counts(), [1, 1]);
    }

    #[test]
    fn generator_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Generator>();
    }

    #[test]
    fn key_length_for_reports_what_prefetch_needs() {
        assert_eq!(key_length_for("certificate", &yaml("{is_ca: true}")), Some(3072));
        assert_eq!(key_length_for("certificate", &Value::Null), Some(3072));
        assert_eq!(key_length_for("certificate", &yaml("{key_length: 2048}")), Some(2048));
        assert_eq!(key_length_for("certificate", &yaml("{key_length: 4096}")), Some(4096));
        assert_eq!(key_length_for("certificate", &yaml("{key_length: 1024}")), None);
        assert_eq!(key_length_for("rsa", &Value::Null), Some(2048));
        assert_eq!(key_length_for("ssh", &Value::Null), Some(2048));
        assert_eq!(key_length_for("password", &Value::Null), None);
        assert_eq!(key_length_for("user", &Value::Null), None);
    }

    // --- certificates -------------------------------------------------------------------------

    fn root(generator: &Generator, options: &str) -> Value {
        generate_with(generator, "certificate", options, &HashMap::new()).expect("root CA")
    }

    #[test]
    fn self_signed_root_ca() {
        let before = OffsetDateTime::now_utc().unix_timestamp();
        let value = root(&Generator::new(), "{is_ca: true, common_name: rosh-root, key_length: 2048, duration: 30}");
        let keys: Vec<&str> = value.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["ca", "certificate", "private_key"]);
        let certificate = field(&value, "certificate");
        assert_eq!(field(&value, "ca"), certificate);
        assert!(certificate.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(certificate.ends_with("-----END CERTIFICATE-----\n"));
        let private_key = field(&value, "private_key");
        assert!(private_key.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(private_key.ends_with("-----END RSA PRIVATE KEY-----\n"));
        let (modulus, exponent) = private_key_numbers(private_key);
        assert_eq!(bits(&modulus), 2048);
        assert_eq!(exponent, [1, 0, 1]);

        with_cert(certificate, |cert| {
            assert_eq!(subject_parts(cert), ("USA".into(), "Cloud Foundry".into(), "rosh-root".into()));
            assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());
            assert!(cert.basic_constraints().unwrap().unwrap().critical);
            assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
            let usage = cert.key_usage().unwrap().unwrap().value;
            assert!(usage.key_cert_sign() && usage.crl_sign());
            assert!(!usage.digital_signature() && !usage.key_encipherment());
            assert!(cert.extended_key_usage().unwrap().is_none());
            assert!(cert.subject_alternative_name().unwrap().is_none());
            assert_eq!(subject_key_id(cert), sha1(&modulus));
            assert_eq!(authority_key_id(cert), subject_key_id(cert));
            let validity = cert.validity();
            let not_before = validity.not_before.timestamp();
            assert!((before - 1..=before + 60).contains(&not_before));
            assert_eq!(validity.not_after.timestamp() - not_before, 30 * 24 * 3600);
            assert_eq!(cert.signature_algorithm.algorithm, x509_parser::oid_registry::OID_PKCS1_SHA256WITHRSA);
            let serial = cert.tbs_certificate.serial.to_bytes_be();
            assert!(!serial.is_empty() && serial.len() <= 16, "{serial:?}");
            // The key in the certificate is the one in private_key.
            let x509_parser::public_key::PublicKey::RSA(public) = cert.public_key().parsed().unwrap() else {
                panic!("not RSA");
            };
            let trimmed: Vec<u8> = public.modulus.iter().copied().skip_while(|&b| b == 0).collect();
            assert_eq!(trimmed, modulus);
        });
    }

    #[test]
    fn certificate_key_length_defaults_to_3072() {
        let value = root(&Generator::new(), "{is_ca: true, common_name: big}");
        let (modulus, _) = private_key_numbers(field(&value, "private_key"));
        assert_eq!(bits(&modulus), 3072);
        with_cert(field(&value, "certificate"), |cert| {
            assert_eq!(cert.public_key().parsed().unwrap().key_size(), 3072);
        });
    }

    #[test]
    fn leaf_signed_by_a_ca() {
        let generator = Generator::new();
        let ca = root(&generator, "{is_ca: true, common_name: internalCA, key_length: 2048}");
        let store = HashMap::from([("internal_ca", ca.clone())]);
        let leaf = generate_with(
            &generator,
            "certificate",
            "{ca: internal_ca, common_name: svc.internal, organization: ACME, key_length: 2048,
              alternative_names: [10.0.0.5, '::1', svc.internal, '*.apps.example.com']}",
            &store,
        )
        .unwrap();
        assert_eq!(field(&leaf, "ca"), field(&ca, "certificate"));
        let (modulus, _) = private_key_numbers(field(&leaf, "private_key"));
        assert_eq!(bits(&modulus), 2048);
        let (ca_subject, ca_key_id) =
            with_cert(field(&ca, "certificate"), |c| (c.subject().as_raw().to_vec(), subject_key_id(c)));

        with_cert(field(&leaf, "certificate"), |cert| {
            assert_eq!(subject_parts(cert), ("USA".into(), "ACME".into(), "svc.internal".into()));
            assert_eq!(cert.issuer().as_raw(), ca_subject.as_slice());
            let constraints = cert.basic_constraints().unwrap().expect("basicConstraints");
            assert!(!constraints.value.ca);
            let usage = cert.key_usage().unwrap().unwrap().value;
            assert!(usage.digital_signature() && usage.key_encipherment());
            assert!(!usage.key_cert_sign() && !usage.crl_sign());
            let eku = cert.extended_key_usage().unwrap().expect("EKU").value;
            assert!(eku.server_auth && !eku.client_auth && eku.other.is_empty());
            let names = &cert.subject_alternative_name().unwrap().unwrap().value.general_names;
            assert_eq!(
                names,
                &vec![
                    GeneralName::IPAddress(&[10, 0, 0, 5]),
                    GeneralName::IPAddress(&"::1".parse::<std::net::Ipv6Addr>().unwrap().octets()),
                    GeneralName::DNSName("svc.internal"),
                    GeneralName::DNSName("*.apps.example.com"),
                ]
            );
            assert_eq!(subject_key_id(cert), sha1(&modulus));
            assert_eq!(authority_key_id(cert), ca_key_id);
            let validity = cert.validity();
            assert_eq!(validity.not_after.timestamp() - validity.not_before.timestamp(), 365 * 24 * 3600);
        });
    }

    #[test]
    fn leaf_extended_key_usage_follows_the_option() {
        let generator = Generator::new();
        let ca = root(&generator, "{is_ca: true, common_name: ca, key_length: 2048}");
        let store = HashMap::from([("ca", ca)]);
        for (usages, client, server) in
            [("[client_auth, server_auth]", true, true), ("[client_auth]", true, false), ("[server_auth]", false, true)]
        {
            let leaf = generate_with(
                &generator,
                "certificate",
                &format!("{{ca: ca, common_name: x, key_length: 2048, extended_key_usage: {usages}}}"),
                &store,
            )
            .unwrap();
            with_cert(field(&leaf, "certificate"), |cert| {
                let eku = cert.extended_key_usage().unwrap().unwrap().value;
                assert_eq!((eku.client_auth, eku.server_auth), (client, server), "{usages}");
            });
        }
    }

    #[test]
    fn intermediate_ca_is_signed_by_its_ca() {
        let generator = Generator::new();
        let root_ca = root(&generator, "{is_ca: true, common_name: root, key_length: 2048}");
        let store = HashMap::from([("root_ca", root_ca.clone())]);
        let intermediate = generate_with(
            &generator,
            "certificate",
            "{is_ca: true, ca: root_ca, common_name: intermediate, key_length: 2048}",
            &store,
        )
        .unwrap();
        assert_eq!(field(&intermediate, "ca"), field(&root_ca, "certificate"));
        assert_ne!(field(&intermediate, "certificate"), field(&root_ca, "certificate"));
        let (root_subject, root_key_id) =
            with_cert(field(&root_ca, "certificate"), |c| (c.subject().as_raw().to_vec(), subject_key_id(c)));
        with_cert(field(&intermediate, "certificate"), |cert| {
            assert_eq!(subject_parts(cert).2, "intermediate");
            assert_eq!(cert.issuer().as_raw(), root_subject.as_slice());
            assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
            let usage = cert.key_usage().unwrap().unwrap().value;
            assert!(usage.key_cert_sign() && usage.crl_sign());
            assert_eq!(authority_key_id(cert), root_key_id);
            assert_ne!(subject_key_id(cert), root_key_id);
        });
    }

    #[test]
    fn an_unusable_signing_ca_is_named() {
        let generator = Generator::new();
        let a = root(&generator, "{is_ca: true, common_name: a, key_length: 2048}");
        let b = root(&generator, "{is_ca: true, common_name: b, key_length: 2048}");
        let mut mismatched = a.clone();
        mismatched.as_mapping_mut().unwrap().insert("private_key".into(), b.get("private_key").unwrap().clone());
        let store = HashMap::from([
            ("no_key", yaml(&format!("certificate: |\n  {}", field(&a, "certificate").replace('\n', "\n  ")))),
            ("mismatched", mismatched),
            ("a_password", Value::String("hunter2".into())),
            ("garbled", yaml("{certificate: not a pem, private_key: nor this}")),
        ]);
        let cases = [
            (
                "missing",
                "signing CA 'missing' has no value: generate it (a certificate with is_ca: true) before the certificates it signs, or provide it",
            ),
            ("no_key", "signing CA 'no_key' cannot be used: its value has no private_key"),
            (
                "mismatched",
                "signing CA 'mismatched' cannot be used: its private_key does not belong to its certificate",
            ),
            (
                "a_password",
                "signing CA 'a_password' cannot be used: its value is a string, not a certificate (a map with certificate and private_key)",
            ),
            ("garbled", "signing CA 'garbled' cannot be used: its certificate is not a PEM certificate"),
        ];
        for (ca, message) in cases {
            let options = format!("{{ca: {ca}, common_name: leaf, key_length: 2048}}");
            let err = generate_with(&generator, "certificate", &options, &store).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
    }

    // --- rsa and ssh --------------------------------------------------------------------------

    #[test]
    fn rsa_public_key_belongs_to_the_private_key() {
        let value = generate("rsa", "~").unwrap();
        let keys: Vec<&str> = value.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["private_key", "public_key"]);
        let private_key = field(&value, "private_key");
        let public_key = field(&value, "public_key");
        assert!(public_key.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(public_key.ends_with("-----END PUBLIC KEY-----\n"));
        let (modulus, exponent) = private_key_numbers(private_key);
        assert_eq!(bits(&modulus), 2048);

        let spki_der = der(public_key);
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki_der).unwrap();
        let public = pkcs1::RsaPublicKey::try_from(spki.subject_public_key.data.as_ref()).unwrap();
        assert_eq!(public.modulus.as_bytes(), modulus.as_slice());
        assert_eq!(public.public_exponent.as_bytes(), exponent.as_slice());

        if have("openssl") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("key.pem");
            std::fs::write(&path, private_key).unwrap();
            let out = Command::new("openssl").args(["rsa", "-pubout", "-in"]).arg(&path).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8(out.stdout).unwrap(), public_key);
        }
    }

    #[test]
    fn ssh_key_and_fingerprint() {
        let value = generate("ssh", "~").unwrap();
        let keys: Vec<&str> = value.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, ["private_key", "public_key", "public_key_fingerprint"]);
        let public_key = field(&value, "public_key");
        let fingerprint = field(&value, "public_key_fingerprint");
        assert!(public_key.starts_with("ssh-rsa AAAA") && public_key.ends_with('\n'));
        assert_eq!(public_key.lines().count(), 1);
        assert_eq!(public_key.split(' ').count(), 2, "no comment: {public_key}");

        // The blob is string "ssh-rsa", mpint e, mpint n, and n is the private key's modulus.
        let blob = base64::engine::general_purpose::STANDARD
            .decode(public_key.trim_end().strip_prefix("ssh-rsa ").unwrap())
            .unwrap();
        let mut rest = blob.as_slice();
        let mut next = || {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let item = rest[4..4 + len].to_vec();
            rest = &rest[4 + len..];
            item
        };
        let (name, e, n) = (next(), next(), next());
        assert_eq!(name, b"ssh-rsa");
        let (modulus, exponent) = private_key_numbers(field(&value, "private_key"));
        assert_eq!(e, exponent);
        assert_eq!(n[0], 0, "modulus has its top bit set, so the mpint starts with a zero byte");
        assert_eq!(&n[1..], modulus.as_slice());

        let expected = if have("ssh-keygen") {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("id_rsa.pub");
            std::fs::write(&path, public_key).unwrap();
            let out = Command::new("ssh-keygen").args(["-l", "-E", "md5", "-f"]).arg(&path).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            // "2048 MD5:2e:7a:… no comment (RSA)"
            let text = String::from_utf8(out.stdout).unwrap();
            let word = text.split_whitespace().nth(1).unwrap().to_string();
            word.strip_prefix("MD5:").unwrap().to_string()
        } else {
            let digest = Md5::digest(&blob);
            digest.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
        };
        assert_eq!(fingerprint, expected);
        assert_eq!(fingerprint.len(), 16 * 3 - 1);
    }

    // --- the key pool -------------------------------------------------------------------------

    #[test]
    fn prefetched_keys_are_handed_out_once_and_more_are_made_on_demand() {
        let generator = Generator::new();
        generator.prefetch(&[2048, 2048, 2048, 1234]);
        let keys: Vec<Vec<u8>> = thread::scope(|scope| {
            let handles: Vec<_> = (0..5).map(|_| scope.spawn(|| generator.pool.take(2048).expect("key"))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 5);
        for key in &keys {
            let pair = NewKey::from_pkcs8(key.clone(), 2048).unwrap();
            assert_eq!(bits(pair.public_key().unwrap().modulus.as_bytes()), 2048);
        }
        let state = generator.pool.shared.lock();
        assert!(state.queued.is_empty(), "an unsupported length is not queued");
        assert_eq!(count(&state.in_flight, 2048), 0);
        assert!(state.ready.values().all(Vec::is_empty));
    }

    #[test]
    fn a_ready_key_is_taken_without_waiting_for_new_work() {
        let pool = KeyPool::new();
        pool.prefetch(&[2048]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while pool.shared.lock().ready.get(&2048).is_none_or(Vec::is_empty) {
            assert!(Instant::now() < deadline, "the background key never arrived");
            thread::sleep(Duration::from_millis(10));
        }
        let ready = pool.shared.lock().ready[&2048][0].clone();
        assert_eq!(pool.take(2048).unwrap(), ready);
        assert_ne!(pool.take(2048).unwrap(), ready);
    }

    #[test]
    fn dropping_the_generator_stops_background_work() {
        let generator = Generator::new();
        generator.prefetch(&[2048; 64]);
        let shared = Arc::downgrade(&generator.pool.shared);
        drop(generator);
        // Workers finish the key in hand and exit, releasing the pool's shared state.
        let deadline = Instant::now() + Duration::from_secs(60);
        while shared.upgrade().is_some() {
            assert!(Instant::now() < deadline, "key workers kept running after the drop");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Measures cf-deployment's load (92 certificates at 3072 bits, 38 passwords, one rsa, one
    /// ssh). Run with `cargo test --release -- --ignored --nocapture cf_deployment_scale`.
    #[test]
    #[ignore = "measurement, not a check; run in release"]
    fn cf_deployment_scale() {
        let started = Instant::now();
        for _ in 0..20 {
            generate_key(3072).unwrap();
        }
        println!("one thread: {:.3} s per 3072-bit key", started.elapsed().as_secs_f64() / 20.0);

        let started = Instant::now();
        let pool = KeyPool::new();
        pool.prefetch(&[3072; 92]);
        for _ in 0..92 {
            pool.take(3072).unwrap();
        }
        let pool_time = started.elapsed();
        println!(
            "pool: 92 x 3072-bit keys in {:.2} s on {} threads ({:.3} s/key wall)",
            pool_time.as_secs_f64(),
            thread::available_parallelism().map_or(1, |n| n.get()),
            pool_time.as_secs_f64() / 92.0
        );

        let started = Instant::now();
        let generator = Generator::new();
        let mut definitions: Vec<(&str, String)> =
            vec![("certificate", "{is_ca: true, common_name: internalCA}".into())];
        for i in 0..91 {
            definitions.push((
                "certificate",
                format!("{{ca: ca, common_name: leaf{i}, alternative_names: [leaf{i}.internal]}}"),
            ));
        }
        definitions.extend((0..38).map(|_| ("password", "~".to_string())));
        definitions.push(("rsa", "~".into()));
        definitions.push(("ssh", "~".into()));
        let lengths: Vec<u32> = definitions.iter().filter_map(|(kind, o)| key_length_for(kind, &yaml(o))).collect();
        generator.prefetch(&lengths);
        let mut store: HashMap<&str, Value> = HashMap::new();
        for (kind, options) in &definitions {
            let value = generate_with(&generator, kind, options, &store).unwrap();
            store.entry("ca").or_insert(value);
        }
        println!(
            "generator: {} variables ({} keys) in {:.2} s",
            definitions.len(),
            lengths.len(),
            started.elapsed().as_secs_f64()
        );
    }
}

//! Generated certificates checked by a real peer: the `openssl` CLI verifies the chains rosh
//! builds (root → intermediate → leaf, and a leaf signed straight by the root), refuses them
//! against an unrelated CA, and compares them with certificates bosh generated (cf-deployment's
//! fixture vars store in `../shared/corpus`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use rosh::manifest::generate::Generator;
use serde_yaml_ng::Value;
use tempfile::TempDir;

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test YAML")
}

fn field<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("no {key} in {value:?}"))
}

/// Generates a certificate whose `ca` option, if any, names a value in `store`.
fn certificate(generator: &Generator, options: &str, store: &HashMap<String, Value>) -> Value {
    generator
        .generate("certificate", &yaml(options), &mut |name| store.get(name).cloned())
        .unwrap_or_else(|e| panic!("certificate {options}: {e}"))
}

struct OpenSsl {
    dir: TempDir,
}

impl OpenSsl {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write PEM");
        path
    }

    /// Runs `openssl args…` in the temp dir; returns (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("these tests need the openssl CLI on PATH");
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// Whether `openssl verify args…` accepts the certificate named last.
    fn verifies(&self, args: &[&str]) -> bool {
        let mut full = vec!["verify"];
        full.extend_from_slice(args);
        let (ok, stdout, stderr) = self.run(&full);
        let leaf = args.last().unwrap();
        assert_eq!(ok, stdout.contains(&format!("{leaf}: OK")), "openssl verify: {stdout}{stderr}");
        ok
    }

    /// stdout of a command that must succeed.
    fn text(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.run(args);
        assert!(ok, "openssl {args:?} failed: {stdout}{stderr}");
        stdout
    }
}

#[test]
fn chains_verify_with_openssl_and_fail_against_an_unrelated_ca() {
    let generator = Generator::new();
    generator.prefetch(&[2048; 5]);
    let mut store = HashMap::new();
    let root = certificate(&generator, "{is_ca: true, common_name: rosh-root, key_length: 2048}", &store);
    store.insert("root_ca".to_string(), root.clone());
    let intermediate =
        certificate(&generator, "{is_ca: true, ca: root_ca, common_name: rosh-intermediate, key_length: 2048}", &store);
    store.insert("intermediate_ca".to_string(), intermediate.clone());
    let leaf = certificate(
        &generator,
        "{ca: intermediate_ca, common_name: web.example.com, key_length: 2048,
          alternative_names: [web.example.com]}",
        &store,
    );
    let direct_leaf = certificate(
        &generator,
        "{ca: root_ca, common_name: svc, key_length: 2048,
          alternative_names: [10.0.0.5, svc.example.com],
          extended_key_usage: [client_auth, server_auth]}",
        &store,
    );
    let unrelated = certificate(&generator, "{is_ca: true, common_name: rosh-root, key_length: 2048}", &HashMap::new());

    let openssl = OpenSsl::new();
    openssl.write("root.pem", field(&root, "certificate"));
    openssl.write("intermediate.pem", field(&intermediate, "certificate"));
    openssl.write("leaf.pem", field(&leaf, "certificate"));
    openssl.write("leaf.key", field(&leaf, "private_key"));
    openssl.write("direct.pem", field(&direct_leaf, "certificate"));
    openssl.write("direct-ca.pem", field(&direct_leaf, "ca"));
    openssl.write("unrelated.pem", field(&unrelated, "certificate"));

    assert!(openssl.verifies(&["-CAfile", "root.pem", "intermediate.pem"]));
    assert!(openssl.verifies(&["-CAfile", "root.pem", "-untrusted", "intermediate.pem", "leaf.pem"]));
    assert!(
        !openssl.verifies(&["-CAfile", "root.pem", "leaf.pem"]),
        "a leaf of the intermediate must need the intermediate"
    );
    assert!(openssl.verifies(&["-CAfile", "root.pem", "direct.pem"]));
    assert!(openssl.verifies(&["-CAfile", "direct-ca.pem", "direct.pem"]), "the leaf's own ca field");

    // The same subject name is not enough: the signature must check out.
    assert!(!openssl.verifies(&["-CAfile", "unrelated.pem", "direct.pem"]));
    assert!(!openssl.verifies(&["-CAfile", "unrelated.pem", "-untrusted", "intermediate.pem", "leaf.pem"]));

    // SANs and extended key usage as a TLS peer would check them.
    let direct = ["-CAfile", "root.pem"];
    for (check, expected) in [
        (vec!["-verify_ip", "10.0.0.5"], true),
        (vec!["-verify_ip", "10.0.0.6"], false),
        (vec!["-verify_hostname", "svc.example.com"], true),
        (vec!["-verify_hostname", "other.example.com"], false),
        (vec!["-purpose", "sslserver"], true),
        (vec!["-purpose", "sslclient"], true),
    ] {
        let args: Vec<&str> = direct.iter().copied().chain(check.clone()).chain(["direct.pem"]).collect();
        assert_eq!(openssl.verifies(&args), expected, "{check:?}");
    }
    let chain = ["-CAfile", "root.pem", "-untrusted", "intermediate.pem"];
    for (check, expected) in [(["-purpose", "sslserver"], true), (["-purpose", "sslclient"], false)] {
        let args: Vec<&str> = chain.iter().copied().chain(check).chain(["leaf.pem"]).collect();
        assert_eq!(openssl.verifies(&args), expected, "default usage is server_auth only: {check:?}");
    }

    // The private key is a sound PKCS#1 RSA key and belongs to the certificate.
    assert!(openssl.text(&["rsa", "-check", "-noout", "-in", "leaf.key"]).contains("RSA key ok"));
    assert_eq!(
        openssl.text(&["x509", "-noout", "-pubkey", "-in", "leaf.pem"]),
        openssl.text(&["rsa", "-pubout", "-in", "leaf.key"])
    );
}

/// cf-deployment's fixture vars store, written by bosh.
fn bosh_vars_store() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/cf-deployment/v58.0.0/scripts/fixtures/unit-test-vars-store.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (the shared corpus must sit beside the repo)", path.display()));
    serde_yaml_ng::from_str(&text).expect("vars store YAML")
}

#[test]
fn certificates_look_like_bosh_ones_and_sign_with_a_bosh_made_ca() {
    let bosh = bosh_vars_store();
    let bosh_ca = bosh.get("loggregator_ca").expect("loggregator_ca").clone();
    let bosh_leaf = bosh.get("adapter_rlp_tls").expect("adapter_rlp_tls").clone();
    let store = HashMap::from([("loggregator_ca".to_string(), bosh_ca.clone())]);

    let generator = Generator::new();
    let root = certificate(&generator, "{is_ca: true, common_name: loggregatorCA}", &HashMap::new());
    let leaf = certificate(
        &generator,
        "{ca: loggregator_ca, common_name: ss-adapter-rlp, extended_key_usage: [client_auth, server_auth]}",
        &store,
    );
    assert_eq!(field(&leaf, "ca"), field(&bosh_ca, "certificate"));

    let openssl = OpenSsl::new();
    openssl.write("bosh-ca.pem", field(&bosh_ca, "certificate"));
    openssl.write("bosh-ca.key", field(&bosh_ca, "private_key"));
    openssl.write("bosh-leaf.pem", field(&bosh_leaf, "certificate"));
    openssl.write("root.pem", field(&root, "certificate"));
    openssl.write("leaf.pem", field(&leaf, "certificate"));

    // The fixture CA expired in 2019; only the signature and chain are of interest here.
    assert!(openssl.verifies(&["-no_check_time", "-CAfile", "bosh-ca.pem", "leaf.pem"]));
    assert!(openssl.verifies(&["-no_check_time", "-CAfile", "bosh-ca.pem", "bosh-leaf.pem"]));

    // Same subject layout, extensions and key size as bosh's, for the same options.
    let shape =
        |file: &str, extensions: &str| openssl.text(&["x509", "-noout", "-subject", "-ext", extensions, "-in", file]);
    let extensions = "basicConstraints,keyUsage,extendedKeyUsage,subjectAltName";
    assert_eq!(shape("root.pem", extensions), shape("bosh-ca.pem", extensions));
    assert_eq!(shape("leaf.pem", extensions), shape("bosh-leaf.pem", extensions));
    let key_size = |file: &str| {
        let text = openssl.text(&["x509", "-noout", "-text", "-in", file]);
        text.lines().find(|l| l.contains("Public-Key:")).unwrap_or_default().trim().to_string()
    };
    assert_eq!(key_size("root.pem"), "Public-Key: (3072 bit)");
    assert_eq!(key_size("root.pem"), key_size("bosh-ca.pem"));

    // Key identifiers link up across bosh- and rosh-made certificates: the leaf's AKI is the
    // bosh CA's SKI, and bosh's own SKI follows the rule rosh uses (SHA-1 of the modulus).
    let key_id = |file: &str, extension: &str| {
        let text = openssl.text(&["x509", "-noout", "-ext", extension, "-in", file]);
        text.lines().nth(1).expect("identifier line").trim().replace("keyid:", "")
    };
    assert_eq!(key_id("leaf.pem", "authorityKeyIdentifier"), key_id("bosh-ca.pem", "subjectKeyIdentifier"));
    let modulus = openssl.text(&["rsa", "-noout", "-modulus", "-in", "bosh-ca.key"]);
    let modulus = modulus.trim().strip_prefix("Modulus=").expect("modulus");
    let bytes: Vec<u8> =
        (0..modulus.len()).step_by(2).map(|i| u8::from_str_radix(&modulus[i..i + 2], 16).expect("hex")).collect();
    std::fs::write(openssl.dir.path().join("modulus.bin"), bytes).expect("write modulus");
    let digest = openssl.text(&["dgst", "-sha1", "-r", "modulus.bin"]);
    let digest = digest.split_whitespace().next().expect("digest").to_uppercase();
    let colon_separated: Vec<String> = (0..digest.len()).step_by(2).map(|i| digest[i..i + 2].to_string()).collect();
    assert_eq!(key_id("bosh-ca.pem", "subjectKeyIdentifier"), colon_separated.join(":"));
}

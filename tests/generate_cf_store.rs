//! A fresh vars store for cf-deployment v58: every one of its variables is generated, every
//! `((x.ca))`, `((x.certificate))`, `((x.private_key))` reference resolves, and every generated
//! certificate verifies with the real `openssl verify` against its chain (including the
//! intermediate `diego_instance_identity_ca`, signed by `application_ca`).

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{cf_deployment, parse, rosh_ok};
use serde_yaml_ng::Value;

#[test]
fn fresh_store_generates_everything_and_chains_verify() {
    let dir = cf_deployment("v58.0.0");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store.yml");
    let store_arg = store.display().to_string();
    let out = rosh_ok(
        &["int", "cf-deployment.yml", "-v", "system_domain=foo.bar.com", "--vars-store", &store_arg, "--var-errs"],
        &dir,
    );
    assert!(!out.contains("(("), "every reference resolved");
    let doc = parse(&out);
    assert!(
        doc.get("variables").is_none_or(|v| v.as_sequence().is_some_and(|s| s.is_empty())),
        "found definitions removed"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the vars store holds secrets");
    }

    let manifest = parse(&std::fs::read_to_string(dir.join("cf-deployment.yml")).unwrap());
    let defs = manifest["variables"].as_sequence().unwrap();
    let stored = parse(&std::fs::read_to_string(&store).unwrap());
    let stored = stored.as_mapping().unwrap();
    assert_eq!(defs.len(), 132);
    assert_eq!(stored.len(), 132, "one stored value per definition");

    let ca_of: HashMap<&str, Option<&str>> = defs
        .iter()
        .filter(|d| d["type"] == "certificate")
        .map(|d| (d["name"].as_str().unwrap(), d["options"].get("ca").and_then(Value::as_str)))
        .collect();
    assert_eq!(ca_of.len(), 92);
    assert_eq!(ca_of["diego_instance_identity_ca"], Some("application_ca"), "the corpus has the intermediate CA");

    for def in defs {
        let name = def["name"].as_str().unwrap();
        let value = &stored[name];
        match def["type"].as_str().unwrap() {
            "password" => assert!(value.as_str().is_some_and(|p| p.len() >= 20), "{name}"),
            "rsa" => {
                assert!(value["private_key"].as_str().unwrap().contains("BEGIN RSA PRIVATE KEY"), "{name}");
                assert!(value["public_key"].as_str().unwrap().contains("BEGIN PUBLIC KEY"), "{name}");
            }
            "ssh" => {
                assert!(value["public_key"].as_str().unwrap().starts_with("ssh-rsa "), "{name}");
                assert_eq!(value["public_key_fingerprint"].as_str().unwrap().split(':').count(), 16, "{name}");
            }
            "certificate" => {
                for key in ["ca", "certificate", "private_key"] {
                    assert!(value[key].as_str().is_some_and(|s| s.starts_with("-----BEGIN")), "{name}.{key}");
                }
            }
            other => panic!("unexpected type {other}"),
        }
    }

    // Verify every certificate against its chain: the root as trust anchor, CAs in between as
    // untrusted intermediates.
    let pem_dir = tmp.path().join("pem");
    std::fs::create_dir(&pem_dir).unwrap();
    let cert_file = |name: &str| {
        let path = pem_dir.join(format!("{name}.pem"));
        if !path.exists() {
            std::fs::write(&path, stored[name]["certificate"].as_str().unwrap()).unwrap();
        }
        path
    };
    let mut failures = Vec::new();
    for (name, ca) in &ca_of {
        let mut chain = Vec::new();
        let mut issuer = *ca;
        while let Some(ca_name) = issuer {
            chain.push(ca_name);
            issuer = ca_of[ca_name];
        }
        let Some(root) = chain.pop() else {
            continue; // a self-signed root: nothing above it to verify against
        };
        let mut cmd = Command::new("openssl");
        cmd.arg("verify").arg("-CAfile").arg(cert_file(root));
        if !chain.is_empty() {
            let bundle = pem_dir.join(format!("{name}-untrusted.pem"));
            let text: String = chain.iter().map(|c| stored[*c]["certificate"].as_str().unwrap().to_string()).collect();
            std::fs::write(&bundle, text).unwrap();
            cmd.arg("-untrusted").arg(bundle);
        }
        let out = cmd.arg(cert_file(name)).output().expect("openssl is installed (see .ci/run)");
        if !out.status.success() {
            failures.push(format!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        // The stored `ca` is the certificate of the CA that signed it.
        assert_eq!(stored[*name]["ca"], stored[ca.unwrap()]["certificate"], "{name}.ca");
    }
    // The intermediate is itself a CA (verified above against application_ca).
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert_file("diego_instance_identity_ca"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"), "diego_instance_identity_ca is a CA");
    assert!(failures.is_empty(), "openssl verify failed:\n{}", failures.join("\n"));

    // A second run finds everything in the store and changes nothing.
    let before = std::fs::read(&store).unwrap();
    rosh_ok(
        &["int", "cf-deployment.yml", "-v", "system_domain=foo.bar.com", "--vars-store", &store_arg, "--var-errs"],
        &dir,
    );
    assert_eq!(std::fs::read(&store).unwrap(), before, "nothing regenerated");
}

//! `rosh interpolate` against real manifests and ops files from cf-deployment and bosh-deployment
//! (../shared/corpus), run through the real binary the way an operator would.

mod common;

use common::{cf_deployment, corpus, parse, rosh, rosh_ok, stderr};
use serde_yaml_ng::Value;

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
}

#[test]
fn scale_to_one_az_gives_seventeen_single_instance_groups_in_z1() {
    let dir = cf_deployment("v58.0.0");
    let out = rosh_ok(&["int", "cf-deployment.yml", "-o", "operations/scale-to-one-az.yml"], &dir);
    let doc = parse(&out);
    let groups = doc["instance_groups"].as_sequence().unwrap();
    assert_eq!(groups.len(), 17);
    for group in groups {
        let name = group["name"].as_str().unwrap();
        assert_eq!(group["instances"], Value::from(1), "{name}");
        assert_eq!(strs(&group["azs"]), ["z1"], "{name}");
    }
}

#[test]
fn output_keeps_the_input_key_order() {
    let dir = cf_deployment("v58.0.0");
    let doc = parse(&rosh_ok(&["int", "cf-deployment.yml"], &dir));
    let keys: Vec<&str> = doc.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        keys,
        ["name", "manifest_version", "update", "addons", "instance_groups", "variables", "releases", "stemcells"]
    );
    let api = doc["instance_groups"].as_sequence().unwrap().iter().find(|g| g["name"] == "api").unwrap();
    let api_keys: Vec<&str> = api.as_mapping().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(&api_keys[..3], ["name", "azs", "instances"]);
}

#[test]
fn use_external_dbs_with_its_example_vars() {
    // Regression: the ops file uses YAML anchors; each alias must become an independent copy.
    let dir = cf_deployment("v58.0.0");
    let out = rosh_ok(
        &[
            "int",
            "cf-deployment.yml",
            "-o",
            "operations/use-external-dbs.yml",
            "-l",
            "operations/example-vars-files/vars-use-external-dbs.yml",
        ],
        &dir,
    );
    let doc = parse(&out);
    let names: Vec<&str> =
        doc["instance_groups"].as_sequence().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(!names.contains(&"database"), "the internal database group is removed: {names:?}");
    assert!(!out.contains("((external_"), "every external_* variable is interpolated");
    let vars_file =
        std::fs::read_to_string(dir.join("operations/example-vars-files/vars-use-external-dbs.yml")).unwrap();
    let vars = parse(&vars_file);
    let cc_host = vars["external_cc_database_address"].as_str().unwrap();
    assert!(out.contains(cc_host), "the cloud controller database address {cc_host} appears");
}

#[test]
fn path_flag_prints_the_value_raw() {
    let dir = cf_deployment("v58.0.0");
    let out = rosh_ok(
        &[
            "int",
            "cf-deployment.yml",
            "-o",
            "operations/use-latest-stemcell.yml",
            "--path",
            "/stemcells/alias=default/version",
        ],
        &dir,
    );
    assert_eq!(out, "latest\n");
}

#[test]
fn vars_flags_precedence_and_yaml_values() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("m.yml"), "a: ((a))\nb: ((b))\nc: ((c))\nd: ((d))\nlist: ((ips))\n").unwrap();
    std::fs::write(d.join("l1.yml"), "a: l1\nb: l1\nc: l1\nd: l1\n").unwrap();
    std::fs::write(d.join("l2.yml"), "a: l2\nb: l2\nc: l2\n").unwrap();
    std::fs::write(d.join("contents.txt"), "from-file\n").unwrap();
    std::fs::write(d.join("store.yml"), "a: store\nb: store\nc: store\nd: store\n").unwrap();
    let out = rosh_ok(
        &[
            "int",
            "m.yml",
            "--vars-store",
            "store.yml",
            "-l",
            "l1.yml",
            "-l",
            "l2.yml",
            "--var-file",
            "b=contents.txt",
            "-v",
            "a=kv",
            "-v",
            "ips=[10.0.16.4,10.0.47.5]",
        ],
        d,
    );
    let doc = parse(&out);
    assert_eq!(doc["a"], Value::from("kv"));
    assert_eq!(doc["b"], Value::from("from-file\n"));
    assert_eq!(doc["c"], Value::from("l2"));
    assert_eq!(doc["d"], Value::from("l1"));
    assert_eq!(strs(&doc["list"]), ["10.0.16.4", "10.0.47.5"]);
}

#[test]
fn bosh_deployment_director_with_aws_uaa_credhub_and_jumpbox() {
    let dir = corpus().join("bosh-deployment");
    let out = rosh_ok(
        &[
            "int",
            "bosh.yml",
            "-o",
            "aws/cpi.yml",
            "-o",
            "uaa.yml",
            "-o",
            "credhub.yml",
            "-o",
            "jumpbox-user.yml",
            "-v",
            "director_name=bosh-1",
            "-v",
            "internal_cidr=10.0.0.0/24",
            "-v",
            "internal_gw=10.0.0.1",
            "-v",
            "internal_ip=10.0.0.6",
        ],
        &dir,
    );
    let doc = parse(&out);
    let bosh = &doc["instance_groups"][0];
    let jobs: Vec<&str> = bosh["jobs"].as_sequence().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    for job in ["director", "aws_cpi", "uaa", "credhub", "user_add"] {
        assert!(jobs.contains(&job), "{job} in {jobs:?}");
    }
    assert_eq!(bosh["networks"][0]["static_ips"][0], Value::from("10.0.0.6"));
    assert_eq!(doc["name"], Value::from("bosh"));
    assert!(out.contains("director_name: bosh-1") || out.contains("name: bosh-1"), "director name interpolated");
}

#[test]
fn vsphere_resource_pool_ops_use_variables_inside_their_paths() {
    // The op paths contain `name=((vcenter_dc))` and a `((vcenter_cluster))` key: they match the
    // raw text before interpolation, and the key is interpolated afterwards.
    let dir = corpus().join("bosh-deployment");
    let out = rosh_ok(
        &[
            "int",
            "bosh.yml",
            "-o",
            "vsphere/cpi.yml",
            "-o",
            "vsphere/resource-pool.yml",
            "-v",
            "vcenter_dc=dc1",
            "-v",
            "vcenter_cluster=cl1",
            "-v",
            "vcenter_rp=rp1",
            "-v",
            "vcenter_ip=10.0.0.2",
            "-v",
            "vcenter_ds=ds",
            "-v",
            "vcenter_disks=disks",
            "-v",
            "vcenter_vms=vms",
            "-v",
            "vcenter_templates=templates",
            "-v",
            "network_name=net",
        ],
        &dir,
    );
    let doc = parse(&out);
    let dc = &doc["cloud_provider"]["properties"]["vcenter"]["datacenters"][0];
    assert_eq!(dc["name"], Value::from("dc1"));
    assert_eq!(dc["clusters"][0]["cl1"]["resource_pool"], Value::from("rp1"));
    let bosh = &doc["instance_groups"][0];
    assert_eq!(
        bosh["properties"]["vcenter"]["datacenters"][0]["clusters"][0]["cl1"]["resource_pool"],
        Value::from("rp1")
    );
}

#[test]
fn missing_path_without_optional_names_op_index_path_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("ops.yml"),
        "- type: replace\n  path: /name\n  value: renamed\n- type: replace\n  path: /instance_groups/name=nope/instances\n  value: 3\n",
    )
    .unwrap();
    let manifest = cf_deployment("v58.0.0").join("cf-deployment.yml");
    let out = rosh(&["int", manifest.to_str().unwrap(), "-o", "ops.yml"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("ops.yml: operation [1] (replace /instance_groups/name=nope/instances) failed"), "{err}");
    assert!(
        err.contains(
            "Expected to find exactly one matching array item for path '/instance_groups/name=nope' but found 0"
        ),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn custom_op_error_text_is_shown_with_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("needs-first.yml"),
        "- type: replace\n  path: /instance_groups/name=api/jobs/name=not-there/properties/x\n  value: 1\n  error: apply use-foo.yml first\n",
    )
    .unwrap();
    let manifest = cf_deployment("v58.0.0").join("cf-deployment.yml");
    let out = rosh(&["int", manifest.to_str().unwrap(), "-o", "needs-first.yml"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("needs-first.yml: operation [0]"), "{err}");
    assert!(err.contains("apply use-foo.yml first: Expected to find exactly one matching array item"), "{err}");
}

#[test]
fn undefined_variables_with_var_errs_name_the_path_and_the_file_that_introduced_them() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.yml"), "name: ((deployment))\nprops:\n  a: ((from_manifest))\n").unwrap();
    std::fs::write(
        tmp.path().join("ops.yml"),
        "- {type: replace, path: /props/b?, value: ((from_ops))}\n- {type: replace, path: /variables?/-, value: {name: ops_pw, type: password}}\n",
    )
    .unwrap();
    let out = rosh(&["int", "m.yml", "-o", "ops.yml", "--var-errs", "-v", "deployment=d"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("m.yml: Expected to find variables:"), "{err}");
    assert!(err.contains("- from_manifest: used at props.a (from m.yml)"), "{err}");
    assert!(err.contains("- from_ops: used at props.b (from ops.yml operation [0])"), "{err}");
    assert!(err.contains("- ops_pw: used at variables[0] (from ops.yml operation [1])"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn spiff_and_syntax_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("bad.yml"), "a: [1, 2\nb: c\n").unwrap();
    let out = rosh(&["int", "bad.yml"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.yml: line "), "{}", stderr(&out));
}

#[test]
fn empty_and_comment_only_ops_files_are_no_ops() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.yml"), "a: 1\n").unwrap();
    std::fs::write(tmp.path().join("empty.yml"), "").unwrap();
    std::fs::write(tmp.path().join("comments.yml"), "# nothing to do\n---\n").unwrap();
    let out = rosh_ok(&["int", "m.yml", "-o", "empty.yml", "-o", "comments.yml"], tmp.path());
    assert_eq!(out, "a: 1\n");
}

#[test]
fn json_output() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("m.yml"), "b: 1\na: [x, ((v))]\n").unwrap();
    let out = rosh_ok(&["int", "m.yml", "--json", "-v", "v=2"], tmp.path());
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json, serde_json::json!({"b": 1, "a": ["x", 2]}));
    assert!(out.find("\"b\"").unwrap() < out.find("\"a\"").unwrap(), "key order kept");
}

#[test]
fn stdin_and_vars_env() {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rosh"))
        .args(["int", "-", "--vars-env", "ROSHTEST"])
        .env("ROSHTEST_port", "8443")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"port: ((port))\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "port: 8443\n");
}

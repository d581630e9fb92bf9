//! The compatibility gate's rules, through `rosh::compat::check` with the table rosh ships (made
//! from the corpus in ../shared/corpus/compatibility/): tested and stated pairs pass, an
//! untested pair warns with the nearest tested versions, a declared-incompatible set is an
//! error that `skip_compat_check` turns into a bypassed one, and a release's `requires:`, the
//! stemcell and CPI API versions and compiled packages are checked as docs/compat.md says.

use std::collections::BTreeMap;

use rosh::compat::{
    self, CompatInput, CompatReport, CompiledInput, GroupInput, ReleaseInput, Requires, Rule, StemcellInput, Table,
};

const JAMMY: (&str, &str) = ("bosh-aws-xen-hvm-ubuntu-jammy-go_agent", "1.406");

fn stemcell(name: &str, os: &str, version: &str, api: Option<u32>) -> StemcellInput {
    StemcellInput {
        name: name.into(),
        os: os.into(),
        version: version.into(),
        api_version: api,
        formats: vec!["aws-light".into()],
    }
}

fn cpi(api_version: u32) -> rosh_cpi::Info {
    rosh_cpi::Info { stemcell_formats: vec!["aws-light".into(), "aws-raw".into()], api_version }
}

/// A deployment of `releases` (name, version, requires), one group per release on the jammy
/// stemcell through CPI `aws` (API v2).
struct Case {
    releases: Vec<ReleaseInput>,
    stemcells: Vec<StemcellInput>,
    groups: Vec<GroupInput>,
    cpis: BTreeMap<String, rosh_cpi::Info>,
    compiled: Vec<CompiledInput>,
    table: Table,
    skip: bool,
}

impl Case {
    fn new(releases: &[(&str, &str)]) -> Case {
        Case {
            releases: releases
                .iter()
                .map(|(n, v)| ReleaseInput { name: n.to_string(), version: v.to_string(), requires: None })
                .collect(),
            stemcells: vec![stemcell(JAMMY.0, "ubuntu-jammy", JAMMY.1, Some(3))],
            groups: releases
                .iter()
                .map(|(n, _)| GroupInput {
                    name: format!("{n}-group"),
                    stemcell: (JAMMY.0.into(), JAMMY.1.into()),
                    releases: vec![n.to_string()],
                    cpis: vec!["aws".into()],
                })
                .collect(),
            cpis: BTreeMap::from([("aws".to_string(), cpi(2))]),
            compiled: Vec::new(),
            table: Table::shipped(),
            skip: false,
        }
    }

    fn requires(mut self, release: &str, yaml: &str) -> Case {
        let requires: Requires = compat::requires::parse(yaml, "config/requires.yml").unwrap();
        self.releases.iter_mut().find(|r| r.name == release).unwrap().requires = Some(requires);
        self
    }

    fn check(&self) -> CompatReport {
        compat::check(&CompatInput {
            releases: self.releases.clone(),
            stemcells: self.stemcells.clone(),
            groups: self.groups.clone(),
            cpis: self.cpis.clone(),
            compiled: self.compiled.clone(),
            rosh_version: env!("CARGO_PKG_VERSION").to_string(),
            table: &self.table,
            skip_compat_check: self.skip,
        })
    }
}

fn messages(findings: &[compat::Finding]) -> String {
    findings.iter().map(|f| format!("{:?}: {}", f.rule, f.message)).collect::<Vec<_>>().join("\n")
}

#[test]
fn cf_238_with_diego_0_1476_0_is_a_tested_pair() {
    let report = Case::new(&[("cf", "238"), ("diego", "0.1476.0")]).check();
    assert!(report.ok() && report.warnings.is_empty(), "{report:#?}");
    assert_eq!(report.passed.len(), 1);
    assert_eq!(report.passed[0].rule, Rule::Tested);
    assert!(
        report.passed[0].message.starts_with("cf 238 with diego 0.1476.0: tested together (diego-cf-compatibility")
    );
}

#[test]
fn cf_207_with_diego_0_1099_0_passes_as_the_maintainers_stated_it() {
    // Spelled as operators do: a `v` and a dropped `.0` are the same versions.
    let report = Case::new(&[("cf", "v207"), ("diego", "0.1099")]).check();
    assert!(report.ok() && report.warnings.is_empty(), "{report:#?}");
    assert!(report.passed[0].message.contains("cf-release/issues/665"), "{}", report.passed[0].message);
}

#[test]
fn cf_207_with_diego_1_0_0_warns_with_the_nearest_tested_pairs() {
    let report = Case::new(&[("cf", "207"), ("diego", "1.0.0")]).check();
    assert!(report.ok(), "an untested pair is no error: {report:#?}");
    assert_eq!(report.warnings.len(), 1, "{}", messages(&report.warnings));
    let warning = &report.warnings[0];
    assert_eq!(warning.rule, Rule::Untested);
    let text = &warning.message;
    assert!(text.starts_with("cf 207 with diego 1.0.0 is not a tested pair"), "{text}");
    // cf 207's neighbours in the table: itself (stated) and 208 (nothing older is recorded).
    assert!(text.contains("cf 207 → diego 0.1099.0; cf 208 → diego 0.1198.0."), "{text}");
    // diego 1.0.0's neighbours: 0.1489.0 (cf 247) and 1.1.0 (cf 248).
    assert!(text.contains("diego 0.1489.0 → cf 247; diego 1.1.0 → cf 248."), "{text}");
}

#[test]
fn releases_the_table_never_names_together_are_not_checked() {
    let report = Case::new(&[("cf", "207"), ("nginx", "1.2.3"), ("my-own", "1")]).check();
    assert!(report.ok() && report.warnings.is_empty() && report.passed.is_empty(), "{report:#?}");
}

#[test]
fn a_declared_incompatible_pair_is_an_error_unless_bypassed() {
    let mut case = Case::new(&[("cf", "207"), ("diego", "1.0.0"), ("etcd", "57")]);
    let operator = "incompatible:\n- releases: {cf: '<= 220', diego: '>= 1.0.0'}\n  reason: diego 1.x needs a newer cloud controller\n";
    case.table.merge(Table::parse(operator, "compatibility.yml").unwrap());
    let report = case.check();
    assert!(!report.ok());
    assert_eq!(report.errors.len(), 1, "{}", messages(&report.errors));
    assert_eq!(report.errors[0].rule, Rule::Incompatible);
    assert_eq!(
        report.errors[0].message,
        "cf 207 with diego 1.0.0 are declared incompatible (the compatibility table lists cf <= 220, diego >= 1.0.0: \
         diego 1.x needs a newer cloud controller)"
    );
    assert!(report.error_message().unwrap().contains("--skip-compat-check"));
    // The untested pairs still warn: cf 207 was tested with neither diego 1.0.0 nor etcd 57.
    let warned: Vec<&str> = report.warnings.iter().map(|w| &w.message[..w.message.find(" is not").unwrap()]).collect();
    assert_eq!(warned, ["cf 207 with diego 1.0.0", "cf 207 with etcd 57"]);

    // Versions outside the declared ranges are not affected.
    let mut fine = Case::new(&[("cf", "238"), ("diego", "1.0.0")]);
    fine.table = case.table.clone();
    assert!(fine.check().ok());

    case.skip = true;
    let report = case.check();
    assert!(report.ok() && report.errors.is_empty());
    assert_eq!(report.bypassed.len(), 1);
    assert_eq!(report.bypassed[0].rule, Rule::Incompatible);
}

#[test]
fn a_release_requiring_a_newer_stemcell_is_an_error() {
    let case = Case::new(&[("cf", "238"), ("diego", "0.1476.0")])
        .requires("diego", "stemcells:\n- os: ubuntu-jammy\n  version: '>= 1.500'\n- os: ubuntu-noble\n");
    let report = case.check();
    assert_eq!(report.errors.len(), 1, "{report:#?}");
    assert_eq!(report.errors[0].rule, Rule::StemcellRequires);
    assert_eq!(
        report.errors[0].message,
        "release diego/0.1476.0 requires a stemcell ubuntu-jammy >= 1.500 or ubuntu-noble, but instance groups \
         diego-group run its jobs on stemcell bosh-aws-xen-hvm-ubuntu-jammy-go_agent/1.406 (ubuntu-jammy 1.406)"
    );
    // The same requirement met.
    let met = Case::new(&[("diego", "0.1476.0")])
        .requires("diego", "stemcells:\n- os: ubuntu-jammy\n  version: '~> 1.400'\n");
    assert!(met.check().ok());
    // Only the groups running the release's jobs count: cf's group is on jammy too, but cf
    // declares nothing, and diego's requirement is not checked against cf's group.
    let mut other =
        Case::new(&[("cf", "238"), ("diego", "0.1476.0")]).requires("diego", "stemcells:\n- os: ubuntu-jammy\n");
    other.stemcells.push(stemcell("noble", "ubuntu-noble", "1.10", Some(3)));
    other.groups[0].stemcell = ("noble".into(), "1.10".into());
    assert!(other.check().ok(), "{:#?}", other.check());
}

#[test]
fn a_release_requiring_other_releases_and_rosh() {
    let needs = "rosh: '>= 99'\nreleases:\n- name: diego\n  version: '~> 0.1476'\n- name: garden-linux\n- name: etcd\n  optional: true\n  version: '> 60'\n";
    let report = Case::new(&[("cf", "238"), ("diego", "1.0.0")]).requires("cf", needs).check();
    let errors = messages(&report.errors);
    assert_eq!(report.errors.len(), 3, "{errors}");
    assert!(
        errors.contains(&format!(
            "RoshVersion: release cf/238 requires rosh >= 99, but this is rosh {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{errors}"
    );
    assert!(
        errors.contains(
            "ReleaseRequires: release cf/238 requires release diego ~> 0.1476, but the deployment uses diego/1.0.0"
        ),
        "{errors}"
    );
    assert!(errors.contains("ReleaseRequires: release cf/238 requires release garden-linux (any version), which the deployment does not use"), "{errors}");

    let report = Case::new(&[("cf", "238"), ("diego", "0.1476.0"), ("garden-linux", "0.338.0"), ("etcd", "57")])
        .requires("cf", "releases:\n- name: etcd\n  optional: true\n  version: '> 60'\n")
        .check();
    assert_eq!(
        messages(&report.errors),
        "ReleaseRequires: release cf/238 requires release etcd > 60, but the deployment uses etcd/57"
    );
}

#[test]
fn the_stemcell_api_must_be_one_the_cpi_speaks() {
    let mut case = Case::new(&[("cf", "238")]);
    assert!(case.check().ok(), "stemcell API 3 on a CPI of API 2");
    case.cpis.insert("aws".into(), cpi(1));
    let report = case.check();
    assert_eq!(report.errors.len(), 1, "{report:#?}");
    assert_eq!(report.errors[0].rule, Rule::CpiApiVersion);
    let text = &report.errors[0].message;
    assert!(
        text.starts_with("stemcell bosh-aws-xen-hvm-ubuntu-jammy-go_agent/1.406 has stemcell API version 3"),
        "{text}"
    );
    assert!(
        text.contains("CPI `aws` speaks CPI API version 1 only") && text.contains("instance groups cf-group"),
        "{text}"
    );
    // A stemcell of API v1 (or none declared) on that CPI is fine.
    case.stemcells[0].api_version = None;
    assert!(case.check().ok());
    // Formats the CPI does not take.
    case.stemcells[0].formats = vec!["openstack-raw".into()];
    let report = case.check();
    assert_eq!(report.errors[0].rule, Rule::StemcellFormat, "{report:#?}");
    assert!(report.errors[0].message.contains("comes in formats openstack-raw but CPI `aws` takes aws-light, aws-raw"));
    // A stemcell API this rosh does not know yet is a warning.
    case.stemcells[0].formats = vec!["aws-light".into()];
    case.stemcells[0].api_version = Some(4);
    case.cpis.insert("aws".into(), cpi(2));
    let report = case.check();
    assert!(report.ok() && report.warnings[0].message.contains("newer than this rosh knows"), "{report:#?}");
}

#[test]
fn compiled_packages_only_on_the_same_os_and_major_version() {
    let compiled = |builds: &[(&str, &str)]| CompiledInput {
        group: "cf-group".into(),
        release: "cf".into(),
        package: "nginx".into(),
        has_source: false,
        compiled_for: builds.iter().map(|(o, v)| (o.to_string(), v.to_string())).collect(),
    };
    let mut case = Case::new(&[("cf", "238")]);
    case.stemcells[0] = stemcell(JAMMY.0, "ubuntu-jammy", "1.500", Some(3));
    case.groups[0].stemcell = (JAMMY.0.into(), "1.500".into());

    case.compiled = vec![compiled(&[("ubuntu-jammy", "1.406")])];
    assert!(case.check().ok(), "same OS and major version: {:#?}", case.check());

    case.compiled = vec![compiled(&[("ubuntu-jammy", "2.1"), ("ubuntu-noble", "1.500")])];
    let report = case.check();
    assert_eq!(report.errors.len(), 1, "{report:#?}");
    assert_eq!(report.errors[0].rule, Rule::CompiledPackage);
    assert_eq!(
        report.errors[0].message,
        "instance group cf-group: package nginx of release cf has no source and is compiled only for ubuntu-jammy/2.1, \
         ubuntu-noble/1.500; it cannot run on stemcell bosh-aws-xen-hvm-ubuntu-jammy-go_agent/1.500 (ubuntu-jammy 1.500): \
         a compiled package needs the stemcell's OS and major version"
    );
    // With its source uploaded it is compiled for the stemcell instead.
    case.compiled[0].has_source = true;
    assert!(case.check().ok());
}

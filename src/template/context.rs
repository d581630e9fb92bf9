//! What a template sees: the `spec` object (the instance, its networks, its job and release,
//! the VM root) and the JSON shape of a consumed link. Built once per rendered job from the
//! typed desired-state values; the helpers in [`super::helpers`] read the links and properties,
//! templates read `spec` as data.
//!
//! Decision: absent optional values (`az` on an AZ-less instance, `ip` on a dynamic network not
//! yet assigned) are JSON `null`, never missing keys, so that `{{spec.az}}` prints nothing
//! instead of failing strict mode: a template can always name every documented key.

use serde_json::{Map, Value, json};

use crate::plan::desired::{DesiredInstance, DesiredJob, ResolvedLink};

/// The values a job is rendered from, besides its template sources.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    pub deployment: String,
    pub instance: &'a DesiredInstance,
    pub job: &'a DesiredJob,
    /// The version of `job.release` in use.
    pub release_version: String,
    /// The VM's root directory: `/var/vcap` on cloud VMs, the VM directory on local ones.
    pub root: String,
    /// The instance's persistent disk in MB, 0 when it has none.
    pub persistent_disk_mb: u64,
}

impl RenderContext<'_> {
    /// The `spec` object templates read (`{{spec.index}}`, `{{spec.networks.default.ip}}`…).
    pub fn spec(&self) -> Value {
        let instance = self.instance;
        let mut networks = Map::new();
        for network in &instance.networks {
            networks.insert(
                network.name.clone(),
                json!({
                    "type": network.kind,
                    "ip": network.ip,
                    "netmask": network.netmask,
                    "gateway": network.gateway,
                    "dns": network.dns,
                    "default": network.default,
                }),
            );
        }
        json!({
            "name": instance.group,
            "id": instance.id,
            "index": instance.index,
            "az": instance.az,
            "deployment": self.deployment,
            "bootstrap": instance.bootstrap,
            "address": instance.address(),
            "ip": instance.address(),
            "networks": networks,
            "persistent_disk": self.persistent_disk_mb,
            "release": {"name": self.job.release, "version": self.release_version},
            "job": {"name": self.job.name},
            "root": self.root,
        })
    }
}

/// A consumed link as templates see it (`(link "db")`).
pub fn link_value(link: &ResolvedLink) -> Value {
    let instances: Vec<Value> = link
        .instances
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "id": i.id,
                "index": i.index,
                "az": i.az,
                "address": i.address,
                "bootstrap": i.bootstrap,
            })
        })
        .collect();
    json!({
        "name": link.name,
        "type": link.kind,
        "address": link.instances.first().map(|i| i.address.clone()),
        "properties": link.properties,
        "instances": instances,
        "group": link.group,
        "job": link.job,
        "deployment": link.deployment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::desired::{InstanceNetwork, LinkInstance};

    fn network(name: &str, ip: Option<&str>, default: &[&str]) -> InstanceNetwork {
        InstanceNetwork {
            name: name.to_string(),
            kind: "manual".to_string(),
            ip: ip.map(str::to_string),
            netmask: Some("255.255.255.0".to_string()),
            gateway: Some("10.0.0.1".to_string()),
            dns: vec![],
            default: default.iter().map(|d| d.to_string()).collect(),
            cloud_properties: json!({}),
            static_ip: false,
        }
    }

    #[test]
    fn spec_names_the_instance_its_networks_and_release() {
        let instance = DesiredInstance {
            group: "web".into(),
            index: 2,
            id: "abc".into(),
            az: None,
            bootstrap: false,
            networks: vec![network("backend", Some("10.0.1.5"), &[]), network("front", Some("10.0.0.5"), &["gateway"])],
            cloud_properties: json!({}),
            cpi: None,
        };
        let job = DesiredJob {
            name: "nginx".into(),
            release: "web-rel".into(),
            spec: crate::release::manifest::parse("name: nginx\n", "spec").unwrap(),
            fingerprint: String::new(),
            sha256: String::new(),
            properties: json!({}),
            links: Default::default(),
        };
        let ctx = RenderContext {
            deployment: "d".into(),
            instance: &instance,
            job: &job,
            release_version: "3".into(),
            root: "/var/vcap".into(),
            persistent_disk_mb: 0,
        };
        let spec = ctx.spec();
        assert_eq!(spec["address"], "10.0.0.5", "the gateway network's IP, not the first network's");
        assert_eq!(spec["ip"], spec["address"]);
        assert_eq!(spec["az"], Value::Null);
        assert_eq!(spec["networks"]["backend"]["ip"], "10.0.1.5");
        assert_eq!(spec["release"], json!({"name": "web-rel", "version": "3"}));
        assert_eq!(spec["job"]["name"], "nginx");
        assert_eq!(spec["index"], 2);
    }

    #[test]
    fn a_link_without_instances_has_no_address() {
        let mut link = ResolvedLink {
            name: "db".into(),
            kind: "postgres".into(),
            group: "db".into(),
            job: "pg".into(),
            deployment: "d".into(),
            properties: json!({"port": 5432}),
            instances: vec![],
        };
        assert_eq!(link_value(&link)["address"], Value::Null);
        link.instances.push(LinkInstance {
            name: "db".into(),
            id: "x".into(),
            index: 0,
            az: Some("z1".into()),
            address: "10.0.0.9".into(),
            bootstrap: true,
        });
        let value = link_value(&link);
        assert_eq!(value["address"], "10.0.0.9");
        assert_eq!(value["type"], "postgres");
        assert_eq!(value["instances"][0]["az"], "z1");
    }
}

//! IP assignment: dynamic IPs from manual subnets (skipping network, broadcast, gateway,
//! reserved and static addresses and IPs held elsewhere), static IPs placing instances, IPs kept
//! across plans, exhaustion, and the network details an instance gets.

mod plan_support;

use plan_support::*;
use serde_json::json;

const NGINX: &str = "[{name: nginx, release: web}]";

fn ips(d: &rosh::plan::desired::DesiredDeployment, g: &str, network: &str) -> Vec<String> {
    group(d, g).instances.iter().map(|i| format!("{}:{}", i.index, ip(i, network).unwrap_or("-"))).collect()
}

#[test]
fn dynamic_ips_skip_network_gateway_reserved_and_static_addresses() {
    let w = World::default();
    let d = w
        .plan(&format!("instance_groups:\n{}{}", ig("web", "[z1, z2]", 3, NGINX), ig("api", "[z1]", 1, NGINX)))
        .unwrap();
    assert_eq!(ips(&d, "web", "default"), ["0:10.0.1.20", "1:10.0.2.20", "2:10.0.1.21"]);
    assert_eq!(ips(&d, "api", "default"), ["0:10.0.1.22"]);
    let web0 = &group(&d, "web").instances[0];
    let net = &web0.networks[0];
    assert_eq!(net.kind, "manual");
    assert_eq!(net.netmask.as_deref(), Some("255.255.255.0"));
    assert_eq!(net.gateway.as_deref(), Some("10.0.1.1"));
    assert_eq!(net.dns, ["10.0.0.2"]);
    assert_eq!(net.default, ["dns", "gateway"], "the only network is the default");
    assert_eq!(net.cloud_properties, json!({"subnet": "s1"}));
    assert!(!net.static_ip);
    assert_eq!(web0.address(), Some("10.0.1.20"));
    assert_eq!(group(&d, "web").instances[1].networks[0].gateway.as_deref(), Some("10.0.2.1"));
}

#[test]
fn instances_keep_their_ips_when_groups_are_added_before_them() {
    let mut w = World::default();
    w.deploy(&format!("instance_groups:\n{}", ig("web", "[z1]", 2, NGINX)));
    let d =
        w.plan(&format!("instance_groups:\n{}{}", ig("api", "[z1]", 2, NGINX), ig("web", "[z1]", 2, NGINX))).unwrap();
    assert_eq!(ips(&d, "web", "default"), ["0:10.0.1.20", "1:10.0.1.21"]);
    assert_eq!(ips(&d, "api", "default"), ["0:10.0.1.22", "1:10.0.1.23"]);
}

#[test]
fn an_ip_that_became_reserved_is_replaced_and_ips_of_others_are_avoided() {
    let mut w = World::default();
    w.deploy(&format!("instance_groups:\n{}", ig("web", "[z1]", 2, NGINX)));
    w.cloud = w.cloud.replace("reserved: [10.0.1.2 - 10.0.1.9]", "reserved: [10.0.1.2 - 10.0.1.9, 10.0.1.20]");
    w.elsewhere.insert("10.0.1.22".parse().unwrap());
    let d = w.plan(&format!("instance_groups:\n{}", ig("web", "[z1]", 2, NGINX))).unwrap();
    // web/0 loses .20 (reserved now); .21 is web/1's, .22 another deployment's.
    assert_eq!(ips(&d, "web", "default"), ["0:10.0.1.23", "1:10.0.1.21"]);
}

#[test]
fn ips_of_instances_being_deleted_are_not_handed_out_in_the_same_deploy() {
    let mut w = World::default();
    w.deploy(&format!("instance_groups:\n{}", ig("web", "[z1]", 1, NGINX)));
    let d = w.plan(&format!("instance_groups:\n{}", ig("api", "[z1]", 1, NGINX))).unwrap();
    assert_eq!(ips(&d, "api", "default"), ["0:10.0.1.21"]);
}

#[test]
fn running_out_of_ips_names_the_network_and_az() {
    let w = World::default();
    let groups = "instance_groups:\n- {name: web, azs: [z1], instances: 4, vm_type: small, stemcell: default, networks: [{name: tiny}], jobs: [{name: nginx, release: web}]}\n";
    let errors = w.plan(groups).unwrap_err();
    assert_eq!(
        errors,
        ["instance_groups[0] (web): network tiny has no free IP in az z1 for instance web/3 (subnets: 192.168.0.0/29)"]
    );
    // Three fit: .0 is the network, .1 the gateway, .2 reserved, .6 static, .7 broadcast.
    let d = w.plan(&groups.replace("instances: 4", "instances: 3")).unwrap();
    assert_eq!(ips(&d, "web", "tiny"), ["0:192.168.0.3", "1:192.168.0.4", "2:192.168.0.5"]);
    assert_eq!(group(&d, "web").instances[0].networks[0].netmask.as_deref(), Some("255.255.255.248"));
}

fn statics(list: &str, n: u64) -> String {
    format!(
        "instance_groups:\n- {{name: db, azs: [z1, z2], instances: {n}, vm_type: small, stemcell: default, networks: [{{name: default, static_ips: {list}}}], jobs: [{{name: postgres, release: web}}]}}\n"
    )
}

#[test]
fn static_ips_place_instances_in_the_az_of_their_subnet() {
    let mut w = World::default();
    let d = w.deploy(&statics("[10.0.1.10, 10.0.2.10, 10.0.1.11]", 3));
    let g = group(&d, "db");
    assert_eq!(layout(g), ["0:id-1:z1", "1:id-2:z2", "2:id-3:z1"]);
    assert_eq!(ips(&d, "db", "default"), ["0:10.0.1.10", "1:10.0.2.10", "2:10.0.1.11"]);
    assert!(g.instances.iter().all(|i| i.networks[0].static_ip));

    // Listed in another order (and as a range): every instance keeps its IP.
    let d = w.plan(&statics("[10.0.1.10 - 10.0.1.11, 10.0.2.10]", 3)).unwrap();
    assert_eq!(ips(&d, "db", "default"), ["0:10.0.1.10", "1:10.0.2.10", "2:10.0.1.11"]);

    // One IP replaced: that instance keeps its identity and takes the new IP of its AZ.
    let d = w.plan(&statics("[10.0.1.10, 10.0.2.10, 10.0.1.12]", 3)).unwrap();
    assert_eq!(layout(group(&d, "db")), ["0:id-1:z1", "1:id-2:z2", "2:id-3:z1"]);
    assert_eq!(ips(&d, "db", "default"), ["0:10.0.1.10", "1:10.0.2.10", "2:10.0.1.12"]);

    // Scaling down with static IPs: the instance whose IP left the list goes.
    let d = w.plan(&statics("[10.0.1.11, 10.0.2.10]", 2)).unwrap();
    assert_eq!(layout(group(&d, "db")), ["1:id-2:z2", "2:id-3:z1"]);
}

#[test]
fn static_ips_must_be_in_a_static_range_of_the_group_azs_and_free() {
    let w = World::default();
    assert_eq!(
        w.plan(&statics("[10.0.1.30, 10.0.3.10]", 2)).unwrap_err(),
        [
            "instance_groups[0] (db).networks[0] (default).static_ips: static IP 10.0.1.30 is not in a static range of network default in azs [z1, z2]",
            "instance_groups[0] (db).networks[0] (default).static_ips: static IP 10.0.3.10 is not in a static range of network default in azs [z1, z2]",
        ]
    );
    let mut w = World::default();
    w.elsewhere.insert("10.0.1.10".parse().unwrap());
    assert_eq!(
        w.plan(&statics("[10.0.1.10]", 1)).unwrap_err(),
        [
            "instance_groups[0] (db).networks[0] (default).static_ips: static IP 10.0.1.10 is already held by another deployment"
        ]
    );
}

#[test]
fn dynamic_networks_leave_the_ip_to_the_iaas_and_the_named_default_wins() {
    let w = World::default();
    let groups = "instance_groups:\n- {name: web, azs: [z1], instances: 1, vm_type: small, stemcell: default, jobs: [{name: nginx, release: web}], networks: [{name: default}, {name: dyn, default: [dns, gateway]}]}\n";
    let d = w.plan(groups).unwrap();
    let i = &group(&d, "web").instances[0];
    assert_eq!(ip(i, "default"), Some("10.0.1.20"));
    let dyn_net = &i.networks[1];
    assert_eq!((dyn_net.kind.as_str(), dyn_net.ip.as_deref(), dyn_net.netmask.as_deref()), ("dynamic", None, None));
    assert_eq!(dyn_net.dns, ["1.1.1.1"]);
    assert_eq!(dyn_net.cloud_properties, json!({"net": "dyn"}));
    assert_eq!(dyn_net.default, ["dns", "gateway"]);
    assert!(i.networks[0].default.is_empty());
    assert_eq!(i.address(), None, "the default network's IP is not known before the VM exists");
}

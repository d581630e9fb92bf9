//! Placement: instances spread over AZs, stable indexes and ids across plans, scaling up and
//! down, the bootstrap instance, errands.

mod plan_support;

use plan_support::*;

const NGINX: &str = "[{name: nginx, release: web}]";

fn web(azs: &str, n: u64) -> String {
    format!("instance_groups:\n{}", ig("web", azs, n, NGINX))
}

#[test]
fn instances_spread_round_robin_over_the_group_azs() {
    let w = World::default();
    let d = w.plan(&web("[z1, z2, z3]", 5)).unwrap();
    assert_eq!(layout(group(&d, "web")), ["0:id-1:z1", "1:id-2:z2", "2:id-3:z3", "3:id-4:z1", "4:id-5:z2"]);
    let bootstraps: Vec<u64> = group(&d, "web").instances.iter().filter(|i| i.bootstrap).map(|i| i.index).collect();
    assert_eq!(bootstraps, [0]);
}

#[test]
fn a_replan_keeps_indexes_ids_and_azs() {
    let mut w = World::default();
    let first = w.deploy(&web("[z1, z2]", 3));
    let again = w.plan(&web("[z1, z2]", 3)).unwrap();
    assert_eq!(layout(group(&again, "web")), layout(group(&first, "web")));
    // Listing the AZs the other way round moves nothing either.
    let swapped = w.plan(&web("[z2, z1]", 3)).unwrap();
    assert_eq!(layout(group(&swapped, "web")), layout(group(&first, "web")));
}

#[test]
fn scaling_two_to_three_to_one_keeps_the_survivors() {
    let mut w = World::default();
    let two = w.deploy(&web("[z1, z2]", 2));
    assert_eq!(layout(group(&two, "web")), ["0:id-1:z1", "1:id-2:z2"]);
    let three = w.deploy(&web("[z1, z2]", 3));
    assert_eq!(layout(group(&three, "web")), ["0:id-1:z1", "1:id-2:z2", "2:id-3:z1"]);
    // Down to one: z1 holds the most, so its highest index goes first, then the highest left.
    let one = w.deploy(&web("[z1, z2]", 1));
    assert_eq!(layout(group(&one, "web")), ["0:id-1:z1"]);
    assert!(group(&one, "web").instances[0].bootstrap);
    // Back up: indexes that no living instance holds are handed out again, new ids.
    let two_again = w.deploy(&web("[z1, z2]", 2));
    assert_eq!(layout(group(&two_again, "web")), ["0:id-1:z1", "1:id-4:z2"]);
}

#[test]
fn scale_down_balances_azs_before_taking_the_highest_index() {
    let mut w = World::default();
    w.deploy(&web("[z1, z2, z3]", 6)); // z1: 0 3, z2: 1 4, z3: 2 5
    let d = w.plan(&web("[z1, z2, z3]", 4)).unwrap();
    assert_eq!(layout(group(&d, "web")), ["0:id-1:z1", "1:id-2:z2", "2:id-3:z3", "3:id-4:z1"]);
}

#[test]
fn new_instances_fill_the_emptiest_az_and_take_the_lowest_free_index() {
    let mut w = World::default();
    w.deploy(&web("[z1, z2]", 2));
    // Someone deleted web/0 out of band: its index is free, z1 is empty.
    w.known.retain(|k| k.index != 0);
    let d = w.plan(&web("[z1, z2]", 3)).unwrap();
    assert_eq!(layout(group(&d, "web")), ["0:id-3:z1", "1:id-2:z2", "2:id-4:z1"]);
}

#[test]
fn the_known_bootstrap_stays_bootstrap_while_it_exists() {
    let mut w = World::default();
    w.deploy(&web("[z1, z2]", 3));
    for k in &mut w.known {
        k.bootstrap = k.index == 2;
    }
    let d = w.plan(&web("[z1, z2]", 3)).unwrap();
    let bootstrap: Vec<u64> = group(&d, "web").instances.iter().filter(|i| i.bootstrap).map(|i| i.index).collect();
    assert_eq!(bootstrap, [2]);
    // Once it is scaled away (highest index first), the lowest index takes over.
    let d = w.plan(&web("[z1, z2]", 1)).unwrap();
    assert_eq!(layout(group(&d, "web")), ["0:id-1:z1"]);
    assert!(group(&d, "web").instances[0].bootstrap);
}

#[test]
fn removing_an_az_replaces_its_instances_in_the_others() {
    let mut w = World::default();
    w.deploy(&web("[z1, z2]", 2));
    let d = w.plan(&web("[z1]", 2)).unwrap();
    // web/1 lived in z2; its index stays taken while it is being deleted.
    assert_eq!(layout(group(&d, "web")), ["0:id-1:z1", "2:id-3:z1"]);
}

#[test]
fn errand_groups_get_instances_too() {
    let w = World::default();
    let groups = format!("instance_groups:\n{}\n  lifecycle: errand\n", ig("smoke", "[z1]", 1, NGINX).trim_end());
    let d = w.plan(&groups).unwrap();
    let g = group(&d, "smoke");
    assert_eq!(g.lifecycle, rosh::plan::desired::GroupLifecycle::Errand);
    assert_eq!(layout(g), ["0:id-1:z1"]);
}

#[test]
fn groups_without_azs_place_on_a_cloud_config_without_azs() {
    let w = World {
        cloud: "
vm_types: [{name: small}]
networks: [{name: default, subnets: [{range: 10.1.0.0/24, gateway: 10.1.0.1}]}]
compilation: {workers: 1, vm_type: small, network: default}
"
        .into(),
        ..World::default()
    };
    let groups = format!(
        "instance_groups:\n- name: web\n  instances: 2\n  vm_type: small\n  stemcell: default\n  networks: [{{name: default}}]\n  jobs: {NGINX}\n"
    );
    let d = w.plan(&groups).unwrap();
    assert_eq!(layout(group(&d, "web")), ["0:id-1:-", "1:id-2:-"]);
    assert_eq!(group(&d, "web").instances[0].cpi, None);
    // Without azs on a cloud config that has them, the plan says so.
    let w = World::default();
    let errors = w.plan(&groups).unwrap_err();
    assert_eq!(errors, ["instance_groups[0] (web): no azs given; the cloud config defines azs"]);
}

//! The dependency graphs of a desired deployment (petgraph): packages, and links between
//! instance groups.
//!
//! - [`package_order`]: a package after every package it depends on, ties broken by name so
//!   the order is the same on every run; a cycle is an error naming the whole cycle
//!   (`package a → b → c → a`).
//! - [`batches`]: BOSH's rollout of instance groups in manifest order, cut into batches by
//!   `update.serial` — consecutive `serial: false` groups update together, each `serial: true`
//!   group alone.
//! - [`LinkGraph`]: which group consumes a link from which. [`LinkGraph::check_order`] refuses
//!   an order in which a consumer updates in an earlier batch than the provider of a link it
//!   requires; [`LinkGraph::order_by_links`] is the order for `update.order: links` (providers
//!   first, manifest order among equals).
//!
//! Decisions: a provider in the *same* parallel batch as its consumer is accepted — both update
//! together and the link's content (addresses, properties) is already fixed by the plan, which
//! is how cf-deployment (`serial: false` throughout) is meant to roll out. Optional links and
//! links within one group never constrain the order, and neither do errand groups, which do
//! not start on deploy. Pure: values in, values out.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::desired::{DesiredDeployment, DesiredGroup, GroupLifecycle, PackageRef};

/// A dependency cycle, listed from its first member back to it (`a → b → c → a`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {}", .cycle.join(" → "))]
pub struct CycleError {
    /// What the members are: `package`, `instance group`.
    pub what: &'static str,
    /// The members in dependency order, the first repeated at the end.
    pub cycle: Vec<String>,
}

/// A consumer that would update before the provider of a link it requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance group {consumer} consumes {link} from {provider}, which updates after it")]
pub struct OrderError {
    pub consumer: String,
    pub consumer_job: String,
    pub link: String,
    pub provider: String,
    pub provider_job: String,
}

/// Orders packages so that each comes after its dependencies (ties: by name, then release).
/// A package's dependencies are packages of its own release: two releases may each carry a
/// package of one name (cf-deployment's diego-cell holds diego's `golang-1.23-linux` and
/// garden-runc's, which differ), and each is a node of its own. Dependencies that are not among
/// `packages` are ignored here; whether they exist is the caller's check.
pub fn package_order(packages: &[PackageRef]) -> Result<Vec<PackageRef>, CycleError> {
    let mut graph: DiGraph<&str, ()> = DiGraph::new();
    let mut nodes: HashMap<(&str, &str), NodeIndex> = HashMap::new();
    let mut by_node: HashMap<NodeIndex, &PackageRef> = HashMap::new();
    for p in packages {
        let n = *nodes.entry((p.release.as_str(), p.name.as_str())).or_insert_with(|| graph.add_node(p.name.as_str()));
        by_node.entry(n).or_insert(p);
    }
    // Edges point from a package to what it depends on: a cycle then reads in the direction
    // an operator says it ("a needs b needs c needs a").
    for p in packages {
        let from = nodes[&(p.release.as_str(), p.name.as_str())];
        for dep in &p.dependencies {
            if let Some(&to) = nodes.get(&(p.release.as_str(), dep.as_str())) {
                graph.update_edge(from, to, ());
            }
        }
    }
    let order = stable_toposort(&graph, |n| (graph[n].to_string(), by_node[&n].release.clone()))
        .map_err(|cycle| CycleError { what: "package", cycle })?;
    Ok(order.into_iter().map(|n| by_node[&n].clone()).collect())
}

/// Nodes with every edge target before its source (targets are dependencies), picking the
/// smallest `key` among the ready ones; on a cycle, the cycle through the smallest member of
/// the first strongly connected component that is one.
fn stable_toposort<N, K: Ord + Clone>(
    graph: &DiGraph<N, ()>,
    key: impl Fn(NodeIndex) -> K,
) -> Result<Vec<NodeIndex>, Vec<String>>
where
    N: std::fmt::Display,
{
    let mut pending: HashMap<NodeIndex, usize> =
        graph.node_indices().map(|n| (n, graph.neighbors_directed(n, Direction::Outgoing).count())).collect();
    let mut ready: BinaryHeap<Reverse<(K, NodeIndex)>> =
        pending.iter().filter(|(_, c)| **c == 0).map(|(n, _)| Reverse((key(*n), *n))).collect();
    let mut out = Vec::with_capacity(graph.node_count());
    while let Some(Reverse((_, n))) = ready.pop() {
        out.push(n);
        for dependent in graph.neighbors_directed(n, Direction::Incoming) {
            let c = pending.get_mut(&dependent).expect("every node counted");
            *c -= 1;
            if *c == 0 {
                ready.push(Reverse((key(dependent), dependent)));
            }
        }
    }
    if out.len() == graph.node_count() {
        return Ok(out);
    }
    Err(find_cycle(graph, &key))
}

/// The shortest cycle through the smallest member (by `key`) of the cyclic strongly connected
/// components, as display names with the first repeated at the end.
fn find_cycle<N: std::fmt::Display, K: Ord + Clone>(
    graph: &DiGraph<N, ()>,
    key: &impl Fn(NodeIndex) -> K,
) -> Vec<String> {
    let cyclic: Vec<Vec<NodeIndex>> =
        tarjan_scc(graph).into_iter().filter(|scc| scc.len() > 1 || graph.contains_edge(scc[0], scc[0])).collect();
    let start = cyclic.iter().flatten().min_by_key(|n| key(**n)).copied().expect("a cycle exists");
    let members: BTreeSet<NodeIndex> =
        cyclic.into_iter().find(|scc| scc.contains(&start)).expect("start is in a component").into_iter().collect();
    // Breadth-first from `start` back to it, neighbours in key order, so the cycle is short and
    // always the same one.
    let mut previous: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut last = None;
    'search: while let Some(n) = queue.pop_front() {
        let mut next: Vec<NodeIndex> =
            graph.neighbors_directed(n, Direction::Outgoing).filter(|m| members.contains(m)).collect();
        next.sort_by_key(|m| key(*m));
        next.dedup();
        for m in next {
            if m == start {
                last = Some(n);
                break 'search;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = previous.entry(m) {
                e.insert(n);
                queue.push_back(m);
            }
        }
    }
    let mut path = vec![start];
    let mut at = last.expect("start is on a cycle");
    let mut back = Vec::new();
    while at != start {
        back.push(at);
        at = previous[&at];
    }
    path.extend(back.into_iter().rev());
    path.push(start);
    path.into_iter().map(|n| graph[n].to_string()).collect()
}

/// BOSH's update batches: groups in the order given, consecutive `serial: false` groups in one
/// batch, every `serial: true` group in a batch of its own.
pub fn batches(groups: &[DesiredGroup]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut previous_parallel = false;
    for g in groups {
        let parallel = !g.update.serial;
        match out.last_mut() {
            Some(batch) if parallel && previous_parallel => batch.push(g.name.clone()),
            _ => out.push(vec![g.name.clone()]),
        }
        previous_parallel = parallel;
    }
    out
}

/// One consumed link between two instance groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEdge {
    pub consumer: String,
    pub consumer_job: String,
    /// The consumed link's name (as the consumer's spec names it).
    pub link: String,
    pub provider: String,
    pub provider_job: String,
    /// Whether the consumer's spec requires it (not `optional: true`).
    pub required: bool,
}

/// Which instance group consumes links from which.
#[derive(Debug, Clone)]
pub struct LinkGraph {
    edges: Vec<LinkEdge>,
    errands: BTreeSet<String>,
}

impl LinkGraph {
    /// The links resolved in a desired deployment, between different groups.
    pub fn new(deployment: &DesiredDeployment) -> Self {
        let mut edges = Vec::new();
        for g in &deployment.groups {
            for job in &g.jobs {
                for (name, link) in &job.links {
                    if link.group.is_empty() || link.group == g.name || link.deployment != deployment.name {
                        continue;
                    }
                    let optional = job.spec.consumes.iter().find(|c| &c.name == name).is_some_and(|c| c.optional);
                    edges.push(LinkEdge {
                        consumer: g.name.clone(),
                        consumer_job: job.name.clone(),
                        link: name.clone(),
                        provider: link.group.clone(),
                        provider_job: link.job.clone(),
                        required: !optional,
                    });
                }
            }
        }
        let errands = deployment
            .groups
            .iter()
            .filter(|g| g.lifecycle == GroupLifecycle::Errand)
            .map(|g| g.name.clone())
            .collect();
        Self { edges, errands }
    }

    pub fn edges(&self) -> &[LinkEdge] {
        &self.edges
    }

    /// The edges that constrain the update order: required, between service groups.
    fn ordering_edges(&self) -> impl Iterator<Item = &LinkEdge> {
        self.edges
            .iter()
            .filter(|e| e.required && !self.errands.contains(&e.consumer) && !self.errands.contains(&e.provider))
    }

    /// Refuses an order (`groups` as they will update, batched by [`batches`]) in which a
    /// consumer's batch comes before the batch of a provider it requires. Every such pair is
    /// reported, consumer by consumer in update order.
    pub fn check_order(&self, groups: &[DesiredGroup]) -> Result<(), Vec<OrderError>> {
        let mut batch_of: HashMap<&str, usize> = HashMap::new();
        let batches = batches(groups);
        for (i, batch) in batches.iter().enumerate() {
            for name in batch {
                batch_of.insert(name.as_str(), i);
            }
        }
        let position: HashMap<&str, usize> = groups.iter().enumerate().map(|(i, g)| (g.name.as_str(), i)).collect();
        let mut errors: Vec<(usize, OrderError)> = Vec::new();
        for e in self.ordering_edges() {
            let (Some(c), Some(p)) = (batch_of.get(e.consumer.as_str()), batch_of.get(e.provider.as_str())) else {
                continue;
            };
            if c < p {
                errors.push((
                    position[e.consumer.as_str()],
                    OrderError {
                        consumer: e.consumer.clone(),
                        consumer_job: e.consumer_job.clone(),
                        link: e.link.clone(),
                        provider: e.provider.clone(),
                        provider_job: e.provider_job.clone(),
                    },
                ));
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        errors.dedup_by(|a, b| a.1 == b.1);
        if errors.is_empty() { Ok(()) } else { Err(errors.into_iter().map(|(_, e)| e).collect()) }
    }

    /// The update order for `update.order: links`: every group after the groups providing the
    /// links it requires, otherwise in the order given. A cycle of required links is an error.
    pub fn order_by_links(&self, groups: &[DesiredGroup]) -> Result<Vec<String>, CycleError> {
        let mut graph: DiGraph<String, ()> = DiGraph::new();
        let mut nodes: BTreeMap<&str, NodeIndex> = BTreeMap::new();
        let mut position: HashMap<NodeIndex, usize> = HashMap::new();
        for (i, g) in groups.iter().enumerate() {
            let n = graph.add_node(g.name.clone());
            nodes.insert(g.name.as_str(), n);
            position.insert(n, i);
        }
        for e in self.ordering_edges() {
            if let (Some(&c), Some(&p)) = (nodes.get(e.consumer.as_str()), nodes.get(e.provider.as_str())) {
                graph.update_edge(c, p, ());
            }
        }
        let order =
            stable_toposort(&graph, |n| position[&n]).map_err(|cycle| CycleError { what: "instance group", cycle })?;
        Ok(order.into_iter().map(|n| graph[n].clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, deps: &[&str]) -> PackageRef {
        PackageRef {
            name: name.into(),
            release: "r".into(),
            version: "1".into(),
            fingerprint: format!("fp-{name}"),
            sha256: String::new(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn in_release(release: &str, name: &str, deps: &[&str]) -> PackageRef {
        PackageRef { release: release.into(), fingerprint: format!("fp-{release}-{name}"), ..pkg(name, deps) }
    }

    fn names(p: &[PackageRef]) -> Vec<&str> {
        p.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn packages_come_after_their_dependencies_ties_by_name() {
        let order = package_order(&[
            pkg("zlib", &[]),
            pkg("app", &["ruby", "zlib"]),
            pkg("ruby", &["openssl"]),
            pkg("openssl", &[]),
        ])
        .unwrap();
        assert_eq!(names(&order), ["openssl", "ruby", "zlib", "app"]);
    }

    #[test]
    fn a_cycle_is_named_whole() {
        let err = package_order(&[pkg("c", &["a"]), pkg("b", &["c"]), pkg("a", &["b"]), pkg("x", &[])]).unwrap_err();
        assert_eq!(err.to_string(), "package a → b → c → a");
        let err = package_order(&[pkg("self", &["self"])]).unwrap_err();
        assert_eq!(err.to_string(), "package self → self");
    }

    #[test]
    fn same_named_packages_of_two_releases_are_two_nodes_each_after_its_own_dependencies() {
        // As diego and garden-runc on cf-deployment's diego-cell: each release vendors its own
        // golang-1.23-linux, and each release's packages build with their own.
        let order = package_order(&[
            in_release("diego", "rep", &["golang-1.23-linux"]),
            in_release("garden-runc", "guardian", &["golang-1.23-linux", "libseccomp"]),
            in_release("diego", "golang-1.23-linux", &[]),
            in_release("garden-runc", "golang-1.23-linux", &["bootstrap"]),
            in_release("garden-runc", "bootstrap", &[]),
            in_release("garden-runc", "libseccomp", &[]),
        ])
        .unwrap();
        let ids: Vec<String> = order.iter().map(|p| format!("{}/{}", p.release, p.name)).collect();
        assert_eq!(
            ids,
            [
                "garden-runc/bootstrap",
                "diego/golang-1.23-linux",
                "garden-runc/golang-1.23-linux",
                "garden-runc/libseccomp",
                "garden-runc/guardian",
                "diego/rep",
            ]
        );
        // A dependency never resolves to the other release's package of that name.
        let err =
            package_order(&[in_release("a", "x", &["y"]), in_release("a", "y", &["x"]), in_release("b", "x", &[])])
                .unwrap_err();
        assert_eq!(err.to_string(), "package x → y → x");
    }
}

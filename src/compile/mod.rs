//! Package compilation with the compiled-package cache (DESIGN §3.4).
//!
//! A package is compiled once per [`CompiledKey`]: its name and fingerprint, the stemcell's OS
//! and version, and the dependency key — the sorted `name:fingerprint` of its transitive
//! dependencies, so a package is rebuilt when anything it was built against changes. Results are
//! blobs in the blobstore recorded in the state, shared by every deployment of the state dir: a
//! second deploy of unchanged packages compiles nothing.
//!
//! What is missing is compiled on compilation VMs made through the CPI (cloud config
//! `compilation`: `workers` VMs at most, reused for every package of the run, deleted at the
//! end), in parallel along the dependency DAG: a package starts as soon as everything it depends
//! on is compiled. Each compile uploads the package's source and its dependencies' compiled
//! blobs (skipping what the VM holds), runs the agent's `compile_package`, fetches the result
//! into the blobstore and records it — the record is written right after the blob is stored, so
//! a crash never leaves a record without its blob.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use rosh_cpi::{Cid, Cpi, CreateVm, NetworkSettings};
use tokio::task::JoinSet;

use crate::agent::protocol::{ApplyPackage, CompilePackage};
use crate::blobstore::{Blobstore, LocalBlobstore};
use crate::converge::report::Reporter;
use crate::converge::vm::{self, Reach, TempVm};
use crate::plan::desired::PackageRef;
use crate::state::{CompiledKey, CompiledPackageRecord, State};

/// The stemcell packages are compiled for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub os: String,
    pub version: String,
    /// The stemcell as the compilation CPI knows it.
    pub stemcell_cid: Cid,
}

/// How to make compilation VMs (from the cloud config's `compilation`).
#[derive(Clone)]
pub struct Workers {
    pub cpi: Arc<dyn Cpi>,
    pub count: usize,
    pub cloud_properties: serde_json::Value,
    /// The compilation network's settings for a new VM (its IP left to the CPI, as BOSH gives
    /// compilation VMs dynamic addresses).
    pub network: (String, NetworkSettings),
    pub env: serde_json::Value,
    /// Compilation VMs' agent ids are this, a dash and their slot (`compilation-demo-0`): unique
    /// per deployment, stable across runs.
    pub agent_prefix: String,
}

/// What a compile run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compiled {
    /// Every requested package's compiled record, by (release, package name, target os/version).
    pub packages: BTreeMap<(String, String), CompiledPackageRecord>,
    pub compiled: usize,
    pub cached: usize,
}

/// The dependency key of `package` among `all` (same release): its transitive dependencies as
/// sorted `name:fingerprint`, comma-joined.
pub fn dependency_key(package: &PackageRef, all: &BTreeMap<String, PackageRef>) -> anyhow::Result<String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&str> = package.dependencies.iter().map(String::as_str).collect();
    while let Some(name) = queue.pop_front() {
        let dep = all
            .get(name)
            .ok_or_else(|| anyhow!("package {} depends on {name}, which its release does not have", package.name))?;
        if seen.insert(format!("{}:{}", dep.name, dep.fingerprint)) {
            queue.extend(dep.dependencies.iter().map(String::as_str));
        }
    }
    Ok(seen.into_iter().collect::<Vec<_>>().join(","))
}

/// One package's place in the compiled-package cache.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub package: PackageRef,
    pub key: CompiledKey,
    /// The cached build, or `None` where it would be compiled.
    pub found: Option<CompiledPackageRecord>,
}

/// What the compiled-package cache holds for each of `packages` (a group's closure) on a
/// stemcell of `os`/`version`. Reads only.
pub fn cached(state: &State, packages: &[PackageRef], os: &str, version: &str) -> anyhow::Result<Vec<CacheEntry>> {
    let mut by_release: BTreeMap<&str, BTreeMap<String, PackageRef>> = BTreeMap::new();
    for p in packages {
        by_release.entry(p.release.as_str()).or_default().insert(p.name.clone(), p.clone());
    }
    packages
        .iter()
        .map(|p| {
            let key = CompiledKey {
                name: p.name.clone(),
                fingerprint: p.fingerprint.clone(),
                os: os.to_string(),
                stemcell_version: version.to_string(),
                dependency_key: dependency_key(p, &by_release[p.release.as_str()])?,
            };
            let found = state.compiled_package(&key)?;
            Ok(CacheEntry { package: p.clone(), key, found })
        })
        .collect()
}

/// One package to have compiled for one target.
#[derive(Debug, Clone)]
struct Node {
    package: PackageRef,
    target: Target,
    key: CompiledKey,
    /// Keys (as strings) of its direct dependencies' nodes.
    deps: Vec<String>,
}

fn key_id(key: &CompiledKey) -> String {
    format!("{}/{}/{}/{}/{}", key.name, key.fingerprint, key.os, key.stemcell_version, key.dependency_key)
}

/// Compiles what `wanted` (packages per target, each list a release's closure in dependency
/// order) needs, reusing the cache.
pub async fn compile(
    state: &State,
    blobs: &LocalBlobstore,
    reach: &Reach,
    workers: &Workers,
    wanted: &[(Target, Vec<PackageRef>)],
    reporter: &dyn Reporter,
) -> anyhow::Result<Compiled> {
    remove_leftover_vms(workers).await?;
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut result = Compiled::default();
    let mut wanted_keys: Vec<((String, String), String)> = Vec::new();
    for (target, packages) in wanted {
        let mut by_release: BTreeMap<&str, BTreeMap<String, PackageRef>> = BTreeMap::new();
        for p in packages {
            by_release.entry(p.release.as_str()).or_default().insert(p.name.clone(), p.clone());
        }
        for p in packages {
            let same_release = &by_release[p.release.as_str()];
            let node_for = |pkg: &PackageRef| -> anyhow::Result<CompiledKey> {
                Ok(CompiledKey {
                    name: pkg.name.clone(),
                    fingerprint: pkg.fingerprint.clone(),
                    os: target.os.clone(),
                    stemcell_version: target.version.clone(),
                    dependency_key: dependency_key(pkg, same_release)?,
                })
            };
            let key = node_for(p)?;
            let deps = p
                .dependencies
                .iter()
                .map(|d| Ok(key_id(&node_for(&same_release[d.as_str()])?)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let id = key_id(&key);
            wanted_keys.push(((p.release.clone(), p.name.clone()), id.clone()));
            nodes.entry(id).or_insert(Node { package: p.clone(), target: target.clone(), key, deps });
        }
    }

    // The cache first.
    let mut done: BTreeMap<String, CompiledPackageRecord> = BTreeMap::new();
    for (id, node) in &nodes {
        if let Some(record) = state.compiled_package(&node.key)?
            && blobs.contains(&record.blob_sha256)?
        {
            done.insert(id.clone(), record);
        }
    }
    result.cached = done.len();
    let mut pending: BTreeMap<String, Node> =
        nodes.iter().filter(|(id, _)| !done.contains_key(*id)).map(|(k, v)| (k.clone(), v.clone())).collect();
    // A package of a compiled release has no source: it can only come from the cache.
    let sourceless: Vec<String> = pending
        .values()
        .filter(|n| n.package.sha256.is_empty())
        .map(|n| format!("{}/{} (for {}/{})", n.package.release, n.package.name, n.target.os, n.target.version))
        .collect();
    if !sourceless.is_empty() {
        bail!(
            "no compiled build and no source for {}: upload the release's source, or a release compiled for this stemcell",
            sourceless.join(", ")
        );
    }
    if !pending.is_empty() {
        reporter.stage("Compiling packages", pending.len());
        result.compiled = pending.len();
        let env = Env { state, blobs, reach, workers, reporter };
        run_pending(&env, &nodes, &mut pending, &mut done).await?;
    }
    for (name, id) in wanted_keys {
        let record = done.get(&id).cloned().ok_or_else(|| anyhow!("package {} was not compiled", name.1))?;
        result.packages.insert(name, record);
    }
    Ok(result)
}

type TaskResult = (String, usize, Option<TempVm>, anyhow::Result<CompiledPackageRecord>);

/// What a compile run works with.
struct Env<'a> {
    state: &'a State,
    blobs: &'a LocalBlobstore,
    reach: &'a Reach,
    workers: &'a Workers,
    reporter: &'a dyn Reporter,
}

async fn run_pending(
    env: &Env<'_>,
    nodes: &BTreeMap<String, Node>,
    pending: &mut BTreeMap<String, Node>,
    done: &mut BTreeMap<String, CompiledPackageRecord>,
) -> anyhow::Result<()> {
    let Env { state, blobs, reach, workers, reporter } = *env;
    let mut started: BTreeMap<String, std::time::Instant> = BTreeMap::new();
    // Idle VMs per stemcell; VMs made so far (never more than `workers.count` at once).
    let mut idle: BTreeMap<Cid, Vec<TempVm>> = BTreeMap::new();
    // Compilation VMs are named by slot (`<agent_prefix>-<slot>`), never more than `limit`:
    // a VM left by a run that died is replaced, not orphaned, when its slot is used again.
    let mut free_slots: BTreeSet<usize> = (0..workers.count.max(1)).collect();
    let mut running: JoinSet<TaskResult> = JoinSet::new();
    let mut in_flight: BTreeSet<String> = BTreeSet::new();
    let mut failure: Option<anyhow::Error> = None;
    let limit = workers.count.max(1);

    loop {
        if failure.is_none() {
            let ready: Vec<String> = pending
                .iter()
                .filter(|(id, n)| !in_flight.contains(*id) && n.deps.iter().all(|d| done.contains_key(d)))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ready {
                if in_flight.len() >= limit {
                    break;
                }
                let node = pending[&id].clone();
                let vm = idle.get_mut(&node.target.stemcell_cid).and_then(Vec::pop);
                if vm.is_none() && free_slots.is_empty() {
                    // Free a VM of another stemcell to make room.
                    if let Some(other) = idle.values_mut().find_map(Vec::pop) {
                        free_slots.insert(other.slot);
                        other.delete(workers.cpi.as_ref()).await?;
                    } else {
                        break;
                    }
                }
                let slot = match &vm {
                    Some(vm) => vm.slot,
                    None => free_slots.pop_first().expect("a slot was freed above"),
                };
                let deps: Vec<ApplyPackage> = all_deps(&node, nodes, done);
                in_flight.insert(id.clone());
                let (state, blobs, reach, workers) = (state.clone(), blobs.clone(), reach.clone(), workers.clone());
                let task = format!("{}/{}", node.package.name, node.package.version);
                reporter.step(&task, if vm.is_some() { "compiling" } else { "creating compilation VM" });
                started.insert(id.clone(), std::time::Instant::now());
                running.spawn(async move {
                    let outcome = async {
                        let vm = match vm {
                            Some(vm) => vm,
                            None => make_vm(&workers, &reach, &node.target, slot).await?,
                        };
                        let compiled = compile_one(&state, &blobs, &vm, &node, &deps).await;
                        Ok::<_, anyhow::Error>((vm, compiled))
                    }
                    .await;
                    match outcome {
                        Ok((vm, compiled)) => (id, slot, Some(vm), compiled),
                        Err(e) => (id, slot, None, Err(e)),
                    }
                });
            }
        }
        let Some(joined) = running.join_next().await else { break };
        let (id, slot, vm, outcome) = joined.map_err(|e| anyhow!("a compile task failed: {e}"))?;
        in_flight.remove(&id);
        let node = pending[&id].clone();
        let task = format!("{}/{}", node.package.name, node.package.version);
        let elapsed = started.remove(&id).map(|t| t.elapsed()).unwrap_or_default();
        match vm {
            Some(vm) => idle.entry(node.target.stemcell_cid.clone()).or_default().push(vm),
            None => {
                free_slots.insert(slot);
            }
        }
        match outcome {
            Ok(record) => {
                reporter.finished(&task, Ok("compiled"), elapsed);
                pending.remove(&id);
                done.insert(id, record);
            }
            Err(e) => {
                reporter.finished(&task, Err(&format!("{e:#}")), elapsed);
                if failure.is_none() {
                    failure = Some(e.context(format!("compiling package {task}")));
                }
            }
        }
        if failure.is_none() && pending.is_empty() {
            break;
        }
    }
    // Compilation VMs are not kept past the run.
    let mut cleanup = Vec::new();
    for (_, vms) in idle {
        for vm in vms {
            cleanup.push(vm.delete(workers.cpi.as_ref()).await);
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    cleanup.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    if !pending.is_empty() {
        let names: Vec<&str> = pending.values().map(|n| n.package.name.as_str()).collect();
        bail!("packages could not be scheduled for compilation: {}", names.join(", "));
    }
    Ok(())
}

/// The compiled blobs of every transitive dependency of `node` (all compiled by now).
fn all_deps(
    node: &Node,
    nodes: &BTreeMap<String, Node>,
    done: &BTreeMap<String, CompiledPackageRecord>,
) -> Vec<ApplyPackage> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<&String> = node.deps.iter().collect();
    while let Some(id) = queue.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        if let Some(record) = done.get(id) {
            out.push(ApplyPackage {
                name: record.key.name.clone(),
                version: nodes.get(id).map_or_else(|| record.key.fingerprint.clone(), |n| n.package.version.clone()),
                sha256: record.blob_sha256.clone(),
            });
        }
        if let Some(dep) = nodes.get(id) {
            queue.extend(dep.deps.iter());
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Deletes compilation VMs of this deployment that a run which died left behind (found by
/// their agent ids, where the CPI can list its VMs; the caller holds the deployment lock, so
/// none of them is in use).
async fn remove_leftover_vms(workers: &Workers) -> anyhow::Result<()> {
    let prefix = format!("{}-", workers.agent_prefix);
    let vms = match workers.cpi.list_vms().await {
        Ok(vms) => vms,
        Err(e) if e.kind == rosh_cpi::ErrorKind::NotImplemented => return Ok(()),
        Err(e) => return Err(e).context("listing the compilation CPI's VMs"),
    };
    for vm in
        vms.into_iter().filter(|vm| vm.agent_id.strip_prefix(&prefix).is_some_and(|slot| slot.parse::<usize>().is_ok()))
    {
        match workers.cpi.delete_vm(vm.vm_cid.clone()).await {
            Ok(()) => {}
            Err(e) if e.kind == rosh_cpi::ErrorKind::VmNotFound => {}
            Err(e) => return Err(e).with_context(|| format!("deleting leftover compilation VM {}", vm.vm_cid)),
        }
    }
    Ok(())
}

async fn make_vm(workers: &Workers, reach: &Reach, target: &Target, slot: usize) -> anyhow::Result<TempVm> {
    let req = CreateVm {
        agent_id: format!("{}-{slot}", workers.agent_prefix),
        stemcell_cid: target.stemcell_cid.clone(),
        cloud_properties: workers.cloud_properties.clone(),
        networks: [workers.network.clone()].into(),
        disk_cids: Vec::new(),
        env: workers.env.clone(),
    };
    let created = workers.cpi.create_vm(req).await.context("creating a compilation VM")?;
    let Some(endpoint) = created.ssh.clone() else {
        let _ = workers.cpi.delete_vm(created.vm_cid.clone()).await;
        bail!("the CPI did not say how to reach compilation VM {} over SSH", created.vm_cid);
    };
    match reach.agent(&endpoint).await {
        Ok(agent) => Ok(TempVm { cid: created.vm_cid, endpoint, agent, slot }),
        Err(e) => {
            let _ = workers.cpi.delete_vm(created.vm_cid).await;
            Err(e)
        }
    }
}

async fn compile_one(
    state: &State,
    blobs: &LocalBlobstore,
    vm: &TempVm,
    node: &Node,
    deps: &[ApplyPackage],
) -> anyhow::Result<CompiledPackageRecord> {
    let mut digests = vec![node.package.sha256.clone()];
    digests.extend(deps.iter().map(|d| d.sha256.clone()));
    vm::upload(&vm.agent, blobs, &digests).await?;
    let compiled = vm
        .agent
        .compile_package(&CompilePackage {
            name: node.package.name.clone(),
            version: node.package.version.clone(),
            source_sha256: node.package.sha256.clone(),
            dependencies: deps.to_vec(),
        })
        .await?;
    vm::fetch(&vm.agent, blobs, &compiled.sha256).await?;
    let record = CompiledPackageRecord {
        key: node.key.clone(),
        blob_sha256: compiled.sha256.clone(),
        sha1: compiled.sha1.clone(),
        size: compiled.size,
        created_at: String::new(),
    };
    state.record_compiled_package(&record)?;
    Ok(record)
}

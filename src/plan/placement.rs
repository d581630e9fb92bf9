//! Placing an instance group's instances: which instances exist, at which index, with which
//! id, in which AZ, and which one is the bootstrap instance.
//!
//! What was deployed before stays where it is: an instance whose AZ is still one of the
//! group's keeps its index, id and AZ. Scaling down removes instances from the AZ holding the
//! most, highest index first; scaling up adds to the AZ holding the fewest (ties: the order of
//! the group's `azs`), each at the lowest index no living instance holds, with a fresh id.
//! The bootstrap instance stays the bootstrap while it exists; otherwise it is the lowest index.
//!
//! With static IPs the IPs decide: an instance keeps its IP if the manifest still lists it,
//! an instance whose IP is gone takes a listed IP of its AZ, and each IP left over makes a new
//! instance in the AZ of the subnet it belongs to. Assigning dynamic IPs is [`super::ips`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::build::KnownInstance;

/// An instance as placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub index: u64,
    pub id: String,
    pub az: Option<String>,
    pub bootstrap: bool,
    /// Carried over from the last deploy.
    pub known: bool,
    /// The static IP on the network that placed it, when it was placed by static IPs.
    pub static_ip: Option<IpAddr>,
}

/// A static IP with the AZs it can serve (in the group's AZ order; `[None]` for a group
/// without AZs).
pub(crate) type StaticIp = (IpAddr, Vec<Option<String>>);

/// The static IPs of one network, in the manifest's order.
pub(crate) struct StaticIps<'a> {
    pub network: &'a str,
    pub ips: Vec<StaticIp>,
}

/// Places `count` instances over `azs` (empty: the group has none). `known` are the group's
/// instances from the last deploy.
pub(crate) fn place(
    azs: &[String],
    count: u64,
    known: &[&KnownInstance],
    statics: Option<&StaticIps<'_>>,
    new_id: &dyn Fn() -> String,
) -> Vec<Slot> {
    let az_ok = |az: &Option<String>| match az {
        None => azs.is_empty(),
        Some(a) => azs.contains(a),
    };
    let mut valid: Vec<&KnownInstance> = known.iter().copied().filter(|k| az_ok(&k.az)).collect();
    valid.sort_by_key(|k| k.index);
    let used: BTreeSet<u64> = known.iter().map(|k| k.index).collect();
    let mut indexes = FreeIndexes { used, next: 0 };

    let mut slots = match statics {
        None => by_balance(azs, count, valid, &mut indexes, new_id),
        Some(s) => by_static_ips(s, valid, &mut indexes, new_id),
    };
    slots.sort_by_key(|s| s.index);
    let known_bootstrap = slots.iter().position(|s| s.known && known.iter().any(|k| k.id == s.id && k.bootstrap));
    if let Some(i) = known_bootstrap.or(if slots.is_empty() { None } else { Some(0) }) {
        slots[i].bootstrap = true;
    }
    slots
}

struct FreeIndexes {
    used: BTreeSet<u64>,
    next: u64,
}

impl FreeIndexes {
    fn take(&mut self) -> u64 {
        while self.used.contains(&self.next) {
            self.next += 1;
        }
        self.used.insert(self.next);
        self.next
    }
}

fn kept(k: &KnownInstance, static_ip: Option<IpAddr>) -> Slot {
    Slot { index: k.index, id: k.id.clone(), az: k.az.clone(), bootstrap: false, known: true, static_ip }
}

/// The AZ (among `candidates`, in order) holding the fewest of `slots`.
fn emptiest(candidates: &[Option<String>], slots: &[Slot]) -> Option<String> {
    candidates.iter().min_by_key(|az| slots.iter().filter(|s| &&s.az == az).count()).cloned().flatten()
}

fn by_balance(
    azs: &[String],
    count: u64,
    valid: Vec<&KnownInstance>,
    indexes: &mut FreeIndexes,
    new_id: &dyn Fn() -> String,
) -> Vec<Slot> {
    let mut slots: Vec<Slot> = valid.into_iter().map(|k| kept(k, None)).collect();
    while slots.len() as u64 > count {
        let mut per_az: BTreeMap<Option<String>, usize> = BTreeMap::new();
        for s in &slots {
            *per_az.entry(s.az.clone()).or_default() += 1;
        }
        let most = per_az.values().copied().max().unwrap_or(0);
        let victim = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| per_az[&s.az] == most)
            .max_by_key(|(_, s)| s.index)
            .map(|(i, _)| i)
            .expect("a non-empty list has a victim");
        slots.remove(victim);
    }
    let candidates: Vec<Option<String>> =
        if azs.is_empty() { vec![None] } else { azs.iter().cloned().map(Some).collect() };
    while (slots.len() as u64) < count {
        let az = emptiest(&candidates, &slots);
        slots.push(Slot { index: indexes.take(), id: new_id(), az, bootstrap: false, known: false, static_ip: None });
    }
    slots
}

fn by_static_ips(
    statics: &StaticIps<'_>,
    valid: Vec<&KnownInstance>,
    indexes: &mut FreeIndexes,
    new_id: &dyn Fn() -> String,
) -> Vec<Slot> {
    // Taken IPs become `None`, so positions stay those of the manifest's list.
    let mut free: Vec<Option<&StaticIp>> = statics.ips.iter().map(Some).collect();
    let mut slots = Vec::new();
    let mut homeless = Vec::new();
    // Instances whose IP is still listed (for their AZ) keep it.
    for k in valid {
        let held = k.ips.get(statics.network).copied();
        let at = free.iter().position(|f| matches!(f, Some((ip, azs)) if Some(*ip) == held && azs.contains(&k.az)));
        match at {
            Some(i) => {
                let (ip, _) = free[i].take().expect("position found it");
                slots.push(kept(k, Some(*ip)));
            }
            None => homeless.push(k),
        }
    }
    // Instances that lost their IP take another one of their AZ, keeping their identity.
    for k in homeless {
        if let Some(i) = free.iter().position(|f| matches!(f, Some((_, azs)) if azs.contains(&k.az))) {
            let (ip, _) = free[i].take().expect("position found it");
            slots.push(kept(k, Some(*ip)));
        }
    }
    // Every IP left makes a new instance.
    for (ip, azs) in free.into_iter().flatten() {
        let az = emptiest(azs, &slots);
        slots.push(Slot {
            index: indexes.take(),
            id: new_id(),
            az,
            bootstrap: false,
            known: false,
            static_ip: Some(*ip),
        });
    }
    slots
}

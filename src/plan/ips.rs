//! Networks as instances see them, and the IPs of manual networks.
//!
//! [`Networks::read`] turns the cloud config's networks into literal subnets (a leftover
//! `((variable))` is an error); [`Allocator`] hands out addresses. A manual subnet's dynamic
//! pool is its range minus the network and broadcast addresses, the gateway, the `reserved`
//! and `static` ranges, the IPs other deployments hold and the IPs other instances of this
//! deployment hold. Static IPs come from the manifest and must lie in a `static` range of a
//! subnet serving the instance's AZ. The caller claims in a fixed order — static IPs, then the
//! IPs instances already have and may keep, then new ones lowest first — so that a redeploy
//! changes no address it does not have to.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::Value as Json;

use crate::manifest::model::ip::IpSpan;
use crate::manifest::model::{CloudConfig, Network, NetworkType, Param};
use crate::manifest::yaml;

/// A subnet with every value literal.
#[derive(Debug, Clone)]
pub(crate) struct Subnet {
    pub range: Option<Block>,
    pub gateway: Option<IpAddr>,
    pub reserved: Vec<IpSpan>,
    pub statics: Vec<IpSpan>,
    /// `None`: serves every AZ.
    pub azs: Option<Vec<String>>,
    pub dns: Vec<String>,
    pub cloud_properties: Json,
}

/// A CIDR block as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    pub v6: bool,
    pub first: u128,
    pub last: u128,
    pub prefix: u32,
}

impl Block {
    fn parse(text: &str) -> Option<Block> {
        let span = IpSpan::cidr(text).ok()?;
        let (v6, first) = number(span.first());
        let prefix: u32 = text.trim().split_once('/')?.1.trim().parse().ok()?;
        let last = first.saturating_add(span.len().saturating_sub(1));
        Some(Block { v6, first, last, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, n) = number(ip);
        v6 == self.v6 && self.first <= n && n <= self.last
    }

    pub fn netmask(&self) -> String {
        if self.v6 {
            let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
            Ipv6Addr::from(mask).to_string()
        } else {
            let mask: u32 = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
            Ipv4Addr::from(mask).to_string()
        }
    }

    pub fn cidr(&self) -> String {
        format!("{}/{}", address(self.v6, self.first), self.prefix)
    }
}

pub(crate) fn number(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u32::from(a) as u128),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

pub(crate) fn address(v6: bool, n: u128) -> IpAddr {
    if v6 { IpAddr::V6(n.into()) } else { IpAddr::V4((n as u32).into()) }
}

/// A cloud-config network with every value literal.
#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub name: String,
    pub kind: NetworkType,
    pub subnets: Vec<Subnet>,
    pub dns: Vec<String>,
    pub cloud_properties: Json,
}

impl Net {
    /// The subnets serving `az` (a subnet without `azs` serves every AZ).
    pub fn subnets_for<'a>(&'a self, az: Option<&'a str>) -> impl Iterator<Item = (usize, &'a Subnet)> + 'a {
        self.subnets.iter().enumerate().filter(move |(_, s)| match (&s.azs, az) {
            (None, _) => true,
            (Some(list), Some(az)) => list.iter().any(|a| a == az),
            (Some(_), None) => false,
        })
    }

    /// The subnets (serving `az`) whose `static` ranges hold `ip`.
    pub fn static_home(&self, ip: IpAddr, az: Option<&str>) -> Option<usize> {
        let single = IpSpan::single(ip);
        self.subnets_for(az).find(|(_, s)| s.statics.iter().any(|r| r.contains(&single))).map(|(i, _)| i)
    }
}

/// The cloud config's networks, read literally; problems are `(path, message)` pairs.
pub(crate) struct Networks {
    pub nets: BTreeMap<String, Net>,
}

fn unresolved(text: &str) -> String {
    if text.is_empty() {
        "the value is missing or malformed".to_string()
    } else {
        format!("variable {text} was not interpolated")
    }
}

fn strings(p: &Option<Param<Vec<Param<String>>>>, at: &str, errors: &mut Vec<(String, String)>) -> Vec<String> {
    match p {
        None => Vec::new(),
        Some(Param::Var(v)) => {
            errors.push((at.to_string(), unresolved(v)));
            Vec::new()
        }
        Some(Param::Literal(list)) => list
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e {
                Param::Literal(s) => Some(s.clone()),
                Param::Var(v) => {
                    errors.push((format!("{at}[{i}]"), unresolved(v)));
                    None
                }
            })
            .collect(),
    }
}

fn spans(list: Vec<String>, at: &str, errors: &mut Vec<(String, String)>) -> Vec<IpSpan> {
    list.iter()
        .enumerate()
        .filter_map(|(i, t)| match IpSpan::parse(t) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push((format!("{at}[{i}]"), e));
                None
            }
        })
        .collect()
}

pub(crate) fn mapping_json(p: &Param<yaml::Mapping>, at: &str, errors: &mut Vec<(String, String)>) -> Json {
    match p {
        Param::Literal(m) => yaml::to_json(&yaml::Value::Mapping(m.clone())),
        Param::Var(v) => {
            errors.push((at.to_string(), unresolved(v)));
            Json::Object(Default::default())
        }
    }
}

impl Networks {
    pub fn read(cc: &CloudConfig, errors: &mut Vec<(String, String)>) -> Networks {
        let mut nets = BTreeMap::new();
        for n in &cc.networks {
            if let Some(net) = read_network(n, errors) {
                nets.insert(net.name.clone(), net);
            }
        }
        Networks { nets }
    }
}

fn read_network(n: &Network, errors: &mut Vec<(String, String)>) -> Option<Net> {
    let at = format!("cloud config: {}", n.path);
    let kind = match &n.kind {
        Param::Literal(k) => *k,
        Param::Var(v) => {
            errors.push((format!("{at}.type"), unresolved(v)));
            return None;
        }
    };
    let mut subnets = Vec::new();
    match &n.subnets {
        Param::Var(v) => errors.push((format!("{at}.subnets"), unresolved(v))),
        Param::Literal(list) => {
            for s in list {
                let label = format!("cloud config: {}", s.path);
                let range = match &s.range {
                    None => None,
                    Some(Param::Var(v)) => {
                        errors.push((format!("{label}.range"), unresolved(v)));
                        None
                    }
                    Some(Param::Literal(t)) => match Block::parse(t) {
                        Some(b) => Some(b),
                        None => {
                            errors.push((format!("{label}.range"), format!("'{t}' is not a CIDR range")));
                            None
                        }
                    },
                };
                let gateway = match &s.gateway {
                    None => None,
                    Some(Param::Var(v)) => {
                        errors.push((format!("{label}.gateway"), unresolved(v)));
                        None
                    }
                    Some(Param::Literal(t)) => match t.trim().parse::<IpAddr>() {
                        Ok(ip) => Some(ip),
                        Err(_) => {
                            errors.push((format!("{label}.gateway"), format!("'{t}' is not an IP address")));
                            None
                        }
                    },
                };
                let reserved = strings(&s.reserved, &format!("{label}.reserved"), errors);
                let reserved = spans(reserved, &format!("{label}.reserved"), errors);
                let statics = strings(&s.static_ips, &format!("{label}.static"), errors);
                let statics = spans(statics, &format!("{label}.static"), errors);
                let azs = s.azs.as_ref().map(|_| strings(&s.azs, &format!("{label}.azs"), errors));
                let dns = strings(&s.dns, &format!("{label}.dns"), errors);
                let cloud_properties = mapping_json(&s.cloud_properties, &format!("{label}.cloud_properties"), errors);
                subnets.push(Subnet { range, gateway, reserved, statics, azs, dns, cloud_properties });
            }
        }
    }
    let dns = strings(&n.dns, &format!("{at}.dns"), errors);
    let cloud_properties = mapping_json(&n.cloud_properties, &format!("{at}.cloud_properties"), errors);
    Some(Net { name: n.name.clone(), kind, subnets, dns, cloud_properties })
}

/// Why an address cannot be used dynamically, if it cannot.
fn unusable(subnet: &Subnet, ip: IpAddr) -> Option<&'static str> {
    let block = subnet.range?;
    if !block.contains(ip) {
        return Some("outside the subnet");
    }
    let (_, n) = number(ip);
    if n == block.first || n == block.last {
        return Some("the network or broadcast address");
    }
    if subnet.gateway == Some(ip) {
        return Some("the gateway");
    }
    let single = IpSpan::single(ip);
    if subnet.reserved.iter().any(|r| r.contains(&single)) {
        return Some("reserved");
    }
    if subnet.statics.iter().any(|r| r.contains(&single)) {
        return Some("in a static range");
    }
    None
}

/// Hands out IPs of manual networks, remembering who holds each.
pub(crate) struct Allocator<'a> {
    taken: BTreeMap<(String, IpAddr), String>,
    elsewhere: &'a BTreeSet<IpAddr>,
    /// Per (network, subnet): the lowest address that may still be free.
    cursor: BTreeMap<(String, usize), u128>,
}

impl<'a> Allocator<'a> {
    pub fn new(elsewhere: &'a BTreeSet<IpAddr>) -> Self {
        Self { taken: BTreeMap::new(), elsewhere, cursor: BTreeMap::new() }
    }

    /// Who holds `ip` on `network` in this deployment, or `another deployment`.
    pub fn holder(&self, network: &str, ip: IpAddr) -> Option<String> {
        if let Some(h) = self.taken.get(&(network.to_string(), ip)) {
            return Some(h.clone());
        }
        self.elsewhere.contains(&ip).then(|| "another deployment".to_string())
    }

    /// Claims `ip` for `holder` regardless of ranges (static IPs, checked by the caller).
    pub fn claim(&mut self, network: &str, ip: IpAddr, holder: &str) -> Result<(), String> {
        match self.holder(network, ip) {
            Some(h) if h != holder => Err(h),
            _ => {
                self.taken.insert((network.to_string(), ip), holder.to_string());
                Ok(())
            }
        }
    }

    /// Keeps `ip` for `holder` if it is still a valid dynamic address of `net` in `az`.
    pub fn keep(&mut self, net: &Net, az: Option<&str>, ip: IpAddr, holder: &str) -> bool {
        let home =
            net.subnets_for(az).any(|(_, s)| s.range.is_some_and(|b| b.contains(ip)) && unusable(s, ip).is_none());
        home && self.claim(&net.name, ip, holder).is_ok()
    }

    /// The lowest free dynamic address of `net` in `az`, claimed for `holder`.
    pub fn next(&mut self, net: &Net, az: Option<&str>, holder: &str) -> Option<IpAddr> {
        for (i, s) in net.subnets_for(az) {
            let Some(block) = s.range else { continue };
            let key = (net.name.clone(), i);
            let mut n = (*self.cursor.get(&key).unwrap_or(&block.first)).max(block.first);
            while n <= block.last {
                let ip = address(block.v6, n);
                if unusable(s, ip).is_none() && self.holder(&net.name, ip).is_none() {
                    self.taken.insert((net.name.clone(), ip), holder.to_string());
                    self.cursor.insert(key, n + 1);
                    return Some(ip);
                }
                if n == u128::MAX {
                    break;
                }
                n += 1;
            }
            self.cursor.insert(key, block.last.saturating_add(1));
        }
        None
    }
}

/// Expands static IP entries (addresses, ranges, CIDR blocks) to addresses, at most `limit`
/// (ranges larger than the group are cut, the count check reports them).
pub(crate) fn expand(entries: &[String], limit: usize) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for e in entries {
        let span = IpSpan::parse(e)?;
        out.extend(span.addresses().take(limit.saturating_add(1).saturating_sub(out.len())));
        if out.len() > limit {
            break;
        }
    }
    Ok(out)
}

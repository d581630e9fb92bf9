//! IP addresses as cloud configs and manifests write them: a single address (`10.0.0.5`), a
//! range (`10.0.0.2 - 10.0.0.127`, blanks optional) or a CIDR block (`10.0.16.0/20`).
//!
//! Only what the checks need: parse into an inclusive span of one address family and compare
//! spans. IPv4 and IPv6 both work (an IPv4 span never contains an IPv6 one). Assignment of IPs to
//! instances belongs to the planner, not here.

use std::fmt;
use std::net::IpAddr;

/// An inclusive range of addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpSpan {
    v6: bool,
    first: u128,
    last: u128,
}

fn number(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u32::from(a) as u128),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn address(v6: bool, n: u128) -> IpAddr {
    if v6 { IpAddr::V6(n.into()) } else { IpAddr::V4((n as u32).into()) }
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.trim().parse::<IpAddr>().map_err(|_| format!("'{}' is not an IP address", text.trim()))
}

impl IpSpan {
    pub fn single(ip: IpAddr) -> Self {
        let (v6, n) = number(ip);
        Self { v6, first: n, last: n }
    }

    /// Parses a CIDR block (`10.0.16.0/20`).
    pub fn cidr(text: &str) -> Result<Self, String> {
        let (ip, bits) = text.trim().split_once('/').ok_or_else(|| format!("'{}' is not a CIDR range", text.trim()))?;
        let (v6, n) = number(parse_ip(ip)?);
        let width: u32 = if v6 { 128 } else { 32 };
        let bits: u32 = bits
            .trim()
            .parse()
            .ok()
            .filter(|b| *b <= width)
            .ok_or_else(|| format!("'{}' has an invalid prefix length", text.trim()))?;
        let host_bits = width - bits;
        let mask: u128 = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
        Ok(Self { v6, first: n & !mask, last: (n & !mask) | mask })
    }

    /// Parses an address, a range `A - B`, or a CIDR block.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.contains('/') {
            return Self::cidr(text);
        }
        match text.split_once('-') {
            None => Ok(Self::single(parse_ip(text)?)),
            Some((a, b)) => {
                let (v6a, first) = number(parse_ip(a)?);
                let (v6b, last) = number(parse_ip(b)?);
                if v6a != v6b {
                    return Err(format!("'{text}' mixes IPv4 and IPv6"));
                }
                if first > last {
                    return Err(format!("'{text}' ends before it starts"));
                }
                Ok(Self { v6: v6a, first, last })
            }
        }
    }

    pub fn contains(&self, other: &IpSpan) -> bool {
        self.v6 == other.v6 && self.first <= other.first && other.last <= self.last
    }

    pub fn overlaps(&self, other: &IpSpan) -> bool {
        self.v6 == other.v6 && self.first <= other.last && other.first <= self.last
    }

    /// How many addresses (saturating).
    pub fn len(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The addresses, first to last (callers bound how many they take).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        (self.first..=self.last).map(|n| address(self.v6, n))
    }

    pub fn first(&self) -> IpAddr {
        address(self.v6, self.first)
    }
}

impl fmt::Display for IpSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", address(self.v6, self.first))
        } else {
            write!(f, "{} - {}", address(self.v6, self.first), address(self.v6, self.last))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_like_cloud_configs_write_them() {
        let range = IpSpan::cidr("10.244.0.0/20").unwrap();
        assert!(range.contains(&IpSpan::parse("10.244.0.2 - 10.244.0.127").unwrap()));
        assert!(range.contains(&IpSpan::parse("10.244.15.255").unwrap()));
        assert!(!range.contains(&IpSpan::parse("10.244.16.0").unwrap()));
        assert_eq!(IpSpan::parse("10.0.16.2-10.0.16.50").unwrap().len(), 49);
        assert!(IpSpan::parse("10.0.0.9 - 10.0.0.1").is_err());
        assert!(IpSpan::parse("((internal_gw))").is_err());
        let v6 = IpSpan::cidr("fd00::/64").unwrap();
        assert!(v6.contains(&IpSpan::parse("fd00::5").unwrap()));
        assert!(!v6.contains(&IpSpan::parse("10.0.0.5").unwrap()));
    }
}

//! IPv4 subnets and the address pools networks take them from. Pure: no
//! I/O, so the allocation rules are unit-tested without root.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 subnet such as `172.18.0.0/16` (address bits below the prefix
/// are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The subnet of `addr/prefix` (host bits cleared).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Subnet> {
        if prefix > 30 {
            // No room for a gateway and a container.
            return None;
        }
        let mask = Self::mask_of(prefix);
        Some(Subnet {
            base: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    /// The network address.
    pub fn base(&self) -> Ipv4Addr {
        self.base
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.base)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Subnet) -> bool {
        self.contains(other.base) || other.contains(self.base)
    }

    /// The first host address, docker's default gateway (`.1`).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) | !Self::mask_of(self.prefix))
    }

    /// The lowest host address not in `used` and not `gateway`.
    pub fn free_host(&self, gateway: Ipv4Addr, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let first = u32::from(self.base) + 1;
        let last = u32::from(self.broadcast()) - 1;
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| *ip != gateway && !used.contains(ip))
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid subnet {s:?}: expected an IPv4 CIDR such as 172.30.0.0/16");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > 32 {
            return Err(bad());
        }
        let subnet = Subnet::new(ip, prefix)
            .ok_or_else(|| format!("invalid subnet {s:?}: the prefix must be /30 or shorter"))?;
        if subnet.base != ip {
            // docker: "invalid subnet 172.30.0.1/16 : it should be 172.30.0.0/16"
            return Err(format!("invalid subnet {s} : it should be {subnet}"));
        }
        Ok(subnet)
    }
}

impl TryFrom<String> for Subnet {
    type Error = String;
    fn try_from(s: String) -> Result<Subnet, String> {
        s.parse()
    }
}

impl From<Subnet> for String {
    fn from(s: Subnet) -> String {
        s.to_string()
    }
}

/// Candidates for the default `bridge` network: 10.200-209.0.0/16, a
/// range docker's and podman's default pools never hand out, so rbuild's
/// bridges and a docker0 (172.17.0.0/16) or podman network started later
/// on the same host never meet (a subnet a host route covers is skipped).
pub fn default_bridge_pool() -> impl Iterator<Item = Subnet> {
    (200..=209).filter_map(|b| Subnet::new(Ipv4Addr::new(10, b, 0, 0), 16))
}

/// Candidates for user-defined networks: 10.210-254.0.0/16, beside the
/// default bridge's range and away from docker's pools (172.17-31/16,
/// 192.168.0.0/16) for the same reason.
pub fn user_pool() -> impl Iterator<Item = Subnet> {
    (210..=254).filter_map(|b| Subnet::new(Ipv4Addr::new(10, b, 0, 0), 16))
}

/// The first of `pool` overlapping none of `taken`.
pub fn pick(mut pool: impl Iterator<Item = Subnet>, taken: &[Subnet]) -> Option<Subnet> {
    pool.find(|s| !taken.iter().any(|t| t.overlaps(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_show() {
        let s: Subnet = "172.18.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "172.18.0.0/16");
        assert_eq!(s.first_host(), Ipv4Addr::new(172, 18, 0, 1));
        assert_eq!(s.broadcast(), Ipv4Addr::new(172, 18, 255, 255));
        assert_eq!(
            "172.18.0.1/16".parse::<Subnet>().unwrap_err(),
            "invalid subnet 172.18.0.1/16 : it should be 172.18.0.0/16"
        );
        assert!("172.18.0.0".parse::<Subnet>().is_err());
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
    }

    #[test]
    fn overlap_and_pick() {
        let a: Subnet = "10.0.0.0/8".parse().unwrap();
        let b: Subnet = "10.200.0.0/16".parse().unwrap();
        let c: Subnet = "172.17.0.0/16".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&c));
        // docker's 172.17.0.0/16 is never taken, used or not.
        assert_eq!(pick(default_bridge_pool(), &[]), Some(b));
        assert_eq!(
            pick(default_bridge_pool(), &[c, b]).unwrap().to_string(),
            "10.201.0.0/16"
        );
        assert_eq!(
            pick(user_pool(), &[c]).unwrap().to_string(),
            "10.210.0.0/16"
        );
    }

    #[test]
    fn hosts_are_allocated_lowest_first() {
        let s: Subnet = "192.168.5.0/30".parse().unwrap();
        let gw = s.first_host();
        assert_eq!(s.free_host(gw, &[]), Some(Ipv4Addr::new(192, 168, 5, 2)));
        assert_eq!(s.free_host(gw, &[Ipv4Addr::new(192, 168, 5, 2)]), None);
    }
}

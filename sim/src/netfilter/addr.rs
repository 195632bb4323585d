//! Addresses and interfaces as iptables rules hold them.
//!
//! Models: the address family of a ruleset, `-s/-d` networks (an
//! [`IpAddr`] plus a prefix length, host bits cleared exactly as the kernel
//! stores them), `-i/-o` interface names with the `+` wildcard, and the `!`
//! negation that wraps any of them.
//!
//! Must never: resolve host names (iptables would ask DNS; a simulator must
//! not), accept non-contiguous masks silently, or mix families.
//!
//! Error contract: parsers return [`ErrorKind::BadValue`] naming the option
//! and the offending token.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::error::ErrorKind;

/// The address family of a ruleset: `iptables` (IPv4) or `ip6tables` (IPv6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// `iptables` / `iptables-restore`.
    Ipv4,
    /// `ip6tables` / `ip6tables-restore`.
    Ipv6,
}

impl Family {
    /// The number of bits in an address of this family.
    pub fn bits(self) -> u8 {
        match self {
            Family::Ipv4 => 32,
            Family::Ipv6 => 128,
        }
    }

    /// The family of an address.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// The all-ones address of this family (the default `recent --mask`).
    pub fn all_ones(self) -> IpAddr {
        match self {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(u32::MAX)),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
        }
    }
}

/// A value with an optional `!` in front of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Negatable<T> {
    /// Whether the rule said `! -x value`.
    pub negated: bool,
    /// The value.
    pub value: T,
}

impl<T> Negatable<T> {
    /// A value with the given negation.
    pub fn new(value: T, negated: bool) -> Self {
        Negatable { negated, value }
    }

    /// Apply the negation to the outcome of testing the value.
    pub fn holds(&self, matched: bool) -> bool {
        matched != self.negated
    }
}

/// A network: an address and a prefix length, host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A network from an address and a prefix length; host bits are cleared.
    /// Returns `None` when the prefix is longer than the family allows.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        if prefix > Family::of(addr).bits() {
            return None;
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(prefix))),
        };
        Some(Cidr { addr, prefix })
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The family of the network.
    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// Whether `ip` lies in the network (never, across families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a) & mask_v4(self.prefix) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a) & mask_v6(self.prefix) == u128::from(n),
            _ => false,
        }
    }

    /// Parse `-s`/`-d` syntax: `addr`, `addr/len` or `addr/mask`.
    pub(crate) fn parse(option: &str, text: &str, family: Family) -> Result<Cidr, ErrorKind> {
        let (addr_text, mask_text) = match text.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (text, None),
        };
        let addr = parse_addr(option, addr_text, family)?;
        let prefix = match mask_text {
            None => family.bits(),
            Some(m) => parse_mask(option, m, family)?,
        };
        Cidr::new(addr, prefix)
            .ok_or_else(|| ErrorKind::bad_value(option, text, "prefix longer than the address"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn mask_v4(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask_v6(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

/// Parse a numeric address of the given family.
pub(crate) fn parse_addr(option: &str, text: &str, family: Family) -> Result<IpAddr, ErrorKind> {
    let parsed = match family {
        Family::Ipv4 => text.parse::<Ipv4Addr>().map(IpAddr::V4).ok(),
        Family::Ipv6 => text.parse::<Ipv6Addr>().map(IpAddr::V6).ok(),
    };
    parsed.ok_or_else(|| {
        let want = match family {
            Family::Ipv4 => "an IPv4 address like 10.0.0.1 (host names are not resolved)",
            Family::Ipv6 => "an IPv6 address like fd00::1 (host names are not resolved)",
        };
        ErrorKind::bad_value(option, text, format!("expected {want}"))
    })
}

/// Parse the part after `/`: a prefix length or a contiguous mask.
fn parse_mask(option: &str, text: &str, family: Family) -> Result<u8, ErrorKind> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u8>() {
            Ok(p) if p <= family.bits() => Ok(p),
            _ => Err(ErrorKind::bad_value(option, text, "invalid mask length")),
        };
    }
    let mask = parse_addr(option, text, family)?;
    prefix_of_mask(mask).ok_or_else(|| {
        ErrorKind::bad_value(
            option,
            text,
            "non-contiguous masks are not supported; hint: use a prefix length",
        )
    })
}

/// The prefix length of a contiguous mask, or `None`.
pub(crate) fn prefix_of_mask(mask: IpAddr) -> Option<u8> {
    let (bits, ones) = match mask {
        IpAddr::V4(m) => {
            let v = u32::from(m);
            (u128::from(v) << 96, v.count_ones())
        }
        IpAddr::V6(m) => {
            let v = u128::from(m);
            (v, v.count_ones())
        }
    };
    let expected = if ones == 0 {
        0
    } else {
        u128::MAX << (128 - ones)
    };
    (bits == expected).then_some(ones as u8)
}

/// An interface name as `-i`/`-o` take it; a trailing `+` matches any suffix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interface {
    name: String,
}

impl Interface {
    /// The name as written, including a trailing `+` if any.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Whether this is a wildcard (`eth+`).
    pub fn is_wildcard(&self) -> bool {
        self.name.ends_with('+')
    }

    /// Whether the device called `dev` matches.
    pub fn matches(&self, dev: &str) -> bool {
        match self.name.strip_suffix('+') {
            Some(prefix) => dev.starts_with(prefix),
            None => dev == self.name,
        }
    }

    /// Parse an interface argument (IFNAMSIZ is 16, so at most 15 bytes).
    pub(crate) fn parse(option: &str, text: &str) -> Result<Interface, ErrorKind> {
        if text.is_empty() {
            return Err(ErrorKind::bad_value(option, text, "empty interface name"));
        }
        if text.len() > 15 {
            return Err(ErrorKind::bad_value(
                option,
                text,
                "interface names are at most 15 characters",
            ));
        }
        Ok(Interface {
            name: text.to_string(),
        })
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_clears_host_bits_and_accepts_dotted_masks() {
        let c = Cidr::parse("-d", "192.168.1.7/24", Family::Ipv4).unwrap();
        assert_eq!(c.to_string(), "192.168.1.0/24");
        let c = Cidr::parse("-d", "10.0.0.0/255.255.0.0", Family::Ipv4).unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/16");
        let c = Cidr::parse("-s", "2001:db8::1/ffff:ffff:ffff:ffff::", Family::Ipv6).unwrap();
        assert_eq!(c.to_string(), "2001:db8::/64");
        assert!(c.contains("2001:db8::99".parse().unwrap()));
        assert!(!c.contains("10.0.0.1".parse().unwrap()));
    }

    #[test]
    fn cidr_rejects_bad_input() {
        for bad in [
            "10.0.0",
            "10.0.0.300",
            "10.0.0.1/33",
            "host",
            "10.0.0.0/255.0.255.0",
        ] {
            assert!(Cidr::parse("-s", bad, Family::Ipv4).is_err(), "{bad}");
        }
        assert!(Cidr::parse("-s", "fd00::1", Family::Ipv4).is_err());
    }

    #[test]
    fn interface_wildcards() {
        let i = Interface::parse("-i", "veth+").unwrap();
        assert!(i.matches("veth123") && !i.matches("eth0"));
        assert!(Interface::parse("-i", "0123456789abcdef").is_err());
    }
}

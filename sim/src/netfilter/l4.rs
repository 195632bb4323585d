//! Layer-4 protocol numbers and port ranges as iptables rules hold them.
//!
//! Models: `-p` (by name or number, `all`/`0` meaning "any") and the port
//! ranges of `--sport/--dport` and `multiport` (`80`, `80:90`, `:90`, `1024:`).
//!
//! Must never: look names up in `/etc/protocols` or `/etc/services` of the
//! machine it runs on — the tables here are fixed so output never depends on
//! the host.
//!
//! Error contract: parsers return [`ErrorKind::BadValue`] naming the option
//! and the token.

use std::fmt;

use super::error::ErrorKind;

/// An IP protocol as `-p` names it. "Any protocol" is the absence of `-p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// 6
    Tcp,
    /// 17
    Udp,
    /// 132
    Sctp,
    /// 1
    Icmp,
    /// 58
    IcmpV6,
    /// Any other protocol number (never 0, 1, 6, 17, 58 or 132).
    Other(u8),
}

/// Names iptables-save prints for protocol numbers (iptables' own table,
/// then the Debian `netbase` `/etc/protocols` names it falls back to).
const NAMES: &[(&str, u8)] = &[
    ("icmp", 1),
    ("igmp", 2),
    ("ipencap", 4),
    ("tcp", 6),
    ("udp", 17),
    ("ipv6", 41),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("ipv6-icmp", 58),
    ("ospf", 89),
    ("pim", 103),
    ("vrrp", 112),
    ("l2tp", 115),
    ("sctp", 132),
    ("udplite", 136),
];

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
            Protocol::Icmp => 1,
            Protocol::IcmpV6 => 58,
            Protocol::Other(n) => n,
        }
    }

    /// The protocol with this number; `None` for 0 (any protocol).
    pub fn from_number(n: u8) -> Option<Protocol> {
        Some(match n {
            0 => return None,
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            132 => Protocol::Sctp,
            1 => Protocol::Icmp,
            58 => Protocol::IcmpV6,
            n => Protocol::Other(n),
        })
    }

    /// Whether the protocol has ports that `--dport`/DNAT ports can refer to.
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
            || matches!(self, Protocol::Other(33 | 136))
    }

    /// Parse `-p` syntax. `Ok(None)` means any protocol (`all` or `0`).
    pub(crate) fn parse(text: &str) -> Result<Option<Protocol>, ErrorKind> {
        let lower = text.to_ascii_lowercase();
        if lower == "all" {
            return Ok(None);
        }
        if lower == "icmpv6" {
            return Ok(Some(Protocol::IcmpV6));
        }
        if let Some((_, n)) = NAMES.iter().find(|(name, _)| *name == lower) {
            return Ok(Protocol::from_number(*n));
        }
        match text.parse::<u8>() {
            Ok(n) => Ok(Protocol::from_number(n)),
            Err(_) => Err(ErrorKind::bad_value(
                "-p",
                text,
                "unknown protocol; hint: use tcp, udp, sctp, icmp, icmpv6, all or a number 0-255",
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.number();
        match NAMES.iter().find(|(_, num)| *num == n) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{n}"),
        }
    }
}

/// An inclusive port range; a single port has `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    /// First port.
    pub lo: u16,
    /// Last port (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// Every port, 0 to 65535.
    pub const ALL: PortRange = PortRange { lo: 0, hi: 65535 };

    /// A single port.
    pub fn single(port: u16) -> PortRange {
        PortRange { lo: port, hi: port }
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }

    /// Whether the range covers every port.
    pub fn is_all(&self) -> bool {
        *self == PortRange::ALL
    }

    /// Parse `80`, `80:90`, `:90` or `1024:`.
    pub(crate) fn parse(option: &str, text: &str) -> Result<PortRange, ErrorKind> {
        let range = match text.split_once(':') {
            None => PortRange::single(parse_port(option, text)?),
            Some((lo, hi)) => {
                let lo = if lo.is_empty() {
                    0
                } else {
                    parse_port(option, lo)?
                };
                let hi = if hi.is_empty() {
                    65535
                } else {
                    parse_port(option, hi)?
                };
                PortRange { lo, hi }
            }
        };
        if range.lo > range.hi {
            return Err(ErrorKind::bad_value(
                option,
                text,
                "invalid port range (min > max)",
            ));
        }
        Ok(range)
    }

    /// Write as iptables-save does: `lo` or `lo:hi`, with `sep` between.
    pub(crate) fn write(&self, out: &mut String, sep: char) {
        use std::fmt::Write;
        if self.lo == self.hi {
            let _ = write!(out, "{}", self.lo);
        } else {
            let _ = write!(out, "{}{sep}{}", self.lo, self.hi);
        }
    }
}

/// Parse one port number (service names are not looked up).
pub(crate) fn parse_port(option: &str, text: &str) -> Result<u16, ErrorKind> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = text.parse::<u16>() {
            return Ok(p);
        }
        return Err(ErrorKind::bad_value(
            option,
            text,
            "port out of range 0-65535",
        ));
    }
    Err(ErrorKind::bad_value(
        option,
        text,
        "not a port number; hint: service names are not looked up, write the number",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_by_name_and_number() {
        assert_eq!(Protocol::parse("TCP").unwrap(), Some(Protocol::Tcp));
        assert_eq!(Protocol::parse("17").unwrap(), Some(Protocol::Udp));
        assert_eq!(Protocol::parse("all").unwrap(), None);
        assert_eq!(Protocol::parse("0").unwrap(), None);
        assert_eq!(Protocol::parse("47").unwrap().unwrap().to_string(), "gre");
        assert_eq!(
            Protocol::parse("icmpv6").unwrap().unwrap().to_string(),
            "ipv6-icmp"
        );
        assert_eq!(Protocol::parse("253").unwrap().unwrap().to_string(), "253");
        assert!(Protocol::parse("bogus").is_err());
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            PortRange::parse("--dport", "1024:").unwrap(),
            PortRange {
                lo: 1024,
                hi: 65535
            }
        );
        assert_eq!(
            PortRange::parse("--dport", ":80").unwrap(),
            PortRange { lo: 0, hi: 80 }
        );
        assert!(PortRange::parse("--dport", "90:80").is_err());
        assert!(PortRange::parse("--dport", "65536").is_err());
        assert!(PortRange::parse("--dport", "http").is_err());
    }
}

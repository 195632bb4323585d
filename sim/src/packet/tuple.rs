//! The flow key: a connection's 5-tuple as conntrack (and IPVS) index it.
//!
//! Models: `struct nf_conntrack_tuple` — protocol, source and destination
//! address, and the layer-4 part: ports for TCP/UDP/SCTP, and for ICMP
//! echo/info messages the identifier and the type/code (kept in the port
//! fields: `src_port` is the identifier, `dst_port` is `type << 8 | code`,
//! as the kernel keeps `src.u.icmp.id` and `dst.u.icmp.{type,code}`).
//!
//! Must never: order or hash by anything but its fields (it is a `BTreeMap`
//! key; iteration order reaches output).
//!
//! Error contract: [`Tuple::invert`] returns `None` for ICMP messages that
//! have no reply type (the kernel refuses to track those).

use std::fmt;
use std::net::IpAddr;

use crate::netfilter::Protocol;

/// A connection's 5-tuple in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    /// Layer-4 protocol.
    pub proto: Protocol,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (ICMP: the identifier).
    pub src_port: u16,
    /// Destination port (ICMP: `type << 8 | code`).
    pub dst_port: u16,
}

/// ICMP (v4) query types and the type of their reply.
const ICMP_INVERSE: &[(u8, u8)] = &[(8, 0), (0, 8), (13, 14), (14, 13), (15, 16), (16, 15)];
/// ICMPv6 echo and node-information types and their replies.
const ICMP6_INVERSE: &[(u8, u8)] = &[(128, 129), (129, 128), (139, 140), (140, 139)];

impl Tuple {
    /// A tuple with ports.
    pub fn new(proto: Protocol, src: IpAddr, src_port: u16, dst: IpAddr, dst_port: u16) -> Tuple {
        Tuple {
            proto,
            src,
            dst,
            src_port,
            dst_port,
        }
    }

    /// The ICMP type when this is an ICMP/ICMPv6 tuple.
    pub fn icmp_type(&self) -> Option<u8> {
        matches!(self.proto, Protocol::Icmp | Protocol::IcmpV6)
            .then_some((self.dst_port >> 8) as u8)
    }

    /// The tuple of the other direction (`nf_ct_invert_tuple`).
    pub fn invert(&self) -> Option<Tuple> {
        let (src_port, dst_port) = match self.proto {
            Protocol::Icmp | Protocol::IcmpV6 => {
                let table = if self.proto == Protocol::Icmp {
                    ICMP_INVERSE
                } else {
                    ICMP6_INVERSE
                };
                let ty = (self.dst_port >> 8) as u8;
                let code = self.dst_port & 0xff;
                let (_, inv) = table.iter().find(|(t, _)| *t == ty)?;
                (self.src_port, (u16::from(*inv) << 8) | code)
            }
            _ => (self.dst_port, self.src_port),
        };
        Some(Tuple {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            src_port,
            dst_port,
        })
    }

    /// Whether the protocol has ports that NAT can change.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
    }
}

impl fmt::Display for Tuple {
    /// `tcp 10.0.0.1:40000 -> 10.96.0.10:80`, `[v6]:port` for IPv6.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sock = |ip: IpAddr, port: u16| match ip {
            IpAddr::V4(a) => format!("{a}:{port}"),
            IpAddr::V6(a) => format!("[{a}]:{port}"),
        };
        write!(
            f,
            "{} {} -> {}",
            self.proto,
            sock(self.src, self.src_port),
            sock(self.dst, self.dst_port)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn invert_swaps_ports_and_addresses() {
        let t = Tuple::new(Protocol::Tcp, ip("10.0.0.1"), 40000, ip("10.96.0.10"), 80);
        let r = t.invert().unwrap();
        assert_eq!(
            r,
            Tuple::new(Protocol::Tcp, ip("10.96.0.10"), 80, ip("10.0.0.1"), 40000)
        );
        assert_eq!(r.invert().unwrap(), t);
    }

    #[test]
    fn icmp_echo_inverts_to_reply_and_errors_do_not_invert() {
        let t = Tuple::new(
            Protocol::Icmp,
            ip("10.0.0.1"),
            0x1234,
            ip("10.0.0.2"),
            8 << 8,
        );
        let r = t.invert().unwrap();
        assert_eq!((r.src_port, r.dst_port), (0x1234, 0));
        let err = Tuple::new(
            Protocol::Icmp,
            ip("10.0.0.1"),
            0,
            ip("10.0.0.2"),
            3 << 8 | 3,
        );
        assert_eq!(err.invert(), None);
    }
}

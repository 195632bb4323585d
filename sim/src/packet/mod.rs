//! Packets as real bytes: IPv4/IPv6 with TCP, UDP, SCTP or ICMP headers.
//!
//! Models: the datagram a Linux host puts on the wire ([`Packet`], an owned
//! byte buffer with validated headers and accessors), the owned description
//! that builds it ([`PacketRepr`], emitted through `pnet_packet`), the flow
//! key conntrack indexes by ([`Tuple`]), and the header rewrites NAT makes
//! — addresses and ports, with the IP and layer-4 checksums updated
//! incrementally as the kernel does (`nat`), including the datagram quoted
//! inside an ICMP error.
//!
//! Must never: hold a packet whose headers it has not validated, change a
//! byte without fixing the checksums that cover it, or mix address families.
//!
//! Error contract: constructors and rewrites return [`PacketError`]; no
//! accessor panics on a [`Packet`] (validation happened at construction).

mod checksum;
mod nat;
mod repr;
mod tuple;

pub use checksum::{crc32c, internet as internet_checksum, ones_sum};
pub use nat::Side;
pub use repr::{PacketRepr, TcpFlags, Transport};
pub use tuple::Tuple;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::netfilter::{Family, Protocol};

/// Why bytes are not a packet this model handles, or a rewrite is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Fewer bytes than a header (or the stated length) needs.
    #[error("packet truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    /// The IP version nibble is neither 4 nor 6.
    #[error("unknown IP version {version}")]
    BadVersion { version: u8 },
    /// A header length field is impossible.
    #[error("bad header length {len}")]
    BadHeaderLength { len: usize },
    /// An IPv4 fragment (this model does not reassemble).
    #[error("IPv4 fragments are not modelled")]
    Fragment,
    /// An IPv6 extension header (this model handles none).
    #[error("IPv6 extension header {next_header} is not modelled")]
    Ipv6Extension { next_header: u8 },
    /// The packet would be longer than its length field can say.
    #[error("packet of {len} bytes is too long")]
    TooLong { len: usize },
    /// Source and destination (or a NAT address) of different families.
    #[error("address families do not match")]
    MixedFamilies,
    /// A port rewrite on a protocol without ports.
    #[error("protocol {proto} has no ports to rewrite")]
    NoPorts { proto: u8 },
}

/// Where the headers of a datagram are, as parsed from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Headers {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: Protocol,
    pub ttl: u8,
    pub ident: u16,
    /// Offset of the layer-4 header.
    pub l4_offset: usize,
    /// End of the datagram (its stated length, capped at the buffer when
    /// `truncated_ok`).
    pub end: usize,
}

impl Headers {
    /// Parse the IP header and check the layer-4 header is present. With
    /// `truncated_ok` (a datagram quoted in an ICMP error) only the first
    /// 8 bytes of the layer-4 header must be present.
    pub(crate) fn parse(b: &[u8], truncated_ok: bool) -> Result<Headers, PacketError> {
        let short = |needed: usize| PacketError::Truncated {
            needed,
            got: b.len(),
        };
        let first = *b.first().ok_or(short(1))?;
        let (src, dst, proto_num, ttl, ident, l4_offset, stated) = match first >> 4 {
            4 => {
                if b.len() < 20 {
                    return Err(short(20));
                }
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < 20 {
                    return Err(PacketError::BadHeaderLength { len: ihl });
                }
                if b.len() < ihl {
                    return Err(short(ihl));
                }
                let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
                if total < ihl {
                    return Err(PacketError::BadHeaderLength { len: total });
                }
                let frag = u16::from_be_bytes([b[6], b[7]]);
                if frag & 0x3fff != 0 {
                    return Err(PacketError::Fragment);
                }
                let a = |o: usize| IpAddr::V4(Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]));
                let ident = u16::from_be_bytes([b[4], b[5]]);
                (a(12), a(16), b[9], b[8], ident, ihl, total)
            }
            6 => {
                if b.len() < 40 {
                    return Err(short(40));
                }
                let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
                let a = |o: usize| {
                    let mut x = [0u8; 16];
                    x.copy_from_slice(&b[o..o + 16]);
                    IpAddr::V6(Ipv6Addr::from(x))
                };
                let nh = b[6];
                if matches!(nh, 0 | 43 | 44 | 50 | 51 | 60 | 135) {
                    return Err(PacketError::Ipv6Extension { next_header: nh });
                }
                (a(8), a(24), nh, b[7], 0, 40, 40 + plen)
            }
            v => return Err(PacketError::BadVersion { version: v }),
        };
        let end = if truncated_ok {
            stated.min(b.len())
        } else if b.len() < stated {
            return Err(short(stated));
        } else {
            stated
        };
        let proto = Protocol::from_number(proto_num).unwrap_or(Protocol::Other(0));
        let need = match proto {
            Protocol::Tcp | Protocol::Sctp if truncated_ok => 8,
            Protocol::Tcp => 20,
            Protocol::Udp | Protocol::Icmp | Protocol::IcmpV6 => 8,
            Protocol::Sctp => 12,
            Protocol::Other(_) => 0,
        };
        if end < l4_offset + need {
            return Err(short(l4_offset + need));
        }
        if proto == Protocol::Tcp && !truncated_ok {
            let doff = usize::from(b[l4_offset + 12] >> 4) * 4;
            if doff < 20 || end < l4_offset + doff {
                return Err(PacketError::BadHeaderLength { len: doff });
            }
        }
        Ok(Headers {
            src,
            dst,
            proto,
            ttl,
            ident,
            l4_offset,
            end,
        })
    }

    fn port(&self, b: &[u8], at: usize) -> Option<u16> {
        matches!(self.proto, Protocol::Tcp | Protocol::Udp | Protocol::Sctp)
            .then(|| u16::from_be_bytes([b[self.l4_offset + at], b[self.l4_offset + at + 1]]))
    }

    /// The flow tuple, `None` for protocols conntrack tracks without one.
    fn tuple(&self, b: &[u8]) -> Option<Tuple> {
        let l4 = &b[self.l4_offset..];
        let (sp, dp) = match self.proto {
            Protocol::Tcp | Protocol::Udp | Protocol::Sctp => (self.port(b, 0)?, self.port(b, 2)?),
            Protocol::Icmp | Protocol::IcmpV6 => (
                u16::from_be_bytes([l4[4], l4[5]]),
                u16::from_be_bytes([l4[0], l4[1]]),
            ),
            Protocol::Other(_) => (0, 0),
        };
        Some(Tuple::new(self.proto, self.src, sp, self.dst, dp))
    }
}

/// A datagram as it travels: real bytes with validated headers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    bytes: Vec<u8>,
    h: Headers,
}

impl Packet {
    /// Take ownership of a datagram's bytes (trailing bytes beyond the
    /// stated length are cut off).
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Packet, PacketError> {
        let h = Headers::parse(&bytes, false)?;
        bytes.truncate(h.end);
        Ok(Packet { bytes, h })
    }

    /// Build a packet from its description.
    pub fn build(repr: &PacketRepr) -> Result<Packet, PacketError> {
        let mut bytes = vec![0u8; repr.buffer_len()];
        repr.emit(&mut bytes)?;
        Packet::from_bytes(bytes)
    }

    fn headers(&self) -> Headers {
        self.h
    }

    /// Re-read the headers after a rewrite (which never changes lengths).
    fn refresh(&mut self) {
        self.h = Headers::parse(&self.bytes, false).expect("rewrites keep headers valid");
    }

    /// The datagram's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a packet has at least an IP header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The address family.
    pub fn family(&self) -> Family {
        if self.bytes[0] >> 4 == 6 {
            Family::Ipv6
        } else {
            Family::Ipv4
        }
    }

    /// Source address.
    pub fn src(&self) -> IpAddr {
        self.headers().src
    }

    /// Destination address.
    pub fn dst(&self) -> IpAddr {
        self.headers().dst
    }

    /// The layer-4 protocol.
    pub fn protocol(&self) -> Protocol {
        self.headers().proto
    }

    /// IPv4 TTL / IPv6 hop limit.
    pub fn ttl(&self) -> u8 {
        self.headers().ttl
    }

    /// Source port (TCP/UDP/SCTP only).
    pub fn src_port(&self) -> Option<u16> {
        self.headers().port(&self.bytes, 0)
    }

    /// Destination port (TCP/UDP/SCTP only).
    pub fn dst_port(&self) -> Option<u16> {
        self.headers().port(&self.bytes, 2)
    }

    /// TCP flags (TCP only).
    pub fn tcp_flags(&self) -> Option<TcpFlags> {
        (self.protocol() == Protocol::Tcp).then(|| TcpFlags(self.bytes[self.h.l4_offset + 13]))
    }

    /// ICMP/ICMPv6 type and code.
    pub fn icmp_type_code(&self) -> Option<(u8, u8)> {
        matches!(self.protocol(), Protocol::Icmp | Protocol::IcmpV6).then(|| {
            (
                self.bytes[self.h.l4_offset],
                self.bytes[self.h.l4_offset + 1],
            )
        })
    }

    /// Whether this is an ICMP/ICMPv6 error message (which quotes a datagram).
    pub fn is_icmp_error(&self) -> bool {
        match (self.protocol(), self.icmp_type_code()) {
            (Protocol::Icmp, Some((t, _))) => matches!(t, 3 | 4 | 5 | 11 | 12),
            (Protocol::IcmpV6, Some((t, _))) => matches!(t, 1..=4),
            _ => false,
        }
    }

    /// The flow tuple of this packet.
    pub fn tuple(&self) -> Option<Tuple> {
        self.headers().tuple(&self.bytes)
    }

    /// For an ICMP error, the tuple of the quoted datagram.
    pub fn icmp_inner_tuple(&self) -> Option<Tuple> {
        if !self.is_icmp_error() {
            return None;
        }
        let inner = &self.bytes[self.h.l4_offset + 8..];
        Headers::parse(inner, true).ok()?.tuple(inner)
    }

    /// The bytes after the layer-4 header.
    pub fn payload(&self) -> &[u8] {
        let hl = match self.protocol() {
            Protocol::Tcp => usize::from(self.bytes[self.h.l4_offset + 12] >> 4) * 4,
            Protocol::Udp | Protocol::Icmp | Protocol::IcmpV6 => 8,
            Protocol::Sctp => 12,
            Protocol::Other(_) => 0,
        };
        &self.bytes[self.h.l4_offset + hl..]
    }

    /// The packet's description.
    pub fn repr(&self) -> PacketRepr {
        PacketRepr::parse(&self.bytes).expect("packet headers stay valid")
    }

    /// Whether the IPv4 header checksum and the layer-4 checksum are right
    /// (recomputed from scratch over the current bytes).
    pub fn checksums_ok(&self) -> bool {
        let mut copy = self.bytes.clone();
        let (ip, l4) = copy.split_at_mut(self.h.l4_offset);
        if self.family() == Family::Ipv4 {
            let mut hdr = ip.to_vec();
            repr::fix_ipv4_checksum(&mut hdr);
            if hdr != ip {
                return false;
            }
        }
        let proto = self.protocol();
        if proto == Protocol::Udp && self.family() == Family::Ipv4 && l4[6..8] == [0, 0] {
            return true;
        }
        let before = l4.to_vec();
        repr::fix_l4_checksum(ip, l4, proto);
        before == l4
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Packet({self})")
    }
}

impl fmt::Display for Packet {
    /// One line in the style of the kernel LOG target:
    /// `SRC=10.0.0.1 DST=10.0.0.2 LEN=40 TTL=64 PROTO=TCP SPT=1 DPT=2 SYN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.headers();
        write!(
            f,
            "SRC={} DST={} LEN={} TTL={} PROTO=",
            h.src,
            h.dst,
            self.len(),
            h.ttl
        )?;
        match h.proto {
            Protocol::Tcp | Protocol::Udp | Protocol::Sctp => {
                write!(f, "{}", h.proto.to_string().to_uppercase())?;
                write!(
                    f,
                    " SPT={} DPT={}",
                    self.src_port().unwrap_or(0),
                    self.dst_port().unwrap_or(0)
                )?;
                if let Some(fl) = self.tcp_flags() {
                    write!(f, " {fl}")?;
                }
                Ok(())
            }
            Protocol::Icmp | Protocol::IcmpV6 => {
                let (t, c) = self.icmp_type_code().unwrap_or((0, 0));
                let name = if h.proto == Protocol::Icmp {
                    "ICMP"
                } else {
                    "ICMPv6"
                };
                write!(f, "{name} TYPE={t} CODE={c}")
            }
            Protocol::Other(n) => write!(f, "{n}"),
        }
    }
}

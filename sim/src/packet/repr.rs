//! The owned, validated description of a packet (`Repr`, smoltcp style):
//! what a host puts on the wire, built into real bytes with `pnet_packet`.
//!
//! Models: an IPv4 header (no options, DF set, the given TTL and
//! identification) or an IPv6 header (no extension headers), then a TCP
//! (no options), UDP, SCTP (common header; chunks are the payload) or
//! ICMP/ICMPv6 header, then the payload. [`PacketRepr::emit`] writes every
//! byte, checksums included; [`PacketRepr::parse`] reads them back.
//!
//! Must never: leave a byte of the output buffer unwritten (tests emit into
//! poison-filled buffers), or compute a checksum over anything but the
//! bytes that are emitted.
//!
//! Error contract: [`PacketError`] for buffers that are too short,
//! inconsistent lengths, unknown versions and mixed address families.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_packet::icmp::IcmpPacket;
use pnet_packet::icmpv6::Icmpv6Packet;
use pnet_packet::ip::IpNextHeaderProtocol;
use pnet_packet::ipv4::{Ipv4Packet, MutableIpv4Packet};
use pnet_packet::ipv6::MutableIpv6Packet;
use pnet_packet::tcp::{MutableTcpPacket, TcpPacket};
use pnet_packet::udp::{MutableUdpPacket, UdpPacket};

use super::checksum;
use super::PacketError;
use crate::netfilter::Protocol;

/// TCP header flags (the low byte of the flags field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// SYN.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// RST.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// PSH.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// ACK.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// URG.
    pub const URG: TcpFlags = TcpFlags(0x20);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl fmt::Display for TcpFlags {
    /// Names in the kernel LOG target's order, space separated (`SYN ACK`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (0x20, "URG"),
            (0x10, "ACK"),
            (0x08, "PSH"),
            (0x04, "RST"),
            (0x02, "SYN"),
            (0x01, "FIN"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(b, _)| self.0 & b != 0)
            .map(|(_, n)| *n)
            .collect();
        f.write_str(&set.join(" "))
    }
}

/// The layer-4 header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP without options.
    Tcp {
        src_port: u16,
        dst_port: u16,
        seq: u32,
        ack: u32,
        flags: TcpFlags,
        window: u16,
    },
    /// UDP.
    Udp { src_port: u16, dst_port: u16 },
    /// SCTP common header (the chunks are the payload).
    Sctp {
        src_port: u16,
        dst_port: u16,
        vtag: u32,
    },
    /// ICMP (in IPv4) or ICMPv6 (in IPv6): type, code and the 4 bytes after
    /// the checksum (identifier and sequence for echo, unused for errors).
    Icmp { ty: u8, code: u8, rest: u32 },
    /// Any other protocol number; everything after the IP header is payload.
    Other(u8),
}

impl Transport {
    /// The protocol this header belongs to, for a packet of `v6`.
    pub fn protocol(&self, v6: bool) -> Protocol {
        match self {
            Transport::Tcp { .. } => Protocol::Tcp,
            Transport::Udp { .. } => Protocol::Udp,
            Transport::Sctp { .. } => Protocol::Sctp,
            Transport::Icmp { .. } if v6 => Protocol::IcmpV6,
            Transport::Icmp { .. } => Protocol::Icmp,
            Transport::Other(n) => Protocol::from_number(*n).unwrap_or(Protocol::Other(0)),
        }
    }

    fn header_len(&self) -> usize {
        match self {
            Transport::Tcp { .. } => 20,
            Transport::Udp { .. } | Transport::Icmp { .. } => 8,
            Transport::Sctp { .. } => 12,
            Transport::Other(_) => 0,
        }
    }
}

/// A packet as a host means it: addresses, layer-4 header and payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PacketRepr {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (same family as `src`).
    pub dst: IpAddr,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ident: u16,
    /// The layer-4 header.
    pub transport: Transport,
    /// Bytes after the layer-4 header.
    pub payload: Vec<u8>,
}

impl PacketRepr {
    fn v6(&self) -> bool {
        self.src.is_ipv6()
    }

    fn ip_header_len(&self) -> usize {
        if self.v6() {
            40
        } else {
            20
        }
    }

    /// The number of bytes [`PacketRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        self.ip_header_len() + self.transport.header_len() + self.payload.len()
    }

    /// The layer-4 protocol.
    pub fn protocol(&self) -> Protocol {
        self.transport.protocol(self.v6())
    }

    /// Write the packet into `buf` (at least [`PacketRepr::buffer_len`]
    /// bytes); returns the number of bytes written.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, PacketError> {
        let len = self.buffer_len();
        if buf.len() < len {
            return Err(PacketError::Truncated {
                needed: len,
                got: buf.len(),
            });
        }
        let buf = &mut buf[..len];
        let ip_len = self.ip_header_len();
        let proto_num = match self.transport {
            Transport::Other(n) => n,
            _ => self.protocol().number(),
        };
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = u16::try_from(len).map_err(|_| PacketError::TooLong { len })?;
                let mut ip =
                    MutableIpv4Packet::new(&mut buf[..ip_len]).ok_or(PacketError::Truncated {
                        needed: 20,
                        got: ip_len,
                    })?;
                ip.set_version(4);
                ip.set_header_length(5);
                ip.set_dscp(0);
                ip.set_ecn(0);
                ip.set_total_length(total);
                ip.set_identification(self.ident);
                ip.set_flags(0b010);
                ip.set_fragment_offset(0);
                ip.set_ttl(self.ttl);
                ip.set_next_level_protocol(IpNextHeaderProtocol::new(proto_num));
                ip.set_checksum(0);
                ip.set_source(s);
                ip.set_destination(d);
                let c = pnet_packet::ipv4::checksum(&ip.to_immutable());
                ip.set_checksum(c);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let plen = u16::try_from(len - 40).map_err(|_| PacketError::TooLong { len })?;
                let mut ip =
                    MutableIpv6Packet::new(&mut buf[..ip_len]).ok_or(PacketError::Truncated {
                        needed: 40,
                        got: ip_len,
                    })?;
                ip.set_version(6);
                ip.set_traffic_class(0);
                ip.set_flow_label(0);
                ip.set_payload_length(plen);
                ip.set_next_header(IpNextHeaderProtocol::new(proto_num));
                ip.set_hop_limit(self.ttl);
                ip.set_source(s);
                ip.set_destination(d);
            }
            _ => return Err(PacketError::MixedFamilies),
        }
        let hl = self.transport.header_len();
        buf[ip_len + hl..].copy_from_slice(&self.payload);
        let (head, l4) = buf.split_at_mut(ip_len);
        self.emit_transport(l4)?;
        fix_l4_checksum(head, l4, self.protocol());
        Ok(len)
    }

    fn emit_transport(&self, l4: &mut [u8]) -> Result<(), PacketError> {
        let short = || PacketError::Truncated {
            needed: self.transport.header_len(),
            got: 0,
        };
        match self.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
            } => {
                let mut t = MutableTcpPacket::new(l4).ok_or_else(short)?;
                t.set_source(src_port);
                t.set_destination(dst_port);
                t.set_sequence(seq);
                t.set_acknowledgement(ack);
                t.set_data_offset(5);
                t.set_reserved(0);
                t.set_flags(flags.0);
                t.set_window(window);
                t.set_checksum(0);
                t.set_urgent_ptr(0);
            }
            Transport::Udp { src_port, dst_port } => {
                let len =
                    u16::try_from(l4.len()).map_err(|_| PacketError::TooLong { len: l4.len() })?;
                let mut u = MutableUdpPacket::new(l4).ok_or_else(short)?;
                u.set_source(src_port);
                u.set_destination(dst_port);
                u.set_length(len);
                u.set_checksum(0);
            }
            Transport::Sctp {
                src_port,
                dst_port,
                vtag,
            } => {
                l4[0..2].copy_from_slice(&src_port.to_be_bytes());
                l4[2..4].copy_from_slice(&dst_port.to_be_bytes());
                l4[4..8].copy_from_slice(&vtag.to_be_bytes());
                l4[8..12].copy_from_slice(&[0; 4]);
            }
            Transport::Icmp { ty, code, rest } => {
                l4[0] = ty;
                l4[1] = code;
                l4[2..4].copy_from_slice(&[0, 0]);
                l4[4..8].copy_from_slice(&rest.to_be_bytes());
            }
            Transport::Other(_) => {}
        }
        Ok(())
    }

    /// Read a packet from `bytes` (the whole IP datagram).
    pub fn parse(bytes: &[u8]) -> Result<PacketRepr, PacketError> {
        let h = super::Headers::parse(bytes, false)?;
        let l4 = &bytes[h.l4_offset..h.end];
        let be16 = |o: usize| u16::from_be_bytes([l4[o], l4[o + 1]]);
        let be32 = |o: usize| u32::from_be_bytes([l4[o], l4[o + 1], l4[o + 2], l4[o + 3]]);
        let (transport, hl) = match h.proto {
            Protocol::Tcp => {
                let t = TcpPacket::new(l4).ok_or(PacketError::Truncated {
                    needed: 20,
                    got: l4.len(),
                })?;
                let doff = usize::from(t.get_data_offset()) * 4;
                (
                    Transport::Tcp {
                        src_port: t.get_source(),
                        dst_port: t.get_destination(),
                        seq: t.get_sequence(),
                        ack: t.get_acknowledgement(),
                        flags: TcpFlags(t.get_flags()),
                        window: t.get_window(),
                    },
                    doff,
                )
            }
            Protocol::Udp => {
                let u = UdpPacket::new(l4).ok_or(PacketError::Truncated {
                    needed: 8,
                    got: l4.len(),
                })?;
                (
                    Transport::Udp {
                        src_port: u.get_source(),
                        dst_port: u.get_destination(),
                    },
                    8,
                )
            }
            Protocol::Sctp => (
                Transport::Sctp {
                    src_port: be16(0),
                    dst_port: be16(2),
                    vtag: be32(4),
                },
                12,
            ),
            Protocol::Icmp | Protocol::IcmpV6 => (
                Transport::Icmp {
                    ty: l4[0],
                    code: l4[1],
                    rest: be32(4),
                },
                8,
            ),
            Protocol::Other(n) => (Transport::Other(n), 0),
        };
        Ok(PacketRepr {
            src: h.src,
            dst: h.dst,
            ttl: h.ttl,
            ident: h.ident,
            transport,
            payload: l4[hl.min(l4.len())..].to_vec(),
        })
    }
}

/// Compute and store the layer-4 checksum of `l4` (the bytes after the IP
/// header `ip`) from scratch. UDP over IPv4 that sums to zero is sent as
/// 0xffff (zero means "no checksum").
pub(crate) fn fix_l4_checksum(ip: &[u8], l4: &mut [u8], proto: Protocol) {
    let v4 = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let v6 = |o: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&ip[o..o + 16]);
        Ipv6Addr::from(b)
    };
    let is_v6 = ip[0] >> 4 == 6;
    match proto {
        Protocol::Tcp => {
            let c = match TcpPacket::new(l4) {
                Some(t) if is_v6 => pnet_packet::tcp::ipv6_checksum(&t, &v6(8), &v6(24)),
                Some(t) => pnet_packet::tcp::ipv4_checksum(&t, &v4(12), &v4(16)),
                None => return,
            };
            l4[16..18].copy_from_slice(&c.to_be_bytes());
        }
        Protocol::Udp => {
            let c = match UdpPacket::new(l4) {
                Some(u) if is_v6 => pnet_packet::udp::ipv6_checksum(&u, &v6(8), &v6(24)),
                Some(u) => pnet_packet::udp::ipv4_checksum(&u, &v4(12), &v4(16)),
                None => return,
            };
            let c = if c == 0 { 0xffff } else { c };
            l4[6..8].copy_from_slice(&c.to_be_bytes());
        }
        Protocol::Sctp if l4.len() >= 12 => {
            l4[8..12].copy_from_slice(&[0; 4]);
            let c = checksum::crc32c(l4);
            l4[8..12].copy_from_slice(&c.to_le_bytes());
        }
        Protocol::Icmp if l4.len() >= 8 => {
            l4[2..4].copy_from_slice(&[0, 0]);
            if let Some(p) = IcmpPacket::new(l4) {
                let c = pnet_packet::icmp::checksum(&p);
                l4[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
        Protocol::IcmpV6 if l4.len() >= 8 => {
            l4[2..4].copy_from_slice(&[0, 0]);
            if let Some(p) = Icmpv6Packet::new(l4) {
                let c = pnet_packet::icmpv6::checksum(&p, &v6(8), &v6(24));
                l4[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
        _ => {}
    }
}

/// Recompute the IPv4 header checksum of `ip` (a full IPv4 header).
pub(crate) fn fix_ipv4_checksum(ip: &mut [u8]) {
    ip[10..12].copy_from_slice(&[0, 0]);
    if let Some(p) = Ipv4Packet::new(ip) {
        let c = pnet_packet::ipv4::checksum(&p);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

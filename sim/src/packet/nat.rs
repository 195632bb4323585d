//! Header rewrites: what NAT and forwarding change in a packet's bytes.
//!
//! Models: `nf_nat_ipv4_manip_pkt`/`nf_nat_ipv6_manip_pkt` with the
//! per-protocol `*_manip_pkt` helpers — an address and optionally a port
//! replaced on one side, the IPv4 header checksum and the layer-4 checksum
//! (pseudo-header included) updated incrementally; UDP over IPv4 without a
//! checksum keeps none, and a UDP checksum that becomes zero is sent as
//! 0xffff (`CSUM_MANGLED_0`); SCTP gets its CRC32c recomputed. The same
//! rewrite on the datagram quoted in an ICMP error (`rewrite_icmp_inner`),
//! after which the ICMP checksum is recomputed as the kernel does. And the
//! TTL decrement of forwarding.
//!
//! Must never: change the length of a packet or leave a checksum stale.
//!
//! Error contract: [`PacketError::MixedFamilies`] for an address of the
//! other family, [`PacketError::NoPorts`] for a port on a protocol without
//! ports; on error the packet is unchanged.

use std::net::IpAddr;

use super::checksum;
use super::repr::fix_l4_checksum;
use super::{Headers, Packet, PacketError};
use crate::netfilter::{Family, Protocol};

/// Which side of a packet a rewrite changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// Source address and port (SNAT, MASQUERADE, un-DNAT of replies).
    Source,
    /// Destination address and port (DNAT, un-SNAT of replies).
    Destination,
}

impl Packet {
    /// Replace the address (and the port, when given) on one side.
    pub fn rewrite(
        &mut self,
        side: Side,
        addr: IpAddr,
        port: Option<u16>,
    ) -> Result<(), PacketError> {
        let h = self.h;
        check(&h, addr, port)?;
        manip(&mut self.bytes, &h, side, addr, port, false);
        self.refresh();
        Ok(())
    }

    /// Replace the source address (and port).
    pub fn set_source(&mut self, addr: IpAddr, port: Option<u16>) -> Result<(), PacketError> {
        self.rewrite(Side::Source, addr, port)
    }

    /// Replace the destination address (and port).
    pub fn set_destination(&mut self, addr: IpAddr, port: Option<u16>) -> Result<(), PacketError> {
        self.rewrite(Side::Destination, addr, port)
    }

    /// For an ICMP error: rewrite one side of the quoted datagram, then
    /// recompute the ICMP checksum. A no-op returning `Ok(false)` when this
    /// is not an ICMP error or the quote is unreadable.
    pub fn rewrite_icmp_inner(
        &mut self,
        side: Side,
        addr: IpAddr,
        port: Option<u16>,
    ) -> Result<bool, PacketError> {
        if !self.is_icmp_error() {
            return Ok(false);
        }
        let start = self.h.l4_offset + 8;
        let Ok(inner) = Headers::parse(&self.bytes[start..], true) else {
            return Ok(false);
        };
        check(&inner, addr, port)?;
        manip(&mut self.bytes[start..], &inner, side, addr, port, true);
        let proto = self.h.proto;
        let (ip, l4) = self.bytes.split_at_mut(self.h.l4_offset);
        fix_l4_checksum(ip, l4, proto);
        self.refresh();
        Ok(true)
    }

    /// Decrement the TTL / hop limit as forwarding does, fixing the IPv4
    /// header checksum. Returns the new value, or `None` when the packet
    /// must not be forwarded (TTL 1 or 0).
    pub fn decrement_ttl(&mut self) -> Option<u8> {
        let (at, v4) = match self.family() {
            Family::Ipv4 => (8, true),
            Family::Ipv6 => (7, false),
        };
        let ttl = self.bytes[at];
        if ttl <= 1 {
            return None;
        }
        if v4 {
            let old = [self.bytes[8], self.bytes[9]];
            let new = [ttl - 1, self.bytes[9]];
            let c = u16::from_be_bytes([self.bytes[10], self.bytes[11]]);
            let c = checksum::replace(c, &old, &new);
            self.bytes[10..12].copy_from_slice(&c.to_be_bytes());
        }
        self.bytes[at] = ttl - 1;
        self.refresh();
        Some(ttl - 1)
    }
}

fn check(h: &Headers, addr: IpAddr, port: Option<u16>) -> Result<(), PacketError> {
    if addr.is_ipv4() != h.src.is_ipv4() {
        return Err(PacketError::MixedFamilies);
    }
    let has_ports = matches!(
        h.proto,
        Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::Icmp | Protocol::IcmpV6
    );
    if port.is_some() && !has_ports {
        return Err(PacketError::NoPorts {
            proto: h.proto.number(),
        });
    }
    Ok(())
}

fn addr_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn get16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Rewrite one side of the datagram at the start of `b`. `inner` marks a
/// datagram quoted in an ICMP error, whose layer-4 header may be cut short.
fn manip(b: &mut [u8], h: &Headers, side: Side, addr: IpAddr, port: Option<u16>, inner: bool) {
    let v4 = h.src.is_ipv4();
    let at = match (v4, side) {
        (true, Side::Source) => 12,
        (true, Side::Destination) => 16,
        (false, Side::Source) => 8,
        (false, Side::Destination) => 24,
    };
    let new_addr = addr_bytes(addr);
    let old_addr = b[at..at + new_addr.len()].to_vec();
    let l4 = h.l4_offset;
    let l4_len = h.end - l4;
    // Where the layer-4 checksum is, and whether the pseudo-header counts.
    let (csum_at, pseudo) = match h.proto {
        Protocol::Tcp if !inner || l4_len >= 20 => (Some(l4 + 16), true),
        Protocol::Udp if get16(b, l4 + 6) != 0 || !v4 => (Some(l4 + 6), true),
        Protocol::Icmp => (Some(l4 + 2), false),
        Protocol::IcmpV6 => (Some(l4 + 2), true),
        _ => (None, false),
    };
    let zero_means_none = h.proto == Protocol::Udp;
    let update = |b: &mut [u8], old: &[u8], new: &[u8]| {
        if let Some(c) = csum_at {
            let v = checksum::replace(get16(b, c), old, new);
            put16(b, c, if zero_means_none && v == 0 { 0xffff } else { v });
        }
    };
    if v4 {
        let c = checksum::replace(get16(b, 10), &old_addr, &new_addr);
        put16(b, 10, c);
    }
    b[at..at + new_addr.len()].copy_from_slice(&new_addr);
    if pseudo {
        update(b, &old_addr, &new_addr);
    }
    if let Some(p) = port {
        // ICMP keeps its "port" (the query identifier) at offset 4, and
        // only query messages have one (`icmp_manip_pkt`).
        let query = matches!(b[l4], 0 | 8 | 13..=18 | 128 | 129);
        let port_at = match (h.proto, side) {
            (Protocol::Icmp | Protocol::IcmpV6, Side::Source) if query => Some(l4 + 4),
            (Protocol::Icmp | Protocol::IcmpV6, _) => None,
            (_, Side::Source) => Some(l4),
            (_, Side::Destination) => Some(l4 + 2),
        };
        if let Some(pa) = port_at {
            let old = [b[pa], b[pa + 1]];
            put16(b, pa, p);
            update(b, &old, &p.to_be_bytes());
        }
    }
    if h.proto == Protocol::Sctp && !inner && l4_len >= 12 {
        let (ip, l4b) = b.split_at_mut(l4);
        fix_l4_checksum(ip, &mut l4b[..l4_len], Protocol::Sctp);
    }
}

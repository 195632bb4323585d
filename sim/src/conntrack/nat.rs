//! NAT bindings on conntrack entries: `nf_nat_setup_info` and
//! `nf_nat_packet`.
//!
//! Models: a binding is made once per connection and manipulation type —
//! destination (at PREROUTING/OUTPUT) and source (at POSTROUTING/INPUT) —
//! from the range a DNAT/SNAT/MASQUERADE rule gave, or as a null binding
//! when the nat chain decided nothing. The chosen tuple must be unique
//! (`nf_nat_used_tuple`: its inverse is no other entry's tuple); a source
//! port is kept when it is free and no `--random`/`--random-fully` was
//! asked, otherwise searched from a random offset in the kernel's port
//! classes (1-511, 600-1023, 1024-65535) or the given range; destination
//! ports change only when a range says so. The binding rewrites the reply
//! tuple and sets `IPS_SRC_NAT`/`IPS_DST_NAT` when the tuple changed. Every
//! packet of the connection is then rewritten at each NAT hook in both
//! directions (replies un-NATed), and ICMP errors about it have their
//! quoted datagram and outer header translated
//! (`nf_nat_icmp_reply_translation`).
//!
//! Must never: consult a rule for a connection whose binding for that
//! manipulation type exists (callers check [`Conntrack::nat_initialized`]),
//! or draw randomness from anything but the stream it is given.
//!
//! Error contract: [`NatError`] for an unknown entry, an address of the
//! wrong family, or a range with no free tuple left (the kernel drops the
//! packet then).

use std::net::IpAddr;

use rand_core::Rng;

use super::entry::{Attached, Dir, Status};
use super::Conntrack;
use crate::packet::{Packet, PacketError, Side, Tuple};

/// Which side a NAT hook manipulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ManipType {
    /// Source NAT (POSTROUTING, INPUT).
    Src,
    /// Destination NAT (PREROUTING, OUTPUT).
    Dst,
}

impl ManipType {
    fn done_bit(self) -> Status {
        match self {
            ManipType::Src => Status::SRC_NAT_DONE,
            ManipType::Dst => Status::DST_NAT_DONE,
        }
    }

    fn nat_bit(self) -> Status {
        match self {
            ManipType::Src => Status::SRC_NAT,
            ManipType::Dst => Status::DST_NAT,
        }
    }

    fn other(self) -> ManipType {
        match self {
            ManipType::Src => ManipType::Dst,
            ManipType::Dst => ManipType::Src,
        }
    }

    fn side(self) -> Side {
        match self {
            ManipType::Src => Side::Source,
            ManipType::Dst => Side::Destination,
        }
    }
}

/// What a NAT rule asks for (`struct nf_nat_range2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NatRange {
    /// First and last address; `None` keeps the address.
    pub addrs: Option<(IpAddr, IpAddr)>,
    /// First and last port; `None` keeps the port where possible.
    pub ports: Option<(u16, u16)>,
    /// `--random`.
    pub random: bool,
    /// `--random-fully`.
    pub random_fully: bool,
    /// `--persistent`: pick the address by source only.
    pub persistent: bool,
}

/// Why a NAT binding could not be made or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NatError {
    /// No entry with that id.
    #[error("no conntrack entry {id}")]
    NoEntry { id: u64 },
    /// Every candidate tuple in the range is in use.
    #[error("no free tuple in the NAT range")]
    Exhausted,
    /// The packet could not be rewritten.
    #[error("rewrite failed: {0}")]
    Packet(#[from] PacketError),
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn addr_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

/// The `n`-th address after `lo` (same family).
fn nth_addr(lo: IpAddr, n: u128) -> IpAddr {
    match lo {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a).wrapping_add(n as u32)).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a).wrapping_add(n)).into()),
    }
}

fn addr_span(lo: IpAddr, hi: IpAddr) -> u128 {
    match (lo, hi) {
        (IpAddr::V4(l), IpAddr::V4(h)) => u128::from(u32::from(h).saturating_sub(u32::from(l))),
        (IpAddr::V6(l), IpAddr::V6(h)) => u128::from(h).saturating_sub(u128::from(l)),
        _ => 0,
    }
}

impl Conntrack {
    /// Whether the binding of `manip` exists (`nf_nat_initialized`).
    pub fn nat_initialized(&self, id: u64, manip: ManipType) -> bool {
        self.entries
            .get(&id)
            .is_some_and(|e| e.status.has(manip.done_bit()))
    }

    fn used(&self, candidate: &Tuple, id: u64) -> bool {
        candidate
            .invert()
            .and_then(|r| self.index.get(&r))
            .is_some_and(|(other, _)| *other != id)
    }

    /// Make the binding of `manip` for entry `id` from `range` (`None`: a
    /// null binding, the packet keeps its addresses). `rng` supplies the
    /// port search offsets.
    pub fn setup_nat(
        &mut self,
        id: u64,
        manip: ManipType,
        range: Option<&NatRange>,
        rng: &mut dyn Rng,
    ) -> Result<(), NatError> {
        let e = self.entries.get(&id).ok_or(NatError::NoEntry { id })?;
        // The original tuple as the packet looks now (earlier bindings applied).
        let curr = e.reply.invert().ok_or(NatError::NoEntry { id })?;
        let new = match range {
            None => curr,
            Some(r) => self.unique_tuple(&curr, r, manip, id, rng)?,
        };
        let reply = new.invert().ok_or(NatError::NoEntry { id })?;
        let e = self.entries.get_mut(&id).ok_or(NatError::NoEntry { id })?;
        e.reply = reply;
        if new != curr {
            e.status.set(manip.nat_bit());
        }
        e.status.set(manip.done_bit());
        Ok(())
    }

    /// `get_unique_tuple`.
    fn unique_tuple(
        &self,
        curr: &Tuple,
        r: &NatRange,
        manip: ManipType,
        id: u64,
        rng: &mut dyn Rng,
    ) -> Result<Tuple, NatError> {
        let mut t = *curr;
        let (addr, port) = match manip {
            ManipType::Src => (&mut t.src, &mut t.src_port),
            ManipType::Dst => (&mut t.dst, &mut t.dst_port),
        };
        if let Some((lo, hi)) = r.addrs {
            if lo.is_ipv4() != curr.src.is_ipv4() {
                return Err(NatError::Packet(PacketError::MixedFamilies));
            }
            let span = addr_span(lo, hi);
            *addr = if span == 0 {
                lo
            } else {
                let mut key = addr_bytes(curr.src);
                if !r.persistent {
                    key.extend(addr_bytes(curr.dst));
                }
                nth_addr(lo, u128::from(fnv(&key)) % (span + 1))
            };
        }
        let port_now = *port;
        if !curr.has_ports() {
            return Ok(t);
        }
        let random_all = r.random || r.random_fully;
        if !random_all {
            let keep = match r.ports {
                Some((lo, hi)) => (lo..=hi).contains(&port_now) && (lo == hi || !self.used(&t, id)),
                None => !self.used(&t, id),
            };
            if keep {
                return Ok(t);
            }
        }
        // nf_nat_l4proto_unique_tuple
        let (min, size) = match r.ports {
            Some((lo, hi)) => (u32::from(lo), u32::from(hi) - u32::from(lo) + 1),
            None if manip == ManipType::Dst => return Ok(t),
            None if port_now < 512 => (1, 511),
            None if port_now < 1024 => (600, 1023 - 600 + 1),
            None => (1024, 65535 - 1024 + 1),
        };
        let mut attempts = size.min(128);
        let mut off = rng.next_u32() & 0xffff;
        loop {
            for _ in 0..attempts {
                let candidate = (min + off % size) as u16;
                off = off.wrapping_add(1);
                let mut c = t;
                match manip {
                    ManipType::Src => c.src_port = candidate,
                    ManipType::Dst => c.dst_port = candidate,
                }
                if !self.used(&c, id) {
                    return Ok(c);
                }
            }
            if attempts >= size || attempts < 16 {
                return Err(NatError::Exhausted);
            }
            attempts /= 2;
            off = rng.next_u32() & 0xffff;
        }
    }

    /// `nf_nat_packet`: apply the bindings of `manip` to a packet attached
    /// to an entry. Returns whether the packet changed.
    pub fn nat_packet(
        &self,
        att: &Attached,
        manip: ManipType,
        pkt: &mut Packet,
    ) -> Result<bool, NatError> {
        let e = self
            .entries
            .get(&att.id)
            .ok_or(NatError::NoEntry { id: att.id })?;
        let dir = att.info.dir();
        // The status bit that makes this hook act, inverted for replies.
        let bit = match dir {
            Dir::Original => manip.nat_bit(),
            Dir::Reply => manip.other().nat_bit(),
        };
        if !e.status.has(bit) {
            return Ok(false);
        }
        let other = *e.tuple(dir.opposite());
        if att.info.is_related() {
            // The quoted datagram travels the other way: opposite manip,
            // to the other direction's tuple as it is.
            let (a, p) = match manip.other() {
                ManipType::Src => (other.src, other.src_port),
                ManipType::Dst => (other.dst, other.dst_port),
            };
            let port = other.has_ports().then_some(p);
            pkt.rewrite_icmp_inner(manip.other().side(), a, port)?;
            let target = other.invert().unwrap_or(Tuple {
                src: other.dst,
                dst: other.src,
                ..other
            });
            let a = match manip {
                ManipType::Src => target.src,
                ManipType::Dst => target.dst,
            };
            pkt.rewrite(manip.side(), a, None)?;
            return Ok(true);
        }
        let Some(target) = other.invert() else {
            return Ok(false);
        };
        let (a, p) = match manip {
            ManipType::Src => (target.src, target.src_port),
            ManipType::Dst => (target.dst, target.dst_port),
        };
        let port = target.has_ports().then_some(p);
        pkt.rewrite(manip.side(), a, port)?;
        Ok(true)
    }
}

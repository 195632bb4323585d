//! What the packet path hands IPVS and what it gets back: the packet
//! facts `ip_vs_in` / `ip_vs_out` read (addresses, ports, TCP flags, the
//! first SCTP chunk, `skb->mark`, `skb->len`, whether conntrack already
//! confirmed the flow) and the verdicts (`NF_ACCEPT`, forward, ICMP port
//! unreachable, `NF_DROP`).
//!
//! Must never: parse bytes — the caller (the simulated packet path) has the
//! headers already; this is the typed summary it passes in.
//!
//! Error contract: plain data; nothing fails.

use std::net::SocketAddr;

use super::conn::ConnId;
use super::proto;
use super::types::{FwdMethod, ServiceKey};
use crate::netfilter::Protocol;

/// The transport header facts IPVS reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4 {
    /// TCP with its flags byte (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10).
    Tcp {
        flags: u8,
    },
    Udp,
    /// SCTP: the first chunk's type, and whether an ABORT follows a
    /// bundled COOKIE ECHO / COOKIE ACK.
    Sctp {
        chunk: u8,
        abort_follows: bool,
    },
}

impl L4 {
    pub fn protocol(self) -> Protocol {
        match self {
            L4::Tcp { .. } => Protocol::Tcp,
            L4::Udp => Protocol::Udp,
            L4::Sctp { .. } => Protocol::Sctp,
        }
    }
}

/// One packet as IPVS sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Packet {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub l4: L4,
    /// `skb->mark`.
    pub fwmark: u32,
    /// `skb->len`: bytes of the IP datagram (for the byte counters).
    pub len: u32,
    /// The packet belongs to an already confirmed conntrack entry
    /// (`ip_vs_conn_uses_old_conntrack`): reuse of such a flow is dropped.
    pub ct_confirmed: bool,
}

impl Packet {
    /// A TCP segment with `flags` and no payload (40 bytes over IPv4).
    pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u8) -> Self {
        Packet::new(src, dst, L4::Tcp { flags }, 40)
    }

    /// A UDP datagram with no payload (28 bytes over IPv4).
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Self {
        Packet::new(src, dst, L4::Udp, 28)
    }

    /// An SCTP packet whose first chunk is `chunk` (48 bytes over IPv4).
    pub fn sctp(src: SocketAddr, dst: SocketAddr, chunk: u8) -> Self {
        let l4 = L4::Sctp {
            chunk,
            abort_follows: false,
        };
        Packet::new(src, dst, l4, 48)
    }

    fn new(src: SocketAddr, dst: SocketAddr, l4: L4, len: u32) -> Self {
        let v6_extra = if src.is_ipv6() { 20 } else { 0 };
        Packet {
            src,
            dst,
            l4,
            fwmark: 0,
            len: len + v6_extra,
            ct_confirmed: false,
        }
    }

    /// The same packet with `skb->len = len`.
    pub fn with_len(mut self, len: u32) -> Self {
        self.len = len;
        self
    }

    /// The same packet with `skb->mark = mark`.
    pub fn with_mark(mut self, mark: u32) -> Self {
        self.fwmark = mark;
        self
    }

    /// The same packet, marked as part of a confirmed conntrack flow.
    pub fn with_ct_confirmed(mut self, confirmed: bool) -> Self {
        self.ct_confirmed = confirmed;
        self
    }

    /// `is_new_conn`: a TCP SYN or an SCTP INIT.
    pub(crate) fn is_new_conn(&self) -> bool {
        match self.l4 {
            L4::Tcp { flags } => flags & proto::TCP_SYN != 0,
            L4::Sctp { chunk, .. } => chunk == proto::SCTP_INIT,
            L4::Udp => false,
        }
    }
}

/// A packet IPVS forwards to a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forward {
    /// Its connection entry (already gone again for one-packet UDP).
    pub conn: ConnId,
    /// Where it goes: with `Masq` the new destination address and port.
    pub dest: SocketAddr,
    pub fwd: FwdMethod,
    /// The packet created the entry.
    pub new_conn: bool,
}

/// Why IPVS dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Its connection's real server left the service (without
    /// `expire_nodest_conn`, or with it for a confirmed conntrack flow).
    DestUnavailable,
    /// A SYN reusing an expiring entry whose conntrack entry is confirmed.
    ConnReuse,
}

/// The outcome of [`super::Ipvs::process_in`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InVerdict {
    /// Not IPVS traffic (no entry and no service, or not a packet that
    /// opens a connection): continue to the local stack (`NF_ACCEPT`).
    Accept,
    /// Forward to a real server (`NF_STOLEN` after transmission).
    Forward(Forward),
    /// A service matched but no real server is available: the kernel sends
    /// ICMP port unreachable to the client and drops the packet.
    Unreachable(ServiceKey),
    /// Dropped silently (`NF_DROP`).
    Drop(DropReason),
}

/// The outcome of [`super::Ipvs::process_out`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutVerdict {
    /// Not a reply of an IPVS NAT connection.
    Accept,
    /// A NAT reply: its source is rewritten to `source` (virtual address).
    Reply { conn: ConnId, source: SocketAddr },
}

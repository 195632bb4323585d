//! The packets `REJECT` sends back: `nf_send_reset` and `nf_send_unreach`.
//!
//! Models: a TCP reset from the rejected segment's destination to its
//! source (ports swapped; `seq` = the segment's `ack` if it had ACK, else
//! `seq` 0 with ACK set and `ack` = its sequence plus its length, SYN and
//! FIN counting one), never in answer to a reset; and an ICMP/ICMPv6
//! destination-unreachable with the `--reject-with` code, quoting the
//! rejected datagram (IPv4: up to 576 bytes in all; IPv6: up to 1280),
//! never in answer to an ICMP error. TTL/hop limit 64.
//!
//! Must never: answer a reset with a reset or an ICMP error with an ICMP
//! error.
//!
//! Error contract: `None` when no reply is sent; a packet builder error is
//! a bug (the inputs are valid packets).

use std::net::IpAddr;

use crate::netfilter::{Family, Protocol, RejectWith};
use crate::packet::{Packet, PacketRepr, TcpFlags, Transport};

/// The reply to `pkt` for `with`, sent from `icmp_src` for ICMP errors.
pub(crate) fn reject_reply(pkt: &Packet, with: RejectWith, icmp_src: IpAddr) -> Option<Packet> {
    if with == RejectWith::TcpReset {
        return tcp_reset(pkt);
    }
    if pkt.is_icmp_error() {
        return None;
    }
    let v6 = pkt.family() == Family::Ipv6;
    let (ty, code) = match with {
        RejectWith::IcmpNetUnreachable => (3, 0),
        RejectWith::IcmpHostUnreachable => (3, 1),
        RejectWith::IcmpProtoUnreachable => (3, 2),
        RejectWith::IcmpPortUnreachable => (3, 3),
        RejectWith::IcmpNetProhibited => (3, 9),
        RejectWith::IcmpHostProhibited => (3, 10),
        RejectWith::IcmpAdminProhibited => (3, 13),
        RejectWith::Icmp6NoRoute => (1, 0),
        RejectWith::Icmp6AdmProhibited => (1, 1),
        RejectWith::Icmp6AddrUnreachable => (1, 3),
        RejectWith::Icmp6PortUnreachable => (1, 4),
        RejectWith::TcpReset => return None,
    };
    let limit = if v6 { 1280 - 48 } else { 576 - 28 };
    let quote = &pkt.bytes()[..pkt.len().min(limit)];
    Packet::build(&PacketRepr {
        src: icmp_src,
        dst: pkt.src(),
        ttl: 64,
        ident: 0,
        transport: Transport::Icmp { ty, code, rest: 0 },
        payload: quote.to_vec(),
    })
    .ok()
}

fn tcp_reset(pkt: &Packet) -> Option<Packet> {
    if pkt.protocol() != Protocol::Tcp {
        return None;
    }
    let repr = pkt.repr();
    let Transport::Tcp {
        src_port,
        dst_port,
        seq,
        ack,
        flags,
        ..
    } = repr.transport
    else {
        return None;
    };
    if flags.contains(TcpFlags::RST) {
        return None;
    }
    let (rst_seq, rst_ack, rst_flags) = if flags.contains(TcpFlags::ACK) {
        (ack, 0, TcpFlags::RST)
    } else {
        let len = repr.payload.len() as u32
            + u32::from(flags.contains(TcpFlags::SYN))
            + u32::from(flags.contains(TcpFlags::FIN));
        (0, seq.wrapping_add(len), TcpFlags::RST | TcpFlags::ACK)
    };
    Packet::build(&PacketRepr {
        src: repr.dst,
        dst: repr.src,
        ttl: 64,
        ident: 0,
        transport: Transport::Tcp {
            src_port: dst_port,
            dst_port: src_port,
            seq: rst_seq,
            ack: rst_ack,
            flags: rst_flags,
            window: 0,
        },
        payload: Vec::new(),
    })
    .ok()
}

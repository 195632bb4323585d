//! The socket layer of an end host: what a pod (or a node's own process,
//! or a client) answers when a packet reaches it.
//!
//! Models: listening TCP and UDP ports; TCP connections a listener
//! accepted (a SYN to a listening port is answered with SYN-ACK and
//! remembered; data on a known connection is answered with data; FIN with
//! FIN-ACK, after which the last ACK is taken silently; anything on an unknown connection, or a SYN to a closed port,
//! with a reset — so a connection NATed to a different backend mid-stream
//! fails as on Linux); UDP datagrams to a listening port answered with a
//! datagram, to a closed port with ICMP port unreachable; ICMP echo
//! answered. Every answer's payload says who answered and what addresses
//! the request arrived with: `name=web-1 src=10.0.0.1:5555 dst=10.244.1.5:8080`.
//!
//! Must never: answer an ICMP error or a reset.
//!
//! Error contract: none; a packet that deserves no answer gets `None`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::netfilter::Protocol;
use crate::packet::{Packet, PacketRepr, TcpFlags, Transport};

/// What the request's addresses looked like where it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeenAddrs {
    /// Source address and port as received.
    pub src: (IpAddr, u16),
    /// Destination address and port as received.
    pub dst: (IpAddr, u16),
}

/// Format the answer payload.
pub(crate) fn answer_payload(name: &str, seen: SeenAddrs) -> Vec<u8> {
    let sock = |(a, p): (IpAddr, u16)| match a {
        IpAddr::V4(v) => format!("{v}:{p}"),
        IpAddr::V6(v) => format!("[{v}]:{p}"),
    };
    format!("name={name} src={} dst={}", sock(seen.src), sock(seen.dst)).into_bytes()
}

/// Read an answer payload back: (name, source seen, destination seen).
pub fn parse_answer(payload: &[u8]) -> Option<(String, SeenAddrs)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut name = None;
    let mut src = None;
    let mut dst = None;
    let sock = |s: &str| -> Option<(IpAddr, u16)> {
        let (a, p) = s.rsplit_once(':')?;
        let a = a.trim_start_matches('[').trim_end_matches(']');
        Some((a.parse().ok()?, p.parse().ok()?))
    };
    for part in text.split(' ') {
        match part.split_once('=') {
            Some(("name", v)) => name = Some(v.to_string()),
            Some(("src", v)) => src = sock(v),
            Some(("dst", v)) => dst = sock(v),
            _ => {}
        }
    }
    Some((
        name?,
        SeenAddrs {
            src: src?,
            dst: dst?,
        },
    ))
}

/// One end host's sockets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sockets {
    tcp_listen: BTreeSet<u16>,
    udp_listen: BTreeSet<u16>,
    /// Accepted TCP connections: (local addr, local port, remote addr, remote port).
    accepted: BTreeSet<(IpAddr, u16, IpAddr, u16)>,
    /// Connections whose FIN was answered, waiting for the last ACK.
    closing: BTreeSet<(IpAddr, u16, IpAddr, u16)>,
}

impl Sockets {
    /// Listen on a port.
    pub fn listen(&mut self, proto: Protocol, port: u16) {
        match proto {
            Protocol::Udp => self.udp_listen.insert(port),
            _ => self.tcp_listen.insert(port),
        };
    }

    /// Stop listening; accepted connections stay.
    pub fn unlisten(&mut self, proto: Protocol, port: u16) {
        match proto {
            Protocol::Udp => self.udp_listen.remove(&port),
            _ => self.tcp_listen.remove(&port),
        };
    }

    /// Whether a port is listened on.
    pub fn listening(&self, proto: Protocol, port: u16) -> bool {
        match proto {
            Protocol::Udp => self.udp_listen.contains(&port),
            _ => self.tcp_listen.contains(&port),
        }
    }

    /// Accepted TCP connections.
    pub fn connections(&self) -> usize {
        self.accepted.len()
    }

    /// Answer a packet that reached this host as `name`.
    pub(crate) fn answer(&mut self, name: &str, pkt: &Packet) -> Option<Packet> {
        let repr = pkt.repr();
        let reply = |transport, payload: Vec<u8>| {
            Packet::build(&PacketRepr {
                src: repr.dst,
                dst: repr.src,
                ttl: 64,
                ident: 0,
                transport,
                payload,
            })
            .ok()
        };
        match repr.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                ..
            } => {
                let key = (repr.dst, dst_port, repr.src, src_port);
                let seen = SeenAddrs {
                    src: (repr.src, src_port),
                    dst: (repr.dst, dst_port),
                };
                let seg_len = repr.payload.len() as u32
                    + u32::from(flags.contains(TcpFlags::SYN))
                    + u32::from(flags.contains(TcpFlags::FIN));
                let tcp = |flags, seq, ack| Transport::Tcp {
                    src_port: dst_port,
                    dst_port: src_port,
                    seq,
                    ack,
                    flags,
                    window: 64240,
                };
                let rst = || {
                    if flags.contains(TcpFlags::ACK) {
                        tcp(TcpFlags::RST, ack, 0)
                    } else {
                        tcp(TcpFlags::RST | TcpFlags::ACK, 0, seq.wrapping_add(seg_len))
                    }
                };
                if flags.contains(TcpFlags::RST) {
                    self.accepted.remove(&key);
                    self.closing.remove(&key);
                    return None;
                }
                if self.closing.remove(&key) && flags == TcpFlags::ACK {
                    return None;
                }
                let next = seq.wrapping_add(seg_len);
                if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
                    if !self.tcp_listen.contains(&dst_port) {
                        return reply(rst(), Vec::new());
                    }
                    self.closing.remove(&key);
                    self.accepted.insert(key);
                    return reply(tcp(TcpFlags::SYN | TcpFlags::ACK, 5000, next), Vec::new());
                }
                if !self.accepted.contains(&key) {
                    return reply(rst(), Vec::new());
                }
                if flags.contains(TcpFlags::FIN) {
                    self.accepted.remove(&key);
                    self.closing.insert(key);
                    return reply(tcp(TcpFlags::FIN | TcpFlags::ACK, ack, next), Vec::new());
                }
                if !repr.payload.is_empty() {
                    return reply(
                        tcp(TcpFlags::PSH | TcpFlags::ACK, ack, next),
                        answer_payload(name, seen),
                    );
                }
                None
            }
            Transport::Udp { src_port, dst_port } => {
                if self.udp_listen.contains(&dst_port) {
                    let seen = SeenAddrs {
                        src: (repr.src, src_port),
                        dst: (repr.dst, dst_port),
                    };
                    return reply(
                        Transport::Udp {
                            src_port: dst_port,
                            dst_port: src_port,
                        },
                        answer_payload(name, seen),
                    );
                }
                let (ty, code) = if repr.src.is_ipv4() { (3, 3) } else { (1, 4) };
                let quote = &pkt.bytes()[..pkt.len().min(548)];
                reply(Transport::Icmp { ty, code, rest: 0 }, quote.to_vec())
            }
            Transport::Icmp { ty, code: 0, rest } if ty == 8 || ty == 128 => reply(
                Transport::Icmp {
                    ty: if ty == 8 { 0 } else { 129 },
                    code: 0,
                    rest,
                },
                repr.payload.clone(),
            ),
            _ => None,
        }
    }
}

//! Builders the simulator's integration tests share: addresses, packets
//! and routes, so that every test file sends the same packets the same way.
//! They build inputs only; they must never call into a node or assert.
//! Malformed literals panic (they are the test's own text).

// Each test file is its own crate and uses only some of these.
#![allow(dead_code)]

pub mod ipvs_conn;
pub mod kube_node;

use std::net::{IpAddr, SocketAddr};

use sim::netfilter::Cidr;
use sim::node::{Route, RouteKind};
use sim::packet::{Packet, PacketRepr, TcpFlags, Transport};

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub fn sock(s: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip(s), port)
}

/// A TCP segment from `src` to `dst` (sequence 1, no payload).
pub fn tcp_between(src: SocketAddr, dst: SocketAddr, flags: TcpFlags) -> Packet {
    Packet::build(&PacketRepr {
        src: src.ip(),
        dst: dst.ip(),
        ttl: 64,
        ident: 0,
        transport: Transport::Tcp {
            src_port: src.port(),
            dst_port: dst.port(),
            seq: 1,
            ack: 0,
            flags,
            window: 1000,
        },
        payload: Vec::new(),
    })
    .unwrap()
}

/// A TCP segment `src:sport → dst:dport` (sequence 1, no payload).
pub fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: TcpFlags) -> Packet {
    tcp_between(sock(src, sport), sock(dst, dport), flags)
}

/// A connection's first segment.
pub fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> Packet {
    tcp(src, sport, dst, dport, TcpFlags::SYN)
}

/// A one-byte UDP datagram `src:sport → dst:dport`.
pub fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Packet {
    Packet::build(&PacketRepr {
        src: ip(src),
        dst: ip(dst),
        ttl: 64,
        ident: 0,
        transport: Transport::Udp {
            src_port: sport,
            dst_port: dport,
        },
        payload: b"x".to_vec(),
    })
    .unwrap()
}

/// A unicast route to `dst/len` via `via` out of `dev`.
pub fn route_via(dst: &str, len: u8, via: &str, dev: &str) -> Route {
    Route {
        dst: Cidr::new(ip(dst), len).unwrap(),
        via: Some(ip(via)),
        dev: dev.into(),
        src: None,
        kind: RouteKind::Unicast,
    }
}

/// The default route via `via` out of `dev`.
pub fn default_route(via: &str, dev: &str) -> Route {
    route_via("0.0.0.0", 0, via, dev)
}

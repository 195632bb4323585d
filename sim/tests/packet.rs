//! Packets as bytes: byte-exact emission (into poison-filled buffers),
//! parse/emit round trips, and NAT rewrites whose incrementally updated
//! checksums must equal a from-scratch build of the rewritten packet.
//! Expected bytes and checksums were computed independently (a Python
//! one's-complement sum over the pseudo-header), not by this crate.

use std::net::IpAddr;

use sim::netfilter::Protocol;
use sim::packet::{
    crc32c, internet_checksum, Packet, PacketError, PacketRepr, Side, TcpFlags, Transport, Tuple,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: TcpFlags) -> PacketRepr {
    PacketRepr {
        src: ip(src),
        dst: ip(dst),
        ttl: 64,
        ident: 7,
        transport: Transport::Tcp {
            src_port: sport,
            dst_port: dport,
            seq: 1000,
            ack: 0,
            flags,
            window: 64240,
        },
        payload: Vec::new(),
    }
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16, payload: &[u8]) -> PacketRepr {
    PacketRepr {
        src: ip(src),
        dst: ip(dst),
        ttl: 64,
        ident: 0x1234,
        transport: Transport::Udp {
            src_port: sport,
            dst_port: dport,
        },
        payload: payload.to_vec(),
    }
}

/// Emit into a poison-filled buffer one byte longer than needed: every
/// byte of the packet must be written, the extra one untouched.
fn emit_poisoned(repr: &PacketRepr) -> Vec<u8> {
    let n = repr.buffer_len();
    let mut buf = vec![0xa5; n + 1];
    assert_eq!(repr.emit(&mut buf).unwrap(), n);
    assert_eq!(buf[n], 0xa5, "wrote past the packet");
    buf.truncate(n);
    buf
}

#[test]
fn udp_v4_is_byte_exact() {
    let bytes = emit_poisoned(&udp("10.0.0.1", 40000, "10.96.0.10", 53, b"hi"));
    #[rustfmt::skip]
    let want = [
        0x45, 0x00, 0x00, 0x1e, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x14, 0x31,
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x60, 0x00, 0x0a,
        0x9c, 0x40, 0x00, 0x35, 0x00, 0x0a, 0xe6, 0x90, 0x68, 0x69,
    ];
    assert_eq!(bytes, want);
}

#[test]
fn tcp_syn_v4_is_byte_exact() {
    let bytes = emit_poisoned(&tcp("10.0.0.1", 40000, "10.96.0.10", 80, TcpFlags::SYN));
    #[rustfmt::skip]
    let want = [
        0x45, 0x00, 0x00, 0x28, 0x00, 0x07, 0x40, 0x00, 0x40, 0x06, 0x26, 0x5f,
        0x0a, 0x00, 0x00, 0x01, 0x0a, 0x60, 0x00, 0x0a,
        0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x00,
        0x50, 0x02, 0xfa, 0xf0, 0x00, 0x0f, 0x00, 0x00,
    ];
    assert_eq!(bytes, want);
}

/// The layer-4 checksum recomputed here from the pseudo-header, without
/// the crate's own builder.
fn independent_l4_ok(p: &Packet) -> bool {
    let b = p.bytes();
    let (l4_off, mut pseudo) = if b[0] >> 4 == 4 {
        let mut ph = b[12..20].to_vec();
        ph.extend_from_slice(&[0, b[9]]);
        (20, ph)
    } else {
        let mut ph = b[8..40].to_vec();
        ph.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, b[6]]);
        (40, ph)
    };
    let l4 = &b[l4_off..];
    if b[0] >> 4 == 4 {
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    } else {
        let mut v = pseudo[..32].to_vec();
        v.extend_from_slice(&(l4.len() as u32).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, b[6]]);
        pseudo = v;
    }
    pseudo.extend_from_slice(l4);
    internet_checksum(&pseudo) == 0
}

#[test]
fn ipv6_tcp_and_udp_round_trip_with_valid_checksums() {
    for repr in [
        tcp(
            "fd00::1",
            40000,
            "fd00:10::5",
            443,
            TcpFlags::SYN | TcpFlags::ACK,
        ),
        udp("fd00::1", 5000, "2001:db8::1", 53, b"query"),
    ] {
        let bytes = emit_poisoned(&repr);
        assert_eq!(bytes[0] >> 4, 6);
        let p = Packet::from_bytes(bytes).unwrap();
        assert!(p.checksums_ok());
        assert!(independent_l4_ok(&p));
        let mut back = p.repr();
        back.ident = repr.ident; // IPv6 has no identification
        assert_eq!(back, repr);
    }
}

#[test]
fn parse_round_trips_every_transport() {
    let reprs = [
        tcp("10.0.0.1", 1, "10.0.0.2", 2, TcpFlags::FIN | TcpFlags::ACK),
        udp("10.0.0.1", 1, "10.0.0.2", 2, &[]),
        PacketRepr {
            transport: Transport::Sctp {
                src_port: 5000,
                dst_port: 36412,
                vtag: 0xdead_beef,
            },
            ..udp("10.0.0.1", 1, "10.0.0.2", 2, &[1, 0, 0, 4])
        },
        PacketRepr {
            transport: Transport::Icmp {
                ty: 8,
                code: 0,
                rest: 0x1234_0001,
            },
            ..udp("10.0.0.1", 1, "10.0.0.2", 2, b"abcd")
        },
    ];
    for repr in reprs {
        let p = Packet::build(&repr).unwrap();
        assert!(p.checksums_ok(), "{p}");
        assert_eq!(p.repr(), repr);
    }
}

#[test]
fn sctp_checksum_is_crc32c_little_endian() {
    let repr = PacketRepr {
        transport: Transport::Sctp {
            src_port: 5000,
            dst_port: 80,
            vtag: 1,
        },
        ..udp("10.0.0.1", 1, "10.0.0.2", 2, &[])
    };
    let p = Packet::build(&repr).unwrap();
    let mut l4 = p.bytes()[20..].to_vec();
    let stored = [l4[8], l4[9], l4[10], l4[11]];
    l4[8..12].copy_from_slice(&[0; 4]);
    assert_eq!(u32::from_le_bytes(stored), crc32c(&l4));
}

/// The helper for NAT: rewrite `side` of the packet built from `before`;
/// the bytes must equal the packet built from scratch from `after`.
fn check_rewrite(before: PacketRepr, side: Side, addr: &str, port: Option<u16>) {
    let mut after = before.clone();
    match side {
        Side::Source => after.src = ip(addr),
        Side::Destination => after.dst = ip(addr),
    }
    if let Some(p) = port {
        match (&mut after.transport, side) {
            (
                Transport::Tcp { src_port, .. }
                | Transport::Udp { src_port, .. }
                | Transport::Sctp { src_port, .. },
                Side::Source,
            ) => *src_port = p,
            (
                Transport::Tcp { dst_port, .. }
                | Transport::Udp { dst_port, .. }
                | Transport::Sctp { dst_port, .. },
                Side::Destination,
            ) => *dst_port = p,
            _ => unreachable!("ports only on tcp/udp/sctp here"),
        }
    }
    let mut p = Packet::build(&before).unwrap();
    p.rewrite(side, ip(addr), port).unwrap();
    let want = Packet::build(&after).unwrap();
    assert_eq!(p.bytes(), want.bytes(), "{side:?} {addr} {port:?}");
    assert!(p.checksums_ok());
    assert!(independent_l4_ok(&p) || after.protocol() == Protocol::Sctp);
}

#[test]
fn nat_rewrites_fix_ip_and_l4_checksums() {
    let syn = tcp("10.0.0.2", 40000, "172.30.0.41", 80, TcpFlags::SYN);
    check_rewrite(syn.clone(), Side::Destination, "10.180.0.1", Some(8080));
    check_rewrite(syn.clone(), Side::Source, "192.168.0.2", Some(61001));
    check_rewrite(syn, Side::Destination, "10.180.0.1", None);
    let dns = udp("10.0.0.2", 40000, "172.30.0.10", 53, b"query?");
    check_rewrite(dns.clone(), Side::Destination, "10.180.0.9", Some(5353));
    check_rewrite(dns, Side::Source, "10.180.0.1", None);
    let v6 = tcp("fd00::2", 40000, "fd00:30::41", 80, TcpFlags::ACK);
    check_rewrite(v6.clone(), Side::Destination, "fd00:180::1", Some(8080));
    check_rewrite(v6, Side::Source, "2001:db8::1", Some(1024));
    let sctp = PacketRepr {
        transport: Transport::Sctp {
            src_port: 5000,
            dst_port: 80,
            vtag: 9,
        },
        ..udp("10.0.0.1", 1, "10.0.0.2", 2, &[0; 8])
    };
    check_rewrite(sctp, Side::Destination, "10.180.0.3", Some(8080));
}

#[test]
fn udp_without_checksum_keeps_none_after_nat() {
    let mut bytes = Packet::build(&udp("10.0.0.2", 1, "10.0.0.3", 53, b"x"))
        .unwrap()
        .bytes()
        .to_vec();
    bytes[26..28].copy_from_slice(&[0, 0]);
    let mut p = Packet::from_bytes(bytes).unwrap();
    p.set_destination(ip("10.180.0.1"), Some(5353)).unwrap();
    assert_eq!(&p.bytes()[26..28], &[0, 0]);
    assert!(p.checksums_ok());
    assert_eq!(p.dst_port(), Some(5353));
}

#[test]
fn icmp_error_quote_is_rewritten_and_checksummed() {
    // A UDP datagram DNATed to a pod, and the port-unreachable the pod sends.
    let original = udp("10.0.0.2", 40000, "10.180.0.1", 5353, b"query");
    let quoted = Packet::build(&original).unwrap().bytes().to_vec();
    let err = |quote: Vec<u8>| PacketRepr {
        src: ip("10.180.0.1"),
        dst: ip("10.0.0.2"),
        ttl: 64,
        ident: 1,
        transport: Transport::Icmp {
            ty: 3,
            code: 3,
            rest: 0,
        },
        payload: quote,
    };
    let mut p = Packet::build(&err(quoted)).unwrap();
    assert_eq!(
        p.icmp_inner_tuple(),
        Some(Tuple::new(
            Protocol::Udp,
            ip("10.0.0.2"),
            40000,
            ip("10.180.0.1"),
            5353
        ))
    );
    // Un-DNAT the quote so the client recognises its own datagram.
    assert!(p
        .rewrite_icmp_inner(Side::Destination, ip("172.30.0.10"), Some(53))
        .unwrap());
    let unnat = udp("10.0.0.2", 40000, "172.30.0.10", 53, b"query");
    let want = Packet::build(&err(Packet::build(&unnat).unwrap().bytes().to_vec())).unwrap();
    assert_eq!(p.bytes(), want.bytes());
    assert!(p.checksums_ok());
}

#[test]
fn ttl_decrement_keeps_header_checksum() {
    let mut p = Packet::build(&udp("10.0.0.1", 1, "10.0.0.2", 2, b"")).unwrap();
    assert_eq!(p.decrement_ttl(), Some(63));
    assert!(p.checksums_ok());
    let mut r = udp("10.0.0.1", 1, "10.0.0.2", 2, b"");
    r.ttl = 1;
    assert_eq!(Packet::build(&r).unwrap().decrement_ttl(), None);
}

#[test]
fn malformed_bytes_are_errors() {
    let good = Packet::build(&tcp("10.0.0.1", 1, "10.0.0.2", 2, TcpFlags::SYN))
        .unwrap()
        .bytes()
        .to_vec();
    assert!(matches!(
        Packet::from_bytes(good[..30].to_vec()),
        Err(PacketError::Truncated { .. })
    ));
    let mut v = good.clone();
    v[0] = 0x55;
    assert_eq!(
        Packet::from_bytes(v),
        Err(PacketError::BadVersion { version: 5 })
    );
    let mut frag = good.clone();
    frag[6] = 0x20; // MF
    assert_eq!(Packet::from_bytes(frag), Err(PacketError::Fragment));
    assert!(Packet::from_bytes(Vec::new()).is_err());
    let mut p = Packet::from_bytes(good).unwrap();
    let before = p.clone();
    assert_eq!(
        p.set_source(ip("fd00::1"), None),
        Err(PacketError::MixedFamilies)
    );
    assert_eq!(p, before);
    let mut mixed = tcp("10.0.0.1", 1, "10.0.0.2", 2, TcpFlags::SYN);
    mixed.dst = ip("fd00::1");
    assert_eq!(Packet::build(&mixed), Err(PacketError::MixedFamilies));
}

#[test]
fn accessors_and_display() {
    let p = Packet::build(&tcp("10.0.0.1", 40000, "10.0.0.2", 80, TcpFlags::SYN)).unwrap();
    assert_eq!(p.src_port(), Some(40000));
    assert_eq!(p.dst_port(), Some(80));
    assert_eq!(p.tcp_flags(), Some(TcpFlags::SYN));
    assert_eq!(
        p.to_string(),
        "SRC=10.0.0.1 DST=10.0.0.2 LEN=40 TTL=64 PROTO=TCP SPT=40000 DPT=80 SYN"
    );
    assert_eq!(
        p.tuple().unwrap().to_string(),
        "tcp 10.0.0.1:40000 -> 10.0.0.2:80"
    );
}

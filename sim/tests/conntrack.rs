//! Conntrack: state transitions, timeouts on virtual time, the full-table
//! behaviour, NAT bindings applied in both directions, and `conntrack -L`
//! lines. The expected lines reproduce flows run through a real kernel
//! (Linux 6.18, conntrack-tools 1.4.7) in throwaway network namespaces:
//! a client 10.99.0.1 → router 10.99.0.2:80 DNATed to 10.98.0.2:8080 and
//! masqueraded to 10.98.0.1.

use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use sim::conntrack::{
    Attached, Classify, Conntrack, ConntrackConfig, CtInfo, Filter, ManipType, NatRange, TcpState,
};
use sim::netfilter::{CtStates, Protocol};
use sim::packet::{Packet, PacketRepr, Side, TcpFlags, Transport, Tuple};
use sim::rng::stream;
use sim::time::Instant;

mod common;

use common::{ip, tcp, udp};

fn at(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn rng() -> ChaCha8Rng {
    stream(1, "test")
}

/// The one helper that runs a packet through a table as a node would for a
/// packet that is delivered: classify, then confirm.
fn pass(ct: &mut Conntrack, p: &Packet, now: Instant) -> Attached {
    match ct.classify(p, now) {
        Classify::Tracked(a) => {
            assert!(ct.finish(&a, true));
            a
        }
        other => panic!("{p}: {other:?}"),
    }
}

fn list(ct: &Conntrack, now: Instant) -> String {
    ct.list(&Filter::default(), now)
}

#[test]
fn tcp_handshake_and_close_walk_the_kernel_states() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    let a = pass(&mut ct, &tcp(c, 40000, s, 80, TcpFlags::SYN), at(0));
    assert_eq!(a.info, CtInfo::New);
    assert_eq!(
        list(&ct, at(0)),
        "tcp      6 120 SYN_SENT src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=80 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=80 dport=40000 mark=0 use=1\n"
    );
    let steps: &[(bool, TcpFlags, CtInfo, TcpState, u64, bool)] = &[
        (
            false,
            TcpFlags::SYN | TcpFlags::ACK,
            CtInfo::EstablishedReply,
            TcpState::SynRecv,
            60,
            false,
        ),
        (
            true,
            TcpFlags::ACK,
            CtInfo::Established,
            TcpState::Established,
            432_000,
            true,
        ),
        (
            true,
            TcpFlags::FIN | TcpFlags::ACK,
            CtInfo::Established,
            TcpState::FinWait,
            120,
            true,
        ),
        (
            false,
            TcpFlags::ACK,
            CtInfo::EstablishedReply,
            TcpState::CloseWait,
            60,
            true,
        ),
        (
            false,
            TcpFlags::FIN | TcpFlags::ACK,
            CtInfo::EstablishedReply,
            TcpState::LastAck,
            30,
            true,
        ),
        (
            true,
            TcpFlags::ACK,
            CtInfo::Established,
            TcpState::TimeWait,
            120,
            true,
        ),
    ];
    for (i, (from_client, flags, info, state, timeout, assured)) in steps.iter().enumerate() {
        let now = at(i as u64 + 1);
        let p = if *from_client {
            tcp(c, 40000, s, 80, *flags)
        } else {
            tcp(s, 80, c, 40000, *flags)
        };
        let a = pass(&mut ct, &p, now);
        assert_eq!(a.info, *info, "step {i}");
        let e = ct.entry(a.id).unwrap();
        assert_eq!(e.tcp_state(), Some(*state), "step {i}");
        assert_eq!(e.remaining(now), Duration::from_secs(*timeout), "step {i}");
        assert_eq!(e.assured(), *assured, "step {i}");
    }
    // TIME_WAIT expires after 120 s.
    ct.expire(at(6 + 119));
    assert_eq!(ct.len(), 1);
    ct.expire(at(6 + 120));
    assert!(ct.is_empty());
}

#[test]
fn rst_as_the_only_reply_deletes_the_entry() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    pass(
        &mut ct,
        &tcp("10.0.0.1", 1, "10.0.0.2", 81, TcpFlags::SYN),
        at(0),
    );
    let a = pass(
        &mut ct,
        &tcp("10.0.0.2", 81, "10.0.0.1", 1, TcpFlags::RST | TcpFlags::ACK),
        at(0),
    );
    assert_eq!(a.info, CtInfo::EstablishedReply);
    assert!(ct.is_empty(), "{}", list(&ct, at(0)));
}

#[test]
fn tcp_packets_that_cannot_start_a_connection_are_invalid() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    for flags in [TcpFlags::SYN | TcpFlags::ACK, TcpFlags::FIN, TcpFlags::RST] {
        let p = tcp("10.0.0.1", 1, "10.0.0.2", 2, flags);
        assert_eq!(ct.classify(&p, at(0)), Classify::Invalid, "{flags}");
    }
    // A bare ACK is picked up mid-stream (nf_conntrack_tcp_loose=1), with
    // the "unacknowledged" timeout until the other side answers.
    let a = pass(
        &mut ct,
        &tcp("10.0.0.1", 1, "10.0.0.2", 2, TcpFlags::ACK),
        at(0),
    );
    let e = ct.entry(a.id).unwrap();
    assert_eq!(e.tcp_state(), Some(TcpState::Established));
    assert_eq!(e.remaining(at(0)), Duration::from_secs(300));
    let mut strict = ConntrackConfig::default();
    strict
        .set_sysctl("net.netfilter.nf_conntrack_tcp_loose", 0)
        .unwrap();
    let mut ct = Conntrack::new(strict);
    let p = tcp("10.0.0.1", 1, "10.0.0.2", 2, TcpFlags::ACK);
    assert_eq!(ct.classify(&p, at(0)), Classify::Invalid);
    // An ACK before the SYN-ACK is invalid for an existing entry.
    pass(
        &mut ct,
        &tcp("10.0.0.1", 3, "10.0.0.2", 2, TcpFlags::SYN),
        at(0),
    );
    let p = tcp("10.0.0.1", 3, "10.0.0.2", 2, TcpFlags::ACK);
    assert_eq!(ct.classify(&p, at(0)), Classify::Invalid);
    assert_eq!(ct.ctstates(None), CtStates::INVALID);
}

#[test]
fn a_new_syn_reopens_a_connection_in_time_wait() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let (c, s) = ("10.0.0.1", "10.0.0.2");
    let first = pass(&mut ct, &tcp(c, 5, s, 80, TcpFlags::SYN), at(0));
    for (fc, f) in [
        (false, TcpFlags::SYN | TcpFlags::ACK),
        (true, TcpFlags::ACK),
        (true, TcpFlags::FIN | TcpFlags::ACK),
        (false, TcpFlags::FIN | TcpFlags::ACK),
        (true, TcpFlags::ACK),
    ] {
        let p = if fc {
            tcp(c, 5, s, 80, f)
        } else {
            tcp(s, 80, c, 5, f)
        };
        pass(&mut ct, &p, at(1));
    }
    assert_eq!(
        ct.entry(first.id).unwrap().tcp_state(),
        Some(TcpState::TimeWait)
    );
    let again = pass(&mut ct, &tcp(c, 5, s, 80, TcpFlags::SYN), at(2));
    assert_ne!(again.id, first.id);
    assert_eq!(again.info, CtInfo::New);
    assert_eq!(ct.len(), 1);
}

#[test]
fn udp_becomes_an_assured_stream_after_two_seconds() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let q = udp("10.0.0.1", 40003, "10.0.0.2", 53);
    let r = udp("10.0.0.2", 53, "10.0.0.1", 40003);
    let a = pass(&mut ct, &q, at(0));
    assert_eq!(
        list(&ct, at(0)),
        "udp      17 30 src=10.0.0.1 dst=10.0.0.2 sport=40003 dport=53 [UNREPLIED] src=10.0.0.2 dst=10.0.0.1 sport=53 dport=40003 mark=0 use=1\n"
    );
    pass(&mut ct, &r, at(1));
    let e = ct.entry(a.id).unwrap();
    assert!(e.seen_reply() && !e.assured());
    assert_eq!(e.remaining(at(1)), Duration::from_secs(30));
    // Same packet again within 2 s of creation: still not a stream.
    assert_eq!(pass(&mut ct, &q, at(2)).info, CtInfo::Established);
    assert!(!ct.entry(a.id).unwrap().assured());
    pass(&mut ct, &q, at(3));
    let e = ct.entry(a.id).unwrap();
    assert!(e.assured());
    assert_eq!(e.remaining(at(3)), Duration::from_secs(120));
    // An unreplied flow is gone after 30 s.
    pass(&mut ct, &udp("10.0.0.1", 9, "10.0.0.2", 9), at(10));
    assert_eq!(ct.len(), 2);
    ct.expire(at(40));
    assert_eq!(ct.len(), 1);
}

#[test]
fn dropped_packets_leave_no_entry() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let p = tcp("10.0.0.1", 1, "10.0.0.2", 7777, TcpFlags::SYN);
    let Classify::Tracked(a) = ct.classify(&p, at(0)) else {
        panic!()
    };
    assert!(ct.entry(a.id).is_some());
    assert_eq!(list(&ct, at(0)), "", "unconfirmed entries are not listed");
    ct.finish(&a, false);
    assert!(ct.entry(a.id).is_none());
    assert!(ct.is_empty());
}

#[test]
fn full_table_evicts_unassured_entries_then_drops() {
    let mut cfg = ConntrackConfig::default();
    cfg.set_sysctl("nf_conntrack_max", 2).unwrap();
    let mut ct = Conntrack::new(cfg);
    let a = pass(&mut ct, &udp("10.0.0.1", 1, "10.0.0.9", 53), at(0));
    pass(&mut ct, &udp("10.0.0.1", 2, "10.0.0.9", 53), at(0));
    let c = pass(&mut ct, &udp("10.0.0.1", 3, "10.0.0.9", 53), at(0));
    assert_eq!(ct.len(), 2);
    assert!(ct.entry(a.id).is_none(), "the oldest unassured entry went");
    assert!(ct.entry(c.id).is_some());
    // Make both remaining entries ASSURED (replied streams): now full.
    for port in [2, 3] {
        pass(&mut ct, &udp("10.0.0.9", 53, "10.0.0.1", port), at(1));
        pass(&mut ct, &udp("10.0.0.1", port, "10.0.0.9", 53), at(5));
    }
    assert!(ct.entries().all(|e| e.assured()));
    let p = udp("10.0.0.1", 4, "10.0.0.9", 53);
    assert_eq!(ct.classify(&p, at(5)), Classify::TableFull);
    assert_eq!(ct.dropped_full(), 1);
    // Established flows still pass.
    pass(&mut ct, &udp("10.0.0.1", 2, "10.0.0.9", 53), at(6));
}

/// DNAT at "PREROUTING", masquerade at "POSTROUTING", the way the router
/// namespace of the module comment did it.
fn router_flow(ct: &mut Conntrack, sport: u16, now: Instant) -> Attached {
    let mut p = tcp("10.99.0.1", sport, "10.99.0.2", 80, TcpFlags::SYN);
    let Classify::Tracked(a) = ct.classify(&p, now) else {
        panic!()
    };
    let mut r = rng();
    assert!(!ct.nat_initialized(a.id, ManipType::Dst));
    let dnat = NatRange {
        addrs: Some((ip("10.98.0.2"), ip("10.98.0.2"))),
        ports: Some((8080, 8080)),
        ..NatRange::default()
    };
    ct.setup_nat(a.id, ManipType::Dst, Some(&dnat), &mut r)
        .unwrap();
    assert!(ct.nat_packet(&a, ManipType::Dst, &mut p).unwrap());
    assert_eq!((p.dst(), p.dst_port()), (ip("10.98.0.2"), Some(8080)));
    let masq = NatRange {
        addrs: Some((ip("10.98.0.1"), ip("10.98.0.1"))),
        ..NatRange::default()
    };
    ct.setup_nat(a.id, ManipType::Src, Some(&masq), &mut r)
        .unwrap();
    assert!(ct.nat_packet(&a, ManipType::Src, &mut p).unwrap());
    assert_eq!(p.src(), ip("10.98.0.1"));
    assert!(p.checksums_ok());
    assert!(ct.finish(&a, true));
    a
}

#[test]
fn nat_bindings_apply_to_replies_and_list_like_the_kernel() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let a = router_flow(&mut ct, 40021, at(0));
    assert_eq!(
        list(&ct, at(1)),
        "tcp      6 119 SYN_SENT src=10.99.0.1 dst=10.99.0.2 sport=40021 dport=80 [UNREPLIED] src=10.98.0.2 dst=10.98.0.1 sport=8080 dport=40021 mark=0 use=1\n"
    );
    let states = ct.ctstates(Some(&a));
    assert!(states.contains(CtStates::NEW) && states.contains(CtStates::DNAT));
    assert!(states.contains(CtStates::SNAT));
    // The SYN-ACK from the server: found by the reply tuple, un-NATed on
    // both sides (destination at the DST hook, source at the SRC hook).
    let mut p = tcp(
        "10.98.0.2",
        8080,
        "10.98.0.1",
        40021,
        TcpFlags::SYN | TcpFlags::ACK,
    );
    let Classify::Tracked(r) = ct.classify(&p, at(1)) else {
        panic!()
    };
    assert_eq!((r.id, r.info), (a.id, CtInfo::EstablishedReply));
    assert!(
        ct.nat_initialized(r.id, ManipType::Dst),
        "no rule is consulted again"
    );
    ct.nat_packet(&r, ManipType::Dst, &mut p).unwrap();
    assert_eq!(p.dst(), ip("10.99.0.1"));
    ct.nat_packet(&r, ManipType::Src, &mut p).unwrap();
    assert_eq!((p.src(), p.src_port()), (ip("10.99.0.2"), Some(80)));
    assert!(p.checksums_ok());
    ct.finish(&r, true);
    // The client's ACK: same bindings, no rule consulted.
    let mut p = tcp("10.99.0.1", 40021, "10.99.0.2", 80, TcpFlags::ACK);
    let Classify::Tracked(e) = ct.classify(&p, at(2)) else {
        panic!()
    };
    assert_eq!(e.info, CtInfo::Established);
    ct.nat_packet(&e, ManipType::Dst, &mut p).unwrap();
    ct.nat_packet(&e, ManipType::Src, &mut p).unwrap();
    assert_eq!(
        p.tuple().unwrap(),
        Tuple::new(Protocol::Tcp, ip("10.98.0.1"), 40021, ip("10.98.0.2"), 8080)
    );
    ct.finish(&e, true);
    assert_eq!(
        list(&ct, at(3)),
        "tcp      6 431999 ESTABLISHED src=10.99.0.1 dst=10.99.0.2 sport=40021 dport=80 src=10.98.0.2 dst=10.98.0.1 sport=8080 dport=40021 [ASSURED] mark=0 use=1\n"
    );
}

#[test]
fn masquerade_picks_another_port_on_a_clash_and_random_fully_always_does() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let masq = |random_fully| NatRange {
        addrs: Some((ip("192.168.0.10"), ip("192.168.0.10"))),
        random_fully,
        ..NatRange::default()
    };
    let mut r = rng();
    let mut ports = Vec::new();
    for client in ["10.244.1.5", "10.244.1.6"] {
        let mut p = tcp(client, 40000, "10.244.2.7", 8080, TcpFlags::SYN);
        let Classify::Tracked(a) = ct.classify(&p, at(0)) else {
            panic!()
        };
        ct.setup_nat(a.id, ManipType::Src, Some(&masq(false)), &mut r)
            .unwrap();
        ct.nat_packet(&a, ManipType::Src, &mut p).unwrap();
        ct.finish(&a, true);
        ports.push(p.src_port().unwrap());
    }
    assert_eq!(ports[0], 40000, "a free port is kept");
    assert_ne!(ports[1], 40000, "a clash moves the port");
    assert!(ports[1] >= 1024);
    // --random-fully: remapped even when free, reproducibly per seed.
    let run = |seed| {
        let mut ct = Conntrack::new(ConntrackConfig::default());
        let mut r = stream(seed, "nat");
        let mut p = tcp("10.244.1.5", 40000, "10.244.2.7", 8080, TcpFlags::SYN);
        let Classify::Tracked(a) = ct.classify(&p, at(0)) else {
            panic!()
        };
        ct.setup_nat(a.id, ManipType::Src, Some(&masq(true)), &mut r)
            .unwrap();
        ct.nat_packet(&a, ManipType::Src, &mut p).unwrap();
        p.src_port().unwrap()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), 40000);
}

#[test]
fn icmp_errors_are_related_and_translated() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    // A UDP query to a service IP, DNATed to a pod.
    let mut q = udp("10.0.0.2", 40000, "172.30.0.10", 53);
    let Classify::Tracked(a) = ct.classify(&q, at(0)) else {
        panic!()
    };
    let dnat = NatRange {
        addrs: Some((ip("10.180.0.9"), ip("10.180.0.9"))),
        ports: Some((5353, 5353)),
        ..NatRange::default()
    };
    ct.setup_nat(a.id, ManipType::Dst, Some(&dnat), &mut rng())
        .unwrap();
    ct.nat_packet(&a, ManipType::Dst, &mut q).unwrap();
    ct.setup_nat(a.id, ManipType::Src, None, &mut rng())
        .unwrap();
    ct.finish(&a, true);
    // The pod has nothing on 5353: port unreachable, quoting the query.
    let mut err = Packet::build(&PacketRepr {
        src: ip("10.180.0.9"),
        dst: ip("10.0.0.2"),
        ttl: 64,
        ident: 0,
        transport: Transport::Icmp {
            ty: 3,
            code: 3,
            rest: 0,
        },
        payload: q.bytes().to_vec(),
    })
    .unwrap();
    let Classify::Tracked(r) = ct.classify(&err, at(0)) else {
        panic!("ICMP error not related")
    };
    assert_eq!((r.id, r.info), (a.id, CtInfo::RelatedReply));
    assert!(ct.ctstates(Some(&r)).contains(CtStates::RELATED));
    ct.nat_packet(&r, ManipType::Src, &mut err).unwrap();
    assert_eq!(err.src(), ip("172.30.0.10"));
    assert_eq!(
        err.icmp_inner_tuple().unwrap(),
        Tuple::new(Protocol::Udp, ip("10.0.0.2"), 40000, ip("172.30.0.10"), 53)
    );
    assert!(err.checksums_ok());
    // An ICMP error about nothing known is INVALID.
    let stray = Packet::build(&PacketRepr {
        payload: udp("10.0.0.7", 1, "10.0.0.8", 2).bytes().to_vec(),
        ..err.repr()
    })
    .unwrap();
    assert_eq!(ct.classify(&stray, at(0)), Classify::Invalid);
}

#[test]
fn delete_by_filter_and_list_selection() {
    let mut ct = Conntrack::new(ConntrackConfig::default());
    router_flow(&mut ct, 1000, at(0));
    router_flow(&mut ct, 1001, at(0));
    pass(&mut ct, &udp("10.99.0.1", 5, "10.99.0.2", 53), at(0));
    let by_reply = Filter {
        reply_src: Some(ip("10.98.0.2")),
        ..Filter::default()
    };
    assert_eq!(ct.select(&by_reply).len(), 2);
    let udp_only = Filter {
        proto: Some(Protocol::Udp),
        orig_dst_port: Some(53),
        ..Filter::default()
    };
    assert_eq!(ct.list(&udp_only, at(0)).lines().count(), 1);
    assert_eq!(ct.delete(&by_reply), 2);
    assert_eq!(ct.len(), 1);
    assert_eq!(
        Conntrack::list_summary(1),
        "conntrack v1.4.7 (conntrack-tools): 1 flow entries have been shown."
    );
}

#[test]
fn nat_rewrites_keep_packets_consistent_with_entry_tuples() {
    // After DNAT the packet's tuple is the inverse of the reply tuple.
    let mut ct = Conntrack::new(ConntrackConfig::default());
    let a = router_flow(&mut ct, 2000, at(0));
    let e = ct.entry(a.id).unwrap();
    let mut p = tcp("10.99.0.1", 2000, "10.99.0.2", 80, TcpFlags::SYN);
    p.set_destination(ip("10.98.0.2"), Some(8080)).unwrap();
    p.rewrite(Side::Source, ip("10.98.0.1"), None).unwrap();
    assert_eq!(p.tuple().unwrap().invert().unwrap(), *e.reply());
    assert!(ConntrackConfig::default()
        .set_sysctl("nf_conntrack_bogus", 1)
        .is_err());
}

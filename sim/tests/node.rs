//! A node with kube-proxy's rules: where packets go, hook by hook.
//!
//! The rules are upstream kube-proxy's golden `TestOverallIPTablesRules`
//! payload (`tests/fixtures/upstream/iptables/test_overall_iptables_rules.yaml`,
//! masquerade mark 0x4000) plus the jump rules kube-proxy and kubelet
//! install outside the payload (`common/kube_node.rs`); how random choices,
//! exploration and traces behave on it is in `node_explore.rs`.

use sim::netfilter::eval::Decision;
use sim::netfilter::{Cidr, Family, RestoreMode, TableId};
use sim::node::{Delivery, DropReason, Route, RouteKind};
use sim::packet::TcpFlags;
use sim::time::Instant;

mod common;

use common::kube_node::{fake_node, kube_node, run, sock};
use common::{ip, syn, tcp};

#[test]
fn cluster_ip_from_a_pod_is_dnated_without_masquerade() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("10.0.0.2", 40000, "172.30.0.41", 80), 0);
    assert_eq!(
        out.delivery,
        Delivery::Out {
            iface: "cni0".into(),
            next_hop: ip("10.180.0.1")
        }
    );
    assert_eq!(sock(&out.packet), "10.0.0.2:40000 -> 10.180.0.1:80");
    assert_eq!(out.nat.dnat, Some((ip("10.180.0.1"), Some(80))));
    assert!(!out.nat.masquerade);
    assert!(out.packet.checksums_ok());
    assert_eq!(n.conntrack().len(), 1);
}

#[test]
fn node_to_cluster_ip_is_masqueraded_to_the_outgoing_interface() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("192.168.0.2", 40000, "172.30.0.41", 80), 0);
    assert_eq!(sock(&out.packet), "10.0.0.1:40000 -> 10.180.0.1:80");
    assert!(out.nat.masquerade);
    assert_eq!(out.mark & 0x4000, 0, "KUBE-POSTROUTING clears the mark");
}

#[test]
fn nodeport_round_trip_un_nats_the_reply() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("203.0.113.9", 5555, "192.168.0.2", 3003), 0);
    assert_eq!(sock(&out.packet), "10.0.0.1:5555 -> 10.180.0.3:80");
    // The endpoint answers the masqueraded source.
    let reply = tcp(
        "10.180.0.3",
        80,
        "10.0.0.1",
        5555,
        TcpFlags::SYN | TcpFlags::ACK,
    );
    let back = run(&mut n, reply, 0);
    assert_eq!(sock(&back.packet), "192.168.0.2:3003 -> 203.0.113.9:5555");
    assert_eq!(
        back.delivery,
        Delivery::Out {
            iface: "eth0".into(),
            next_hop: ip("192.168.0.1")
        }
    );
    assert!(back.packet.checksums_ok());
    // filter FORWARD: the NEW-only firewall jump, the KUBE-FORWARD jump,
    // then KUBE-FORWARD's INVALID, mark and ESTABLISHED rules.
    assert_eq!(back.rules_evaluated, 5);
    let listing = n
        .conntrack()
        .list(&Default::default(), Instant::from_secs(0));
    assert_eq!(
        listing,
        "tcp      6 60 SYN_RECV src=203.0.113.9 dst=192.168.0.2 sport=5555 dport=3003 src=10.180.0.3 dst=10.0.0.1 sport=80 dport=5555 mark=0 use=1\n"
    );
}

#[test]
fn etp_local_nodeport_without_local_endpoints_is_dropped_by_the_filter_rule() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("203.0.113.9", 5555, "192.168.0.2", 3001), 0);
    let Delivery::Dropped(DropReason::Rule(r)) = &out.delivery else {
        panic!("{:?}", out.delivery)
    };
    assert_eq!(
        (r.table, r.chain.as_str()),
        (TableId::Filter, "KUBE-EXTERNAL-SERVICES")
    );
    assert!(r.text.contains("has no local endpoints"), "{}", r.text);
    assert!(
        n.conntrack().is_empty(),
        "a dropped connection is not confirmed"
    );
}

#[test]
fn service_without_endpoints_rejects_with_port_unreachable() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("10.0.0.2", 40000, "172.30.0.46", 80), 0);
    let Delivery::Rejected { by, reply } = &out.delivery else {
        panic!("{:?}", out.delivery)
    };
    assert!(by.text.contains("has no endpoints"));
    assert_eq!(reply.packet.icmp_type_code(), Some((3, 3)));
    assert_eq!(
        (reply.packet.src(), reply.packet.dst()),
        (ip("10.0.0.1"), ip("10.0.0.2"))
    );
    assert_eq!(
        reply.delivery,
        Delivery::Out {
            iface: "cni0".into(),
            next_hop: ip("10.0.0.2")
        }
    );
}

#[test]
fn load_balancer_source_ranges_allow_and_block() {
    let mut n = kube_node(1);
    let allowed = run(&mut n, syn("203.0.113.5", 1000, "5.6.7.8", 80), 0);
    assert_eq!(sock(&allowed.packet), "10.0.0.1:1000 -> 10.180.0.3:80");
    assert_eq!(
        n.recent().addresses("KUBE-SEP-I77PXRDZVX7PMWMN"),
        [ip("203.0.113.5")]
    );
    let blocked = run(&mut n, syn("203.0.113.200", 1000, "5.6.7.8", 80), 0);
    let Delivery::Dropped(DropReason::Rule(r)) = &blocked.delivery else {
        panic!("{:?}", blocked.delivery)
    };
    assert_eq!(r.chain, "KUBE-PROXY-FIREWALL");
}

#[test]
fn localhost_nodeport_needs_route_localnet() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("127.0.0.1", 4000, "127.0.0.1", 3003), 0);
    assert_eq!(
        out.delivery,
        Delivery::Dropped(DropReason::Martian("source"))
    );
    assert_eq!(n.nfacct()["localhost_nps_accepted_pkts"].packets, 1);
    n.set_sysctl("net/ipv4/conf/all/route_localnet", 1).unwrap();
    let out = run(&mut n, syn("127.0.0.1", 4001, "127.0.0.1", 3003), 0);
    assert_eq!(sock(&out.packet), "10.0.0.1:4001 -> 10.180.0.3:80");
    assert!(out.nat.masquerade);
}

#[test]
fn health_check_port_is_accepted_locally() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("192.168.0.2", 4000, "192.168.0.2", 30000), 0);
    assert_eq!(out.delivery, Delivery::Local);
    let accepted = out
        .steps
        .iter()
        .find(|s| s.table == TableId::Filter && s.decision == Decision::Accept && s.by.is_some())
        .expect("a filter rule accepted");
    assert_eq!(accepted.by.as_ref().unwrap().chain, "KUBE-NODEPORTS");
}

#[test]
fn hairpin_connection_is_masqueraded_back_to_the_pod() {
    let mut n = kube_node(1);
    let out = run(&mut n, syn("10.180.0.1", 40000, "172.30.0.41", 80), 0);
    assert_eq!(sock(&out.packet), "10.0.0.1:40000 -> 10.180.0.1:80");
    assert!(out.nat.masquerade);
    let reply = tcp(
        "10.180.0.1",
        80,
        "10.0.0.1",
        40000,
        TcpFlags::SYN | TcpFlags::ACK,
    );
    let back = run(&mut n, reply, 0);
    assert_eq!(sock(&back.packet), "172.30.0.41:80 -> 10.180.0.1:40000");
}

#[test]
fn invalid_packets_are_dropped_by_kube_forward() {
    let mut n = kube_node(1);
    // A SYN-ACK nobody asked for is INVALID for conntrack.
    let p = tcp(
        "10.180.0.4",
        80,
        "203.0.113.9",
        1,
        TcpFlags::SYN | TcpFlags::ACK,
    );
    let out = run(&mut n, p, 0);
    let Delivery::Dropped(DropReason::Rule(r)) = &out.delivery else {
        panic!("{:?}", out.delivery)
    };
    assert_eq!((r.chain.as_str(), r.num), ("KUBE-FORWARD", 1));
    assert_eq!(n.nfacct()["ct_state_invalid_dropped_pkts"].packets, 1);
}

#[test]
fn ipv6_dnat_and_masquerade_use_ip6tables() {
    let mut n = fake_node(1);
    n.restore(
        Family::Ipv6,
        "*nat\n:KUBE-SEP - [0:0]\n-A PREROUTING -d fd00:30::41/128 -p tcp -m tcp --dport 80 -j KUBE-SEP\n-A KUBE-SEP -p tcp -j DNAT --to-destination [2001:db8::99]:8080\n-A POSTROUTING -d 2001:db8::99/128 -j MASQUERADE\nCOMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    n.add_route(Route {
        dst: Cidr::new(ip("fd00:30::"), 64).unwrap(),
        via: None,
        dev: "eth0".into(),
        src: None,
        kind: RouteKind::Unicast,
    })
    .unwrap();
    let p = syn("fd00:30::7", 4000, "fd00:30::41", 80);
    let out = n.receive(p, "eth0", Instant::ZERO).unwrap();
    assert_eq!(sock(&out.packet), "2001:db8::1:4000 -> 2001:db8::99:8080");
    assert!(out.packet.checksums_ok());
    assert_eq!(
        n.conntrack().list(&Default::default(), Instant::ZERO),
        "tcp      6 120 SYN_SENT src=fd00:30::7 dst=fd00:30::41 sport=4000 dport=80 [UNREPLIED] src=2001:db8::99 dst=2001:db8::1 sport=8080 dport=4000 mark=0 use=1\n"
    );
    // The IPv4 ruleset is untouched by IPv6 packets and vice versa.
    assert_eq!(n.iptables(Family::Ipv4).rule_count(), 0);
}

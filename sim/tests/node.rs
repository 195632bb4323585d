//! A node with kube-proxy's rules: where packets go, hook by hook.
//!
//! The rules are upstream kube-proxy's golden `TestOverallIPTablesRules`
//! payload (`tests/fixtures/upstream/iptables/test_overall_iptables_rules.yaml`,
//! masquerade mark 0x4000) plus the jump rules kube-proxy and kubelet
//! install outside the payload, and `TestTracePacket`'s static rules with
//! its packet flows, which the real evaluator must reach (exploring every
//! random branch, since upstream's tracer does).

use std::net::IpAddr;
use std::path::PathBuf;

use sim::netfilter::eval::{Decision, Explorer};
use sim::netfilter::{Family, RestoreMode, TableId, Variant};
use sim::node::{Delivery, DropReason, Node, Processed, Route, RouteKind};
use sim::packet::{Packet, PacketRepr, TcpFlags, Transport};
use sim::time::Instant;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/upstream/iptables")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The block scalar under `key: |` at `indent` spaces (the fixtures' only
/// multi-line values), without the indentation.
fn block(yaml: &str, key: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let head = format!("{pad}{key}: |");
    let mut lines = yaml.lines().skip_while(|l| *l != head).skip(1);
    let inner = format!("{pad}  ");
    let mut out = String::new();
    for l in lines.by_ref() {
        match l.strip_prefix(&inner) {
            Some(rest) => {
                out.push_str(rest);
                out.push('\n');
            }
            None => break,
        }
    }
    assert!(!out.is_empty(), "no `{key}` block");
    out
}

/// The fake iptables of upstream's tests records `EnsureRule` arguments
/// joined by spaces, so multi-word comments are unquoted; quote them.
fn quote_comments(payload: &str) -> String {
    payload
        .lines()
        .map(|l| {
            let Some((head, rest)) = l.split_once("--comment ") else {
                return l.to_string();
            };
            if rest.starts_with('"') {
                return l.to_string();
            }
            let words: Vec<&str> = rest.split(' ').collect();
            let n = words
                .iter()
                .position(|w| w.starts_with('-'))
                .unwrap_or(words.len());
            if n <= 1 {
                return l.to_string();
            }
            format!(
                "{head}--comment \"{}\" {}",
                words[..n].join(" "),
                words[n..].join(" ")
            )
        })
        .map(|l| l.trim_end().to_string() + "\n")
        .collect()
}

/// upstream's fake node: eth0 with the fake's addresses, a pod network on
/// cni0 (10.0.0.0/8: clients 10.0.0.x and endpoints 10.180.0.x are both
/// directly connected), a default route out of eth0.
fn fake_node(seed: u64) -> Node {
    let mut n = Node::new("test-node", seed, Variant::Nft);
    n.add_interface("eth0").unwrap();
    n.add_interface("cni0").unwrap();
    for a in ["192.168.0.2", "192.168.1.2", "192.168.99.11"] {
        n.add_address("eth0", ip(a), 24).unwrap();
    }
    n.add_address("eth0", ip("2001:db8::1"), 64).unwrap();
    n.add_address("eth0", ip("2001:db8:1::2"), 64).unwrap();
    n.add_address("cni0", ip("10.0.0.1"), 8).unwrap();
    n.add_route(Route {
        dst: "0.0.0.0/0".parse_cidr(),
        via: Some(ip("192.168.0.1")),
        dev: "eth0".into(),
        src: None,
        kind: RouteKind::Unicast,
    })
    .unwrap();
    n
}

trait ParseCidr {
    fn parse_cidr(&self) -> sim::netfilter::Cidr;
}

impl ParseCidr for str {
    fn parse_cidr(&self) -> sim::netfilter::Cidr {
        let (a, p) = self.split_once('/').unwrap();
        sim::netfilter::Cidr::new(ip(a), p.parse().unwrap()).unwrap()
    }
}

/// Jump rules kube-proxy installs with EnsureRule (and kubelet's
/// KUBE-FIREWALL hooks), which the restore payload does not contain.
const BASE_RULES: &str = r#"*filter
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
"#;

fn kube_node(seed: u64) -> Node {
    let mut n = fake_node(seed);
    n.nfacct_add("ct_state_invalid_dropped_pkts");
    n.nfacct_add("localhost_nps_accepted_pkts");
    n.restore(Family::Ipv4, BASE_RULES, RestoreMode::NoFlush)
        .unwrap();
    let payload = block(&fixture("test_overall_iptables_rules.yaml"), "expect", 2);
    n.restore(Family::Ipv4, &payload, RestoreMode::NoFlush)
        .unwrap();
    n
}

fn tcp(src: &str, sport: u16, dst: &str, dport: u16, flags: TcpFlags) -> Packet {
    Packet::build(&PacketRepr {
        src: ip(src),
        dst: ip(dst),
        ttl: 64,
        ident: 0,
        transport: Transport::Tcp {
            src_port: sport,
            dst_port: dport,
            seq: 100,
            ack: 0,
            flags,
            window: 1000,
        },
        payload: Vec::new(),
    })
    .unwrap()
}

fn syn(src: &str, sport: u16, dst: &str, dport: u16) -> Packet {
    tcp(src, sport, dst, dport, TcpFlags::SYN)
}

/// The interface a packet from `src` arrives on at the fake node.
fn iface_for(src: &str) -> &'static str {
    if src.starts_with("10.") {
        "cni0"
    } else {
        "eth0"
    }
}

/// The one helper that sends a packet into a node: locally generated when
/// the source is the node's, otherwise received on the matching interface.
fn run(n: &mut Node, p: Packet, at: u64) -> Processed {
    let now = Instant::from_secs(at);
    let src = p.src();
    if n.is_local(src) {
        n.send(p, now).unwrap()
    } else {
        n.receive(p, iface_for(&src.to_string()), now).unwrap()
    }
}

fn sock(p: &Packet) -> String {
    format!(
        "{}:{} -> {}:{}",
        p.src(),
        p.src_port().unwrap_or(0),
        p.dst(),
        p.dst_port().unwrap_or(0)
    )
}

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
fn random_endpoint_choice_is_seeded_and_balanced() {
    let pick = |seed| {
        let mut n = kube_node(seed);
        (0..200u16)
            .map(|i| {
                let out = run(&mut n, syn("10.0.0.2", 20000 + i, "172.30.0.44", 80), 0);
                out.packet.dst()
            })
            .collect::<Vec<_>>()
    };
    let a = pick(7);
    assert_eq!(a, pick(7), "same seed, same choices");
    assert_ne!(a, pick(8));
    let first = a.iter().filter(|d| **d == ip("10.180.0.4")).count();
    assert!(
        (70..130).contains(&first),
        "{first} of 200 to the first endpoint"
    );
    // Established packets keep their endpoint without consulting rules.
    let mut n = kube_node(7);
    let first = run(&mut n, syn("10.0.0.2", 30000, "172.30.0.44", 80), 0);
    let ep = first.packet.dst().to_string();
    // An ACK before the SYN-ACK is INVALID: no translation at all.
    let early = run(
        &mut n,
        tcp("10.0.0.2", 30000, "172.30.0.44", 80, TcpFlags::ACK),
        0,
    );
    assert!(matches!(
        early.delivery,
        Delivery::Dropped(DropReason::Rule(_))
    ));
    run(
        &mut n,
        tcp(&ep, 80, "10.0.0.2", 30000, TcpFlags::SYN | TcpFlags::ACK),
        0,
    );
    for _ in 0..5 {
        let again = run(
            &mut n,
            tcp("10.0.0.2", 30000, "172.30.0.44", 80, TcpFlags::ACK),
            1,
        );
        assert_eq!(again.packet.dst(), first.packet.dst());
        assert_eq!(again.nat.dnat, None);
    }
}

#[test]
fn explore_lists_every_endpoint_in_rule_order() {
    let n = kube_node(1);
    let p = syn("10.0.0.2", 40000, "172.30.0.44", 80);
    let ex = n
        .explore(&p, Some("cni0"), Instant::ZERO, Explorer::default())
        .unwrap();
    let ends: Vec<_> = ex.runs.iter().map(|(p, _)| p.nat.dnat).collect();
    assert_eq!(
        ends,
        [
            Some((ip("10.180.0.4"), Some(80))),
            Some((ip("10.180.0.5"), Some(80)))
        ]
    );
    assert!(ex.complete);
    assert!(n.conntrack().is_empty(), "exploring changes nothing");
}

#[test]
fn traces_and_counts_are_deterministic() {
    let go = || {
        let mut n = kube_node(3);
        n.set_tracing(true);
        run(&mut n, syn("10.0.0.2", 40000, "172.30.0.44", 80), 0)
    };
    let a = go();
    assert_eq!(a, go());
    // nat PREROUTING: 1 jump; KUBE-SERVICES: 6 rules to svc4; KUBE-SVC: 2
    // (masq check, 50% split) or 3; KUBE-SEP: 2; then filter FORWARD (4
    // base rules + KUBE-FORWARD's 3 + KUBE-SERVICES' 1 + external 3) and
    // KUBE-POSTROUTING's first rule.
    let nat_pre = a
        .steps
        .iter()
        .find(|s| s.table == TableId::Nat)
        .unwrap()
        .rules_evaluated;
    assert!(
        nat_pre == 1 + 6 + 2 + 2 || nat_pre == 1 + 6 + 3 + 2,
        "{nat_pre}"
    );
    let log = a.trace.kernel_log();
    assert!(
        log.starts_with("TRACE: nat:PREROUTING:rule:1 SRC=10.0.0.2 DST=172.30.0.44"),
        "{log}"
    );
    assert!(log.contains("TRACE: nat:KUBE-SERVICES:rule:6 "), "{log}");
    assert!(
        a.trace
            .to_string()
            .contains("no-match -A KUBE-SERVICES -d 172.30.0.41/32"),
        "{}",
        a.trace
    );
    // Rule counters count matched rules.
    let mut n = kube_node(3);
    run(&mut n, syn("10.0.0.2", 40000, "172.30.0.41", 80), 0);
    let c = n
        .iptables(Family::Ipv4)
        .chain(TableId::Nat, "KUBE-SVC-XPGD46QRK7WJZT7O")
        .unwrap()
        .rule_counters(1)
        .unwrap();
    assert_eq!(c.packets, 1);
}

/// upstream `TestTracePacket`: the static rules, and every flow's
/// expected endpoints (or filter verdict) and masquerade bit.
#[test]
fn upstream_trace_packet_flows_reach_the_same_endpoints() {
    let yaml = fixture("test_trace_packet.yaml");
    let mut n = fake_node(1);
    n.restore(
        Family::Ipv4,
        &quote_comments(&block(&yaml, "restore", 0)),
        RestoreMode::NoFlush,
    )
    .unwrap();
    let flows = yaml.split("\n- name: ").skip(1);
    let mut checked = 0;
    for flow in flows {
        let field = |k: &str| {
            flow.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("{k}"))
                .trim_matches('\'')
                .to_string()
        };
        let name = flow.lines().next().unwrap();
        let (src, dst) = (field("source"), field("destination"));
        let port: u16 = field("destPort").parse().unwrap();
        let want = field("output");
        let want_masq = field("masq") == "true";
        let p = syn(&src, 40000, &dst, port);
        let input = if n.is_local(ip(&src)) {
            None
        } else {
            Some(iface_for(&src))
        };
        let ex = n
            .explore(&p, input, Instant::ZERO, Explorer::default())
            .unwrap();
        let mut outputs: Vec<String> = Vec::new();
        let mut masq = false;
        for (out, _) in &ex.runs {
            masq |= out.nat.masquerade;
            if let Some((a, port)) = out.nat.dnat {
                outputs.push(format!("{a}:{}", port.unwrap()));
            }
            let verdict = match &out.delivery {
                Delivery::Dropped(DropReason::Rule(_)) => Some("DROP"),
                Delivery::Rejected { .. } => Some("REJECT"),
                _ => out
                    .steps
                    .iter()
                    .any(|s| {
                        s.table == TableId::Filter
                            && s.decision == Decision::Accept
                            && s.by.is_some()
                    })
                    .then_some("ACCEPT"),
            };
            if let Some(v) = verdict {
                outputs.push(v.to_string());
            }
        }
        outputs.dedup();
        assert_eq!(outputs.join(", "), want, "flow `{name}`");
        assert_eq!(masq, want_masq, "flow `{name}` masquerade");
        checked += 1;
    }
    assert_eq!(checked, 7);
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
        dst: "fd00:30::/64".parse_cidr(),
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

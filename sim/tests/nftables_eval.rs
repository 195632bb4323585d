//! nftables packet evaluation on a node: kube-proxy-shaped rules (service
//! dispatch by verdict map, `numgen` endpoint choice, affinity sets with
//! timeouts, masquerading, reject and drop), the O(1) evaluation count,
//! traces, counters, and the interleaving of nftables base chains with
//! iptables tables by priority and registration order.

use sim::netfilter::eval::Explorer;
use sim::netfilter::{Family, RestoreMode, Variant};
use sim::nftables::Family as NftFamily;
use sim::node::{Delivery, DropReason, Node, Processed};
use sim::packet::{Packet, TcpFlags};
use sim::time::Instant;

mod common;

use common::{default_route, ip, syn, tcp};

/// A node: eth0 192.168.0.2/24 (default route), cni0 10.0.0.1/8 (pods:
/// clients 10.0.0.x, endpoints 10.180.0.x).
fn node(seed: u64) -> Node {
    let mut n = Node::new("n", seed, Variant::Nft);
    n.add_interface("eth0").unwrap();
    n.add_interface("cni0").unwrap();
    n.add_address("eth0", ip("192.168.0.2"), 24).unwrap();
    n.add_address("cni0", ip("10.0.0.1"), 8).unwrap();
    n.add_route(default_route("192.168.0.1", "eth0")).unwrap();
    n
}

/// Upstream's shape: base chains, dispatch maps, one service with two
/// endpoints and ClientIP affinity, a rejecting and a dropping service.
const KUBE: &str = r#"add table ip kube-proxy { comment "rules for kube-proxy" ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy services
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy reject-chain
add chain ip kube-proxy service-endpoints-check
add chain ip kube-proxy service-X
add chain ip kube-proxy endpoint-A
add chain ip kube-proxy endpoint-B
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; }
add set ip kube-proxy affinity-A { type ipv4_addr ; flags dynamic,timeout ; timeout 10s ; }
add set ip kube-proxy affinity-B { type ipv4_addr ; flags dynamic,timeout ; timeout 10s ; }
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00004000
add rule ip kube-proxy masquerading mark and 0x00004000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x00004000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy service-X ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-X ip saddr @affinity-A goto endpoint-A
add rule ip kube-proxy service-X ip saddr @affinity-B goto endpoint-B
add rule ip kube-proxy service-X numgen random mod 2 vmap { 0 : goto endpoint-A , 1 : goto endpoint-B }
add rule ip kube-proxy endpoint-A ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-A update @affinity-A { ip saddr }
add rule ip kube-proxy endpoint-A meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy endpoint-B ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-B update @affinity-B { ip saddr }
add rule ip kube-proxy endpoint-B meta l4proto tcp dnat to 10.180.0.2:80
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-X }
add element ip kube-proxy no-endpoint-services { 172.30.0.42 . tcp . 80 : goto reject-chain , 172.30.0.43 . tcp . 80 : drop }
"#;

fn kube_node(seed: u64) -> Node {
    let mut n = node(seed);
    n.nft_apply(KUBE, Instant::ZERO).unwrap();
    n
}

fn from_pod(n: &mut Node, pkt: Packet, secs: u64) -> Processed {
    n.receive(pkt, "cni0", Instant::from_secs(secs)).unwrap()
}

fn dnat(p: &Processed) -> Option<String> {
    p.nat
        .dnat
        .map(|(a, port)| format!("{a}:{}", port.unwrap_or(0)))
}

#[test]
fn numgen_is_explored_endpoint_by_endpoint_in_map_order() {
    let n = kube_node(1);
    let out = n
        .explore(
            &syn("10.0.0.2", 40000, "172.30.0.41", 80),
            Some("cni0"),
            Instant::ZERO,
            Explorer::default(),
        )
        .unwrap();
    assert!(out.complete);
    let got: Vec<Option<String>> = out.runs.iter().map(|(p, _)| dnat(p)).collect();
    assert_eq!(
        got,
        [
            Some("10.180.0.1:80".to_string()),
            Some("10.180.0.2:80".to_string())
        ]
    );
    // Exploring changed nothing: no affinity was recorded.
    let t = n.nftables().table(NftFamily::Ip, "kube-proxy").unwrap();
    assert!(t.set("affinity-A").unwrap().is_empty(Instant::ZERO));
}

#[test]
fn seeded_numgen_spreads_new_connections_and_repeats_per_seed() {
    let pick = |seed: u64| -> Vec<String> {
        let mut n = kube_node(seed);
        (0..40)
            .map(|i| {
                // Distinct clients, so affinity does not pin them.
                let src = format!("10.0.1.{}", i + 1);
                dnat(&from_pod(&mut n, syn(&src, 40000, "172.30.0.41", 80), 0)).unwrap()
            })
            .collect()
    };
    let a = pick(7);
    assert_eq!(a, pick(7), "same seed, same choices");
    assert_ne!(a, pick(8), "the seed reaches numgen");
    let first = a.iter().filter(|e| *e == "10.180.0.1:80").count();
    assert!(
        (8..=32).contains(&first),
        "{first} of 40 to the first endpoint"
    );
}

#[test]
fn affinity_pins_a_client_until_the_element_times_out() {
    let mut n = kube_node(3);
    let first = dnat(&from_pod(
        &mut n,
        syn("10.0.0.2", 40000, "172.30.0.41", 80),
        0,
    ))
    .unwrap();
    let set = if first == "10.180.0.1:80" {
        "affinity-A"
    } else {
        "affinity-B"
    };
    let t = n.nftables().table(NftFamily::Ip, "kube-proxy").unwrap();
    let elems = t.set(set).unwrap().elements(Instant::from_secs(1));
    assert_eq!(elems.len(), 1);
    assert_eq!(elems[0].key()[0].to_string(), "10.0.0.2");
    for (i, secs) in [1u64, 5, 9].into_iter().enumerate() {
        let p = from_pod(
            &mut n,
            syn("10.0.0.2", 40001 + i as u16, "172.30.0.41", 80),
            secs,
        );
        assert_eq!(dnat(&p).unwrap(), first, "at {secs}s");
    }
    // Each use refreshed the element (`update`): 10 s after the last one
    // it is gone.
    let t = n.nftables().table(NftFamily::Ip, "kube-proxy").unwrap();
    assert!(t.set(set).unwrap().contains(
        &[sim::nftables::Value::Ipv4("10.0.0.2".parse().unwrap())],
        Instant::from_secs(18)
    ));
    assert!(t.set(set).unwrap().is_empty(Instant::from_secs(19)));
}

#[test]
fn dispatch_costs_the_same_for_the_first_and_the_thousandth_service() {
    let mut script = String::from(KUBE);
    for i in 0..1000u32 {
        let ip = format!("172.31.{}.{}", i / 250, i % 250 + 1);
        script.push_str(&format!(
            "add chain ip kube-proxy svc-{i}\nadd rule ip kube-proxy svc-{i} meta l4proto tcp dnat to 10.180.1.{}:80\nadd element ip kube-proxy service-ips {{ {ip} . tcp . 80 : goto svc-{i} }}\n",
            i % 250 + 1
        ));
    }
    let mut n = node(1);
    n.nft_apply(&script, Instant::ZERO).unwrap();
    let cost = |n: &mut Node, dst: &str, sport| {
        let p = from_pod(n, syn("10.0.0.2", sport, dst, 80), 0);
        assert!(p.nat.dnat.is_some(), "{dst} was not DNATed");
        p.rules_evaluated
    };
    let first = cost(&mut n, "172.31.0.1", 41000);
    let last = cost(&mut n, "172.31.3.250", 41001);
    assert_eq!(first, last);
    // nat-prerouting (1 rule) → services (1 rule + 1 lookup) → svc (1);
    // filter-forward (1) → service-endpoints-check (1 + 1 lookup);
    // nat-postrouting (1) → masquerading (1 rule).
    assert_eq!(first, 9);
}

#[test]
fn a_later_packet_of_the_connection_skips_the_nat_chains() {
    let mut n = kube_node(1);
    let first = from_pod(&mut n, syn("10.0.0.2", 40000, "172.30.0.41", 80), 0);
    let (ep, _) = first.nat.dnat.unwrap();
    let synack = TcpFlags::SYN | TcpFlags::ACK;
    let back = from_pod(
        &mut n,
        tcp(&ep.to_string(), 80, "10.0.0.2", 40000, synack),
        0,
    );
    assert_eq!(
        back.packet.src(),
        ip("172.30.0.41"),
        "the reply is un-DNATed"
    );
    let ack = from_pod(
        &mut n,
        tcp("10.0.0.2", 40000, "172.30.0.41", 80, TcpFlags::ACK),
        0,
    );
    assert_eq!(ack.packet.dst(), ep, "the binding is reused");
    assert_eq!(ack.nat.dnat, None, "no new binding");
    // Only filter-forward's `ct state new` rule ran.
    assert_eq!(ack.rules_evaluated, 1);
    assert!(first.rules_evaluated > 1);
}

#[test]
fn reject_answers_with_port_unreachable_and_drop_elements_drop() {
    let mut n = kube_node(1);
    let out = from_pod(&mut n, syn("10.0.0.2", 40000, "172.30.0.42", 80), 0);
    let Delivery::NftRejected { by, reply } = &out.delivery else {
        panic!("{:?}", out.delivery)
    };
    assert_eq!(
        (by.table.as_str(), by.chain.as_str()),
        ("kube-proxy", "reject-chain")
    );
    assert_eq!(by.text, "reject");
    assert_eq!(reply.packet.icmp_type_code(), Some((3, 3)));
    assert_eq!(reply.packet.dst(), ip("10.0.0.2"));

    let out = from_pod(&mut n, syn("10.0.0.2", 40000, "172.30.0.43", 80), 0);
    let Delivery::Dropped(DropReason::NftRule(r)) = &out.delivery else {
        panic!("{:?}", out.delivery)
    };
    assert_eq!(r.chain, "service-endpoints-check");
    assert!(
        n.conntrack().is_empty(),
        "dropped connections are not confirmed"
    );
}

#[test]
fn traffic_from_outside_is_masqueraded_to_the_pod_interface_address() {
    let mut n = kube_node(1);
    let out = n
        .receive(
            syn("203.0.113.5", 40000, "172.30.0.41", 80),
            "eth0",
            Instant::ZERO,
        )
        .unwrap();
    assert!(out.nat.masquerade);
    assert_eq!(out.packet.src(), ip("10.0.0.1"));
    assert_eq!(out.mark & 0x4000, 0, "masquerading clears the mark bit");
    // From a pod of the cluster CIDR: not masqueraded.
    let out = from_pod(&mut n, syn("10.0.0.2", 40000, "172.30.0.41", 80), 0);
    assert!(!out.nat.masquerade);
    assert_eq!(out.packet.src(), ip("10.0.0.2"));
}

#[test]
fn locally_generated_traffic_goes_through_nat_output() {
    let mut n = kube_node(1);
    let out = n
        .send(syn("192.168.0.2", 40000, "172.30.0.41", 80), Instant::ZERO)
        .unwrap();
    assert!(out.nat.dnat.is_some());
    assert!(matches!(out.delivery, Delivery::Out { ref iface, .. } if iface == "cni0"));
}

#[test]
fn traces_print_like_nft_monitor_trace() {
    let mut n = kube_node(1);
    n.set_tracing(true);
    let out = from_pod(&mut n, syn("10.0.0.2", 40000, "172.30.0.42", 80), 0);
    let text = out.trace.to_string();
    assert!(
        text.contains("[n] ip kube-proxy nat-prerouting packet: iif \"cni0\" ip saddr 10.0.0.2 ip daddr 172.30.0.42 ip protocol tcp tcp sport 40000 tcp dport 80"),
        "{text}"
    );
    assert!(
        text.contains("ip kube-proxy services rule ip daddr . meta l4proto . th dport vmap @service-ips (handle"),
        "{text}"
    );
    assert!(text.contains("(no match)"), "{text}");
    assert!(
        text.contains("ip kube-proxy reject-chain rule reject (handle"),
        "{text}"
    );
    let mon = out.trace.nft_monitor();
    assert!(
        mon.lines()
            .all(|l| l.starts_with("trace id 00000001 ip kube-proxy ")),
        "{mon}"
    );
    assert!(
        mon.contains("ip kube-proxy nat-prerouting policy accept\n"),
        "{mon}"
    );
    assert!(
        mon.contains("ip kube-proxy reject-chain rule reject (verdict drop)\n"),
        "{mon}"
    );
    assert!(!mon.contains("no match"));
}

#[test]
fn counters_count_the_packets_that_pass() {
    let mut n = node(1);
    n.nft_apply(
        "add table ip t\nadd chain ip t c { type filter hook forward priority 0 ; }\nadd rule ip t c ip daddr 10.180.0.9 counter\n",
        Instant::ZERO,
    )
    .unwrap();
    for port in [1, 2] {
        from_pod(&mut n, syn("10.0.0.2", port, "10.180.0.9", 80), 0);
    }
    from_pod(&mut n, syn("10.0.0.2", 3, "10.180.0.8", 80), 0);
    let list = n.nft_list("list chain ip t c", Instant::ZERO).unwrap();
    assert!(
        list.contains("ip daddr 10.180.0.9 counter packets 2 bytes 80"),
        "{list}"
    );
}

/// An iptables raw rule and an nftables chain both drop 10.0.0.9: which
/// one decides depends on the priorities.
#[test]
fn chains_run_in_priority_order_with_iptables_tables() {
    for prio in [-400, -301, -300, -250, -110] {
        let mut n = node(1);
        n.restore(
            Family::Ipv4,
            "*raw\n-A PREROUTING -s 10.0.0.9/32 -j DROP\nCOMMIT\n",
            RestoreMode::NoFlush,
        )
        .unwrap();
        let script = format!(
            "add table ip t\nadd chain ip t c {{ type filter hook prerouting priority {prio} ; }}\nadd rule ip t c ip saddr 10.0.0.9 drop\n"
        );
        n.nft_apply(&script, Instant::ZERO).unwrap();
        let out = from_pod(&mut n, syn("10.0.0.9", 1, "10.180.0.9", 80), 0);
        let by_nft = matches!(out.delivery, Delivery::Dropped(DropReason::NftRule(_)));
        let by_ipt = matches!(out.delivery, Delivery::Dropped(DropReason::Rule(_)));
        assert!(by_nft || by_ipt, "{:?}", out.delivery);
        // iptables' raw table sits at -300 (registered first here).
        assert_eq!(by_nft, prio < -300, "priority {prio}");
    }
}

/// iptables' filter table and an nftables filter chain at priority 0: the
/// one registered first runs first.
#[test]
fn equal_priorities_run_in_registration_order() {
    let ipt = "*filter\n-A FORWARD -s 10.0.0.9/32 -j DROP\nCOMMIT\n";
    let nft = "add table ip t\nadd chain ip t c { type filter hook forward priority 0 ; }\nadd rule ip t c ip saddr 10.0.0.9 drop\n";
    for ipt_first in [true, false] {
        let mut n = node(1);
        if ipt_first {
            n.restore(Family::Ipv4, ipt, RestoreMode::NoFlush).unwrap();
            n.nft_apply(nft, Instant::ZERO).unwrap();
        } else {
            n.nft_apply(nft, Instant::ZERO).unwrap();
            n.restore(Family::Ipv4, ipt, RestoreMode::NoFlush).unwrap();
        }
        let out = from_pod(&mut n, syn("10.0.0.9", 1, "10.180.0.9", 80), 0);
        let by_nft = matches!(out.delivery, Delivery::Dropped(DropReason::NftRule(_)));
        assert_eq!(by_nft, !ipt_first, "{:?}", out.delivery);
    }
}

/// In the NAT core the first NAT-type chain that binds wins; the others do
/// not run for that connection.
#[test]
fn the_first_nat_chain_to_bind_wins() {
    let mut n = node(1);
    n.restore(
        Family::Ipv4,
        "*nat\n-A PREROUTING -d 172.30.0.50/32 -p tcp -j DNAT --to-destination 10.180.0.7:80\nCOMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    n.nft_apply(
        "add table ip t\nadd chain ip t c { type nat hook prerouting priority -150 ; }\nadd rule ip t c ip daddr 172.30.0.50 meta l4proto tcp dnat to 10.180.0.8:80\n",
        Instant::ZERO,
    )
    .unwrap();
    let out = from_pod(&mut n, syn("10.0.0.2", 1, "172.30.0.50", 80), 0);
    assert_eq!(dnat(&out).unwrap(), "10.180.0.8:80");
    assert_eq!(
        out.steps
            .iter()
            .filter(|s| s.table == sim::netfilter::TableId::Nat)
            .count(),
        1,
        "iptables' nat table ran only for postrouting"
    );
}

#[test]
fn a_filter_drop_policy_drops_and_says_so() {
    let mut n = node(1);
    n.nft_apply(
        "add table inet t\nadd chain inet t c { type filter hook forward priority 0 ; policy drop ; }\n",
        Instant::ZERO,
    )
    .unwrap();
    let out = from_pod(&mut n, syn("10.0.0.2", 1, "10.180.0.9", 80), 0);
    let Delivery::Dropped(DropReason::NftPolicy {
        family,
        table,
        chain,
    }) = &out.delivery
    else {
        panic!("{:?}", out.delivery)
    };
    assert_eq!(
        (*family, table.as_str(), chain.as_str()),
        (NftFamily::Inet, "t", "c")
    );
}

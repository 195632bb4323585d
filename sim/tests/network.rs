//! Connections through a two-node (sometimes three-node) cluster whose
//! nodes hold hand-written kube-proxy-style iptables rules: ClusterIP,
//! NodePort (eTP Cluster and Local), a UDP service, a service without
//! endpoints, hairpin, a cloud load balancer, a node going down, and
//! connections that outlive rule changes.

use std::net::IpAddr;

use sim::netfilter::{Cidr, Family, Protocol, RestoreMode, Variant};
use sim::network::{LbMode, Network, Outcome};
use sim::time::Instant;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn cidr(s: &str) -> Cidr {
    let (a, p) = s.split_once('/').unwrap();
    Cidr::new(ip(a), p.parse().unwrap()).unwrap()
}

const BASE: &str = r#"*filter
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
COMMIT
"#;

/// A sync's payload for a node. Services: `web` (ClusterIP 10.96.0.10:80,
/// NodePort 30080, endpoints `web_eps`), `local` (NodePort 30081,
/// eTP=Local; this node's endpoints `local_eps`), `dns` (UDP
/// 10.96.0.53:53 → 10.244.1.5:5353), `empty` (10.96.0.99:80, none).
fn payload(web_eps: &[&str], local_eps: &[&str]) -> String {
    let mut f = String::from(
        "*filter\n:KUBE-SERVICES - [0:0]\n:KUBE-EXTERNAL-SERVICES - [0:0]\n:KUBE-FORWARD - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n",
    );
    f += "-A KUBE-SERVICES -m comment --comment \"default/empty:http has no endpoints\" -m tcp -p tcp -d 10.96.0.99 --dport 80 -j REJECT\n";
    f += "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n";
    f += "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n";
    f += "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n";
    if local_eps.is_empty() {
        f += "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/local:http has no local endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30081 -j DROP\n";
    }
    f += "COMMIT\n*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-SVC-WEB - [0:0]\n:KUBE-EXT-WEB - [0:0]\n:KUBE-EXT-LOCAL - [0:0]\n:KUBE-SVL-LOCAL - [0:0]\n:KUBE-SVC-DNS - [0:0]\n:KUBE-SEP-DNS1 - [0:0]\n";
    let sep = |ep: &str| format!("KUBE-SEP-{}", ep.replace('.', "-"));
    for ep in web_eps.iter().chain(local_eps) {
        f += &format!(":{} - [0:0]\n", sep(ep));
    }
    f += "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n";
    if !web_eps.is_empty() {
        f += "-A KUBE-SERVICES -m comment --comment \"default/web:http cluster IP\" -m tcp -p tcp -d 10.96.0.10 --dport 80 -j KUBE-SVC-WEB\n";
    }
    f += "-A KUBE-SERVICES -m comment --comment \"default/dns:dns cluster IP\" -m udp -p udp -d 10.96.0.53 --dport 53 -j KUBE-SVC-DNS\n";
    f += "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n";
    f += "-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080 -j KUBE-EXT-WEB\n";
    f += "-A KUBE-NODEPORTS -m comment --comment default/local:http -m tcp -p tcp --dport 30081 -j KUBE-EXT-LOCAL\n";
    f += "-A KUBE-EXT-WEB -m comment --comment \"masquerade traffic for default/web:http external destinations\" -j KUBE-MARK-MASQ\n-A KUBE-EXT-WEB -j KUBE-SVC-WEB\n";
    f += "-A KUBE-SVC-WEB -m comment --comment \"default/web:http cluster IP\" -m tcp -p tcp -d 10.96.0.10 --dport 80 ! -s 10.244.0.0/16 -j KUBE-MARK-MASQ\n";
    for (i, ep) in web_eps.iter().enumerate() {
        let left = web_eps.len() - i;
        let stat = if left > 1 {
            format!(
                " -m statistic --mode random --probability {:.10}",
                1.0 / left as f64
            )
        } else {
            String::new()
        };
        f += &format!(
            "-A KUBE-SVC-WEB -m comment --comment \"default/web:http -> {ep}:8080\"{stat} -j {}\n",
            sep(ep)
        );
    }
    f += "-A KUBE-EXT-LOCAL -m comment --comment \"masquerade LOCAL traffic for default/local:http external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ\n";
    f += "-A KUBE-EXT-LOCAL -m comment --comment \"route LOCAL traffic for default/local:http external destinations\" -m addrtype --src-type LOCAL -j KUBE-SVC-WEB\n";
    if !local_eps.is_empty() {
        f += "-A KUBE-EXT-LOCAL -j KUBE-SVL-LOCAL\n";
        for ep in local_eps {
            f += &format!(
                "-A KUBE-SVL-LOCAL -m comment --comment \"default/local:http -> {ep}:8080\" -j {}\n",
                sep(ep)
            );
        }
    }
    for ep in web_eps.iter().chain(local_eps) {
        f += &format!(
            "-A {s} -m comment --comment default/web:http -s {ep} -j KUBE-MARK-MASQ\n-A {s} -m comment --comment default/web:http -m tcp -p tcp -j DNAT --to-destination {ep}:8080\n",
            s = sep(ep)
        );
    }
    f += "-A KUBE-SVC-DNS -m comment --comment \"default/dns:dns -> 10.244.1.5:5353\" -j KUBE-SEP-DNS1\n";
    f += "-A KUBE-SEP-DNS1 -m comment --comment default/dns:dns -m udp -p udp -j DNAT --to-destination 10.244.1.5:5353\n";
    f += "COMMIT\n";
    f
}

const WEB: [&str; 2] = ["10.244.1.5", "10.244.2.5"];

fn load(net: &mut Network, node: &str, web_eps: &[&str], local_eps: &[&str]) {
    let n = net.node_mut(node).unwrap();
    n.restore(Family::Ipv4, BASE, RestoreMode::NoFlush).unwrap();
    n.restore(
        Family::Ipv4,
        &payload(web_eps, local_eps),
        RestoreMode::NoFlush,
    )
    .unwrap();
}

/// node-a (web-1, curl) and node-b (web-2), a laptop outside, node-c with
/// no pods, and a load balancer for NodePort 30080.
fn cluster(seed: u64, lb: LbMode) -> Network {
    let mut net = Network::new(seed, Variant::Nft);
    net.add_node(
        "node-a",
        ip("192.168.0.10"),
        24,
        Some(cidr("10.244.1.0/24")),
    )
    .unwrap();
    net.add_node(
        "node-b",
        ip("192.168.0.11"),
        24,
        Some(cidr("10.244.2.0/24")),
    )
    .unwrap();
    net.add_node(
        "node-c",
        ip("192.168.0.12"),
        24,
        Some(cidr("10.244.3.0/24")),
    )
    .unwrap();
    net.add_pod("web-1", "node-a", ip("10.244.1.5"), &[8080], &[5353])
        .unwrap();
    net.add_pod("curl", "node-a", ip("10.244.1.9"), &[], &[])
        .unwrap();
    net.add_pod("web-2", "node-b", ip("10.244.2.5"), &[8080], &[])
        .unwrap();
    net.add_client("laptop", ip("203.0.113.7")).unwrap();
    net.add_load_balancer("lb", ip("198.51.100.10"), lb)
        .unwrap();
    net.lb_forward("lb", Protocol::Tcp, 80, 30080, &["node-a", "node-b"])
        .unwrap();
    load(&mut net, "node-a", &WEB, &WEB[..1]);
    load(&mut net, "node-b", &WEB, &WEB[1..]);
    load(&mut net, "node-c", &WEB, &[]);
    net
}

fn default_cluster(seed: u64) -> Network {
    cluster(
        seed,
        LbMode::NodePort {
            preserve_source: true,
        },
    )
}

fn t(s: u64) -> Instant {
    Instant::from_secs(s)
}

#[test]
fn pod_to_pod_across_nodes_is_not_translated() {
    let mut net = default_cluster(1);
    let r = net
        .connect_tcp("web-1", (ip("10.244.2.5"), 8080), t(0), false)
        .unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.server.as_deref(), Some("web-2"));
    let seen = r.seen.unwrap();
    assert_eq!(seen.src, (ip("10.244.1.5"), r.client_addr.1));
    assert_eq!(seen.dst, (ip("10.244.2.5"), 8080));
    assert!(r.closed);
    // Both nodes forwarded it; the exchange ended in TIME_WAIT on both.
    for n in ["node-a", "node-b"] {
        let l = net.conntrack_listing(n, t(0)).unwrap();
        assert!(
            l.starts_with("tcp      6 120 TIME_WAIT src=10.244.1.5"),
            "{n}: {l}"
        );
    }
}

#[test]
fn cluster_ip_balances_over_both_pods_and_keeps_the_pod_source() {
    let mut net = default_cluster(1);
    let mut servers = std::collections::BTreeMap::new();
    for i in 0..60 {
        let r = net
            .connect_tcp("curl", (ip("10.96.0.10"), 80), t(i), false)
            .unwrap();
        assert_eq!(r.outcome, Outcome::Answered, "{r:?}");
        let seen = r.seen.unwrap();
        assert_eq!(
            seen.src.0,
            ip("10.244.1.9"),
            "pod sources are not masqueraded"
        );
        *servers.entry(r.server.unwrap()).or_insert(0) += 1;
        assert!(r.rules_first_packet["node-a"] > 0);
    }
    assert_eq!(servers.len(), 2, "{servers:?}");
    assert!(servers.values().all(|n| *n >= 15), "{servers:?}");
}

#[test]
fn nodeport_cluster_policy_masquerades_and_local_policy_preserves_the_client() {
    let mut net = default_cluster(2);
    for i in 0..20 {
        let r = net
            .connect_tcp("laptop", (ip("192.168.0.10"), 30080), t(i), false)
            .unwrap();
        assert_eq!(r.outcome, Outcome::Answered);
        let want = match r.server.as_deref() {
            Some("web-1") => ip("10.244.1.1"),
            Some("web-2") => ip("192.168.0.10"),
            other => panic!("{other:?}"),
        };
        assert_eq!(r.seen.unwrap().src.0, want);
    }
    let r = net
        .connect_tcp("laptop", (ip("192.168.0.11"), 30081), t(30), false)
        .unwrap();
    assert_eq!(r.server.as_deref(), Some("web-2"));
    assert_eq!(r.seen.unwrap().src.0, ip("203.0.113.7"));
    // node-c has no local endpoint for the eTP=Local service.
    let r = net
        .connect_tcp("laptop", (ip("192.168.0.12"), 30081), t(31), false)
        .unwrap();
    let Outcome::Dropped { at, rule, .. } = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert_eq!(at, "node-c");
    assert!(rule
        .as_ref()
        .unwrap()
        .text
        .contains("has no local endpoints"));
}

#[test]
fn hairpin_reaches_the_calling_pod_with_a_masqueraded_source() {
    let mut net = default_cluster(3);
    let hit = (0..40)
        .map(|i| {
            net.connect_tcp("web-1", (ip("10.96.0.10"), 80), t(i), false)
                .unwrap()
        })
        .find(|r| r.server.as_deref() == Some("web-1"))
        .expect("the pod reaches itself within 40 tries");
    assert_eq!(hit.outcome, Outcome::Answered);
    let seen = hit.seen.unwrap();
    assert_eq!(
        seen.src.0,
        ip("10.244.1.1"),
        "masqueraded to cni0's address"
    );
    assert_eq!(seen.dst, (ip("10.244.1.5"), 8080));
}

#[test]
fn services_without_endpoints_are_rejected() {
    let mut net = default_cluster(1);
    let r = net
        .connect_tcp("curl", (ip("10.96.0.99"), 80), t(0), false)
        .unwrap();
    let Outcome::Unreachable { by } = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(by.starts_with("node-a: filter:KUBE-SERVICES:1"), "{by}");
    assert_eq!(r.server, None);
}

#[test]
fn udp_service_answers_and_a_closed_port_is_unreachable() {
    let mut net = default_cluster(1);
    let r = net
        .send_udp("web-2", (ip("10.96.0.53"), 53), t(0), false)
        .unwrap();
    assert_eq!(r.outcome, Outcome::Answered);
    assert_eq!(r.server.as_deref(), Some("web-1"));
    assert_eq!(r.seen.unwrap().dst, (ip("10.244.1.5"), 5353));
    let l = net.conntrack_listing("node-b", t(1)).unwrap();
    assert!(
        l.starts_with("udp      17 29 src=10.244.2.5 dst=10.96.0.53"),
        "{l}"
    );
    let r = net
        .send_udp("curl", (ip("10.244.2.5"), 9), t(0), false)
        .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Unreachable {
            by: "10.244.2.5".into()
        }
    );
    // An external client has no route to pod addresses.
    let r = net
        .send_udp("laptop", (ip("10.244.2.5"), 9), t(0), false)
        .unwrap();
    assert!(matches!(r.outcome, Outcome::Dropped { .. }), "{r:?}");
}

#[test]
fn kept_open_connections_survive_rule_changes_until_conntrack_forgets_them() {
    let mut net = default_cluster(4);
    let r = net
        .connect_tcp("curl", (ip("10.96.0.10"), 80), t(0), true)
        .unwrap();
    let id = r.id.unwrap();
    let first = r.server.clone().unwrap();
    // The endpoint disappears from the rules; the connection keeps its pod.
    let other = if first == "web-1" { WEB[1] } else { WEB[0] };
    load(&mut net, "node-a", &[other], &[]);
    let again = net.send_again(id, t(5)).unwrap();
    assert_eq!(again.outcome, Outcome::Answered);
    assert_eq!(again.server.as_deref(), Some(first.as_str()));
    assert_eq!(
        again.rules_first_packet["node-a"], 5,
        "established: KUBE-FORWARD only"
    );
    // Flush conntrack: the next segment is picked up mid-stream, NATed to
    // the remaining endpoint, which resets it.
    net.node_mut("node-a")
        .unwrap()
        .conntrack_mut()
        .delete(&Default::default());
    let broken = net.send_again(id, t(6)).unwrap();
    assert!(
        matches!(broken.outcome, Outcome::Refused { .. }),
        "{broken:?}"
    );
    assert!(broken.closed);
    assert_eq!(net.open_connections().count(), 0);
}

#[test]
fn close_plays_the_fin_exchange() {
    let mut net = default_cluster(1);
    let r = net
        .connect_tcp("laptop", (ip("192.168.0.11"), 30081), t(0), true)
        .unwrap();
    let id = r.id.unwrap();
    let l = net.conntrack_listing("node-b", t(0)).unwrap();
    assert!(l.contains("ESTABLISHED") && l.contains("[ASSURED]"), "{l}");
    let c = net.close(id, t(1)).unwrap();
    assert!(c.closed);
    let labels: Vec<&str> = c.steps.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(
        labels,
        ["FIN", "FIN answer", "last ACK"],
        "the last ACK gets no answer"
    );
    let l = net.conntrack_listing("node-b", t(1)).unwrap();
    assert!(l.contains("TIME_WAIT"), "{l}");
}

#[test]
fn load_balancer_spreads_over_nodes_and_skips_a_node_that_is_down() {
    let mut net = cluster(
        5,
        LbMode::NodePort {
            preserve_source: false,
        },
    );
    let mut nodes_seen = std::collections::BTreeSet::new();
    for i in 0..20 {
        let r = net
            .connect_tcp("laptop", (ip("198.51.100.10"), 80), t(i), false)
            .unwrap();
        assert_eq!(r.outcome, Outcome::Answered, "{r:?}");
        let lb_hop = &r.steps[0].hops[1];
        assert_eq!(lb_hop.host, "lb");
        nodes_seen.insert(lb_hop.what.clone());
    }
    assert_eq!(nodes_seen.len(), 2, "{nodes_seen:?}");
    net.set_node_up("node-b", false).unwrap();
    for i in 0..10 {
        let r = net
            .connect_tcp("laptop", (ip("198.51.100.10"), 80), t(100 + i), false)
            .unwrap();
        assert_eq!(r.steps[0].hops[1].what, "to node node-a");
        // node-a may still pick web-2 behind the dead node (its rules have
        // not changed): then the SYN dies there.
        match &r.outcome {
            Outcome::Answered => assert_eq!(r.server.as_deref(), Some("web-1")),
            Outcome::Dropped { at, .. } => assert_eq!(at, "node-b"),
            o => panic!("{o:?}"),
        }
    }
    let r = net
        .connect_tcp("laptop", (ip("192.168.0.11"), 30080), t(200), false)
        .unwrap();
    assert_eq!(
        r.outcome,
        Outcome::Dropped {
            at: "node-b".into(),
            reason: "node down".into(),
            rule: None
        }
    );
}

#[test]
fn an_icmp_error_behind_a_proxying_balancer_reaches_the_client() {
    let mut net = cluster(
        8,
        LbMode::NodePort {
            preserve_source: false,
        },
    );
    // Nothing listens on UDP 30053 on the nodes: they answer with a port
    // unreachable addressed to the balancer, which translates it back.
    net.lb_forward("lb", Protocol::Udp, 53, 30053, &["node-a", "node-b"])
        .unwrap();
    let r = net
        .send_udp("laptop", (ip("198.51.100.10"), 53), t(0), false)
        .unwrap();
    let Outcome::Unreachable { by } = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(by.starts_with("198.51.100.10"), "{by}");
}

#[test]
fn load_balancer_preserving_the_source_with_local_policy() {
    let mut net = default_cluster(6);
    net.lb_forward("lb", Protocol::Tcp, 81, 30081, &["node-a", "node-b"])
        .unwrap();
    for i in 0..6 {
        let r = net
            .connect_tcp("laptop", (ip("198.51.100.10"), 81), t(i), false)
            .unwrap();
        assert_eq!(r.outcome, Outcome::Answered, "{r:?}");
        assert_eq!(r.seen.unwrap().src.0, ip("203.0.113.7"));
    }
}

#[test]
fn same_seed_same_reports() {
    let run = |seed| {
        let mut net = default_cluster(seed);
        net.set_tracing(true);
        (0..10)
            .map(|i| {
                net.connect_tcp("laptop", (ip("192.168.0.10"), 30080), t(i), false)
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let a = run(9);
    assert_eq!(a, run(9));
    assert_ne!(
        a.iter().map(|r| r.client_addr).collect::<Vec<_>>(),
        run(10).iter().map(|r| r.client_addr).collect::<Vec<_>>()
    );
    let traced = &a[0].steps[0].hops[1];
    assert_eq!(traced.host, "node-a");
    assert!(!traced.trace.records.is_empty());
}

#[test]
fn udp_flows_stick_to_a_deleted_pod_until_conntrack_is_cleaned() {
    let mut net = default_cluster(1);
    net.add_pod("dns-2", "node-b", ip("10.244.2.53"), &[], &[5353])
        .unwrap();
    let r = net
        .send_udp("web-2", (ip("10.96.0.53"), 53), t(0), true)
        .unwrap();
    assert_eq!(r.server.as_deref(), Some("web-1"));
    let id = r.id.unwrap();
    // web-1 is deleted and the DNS service now points at dns-2.
    net.remove_host("web-1").unwrap();
    let moved = payload(&WEB[1..], &[]).replace("10.244.1.5:5353", "10.244.2.53:5353");
    for n in ["node-a", "node-b"] {
        net.node_mut(n)
            .unwrap()
            .restore(Family::Ipv4, &moved, RestoreMode::NoFlush)
            .unwrap();
    }
    // The flow's conntrack entry on node-b still points at the old pod.
    let stale = net.send_again(id, t(1)).unwrap();
    let Outcome::Dropped { at, reason, .. } = &stale.outcome else {
        panic!("{:?}", stale.outcome)
    };
    assert_eq!(at, "node-a");
    assert!(
        reason.contains("no host at next hop 10.244.1.5"),
        "{reason}"
    );
    // kube-proxy's cleanup: delete flows whose reply source is the old pod.
    let cleaned = net
        .node_mut("node-b")
        .unwrap()
        .conntrack_mut()
        .delete(&sim::conntrack::Filter {
            proto: Some(Protocol::Udp),
            reply_src: Some(ip("10.244.1.5")),
            ..Default::default()
        });
    assert_eq!(cleaned, 1);
    let r = net
        .send_udp("web-2", (ip("10.96.0.53"), 53), t(2), false)
        .unwrap();
    assert_eq!(r.server.as_deref(), Some("dns-2"));
    net.expire(t(1000));
    assert_eq!(net.conntrack_listing("node-b", t(1000)).unwrap(), "");
}

//! Upstream kube-proxy's fake node with its golden iptables rules, for
//! tests that follow packets through a node the way upstream's tests set
//! one up: the fixtures read from `tests/fixtures/upstream/iptables/`, the
//! node's interfaces and routes, and the one helper that sends a packet in.
//! It builds and sends only; it must never assert on what a packet met.
//! A missing fixture or a refused restore panics (a broken test setup).

use std::path::PathBuf;

use sim::netfilter::{Family, RestoreMode, Variant};
use sim::node::{Node, Processed};
use sim::packet::Packet;
use sim::time::Instant;

use super::{default_route, ip};

pub fn fixture(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/upstream/iptables")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The block scalar under `key: |` at `indent` spaces (the fixtures' only
/// multi-line values), without the indentation.
pub fn block(yaml: &str, key: &str, indent: usize) -> String {
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
pub fn quote_comments(payload: &str) -> String {
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
pub fn fake_node(seed: u64) -> Node {
    let mut n = Node::new("test-node", seed, Variant::Nft);
    n.add_interface("eth0").unwrap();
    n.add_interface("cni0").unwrap();
    for a in ["192.168.0.2", "192.168.1.2", "192.168.99.11"] {
        n.add_address("eth0", ip(a), 24).unwrap();
    }
    n.add_address("eth0", ip("2001:db8::1"), 64).unwrap();
    n.add_address("eth0", ip("2001:db8:1::2"), 64).unwrap();
    n.add_address("cni0", ip("10.0.0.1"), 8).unwrap();
    n.add_route(default_route("192.168.0.1", "eth0")).unwrap();
    n
}

/// Jump rules kube-proxy installs with EnsureRule (and kubelet's
/// KUBE-FIREWALL hooks), which the restore payload does not contain.
pub const BASE_RULES: &str = r#"*filter
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

pub fn kube_node(seed: u64) -> Node {
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

/// The interface a packet from `src` arrives on at the fake node.
pub fn iface_for(src: &str) -> &'static str {
    if src.starts_with("10.") {
        "cni0"
    } else {
        "eth0"
    }
}

/// The one helper that sends a packet into a node: locally generated when
/// the source is the node's, otherwise received on the matching interface.
pub fn run(n: &mut Node, p: Packet, at: u64) -> Processed {
    let now = Instant::from_secs(at);
    let src = p.src();
    if n.is_local(src) {
        n.send(p, now).unwrap()
    } else {
        n.receive(p, iface_for(&src.to_string()), now).unwrap()
    }
}

pub fn sock(p: &Packet) -> String {
    format!(
        "{}:{} -> {}:{}",
        p.src(),
        p.src_port().unwrap_or(0),
        p.dst(),
        p.dst_port().unwrap_or(0)
    )
}

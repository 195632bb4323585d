//! Switching modes on one node, as upstream's `platformCleanup` does at
//! start-up: a kube-proxy starting in nftables mode removes iptables mode's
//! chains and jump rules (in both families) before writing its table, and
//! one starting in iptables mode removes nftables mode's table. Whatever
//! else the kernel holds stays.

use kpsim::oneshot::{render_into, resolve_node, RenderRequest};
use proxier::config::{self, Mode};
use proxier::k8s;
use sim::netfilter::{Family, RestoreMode, TableId, Variant};
use sim::node::Node;

fn request(mode: Mode) -> RenderRequest {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests/");
    let read = |f: &str| std::fs::read_to_string(format!("{dir}{f}")).unwrap();
    let mut config = config::load_str("clusterip", &read("clusterip.config.yaml")).unwrap();
    config.mode = mode;
    RenderRequest {
        config,
        manifests: k8s::load_str("clusterip", &read("clusterip.yaml")).unwrap(),
        ..RenderRequest::default()
    }
}

fn sync(node: &mut Node, mode: Mode) {
    let req = request(mode);
    let info = resolve_node(&req).unwrap();
    render_into(&req, info, node).unwrap();
}

fn kube_chains(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for fam in [Family::Ipv4, Family::Ipv6] {
        for t in node.iptables(fam).tables() {
            for c in t.chains() {
                if c.name().starts_with("KUBE-") {
                    out.push(format!("{fam:?} {} {}", t.id(), c.name()));
                }
            }
        }
    }
    out
}

fn has_nft_table(node: &Node) -> bool {
    node.nftables()
        .table(sim::nftables::Family::Ip, "kube-proxy")
        .is_some()
}

#[test]
fn each_mode_removes_the_other_modes_rules_at_start_up() {
    let mut node = Node::new("node-a", 1, Variant::Nft);
    // A foreign chain that must survive every cleanup.
    node.restore(
        Family::Ipv4,
        "*filter\n:DOCKER - [0:0]\n-A FORWARD -j DOCKER\nCOMMIT\n",
        RestoreMode::NoFlush,
    )
    .unwrap();
    sync(&mut node, Mode::Iptables);
    assert!(kube_chains(&node).len() > 5, "{:?}", kube_chains(&node));
    assert!(!has_nft_table(&node));

    sync(&mut node, Mode::Nftables);
    // Only kubelet's KUBE-FIREWALL stays, as upstream leaves it.
    assert_eq!(kube_chains(&node), ["Ipv4 filter KUBE-FIREWALL"]);
    assert!(has_nft_table(&node));
    let nat = node
        .iptables(Family::Ipv4)
        .chain(TableId::Nat, "PREROUTING")
        .unwrap();
    assert!(nat.rules().is_empty(), "jump rules are gone");

    sync(&mut node, Mode::Iptables);
    assert!(
        !has_nft_table(&node),
        "iptables mode removes the nftables table"
    );
    assert!(node
        .iptables(Family::Ipv4)
        .chain(TableId::Nat, "KUBE-SERVICES")
        .is_some());
    let save = node.iptables_save(Family::Ipv4);
    assert!(save.contains("-A FORWARD -j DOCKER\n"), "{save}");
}

/// `restart.mode` and `kubeProxyRules` are checked when the scenario is
/// planned, with the place and a fix.
#[test]
fn bad_mode_switch_steps_are_plan_errors() {
    let base = "name: t\nconfig: {mode: iptables}\ncluster:\n  nodes:\n  - {name: node-a, ip: 192.168.0.10, podCIDR: 10.244.1.0/24}\nsteps:\n";
    let cases = [
        (
            "- restart: {kubeProxy: node-a, mode: userspace}\n",
            "restart.mode",
        ),
        ("- expect: {kubeProxyRules: {node-z: nftables}}\n", "node-z"),
        (
            "- expect: {kubeProxyRules: {node-a: ipchains}}\n",
            "use iptables, nftables or none",
        ),
    ];
    for (step, want) in cases {
        let text = format!("{base}{step}");
        let err = kpsim::scenario::load("t.yaml", &text).expect_err(step);
        let msg = format!("{err:#}");
        assert!(
            msg.contains(want) && msg.contains("t.yaml"),
            "{step}: {msg}"
        );
    }
}

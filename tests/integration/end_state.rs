//! `kpsim rules --scenario` and `kpsim trace --scenario`: a scenario's end
//! state, read off the played world. A full sync rendered from the
//! end-state objects must agree with what the node's kernel holds after the
//! run's last sync, and a traced packet must see the last sync's endpoints.

use std::collections::BTreeSet;

use kpsim::oneshot::render;
use kpsim::scenario::{self, end_state, Plan};
use kpsim::trace::{trace_on, Probe};
use proxier::config::Mode;
use proxier::k8s::Protocol;
use sim::netfilter::Family;

fn plan(name: &str) -> Plan {
    let path = format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    scenario::load(&path, &text).unwrap()
}

fn pod_ip(plan: &Plan, name: &str) -> std::net::IpAddr {
    plan.pods.iter().find(|p| p.name.name == name).unwrap().ip
}

/// The `KUBE-SVC-`/`KUBE-SEP-` chains an iptables-save dump declares.
fn service_chains(save: &str) -> BTreeSet<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split(' ').next())
        .filter(|c| c.starts_with("KUBE-SVC-") || c.starts_with("KUBE-SEP-"))
        .map(str::to_string)
        .collect()
}

#[test]
fn rules_at_the_end_state_match_the_kernel_after_the_last_sync() {
    let plan = plan("endpoint-churn.yaml");
    let end = end_state(&plan, None, Some(Mode::Iptables)).unwrap();
    assert!(end.report.passed(), "the run itself passes");
    let rendered = render(&end.render_request(Some("node-a")).unwrap()).unwrap();
    let restore = rendered.restore.expect("iptables mode writes a payload");
    let survivor = pod_ip(&plan, "web-v2-a").to_string();
    assert!(restore.contains(&format!("{survivor}:8080")), "{restore}");
    for gone in ["web-v1-a", "web-v1-b"] {
        let ip = pod_ip(&plan, gone).to_string();
        assert!(
            !restore.contains(&format!("{ip}:8080")),
            "{gone}: {restore}"
        );
    }
    let kernel = end.net.node("node-a").unwrap().iptables_save(Family::Ipv4);
    let chains = service_chains(&kernel);
    assert_eq!(chains.len(), 2, "one service, one endpoint: {kernel}");
    assert_eq!(chains, service_chains(&rendered.save));
}

#[test]
fn a_trace_at_the_end_state_sees_only_the_last_syncs_endpoints() {
    let plan = plan("endpoint-churn.yaml");
    for mode in [Mode::Iptables, Mode::Ipvs, Mode::Nftables] {
        let mut end = end_state(&plan, None, Some(mode)).unwrap();
        let (info, config) = end.node(Some("node-b")).unwrap();
        let (info, mode) = (info.clone(), config.mode);
        let probe = Probe {
            from: pod_ip(&plan, "client"),
            from_port: Some(41000),
            to: "10.96.0.80".parse().unwrap(),
            to_port: 80,
            protocol: Protocol::Tcp,
        };
        let now = end.now;
        let node = end.net.node_mut("node-b").unwrap();
        let result = trace_on(node, &info, mode, &probe, now).unwrap();
        let want = format!("{}:8080", pod_ip(&plan, "web-v2-a"));
        assert_eq!(result.endpoints, [want], "{} mode", mode.name());
        assert_eq!(result.path, "PREROUTING on cni0");
    }
}

#[test]
fn a_restart_that_switched_modes_is_the_end_states_mode() {
    let plan = plan("mode-switch.yaml");
    let end = end_state(&plan, None, None).unwrap();
    assert_eq!(end.mode, Mode::Iptables, "the run starts in iptables mode");
    let (_, switched) = end.node(Some("node-a")).unwrap();
    let (_, kept) = end.node(Some("node-b")).unwrap();
    assert_eq!((switched.mode, kept.mode), (Mode::Nftables, Mode::Iptables));
    let rendered = render(&end.render_request(Some("node-a")).unwrap()).unwrap();
    assert!(rendered.nft_transaction.is_some() && rendered.restore.is_none());
}

#[test]
fn an_unknown_or_unnamed_node_is_refused_with_the_scenarios_nodes() {
    let end = end_state(&plan("nodeport.yaml"), None, None).unwrap();
    let e = end.node(Some("node-z")).unwrap_err().to_string();
    assert!(e.contains("node-a, node-b, node-c"), "{e}");
    let e = end.node(None).unwrap_err().to_string();
    assert!(e.contains("pick one with --node"), "{e}");
}

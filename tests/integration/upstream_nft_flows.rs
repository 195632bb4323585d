//! Upstream's nftables packet-flow tables (`runPacketFlowTests` in
//! `pkg/proxy/nftables/proxier_test.go`) answered by `kpsim trace --mode
//! nftables`: for every flow recorded in `tests/fixtures/upstream/nftables/`,
//! the objects of that moment are synced by the nftables proxier into a
//! simulated node (the fake proxier's node: its IPs, ServiceCIDRs and
//! settings) and one packet is traced through the simulator's nftables
//! evaluation — the kernel's hook order, conntrack and routing — not
//! through upstream's rule-reading tracer. Upstream's expected output lists
//! the DNAT targets (every `numgen` branch), then `DROP`/`REJECT`,
//! comma-separated; `masq` says whether the packet is masqueraded.

use kpsim::oneshot::RenderRequest;
use kpsim::trace::{trace, Probe, TraceRequest};
use proxier::config::Mode;
use proxier::k8s::{self, IpFamily, Manifests};

use crate::support::flows::{apply, assert_flows_agree, protocol};
use crate::support::nftables_upstream::{all_fixtures, fake_proxier, load, Fixture};

/// The fake proxier's configuration for the fixture's family, with the
/// fixture's changes (`fake:`) applied.
fn config(f: &Fixture) -> (proxier::config::Config, IpFamily) {
    let fake = fake_proxier();
    let (settings, family) = match f.family.as_str() {
        "IPv6" => (&fake.ipv6, IpFamily::V6),
        _ => (&fake.ipv4, IpFamily::V4),
    };
    let mut value = settings.config.clone();
    let map = value.as_mapping_mut().expect("config is a mapping");
    if let Some(all) = f.fake.masquerade_all {
        map.insert(
            "nftables".into(),
            serde_yaml::from_str(&format!("{{masqueradeAll: {all}, masqueradeBit: 14}}")).unwrap(),
        );
    }
    if f.fake.local_detector == Some(false) {
        // No cluster CIDR: upstream's NewNoOpLocalDetector.
        map.remove("clusterCIDR");
    }
    if let Some(npa) = &f.fake.node_port_addresses {
        map.insert(
            "nodePortAddresses".into(),
            serde_yaml::to_value(npa).unwrap(),
        );
    }
    let text = serde_yaml::to_string(&value).unwrap();
    (proxier::config::load_str("fake", &text).unwrap(), family)
}

/// The fake's ServiceCIDRs as a ServiceCIDR object.
fn service_cidrs(family: IpFamily) -> Manifests {
    let fake = fake_proxier();
    let settings = match family {
        IpFamily::V6 => &fake.ipv6,
        IpFamily::V4 => &fake.ipv4,
    };
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {{name: kubernetes}}\nspec: {{cidrs: [{}]}}\n",
        settings
            .service_cidrs
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    k8s::load_str("service-cidr", &yaml).unwrap()
}

#[test]
fn upstream_nftables_packet_flows_through_kpsim_trace() {
    let fake = fake_proxier();
    let mut failures = Vec::new();
    let mut flows_checked = 0;
    for name in all_fixtures() {
        let f = load(&name);
        let (cfg, family) = config(&f);
        let node_ip = match family {
            IpFamily::V6 => fake.ipv6.node_ip,
            IpFamily::V4 => fake.ipv4.node_ip,
        };
        // The node's primary IP first, then every other address of its
        // interfaces (the fake has several on eth0).
        let mut node_ips = vec![node_ip];
        for a in &fake.interface_addresses {
            if IpFamily::of(a) == family && !a.is_loopback() && !node_ips.contains(a) {
                node_ips.push(*a);
            }
        }
        let mut objects = service_cidrs(family);
        for (i, sync) in f.syncs.iter().enumerate() {
            apply(&mut objects, &sync.apply, &sync.delete);
            for flow in &sync.flows {
                let source: std::net::IpAddr = flow.source.parse().unwrap();
                let destination: std::net::IpAddr = flow.dest.parse().unwrap();
                flows_checked += 1;
                let req = TraceRequest {
                    mode: Mode::Nftables,
                    render: RenderRequest {
                        config: cfg.clone(),
                        manifests: objects.clone(),
                        node: Some(fake.node_name.clone()),
                        node_ips: node_ips.clone(),
                        family: Some(family),
                    },
                    probe: Probe {
                        from: source,
                        from_port: None,
                        to: destination,
                        to_port: flow.port,
                        protocol: protocol(&flow.protocol),
                    },
                    seed: 1,
                };
                let r = match trace(&req) {
                    Ok(r) => r,
                    Err(e) => {
                        failures.push(format!("{name} sync {} flow {:?}: {e:#}", i + 1, flow.name));
                        continue;
                    }
                };
                let mut got = r.endpoints.clone();
                got.extend(r.verdict.iter().filter(|v| *v != "ACCEPT").cloned());
                let got = got.join(", ");
                if got != flow.output || r.masquerade != flow.masq {
                    failures.push(format!(
                        "{name} sync {} flow {:?} ({source} -> {destination}:{}): upstream {:?} masq {}, kpsim {got:?} masq {}\n{}",
                        i + 1,
                        flow.name,
                        flow.port,
                        flow.output,
                        flow.masq,
                        r.masquerade,
                        r.trace
                    ));
                }
            }
        }
    }
    assert_flows_agree(&failures, flows_checked, 200);
}

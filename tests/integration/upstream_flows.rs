//! Upstream's packet-flow tables (`runPacketFlowTests`) answered by
//! `kpsim trace`: for every flow recorded in the iptables fixtures, the
//! rules for the objects of that moment are rendered into a simulated node
//! and one packet is traced through the real evaluator. Upstream's expected
//! output lists the DNAT targets in rule order, then the filter verdict
//! (`REJECT`/`DROP`/`ACCEPT`), comma-separated; `masq` says whether the
//! packet is masqueraded.

use kpsim::oneshot::RenderRequest;
use kpsim::trace::{trace, Probe, TraceRequest};
use proxier::k8s::{IpFamily, Manifests};

use crate::support::flows::{apply, assert_flows_agree, protocol};
use crate::support::upstream::{all_fixtures, load, load_value, Fixture};

fn config(f: &Fixture) -> proxier::config::Config {
    let mut value = f.config.clone();
    if let Some(map) = value.as_mapping_mut() {
        map.remove("ipFamily");
    }
    proxier::config::load_str("fixture", &serde_yaml::to_string(&value).unwrap()).unwrap()
}

fn family(f: &Fixture) -> IpFamily {
    match f.config.get("ipFamily").and_then(|v| v.as_str()) {
        Some("IPv6") => IpFamily::V6,
        _ => IpFamily::V4,
    }
}

#[test]
fn upstream_packet_flows_through_kpsim_trace() {
    let mut failures = Vec::new();
    let mut flows_checked = 0;
    for name in all_fixtures() {
        let raw = load_value(&name);
        if raw.get("syncs").is_none() || name == "test_trace_packet.yaml" {
            continue;
        }
        let f = load(&name);
        let fam = family(&f);
        let node_ip = if fam == IpFamily::V6 {
            "2001:db8::1".parse().unwrap()
        } else {
            f.node.ips[0]
        };
        let mut objects = Manifests::default();
        for (i, step) in raw["syncs"].as_sequence().unwrap().iter().enumerate() {
            let sync = &f.syncs[i];
            apply(&mut objects, &sync.apply, &sync.delete);
            let Some(flows) = step.get("flows").and_then(|v| v.as_sequence()) else {
                continue;
            };
            // The node's primary IP first, then every other address of its
            // interfaces (upstream's fake has several on eth0).
            let mut node_ips = vec![node_ip];
            for a in f.interfaces.iter().flat_map(|i| i.addrs.iter()) {
                let ip: std::net::IpAddr = a.split('/').next().unwrap().parse().unwrap();
                if IpFamily::of(&ip) == fam && !ip.is_loopback() && !node_ips.contains(&ip) {
                    node_ips.push(ip);
                }
            }
            for flow in flows {
                let get = |k: &str| {
                    flow.get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string()
                };
                let source: std::net::IpAddr = get("source").parse().unwrap();
                let destination: std::net::IpAddr = get("destination").parse().unwrap();
                if IpFamily::of(&source) != fam {
                    continue;
                }
                flows_checked += 1;
                let req = TraceRequest {
                    mode: proxier::config::Mode::Iptables,
                    render: RenderRequest {
                        config: config(&f),
                        manifests: objects.clone(),
                        node: Some(f.node.name.clone()),
                        node_ips: node_ips.clone(),
                        family: Some(fam),
                    },
                    probe: Probe {
                        from: source,
                        from_port: None,
                        to: destination,
                        to_port: flow["destPort"].as_u64().unwrap() as u16,
                        protocol: protocol(&get("protocol")),
                    },
                    seed: 1,
                };
                let r = match trace(&req) {
                    Ok(r) => r,
                    Err(e) => {
                        failures.push(format!(
                            "{name} sync {} flow {:?}: {e:#}",
                            i + 1,
                            get("name")
                        ));
                        continue;
                    }
                };
                let mut got = r.endpoints.clone();
                got.extend(
                    r.verdict
                        .iter()
                        .filter(|v| *v != "ACCEPT" || get("output") == "ACCEPT")
                        .cloned(),
                );
                let got = got.join(", ");
                let want = get("output");
                let want_masq = flow.get("masq").and_then(|v| v.as_bool());
                if got != want || want_masq.is_some_and(|m| m != r.masquerade) {
                    failures.push(format!(
                        "{name} sync {} flow {:?} ({} -> {}:{}): upstream {want:?} masq {want_masq:?}, kpsim {got:?} masq {}\n{}",
                        i + 1,
                        get("name"),
                        source,
                        destination,
                        req.probe.to_port,
                        r.masquerade,
                        r.trace
                    ));
                }
            }
        }
    }
    assert_flows_agree(&failures, flows_checked, 150);
}

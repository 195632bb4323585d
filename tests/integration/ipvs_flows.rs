//! IPVS mode end to end, as a packet-flow table (upstream's
//! `runPacketFlowTests` shape): for a manifest set, the IPVS proxier syncs
//! into a simulated node (virtual servers, `kube-ipvs0`, ipsets, helper
//! rules), then one new packet goes through the node's hooks and IPVS.
//! Each row says which real servers IPVS could pick, whether a kube-proxy
//! filter rule decided, and whether the packet is masqueraded.

use kpsim::oneshot::RenderRequest;
use kpsim::trace::{trace, Probe, TraceRequest};
use proxier::config::{self, Mode};
use proxier::k8s::{self, Protocol};

struct Flow {
    name: &'static str,
    manifests: &'static str,
    from: &'static str,
    to: &'static str,
    udp: bool,
    endpoints: &'static [&'static str],
    verdict: Option<&'static str>,
    masquerade: bool,
}

const FLOWS: &[Flow] = &[
    Flow {
        name: "pod to ClusterIP: every ready endpoint, not masqueraded",
        manifests: "clusterip",
        from: "10.244.1.9",
        to: "10.96.0.10:80",
        udp: false,
        endpoints: &["10.244.1.5:8080", "10.244.1.12:8080", "10.244.2.7:8080"],
        verdict: None,
        masquerade: false,
    },
    Flow {
        name: "off-cluster source to ClusterIP is masqueraded",
        manifests: "clusterip",
        from: "192.168.0.99",
        to: "10.96.0.10:80",
        udp: false,
        endpoints: &["10.244.1.5:8080", "10.244.1.12:8080", "10.244.2.7:8080"],
        verdict: None,
        masquerade: true,
    },
    Flow {
        name: "UDP ClusterIP",
        manifests: "clusterip",
        from: "10.244.1.9",
        to: "10.96.0.53:53",
        udp: true,
        endpoints: &["10.244.1.2:53", "10.244.2.2:53"],
        verdict: None,
        masquerade: false,
    },
    Flow {
        name: "a VIP port no service uses is rejected by KUBE-IPVS-FILTER",
        manifests: "clusterip",
        from: "10.244.1.9",
        to: "10.96.0.10:81",
        udp: false,
        endpoints: &[],
        verdict: Some("REJECT"),
        masquerade: false,
    },
    Flow {
        name: "eTP Local NodePort: the local endpoint, client address kept",
        manifests: "nodeport-local",
        from: "203.0.113.7",
        to: "192.168.0.10:30080",
        udp: false,
        endpoints: &["10.244.1.5:8080"],
        verdict: None,
        masquerade: false,
    },
    Flow {
        name: "eTP Local NodePort without a local endpoint: the cluster's, unmasqueraded",
        manifests: "nodeport-local",
        from: "203.0.113.7",
        to: "192.168.0.10:30081",
        udp: false,
        endpoints: &["10.244.2.6:8080"],
        verdict: None,
        masquerade: false,
    },
    Flow {
        name: "LB source ranges drop a stranger",
        manifests: "loadbalancer",
        from: "203.0.113.99",
        to: "203.0.113.20:80",
        udp: false,
        endpoints: &[],
        verdict: Some("DROP"),
        masquerade: false,
    },
    Flow {
        name: "LB source ranges admit a listed source, masqueraded",
        manifests: "loadbalancer",
        from: "192.168.5.5",
        to: "203.0.113.20:80",
        udp: false,
        endpoints: &["10.244.2.21:8080"],
        verdict: None,
        masquerade: true,
    },
    Flow {
        name: "an ipMode Proxy LB address is not the node's: forwarded as is",
        manifests: "loadbalancer",
        from: "192.168.5.5",
        to: "203.0.113.30:80",
        udp: false,
        endpoints: &[],
        verdict: None,
        masquerade: false,
    },
];

fn request(f: &Flow) -> TraceRequest {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/manifests/");
    let read = |p: String| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let manifests =
        k8s::load_str(f.manifests, &read(format!("{dir}{}.yaml", f.manifests))).unwrap();
    let config_text = read(format!("{dir}{}.config.yaml", f.manifests));
    let mut config = config::load_str(f.manifests, &config_text).unwrap();
    config.mode = Mode::Ipvs;
    let to: std::net::SocketAddr = f.to.parse().unwrap();
    TraceRequest {
        mode: Mode::Ipvs,
        render: RenderRequest {
            config,
            manifests,
            ..RenderRequest::default()
        },
        probe: Probe {
            from: f.from.parse().unwrap(),
            from_port: None,
            to: to.ip(),
            to_port: to.port(),
            protocol: if f.udp { Protocol::Udp } else { Protocol::Tcp },
        },
        seed: 1,
    }
}

#[test]
fn ipvs_packet_flows() {
    let mut failures = Vec::new();
    for f in FLOWS {
        let r = trace(&request(f)).unwrap_or_else(|e| panic!("{}: {e:#}", f.name));
        let got = (r.endpoints.clone(), r.verdict.clone(), r.masquerade);
        let want = (
            f.endpoints
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            f.verdict.map(str::to_string),
            f.masquerade,
        );
        if got != want {
            failures.push(format!(
                "{}: got {got:?}, want {want:?}\n{}",
                f.name, r.delivery
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

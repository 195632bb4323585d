//! Seeded random small scenarios, as scenario-file text, for differential
//! tests (the simulator against the kernel) and for the simulator's own
//! property tests.
//!
//! A case is one to three nodes, one to five backend pods (some not ready)
//! listening on TCP 8080 and UDP 8053, a client pod, an external client, and
//! one to three Services of random type (ClusterIP, NodePort, LoadBalancer
//! with a passthrough or proxying cloud balancer), protocol, traffic
//! policies, ClientIP affinity, externalIPs and source ranges, each
//! selecting a random subset of the backends (sometimes none). The steps
//! probe every way in: from the client pod, from a node's host network, from
//! a backend to its own Service (hairpin), from outside to every node's
//! NodePort, to the balancer and to external IPs. Some cases then change a
//! backend (not ready, terminating or deleted), let kube-proxy sync, and
//! probe again — with a long-lived UDP flow across the change when a UDP
//! Service is involved (the stale-flow cleanup); some restart a
//! kube-proxy while connections are open (they must survive).
//!
//! The same seed always gives the same text. Must never: write a scenario
//! the planner refuses (a test plans and simulates sixty seeds; the kernel
//! suite and its soak run many more).

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use serde_json::{json, Value};

struct Gen(ChaCha8Rng);

impl Gen {
    fn pick(&mut self, n: usize) -> usize {
        self.0.next_u32() as usize % n
    }
    fn chance(&mut self, percent: u32) -> bool {
        self.0.next_u32() % 100 < percent
    }
}

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
const EXT_IP: &str = "203.0.113.7";

struct Svc {
    udp: bool,
    kind: &'static str,
    port: u16,
    node_port: u16,
    external_ip: Option<String>,
    lb: Option<String>,
    /// Backend indexes the selector matches.
    members: Vec<usize>,
}

impl Svc {
    fn cluster_ip(&self, k: usize) -> String {
        format!("10.96.0.{}:{}", 10 + k, self.port)
    }
    fn protocol(&self) -> &'static str {
        if self.udp {
            "UDP"
        } else {
            "TCP"
        }
    }
    fn connections(&self) -> u32 {
        if self.udp {
            12
        } else {
            24
        }
    }
}

/// A probe of `n` new connections or flows. UDP flows stay open until the
/// case ends, so no later flow draws their source ports and rides an old
/// conntrack entry (which would make it not new).
fn traffic(from: &str, to: &str, proto: &str, n: u32) -> Value {
    let mut t = json!({"from": from, "to": to, "protocol": proto, "connections": n});
    if proto == "UDP" {
        t["keepOpen"] = json!(true);
    }
    json!({ "traffic": t })
}

/// The scenario for `seed`, in the scenario file format.
pub fn scenario(seed: u64) -> String {
    let mut g = Gen(ChaCha8Rng::seed_from_u64(seed));
    let n_nodes = 1 + g.pick(3);
    let n_services = 1 + g.pick(3);
    let n_backends = 1 + g.pick(5);
    let nodes: Vec<Value> = (0..n_nodes)
        .map(|i| {
            json!({"name": NODES[i], "ip": format!("192.168.0.{}", 10 + i),
                   "podCIDR": format!("10.244.{}.0/24", i + 1)})
        })
        .collect();

    let mut membership: Vec<Vec<usize>> = vec![Vec::new(); n_backends];
    let mut pods = Vec::new();
    let mut backend_nodes = Vec::new();
    for (j, member_of) in membership.iter_mut().enumerate() {
        let mut labels = serde_json::Map::new();
        for k in 0..n_services {
            if g.chance(60) {
                labels.insert(format!("s{k}"), json!("y"));
                member_of.push(k);
            }
        }
        let node = NODES[g.pick(n_nodes)];
        backend_nodes.push(node);
        pods.push(json!({
            "name": format!("b{j}"), "node": node, "labels": labels, "ready": g.chance(85),
            "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 8053, "protocol": "UDP"}],
        }));
    }
    let cli_node = NODES[g.pick(n_nodes)];
    pods.push(json!({"name": "cli", "node": cli_node, "labels": {"role": "client"}}));

    let mut services = Vec::new();
    let mut objects = Vec::new();
    let mut lbs = Vec::new();
    for k in 0..n_services {
        let udp = g.chance(20);
        let roll = g.pick(100);
        let kind = match roll {
            0..45 => "ClusterIP",
            45..80 => "NodePort",
            _ => "LoadBalancer",
        };
        let (port, target) = if udp { (53, "dns") } else { (80, "http") };
        let nobody = g.chance(10);
        let mut spec = json!({
            "type": kind,
            "clusterIP": format!("10.96.0.{}", 10 + k),
            "selector": {format!("s{k}"): if nobody { "nobody" } else { "y" }},
            "ports": [{"name": "p", "port": port, "targetPort": target,
                       "protocol": if udp { "UDP" } else { "TCP" }}],
        });
        let external = kind != "ClusterIP";
        if external {
            spec["ports"][0]["nodePort"] = json!(30100 + k);
            if g.chance(40) {
                spec["externalTrafficPolicy"] = json!("Local");
            }
        }
        if g.chance(15) {
            spec["internalTrafficPolicy"] = json!("Local");
        }
        if g.chance(25) {
            spec["sessionAffinity"] = json!("ClientIP");
        }
        let external_ip = g.chance(10).then(|| format!("172.16.0.{}", 10 + k));
        if let Some(ip) = &external_ip {
            spec["externalIPs"] = json!([ip]);
        }
        let mut lb = None;
        if kind == "LoadBalancer" {
            if g.chance(20) {
                let range = if g.chance(50) {
                    "203.0.113.0/24"
                } else {
                    "198.51.100.0/24"
                };
                spec["loadBalancerSourceRanges"] = json!([range]);
            }
            let name = format!("lb{k}");
            lbs.push(json!({"name": name, "ip": format!("34.120.0.{}", 10 + k),
                            "service": format!("default/svc{k}"),
                            "preserveClientIP": g.chance(50)}));
            lb = Some(name);
        }
        objects.push(json!({"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": format!("svc{k}"), "namespace": "default"},
                            "spec": spec}));
        let members = if nobody {
            Vec::new()
        } else {
            (0..n_backends)
                .filter(|j| membership[*j].contains(&k))
                .collect()
        };
        services.push(Svc {
            udp,
            kind,
            port,
            node_port: 30100 + k as u16,
            external_ip,
            lb,
            members,
        });
    }

    let mut steps = Vec::new();
    for (k, s) in services.iter().enumerate() {
        probe_service(&mut g, &mut steps, k, s, n_nodes, n_backends);
    }
    if g.chance(15) {
        restart_with_open_connections(&mut g, &mut steps, &services, cli_node, n_nodes);
    }
    if g.chance(35) {
        change_a_backend(&mut g, &mut steps, &services, n_backends, &backend_nodes);
    }

    let doc = json!({
        "name": format!("generated-{seed}"),
        "description": "a seeded random cluster (kpsim::scenario_gen)",
        "seed": seed,
        "config": {"mode": "iptables", "clusterCIDR": "10.244.0.0/16"},
        "cluster": {"nodes": nodes, "pods": pods, "clients": [{"name": "ext", "ip": EXT_IP}],
                    "loadBalancers": lbs},
        "objects": objects,
        "steps": steps,
    });
    serde_yaml::to_string(&doc).expect("a JSON value serialises as YAML")
}

fn probe_service(
    g: &mut Gen,
    steps: &mut Vec<Value>,
    k: usize,
    s: &Svc,
    n_nodes: usize,
    n_backends: usize,
) {
    let (proto, n) = (s.protocol(), s.connections());
    steps.push(traffic("cli", &s.cluster_ip(k), proto, n));
    steps.push(traffic(
        NODES[g.pick(n_nodes)],
        &s.cluster_ip(k),
        proto,
        n / 2,
    ));
    if g.chance(30) {
        let b = format!("b{}", g.pick(n_backends));
        steps.push(traffic(&b, &s.cluster_ip(k), proto, n / 2));
    }
    if let Some(ip) = &s.external_ip {
        steps.push(traffic("cli", &format!("{ip}:{}", s.port), proto, n / 2));
    }
    if s.kind != "ClusterIP" {
        for node in NODES.iter().take(n_nodes) {
            steps.push(traffic(
                "ext",
                &format!("{node}:{}", s.node_port),
                proto,
                n / 2,
            ));
        }
    }
    if let Some(lb) = &s.lb {
        steps.push(traffic("ext", &format!("{lb}:{}", s.port), proto, n));
    }
}

/// Long-lived connections to a Service, a kube-proxy restart (on the
/// client's node or another), and the connections still answer.
fn restart_with_open_connections(
    g: &mut Gen,
    steps: &mut Vec<Value>,
    services: &[Svc],
    cli_node: &str,
    n_nodes: usize,
) {
    let Some(k) = (0..services.len()).find(|k| !services[*k].members.is_empty()) else {
        return;
    };
    let s = &services[k];
    steps.push(
        json!({"traffic": {"from": "cli", "to": s.cluster_ip(k), "protocol": s.protocol(),
                                  "connections": 8, "keepOpen": true, "label": "long"}}),
    );
    let node = if g.chance(50) {
        cli_node
    } else {
        NODES[g.pick(n_nodes)]
    };
    steps.push(json!({"restart": {"kubeProxy": node}}));
    steps.push(json!({"expect": {"openConnectionsAlive": true}}));
    steps.push(json!({"close": {"label": "long"}}));
}

fn change_a_backend(
    g: &mut Gen,
    steps: &mut Vec<Value>,
    services: &[Svc],
    n_backends: usize,
    backend_nodes: &[&str],
) {
    let j = g.pick(n_backends);
    let pod = format!("b{j}");
    let affected: Vec<usize> = (0..services.len())
        .filter(|k| services[*k].members.contains(&j))
        .collect();
    let udp_flow = |k: usize| {
        let s = &services[k];
        json!({"traffic": {"from": "cli", "to": s.cluster_ip(k), "protocol": "UDP",
                           "connections": 4, "sameSourcePort": true}})
    };
    for k in affected.iter().copied().filter(|k| services[*k].udp) {
        steps.push(udp_flow(k));
    }
    let change = match g.pick(100) {
        0..40 => json!({"name": pod, "ready": false}),
        40..75 => json!({"name": pod, "deleted": true}),
        _ => json!({"name": pod, "terminating": true}),
    };
    steps.push(json!({"pod": change}));
    steps.push(json!({"advance": "1s"}));
    for k in affected {
        let s = &services[k];
        steps.push(traffic(
            "cli",
            &s.cluster_ip(k),
            s.protocol(),
            s.connections(),
        ));
        if s.kind != "ClusterIP" {
            let to = format!("{}:{}", backend_nodes[j], s.node_port);
            steps.push(traffic("ext", &to, s.protocol(), s.connections() / 2));
        }
        if s.udp {
            steps.push(udp_flow(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_scenario_plans_and_runs_on_the_simulator() {
        for seed in 0..60 {
            let text = scenario(seed);
            let plan = crate::scenario::load(&format!("generated-{seed}"), &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            crate::scenario::run(&plan, None, None).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_text() {
        assert_eq!(scenario(7), scenario(7));
        assert_ne!(scenario(7), scenario(8));
    }
}

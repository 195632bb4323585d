//! Second stage: a parsed scenario resolved into a checked plan.
//!
//! Checks the setup is possible (unique names and addresses, pods on known
//! nodes inside their node's pod CIDR, EndpointSlices naming known nodes,
//! load balancers fronting known services), allocates what the file leaves
//! out the way a cluster would (pod IPs from the node's pod CIDR, cluster IPs
//! and node ports in order), and loads the configuration and manifests with
//! the proxier's strict loaders. Every error names the file, the place and
//! the fix; nothing here panics on input.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proxier::config::{self, Config, Mode};
use proxier::k8s::{self, EndpointSlice, NamespacedName, Protocol, Service, ServiceType};
use proxier::node::NodeInfo;

use super::spec::{self, PodPortSpec, Scenario};

mod allocate;
mod objects;
mod steps;
mod target;

use allocate::{allocate_pod_ip, allocate_service_fields, claim};
use objects::load_objects;
use steps::{check_step, step_place};
pub use target::resolve_target;

/// A scenario that could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {place}: {problem}")]
pub struct PlanError {
    pub file: String,
    /// Where in the file, e.g. `cluster.pods[2] (web-3)`.
    pub place: String,
    /// What is wrong and how to fix it.
    pub problem: String,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub ip: IpAddr,
    pub pod_cidr: IpNet,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone)]
pub struct Pod {
    pub name: NamespacedName,
    pub node: String,
    pub ip: IpAddr,
    pub labels: BTreeMap<String, String>,
    pub ports: Vec<PodPort>,
    pub ready: bool,
}

impl Plan {
    /// The Service a load balancer fronts (the planner checked it exists).
    pub fn service_of(&self, lb: &LoadBalancer) -> &Service {
        self.services
            .iter()
            .find(|s| s.name == lb.service)
            .expect("the planner checked the service exists")
    }

    /// What the proxier on node `name` knows of its node: name, address,
    /// labels and pod CIDR. Panics if the plan has no such node (callers
    /// name planned nodes only).
    pub fn node_info(&self, name: &str) -> NodeInfo {
        let n = self
            .nodes
            .iter()
            .find(|n| n.name == name)
            .expect("planned node");
        let mut info = NodeInfo::new(&n.name, vec![n.ip]);
        info.labels = n.labels.clone();
        info.pod_cidrs = vec![n.pod_cidr];
        info
    }
}

impl Pod {
    /// The pod's ports of one protocol, in file order.
    pub fn ports_of(&self, protocol: Protocol) -> Vec<u16> {
        self.ports
            .iter()
            .filter(|p| p.protocol == protocol)
            .map(|p| p.port)
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub ip: IpAddr,
}

#[derive(Debug, Clone)]
pub struct LoadBalancer {
    pub name: String,
    pub ip: IpAddr,
    pub service: NamespacedName,
    pub preserve_client_ip: bool,
}

/// Everything the runner needs, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub file: String,
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub modes: Vec<Mode>,
    pub config: Config,
    /// The `config` body as written (runs in other modes, and restarts
    /// with `config`, resolve from it: see `modes`).
    pub config_source: Option<serde_yaml::Value>,
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub clients: Vec<Client>,
    pub load_balancers: Vec<LoadBalancer>,
    pub services: Vec<Service>,
    /// Slices given verbatim in the file.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// The service ranges (ServiceCIDR objects; default 10.96.0.0/16, the
    /// range cluster IPs are allocated from).
    pub service_cidrs: Vec<IpNet>,
    pub steps: Vec<spec::Step>,
}

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, place: impl Into<String>, problem: impl Into<String>) -> PlanError {
        PlanError {
            file: self.file.to_string(),
            place: place.into(),
            problem: problem.into(),
        }
    }

    fn ip(&self, place: &str, text: &str) -> Result<IpAddr, PlanError> {
        text.parse().map_err(|_| {
            self.err(
                place,
                format!("{text:?} is not an IP address; write it like 192.168.0.10"),
            )
        })
    }
}

/// Parses scenario text (`file` names it in errors).
pub fn parse(file: &str, text: &str) -> Result<Scenario, PlanError> {
    serde_yaml::from_str(text).map_err(|e| {
        let place = e
            .location()
            .map(|l| format!("line {} column {}", l.line(), l.column()))
            .unwrap_or_else(|| "top level".into());
        // serde_yaml repeats the location at the end of its message.
        let message = e.to_string();
        let problem = match message.rfind(" at line ") {
            Some(i) if e.location().is_some() => message[..i].to_string(),
            _ => message,
        };
        PlanError {
            file: file.to_string(),
            place,
            problem,
        }
    })
}

/// Resolves a parsed scenario into a plan.
pub fn plan(file: &str, sc: &Scenario) -> Result<Plan, PlanError> {
    let ctx = Ctx { file };
    let config = match &sc.config {
        None => Config::default(),
        Some(value) => {
            let text = serde_yaml::to_string(value).expect("a YAML value serialises");
            config::load_str("config", &text).map_err(|e| ctx.err("config", e.message))?
        }
    };
    let modes = if sc.modes.is_empty() {
        vec![config.mode]
    } else {
        sc.modes
            .iter()
            .enumerate()
            .map(|(i, m)| Mode::parse(m).map_err(|e| ctx.err(format!("modes[{i}]"), e)))
            .collect::<Result<_, _>>()?
    };

    let mut addresses: BTreeMap<IpAddr, String> = BTreeMap::new();

    if sc.cluster.nodes.is_empty() {
        return Err(ctx.err("cluster.nodes", "a scenario needs at least one node"));
    }
    let mut nodes: Vec<Node> = Vec::new();
    for (i, n) in sc.cluster.nodes.iter().enumerate() {
        let place = format!("cluster.nodes[{i}] ({})", n.name);
        if nodes.iter().any(|o| o.name == n.name) {
            return Err(ctx.err(&place, format!("node name {} is used twice", n.name)));
        }
        let ip = ctx.ip(&place, &n.ip)?;
        let pod_cidr: IpNet = n.pod_cidr.parse().map_err(|_| {
            ctx.err(
                &place,
                format!(
                    "podCIDR {:?} is not a CIDR; write it like 10.244.1.0/24",
                    n.pod_cidr
                ),
            )
        })?;
        if let Some(o) = nodes.iter().find(|o| {
            o.pod_cidr.contains(&pod_cidr.network()) || pod_cidr.contains(&o.pod_cidr.network())
        }) {
            return Err(ctx.err(
                &place,
                format!(
                    "podCIDR {pod_cidr} overlaps node {}'s {}",
                    o.name, o.pod_cidr
                ),
            ));
        }
        claim(&ctx, &mut addresses, ip, format!("node {}", n.name), &place)?;
        let mut labels = n.labels.clone();
        labels
            .entry("kubernetes.io/hostname".into())
            .or_insert_with(|| n.name.clone());
        if let Some(zone) = &n.zone {
            labels.insert("topology.kubernetes.io/zone".into(), zone.clone());
        }
        nodes.push(Node {
            name: n.name.clone(),
            ip,
            pod_cidr,
            labels,
        });
    }

    let mut next_host: BTreeMap<String, u32> = BTreeMap::new();
    let mut pods: Vec<Pod> = Vec::new();
    for (i, p) in sc.cluster.pods.iter().enumerate() {
        let place = format!("cluster.pods[{i}] ({})", p.name);
        let name = NamespacedName::new(&p.namespace, &p.name);
        if pods.iter().any(|o| o.name == name) {
            return Err(ctx.err(&place, format!("pod {name} is defined twice")));
        }
        let node = nodes.iter().find(|n| n.name == p.node).ok_or_else(|| {
            ctx.err(
                &place,
                format!(
                    "node {:?} is not in cluster.nodes; add it or fix the name",
                    p.node
                ),
            )
        })?;
        let ip = match &p.ip {
            Some(text) => {
                let ip = ctx.ip(&place, text)?;
                if !node.pod_cidr.contains(&ip) {
                    return Err(ctx.err(&place, format!("{ip} is outside node {}'s podCIDR {}; pick an address inside it or omit ip", node.name, node.pod_cidr)));
                }
                ip
            }
            None => allocate_pod_ip(&ctx, &place, node, &mut next_host, &addresses)?,
        };
        claim(&ctx, &mut addresses, ip, format!("pod {name}"), &place)?;
        let ports = p
            .ports
            .iter()
            .map(|port| match port {
                PodPortSpec::Number(n) => Ok(PodPort {
                    name: None,
                    port: *n,
                    protocol: Protocol::Tcp,
                }),
                PodPortSpec::Full {
                    name,
                    port,
                    protocol,
                } => Ok(PodPort {
                    name: name.clone(),
                    port: *port,
                    protocol: match protocol.as_deref().unwrap_or("TCP") {
                        "TCP" => Protocol::Tcp,
                        "UDP" => Protocol::Udp,
                        "SCTP" => Protocol::Sctp,
                        other => {
                            return Err(ctx.err(
                                &place,
                                format!("unknown protocol {other:?}; use TCP, UDP or SCTP"),
                            ))
                        }
                    },
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        pods.push(Pod {
            name,
            node: p.node.clone(),
            ip,
            labels: p.labels.clone(),
            ports,
            ready: p.ready,
        });
    }

    let mut clients = Vec::new();
    for (i, c) in sc.cluster.clients.iter().enumerate() {
        let place = format!("cluster.clients[{i}] ({})", c.name);
        let ip = ctx.ip(&place, &c.ip)?;
        if let Some(n) = nodes.iter().find(|n| n.pod_cidr.contains(&ip)) {
            return Err(ctx.err(
                &place,
                format!(
                    "{ip} is inside node {}'s podCIDR; clients live outside the cluster",
                    n.name
                ),
            ));
        }
        claim(
            &ctx,
            &mut addresses,
            ip,
            format!("client {}", c.name),
            &place,
        )?;
        clients.push(Client {
            name: c.name.clone(),
            ip,
        });
    }

    let (mut services, endpoint_slices, mut service_cidrs) =
        load_objects(&ctx, &sc.objects, &nodes)?;
    if service_cidrs.is_empty() {
        service_cidrs.push("10.96.0.0/16".parse().expect("a valid CIDR"));
    }
    allocate_service_fields(&mut services);

    let mut load_balancers = Vec::new();
    for (i, lb) in sc.cluster.load_balancers.iter().enumerate() {
        let place = format!("cluster.loadBalancers[{i}] ({})", lb.name);
        let ip = ctx.ip(&place, &lb.ip)?;
        claim(
            &ctx,
            &mut addresses,
            ip,
            format!("load balancer {}", lb.name),
            &place,
        )?;
        let (ns, name) = lb.service.split_once('/').ok_or_else(|| {
            ctx.err(
                &place,
                format!("service {:?} must be namespace/name", lb.service),
            )
        })?;
        let service = NamespacedName::new(ns, name);
        let svc = services
            .iter_mut()
            .find(|s| s.name == service)
            .ok_or_else(|| {
                ctx.err(
                    &place,
                    format!("service {service} is not among the objects"),
                )
            })?;
        if svc.service_type != ServiceType::LoadBalancer {
            return Err(ctx.err(
                &place,
                format!("service {service} is not type LoadBalancer"),
            ));
        }
        // The cloud controller publishes the LB's address in the status; a
        // balancer that proxies (the nodes see it as the source) says so
        // with `ipMode: Proxy` (KEP-1860), so nodes do not take its VIP
        // for their own (IPVS mode would bind it and drop its packets as
        // martians).
        if svc.load_balancer_ingress.iter().all(|i| i.ip != Some(ip)) {
            svc.load_balancer_ingress.push(k8s::LoadBalancerIngress {
                ip: Some(ip),
                ip_mode: (!lb.preserve_client_ip).then_some(k8s::IpMode::Proxy),
            });
        }
        load_balancers.push(LoadBalancer {
            name: lb.name.clone(),
            ip,
            service,
            preserve_client_ip: lb.preserve_client_ip,
        });
    }

    let known_pods: BTreeSet<&str> = pods.iter().map(|p| p.name.name.as_str()).collect();
    let known_hosts: BTreeSet<&str> = nodes
        .iter()
        .map(|n| n.name.as_str())
        .chain(clients.iter().map(|c| c.name.as_str()))
        .chain(known_pods.iter().copied())
        .collect();
    for (i, step) in sc.steps.iter().enumerate() {
        check_step(&ctx, i, step, &known_hosts, &pods, &nodes)?;
        let earlier = &sc.steps[..i];
        super::modes::check_step(step, earlier, sc.config.as_ref(), config.mode, &nodes)
            .map_err(|e| ctx.err(step_place(i, step), e))?;
    }

    Ok(Plan {
        file: file.to_string(),
        name: sc.name.clone(),
        description: sc.description.clone(),
        seed: sc.seed,
        modes,
        config,
        config_source: sc.config.clone(),
        nodes,
        pods,
        clients,
        load_balancers,
        services,
        endpoint_slices,
        service_cidrs,
        steps: sc.steps.clone(),
    })
}

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
use proxier::k8s::{
    self, ClusterIp, EndpointSlice, NamespacedName, Protocol, Service, ServiceType,
};

use super::spec::{self, PodPortSpec, Scenario};

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

/// `steps[3] (name)`, as errors name a step.
fn step_place(i: usize, step: &spec::Step) -> String {
    match &step.name {
        Some(n) => format!("steps[{i}] ({n})"),
        None => format!("steps[{i}]"),
    }
}

/// Records that `owner` uses `ip`; two owners of one address is an error.
fn claim(
    ctx: &Ctx<'_>,
    addresses: &mut BTreeMap<IpAddr, String>,
    ip: IpAddr,
    owner: String,
    place: &str,
) -> Result<(), PlanError> {
    match addresses.insert(ip, owner.clone()) {
        Some(other) => Err(ctx.err(
            place,
            format!("{ip} is already used by {other}; give {owner} its own address"),
        )),
        None => Ok(()),
    }
}

fn allocate_pod_ip(
    ctx: &Ctx<'_>,
    place: &str,
    node: &Node,
    next_host: &mut BTreeMap<String, u32>,
    taken: &BTreeMap<IpAddr, String>,
) -> Result<IpAddr, PlanError> {
    // .0 is the network and .1 the node's bridge; pods start at .2.
    let next = next_host.entry(node.name.clone()).or_insert(2);
    loop {
        let ip = match node.pod_cidr {
            IpNet::V4(n) => {
                let base = u32::from(n.network());
                if *next as u64 >= n.hosts().count() as u64 {
                    return Err(ctx.err(
                        place,
                        format!("node {}'s podCIDR {} is full", node.name, node.pod_cidr),
                    ));
                }
                IpAddr::V4((base + *next).into())
            }
            IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) + u128::from(*next)).into()),
        };
        *next += 1;
        if !taken.contains_key(&ip) {
            return Ok(ip);
        }
    }
}

/// The objects of a scenario file: Services, hand-written slices, and the
/// ServiceCIDR ranges.
type Objects = (Vec<Service>, Vec<EndpointSlice>, Vec<IpNet>);

fn load_objects(
    ctx: &Ctx<'_>,
    objects: &[serde_yaml::Value],
    nodes: &[Node],
) -> Result<Objects, PlanError> {
    let mut services: Vec<Service> = Vec::new();
    let mut slices: Vec<EndpointSlice> = Vec::new();
    let mut cidrs: Vec<IpNet> = Vec::new();
    for (i, value) in objects.iter().enumerate() {
        let place = format!("objects[{i}]");
        let text = serde_yaml::to_string(value).expect("a YAML value serialises");
        let m = k8s::load_str(&place, &text).map_err(|e| ctx.err(&place, e.to_string()))?;
        if let Some((_, what)) = m.skipped.first() {
            return Err(ctx.err(&place, format!("{what} is not a Service, EndpointSlice or ServiceCIDR; scenarios hold only those (pods and nodes go under cluster:)")));
        }
        if !m.nodes.is_empty() {
            return Err(ctx.err(&place, "Node objects go under cluster.nodes, not objects"));
        }
        cidrs.extend(m.service_cidrs.iter().flat_map(|c| c.cidrs.iter().copied()));
        for s in m.services {
            if services.iter().any(|o| o.name == s.name) {
                return Err(ctx.err(&place, format!("Service {} is defined twice", s.name)));
            }
            services.push(s);
        }
        for s in m.endpoint_slices {
            for (j, ep) in s.endpoints.iter().enumerate() {
                if let Some(node) = &ep.node_name {
                    if !nodes.iter().any(|n| &n.name == node) {
                        return Err(ctx.err(&place, format!(
                            "EndpointSlice {} endpoints[{j}] names node {node:?}, which the scenario does not have; add it to cluster.nodes or fix nodeName",
                            s.name
                        )));
                    }
                }
            }
            slices.push(s);
        }
    }
    Ok((services, slices, cidrs))
}

/// Gives services what an API server would allocate: a cluster IP from
/// 10.96.0.0/16 (from .10 up), node ports from 30000 up, and health-check
/// node ports from 32000 up, in file order, skipping ones already taken.
fn allocate_service_fields(services: &mut [Service]) {
    let mut used_ips: BTreeSet<IpAddr> = BTreeSet::new();
    let mut used_ports: BTreeSet<u16> = BTreeSet::new();
    for s in services.iter() {
        if let ClusterIp::Ips(ips) = &s.cluster_ip {
            used_ips.extend(ips.iter().copied());
        }
        used_ports.extend(s.ports.iter().filter_map(|p| p.node_port));
        used_ports.extend(s.health_check_node_port);
    }
    let mut next_ip: u32 = u32::from(std::net::Ipv4Addr::new(10, 96, 0, 10));
    let mut next_port = 30000u16;
    let mut next_hc = 32000u16;
    let mut take_port = |next: &mut u16| loop {
        let p = *next;
        *next += 1;
        if used_ports.insert(p) {
            return p;
        }
    };
    for s in services.iter_mut() {
        if s.service_type == ServiceType::ExternalName {
            continue;
        }
        if s.cluster_ip == ClusterIp::Unset {
            let ip = loop {
                let ip = IpAddr::V4(next_ip.into());
                next_ip += 1;
                if used_ips.insert(ip) {
                    break ip;
                }
            };
            s.cluster_ip = ClusterIp::Ips(vec![ip]);
        }
        if matches!(
            s.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        ) {
            s.type_explicit = true;
            for p in s.ports.iter_mut().filter(|p| p.node_port.is_none()) {
                p.node_port = Some(take_port(&mut next_port));
            }
            if s.service_type == ServiceType::LoadBalancer
                && s.external_traffic_policy == k8s::TrafficPolicy::Local
                && s.health_check_node_port.is_none()
            {
                s.health_check_node_port = Some(take_port(&mut next_hc));
            }
        }
    }
}

fn check_step(
    ctx: &Ctx<'_>,
    i: usize,
    step: &spec::Step,
    hosts: &BTreeSet<&str>,
    pods: &[Pod],
    nodes: &[Node],
) -> Result<(), PlanError> {
    let place = step_place(i, step);
    let actions = [
        step.traffic.is_some(),
        step.apply.is_some(),
        step.delete.is_some(),
        step.pod.is_some(),
        step.node.is_some(),
        step.restart.is_some(),
        step.advance.is_some(),
        step.close.is_some(),
    ]
    .iter()
    .filter(|a| **a)
    .count();
    if actions > 1 {
        return Err(ctx.err(&place, "a step takes one action (traffic, apply, delete, pod, node, restart, advance or close); split it into several steps"));
    }
    if actions == 0 && step.expect.is_none() {
        return Err(ctx.err(&place, "an empty step; give it an action or an expect"));
    }
    if let Some(t) = &step.traffic {
        if !hosts.contains(t.from.as_str()) {
            return Err(ctx.err(
                &place,
                format!(
                    "traffic.from {:?} is not a node, pod or client of the scenario",
                    t.from
                ),
            ));
        }
    }
    if let Some(p) = &step.pod {
        if !pods
            .iter()
            .any(|o| o.name.name == p.name && o.name.namespace == p.namespace)
        {
            return Err(ctx.err(
                &place,
                format!("pod {}/{} is not in cluster.pods", p.namespace, p.name),
            ));
        }
    }
    for name in [
        step.node.as_ref().map(|n| &n.name),
        step.restart.as_ref().map(|r| &r.kube_proxy),
    ]
    .into_iter()
    .flatten()
    {
        if !nodes.iter().any(|n| &n.name == name) {
            return Err(ctx.err(&place, format!("node {name:?} is not in cluster.nodes")));
        }
    }
    if let Some(a) = &step.advance {
        config::duration::parse(a).map_err(|e| ctx.err(&place, format!("advance: {e}")))?;
    }
    Ok(())
}

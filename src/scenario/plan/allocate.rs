//! What the planner hands out the way a cluster would: pod IPs from their
//! node's pod CIDR, and a Service's cluster IP, node ports and health-check
//! node port, each skipping what the file already uses. It must never give
//! one address to two owners (`claim` refuses that with a fix in the
//! message) and never take an address or port the file wrote itself.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proxier::k8s::{self, ClusterIp, Service, ServiceType};

use super::{Ctx, Node, PlanError};

/// Records that `owner` uses `ip`; two owners of one address is an error.
pub(super) fn claim(
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

pub(super) fn allocate_pod_ip(
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

/// Gives services what an API server would allocate: a cluster IP from
/// 10.96.0.0/16 (from .10 up), node ports from 30000 up, and health-check
/// node ports from 32000 up, in file order, skipping ones already taken.
pub(super) fn allocate_service_fields(services: &mut [Service]) {
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

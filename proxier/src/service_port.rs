//! Service ports as kube-proxy sees them (upstream `pkg/proxy/serviceport.go`).
//!
//! A Service becomes one [`ServicePort`] per `spec.ports[]` entry, for the one
//! IP family this proxier serves. Everything a mode needs is resolved here
//! once: the family's cluster IP, the external IPs, load-balancer VIPs and
//! source ranges of that family, and the traffic-policy predicates upstream
//! derives (`UsesClusterEndpoints`, `ExternallyAccessible`, …). Services
//! kube-proxy ignores (headless, ExternalName, no IP of this family) yield no
//! ports. Nothing here renders rules.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::k8s::{
    ClusterIp, IpFamily, IpMode, NamespacedName, Protocol, Service, ServiceType, SessionAffinity,
    TrafficPolicy,
};

/// The key of a service port: `namespace/name:port` plus the protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub service: NamespacedName,
    /// The port's name, `""` for an unnamed port.
    pub port: String,
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    /// Upstream's `ServicePortName.String()`: `ns/name:port`, or `ns/name`
    /// when the port is unnamed. The protocol is not part of it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

/// One port of one service, resolved for one IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// 0 when the service has none.
    pub node_port: u16,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_vips: Vec<IpAddr>,
    pub load_balancer_source_ranges: Vec<IpNet>,
    pub session_affinity: SessionAffinity,
    /// 0 unless the service needs a health check (LoadBalancer, eTP Local).
    pub health_check_node_port: u16,
    pub external_policy_local: bool,
    pub internal_policy_local: bool,
    pub traffic_distribution: Option<String>,
}

impl ServicePort {
    /// The ClientIP affinity timeout, if affinity is on.
    pub fn sticky_max_age_seconds(&self) -> Option<u32> {
        match self.session_affinity {
            SessionAffinity::ClientIp { timeout_seconds } => Some(timeout_seconds),
            SessionAffinity::None => None,
        }
    }

    /// Reachable from outside the cluster: a NodePort, a LoadBalancer VIP or
    /// an external IP.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.load_balancer_vips.is_empty() || !self.external_ips.is_empty()
    }

    /// Some traffic to this port uses the cluster-wide endpoint set. With
    /// external policy Local this still holds: traffic from this node's own
    /// pods to an external address short-circuits to the cluster chain.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Some traffic to this port uses only this node's endpoints.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }
}

/// The service ports upstream builds for `service` in `family`, in spec order.
/// Empty for services kube-proxy skips.
pub fn service_ports(service: &Service, family: IpFamily) -> Vec<ServicePort> {
    if service.service_type == ServiceType::ExternalName {
        return Vec::new();
    }
    let cluster_ips = match &service.cluster_ip {
        ClusterIp::Ips(ips) => ips,
        ClusterIp::Unset | ClusterIp::Headless => return Vec::new(),
    };
    let Some(cluster_ip) = cluster_ips
        .iter()
        .find(|ip| IpFamily::of(ip) == family)
        .copied()
    else {
        return Vec::new();
    };
    let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter()
            .filter(|ip| IpFamily::of(ip) == family)
            .copied()
            .collect()
    };

    let external_ips = of_family(&service.external_ips);
    let load_balancer_vips: Vec<IpAddr> = service
        .load_balancer_ingress
        .iter()
        // ipMode Proxy: the load balancer proxies to the nodes itself, so
        // traffic never arrives addressed to the VIP.
        .filter(|ing| ing.ip_mode != Some(IpMode::Proxy))
        .filter_map(|ing| ing.ip)
        .filter(|ip| IpFamily::of(ip) == family)
        .collect();
    let load_balancer_source_ranges: Vec<IpNet> = service
        .load_balancer_source_ranges
        .iter()
        .filter(|n| IpFamily::of(&n.addr()) == family)
        .copied()
        .collect();

    // Upstream's `ExternallyAccessible(svc)` compares the literal type.
    let service_externally_accessible = match service.service_type {
        ServiceType::NodePort | ServiceType::LoadBalancer => true,
        ServiceType::ClusterIp => service.type_explicit && !service.external_ips.is_empty(),
        ServiceType::ExternalName => false,
    };
    let external_policy_local =
        service.external_traffic_policy == TrafficPolicy::Local && service_externally_accessible;
    let health_check_node_port = if service.service_type == ServiceType::LoadBalancer
        && service.external_traffic_policy == TrafficPolicy::Local
    {
        service.health_check_node_port.unwrap_or(0)
    } else {
        0
    };

    service
        .ports
        .iter()
        .map(|p| ServicePort {
            name: ServicePortName {
                service: service.name.clone(),
                port: p.name.clone(),
                protocol: p.protocol,
            },
            cluster_ip,
            port: p.port,
            protocol: p.protocol,
            node_port: p.node_port.unwrap_or(0),
            external_ips: external_ips.clone(),
            load_balancer_vips: load_balancer_vips.clone(),
            load_balancer_source_ranges: load_balancer_source_ranges.clone(),
            session_affinity: service.session_affinity,
            health_check_node_port,
            external_policy_local,
            internal_policy_local: service.internal_traffic_policy == TrafficPolicy::Local,
            traffic_distribution: service.traffic_distribution.clone(),
        })
        .collect()
}

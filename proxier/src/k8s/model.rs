//! The typed, validated Kubernetes objects the proxier works from.
//!
//! Produced only by [`super::validate`]; every address is parsed, every port
//! is in range, every enum is known and every API default is applied (service
//! type `ClusterIP`, protocol `TCP`, affinity timeout 10800 s, traffic
//! policies `Cluster`). Where the API distinguishes "absent" from a value and
//! kube-proxy cares (endpoint conditions, endpoint port name/number), the
//! model keeps an `Option`. Nothing here knows about iptables or any mode.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

/// `namespace/name`, the identity of a namespaced object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        NamespacedName {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for NamespacedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// An IP family; a proxier instance serves exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// The API spelling, `IPv4` / `IPv6`.
    pub fn api_name(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }
}

/// A transport protocol of a service or endpoint port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The API spelling: `TCP`, `UDP`, `SCTP`.
    pub fn api_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The spelling iptables and nftables use: `tcp`, `udp`, `sctp`.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
    ExternalName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficPolicy {
    Cluster,
    Local,
}

/// `spec.clusterIP(s)` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterIp {
    /// Neither field set: the API server has not allocated one (kube-proxy
    /// skips the service).
    Unset,
    /// `None`: a headless service, no rules.
    Headless,
    /// One address per family, primary first.
    Ips(Vec<IpAddr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAffinity {
    None,
    ClientIp { timeout_seconds: u32 },
}

/// `status.loadBalancer.ingress[].ipMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpMode {
    Vip,
    Proxy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancerIngress {
    pub ip: Option<IpAddr>,
    pub ip_mode: Option<IpMode>,
}

/// `targetPort`: a number or the name of a container port. kube-proxy never
/// reads it (slices carry resolved ports); the scenario runner's endpoint
/// controller does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortSpec {
    /// `""` when the port is unnamed (only allowed for single-port services).
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    /// `None` when unset or 0.
    pub node_port: Option<u16>,
    /// `None` when unset (the API defaults it to `port`).
    pub target_port: Option<TargetPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: NamespacedName,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub service_type: ServiceType,
    /// Whether `spec.type` was written out. An API server always defaults
    /// it, but upstream's helpers compare the literal field, so a Service
    /// without a type (as upstream's own tests build them) is not "ClusterIP"
    /// for the external-policy rules.
    pub type_explicit: bool,
    pub cluster_ip: ClusterIp,
    pub ports: Vec<ServicePortSpec>,
    pub selector: Option<BTreeMap<String, String>>,
    pub external_ips: Vec<IpAddr>,
    pub session_affinity: SessionAffinity,
    pub external_traffic_policy: TrafficPolicy,
    pub internal_traffic_policy: TrafficPolicy,
    pub health_check_node_port: Option<u16>,
    /// Parsed and masked to the network address, in spec order.
    pub load_balancer_source_ranges: Vec<IpNet>,
    pub load_balancer_ingress: Vec<LoadBalancerIngress>,
    pub traffic_distribution: Option<String>,
}

/// `addressType` of an EndpointSlice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressType {
    IPv4,
    IPv6,
    Fqdn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Parsed addresses; empty for FQDN slices (kube-proxy ignores those).
    pub addresses: Vec<IpAddr>,
    pub ready: Option<bool>,
    pub serving: Option<bool>,
    pub terminating: Option<bool>,
    pub node_name: Option<String>,
    pub zone: Option<String>,
    /// `hints.forZones[].name`, `None` when there is no hints object.
    pub zone_hints: Option<Vec<String>>,
    /// `hints.forNodes[].name`, `None` when absent.
    pub node_hints: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPort {
    pub name: Option<String>,
    pub protocol: Option<Protocol>,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    pub name: NamespacedName,
    /// Metadata kept only so that any real update counts as a change, as
    /// upstream compares whole slice objects.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub resource_version: Option<String>,
    /// The `kubernetes.io/service-name` label; slices without it are not
    /// managed for a service and kube-proxy ignores them.
    pub service_name: Option<String>,
    pub address_type: AddressType,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<EndpointPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// `InternalIP`, `ExternalIP`, `Hostname`, …
    pub kind: String,
    /// The address text as the API holds it.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub addresses: Vec<NodeAddress>,
    pub pod_cidrs: Vec<IpNet>,
}

impl Node {
    /// The node's IPs the way kube-proxy picks them: `InternalIP` addresses
    /// first, then `ExternalIP`, each parsed; others are skipped.
    pub fn ips(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for kind in ["InternalIP", "ExternalIP"] {
            for a in self.addresses.iter().filter(|a| a.kind == kind) {
                if let Ok(ip) = a.address.parse::<IpAddr>() {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
        out
    }
}

/// A `networking.k8s.io/v1` ServiceCIDR: the ranges services are allocated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCidr {
    pub name: String,
    pub cidrs: Vec<IpNet>,
}

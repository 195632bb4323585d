//! Endpoints as kube-proxy sees them (upstream `pkg/proxy/endpoint.go` and
//! `endpointslicecache.go`).
//!
//! All EndpointSlices of one service are merged into one endpoint list per
//! service port (keyed by port name *and* protocol, so a slice port only
//! serves the service port of the same protocol). Upstream's rules hold:
//! a missing `ready` or `serving` condition means true, a missing
//! `terminating` means not terminating; only the first
//! address of an endpoint counts; duplicates across slices collapse to one,
//! a local copy winning; the result is sorted by its `ip:port` text, as
//! upstream sorts it, so rule output never depends on slice order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::k8s::{AddressType, EndpointSlice, IpFamily, NamespacedName, Protocol};
use crate::service_port::ServicePortName;

/// One endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// On this node (`nodeName` equals the proxier's node).
    pub is_local: bool,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// `hints.forZones`, `None` when the endpoint carries no zone hints.
    pub zone_hints: Option<BTreeSet<String>>,
    /// `hints.forNodes`, `None` when the endpoint carries no node hints.
    pub node_hints: Option<BTreeSet<String>>,
}

impl Endpoint {
    /// Serving and terminating: usable only as a fallback.
    pub fn is_serving_terminating(&self) -> bool {
        self.serving && self.terminating
    }
}

impl fmt::Display for Endpoint {
    /// `ip:port`, with brackets for IPv6 (`[fd00::1]:80`), like Go's
    /// `net.JoinHostPort`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Endpoints of every port of one service, keyed by service port name.
pub type ServiceEndpoints = BTreeMap<ServicePortName, Vec<Endpoint>>;

/// Merges the slices of one service into endpoints per service port, for
/// `family`, from the point of view of node `node_name`. Slices are given in
/// any order; the result does not depend on it.
pub fn merge_slices<'a>(
    service: &NamespacedName,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    family: IpFamily,
    node_name: &str,
) -> ServiceEndpoints {
    let mut by_port: BTreeMap<ServicePortName, BTreeMap<String, Endpoint>> = BTreeMap::new();
    for slice in slices {
        let slice_family = match slice.address_type {
            AddressType::IPv4 => IpFamily::V4,
            AddressType::IPv6 => IpFamily::V6,
            AddressType::Fqdn => continue,
        };
        if slice_family != family {
            continue;
        }
        for port in &slice.ports {
            // Upstream skips ports without a name or a number.
            let (Some(name), Some(number)) = (port.name.as_ref(), port.port) else {
                continue;
            };
            let key = ServicePortName {
                service: service.clone(),
                port: name.clone(),
                protocol: port.protocol.unwrap_or(Protocol::Tcp),
            };
            let set = by_port.entry(key).or_default();
            for ep in &slice.endpoints {
                let Some(&ip) = ep.addresses.first() else {
                    continue;
                };
                if IpFamily::of(&ip) != family {
                    continue;
                }
                let ready = ep.ready.unwrap_or(true);
                let endpoint = Endpoint {
                    ip,
                    port: number,
                    is_local: ep.node_name.as_deref() == Some(node_name),
                    ready,
                    serving: ep.serving.unwrap_or(true),
                    terminating: ep.terminating.unwrap_or(false),
                    zone_hints: ep.zone_hints.as_ref().map(|z| z.iter().cloned().collect()),
                    node_hints: ep.node_hints.as_ref().map(|n| n.iter().cloned().collect()),
                };
                let text = endpoint.to_string();
                let replace = match set.get(&text) {
                    None => true,
                    Some(_) => endpoint.is_local,
                };
                if replace {
                    set.insert(text, endpoint);
                }
            }
        }
    }
    // BTreeMap<String, _> iterates in ip:port text order: upstream's sort.
    by_port
        .into_iter()
        .map(|(k, set)| (k, set.into_values().collect()))
        .collect()
}

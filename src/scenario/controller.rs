//! The EndpointSlice controller, for Services whose endpoints a scenario
//! derives from pods.
//!
//! Like kube-controller-manager's controller: a pod backs a service when its
//! labels match the selector, in the service's namespace; its endpoint is
//! `ready` when the pod is ready and not terminating, `serving` when the pod
//! is ready (terminating or not), `terminating` while it is being deleted;
//! deleted pods leave. Target ports resolve by number, or by name against
//! the pod's ports (a pod without that port is left out). One slice per
//! service, named `<service>-kpsim`, endpoints in pod order.

use std::collections::BTreeMap;

use proxier::k8s::{
    AddressType, Endpoint, EndpointPort, EndpointSlice, IpFamily, NamespacedName, Service,
    TargetPort,
};

use super::plan::{Node, Pod};

/// A pod's lifecycle state during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodState {
    pub ready: bool,
    pub terminating: bool,
    pub deleted: bool,
}

/// The label the controller puts on the slices it manages.
pub const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";

/// Derives the service's slice from the pods, or `None` when the service has
/// no selector (its slices are written by hand).
pub fn derive_slice(
    service: &Service,
    pods: &[(Pod, PodState)],
    nodes: &[Node],
) -> Option<EndpointSlice> {
    let selector = service.selector.as_ref()?;
    let family = match &service.cluster_ip {
        proxier::k8s::ClusterIp::Ips(ips) if !ips.is_empty() => IpFamily::of(&ips[0]),
        _ => IpFamily::V4,
    };
    let mut ports: Vec<EndpointPort> = Vec::new();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    for (pod, state) in pods {
        if state.deleted
            || pod.name.namespace != service.name.namespace
            || !selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v))
            || IpFamily::of(&pod.ip) != family
        {
            continue;
        }
        let mut resolved = Vec::new();
        for sp in &service.ports {
            let number = match &sp.target_port {
                None => Some(sp.port),
                Some(TargetPort::Number(n)) => Some(*n),
                Some(TargetPort::Name(name)) => pod
                    .ports
                    .iter()
                    .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol == sp.protocol)
                    .map(|p| p.port),
            };
            resolved.push((sp, number));
        }
        if resolved.iter().any(|(_, n)| n.is_none()) {
            continue;
        }
        if ports.is_empty() {
            ports = resolved
                .iter()
                .map(|(sp, n)| EndpointPort {
                    name: Some(sp.name.clone()),
                    protocol: Some(sp.protocol),
                    port: *n,
                })
                .collect();
        }
        let zone = nodes
            .iter()
            .find(|n| n.name == pod.node)
            .and_then(|n| n.labels.get("topology.kubernetes.io/zone").cloned());
        endpoints.push(Endpoint {
            addresses: vec![pod.ip],
            ready: Some(state.ready && !state.terminating),
            serving: Some(state.ready),
            terminating: Some(state.terminating),
            node_name: Some(pod.node.clone()),
            zone,
            zone_hints: None,
            node_hints: None,
        });
    }
    let mut labels = BTreeMap::new();
    labels.insert(
        "kubernetes.io/service-name".to_string(),
        service.name.name.clone(),
    );
    labels.insert(
        MANAGED_BY.to_string(),
        "endpointslice-controller.k8s.io".to_string(),
    );
    Some(EndpointSlice {
        name: NamespacedName::new(
            &service.name.namespace,
            format!("{}-kpsim", service.name.name),
        ),
        labels,
        annotations: BTreeMap::new(),
        resource_version: None,
        service_name: Some(service.name.name.clone()),
        address_type: match family {
            IpFamily::V4 => AddressType::IPv4,
            IpFamily::V6 => AddressType::IPv6,
        },
        endpoints,
        ports,
    })
}

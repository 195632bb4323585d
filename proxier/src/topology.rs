//! Which endpoints a service port's traffic may use on this node (upstream
//! `pkg/proxy/topology.go`, `CategorizeEndpoints`).
//!
//! Cluster-policy traffic uses ready endpoints (narrowed to this zone's when
//! every ready endpoint carries zone hints and one names this node's zone),
//! falling back to serving-and-terminating endpoints when none is ready.
//! Local-policy traffic uses this node's ready endpoints, falling back to its
//! serving-and-terminating ones. The result lists keep the input order
//! (sorted by `ip:port`), so rule output is deterministic.

use std::collections::BTreeMap;

use crate::endpoints::Endpoint;
use crate::service_port::ServicePort;

/// The node label holding its zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The endpoint sets one service port uses on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized<'a> {
    /// Endpoints for `Cluster` traffic policy.
    pub cluster: Vec<&'a Endpoint>,
    /// Endpoints for `Local` traffic policy.
    pub local: Vec<&'a Endpoint>,
    /// Every endpoint some traffic may be sent to: the union of the two,
    /// sorted by `ip:port`.
    pub all_reachable: Vec<&'a Endpoint>,
    /// Whether the service has any usable endpoint anywhere in the cluster.
    pub has_any: bool,
}

/// Splits `endpoints` (sorted by `ip:port`) by traffic policy.
pub fn categorize_endpoints<'a>(
    endpoints: &'a [Endpoint],
    svc: &ServicePort,
    node_labels: &BTreeMap<String, String>,
) -> Categorized<'a> {
    let mut out = Categorized::default();
    let mut use_topology = false;

    if svc.uses_cluster_endpoints() {
        use_topology = can_use_topology(endpoints, node_labels);
        let zone = node_labels.get(ZONE_LABEL);
        out.cluster = endpoints
            .iter()
            .filter(|ep| ep.ready)
            .filter(|ep| !use_topology || available_for_topology(ep, zone))
            .collect();
        // No ready endpoint anywhere (topology was already ignored if none
        // was ready in this zone): fall back to terminating ones.
        if out.cluster.is_empty() {
            out.cluster = endpoints
                .iter()
                .filter(|ep| ep.is_serving_terminating())
                .collect();
        }
        out.has_any = !out.cluster.is_empty();
    }

    if !svc.uses_local_endpoints() {
        out.all_reachable = out.cluster.clone();
        return out;
    }

    let mut local_ready = false;
    let mut local_serving_terminating = false;
    for ep in endpoints {
        if ep.ready {
            out.has_any = true;
            local_ready |= ep.is_local;
        } else if ep.is_serving_terminating() {
            out.has_any = true;
            local_serving_terminating |= ep.is_local;
        }
    }
    let mut use_serving_terminating = false;
    if local_ready {
        out.local = endpoints
            .iter()
            .filter(|ep| ep.is_local && ep.ready)
            .collect();
    } else if local_serving_terminating {
        use_serving_terminating = true;
        out.local = endpoints
            .iter()
            .filter(|ep| ep.is_local && ep.is_serving_terminating())
            .collect();
    }

    if !svc.uses_cluster_endpoints() {
        out.all_reachable = out.local.clone();
        return out;
    }
    if !use_topology && !use_serving_terminating {
        // `local` holds only ready endpoints and `cluster` every ready one.
        out.all_reachable = out.cluster.clone();
        return out;
    }
    // Union of both, in ip:port order (upstream merges through a map and
    // its order is random; sorted is the deterministic choice).
    let mut union: BTreeMap<String, &Endpoint> = BTreeMap::new();
    for ep in out.cluster.iter().chain(out.local.iter()) {
        union.insert(ep.to_string(), ep);
    }
    out.all_reachable = union.into_values().collect();
    out
}

/// Topology narrowing applies only when every ready endpoint has zone hints,
/// the node has a zone, and at least one ready endpoint is hinted for it.
fn can_use_topology(endpoints: &[Endpoint], node_labels: &BTreeMap<String, String>) -> bool {
    let zone = node_labels.get(ZONE_LABEL).filter(|z| !z.is_empty());
    let mut has_endpoint_for_zone = false;
    for ep in endpoints.iter().filter(|ep| ep.ready) {
        let Some(hints) = ep.zone_hints.as_ref().filter(|h| !h.is_empty()) else {
            return false;
        };
        let Some(zone) = zone else {
            return false;
        };
        has_endpoint_for_zone |= hints.contains(zone);
    }
    has_endpoint_for_zone
}

fn available_for_topology(ep: &Endpoint, zone: Option<&String>) -> bool {
    match (ep.zone_hints.as_ref(), zone) {
        (Some(hints), Some(zone)) => hints.contains(zone),
        _ => false,
    }
}

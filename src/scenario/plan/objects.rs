//! A scenario's `objects:` loaded with the proxier's strict loader:
//! Services, hand-written EndpointSlices and ServiceCIDR ranges. It must
//! never accept another kind (pods and nodes belong under `cluster:`), a
//! Service defined twice, or a slice naming a node the scenario lacks; each
//! refusal is a `PlanError` naming `objects[i]`.

use ipnet::IpNet;
use proxier::k8s::{self, EndpointSlice, Service};

use super::{Ctx, Node, PlanError};

/// The objects of a scenario file: Services, hand-written slices, and the
/// ServiceCIDR ranges.
pub(super) type Objects = (Vec<Service>, Vec<EndpointSlice>, Vec<IpNet>);

pub(super) fn load_objects(
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

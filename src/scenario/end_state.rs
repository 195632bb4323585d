//! A scenario's end state: what `kpsim rules --scenario` renders from and
//! what `kpsim trace --scenario` sends its packet into.
//!
//! The scenario is played exactly as `kpsim run` plays it (same seed, same
//! steps, same syncs); what is kept afterwards is the API state (Services,
//! the EndpointSlices as last published, the cluster's Nodes as Node
//! objects, the ServiceCIDRs), each node's kube-proxy configuration (a
//! restart may have changed it), and the simulated network itself, whose
//! kernels hold whatever the last syncs wrote.
//!
//! **Must never** re-derive state the run did not reach: everything here is
//! read off the played world, so a change still waiting for its sync is
//! in the objects but not yet in the kernels, as on a real node.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use proxier::config::{Config, Mode};
use proxier::k8s::{Manifests, Node, NodeAddress};
use proxier::node::NodeInfo;
use sim::network::Network;
use sim::time::Instant;

use super::plan::Plan;
use super::report::Report;
use super::runner::play;
use crate::oneshot::{with_service_cidrs, RenderRequest};

/// The world after a scenario's last step, in one mode.
pub struct EndState {
    /// The mode the run started in.
    pub mode: Mode,
    /// The virtual time the last step ended at.
    pub now: Instant,
    /// The network with every node's kernel as the run left it.
    pub net: Network,
    /// Services, published EndpointSlices, Nodes and ServiceCIDRs.
    pub manifests: Manifests,
    /// The run's report (its expectations may have failed; the end state
    /// is still the end state).
    pub report: Report,
    nodes: BTreeMap<String, (NodeInfo, Config)>,
}

/// Plays `plan` in `mode` (default: the first mode it names) and keeps the
/// end state.
pub fn end_state(plan: &Plan, seed: Option<u64>, mode: Option<Mode>) -> Result<EndState> {
    let mode = match mode {
        Some(m) => m,
        None => *plan
            .modes
            .first()
            .ok_or_else(|| anyhow!("{}: the scenario names no mode", plan.file))?,
    };
    let (report, world) = play(plan, seed.unwrap_or(plan.seed), mode)?;
    let nodes: BTreeMap<String, (NodeInfo, Config)> = plan
        .nodes
        .iter()
        .map(|n| {
            let config = world.configs[&n.name].clone();
            (n.name.clone(), (plan.node_info(&n.name), config))
        })
        .collect();
    let manifests = Manifests {
        services: world.api.services(),
        endpoint_slices: world.api.slices(),
        nodes: plan
            .nodes
            .iter()
            .map(|n| Node {
                name: n.name.clone(),
                labels: n.labels.clone(),
                addresses: vec![NodeAddress {
                    kind: "InternalIP".into(),
                    address: n.ip.to_string(),
                }],
                pod_cidrs: vec![n.pod_cidr],
            })
            .collect(),
        ..Manifests::default()
    };
    let manifests = with_service_cidrs(
        manifests,
        &format!("{} serviceCIDRs", plan.file),
        plan.service_cidrs.clone(),
    );
    Ok(EndState {
        mode,
        now: world.now,
        net: world.net,
        manifests,
        report,
        nodes,
    })
}

impl EndState {
    /// The node `name`, or the only node when `name` is `None`; an error
    /// lists the scenario's nodes otherwise.
    pub fn node(&self, name: Option<&str>) -> Result<(&NodeInfo, &Config)> {
        let names: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        let pick = match (name, names.as_slice()) {
            (Some(n), _) => n,
            (None, [only]) => only,
            (None, _) => {
                return Err(anyhow!(
                    "the scenario has {} nodes ({}); pick one with --node NAME",
                    names.len(),
                    names.join(", ")
                ))
            }
        };
        self.nodes
            .get(pick)
            .map(|(info, config)| (info, config))
            .ok_or_else(|| {
                anyhow!(
                    "node {pick:?} is not in the scenario; its nodes are {}",
                    names.join(", ")
                )
            })
    }

    /// One full sync on that node for the end-state objects, with the
    /// node's configuration at the end of the run (its mode is the run's,
    /// unless a restart switched it).
    pub fn render_request(&self, name: Option<&str>) -> Result<RenderRequest> {
        let (info, config) = self.node(name)?;
        Ok(RenderRequest {
            config: config.clone(),
            manifests: self.manifests.clone(),
            node: Some(info.name.clone()),
            node_ips: Vec::new(),
            family: None,
        })
    }
}

//! One full sync of a set of manifests, for `kpsim rules`.
//!
//! Resolves which node the rules are for (`--node`, else the config's
//! `hostnameOverride`, else the only Node in the input) and its IPs
//! (`--node-ip`, else the Node's `status.addresses`), builds the mode's
//! proxier over a fresh simulated node, delivers every object as kube-proxy's
//! informers would at start-up, runs one sync, and returns what was written.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use proxier::clock::Timestamp;
use proxier::config::{Config, Mode};
use proxier::iptables::{Options, Proxier, SyncStats};
use proxier::k8s::{IpFamily, Manifests};
use proxier::node::NodeInfo;
use sim::netfilter::Variant;

use crate::simkernel::{KernelSide, SimKernel};
use sim::node::Node;
use sim::time::Instant;

/// What the caller asked for.
#[derive(Debug, Clone, Default)]
pub struct RenderRequest {
    pub config: Config,
    pub manifests: Manifests,
    pub node: Option<String>,
    pub node_ips: Vec<IpAddr>,
    /// Which family's rules; defaults to the node's primary IP's family.
    pub family: Option<IpFamily>,
}

/// The outcome of one sync.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub node: NodeInfo,
    pub family: IpFamily,
    /// The `iptables-restore` payload, exactly as the proxier wrote it.
    pub restore: String,
    /// The node's tables afterwards, as `iptables-save` lists them.
    pub save: String,
    pub stats: SyncStats,
}

/// Picks the node and its IPs, as the issue specifies.
pub fn resolve_node(req: &RenderRequest) -> Result<NodeInfo> {
    let nodes = &req.manifests.nodes;
    let name = match (&req.node, &req.config.hostname_override) {
        (Some(n), _) => n.clone(),
        (None, Some(h)) => h.to_lowercase(),
        (None, None) => match nodes.as_slice() {
            [only] => only.name.clone(),
            [] => bail!(
                "which node are these rules for? Pass --node NAME (and --node-ip IP), set hostnameOverride in the config, or include the Node object"
            ),
            many => bail!(
                "the input has {} Nodes ({}); pick one with --node NAME",
                many.len(),
                many.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        },
    };
    let mut info = match nodes.iter().find(|n| n.name == name) {
        Some(node) => NodeInfo::from_node(node),
        None => NodeInfo::new(name, Vec::new()),
    };
    if !req.node_ips.is_empty() {
        let labels = std::mem::take(&mut info.labels);
        let pod_cidrs = std::mem::take(&mut info.pod_cidrs);
        info = NodeInfo::new(info.name, req.node_ips.clone());
        info.labels = labels;
        info.pod_cidrs = pod_cidrs;
    }
    Ok(info)
}

/// The family rules are rendered for: `--ip-family`, else the node's
/// primary IP's, else IPv4.
pub fn family_for(req: &RenderRequest, node: &NodeInfo) -> IpFamily {
    req.family
        .or_else(|| node.ips.first().map(IpFamily::of))
        .unwrap_or(IpFamily::V4)
}

/// Runs one full sync into a fresh simulated node and returns the payload.
pub fn render(req: &RenderRequest) -> Result<Rendered> {
    let node = resolve_node(req)?;
    let mut sim_node = Node::new(&node.name, 0, Variant::Nft);
    render_into(req, node, &mut sim_node)
}

/// Runs one full sync for `node` into the simulated kernel `sim_node`: the
/// payload must load into the simulator's iptables exactly as it would into
/// a kernel.
pub fn render_into(req: &RenderRequest, node: NodeInfo, sim_node: &mut Node) -> Result<Rendered> {
    if req.config.mode != Mode::Iptables {
        bail!(
            "mode {} is not implemented yet; use --mode iptables",
            req.config.mode.name()
        );
    }
    let family = family_for(req, &node);
    let mut side = KernelSide::default();
    let mut kernel = SimKernel::new(sim_node, &mut side, Instant::ZERO);
    let options = Options::from_config(&req.config, family, &node);
    let mut proxier = Proxier::new(family, node.clone(), options, &mut kernel)
        .context("starting the iptables proxier")?;
    for svc in &req.manifests.services {
        proxier.on_service(&svc.name, Some(svc));
    }
    for slice in &req.manifests.endpoint_slices {
        proxier.on_endpoint_slice(&slice.name, Some(slice));
    }
    proxier.on_services_synced();
    proxier.on_endpoint_slices_synced();
    let stats = proxier
        .sync(Timestamp::ZERO, &mut kernel)
        .context("syncing rules")?;
    let restore = side
        .last_restore(family)
        .context("the proxier wrote no rules")?
        .to_string();
    let save = sim_node.iptables_save(match family {
        IpFamily::V4 => sim::netfilter::Family::Ipv4,
        IpFamily::V6 => sim::netfilter::Family::Ipv6,
    });
    Ok(Rendered {
        node,
        family,
        restore,
        save,
        stats,
    })
}

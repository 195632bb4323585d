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
use proxier::k8s::{IpFamily, Manifests};
use proxier::node::NodeInfo;
use proxier::provider::SyncSummary;
use sim::netfilter::Variant;

use crate::scenario::kube_proxy::KubeProxy;
use crate::simkernel::{KernelSide, SimKernel};
use sim::ipvs::ListFormat;
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
    pub mode: Mode,
    /// The `iptables-restore` payload, exactly as the proxier wrote it
    /// (iptables mode, and IPVS mode's helper rules).
    pub restore: Option<String>,
    /// The node's iptables afterwards, as `iptables-save` lists them.
    pub save: String,
    /// The `nft -f` transaction (nftables mode).
    pub nft_transaction: Option<String>,
    /// The node's nftables afterwards, as `nft list ruleset` prints them
    /// (nftables mode).
    pub nft_list: Option<String>,
    /// `ipvsadm -Ln`, the `kube-ipvs0` addresses and `ipset list` (IPVS mode).
    pub ipvs_state: Option<String>,
    pub summary: SyncSummary,
}

impl Rendered {
    /// What `kpsim rules` prints by default for the mode.
    pub fn default_output(&self) -> String {
        match self.mode {
            Mode::Iptables => self.restore.clone().unwrap_or_default(),
            Mode::Nftables => self.nft_transaction.clone().unwrap_or_default(),
            Mode::Ipvs => format!(
                "{}{}",
                self.ipvs_state.clone().unwrap_or_default(),
                self.restore.clone().unwrap_or_default()
            ),
        }
    }
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

/// Runs one full sync into a fresh simulated node (its IPs on `eth0`, so
/// IPVS mode finds them for NodePorts) and returns the payload.
pub fn render(req: &RenderRequest) -> Result<Rendered> {
    let node = resolve_node(req)?;
    let mut sim_node = Node::new(&node.name, 0, Variant::Nft);
    sim_node.add_interface("eth0")?;
    for ip in &node.interface_addresses {
        if !ip.is_loopback() && !sim_node.is_local(*ip) {
            sim_node.add_address("eth0", *ip, if ip.is_ipv4() { 32 } else { 128 })?;
        }
    }
    render_into(req, node, &mut sim_node)
}

/// IPVS mode's kernel state as `kpsim rules` prints it: `ipvsadm -Ln`,
/// the dummy device's addresses and `ipset list`, each under its command.
pub fn ipvs_state(node: &Node) -> String {
    let dev = proxier::ipvs::DEFAULT_DUMMY_DEVICE;
    let addrs = node
        .interfaces()
        .show(dev)
        .unwrap_or_else(|| format!("Device \"{dev}\" does not exist.\n"));
    format!(
        "# ipvsadm -Ln\n{}\n# ip addr show {dev}\n{addrs}\n# ipset list\n{}",
        node.ipvs().list(Instant::ZERO, ListFormat::Plain),
        node.ipset_list(None)
    )
}

/// Runs one full sync for `node` into the simulated kernel `sim_node`: what
/// the proxier writes must load into the simulator exactly as it would into
/// a kernel.
pub fn render_into(req: &RenderRequest, node: NodeInfo, sim_node: &mut Node) -> Result<Rendered> {
    let mode = req.config.mode;
    let family = family_for(req, &node);
    let mut side = KernelSide::default();
    let mut kernel = SimKernel::new(sim_node, &mut side, Instant::ZERO);
    let mut kp = KubeProxy::new(&req.config, mode, family, node.clone(), &mut kernel)
        .with_context(|| format!("starting the {} proxier", mode.name()))?;
    kp.start(
        &req.manifests.services,
        &req.manifests.endpoint_slices,
        &service_cidrs(&req.manifests),
        Timestamp::ZERO,
        &mut kernel,
    );
    let summary = match kp.syncs.last().map(|r| r.summary.clone()) {
        Some(Ok(s)) => s,
        Some(Err(e)) => bail!("syncing rules: {e}"),
        None => bail!("the proxier did not sync"),
    };
    let restore = side.last_restore(family).map(str::to_string);
    let nft_transaction = side.last_nft_transaction.clone();
    let nft_list =
        (mode == Mode::Nftables).then(|| sim_node.nftables().list_ruleset(Instant::ZERO));
    let ipvs_state = (mode == Mode::Ipvs).then(|| ipvs_state(sim_node));
    let save = sim_node.iptables_save(match family {
        IpFamily::V4 => sim::netfilter::Family::Ipv4,
        IpFamily::V6 => sim::netfilter::Family::Ipv6,
    });
    Ok(Rendered {
        node,
        family,
        mode,
        restore,
        save,
        nft_transaction,
        nft_list,
        ipvs_state,
        summary,
    })
}

/// Adds `cidrs` (from a flag or a scenario) as one ServiceCIDR object
/// named `name`, if there are any.
pub fn with_service_cidrs(mut m: Manifests, name: &str, cidrs: Vec<ipnet::IpNet>) -> Manifests {
    if !cidrs.is_empty() {
        m.service_cidrs.push(proxier::k8s::ServiceCidr {
            name: name.into(),
            cidrs,
        });
    }
    m
}

/// The ranges of every ServiceCIDR object (nftables mode needs them).
pub fn service_cidrs(m: &Manifests) -> Vec<ipnet::IpNet> {
    m.service_cidrs
        .iter()
        .flat_map(|c| c.cidrs.iter().copied())
        .collect()
}

//! `kpsim trace`: one new packet through a node holding the rules for a set
//! of manifests, rule by rule.
//!
//! The node is a simulated one with the node's address on `eth0`, its pod
//! CIDR on `cni0` and loopback; the proxier syncs into it once, then the
//! packet is built (a TCP SYN or a UDP/SCTP datagram) and processed: a
//! source that is one of the node's addresses is locally generated (OUTPUT
//! path), a source in the node's pod CIDR arrives from a local pod (`cni0`),
//! anything else arrives from the network (`eth0`). Every random branch is
//! explored to list each endpoint the packet can be DNATed to, in rule
//! order (iptables' `statistic` and nftables' `numgen` alike); the seeded
//! run gives the path actually taken, its rule count (nftables: rules
//! visited plus set and map lookups) and its trace. The mode is the
//! request's: the node holds that mode's rules. In IPVS mode the scheduler
//! picks, not a rule: `endpoints` lists every real server of the virtual
//! service the packet hit that could take a new connection (weight above
//! 0), in `ipvsadm -Ln` order.

use std::net::IpAddr;

use anyhow::{anyhow, bail, Context, Result};
use ipnet::IpNet;
use proxier::config::Mode;
use proxier::k8s::{IpFamily, Protocol};
use proxier::node::NodeInfo;
use serde::Serialize;
use sim::netfilter::eval::{Decision, Explorer};
use sim::netfilter::{Cidr, TableId, Variant};
use sim::network::Network;
use sim::node::{Delivery, DropReason, Node, Processed};
use sim::packet::{Packet, PacketRepr, TcpFlags, Transport};
use sim::time::Instant;

use crate::oneshot::{render_into, resolve_node, RenderRequest};

/// The table kube-proxy's nftables mode owns.
const NFT_TABLE: &str = "kube-proxy";

/// What to trace.
#[derive(Debug, Clone)]
pub struct TraceRequest {
    pub render: RenderRequest,
    /// The proxy mode whose rules the node holds (it overrides the
    /// configuration's `mode`; callers take it from there).
    pub mode: Mode,
    pub probe: Probe,
    pub seed: u64,
}

/// The answer, in the shape `--output json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct TraceResult {
    pub node: String,
    /// `iptables`, `ipvs` or `nftables`.
    pub mode: String,
    /// `OUTPUT` (locally generated) or `PREROUTING on <iface>`.
    pub path: String,
    /// Every `ip:port` the packet can be DNATed to, in rule order.
    pub endpoints: Vec<String>,
    /// `ACCEPT`, `DROP` or `REJECT` when a kube-proxy filter rule decides.
    pub verdict: Option<String>,
    /// Whether the packet would be masqueraded.
    pub masquerade: bool,
    /// Rules evaluated on the path taken with the seed.
    pub rules_evaluated: u64,
    /// Where the packet went on that path.
    pub delivery: String,
    /// The rule-by-rule trace of that path.
    #[serde(skip)]
    pub trace: String,
    /// False if exploring every random branch was cut short.
    pub complete: bool,
}

/// The packet to trace: a new flow's first packet.
#[derive(Debug, Clone)]
pub struct Probe {
    pub from: IpAddr,
    /// Default 40000.
    pub from_port: Option<u16>,
    pub to: IpAddr,
    pub to_port: u16,
    pub protocol: Protocol,
}

fn packet(req: &Probe) -> Result<Packet> {
    let src_port = req.from_port.unwrap_or(40000);
    let transport = match req.protocol {
        Protocol::Tcp => Transport::Tcp {
            src_port,
            dst_port: req.to_port,
            seq: 1000,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
        },
        Protocol::Udp => Transport::Udp {
            src_port,
            dst_port: req.to_port,
        },
        Protocol::Sctp => Transport::Sctp {
            src_port,
            dst_port: req.to_port,
            vtag: 0,
        },
    };
    Packet::build(&PacketRepr {
        src: req.from,
        dst: req.to,
        ttl: 64,
        ident: 1,
        transport,
        payload: Vec::new(),
    })
    .map_err(|e| anyhow!("building the packet: {e}"))
}

fn endpoint_of(p: &Processed) -> Option<String> {
    p.nat.dnat.map(|(ip, port)| match (ip, port) {
        (IpAddr::V4(v4), Some(port)) => format!("{v4}:{port}"),
        (IpAddr::V6(v6), Some(port)) => format!("[{v6}]:{port}"),
        (ip, None) => ip.to_string(),
    })
}

/// The decision of a kube-proxy filter rule on this path, if one decided
/// (iptables: a rule in a `KUBE-` chain; nftables: a rule of the
/// `kube-proxy` table).
fn verdict_of(p: &Processed) -> Option<String> {
    match &p.delivery {
        Delivery::Dropped(DropReason::Rule(r)) if r.chain.starts_with("KUBE-") => {
            return Some("DROP".into())
        }
        Delivery::Dropped(DropReason::NftRule(r)) if r.table == NFT_TABLE => {
            return Some("DROP".into())
        }
        Delivery::Rejected { by, .. } if by.chain.starts_with("KUBE-") => {
            return Some("REJECT".into())
        }
        Delivery::NftRejected { by, .. } if by.table == NFT_TABLE => return Some("REJECT".into()),
        _ => {}
    }
    p.steps
        .iter()
        .filter(|s| s.table == TableId::Filter && s.decision == Decision::Accept)
        .find_map(|s| s.by.as_ref().filter(|r| r.chain.starts_with("KUBE-")))
        .map(|_| "ACCEPT".to_string())
}

fn describe(d: &Delivery) -> String {
    match d {
        Delivery::Local => "delivered to a local socket".into(),
        Delivery::Out { iface, next_hop } => format!("sent out of {iface} to {next_hop}"),
        Delivery::Dropped(reason) => reason.to_string(),
        Delivery::Rejected { by, .. } => format!("rejected by {by}"),
        Delivery::NftRejected { by, .. } => format!("rejected by {by}"),
        Delivery::IcmpError { by, .. } => format!("answered with an ICMP error by {by}"),
    }
}

/// The real servers of an IPVS service that can take a new connection
/// (weight above 0), in `ipvsadm -Ln` order.
fn ipvs_endpoints(node: &sim::node::Node, key: &sim::ipvs::ServiceKey) -> Vec<String> {
    let mut dests = node.ipvs().candidates(key);
    dests.sort_by_key(|d| (d.ip(), d.port()));
    dests.iter().map(ToString::to_string).collect()
}

/// Traces the request's packet on a fresh simulated node that holds the
/// rules of one full sync for the request's manifests.
pub fn trace(req: &TraceRequest) -> Result<TraceResult> {
    let info = resolve_node(&req.render)?;
    let ip = primary_ip(&info)?;
    let mut net = Network::new(req.seed, Variant::Nft);
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    let cidr = pod_cidr(&info, ip).and_then(|c| Cidr::new(c.network(), c.prefix_len()));
    net.add_node(&info.name, ip, prefix, cidr)?;
    let node = net.node_mut(&info.name)?;
    // Every other address the node's interfaces carry is local too.
    for addr in &info.interface_addresses {
        if IpFamily::of(addr) == IpFamily::of(&ip) && !addr.is_loopback() && !node.is_local(*addr) {
            node.add_address("eth0", *addr, prefix)?;
        }
    }
    let mut render = req.render.clone();
    render.config.mode = req.mode;
    render_into(&render, info.clone(), node).context("rendering the node's rules")?;
    trace_on(node, &info, req.mode, &req.probe, Instant::ZERO)
}

fn primary_ip(info: &NodeInfo) -> Result<IpAddr> {
    info.ips
        .first()
        .copied()
        .ok_or_else(|| anyhow!("node {} has no IP; pass --node-ip", info.name))
}

/// The node's pod CIDR of `ip`'s family.
fn pod_cidr(info: &NodeInfo, ip: IpAddr) -> Option<IpNet> {
    info.pod_cidrs
        .iter()
        .find(|c| IpFamily::of(&c.addr()) == IpFamily::of(&ip))
        .copied()
}

/// Traces `probe` on a node that already holds `mode`'s rules (a fresh one
/// from [`trace`], or a scenario's node at its end state) at virtual time
/// `now`. The node's conntrack and counters see the packet like any other.
pub fn trace_on(
    node: &mut Node,
    info: &NodeInfo,
    mode: Mode,
    probe: &Probe,
    now: Instant,
) -> Result<TraceResult> {
    let ip = primary_ip(info)?;
    if IpFamily::of(&ip) != IpFamily::of(&probe.from)
        || IpFamily::of(&probe.from) != IpFamily::of(&probe.to)
    {
        bail!("--from, --to and the node's IP must be of one family");
    }
    let pkt = packet(probe)?;
    let iface = if node.is_local(probe.from) {
        None
    } else if pod_cidr(info, ip).is_some_and(|c| c.contains(&probe.from)) {
        Some("cni0")
    } else {
        Some("eth0")
    };
    let explored = node.explore(&pkt, iface, now, Explorer::default())?;
    let mut endpoints: Vec<String> = Vec::new();
    for (p, _) in &explored.runs {
        if let Some(e) = endpoint_of(p) {
            if !endpoints.contains(&e) {
                endpoints.push(e);
            }
        }
    }
    // IPVS schedules instead of rules: every real server it could pick
    // for a new connection to the virtual service the packet hit.
    if let Some(key) = explored.runs.iter().find_map(|(p, _)| p.nat.ipvs) {
        endpoints = ipvs_endpoints(node, &key);
    }
    node.set_tracing(true);
    let taken = match iface {
        None => node.send(pkt, now),
        Some(i) => node.receive(pkt, i, now),
    };
    node.set_tracing(false);
    let taken = taken?;
    Ok(TraceResult {
        node: info.name.clone(),
        mode: mode.name().to_string(),
        path: match iface {
            None => "OUTPUT (locally generated)".into(),
            Some(i) => format!("PREROUTING on {i}"),
        },
        endpoints,
        verdict: verdict_of(&taken),
        masquerade: taken.nat.masquerade,
        rules_evaluated: taken.rules_evaluated,
        delivery: describe(&taken.delivery),
        trace: taken.trace.to_string(),
        complete: explored.complete,
    })
}

/// The text form: the trace, then a summary.
pub fn render_text(r: &TraceResult) -> String {
    let mut out = format!(
        "node {} ({} mode): packet enters via {}\n",
        r.node, r.mode, r.path
    );
    out.push_str(&r.trace);
    out.push_str(&format!("=> {}\n", r.delivery));
    out.push_str(&format!(
        "endpoints: {}\n",
        if r.endpoints.is_empty() {
            "none".to_string()
        } else {
            r.endpoints.join(", ")
        }
    ));
    out.push_str(&format!(
        "verdict: {}\n",
        r.verdict
            .as_deref()
            .unwrap_or("none (no kube-proxy filter rule decided)")
    ));
    out.push_str(&format!("masquerade: {}\n", r.masquerade));
    out.push_str(&format!("rules evaluated: {}\n", r.rules_evaluated));
    if !r.complete {
        out.push_str("(exploring every random branch was cut short: too many)\n");
    }
    out
}

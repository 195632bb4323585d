//! `kpsim scale`: how per-packet cost grows with the number of services.
//!
//! For each size, a seeded cluster (`generate`) is synced into a simulated
//! node and a new connection's first packet is sent from a pod on another
//! node to a ClusterIP early in the service list, in the middle and at the
//! end. The figure is the number of rules the packet evaluated on the node
//! — a count, not a time, so it is the same on every machine: iptables'
//! KUBE-SERVICES is a list, so it grows with the service's position. In
//! IPVS mode the packet meets only kube-proxy's few helper rules (they
//! match on ipsets, which are hash lookups) and IPVS finds the virtual
//! service in its hash table: the count stays flat. In nftables mode the
//! count is rules visited plus set and map lookups; dispatch is one lookup
//! in the `service-ips` verdict map, so it stays flat too.

use std::net::IpAddr;

use anyhow::{anyhow, Result};
use proxier::config::{Config, Mode};
use proxier::k8s::{ClusterIp, IpFamily, Manifests};
use serde::Serialize;
use sim::netfilter::{Cidr, Variant};
use sim::network::Network;
use sim::packet::{Packet, PacketRepr, TcpFlags, Transport};
use sim::time::Instant;

use crate::generate::{cluster, Shape};
use crate::oneshot::{render_into, RenderRequest};

#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub mode: String,
    pub services: usize,
    /// `-A` lines in the restore payload.
    pub rules_written: usize,
    /// Rules evaluated by a first packet to the first, middle and last
    /// service in rule order.
    pub first: u64,
    pub middle: u64,
    pub last: u64,
}

const NODE: &str = "node-0";
const NODE_IP: [u8; 4] = [192, 168, 0, 10];

fn syn(src: IpAddr, dst: IpAddr, port: u16, src_port: u16) -> Result<Packet> {
    Packet::build(&PacketRepr {
        src,
        dst,
        ttl: 64,
        ident: 1,
        transport: Transport::Tcp {
            src_port,
            dst_port: port,
            seq: 1,
            ack: 0,
            flags: TcpFlags::SYN,
            window: 64240,
        },
        payload: Vec::new(),
    })
    .map_err(|e| anyhow!("building a packet: {e}"))
}

fn cluster_ip(m: &Manifests, i: usize) -> IpAddr {
    match &m.services[i].cluster_ip {
        ClusterIp::Ips(ips) => ips[0],
        _ => unreachable!("the generator gives every service a cluster IP"),
    }
}

/// A simulated node holding the rules for `services` generated services.
pub fn loaded_node(services: usize, seed: u64) -> Result<(Network, Manifests)> {
    loaded_node_in(Mode::Iptables, services, seed)
}

/// [`loaded_node`] with `mode`'s proxier.
pub fn loaded_node_in(mode: Mode, services: usize, seed: u64) -> Result<(Network, Manifests)> {
    loaded_node_shaped(mode, services, 10, seed)
}

/// [`loaded_node_in`] with `endpoints` endpoints per service.
pub fn loaded_node_shaped(
    mode: Mode,
    services: usize,
    endpoints: usize,
    seed: u64,
) -> Result<(Network, Manifests)> {
    let m = cluster(&Shape {
        services,
        endpoints_per_service: endpoints,
        nodes: 10,
        seed,
    });
    let config = Config {
        mode,
        cluster_cidrs: vec!["10.128.0.0/9".parse()?],
        ..Config::default()
    };
    let mut net = Network::new(seed, Variant::Nft);
    let ip = IpAddr::from(NODE_IP);
    net.add_node(NODE, ip, 24, Cidr::new("10.244.0.0".parse()?, 24))?;
    let req = RenderRequest {
        config,
        manifests: m.clone(),
        node: Some(NODE.into()),
        node_ips: vec![ip],
        family: Some(IpFamily::V4),
    };
    let info = crate::oneshot::resolve_node(&req)?;
    render_into(&req, info, net.node_mut(NODE)?)?;
    Ok((net, m))
}

/// Rules evaluated by the first packet of a new connection to service `i`.
pub fn first_packet_rules(
    net: &mut Network,
    m: &Manifests,
    i: usize,
    src_port: u16,
) -> Result<u64> {
    let src: IpAddr = "10.129.0.5".parse()?;
    let pkt = syn(src, cluster_ip(m, i), 80, src_port)?;
    let node = net.node_mut(NODE)?;
    Ok(node.receive(pkt, "eth0", Instant::ZERO)?.rules_evaluated)
}

/// What `kpsim scale` measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleRequest {
    /// Service counts.
    pub sizes: Vec<usize>,
    /// Endpoints per service.
    pub endpoints: usize,
    /// Modes, in row order.
    pub modes: Vec<Mode>,
    pub seed: u64,
}

/// The figures for each size, in every mode, 10 endpoints per service.
pub fn measure(sizes: &[usize], seed: u64) -> Result<Vec<ScaleRow>> {
    measure_with(&ScaleRequest {
        sizes: sizes.to_vec(),
        endpoints: 10,
        modes: vec![Mode::Iptables, Mode::Ipvs, Mode::Nftables],
        seed,
    })
}

/// The figures for each size and mode. The services measured are the
/// first, middle and last in service-name order (KUBE-SERVICES' order).
pub fn measure_with(req: &ScaleRequest) -> Result<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    for &services in &req.sizes {
        if services == 0 {
            anyhow::bail!("a size of 0 services has no first packet to measure");
        }
        for &mode in &req.modes {
            let (mut net, m) = loaded_node_shaped(mode, services, req.endpoints, req.seed)?;
            let mut order: Vec<usize> = (0..services).collect();
            order.sort_by_key(|i| m.services[*i].name.clone());
            let pick = |k: usize| order[k.min(services - 1)];
            let node = net.node(NODE)?;
            let rules_written = match mode {
                Mode::Nftables => nft_rule_count(node.nftables()),
                Mode::Iptables | Mode::Ipvs => {
                    node.iptables(sim::netfilter::Family::Ipv4).rule_count()
                }
            };
            rows.push(ScaleRow {
                mode: mode.name().into(),
                services,
                rules_written,
                first: first_packet_rules(&mut net, &m, pick(0), 40001)?,
                middle: first_packet_rules(&mut net, &m, pick(services / 2), 40002)?,
                last: first_packet_rules(&mut net, &m, pick(services - 1), 40003)?,
            });
        }
    }
    Ok(rows)
}

/// Rules in every chain of an nftables ruleset (map elements not counted).
pub fn nft_rule_count(rs: &sim::nftables::Ruleset) -> usize {
    rs.tables()
        .flat_map(|t| t.chains())
        .map(|c| c.rules().len())
        .sum()
}

pub fn render_text(rows: &[ScaleRow]) -> String {
    let mut out = String::from(
        "rules evaluated by a new connection's first packet (pod on another node -> ClusterIP;\n\
         nftables: rules visited plus set and map lookups)\n\
         mode      services  rules in kernel  to first svc  to middle svc  to last svc\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{:<9} {:>8}  {:>15}  {:>12}  {:>13}  {:>11}\n",
            r.mode, r.services, r.rules_written, r.first, r.middle, r.last
        ));
    }
    out
}

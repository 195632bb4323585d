//! `kpsim scale`: how per-packet cost grows with the number of services.
//!
//! For each size, a seeded cluster (`generate`) is synced into a simulated
//! node and a new connection's first packet is sent from a pod on another
//! node to a ClusterIP early in the service list, in the middle and at the
//! end. The figure is the number of rules the packet evaluated on the node
//! — a count, not a time, so it is the same on every machine: iptables'
//! KUBE-SERVICES is a list, so it grows with the service's position.

use std::net::IpAddr;

use anyhow::{anyhow, Result};
use proxier::config::Config;
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
    let m = cluster(&Shape {
        services,
        endpoints_per_service: 10,
        nodes: 10,
        seed,
    });
    let config = Config {
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

/// The figures for each size.
pub fn measure(sizes: &[usize], seed: u64) -> Result<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    for &services in sizes {
        let (mut net, m) = loaded_node(services, seed)?;
        // KUBE-SERVICES is written in service-name order: find which
        // generated service comes first, in the middle and last.
        let mut order: Vec<usize> = (0..services).collect();
        order.sort_by_key(|i| m.services[*i].name.clone());
        let pick = |k: usize| order[k.min(services - 1)];
        let rules_written = net
            .node(NODE)?
            .iptables(sim::netfilter::Family::Ipv4)
            .rule_count();
        rows.push(ScaleRow {
            mode: "iptables".into(),
            services,
            rules_written,
            first: first_packet_rules(&mut net, &m, pick(0), 40001)?,
            middle: first_packet_rules(&mut net, &m, pick(services / 2), 40002)?,
            last: first_packet_rules(&mut net, &m, pick(services - 1), 40003)?,
        });
    }
    Ok(rows)
}

pub fn render_text(rows: &[ScaleRow]) -> String {
    let mut out = String::from(
        "rules evaluated by a new connection's first packet (pod on another node -> ClusterIP)\n\
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

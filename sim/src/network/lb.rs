//! A cloud load balancer in front of the nodes.
//!
//! Models: a virtual IP with ports, each forwarded to a set of nodes. In
//! [`LbMode::NodePort`] the balancer rewrites the destination to the
//! chosen node's IP and NodePort and, unless it preserves the client
//! source, the source to its own IP and a port of its own (like an AWS
//! classic/NLB-with-NAT); the cloud routes the nodes' replies back through
//! it, where they are un-translated — ICMP errors about a forwarded
//! datagram too (a node's REJECT), quote and all, as conntrack translates
//! RELATED packets. In [`LbMode::Passthrough`] the packet
//! keeps the VIP as destination and the client as source (GCP/Azure
//! style; the node's rules for the load-balancer IP take it from there) and
//! replies go straight back to the client. A flow keeps its node; a new
//! flow picks one of the configured nodes that is up, from the balancer's
//! own seeded stream.
//!
//! Must never: pick a node that is down, or pick with anything but its
//! stream.
//!
//! Error contract: `Err(reason)` when a packet cannot be forwarded (no such
//! port, no healthy node); the caller reports it as a drop at the balancer.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;

use crate::netfilter::Protocol;
use crate::packet::{Packet, Side, Tuple};

/// How the balancer hands traffic to nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbMode {
    /// Destination rewritten to `node IP:NodePort`.
    NodePort {
        /// Keep the client's source address and port (else SNAT to the VIP).
        preserve_source: bool,
    },
    /// Destination kept (the VIP); the node must handle the VIP itself.
    Passthrough,
}

/// One forwarded port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbPort {
    /// The NodePort (NodePort mode).
    pub node_port: u16,
    /// Node names, in the order configured.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Flow {
    node: String,
    /// The tuple as forwarded to the node.
    backend: Tuple,
}

/// A cloud load balancer.
#[derive(Debug, Clone)]
pub struct LoadBalancer {
    /// Its name.
    pub name: String,
    /// Its virtual IP.
    pub vip: IpAddr,
    /// How it forwards.
    pub mode: LbMode,
    ports: BTreeMap<(Protocol, u16), LbPort>,
    /// Client-side tuple → flow.
    flows: BTreeMap<Tuple, Flow>,
    /// Reply tuple from the node → client-side tuple (NodePort mode).
    replies: BTreeMap<Tuple, Tuple>,
    rng: ChaCha8Rng,
    next_port: u16,
}

impl LoadBalancer {
    pub(crate) fn new(name: &str, vip: IpAddr, mode: LbMode, rng: ChaCha8Rng) -> LoadBalancer {
        LoadBalancer {
            name: name.to_string(),
            vip,
            mode,
            ports: BTreeMap::new(),
            flows: BTreeMap::new(),
            replies: BTreeMap::new(),
            rng,
            next_port: 1024,
        }
    }

    /// Forward `proto`/`port` of the VIP to `nodes` (at `node_port`).
    pub fn set_port(&mut self, proto: Protocol, port: u16, node_port: u16, nodes: Vec<String>) {
        self.ports
            .insert((proto, port), LbPort { node_port, nodes });
    }

    /// The forwarded ports.
    pub fn ports(&self) -> impl Iterator<Item = (&(Protocol, u16), &LbPort)> {
        self.ports.iter()
    }

    /// Whether a packet leaving a node is a reply this balancer must
    /// un-translate (the cloud routes it here).
    pub(crate) fn claims_reply(&self, t: &Tuple) -> bool {
        matches!(self.mode, LbMode::NodePort { .. }) && self.replies.contains_key(t)
    }

    /// Whether a packet reaching the balancer is the return half of a flow
    /// it forwarded: a reply, or an ICMP error a node sent about the
    /// forwarded datagram (conntrack's RELATED; a REJECT behind the
    /// balancer must reach the client).
    pub(crate) fn claims(&self, pkt: &Packet) -> bool {
        pkt.tuple().is_some_and(|t| self.claims_reply(&t)) || self.related_flow(pkt).is_some()
    }

    /// For an ICMP error quoting a datagram this balancer forwarded in
    /// NodePort mode: that flow's client-side tuple.
    fn related_flow(&self, pkt: &Packet) -> Option<Tuple> {
        if !matches!(self.mode, LbMode::NodePort { .. }) {
            return None;
        }
        let quoted = pkt.icmp_inner_tuple()?;
        self.replies.get(&quoted.invert()?).copied()
    }

    /// A packet for the VIP: translate it and say which node gets it.
    /// `node_ip` answers the address of a node that is up.
    pub(crate) fn inbound(
        &mut self,
        pkt: &mut Packet,
        node_ip: &dyn Fn(&str) -> Option<IpAddr>,
    ) -> Result<(String, IpAddr), String> {
        let t = pkt.tuple().ok_or("no flow tuple")?;
        if let Some(f) = self.flows.get(&t).cloned() {
            if let Some(ip) = node_ip(&f.node) {
                rewrite(pkt, &f.backend)?;
                return Ok((f.node, ip));
            }
        }
        let port = self.ports.get(&(t.proto, t.dst_port)).ok_or_else(|| {
            format!(
                "{} does not forward {} port {}",
                self.name, t.proto, t.dst_port
            )
        })?;
        let up: Vec<(String, IpAddr)> = port
            .nodes
            .iter()
            .filter_map(|n| node_ip(n).map(|ip| (n.clone(), ip)))
            .collect();
        if up.is_empty() {
            return Err(format!("{}: no healthy node", self.name));
        }
        let (node, ip) = up[(self.rng.next_u32() as usize) % up.len()].clone();
        let mut backend = t;
        if let LbMode::NodePort { preserve_source } = self.mode {
            backend.dst = ip;
            backend.dst_port = port.node_port;
            if !preserve_source {
                backend.src = self.vip;
                backend.src_port = self.alloc_port(&backend);
            }
        }
        rewrite(pkt, &backend)?;
        if let Some(r) = backend.invert() {
            self.replies.insert(r, t);
        }
        self.flows.insert(
            t,
            Flow {
                node: node.clone(),
                backend,
            },
        );
        Ok((node, ip))
    }

    fn alloc_port(&mut self, candidate: &Tuple) -> u16 {
        for _ in 0..64_512 {
            let p = self.next_port;
            self.next_port = if p == 65535 { 1024 } else { p + 1 };
            let mut t = *candidate;
            t.src_port = p;
            if t.invert().is_none_or(|r| !self.replies.contains_key(&r)) {
                return p;
            }
        }
        candidate.src_port
    }

    /// A reply from a node: translate it back for the client.
    pub(crate) fn outbound(&mut self, pkt: &mut Packet) -> Result<(), String> {
        if let Some(client) = self.related_flow(pkt) {
            // `nf_nat_icmp_reply_translation`: the quote becomes the
            // client's own datagram, and the error comes from the VIP.
            let ports = client.has_ports();
            return pkt
                .rewrite_icmp_inner(Side::Source, client.src, ports.then_some(client.src_port))
                .and_then(|_| {
                    pkt.rewrite_icmp_inner(
                        Side::Destination,
                        client.dst,
                        ports.then_some(client.dst_port),
                    )
                })
                .and_then(|_| pkt.set_source(client.dst, None))
                .and_then(|_| pkt.set_destination(client.src, None))
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        let t = pkt.tuple().ok_or("no flow tuple")?;
        let client = *self.replies.get(&t).ok_or("not a balanced flow")?;
        let back = client.invert().ok_or("no reply tuple")?;
        rewrite(pkt, &back)
    }
}

fn rewrite(pkt: &mut Packet, to: &Tuple) -> Result<(), String> {
    let ports = to.has_ports();
    pkt.set_source(to.src, ports.then_some(to.src_port))
        .and_then(|_| pkt.set_destination(to.dst, ports.then_some(to.dst_port)))
        .map_err(|e| e.to_string())
}

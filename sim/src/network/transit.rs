//! Moving one packet hop by hop until a socket gets it or something stops
//! it.
//!
//! Models: a host puts a packet on an interface for a next hop; the link
//! (or the fabric, by address) gives it to the neighbour; a node runs it
//! through its kernel ([`crate::node::Node::receive`]) and either takes it
//! (local delivery: its own sockets), sends it on, drops it or rejects it
//! (the ICMP error or reset travels back the same way); a pod or client
//! takes it; a load balancer forwards it (and the fabric hands it the
//! replies it must un-translate). A node that is down drops everything.
//! Pods send everything to their node's `cni0` address, clients put
//! everything on the fabric for its destination, nodes use their kernel.
//!
//! Must never: loop forever (a hop limit of 64 ends runaway paths as a
//! drop), or let a packet skip a node's kernel on its way through it.
//!
//! Error contract: [`NetError`] for a rule that cannot be evaluated or a
//! host that cannot send; everything else ends as an [`End`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use petgraph::stable_graph::NodeIndex;

use super::report::HopRecord;
use super::{gateway_of, HostKind, NetError, Network};
use crate::netfilter::eval::RuleRef;
use crate::node::{Delivery, DropReason, Processed};
use crate::packet::Packet;
use crate::time::Instant;

const HOP_LIMIT: usize = 64;

/// How a packet's journey ended.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// A host's socket layer got it.
    Socket { host: NodeIndex, pkt: Packet },
    /// Stopped at `host`.
    Dropped {
        host: String,
        reason: String,
        rule: Option<RuleRef>,
    },
    /// Rejected at `host` (by `rule`, or by the kernel itself — IPVS with
    /// no real server — as `by` says); the answer's own journey.
    Rejected {
        host: String,
        by: String,
        rule: Option<RuleRef>,
        reply: Box<Transit>,
    },
}

/// One packet's journey.
#[derive(Debug, Clone)]
pub(crate) struct Transit {
    pub hops: Vec<HopRecord>,
    pub end: End,
}

impl Network {
    /// Send a packet from host `from` (its kernel or socket layer).
    pub(crate) fn transmit(
        &mut self,
        from: NodeIndex,
        pkt: Packet,
        t: Instant,
    ) -> Result<Transit, NetError> {
        let name = self.graph[from].name.clone();
        let hops = Vec::new();
        let pod_node = match &self.graph[from].kind {
            HostKind::Pod(e) => Some(e.node.clone().unwrap_or_default()),
            _ => None,
        };
        let (iface, next_hop) = if let Some(node) = pod_node {
            let gw = match &self.graph[self.idx(&node)?].kind {
                HostKind::Node(n) => n.pod_cidr.map(gateway_of),
                _ => None,
            };
            match gw {
                Some(gw) => ("eth0".to_string(), gw),
                None => return Ok(dropped(hops, &name, "no gateway".into(), None)),
            }
        } else {
            match &mut self.graph[from].kind {
                HostKind::Node(n) => {
                    if !n.up {
                        return Ok(dropped(hops, &name, "node down".into(), None));
                    }
                    let p = n.kernel.send(pkt, t)?;
                    return self.after_kernel(from, p, hops, t);
                }
                HostKind::Client(_) => ("eth0".to_string(), pkt.dst()),
                _ => {
                    return Err(NetError::WrongKind {
                        name,
                        what: "send packets",
                    })
                }
            }
        };
        let mut hops = hops;
        hops.push(HopRecord::end_host(&name, "sent"));
        self.forward(from, iface, next_hop, pkt, hops, t)
    }

    /// Continue after a node's kernel processed a packet.
    fn after_kernel(
        &mut self,
        at: NodeIndex,
        p: Processed,
        mut hops: Vec<HopRecord>,
        t: Instant,
    ) -> Result<Transit, NetError> {
        let name = self.graph[at].name.clone();
        hops.push(HopRecord::from_processed(&name, &p));
        // Every kind of rejection sends its reply back the same way; only
        // how the rejecter is named differs.
        let (by, rule, reply) = match p.delivery {
            Delivery::Local => {
                return Ok(Transit {
                    hops,
                    end: End::Socket {
                        host: at,
                        pkt: p.packet,
                    },
                })
            }
            Delivery::Out { iface, next_hop } => {
                return self.forward(at, iface, next_hop, p.packet, hops, t)
            }
            Delivery::Dropped(reason) => {
                let rule = match &reason {
                    DropReason::Rule(r) => Some(r.clone()),
                    _ => None,
                };
                return Ok(dropped(hops, &name, reason.to_string(), rule));
            }
            Delivery::Rejected { by, reply } => (by.to_string(), Some(by), reply),
            Delivery::NftRejected { by, reply } => (by.to_string(), None, reply),
            Delivery::IcmpError { by, reply } => (by, None, reply),
        };
        let back = self.after_kernel(at, *reply, Vec::new(), t)?;
        Ok(Transit {
            hops,
            end: End::Rejected {
                host: name,
                by,
                rule,
                reply: Box::new(back),
            },
        })
    }

    /// The neighbour that takes a packet put on `iface` of `from` for
    /// `next_hop`, and the interface it arrives on.
    fn neighbour_for(
        &self,
        from: NodeIndex,
        iface: &str,
        next_hop: IpAddr,
        pkt: &Packet,
    ) -> Option<(NodeIndex, String)> {
        for (other, other_if) in self.neighbours(from, iface) {
            if other == self.fabric {
                return self.fabric_pick(from, next_hop, pkt);
            }
            let owns = match &self.graph[other].kind {
                HostKind::Pod(e) | HostKind::Client(e) => e.ip == next_hop,
                HostKind::Node(n) => n.kernel.is_local(next_hop),
                HostKind::LoadBalancer(lb) => lb.vip == next_hop,
                HostKind::Fabric => false,
            };
            if owns {
                return Some((other, other_if));
            }
        }
        None
    }

    fn fabric_pick(
        &self,
        from: NodeIndex,
        next_hop: IpAddr,
        pkt: &Packet,
    ) -> Option<(NodeIndex, String)> {
        let attached = self.neighbours(self.fabric, "");
        if let Some(t) = pkt.tuple() {
            for (h, hif) in &attached {
                if let HostKind::LoadBalancer(lb) = &self.graph[*h].kind {
                    if *h != from && lb.claims_reply(&t) {
                        return Some((*h, hif.clone()));
                    }
                }
            }
        }
        attached.into_iter().find(|(h, _)| {
            *h != from
                && match &self.graph[*h].kind {
                    HostKind::Node(n) => n.ip == next_hop,
                    HostKind::Client(e) => e.ip == next_hop,
                    HostKind::LoadBalancer(lb) => lb.vip == next_hop,
                    _ => false,
                }
        })
    }

    fn forward(
        &mut self,
        mut from: NodeIndex,
        mut iface: String,
        mut next_hop: IpAddr,
        mut pkt: Packet,
        mut hops: Vec<HopRecord>,
        t: Instant,
    ) -> Result<Transit, NetError> {
        for _ in 0..HOP_LIMIT {
            let from_name = self.graph[from].name.clone();
            let Some((to, to_if)) = self.neighbour_for(from, &iface, next_hop, &pkt) else {
                let why = format!("no host at next hop {next_hop} on {iface}");
                return Ok(dropped(hops, &from_name, why, None));
            };
            let to_name = self.graph[to].name.clone();
            let up_nodes: BTreeMap<String, IpAddr> = self
                .hosts()
                .filter_map(|h| match &h.kind {
                    HostKind::Node(n) if n.up => Some((h.name.clone(), n.ip)),
                    _ => None,
                })
                .collect();
            match &mut self.graph[to].kind {
                HostKind::Node(n) => {
                    if !n.up {
                        return Ok(dropped(hops, &to_name, "node down".into(), None));
                    }
                    let p = n.kernel.receive(pkt, &to_if, t)?;
                    return self.after_kernel(to, p, hops, t);
                }
                HostKind::Pod(_) | HostKind::Client(_) => {
                    hops.push(HopRecord::end_host(&to_name, "received"));
                    return Ok(Transit {
                        hops,
                        end: End::Socket { host: to, pkt },
                    });
                }
                HostKind::LoadBalancer(lb) => {
                    let is_reply = lb.claims(&pkt);
                    let res = if is_reply {
                        lb.outbound(&mut pkt).map(|_| (String::new(), pkt.dst()))
                    } else {
                        lb.inbound(&mut pkt, &|n| up_nodes.get(n).copied())
                    };
                    match res {
                        Ok((node, ip)) => {
                            let what = if is_reply {
                                format!("reply to {}", pkt.dst())
                            } else {
                                format!("to node {node}")
                            };
                            hops.push(HopRecord::end_host(&to_name, &what));
                            from = to;
                            iface = "eth0".into();
                            next_hop = ip;
                        }
                        Err(why) => return Ok(dropped(hops, &to_name, why, None)),
                    }
                }
                HostKind::Fabric => unreachable!("the fabric is never a neighbour's owner"),
            }
        }
        let name = self.graph[from].name.clone();
        Ok(dropped(hops, &name, "hop limit reached".into(), None))
    }
}

fn dropped(hops: Vec<HopRecord>, host: &str, reason: String, rule: Option<RuleRef>) -> Transit {
    Transit {
        hops,
        end: End::Dropped {
            host: host.to_string(),
            reason,
            rule,
        },
    }
}

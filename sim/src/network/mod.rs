//! The network between hosts: a `petgraph` graph of nodes, pods, external
//! clients and cloud load balancers, and a driver that plays connections
//! through every kernel on the path.
//!
//! Models: a flat layer-3 "fabric" that every node's `eth0`, every client
//! and every load balancer is attached to (a packet put on it goes to the
//! host that owns its next hop; a node's default route is `dev eth0`, so
//! any address is reached directly); each node owns a pod CIDR, with its
//! `cni0` bridge holding the CIDR's first address, and pods attached to it (their
//! default route is the node: all pod traffic crosses the node's netfilter,
//! as with `br_netfilter`); every node routes every other node's pod CIDR
//! through that node (`CIDR via NODE-IP dev eth0`: a flat routed pod
//! network). Nodes run the full kernel model ([`crate::node::Node`]);
//! pods, clients and nodes' own processes answer through a small socket
//! layer (`sockets`); load balancers forward (`lb`). A node that is down
//! drops everything that reaches it. Packets move hop by hop (`transit`);
//! [`Network::connect_tcp`] and friends (`conn`) play the SYN, SYN-ACK,
//! ACK, request, reply and FIN through them and report what happened.
//!
//! Must never: iterate anything unordered, read a clock, or draw
//! randomness except from streams derived from its seed
//! (`network/ports/HOST` for client ports, `network/lb/NAME` for balancers,
//! the nodes' own streams).
//!
//! Error contract: building returns [`NetError`] (unknown or duplicate
//! names, an address two hosts claim, a pod on a node without a pod CIDR);
//! driving returns [`NetError`] for unknown hosts or connections and for a
//! rule that cannot be evaluated; everything a packet can suffer is an
//! outcome in the report, not an error.

mod conn;
mod lb;
mod report;
mod sockets;
mod transit;

pub use conn::{ConnId, OpenConn};
pub use lb::{LbMode, LbPort, LoadBalancer};
pub use report::{ConnectionReport, ExchangeStep, HopRecord, Outcome};
pub use sockets::{parse_answer, SeenAddrs, Sockets};

use std::collections::BTreeMap;
use std::net::IpAddr;

use petgraph::stable_graph::{NodeIndex, StableUnGraph};
use rand_chacha::ChaCha8Rng;

use crate::netfilter::{Cidr, Family, Protocol, Variant};
use crate::node::{Node, NodeError, Route, RouteKind};
use crate::rng::stream;

/// A Kubernetes-style node host.
#[derive(Debug, Clone)]
pub struct NodeHost {
    /// The kernel.
    pub kernel: Box<Node>,
    /// The node's address on the fabric.
    pub ip: IpAddr,
    /// The pod CIDR it owns.
    pub pod_cidr: Option<Cidr>,
    /// Whether it is up.
    pub up: bool,
    /// Its own processes' sockets (host network).
    pub sockets: Sockets,
}

/// A pod or an external client.
#[derive(Debug, Clone)]
pub struct EndHost {
    /// Its address.
    pub ip: IpAddr,
    /// For a pod: the node it runs on.
    pub node: Option<String>,
    /// Its sockets.
    pub sockets: Sockets,
}

/// What a graph vertex is.
#[derive(Debug, Clone)]
pub enum HostKind {
    /// The shared layer-3 segment.
    Fabric,
    /// A node.
    Node(NodeHost),
    /// A pod.
    Pod(EndHost),
    /// An external client.
    Client(EndHost),
    /// A cloud load balancer.
    LoadBalancer(Box<LoadBalancer>),
}

/// A vertex: a named host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Unique name.
    pub name: String,
    /// What it is.
    pub kind: HostKind,
}

/// An edge: two attachment points (vertex, interface name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    ends: [(NodeIndex, String); 2],
}

/// Why the network could not be built or driven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// No host of that name.
    #[error("no host `{name}`; hint: add it before using it")]
    UnknownHost { name: String },
    /// A host of that name exists.
    #[error("a host named `{name}` exists; hint: host names are unique")]
    DuplicateName { name: String },
    /// Another host has that address.
    #[error("{addr} is already used by `{owner}`; hint: give every host its own address")]
    AddressInUse { addr: IpAddr, owner: String },
    /// The host cannot do that (wrong kind).
    #[error("`{name}` cannot {what}")]
    WrongKind { name: String, what: &'static str },
    /// No such connection.
    #[error("no open connection {id}")]
    UnknownConnection { id: u64 },
    /// A node refused a configuration or could not evaluate a rule.
    #[error(transparent)]
    Node(#[from] NodeError),
}

/// The simulated network.
#[derive(Debug, Clone)]
pub struct Network {
    seed: u64,
    variant: Variant,
    graph: StableUnGraph<Host, Link>,
    fabric: NodeIndex,
    names: BTreeMap<String, NodeIndex>,
    ports: BTreeMap<String, ChaCha8Rng>,
    conns: BTreeMap<u64, OpenConn>,
    next_conn: u64,
    tracing: bool,
}

impl Network {
    /// An empty network; all randomness derives from `seed`; nodes get
    /// iptables of `variant`.
    pub fn new(seed: u64, variant: Variant) -> Network {
        let mut graph = StableUnGraph::default();
        let fabric = graph.add_node(Host {
            name: "fabric".into(),
            kind: HostKind::Fabric,
        });
        Network {
            seed,
            variant,
            graph,
            fabric,
            names: BTreeMap::new(),
            ports: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            tracing: false,
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Record rule-by-rule traces on every node (in the reports' hops).
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
        for h in self.graph.node_weights_mut() {
            if let HostKind::Node(n) = &mut h.kind {
                n.kernel.set_tracing(on);
            }
        }
    }

    fn idx(&self, name: &str) -> Result<NodeIndex, NetError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| NetError::UnknownHost { name: name.into() })
    }

    /// Every host (not the fabric), in the order added.
    pub fn hosts(&self) -> impl Iterator<Item = &Host> {
        self.names_in_order().map(|i| &self.graph[i])
    }

    fn names_in_order(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.node_indices().filter(move |i| *i != self.fabric)
    }

    /// A host by name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.names.get(name).map(|i| &self.graph[*i])
    }

    /// The owner of `addr` among fabric hosts and pods.
    fn owner(&self, addr: IpAddr) -> Option<String> {
        self.hosts()
            .find(|h| match &h.kind {
                HostKind::Node(n) => n.ip == addr,
                HostKind::Pod(e) | HostKind::Client(e) => e.ip == addr,
                HostKind::LoadBalancer(lb) => lb.vip == addr,
                HostKind::Fabric => false,
            })
            .map(|h| h.name.clone())
    }

    fn add_host(
        &mut self,
        name: &str,
        addr: IpAddr,
        kind: HostKind,
    ) -> Result<NodeIndex, NetError> {
        if self.names.contains_key(name) || name == "fabric" {
            return Err(NetError::DuplicateName { name: name.into() });
        }
        if let Some(owner) = self.owner(addr) {
            return Err(NetError::AddressInUse { addr, owner });
        }
        let i = self.graph.add_node(Host {
            name: name.to_string(),
            kind,
        });
        self.names.insert(name.to_string(), i);
        Ok(i)
    }

    fn link(&mut self, a: NodeIndex, a_if: &str, b: NodeIndex, b_if: &str) {
        self.graph.add_edge(
            a,
            b,
            Link {
                ends: [(a, a_if.to_string()), (b, b_if.to_string())],
            },
        );
    }

    /// Add a node with `ip/prefix` on `eth0`, a default route out of `eth0`,
    /// and, when it owns a pod CIDR, `cni0` with the CIDR's first address
    /// and routes to and from every other node's pod CIDR.
    pub fn add_node(
        &mut self,
        name: &str,
        ip: IpAddr,
        prefix: u8,
        pod_cidr: Option<Cidr>,
    ) -> Result<(), NetError> {
        let mut kernel = Node::new(name, self.seed, self.variant);
        kernel.set_tracing(self.tracing);
        kernel.add_interface("eth0")?;
        kernel.add_address("eth0", ip, prefix)?;
        let any = Cidr::new(
            if ip.is_ipv4() {
                IpAddr::V4(0.into())
            } else {
                IpAddr::V6(0u128.into())
            },
            0,
        )
        .expect("/0 is valid");
        kernel.add_route(Route {
            dst: any,
            via: None,
            dev: "eth0".into(),
            src: Some(ip),
            kind: RouteKind::Unicast,
        })?;
        if let Some(c) = pod_cidr {
            kernel.add_bridge_interface("cni0")?;
            kernel.add_address("cni0", gateway_of(c), c.prefix())?;
        }
        // Routes between this node's and the others' pod CIDRs.
        let others: Vec<(IpAddr, Cidr)> = self
            .hosts()
            .filter_map(|h| match &h.kind {
                HostKind::Node(n) => n.pod_cidr.map(|c| (n.ip, c)),
                _ => None,
            })
            .collect();
        for (oip, oc) in &others {
            if Family::of(*oip) == Family::of(ip) {
                kernel.add_route(via(*oc, *oip))?;
            }
        }
        let host = NodeHost {
            kernel: Box::new(kernel),
            ip,
            pod_cidr,
            up: true,
            sockets: Sockets::default(),
        };
        let i = self.add_host(name, ip, HostKind::Node(host))?;
        let fabric = self.fabric;
        self.link(i, "eth0", fabric, "");
        if let Some(c) = pod_cidr {
            for h in self.graph.node_weights_mut() {
                if let HostKind::Node(n) = &mut h.kind {
                    if n.ip != ip && Family::of(n.ip) == Family::of(ip) {
                        n.kernel.add_route(via(c, ip))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Add a pod with `ip` on `node`, listening on the given ports.
    pub fn add_pod(
        &mut self,
        name: &str,
        node: &str,
        ip: IpAddr,
        tcp_ports: &[u16],
        udp_ports: &[u16],
    ) -> Result<(), NetError> {
        let ni = self.idx(node)?;
        match &self.graph[ni].kind {
            HostKind::Node(n) if n.pod_cidr.is_some() => {}
            _ => {
                return Err(NetError::WrongKind {
                    name: node.into(),
                    what: "host pods (it is not a node with a pod CIDR)",
                })
            }
        }
        let mut sockets = Sockets::default();
        tcp_ports
            .iter()
            .for_each(|p| sockets.listen(Protocol::Tcp, *p));
        udp_ports
            .iter()
            .for_each(|p| sockets.listen(Protocol::Udp, *p));
        let pod = EndHost {
            ip,
            node: Some(node.to_string()),
            sockets,
        };
        let pi = self.add_host(name, ip, HostKind::Pod(pod))?;
        self.link(pi, "eth0", ni, "cni0");
        Ok(())
    }

    /// Add an external client with address `ip`.
    pub fn add_client(&mut self, name: &str, ip: IpAddr) -> Result<(), NetError> {
        let host = EndHost {
            ip,
            node: None,
            sockets: Sockets::default(),
        };
        let i = self.add_host(name, ip, HostKind::Client(host))?;
        let fabric = self.fabric;
        self.link(i, "eth0", fabric, "");
        Ok(())
    }

    /// Add a cloud load balancer with virtual IP `vip`.
    pub fn add_load_balancer(
        &mut self,
        name: &str,
        vip: IpAddr,
        mode: LbMode,
    ) -> Result<(), NetError> {
        let rng = stream(self.seed, &format!("network/lb/{name}"));
        let lb = LoadBalancer::new(name, vip, mode, rng);
        let i = self.add_host(name, vip, HostKind::LoadBalancer(Box::new(lb)))?;
        let fabric = self.fabric;
        self.link(i, "eth0", fabric, "");
        Ok(())
    }

    /// Forward a port of a load balancer to nodes (at `node_port`).
    pub fn lb_forward(
        &mut self,
        lb: &str,
        proto: Protocol,
        port: u16,
        node_port: u16,
        nodes: &[&str],
    ) -> Result<(), NetError> {
        for n in nodes {
            self.node(n)?;
        }
        let i = self.idx(lb)?;
        match &mut self.graph[i].kind {
            HostKind::LoadBalancer(l) => {
                l.set_port(
                    proto,
                    port,
                    node_port,
                    nodes.iter().map(|s| s.to_string()).collect(),
                );
                Ok(())
            }
            _ => Err(NetError::WrongKind {
                name: lb.into(),
                what: "forward ports (it is not a load balancer)",
            }),
        }
    }

    /// A node's kernel.
    pub fn node(&self, name: &str) -> Result<&Node, NetError> {
        match &self.graph[self.idx(name)?].kind {
            HostKind::Node(n) => Ok(&n.kernel),
            _ => Err(NetError::WrongKind {
                name: name.into(),
                what: "be used as a node",
            }),
        }
    }

    /// A node's kernel, to load rules into or change.
    pub fn node_mut(&mut self, name: &str) -> Result<&mut Node, NetError> {
        let i = self.idx(name)?;
        match &mut self.graph[i].kind {
            HostKind::Node(n) => Ok(&mut n.kernel),
            _ => Err(NetError::WrongKind {
                name: name.into(),
                what: "be used as a node",
            }),
        }
    }

    /// Every node's name, in the order added.
    pub fn node_names(&self) -> Vec<String> {
        self.hosts()
            .filter(|h| matches!(h.kind, HostKind::Node(_)))
            .map(|h| h.name.clone())
            .collect()
    }

    /// Bring a node up or down (a down node drops everything sent to it).
    pub fn set_node_up(&mut self, name: &str, up: bool) -> Result<(), NetError> {
        let i = self.idx(name)?;
        match &mut self.graph[i].kind {
            HostKind::Node(n) => {
                n.up = up;
                Ok(())
            }
            _ => Err(NetError::WrongKind {
                name: name.into(),
                what: "go down (it is not a node)",
            }),
        }
    }

    fn sockets_mut(&mut self, name: &str) -> Result<&mut Sockets, NetError> {
        let i = self.idx(name)?;
        match &mut self.graph[i].kind {
            HostKind::Node(n) => Ok(&mut n.sockets),
            HostKind::Pod(e) | HostKind::Client(e) => Ok(&mut e.sockets),
            _ => Err(NetError::WrongKind {
                name: name.into(),
                what: "have sockets",
            }),
        }
    }

    /// Remove a pod, client or load balancer (a deleted pod: its address
    /// is free again and packets for it find no host). Nodes stay; take
    /// them down instead.
    pub fn remove_host(&mut self, name: &str) -> Result<(), NetError> {
        let i = self.idx(name)?;
        if matches!(self.graph[i].kind, HostKind::Node(_)) {
            return Err(NetError::WrongKind {
                name: name.into(),
                what: "be removed (it is a node; use set_node_up)",
            });
        }
        self.graph.remove_node(i);
        self.names.remove(name);
        self.conns.retain(|_, c| c.client != name);
        Ok(())
    }

    /// Let time reach `t` on every node: conntrack entries and IPVS
    /// connections whose timers ran out go (both also expire lazily when
    /// packets arrive).
    pub fn expire(&mut self, t: crate::time::Instant) {
        for h in self.graph.node_weights_mut() {
            if let HostKind::Node(n) = &mut h.kind {
                n.kernel.expire(t);
            }
        }
    }

    /// Listen on a port of a host (a pod, a client, or a node's own
    /// process on the host network).
    pub fn listen(&mut self, host: &str, proto: Protocol, port: u16) -> Result<(), NetError> {
        self.sockets_mut(host)?.listen(proto, port);
        Ok(())
    }

    /// Stop listening on a port.
    pub fn unlisten(&mut self, host: &str, proto: Protocol, port: u16) -> Result<(), NetError> {
        self.sockets_mut(host)?.unlisten(proto, port);
        Ok(())
    }

    /// The neighbours of `i` through its interface `iface`:
    /// (vertex, its interface), in edge order.
    fn neighbours(&self, i: NodeIndex, iface: &str) -> Vec<(NodeIndex, String)> {
        let mut v: Vec<(NodeIndex, String)> = self
            .graph
            .edges(i)
            .filter_map(|e| {
                let l = e.weight();
                let (mine, other) = if l.ends[0].0 == i {
                    (&l.ends[0], &l.ends[1])
                } else {
                    (&l.ends[1], &l.ends[0])
                };
                (mine.1 == iface).then(|| other.clone())
            })
            .collect();
        v.sort();
        v
    }
}

/// The first address of a pod CIDR (the node's `cni0` address).
fn gateway_of(c: Cidr) -> IpAddr {
    match c.addr() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

fn via(dst: Cidr, gw: IpAddr) -> Route {
    Route {
        dst,
        via: Some(gw),
        dev: "eth0".into(),
        src: None,
        kind: RouteKind::Unicast,
    }
}

//! A planned scenario's hosts as network namespaces, wired like
//! `sim::network` models them.
//!
//! - **fabric**: a namespace holding the bridge `br0`, the flat layer-2/3
//!   segment. Every node's, client's and load balancer's `eth0` is a veth
//!   whose other end (`nI`, `cI`, `lI`) is a port of `br0`. Everyone on it
//!   has a default route `dev eth0` (on-link), so any address is reached
//!   directly, as in the simulator.
//! - **node**: `eth0` with the node IP/24 and `default dev eth0 src IP`;
//!   every other node's pod CIDR `via` that node; its own pod CIDR a
//!   blackhole except the pods' /32 routes. Each pod hangs off a routed veth
//!   `pJ` that carries the CIDR's first address (the simulator's `cni0`
//!   address, what MASQUERADE picks towards a local pod), so all pod traffic
//!   — also between pods of one node — crosses the node's netfilter, with no
//!   bridge and no `br_netfilter`. Sysctls as a CNI sets them: `ip_forward`
//!   on, `rp_filter` loose, no ICMP redirects; and one a CNI does not set:
//!   ICMP error rate limiting off (`icmp_ratelimit=0`), because the
//!   simulator does not model it — with the kernel's default a REJECT
//!   answers a burst of six connections per client, then one a second,
//!   and the rest time out.
//! - **pod**: `eth0` with the pod IP/32, default route via the gateway;
//!   servers on its ports ([`PodServers`]); no ICMP rate limit either.
//! - **client**: `eth0` with its IP/32.
//! - **load balancer**: `eth0` with the VIP/32. Passthrough (the client's
//!   address preserved): a policy rule sends what arrives on `eth0` to a
//!   table that routes the VIP to the healthy nodes (ECMP, hashed on the
//!   ports), so the node sees the VIP as destination. NodePort (proxying):
//!   nftables DNAT to a random healthy `node:NodePort` and SNAT to the VIP.
//!   Ports the balancer does not forward are dropped, like the simulator's.
//! - **node down**: the fabric drops every IP packet to and from the node's
//!   port (an nftables bridge filter; ARP still works, so senders time out
//!   rather than get "host unreachable", as a dead machine behind a switch
//!   looks), and the balancers stop choosing it.
//!
//! Must never: create anything outside the namespaces it owns. Every
//! namespace is an [`OwnedNetns`], deleted when the topology drops.
//!
//! Error contract: building and changing return [`ClusterError`]; an IPv6
//! plan is [`ClusterError::Unsupported`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;
use proxier::dataplane::Sysctl;
use proxier::k8s::Protocol;
use proxier::kernel::exec::{find_tool, missing_tool, Runner};
use proxier::kernel::{Journal, KernelSysctl, OwnedNetns};

mod balancer;

use super::servers::PodServers;
use super::ClusterError;
use crate::scenario::plan::Plan;

/// How a balancer hands traffic to the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbKind {
    /// The VIP stays the destination (routed to a node).
    Passthrough,
    /// DNAT to `node:NodePort`, SNAT to the VIP.
    NodePort,
}

/// A node's namespace.
#[derive(Debug)]
pub struct NodeNs {
    pub name: String,
    pub ns: OwnedNetns,
    pub ip: IpAddr,
    pub pod_cidr: IpNet,
    /// Its port on the fabric bridge.
    fabric_port: String,
    next_pod_if: usize,
}

/// A pod's or a client's namespace.
#[derive(Debug)]
pub struct EndNs {
    pub name: String,
    pub ns: OwnedNetns,
    pub ip: IpAddr,
    /// For a pod: its node's namespace and the node side of its veth.
    attached_to: Option<(String, String)>,
}

#[derive(Debug)]
struct LbNs {
    name: String,
    ns: OwnedNetns,
    vip: IpAddr,
    kind: LbKind,
    /// (protocol, port, node port).
    ports: Vec<(Protocol, u16, u16)>,
}

/// The whole cluster. Fields drop in order: servers first, namespaces last.
pub struct Topology {
    servers: BTreeMap<String, PodServers>,
    pods: BTreeMap<String, EndNs>,
    clients: BTreeMap<String, EndNs>,
    lbs: Vec<LbNs>,
    nodes: Vec<NodeNs>,
    fabric: OwnedNetns,
    down: BTreeSet<String>,
}

/// `ip -n NS ARGS…` in one process (nothing runs in the caller's
/// namespace).
fn ip(ns: &str, args: &[&str]) -> Result<(), ClusterError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    Runner::new(None).check("ip", &all, None)?;
    Ok(())
}

fn sysctls(ns: &str, values: &[(&str, i64)]) -> Result<(), ClusterError> {
    let mut s = KernelSysctl::new(Some(ns.to_string()), Journal::default());
    for (k, v) in values {
        s.set(k, *v)?;
    }
    Ok(())
}

/// Runs an nft script inside `ns`.
fn nft(ns: &OwnedNetns, script: &str) -> Result<(), ClusterError> {
    ns.runner().check("nft", &["-f", "-"], Some(script))?;
    Ok(())
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// The MAC of node number `i`'s `eth0` (fixed, so balancers can know it).
fn node_mac(i: usize) -> String {
    format!("02:6b:70:00:{:02x}:{:02x}", (i >> 8) & 0xff, i & 0xff)
}

/// The first address of a pod CIDR: the gateway pods route through.
pub fn gateway_of(cidr: &IpNet) -> IpAddr {
    match cidr.network() {
        IpAddr::V4(a) => IpAddr::V4((u32::from(a) + 1).into()),
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) + 1).into()),
    }
}

/// What the plan needs that this machine must provide, beyond `ip`:
/// `nft` for load balancers and node failures.
pub fn tools_needed(plan: &Plan) -> Vec<&'static str> {
    let mut tools = vec!["ip"];
    let node_steps = plan.steps.iter().any(|s| s.node.is_some());
    if !plan.load_balancers.is_empty() || node_steps {
        tools.push("nft");
    }
    tools
}

/// Why the harness cannot build this plan, if it cannot.
pub fn unsupported(plan: &Plan) -> Option<String> {
    let v6 = plan.nodes.iter().any(|n| n.ip.is_ipv6())
        || plan.pods.iter().any(|p| p.ip.is_ipv6())
        || plan.clients.iter().any(|c| c.ip.is_ipv6())
        || plan.load_balancers.iter().any(|l| l.ip.is_ipv6());
    v6.then(|| "IPv6 addresses (the namespace topology is IPv4-only)".to_string())
}

impl Topology {
    /// Builds every host of `plan` and starts the pods' servers.
    pub fn build(plan: &Plan) -> Result<Topology, ClusterError> {
        if let Some(why) = unsupported(plan) {
            return Err(ClusterError::Unsupported(why));
        }
        if let Some(t) = tools_needed(plan)
            .into_iter()
            .find(|t| find_tool(t).is_none())
        {
            return Err(missing_tool(t).into());
        }
        let fabric = OwnedNetns::create_unique("kpd-fabric")?;
        let f = fabric.name().to_string();
        ip(&f, &["link", "add", "br0", "type", "bridge"])?;
        ip(&f, &["link", "set", "br0", "up"])?;
        let mut topo = Topology {
            servers: BTreeMap::new(),
            pods: BTreeMap::new(),
            clients: BTreeMap::new(),
            lbs: Vec::new(),
            nodes: Vec::new(),
            fabric,
            down: BTreeSet::new(),
        };
        for (i, n) in plan.nodes.iter().enumerate() {
            topo.add_node(i, &n.name, n.ip, n.pod_cidr)?;
        }
        for n in 0..topo.nodes.len() {
            let (ns, ip_self) = (topo.nodes[n].ns.name().to_string(), topo.nodes[n].ip);
            for o in &topo.nodes {
                if o.ip != ip_self {
                    let (cidr, via) = (o.pod_cidr.to_string(), o.ip.to_string());
                    ip(&ns, &["route", "add", &cidr, "via", &via, "dev", "eth0"])?;
                }
            }
        }
        for p in &plan.pods {
            topo.add_pod(
                &p.name.name,
                &p.node,
                p.ip,
                &p.ports_of(Protocol::Tcp),
                &p.ports_of(Protocol::Udp),
            )?;
        }
        for (i, c) in plan.clients.iter().enumerate() {
            let ns = topo.attach(&format!("c{i}"), &c.name, c.ip)?;
            topo.clients.insert(
                c.name.clone(),
                EndNs {
                    name: c.name.clone(),
                    ns,
                    ip: c.ip,
                    attached_to: None,
                },
            );
        }
        for (i, lb) in plan.load_balancers.iter().enumerate() {
            let svc = plan.service_of(lb);
            let ports = svc
                .ports
                .iter()
                .map(|p| (p.protocol, p.port, p.node_port.unwrap_or(0)))
                .collect();
            let ns = topo.attach(&format!("l{i}"), &lb.name, lb.ip)?;
            let kind = if lb.preserve_client_ip {
                LbKind::Passthrough
            } else {
                LbKind::NodePort
            };
            topo.lbs.push(LbNs {
                name: lb.name.clone(),
                ns,
                vip: lb.ip,
                kind,
                ports,
            });
            // The balancer's only address is its VIP, so its ARP requests
            // for a node would say "tell VIP"; in IPVS mode every node
            // holds that VIP on `kube-ipvs0` and ignores an ARP request
            // from its own address (a martian source). A cloud balancer
            // reaches the nodes by other means: here it knows their MACs.
            for (j, n) in topo.nodes.iter().enumerate() {
                ip(
                    topo.lbs[topo.lbs.len() - 1].ns.name(),
                    &[
                        "neigh",
                        "replace",
                        &n.ip.to_string(),
                        "lladdr",
                        &node_mac(j),
                        "dev",
                        "eth0",
                        "nud",
                        "permanent",
                    ],
                )?;
            }
            topo.setup_lb(topo.lbs.len() - 1)?;
        }
        Ok(topo)
    }

    /// A namespace named after `role` with `eth0` up at `addr/prefix`,
    /// whose peer `port` is a port of the fabric bridge.
    fn plug(
        &self,
        port: &str,
        role: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<OwnedNetns, ClusterError> {
        let ns = OwnedNetns::create_unique(&format!("kpd-{role}"))?;
        let f = self.fabric.name();
        ip(
            f,
            &[
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ],
        )?;
        ip(f, &["link", "set", port, "master", "br0", "up"])?;
        let n = ns.name();
        ip(
            n,
            &["addr", "add", &format!("{addr}/{prefix}"), "dev", "eth0"],
        )?;
        ip(n, &["link", "set", "eth0", "up"])?;
        Ok(ns)
    }

    /// A namespace with `eth0` (address/32, default route on-link) whose
    /// peer `port` is a port of the fabric bridge.
    fn attach(&self, port: &str, role: &str, addr: IpAddr) -> Result<OwnedNetns, ClusterError> {
        let ns = self.plug(port, role, addr, 32)?;
        ip(ns.name(), &["route", "add", "default", "dev", "eth0"])?;
        Ok(ns)
    }

    fn add_node(
        &mut self,
        i: usize,
        name: &str,
        addr: IpAddr,
        cidr: IpNet,
    ) -> Result<(), ClusterError> {
        let port = format!("n{i}");
        let ns = self.plug(&port, name, addr, 24)?;
        let n = ns.name();
        ip(n, &["link", "set", "eth0", "address", &node_mac(i)])?;
        ip(
            n,
            &[
                "route",
                "add",
                "default",
                "dev",
                "eth0",
                "src",
                &addr.to_string(),
            ],
        )?;
        ip(n, &["route", "add", "blackhole", &cidr.to_string()])?;
        sysctls(
            n,
            &[
                ("net/ipv4/ip_forward", 1),
                ("net/ipv4/conf/all/rp_filter", 2),
                ("net/ipv4/conf/default/rp_filter", 2),
                ("net/ipv4/conf/all/send_redirects", 0),
                ("net/ipv4/conf/default/send_redirects", 0),
                // The simulator does not rate-limit ICMP errors; a real
                // node sends a burst of six per destination, then one a
                // second, so a burst of connections to a REJECTing
                // Service would mostly time out instead (see the module
                // doc).
                ("net/ipv4/icmp_ratelimit", 0),
                ("net/ipv4/icmp_msgs_per_sec", 100_000),
                ("net/ipv4/icmp_msgs_burst", 100_000),
                // ARP only for and from eth0's own address. IPVS mode binds
                // every Service address to `kube-ipvs0`; with the defaults
                // a node answers the fabric's ARP for a balancer's VIP or
                // an external IP, and its own ARP requests for a client it
                // answers through IPVS say "VIP is at my MAC", so the
                // client sends everything for the VIP to that node. The
                // fabric puts clients and balancers on the nodes' link,
                // which a cloud does not; in the simulator (and a cloud)
                // an address reaches the host that owns it. (kube-proxy
                // sets these itself with `ipvs.strictARP`.)
                ("net/ipv4/conf/all/arp_ignore", 1),
                ("net/ipv4/conf/all/arp_announce", 2),
            ],
        )?;
        self.nodes.push(NodeNs {
            name: name.to_string(),
            ns,
            ip: addr,
            pod_cidr: cidr,
            fabric_port: port,
            next_pod_if: 0,
        });
        Ok(())
    }

    fn add_pod(
        &mut self,
        name: &str,
        node: &str,
        addr: IpAddr,
        tcp: &[u16],
        udp: &[u16],
    ) -> Result<(), ClusterError> {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.name == node)
            .expect("the planner checked the node exists");
        let port = format!("p{}", node.next_pod_if);
        node.next_pod_if += 1;
        let gw = gateway_of(&node.pod_cidr).to_string();
        let ns = OwnedNetns::create_unique(&format!("kpd-{name}"))?;
        let (n, p) = (node.ns.name(), ns.name());
        ip(
            n,
            &[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", p,
            ],
        )?;
        ip(n, &["addr", "add", &format!("{gw}/32"), "dev", &port])?;
        ip(n, &["link", "set", &port, "up"])?;
        ip(n, &["route", "add", &format!("{addr}/32"), "dev", &port])?;
        ip(p, &["addr", "add", &format!("{addr}/32"), "dev", "eth0"])?;
        ip(p, &["link", "set", "eth0", "up"])?;
        ip(p, &["route", "add", &gw, "dev", "eth0"])?;
        ip(p, &["route", "add", "default", "via", &gw, "dev", "eth0"])?;
        // A closed port answers every datagram, as in the simulator.
        sysctls(p, &[("net/ipv4/icmp_ratelimit", 0)])?;
        let servers = PodServers::start(name, p, addr.is_ipv6(), tcp, udp)?;
        let attached_to = Some((n.to_string(), port));
        self.servers.insert(name.to_string(), servers);
        self.pods.insert(
            name.to_string(),
            EndNs {
                name: name.to_string(),
                ns,
                ip: addr,
                attached_to,
            },
        );
        Ok(())
    }

    fn healthy_nodes(&self) -> Vec<&NodeNs> {
        self.nodes
            .iter()
            .filter(|n| !self.down.contains(&n.name))
            .collect()
    }

    /// The namespace of a node, pod or client.
    pub fn netns_of(&self, host: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.name == host)
            .map(|n| n.ns.name())
            .or_else(|| self.pods.get(host).map(|p| p.ns.name()))
            .or_else(|| self.clients.get(host).map(|c| c.ns.name()))
    }

    /// A node's namespace.
    pub fn node(&self, name: &str) -> Option<&NodeNs> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Every namespace this topology owns (for diagnostics).
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.fabric.name().to_string())
            .chain(self.nodes.iter().map(|n| n.ns.name().to_string()))
            .chain(self.pods.values().map(|p| p.ns.name().to_string()))
            .chain(self.clients.values().map(|c| c.ns.name().to_string()))
            .chain(self.lbs.iter().map(|l| l.ns.name().to_string()))
            .collect()
    }

    /// A node goes down (the fabric drops its IP traffic; balancers stop
    /// choosing it) or comes back.
    pub fn set_node_up(&mut self, name: &str, up: bool) -> Result<(), ClusterError> {
        if self.node(name).is_none() {
            return Err(ClusterError::Unsupported(format!("no node {name}")));
        }
        if up {
            self.down.remove(name);
        } else {
            self.down.insert(name.to_string());
        }
        let mut script =
            String::from("table bridge kpsim-fabric {}\ndelete table bridge kpsim-fabric\ntable bridge kpsim-fabric {\n  chain forward {\n    type filter hook forward priority 0; policy accept;\n");
        for n in self.nodes.iter().filter(|n| self.down.contains(&n.name)) {
            script.push_str(&format!(
                "    iifname \"{0}\" ether type ip drop\n    oifname \"{0}\" ether type ip drop\n",
                n.fabric_port
            ));
        }
        script.push_str("  }\n}\n");
        nft(&self.fabric, &script)?;
        for i in 0..self.lbs.len() {
            self.setup_lb(i)?;
        }
        Ok(())
    }

    /// A pod is gone: its servers stop, its veth (and the node's route to
    /// it) is deleted at once, as a CNI's DEL does, and its namespace goes.
    /// (Deleting the namespace alone is not enough: the kernel tears a
    /// namespace down asynchronously, and until then the veth still
    /// carries packets to a pod that answers "port unreachable".)
    pub fn delete_pod(&mut self, name: &str) -> Result<(), ClusterError> {
        if let Some(mut s) = self.servers.remove(name) {
            s.stop();
        }
        if let Some(pod) = self.pods.remove(name) {
            if let Some((node_ns, port)) = &pod.attached_to {
                ip(node_ns, &["link", "del", port])?;
            }
        }
        Ok(())
    }

    /// Whether the pod still exists.
    pub fn has_pod(&self, name: &str) -> bool {
        self.pods.contains_key(name)
    }

    /// The names of the balancers, with their VIPs.
    pub fn load_balancers(&self) -> Vec<(String, IpAddr)> {
        self.lbs.iter().map(|l| (l.name.clone(), l.vip)).collect()
    }
}

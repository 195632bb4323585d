//! A simulated node's kernel behind the proxier's dataplane traits.
//!
//! [`SimKernel`] borrows one `sim::node::Node` and implements
//! [`proxier::dataplane::Kernel`] over it: iptables restores go through the
//! node's iptables-restore parser (the same text a kernel would load,
//! applied atomically, with `-m set`/`-m nfacct` references checked against
//! the node's objects), conntrack listing and deletion act on the node's
//! table, nfacct and sysctls on the node; IPVS mode's interfaces act on the
//! node's IPVS table (`ipvs`), ipsets (`ipset`) and interfaces — the
//! `kube-ipvs0` dummy device — (`addresses`); nftables transactions and
//! listings act on the node's nftables model (`nftables`).
//!
//! **Invariant:** this module translates; it never decides anything a
//! kernel would not.

mod addresses;
mod ipset;
mod iptables;
mod ipvs;
mod nftables;

use proxier::dataplane::{
    Addresses, Conntrack, ConntrackFlow, DataplaneError, Ipset, Iptables, Ipvs, Kernel, Nfacct,
    Nftables, Sysctl,
};
use proxier::k8s::{IpFamily, Protocol};
use sim::netfilter::{Family, Protocol as SimProtocol};
use sim::node::Node;
use sim::time::Instant;

/// What a node's "kernel" holds outside the simulated node: the last
/// payload written per family (what `kpsim rules` prints) and fakes for the
/// interfaces the node does not model yet.
#[derive(Debug, Clone, Default)]
pub struct KernelSide {
    pub last_restore_v4: Option<String>,
    pub last_restore_v6: Option<String>,
    /// nfacct counters this node cannot create (a kernel without
    /// `nfnetlink_acct`, or a host without the `nfacct` tool).
    pub nfacct_unavailable: Vec<String>,
    /// Sysctls the node does not model (ARP settings): remembered, so a
    /// read returns what was written.
    pub other_sysctls: std::collections::BTreeMap<String, i64>,
    /// The last `nft -f` transaction (what `kpsim rules` prints).
    pub last_nft_transaction: Option<String>,
}

impl KernelSide {
    pub fn last_restore(&self, family: IpFamily) -> Option<&str> {
        match family {
            IpFamily::V4 => self.last_restore_v4.as_deref(),
            IpFamily::V6 => self.last_restore_v6.as_deref(),
        }
    }
}

/// A node's kernel as the proxier sees it, at virtual time `now`.
pub struct SimKernel<'a> {
    node: &'a mut Node,
    side: &'a mut KernelSide,
    now: Instant,
    /// The family the last `iptables(family)` call selected.
    family: IpFamily,
}

impl<'a> SimKernel<'a> {
    pub fn new(node: &'a mut Node, side: &'a mut KernelSide, now: Instant) -> Self {
        SimKernel {
            node,
            side,
            now,
            family: IpFamily::V4,
        }
    }
}

fn sim_family(family: IpFamily) -> Family {
    match family {
        IpFamily::V4 => Family::Ipv4,
        IpFamily::V6 => Family::Ipv6,
    }
}

fn sim_protocol(p: Protocol) -> SimProtocol {
    match p {
        Protocol::Tcp => SimProtocol::Tcp,
        Protocol::Udp => SimProtocol::Udp,
        Protocol::Sctp => SimProtocol::Sctp,
    }
}

impl Kernel for SimKernel<'_> {
    fn iptables(&mut self, family: IpFamily) -> &mut dyn Iptables {
        self.family = family;
        self
    }
    fn nftables(&mut self) -> &mut dyn Nftables {
        self
    }
    fn conntrack(&mut self) -> &mut dyn Conntrack {
        self
    }
    fn nfacct(&mut self) -> &mut dyn Nfacct {
        self
    }
    fn sysctl(&mut self) -> &mut dyn Sysctl {
        self
    }
    fn ipvs(&mut self) -> &mut dyn Ipvs {
        self
    }
    fn ipset(&mut self) -> &mut dyn Ipset {
        self
    }
    fn addresses(&mut self) -> &mut dyn Addresses {
        self
    }
}

impl Conntrack for SimKernel<'_> {
    fn list_flows(
        &mut self,
        family: IpFamily,
        protocol: Protocol,
    ) -> Result<Vec<ConntrackFlow>, DataplaneError> {
        self.node.conntrack_mut().expire(self.now);
        let proto = sim_protocol(protocol);
        Ok(self
            .node
            .conntrack()
            .entries()
            .filter(|e| e.original().proto == proto && IpFamily::of(&e.original().dst) == family)
            .map(|e| ConntrackFlow {
                protocol,
                orig_src: e.original().src,
                orig_dst: e.original().dst,
                orig_src_port: e.original().src_port,
                orig_dst_port: e.original().dst_port,
                reply_src: e.reply().src,
                reply_src_port: e.reply().src_port,
            })
            .collect())
    }

    fn delete_flows(&mut self, flows: &[ConntrackFlow]) -> Result<usize, DataplaneError> {
        let ids: Vec<u64> = self
            .node
            .conntrack()
            .entries()
            .filter(|e| {
                let (o, r) = (e.original(), e.reply());
                flows.iter().any(|f| {
                    sim_protocol(f.protocol) == o.proto
                        && (f.orig_src, f.orig_dst, f.orig_src_port, f.orig_dst_port)
                            == (o.src, o.dst, o.src_port, o.dst_port)
                        && (f.reply_src, f.reply_src_port) == (r.src, r.src_port)
                })
            })
            .map(|e| e.id())
            .collect();
        let ct = self.node.conntrack_mut();
        Ok(ids.into_iter().filter(|id| ct.delete_id(*id)).count())
    }
}

impl Nfacct for SimKernel<'_> {
    fn ensure(&mut self, name: &str) -> Result<(), DataplaneError> {
        if self.side.nfacct_unavailable.iter().any(|n| n == name) {
            return Err(DataplaneError::new(
                "nfacct",
                format!("cannot create counter {name}"),
            ));
        }
        self.node.nfacct_add(name);
        Ok(())
    }
}

impl Sysctl for SimKernel<'_> {
    fn get(&self, name: &str) -> Result<i64, DataplaneError> {
        match name.replace('/', ".").as_str() {
            "net.ipv4.conf.all.route_localnet" => Ok(i64::from(self.node.sysctls().route_localnet)),
            "net.ipv4.ip_forward" => Ok(i64::from(self.node.sysctls().ip_forward)),
            "net.netfilter.nf_conntrack_tcp_be_liberal" => {
                Ok(i64::from(self.node.conntrack().config().tcp_be_liberal))
            }
            vs if vs.starts_with("net.ipv4.vs.") => self
                .node
                .vs_sysctl(vs)
                .ok_or_else(|| DataplaneError::new("sysctl", format!("{vs}: no such sysctl"))),
            other => self
                .side
                .other_sysctls
                .get(other)
                .copied()
                .ok_or_else(|| DataplaneError::new("sysctl", format!("{other}: not set"))),
        }
    }

    fn set(&mut self, name: &str, value: i64) -> Result<(), DataplaneError> {
        let dotted = name.replace('/', ".");
        let modelled = dotted == "net.ipv4.ip_forward"
            || dotted == "net.ipv6.conf.all.forwarding"
            || dotted == "net.ipv4.conf.all.route_localnet"
            || dotted.starts_with("net.netfilter.nf_conntrack_")
            || dotted.starts_with("net.ipv4.vs.");
        if !modelled {
            self.side.other_sysctls.insert(dotted, value);
            return Ok(());
        }
        self.node
            .set_sysctl(name, value)
            .map_err(|e| DataplaneError::new("sysctl", e.to_string()))
    }
}

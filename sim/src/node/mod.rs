//! A Linux host's network stack: interfaces, routes, iptables (IPv4 and
//! IPv6), nftables (`nft`), conntrack, `recent` tables, ipsets, nfacct
//! counters and the sysctls that change packet paths — and the path a
//! packet takes through them in kernel order (`path`).
//!
//! Models: one network namespace. [`Node::receive`] runs a packet that
//! arrives on an interface (raw PREROUTING → conntrack → mangle PREROUTING
//! → nat PREROUTING for new connections → routing → INPUT or FORWARD →
//! POSTROUTING); [`Node::send`] runs a locally generated one (raw OUTPUT →
//! conntrack → mangle OUTPUT → nat OUTPUT → filter OUTPUT → reroute →
//! POSTROUTING, and back in through `lo` when the destination is local).
//! nftables base chains run at their hooks in priority order among the
//! iptables tables. [`Node::explore`] runs a packet once per combination of
//! `statistic --mode random` and `numgen random` outcomes on copies of the
//! state (for "every endpoint this packet can reach").
//!
//! Must never: know about Kubernetes, read a clock (time is an argument),
//! or draw randomness except from its seeded streams (`node/NAME/statistic`
//! for `-m statistic`, `node/NAME/numgen` for nftables' `numgen`,
//! `node/NAME/nat` for NAT port choices).
//!
//! Error contract: configuration calls return [`NodeError`] naming what is
//! missing; packet processing returns [`NodeError::Eval`] when a rule
//! cannot be evaluated (the packet's effects up to that rule remain) and
//! otherwise always an outcome — drops are outcomes, not errors.

mod iface;
mod ipset;
mod ipvs;
mod nft;
mod outcome;
mod path;
mod reject;
mod route;

pub use iface::{IfAddr, IfaceError, IfaceKind, Interface, Interfaces};
pub use ipset::{IpSet, IpSetError, IpSets, Member, SetType};
pub use outcome::{Delivery, DropReason, HookStep, NatApplied, Processed};
pub use route::{Route, RouteError, RouteKind, RouteResult, Routes};

use std::collections::BTreeMap;
use std::net::IpAddr;

use rand_chacha::ChaCha8Rng;

use crate::conntrack::{Conntrack, ConntrackConfig, SysctlError};
use crate::netfilter::eval::{EvalError, Explored, Explorer, NfacctCounters, RecentTables};
use crate::netfilter::{
    Counters, Family, KernelObjects, RestoreError, RestoreMode, RestoreOptions, Ruleset, TableId,
    Variant,
};
use crate::packet::Packet;
use crate::rng::stream;
use crate::time::Instant;

/// Sysctls that change packet paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctls {
    /// `net.ipv4.ip_forward` (and `net.ipv6.conf.all.forwarding`).
    pub ip_forward: bool,
    /// `net.ipv4.conf.all.route_localnet`: 127.0.0.0/8 may be routed.
    pub route_localnet: bool,
}

impl Default for Sysctls {
    /// A Kubernetes node: forwarding on, `route_localnet` off until
    /// kube-proxy turns it on.
    fn default() -> Self {
        Sysctls {
            ip_forward: true,
            route_localnet: false,
        }
    }
}

/// Why a node operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// An interface problem.
    #[error(transparent)]
    Iface(#[from] IfaceError),
    /// A route problem.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// An ipset problem.
    #[error(transparent)]
    IpSet(#[from] IpSetError),
    /// An iptables-restore refusal.
    #[error("{family:?} iptables-restore: {error}")]
    Restore {
        /// Which family's ruleset.
        family: Family,
        /// The refusal.
        error: RestoreError,
    },
    /// A sysctl this model does not have.
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    /// A rule could not be evaluated.
    #[error("node {node}: {error}")]
    Eval {
        /// The node.
        node: String,
        /// The rule and why.
        error: EvalError,
    },
}

/// Per-family `statistic --mode nth` counters.
pub(crate) type NthCounters = BTreeMap<(TableId, String, usize), u32>;

/// What changes while packets flow (cloned for explorations).
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    pub conntrack: Conntrack,
    pub recent: RecentTables,
    pub nfacct: NfacctCounters,
    pub nth: [NthCounters; 2],
    pub stat_rng: ChaCha8Rng,
    pub nat_rng: ChaCha8Rng,
    /// The IPVS table (`ipvs`: accessors, sysctls, dummy devices).
    pub ipvs: crate::ipvs::Ipvs,
    /// `numgen random` draws of nftables rules.
    pub numgen_rng: ChaCha8Rng,
    /// nftables set updates and counter hits of the packet in flight.
    pub nft_effects: crate::nftables::eval::Effects,
}

/// One simulated Linux host.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    ifaces: Interfaces,
    routes: Routes,
    iptables: [Ruleset; 2],
    nftables: crate::nftables::Ruleset,
    hooks: nft::HookRegistry,
    ipsets: IpSets,
    sysctls: Sysctls,
    tracing: bool,
    state: NodeState,
}

fn fam_index(f: Family) -> usize {
    match f {
        Family::Ipv4 => 0,
        Family::Ipv6 => 1,
    }
}

struct Objects<'a>(&'a IpSets, &'a NfacctCounters);

impl KernelObjects for Objects<'_> {
    fn ipset_family(&self, name: &str) -> Option<Family> {
        self.0.get(name).map(|s| s.family)
    }
    fn ipset_any_family(&self, name: &str) -> bool {
        self.0
            .get(name)
            .is_some_and(|s| s.kind == SetType::BitmapPort)
    }
    fn nfacct_exists(&self, name: &str) -> bool {
        self.1.contains_key(name)
    }
}

impl Node {
    /// A node with only `lo`, empty rulesets of `variant`, default
    /// conntrack tunables and random streams derived from `seed`.
    pub fn new(name: &str, seed: u64, variant: Variant) -> Node {
        Node {
            name: name.to_string(),
            ifaces: Interfaces::default(),
            routes: Routes::default(),
            iptables: [
                Ruleset::new(Family::Ipv4, variant),
                Ruleset::new(Family::Ipv6, variant),
            ],
            nftables: crate::nftables::Ruleset::new(),
            hooks: nft::HookRegistry::default(),
            ipsets: IpSets::default(),
            sysctls: Sysctls::default(),
            tracing: false,
            state: NodeState {
                conntrack: Conntrack::new(ConntrackConfig::default()),
                recent: RecentTables::default(),
                nfacct: NfacctCounters::new(),
                nth: [NthCounters::new(), NthCounters::new()],
                stat_rng: stream(seed, &format!("node/{name}/statistic")),
                nat_rng: stream(seed, &format!("node/{name}/nat")),
                ipvs: crate::ipvs::Ipvs::default(),
                numgen_rng: stream(seed, &format!("node/{name}/numgen")),
                nft_effects: crate::nftables::eval::Effects::default(),
            },
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interfaces and addresses.
    pub fn interfaces(&self) -> &Interfaces {
        &self.ifaces
    }

    /// Add an interface.
    pub fn add_interface(&mut self, name: &str) -> Result<(), NodeError> {
        Ok(self.ifaces.add(name)?)
    }

    /// Add `addr/prefix` to an interface (`ip addr add`).
    pub fn add_address(&mut self, iface: &str, addr: IpAddr, prefix: u8) -> Result<(), NodeError> {
        Ok(self.ifaces.add_addr(iface, addr, prefix)?)
    }

    /// Remove an address from an interface; returns whether it was there.
    pub fn del_address(&mut self, iface: &str, addr: IpAddr) -> Result<bool, NodeError> {
        Ok(self.ifaces.del_addr(iface, addr)?)
    }

    /// Whether `addr` is one of the node's addresses (or loopback).
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.ifaces.is_local(addr)
    }

    /// Static routes.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Add a static route (`ip route add`).
    pub fn add_route(&mut self, route: Route) -> Result<(), NodeError> {
        Ok(self.routes.add(route, &self.ifaces)?)
    }

    /// The routing decision for `dst`.
    pub fn route(&self, dst: IpAddr) -> RouteResult {
        self.routes.lookup(dst, &self.ifaces)
    }

    /// The iptables ruleset of a family.
    pub fn iptables(&self, family: Family) -> &Ruleset {
        &self.iptables[fam_index(family)]
    }

    /// The iptables ruleset of a family, to change directly.
    pub fn iptables_mut(&mut self, family: Family) -> &mut Ruleset {
        &mut self.iptables[fam_index(family)]
    }

    /// `iptables-restore` into a family's ruleset, checking `-m set` and
    /// `-m nfacct` references against the node's objects like the kernel.
    pub fn restore(
        &mut self,
        family: Family,
        text: &str,
        mode: RestoreMode,
    ) -> Result<(), NodeError> {
        let objects = Objects(&self.ipsets, &self.state.nfacct);
        let opts = RestoreOptions {
            mode,
            counters: false,
            objects: Some(&objects),
        };
        self.iptables[fam_index(family)]
            .restore_with(text, &opts)
            .map_err(|error| NodeError::Restore { family, error })?;
        self.hooks.refresh_iptables(&self.iptables);
        Ok(())
    }

    /// The ipsets.
    pub fn ipsets(&self) -> &IpSets {
        &self.ipsets
    }

    /// The ipsets, to change.
    pub fn ipsets_mut(&mut self) -> &mut IpSets {
        &mut self.ipsets
    }

    /// The conntrack table.
    pub fn conntrack(&self) -> &Conntrack {
        &self.state.conntrack
    }

    /// The conntrack table, to change (deletions, tunables).
    pub fn conntrack_mut(&mut self) -> &mut Conntrack {
        &mut self.state.conntrack
    }

    /// The `recent` tables.
    pub fn recent(&self) -> &RecentTables {
        &self.state.recent
    }

    /// The `recent` tables, to change.
    pub fn recent_mut(&mut self) -> &mut RecentTables {
        &mut self.state.recent
    }

    /// Create an nfacct counter (`nfacct add NAME`); no-op if it exists.
    pub fn nfacct_add(&mut self, name: &str) {
        self.state.nfacct.entry(name.to_string()).or_default();
    }

    /// The nfacct counters.
    pub fn nfacct(&self) -> &BTreeMap<String, Counters> {
        &self.state.nfacct
    }

    /// The sysctls.
    pub fn sysctls(&self) -> Sysctls {
        self.sysctls
    }

    /// Set a sysctl by name: `net.ipv4.ip_forward`,
    /// `net.ipv4.conf.all.route_localnet`, or any conntrack tunable
    /// (`net.netfilter.nf_conntrack_*`). `/` separators work too.
    pub fn set_sysctl(&mut self, name: &str, value: i64) -> Result<(), NodeError> {
        let dotted = name.replace('/', ".");
        match dotted.as_str() {
            "net.ipv4.ip_forward" | "net.ipv6.conf.all.forwarding" => {
                self.sysctls.ip_forward = value != 0
            }
            "net.ipv4.conf.all.route_localnet" => self.sysctls.route_localnet = value != 0,
            vs if vs.starts_with("net.ipv4.vs.") => self.set_vs_sysctl(vs, value)?,
            _ => self
                .state
                .conntrack
                .config_mut()
                .set_sysctl(&dotted, value)?,
        }
        Ok(())
    }

    /// Record rule-by-rule traces in every [`Processed`] from now on.
    pub fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Process a packet arriving on interface `iface` at `now`.
    pub fn receive(
        &mut self,
        pkt: Packet,
        iface: &str,
        now: Instant,
    ) -> Result<Processed, NodeError> {
        if self.ifaces.get(iface).is_none() {
            return Err(IfaceError::NoSuchInterface { name: iface.into() }.into());
        }
        self.process(pkt, Some(iface), now)
    }

    /// Process a packet generated by a local process at `now`.
    pub fn send(&mut self, pkt: Packet, now: Instant) -> Result<Processed, NodeError> {
        self.process(pkt, None, now)
    }

    fn process(
        &mut self,
        pkt: Packet,
        iface: Option<&str>,
        now: Instant,
    ) -> Result<Processed, NodeError> {
        let tracing = self.tracing;
        self.hooks.refresh_iptables(&self.iptables);
        let (out, hits) = {
            let k = path::Kernel {
                name: &self.name,
                ifaces: &self.ifaces,
                routes: &self.routes,
                iptables: &self.iptables,
                nftables: &self.nftables,
                hooks: &self.hooks,
                sets: &self.ipsets,
                sysctls: &self.sysctls,
            };
            let mut run = path::Run::new(k, &mut self.state, None, tracing, now);
            let out = run.packet(pkt, iface);
            (out, run.take_hits())
        };
        for (fam, hit) in hits {
            path::count_hit(&mut self.iptables[fam_index(fam)], &hit);
        }
        let effects = std::mem::take(&mut self.state.nft_effects);
        if !effects.is_empty() {
            self.nftables.apply_effects(effects);
        }
        out.map_err(|error| NodeError::Eval {
            node: self.name.clone(),
            error,
        })
    }

    /// Process a packet once per combination of random rule outcomes, each
    /// time on a copy of the node's state (nothing here changes, counters
    /// included). `iface`: arriving on it; `None`: locally generated.
    pub fn explore(
        &self,
        pkt: &Packet,
        iface: Option<&str>,
        now: Instant,
        explorer: Explorer,
    ) -> Result<Explored<Processed>, NodeError> {
        let mut failure = None;
        let explored = explorer.run(|choices| {
            let mut state = self.state.clone();
            let k = path::Kernel {
                name: &self.name,
                ifaces: &self.ifaces,
                routes: &self.routes,
                iptables: &self.iptables,
                nftables: &self.nftables,
                hooks: &self.hooks,
                sets: &self.ipsets,
                sysctls: &self.sysctls,
            };
            let mut run = path::Run::new(k, &mut state, Some(choices), self.tracing, now);
            match run.packet(pkt.clone(), iface) {
                Ok(p) => Some(p),
                Err(e) => {
                    failure.get_or_insert(e);
                    None
                }
            }
        });
        if let Some(error) = failure {
            return Err(NodeError::Eval {
                node: self.name.clone(),
                error,
            });
        }
        Ok(Explored {
            runs: explored
                .runs
                .into_iter()
                .filter_map(|(p, d)| p.map(|p| (p, d)))
                .collect(),
            complete: explored.complete,
        })
    }

    /// `iptables-save` of a family.
    pub fn iptables_save(&self, family: Family) -> String {
        self.iptables(family).save()
    }

    /// `ipset list` with reference counts from the rulesets.
    pub fn ipset_list(&self, name: Option<&str>) -> String {
        let refs = |set: &str| self.ipset_references(set);
        self.ipsets.list(name, &refs)
    }
}

//! iptables mode (upstream `pkg/proxy/iptables`).
//!
//! [`Proxier`] owns the change tracker for one IP family and, at each sync,
//! writes one `iptables-restore` payload (`*filter` then `*nat`) through the
//! [`Iptables`] trait, byte-identical to upstream's for the same input —
//! except that services are written in name order where upstream's order is
//! random. Full syncs also ensure the jump rules from the built-in chains;
//! partial syncs rewrite only the chains of services that changed. Stale
//! per-service chains are found with `iptables-save` and deleted with `-X`.
//!
//! **Invariant:** the proxier only talks to the kernel through
//! [`crate::dataplane::Kernel`], and never reads the wall clock.

pub(crate) mod buffer;
pub mod jumps;
pub mod names;
mod service_rules;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::changes::{ApplyResult, Tracker};
use crate::clock::Timestamp;
use crate::config::Config;
use crate::dataplane::{chains_in_save, DataplaneError, Kernel, RestoreFlags, Table};
use crate::k8s::IpFamily;
use crate::local_detect::LocalDetector;
use crate::node::NodeInfo;
use crate::nodeport_addresses::NodePortAddresses;
use crate::watch::WatchState;
use buffer::{line, LineBuffer};
use names::*;

/// Above this many endpoints, comments are dropped from endpoint rules and
/// stale-chain cleanup runs at most once per sync period.
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;
/// A full sync happens at least this often.
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// nfacct counter for packets dropped as conntrack-INVALID.
pub const NFACCT_CT_STATE_INVALID_DROPPED: &str = "ct_state_invalid_dropped_pkts";
/// nfacct counter for accepted localhost NodePort packets.
pub const NFACCT_LOCALHOST_NODEPORT_ACCEPTED: &str = "localhost_nps_accepted_pkts";

const SYSCTL_ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";
const SYSCTL_TCP_BE_LIBERAL: &str = "net/netfilter/nf_conntrack_tcp_be_liberal";

/// Upstream's `computeProbability(n)`: Go's `%0.10f` of 1/n (both round
/// the exact binary value half-to-even).
pub fn compute_probability(n: usize) -> String {
    if n == 0 {
        return "<bad value>".to_string();
    }
    format!("{:.10}", 1.0 / n as f64)
}

/// Settings fixed at start-up (upstream's `NewProxier` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub masquerade_all: bool,
    /// The mark text written into rules, e.g. `0x00004000`.
    pub masquerade_mark: String,
    pub localhost_node_ports: bool,
    pub local_detector: Option<LocalDetector>,
    pub node_port_addresses: NodePortAddresses,
    pub sync_period: Duration,
}

impl Options {
    /// Options for `family` from a configuration, as upstream's
    /// `NewDualStackProxier` derives them (IPv6 never gets localhost NodePorts).
    pub fn from_config(config: &Config, family: IpFamily, node: &NodeInfo) -> Self {
        let node_port_addresses =
            NodePortAddresses::new(family, &config.node_port_addresses, node.primary_ip(family));
        let localhost_node_ports = config.localhost_node_ports
            && family == IpFamily::V4
            && node_port_addresses.contains_ipv4_loopback();
        Options {
            masquerade_all: config.masquerade_all,
            masquerade_mark: config.masquerade_mark(),
            localhost_node_ports,
            local_detector: LocalDetector::new(&config.detect_local(family, &node.pod_cidrs)),
            node_port_addresses,
            sync_period: config.sync_period,
        }
    }
}

/// Figures from the last sync (upstream's `sync_proxy_rules_iptables_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub full: bool,
    pub services: usize,
    pub endpoints: usize,
    pub filter_chains: usize,
    pub filter_rules: usize,
    pub nat_chains: usize,
    /// NAT rule lines written in this payload (including `-X` lines).
    pub nat_rules_written: usize,
    /// NAT rules in the kernel after this sync (upstream's
    /// `sync_proxy_rules_iptables_total{table="nat"}`).
    pub nat_rules_total: usize,
    pub deleted_chains: usize,
    pub large_cluster_mode: bool,
}

/// The iptables proxier for one IP family.
#[derive(Debug, Clone)]
pub struct Proxier {
    family: IpFamily,
    watch: WatchState,
    options: Options,
    conntrack_tcp_liberal: bool,
    /// Which nfacct counters exist (only rules for existing ones are written).
    nfacct_counters: BTreeMap<&'static str, bool>,
    last_full_sync: Option<Timestamp>,
    last_cleanup: Option<Timestamp>,
    large_cluster_mode: bool,
    probabilities: Vec<String>,
    last_stats: SyncStats,
}

impl Proxier {
    /// Creates the proxier, setting the sysctls upstream sets at start-up.
    pub fn new(
        family: IpFamily,
        node: NodeInfo,
        options: Options,
        kernel: &mut dyn Kernel,
    ) -> Result<Self, DataplaneError> {
        if options.localhost_node_ports {
            // NodePorts on 127.0.0.1 need route_localnet (issue 90259); the
            // KUBE-FIREWALL rule below closes the hole it opens.
            if kernel.sysctl().get(SYSCTL_ROUTE_LOCALNET).ok() != Some(1) {
                kernel.sysctl().set(SYSCTL_ROUTE_LOCALNET, 1)?;
            }
        }
        let conntrack_tcp_liberal =
            matches!(kernel.sysctl().get(SYSCTL_TCP_BE_LIBERAL), Ok(v) if v != 0);
        // The canary chains upstream's iptables monitor creates and watches.
        for table in [Table::Mangle, Table::Nat, Table::Filter] {
            kernel
                .iptables(family)
                .ensure_chain(table, KUBE_PROXY_CANARY)?;
        }
        Ok(Proxier {
            family,
            watch: WatchState::new(family, node),
            options,
            conntrack_tcp_liberal,
            nfacct_counters: [
                (NFACCT_CT_STATE_INVALID_DROPPED, false),
                (NFACCT_LOCALHOST_NODEPORT_ACCEPTED, false),
            ]
            .into_iter()
            .collect(),
            last_full_sync: None,
            last_cleanup: None,
            large_cluster_mode: false,
            probabilities: Vec::new(),
            last_stats: SyncStats::default(),
        })
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Sets when stale chains were last cleaned up. Upstream's tests poke
    /// this field to exercise large-cluster mode's cleanup throttle; the
    /// replay of those tests does the same.
    pub fn set_last_cleanup(&mut self, at: Option<Timestamp>) {
        self.last_cleanup = at;
    }

    pub fn tracker(&self) -> &Tracker {
        &self.watch.tracker
    }

    pub fn last_stats(&self) -> &SyncStats {
        &self.last_stats
    }

    /// Makes `probability(n)` available for every `n <= max` (upstream
    /// precomputes them too: formatting floats is slow).
    fn precompute_probabilities(&mut self, max: usize) {
        while self.probabilities.len() <= max {
            let p = compute_probability(self.probabilities.len());
            self.probabilities.push(p);
        }
    }

    /// The `--probability` text for picking 1 of `n` endpoints.
    fn probability(&self, n: usize) -> &str {
        &self.probabilities[n]
    }

    /// One sync (upstream's `syncProxyRules`). Does nothing until
    /// [`initialized`](Self::initialized). On error the next sync is full.
    pub fn sync(
        &mut self,
        now: Timestamp,
        kernel: &mut dyn Kernel,
    ) -> Result<SyncStats, DataplaneError> {
        if !self.watch.initialized() {
            return Ok(SyncStats::default());
        }
        let full = self.watch.need_full_sync
            || self
                .last_full_sync
                .is_none_or(|t| now.since(t) > FULL_SYNC_PERIOD);
        let changes = self.watch.tracker.apply();
        match self.sync_inner(now, full, &changes, kernel) {
            Ok(stats) => {
                self.watch.need_full_sync = false;
                if full {
                    self.last_full_sync = Some(now);
                }
                self.last_stats = stats.clone();
                Ok(stats)
            }
            Err(e) => {
                // The changes are folded in already; only a full sync can
                // bring the kernel back in line.
                self.watch.need_full_sync = true;
                Err(e)
            }
        }
    }

    fn sync_inner(
        &mut self,
        now: Timestamp,
        full: bool,
        changes: &ApplyResult,
        kernel: &mut dyn Kernel,
    ) -> Result<SyncStats, DataplaneError> {
        if full {
            jumps::ensure(kernel.iptables(self.family))?;
            for (name, present) in self.nfacct_counters.iter_mut() {
                *present = kernel.nfacct().ensure(name).is_ok();
            }
        }

        let mut out = Payload::default();
        let mark = self.options.masquerade_mark.clone();
        for chain in [
            KUBE_SERVICES,
            KUBE_EXTERNAL_SERVICES,
            KUBE_FORWARD,
            KUBE_NODEPORTS,
            KUBE_PROXY_FIREWALL,
        ] {
            out.filter_chains.chain(chain);
        }
        for chain in [
            KUBE_SERVICES,
            KUBE_NODEPORTS,
            KUBE_POSTROUTING,
            KUBE_MARK_MASQ,
        ] {
            out.nat_chains.chain(chain);
        }
        line!(
            out.nat_rules,
            "-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN"
        );
        // Clear the mark so a re-traversing packet is not masqueraded twice.
        line!(
            out.nat_rules,
            "-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}"
        );
        let random_fully = if kernel.iptables(self.family).has_random_fully() {
            " --random-fully"
        } else {
            ""
        };
        line!(
            out.nat_rules,
            "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{random_fully}"
        );
        line!(
            out.nat_rules,
            "-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}"
        );

        let is_ipv6 = self.family == IpFamily::V6;
        if !is_ipv6 && self.options.localhost_node_ports {
            // Mitigates the route_localnet hole (issue 90259); kubelet writes
            // the same rule.
            out.filter_chains.chain(KUBE_FIREWALL);
            line!(
                out.filter_rules,
                "-A {KUBE_FIREWALL} -m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
            );
        }

        let total_endpoints: usize = self
            .watch
            .tracker
            .service_ports()
            .keys()
            .map(|k| self.watch.tracker.endpoints(k).len())
            .sum();
        self.large_cluster_mode = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;

        let max_endpoints = self
            .watch
            .tracker
            .all_endpoints()
            .values()
            .map(Vec::len)
            .max()
            .unwrap_or(0);
        self.precompute_probabilities(max_endpoints);

        // Collected unsorted and sorted once: a set would compare strings on
        // every insert, and this holds a name per endpoint.
        let mut active_nat_chains: Vec<String> = Vec::new();
        let mut skipped = Payload::discarding();
        for (name, svc) in self.watch.tracker.service_ports() {
            let rewrite = full || changes.touches(&name.service);
            self.write_service(
                name,
                svc,
                rewrite,
                &mut out,
                &mut skipped,
                &mut active_nat_chains,
            );
        }
        active_nat_chains.sort_unstable();

        // Delete stale service chains. iptables-save is slow on big hosts, so
        // large clusters do it at most once per sync period.
        let mut deleted_chains = 0;
        let cleanup_due = self
            .last_cleanup
            .is_none_or(|t| now.since(t) > self.options.sync_period);
        if !self.large_cluster_mode || cleanup_due {
            let save = kernel.iptables(self.family).save(Table::Nat)?;
            let mut stale: Vec<String> = chains_in_save(&save)
                .into_iter()
                .filter(|c| is_service_chain(c) && active_nat_chains.binary_search(c).is_err())
                .collect();
            stale.sort();
            stale.dedup();
            for chain in &stale {
                // A chain line flushes it, which -X requires.
                out.nat_chains.chain(chain);
                line!(out.nat_rules, "-X {chain}");
                deleted_chains += 1;
            }
            self.last_cleanup = Some(now);
        }

        self.write_nodeports_jump(&mut out);

        if !self.conntrack_tcp_liberal {
            // INVALID packets would otherwise reach the pod un-NATed and
            // reset the connection (issues 74839, 117924).
            let nfacct = if self.nfacct_counters[NFACCT_CT_STATE_INVALID_DROPPED] {
                format!(" -m nfacct --nfacct-name {NFACCT_CT_STATE_INVALID_DROPPED}")
            } else {
                String::new()
            };
            line!(
                out.filter_rules,
                "-A {KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j DROP"
            );
        }
        line!(
            out.filter_rules,
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
        );
        line!(
            out.filter_rules,
            "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );

        let payload = out.render();
        kernel
            .iptables(self.family)
            .restore_all(&payload, RestoreFlags::KUBE_PROXY)?;

        if changes.conntrack_cleanup_required {
            crate::conntrack_cleanup::clean_stale_entries(&self.watch.tracker, kernel.conntrack())?;
        }

        Ok(SyncStats {
            full,
            services: self.watch.tracker.service_ports().len(),
            endpoints: total_endpoints,
            filter_chains: out.filter_chains.lines(),
            filter_rules: out.filter_rules.lines(),
            nat_chains: out.nat_chains.lines(),
            nat_rules_written: out.nat_rules.lines(),
            nat_rules_total: out.nat_rules.lines() + skipped.nat_rules.lines() - deleted_chains,
            deleted_chains,
            large_cluster_mode: self.large_cluster_mode,
        })
    }

    /// The "must be the last rule" jump from KUBE-SERVICES to KUBE-NODEPORTS.
    fn write_nodeports_jump(&self, out: &mut Payload) {
        const COMMENT: &str =
            "\"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
        let is_ipv6 = self.family == IpFamily::V6;
        if self.options.node_port_addresses.match_all() {
            // Localhost NodePorts never work on IPv6, and on IPv4 only with
            // route_localnet.
            let exclude = if is_ipv6 {
                " ! -d ::1/128"
            } else if !self.options.localhost_node_ports {
                " ! -d 127.0.0.0/8"
            } else {
                ""
            };
            line!(
                out.nat_rules,
                "-A {KUBE_SERVICES} -m comment --comment {COMMENT} -m addrtype --dst-type LOCAL{exclude} -j {KUBE_NODEPORTS}"
            );
            return;
        }
        for ip in self
            .options
            .node_port_addresses
            .node_ips(&self.watch.node.interface_addresses)
        {
            if ip.is_loopback() && (is_ipv6 || !self.options.localhost_node_ports) {
                continue;
            }
            line!(
                out.nat_rules,
                "-A {KUBE_SERVICES} -m comment --comment {COMMENT} -d {ip} -j {KUBE_NODEPORTS}"
            );
        }
    }

    fn node_ip(&self) -> Option<IpAddr> {
        self.watch.node.primary_ip(self.family)
    }
}

/// The four sections of a restore payload.
#[derive(Debug, Default)]
struct Payload {
    filter_chains: LineBuffer,
    filter_rules: LineBuffer,
    nat_chains: LineBuffer,
    nat_rules: LineBuffer,
}

impl Payload {
    fn discarding() -> Self {
        Payload {
            filter_chains: LineBuffer::discarding(),
            filter_rules: LineBuffer::discarding(),
            nat_chains: LineBuffer::discarding(),
            nat_rules: LineBuffer::discarding(),
        }
    }

    fn render(&self) -> String {
        let mut s = String::with_capacity(
            self.filter_chains.text().len()
                + self.filter_rules.text().len()
                + self.nat_chains.text().len()
                + self.nat_rules.text().len()
                + 32,
        );
        s.push_str("*filter\n");
        s.push_str(self.filter_chains.text());
        s.push_str(self.filter_rules.text());
        s.push_str("COMMIT\n*nat\n");
        s.push_str(self.nat_chains.text());
        s.push_str(self.nat_rules.text());
        s.push_str("COMMIT\n");
        s
    }
}

impl crate::provider::Provider for Proxier {
    fn mode(&self) -> &'static str {
        "iptables"
    }
    fn watch(&self) -> &WatchState {
        &self.watch
    }
    fn watch_mut(&mut self) -> &mut WatchState {
        &mut self.watch
    }
    fn sync(
        &mut self,
        now: Timestamp,
        kernel: &mut dyn Kernel,
    ) -> Result<crate::provider::SyncSummary, DataplaneError> {
        let stats = Proxier::sync(self, now, kernel)?;
        Ok(crate::provider::SyncSummary {
            full: stats.full,
            services: stats.services,
            endpoints: stats.endpoints,
            rules_written: stats.filter_rules + stats.nat_rules_written,
            ..Default::default()
        })
    }
}

//! IPVS mode (upstream `pkg/proxy/ipvs`, v1.33-era `proxier.go`).
//!
//! Per sync, [`Proxier`] makes the kernel hold: the `kube-ipvs0` dummy
//! device with every ClusterIP, external IP and load-balancer IP bound; one
//! IPVS virtual server per (ClusterIP, port, protocol), per external IP, per
//! LB IP and per (node address, NodePort), persistent with the affinity
//! timeout under ClientIP affinity; real servers = the endpoints the traffic
//! policy selects, weight 1; upstream's ipsets with exactly upstream's
//! entries; and the helper iptables rules (`rules.rs`) in one restore
//! payload. It reconciles like upstream — adds, updates and deletes only
//! what differs, removes stale virtual servers and addresses — and drains
//! removed TCP destinations ([`graceful`]) on the caller's clock. Every sync
//! is full: IPVS mode has no partial sync.
//!
//! Where upstream iterates Go maps (services, node addresses), kpsim uses
//! name and address order, so the result never depends on chance; state and
//! payload are otherwise upstream's byte for byte.
//!
//! **Invariant:** talks to the kernel only through [`crate::dataplane::Kernel`]
//! (ipvs, ipset, addresses, iptables, sysctl, conntrack); never reads the
//! wall clock; never prints.
//!
//! **Errors:** a failure that stops upstream's sync (the dummy device, an
//! ipset, iptables-restore) is returned as `Err`; failures upstream only logs
//! are collected in [`SyncStats::warnings`].

pub mod dump;
pub mod graceful;
mod ipsets;
pub mod names;
mod rules;
mod services;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::changes::Tracker;
use crate::clock::Timestamp;
use crate::config::Config;
use crate::dataplane::{DataplaneError, Kernel, RestoreFlags};
use crate::k8s::IpFamily;
use crate::local_detect::LocalDetector;
use crate::node::NodeInfo;
use crate::nodeport_addresses::NodePortAddresses;
use crate::watch::WatchState;
pub use graceful::{unique_rs_name, GracefulTermination, RS_CHECK_DELETE_INTERVAL};
use ipsets::IpSet;
use names::{IPSET_INFO, KUBE_IPVS_IPS};

/// The dummy device service addresses are bound to.
pub const DEFAULT_DUMMY_DEVICE: &str = "kube-ipvs0";
/// The scheduler when `ipvs.scheduler` is empty.
pub const DEFAULT_SCHEDULER: &str = "rr";

const SYSCTL_VS_CONNTRACK: &str = "net/ipv4/vs/conntrack";
const SYSCTL_EXPIRE_NODEST_CONN: &str = "net/ipv4/vs/expire_nodest_conn";
const SYSCTL_EXPIRE_QUIESCENT_TEMPLATE: &str = "net/ipv4/vs/expire_quiescent_template";
const SYSCTL_FORWARD: &str = "net/ipv4/ip_forward";
const SYSCTL_ARP_IGNORE: &str = "net/ipv4/conf/all/arp_ignore";
const SYSCTL_ARP_ANNOUNCE: &str = "net/ipv4/conf/all/arp_announce";

/// Settings fixed at start-up (upstream's `NewProxier` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub masquerade_all: bool,
    /// The mark text written into rules, e.g. `0x00004000`.
    pub masquerade_mark: String,
    pub local_detector: Option<LocalDetector>,
    pub node_port_addresses: NodePortAddresses,
    pub scheduler: String,
    /// Virtual servers in these ranges are never deleted (not kube-proxy's).
    pub exclude_cidrs: Vec<IpNet>,
    pub strict_arp: bool,
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub udp_timeout: Duration,
}

impl Options {
    /// Options for `family` from a configuration (upstream's
    /// `NewDualStackProxier` filtering the exclude CIDRs by family).
    pub fn from_config(config: &Config, family: IpFamily, node: &NodeInfo) -> Self {
        let scheduler = if config.ipvs.scheduler.is_empty() {
            DEFAULT_SCHEDULER.to_string()
        } else {
            config.ipvs.scheduler.clone()
        };
        Options {
            masquerade_all: config.masquerade_all,
            masquerade_mark: config.masquerade_mark(),
            local_detector: LocalDetector::new(&config.detect_local(family, &node.pod_cidrs)),
            node_port_addresses: NodePortAddresses::new(
                family,
                &config.node_port_addresses,
                node.primary_ip(family),
            ),
            scheduler,
            exclude_cidrs: config
                .ipvs
                .exclude_cidrs
                .iter()
                .filter(|c| IpFamily::of(&c.addr()) == family)
                .copied()
                .collect(),
            strict_arp: config.ipvs.strict_arp,
            tcp_timeout: config.ipvs.tcp_timeout,
            tcp_fin_timeout: config.ipvs.tcp_fin_timeout,
            udp_timeout: config.ipvs.udp_timeout,
        }
    }
}

/// Figures from the last sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub services: usize,
    pub endpoints: usize,
    /// Virtual servers this sync made active.
    pub virtual_servers: usize,
    /// Addresses wanted on the dummy device.
    pub bound_addresses: usize,
    /// Rule lines in the restore payload, per table.
    pub nat_rules: usize,
    pub filter_rules: usize,
    /// Upstream's `sync_proxy_rules_no_endpoints_total{traffic_policy=…}`.
    pub no_local_endpoints_internal: usize,
    pub no_local_endpoints_external: usize,
    /// What failed without stopping the sync (upstream logs these).
    pub warnings: Vec<DataplaneError>,
}

/// The IPVS proxier for one IP family.
#[derive(Debug, Clone)]
pub struct Proxier {
    family: IpFamily,
    watch: WatchState,
    options: Options,
    /// kube-proxy's sets by their base (IPv4) name.
    ipsets: BTreeMap<&'static str, IpSet>,
    graceful: GracefulTermination,
    /// The first sync after start resets weights of existing destinations.
    initial_sync: bool,
    last_payload: String,
    last_stats: SyncStats,
    /// What `new` tolerated (refused IPVS timeouts), reported with the
    /// first sync's warnings.
    startup_warnings: Vec<DataplaneError>,
}

/// Upstream's `proxyutil.EnsureSysctl`.
fn ensure_sysctl(kernel: &mut dyn Kernel, name: &str, value: i64) -> Result<(), DataplaneError> {
    if kernel.sysctl().get(name).ok() != Some(value) {
        kernel.sysctl().set(name, value)?;
    }
    Ok(())
}

impl Proxier {
    /// Creates the proxier at `now`, setting the sysctls and IPVS timeouts
    /// upstream's `NewProxier` sets. (`conn_reuse_mode` is left alone, as
    /// upstream does on kernels 5.9 and newer.)
    pub fn new(
        family: IpFamily,
        node: NodeInfo,
        options: Options,
        kernel: &mut dyn Kernel,
        now: Timestamp,
    ) -> Result<Self, DataplaneError> {
        for name in [
            SYSCTL_VS_CONNTRACK,
            SYSCTL_EXPIRE_NODEST_CONN,
            SYSCTL_EXPIRE_QUIESCENT_TEMPLATE,
            SYSCTL_FORWARD,
        ] {
            ensure_sysctl(kernel, name, 1)?;
        }
        if options.strict_arp {
            ensure_sysctl(kernel, SYSCTL_ARP_IGNORE, 1)?;
            ensure_sysctl(kernel, SYSCTL_ARP_ANNOUNCE, 2)?;
        }
        let mut warnings = Vec::new();
        let timeouts = [
            options.tcp_timeout,
            options.tcp_fin_timeout,
            options.udp_timeout,
        ];
        if timeouts.iter().any(|t| !t.is_zero()) {
            if let Err(e) = kernel
                .ipvs()
                .configure_timeouts(timeouts[0], timeouts[1], timeouts[2])
            {
                warnings.push(e);
            }
        }
        let ipsets = IPSET_INFO
            .iter()
            .map(|info| (info.name, IpSet::new(info, family)))
            .collect();
        Ok(Proxier {
            family,
            watch: WatchState::new(family, node),
            options,
            ipsets,
            graceful: GracefulTermination::new(now),
            initial_sync: true,
            last_payload: String::new(),
            last_stats: SyncStats::default(),
            startup_warnings: warnings,
        })
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    pub fn tracker(&self) -> &Tracker {
        &self.watch.tracker
    }

    pub fn last_stats(&self) -> &SyncStats {
        &self.last_stats
    }

    /// The last iptables-restore payload written.
    pub fn last_payload(&self) -> &str {
        &self.last_payload
    }

    /// The draining destinations (see [`graceful`]).
    pub fn graceful(&self) -> &GracefulTermination {
        &self.graceful
    }

    /// When [`housekeeping`](Self::housekeeping) next has work.
    pub fn next_housekeeping(&self) -> Timestamp {
        self.graceful.next_check()
    }

    /// The periodic graceful-termination check (upstream's goroutine),
    /// when due at `now`; returns the failures.
    pub fn housekeeping(&mut self, now: Timestamp, kernel: &mut dyn Kernel) -> Vec<DataplaneError> {
        self.graceful.poll(now, kernel.ipvs())
    }

    /// One sync (upstream's `syncProxyRules`). Does nothing until
    /// [`initialized`](Self::initialized).
    pub fn sync(
        &mut self,
        _now: Timestamp,
        kernel: &mut dyn Kernel,
    ) -> Result<SyncStats, DataplaneError> {
        if !self.watch.initialized() {
            return Ok(SyncStats::default());
        }
        let changes = self.watch.tracker.apply();
        let result = self.sync_inner(kernel);
        // Upstream clears it however the first sync ends.
        self.initial_sync = false;
        let mut stats = result?;
        stats
            .warnings
            .splice(0..0, std::mem::take(&mut self.startup_warnings));
        if changes.conntrack_cleanup_required {
            if let Err(e) = crate::conntrack_cleanup::clean_stale_entries(
                &self.watch.tracker,
                kernel.conntrack(),
            ) {
                stats.warnings.push(e);
            }
        }
        self.last_stats = stats.clone();
        Ok(stats)
    }

    fn sync_inner(&mut self, kernel: &mut dyn Kernel) -> Result<SyncStats, DataplaneError> {
        let family = self.family;
        let mut out = rules::Payload::default();
        let mut state = services::SyncState::default();
        state.warnings.extend(rules::create_and_link_kube_chain(
            kernel.iptables(family),
            &mut out,
        ));

        kernel
            .addresses()
            .ensure_dummy_device(DEFAULT_DUMMY_DEVICE)?;
        for set in self.ipsets.values_mut() {
            set.ensure(kernel.ipset())?;
            set.active.clear();
        }

        match kernel
            .addresses()
            .get_local_addresses(family, DEFAULT_DUMMY_DEVICE)
        {
            Ok(bound) => state.already_bound = Some(bound),
            Err(e) => state.warnings.push(e),
        }
        // Every address except those on the dummy device.
        match kernel
            .addresses()
            .get_all_local_addresses_except(family, DEFAULT_DUMMY_DEVICE)
        {
            Ok(addrs) => state.node_address_set = addrs,
            Err(e) => state.warnings.push(e),
        }
        let has_node_port = self
            .watch
            .tracker
            .service_ports()
            .values()
            .any(|s| s.node_port != 0);
        if has_node_port {
            state.node_ips = if self.options.node_port_addresses.match_all() {
                state.node_address_set.iter().copied().collect()
            } else {
                self.options
                    .node_port_addresses
                    .node_ips(&self.watch.node.interface_addresses)
                    .into_iter()
                    .filter(|ip| !ip.is_loopback())
                    .collect()
            };
        }

        let mut sync = services::ServiceSync {
            family,
            tracker: &self.watch.tracker,
            node: &self.watch.node,
            options: &self.options,
            initial_sync: self.initial_sync,
            ipsets: &mut self.ipsets,
            graceful: &mut self.graceful,
            state: &mut state,
        };
        for (name, svc) in self.watch.tracker.service_ports() {
            sync.sync_service_port(name, svc, kernel);
        }

        let ipvs_ips = self.ipsets.get_mut(KUBE_IPVS_IPS).expect("all sets exist");
        ipvs_ips.active = state.active_bind.iter().map(IpAddr::to_string).collect();
        for set in self.ipsets.values() {
            state.warnings.extend(set.sync_entries(kernel.ipset()));
        }

        let random_fully = kernel.iptables(family).has_random_fully();
        rules::write_iptables_rules(
            &rules::RuleInputs {
                family,
                sets: &self.ipsets,
                masquerade_all: self.options.masquerade_all,
                local_detector: self.options.local_detector.as_ref(),
                masquerade_mark: &self.options.masquerade_mark,
                random_fully,
                lb_no_node_access: &state.lb_no_node_access,
            },
            &mut out,
        );
        let payload = out.render();
        kernel
            .iptables(family)
            .restore_all(&payload, RestoreFlags::KUBE_PROXY)?;
        self.last_payload = payload;

        // Remove addresses no service uses any more.
        if let Some(bound) = &state.already_bound {
            for addr in bound.difference(&state.active_bind) {
                if let Err(e) = kernel
                    .addresses()
                    .unbind_address(*addr, DEFAULT_DUMMY_DEVICE)
                {
                    state.warnings.push(e);
                }
            }
        }
        services::clean_legacy_services(
            family,
            &self.options.exclude_cidrs,
            &state.active_services,
            kernel.ipvs(),
            &mut state.warnings,
        );

        Ok(SyncStats {
            services: self.watch.tracker.service_ports().len(),
            endpoints: self
                .watch
                .tracker
                .all_endpoints()
                .values()
                .map(Vec::len)
                .sum(),
            virtual_servers: state.active_services.len(),
            bound_addresses: state.active_bind.len(),
            nat_rules: out.nat_rules.lines(),
            filter_rules: out.filter_rules.lines(),
            no_local_endpoints_internal: state.no_local_internal.len(),
            no_local_endpoints_external: state.no_local_external.len(),
            warnings: state.warnings,
        })
    }
}

impl crate::provider::Provider for Proxier {
    fn mode(&self) -> &'static str {
        "ipvs"
    }
    fn watch(&self) -> &WatchState {
        &self.watch
    }
    fn watch_mut(&mut self) -> &mut WatchState {
        &mut self.watch
    }
    fn force_full_sync(&mut self) {
        // Every IPVS sync is full.
    }
    fn sync(
        &mut self,
        now: Timestamp,
        kernel: &mut dyn Kernel,
    ) -> Result<crate::provider::SyncSummary, DataplaneError> {
        let stats = Proxier::sync(self, now, kernel)?;
        Ok(crate::provider::SyncSummary {
            full: true,
            services: stats.services,
            endpoints: stats.endpoints,
            rules_written: stats.nat_rules + stats.filter_rules,
            warnings: stats.warnings,
        })
    }
    fn next_housekeeping(&self) -> Option<Timestamp> {
        Some(Proxier::next_housekeeping(self))
    }
    fn housekeeping(
        &mut self,
        now: Timestamp,
        kernel: &mut dyn Kernel,
    ) -> Result<(), DataplaneError> {
        match Proxier::housekeeping(self, now, kernel).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

//! nftables mode (upstream `pkg/proxy/nftables`, the v1.34-era proxier; see
//! `tests/fixtures/upstream/nftables/README.md` for the exact version).
//!
//! [`Proxier`] owns the change tracker for one IP family and writes the
//! `kube-proxy` table (family `ip` or `ip6`) through the
//! [`Nftables`](crate::dataplane::Nftables) trait: one `nft -f` transaction
//! per sync, byte-identical to the one upstream's knftables-based proxier
//! writes for the same input — except that services are written in name
//! order where upstream's order is random. Full syncs (the first one, after
//! an error, after a node-label change, or when forced) also write the table
//! skeleton; partial syncs rewrite only the chains of services that changed
//! and diff set/map elements against what was written before. Stale service
//! chains are flushed at once and deleted (in a transaction of their own)
//! once they have been stale for more than a second; stale affinity sets are
//! deleted at once. The kernel's current objects are learnt from
//! `nft list table` output.
//!
//! **Invariants:** the proxier only talks to the kernel through
//! [`Kernel`], never reads the wall clock (time comes in as a
//! [`Timestamp`]) and iterates only ordered collections. Errors are the
//! dataplane's [`DataplaneError`]; after one the next sync is full.

mod elements;
pub mod listing;
pub mod names;
mod service_rules;
mod setup;
pub mod tx;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ipnet::IpNet;

use crate::changes::Tracker;
use crate::clock::Timestamp;
use crate::config::Config;
use crate::dataplane::{DataplaneError, Kernel};
use crate::k8s::IpFamily;
use crate::local_detect::LocalDetector;
use crate::node::NodeInfo;
use crate::nodeport_addresses::NodePortAddresses;
use crate::watch::WatchState;
use elements::ElementStorage;
use listing::Listing;
use names::*;
use tx::Transaction;

/// A stale chain is deleted once it has been stale for longer than this.
pub const STALE_CHAIN_DELETE_AFTER: Duration = Duration::from_secs(1);

/// Settings fixed at start-up (upstream's `NewProxier` arguments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub masquerade_all: bool,
    /// The mark text written into rules, e.g. `0x00004000`.
    pub masquerade_mark: String,
    pub local_detector: Option<LocalDetector>,
    pub node_port_addresses: NodePortAddresses,
    pub sync_period: Duration,
}

impl Options {
    /// Options for `family` from a configuration (its `nftables.*` settings
    /// and nftables' `nodePortAddresses` default, `primary`).
    pub fn from_config(config: &Config, family: IpFamily, node: &NodeInfo) -> Self {
        Options {
            masquerade_all: config.masquerade_all,
            masquerade_mark: config.masquerade_mark(),
            local_detector: LocalDetector::new(&config.detect_local(family, &node.pod_cidrs)),
            node_port_addresses: NodePortAddresses::new(
                family,
                &config.node_port_addresses,
                node.primary_ip(family),
            ),
            sync_period: config.sync_period,
        }
    }
}

/// Figures from the last sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    pub full: bool,
    pub services: usize,
    pub endpoints: usize,
    /// Operations in the sync's main transaction (knftables'
    /// `NumOperations`).
    pub operations: usize,
    /// Stale chains deleted (in a transaction of their own) before it.
    pub stale_chains_deleted: usize,
    /// Upstream's `sync_proxy_rules_no_local_endpoints_total{internal}`.
    pub no_local_endpoints_internal: usize,
    /// … and `{external}`.
    pub no_local_endpoints_external: usize,
}

/// The nftables proxier for one IP family.
#[derive(Debug, Clone)]
pub struct Proxier {
    family: IpFamily,
    watch: WatchState,
    options: Options,
    /// Comma-joined ServiceCIDRs of this family, as upstream keeps them.
    service_cidrs: String,
    /// Whether the base chains were re-created once (upstream's `flushed`).
    flushed: bool,
    stale_chains: BTreeMap<String, Timestamp>,
    cluster_ips: ElementStorage,
    service_ips: ElementStorage,
    firewall_ips: ElementStorage,
    no_endpoint_services: ElementStorage,
    no_endpoint_nodeports: ElementStorage,
    service_nodeports: ElementStorage,
    last_stats: SyncStats,
    last_transaction: String,
}

impl Proxier {
    /// Creates the proxier. Nothing is written until the first sync.
    pub fn new(family: IpFamily, node: NodeInfo, options: Options) -> Self {
        Proxier {
            family,
            watch: WatchState::new(family, node),
            options,
            service_cidrs: String::new(),
            flushed: false,
            stale_chains: BTreeMap::new(),
            cluster_ips: ElementStorage::set(CLUSTER_IPS_SET),
            service_ips: ElementStorage::map(SERVICE_IPS_MAP),
            firewall_ips: ElementStorage::map(FIREWALL_IPS_MAP),
            no_endpoint_services: ElementStorage::map(NO_ENDPOINT_SERVICES_MAP),
            no_endpoint_nodeports: ElementStorage::map(NO_ENDPOINT_NODEPORTS_MAP),
            service_nodeports: ElementStorage::map(SERVICE_NODEPORTS_MAP),
            last_stats: SyncStats::default(),
            last_transaction: String::new(),
        }
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// `ip` or `ip6`: the nftables family of the table.
    pub fn nft_family(&self) -> &'static str {
        self.ip_x()
    }

    /// The complete list of ServiceCIDRs changed (upstream's
    /// `OnServiceCIDRsChanged`): keeps this family's, in the order given.
    /// Like upstream, the drop rule for unallocated ClusterIPs is rewritten
    /// at the next full sync. Returns whether anything changed.
    pub fn on_service_cidrs(&mut self, cidrs: Vec<IpNet>) -> bool {
        let joined = cidrs
            .iter()
            .filter(|c| IpFamily::of(&c.addr()) == self.family)
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let changed = joined != self.service_cidrs;
        self.service_cidrs = joined;
        changed
    }

    /// The ServiceCIDRs in use, comma-joined.
    pub fn service_cidrs(&self) -> &str {
        &self.service_cidrs
    }

    pub fn tracker(&self) -> &Tracker {
        &self.watch.tracker
    }

    pub fn last_stats(&self) -> &SyncStats {
        &self.last_stats
    }

    /// The last main transaction written (empty before the first sync).
    pub fn last_transaction(&self) -> &str {
        &self.last_transaction
    }

    /// Chains flushed and waiting to be deleted, with when they went stale.
    pub fn stale_chains(&self) -> &BTreeMap<String, Timestamp> {
        &self.stale_chains
    }

    fn storages_mut(&mut self) -> [&mut ElementStorage; 6] {
        [
            &mut self.cluster_ips,
            &mut self.service_ips,
            &mut self.firewall_ips,
            &mut self.no_endpoint_services,
            &mut self.no_endpoint_nodeports,
            &mut self.service_nodeports,
        ]
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
        let mut full = self.watch.need_full_sync;
        let changes = self.watch.tracker.apply();
        let family = self.ip_x();

        // Chains that have been stale long enough go first, on their own:
        // kernels before 6.2 notice only a moment later that a map element
        // no longer points at a chain.
        let due: Vec<String> = self
            .stale_chains
            .iter()
            .filter(|(_, t)| now.since(**t) > STALE_CHAIN_DELETE_AFTER)
            .map(|(c, _)| c.clone())
            .collect();
        if !due.is_empty() {
            let mut tx = Transaction::new(family, KUBE_PROXY_TABLE);
            for chain in &due {
                tx.delete(tx::chain(chain));
                self.stale_chains.remove(chain);
            }
            if kernel.nftables().run(&tx.render()).is_err() {
                // Still-existing chains become stale again below.
                full = true;
            }
        }

        let listing: Result<Option<Listing>, ()> =
            match kernel.nftables().list_table(family, KUBE_PROXY_TABLE) {
                Ok(None) => Ok(None),
                Ok(Some(text)) => listing::parse(&text).map(Some).map_err(|_| ()),
                Err(_) => Err(()),
            };

        let listing_ref: Result<Option<&Listing>, ()> = match &listing {
            Ok(l) => Ok(l.as_ref()),
            Err(()) => Err(()),
        };
        let result = self.write_and_run(now, full, &changes, listing_ref, kernel);
        match result {
            Ok(mut stats) => {
                self.watch.need_full_sync = false;
                stats.stale_chains_deleted = due.len();
                if changes.conntrack_cleanup_required {
                    crate::conntrack_cleanup::clean_stale_entries(
                        &self.watch.tracker,
                        kernel.conntrack(),
                    )?;
                }
                self.last_stats = stats.clone();
                Ok(stats)
            }
            Err(e) => {
                // The changes are folded in already; only a full sync can
                // bring the kernel back in line. The flushes recorded as
                // stale never happened.
                self.watch.need_full_sync = true;
                self.stale_chains.clear();
                Err(e)
            }
        }
    }

    fn write_and_run(
        &mut self,
        now: Timestamp,
        full: bool,
        changes: &crate::changes::ApplyResult,
        listing: Result<Option<&Listing>, ()>,
        kernel: &mut dyn Kernel,
    ) -> Result<SyncStats, DataplaneError> {
        let mut tx = Transaction::new(self.ip_x(), KUBE_PROXY_TABLE);
        if full {
            self.setup(&mut tx, listing);
        }
        let existing = listing.ok().flatten();

        let mut ctx = service_rules::SyncContext {
            full,
            changes,
            existing,
            active_chains: BTreeSet::new(),
            active_affinity_sets: BTreeSet::new(),
            no_local_internal: 0,
            no_local_external: 0,
        };
        let ports: Vec<_> = self.watch.tracker.service_ports().keys().cloned().collect();
        let total_endpoints: usize = ports
            .iter()
            .map(|p| self.watch.tracker.endpoints(p).len())
            .sum();
        for name in &ports {
            self.write_service(&mut tx, name, &mut ctx);
        }

        if let Some(existing) = existing {
            for chain in existing.chains.iter().filter(|c| is_service_chain_name(c)) {
                if ctx.active_chains.contains(chain) {
                    self.stale_chains.remove(chain);
                } else {
                    tx.flush(tx::chain(chain));
                    self.stale_chains.insert(chain.clone(), now);
                }
            }
            for set in existing.sets.iter().filter(|s| is_affinity_set_name(s)) {
                if !ctx.active_affinity_sets.contains(set) {
                    tx.delete(tx::set_named(set));
                }
            }
        }
        for storage in self.storages_mut() {
            storage.cleanup_leftover(&mut tx);
        }

        let text = tx.render();
        kernel.nftables().run(&text)?;
        self.last_transaction = text;
        Ok(SyncStats {
            full,
            services: ports.len(),
            endpoints: total_endpoints,
            operations: tx.num_operations(),
            stale_chains_deleted: 0,
            no_local_endpoints_internal: ctx.no_local_internal,
            no_local_endpoints_external: ctx.no_local_external,
        })
    }
}

#[cfg(test)]
mod tests;

impl crate::provider::Provider for Proxier {
    fn mode(&self) -> &'static str {
        "nftables"
    }
    fn watch(&self) -> &WatchState {
        &self.watch
    }
    fn watch_mut(&mut self) -> &mut WatchState {
        &mut self.watch
    }
    fn on_service_cidrs(&mut self, cidrs: Vec<IpNet>) -> bool {
        Proxier::on_service_cidrs(self, cidrs)
    }
    fn sync(
        &mut self,
        now: Timestamp,
        kernel: &mut dyn crate::dataplane::Kernel,
    ) -> Result<crate::provider::SyncSummary, crate::dataplane::DataplaneError> {
        let stats = Proxier::sync(self, now, kernel)?;
        Ok(crate::provider::SyncSummary {
            full: stats.full,
            services: stats.services,
            endpoints: stats.endpoints,
            rules_written: stats.operations,
            ..Default::default()
        })
    }
}

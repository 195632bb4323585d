//! One node's kube-proxy process during a run: a mode's proxier plus the
//! bounded-frequency runner that decides when it syncs.
//!
//! Start-up follows upstream: the informers deliver every object, then the
//! "synced" handlers run and the first sync happens at once, outside the
//! runner. After that, a watch event that changes something asks the runner
//! for a sync; the runner allows two back to back and then one per
//! `minSyncPeriod`, and at least one per hour. A failed sync is retried
//! after `syncPeriod` and makes the next one full. A restart throws this
//! value away and starts a new one: the kernel keeps its rules, the process
//! keeps nothing. Before its proxier exists, a starting kube-proxy removes
//! the other modes' rules as upstream's `platformCleanup` does (so a node
//! restarted in another mode switches cleanly).

use std::time::Duration;

use super::report::SyncReport;
use anyhow::Result;
use ipnet::IpNet;
use proxier::clock::Timestamp;
use proxier::config::{Config, Mode};
use proxier::dataplane::{DataplaneError, Kernel};
use proxier::iptables::{self, FULL_SYNC_PERIOD};
use proxier::k8s::{EndpointSlice, IpFamily, NamespacedName, Service};
use proxier::kernel::cleanup::{self as kcleanup, CleanupReport};
use proxier::node::NodeInfo;
use proxier::provider::{Provider, SyncSummary};
use proxier::sync_runner::SyncRunner;
use proxier::{ipvs, nftables};

/// Upstream's `burstSyncs`.
const BURST_SYNCS: u32 = 2;

/// A sync that happened, for the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecord {
    pub at: Timestamp,
    pub summary: Result<SyncSummary, DataplaneError>,
}

pub struct KubeProxy {
    proxier: Box<dyn Provider>,
    runner: SyncRunner,
    sync_period: Duration,
    pub syncs: Vec<SyncRecord>,
    /// What start-up removed of the other modes' rules.
    pub cleanup: CleanupReport,
}

/// Upstream's `platformCleanup` at start-up: nftables mode removes what
/// the iptables-based modes left (their iptables chains and jump rules, in
/// both families); iptables and IPVS modes remove nftables mode's
/// `kube-proxy` tables. Best effort, as upstream: failures are collected,
/// not fatal. (Upstream's nftables mode also removes IPVS mode's virtual
/// servers, ipsets and `kube-ipvs0`; that part is not modelled here.)
fn platform_cleanup(mode: Mode, kernel: &mut dyn Kernel) -> CleanupReport {
    let mut report = CleanupReport::default();
    match mode {
        Mode::Nftables => {
            for family in [IpFamily::V4, IpFamily::V6] {
                kcleanup::iptables_leftovers(kernel.iptables(family), &mut report);
            }
        }
        Mode::Iptables | Mode::Ipvs => {
            kcleanup::nftables_leftovers(kernel.nftables(), &mut report);
        }
    }
    report
}

impl KubeProxy {
    /// Creates the mode's proxier on a node (which prepares the kernel:
    /// sysctls, canary chains). Call [`start`](Self::start) next.
    pub fn new(
        config: &Config,
        mode: Mode,
        family: IpFamily,
        node: NodeInfo,
        kernel: &mut dyn Kernel,
    ) -> Result<KubeProxy> {
        let now = Timestamp::ZERO;
        let cleanup = platform_cleanup(mode, kernel);
        let proxier: Box<dyn Provider> = match mode {
            Mode::Iptables => {
                let options = iptables::Options::from_config(config, family, &node);
                Box::new(iptables::Proxier::new(family, node, options, kernel)?)
            }
            Mode::Nftables => {
                let options = nftables::Options::from_config(config, family, &node);
                Box::new(nftables::Proxier::new(family, node, options))
            }
            Mode::Ipvs => {
                let options = ipvs::Options::from_config(config, family, &node);
                Box::new(ipvs::Proxier::new(family, node, options, kernel, now)?)
            }
        };
        Ok(KubeProxy {
            proxier,
            runner: SyncRunner::new(config.min_sync_period, FULL_SYNC_PERIOD, BURST_SYNCS),
            sync_period: config.sync_period,
            syncs: Vec::new(),
            cleanup,
        })
    }

    /// The informers' initial lists arrive, the first sync runs at once
    /// (upstream's `OnEndpointSlicesSynced` syncs directly, bypassing the
    /// runner), and the runner's loop starts.
    pub fn start(
        &mut self,
        services: &[Service],
        slices: &[EndpointSlice],
        service_cidrs: &[IpNet],
        now: Timestamp,
        kernel: &mut dyn Kernel,
    ) {
        self.proxier.on_service_cidrs(service_cidrs.to_vec());
        for s in services {
            self.proxier.on_service(&s.name, Some(s));
        }
        for s in slices {
            self.proxier.on_endpoint_slice(&s.name, Some(s));
        }
        self.proxier.on_services_synced();
        self.proxier.on_endpoint_slices_synced();
        self.sync_now(now, kernel);
        self.runner.start(now);
    }

    pub fn on_service(&mut self, name: &NamespacedName, service: Option<&Service>) {
        if self.proxier.on_service(name, service) {
            self.runner.run();
        }
    }

    pub fn on_endpoint_slice(&mut self, name: &NamespacedName, slice: Option<&EndpointSlice>) {
        if self.proxier.on_endpoint_slice(name, slice) {
            self.runner.run();
        }
    }

    /// When this kube-proxy next wants to run, if ever: the runner's next
    /// action or the mode's housekeeping (IPVS graceful termination).
    pub fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        [
            self.runner.next_wakeup(now),
            self.proxier.next_housekeeping(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Lets the runner and the housekeeping act at `now`.
    pub fn poll(&mut self, now: Timestamp, kernel: &mut dyn Kernel) {
        if self.proxier.next_housekeeping().is_some_and(|t| t <= now) {
            // Upstream only logs housekeeping failures.
            let _ = self.proxier.housekeeping(now, kernel);
        }
        if self.runner.poll(now) {
            self.sync_now(now, kernel);
            self.runner.ran(now);
        }
    }

    fn sync_now(&mut self, now: Timestamp, kernel: &mut dyn Kernel) {
        let result = self.proxier.sync(now, kernel);
        if result.is_err() {
            self.runner.retry_after(now, self.sync_period);
        }
        self.syncs.push(SyncRecord {
            at: now,
            summary: result,
        });
    }

    pub fn mode(&self) -> &'static str {
        self.proxier.mode()
    }

    /// The syncs from the `from`th on (none if `from` is past the end), as
    /// `node`'s report lines.
    pub fn sync_reports(&self, node: &str, from: usize) -> Vec<SyncReport> {
        let from = from.min(self.syncs.len());
        self.syncs[from..]
            .iter()
            .map(|rec| {
                let (kind, rules_written) = match &rec.summary {
                    Ok(s) => (
                        if s.full { "full" } else { "partial" }.to_string(),
                        s.rules_written,
                    ),
                    Err(e) => (format!("failed: {e}"), 0),
                };
                SyncReport {
                    node: node.to_string(),
                    at: sim::time::Instant::from_nanos(rec.at.0.as_nanos() as u64).to_string(),
                    kind,
                    rules_written,
                }
            })
            .collect()
    }
}

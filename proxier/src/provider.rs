//! What every mode's proxier offers its host (upstream's `proxy.Provider`):
//! watch-event handlers, the start-up "synced" signals, and the sync itself.
//!
//! The host (the scenario runner, or a real-node loop) owns the timing: it
//! feeds events, asks a [`crate::sync_runner::SyncRunner`] when to sync, and
//! passes the kernel and the current time into [`Provider::sync`].

use std::collections::BTreeMap;

use crate::clock::Timestamp;
use crate::dataplane::{DataplaneError, Kernel};
use crate::k8s::{EndpointSlice, NamespacedName, Service};
use crate::watch::WatchState;

/// The outcome of one sync, in terms common to every mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// Whether every chain/object was rewritten (not a partial sync).
    pub full: bool,
    /// Service ports known at this sync.
    pub services: usize,
    /// Endpoints known at this sync.
    pub endpoints: usize,
    /// Rules (or rule lines) written to the kernel by this sync.
    pub rules_written: usize,
    /// What failed without stopping the sync (upstream logs these; IPVS
    /// mode's refused virtual servers or set entries, for instance).
    pub warnings: Vec<DataplaneError>,
}

pub trait Provider {
    /// The mode's name (`iptables`, `ipvs`, `nftables`).
    fn mode(&self) -> &'static str;
    /// The state every mode keeps between syncs.
    fn watch(&self) -> &WatchState;
    fn watch_mut(&mut self) -> &mut WatchState;

    /// A Service was added/updated (`Some`) or deleted (`None`); returns
    /// whether a sync is wanted.
    fn on_service(&mut self, name: &NamespacedName, service: Option<&Service>) -> bool {
        self.watch_mut().on_service(name, service)
    }
    /// An EndpointSlice was added/updated or deleted; returns whether a sync
    /// is wanted.
    fn on_endpoint_slice(&mut self, name: &NamespacedName, slice: Option<&EndpointSlice>) -> bool {
        self.watch_mut().on_endpoint_slice(name, slice)
    }
    /// This node's labels; returns whether a sync is wanted.
    fn on_node_labels(&mut self, labels: BTreeMap<String, String>) -> bool {
        self.watch_mut().on_node_labels(labels)
    }
    /// The cluster's service CIDRs (from ServiceCIDR objects); returns
    /// whether a sync is wanted. Only nftables mode uses them.
    fn on_service_cidrs(&mut self, _cidrs: Vec<ipnet::IpNet>) -> bool {
        false
    }
    /// The initial Service list has been delivered.
    fn on_services_synced(&mut self) {
        self.watch_mut().on_services_synced()
    }
    /// The initial EndpointSlice list has been delivered.
    fn on_endpoint_slices_synced(&mut self) {
        self.watch_mut().on_endpoint_slices_synced()
    }
    /// Both initial lists are in; syncs may run.
    fn initialized(&self) -> bool {
        self.watch().initialized()
    }
    /// The next sync must rewrite everything (upstream does this when its
    /// canary chain disappears).
    fn force_full_sync(&mut self) {
        self.watch_mut().need_full_sync = true;
    }
    /// One sync; does nothing until [`initialized`](Provider::initialized);
    /// on error the next one is full.
    fn sync(
        &mut self,
        now: Timestamp,
        kernel: &mut dyn Kernel,
    ) -> Result<SyncSummary, DataplaneError>;
    /// When the mode next needs [`Provider::housekeeping`], if ever (IPVS:
    /// its graceful-termination check, once a minute).
    fn next_housekeeping(&self) -> Option<Timestamp> {
        None
    }
    /// Periodic work outside syncs, due at [`Provider::next_housekeeping`];
    /// returns the first failure.
    fn housekeeping(
        &mut self,
        _now: Timestamp,
        _kernel: &mut dyn Kernel,
    ) -> Result<(), DataplaneError> {
        Ok(())
    }
}

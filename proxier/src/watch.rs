//! What every mode's proxier keeps between syncs, whatever its dataplane:
//! the change tracker, the node it runs on, whether the informers' initial
//! lists have arrived (upstream's `isInitialized`), and whether the next
//! sync must rewrite everything.
//!
//! The watch-event handlers live here once; [`crate::provider::Provider`]'s
//! default methods call them, so a mode only writes its sync.

use std::collections::BTreeMap;

use crate::changes::Tracker;
use crate::k8s::{EndpointSlice, IpFamily, NamespacedName, Service};
use crate::node::NodeInfo;

#[derive(Debug, Clone)]
pub struct WatchState {
    pub tracker: Tracker,
    pub node: NodeInfo,
    services_synced: bool,
    slices_synced: bool,
    /// The next sync must rewrite everything (set at start-up, after a
    /// failed sync, when the node's labels change, or when forced).
    pub need_full_sync: bool,
}

impl WatchState {
    pub fn new(family: IpFamily, node: NodeInfo) -> Self {
        WatchState {
            tracker: Tracker::new(family, &node.name),
            node,
            services_synced: false,
            slices_synced: false,
            need_full_sync: true,
        }
    }

    /// A service was added, updated or deleted (`None`). Returns whether a
    /// sync is wanted.
    pub fn on_service(&mut self, name: &NamespacedName, service: Option<&Service>) -> bool {
        self.tracker.on_service(name, service) && self.initialized()
    }

    /// An EndpointSlice was added, updated or deleted (`None`).
    pub fn on_endpoint_slice(
        &mut self,
        name: &NamespacedName,
        slice: Option<&EndpointSlice>,
    ) -> bool {
        self.tracker.on_endpoint_slice(name, slice) && self.initialized()
    }

    /// This node's labels changed: the next sync is full (topology may
    /// differ). Returns whether anything changed.
    pub fn on_node_labels(&mut self, labels: BTreeMap<String, String>) -> bool {
        if labels == self.node.labels {
            return false;
        }
        self.node.labels = labels;
        self.need_full_sync = true;
        true
    }

    /// The initial list of services has been delivered.
    pub fn on_services_synced(&mut self) {
        self.services_synced = true;
    }

    /// The initial list of EndpointSlices has been delivered.
    pub fn on_endpoint_slices_synced(&mut self) {
        self.slices_synced = true;
    }

    /// Both initial lists are in; syncs may run.
    pub fn initialized(&self) -> bool {
        self.services_synced && self.slices_synced
    }
}

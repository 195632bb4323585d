//! Change tracking between syncs (upstream `ServiceChangeTracker`,
//! `EndpointsChangeTracker`, `ServicePortMap.Update`, `EndpointsMap.Update`).
//!
//! Watch events ([`Tracker::on_service`], [`Tracker::on_endpoint_slice`])
//! only record the newest object. At sync time [`Tracker::apply`] recomputes
//! the service ports and endpoints of every touched service, compares them
//! with what the last sync used, and reports the services whose rules really
//! changed — an edit that is reverted before the sync, or that touches no
//! field kube-proxy uses, changes nothing, exactly as upstream drops no-op
//! changes. All maps are ordered, so iteration never reaches output in an
//! unspecified order.

use std::collections::{BTreeMap, BTreeSet};

use crate::endpoints::{merge_slices, Endpoint};
use crate::k8s::{AddressType, EndpointSlice, IpFamily, NamespacedName, Protocol, Service};
use crate::service_port::{service_ports, ServicePort, ServicePortName};

/// What changed at one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyResult {
    /// Services whose ports changed (added, removed or edited).
    pub updated_services: BTreeSet<NamespacedName>,
    /// Services whose endpoints changed.
    pub updated_endpoints: BTreeSet<NamespacedName>,
    /// Whether stale UDP conntrack entries may now exist (the slices of a
    /// service with a UDP port changed): upstream's `ConntrackCleanupRequired`.
    pub conntrack_cleanup_required: bool,
}

impl ApplyResult {
    /// Whether the rules of `service` must be rewritten at a partial sync.
    pub fn touches(&self, service: &NamespacedName) -> bool {
        self.updated_services.contains(service) || self.updated_endpoints.contains(service)
    }
}

/// The proxier's view of the cluster for one IP family, and what changed
/// since the last sync.
#[derive(Debug, Clone)]
pub struct Tracker {
    family: IpFamily,
    node_name: String,
    services: BTreeMap<NamespacedName, Service>,
    /// Slices by their own name.
    slices: BTreeMap<NamespacedName, EndpointSlice>,
    /// Slice names by the service they belong to.
    slices_of_service: BTreeMap<NamespacedName, BTreeSet<NamespacedName>>,
    pending_services: BTreeSet<NamespacedName>,
    pending_endpoints: BTreeSet<NamespacedName>,
    /// What the last sync used.
    service_ports: BTreeMap<ServicePortName, ServicePort>,
    endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
}

impl Tracker {
    pub fn new(family: IpFamily, node_name: impl Into<String>) -> Self {
        Tracker {
            family,
            node_name: node_name.into(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            slices_of_service: BTreeMap::new(),
            pending_services: BTreeSet::new(),
            pending_endpoints: BTreeSet::new(),
            service_ports: BTreeMap::new(),
            endpoints: BTreeMap::new(),
        }
    }

    pub fn family(&self) -> IpFamily {
        self.family
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// A service was added or updated (`Some`) or deleted (`None` with its
    /// name). Returns whether any change is now pending.
    pub fn on_service(&mut self, name: &NamespacedName, service: Option<&Service>) -> bool {
        let service = service.filter(|s| !hidden_from_kube_proxy(&s.labels));
        let changed = match service {
            Some(s) => self.services.insert(name.clone(), s.clone()).as_ref() != Some(s),
            None => self.services.remove(name).is_some(),
        };
        if changed {
            self.pending_services.insert(name.clone());
        }
        self.has_pending()
    }

    /// An EndpointSlice was added or updated (`Some`) or deleted (`None`).
    /// Slices without a `kubernetes.io/service-name` label are ignored, as
    /// upstream ignores them. Returns whether any change is now pending.
    pub fn on_endpoint_slice(
        &mut self,
        name: &NamespacedName,
        slice: Option<&EndpointSlice>,
    ) -> bool {
        let old_service = self.slices.get(name).and_then(owning_service);
        let changed = match slice {
            Some(s) if !self.accepts(s) => return self.has_pending(),
            Some(s) if owning_service(s).is_some() && !hidden_from_kube_proxy(&s.labels) => {
                self.slices.insert(name.clone(), s.clone()).as_ref() != Some(s)
            }
            Some(_) | None => self.slices.remove(name).is_some(),
        };
        if changed {
            if let Some(old) = &old_service {
                if let Some(set) = self.slices_of_service.get_mut(old) {
                    set.remove(name);
                    if set.is_empty() {
                        self.slices_of_service.remove(old);
                    }
                }
            }
            let new_service = self.slices.get(name).and_then(owning_service);
            if let Some(new) = &new_service {
                self.slices_of_service
                    .entry(new.clone())
                    .or_default()
                    .insert(name.clone());
            }
            self.pending_endpoints
                .extend(old_service.into_iter().chain(new_service));
        }
        self.has_pending()
    }

    /// Upstream's tracker ignores slices of another address type outright.
    fn accepts(&self, slice: &EndpointSlice) -> bool {
        matches!(
            (slice.address_type, self.family),
            (AddressType::IPv4, IpFamily::V4) | (AddressType::IPv6, IpFamily::V6)
        )
    }

    pub fn has_pending(&self) -> bool {
        !self.pending_services.is_empty() || !self.pending_endpoints.is_empty()
    }

    /// Folds the pending changes into the synced view and reports what
    /// changed (upstream's `svcPortMap.Update` + `endpointsMap.Update`).
    pub fn apply(&mut self) -> ApplyResult {
        let mut result = ApplyResult::default();

        for name in std::mem::take(&mut self.pending_services) {
            let new_ports: BTreeMap<ServicePortName, ServicePort> = self
                .services
                .get(&name)
                .map(|s| service_ports(s, self.family))
                .unwrap_or_default()
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect();
            let old_ports = take_service(&mut self.service_ports, &name);
            if old_ports != new_ports {
                result.updated_services.insert(name.clone());
            }
            self.service_ports.extend(new_ports);
        }

        for service in std::mem::take(&mut self.pending_endpoints) {
            let slices = self
                .slices_of_service
                .get(&service)
                .into_iter()
                .flatten()
                .filter_map(|n| self.slices.get(n));
            let new_eps = merge_slices(&service, slices, self.family, &self.node_name);
            let old_eps = take_service(&mut self.endpoints, &service);
            // Upstream reports every service whose slices changed, even when
            // the merged endpoints come out the same.
            result.updated_endpoints.insert(service.clone());
            let udp = old_eps
                .keys()
                .chain(new_eps.keys())
                .any(|k| k.protocol == Protocol::Udp);
            result.conntrack_cleanup_required |= udp;
            self.endpoints.extend(new_eps);
        }
        result
    }

    /// The synced service ports, ordered by name.
    pub fn service_ports(&self) -> &BTreeMap<ServicePortName, ServicePort> {
        &self.service_ports
    }

    /// The synced endpoints of a service port (sorted by `ip:port`).
    pub fn endpoints(&self, port: &ServicePortName) -> &[Endpoint] {
        self.endpoints.get(port).map(Vec::as_slice).unwrap_or(&[])
    }

    /// All synced endpoints.
    pub fn all_endpoints(&self) -> &BTreeMap<ServicePortName, Vec<Endpoint>> {
        &self.endpoints
    }

    /// Marks every known service pending, e.g. after the node's identity or
    /// labels changed.
    pub fn mark_all_pending(&mut self) {
        self.pending_services.extend(self.services.keys().cloned());
        self.pending_endpoints
            .extend(self.slices.values().filter_map(owning_service));
    }
}

/// kube-proxy's informers select objects *without* these labels; objects
/// carrying either are invisible to it (as if deleted).
fn hidden_from_kube_proxy(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key("service.kubernetes.io/service-proxy-name")
        || labels.contains_key("service.kubernetes.io/headless")
}

fn owning_service(slice: &EndpointSlice) -> Option<NamespacedName> {
    slice
        .service_name
        .as_ref()
        .map(|svc| NamespacedName::new(&slice.name.namespace, svc))
}

/// Removes and returns every entry of `map` belonging to `service`.
fn take_service<V>(
    map: &mut BTreeMap<ServicePortName, V>,
    service: &NamespacedName,
) -> BTreeMap<ServicePortName, V> {
    // Keys sort by service first, so one service's ports are contiguous.
    let first = ServicePortName {
        service: service.clone(),
        port: String::new(),
        protocol: Protocol::Tcp,
    };
    let keys: Vec<ServicePortName> = map
        .range(first..)
        .map(|(k, _)| k)
        .take_while(|k| &k.service == service)
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|k| map.remove(&k).map(|v| (k, v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::load_str;

    fn objects(yaml: &str) -> crate::k8s::Manifests {
        load_str("test", yaml).unwrap()
    }

    const SVC: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec: {clusterIP: 10.96.0.1, selector: {app: web}, ports: [{name: http, port: 80}]}\n";
    const SLICE: &str = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, namespace: ns, resourceVersion: '1', labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1], nodeName: n1}]\nports: [{name: http, port: 8080}]\n";

    #[test]
    fn a_change_reverted_before_the_sync_changes_nothing() {
        let m = objects(SVC);
        let svc = &m.services[0];
        let mut t = Tracker::new(IpFamily::V4, "n1");
        t.on_service(&svc.name, Some(svc));
        assert_eq!(t.apply().updated_services.len(), 1);
        t.on_service(&svc.name, None);
        t.on_service(&svc.name, Some(svc));
        assert!(t.apply().updated_services.is_empty());
    }

    #[test]
    fn fields_kube_proxy_ignores_are_no_ops() {
        let m = objects(SVC);
        let mut t = Tracker::new(IpFamily::V4, "n1");
        t.on_service(&m.services[0].name, Some(&m.services[0]));
        t.apply();
        let edited = objects(&SVC.replace("{app: web}", "{app: web2}"));
        t.on_service(&edited.services[0].name, Some(&edited.services[0]));
        assert!(t.apply().updated_services.is_empty());
        let ported = objects(&SVC.replace("port: 80", "port: 81"));
        t.on_service(&ported.services[0].name, Some(&ported.services[0]));
        assert_eq!(t.apply().updated_services.len(), 1);
    }

    #[test]
    fn any_real_slice_update_marks_the_service_like_upstream() {
        let mut t = Tracker::new(IpFamily::V4, "n1");
        let m = objects(SLICE);
        let slice = &m.endpoint_slices[0];
        assert!(t.on_endpoint_slice(&slice.name, Some(slice)));
        let r = t.apply();
        assert!(r
            .updated_endpoints
            .contains(&NamespacedName::new("ns", "web")));
        assert!(!r.conntrack_cleanup_required, "TCP only");
        assert!(
            t.endpoints(&ServicePortName {
                service: NamespacedName::new("ns", "web"),
                port: "http".into(),
                protocol: Protocol::Tcp
            })[0]
                .is_local
        );
        // Redelivering the identical object is a no-op...
        assert!(!t.on_endpoint_slice(&slice.name, Some(slice)));
        // ...but a new resourceVersion with the same endpoints is a change.
        let bumped = objects(&SLICE.replace("resourceVersion: '1'", "resourceVersion: '2'"));
        assert!(t.on_endpoint_slice(&slice.name, Some(&bumped.endpoint_slices[0])));
        assert_eq!(t.apply().updated_endpoints.len(), 1);
    }

    #[test]
    fn slices_of_the_other_family_are_ignored() {
        let mut t = Tracker::new(IpFamily::V6, "n1");
        let m = objects(SLICE);
        assert!(!t.on_endpoint_slice(&m.endpoint_slices[0].name, Some(&m.endpoint_slices[0])));
        assert!(t.apply().updated_endpoints.is_empty());
    }

    #[test]
    fn udp_slice_changes_require_conntrack_cleanup() {
        let mut t = Tracker::new(IpFamily::V4, "n1");
        let m = objects(&SLICE.replace("port: 8080}", "port: 53, protocol: UDP}"));
        t.on_endpoint_slice(&m.endpoint_slices[0].name, Some(&m.endpoint_slices[0]));
        assert!(t.apply().conntrack_cleanup_required);
    }
}

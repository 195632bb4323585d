//! The per-service work of an IPVS sync (the body of upstream's service loop
//! in `syncProxyRules`, with `syncService`, `syncEndpoint` and
//! `cleanLegacyService`).
//!
//! For one service port: the ipset entries it contributes, its virtual
//! servers (ClusterIP, external IPs, LB IPs, NodePorts), the addresses they
//! need bound, and their real servers. Reconciliation reads the kernel
//! first and changes only what differs; removed destinations go through
//! [`GracefulTermination`]. Upstream's quirks are kept on purpose and noted
//! where they happen (a NodePort service on a node without NodePort
//! addresses gets no health-check entry; a draining destination whose
//! virtual server was deleted stays on the drain list).
//!
//! **Never:** touches a virtual server outside this proxier's family or
//! inside `excludeCIDRs` when cleaning up.
//!
//! **Errors:** kernel refusals are collected in [`SyncState::warnings`]; the
//! sync goes on, as upstream's does.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::graceful::{unique_rs_name, GracefulTermination};
use super::ipsets::IpSet;
use super::names::*;
use super::{Options, DEFAULT_DUMMY_DEVICE};
use crate::changes::Tracker;
use crate::dataplane::{
    DataplaneError, IpSetEntry, Ipvs, Kernel, RealServer, ServiceFlags, VirtualServer,
};
use crate::endpoints::Endpoint;
use crate::k8s::{IpFamily, NamespacedName, Protocol};
use crate::node::NodeInfo;
use crate::service_port::{ServicePort, ServicePortName};
use crate::topology::categorize_endpoints;

/// What one sync accumulates across services.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    pub warnings: Vec<DataplaneError>,
    /// Virtual servers made active, as `ip:port/PROTO`.
    pub active_services: BTreeSet<String>,
    /// Addresses wanted on the dummy device.
    pub active_bind: BTreeSet<IpAddr>,
    /// Addresses on the dummy device at the start (`None`: listing failed,
    /// so every bind is attempted).
    pub already_bound: Option<BTreeSet<IpAddr>>,
    /// Local addresses on every other device.
    pub node_address_set: BTreeSet<IpAddr>,
    /// Where NodePort virtual servers go.
    pub node_ips: Vec<IpAddr>,
    pub no_local_internal: BTreeSet<NamespacedName>,
    pub no_local_external: BTreeSet<NamespacedName>,
    pub lb_no_node_access: Vec<(IpAddr, Protocol, u16)>,
}

/// Disjoint borrows of the proxier for one sync.
pub(super) struct ServiceSync<'a> {
    pub family: IpFamily,
    pub tracker: &'a Tracker,
    pub node: &'a NodeInfo,
    pub options: &'a Options,
    pub initial_sync: bool,
    pub ipsets: &'a mut BTreeMap<&'static str, IpSet>,
    pub graceful: &'a mut GracefulTermination,
    pub state: &'a mut SyncState,
}

impl ServiceSync<'_> {
    fn set(&mut self, name: &str) -> &mut IpSet {
        self.ipsets.get_mut(name).expect("every set exists")
    }

    fn virtual_server(&self, address: IpAddr, port: u16, svc: &ServicePort) -> VirtualServer {
        let mut flags = ServiceFlags::NONE;
        let mut timeout = 0;
        if let Some(t) = svc.sticky_max_age_seconds() {
            flags = flags | ServiceFlags::PERSISTENT;
            timeout = t;
        }
        // The mh scheduler needs source-port hashing.
        if self.options.scheduler == "mh" {
            flags = flags | ServiceFlags::SOURCE_HASH;
        }
        VirtualServer {
            address,
            protocol: svc.protocol,
            port,
            scheduler: self.options.scheduler.clone(),
            flags,
            timeout,
        }
    }

    /// Creates or updates `vs`, binds its address if asked, then syncs its
    /// real servers.
    fn apply(
        &mut self,
        name: &ServicePortName,
        vs: VirtualServer,
        bind: bool,
        only_local: bool,
        kernel: &mut dyn Kernel,
    ) {
        match self.sync_service(&vs, bind, kernel) {
            Ok(()) => {
                self.state.active_services.insert(vs.to_string());
                if bind {
                    self.state.active_bind.insert(vs.address);
                }
                if let Err(e) = self.sync_endpoint(name, only_local, &vs, kernel.ipvs()) {
                    self.state.warnings.push(e);
                }
            }
            Err(e) => self.state.warnings.push(e),
        }
    }

    pub fn sync_service_port(
        &mut self,
        name: &ServicePortName,
        svc: &ServicePort,
        kernel: &mut dyn Kernel,
    ) {
        let proto = svc.protocol;
        // Hairpin: a local endpoint reaching itself through the service.
        for ep in self.tracker.endpoints(name).iter().filter(|e| e.is_local) {
            let entry = IpSetEntry::ip_port_ip(ep.ip, proto, ep.port, ep.ip);
            self.set(KUBE_LOOP_BACK).insert(&entry);
        }

        let entry = IpSetEntry::ip_port(svc.cluster_ip, proto, svc.port);
        if !self.set(KUBE_CLUSTER_IP).insert(&entry) {
            return;
        }
        let vs = self.virtual_server(svc.cluster_ip, svc.port, svc);
        self.apply(name, vs, true, svc.internal_policy_local, kernel);

        for &ip in &svc.external_ips {
            let entry = IpSetEntry::ip_port(ip, proto, svc.port);
            let set = if svc.external_policy_local {
                KUBE_EXTERNAL_IP_LOCAL
            } else {
                KUBE_EXTERNAL_IP
            };
            if !self.set(set).insert(&entry) {
                continue;
            }
            let vs = self.virtual_server(ip, svc.port, svc);
            // An address another interface owns is not bound again.
            let bind = !self.state.node_address_set.contains(&ip);
            self.apply(name, vs, bind, svc.external_policy_local, kernel);
        }

        for &ingress in &svc.load_balancer_vips {
            self.load_balancer_entries(ingress, svc);
            let vs = self.virtual_server(ingress, svc.port, svc);
            let bind = !self.state.node_address_set.contains(&ingress);
            self.apply(name, vs, bind, svc.external_policy_local, kernel);
        }

        if svc.node_port != 0 {
            if self.state.node_ips.is_empty() {
                // Upstream skips the rest of the service here, health check
                // node port included.
                return;
            }
            let entries: Vec<IpSetEntry> = match proto {
                Protocol::Sctp => self
                    .state
                    .node_ips
                    .iter()
                    .map(|ip| IpSetEntry::ip_port(*ip, proto, svc.node_port))
                    .collect(),
                _ => vec![IpSetEntry::port(proto, svc.node_port)],
            };
            let (set, local_set) = match proto {
                Protocol::Tcp => (KUBE_NODE_PORT_TCP, KUBE_NODE_PORT_LOCAL_TCP),
                Protocol::Udp => (KUBE_NODE_PORT_UDP, KUBE_NODE_PORT_LOCAL_UDP),
                Protocol::Sctp => (KUBE_NODE_PORT_SCTP, KUBE_NODE_PORT_LOCAL_SCTP),
            };
            if !entries.iter().all(|e| self.set(set).insert(e)) {
                return;
            }
            if svc.external_policy_local && !entries.iter().all(|e| self.set(local_set).insert(e)) {
                return;
            }
            for node_ip in self.state.node_ips.clone() {
                let vs = self.virtual_server(node_ip, svc.node_port, svc);
                self.apply(name, vs, false, svc.external_policy_local, kernel);
            }
        }

        if svc.health_check_node_port != 0 {
            let entry = IpSetEntry::port(Protocol::Tcp, svc.health_check_node_port);
            self.set(KUBE_HEALTH_CHECK_NODE_PORT).insert(&entry);
        }
    }

    /// The ipset entries of one LB VIP, and the node-access drop when the
    /// source ranges exclude the node.
    fn load_balancer_entries(&mut self, ingress: IpAddr, svc: &ServicePort) {
        let proto = svc.protocol;
        let entry = IpSetEntry::ip_port(ingress, proto, svc.port);
        if !self.set(KUBE_LOAD_BALANCER_SET).insert(&entry) {
            return;
        }
        if svc.external_policy_local && !self.set(KUBE_LOAD_BALANCER_LOCAL).insert(&entry) {
            return;
        }
        if svc.load_balancer_source_ranges.is_empty() {
            return;
        }
        if !self.set(KUBE_LOAD_BALANCER_FW).insert(&entry) {
            return;
        }
        let node_ip = self.node.primary_ip(self.family);
        let mut allow_from_node = false;
        for cidr in &svc.load_balancer_source_ranges {
            let entry = IpSetEntry::ip_port_net(ingress, proto, svc.port, *cidr);
            if !self.set(KUBE_LOAD_BALANCER_SOURCE_CIDR).insert(&entry) {
                continue;
            }
            allow_from_node |= node_ip.is_some_and(|ip| IpNet::contains(cidr, &ip));
        }
        if allow_from_node {
            // Traffic from the node to its own VIP has the VIP as source.
            let entry = IpSetEntry::ip_port_ip(ingress, proto, svc.port, ingress);
            self.set(KUBE_LOAD_BALANCER_SOURCE_IP).insert(&entry);
        } else {
            self.state
                .lb_no_node_access
                .push((ingress, proto, svc.port));
        }
    }

    /// Upstream's `syncService`: add or update the virtual server, then bind
    /// its address unless already bound.
    pub(super) fn sync_service(
        &mut self,
        vs: &VirtualServer,
        bind: bool,
        kernel: &mut dyn Kernel,
    ) -> Result<(), DataplaneError> {
        // Upstream ignores a failed lookup and tries to add.
        let applied = kernel.ipvs().get_virtual_server(vs).ok().flatten();
        match applied {
            None => kernel.ipvs().add_virtual_server(vs)?,
            Some(a) if a != *vs => kernel.ipvs().update_virtual_server(vs)?,
            Some(_) => {}
        }
        if bind {
            if self
                .state
                .already_bound
                .as_ref()
                .is_some_and(|b| b.contains(&vs.address))
            {
                return Ok(());
            }
            kernel
                .addresses()
                .ensure_address_bind(vs.address, DEFAULT_DUMMY_DEVICE)?;
        }
        Ok(())
    }

    /// The endpoints a virtual server should have (upstream's filtering in
    /// `syncEndpoint`), recording the no-local-endpoint metrics.
    fn wanted_endpoints(&mut self, name: &ServicePortName, only_local: bool) -> Vec<&Endpoint> {
        let endpoints = self.tracker.endpoints(name);
        let Some(svc) = self.tracker.service_ports().get(name) else {
            return endpoints.iter().collect();
        };
        let cat = categorize_endpoints(endpoints, svc, &self.node.labels);
        if !only_local {
            return cat.cluster;
        }
        if !cat.local.is_empty() {
            return cat.local;
        }
        // No local endpoint: still serve this node's pods (kubernetes PR
        // 97081); external clients get replies from a pod address and drop them.
        if cat.has_any && svc.internal_policy_local {
            self.state.no_local_internal.insert(name.service.clone());
        }
        if cat.has_any && svc.external_policy_local {
            self.state.no_local_external.insert(name.service.clone());
        }
        cat.cluster
    }

    /// Upstream's `syncEndpoint`: make the real servers of `vs` the wanted
    /// endpoints with weight 1, draining the ones that leave.
    fn sync_endpoint(
        &mut self,
        name: &ServicePortName,
        only_local: bool,
        vs: &VirtualServer,
        ipvs: &mut dyn Ipvs,
    ) -> Result<(), DataplaneError> {
        let applied = ipvs
            .get_virtual_server(vs)?
            .ok_or_else(|| DataplaneError::new("ipvs", "IPVS virtual service does not exist"))?;
        let current = ipvs.get_real_servers(&applied)?;
        let current_names: BTreeSet<String> = current.iter().map(RealServer::to_string).collect();
        let wanted: BTreeMap<String, RealServer> = self
            .wanted_endpoints(name, only_local)
            .into_iter()
            .map(|ep| (ep.to_string(), RealServer::new(ep.ip, ep.port, 1)))
            .collect();

        for (text, dest) in &wanted {
            if current_names.contains(text) {
                // After a restart, put back weights a previous run zeroed
                // (upstream updates this destination when any destination
                // has another weight; the resulting state is the same).
                if self.initial_sync && current.iter().any(|d| d.weight != dest.weight) {
                    if let Err(e) = ipvs.update_real_server(&applied, dest) {
                        self.state.warnings.push(e);
                        continue;
                    }
                }
                let unique = unique_rs_name(vs, dest);
                if !self.graceful.in_termination_list(&unique) {
                    continue;
                }
                // It came back while draining: delete it now, re-add below.
                if let Err(e) = self
                    .graceful
                    .move_rs_out_of_graceful_delete_list(&unique, ipvs)
                {
                    self.state.warnings.push(e);
                    continue;
                }
            }
            if let Err(e) = ipvs.add_real_server(&applied, dest) {
                self.state.warnings.push(e);
            }
        }

        for dest in current
            .iter()
            .filter(|d| !wanted.contains_key(&d.to_string()))
        {
            if self.graceful.in_termination_list(&unique_rs_name(vs, dest)) {
                continue;
            }
            let gone = RealServer::new(dest.address, dest.port, 0);
            if let Err(e) = self.graceful.graceful_delete_rs(ipvs, &applied, &gone) {
                self.state.warnings.push(e);
            }
        }
        Ok(())
    }
}

/// Upstream's `cleanLegacyService`: deletes the virtual servers of this
/// family that this sync did not make active, except in `exclude_cidrs`.
pub(super) fn clean_legacy_services(
    family: IpFamily,
    exclude_cidrs: &[IpNet],
    active: &BTreeSet<String>,
    ipvs: &mut dyn Ipvs,
    warnings: &mut Vec<DataplaneError>,
) {
    let current = match ipvs.get_virtual_servers() {
        Ok(list) => list,
        Err(e) => {
            warnings.push(e);
            return;
        }
    };
    let current: BTreeMap<String, VirtualServer> =
        current.into_iter().map(|vs| (vs.to_string(), vs)).collect();
    for (key, vs) in &current {
        if exclude_cidrs.iter().any(|c| c.contains(&vs.address)) {
            continue;
        }
        if IpFamily::of(&vs.address) != family {
            continue;
        }
        if !active.contains(key) {
            if let Err(e) = ipvs.delete_virtual_server(vs) {
                warnings.push(e);
            }
        }
    }
}

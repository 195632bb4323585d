//! The objects of one service port (the body of upstream's per-service loop
//! in `syncProxyRules`, and `writeServiceToEndpointRules`).
//!
//! Set and map elements (cluster IP, service IPs, NodePorts, no-endpoint
//! verdicts, firewall IPs) are ensured for every service at every sync, so
//! the element storages can diff them; the service's chains, rules and
//! affinity sets are written only when the service or its endpoints changed
//! (or the sync is full). Every rule string here is upstream's, byte for
//! byte. Builds operations only; never fails.

use std::collections::BTreeSet;

use super::listing::Listing;
use super::names::*;
use super::setup::{concat, ensure_chain};
use super::tx::{self, Element, Object, Transaction};
use super::Proxier;
use crate::changes::ApplyResult;
use crate::endpoints::Endpoint;
use crate::service_port::{ServicePort, ServicePortName};
use crate::topology::categorize_endpoints;

/// State shared by all services during one sync.
pub(super) struct SyncContext<'a> {
    pub full: bool,
    pub changes: &'a ApplyResult,
    /// What the kernel held before this sync, if it could be listed.
    pub existing: Option<&'a Listing>,
    pub active_chains: BTreeSet<String>,
    pub active_affinity_sets: BTreeSet<String>,
    pub no_local_internal: usize,
    pub no_local_external: usize,
}

fn elem(
    container: &str,
    key: Vec<String>,
    value: Option<String>,
    comment: Option<&str>,
) -> Element {
    Element {
        container: container.to_string(),
        key,
        value: value.into_iter().collect(),
        comment: comment.map(String::from),
    }
}

impl Proxier {
    pub(super) fn write_service(
        &mut self,
        tx: &mut Transaction,
        name: &ServicePortName,
        ctx: &mut SyncContext<'_>,
    ) {
        let svc = self.watch.tracker.service_ports()[name].clone();
        let endpoints = self.watch.tracker.endpoints(name).to_vec();
        let cat = categorize_endpoints(&endpoints, &svc, &self.watch.node.labels);
        let ip_x = self.ip_x();
        let proto = svc.protocol.lower();
        let svc_name = name.to_string();
        let chains = ServiceChains::new(name, proto);
        let port = svc.port.to_string();
        let affinity = svc.sticky_max_age_seconds().is_some();

        let skip_update = !ctx.full && !ctx.changes.touches(&name.service);

        // Endpoint chains in use. At a full sync, an endpoint chain that
        // already exists is left alone: its name fixes its content, except
        // for affinity, whose set's existence tells (a restart then rewrites
        // only what changed).
        let mut up_to_date = BTreeSet::new();
        for ep in &cat.all_reachable {
            let (chain, set) = endpoint_names(name, proto, &ep.to_string());
            let current = ctx.full
                && ctx.existing.is_some_and(|l| {
                    l.chains.contains(&chain) && l.sets.contains(&set) == affinity
                });
            if current {
                up_to_date.insert(chain.clone());
            }
            ensure_chain(&chain, tx, &mut ctx.active_chains, skip_update || current);
            if affinity {
                ctx.active_affinity_sets.insert(set);
            }
        }

        let uses_cluster_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
        if uses_cluster_chain {
            ensure_chain(&chains.cluster, tx, &mut ctx.active_chains, skip_update);
        }
        let uses_local_chain = !cat.local.is_empty() && svc.uses_local_endpoints();
        if uses_local_chain {
            ensure_chain(&chains.local, tx, &mut ctx.active_chains, skip_update);
        }

        let has_endpoints = cat.has_any;
        let mut internal_chain = chains.cluster.as_str();
        let mut has_internal = has_endpoints;
        if svc.internal_policy_local {
            internal_chain = &chains.local;
            has_internal &= !cat.local.is_empty();
        }
        let mut external_policy_chain = chains.cluster.as_str();
        let mut has_external = has_endpoints;
        if svc.external_policy_local {
            external_policy_chain = &chains.local;
            has_external &= !cat.local.is_empty();
        }
        let external_chain = chains.external.as_str();
        // Needed even without externally usable endpoints: it holds the
        // short-circuit rules for local traffic.
        let uses_external_chain = has_endpoints && svc.externally_accessible();
        if uses_external_chain {
            ensure_chain(external_chain, tx, &mut ctx.active_chains, skip_update);
        }

        let (internal_verdict, external_verdict) = if !has_endpoints {
            let reject = format!("goto {REJECT_CHAIN}");
            (reject.clone(), reject)
        } else {
            if !has_internal {
                ctx.no_local_internal += 1;
            }
            if !has_external {
                ctx.no_local_external += 1;
            }
            ("drop".to_string(), "drop".to_string())
        };

        // Capture the cluster IP.
        let cluster_ip = svc.cluster_ip.to_string();
        let key = |ip: &str| vec![ip.to_string(), proto.to_string(), port.clone()];
        self.cluster_ips.ensure(
            tx,
            elem(CLUSTER_IPS_SET, vec![cluster_ip.clone()], None, None),
        );
        if has_internal {
            self.service_ips.ensure(
                tx,
                elem(
                    SERVICE_IPS_MAP,
                    key(&cluster_ip),
                    Some(format!("goto {internal_chain}")),
                    None,
                ),
            );
        } else {
            self.no_endpoint_services.ensure(
                tx,
                elem(
                    NO_ENDPOINT_SERVICES_MAP,
                    key(&cluster_ip),
                    Some(internal_verdict.clone()),
                    Some(&svc_name),
                ),
            );
        }

        // Capture external IPs.
        for ip in svc.external_ips.iter().map(|ip| ip.to_string()) {
            if has_endpoints {
                self.service_ips.ensure(
                    tx,
                    elem(
                        SERVICE_IPS_MAP,
                        key(&ip),
                        Some(format!("goto {external_chain}")),
                        None,
                    ),
                );
            }
            if !has_external {
                self.no_endpoint_services.ensure(
                    tx,
                    elem(
                        NO_ENDPOINT_SERVICES_MAP,
                        key(&ip),
                        Some(external_verdict.clone()),
                        Some(&svc_name),
                    ),
                );
            }
        }

        let uses_fw_chain =
            !svc.load_balancer_vips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
        if uses_fw_chain {
            ensure_chain(&chains.firewall, tx, &mut ctx.active_chains, skip_update);
        }

        // Capture load-balancer ingress.
        for ip in svc.load_balancer_vips.iter().map(|ip| ip.to_string()) {
            if has_endpoints {
                self.service_ips.ensure(
                    tx,
                    elem(
                        SERVICE_IPS_MAP,
                        key(&ip),
                        Some(format!("goto {external_chain}")),
                        None,
                    ),
                );
            }
            if uses_fw_chain {
                self.firewall_ips.ensure(
                    tx,
                    elem(
                        FIREWALL_IPS_MAP,
                        key(&ip),
                        Some(format!("goto {}", chains.firewall)),
                        None,
                    ),
                );
            }
        }
        if !has_external {
            for ip in svc.load_balancer_vips.iter().map(|ip| ip.to_string()) {
                self.no_endpoint_services.ensure(
                    tx,
                    elem(
                        NO_ENDPOINT_SERVICES_MAP,
                        key(&ip),
                        Some(external_verdict.clone()),
                        Some(&svc_name),
                    ),
                );
            }
        }

        // Capture node ports (not subject to loadBalancerSourceRanges).
        if svc.node_port != 0 {
            let np_key = vec![proto.to_string(), svc.node_port.to_string()];
            if has_endpoints {
                self.service_nodeports.ensure(
                    tx,
                    elem(
                        SERVICE_NODEPORTS_MAP,
                        np_key.clone(),
                        Some(format!("goto {external_chain}")),
                        None,
                    ),
                );
            }
            if !has_external {
                self.no_endpoint_nodeports.ensure(
                    tx,
                    elem(
                        NO_ENDPOINT_NODEPORTS_MAP,
                        np_key,
                        Some(external_verdict.clone()),
                        Some(&svc_name),
                    ),
                );
            }
        }

        // Everything below is the service's own chains and sets.
        if skip_update {
            return;
        }

        // Off-cluster traffic to the cluster IP may bounce off-node:
        // masquerade it.
        if has_internal {
            if self.options.masquerade_all {
                tx.add(tx::rule(
                    internal_chain,
                    format!("{ip_x} daddr {cluster_ip} jump {MARK_MASQ_CHAIN}"),
                ));
            } else if let Some(d) = &self.options.local_detector {
                tx.add(tx::rule(
                    internal_chain,
                    format!(
                        "{ip_x} daddr {cluster_ip} {} jump {MARK_MASQ_CHAIN}",
                        d.if_not_local_nft()
                    ),
                ));
            }
        }

        if uses_external_chain {
            if !svc.external_policy_local {
                // Endpoints may be on other nodes: masquerade.
                tx.add(tx::rule(external_chain, format!("jump {MARK_MASQ_CHAIN}")));
            } else {
                if let Some(d) = &self.options.local_detector {
                    // Pod → external address behaves as if it went out to
                    // the load balancer and came back: no traffic policy.
                    tx.add(tx::rule_c(
                        external_chain,
                        format!("{} goto {}", d.if_local_nft(), chains.cluster),
                        "short-circuit pod traffic",
                    ));
                }
                // The host picks the VIP itself as source: masquerade it.
                tx.add(tx::rule_c(
                    external_chain,
                    format!("fib saddr type local jump {MARK_MASQ_CHAIN}"),
                    "masquerade local traffic",
                ));
                tx.add(tx::rule_c(
                    external_chain,
                    format!("fib saddr type local goto {}", chains.cluster),
                    "short-circuit local traffic",
                ));
            }
            if has_external {
                tx.add(tx::rule(
                    external_chain,
                    format!("goto {external_policy_chain}"),
                ));
            }
        }

        if uses_fw_chain {
            let mut sources: Vec<String> = Vec::new();
            let mut allow_from_node = false;
            let node_ip = self.watch.node.primary_ip(self.family);
            for cidr in &svc.load_balancer_source_ranges {
                sources.push(cidr.to_string());
                allow_from_node |= node_ip.is_some_and(|ip| cidr.contains(&ip));
            }
            // A VIP bound locally makes node → VIP traffic loop back with
            // the VIP as source; let it through.
            if allow_from_node {
                sources.extend(svc.load_balancer_vips.iter().map(|ip| ip.to_string()));
            }
            tx.add(tx::rule(
                &chains.firewall,
                format!("{ip_x} saddr != {{ {} }} drop", sources.join(" , ")),
            ));
        }

        if let Some(timeout) = svc.sticky_max_age_seconds() {
            for ep in &cat.all_reachable {
                let (_, set) = endpoint_names(name, proto, &ep.to_string());
                tx.add(Object::Set {
                    name: set,
                    type_: self.ipvx_addr().to_string(),
                    flags: vec!["dynamic", "timeout"],
                    timeout_secs: Some(u64::from(timeout)),
                    comment: None,
                });
            }
        }

        if uses_cluster_chain {
            self.write_service_to_endpoints(tx, name, &svc, &chains.cluster, &cat.cluster);
        }
        if uses_local_chain {
            self.write_service_to_endpoints(tx, name, &svc, &chains.local, &cat.local);
        }

        for ep in &cat.all_reachable {
            let (chain, set) = endpoint_names(name, proto, &ep.to_string());
            if up_to_date.contains(&chain) {
                continue;
            }
            // Traffic that loops back to the originator must be SNATed.
            tx.add(tx::rule(
                &chain,
                format!("{ip_x} saddr {} jump {MARK_MASQ_CHAIN}", ep.ip),
            ));
            if affinity {
                tx.add(tx::rule(
                    &chain,
                    format!("update @{set} {{ {ip_x} saddr }}"),
                ));
            }
            tx.add(tx::rule(
                &chain,
                format!("meta l4proto {proto} dnat to {ep}"),
            ));
        }
    }

    /// Affinity rules, then the `numgen` verdict map choosing an endpoint.
    fn write_service_to_endpoints(
        &self,
        tx: &mut Transaction,
        name: &ServicePortName,
        svc: &ServicePort,
        chain: &str,
        endpoints: &[&Endpoint],
    ) {
        let proto = svc.protocol.lower();
        let ip_x = self.ip_x();
        let names: Vec<(String, String)> = endpoints
            .iter()
            .map(|ep| endpoint_names(name, proto, &ep.to_string()))
            .collect();
        if svc.sticky_max_age_seconds().is_some() {
            for (ep_chain, set) in &names {
                tx.add(tx::rule(
                    chain,
                    format!("{ip_x} saddr @{set} goto {ep_chain}"),
                ));
            }
        }
        let elements: Vec<String> = names
            .iter()
            .enumerate()
            .map(|(i, (ep_chain, _))| format!("{i} : goto {ep_chain}"))
            .collect();
        tx.add(tx::rule(
            chain,
            concat(&[
                "numgen random mod",
                &endpoints.len().to_string(),
                "vmap {",
                &elements.join(" , "),
                "}",
            ]),
        ));
    }
}

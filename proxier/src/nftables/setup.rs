//! The table skeleton written at every full sync (upstream's
//! `setupNFTables`): the table, base chains with their hooks and priorities,
//! the jumps into kube-proxy's top-level chains, the masquerading chains, the
//! sets and maps every service uses, and the fixed rules that consult them.
//!
//! Operation order is upstream's, line for line, so that the transaction is
//! byte-identical. Element storages are refilled from the kernel listing
//! here too. Builds operations only; never fails.

use std::collections::BTreeSet;

use super::listing::Listing;
use super::names::*;
use super::tx::{self, BaseChain, Element, Object, Transaction};
use super::Proxier;
use crate::k8s::IpFamily;

/// knftables' `DNATPriority` / `FilterPriority` / `SNATPriority` as numbers.
const DSTNAT: i32 = -100;
const FILTER: i32 = 0;
const SRCNAT: i32 = 100;

/// `(name, type, hook, priority)` of every base chain, in upstream's order.
pub(super) const BASE_CHAINS: &[(&str, &str, &str, i32)] = &[
    (
        FILTER_PREROUTING_PRE_DNAT,
        "filter",
        "prerouting",
        DSTNAT - 10,
    ),
    (FILTER_OUTPUT_PRE_DNAT, "filter", "output", DSTNAT - 10),
    (FILTER_INPUT, "filter", "input", FILTER),
    (FILTER_FORWARD, "filter", "forward", FILTER),
    (FILTER_OUTPUT, "filter", "output", FILTER),
    (NAT_PREROUTING, "nat", "prerouting", DSTNAT),
    (NAT_OUTPUT, "nat", "output", DSTNAT),
    (NAT_POSTROUTING, "nat", "postrouting", SRCNAT),
];

/// `(destination, source, extra matches)`: upstream's `nftablesJumpChains`.
const JUMP_CHAINS: &[(&str, &str, &str)] = &[
    (NODEPORT_ENDPOINTS_CHECK_CHAIN, FILTER_INPUT, "ct state new"),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, FILTER_INPUT, "ct state new"),
    (
        SERVICE_ENDPOINTS_CHECK_CHAIN,
        FILTER_FORWARD,
        "ct state new",
    ),
    (SERVICE_ENDPOINTS_CHECK_CHAIN, FILTER_OUTPUT, "ct state new"),
    (
        FIREWALL_CHECK_CHAIN,
        FILTER_PREROUTING_PRE_DNAT,
        "ct state new",
    ),
    (FIREWALL_CHECK_CHAIN, FILTER_OUTPUT_PRE_DNAT, "ct state new"),
    (SERVICES_CHAIN, NAT_OUTPUT, ""),
    (SERVICES_CHAIN, NAT_PREROUTING, ""),
    (MASQUERADING_CHAIN, NAT_POSTROUTING, ""),
    (CLUSTER_IPS_CHECK_CHAIN, FILTER_FORWARD, "ct state new"),
    (CLUSTER_IPS_CHECK_CHAIN, FILTER_OUTPUT, "ct state new"),
];

/// Upstream's `ensureChain`: add and flush a chain once per transaction.
/// With `skip_creation` the chain is only noted as in use.
pub(super) fn ensure_chain(
    name: &str,
    tx: &mut Transaction,
    created: &mut BTreeSet<String>,
    skip_creation: bool,
) {
    if !created.insert(name.to_string()) || skip_creation {
        return;
    }
    tx.add(tx::chain(name));
    tx.flush(tx::chain(name));
}

/// `a b c` with knftables' `Concat` spacing (empty parts vanish).
pub(super) fn concat(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

impl Proxier {
    pub(super) fn ip_x(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
        }
    }

    pub(super) fn ipvx_addr(&self) -> &'static str {
        match self.family {
            IpFamily::V4 => "ipv4_addr",
            IpFamily::V6 => "ipv6_addr",
        }
    }

    pub(super) fn setup(&mut self, tx: &mut Transaction, listing: Result<Option<&Listing>, ()>) {
        let ip_x = self.ip_x();
        let addr = self.ipvx_addr();
        let no_localhost = match self.family {
            IpFamily::V4 => "ip daddr != 127.0.0.0/8",
            IpFamily::V6 => "ip6 daddr != ::1",
        };
        let mark = self.options.masquerade_mark.clone();

        tx.add(Object::Table {
            comment: Some("rules for kube-proxy".into()),
        });

        // Once per process: re-create the base chains so that changed
        // properties (e.g. priorities after an upgrade) can be applied.
        if !self.flushed {
            for (name, ..) in BASE_CHAINS {
                tx.add(tx::chain(name));
                tx.delete(tx::chain(name));
            }
            self.flushed = true;
        }

        for (name, kind, hook, priority) in BASE_CHAINS {
            let chain = Object::Chain {
                name: name.to_string(),
                base: Some(BaseChain {
                    kind,
                    hook,
                    priority: *priority,
                }),
                comment: None,
            };
            tx.add(chain.clone());
            tx.flush(chain);
        }

        let mut created = BTreeSet::new();
        for (dst, src, extra) in JUMP_CHAINS {
            ensure_chain(dst, tx, &mut created, false);
            tx.add(tx::rule(src, concat(&[extra, "jump", dst])));
        }
        for chain in [
            SERVICES_CHAIN,
            CLUSTER_IPS_CHECK_CHAIN,
            MASQUERADING_CHAIN,
            MARK_MASQ_CHAIN,
        ] {
            ensure_chain(chain, tx, &mut created, false);
        }

        tx.add(tx::rule(
            MARK_MASQ_CHAIN,
            format!("mark set mark or {mark}"),
        ));
        tx.add(tx::rule(
            MASQUERADING_CHAIN,
            format!("mark and {mark} == 0 return"),
        ));
        tx.add(tx::rule(
            MASQUERADING_CHAIN,
            format!("mark set mark xor {mark}"),
        ));
        tx.add(tx::rule(MASQUERADING_CHAIN, "masquerade fully-random"));

        tx.add(Object::Set {
            name: CLUSTER_IPS_SET.into(),
            type_: addr.into(),
            flags: vec![],
            timeout_secs: None,
            comment: Some("Active ClusterIPs".into()),
        });
        tx.add(tx::rule_c(
            CLUSTER_IPS_CHECK_CHAIN,
            format!("{ip_x} daddr @{CLUSTER_IPS_SET} reject"),
            "Reject traffic to invalid ports of ClusterIPs",
        ));
        if !self.service_cidrs.is_empty() {
            tx.add(tx::rule_c(
                CLUSTER_IPS_CHECK_CHAIN,
                format!("{ip_x} daddr {{ {} }} drop", self.service_cidrs),
                "Drop traffic to unallocated ClusterIPs",
            ));
        }

        // nodeport-ips exists only when NodePorts are limited to some IPs
        // ("add+delete" makes the delete safe when it does not exist).
        tx.add(Object::Set {
            name: NODEPORT_IPS_SET.into(),
            type_: addr.into(),
            flags: vec![],
            timeout_secs: None,
            comment: Some("IPs that accept NodePort traffic".into()),
        });
        let match_all = self.options.node_port_addresses.match_all();
        if match_all {
            tx.delete(tx::set_named(NODEPORT_IPS_SET));
        } else {
            tx.flush(tx::set_named(NODEPORT_IPS_SET));
            let ips = self
                .options
                .node_port_addresses
                .node_ips(&self.watch.node.interface_addresses);
            // Localhost NodePorts are not supported in nftables mode.
            for ip in ips.into_iter().filter(|ip| !ip.is_loopback()) {
                tx.add(Object::Element(Element {
                    container: NODEPORT_IPS_SET.into(),
                    key: vec![ip.to_string()],
                    value: vec![],
                    comment: None,
                }));
            }
        }

        for (name, type_, comment) in [
            (
                NO_ENDPOINT_SERVICES_MAP,
                format!("{addr} . inet_proto . inet_service : verdict"),
                "vmap to drop or reject packets to services with no endpoints",
            ),
            (
                NO_ENDPOINT_NODEPORTS_MAP,
                "inet_proto . inet_service : verdict".to_string(),
                "vmap to drop or reject packets to service nodeports with no endpoints",
            ),
        ] {
            tx.add(Object::Map {
                name: name.into(),
                type_,
                comment: Some(comment.into()),
            });
        }

        tx.add(Object::Chain {
            name: REJECT_CHAIN.into(),
            base: None,
            comment: Some("helper for @no-endpoint-services / @no-endpoint-nodeports".into()),
        });
        tx.flush(tx::chain(REJECT_CHAIN));
        tx.add(tx::rule(REJECT_CHAIN, "reject"));

        tx.add(tx::rule(
            SERVICE_ENDPOINTS_CHECK_CHAIN,
            format!("{ip_x} daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES_MAP}"),
        ));
        let nodeport_dst = if match_all {
            no_localhost.to_string()
        } else {
            format!("{ip_x} daddr @{NODEPORT_IPS_SET}")
        };
        tx.add(tx::rule(
            NODEPORT_ENDPOINTS_CHECK_CHAIN,
            format!("{nodeport_dst} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS_MAP}"),
        ));

        tx.add(Object::Map {
            name: FIREWALL_IPS_MAP.into(),
            type_: format!("{addr} . inet_proto . inet_service : verdict"),
            comment: Some("destinations that are subject to LoadBalancerSourceRanges".into()),
        });
        ensure_chain(FIREWALL_CHECK_CHAIN, tx, &mut created, false);
        tx.add(tx::rule(
            FIREWALL_CHECK_CHAIN,
            format!("{ip_x} daddr . meta l4proto . th dport vmap @{FIREWALL_IPS_MAP}"),
        ));

        tx.add(Object::Map {
            name: SERVICE_IPS_MAP.into(),
            type_: format!("{addr} . inet_proto . inet_service : verdict"),
            comment: Some("ClusterIP, ExternalIP and LoadBalancer IP traffic".into()),
        });
        tx.add(Object::Map {
            name: SERVICE_NODEPORTS_MAP.into(),
            type_: "inet_proto . inet_service : verdict".into(),
            comment: Some("NodePort traffic".into()),
        });
        tx.add(tx::rule(
            SERVICES_CHAIN,
            format!("{ip_x} daddr . meta l4proto . th dport vmap @{SERVICE_IPS_MAP}"),
        ));
        let nodeport_match = if match_all {
            format!("fib daddr type local {no_localhost}")
        } else {
            format!("{ip_x} daddr @{NODEPORT_IPS_SET}")
        };
        tx.add(tx::rule(
            SERVICES_CHAIN,
            format!("{nodeport_match} meta l4proto . th dport vmap @{SERVICE_NODEPORTS_MAP}"),
        ));

        // Learn what the kernel already holds (a restart keeps the maps).
        for storage in self.storages_mut() {
            let listed = match listing {
                Ok(Some(l)) => Ok(l.elements.get(storage.name())),
                Ok(None) => Ok(None),
                Err(()) => Err(()),
            };
            storage.read_or_reset(tx, listed);
        }
    }
}

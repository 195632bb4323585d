//! The rules of one service port (the body of upstream's per-service loop in
//! `syncProxyRules`, and `writeServiceToEndpointRules`).
//!
//! Entry rules (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-EXTERNAL-SERVICES,
//! KUBE-PROXY-FIREWALL) are always written; the service's own chains
//! (SVC/SVL/EXT/FW/SEP) only when `rewrite` is set, otherwise into the
//! discarding buffers so that counts stay right. Every format string here is
//! upstream's, byte for byte.

use super::buffer::line;
use super::names::*;
use super::{Payload, Proxier, NFACCT_LOCALHOST_NODEPORT_ACCEPTED};
use crate::endpoints::Endpoint;
use crate::k8s::IpFamily;
use crate::service_port::{ServicePort, ServicePortName};
use crate::topology::categorize_endpoints;

impl Proxier {
    pub(super) fn write_service(
        &self,
        name: &ServicePortName,
        svc: &ServicePort,
        rewrite: bool,
        out: &mut Payload,
        skipped: &mut Payload,
        active_nat_chains: &mut Vec<String>,
    ) {
        let endpoints = self.watch.tracker.endpoints(name);
        let cat = categorize_endpoints(endpoints, svc, &self.watch.node.labels);

        let proto = svc.protocol.lower();
        let svc_name = name.to_string();
        let chains = ServiceChains::new(&svc_name, proto);
        let cluster_ip = svc.cluster_ip;
        let port = svc.port;

        let uses_cluster_chain = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
        let uses_local_chain = !cat.local.is_empty() && svc.uses_local_endpoints();

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
        // Needed even without externally usable endpoints: the EXT chain
        // holds the short-circuit rules for local traffic.
        let uses_external_chain = has_endpoints && svc.externally_accessible();
        let uses_fw_chain = has_endpoints
            && !svc.load_balancer_vips.is_empty()
            && !svc.load_balancer_source_ranges.is_empty();
        let lb_chain = if uses_fw_chain {
            chains.firewall.as_str()
        } else {
            external_chain
        };

        let (internal_target, internal_comment, external_target, external_comment);
        if !has_endpoints {
            internal_target = "REJECT";
            internal_comment = format!("\"{svc_name} has no endpoints\"");
            external_target = "REJECT";
            external_comment = internal_comment.clone();
        } else {
            let no_local = format!("\"{svc_name} has no local endpoints\"");
            internal_target = if has_internal { "" } else { "DROP" };
            internal_comment = if has_internal {
                String::new()
            } else {
                no_local.clone()
            };
            external_target = if has_external { "" } else { "DROP" };
            external_comment = if has_external {
                String::new()
            } else {
                no_local
            };
        }

        // Capture the cluster IP.
        if has_internal {
            line!(
                out.nat_rules,
                "-A {KUBE_SERVICES} -m comment --comment \"{svc_name} cluster IP\" -m {proto} -p {proto} -d {cluster_ip} --dport {port} -j {internal_chain}"
            );
        } else {
            line!(
                out.filter_rules,
                "-A {KUBE_SERVICES} -m comment --comment {internal_comment} -m {proto} -p {proto} -d {cluster_ip} --dport {port} -j {internal_target}"
            );
        }

        // Capture external IPs.
        for ip in &svc.external_ips {
            if has_endpoints {
                line!(
                    out.nat_rules,
                    "-A {KUBE_SERVICES} -m comment --comment \"{svc_name} external IP\" -m {proto} -p {proto} -d {ip} --dport {port} -j {external_chain}"
                );
            }
            if !has_external {
                line!(
                    out.filter_rules,
                    "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m {proto} -p {proto} -d {ip} --dport {port} -j {external_target}"
                );
            }
        }

        // Capture load-balancer ingress.
        for ip in &svc.load_balancer_vips {
            if has_endpoints {
                line!(
                    out.nat_rules,
                    "-A {KUBE_SERVICES} -m comment --comment \"{svc_name} loadbalancer IP\" -m {proto} -p {proto} -d {ip} --dport {port} -j {lb_chain}"
                );
            }
            if uses_fw_chain {
                line!(
                    out.filter_rules,
                    "-A {KUBE_PROXY_FIREWALL} -m comment --comment \"{svc_name} traffic not accepted by {}\" -m {proto} -p {proto} -d {ip} --dport {port} -j DROP",
                    chains.firewall
                );
            }
        }
        if !has_external {
            for ip in &svc.load_balancer_vips {
                line!(
                    out.filter_rules,
                    "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m {proto} -p {proto} -d {ip} --dport {port} -j {external_target}"
                );
            }
        }

        // Capture node ports.
        if svc.node_port != 0 {
            let node_port = svc.node_port;
            if has_endpoints {
                if self.options.localhost_node_ports
                    && self.family == IpFamily::V4
                    && self.nfacct_counters[NFACCT_LOCALHOST_NODEPORT_ACCEPTED]
                {
                    line!(
                        out.nat_rules,
                        "-A {KUBE_NODEPORTS} -m comment --comment {svc_name} -m {proto} -p {proto} -d 127.0.0.0/8 --dport {node_port} -m nfacct --nfacct-name {NFACCT_LOCALHOST_NODEPORT_ACCEPTED} -j {external_chain}"
                    );
                }
                line!(
                    out.nat_rules,
                    "-A {KUBE_NODEPORTS} -m comment --comment {svc_name} -m {proto} -p {proto} --dport {node_port} -j {external_chain}"
                );
            }
            if !has_external {
                line!(
                    out.filter_rules,
                    "-A {KUBE_EXTERNAL_SERVICES} -m comment --comment {external_comment} -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {node_port} -j {external_target}"
                );
            }
        }

        // Health check node ports are accepted whether or not this node has
        // local endpoints (the health check answers "no").
        if svc.health_check_node_port != 0 {
            line!(
                out.filter_rules,
                "-A {KUBE_NODEPORTS} -m comment --comment \"{svc_name} health check node port\" -m tcp -p tcp --dport {} -j ACCEPT",
                svc.health_check_node_port
            );
        }

        // Unchanged services keep their chains; count their rules only.
        let target = if rewrite { &mut *out } else { &mut *skipped };

        // Internal traffic masquerading.
        if has_internal {
            if self.options.masquerade_all {
                line!(
                    target.nat_rules,
                    "-A {internal_chain} -m comment --comment \"{svc_name} cluster IP\" -m {proto} -p {proto} -d {cluster_ip} --dport {port} -j {KUBE_MARK_MASQ}"
                );
            } else if let Some(detector) = &self.options.local_detector {
                // Off-cluster traffic to a service VIP (e.g. via a static
                // route to a node) may bounce off-node: masquerade it.
                line!(
                    target.nat_rules,
                    "-A {internal_chain} -m comment --comment \"{svc_name} cluster IP\" -m {proto} -p {proto} -d {cluster_ip} --dport {port} {} -j {KUBE_MARK_MASQ}",
                    detector.if_not_local()
                );
            }
        }

        // External traffic dispatch.
        if uses_external_chain {
            target.nat_chains.chain(external_chain);
            active_nat_chains.push(external_chain.to_string());
            if !svc.external_policy_local {
                // Endpoints may be on other nodes: masquerade.
                line!(
                    target.nat_rules,
                    "-A {external_chain} -m comment --comment \"masquerade traffic for {svc_name} external destinations\" -j {KUBE_MARK_MASQ}"
                );
            } else {
                if let Some(detector) = &self.options.local_detector {
                    // Pod → external address is treated as if it went out to
                    // the load balancer and came back: no traffic policy.
                    line!(
                        target.nat_rules,
                        "-A {external_chain} -m comment --comment \"pod traffic for {svc_name} external destinations\" {} -j {}",
                        detector.if_local(),
                        chains.cluster
                    );
                }
                // The host itself picks the VIP as source: masquerade it and
                // send it to the cluster chain.
                line!(
                    target.nat_rules,
                    "-A {external_chain} -m comment --comment \"masquerade LOCAL traffic for {svc_name} external destinations\" -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
                );
                line!(
                    target.nat_rules,
                    "-A {external_chain} -m comment --comment \"route LOCAL traffic for {svc_name} external destinations\" -m addrtype --src-type LOCAL -j {}",
                    chains.cluster
                );
            }
            if has_external {
                line!(
                    target.nat_rules,
                    "-A {external_chain} -j {external_policy_chain}"
                );
            }
        }

        // Load balancer source ranges.
        if uses_fw_chain {
            let fw = chains.firewall.as_str();
            target.nat_chains.chain(fw);
            active_nat_chains.push(fw.to_string());
            let node_ip = self.node_ip();
            let mut allow_from_node = false;
            for cidr in &svc.load_balancer_source_ranges {
                line!(
                    target.nat_rules,
                    "-A {fw} -m comment --comment \"{svc_name} loadbalancer IP\" -s {cidr} -j {external_chain}"
                );
                allow_from_node |= node_ip.is_some_and(|ip| cidr.contains(&ip));
            }
            // A VIP bound locally makes node → VIP traffic loop back with the
            // VIP as source; let it through.
            if allow_from_node {
                for ip in &svc.load_balancer_vips {
                    line!(
                        target.nat_rules,
                        "-A {fw} -m comment --comment \"{svc_name} loadbalancer IP\" -s {ip} -j {external_chain}"
                    );
                }
            }
            // Whatever reaches the end was not DNATed; KUBE-PROXY-FIREWALL
            // drops it in the filter table.
            line!(
                target.nat_rules,
                "-A {fw} -m comment --comment \"other traffic to {svc_name} will be dropped by KUBE-PROXY-FIREWALL\""
            );
        }

        let sep = |ep: &Endpoint| endpoint_chain(&svc_name, proto, &ep.to_string());
        if uses_cluster_chain {
            target.nat_chains.chain(&chains.cluster);
            active_nat_chains.push(chains.cluster.clone());
            self.write_service_to_endpoints(
                target,
                &svc_name,
                svc,
                &chains.cluster,
                &cat.cluster,
                &sep,
            );
        }
        if uses_local_chain {
            target.nat_chains.chain(&chains.local);
            active_nat_chains.push(chains.local.clone());
            self.write_service_to_endpoints(
                target,
                &svc_name,
                svc,
                &chains.local,
                &cat.local,
                &sep,
            );
        }

        // Per-endpoint chains.
        for ep in &cat.all_reachable {
            let chain = sep(ep);
            target.nat_chains.chain(&chain);
            active_nat_chains.push(chain.clone());
            let comment = self.service_comment(&svc_name);
            line!(
                target.nat_rules,
                "-A {chain}{comment} -s {} -j {KUBE_MARK_MASQ}",
                ep.ip
            );
            let affinity = if svc.sticky_max_age_seconds().is_some() {
                format!(" -m recent --name {chain} --set")
            } else {
                String::new()
            };
            line!(
                target.nat_rules,
                "-A {chain}{comment}{affinity} -m {proto} -p {proto} -j DNAT --to-destination {ep}"
            );
        }
    }

    /// ` -m comment --comment TEXT`, or nothing in large-cluster mode.
    fn service_comment(&self, text: &str) -> String {
        if self.large_cluster_mode {
            String::new()
        } else {
            format!(" -m comment --comment {text}")
        }
    }

    /// Affinity rules, then the probabilistic load-balancing rules.
    fn write_service_to_endpoints(
        &self,
        target: &mut Payload,
        svc_name: &str,
        svc: &ServicePort,
        chain: &str,
        endpoints: &[&Endpoint],
        sep: &dyn Fn(&Endpoint) -> String,
    ) {
        if let Some(timeout) = svc.sticky_max_age_seconds() {
            for ep in endpoints {
                let ep_chain = sep(ep);
                let comment = self.service_comment(&format!("\"{svc_name} -> {ep}\""));
                line!(
                    target.nat_rules,
                    "-A {chain}{comment} -m recent --name {ep_chain} --rcheck --seconds {timeout} --reap -j {ep_chain}"
                );
            }
        }
        let n = endpoints.len();
        for (i, ep) in endpoints.iter().enumerate() {
            let comment = self.service_comment(&format!("\"{svc_name} -> {ep}\""));
            if i < n - 1 {
                let p = self.probability(n - i);
                line!(
                    target.nat_rules,
                    "-A {chain}{comment} -m statistic --mode random --probability {p} -j {}",
                    sep(ep)
                );
            } else {
                line!(target.nat_rules, "-A {chain}{comment} -j {}", sep(ep));
            }
        }
    }
}

//! Deleting stale UDP conntrack entries after endpoints change (upstream
//! `pkg/proxy/conntrack/cleanup.go`, v1.33 reconciler).
//!
//! UDP has no connection end, so a flow DNATed to an endpoint that is gone
//! would keep black-holing the client's packets until it times out. After a
//! sync that changed a UDP service's slices, kube-proxy lists the UDP flows
//! and deletes each flow addressed to a service `ip:port` (or NodePort) whose
//! reply source is not a serving endpoint of that service. Services without
//! any serving endpoint are left alone (their traffic is rejected anyway).
//! TCP and SCTP flows are never touched.

use std::collections::{BTreeMap, BTreeSet};

use crate::changes::Tracker;
use crate::dataplane::{Conntrack, ConntrackFlow, DataplaneError};
use crate::k8s::Protocol;

fn join(ip: std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Deletes the stale UDP flows; returns the flows deleted.
pub fn clean_stale_entries(
    tracker: &Tracker,
    conntrack: &mut dyn Conntrack,
) -> Result<Vec<ConntrackFlow>, DataplaneError> {
    let mut by_ip_port: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut by_node_port: BTreeMap<u16, BTreeSet<String>> = BTreeMap::new();
    for (name, svc) in tracker.service_ports() {
        if svc.protocol != Protocol::Udp {
            continue;
        }
        let serving: BTreeSet<String> = tracker
            .endpoints(name)
            .iter()
            .filter(|ep| ep.serving)
            .map(|ep| join(ep.ip, ep.port))
            .collect();
        if serving.is_empty() {
            continue;
        }
        let ips = std::iter::once(svc.cluster_ip)
            .chain(svc.load_balancer_vips.iter().copied())
            .chain(svc.external_ips.iter().copied());
        for ip in ips {
            by_ip_port.insert(join(ip, svc.port), serving.clone());
        }
        if svc.node_port != 0 {
            by_node_port.insert(svc.node_port, serving.clone());
        }
    }

    let flows = conntrack.list_flows(tracker.family(), Protocol::Udp)?;
    let stale: Vec<ConntrackFlow> = flows
        .into_iter()
        .filter(|f| {
            let reply = join(f.reply_src, f.reply_src_port);
            let to_service = by_ip_port
                .get(&join(f.orig_dst, f.orig_dst_port))
                .is_some_and(|eps| !eps.contains(&reply));
            let to_node_port = by_node_port
                .get(&f.orig_dst_port)
                .is_some_and(|eps| !eps.contains(&reply));
            to_service || to_node_port
        })
        .collect();
    if !stale.is_empty() {
        conntrack.delete_flows(&stale)?;
    }
    Ok(stale)
}

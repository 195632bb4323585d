//! Unit tests of the nftables proxier against the recording fake (the
//! upstream golden replays live in `tests/integration/upstream_nftables.rs`).

use super::*;
use crate::dataplane::recording::RecordingKernel;
use crate::k8s;
use crate::provider::Provider;

fn proxier(family: IpFamily) -> Proxier {
    let config =
        crate::config::load_str("kp.yaml", "mode: nftables\nclusterCIDR: 10.0.0.0/8").unwrap();
    let node = NodeInfo::new("node-a", vec!["192.168.0.2".parse().unwrap()]);
    let options = Options::from_config(&config, family, &node);
    let mut p = Proxier::new(family, node, options);
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    p
}

// Upstream's TestProxier_OnServiceCIDRsChanged.
#[test]
fn service_cidrs_are_filtered_by_family() {
    let nets = |s: &[&str]| s.iter().map(|c| c.parse().unwrap()).collect::<Vec<IpNet>>();
    let mut p = proxier(IpFamily::V4);
    p.on_service_cidrs(nets(&["172.30.0.0/16", "fd00:10:96::/112"]));
    assert_eq!(p.service_cidrs(), "172.30.0.0/16");
    p.on_service_cidrs(nets(&[
        "172.30.0.0/16",
        "172.50.0.0/16",
        "fd00:10:96::/112",
        "fd00:172:30::/112",
    ]));
    assert_eq!(p.service_cidrs(), "172.30.0.0/16,172.50.0.0/16");
    let mut p = proxier(IpFamily::V6);
    p.on_service_cidrs(nets(&["172.30.0.0/16", "fd00:10:96::/112"]));
    assert_eq!(p.service_cidrs(), "fd00:10:96::/112");
    assert!(!p.on_service_cidrs(nets(&["fd00:10:96::/112"])));
}

#[test]
fn first_sync_is_full_and_partial_syncs_write_only_changes() {
    let mut p = proxier(IpFamily::V4);
    p.on_service_cidrs(vec!["172.30.0.0/16".parse().unwrap()]);
    let mut kernel = RecordingKernel::default();
    let stats = p.sync(Timestamp::ZERO, &mut kernel).unwrap();
    assert!(stats.full);
    let first = kernel.nftables.transactions.last().unwrap().clone();
    assert!(first.starts_with("add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n"));
    assert!(first.contains(
        "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }\n"
    ));
    assert!(
        first.contains("add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00004000\n")
    );
    assert!(first.contains(
        "add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment \"Drop traffic to unallocated ClusterIPs\"\n"
    ));
    // nodePortAddresses defaults to the primary IP in nftables mode.
    assert!(first.contains("add element ip kube-proxy nodeport-ips { 192.168.0.2 }\n"));

    let svc = k8s::load_str(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: ns}\nspec:\n  clusterIP: 172.30.0.10\n  ports: [{name: http, port: 80}]\n",
    )
    .unwrap()
    .services
    .remove(0);
    p.on_service(&svc.name, Some(&svc));
    let stats = p.sync(Timestamp::from_secs(1), &mut kernel).unwrap();
    assert!(!stats.full);
    assert_eq!(
        kernel.nftables.transactions.last().unwrap(),
        "add element ip kube-proxy cluster-ips { 172.30.0.10 }\n\
         add element ip kube-proxy no-endpoint-services { 172.30.0.10 . tcp . 80 comment \"ns/web:http\" : goto reject-chain }\n"
    );
    // Nothing changed: an empty transaction, as upstream runs one.
    let stats = p.sync(Timestamp::from_secs(2), &mut kernel).unwrap();
    assert_eq!(stats.operations, 0);
    assert_eq!(kernel.nftables.transactions.last().unwrap(), "");
}

#[test]
fn failed_transaction_forces_a_full_sync() {
    let mut p = proxier(IpFamily::V6);
    let mut kernel = RecordingKernel::default();
    kernel.nftables.fail_next = Some("boom".into());
    assert!(p.sync(Timestamp::ZERO, &mut kernel).is_err());
    let stats = p.sync(Timestamp::from_secs(1), &mut kernel).unwrap();
    assert!(stats.full);
    let tx = kernel.nftables.transactions.last().unwrap();
    assert!(tx.starts_with("add table ip6 kube-proxy"));
    // The base chains are re-created only once per process.
    assert!(!tx.contains("delete chain ip6 kube-proxy nat-output\n"));
}

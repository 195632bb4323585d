//! Unit tests of the IPVS proxier's internals, mostly upstream's tests of
//! internal functions (`Test_syncService`, `TestCleanLegacyService*`) with
//! their data inline; whole-sync behaviour is replayed from fixtures in
//! `tests/integration/upstream_ipvs.rs`.

use crate::provider::Provider;
use std::collections::BTreeSet;

use super::services::{clean_legacy_services, ServiceSync, SyncState};
use super::*;
use crate::dataplane::recording::RecordingKernel;
use crate::dataplane::{Addresses, Ipvs, RealServer, ServiceFlags, VirtualServer};
use crate::k8s::Protocol;

fn options(family: IpFamily) -> Options {
    let node = NodeInfo::new("test-node", vec![]);
    let mut o = Options::from_config(&Config::default(), family, &node);
    o.local_detector = None;
    o
}

fn proxier(family: IpFamily, kernel: &mut RecordingKernel) -> Proxier {
    let node = NodeInfo::new("test-node", vec![]);
    Proxier::new(family, node, options(family), kernel, Timestamp::ZERO).unwrap()
}

fn vs(addr: &str, proto: Protocol, port: u16, sched: &str, flags: ServiceFlags) -> VirtualServer {
    VirtualServer {
        address: addr.parse().unwrap(),
        protocol: proto,
        port,
        scheduler: sched.into(),
        flags,
        timeout: 0,
    }
}

/// Upstream's `Test_syncService`: an existing virtual server that differs
/// is updated, a missing one added, an equal one left; binding is skipped
/// for an address already bound.
#[test]
fn sync_service_like_upstream() {
    use Protocol::*;
    let h = ServiceFlags::HASHED;
    let p = ServiceFlags::PERSISTENT;
    let bound = |list: &[&str]| Some(list.iter().map(|a| a.parse().unwrap()).collect());
    type Case = (
        Option<VirtualServer>,
        VirtualServer,
        bool,
        Option<BTreeSet<IpAddr>>,
    );
    let cases: Vec<Case> = vec![
        (
            Some(vs("1.2.3.4", Tcp, 80, "rr", h)),
            vs("1.2.3.4", Tcp, 80, "rr", h),
            false,
            None,
        ),
        (
            Some(vs("1.2.3.4", Tcp, 8080, "rr", h)),
            vs("1.2.3.4", Tcp, 8080, "rr", p),
            false,
            None,
        ),
        (
            Some(vs("1.2.3.4", Tcp, 8080, "rr", h)),
            vs("1.2.3.4", Tcp, 8080, "wlc", h),
            false,
            None,
        ),
        (None, vs("1.2.3.4", Udp, 53, "rr", h), true, None),
        (
            Some(vs("1.2.3.4", Sctp, 80, "rr", h)),
            vs("1.2.3.4", Sctp, 80, "rr", h),
            false,
            None,
        ),
        (
            Some(vs("1.2.3.4", Sctp, 8080, "rr", h)),
            vs("1.2.3.4", Sctp, 8080, "rr", p),
            false,
            None,
        ),
        (
            Some(vs("1.2.3.4", Sctp, 8080, "rr", h)),
            vs("1.2.3.4", Sctp, 8080, "wlc", h),
            false,
            None,
        ),
        (None, vs("1.2.3.4", Sctp, 53, "rr", h), true, bound(&[])),
        (
            Some(vs("1.2.3.4", Sctp, 53, "rr", h)),
            vs("1.2.3.4", Sctp, 53, "rr", h),
            true,
            bound(&["1.2.3.4"]),
        ),
    ];
    for (i, (old, new, bind, already)) in cases.into_iter().enumerate() {
        let mut kernel = RecordingKernel::default();
        let mut p = proxier(IpFamily::V4, &mut kernel);
        kernel
            .addresses
            .ensure_dummy_device(DEFAULT_DUMMY_DEVICE)
            .unwrap();
        if let Some(old) = &old {
            kernel.ipvs.add_virtual_server(old).unwrap();
        }
        let mut state = SyncState {
            already_bound: already.clone(),
            ..SyncState::default()
        };
        let mut sync = ServiceSync {
            family: IpFamily::V4,
            tracker: &p.watch.tracker,
            node: &p.watch.node,
            options: &p.options,
            initial_sync: true,
            ipsets: &mut p.ipsets,
            graceful: &mut p.graceful,
            state: &mut state,
        };
        sync.sync_service(&new, bind, &mut kernel)
            .unwrap_or_else(|e| panic!("case {i}: {e}"));
        let list = kernel.ipvs.get_virtual_servers().unwrap();
        assert_eq!(list, vec![new.clone()], "case {i}");
        let bound_now = kernel
            .addresses
            .list_bind_address(DEFAULT_DUMMY_DEVICE)
            .unwrap();
        // Bound only when asked and not already bound.
        let want_bind = bind && already.is_none_or(|b| !b.contains(&new.address));
        assert_eq!(bound_now.contains(&new.address), want_bind, "case {i}");
    }
}

fn clean(
    family: IpFamily,
    exclude: &[&str],
    active: &[&str],
    current: &[VirtualServer],
) -> RecordingKernel {
    let mut kernel = RecordingKernel::default();
    for v in current {
        kernel.ipvs.add_virtual_server(v).unwrap();
    }
    let exclude: Vec<IpNet> = exclude.iter().map(|c| c.parse().unwrap()).collect();
    let active: BTreeSet<String> = active.iter().map(|s| s.to_string()).collect();
    let mut warnings = Vec::new();
    clean_legacy_services(family, &exclude, &active, &mut kernel.ipvs, &mut warnings);
    assert!(warnings.is_empty(), "{warnings:?}");
    kernel
}

fn ports_left(kernel: &mut RecordingKernel) -> Vec<u16> {
    kernel
        .ipvs
        .get_virtual_servers()
        .unwrap()
        .iter()
        .map(|v| v.port)
        .collect()
}

/// Upstream's `TestCleanLegacyService` and `TestCleanLegacyService6`:
/// inactive servers go unless excluded.
#[test]
fn clean_legacy_services_like_upstream() {
    let h = ServiceFlags::HASHED;
    let v4: Vec<VirtualServer> = [
        "1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5", "6.6.6.6",
    ]
    .iter()
    .zip(53..)
    .map(|(a, port)| vs(a, Protocol::Udp, port, "rr", h))
    .collect();
    let mut k = clean(
        IpFamily::V4,
        &["3.3.3.0/24", "4.4.4.0/24"],
        &["1.1.1.1:53/UDP", "2.2.2.2:54/UDP"],
        &v4,
    );
    assert_eq!(ports_left(&mut k), [53, 54, 55, 56]);

    let v6: Vec<VirtualServer> = [
        "1000::1", "1000::2", "3000::1", "4000::1", "5000::1", "1000::6",
    ]
    .iter()
    .zip(53..)
    .map(|(a, port)| vs(a, Protocol::Udp, port, "rr", h))
    .collect();
    let mut k = clean(
        IpFamily::V6,
        &["3000::/64", "4000::/64"],
        &["[1000::1]:53/UDP", "[1000::2]:54/UDP"],
        &v6,
    );
    let mut left = ports_left(&mut k);
    left.sort();
    assert_eq!(left, [53, 54, 55, 56]);
    // A proxier never deletes the other family's servers.
    let mut k = clean(IpFamily::V6, &[], &[], &v4);
    assert_eq!(ports_left(&mut k).len(), 6);
}

/// Upstream's `TestCleanLegacyServiceWithRealServers` and
/// `TestCleanLegacyRealServersExcludeCIDRs`.
#[test]
fn clean_legacy_services_with_real_servers_like_upstream() {
    let h = ServiceFlags::HASHED;
    let servers = [
        vs("1.1.1.1", Protocol::Udp, 53, "rr", h),
        vs("2.2.2.2", Protocol::Udp, 54, "rr", h),
        vs("3.3.3.3", Protocol::Udp, 54, "rr", h),
    ];
    let mut kernel = RecordingKernel::default();
    for v in &servers {
        kernel.ipvs.add_virtual_server(v).unwrap();
    }
    let rs = RealServer::new("10.180.0.1".parse().unwrap(), 53, 1);
    kernel.ipvs.add_real_server(&servers[0], &rs).unwrap();
    let active: BTreeSet<String> = ["3.3.3.3:54/UDP".to_string()].into();
    let mut warnings = Vec::new();
    clean_legacy_services(IpFamily::V4, &[], &active, &mut kernel.ipvs, &mut warnings);
    assert_eq!(
        kernel.ipvs.get_virtual_servers().unwrap(),
        vec![servers[2].clone()]
    );

    // Excluded: kept with its real servers, even after a drain check.
    let mut kernel = RecordingKernel::default();
    let excluded = vs("4.4.4.4", Protocol::Udp, 56, "rr", h);
    kernel.ipvs.add_virtual_server(&excluded).unwrap();
    for a in ["10.10.10.10", "11.11.11.11"] {
        let rs = RealServer::new(a.parse().unwrap(), 56, 0);
        kernel.ipvs.add_real_server(&excluded, &rs).unwrap();
    }
    let mut p = proxier(IpFamily::V4, &mut kernel);
    clean_legacy_services(
        IpFamily::V4,
        &["4.4.4.4/32".parse().unwrap()],
        &BTreeSet::new(),
        &mut kernel.ipvs,
        &mut warnings,
    );
    p.graceful.try_delete_rs(&mut kernel.ipvs);
    assert_eq!(kernel.ipvs.get_real_servers(&excluded).unwrap().len(), 2);
    assert!(warnings.is_empty());
}

/// Upstream's `NewProxier` sets these sysctls and the IPVS timeouts.
#[test]
fn start_up_sets_sysctls_and_timeouts() {
    let mut kernel = RecordingKernel::default();
    let mut o = options(IpFamily::V4);
    o.strict_arp = true;
    o.tcp_timeout = Duration::from_secs(900);
    Proxier::new(
        IpFamily::V4,
        NodeInfo::default(),
        o,
        &mut kernel,
        Timestamp::ZERO,
    )
    .unwrap();
    for (name, value) in [
        ("net/ipv4/vs/conntrack", 1),
        ("net/ipv4/vs/expire_nodest_conn", 1),
        ("net/ipv4/vs/expire_quiescent_template", 1),
        ("net/ipv4/ip_forward", 1),
        ("net/ipv4/conf/all/arp_ignore", 1),
        ("net/ipv4/conf/all/arp_announce", 2),
    ] {
        assert_eq!(kernel.sysctl.values.get(name), Some(&value), "{name}");
    }
    assert_eq!(
        kernel.ipvs.timeouts,
        Some((Duration::from_secs(900), Duration::ZERO, Duration::ZERO))
    );
}

/// Nothing is synced before both initial lists arrive, and the mh
/// scheduler marks virtual servers for source-port hashing.
#[test]
fn waits_for_initial_lists_and_flags_mh() {
    let mut kernel = RecordingKernel::default();
    let mut o = options(IpFamily::V4);
    o.scheduler = "mh".into();
    let mut p = Proxier::new(
        IpFamily::V4,
        NodeInfo::default(),
        o,
        &mut kernel,
        Timestamp::ZERO,
    )
    .unwrap();
    let m = crate::k8s::load_str(
        "t",
        "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {clusterIP: 10.96.0.1, ports: [{port: 80}]}\n",
    )
    .unwrap();
    p.on_service(&m.services[0].name, Some(&m.services[0]));
    p.sync(Timestamp::ZERO, &mut kernel).unwrap();
    assert_eq!(kernel.ipvs.virtual_servers().count(), 0);
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    let stats = p.sync(Timestamp::ZERO, &mut kernel).unwrap();
    assert!(stats.warnings.is_empty(), "{:?}", stats.warnings);
    let (vs, _) = kernel.ipvs.virtual_servers().next().unwrap();
    assert_eq!(vs.scheduler, "mh");
    assert_eq!(vs.flags, ServiceFlags::SOURCE_HASH);
    assert_eq!(stats.virtual_servers, 1);
}

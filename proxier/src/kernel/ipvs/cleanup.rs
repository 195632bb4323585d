//! Upstream's IPVS `CleanupLeftovers` (`pkg/proxy/ipvs/proxier.go`), what
//! `kube-proxy --cleanup` does for IPVS mode, written against the dataplane
//! traits:
//!
//! 1. flush every virtual server;
//! 2. delete the `kube-ipvs0` dummy device (a missing one is fine);
//! 3. per IP family, unlink IPVS mode's jumps from the built-in chains
//!    (`iptablesJumpChain`) and flush and delete its chains
//!    (`iptablesCleanupChains`: nat `KUBE-SERVICES`, `KUBE-POSTROUTING`,
//!    `KUBE-NODE-PORT`, `KUBE-LOAD-BALANCER`, `KUBE-MARK-MASQ`; filter
//!    `KUBE-FORWARD`, `KUBE-NODE-PORT`, `KUBE-PROXY-FIREWALL`,
//!    `KUBE-SOURCE-RANGES-FIREWALL`, `KUBE-IPVS-FILTER`,
//!    `KUBE-IPVS-OUT-FILTER`), in one `--noflush` restore per table;
//! 4. destroy kube-proxy's ipsets (`ipsetInfo`) — after the chains, since
//!    a set that a rule references cannot be destroyed.
//!
//! One deliberate extension: upstream destroys the sets by their IPv4
//! names only; this also destroys the IPv6 ones (`KUBE-6-…`), which a
//! dual-stack or IPv6 node has, so that no `KUBE-` set is left.
//!
//! **Error contract:** like upstream, a failure does not stop the cleanup;
//! every failure is collected in the [`CleanupReport`]; what is not there
//! is not an error.

use crate::dataplane::{Addresses, Ipset, Iptables, Ipvs, Table};
use crate::ipvs::names::{family_set_name, IPSET_INFO, IPTABLES_CHAINS, IPTABLES_JUMP_CHAINS};
use crate::ipvs::DEFAULT_DUMMY_DEVICE;
use crate::kernel::cleanup::{unlink_and_delete_chains, CleanupReport};

/// Step 1: every virtual server.
pub fn virtual_servers(ipvs: &mut dyn Ipvs, report: &mut CleanupReport) {
    match ipvs.get_virtual_servers() {
        Ok(list) => match ipvs.flush() {
            Ok(()) => report
                .removed
                .push(format!("ipvs: {} virtual server(s) flushed", list.len())),
            Err(e) => report.errors.push(e),
        },
        Err(e) => report.errors.push(e),
    }
}

/// Step 2: the dummy device, if it exists.
pub fn dummy_device(addrs: &mut dyn Addresses, report: &mut CleanupReport) {
    // `ensure_dummy_device` would create it; list its addresses instead,
    // which fails only when it does not exist.
    if addrs.list_bind_address(DEFAULT_DUMMY_DEVICE).is_ok() {
        match addrs.delete_dummy_device(DEFAULT_DUMMY_DEVICE) {
            Ok(()) => report
                .removed
                .push(format!("device {DEFAULT_DUMMY_DEVICE}")),
            Err(e) => report.errors.push(e),
        }
    }
}

/// Step 3 for one family's iptables.
pub fn iptables(ipt: &mut dyn Iptables, report: &mut CleanupReport) {
    let jumps = IPTABLES_JUMP_CHAINS.iter().map(|jump| {
        let args = ["-m", "comment", "--comment", jump.comment, "-j", jump.to];
        (jump.table, jump.from, args.map(String::from).to_vec())
    });
    let owned = |table: Table, existing: &[String]| -> Vec<String> {
        IPTABLES_CHAINS
            .iter()
            .filter(|(t, c)| *t == table && existing.iter().any(|e| e == c))
            .map(|(_, c)| c.to_string())
            .collect()
    };
    unlink_and_delete_chains(ipt, jumps, owned, report);
}

/// Step 4: kube-proxy's sets, IPv4 and IPv6 names, that exist.
pub fn ipsets(ipset: &mut dyn Ipset, report: &mut CleanupReport) {
    let existing = match ipset.list_sets() {
        Ok(l) => l,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    for v6 in [false, true] {
        for info in IPSET_INFO {
            let name = family_set_name(info.name, v6);
            if !existing.contains(&name) {
                continue;
            }
            match ipset.destroy_set(&name) {
                Ok(()) => report.removed.push(format!("ipset {name}")),
                Err(e) => report.errors.push(e),
            }
        }
    }
}

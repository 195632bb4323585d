//! Removing what kube-proxy left in the kernel, exactly as upstream's
//! `kube-proxy --cleanup` does (`pkg/proxy/iptables/cleanup.go`,
//! `pkg/proxy/nftables` `CleanupLeftovers`).
//!
//! iptables, per family: delete the jump rules from the built-in chains
//! (not kubelet's `KUBE-FIREWALL` jumps, which upstream also leaves), then
//! flush and delete, in one `--noflush` restore per table, the nat chains
//! `KUBE-SERVICES`, `KUBE-NODEPORTS`, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ`,
//! `KUBE-PROXY-CANARY` and every per-service chain (`KUBE-SVC-`, `-SVL-`,
//! `-SEP-`, `-FW-`, `-EXT-`), and the filter chains `KUBE-SERVICES`,
//! `KUBE-EXTERNAL-SERVICES`, `KUBE-FORWARD`, `KUBE-NODEPORTS`,
//! `KUBE-PROXY-FIREWALL`, `KUBE-PROXY-CANARY`; finally delete the mangle
//! canary, ignoring errors. Everything else stays: foreign chains (Docker, a
//! CNI), their rules, and kubelet's `KUBE-FIREWALL`.
//!
//! nftables: delete the `kube-proxy` table of the `ip` and `ip6` families; a
//! missing table is not an error.
//!
//! Both work through the dataplane traits ([`iptables_leftovers`],
//! [`nftables_leftovers`]), so kube-proxy starting in another mode on a
//! simulated node cleans up the same way (upstream's `platformCleanup`).
//!
//! **Error contract:** like upstream, a failure does not stop the cleanup;
//! every failure is collected in the [`CleanupReport`].

use crate::dataplane::{chains_in_save, DataplaneError, Iptables, Nftables, RestoreFlags, Table};
use crate::iptables::jumps::JUMPS;
use crate::iptables::names::*;

/// The nftables table upstream's nftables mode owns.
pub const NFTABLES_TABLE: &str = "kube-proxy";

/// What a cleanup removed and what went wrong.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    /// One line per removed rule, chain or table.
    pub removed: Vec<String>,
    /// Every failure, in order; the cleanup went on after each.
    pub errors: Vec<DataplaneError>,
}

impl CleanupReport {
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The nat chains upstream deletes besides the per-service ones.
const NAT_CHAINS: &[&str] = &[
    KUBE_SERVICES,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_MARK_MASQ,
    KUBE_PROXY_CANARY,
];

/// The filter chains upstream deletes.
const FILTER_CHAINS: &[&str] = &[
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FORWARD,
    KUBE_NODEPORTS,
    KUBE_PROXY_FIREWALL,
    KUBE_PROXY_CANARY,
];

/// The `--noflush` payload that flushes and deletes `chains` of `table`.
pub fn delete_chains_payload(table: Table, chains: &[String]) -> String {
    let mut s = format!("*{}\n", table.name());
    for c in chains {
        s.push_str(&format!(":{c} - [0:0]\n"));
    }
    for c in chains {
        s.push_str(&format!("-X {c}\n"));
    }
    s.push_str("COMMIT\n");
    s
}

/// Which of `existing` chains upstream's cleanup deletes from `table`.
pub fn owned_chains(table: Table, existing: &[String]) -> Vec<String> {
    let fixed = match table {
        Table::Nat => NAT_CHAINS,
        Table::Filter => FILTER_CHAINS,
        _ => &[],
    };
    let mut chains: Vec<String> = fixed
        .iter()
        .filter(|c| existing.iter().any(|e| e == *c))
        .map(|c| c.to_string())
        .collect();
    if table == Table::Nat {
        chains.extend(existing.iter().filter(|c| is_service_chain(c)).cloned());
    }
    chains
}

/// Upstream's `cleanupLeftoversForFamily`, through any [`Iptables`]: the
/// host's tools, or a simulated node's (a node switching to nftables mode).
pub fn iptables_leftovers(ipt: &mut dyn Iptables, report: &mut CleanupReport) {
    let jumps = JUMPS
        .iter()
        .filter(|j| j.dst != KUBE_FIREWALL)
        .map(|j| (j.table, j.src, j.args()));
    unlink_and_delete_chains(ipt, jumps, owned_chains, report);
    // Upstream ignores this one's errors: the chain may not exist.
    if ipt.delete_chain(Table::Mangle, KUBE_PROXY_CANARY).is_ok() {
        report
            .removed
            .push(format!("{}: mangle chain {KUBE_PROXY_CANARY}", ipt.label()));
    }
}

/// The iptables half of every mode's cleanup: delete the `jumps` (table,
/// built-in chain, rule arguments) that exist, then flush and delete, in
/// one `--noflush` restore per table, the nat and filter chains `owned`
/// picks from those the table has.
pub fn unlink_and_delete_chains<'a>(
    ipt: &mut dyn Iptables,
    jumps: impl IntoIterator<Item = (Table, &'a str, Vec<String>)>,
    owned: impl Fn(Table, &[String]) -> Vec<String>,
    report: &mut CleanupReport,
) {
    let who = ipt.label();
    for (table, chain, args) in jumps {
        match ipt.delete_rule(table, chain, &args) {
            Ok(true) => report.removed.push(format!(
                "{who}: rule `-A {chain} {}` from {table}",
                args.join(" "),
            )),
            Ok(false) => {}
            Err(e) => report.errors.push(e),
        }
    }
    for table in [Table::Nat, Table::Filter] {
        let existing = match ipt.save(table) {
            Ok(save) => chains_in_save(&save),
            Err(e) => {
                report.errors.push(e);
                continue;
            }
        };
        let chains = owned(table, &existing);
        if chains.is_empty() {
            continue;
        }
        let payload = delete_chains_payload(table, &chains);
        match ipt.restore_all(&payload, RestoreFlags::KUBE_PROXY) {
            Ok(()) => report.removed.push(format!(
                "{who}: {} {table} chain{} ({}{})",
                chains.len(),
                if chains.len() == 1 { "" } else { "s" },
                chains
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if chains.len() > 5 { ", …" } else { "" }
            )),
            Err(e) => report.errors.push(e),
        }
    }
}

/// Upstream's nftables `CleanupLeftovers` through any [`Nftables`] (the
/// host's `nft`, or a simulated node starting in iptables or IPVS mode):
/// delete the `kube-proxy` table of each family that has one.
pub fn nftables_leftovers(nft: &mut dyn Nftables, report: &mut CleanupReport) {
    for family in ["ip", "ip6"] {
        match nft.delete_table(family, NFTABLES_TABLE) {
            Ok(true) => report
                .removed
                .push(format!("nftables: table {family} {NFTABLES_TABLE}")),
            Ok(false) => {}
            Err(e) => report.errors.push(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_owned_chains_and_leaves_foreign_and_kubelet_ones() {
        let existing: Vec<String> = [
            "PREROUTING",
            "KUBE-SERVICES",
            "KUBE-SVC-XPGD46QRK7WJZT7O",
            "KUBE-SEP-SXIVWICOYRO3J4NJ",
            "KUBE-MARK-MASQ",
            "DOCKER",
            "KUBE-FIREWALL",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            owned_chains(Table::Nat, &existing),
            [
                "KUBE-SERVICES",
                "KUBE-MARK-MASQ",
                "KUBE-SVC-XPGD46QRK7WJZT7O",
                "KUBE-SEP-SXIVWICOYRO3J4NJ"
            ]
        );
        assert_eq!(owned_chains(Table::Filter, &existing), ["KUBE-SERVICES"]);
        assert_eq!(
            delete_chains_payload(Table::Nat, &["KUBE-A".into()]),
            "*nat\n:KUBE-A - [0:0]\n-X KUBE-A\nCOMMIT\n"
        );
    }
}

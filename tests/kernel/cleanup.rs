//! `cleanup`: removes exactly what upstream's `kube-proxy --cleanup`
//! removes, and leaves foreign chains (and kubelet's `KUBE-FIREWALL`).

use std::collections::BTreeMap;

use kpsim::kernel_apply::{apply_with, cleanup, CleanupScope};
use proxier::config::Mode;
use proxier::k8s::IpFamily;
use proxier::kernel::iptables::IptablesTool;
use proxier::kernel::{IptablesVariant, KernelOptions, OwnedNetns};

use crate::support::{
    diff, manifest_request, netns, normalize, require, HostRules, IPTABLES_TOOLS,
};

const FOREIGN: &str = "*filter\n:FOREIGN - [0:0]\n-A FOREIGN -s 192.0.2.0/24 -j ACCEPT\n-A INPUT -j FOREIGN\nCOMMIT\n*nat\n:FOREIGN-NAT - [0:0]\n-A FOREIGN-NAT -p udp -m udp --dport 53 -j RETURN\n-A PREROUTING -j FOREIGN-NAT\nCOMMIT\n";

/// `iptables-save` as table → lines, leaving out kubelet's `KUBE-FIREWALL`
/// (which upstream's cleanup keeps) and tables holding nothing but empty
/// built-in chains (created by the apply, emptied by the cleanup).
fn tables(save: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in normalize(save).lines() {
        if let Some(t) = line.strip_prefix('*') {
            current = t.to_string();
            out.entry(current.clone()).or_default();
        } else if line != "COMMIT" && !line.contains("KUBE-FIREWALL") {
            out.get_mut(&current).unwrap().push(line.to_string());
        }
    }
    out.retain(|_, lines| {
        lines
            .iter()
            .any(|l| l.starts_with("-A") || l.ends_with("- [0:0]"))
    });
    out
}

fn iptables_save(ns: &OwnedNetns, variant: IptablesVariant) -> String {
    let tool = variant.tool(IpFamily::V4, IptablesTool::Save);
    ns.runner().check(&tool, &[], None).unwrap()
}

#[test]
fn iptables_cleanup_removes_kube_proxys_chains_and_keeps_foreign_ones() {
    if require(
        "iptables_cleanup_removes_kube_proxys_chains",
        IPTABLES_TOOLS,
    )
    .is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/manifests");
    for variant in [IptablesVariant::Legacy, IptablesVariant::Nft] {
        let ns = netns();
        let restore = variant.tool(IpFamily::V4, IptablesTool::Restore);
        ns.runner()
            .check(&restore, &["--noflush"], Some(FOREIGN))
            .unwrap();
        let baseline = iptables_save(&ns, variant);
        for set in ["loadbalancer.yaml", "nodeport-local.yaml"] {
            let req = manifest_request(&dir.join(set));
            let opts = KernelOptions {
                netns: Some(ns.name().to_string()),
                iptables_variant: Some(variant),
                ..KernelOptions::default()
            };
            apply_with(&req, &opts).unwrap();
        }
        let applied = iptables_save(&ns, variant);
        assert!(applied.contains(":KUBE-SVC-"), "{applied}");

        // The variant is detected from the namespace's rules, as the
        // wrapper would: the foreign rules decide.
        let outcome = cleanup(CleanupScope::Mode(Mode::Iptables), Some(ns.name())).unwrap();
        assert!(outcome.report.is_ok(), "{:?}", outcome.report.errors);
        assert_eq!(outcome.iptables.as_ref().unwrap().variant, variant);
        assert!(!outcome.report.removed.is_empty());

        let after = iptables_save(&ns, variant);
        assert!(
            tables(&after) == tables(&baseline),
            "{variant}: after cleanup (+) vs before apply (-):\n{}",
            diff(&normalize(&baseline), &normalize(&after))
        );
        let leftovers: Vec<&str> = after
            .lines()
            .filter(|l| l.contains("KUBE-") && !l.contains("KUBE-FIREWALL"))
            .collect();
        assert!(leftovers.is_empty(), "{variant}: {leftovers:?}");
        // Kubelet's firewall chain and its jumps stay, as upstream leaves them.
        assert!(after.contains(":KUBE-FIREWALL"), "{after}");

        // A second cleanup finds nothing to do.
        let again = cleanup(CleanupScope::Mode(Mode::Iptables), Some(ns.name())).unwrap();
        assert!(again.report.is_ok(), "{:?}", again.report.errors);
        assert_eq!(normalize(&iptables_save(&ns, variant)), normalize(&after));
    }
    host.assert_unchanged();
}

#[test]
fn nftables_cleanup_deletes_the_kube_proxy_tables_only() {
    if require(
        "nftables_cleanup_deletes_the_kube_proxy_tables_only",
        &["nft"],
    )
    .is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let ns = netns();
    let script = "add table ip kube-proxy\nadd chain ip kube-proxy services\nadd table ip6 kube-proxy\nadd table inet foreign\nadd chain inet foreign input { type filter hook input priority 0 ; }\nadd rule inet foreign input tcp dport 22 accept\n";
    ns.runner()
        .check("nft", &["-f", "-"], Some(script))
        .unwrap();
    let outcome = cleanup(CleanupScope::Mode(Mode::Nftables), Some(ns.name())).unwrap();
    assert!(outcome.report.is_ok(), "{:?}", outcome.report.errors);
    assert_eq!(
        outcome.report.removed.len(),
        2,
        "{:?}",
        outcome.report.removed
    );
    let ruleset = ns
        .runner()
        .check("nft", &["list", "ruleset"], None)
        .unwrap();
    assert!(!ruleset.contains("kube-proxy"), "{ruleset}");
    assert!(ruleset.contains("table inet foreign") && ruleset.contains("tcp dport 22 accept"));

    // `--cleanup` of everything: nothing left to remove, no error; IPVS is
    // reported as not done.
    let all = cleanup(CleanupScope::All, Some(ns.name())).unwrap();
    assert!(all.report.is_ok(), "{:?}", all.report.errors);
    assert!(all.not_done.iter().any(|n| n.contains("IPVS")));
    host.assert_unchanged();
}

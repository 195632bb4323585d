//! iptables variant detection, as kube-proxy's image wrapper does it, on
//! namespaces set up like hosts of each kind.

use proxier::kernel::iptables::detect;
use proxier::kernel::IptablesVariant;

use crate::support::{netns, require, HostRules, IPTABLES_TOOLS};

#[test]
fn the_variant_follows_kubelets_hint_then_the_rule_counts() {
    if require("the_variant_follows_kubelets_hint", IPTABLES_TOOLS).is_none() {
        return;
    }
    let host = HostRules::capture();
    let hint = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
    let rules = "*filter\n:F - [0:0]\n-A INPUT -j F\n-A F -s 192.0.2.1/32 -j DROP\nCOMMIT\n";
    let rules6 = "*filter\n:F - [0:0]\n-A INPUT -j F\n-A F -s 2001:db8::1/128 -j DROP\nCOMMIT\n";
    let cases = [
        // Nothing anywhere: nft, the default.
        (vec![], IptablesVariant::Nft, "default"),
        (
            vec![("iptables-legacy-restore", hint)],
            IptablesVariant::Legacy,
            "hint",
        ),
        (
            vec![("iptables-nft-restore", hint)],
            IptablesVariant::Nft,
            "hint",
        ),
        // kubelet's hint wins over rule counts.
        (
            vec![
                ("iptables-legacy-restore", rules),
                ("iptables-nft-restore", hint),
            ],
            IptablesVariant::Nft,
            "hint",
        ),
        (
            vec![("iptables-legacy-restore", rules)],
            IptablesVariant::Legacy,
            "more rules",
        ),
        (
            vec![("ip6tables-nft-restore", rules6)],
            IptablesVariant::Nft,
            "default",
        ),
    ];
    for (setup, want, why) in cases {
        let ns = netns();
        for (tool, payload) in &setup {
            ns.runner()
                .check(tool, &["--noflush"], Some(payload))
                .unwrap();
        }
        let got = detect::detect(&ns.runner());
        assert_eq!(got.variant, want, "{setup:?}: {}", got.reason);
        assert!(got.reason.contains(why), "{setup:?}: {}", got.reason);
    }
    host.assert_unchanged();
}

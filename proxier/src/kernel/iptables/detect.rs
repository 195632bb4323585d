//! Which iptables a host uses — `iptables-legacy` or `iptables-nft` — found
//! the way kube-proxy's image wrapper finds it (kubernetes-sigs
//! `iptables-wrappers`, `DetectMode`, and its older rule-counting script).
//!
//! The two variants program different kernel subsystems; rules added with
//! the wrong one run in the wrong order relative to the host's own rules, so
//! kube-proxy must use whichever the host (kubelet, the distribution's
//! firewall) already uses:
//!
//! 1. kubelet ≥ 1.17 creates `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY`
//!    in the mangle table: look for them with `iptables-nft-save -t mangle`
//!    (then `ip6tables-nft-save`); found ⇒ nft.
//! 2. The same chains in `iptables-legacy-save` / `ip6tables-legacy-save`
//!    (all tables: `-t mangle` would make the legacy kernel module create
//!    the table) ⇒ legacy.
//! 3. No hint: count the rules (`-A` lines) each variant lists, IPv4 and IPv6
//!    together; more legacy rules ⇒ legacy.
//! 4. Otherwise nft, the default of current distributions.
//!
//! Tool failures are ignored, as the wrapper ignores them; a variant whose
//! tools are not installed is never picked when the other's are.

use super::super::exec::{find_tool, Runner};
use crate::k8s::IpFamily;

/// The two iptables implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IptablesVariant {
    /// The `ip_tables` kernel API (`iptables-legacy`).
    Legacy,
    /// iptables rules stored as nftables objects (`iptables-nft`).
    Nft,
}

/// Which binary of a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IptablesTool {
    /// `iptables-nft` (rule commands).
    Command,
    Save,
    Restore,
}

impl IptablesVariant {
    pub fn name(self) -> &'static str {
        match self {
            IptablesVariant::Legacy => "legacy",
            IptablesVariant::Nft => "nft",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "legacy" => Some(IptablesVariant::Legacy),
            "nft" => Some(IptablesVariant::Nft),
            _ => None,
        }
    }

    /// The binary's name, e.g. `ip6tables-legacy-restore`.
    pub fn tool(self, family: IpFamily, tool: IptablesTool) -> String {
        let base = match family {
            IpFamily::V4 => "iptables",
            IpFamily::V6 => "ip6tables",
        };
        let suffix = match tool {
            IptablesTool::Command => "",
            IptablesTool::Save => "-save",
            IptablesTool::Restore => "-restore",
        };
        format!("{base}-{}{suffix}", self.name())
    }

    fn installed(self) -> bool {
        find_tool(&self.tool(IpFamily::V4, IptablesTool::Restore)).is_some()
    }
}

impl std::fmt::Display for IptablesVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "iptables-{}", self.name())
    }
}

/// The variant chosen and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    pub variant: IptablesVariant,
    pub reason: String,
}

/// Whether `iptables-save` output declares one of kubelet's hint chains.
pub fn has_kubelet_hint(save: &str) -> bool {
    save.lines().any(|l| {
        l.strip_prefix(':')
            .and_then(|c| c.split_whitespace().next())
            .is_some_and(|c| c == "KUBE-IPTABLES-HINT" || c == "KUBE-KUBELET-CANARY")
    })
}

/// The number of rules (`-A` lines) in `iptables-save` output.
pub fn rule_count(save: &str) -> usize {
    save.lines().filter(|l| l.starts_with("-A ")).count()
}

/// Picks the variant from what the saves show (steps 3 and 4; steps 1 and
/// 2 need the tools run in a specific order, see [`detect`]).
pub fn by_rule_count(legacy_rules: usize, nft_rules: usize) -> Detection {
    if legacy_rules > nft_rules {
        Detection {
            variant: IptablesVariant::Legacy,
            reason: format!(
                "no kubelet hint chain; iptables-legacy lists more rules ({legacy_rules}) than iptables-nft ({nft_rules})"
            ),
        }
    } else {
        Detection {
            variant: IptablesVariant::Nft,
            reason: format!(
                "no kubelet hint chain; iptables-legacy lists {legacy_rules} rules, iptables-nft {nft_rules}: nft (the default)"
            ),
        }
    }
}

/// Runs the detection in `runner`'s namespace.
pub fn detect(runner: &Runner) -> Detection {
    let legacy_installed = IptablesVariant::Legacy.installed();
    let nft_installed = IptablesVariant::Nft.installed();
    match (legacy_installed, nft_installed) {
        (true, false) => {
            return Detection {
                variant: IptablesVariant::Legacy,
                reason: "only iptables-legacy is installed".into(),
            }
        }
        (false, true) => {
            return Detection {
                variant: IptablesVariant::Nft,
                reason: "only iptables-nft is installed".into(),
            }
        }
        (false, false) => {
            return Detection {
                variant: IptablesVariant::Nft,
                reason: "no iptables is installed (Debian package `iptables`); assuming nft".into(),
            }
        }
        (true, true) => {}
    }
    let save = |variant: IptablesVariant, family: IpFamily, args: &[&str]| -> String {
        runner
            .run(&variant.tool(family, IptablesTool::Save), args, None)
            .ok()
            .filter(|o| o.success())
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    for family in [IpFamily::V4, IpFamily::V6] {
        if has_kubelet_hint(&save(IptablesVariant::Nft, family, &["-t", "mangle"])) {
            return Detection {
                variant: IptablesVariant::Nft,
                reason: format!(
                    "kubelet's hint chain is in {} -t mangle",
                    IptablesVariant::Nft.tool(family, IptablesTool::Save)
                ),
            };
        }
    }
    let legacy: Vec<String> = [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .map(|f| save(IptablesVariant::Legacy, f, &[]))
        .collect();
    for (family, text) in [IpFamily::V4, IpFamily::V6].into_iter().zip(&legacy) {
        if has_kubelet_hint(text) {
            return Detection {
                variant: IptablesVariant::Legacy,
                reason: format!(
                    "kubelet's hint chain is in {}",
                    IptablesVariant::Legacy.tool(family, IptablesTool::Save)
                ),
            };
        }
    }
    let legacy_rules: usize = legacy.iter().map(|s| rule_count(s)).sum();
    let nft_rules: usize = [IpFamily::V4, IpFamily::V6]
        .into_iter()
        .map(|f| rule_count(&save(IptablesVariant::Nft, f, &[])))
        .sum();
    by_rule_count(legacy_rules, nft_rules)
}

/// `(major, minor, patch)` from `iptables --version` output
/// (`iptables v1.8.9 (nf_tables)`).
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text.split_whitespace().find_map(|w| w.strip_prefix('v'))?;
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_chains_are_found_only_as_declarations() {
        assert!(has_kubelet_hint(
            "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
        ));
        assert!(has_kubelet_hint(":KUBE-KUBELET-CANARY - [0:0]\n"));
        assert!(!has_kubelet_hint("-A INPUT -j KUBE-IPTABLES-HINT\n"));
        assert!(!has_kubelet_hint(":KUBE-IPTABLES-HINTS - [0:0]\n"));
    }

    #[test]
    fn more_legacy_rules_pick_legacy_and_ties_pick_nft() {
        assert_eq!(by_rule_count(3, 2).variant, IptablesVariant::Legacy);
        assert_eq!(by_rule_count(0, 0).variant, IptablesVariant::Nft);
        assert_eq!(by_rule_count(2, 5).variant, IptablesVariant::Nft);
        assert_eq!(
            rule_count("*nat\n:X - [0:0]\n-A X -j RETURN\n# -A\nCOMMIT\n"),
            1
        );
    }

    #[test]
    fn tool_names_and_versions() {
        assert_eq!(
            IptablesVariant::Legacy.tool(IpFamily::V6, IptablesTool::Restore),
            "ip6tables-legacy-restore"
        );
        assert_eq!(
            IptablesVariant::Nft.tool(IpFamily::V4, IptablesTool::Command),
            "iptables-nft"
        );
        assert_eq!(
            parse_version("iptables v1.8.9 (nf_tables)"),
            Some((1, 8, 9))
        );
        assert_eq!(parse_version("iptables v1.6.2"), Some((1, 6, 2)));
        assert_eq!(parse_version("garbage"), None);
    }
}

//! The helper iptables rules of IPVS mode (upstream's
//! `createAndLinkKubeChain`, `writeIptablesRules` and `acceptIPVSTraffic`).
//!
//! IPVS does the load balancing; iptables only marks for masquerading,
//! accepts, returns and drops, keyed on kube-proxy's ipsets. The payload is
//! one `iptables-restore` text — `*nat` then `*filter`, chain lines then
//! rules — written with upstream's format strings byte for byte. The only
//! per-service rules are the `KUBE-IPVS-OUT-FILTER` drops, written in
//! service-name order (upstream's order is random).
//!
//! **Never:** writes a rule for an empty ipset that upstream skips, or
//! mentions a chain outside [`IPTABLES_CHAINS`].
//!
//! **Errors:** chain and jump creation failures are returned as warnings
//! (upstream logs them); rendering cannot fail.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::ipsets::IpSet;
use super::names::*;
use crate::dataplane::{DataplaneError, Iptables, RulePosition, SetType, Table};
use crate::iptables::buffer::{line, LineBuffer};
use crate::k8s::{IpFamily, Protocol};
use crate::local_detect::LocalDetector;

/// The four sections of the restore payload.
#[derive(Debug, Default)]
pub(super) struct Payload {
    pub nat_chains: LineBuffer,
    pub nat_rules: LineBuffer,
    pub filter_chains: LineBuffer,
    pub filter_rules: LineBuffer,
}

impl Payload {
    /// Upstream's order: `*nat`, its chains and rules, `COMMIT`, then the
    /// same for `*filter`.
    pub fn render(&self) -> String {
        let mut s = String::new();
        s.push_str("*nat\n");
        s.push_str(self.nat_chains.text());
        s.push_str(self.nat_rules.text());
        s.push_str("COMMIT\n*filter\n");
        s.push_str(self.filter_chains.text());
        s.push_str(self.filter_rules.text());
        s.push_str("COMMIT\n");
        s
    }
}

/// Ensures kube-proxy's chains and the jumps into them, and declares the
/// chains in the payload (upstream's `createAndLinkKubeChain`). Like
/// upstream, a chain that cannot be ensured stops the chain list there.
pub(super) fn create_and_link_kube_chain(
    ipt: &mut dyn Iptables,
    out: &mut Payload,
) -> Vec<DataplaneError> {
    let mut warnings = Vec::new();
    for (table, chain) in IPTABLES_CHAINS {
        if let Err(e) = ipt.ensure_chain(*table, chain) {
            warnings.push(e);
            return warnings;
        }
        match table {
            Table::Nat => out.nat_chains.chain(chain),
            _ => out.filter_chains.chain(chain),
        }
    }
    for jump in IPTABLES_JUMP_CHAINS {
        let args: Vec<String> = ["-m", "comment", "--comment", jump.comment, "-j", jump.to]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Err(e) = ipt.ensure_rule(RulePosition::Prepend, jump.table, jump.from, &args) {
            warnings.push(e);
        }
    }
    warnings
}

/// What the rules depend on besides the sets.
pub(super) struct RuleInputs<'a> {
    pub family: IpFamily,
    pub sets: &'a BTreeMap<&'static str, IpSet>,
    pub masquerade_all: bool,
    pub local_detector: Option<&'a LocalDetector>,
    pub masquerade_mark: &'a str,
    pub random_fully: bool,
    /// LB VIPs with source ranges that exclude the node: `(ip, proto, port)`.
    pub lb_no_node_access: &'a [(IpAddr, Protocol, u16)],
}

impl RuleInputs<'_> {
    fn set(&self, name: &str) -> &IpSet {
        &self.sets[name]
    }
}

/// Upstream's `writeIptablesRules` (plus `acceptIPVSTraffic`).
pub(super) fn write_iptables_rules(inp: &RuleInputs<'_>, out: &mut Payload) {
    let nat = &mut out.nat_rules;
    let filter = &mut out.filter_rules;

    // Dismiss connections to localhost early in the service chain.
    let lo = match inp.family {
        IpFamily::V4 => "127.0.0.0/8",
        IpFamily::V6 => "::1/128",
    };
    line!(nat, "-A {KUBE_SERVICES} -s {lo} -j RETURN");

    for rule in IPSET_WITH_IPTABLES_CHAIN {
        let set = inp.set(rule.set);
        if set.is_empty() {
            continue;
        }
        let proto = rule
            .protocol
            .map(|p| format!(" -p {}", p.lower()))
            .unwrap_or_default();
        let buf = match rule.table {
            Table::Filter => &mut *filter,
            _ => &mut *nat,
        };
        line!(
            buf,
            "-A {}{proto} -m comment --comment {} -m set --match-set {} {} -j {}",
            rule.from,
            set.comment(),
            set.name(),
            rule.match_type,
            rule.to
        );
    }

    let cluster = inp.set(KUBE_CLUSTER_IP);
    if !cluster.is_empty() {
        let args = format!(
            "-A {KUBE_SERVICES} -m comment --comment {} -m set --match-set {}",
            cluster.comment(),
            cluster.name()
        );
        if inp.masquerade_all {
            line!(nat, "{args} dst,dst -j {KUBE_MARK_MASQ}");
        } else if let Some(detector) = inp.local_detector {
            // Off-cluster traffic to a VIP (a static route to a node) may
            // bounce off-node: masquerade it.
            line!(
                nat,
                "{args} dst,dst {} -j {KUBE_MARK_MASQ}",
                detector.if_not_local()
            );
        } else {
            // The VIPs are bound locally, so the node picks a VIP as source
            // when talking to one: masquerade VIP-sourced traffic.
            line!(nat, "{args} src,dst -j {KUBE_MARK_MASQ}");
        }
    }

    // Traffic to external IPs from off-machine (not a bridge, not local),
    // and to external IPs the node owns, is accepted.
    let external_ip_rules = |nat: &mut LineBuffer, args: &str| {
        line!(
            nat,
            "{args} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL -j ACCEPT"
        );
        line!(nat, "{args} -m addrtype --dst-type LOCAL -j ACCEPT");
    };
    for (name, masquerade) in [(KUBE_EXTERNAL_IP, true), (KUBE_EXTERNAL_IP_LOCAL, false)] {
        let set = inp.set(name);
        if set.is_empty() {
            continue;
        }
        let args = format!(
            "-A {KUBE_SERVICES} -m comment --comment {} -m set --match-set {} dst,dst",
            set.comment(),
            set.name()
        );
        if masquerade {
            line!(nat, "{args} -j {KUBE_MARK_MASQ}");
        }
        external_ip_rules(nat, &args);
    }

    line!(
        nat,
        "-A {KUBE_SERVICES} -m addrtype --dst-type LOCAL -j {KUBE_NODE_PORT}"
    );
    line!(nat, "-A {KUBE_LOAD_BALANCER} -j {KUBE_MARK_MASQ}");
    line!(filter, "-A {KUBE_SOURCE_RANGES_FIREWALL} -j DROP");

    // The node reaching an LB VIP has source and destination the VIP; drop
    // it where source ranges exclude the node.
    for (ip, proto, port) in inp.lb_no_node_access {
        line!(
            filter,
            "-A {KUBE_IPVS_OUT_FILTER} -s {ip} -m ipvs --vaddr {ip} --vproto {} --vport {port} -j DROP",
            proto.lower()
        );
    }

    // Accept traffic to IPVS services so other rules cannot block it; these
    // must end KUBE-SERVICES.
    for name in [KUBE_CLUSTER_IP, KUBE_LOAD_BALANCER_SET] {
        let set = inp.set(name);
        if set.is_empty() {
            continue;
        }
        let match_type = match set.spec.set_type {
            SetType::BitmapPort => "dst",
            _ => "dst,dst",
        };
        line!(
            nat,
            "-A {KUBE_SERVICES} -m set --match-set {} {match_type} -j ACCEPT",
            set.name()
        );
    }

    let mark = inp.masquerade_mark;
    line!(
        filter,
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"
    );
    line!(
        filter,
        "-A {KUBE_FORWARD} -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
    );
    let hc = inp.set(KUBE_HEALTH_CHECK_NODE_PORT);
    line!(
        filter,
        "-A {KUBE_NODE_PORT} -m comment --comment {} -m set --match-set {} dst -j ACCEPT",
        hc.comment(),
        hc.name()
    );

    // No access to host ports through VIPs (kubernetes issue 72236).
    for (name, match_type) in [
        (KUBE_LOAD_BALANCER_SET, "dst,dst"),
        (KUBE_CLUSTER_IP, "dst,dst"),
        (KUBE_EXTERNAL_IP, "dst,dst"),
        (KUBE_EXTERNAL_IP_LOCAL, "dst,dst"),
        (KUBE_HEALTH_CHECK_NODE_PORT, "dst"),
    ] {
        line!(
            filter,
            "-A {KUBE_IPVS_FILTER} -m set --match-set {} {match_type} -j RETURN",
            inp.set(name).name()
        );
    }
    line!(
        filter,
        "-A {KUBE_IPVS_FILTER} -m conntrack --ctstate NEW -m set --match-set {} dst -j REJECT",
        inp.set(KUBE_IPVS_IPS).name()
    );

    line!(
        nat,
        "-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN"
    );
    // Clear the mark so a re-traversing packet is not masqueraded twice.
    line!(nat, "-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}");
    let random_fully = if inp.random_fully {
        " --random-fully"
    } else {
        ""
    };
    line!(
        nat,
        "-A {KUBE_POSTROUTING} -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{random_fully}"
    );
    line!(nat, "-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::recording::RecordingIptables;

    /// Upstream's `TestCreateAndLinkKubeChain`.
    #[test]
    fn chain_lines_like_upstream() {
        let mut ipt = RecordingIptables::new(IpFamily::V4);
        let mut out = Payload::default();
        assert!(create_and_link_kube_chain(&mut ipt, &mut out).is_empty());
        assert_eq!(
            out.nat_chains.text(),
            ":KUBE-SERVICES - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-LOAD-BALANCER - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n"
        );
        assert_eq!(
            out.filter_chains.text(),
            ":KUBE-FORWARD - [0:0]\n:KUBE-NODE-PORT - [0:0]\n:KUBE-PROXY-FIREWALL - [0:0]\n:KUBE-SOURCE-RANGES-FIREWALL - [0:0]\n:KUBE-IPVS-FILTER - [0:0]\n:KUBE-IPVS-OUT-FILTER - [0:0]\n"
        );
        assert_eq!(
            ipt.rules(Table::Filter, "OUTPUT").unwrap(),
            ["-m comment --comment kubernetes ipvs access filter -j KUBE-IPVS-OUT-FILTER"]
        );
    }

    /// The three forms of the KUBE-CLUSTER-IP masquerade rule.
    #[test]
    fn cluster_ip_masquerade_variants() {
        use crate::config::DetectLocal;
        use crate::dataplane::IpSetEntry;
        use crate::ipvs::names::IPSET_INFO;
        let mut sets: BTreeMap<&'static str, IpSet> = IPSET_INFO
            .iter()
            .map(|i| (i.name, IpSet::new(i, IpFamily::V4)))
            .collect();
        let entry = IpSetEntry::ip_port("10.96.0.1".parse().unwrap(), Protocol::Tcp, 80);
        sets.get_mut(KUBE_CLUSTER_IP).unwrap().insert(&entry);
        let detector = LocalDetector::new(&DetectLocal::ClusterCidr(vec!["10.0.0.0/8"
            .parse()
            .unwrap()]));
        let head = "-A KUBE-SERVICES -m comment --comment \"Kubernetes service cluster ip + port for masquerade purpose\" -m set --match-set KUBE-CLUSTER-IP";
        for (all, detector, tail) in [
            (true, detector.as_ref(), "dst,dst -j KUBE-MARK-MASQ"),
            (
                false,
                detector.as_ref(),
                "dst,dst ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
            ),
            (false, None, "src,dst -j KUBE-MARK-MASQ"),
        ] {
            let mut out = Payload::default();
            write_iptables_rules(
                &RuleInputs {
                    family: IpFamily::V4,
                    sets: &sets,
                    masquerade_all: all,
                    local_detector: detector,
                    masquerade_mark: "0x00004000",
                    random_fully: false,
                    lb_no_node_access: &[],
                },
                &mut out,
            );
            let want = format!("{head} {tail}");
            assert!(
                out.render().lines().any(|l| l == want),
                "{want}\n{}",
                out.render()
            );
        }
    }
}

//! The names IPVS mode uses, exactly as upstream spells them: helper
//! iptables chains, ipsets with their types and comments, the jump rules
//! from the built-in chains, and which ipset feeds which iptables rule
//! (upstream's `iptablesJumpChain`, `iptablesChains`, `ipsetInfo`,
//! `ipsetWithIptablesChain` in `proxier.go` and the constants of `ipset.go`).
//!
//! These tables are data: their order is upstream's and is what rule order
//! follows. Users diff kpsim against a real node, so nothing here may drift.
//! **Never:** holds logic beyond IPv6 set naming. **Errors:** none.

use crate::dataplane::{SetType, Table};
use crate::k8s::Protocol;

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const KUBE_SOURCE_RANGES_FIREWALL: &str = "KUBE-SOURCE-RANGES-FIREWALL";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_NODE_PORT: &str = "KUBE-NODE-PORT";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_LOAD_BALANCER: &str = "KUBE-LOAD-BALANCER";
/// Filters access to host ports through VIPs (kubernetes issue 72236).
pub const KUBE_IPVS_FILTER: &str = "KUBE-IPVS-FILTER";
/// Filters node access to LB VIPs with source ranges (issue 119656).
pub const KUBE_IPVS_OUT_FILTER: &str = "KUBE-IPVS-OUT-FILTER";

pub const KUBE_LOOP_BACK: &str = "KUBE-LOOP-BACK";
pub const KUBE_CLUSTER_IP: &str = "KUBE-CLUSTER-IP";
pub const KUBE_EXTERNAL_IP: &str = "KUBE-EXTERNAL-IP";
pub const KUBE_EXTERNAL_IP_LOCAL: &str = "KUBE-EXTERNAL-IP-LOCAL";
pub const KUBE_LOAD_BALANCER_SET: &str = "KUBE-LOAD-BALANCER";
pub const KUBE_LOAD_BALANCER_LOCAL: &str = "KUBE-LOAD-BALANCER-LOCAL";
pub const KUBE_LOAD_BALANCER_FW: &str = "KUBE-LOAD-BALANCER-FW";
pub const KUBE_LOAD_BALANCER_SOURCE_IP: &str = "KUBE-LOAD-BALANCER-SOURCE-IP";
pub const KUBE_LOAD_BALANCER_SOURCE_CIDR: &str = "KUBE-LOAD-BALANCER-SOURCE-CIDR";
pub const KUBE_NODE_PORT_TCP: &str = "KUBE-NODE-PORT-TCP";
pub const KUBE_NODE_PORT_LOCAL_TCP: &str = "KUBE-NODE-PORT-LOCAL-TCP";
pub const KUBE_NODE_PORT_UDP: &str = "KUBE-NODE-PORT-UDP";
pub const KUBE_NODE_PORT_LOCAL_UDP: &str = "KUBE-NODE-PORT-LOCAL-UDP";
pub const KUBE_NODE_PORT_SCTP: &str = "KUBE-NODE-PORT-SCTP-HASH";
pub const KUBE_NODE_PORT_LOCAL_SCTP: &str = "KUBE-NODE-PORT-LOCAL-SCTP-HASH";
pub const KUBE_HEALTH_CHECK_NODE_PORT: &str = "KUBE-HEALTH-CHECK-NODE-PORT";
pub const KUBE_IPVS_IPS: &str = "KUBE-IPVS-IPS";

/// One ipset kube-proxy keeps (upstream's `ipsetInfo`).
pub struct SetInfo {
    pub name: &'static str,
    pub set_type: SetType,
    pub comment: &'static str,
}

/// Every ipset IPVS mode uses, in upstream's order.
pub const IPSET_INFO: &[SetInfo] = &[
    SetInfo {
        name: KUBE_LOOP_BACK,
        set_type: SetType::HashIpPortIp,
        comment: "Kubernetes endpoints dst ip:port, source ip for solving hairpin purpose",
    },
    SetInfo {
        name: KUBE_CLUSTER_IP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service cluster ip + port for masquerade purpose",
    },
    SetInfo {
        name: KUBE_EXTERNAL_IP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service external ip + port for masquerade and filter purpose",
    },
    SetInfo {
        name: KUBE_EXTERNAL_IP_LOCAL,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service external ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: KUBE_LOAD_BALANCER_SET,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service lb portal",
    },
    SetInfo {
        name: KUBE_LOAD_BALANCER_FW,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service load balancer ip + port for load balancer with sourceRange",
    },
    SetInfo {
        name: KUBE_LOAD_BALANCER_LOCAL,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes service load balancer ip + port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: KUBE_LOAD_BALANCER_SOURCE_IP,
        set_type: SetType::HashIpPortIp,
        comment: "Kubernetes service load balancer ip + port + source IP for packet filter purpose",
    },
    SetInfo {
        name: KUBE_LOAD_BALANCER_SOURCE_CIDR,
        set_type: SetType::HashIpPortNet,
        comment:
            "Kubernetes service load balancer ip + port + source cidr for packet filter purpose",
    },
    SetInfo {
        name: KUBE_NODE_PORT_TCP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport TCP port for masquerade purpose",
    },
    SetInfo {
        name: KUBE_NODE_PORT_LOCAL_TCP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport TCP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: KUBE_NODE_PORT_UDP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport UDP port for masquerade purpose",
    },
    SetInfo {
        name: KUBE_NODE_PORT_LOCAL_UDP,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes nodeport UDP port with externalTrafficPolicy=local",
    },
    SetInfo {
        name: KUBE_NODE_PORT_SCTP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes nodeport SCTP port for masquerade purpose with type 'hash ip:port'",
    },
    SetInfo {
        name: KUBE_NODE_PORT_LOCAL_SCTP,
        set_type: SetType::HashIpPort,
        comment: "Kubernetes nodeport SCTP port with externalTrafficPolicy=local with type 'hash ip:port'",
    },
    SetInfo {
        name: KUBE_HEALTH_CHECK_NODE_PORT,
        set_type: SetType::BitmapPort,
        comment: "Kubernetes health check node port",
    },
    SetInfo {
        name: KUBE_IPVS_IPS,
        set_type: SetType::HashIp,
        comment: "Addresses on the ipvs interface",
    },
];

/// The name an ipset gets for `ipv6`: upstream's `NewIPSet` turns `KUBE-`
/// into `KUBE-6-` for IPv6 and truncates to ipset's 31 characters.
pub fn family_set_name(name: &str, ipv6: bool) -> String {
    if !ipv6 {
        return name.to_string();
    }
    match name.strip_prefix("KUBE-") {
        Some(rest) => {
            let mut n = format!("KUBE-6-{rest}");
            n.truncate(31);
            n
        }
        None => name.to_string(),
    }
}

/// One iptables rule driven by an ipset (upstream's `ipsetWithIptablesChain`):
/// `-A FROM [-p PROTO] -m comment --comment "…" -m set --match-set SET MATCH -j TO`,
/// written only when the set has entries.
pub struct SetRule {
    pub set: &'static str,
    pub table: Table,
    pub from: &'static str,
    pub to: &'static str,
    pub match_type: &'static str,
    pub protocol: Option<Protocol>,
}

/// Note: a `-LOCAL` NodePort set comes before its non-local set.
pub const IPSET_WITH_IPTABLES_CHAIN: &[SetRule] = &[
    SetRule {
        set: KUBE_LOOP_BACK,
        table: Table::Nat,
        from: KUBE_POSTROUTING,
        to: "MASQUERADE",
        match_type: "dst,dst,src",
        protocol: None,
    },
    SetRule {
        set: KUBE_LOAD_BALANCER_SET,
        table: Table::Nat,
        from: KUBE_SERVICES,
        to: KUBE_LOAD_BALANCER,
        match_type: "dst,dst",
        protocol: None,
    },
    SetRule {
        set: KUBE_LOAD_BALANCER_LOCAL,
        table: Table::Nat,
        from: KUBE_LOAD_BALANCER,
        to: "RETURN",
        match_type: "dst,dst",
        protocol: None,
    },
    SetRule {
        set: KUBE_NODE_PORT_LOCAL_TCP,
        table: Table::Nat,
        from: KUBE_NODE_PORT,
        to: "RETURN",
        match_type: "dst",
        protocol: Some(Protocol::Tcp),
    },
    SetRule {
        set: KUBE_NODE_PORT_TCP,
        table: Table::Nat,
        from: KUBE_NODE_PORT,
        to: KUBE_MARK_MASQ,
        match_type: "dst",
        protocol: Some(Protocol::Tcp),
    },
    SetRule {
        set: KUBE_NODE_PORT_LOCAL_UDP,
        table: Table::Nat,
        from: KUBE_NODE_PORT,
        to: "RETURN",
        match_type: "dst",
        protocol: Some(Protocol::Udp),
    },
    SetRule {
        set: KUBE_NODE_PORT_UDP,
        table: Table::Nat,
        from: KUBE_NODE_PORT,
        to: KUBE_MARK_MASQ,
        match_type: "dst",
        protocol: Some(Protocol::Udp),
    },
    SetRule {
        set: KUBE_NODE_PORT_LOCAL_SCTP,
        table: Table::Nat,
        from: KUBE_NODE_PORT,
        to: "RETURN",
        match_type: "dst,dst",
        protocol: Some(Protocol::Sctp),
    },
    SetRule {
        set: KUBE_NODE_PORT_SCTP,
        table: Table::Nat,
        from: KUBE_NODE_PORT,
        to: KUBE_MARK_MASQ,
        match_type: "dst,dst",
        protocol: Some(Protocol::Sctp),
    },
    SetRule {
        set: KUBE_LOAD_BALANCER_FW,
        table: Table::Filter,
        from: KUBE_PROXY_FIREWALL,
        to: KUBE_SOURCE_RANGES_FIREWALL,
        match_type: "dst,dst",
        protocol: None,
    },
    SetRule {
        set: KUBE_LOAD_BALANCER_SOURCE_CIDR,
        table: Table::Filter,
        from: KUBE_SOURCE_RANGES_FIREWALL,
        to: "RETURN",
        match_type: "dst,dst,src",
        protocol: None,
    },
    SetRule {
        set: KUBE_LOAD_BALANCER_SOURCE_IP,
        table: Table::Filter,
        from: KUBE_SOURCE_RANGES_FIREWALL,
        to: "RETURN",
        match_type: "dst,dst,src",
        protocol: None,
    },
];

/// The chains kube-proxy owns in IPVS mode, in upstream's order (their
/// `:CHAIN` lines follow it).
pub const IPTABLES_CHAINS: &[(Table, &str)] = &[
    (Table::Nat, KUBE_SERVICES),
    (Table::Nat, KUBE_POSTROUTING),
    (Table::Nat, KUBE_NODE_PORT),
    (Table::Nat, KUBE_LOAD_BALANCER),
    (Table::Nat, KUBE_MARK_MASQ),
    (Table::Filter, KUBE_FORWARD),
    (Table::Filter, KUBE_NODE_PORT),
    (Table::Filter, KUBE_PROXY_FIREWALL),
    (Table::Filter, KUBE_SOURCE_RANGES_FIREWALL),
    (Table::Filter, KUBE_IPVS_FILTER),
    (Table::Filter, KUBE_IPVS_OUT_FILTER),
];

/// One jump from a built-in chain (upstream's `iptablesJumpChain`), ensured
/// with `-m comment --comment COMMENT -j TO` prepended to FROM.
pub struct JumpChain {
    pub table: Table,
    pub from: &'static str,
    pub to: &'static str,
    pub comment: &'static str,
}

pub const IPTABLES_JUMP_CHAINS: &[JumpChain] = &[
    JumpChain {
        table: Table::Nat,
        from: "OUTPUT",
        to: KUBE_SERVICES,
        comment: "kubernetes service portals",
    },
    JumpChain {
        table: Table::Nat,
        from: "PREROUTING",
        to: KUBE_SERVICES,
        comment: "kubernetes service portals",
    },
    JumpChain {
        table: Table::Nat,
        from: "POSTROUTING",
        to: KUBE_POSTROUTING,
        comment: "kubernetes postrouting rules",
    },
    JumpChain {
        table: Table::Filter,
        from: "FORWARD",
        to: KUBE_FORWARD,
        comment: "kubernetes forwarding rules",
    },
    JumpChain {
        table: Table::Filter,
        from: "INPUT",
        to: KUBE_NODE_PORT,
        comment: "kubernetes health check rules",
    },
    JumpChain {
        table: Table::Filter,
        from: "INPUT",
        to: KUBE_PROXY_FIREWALL,
        comment: "kube-proxy firewall rules",
    },
    JumpChain {
        table: Table::Filter,
        from: "FORWARD",
        to: KUBE_PROXY_FIREWALL,
        comment: "kube-proxy firewall rules",
    },
    JumpChain {
        table: Table::Filter,
        from: "INPUT",
        to: KUBE_IPVS_FILTER,
        comment: "kubernetes ipvs access filter",
    },
    JumpChain {
        table: Table::Filter,
        from: "OUTPUT",
        to: KUBE_IPVS_OUT_FILTER,
        comment: "kubernetes ipvs access filter",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_set_names_like_upstream() {
        assert_eq!(family_set_name(KUBE_CLUSTER_IP, true), "KUBE-6-CLUSTER-IP");
        assert_eq!(family_set_name(KUBE_CLUSTER_IP, false), "KUBE-CLUSTER-IP");
        // 33 characters with the prefix: truncated to ipset's 31.
        assert_eq!(
            family_set_name(KUBE_LOAD_BALANCER_SOURCE_CIDR, true),
            "KUBE-6-LOAD-BALANCER-SOURCE-CID"
        );
        assert_eq!(
            family_set_name(KUBE_NODE_PORT_LOCAL_SCTP, true),
            "KUBE-6-NODE-PORT-LOCAL-SCTP-HAS"
        );
        assert!(IPSET_INFO.iter().all(|s| s.name.len() <= 31));
    }
}

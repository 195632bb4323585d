//! Object names of nftables mode, hashed exactly like upstream
//! (`servicePortChainNameBase`, `servicePortEndpointChainNameBase`,
//! `hashAndTruncate` in `pkg/proxy/nftables/proxier.go`).
//!
//! A per-service chain is a prefix (`service-`, `local-`, `external-`,
//! `firewall-`) plus `HASH-namespace/name/protocol/port`, where `HASH` is the
//! first 8 characters of base32(sha256(`namespace/name/protocol/port`)). A
//! per-endpoint chain (`endpoint-`) or affinity set (`affinity-`) appends
//! `__IP/port` (IPv6 colons become dots) before hashing. Names longer than
//! 240 characters are cut to 237 plus `...`. These names let users diff kpsim
//! against a real node, so they must never drift. Pure functions, no errors.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::service_port::ServicePortName;

/// The table every object lives in.
pub const KUBE_PROXY_TABLE: &str = "kube-proxy";

pub const FILTER_PREROUTING_PRE_DNAT: &str = "filter-prerouting-pre-dnat";
pub const FILTER_OUTPUT_PRE_DNAT: &str = "filter-output-pre-dnat";
pub const FILTER_INPUT: &str = "filter-input";
pub const FILTER_FORWARD: &str = "filter-forward";
pub const FILTER_OUTPUT: &str = "filter-output";
pub const NAT_PREROUTING: &str = "nat-prerouting";
pub const NAT_OUTPUT: &str = "nat-output";
pub const NAT_POSTROUTING: &str = "nat-postrouting";

pub const SERVICES_CHAIN: &str = "services";
pub const SERVICE_IPS_MAP: &str = "service-ips";
pub const SERVICE_NODEPORTS_MAP: &str = "service-nodeports";
pub const NODEPORT_IPS_SET: &str = "nodeport-ips";
pub const CLUSTER_IPS_SET: &str = "cluster-ips";
pub const SERVICE_ENDPOINTS_CHECK_CHAIN: &str = "service-endpoints-check";
pub const NODEPORT_ENDPOINTS_CHECK_CHAIN: &str = "nodeport-endpoints-check";
pub const NO_ENDPOINT_SERVICES_MAP: &str = "no-endpoint-services";
pub const NO_ENDPOINT_NODEPORTS_MAP: &str = "no-endpoint-nodeports";
pub const REJECT_CHAIN: &str = "reject-chain";
pub const CLUSTER_IPS_CHECK_CHAIN: &str = "cluster-ips-check";
pub const FIREWALL_IPS_MAP: &str = "firewall-ips";
pub const FIREWALL_CHECK_CHAIN: &str = "firewall-check";
pub const MARK_MASQ_CHAIN: &str = "mark-for-masquerade";
pub const MASQUERADING_CHAIN: &str = "masquerading";

pub const CLUSTER_POLICY_PREFIX: &str = "service-";
pub const LOCAL_POLICY_PREFIX: &str = "local-";
pub const EXTERNAL_PREFIX: &str = "external-";
pub const ENDPOINT_PREFIX: &str = "endpoint-";
pub const AFFINITY_PREFIX: &str = "affinity-";
pub const FIREWALL_PREFIX: &str = "firewall-";

/// knftables' `NameLengthMax` (256) minus the longest prefix (16).
const CHAIN_NAME_BASE_LENGTH_MAX: usize = 256 - 16;

/// `HASH-name`, cut to 240 characters (upstream's `hashAndTruncate`).
pub fn hash_and_truncate(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let encoded = BASE32.encode(&digest);
    let mut out = format!("{}-{name}", &encoded[..8]);
    if out.len() > CHAIN_NAME_BASE_LENGTH_MAX {
        // Every character is ASCII ([a-z0-9./_-]), so byte slicing is safe.
        out.truncate(CHAIN_NAME_BASE_LENGTH_MAX - 3);
        out.push_str("...");
    }
    out
}

/// `HASH-namespace/name/protocol/port`.
pub fn service_port_chain_name_base(name: &ServicePortName, protocol_lower: &str) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        name.service.namespace, name.service.name, protocol_lower, name.port
    ))
}

/// `HASH-namespace/name/protocol/port__IP/port`; `endpoint` is `ip:port` or
/// `[ipv6]:port`.
pub fn endpoint_chain_name_base(
    name: &ServicePortName,
    protocol_lower: &str,
    endpoint: &str,
) -> String {
    let (ip, port) = split_host_port(endpoint);
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        name.service.namespace,
        name.service.name,
        protocol_lower,
        name.port,
        ip.replace(':', "."),
        port
    ))
}

/// Go's `net.SplitHostPort` for the well-formed strings endpoints produce.
fn split_host_port(endpoint: &str) -> (&str, &str) {
    if let Some(rest) = endpoint.strip_prefix('[') {
        if let Some((ip, port)) = rest.split_once("]:") {
            return (ip, port);
        }
    }
    endpoint.rsplit_once(':').unwrap_or((endpoint, ""))
}

/// The per-service-port chain names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// `service-…`: endpoints for Cluster traffic policy.
    pub cluster: String,
    /// `local-…`: endpoints for Local traffic policy.
    pub local: String,
    /// `external-…`: external traffic dispatch.
    pub external: String,
    /// `firewall-…`: loadBalancerSourceRanges filtering.
    pub firewall: String,
}

impl ServiceChains {
    pub fn new(name: &ServicePortName, protocol_lower: &str) -> Self {
        let base = service_port_chain_name_base(name, protocol_lower);
        ServiceChains {
            cluster: format!("{CLUSTER_POLICY_PREFIX}{base}"),
            local: format!("{LOCAL_POLICY_PREFIX}{base}"),
            external: format!("{EXTERNAL_PREFIX}{base}"),
            firewall: format!("{FIREWALL_PREFIX}{base}"),
        }
    }
}

/// The endpoint chain and affinity set of one endpoint.
pub fn endpoint_names(
    name: &ServicePortName,
    protocol_lower: &str,
    endpoint: &str,
) -> (String, String) {
    let base = endpoint_chain_name_base(name, protocol_lower, endpoint);
    (
        format!("{ENDPOINT_PREFIX}{base}"),
        format!("{AFFINITY_PREFIX}{base}"),
    )
}

/// Per-service and per-endpoint chains always contain a `/`; kube-proxy's
/// fixed chains never do.
pub fn is_service_chain_name(name: &str) -> bool {
    name.contains('/')
}

pub fn is_affinity_set_name(name: &str) -> bool {
    name.starts_with(AFFINITY_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::{NamespacedName, Protocol};

    fn spn(ns: &str, name: &str, port: &str) -> ServicePortName {
        ServicePortName {
            service: NamespacedName::new(ns, name),
            port: port.to_string(),
            protocol: Protocol::Tcp,
        }
    }

    const LONG_NS: &str = "very-long-namespace-name-abcdefghijklmnopqrstuvwxyz0123456789xx";
    const LONG_SVC: &str = "very-long-service-name-why-would-you-even-do-this-i-mean-really";
    const LONG_PORT: &str = "port-443-providing-the-hypertext-transmission-protocol-with-tls";

    // Upstream's Test_servicePortChainNameBase.
    #[test]
    fn service_chain_names_match_upstream() {
        let t = spn("testing", "service", "http");
        assert_eq!(
            service_port_chain_name_base(&t, "tcp"),
            "P4ZYZVCF-testing/service/tcp/http"
        );
        let t = spn("testing", "service", "https");
        assert_eq!(
            service_port_chain_name_base(&t, "tcp"),
            "LZBRENCP-testing/service/tcp/https"
        );
        let t = spn(LONG_NS, LONG_SVC, LONG_PORT);
        assert_eq!(
            service_port_chain_name_base(&t, "sctp"),
            format!("KR6NACJP-{LONG_NS}/{LONG_SVC}/sctp/{LONG_PORT}")
        );
        // Names in TestOverallNFTablesRules' golden output.
        let c = ServiceChains::new(&spn("ns1", "svc1", "p80"), "tcp");
        assert_eq!(c.cluster, "service-ULMVA6XW-ns1/svc1/tcp/p80");
        let c = ServiceChains::new(&spn("ns5", "svc5", "p80"), "tcp");
        assert_eq!(c.firewall, "firewall-HVFWP5L3-ns5/svc5/tcp/p80");
        assert_eq!(c.external, "external-HVFWP5L3-ns5/svc5/tcp/p80");
    }

    // Upstream's Test_servicePortEndpointChainNameBase.
    #[test]
    fn endpoint_chain_names_match_upstream() {
        let t = spn("testing", "service", "http");
        for (ep, want) in [
            (
                "10.180.0.1:80",
                "JO2XBXZR-testing/service/tcp/http__10.180.0.1/80",
            ),
            (
                "10.180.0.2:80",
                "5S6H3H22-testing/service/tcp/http__10.180.0.2/80",
            ),
            (
                "[fd80:abcd:12::a1b2:c3d4:e5f6:9999]:80",
                "U7E2ET36-testing/service/tcp/http__fd80.abcd.12..a1b2.c3d4.e5f6.9999/80",
            ),
        ] {
            assert_eq!(endpoint_chain_name_base(&t, "tcp", ep), want);
        }
        let t = spn(LONG_NS, LONG_SVC, LONG_PORT);
        let head = format!("{LONG_NS}/{LONG_SVC}/sctp/{LONG_PORT}__1234.5678.9abc.def0..abc");
        for (ep, want) in [
            (
                "[1234:5678:9abc:def0::abc:1234]:443",
                format!("5YS7AFEA-{head}.1234/443"),
            ),
            (
                "[1234:5678:9abc:def0::abcd:1234:5678]:443",
                format!("CI6C53Q3-{head}d.1234..."),
            ),
            (
                "[1234:5678:9abc:def0::abcd:1234:8765]:443",
                format!("2FLXFK6X-{head}d.1234..."),
            ),
        ] {
            assert_eq!(endpoint_chain_name_base(&t, "sctp", ep), want);
        }
        let (chain, set) = endpoint_names(&spn("ns5", "svc5", "p80"), "tcp", "10.180.0.3:80");
        assert_eq!(chain, "endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80");
        assert_eq!(set, "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80");
    }

    #[test]
    fn service_chain_detection() {
        assert!(is_service_chain_name("service-ULMVA6XW-ns1/svc1/tcp/p80"));
        assert!(!is_service_chain_name(SERVICES_CHAIN));
        assert!(is_affinity_set_name("affinity-X-a/b/tcp/p__1.2.3.4/80"));
        assert!(!is_affinity_set_name(CLUSTER_IPS_SET));
    }
}

//! Chain names of iptables mode, hashed exactly like upstream.
//!
//! A per-service chain is a prefix plus the first 16 characters of the
//! base32 (RFC 4648, with padding alphabet) encoding of
//! `sha256(servicePortName + protocol)`; a per-endpoint chain hashes
//! `servicePortName + protocol + "ip:port"`. The 16-character hash keeps
//! names within iptables' 28-character limit. These names let users diff
//! kpsim's rules against a real node's, so they must never drift.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
pub const KUBE_PROXY_CANARY: &str = "KUBE-PROXY-CANARY";
/// kubelet's firewall chain, which kube-proxy duplicates.
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";

pub const SVC_PREFIX: &str = "KUBE-SVC-";
pub const SVL_PREFIX: &str = "KUBE-SVL-";
pub const FW_PREFIX: &str = "KUBE-FW-";
pub const EXT_PREFIX: &str = "KUBE-EXT-";
pub const SEP_PREFIX: &str = "KUBE-SEP-";

/// The first 16 characters of base32(sha256(text)).
pub fn hash16(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut encoded = BASE32.encode(&digest);
    encoded.truncate(16);
    encoded
}

/// The hash of a service port: `hash16(name + protocol)`.
pub fn port_proto_hash(service_port_name: &str, protocol_lower: &str) -> String {
    hash16(&format!("{service_port_name}{protocol_lower}"))
}

/// The per-service-port chain names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceChains {
    /// `KUBE-SVC-…`: Cluster traffic policy endpoints.
    pub cluster: String,
    /// `KUBE-SVL-…`: Local traffic policy endpoints.
    pub local: String,
    /// `KUBE-FW-…`: loadBalancerSourceRanges filtering.
    pub firewall: String,
    /// `KUBE-EXT-…`: external traffic dispatch.
    pub external: String,
}

impl ServiceChains {
    pub fn new(service_port_name: &str, protocol_lower: &str) -> Self {
        let hash = port_proto_hash(service_port_name, protocol_lower);
        ServiceChains {
            cluster: format!("{SVC_PREFIX}{hash}"),
            local: format!("{SVL_PREFIX}{hash}"),
            firewall: format!("{FW_PREFIX}{hash}"),
            external: format!("{EXT_PREFIX}{hash}"),
        }
    }
}

/// `KUBE-SEP-…` for one endpoint (`ip:port`) of a service port.
pub fn endpoint_chain(service_port_name: &str, protocol_lower: &str, endpoint: &str) -> String {
    format!(
        "{SEP_PREFIX}{}",
        hash16(&format!("{service_port_name}{protocol_lower}{endpoint}"))
    )
}

/// Whether a chain is one of the per-service or per-endpoint chains that
/// kube-proxy owns and may delete when stale.
pub fn is_service_chain(name: &str) -> bool {
    [SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX]
        .iter()
        .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Names that appear in upstream's own golden outputs.
    #[test]
    fn hashes_match_upstream_goldens() {
        assert_eq!(
            ServiceChains::new("ns1/svc1:p80", "tcp").cluster,
            "KUBE-SVC-XPGD46QRK7WJZT7O"
        );
        assert_eq!(
            endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80"),
            "KUBE-SEP-SXIVWICOYRO3J4NJ"
        );
    }

    #[test]
    fn service_chain_prefixes() {
        assert!(is_service_chain("KUBE-SVC-XPGD46QRK7WJZT7O"));
        assert!(is_service_chain("KUBE-EXT-XPGD46QRK7WJZT7O"));
        assert!(!is_service_chain("KUBE-SERVICES"));
        assert!(!is_service_chain("KUBE-MARK-MASQ"));
    }
}

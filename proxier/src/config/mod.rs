//! `KubeProxyConfiguration` (kubeproxy.config.k8s.io/v1alpha1): parsing,
//! upstream defaults, validation, and the resolved [`Config`] the proxier uses.
//!
//! The file format is strict like kube-proxy's own decoder: every field of the
//! v1alpha1 schema is accepted (including the ones kpsim has no use for, such
//! as `clientConnection`), and a field the schema does not have is an error
//! naming it — a typo must never be silently ignored. Defaults are upstream's
//! (`pkg/proxy/apis/config/v1alpha1/defaults.go`).

pub mod duration;
mod raw;

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

pub use raw::KubeProxyConfiguration;

/// The proxy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Iptables,
    Ipvs,
    Nftables,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Iptables => "iptables",
            Mode::Ipvs => "ipvs",
            Mode::Nftables => "nftables",
        }
    }

    pub fn parse(text: &str) -> Result<Mode, String> {
        match text {
            "" | "iptables" => Ok(Mode::Iptables),
            "ipvs" => Ok(Mode::Ipvs),
            "nftables" => Ok(Mode::Nftables),
            other => Err(format!(
                "unknown mode {other:?}; must be iptables, ipvs, nftables or blank (blank means iptables)"
            )),
        }
    }
}

/// How kube-proxy decides that a packet came from a pod on this cluster
/// (`detectLocalMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetectLocal {
    /// `ClusterCIDR`: source in the cluster CIDR (of this proxier's family).
    ClusterCidr(Vec<IpNet>),
    /// `NodeCIDR`: source in this node's pod CIDR(s).
    NodeCidr(Vec<IpNet>),
    /// `BridgeInterface`: arrived on this bridge.
    BridgeInterface(String),
    /// `InterfaceNamePrefix`: arrived on an interface with this prefix.
    InterfaceNamePrefix(String),
    /// Local traffic cannot be detected (e.g. ClusterCIDR mode without a CIDR).
    Unknown,
}

/// IPVS settings (`ipvs.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvsConfig {
    pub scheduler: String,
    pub exclude_cidrs: Vec<IpNet>,
    pub strict_arp: bool,
    pub tcp_timeout: Duration,
    pub tcp_fin_timeout: Duration,
    pub udp_timeout: Duration,
}

/// Conntrack settings (`conntrack.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    pub max_per_core: u32,
    pub min: u32,
    pub tcp_established_timeout: Duration,
    pub tcp_close_wait_timeout: Duration,
    pub tcp_be_liberal: bool,
    pub udp_timeout: Duration,
    pub udp_stream_timeout: Duration,
}

/// A validated configuration with every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub mode: Mode,
    pub hostname_override: Option<String>,
    /// `clusterCIDR`, split on commas (dual-stack gives one per family).
    pub cluster_cidrs: Vec<IpNet>,
    pub detect_local_mode: String,
    pub bridge_interface: String,
    pub interface_name_prefix: String,
    /// The masquerade mark bit for the active mode (iptables/IPVS use
    /// `iptables.masqueradeBit`, nftables `nftables.masqueradeBit`).
    pub masquerade_bit: u8,
    pub masquerade_all: bool,
    pub localhost_node_ports: bool,
    /// `syncPeriod` / `minSyncPeriod` of the active mode.
    pub sync_period: Duration,
    pub min_sync_period: Duration,
    /// `nodePortAddresses` entries: CIDRs, or the word `primary`.
    pub node_port_addresses: Vec<String>,
    pub ipvs: IpvsConfig,
    pub conntrack: ConntrackConfig,
}

impl Default for Config {
    fn default() -> Self {
        KubeProxyConfiguration::default()
            .resolve()
            .expect("the empty configuration is valid")
    }
}

impl Config {
    /// The mark value, e.g. bit 14 → `0x4000`.
    pub fn masquerade_mark_value(&self) -> u32 {
        1u32 << self.masquerade_bit
    }

    /// The mark as kube-proxy prints it: Go's `%#08x`, e.g. `0x00004000`.
    pub fn masquerade_mark(&self) -> String {
        format!("{:#010x}", self.masquerade_mark_value())
    }

    /// How this proxier detects local (pod) traffic for `family`, given the
    /// node's pod CIDRs.
    pub fn detect_local(
        &self,
        family: crate::k8s::IpFamily,
        node_pod_cidrs: &[IpNet],
    ) -> DetectLocal {
        let of_family = |nets: &[IpNet]| -> Vec<IpNet> {
            nets.iter()
                .filter(|n| crate::k8s::IpFamily::of(&n.addr()) == family)
                .copied()
                .collect()
        };
        match self.detect_local_mode.as_str() {
            "" | "ClusterCIDR" => {
                let cidrs = of_family(&self.cluster_cidrs);
                if cidrs.is_empty() {
                    DetectLocal::Unknown
                } else {
                    DetectLocal::ClusterCidr(cidrs)
                }
            }
            "NodeCIDR" => {
                let cidrs = of_family(node_pod_cidrs);
                if cidrs.is_empty() {
                    DetectLocal::Unknown
                } else {
                    DetectLocal::NodeCidr(cidrs)
                }
            }
            "BridgeInterface" => DetectLocal::BridgeInterface(self.bridge_interface.clone()),
            "InterfaceNamePrefix" => {
                DetectLocal::InterfaceNamePrefix(self.interface_name_prefix.clone())
            }
            _ => DetectLocal::Unknown,
        }
    }
}

/// A configuration file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

/// Parses and validates a KubeProxyConfiguration document (YAML or JSON).
pub fn load_str(source_name: &str, text: &str) -> Result<Config, ConfigError> {
    let err = |message: String| ConfigError {
        source_name: source_name.to_string(),
        message,
    };
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: KubeProxyConfiguration = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            err(inner)
        } else {
            err(format!("{path}: {inner}"))
        }
    })?;
    raw.resolve().map_err(err)
}

pub(crate) fn parse_ip_list(field: &str, text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("{field}: {s:?} is not a CIDR; write it like 10.244.0.0/16"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams() {
        let c = Config::default();
        assert_eq!(c.mode, Mode::Iptables);
        assert_eq!(c.masquerade_bit, 14);
        assert_eq!(c.masquerade_mark(), "0x00004000");
        assert!(c.localhost_node_ports);
        assert!(!c.masquerade_all);
        assert_eq!(c.sync_period, Duration::from_secs(30));
        assert_eq!(c.min_sync_period, Duration::from_secs(1));
        assert_eq!(c.ipvs.scheduler, "rr");
        assert_eq!(c.conntrack.max_per_core, 32768);
        assert_eq!(c.conntrack.min, 131072);
        assert_eq!(
            c.conntrack.tcp_established_timeout,
            Duration::from_secs(86400)
        );
        assert_eq!(
            c.conntrack.tcp_close_wait_timeout,
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn reads_a_real_configuration() {
        let text = r#"
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
bindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 5
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
mode: ipvs
ipvs:
  scheduler: wrr
  minSyncPeriod: 0s
  syncPeriod: 1m0s
iptables:
  masqueradeBit: 15
conntrack:
  maxPerCore: null
nodePortAddresses: [primary]
"#;
        let c = load_str("kp.yaml", text).unwrap();
        assert_eq!(c.mode, Mode::Ipvs);
        assert_eq!(c.ipvs.scheduler, "wrr");
        assert_eq!(c.sync_period, Duration::from_secs(60));
        assert_eq!(c.min_sync_period, Duration::ZERO);
        assert_eq!(c.masquerade_mark(), "0x00008000");
        assert_eq!(c.cluster_cidrs.len(), 2);
        assert_eq!(c.node_port_addresses, vec!["primary".to_string()]);
        assert_eq!(c.conntrack.max_per_core, 32768);
    }

    #[test]
    fn zero_periods_mean_default_and_nftables_defaults_to_primary() {
        let c = load_str("kp.yaml", "iptables: {minSyncPeriod: 0s}").unwrap();
        assert_eq!(c.min_sync_period, Duration::from_secs(1));
        let c = load_str("kp.yaml", "mode: nftables").unwrap();
        assert_eq!(c.node_port_addresses, vec!["primary".to_string()]);
        assert_eq!(Config::default().node_port_addresses, Vec::<String>::new());
    }

    #[test]
    fn unknown_fields_are_errors_naming_the_field() {
        let e = load_str("kp.yaml", "iptables:\n  masqueradeBits: 14\n").unwrap_err();
        assert!(e.message.contains("masqueradeBits"), "{e}");
        assert!(e.message.starts_with("iptables"), "{e}");
    }

    #[test]
    fn invalid_values_are_errors() {
        for (text, needle) in [
            ("mode: userspace", "mode"),
            ("iptables: {masqueradeBit: 32}", "masqueradeBit"),
            ("clusterCIDR: 10.0.0.0/33", "clusterCIDR"),
            ("iptables: {syncPeriod: 30}", "syncPeriod"),
            ("kind: KubeletConfiguration", "kind"),
            ("nodePortAddresses: [eth0]", "nodePortAddresses"),
            ("nodePortAddresses: [primary, 10.0.0.0/8]", "can't use both"),
            (
                "iptables: {syncPeriod: 1s, minSyncPeriod: 2s}",
                "syncPeriod",
            ),
        ] {
            let e = load_str("kp.yaml", text).unwrap_err();
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }
}

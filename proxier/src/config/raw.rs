//! The v1alpha1 `KubeProxyConfiguration` schema as it appears in a file, and
//! its resolution into [`super::Config`].
//!
//! Every field of the upstream schema is listed so that unknown ones can be
//! refused (`deny_unknown_fields`); fields kpsim does not use are kept as
//! opaque values. Resolution applies upstream's defaults and validation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{duration, parse_ip_list, Config, ConntrackConfig, IpvsConfig, Mode};

/// A Go duration string in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        duration::parse(&text)
            .map(GoDuration)
            .map_err(serde::de::Error::custom)
    }
}

type Opaque = Option<serde_yaml::Value>;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct KubeProxyConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub feature_gates: Option<BTreeMap<String, bool>>,
    pub client_connection: Opaque,
    pub logging: Opaque,
    pub hostname_override: Option<String>,
    pub bind_address: Option<String>,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    pub bind_address_hard_fail: Option<bool>,
    pub enable_profiling: Option<bool>,
    pub show_hidden_metrics_for_version: Option<String>,
    pub mode: Option<String>,
    pub iptables: Option<IptablesSection>,
    pub ipvs: Option<IpvsSection>,
    pub nftables: Option<NftablesSection>,
    pub winkernel: Opaque,
    pub detect_local_mode: Option<String>,
    pub detect_local: Option<DetectLocalSection>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub node_port_addresses: Option<Vec<String>>,
    pub oom_score_adj: Option<i32>,
    pub conntrack: Option<ConntrackSection>,
    pub config_sync_period: Option<GoDuration>,
    pub port_range: Option<String>,
    pub windows_run_as_service: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct IptablesSection {
    pub masquerade_bit: Option<i64>,
    pub masquerade_all: Option<bool>,
    pub localhost_node_ports: Option<bool>,
    pub sync_period: Option<GoDuration>,
    pub min_sync_period: Option<GoDuration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct IpvsSection {
    pub sync_period: Option<GoDuration>,
    pub min_sync_period: Option<GoDuration>,
    pub scheduler: Option<String>,
    #[serde(rename = "excludeCIDRs")]
    pub exclude_cidrs: Option<Vec<String>>,
    #[serde(rename = "strictARP")]
    pub strict_arp: Option<bool>,
    pub tcp_timeout: Option<GoDuration>,
    pub tcp_fin_timeout: Option<GoDuration>,
    pub udp_timeout: Option<GoDuration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NftablesSection {
    pub masquerade_bit: Option<i64>,
    pub masquerade_all: Option<bool>,
    pub sync_period: Option<GoDuration>,
    pub min_sync_period: Option<GoDuration>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct DetectLocalSection {
    pub bridge_interface: Option<String>,
    pub interface_name_prefix: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ConntrackSection {
    pub max_per_core: Option<i64>,
    pub min: Option<i64>,
    pub tcp_established_timeout: Option<GoDuration>,
    pub tcp_close_wait_timeout: Option<GoDuration>,
    pub tcp_be_liberal: Option<bool>,
    pub udp_timeout: Option<GoDuration>,
    pub udp_stream_timeout: Option<GoDuration>,
}

const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(30);
const DEFAULT_MIN_SYNC_PERIOD: Duration = Duration::from_secs(1);
const DEFAULT_MASQUERADE_BIT: i64 = 14;

fn masquerade_bit(field: &str, value: Option<i64>) -> Result<u8, String> {
    let bit = value.unwrap_or(DEFAULT_MASQUERADE_BIT);
    if (0..=31).contains(&bit) {
        Ok(bit as u8)
    } else {
        Err(format!("{field}: {bit} is out of range; use 0-31"))
    }
}

fn non_negative_count(field: &str, value: Option<i64>, default: u32) -> Result<u32, String> {
    match value {
        None => Ok(default),
        Some(v) if (0..=i64::from(i32::MAX)).contains(&v) => Ok(v as u32),
        Some(v) => Err(format!("{field}: {v} must be >= 0")),
    }
}

impl KubeProxyConfiguration {
    /// Applies upstream defaults and validation.
    pub fn resolve(&self) -> Result<Config, String> {
        if let Some(v) = self.api_version.as_deref() {
            if v != "kubeproxy.config.k8s.io/v1alpha1" {
                return Err(format!(
                    "apiVersion {v:?} is not supported; use kubeproxy.config.k8s.io/v1alpha1"
                ));
            }
        }
        if let Some(k) = self.kind.as_deref() {
            if k != "KubeProxyConfiguration" {
                return Err(format!(
                    "kind {k:?} is not a kube-proxy configuration; use KubeProxyConfiguration"
                ));
            }
        }
        let mode =
            Mode::parse(self.mode.as_deref().unwrap_or("")).map_err(|e| format!("mode: {e}"))?;
        let ipt = self.iptables.clone().unwrap_or_default();
        let ipvs = self.ipvs.clone().unwrap_or_default();
        let nft = self.nftables.clone().unwrap_or_default();
        let ct = self.conntrack.clone().unwrap_or_default();

        let iptables_bit = masquerade_bit("iptables.masqueradeBit", ipt.masquerade_bit)?;
        let nftables_bit = masquerade_bit("nftables.masqueradeBit", nft.masquerade_bit)?;
        // Upstream's defaulting cannot tell an explicit 0s from unset.
        let period = |p: Option<GoDuration>, default: Duration| {
            p.map(|d| d.0).filter(|d| !d.is_zero()).unwrap_or(default)
        };
        let (sync_period, min_sync_period, masquerade_bit, masquerade_all, prefix) = match mode {
            Mode::Iptables => (
                period(ipt.sync_period, DEFAULT_SYNC_PERIOD),
                period(ipt.min_sync_period, DEFAULT_MIN_SYNC_PERIOD),
                iptables_bit,
                ipt.masquerade_all.unwrap_or(false),
                "iptables",
            ),
            Mode::Ipvs => (
                period(ipvs.sync_period, DEFAULT_SYNC_PERIOD),
                period(ipvs.min_sync_period, Duration::ZERO),
                iptables_bit,
                ipt.masquerade_all.unwrap_or(false),
                "ipvs",
            ),
            Mode::Nftables => (
                period(nft.sync_period, DEFAULT_SYNC_PERIOD),
                period(nft.min_sync_period, DEFAULT_MIN_SYNC_PERIOD),
                nftables_bit,
                nft.masquerade_all.unwrap_or(false),
                "nftables",
            ),
        };
        if sync_period.is_zero() {
            return Err(format!("{prefix}.syncPeriod: must be greater than 0"));
        }
        if min_sync_period > sync_period {
            return Err(format!(
                "{prefix}.syncPeriod: {} must be greater than or equal to {prefix}.minSyncPeriod ({})",
                duration::format(sync_period),
                duration::format(min_sync_period)
            ));
        }

        let cluster_cidrs =
            parse_ip_list("clusterCIDR", self.cluster_cidr.as_deref().unwrap_or(""))?;
        if cluster_cidrs.len() > 2 {
            return Err("clusterCIDR: at most one IPv4 and one IPv6 CIDR are allowed".into());
        }

        let detect_local_mode = self.detect_local_mode.clone().unwrap_or_default();
        let detect = self.detect_local.clone().unwrap_or_default();
        match detect_local_mode.as_str() {
            "" | "ClusterCIDR" | "NodeCIDR" => {}
            "BridgeInterface" if detect.bridge_interface.as_deref().unwrap_or("").is_empty() => {
                return Err("detectLocal.bridgeInterface: required when detectLocalMode is BridgeInterface".into())
            }
            "InterfaceNamePrefix"
                if detect.interface_name_prefix.as_deref().unwrap_or("").is_empty() =>
            {
                return Err("detectLocal.interfaceNamePrefix: required when detectLocalMode is InterfaceNamePrefix".into())
            }
            "BridgeInterface" | "InterfaceNamePrefix" => {}
            other => {
                return Err(format!(
                    "detectLocalMode: unknown mode {other:?}; use ClusterCIDR, NodeCIDR, BridgeInterface or InterfaceNamePrefix"
                ))
            }
        }

        let node_port_addresses = match (&self.node_port_addresses, mode) {
            (Some(list), _) => list.clone(),
            // nftables mode defaults to the node's primary IPs only.
            (None, Mode::Nftables) => vec!["primary".to_string()],
            (None, _) => Vec::new(),
        };
        for (i, entry) in node_port_addresses.iter().enumerate() {
            if entry == "primary" && node_port_addresses.len() > 1 {
                return Err(format!(
                    "nodePortAddresses[{i}]: can't use both 'primary' and CIDRs; use [primary] alone"
                ));
            }
            if entry != "primary" && entry.parse::<ipnet::IpNet>().is_err() {
                return Err(format!(
                    "nodePortAddresses[{i}]: {entry:?} is neither a CIDR nor \"primary\"; write it like 192.168.0.0/24"
                ));
            }
        }

        let exclude_cidrs = ipvs
            .exclude_cidrs
            .clone()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                c.parse::<ipnet::IpNet>()
                    .map_err(|_| format!("ipvs.excludeCIDRs[{i}]: {c:?} is not a CIDR"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scheduler = match ipvs.scheduler.as_deref().unwrap_or("") {
            "" => "rr".to_string(),
            s @ ("rr" | "wrr" | "lc" | "wlc" | "lblc" | "lblcr" | "sh" | "dh" | "sed" | "nq" | "mh") => {
                s.to_string()
            }
            other => {
                return Err(format!(
                    "ipvs.scheduler: unknown scheduler {other:?}; use rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq or mh"
                ))
            }
        };

        Ok(Config {
            mode,
            hostname_override: self.hostname_override.clone().filter(|h| !h.is_empty()),
            cluster_cidrs,
            detect_local_mode,
            bridge_interface: detect.bridge_interface.unwrap_or_default(),
            interface_name_prefix: detect.interface_name_prefix.unwrap_or_default(),
            masquerade_bit,
            masquerade_all,
            localhost_node_ports: ipt.localhost_node_ports.unwrap_or(true),
            sync_period,
            min_sync_period,
            node_port_addresses,
            ipvs: IpvsConfig {
                scheduler,
                exclude_cidrs,
                strict_arp: ipvs.strict_arp.unwrap_or(false),
                tcp_timeout: ipvs.tcp_timeout.map(|d| d.0).unwrap_or_default(),
                tcp_fin_timeout: ipvs.tcp_fin_timeout.map(|d| d.0).unwrap_or_default(),
                udp_timeout: ipvs.udp_timeout.map(|d| d.0).unwrap_or_default(),
            },
            conntrack: ConntrackConfig {
                max_per_core: non_negative_count("conntrack.maxPerCore", ct.max_per_core, 32768)?,
                min: non_negative_count("conntrack.min", ct.min, 131072)?,
                tcp_established_timeout: ct
                    .tcp_established_timeout
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(24 * 3600)),
                tcp_close_wait_timeout: ct
                    .tcp_close_wait_timeout
                    .map(|d| d.0)
                    .unwrap_or(Duration::from_secs(3600)),
                tcp_be_liberal: ct.tcp_be_liberal.unwrap_or(false),
                udp_timeout: ct.udp_timeout.map(|d| d.0).unwrap_or_default(),
                udp_stream_timeout: ct.udp_stream_timeout.map(|d| d.0).unwrap_or_default(),
            },
        })
    }
}

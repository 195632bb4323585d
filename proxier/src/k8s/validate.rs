//! Second stage of loading: raw API objects → the typed model.
//!
//! Every field kube-proxy reads is checked here, and a bad one becomes a
//! [`FieldError`] naming the object (`Service ns/name`), the field path as
//! `kubectl explain` spells it (`spec.ports[1].nodePort`) and what would fix
//! it. API defaults are applied here too. This module never logs and never
//! drops a bad value silently; the one tolerance it has is upstream's:
//! whitespace around a `loadBalancerSourceRanges` entry is trimmed.

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::*;
use super::raw;

mod endpoint_slice;
mod sloppy;

pub use endpoint_slice::endpoint_slice;
pub use sloppy::{parse_cidr_sloppy, parse_ip_sloppy};

/// A field of an object that kube-proxy cannot use, with the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {object}: {field}: {problem}")]
pub struct FieldError {
    pub kind: &'static str,
    pub object: String,
    pub field: String,
    pub problem: String,
}

/// The default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;
/// The largest affinity timeout the API accepts (one day).
pub const MAX_AFFINITY_TIMEOUT_SECONDS: i64 = 86400;

struct Ctx {
    kind: &'static str,
    object: String,
}

impl Ctx {
    fn err(&self, field: impl Into<String>, problem: impl Into<String>) -> FieldError {
        FieldError {
            kind: self.kind,
            object: self.object.clone(),
            field: field.into(),
            problem: problem.into(),
        }
    }

    fn ip(&self, field: String, text: &str) -> Result<IpAddr, FieldError> {
        parse_ip_sloppy(text).ok_or_else(|| {
            self.err(
                field,
                format!("{text:?} is not an IP address; write it like 10.96.0.10 or fd00::10"),
            )
        })
    }

    fn cidr(&self, field: String, text: &str) -> Result<IpNet, FieldError> {
        parse_cidr_sloppy(text).ok_or_else(|| {
            self.err(
                field,
                format!("{text:?} is not a CIDR; write it like 10.0.0.0/8 or fd00::/64"),
            )
        })
    }

    fn port(&self, field: String, value: i64, allow_zero: bool) -> Result<u16, FieldError> {
        let low = if allow_zero { 0 } else { 1 };
        if (low..=65535).contains(&value) {
            Ok(value as u16)
        } else {
            Err(self.err(
                field,
                format!("{value} is not a valid port; use {low}-65535"),
            ))
        }
    }

    fn protocol(&self, field: String, text: Option<&str>) -> Result<Protocol, FieldError> {
        match text.unwrap_or("TCP") {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(self.err(
                field,
                format!("unknown protocol {other:?}; use TCP, UDP or SCTP (upper case)"),
            )),
        }
    }
}

fn namespace_of(meta: &raw::ObjectMeta) -> String {
    meta.namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_string())
}

fn name_checked(ctx: &Ctx, meta: &raw::ObjectMeta) -> Result<(), FieldError> {
    if meta.name.is_empty() {
        return Err(ctx.err("metadata.name", "missing; every object needs a name"));
    }
    Ok(())
}

fn traffic_policy(ctx: &Ctx, field: &str, text: Option<&str>) -> Result<TrafficPolicy, FieldError> {
    match text.unwrap_or("") {
        "" | "Cluster" => Ok(TrafficPolicy::Cluster),
        "Local" => Ok(TrafficPolicy::Local),
        other => Err(ctx.err(
            field,
            format!("unknown traffic policy {other:?}; use Cluster or Local"),
        )),
    }
}

/// Validates a `v1.Service`.
pub fn service(raw: &raw::Service) -> Result<Service, FieldError> {
    let name = NamespacedName::new(namespace_of(&raw.metadata), &raw.metadata.name);
    let ctx = Ctx {
        kind: "Service",
        object: name.to_string(),
    };
    name_checked(&ctx, &raw.metadata)?;
    let spec = &raw.spec;

    let service_type = match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "" | "ClusterIP" => ServiceType::ClusterIp,
        "NodePort" => ServiceType::NodePort,
        "LoadBalancer" => ServiceType::LoadBalancer,
        "ExternalName" => ServiceType::ExternalName,
        other => {
            return Err(ctx.err(
                "spec.type",
                format!(
                    "unknown service type {other:?}; use ClusterIP, NodePort, LoadBalancer or ExternalName"
                ),
            ))
        }
    };

    let cluster_ip = cluster_ip(&ctx, spec)?;

    let mut ports = Vec::with_capacity(spec.ports.len());
    for (i, p) in spec.ports.iter().enumerate() {
        let at = |f: &str| format!("spec.ports[{i}].{f}");
        let node_port = match p.node_port {
            None | Some(0) => None,
            Some(n) => Some(ctx.port(at("nodePort"), n, false)?),
        };
        let target_port = match &p.target_port {
            None => None,
            Some(serde_yaml::Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(-1);
                Some(TargetPort::Number(ctx.port(at("targetPort"), n, false)?))
            }
            Some(serde_yaml::Value::String(s)) => match s.parse::<i64>() {
                Ok(n) => Some(TargetPort::Number(ctx.port(at("targetPort"), n, false)?)),
                Err(_) => Some(TargetPort::Name(s.clone())),
            },
            Some(other) => {
                return Err(ctx.err(
                    at("targetPort"),
                    format!("{other:?} is neither a port number nor a port name"),
                ))
            }
        };
        ports.push(ServicePortSpec {
            name: p.name.clone().unwrap_or_default(),
            protocol: ctx.protocol(at("protocol"), p.protocol.as_deref())?,
            port: ctx.port(at("port"), p.port, false)?,
            node_port,
            target_port,
        });
    }

    let external_ips = spec
        .external_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| ctx.ip(format!("spec.externalIPs[{i}]"), ip))
        .collect::<Result<Vec<_>, _>>()?;

    let session_affinity = match spec.session_affinity.as_deref().unwrap_or("None") {
        "" | "None" => SessionAffinity::None,
        "ClientIP" => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            let timeout_seconds = match timeout {
                None => DEFAULT_AFFINITY_TIMEOUT_SECONDS,
                Some(t) if (1..=MAX_AFFINITY_TIMEOUT_SECONDS).contains(&t) => t as u32,
                Some(t) => {
                    return Err(ctx.err(
                        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                        format!(
                            "{t} is out of range; use 1-{MAX_AFFINITY_TIMEOUT_SECONDS} seconds"
                        ),
                    ))
                }
            };
            SessionAffinity::ClientIp { timeout_seconds }
        }
        other => {
            return Err(ctx.err(
                "spec.sessionAffinity",
                format!("unknown session affinity {other:?}; use None or ClientIP"),
            ))
        }
    };

    let health_check_node_port = match spec.health_check_node_port {
        None | Some(0) => None,
        Some(n) => Some(ctx.port("spec.healthCheckNodePort".into(), n, false)?),
    };

    let load_balancer_source_ranges = spec
        .load_balancer_source_ranges
        .iter()
        .enumerate()
        .map(|(i, r)| ctx.cidr(format!("spec.loadBalancerSourceRanges[{i}]"), r.trim()))
        .collect::<Result<Vec<_>, _>>()?;

    let mut load_balancer_ingress = Vec::new();
    for (i, ing) in raw.status.load_balancer.ingress.iter().enumerate() {
        let at = |f: &str| format!("status.loadBalancer.ingress[{i}].{f}");
        let ip = match ing.ip.as_deref() {
            None | Some("") => None,
            Some(text) => Some(ctx.ip(at("ip"), text)?),
        };
        let ip_mode = match ing.ip_mode.as_deref() {
            None | Some("") => None,
            Some("VIP") => Some(IpMode::Vip),
            Some("Proxy") => Some(IpMode::Proxy),
            Some(other) => {
                return Err(ctx.err(
                    at("ipMode"),
                    format!("unknown ipMode {other:?}; use VIP or Proxy"),
                ))
            }
        };
        load_balancer_ingress.push(LoadBalancerIngress { ip, ip_mode });
    }

    Ok(Service {
        name,
        labels: raw.metadata.labels.clone(),
        annotations: raw.metadata.annotations.clone(),
        service_type,
        type_explicit: spec.type_.as_deref().is_some_and(|t| !t.is_empty()),
        cluster_ip,
        ports,
        selector: spec.selector.clone(),
        external_ips,
        session_affinity,
        external_traffic_policy: traffic_policy(
            &ctx,
            "spec.externalTrafficPolicy",
            spec.external_traffic_policy.as_deref(),
        )?,
        internal_traffic_policy: traffic_policy(
            &ctx,
            "spec.internalTrafficPolicy",
            spec.internal_traffic_policy.as_deref(),
        )?,
        health_check_node_port,
        load_balancer_source_ranges,
        load_balancer_ingress,
        traffic_distribution: spec.traffic_distribution.clone(),
    })
}

fn cluster_ip(ctx: &Ctx, spec: &raw::ServiceSpec) -> Result<ClusterIp, FieldError> {
    let single = spec.cluster_ip.as_deref().unwrap_or("");
    if single == "None" || spec.cluster_ips.first().map(String::as_str) == Some("None") {
        return Ok(ClusterIp::Headless);
    }
    let mut ips = Vec::new();
    for (i, text) in spec.cluster_ips.iter().enumerate() {
        ips.push(ctx.ip(format!("spec.clusterIPs[{i}]"), text)?);
    }
    if !single.is_empty() {
        let ip = ctx.ip("spec.clusterIP".into(), single)?;
        match ips.first() {
            None => ips.push(ip),
            Some(first) if *first == ip => {}
            Some(first) => {
                return Err(ctx.err(
                    "spec.clusterIP",
                    format!("{ip} differs from spec.clusterIPs[0] {first}; they must be equal"),
                ))
            }
        }
    }
    if ips.len() > 2 || (ips.len() == 2 && IpFamily::of(&ips[0]) == IpFamily::of(&ips[1])) {
        return Err(ctx.err(
            "spec.clusterIPs",
            "at most one IPv4 and one IPv6 address are allowed",
        ));
    }
    Ok(if ips.is_empty() {
        ClusterIp::Unset
    } else {
        ClusterIp::Ips(ips)
    })
}

/// Validates a `v1.Node`.
pub fn node(raw: &raw::Node) -> Result<Node, FieldError> {
    let ctx = Ctx {
        kind: "Node",
        object: raw.metadata.name.clone(),
    };
    name_checked(&ctx, &raw.metadata)?;
    let mut pod_cidrs = Vec::new();
    for (i, text) in raw.spec.pod_cidrs.iter().enumerate() {
        pod_cidrs.push(ctx.cidr(format!("spec.podCIDRs[{i}]"), text)?);
    }
    if pod_cidrs.is_empty() {
        if let Some(text) = raw.spec.pod_cidr.as_deref().filter(|t| !t.is_empty()) {
            pod_cidrs.push(ctx.cidr("spec.podCIDR".into(), text)?);
        }
    }
    for (i, a) in raw.status.addresses.iter().enumerate() {
        if matches!(a.type_.as_str(), "InternalIP" | "ExternalIP") {
            ctx.ip(format!("status.addresses[{i}].address"), &a.address)?;
        }
    }
    Ok(Node {
        name: raw.metadata.name.clone(),
        labels: raw.metadata.labels.clone(),
        addresses: raw
            .status
            .addresses
            .iter()
            .map(|a| NodeAddress {
                kind: a.type_.clone(),
                address: a.address.clone(),
            })
            .collect(),
        pod_cidrs,
    })
}

/// Validates a `networking.k8s.io/v1` ServiceCIDR.
pub fn service_cidr(raw: &raw::ServiceCidr) -> Result<ServiceCidr, FieldError> {
    let ctx = Ctx {
        kind: "ServiceCIDR",
        object: raw.metadata.name.clone(),
    };
    name_checked(&ctx, &raw.metadata)?;
    let cidrs = raw
        .spec
        .cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| ctx.cidr(format!("spec.cidrs[{i}]"), c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServiceCidr {
        name: raw.metadata.name.clone(),
        cidrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(yaml: &str) -> Result<Service, FieldError> {
        let raw: raw::Service = serde_yaml::from_str(yaml).unwrap();
        service(&raw)
    }

    #[test]
    fn service_defaults_follow_the_api() {
        let s = svc("metadata: {name: web}\nspec: {clusterIP: 10.96.0.5, ports: [{port: 80}]}")
            .unwrap();
        assert_eq!(s.name, NamespacedName::new("default", "web"));
        assert_eq!(s.service_type, ServiceType::ClusterIp);
        assert_eq!(s.ports[0].protocol, Protocol::Tcp);
        assert_eq!(s.ports[0].name, "");
        assert_eq!(s.session_affinity, SessionAffinity::None);
        assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
        assert_eq!(
            s.cluster_ip,
            ClusterIp::Ips(vec!["10.96.0.5".parse().unwrap()])
        );
    }

    #[test]
    fn client_ip_affinity_defaults_to_three_hours() {
        let s = svc("metadata: {name: a}\nspec: {sessionAffinity: ClientIP}").unwrap();
        assert_eq!(
            s.session_affinity,
            SessionAffinity::ClientIp {
                timeout_seconds: 10800
            }
        );
    }

    #[test]
    fn bad_port_names_object_and_field() {
        let e =
            svc("metadata: {name: a, namespace: ns1}\nspec: {ports: [{port: 80}, {port: 70000}]}")
                .unwrap_err();
        assert_eq!(e.object, "ns1/a");
        assert_eq!(e.field, "spec.ports[1].port");
        assert!(e.problem.contains("70000"), "{e}");
    }

    #[test]
    fn unknown_protocol_is_an_error() {
        let e = svc("metadata: {name: a}\nspec: {ports: [{port: 80, protocol: tcp}]}").unwrap_err();
        assert_eq!(e.field, "spec.ports[0].protocol");
    }

    #[test]
    fn source_ranges_are_trimmed_and_masked() {
        let s = svc(
            "metadata: {name: a}\nspec: {loadBalancerSourceRanges: [' 1.2.3.4/24 ', '5.6.7.8/32']}",
        )
        .unwrap();
        let got: Vec<String> = s
            .load_balancer_source_ranges
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(got, ["1.2.3.0/24", "5.6.7.8/32"]);
    }

    #[test]
    fn headless_and_unset_cluster_ips() {
        assert_eq!(
            svc("metadata: {name: a}\nspec: {clusterIP: None}")
                .unwrap()
                .cluster_ip,
            ClusterIp::Headless
        );
        assert_eq!(
            svc("metadata: {name: a}\nspec: {}").unwrap().cluster_ip,
            ClusterIp::Unset
        );
        let e = svc("metadata: {name: a}\nspec: {clusterIP: 10.0.0.300}").unwrap_err();
        assert_eq!(e.field, "spec.clusterIP");
    }
}

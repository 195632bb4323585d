//! A `discovery.k8s.io/v1` EndpointSlice validated into the model: its
//! address type, every endpoint address (in that type's family), the
//! conditions and hints as the API gave them, and the ports. It must never
//! fill in a condition the API left unset (the proxier decides what unset
//! means) nor drop a bad address; the error is a [`FieldError`] naming the
//! slice and the field (`endpoints[0].addresses[1]`).

use std::net::IpAddr;

use super::super::model::*;
use super::super::raw;
use super::{name_checked, namespace_of, Ctx, FieldError};

/// Validates a `discovery.k8s.io/v1` EndpointSlice.
pub fn endpoint_slice(raw: &raw::EndpointSlice) -> Result<EndpointSlice, FieldError> {
    let name = NamespacedName::new(namespace_of(&raw.metadata), &raw.metadata.name);
    let ctx = Ctx {
        kind: "EndpointSlice",
        object: name.to_string(),
    };
    name_checked(&ctx, &raw.metadata)?;
    let address_type = match raw.address_type.as_deref() {
        Some("IPv4") => AddressType::IPv4,
        Some("IPv6") => AddressType::IPv6,
        Some("FQDN") => AddressType::Fqdn,
        Some(other) => {
            return Err(ctx.err(
                "addressType",
                format!("unknown address type {other:?}; use IPv4, IPv6 or FQDN"),
            ))
        }
        None => return Err(ctx.err("addressType", "missing; set IPv4, IPv6 or FQDN")),
    };

    let mut endpoints = Vec::with_capacity(raw.endpoints.len());
    for (i, ep) in raw.endpoints.iter().enumerate() {
        let mut addresses = Vec::new();
        if address_type != AddressType::Fqdn {
            for (j, text) in ep.addresses.iter().enumerate() {
                let field = format!("endpoints[{i}].addresses[{j}]");
                let ip = ctx.ip(field.clone(), text)?;
                let family_ok = matches!(
                    (address_type, ip),
                    (AddressType::IPv4, IpAddr::V4(_)) | (AddressType::IPv6, IpAddr::V6(_))
                );
                if !family_ok {
                    return Err(ctx.err(
                        field,
                        format!("{ip} does not match addressType {address_type:?}"),
                    ));
                }
                addresses.push(ip);
            }
        }
        let hints = ep.hints.as_ref();
        endpoints.push(Endpoint {
            addresses,
            ready: ep.conditions.ready,
            serving: ep.conditions.serving,
            terminating: ep.conditions.terminating,
            node_name: ep.node_name.clone(),
            zone: ep.zone.clone(),
            zone_hints: hints.map(|h| h.for_zones.iter().map(|z| z.name.clone()).collect()),
            node_hints: hints.map(|h| h.for_nodes.iter().map(|n| n.name.clone()).collect()),
        });
    }

    let mut ports = Vec::new();
    for (i, p) in raw.ports.iter().flatten().enumerate() {
        let at = |f: &str| format!("ports[{i}].{f}");
        ports.push(EndpointPort {
            name: p.name.clone(),
            protocol: match p.protocol.as_deref() {
                None => None,
                Some(text) => Some(ctx.protocol(at("protocol"), Some(text))?),
            },
            port: match p.port {
                None => None,
                Some(n) => Some(ctx.port(at("port"), n, false)?),
            },
        });
    }

    Ok(EndpointSlice {
        service_name: raw
            .metadata
            .labels
            .get("kubernetes.io/service-name")
            .cloned(),
        name,
        labels: raw.metadata.labels.clone(),
        annotations: raw.metadata.annotations.clone(),
        resource_version: raw.metadata.resource_version.clone(),
        address_type,
        endpoints,
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_address_must_match_address_type() {
        let raw: raw::EndpointSlice = serde_yaml::from_str(
            "metadata: {name: s}\naddressType: IPv4\nendpoints: [{addresses: ['fd00::1']}]",
        )
        .unwrap();
        let e = endpoint_slice(&raw).unwrap_err();
        assert_eq!(e.field, "endpoints[0].addresses[0]");
    }

    #[test]
    fn missing_conditions_stay_unset() {
        let raw: raw::EndpointSlice = serde_yaml::from_str(
            "metadata: {name: s, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.0.0.1]}]\nports: [{port: 80}]",
        )
        .unwrap();
        let s = endpoint_slice(&raw).unwrap();
        assert_eq!(s.service_name.as_deref(), Some("web"));
        assert_eq!(s.endpoints[0].ready, None);
        assert_eq!(s.ports[0].port, Some(80));
        assert_eq!(s.ports[0].name, None);
    }
}

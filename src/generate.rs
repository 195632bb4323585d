//! Seeded synthetic clusters, for benches and generated tests.
//!
//! `services × endpoints` services with upstream-looking names and addresses:
//! cluster IPs from 172.30.0.0/16 counting up, endpoints in 10.128.0.0/9
//! counting up, spread over `nodes` nodes (`node-0` is the node rendered for).
//! The seed picks each service's type (70 % ClusterIP, 20 % NodePort, 10 %
//! LoadBalancer), traffic policies and affinity, so the same seed always
//! gives the same cluster.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use proxier::k8s::{
    AddressType, ClusterIp, Endpoint, EndpointPort, EndpointSlice, LoadBalancerIngress, Manifests,
    NamespacedName, Protocol, Service, ServicePortSpec, ServiceType, SessionAffinity, TargetPort,
    TrafficPolicy,
};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// Shape of a generated cluster.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub nodes: usize,
    pub seed: u64,
}

fn ipv4(base: u32, offset: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(base + offset as u32))
}

/// The service with index `i` (its name, cluster IP and endpoints follow
/// from `i` alone; the seeded choices come from `rng`).
pub fn service(i: usize, shape: &Shape, rng: &mut ChaCha8Rng) -> (Service, EndpointSlice) {
    let name = NamespacedName::new(format!("ns{}", i % 10), format!("svc{i}"));
    let roll = rng.next_u32() % 100;
    let service_type = match roll {
        0..70 => ServiceType::ClusterIp,
        70..90 => ServiceType::NodePort,
        _ => ServiceType::LoadBalancer,
    };
    let external = service_type != ServiceType::ClusterIp;
    let node_port = external.then(|| 30000 + (i % 2768) as u16);
    let local = external && rng.next_u32().is_multiple_of(4);
    let affinity = rng.next_u32().is_multiple_of(10);
    let service = Service {
        name: name.clone(),
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        service_type,
        type_explicit: true,
        cluster_ip: ClusterIp::Ips(vec![ipv4(0xac1e_0000, i + 1)]),
        ports: vec![ServicePortSpec {
            name: "p80".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
            target_port: Some(TargetPort::Number(8080)),
        }],
        selector: None,
        external_ips: Vec::new(),
        session_affinity: if affinity {
            SessionAffinity::ClientIp {
                timeout_seconds: 10800,
            }
        } else {
            SessionAffinity::None
        },
        external_traffic_policy: if local {
            TrafficPolicy::Local
        } else {
            TrafficPolicy::Cluster
        },
        internal_traffic_policy: TrafficPolicy::Cluster,
        health_check_node_port: (local && service_type == ServiceType::LoadBalancer)
            .then(|| 32000 + (i % 700) as u16),
        load_balancer_source_ranges: Vec::new(),
        load_balancer_ingress: if service_type == ServiceType::LoadBalancer {
            vec![LoadBalancerIngress {
                ip: Some(ipv4(0x0102_0000, i + 1)),
                ip_mode: None,
            }]
        } else {
            Vec::new()
        },
        traffic_distribution: None,
    };
    let endpoints = (0..shape.endpoints_per_service)
        .map(|e| Endpoint {
            addresses: vec![ipv4(0x0a80_0000, i * shape.endpoints_per_service + e + 1)],
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
            node_name: Some(format!("node-{}", (i + e) % shape.nodes.max(1))),
            zone: None,
            zone_hints: None,
            node_hints: None,
        })
        .collect();
    let slice = EndpointSlice {
        name: NamespacedName::new(&name.namespace, format!("{}-abcde", name.name)),
        labels: BTreeMap::from([("kubernetes.io/service-name".to_string(), name.name.clone())]),
        annotations: BTreeMap::new(),
        resource_version: Some("1".into()),
        service_name: Some(name.name.clone()),
        address_type: AddressType::IPv4,
        endpoints,
        ports: vec![EndpointPort {
            name: Some("p80".into()),
            protocol: Some(Protocol::Tcp),
            port: Some(8080),
        }],
    };
    (service, slice)
}

/// A whole cluster of `shape`.
pub fn cluster(shape: &Shape) -> Manifests {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    let mut m = Manifests::default();
    for i in 0..shape.services {
        let (svc, slice) = service(i, shape, &mut rng);
        m.services.push(svc);
        m.endpoint_slices.push(slice);
    }
    m
}

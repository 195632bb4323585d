//! Setup the criterion benches share: the seeded cluster they measure, the
//! proxier configuration and node they sync for, and the first-packet
//! benchmark every mode runs. It builds inputs only; it must never time
//! anything itself, and everything here runs outside the timed part.

// Each bench is its own crate and uses only some of these.
#![allow(dead_code)]

use std::cell::RefCell;

use criterion::{BatchSize, BenchmarkId, Criterion};
use kpsim::generate::{cluster, Shape};
use kpsim::scale::first_packet_rules;
use proxier::config::{Config, Mode};
use proxier::k8s::Manifests;
use proxier::node::NodeInfo;
use proxier::provider::Provider;
use sim::network::Network;
use sim::node::Node;

/// The node every bench syncs for.
pub const NODE: &str = "node-0";
/// Its address.
pub const NODE_IP: &str = "192.168.0.10";

/// A seeded cluster of `services` services × 10 endpoints on 10 nodes.
pub fn generated(services: usize) -> Manifests {
    cluster(&Shape {
        services,
        endpoints_per_service: 10,
        nodes: 10,
        seed: 1,
    })
}

/// The configuration of `mode` with the generator's cluster CIDR.
pub fn config(mode: Mode) -> Config {
    Config {
        mode,
        cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
        ..Config::default()
    }
}

/// The node the proxier runs on.
pub fn node_info() -> NodeInfo {
    NodeInfo::new(NODE, vec![NODE_IP.parse().unwrap()])
}

/// Delivers every object of `m` to `p`, then the start-up "synced" signals.
pub fn feed(p: &mut impl Provider, m: &Manifests) {
    for s in &m.services {
        p.on_service(&s.name, Some(s));
    }
    for s in &m.endpoint_slices {
        p.on_endpoint_slice(&s.name, Some(s));
    }
    p.on_services_synced();
    p.on_endpoint_slices_synced();
}

/// Benchmarks a new connection's first packet to the last service (in name
/// order) of a node loaded by `load` for each size in `sizes`. Every packet
/// has a fresh source port, so it starts a new flow; before the ports wrap,
/// `reset` empties the node's flow tables outside the timed part so no
/// packet is a hit.
pub fn first_packet_bench(
    c: &mut Criterion,
    group: &str,
    sizes: &[usize],
    load: impl Fn(usize) -> (Network, Manifests),
    reset: impl Fn(&mut Node),
) {
    let mut group = c.benchmark_group(group);
    group.sample_size(20);
    for &services in sizes {
        let (net, m) = load(services);
        // Setup and routine both need the network, one after the other.
        let net = RefCell::new(net);
        let mut order: Vec<usize> = (0..services).collect();
        order.sort_by_key(|i| m.services[*i].name.clone());
        let last = order[services - 1];
        let mut port = 1024u16;
        group.bench_with_input(BenchmarkId::from_parameter(services), &services, |b, _| {
            b.iter_batched(
                || {
                    if port == u16::MAX {
                        port = 1024;
                        reset(net.borrow_mut().node_mut(NODE).unwrap());
                    }
                    port += 1;
                    port
                },
                |p| first_packet_rules(&mut net.borrow_mut(), &m, last, p).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Empties a node's conntrack table.
pub fn clear_conntrack(node: &mut Node) {
    let config = *node.conntrack().config();
    *node.conntrack_mut() = sim::conntrack::Conntrack::new(config);
}

//! nftables mode's costs: a new connection's first packet through a node
//! at 1,000 / 10,000 / 30,000 / 100,000 services (service dispatch is one
//! lookup in the `service-ips` verdict map, so the time should stay flat
//! where iptables mode's grows with the service's position; 2 endpoints per
//! service keep the 100,000-service node's model in memory), and what the
//! proxier spends writing a transaction: a full sync at 5,000 and 10,000
//! services × 10 endpoints, and a partial sync after one endpoint change
//! (which also parses the kernel's `nft list table` output, as a real sync
//! does). Inputs come from the seeded generator; nodes are built and
//! loaded, and proxiers fed, outside the timed part.

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use kpsim::generate::{cluster, Shape};
use kpsim::scale::{first_packet_rules, loaded_node_shaped};
use proxier::clock::Timestamp;
use proxier::config::{Config, Mode};
use proxier::dataplane::recording::{RecordingKernel, RecordingNftables};
use proxier::k8s::{IpFamily, Manifests};
use proxier::nftables::{Options, Proxier};
use proxier::node::NodeInfo;
use proxier::provider::Provider;

fn first_packet(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_packet_nftables");
    group.sample_size(20);
    for services in [1_000usize, 10_000, 30_000, 100_000] {
        let (net, m) = loaded_node_shaped(Mode::Nftables, services, 2, 1).unwrap();
        let net = std::cell::RefCell::new(net);
        let mut order: Vec<usize> = (0..services).collect();
        order.sort_by_key(|i| m.services[*i].name.clone());
        let last = order[services - 1];
        let mut port = 1024u16;
        group.bench_with_input(BenchmarkId::from_parameter(services), &services, |b, _| {
            b.iter_batched(
                || {
                    // A fresh source port: every packet starts a new flow;
                    // before the ports wrap, empty the conntrack table
                    // (outside the timed part) so no packet is a hit.
                    if port == u16::MAX {
                        port = 1024;
                        let mut net = net.borrow_mut();
                        let node = net.node_mut("node-0").unwrap();
                        let config = *node.conntrack().config();
                        *node.conntrack_mut() = sim::conntrack::Conntrack::new(config);
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

fn generated(services: usize) -> Manifests {
    cluster(&Shape {
        services,
        endpoints_per_service: 10,
        nodes: 10,
        seed: 1,
    })
}

fn loaded_proxier(m: &Manifests) -> Proxier {
    let config = Config {
        mode: Mode::Nftables,
        cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
        ..Config::default()
    };
    let node = NodeInfo::new("node-0", vec!["192.168.0.10".parse().unwrap()]);
    let options = Options::from_config(&config, IpFamily::V4, &node);
    let mut p = Proxier::new(IpFamily::V4, node, options);
    for s in &m.services {
        p.on_service(&s.name, Some(s));
    }
    for s in &m.endpoint_slices {
        p.on_endpoint_slice(&s.name, Some(s));
    }
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    p
}

fn full_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("nftables_full_sync");
    group.sample_size(10);
    for services in [5_000, 10_000] {
        let m = generated(services);
        group.bench_with_input(BenchmarkId::from_parameter(services), &m, |b, m| {
            b.iter_batched(
                || (loaded_proxier(m), RecordingKernel::default()),
                |(mut p, mut k)| p.sync(Timestamp::ZERO, &mut k).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn partial_render(c: &mut Criterion) {
    let mut group = c.benchmark_group("nftables_partial_sync");
    group.sample_size(10);
    for services in [5_000, 10_000] {
        let m = generated(services);
        let mut p = loaded_proxier(&m);
        let mut k = RecordingKernel::default();
        p.sync(Timestamp::ZERO, &mut k).unwrap();
        // What the kernel lists after the full sync, for the partial one.
        let mut rs = sim::nftables::Ruleset::new();
        let tx = k.nftables.transactions.last().unwrap().clone();
        rs.apply(&tx, sim::time::Instant::ZERO).unwrap();
        let listing = rs
            .list(
                "list table ip kube-proxy",
                sim::nftables::ListOptions::default(),
                sim::time::Instant::ZERO,
            )
            .unwrap();
        let mut tables = BTreeMap::new();
        tables.insert(("ip".to_string(), "kube-proxy".to_string()), listing);
        let mut changed = m.endpoint_slices[services / 2].clone();
        changed.endpoints.pop();
        group.bench_function(BenchmarkId::new("one_endpoint_removed", services), |b| {
            b.iter_batched(
                || {
                    let mut p = p.clone();
                    p.on_endpoint_slice(&changed.name, Some(&changed));
                    let k = RecordingKernel {
                        nftables: RecordingNftables {
                            tables: tables.clone(),
                            ..RecordingNftables::default()
                        },
                        ..RecordingKernel::default()
                    };
                    (p, k)
                },
                |(mut p, mut k)| p.sync(Timestamp::from_secs(2), &mut k).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, first_packet, full_render, partial_render);
criterion_main!(benches);

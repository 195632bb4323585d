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

mod common;

use common::{clear_conntrack, config, feed, first_packet_bench, generated, node_info};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use kpsim::scale::loaded_node_shaped;
use proxier::clock::Timestamp;
use proxier::config::Mode;
use proxier::dataplane::recording::{RecordingKernel, RecordingNftables};
use proxier::k8s::{IpFamily, Manifests};
use proxier::nftables::{Options, Proxier};
use proxier::provider::Provider;

fn first_packet(c: &mut Criterion) {
    first_packet_bench(
        c,
        "first_packet_nftables",
        &[1_000, 10_000, 30_000, 100_000],
        |services| loaded_node_shaped(Mode::Nftables, services, 2, 1).unwrap(),
        clear_conntrack,
    );
}

fn loaded_proxier(m: &Manifests) -> Proxier {
    let config = config(Mode::Nftables);
    let node = node_info();
    let options = Options::from_config(&config, IpFamily::V4, &node);
    let mut p = Proxier::new(IpFamily::V4, node, options);
    feed(&mut p, m);
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

//! What users wait for in iptables mode: a cold full sync for N services ×
//! 10 endpoints, and a partial sync after one endpoint change at 10,000
//! services. Inputs come from the seeded generator; building the proxier
//! and delivering the objects happens outside the timed part.

mod common;

use common::{config, feed, generated, node_info};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use proxier::clock::Timestamp;
use proxier::config::Mode;
use proxier::dataplane::recording::{RecordingIptables, RecordingKernel};
use proxier::iptables::{Options, Proxier};
use proxier::k8s::{IpFamily, Manifests};
use proxier::provider::Provider;

fn kernel() -> RecordingKernel {
    RecordingKernel {
        iptables_v4: RecordingIptables::new(IpFamily::V4).payload_only(),
        ..RecordingKernel::default()
    }
}

fn loaded_proxier(m: &Manifests, kernel: &mut RecordingKernel) -> Proxier {
    let config = config(Mode::Iptables);
    let node = node_info();
    let options = Options::from_config(&config, IpFamily::V4, &node);
    let mut p = Proxier::new(IpFamily::V4, node, options, kernel).unwrap();
    feed(&mut p, m);
    p
}

fn full_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("iptables_full_sync");
    group.sample_size(10);
    for services in [100, 1_000, 5_000, 10_000] {
        let m = generated(services);
        group.bench_with_input(BenchmarkId::from_parameter(services), &m, |b, m| {
            b.iter_batched(
                || {
                    let mut k = kernel();
                    let p = loaded_proxier(m, &mut k);
                    (p, k)
                },
                |(mut p, mut k)| p.sync(Timestamp::ZERO, &mut k).unwrap(),
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn partial_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("iptables_partial_sync");
    group.sample_size(10);
    let m = generated(10_000);
    let mut k = kernel();
    let mut p = loaded_proxier(&m, &mut k);
    p.sync(Timestamp::ZERO, &mut k).unwrap();
    let mut changed = m.endpoint_slices[4242].clone();
    changed.endpoints.pop();
    group.bench_function("10000_one_endpoint_removed", |b| {
        b.iter_batched(
            || {
                let mut p = p.clone();
                p.on_endpoint_slice(&changed.name, Some(&changed));
                (p, kernel())
            },
            |(mut p, mut k)| p.sync(Timestamp::from_secs(2), &mut k).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, full_sync, partial_sync);
criterion_main!(benches);

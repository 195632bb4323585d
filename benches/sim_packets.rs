//! The simulator's per-packet cost: a new connection's first packet at
//! 1,000 / 10,000 / 30,000 services (iptables mode: KUBE-SERVICES is walked
//! rule by rule, so cost grows with the service's position — the packet
//! goes to the last service), a packet of an established flow (a conntrack
//! hit skips the nat table), and whole-scenario throughput in packets per
//! second. Nodes are built and loaded outside the timed part.

mod common;

use common::{clear_conntrack, first_packet_bench};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kpsim::scale::{first_packet_rules, loaded_node};

fn first_packet(c: &mut Criterion) {
    first_packet_bench(
        c,
        "first_packet_iptables",
        &[1_000, 10_000, 30_000],
        |services| loaded_node(services, 1).unwrap(),
        clear_conntrack,
    );
}

fn conntrack_hit(c: &mut Criterion) {
    let (mut net, m) = loaded_node(10_000, 1).unwrap();
    // The same tuple every time: after the first, a conntrack hit.
    first_packet_rules(&mut net, &m, 0, 4242).unwrap();
    c.bench_function("established_packet_10000_services", |b| {
        b.iter(|| first_packet_rules(&mut net, &m, 0, 4242).unwrap())
    });
}

fn scenario_throughput(c: &mut Criterion) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/clusterip.yaml"
    ))
    .unwrap();
    let plan = kpsim::scenario::load("clusterip.yaml", &text).unwrap();
    let packets: u64 = {
        let reports = kpsim::scenario::run(&plan, None, None).unwrap();
        // Each TCP connection is SYN, SYN-ACK, ACK, request, reply, FIN,
        // FIN-ACK, last ACK: count connections and multiply.
        reports[0]
            .steps
            .iter()
            .filter_map(|s| s.traffic.as_ref())
            .map(|t| u64::from(t.attempts) * 8)
            .sum()
    };
    let mut group = c.benchmark_group("scenario");
    group.throughput(Throughput::Elements(packets));
    group.sample_size(10);
    group.bench_function("clusterip_packets", |b| {
        b.iter(|| kpsim::scenario::run(&plan, None, None).unwrap())
    });
    group.finish();
}

criterion_group!(benches, first_packet, conntrack_hit, scenario_throughput);
criterion_main!(benches);

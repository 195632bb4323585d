//! The simulator's per-packet cost: a new connection's first packet at
//! 1,000 / 10,000 / 30,000 services (iptables mode: KUBE-SERVICES is walked
//! rule by rule, so cost grows with the service's position — the packet
//! goes to the last service), a packet of an established flow (a conntrack
//! hit skips the nat table), and whole-scenario throughput in packets per
//! second. Nodes are built and loaded outside the timed part.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use kpsim::scale::{first_packet_rules, loaded_node};

fn first_packet(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_packet_iptables");
    group.sample_size(20);
    for services in [1_000usize, 10_000, 30_000] {
        let (net, m) = loaded_node(services, 1).unwrap();
        // Setup and routine both need the network, one after the other.
        let net = std::cell::RefCell::new(net);
        let mut order: Vec<usize> = (0..services).collect();
        order.sort_by_key(|i| m.services[*i].name.clone());
        let last = order[services - 1];
        let mut port = 1024u16;
        group.bench_with_input(BenchmarkId::from_parameter(services), &services, |b, _| {
            b.iter_batched(
                || {
                    // A fresh source port: every packet starts a new flow.
                    // Before the ports wrap around, empty the conntrack
                    // table (outside the timed part) so no packet is a hit.
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

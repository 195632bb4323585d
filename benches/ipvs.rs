//! IPVS mode's costs: a new connection's first packet through a node at
//! 1,000 / 10,000 / 100,000 services (the helper rules match on ipsets and
//! IPVS finds the virtual service in a hash table, so the time should stay
//! flat where iptables mode's grows with the service's position), and the
//! reconciliation after one endpoint change at 10,000 services (IPVS mode
//! has no partial sync: every sync reads the kernel's virtual servers and
//! changes only what differs). Inputs come from the seeded generator; nodes
//! are built and loaded outside the timed part.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use kpsim::generate::{cluster, Shape};
use kpsim::scale::{first_packet_rules, loaded_node_in};
use kpsim::simkernel::{KernelSide, SimKernel};
use proxier::clock::Timestamp;
use proxier::config::{Config, Mode};
use proxier::ipvs::{Options, Proxier};
use proxier::k8s::IpFamily;
use proxier::node::NodeInfo;
use proxier::provider::Provider;
use sim::netfilter::Variant;
use sim::node::Node;
use sim::time::Instant;

fn first_packet(c: &mut Criterion) {
    let mut group = c.benchmark_group("first_packet_ipvs");
    group.sample_size(20);
    for services in [1_000usize, 10_000, 100_000] {
        let (net, m) = loaded_node_in(Mode::Ipvs, services, 1).unwrap();
        let net = std::cell::RefCell::new(net);
        let mut order: Vec<usize> = (0..services).collect();
        order.sort_by_key(|i| m.services[*i].name.clone());
        let last = order[services - 1];
        let mut port = 1024u16;
        group.bench_with_input(BenchmarkId::from_parameter(services), &services, |b, _| {
            b.iter_batched(
                || {
                    // A fresh source port: every packet starts a new flow
                    // (a new conntrack entry and a new IPVS connection).
                    // Before the ports wrap, empty both tables outside the
                    // timed part.
                    if port == u16::MAX {
                        port = 1024;
                        let mut net = net.borrow_mut();
                        let node = net.node_mut("node-0").unwrap();
                        let config = *node.conntrack().config();
                        *node.conntrack_mut() = sim::conntrack::Conntrack::new(config);
                        node.expire(Instant::from_secs(3600));
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

fn reconcile(c: &mut Criterion) {
    let mut group = c.benchmark_group("ipvs_reconcile");
    group.sample_size(10);
    let m = cluster(&Shape {
        services: 10_000,
        endpoints_per_service: 10,
        nodes: 10,
        seed: 1,
    });
    let ip = "192.168.0.10".parse().unwrap();
    let mut node = Node::new("node-0", 1, Variant::Nft);
    node.add_interface("eth0").unwrap();
    node.add_address("eth0", ip, 24).unwrap();
    let mut side = KernelSide::default();
    let config = Config {
        mode: Mode::Ipvs,
        cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
        ..Config::default()
    };
    let info = NodeInfo::new("node-0", vec![ip]);
    let options = Options::from_config(&config, IpFamily::V4, &info);
    let mut p = {
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        Proxier::new(IpFamily::V4, info, options, &mut k, Timestamp::ZERO).unwrap()
    };
    for s in &m.services {
        p.on_service(&s.name, Some(s));
    }
    for s in &m.endpoint_slices {
        p.on_endpoint_slice(&s.name, Some(s));
    }
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    {
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        p.sync(Timestamp::ZERO, &mut k).unwrap();
    }
    let mut changed = m.endpoint_slices[4242].clone();
    changed.endpoints.pop();
    group.bench_function("10000_one_endpoint_removed", |b| {
        b.iter_batched(
            || {
                let mut p = p.clone();
                p.on_endpoint_slice(&changed.name, Some(&changed));
                (p, node.clone(), side.clone())
            },
            |(mut p, mut node, mut side)| {
                let mut k = SimKernel::new(&mut node, &mut side, Instant::from_secs(2));
                p.sync(Timestamp::from_secs(2), &mut k).unwrap();
                // Dropped after the measurement, not inside it.
                (p, node, side)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, first_packet, reconcile);
criterion_main!(benches);

//! IPVS mode's costs: a new connection's first packet through a node at
//! 1,000 / 10,000 / 100,000 services (the helper rules match on ipsets and
//! IPVS finds the virtual service in a hash table, so the time should stay
//! flat where iptables mode's grows with the service's position), and the
//! reconciliation after one endpoint change at 10,000 services (IPVS mode
//! has no partial sync: every sync reads the kernel's virtual servers and
//! changes only what differs). Inputs come from the seeded generator; nodes
//! are built and loaded outside the timed part.

mod common;

use common::{
    clear_conntrack, config, feed, first_packet_bench, generated, node_info, NODE, NODE_IP,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use kpsim::scale::loaded_node_in;
use kpsim::simkernel::{KernelSide, SimKernel};
use proxier::clock::Timestamp;
use proxier::config::Mode;
use proxier::ipvs::{Options, Proxier};
use proxier::k8s::IpFamily;
use proxier::provider::Provider;
use sim::netfilter::Variant;
use sim::node::Node;
use sim::time::Instant;

fn first_packet(c: &mut Criterion) {
    first_packet_bench(
        c,
        "first_packet_ipvs",
        &[1_000, 10_000, 100_000],
        |services| loaded_node_in(Mode::Ipvs, services, 1).unwrap(),
        // A new flow is a new conntrack entry and a new IPVS connection:
        // empty both tables.
        |node| {
            clear_conntrack(node);
            node.expire(Instant::from_secs(3600));
        },
    );
}

fn reconcile(c: &mut Criterion) {
    let mut group = c.benchmark_group("ipvs_reconcile");
    group.sample_size(10);
    let m = generated(10_000);
    let mut node = Node::new(NODE, 1, Variant::Nft);
    node.add_interface("eth0").unwrap();
    node.add_address("eth0", NODE_IP.parse().unwrap(), 24)
        .unwrap();
    let mut side = KernelSide::default();
    let config = config(Mode::Ipvs);
    let info = node_info();
    let options = Options::from_config(&config, IpFamily::V4, &info);
    let mut p = {
        let mut k = SimKernel::new(&mut node, &mut side, Instant::ZERO);
        Proxier::new(IpFamily::V4, info, options, &mut k, Timestamp::ZERO).unwrap()
    };
    feed(&mut p, &m);
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

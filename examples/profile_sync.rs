//! Profiling aid: one full and one partial iptables sync at 10,000 services
//! × 10 endpoints (`cargo run --release --example profile_sync`).

use kpsim::generate::{cluster, Shape};
use proxier::clock::Timestamp;
use proxier::config::Config;
use proxier::dataplane::recording::{RecordingIptables, RecordingKernel};
use proxier::iptables::{Options, Proxier};
use proxier::k8s::IpFamily;
use proxier::node::NodeInfo;
use proxier::provider::Provider;

fn main() {
    let m = cluster(&Shape {
        services: 10_000,
        endpoints_per_service: 10,
        nodes: 10,
        seed: 1,
    });
    let mut k = RecordingKernel {
        iptables_v4: RecordingIptables::new(IpFamily::V4).payload_only(),
        ..RecordingKernel::default()
    };
    let config = Config {
        cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()],
        ..Config::default()
    };
    let node = NodeInfo::new("node-0", vec!["192.168.0.10".parse().unwrap()]);
    let options = Options::from_config(&config, IpFamily::V4, &node);
    let mut p = Proxier::new(IpFamily::V4, node, options, &mut k).unwrap();
    for s in &m.services {
        p.on_service(&s.name, Some(s));
    }
    for s in &m.endpoint_slices {
        p.on_endpoint_slice(&s.name, Some(s));
    }
    p.on_services_synced();
    p.on_endpoint_slices_synced();
    for i in 0..5 {
        p.force_full_sync();
        let stats = p.sync(Timestamp::from_secs(i), &mut k).unwrap();
        assert!(stats.full);
    }
    let mut changed = m.endpoint_slices[4242].clone();
    for i in 0..10 {
        changed.endpoints.rotate_left(1);
        p.on_endpoint_slice(&changed.name, Some(&changed));
        p.sync(Timestamp::from_secs(10 + i), &mut k).unwrap();
    }
    println!("{:?}", p.last_stats());
}

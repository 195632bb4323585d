//! Profiling aid: one full and one partial iptables sync at 10,000 services
//! × 10 endpoints (`cargo run --release --example profile_sync`).

// The benches' setup, so the profile is of what `iptables_render` measures.
#[path = "../benches/common/mod.rs"]
mod common;

use common::{config, feed, generated, node_info};
use proxier::clock::Timestamp;
use proxier::config::Mode;
use proxier::dataplane::recording::{RecordingIptables, RecordingKernel};
use proxier::iptables::{Options, Proxier};
use proxier::k8s::IpFamily;
use proxier::provider::Provider;

fn main() {
    let m = generated(10_000);
    let mut k = RecordingKernel {
        iptables_v4: RecordingIptables::new(IpFamily::V4).payload_only(),
        ..RecordingKernel::default()
    };
    let config = config(Mode::Iptables);
    let node = node_info();
    let options = Options::from_config(&config, IpFamily::V4, &node);
    let mut p = Proxier::new(IpFamily::V4, node, options, &mut k).unwrap();
    feed(&mut p, &m);
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

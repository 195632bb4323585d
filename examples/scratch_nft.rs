use kpsim::kernel_apply::apply_with;
use proxier::kernel::{KernelOptions, OwnedNetns};
fn main() {
    let req = kpsim::oneshot::RenderRequest {
        config: proxier::config::Config { mode: proxier::config::Mode::Nftables, cluster_cidrs: vec!["10.128.0.0/9".parse().unwrap()], ..Default::default() },
        manifests: kpsim::generate::cluster(&kpsim::generate::Shape { services: 20, endpoints_per_service: 1, nodes: 10, seed: 1 }),
        node: Some("node-0".into()), node_ips: vec!["192.168.0.10".parse().unwrap()], family: None };
    let a = OwnedNetns::create_unique("kpsim-scratch").unwrap();
    let b = OwnedNetns::create_unique("kpsim-scratch").unwrap();
    let opts = |ns: &OwnedNetns| KernelOptions { netns: Some(ns.name().into()), ..Default::default() };
    let r1 = apply_with(&req, &opts(&a)).unwrap();
    let r2 = apply_with(&req, &opts(&b)).unwrap();
    let r3 = apply_with(&req, &opts(&b)).unwrap();
    let l = |ns: &OwnedNetns| ns.runner().check("nft", &["list", "table", "ip", "kube-proxy"], None).unwrap();
    std::fs::write("/tmp/nft_a.txt", l(&a)).unwrap();
    std::fs::write("/tmp/nft_b.txt", l(&b)).unwrap();
    std::fs::write("/tmp/nft_tx1.txt", r1.writes[0].input.clone().unwrap()).unwrap();
    std::fs::write("/tmp/nft_tx3.txt", r3.writes.iter().filter_map(|w| w.input.clone()).collect::<Vec<_>>().join("\n----\n")).unwrap();
    let _ = r2;
}

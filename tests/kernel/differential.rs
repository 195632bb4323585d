//! The differential harness: each scenario's cluster built from network
//! namespaces, the real proxier on the real kernel in every node namespace,
//! real traffic — compared with the simulator's report for the same
//! scenario (`kpsim::kernel_cluster`). Shipped scenarios first, then
//! seeded generated clusters.
//!
//! `KPSIM_DIFF_CASES` (default 200, what the issue asks of a CI run) and `KPSIM_DIFF_SEED` (default 1) choose
//! the generated cases; the `kernel_soak` example runs many more.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kpsim::kernel_cluster::cases::{generated_cases, planned_cases, CaseResult};
use kpsim::kernel_cluster::compare::unsupported;
use kpsim::kernel_cluster::{differential_pair, DiffOptions, Topology};
use kpsim::scenario::{self, Plan};
use proxier::config::Mode;
use proxier::k8s::TrafficPolicy;

use crate::support::{require, HostRules};

/// What the differential tests run besides `ip`.
const TOOLS: &[&str] = &[
    "iptables-nft",
    "iptables-nft-save",
    "iptables-nft-restore",
    "iptables-legacy",
    "iptables-legacy-save",
    "iptables-legacy-restore",
    "nft",
];

/// `None` (after one line saying why) unless a small namespace cluster
/// (bridge, veths, routes, nftables bridge and nat tables) can be built
/// here.
fn require_cluster(test: &str) -> Option<()> {
    let text = "name: probe\ncluster:\n  nodes:\n  - {name: node-a, ip: 192.168.0.10, podCIDR: 10.244.1.0/24}\n  - {name: node-b, ip: 192.168.0.11, podCIDR: 10.244.2.0/24}\n  pods:\n  - {name: web, node: node-a, ports: [8080]}\n  clients:\n  - {name: ext, ip: 203.0.113.7}\n  loadBalancers:\n  - {name: lb, ip: 34.120.0.1, service: default/web, preserveClientIP: false}\nobjects:\n- {apiVersion: v1, kind: Service, metadata: {name: web}, spec: {type: LoadBalancer, ports: [{port: 80}]}}\nsteps:\n- node: {name: node-b, down: true}\n";
    let plan = scenario::load("probe", text).expect("the probe scenario plans");
    let built = Topology::build(&plan).and_then(|mut t| t.set_node_up("node-b", false));
    match built {
        Ok(()) => Some(()),
        Err(e) => {
            println!("skipping kernel test {test}: cannot build a namespace cluster here ({e})");
            None
        }
    }
}

pub(crate) fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What a batch of cases came to.
pub(crate) struct Tally {
    /// The failures' texts.
    pub failures: Vec<String>,
    /// How many cases ran to a comparison.
    pub ran: usize,
    /// How many probes those compared.
    pub probes: usize,
}

/// Prints each case's summary and what the cases exercised.
pub(crate) fn report(results: &[CaseResult]) -> Tally {
    let mut failures = Vec::new();
    let mut ran = 0;
    let mut probes = 0;
    let mut coverage: BTreeMap<&str, usize> = BTreeMap::new();
    for r in results {
        match &r.result {
            Ok(c) => {
                ran += 1;
                probes += c.probes;
                println!("  {} [{:.1}s]", c.summary(), r.elapsed.as_secs_f64());
                for (what, n) in &c.coverage {
                    *coverage.entry(what).or_default() += n;
                }
            }
            Err(e) => println!("  {}: {e}", r.name),
        }
        failures.extend(r.failure());
    }
    let parts: Vec<String> = coverage.iter().map(|(w, n)| format!("{w} {n}")).collect();
    println!("  probes that were: {}", parts.join(", "));
    Tally {
        failures,
        ran,
        probes,
    }
}

/// Every shipped scenario with the modes it runs in: those it names, or
/// iptables and nftables when it names none.
fn shipped_plans() -> Vec<(Plan, Vec<Mode>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let file = p.display().to_string();
            let text = std::fs::read_to_string(p).unwrap();
            let plan = scenario::load(&file, &text).unwrap_or_else(|e| panic!("{e}"));
            let named = scenario::plan::parse(&file, &text).unwrap().modes;
            let modes = if named.is_empty() {
                vec![Mode::Iptables, Mode::Nftables]
            } else {
                plan.modes.clone()
            };
            (plan, modes)
        })
        .collect()
}

/// Every shipped scenario the harness can build agrees with the simulator
/// in iptables and nftables mode (steps after an `advance` longer than the
/// real-time budget are skipped, and say so; IPVS-only scenarios are
/// skipped: this kernel has no IPVS).
#[test]
fn shipped_scenarios_agree_with_the_kernel() {
    if require("shipped_scenarios_agree_with_the_kernel", TOOLS).is_none()
        || require_cluster("shipped_scenarios_agree_with_the_kernel").is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let mut cases = Vec::new();
    for (plan, modes) in shipped_plans() {
        for mode in modes {
            match unsupported(&plan, mode) {
                Some(why) => println!("  {} ({}): skipped: {why}", plan.name, mode.name()),
                None => {
                    let opts = DiffOptions {
                        mode,
                        ..DiffOptions::default()
                    };
                    cases.push((plan.clone(), opts));
                }
            }
        }
    }
    let results = planned_cases(&cases, cases.len());
    let Tally { failures, ran, .. } = report(&results);
    println!(
        "shipped scenarios: {ran} runs compared, {} with disagreements",
        failures.len()
    );
    host.assert_unchanged();
    assert!(ran >= 16, "only {ran} shipped scenario runs");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Seeded random clusters agree with the simulator, probe by probe, in
/// nftables mode and in iptables mode with both iptables variants.
#[test]
fn generated_scenarios_agree_with_the_kernel() {
    if require("generated_scenarios_agree_with_the_kernel", TOOLS).is_none()
        || require_cluster("generated_scenarios_agree_with_the_kernel").is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let cases = env_u64("KPSIM_DIFF_CASES", 200);
    let first = env_u64("KPSIM_DIFF_SEED", 1);
    let seeds: Vec<u64> = (first..first + cases).collect();
    // A third each in nftables, iptables-legacy and iptables-nft mode.
    let results = generated_cases(&seeds, 6, &DiffOptions::default(), None);
    let Tally {
        failures,
        ran,
        probes,
    } = report(&results);
    println!(
        "generated scenarios: {ran} cases, {probes} probes, {} with disagreements",
        failures.len()
    );
    host.assert_unchanged();
    assert_eq!(ran as u64, cases, "every generated case runs");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The harness notices a kernel that behaves differently: the kernel side
/// runs the nodeport scenario with `masqueradeAll` and with `web-local`'s
/// external policy switched to Cluster, and the comparison must say where.
#[test]
fn a_kernel_that_differs_is_caught() {
    if require("a_kernel_that_differs_is_caught", TOOLS).is_none()
        || require_cluster("a_kernel_that_differs_is_caught").is_none()
    {
        return;
    }
    let host = HostRules::capture();
    let (plan, _) = shipped_plans()
        .into_iter()
        .find(|(p, _)| p.name == "nodeport")
        .expect("the nodeport scenario ships");
    let mut other = plan.clone();
    other.config.masquerade_all = true;
    for s in other
        .services
        .iter_mut()
        .filter(|s| s.name.name == "web-local")
    {
        s.external_traffic_policy = TrafficPolicy::Cluster;
    }
    let c = differential_pair(&plan, &other, &DiffOptions::default()).unwrap();
    let found: BTreeSet<(usize, &str)> = c
        .disagreements
        .iter()
        .map(|d| (d.step, d.what.as_str()))
        .collect();
    let shown: Vec<String> = c.disagreements.iter().map(|d| d.to_string()).collect();
    let shown = shown.join("\n");
    // eTP Local via node-a: the kernel now masquerades and spreads.
    assert!(found.contains(&(3, "sources seen by the pods")), "{shown}");
    assert!(found.contains(&(3, "reachable backends")), "{shown}");
    // eTP Local via node-c: dropped by the simulator, answered by the kernel.
    assert!(found.contains(&(4, "outcomes")), "{shown}");
    // eTP Cluster traffic was masqueraded anyway: no difference there.
    assert!(c.disagreements.iter().all(|d| d.step > 2), "{shown}");
    host.assert_unchanged();
}

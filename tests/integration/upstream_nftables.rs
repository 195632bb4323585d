//! Upstream kube-proxy's own nftables tests, replayed against kpsim's
//! proxier: full table dumps compared the way upstream compares them
//! (sorted by object type and name, rules in chain order), transaction
//! sizes, stale-chain bookkeeping, packet-flow tables through upstream's
//! tracer, and metrics. Fixtures and format: `tests/fixtures/upstream/nftables/`.

use crate::support::nft_dump;
use crate::support::nft_trace::trace_packet;
use crate::support::nftables_upstream::{all_fixtures, base_rules, load, read, Fixture, Replay};

/// Operations of a full sync of an empty cluster on a fresh fake (upstream's
/// `setupOps` in `TestSyncProxyRulesStartup`).
fn setup_operations(f: &Fixture) -> usize {
    let empty = Fixture {
        initial_dump: None,
        syncs: Vec::new(),
        ..serde_yaml::from_str::<Fixture>(&format!(
            "upstream: setup\nsource: ''\nfamily: {}\nsyncs: []\n",
            f.family
        ))
        .unwrap()
    };
    let mut r = Replay::new(&empty);
    r.sync().expect("empty sync");
    r.kernel.nft.last_operations()
}

fn replay(name: &str, f: &Fixture) -> Vec<String> {
    let mut failures = Vec::new();
    let mut r = Replay::new(f);
    for (i, step) in f.syncs.iter().enumerate() {
        let at = format!("{name} sync {} ({})", i + 1, step.description);
        if step.age_stale_chains {
            r.age_stale_chains();
        }
        r.deliver(&step.apply, &step.delete);
        let stats = match r.sync() {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{at}: sync failed: {e}"));
                continue;
            }
        };
        let dump = r.kernel.nft.dump();
        if let Some(expect) = &step.expect {
            let expect = if step.expect_base_rules {
                format!("{}{expect}", base_rules())
            } else {
                expect.clone()
            };
            if let Some((want, got)) = nft_dump::diff(&expect, &dump) {
                failures.push(format!(
                    "{at}: tables differ\n--- upstream (sorted)\n{want}\n--- kpsim (sorted)\n{got}\n--- transaction\n{}",
                    r.kernel.nft.last_transaction()
                ));
            }
        }
        let ops = r.kernel.nft.last_operations();
        if ops != stats.operations {
            failures.push(format!(
                "{at}: stats say {} operations, ran {ops}",
                stats.operations
            ));
        }
        if let Some(want) = step.expect_operations {
            if ops != want {
                failures.push(format!(
                    "{at}: {ops} operations, upstream {want}\n{}",
                    r.kernel.nft.last_transaction()
                ));
            }
        }
        if let Some(extra) = step.expect_operations_over_setup {
            let want = setup_operations(f) + extra;
            if ops != want {
                failures.push(format!(
                    "{at}: {ops} operations, upstream setup+{extra} = {want}\n{}",
                    r.kernel.nft.last_transaction()
                ));
            }
        }
        if let Some(want) = &step.expect_stale_chains {
            let got: Vec<&String> = r.proxier.stale_chains().keys().collect();
            let mut want: Vec<&String> = want.iter().collect();
            want.sort();
            if got != want {
                failures.push(format!("{at}: stale chains {got:?}, upstream {want:?}"));
            }
        }
        if let Some(m) = &step.metrics {
            let got = (
                stats.no_local_endpoints_internal,
                stats.no_local_endpoints_external,
            );
            let want = (m.no_local_endpoints_internal, m.no_local_endpoints_external);
            if got != want {
                failures.push(format!(
                    "{at}: no-local-endpoints (internal, external) = {got:?}, upstream {want:?}"
                ));
            }
        }
        if let Some(e) = &step.expect_map_element {
            let present = r
                .kernel
                .nft
                .state
                .as_ref()
                .and_then(|t| t.maps.get(&e.map))
                .is_some_and(|m| m.elements.iter().any(|x| x.key == e.key));
            if present != e.present {
                failures.push(format!(
                    "{at}: element {:?} in {} present={present}, upstream {}",
                    e.key, e.map, e.present
                ));
            }
        }
        let table = r.kernel.nft.state.clone().unwrap_or_default();
        for flow in &step.flows {
            let proto = if flow.protocol.is_empty() {
                "tcp".to_string()
            } else {
                flow.protocol.to_lowercase()
            };
            let t = trace_packet(
                &table,
                &flow.source,
                &proto,
                &flow.dest,
                &flow.port.to_string(),
                &r.tracer_node_ips,
            );
            if t.output != flow.output || t.masq != flow.masq || !t.errors.is_empty() {
                failures.push(format!(
                    "{at}: flow {:?} from {} to {}:{}: output {:?} masq {}, upstream {:?} masq {}{}\nby matching:\n{}",
                    flow.name,
                    flow.source,
                    flow.dest,
                    flow.port,
                    t.output,
                    t.masq,
                    flow.output,
                    flow.masq,
                    if t.errors.is_empty() { String::new() } else { format!("\ntracer errors: {:?}", t.errors) },
                    t.matches.join("\n")
                ));
            }
        }
    }
    failures
}

#[test]
fn upstream_nftables_fixtures() {
    let mut failures = Vec::new();
    let names = all_fixtures();
    assert!(names.len() >= 30, "only {} fixtures", names.len());
    for name in &names {
        let f = load(name);
        failures.extend(replay(name, &f));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The comparison helper itself, on upstream's own case for it
/// (`Test_sortNFTablesTransaction`, `Test_diffNFTablesTransaction`).
#[test]
fn sort_matches_upstreams_case() {
    let v: serde_yaml::Value =
        serde_yaml::from_str(&read("sort_nftables_transaction.yaml")).unwrap();
    let input = v["input"].as_str().unwrap();
    let expected = v["expected"].as_str().unwrap();
    assert_eq!(nft_dump::sort(input), expected.trim());
    assert!(nft_dump::diff(input, expected).is_none());
    let not_expected: String = expected.lines().skip(2).collect::<Vec<_>>().join("\n");
    assert!(nft_dump::diff(input, &not_expected).is_some());
}

//! Upstream kube-proxy's own iptables tests, replayed against kpsim's
//! proxier: full payloads (sorted the way upstream's assertion sorts them),
//! single chains, rule-count metrics, and the generated-rules counts.

use crate::support::iptables_dump;
use crate::support::upstream::{all_fixtures, load, load_value, Fixture, Replay};
use proxier::provider::Provider;

fn metric(value: &Option<serde_yaml::Value>, path: &[&str]) -> Option<usize> {
    let mut v = value.as_ref()?;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_u64().map(|n| n as usize)
}

/// Replays every sync of a fixture; returns the failures found.
fn replay(name: &str, f: &Fixture) -> Vec<String> {
    let mut failures = Vec::new();
    let mut r = Replay::new(f);
    for (i, step) in f.syncs.iter().enumerate() {
        let at = format!("{name} sync {} ({})", i + 1, step.description);
        r.inject(&step.inject_rules);
        r.deliver(&step.apply, &step.delete);
        if step.force_full_sync {
            r.proxier.force_full_sync();
        }
        match step.set_last_iptables_cleanup.as_deref() {
            None => {}
            Some("now") => r
                .proxier
                .set_last_cleanup(Some(r.now.plus(std::time::Duration::from_millis(1)))),
            Some(_) => r.proxier.set_last_cleanup(None),
        }
        let result = r.sync();
        if step.expect_restore_failure {
            if result.is_ok() {
                failures.push(format!("{at}: expected the restore to fail, it succeeded"));
            }
            if let Some(after) = &step.expect_after {
                if let Some(chains) = after.get("chainExists").and_then(|c| c.as_sequence()) {
                    for c in chains {
                        let (t, ch) = (c["table"].as_str().unwrap(), c["chain"].as_str().unwrap());
                        if !r.chain_exists(t, ch) {
                            failures.push(format!(
                                "{at}: chain {t}/{ch} should survive the failed restore"
                            ));
                        }
                    }
                }
            }
            continue;
        }
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{at}: sync failed: {e}"));
                continue;
            }
        };
        if let Some(full) = step.full_sync {
            if stats.full != full {
                failures.push(format!(
                    "{at}: full sync was {}, upstream {}",
                    stats.full, full
                ));
            }
        }
        let payload = r.last_payload();
        if let Some(expect) = &step.expect {
            let sorted =
                iptables_dump::sort(&payload).unwrap_or_else(|e| format!("unparsable: {e}"));
            if &sorted != expect {
                failures.push(format!(
                    "{at}: payload differs\n--- upstream\n{expect}\n--- kpsim (sorted)\n{sorted}"
                ));
            }
            if step.check_consistency {
                if let Err(e) = iptables_dump::check_rule_jumps(&payload) {
                    failures.push(format!("{at}: consistency: {e}"));
                }
            }
        }
        for c in &step.expect_chains {
            let got = iptables_dump::chain_rules(&payload, &c.table, &c.chain).unwrap();
            if got != c.rules {
                failures.push(format!(
                    "{at}: chain {}/{} differs\n--- upstream\n{}--- kpsim\n{got}",
                    c.table, c.chain, c.rules
                ));
            }
        }
        let checks = [
            (
                metric(&step.metrics, &["iptablesRulesTotal", "filter"]),
                stats.filter_rules,
                "iptablesRulesTotal{filter}",
            ),
            (
                metric(&step.metrics, &["iptablesRulesLastSync", "filter"]),
                stats.filter_rules,
                "iptablesRulesLastSync{filter}",
            ),
            (
                metric(&step.metrics, &["iptablesRulesTotal", "nat"]),
                stats.nat_rules_total,
                "iptablesRulesTotal{nat}",
            ),
            (
                metric(&step.metrics, &["iptablesRulesLastSync", "nat"]),
                stats.nat_rules_written - stats.deleted_chains,
                "iptablesRulesLastSync{nat}",
            ),
        ];
        for (want, got, what) in checks {
            if let Some(want) = want {
                if want != got {
                    failures.push(format!("{at}: {what} = {got}, upstream {want}"));
                }
            }
        }
        if let Some(assert) = &step.assert {
            failures.extend(check_asserts(&at, assert, &payload));
        }
    }
    failures
}

/// Upstream's `countEndpointsAndComments` and payload substring checks.
fn check_asserts(at: &str, assert: &serde_yaml::Value, payload: &str) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(c) = assert.get("countEndpointsAndComments") {
        let needle = c["match"].as_str().unwrap();
        let (mut endpoints, mut comments, mut matched) = (0, 0, String::new());
        for line in payload.lines() {
            if line.starts_with("-A KUBE-SEP-") && line.contains("-j DNAT") {
                endpoints += 1;
                if line.contains("--comment") {
                    comments += 1;
                }
                if line.contains(needle) {
                    matched = line.to_string();
                }
            }
        }
        if let Some(want) = c.get("matchedLine").and_then(|v| v.as_str()) {
            if matched != want {
                failures.push(format!("{at}: matched line {matched:?}, upstream {want:?}"));
            }
        }
        for (key, got) in [("numEndpoints", endpoints), ("numComments", comments)] {
            if let Some(want) = c.get(key).and_then(|v| v.as_u64()) {
                if want as usize != got {
                    failures.push(format!("{at}: {key} = {got}, upstream {want}"));
                }
            }
        }
    }
    for (key, should) in [("payloadContains", true), ("payloadNotContains", false)] {
        for s in assert
            .get(key)
            .and_then(|v| v.as_sequence())
            .into_iter()
            .flatten()
        {
            let s = s.as_str().unwrap();
            if payload.contains(s) != should {
                failures.push(format!(
                    "{at}: payload {} {s:?}",
                    if should { "lacks" } else { "contains" }
                ));
            }
        }
    }
    failures
}

#[test]
fn upstream_iptables_payload_fixtures() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for name in all_fixtures() {
        if load_value(&name).get("syncs").is_none() {
            continue; // tables of cases for helpers, or rule counts
        }
        let f = load(&name);
        let has_output_checks = f.syncs.iter().any(|s| {
            s.expect.is_some()
                || !s.expect_chains.is_empty()
                || s.metrics.is_some()
                || s.assert.is_some()
        });
        if !has_output_checks || name == "test_trace_packet.yaml" {
            continue;
        }
        replayed += 1;
        failures.extend(replay(&name, &f));
    }
    assert!(replayed >= 20, "only {replayed} fixtures had output checks");
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn upstream_number_of_generated_rules() {
    let f = load("number_generated_rules.yaml");
    let cases = f.count_cases();
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let mut r = Replay::new(&f);
        r.deliver(&case.apply, &[]);
        let stats = r.sync().expect("sync");
        if (stats.filter_rules, stats.nat_rules_written)
            != (case.expected_filter_rules, case.expected_nat_rules)
        {
            failures.push(format!(
                "{}: filter {} nat {}, upstream filter {} nat {}",
                case.name,
                stats.filter_rules,
                stats.nat_rules_written,
                case.expected_filter_rules,
                case.expected_nat_rules
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The consistency check itself, on upstream's own cases for it.
#[test]
fn consistency_check_matches_upstreams_cases() {
    let f = load_value("test_check_iptables_rule_jumps.yaml");
    let cases = f["cases"].as_sequence().expect("cases");
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input = case["input"].as_str().unwrap();
        let want = case["errorPrefix"].as_str().unwrap();
        match iptables_dump::check_rule_jumps(input) {
            Ok(()) => assert_eq!(want, "", "{name}: passed, upstream fails with {want:?}"),
            Err(e) => assert!(
                !want.is_empty() && e.starts_with(want),
                "{name}: {e:?}, upstream {want:?}"
            ),
        }
    }
}

/// The normaliser itself, on upstream's own cases for it.
#[test]
fn sort_matches_upstreams_cases() {
    let f = load_value("test_sort_iptables_rules.yaml");
    let cases = f["cases"].as_sequence().expect("cases");
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let got = iptables_dump::sort(case["input"].as_str().unwrap()).unwrap();
        assert_eq!(got, case["output"].as_str().unwrap(), "{name}");
    }
}

/// `--probability` formatting, on upstream's `TestComputeProbability` cases.
#[test]
fn probability_formatting_matches_upstream() {
    let f = load_value("test_compute_probability.yaml");
    let cases = f["cases"].as_sequence().expect("cases");
    assert!(cases.len() >= 5);
    for case in cases {
        let n = case["n"].as_u64().unwrap() as usize;
        let want = case["probability"].as_str().unwrap();
        assert_eq!(proxier::iptables::compute_probability(n), want, "n = {n}");
    }
    // Upstream also requires the values to fall strictly as n grows.
    let parse = |n: usize| {
        proxier::iptables::compute_probability(n)
            .parse::<f64>()
            .unwrap()
    };
    for n in 2..100_000 {
        assert!(
            parse(n) > parse(n + 1),
            "probability({n}) <= probability({})",
            n + 1
        );
    }
}

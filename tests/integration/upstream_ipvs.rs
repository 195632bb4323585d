//! Upstream kube-proxy's IPVS tests (`pkg/proxy/ipvs/proxier_test.go`,
//! `graceful_termination_test.go`), replayed against kpsim's IPVS proxier
//! from the fixtures in `tests/fixtures/upstream/ipvs/`, plus kpsim's own
//! fixtures there (`kpsim_*.yaml`: hand-derived payloads, graceful
//! termination through syncs). Each expectation key is checked the way the
//! README says; an unknown key fails, so a typo cannot pass silently.

use std::collections::BTreeMap;

use proxier::clock::Timestamp;
use proxier::dataplane::recording::RecordingIpvs;
use proxier::dataplane::{Ipvs, RealServer, ServiceFlags, VirtualServer};
use proxier::ipvs::names::family_set_name;
use proxier::ipvs::GracefulTermination;
use proxier::k8s::IpFamily;
use serde_yaml::Value;

use crate::support::ipvs_upstream::{
    after, all_fixtures, host_port, load, load_value, protocol, Replay,
};

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
    }
}

fn n(v: &Value, key: &str, default: u64) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(default)
}

/// A real server as `ip:port w=W a=A i=I` (counts default to 0).
fn rs_text(address: &str, port: u64, weight: i64, active: u64, inactive: u64) -> String {
    format!("{address}:{port} w={weight} a={active} i={inactive}")
}

fn expected_rs(v: &Value) -> String {
    rs_text(
        &s(&v["address"]),
        n(v, "port", 0),
        v.get("weight").and_then(Value::as_i64).unwrap_or(1),
        n(v, "activeConn", 0),
        n(v, "inactiveConn", 0),
    )
}

fn actual_rs(rs: &RealServer) -> String {
    rs_text(
        &rs.address.to_string(),
        u64::from(rs.port),
        i64::from(rs.weight),
        u64::from(rs.active_conn),
        u64::from(rs.inactive_conn),
    )
}

fn vs_text(address: &str, port: u64, proto: &str, sched: &str, flags: u64, timeout: u64) -> String {
    format!(
        "{address} {port}/{} {sched} flags={flags:#x} timeout={timeout}",
        proto.to_uppercase()
    )
}

/// The whole IPVS table, one line per virtual server with its real servers.
fn state_of(ipvs: &RecordingIpvs) -> BTreeMap<String, Vec<String>> {
    ipvs.virtual_servers()
        .map(|(vs, dests)| {
            let key = vs_text(
                &vs.address.to_string(),
                u64::from(vs.port),
                vs.protocol.api_name(),
                &vs.scheduler,
                u64::from(vs.flags.0),
                u64::from(vs.timeout),
            );
            (key, dests.iter().map(actual_rs).collect())
        })
        .collect()
}

fn expected_state(list: &Value) -> BTreeMap<String, Vec<String>> {
    list.as_sequence()
        .into_iter()
        .flatten()
        .map(|v| {
            let key = vs_text(
                &s(&v["address"]),
                n(v, "port", 0),
                &s(&v["protocol"]),
                v.get("scheduler").and_then(Value::as_str).unwrap_or(""),
                n(v, "flags", 0),
                n(v, "timeout", 0),
            );
            let dests = v["realServers"].as_sequence().into_iter().flatten();
            (key, dests.map(expected_rs).collect())
        })
        .collect()
}

fn key_of(v: &Value) -> VirtualServer {
    VirtualServer {
        address: s(&v["address"]).parse().unwrap(),
        protocol: protocol(&s(&v["protocol"])),
        port: n(v, "port", 0) as u16,
        scheduler: String::new(),
        flags: ServiceFlags::NONE,
        timeout: 0,
    }
}

/// Checks one step's expectations; returns the failures.
fn check(at: &str, expect: &Value, r: &mut Replay) -> Vec<String> {
    let mut fails = Vec::new();
    let mut fail = |m: String| fails.push(format!("{at}: {m}"));
    for (key, want) in expect.as_mapping().expect("expect is a map") {
        let key = s(key);
        match key.as_str() {
            "ipvs" => {
                let (got, want) = (state_of(&r.kernel.ipvs), expected_state(want));
                if got != want {
                    fail(format!(
                        "IPVS state differs\n  upstream {want:#?}\n  kpsim {got:#?}"
                    ));
                }
            }
            "virtualServerCount" => {
                let got = r.kernel.ipvs.virtual_servers().count() as u64;
                if Some(got) != want.as_u64() {
                    fail(format!("{got} virtual servers, upstream {}", s(want)));
                }
            }
            "virtualServers" => {
                for v in want.as_sequence().unwrap() {
                    let vs = key_of(v);
                    let want: Vec<String> = v["realServers"]
                        .as_sequence()
                        .into_iter()
                        .flatten()
                        .map(expected_rs)
                        .collect();
                    match r.kernel.ipvs.real_servers(&vs.key()) {
                        None => fail(format!("no virtual server {vs}")),
                        Some(got) => {
                            let got: Vec<String> = got.iter().map(actual_rs).collect();
                            if got != want {
                                fail(format!("{vs}: real servers {got:?}, expected {want:?}"));
                            }
                        }
                    }
                }
            }
            "checkIPVS" => fails_extend(&mut fail, check_ipvs(want, &r.kernel.ipvs)),
            "ipsets" => {
                for (name, entries) in want.as_mapping().unwrap() {
                    let name = set_name(&s(name), r.family);
                    let mut want: Vec<String> =
                        entries.as_sequence().unwrap().iter().map(s).collect();
                    want.sort();
                    match r.kernel.ipset.entries(&name) {
                        None => fail(format!("no ipset {name}")),
                        Some(got) => {
                            let got: Vec<String> = got.iter().cloned().collect();
                            if got != want {
                                fail(format!("ipset {name}: {got:?}, expected {want:?}"));
                            }
                        }
                    }
                }
            }
            "iptablesChains" => {
                for (chain, rules) in want.as_mapping().unwrap() {
                    let chain = s(chain);
                    let got = r.chain_rules(&chain);
                    let want = rules.as_sequence().unwrap();
                    if got.len() != want.len() {
                        fail(format!(
                            "chain {chain}: {} rules, expected {}:\n    {}",
                            got.len(),
                            want.len(),
                            got.join("\n    ")
                        ));
                        continue;
                    }
                    for (rule, w) in got.iter().zip(want) {
                        if let Some(m) = rule_mismatch(rule, w, r.family) {
                            fail(format!("chain {chain}: {m}"));
                        }
                    }
                }
            }
            "firstRule" => {
                let got = r.chain_rules(&s(&want["chain"]));
                match got.first() {
                    None => fail(format!("chain {} is empty", s(&want["chain"]))),
                    Some(rule) => {
                        if let Some(m) = rule_mismatch(rule, want, r.family) {
                            fail(m);
                        }
                    }
                }
            }
            "boundAddresses" => {
                let got: Vec<String> = r
                    .kernel
                    .addresses
                    .devices()
                    .get("kube-ipvs0")
                    .into_iter()
                    .flatten()
                    .map(|ip| ip.to_string())
                    .collect();
                let want: Vec<String> = want.as_sequence().unwrap().iter().map(s).collect();
                if got != want {
                    fail(format!("kube-ipvs0 holds {got:?}, expected {want:?}"));
                }
            }
            "masqueradeRandomFully" => {
                let rules = r.chain_rules("KUBE-POSTROUTING");
                match rules
                    .iter()
                    .find(|l| after(l, "-j").as_deref() == Some("MASQUERADE"))
                {
                    None => fail("no -j MASQUERADE in KUBE-POSTROUTING".into()),
                    Some(l) => {
                        if l.contains("--random-fully") != want.as_bool().unwrap() {
                            fail(format!("masquerade rule {l:?}, randomFully {}", s(want)));
                        }
                    }
                }
            }
            "virtualServerTimeout" => {
                for (vs, _) in r.kernel.ipvs.virtual_servers() {
                    if Some(u64::from(vs.timeout)) != want.as_u64() {
                        fail(format!("{vs} timeout {}, expected {}", vs.timeout, s(want)));
                    }
                }
            }
            "noLocalEndpoints" => {
                let st = r.last_stats.clone().unwrap_or_default();
                let got = (
                    st.no_local_endpoints_internal,
                    st.no_local_endpoints_external,
                );
                let want = (
                    n(want, "internal", 0) as usize,
                    n(want, "external", 0) as usize,
                );
                if got != want {
                    fail(format!(
                        "no-local-endpoints (internal, external) {got:?}, upstream {want:?}"
                    ));
                }
            }
            "payload" => {
                let got = r.proxier.last_payload();
                if got != s(want) {
                    fail(format!(
                        "payload differs\n--- expected\n{}--- kpsim\n{got}",
                        s(want)
                    ));
                }
            }
            "payloadLines" => {
                let payload = r.proxier.last_payload().to_string();
                let has = |l: &str| payload.lines().any(|x| x == l);
                for l in want
                    .get("absent")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    if has(&s(l)) {
                        fail(format!("payload has {}", s(l)));
                    }
                }
                for l in want
                    .get("present")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                {
                    if !has(&s(l)) {
                        fail(format!("payload lacks {}", s(l)));
                    }
                }
            }
            "kernelCalls" => {
                for (what, calls) in want.as_mapping().unwrap() {
                    let got = match s(what).as_str() {
                        "ipvs" => &r.kernel.ipvs.log,
                        "ipset" => &r.kernel.ipset.log,
                        "addresses" => &r.kernel.addresses.log,
                        other => panic!("{at}: unknown kernel log {other}"),
                    };
                    let want: Vec<String> = calls.as_sequence().unwrap().iter().map(s).collect();
                    if *got != want {
                        fail(format!("{} calls {got:?}, expected {want:?}", s(what)));
                    }
                }
            }
            "draining" => {
                let got: Vec<String> = r.proxier.graceful().draining().map(String::from).collect();
                let want: Vec<String> = want.as_sequence().unwrap().iter().map(s).collect();
                if got != want {
                    fail(format!("draining {got:?}, expected {want:?}"));
                }
            }
            other => panic!("{at}: unknown expectation {other:?}"),
        }
    }
    fails
}

fn fails_extend(fail: &mut impl FnMut(String), list: Vec<String>) {
    list.into_iter().for_each(fail);
}

/// IPv6 proxiers name their sets `KUBE-6-…`; upstream's fake does not.
fn set_name(name: &str, family: IpFamily) -> String {
    if name.starts_with("KUBE-6-") {
        name.to_string()
    } else {
        family_set_name(name, family == IpFamily::V6)
    }
}

/// Upstream's `checkIptables` comparison of one rule (jump and match-set),
/// plus the source address where the fixture gives one.
fn rule_mismatch(rule: &str, want: &Value, family: IpFamily) -> Option<String> {
    let jump = after(rule, "-j");
    let set = after(rule, "--match-set");
    let want_set = want.get("matchSet").map(|v| set_name(&s(v), family));
    let mut bad = jump.as_deref() != Some(s(&want["jump"]).as_str()) || set != want_set;
    if let Some(src) = want.get("source") {
        bad |= after(rule, "-s").as_deref() != Some(s(src).as_str());
    }
    bad.then(|| {
        format!(
            "expected jump {} matchSet {want_set:?}, got {rule}",
            s(&want["jump"])
        )
    })
}

/// Upstream's `checkIPVS`: the number of virtual servers, and for the one
/// at ip:port/proto (if any) the number of destinations and, when one is
/// expected, that destination.
fn check_ipvs(want: &Value, ipvs: &RecordingIpvs) -> Vec<String> {
    let mut fails = Vec::new();
    let count = ipvs.virtual_servers().count() as u64;
    if count != n(want, "vsNum", 0) {
        fails.push(format!(
            "{count} virtual servers, upstream {}",
            n(want, "vsNum", 0)
        ));
    }
    let key = key_of(
        &serde_yaml::from_str::<Value>(&format!(
            "{{address: '{}', port: {}, protocol: {}}}",
            s(&want["ip"]),
            n(want, "port", 0),
            s(&want["protocol"])
        ))
        .unwrap(),
    )
    .key();
    if let Some(dests) = ipvs.real_servers(&key) {
        let rs: Vec<String> = want["realServers"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(s)
            .collect();
        if dests.len() != rs.len() {
            fails.push(format!(
                "{key}: {} destinations, upstream {}",
                dests.len(),
                rs.len()
            ));
        } else if rs.len() == 1 {
            let (ip, port) = host_port(&rs[0]);
            if dests[0].address != ip || dests[0].port != port {
                fails.push(format!(
                    "{key}: destination {}, upstream {}",
                    dests[0], rs[0]
                ));
            }
        }
    }
    fails
}

#[test]
fn upstream_ipvs_fixtures() {
    let mut failures = Vec::new();
    let mut replayed = 0;
    for name in all_fixtures() {
        if load_value(&name).get("syncs").is_none() {
            continue; // tables of cases for helpers
        }
        let f = load(&name);
        let mut r = Replay::new(&f);
        for (i, step) in f.syncs.iter().enumerate() {
            let at = format!(
                "{name} [{}] step {} ({})",
                f.upstream,
                i + 1,
                step.description
            );
            for a in &step.kernel_actions {
                r.kernel_action(a);
            }
            r.deliver(&step.apply, &step.delete);
            if step.restart {
                r.restart();
            }
            if let Some(d) = &step.advance {
                let errors = r.advance(proxier::config::duration::parse(d).unwrap());
                failures.extend(errors.iter().map(|e| format!("{at}: housekeeping: {e}")));
            }
            if step.sync {
                if let Err(e) = r.sync() {
                    failures.push(format!("{at}: sync failed: {e}"));
                    continue;
                }
            }
            if let Some(expect) = &step.expect {
                failures.extend(check(&at, expect, &mut r));
            }
        }
        replayed += 1;
    }
    assert!(replayed >= 50, "only {replayed} fixtures replayed");
    assert!(
        failures.is_empty(),
        "{} failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Upstream's `Test_GracefulDeleteRS`, on the graceful-termination manager.
#[test]
fn upstream_graceful_delete_rs() {
    let f = load_value("test_graceful_delete_rs.yaml");
    let cases = f["cases"].as_sequence().expect("cases");
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = s(&case["name"]);
        let mut ipvs = RecordingIpvs::default();
        for v in case["existing"].as_sequence().unwrap() {
            let vs = key_of(v);
            ipvs.add_virtual_server(&vs).unwrap();
            for d in v["realServers"].as_sequence().unwrap() {
                let rs = RealServer {
                    address: s(&d["address"]).parse().unwrap(),
                    port: n(d, "port", 0) as u16,
                    weight: d["weight"].as_i64().unwrap() as i32,
                    active_conn: n(d, "activeConn", 0) as u32,
                    inactive_conn: n(d, "inactiveConn", 0) as u32,
                };
                ipvs.add_real_server(&vs, &rs).unwrap();
                ipvs.set_connections(
                    &vs.key(),
                    rs.address,
                    rs.port,
                    rs.active_conn,
                    rs.inactive_conn,
                );
            }
        }
        let vs = key_of(&case["virtualServer"]);
        let d = &case["realServer"];
        let rs = RealServer {
            address: s(&d["address"]).parse().unwrap(),
            port: n(d, "port", 0) as u16,
            weight: d["weight"].as_i64().unwrap() as i32,
            active_conn: n(d, "activeConn", 0) as u32,
            inactive_conn: n(d, "inactiveConn", 0) as u32,
        };
        let mut g = GracefulTermination::new(Timestamp::ZERO);
        g.graceful_delete_rs(&mut ipvs, &vs, &rs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(state_of(&ipvs), expected_state(&case["expected"]), "{name}");
        assert_eq!(
            g.draining().count() == 1,
            case["inTerminationList"].as_bool().unwrap(),
            "{name}: drain list {:?}",
            g.draining().collect::<Vec<_>>()
        );
    }
}

/// The human-readable dump (`proxier::ipvs::dump`) of the state the
/// overall fixture builds, as the CLI will print it.
#[test]
fn state_dump_after_overall_sync() {
    let f = load("kpsim_payload_overall.yaml");
    let mut r = Replay::new(&f);
    r.deliver(&f.syncs[0].apply, &[]);
    r.sync().expect("sync");
    let dump = proxier::ipvs::dump::render(&r.kernel.ipvs, &r.kernel.addresses, &r.kernel.ipset);
    insta::assert_snapshot!("ipvs_state_dump_overall", dump);
}

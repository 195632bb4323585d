//! Random choices on a node with kube-proxy's rules: endpoints chosen by
//! the seeded RNG and balanced, `Explorer` listing every endpoint in rule
//! order, deterministic traces and counts, and upstream's
//! `TestTracePacket` flows, which the real evaluator must reach (exploring
//! every random branch, since upstream's tracer does).

use sim::netfilter::eval::{Decision, Explorer};
use sim::netfilter::{Family, RestoreMode, TableId};
use sim::node::{Delivery, DropReason};
use sim::packet::TcpFlags;
use sim::time::Instant;

mod common;

use common::kube_node::{block, fake_node, fixture, iface_for, kube_node, quote_comments, run};
use common::{ip, syn, tcp};

#[test]
fn random_endpoint_choice_is_seeded_and_balanced() {
    let pick = |seed| {
        let mut n = kube_node(seed);
        (0..200u16)
            .map(|i| {
                let out = run(&mut n, syn("10.0.0.2", 20000 + i, "172.30.0.44", 80), 0);
                out.packet.dst()
            })
            .collect::<Vec<_>>()
    };
    let a = pick(7);
    assert_eq!(a, pick(7), "same seed, same choices");
    assert_ne!(a, pick(8));
    let first = a.iter().filter(|d| **d == ip("10.180.0.4")).count();
    assert!(
        (70..130).contains(&first),
        "{first} of 200 to the first endpoint"
    );
    // Established packets keep their endpoint without consulting rules.
    let mut n = kube_node(7);
    let first = run(&mut n, syn("10.0.0.2", 30000, "172.30.0.44", 80), 0);
    let ep = first.packet.dst().to_string();
    // An ACK before the SYN-ACK is INVALID: no translation at all.
    let early = run(
        &mut n,
        tcp("10.0.0.2", 30000, "172.30.0.44", 80, TcpFlags::ACK),
        0,
    );
    assert!(matches!(
        early.delivery,
        Delivery::Dropped(DropReason::Rule(_))
    ));
    run(
        &mut n,
        tcp(&ep, 80, "10.0.0.2", 30000, TcpFlags::SYN | TcpFlags::ACK),
        0,
    );
    for _ in 0..5 {
        let again = run(
            &mut n,
            tcp("10.0.0.2", 30000, "172.30.0.44", 80, TcpFlags::ACK),
            1,
        );
        assert_eq!(again.packet.dst(), first.packet.dst());
        assert_eq!(again.nat.dnat, None);
    }
}

#[test]
fn explore_lists_every_endpoint_in_rule_order() {
    let n = kube_node(1);
    let p = syn("10.0.0.2", 40000, "172.30.0.44", 80);
    let ex = n
        .explore(&p, Some("cni0"), Instant::ZERO, Explorer::default())
        .unwrap();
    let ends: Vec<_> = ex.runs.iter().map(|(p, _)| p.nat.dnat).collect();
    assert_eq!(
        ends,
        [
            Some((ip("10.180.0.4"), Some(80))),
            Some((ip("10.180.0.5"), Some(80)))
        ]
    );
    assert!(ex.complete);
    assert!(n.conntrack().is_empty(), "exploring changes nothing");
}

#[test]
fn traces_and_counts_are_deterministic() {
    let go = || {
        let mut n = kube_node(3);
        n.set_tracing(true);
        run(&mut n, syn("10.0.0.2", 40000, "172.30.0.44", 80), 0)
    };
    let a = go();
    assert_eq!(a, go());
    // nat PREROUTING: 1 jump; KUBE-SERVICES: 6 rules to svc4; KUBE-SVC: 2
    // (masq check, 50% split) or 3; KUBE-SEP: 2; then filter FORWARD (4
    // base rules + KUBE-FORWARD's 3 + KUBE-SERVICES' 1 + external 3) and
    // KUBE-POSTROUTING's first rule.
    let nat_pre = a
        .steps
        .iter()
        .find(|s| s.table == TableId::Nat)
        .unwrap()
        .rules_evaluated;
    assert!(
        nat_pre == 1 + 6 + 2 + 2 || nat_pre == 1 + 6 + 3 + 2,
        "{nat_pre}"
    );
    let log = a.trace.kernel_log();
    assert!(
        log.starts_with("TRACE: nat:PREROUTING:rule:1 SRC=10.0.0.2 DST=172.30.0.44"),
        "{log}"
    );
    assert!(log.contains("TRACE: nat:KUBE-SERVICES:rule:6 "), "{log}");
    assert!(
        a.trace
            .to_string()
            .contains("no-match -A KUBE-SERVICES -d 172.30.0.41/32"),
        "{}",
        a.trace
    );
    // Rule counters count matched rules.
    let mut n = kube_node(3);
    run(&mut n, syn("10.0.0.2", 40000, "172.30.0.41", 80), 0);
    let c = n
        .iptables(Family::Ipv4)
        .chain(TableId::Nat, "KUBE-SVC-XPGD46QRK7WJZT7O")
        .unwrap()
        .rule_counters(1)
        .unwrap();
    assert_eq!(c.packets, 1);
}

/// upstream `TestTracePacket`: the static rules, and every flow's
/// expected endpoints (or filter verdict) and masquerade bit.
#[test]
fn upstream_trace_packet_flows_reach_the_same_endpoints() {
    let yaml = fixture("test_trace_packet.yaml");
    let mut n = fake_node(1);
    n.restore(
        Family::Ipv4,
        &quote_comments(&block(&yaml, "restore", 0)),
        RestoreMode::NoFlush,
    )
    .unwrap();
    let flows = yaml.split("\n- name: ").skip(1);
    let mut checked = 0;
    for flow in flows {
        let field = |k: &str| {
            flow.lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{k}: ")))
                .unwrap_or_else(|| panic!("{k}"))
                .trim_matches('\'')
                .to_string()
        };
        let name = flow.lines().next().unwrap();
        let (src, dst) = (field("source"), field("destination"));
        let port: u16 = field("destPort").parse().unwrap();
        let want = field("output");
        let want_masq = field("masq") == "true";
        let p = syn(&src, 40000, &dst, port);
        let input = if n.is_local(ip(&src)) {
            None
        } else {
            Some(iface_for(&src))
        };
        let ex = n
            .explore(&p, input, Instant::ZERO, Explorer::default())
            .unwrap();
        let mut outputs: Vec<String> = Vec::new();
        let mut masq = false;
        for (out, _) in &ex.runs {
            masq |= out.nat.masquerade;
            if let Some((a, port)) = out.nat.dnat {
                outputs.push(format!("{a}:{}", port.unwrap()));
            }
            let verdict = match &out.delivery {
                Delivery::Dropped(DropReason::Rule(_)) => Some("DROP"),
                Delivery::Rejected { .. } => Some("REJECT"),
                _ => out
                    .steps
                    .iter()
                    .any(|s| {
                        s.table == TableId::Filter
                            && s.decision == Decision::Accept
                            && s.by.is_some()
                    })
                    .then_some("ACCEPT"),
            };
            if let Some(v) = verdict {
                outputs.push(v.to_string());
            }
        }
        outputs.dedup();
        assert_eq!(outputs.join(", "), want, "flow `{name}`");
        assert_eq!(masq, want_masq, "flow `{name}` masquerade");
        checked += 1;
    }
    assert_eq!(checked, 7);
}

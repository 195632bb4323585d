//! Checking a step's expectations against what happened.
//!
//! Each expectation becomes one [`Expectation`] saying what was expected and
//! what was seen, so a failure explains itself. Traffic expectations look at
//! the step's own traffic; `openConnectionsAlive` sends one more request on
//! every connection kept open so far; `conntrackEntries` counts the node's
//! table at this instant; `kubeProxyRules` says which mode's rules a node's
//! kernel holds. Per-flow and IPVS-table expectations are in
//! `expect_flows`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{anyhow, Result};
use sim::network::Outcome;

use super::report::{Expectation, TrafficReport};
use super::runner::World;
use super::spec::{ExpectSpec, TrafficSpec};

const DEFAULT_TOLERANCE: f64 = 0.1;

fn expectation(what: &str, ok: bool, expected: String, got: String) -> Expectation {
    Expectation {
        what: what.to_string(),
        ok,
        expected,
        got,
    }
}

pub(super) fn check(
    world: &mut World<'_>,
    e: &ExpectSpec,
    traffic: Option<&TrafficReport>,
    spec: Option<&TrafficSpec>,
) -> Result<Vec<Expectation>> {
    let mut out = Vec::new();
    let need_traffic = |what: &str| anyhow!("expect.{what} needs traffic in the same step");

    if let Some(want) = &e.backends {
        let t = traffic.ok_or_else(|| need_traffic("backends"))?;
        let tolerance = e.tolerance.unwrap_or(DEFAULT_TOLERANCE);
        let total = f64::from(t.attempts.max(1));
        let pods: BTreeSet<&String> = want.keys().chain(t.backends.keys()).collect();
        let mut ok = true;
        let mut got = Vec::new();
        for pod in pods {
            let share = f64::from(t.backends.get(pod).copied().unwrap_or(0)) / total;
            let expected = want.get(pod).copied().unwrap_or(0.0);
            ok &= (share - expected).abs() <= tolerance + 1e-9;
            got.push(format!("{pod} {share:.2}"));
        }
        let expected: Vec<String> = want.iter().map(|(p, f)| format!("{p} {f:.2}")).collect();
        out.push(expectation(
            &format!("backends within ±{tolerance:.2}"),
            ok,
            expected.join(", "),
            got.join(", "),
        ));
    }

    if let Some(true) = e.sticky {
        let t = traffic.ok_or_else(|| need_traffic("sticky"))?;
        let spread: BTreeMap<&String, usize> = t
            .servers_by_source
            .iter()
            .map(|(src, servers)| (src, servers.len()))
            .collect();
        let ok = !spread.is_empty() && spread.values().all(|n| *n == 1);
        let got: Vec<String> = t
            .servers_by_source
            .iter()
            .map(|(src, servers)| {
                format!(
                    "{src} -> {}",
                    servers.keys().cloned().collect::<Vec<_>>().join("+")
                )
            })
            .collect();
        out.push(expectation(
            "sticky (one pod per client)",
            ok,
            "one pod per client".into(),
            got.join("; "),
        ));
    }

    if let Some(who) = &e.source_seen_by_pod {
        let t = traffic.ok_or_else(|| need_traffic("sourceSeenByPod"))?;
        let from = spec.map(|s| s.from.as_str()).unwrap_or("");
        let want = resolve_source(world, who, from)?;
        let seen: Vec<&String> = t.sources_seen.keys().collect();
        let ok = !seen.is_empty() && seen.iter().all(|s| **s == want.to_string());
        out.push(expectation(
            "source address seen by the pods",
            ok,
            format!("{want} ({who})"),
            seen.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }

    for (what, want, got) in [
        ("dropped", e.dropped, traffic.map(|t| t.dropped)),
        ("rejected", e.rejected, traffic.map(|t| t.rejected)),
        ("succeeded", e.succeeded, traffic.map(|t| t.answered)),
    ] {
        if let Some(want) = want {
            let got = got.ok_or_else(|| need_traffic(what))?;
            let attempts = traffic.map(|t| t.attempts).unwrap_or(0);
            out.push(expectation(
                what,
                got == want,
                format!("{want}"),
                format!("{got} of {attempts}"),
            ));
        }
    }

    if let Some(alive) = e.open_connections_alive {
        let now = world.now;
        let open = std::mem::take(&mut world.open);
        let total = open.len();
        let mut answered = 0;
        for o in open {
            let r = world.net.send_again(o.id, now)?;
            if r.outcome == Outcome::Answered && !r.closed {
                answered += 1;
                world.open.push(o);
            }
        }
        let all_alive = total > 0 && answered == total;
        out.push(expectation(
            "open connections still work",
            all_alive == alive,
            if alive {
                format!("{total} of {total} answer")
            } else {
                "none answer".into()
            },
            format!("{answered} of {total} answer"),
        ));
    }

    if let Some(counts) = &e.conntrack_entries {
        for (node, want) in counts {
            world.net.expire(world.now);
            let got = world.net.node(node)?.conntrack().len();
            out.push(expectation(
                &format!("conntrack entries on {node}"),
                got == *want,
                want.to_string(),
                got.to_string(),
            ));
        }
    }
    if let Some(rules) = &e.kube_proxy_rules {
        for (node, want) in rules {
            let got = kube_proxy_rules(world.net.node(node)?);
            out.push(expectation(
                &format!("kube-proxy rules on {node}"),
                got == want,
                want.clone(),
                got.to_string(),
            ));
        }
    }
    out.extend(super::expect_flows::check(world, e, traffic)?);
    Ok(out)
}

/// Which mode's kube-proxy rules a node's kernel holds: `iptables` (the
/// nat table's `KUBE-SERVICES`, which IPVS mode also has), `nftables` (a
/// `kube-proxy` table), both, or `none`.
fn kube_proxy_rules(node: &sim::node::Node) -> &'static str {
    use sim::netfilter::{Family, TableId};
    use sim::nftables::Family as NftFamily;
    let ipt = [Family::Ipv4, Family::Ipv6].into_iter().any(|f| {
        node.iptables(f)
            .chain(TableId::Nat, "KUBE-SERVICES")
            .is_some()
    });
    let nft = [NftFamily::Ip, NftFamily::Ip6]
        .into_iter()
        .any(|f| node.nftables().table(f, "kube-proxy").is_some());
    match (ipt, nft) {
        (true, true) => "iptables and nftables",
        (true, false) => "iptables",
        (false, true) => "nftables",
        (false, false) => "none",
    }
}

/// `client` (the sender), a node or host name, or an IP.
fn resolve_source(world: &World<'_>, who: &str, from: &str) -> Result<IpAddr> {
    let name = if who == "client" { from } else { who };
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(ip);
    }
    let plan = world.plan;
    plan.nodes
        .iter()
        .find(|n| n.name == name)
        .map(|n| n.ip)
        .or_else(|| plan.clients.iter().find(|c| c.name == name).map(|c| c.ip))
        .or_else(|| plan.pods.iter().find(|p| p.name.name == name).map(|p| p.ip))
        .ok_or_else(|| anyhow!("sourceSeenByPod {who:?} is not client, a host name or an IP"))
}

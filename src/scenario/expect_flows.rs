//! Expectations about individual flows and a node's IPVS table: `cycle`
//! (the order pods were reached in, e.g. IPVS `rr` alternating exactly),
//! `keptBackends` (flows replayed from the same source address and port
//! reach the pod they reached before, e.g. `mh` when a backend goes), and
//! `realServers` (a virtual service's real servers and weights on a node:
//! draining at weight 0, deleted after the drain).
//!
//! **Never:** changes the world it looks at.
//!
//! **Errors:** `Err` when an expectation needs traffic in its step or names
//! something the scenario does not have; a failed check is an
//! [`Expectation`] with `ok: false`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{anyhow, Result};
use sim::ipvs::ServiceKey;
use sim::netfilter::Protocol;

use super::report::{Expectation, TrafficReport};
use super::runner::World;
use super::spec::ExpectSpec;

fn server(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("(failed)")
}

pub(super) fn check(
    world: &mut World<'_>,
    e: &ExpectSpec,
    traffic: Option<&TrafficReport>,
) -> Result<Vec<Expectation>> {
    let mut out = Vec::new();
    let need_traffic = |what: &str| anyhow!("expect.{what} needs traffic in the same step");

    if let Some(cycle) = &e.cycle {
        let t = traffic.ok_or_else(|| need_traffic("cycle"))?;
        let ok = !t.flows.is_empty()
            && t.flows
                .iter()
                .enumerate()
                .all(|(i, (_, s))| s.as_deref() == Some(cycle[i % cycle.len()].as_str()));
        let shown = (2 * cycle.len()).min(t.flows.len());
        let mut got: Vec<&str> = t.flows[..shown].iter().map(|(_, s)| server(s)).collect();
        if t.flows.len() > shown {
            got.push("…");
        }
        out.push(Expectation {
            what: "pods reached in a repeating order".into(),
            ok,
            expected: format!("{}, …", cycle.join(", ")),
            got: got.join(", "),
        });
    }

    if let Some(k) = &e.kept_backends {
        let t = traffic.ok_or_else(|| need_traffic("keptBackends"))?;
        let before: BTreeMap<&str, &str> = world
            .labelled_flows
            .get(&k.since)
            .into_iter()
            .flatten()
            .filter_map(|(f, s)| Some((f.as_str(), s.as_deref()?)))
            .collect();
        let compared: Vec<bool> = t
            .flows
            .iter()
            .filter_map(|(f, s)| Some(before.get(f.as_str())? == &server(s)))
            .collect();
        let kept = compared.iter().filter(|k| **k).count();
        let share = kept as f64 / compared.len().max(1) as f64;
        out.push(Expectation {
            what: format!("flows that kept their pod since `{}`", k.since),
            ok: !compared.is_empty() && share + 1e-9 >= k.at_least,
            expected: format!("at least {:.2}", k.at_least),
            got: format!("{share:.2} ({kept} of {})", compared.len()),
        });
    }

    if let Some(r) = &e.real_servers {
        let addr: SocketAddr = r
            .service
            .parse()
            .map_err(|_| anyhow!("expect.realServers.service {:?} is not IP:PORT", r.service))?;
        let protocol = match r
            .protocol
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("UDP") => Protocol::Udp,
            Some("SCTP") => Protocol::Sctp,
            _ => Protocol::Tcp,
        };
        let key = ServiceKey::Addr { protocol, addr };
        let now = world.now;
        world.net.expire(now);
        let node = world.net.node(&r.node)?;
        let got: Option<BTreeMap<String, u32>> = node.ipvs().dests(&key).map(|dests| {
            dests
                .iter()
                .map(|d| {
                    let pod = world.plan.pods.iter().find(|p| p.ip == d.addr.ip());
                    let name = pod.map_or_else(|| d.addr.to_string(), |p| p.name.name.clone());
                    (name, d.weight)
                })
                .collect()
        });
        let show = |m: &BTreeMap<String, u32>| {
            m.iter()
                .map(|(k, v)| format!("{k} weight {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push(Expectation {
            what: format!("IPVS real servers of {key} on {}", r.node),
            ok: got.as_ref() == Some(&r.weights),
            expected: show(&r.weights),
            got: got.map_or_else(|| "no such virtual service".into(), |g| show(&g)),
        });
    }
    Ok(out)
}

//! The timeline's steps checked against the cluster: one action a step,
//! traffic from a known host, pods and nodes the scenario has, durations
//! that parse. It checks only; it must never change a step, and every
//! refusal is a `PlanError` naming `steps[i] (name)`.

use std::collections::BTreeSet;

use proxier::config;

use super::spec;
use super::{Ctx, Node, PlanError, Pod};

/// `steps[3] (name)`, as errors name a step.
pub(super) fn step_place(i: usize, step: &spec::Step) -> String {
    match &step.name {
        Some(n) => format!("steps[{i}] ({n})"),
        None => format!("steps[{i}]"),
    }
}

pub(super) fn check_step(
    ctx: &Ctx<'_>,
    i: usize,
    step: &spec::Step,
    hosts: &BTreeSet<&str>,
    pods: &[Pod],
    nodes: &[Node],
) -> Result<(), PlanError> {
    let place = step_place(i, step);
    let actions = [
        step.traffic.is_some(),
        step.apply.is_some(),
        step.delete.is_some(),
        step.pod.is_some(),
        step.node.is_some(),
        step.restart.is_some(),
        step.advance.is_some(),
        step.close.is_some(),
    ]
    .iter()
    .filter(|a| **a)
    .count();
    if actions > 1 {
        return Err(ctx.err(&place, "a step takes one action (traffic, apply, delete, pod, node, restart, advance or close); split it into several steps"));
    }
    if actions == 0 && step.expect.is_none() {
        return Err(ctx.err(&place, "an empty step; give it an action or an expect"));
    }
    if let Some(t) = &step.traffic {
        if !hosts.contains(t.from.as_str()) {
            return Err(ctx.err(
                &place,
                format!(
                    "traffic.from {:?} is not a node, pod or client of the scenario",
                    t.from
                ),
            ));
        }
    }
    if let Some(p) = &step.pod {
        if !pods
            .iter()
            .any(|o| o.name.name == p.name && o.name.namespace == p.namespace)
        {
            return Err(ctx.err(
                &place,
                format!("pod {}/{} is not in cluster.pods", p.namespace, p.name),
            ));
        }
    }
    for name in [
        step.node.as_ref().map(|n| &n.name),
        step.restart.as_ref().map(|r| &r.kube_proxy),
    ]
    .into_iter()
    .flatten()
    {
        if !nodes.iter().any(|n| &n.name == name) {
            return Err(ctx.err(&place, format!("node {name:?} is not in cluster.nodes")));
        }
    }
    if let Some(a) = &step.advance {
        config::duration::parse(a).map_err(|e| ctx.err(&place, format!("advance: {e}")))?;
    }
    Ok(())
}

//! Step by step: what the simulator's reports and the kernel's replay must
//! agree on (see [`super::compare`] for the two simulator runs, *primary*
//! and *twin*).
//!
//! Must never: call a difference in randomness a disagreement, or hide one.
//! Every difference becomes a [`Disagreement`] that shows both sides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use super::compare::{Comparison, Disagreement};
use super::replay::{KernelReport, KernelStep};
use crate::scenario::modes::step_runs_in;
use crate::scenario::plan::resolve_target;
use crate::scenario::plan::Plan;
use crate::scenario::report::{Report, StepReport, SyncReport, TrafficReport};
use crate::scenario::spec::TrafficSpec;

type Pods = BTreeSet<String>;
/// (from, to) of a reused UDP flow → the pods it reached last.
type FlowHistory = BTreeMap<(String, String), Pods>;

fn set_text<T: fmt::Display>(s: &BTreeSet<T>) -> String {
    let v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
    format!("{{{}}}", v.join(", "))
}

fn outcomes(t: &TrafficReport) -> String {
    let why: Vec<String> = t.drops.iter().map(|(r, n)| format!("{r} x{n}")).collect();
    format!(
        "answered {}, dropped {}, rejected {}, other {} of {} {}",
        t.answered,
        t.dropped,
        t.rejected,
        t.other,
        t.attempts,
        why.join("; ")
    )
}

/// What a client's socket can tell apart: answered, dropped, rejected.
/// The simulator also counts `other`, an answer from an address the client
/// did not talk to (e.g. a pod's own address, when IPVS mode sends an
/// external client's packet for a NodePort with `externalTrafficPolicy:
/// Local` but no local endpoint to another node's pod, unmasqueraded). A
/// real connected socket never sees such an answer — its kernel discards
/// the datagram, or resets the stray SYN-ACK — and times out, so `other`
/// counts as dropped here. (Both sides' raw counts are still printed.)
fn counts(t: &TrafficReport) -> (u32, u32, u32) {
    (t.answered, t.dropped + t.other, t.rejected)
}

fn kinds(t: &TrafficReport) -> [bool; 3] {
    let (a, d, r) = counts(t);
    [a > 0, d > 0, r > 0]
}

fn sticky(t: &TrafficReport) -> bool {
    !t.servers_by_source.is_empty() && t.servers_by_source.values().all(|s| s.len() == 1)
}

/// Collects one step's disagreements.
struct Step<'a> {
    number: usize,
    title: &'a str,
    found: Vec<Disagreement>,
}

impl Step<'_> {
    fn differ(&mut self, what: &str, simulator: String, kernel: String) {
        self.found.push(Disagreement {
            step: self.number,
            title: self.title.to_string(),
            what: what.to_string(),
            simulator,
            kernel,
        });
    }
}

/// Compares the two sides' reports (the kernel's may be shorter).
pub fn compare(
    plan: &Plan,
    sim: &Report,
    twin: &Report,
    kernel: &KernelReport,
    affinity: &BTreeSet<SocketAddr>,
) -> Comparison {
    let mode = proxier::config::Mode::parse(&sim.mode).unwrap_or(proxier::config::Mode::Iptables);
    let mut out = Comparison {
        scenario: plan.name.clone(),
        mode: sim.mode.clone(),
        steps_total: plan.steps.iter().filter(|s| step_runs_in(s, mode)).count(),
        steps_compared: kernel.steps.len(),
        probes: 0,
        connections: 0,
        stopped: kernel
            .stopped
            .as_ref()
            .map(|(i, why)| format!("before step {}: {why}", i + 1)),
        disagreements: Vec::new(),
        notes: Vec::new(),
        coverage: BTreeMap::new(),
    };
    let (mut last_sim, mut last_kernel) = (FlowHistory::new(), FlowHistory::new());
    for k in &kernel.steps {
        let by_number = |r: &'_ Report| r.steps.iter().find(|s| s.step == k.step).cloned();
        let (Some(s), Some(w)) = (by_number(sim), by_number(twin)) else {
            out.disagreements.push(Disagreement {
                step: k.step,
                title: String::new(),
                what: "the step ran".into(),
                simulator: "no".into(),
                kernel: "yes".into(),
            });
            continue;
        };
        let mut step = Step {
            number: k.step,
            title: &s.title,
            found: Vec::new(),
        };
        syncs(&mut step, &s.syncs, &k.syncs);
        for (what, got) in &k.checks {
            match s.expectations.iter().find(|e| &e.what == what) {
                Some(e) if &e.got == got => {}
                Some(e) => step.differ(what, e.got.clone(), got.clone()),
                None => step.differ(what, "(not checked)".into(), got.clone()),
            }
        }
        let spec = plan.steps[k.step - 1].traffic.as_ref();
        if let (Some(spec), Some(_), Some(_), Some(_)) = (spec, &s.traffic, &w.traffic, &k.traffic)
        {
            out.probes += 1;
            let kt = k.traffic.as_ref().expect("checked");
            out.connections += kt.attempts + k.redrawn + k.extra.as_ref().map_or(0, |e| e.attempts);
            let target = resolve_target(plan, &spec.to).ok();
            let with_affinity = target.is_some_and(|t| affinity.contains(&t));
            coverage(&mut out, kt, with_affinity);
            let flows = (&mut last_sim, &mut last_kernel);
            let traffic = Traffic {
                plan,
                spec,
                target,
                with_affinity,
            };
            if let Some(note) = traffic.compare(&mut step, (&s, &w, k), flows) {
                out.notes.push(note);
            }
        }
        out.disagreements.extend(step.found);
    }
    out
}

fn coverage(out: &mut Comparison, kt: &TrafficReport, with_affinity: bool) {
    let clients: BTreeSet<&String> = kt.servers_by_source.keys().collect();
    let rewritten = kt.sources_seen.keys().any(|s| !clients.contains(s));
    for (what, yes) in [
        ("answered", kt.answered > 0),
        ("dropped", kt.dropped > 0),
        ("rejected", kt.rejected > 0),
        ("source rewritten", kt.answered > 0 && rewritten),
        ("source kept", kt.answered > 0 && !rewritten),
        ("affinity", with_affinity),
        ("udp", kt.protocol == "udp"),
    ] {
        if yes {
            *out.coverage.entry(what).or_default() += 1;
        }
    }
}

/// Each kube-proxy synced at the same virtual instants, with the same kind
/// and rule count.
fn syncs(step: &mut Step<'_>, sim: &[SyncReport], kernel: &[SyncReport]) {
    let show = |v: &[SyncReport]| -> Vec<String> {
        v.iter()
            .map(|r| {
                let kind = if r.kind.starts_with("failed") {
                    "failed"
                } else {
                    &r.kind
                };
                format!("{} at {}: {kind} ({} rules)", r.node, r.at, r.rules_written)
            })
            .collect()
    };
    let (s, k) = (show(sim), show(kernel));
    if s != k {
        let failures: Vec<&str> = kernel
            .iter()
            .filter(|r| r.kind.starts_with("failed"))
            .map(|r| r.kind.as_str())
            .collect();
        step.differ(
            "syncs",
            s.join("; "),
            format!("{} {}", k.join("; "), failures.join("; ")),
        );
    }
}

/// One traffic step.
struct Traffic<'a> {
    plan: &'a Plan,
    spec: &'a TrafficSpec,
    target: Option<SocketAddr>,
    with_affinity: bool,
}

impl Traffic<'_> {
    /// Compares the step (`(primary, twin, kernel)`); returns a note when a
    /// difference was put down to randomness.
    fn compare(
        &self,
        step: &mut Step<'_>,
        (s, w, k): (&StepReport, &StepReport, &KernelStep),
        (last_sim, last_kernel): (&mut FlowHistory, &mut FlowHistory),
    ) -> Option<String> {
        let (st, wt) = (s.traffic.as_ref()?, w.traffic.as_ref()?);
        let kt = k.traffic.as_ref()?;
        let note = self.outcomes(step, st, wt, kt);

        let (mut kb, mut ksrc) = (keys(&kt.backends), keys(&kt.sources_seen));
        if let Some(e) = &k.extra {
            kb.extend(e.backends.keys().cloned());
            ksrc.extend(e.sources_seen.keys().cloned());
        }
        let (wb, wsrc) = (keys(&wt.backends), keys(&wt.sources_seen));
        if self.spec.same_source_port {
            let key = (self.spec.from.clone(), self.spec.to.clone());
            let (sb, ssrc) = (keys(&st.backends), keys(&st.sources_seen));
            let allowed: Pods = wb.union(&sb).cloned().collect();
            let before = (last_sim.get(&key), last_kernel.get(&key));
            if let Some((what, a, b)) = reused_flow(
                self.with_affinity,
                before,
                (&sb, &kb),
                (&ssrc, &ksrc),
                &allowed,
            ) {
                step.differ(what, a, b);
            }
            for (last, now) in [(last_sim, sb), (last_kernel, kb)] {
                if now.is_empty() {
                    // Failed: both sides open a new flow next time.
                    last.remove(&key);
                } else {
                    last.insert(key.clone(), now);
                }
            }
        } else if self.with_affinity {
            if !kb.is_subset(&wb) {
                let what = "backends (affinity: within the reachable set)";
                step.differ(what, set_text(&wb), set_text(&kb));
            }
            if !ksrc.is_subset(&wsrc) {
                let what = "sources seen by the pods (affinity: within the reachable set)";
                step.differ(what, set_text(&wsrc), set_text(&ksrc));
            }
            if !self.via_balancer()
                && st.answered > 0
                && kt.answered > 0
                && sticky(st) != sticky(kt)
            {
                let show = |t: &TrafficReport| format!("{:?}", t.servers_by_source);
                step.differ("stickiness (one pod per client)", show(st), show(kt));
            }
        } else {
            if kb != wb {
                step.differ("reachable backends", set_text(&wb), set_text(&kb));
            }
            if ksrc != wsrc {
                step.differ("sources seen by the pods", set_text(&wsrc), set_text(&ksrc));
            }
        }
        note
    }

    /// An outside client through a balancer that spreads it over several
    /// nodes: each node's affinity table picks on its own.
    fn via_balancer(&self) -> bool {
        let p = self.plan;
        p.clients.iter().any(|c| c.name == self.spec.from)
            && p.nodes.len() > 1
            && p.load_balancers
                .iter()
                .any(|l| self.target.is_some_and(|t| t.ip() == l.ip))
    }

    /// Answered / dropped / rejected: equal to the primary's, or, when the
    /// twin shows mixed outcomes, only kinds the twin shows.
    fn outcomes(
        &self,
        step: &mut Step<'_>,
        st: &TrafficReport,
        wt: &TrafficReport,
        kt: &TrafficReport,
    ) -> Option<String> {
        // A new connection whose reply tuple collides with an old entry's
        // (two Services DNATing one client port to one pod) is dropped by
        // both kernels; whether it happens depends on the client's random
        // source port, so it is noted, not a disagreement.
        let clashes: u32 = st
            .drops
            .iter()
            .filter(|(why, _)| why.ends_with("no free NAT tuple"))
            .map(|(_, n)| *n)
            .sum();
        let moved = st.dropped.saturating_sub(kt.dropped);
        let (a, d, r) = counts(st);
        if moved > 0 && moved <= clashes && (a + moved, d - moved, r) == counts(kt) {
            return Some(format!(
                "step {}: the simulator's client drew {moved} source port(s) whose NAT tuple was taken; the kernel's did not",
                step.number
            ));
        }
        let mixed = kinds(wt).iter().filter(|k| **k).count() > 1;
        if !mixed && counts(st) != counts(kt) {
            step.differ("outcomes", outcomes(st), outcomes(kt));
        } else if mixed && kinds(kt).iter().zip(kinds(wt)).any(|(k, w)| *k && !w) {
            step.differ("kinds of outcome (mixed)", outcomes(wt), outcomes(kt));
        }
        None
    }
}

fn keys(m: &BTreeMap<String, u32>) -> Pods {
    m.keys().cloned().collect()
}

type Sets<'a> = (&'a Pods, &'a Pods);

/// A reused UDP flow (`sameSourcePort`) on both sides: `pods` and
/// `sources` are (simulator, kernel) for this step, `before` the pods each
/// side's flow reached last time, `allowed` what a new flow can reach.
/// Returns what differs, with both sides.
fn reused_flow(
    with_affinity: bool,
    before: (Option<&Pods>, Option<&Pods>),
    (sb, kb): Sets<'_>,
    (ssrc, ksrc): Sets<'_>,
    allowed: &Pods,
) -> Option<(&'static str, String, String)> {
    if with_affinity {
        // Affinity chose each side's pod at random, earlier.
        return (!kb.is_subset(allowed)).then(|| {
            let what = "the pods reused UDP flows reached (affinity)";
            (what, set_text(allowed), set_text(kb))
        });
    }
    match before {
        (Some(ps), Some(pk)) if !sb.is_empty() && !kb.is_empty() => {
            // An answered flow stays on its pod, or moves (its stale entry
            // cleaned up) to a pod new flows reach — alike on both sides.
            let (sim_moved, kernel_moved) = (sb != ps, kb != pk);
            let show = |p: &Pods, n: &Pods| format!("{} then {}", set_text(p), set_text(n));
            if sim_moved != kernel_moved {
                let what = "a reused UDP flow (stayed on its pod or moved)";
                Some((what, show(ps, sb), show(pk, kb)))
            } else if kernel_moved && !kb.is_subset(allowed) {
                let what = "the pod a reused UDP flow moved to";
                Some((what, set_text(allowed), set_text(kb)))
            } else if !kernel_moved && ssrc != ksrc {
                let what = "sources seen by the pod of a reused UDP flow";
                Some((what, set_text(ssrc), set_text(ksrc)))
            } else {
                None
            }
        }
        // A new flow, steered to the simulator's pod (see `replay`).
        _ if sb.len() == 1 && kb != sb => {
            let what = "the pod a new reused UDP flow reached";
            Some((what, set_text(sb), set_text(kb)))
        }
        _ if sb.len() == 1 && ssrc != ksrc => {
            let what = "sources seen by the pod of a reused UDP flow";
            Some((what, set_text(ssrc), set_text(ksrc)))
        }
        _ => (!kb.is_subset(allowed)).then(|| {
            let what = "the pods reused UDP flows reached";
            (what, set_text(allowed), set_text(kb))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(names: &[&str]) -> Pods {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_reused_flow_must_stay_or_move_alike() {
        let (a, b, c) = (pods(&["a"]), pods(&["b"]), pods(&["c"]));
        let all = pods(&["a", "b", "c"]);
        let src = pods(&["10.244.1.3"]);
        let check = |before: (Option<&Pods>, Option<&Pods>), now: Sets<'_>| {
            reused_flow(false, before, now, (&src, &src), &all).map(|(what, _, _)| what)
        };
        // A new flow: steered, so the same pod.
        assert_eq!(check((None, None), (&a, &a)), None);
        assert!(check((None, None), (&a, &b)).is_some());
        // Both stayed; both moved (to different pods: random); one moved.
        assert_eq!(check((Some(&a), Some(&a)), (&a, &a)), None);
        assert_eq!(check((Some(&a), Some(&a)), (&b, &c)), None);
        assert_eq!(
            check((Some(&a), Some(&a)), (&b, &a)),
            Some("a reused UDP flow (stayed on its pod or moved)")
        );
        // Moved somewhere new flows cannot go.
        let (x, some) = (pods(&["x"]), pods(&["a", "b"]));
        let moved = reused_flow(false, (Some(&a), Some(&a)), (&b, &x), (&src, &src), &some);
        assert_eq!(
            moved.map(|m| m.0),
            Some("the pod a reused UDP flow moved to")
        );
        // Under affinity only reachability counts.
        assert_eq!(
            reused_flow(true, (None, None), (&a, &b), (&src, &src), &all),
            None
        );
    }

    #[test]
    fn outcome_counts_and_kinds() {
        let t = |a, d, r| TrafficReport {
            answered: a,
            dropped: d,
            rejected: r,
            attempts: a + d + r,
            ..TrafficReport::default()
        };
        assert_eq!(counts(&t(3, 1, 0)), (3, 1, 0));
        assert_eq!(kinds(&t(3, 0, 2)), [true, false, true]);
        // An answer from the wrong address is, to a socket, no answer.
        let misrouted = TrafficReport {
            other: 2,
            ..t(1, 1, 0)
        };
        assert_eq!(counts(&misrouted), (1, 3, 0));
        assert_eq!(kinds(&misrouted), [true, true, false]);
        assert!(outcomes(&t(1, 0, 0)).starts_with("answered 1, dropped 0"));
    }
}

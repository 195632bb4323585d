//! One differential case: a planned scenario on the simulator and on a
//! namespace cluster, compared step by step ([`super::verdict`] says what
//! must agree).
//!
//! Two simulator runs feed the comparison: the scenario itself (the
//! *primary*), and a *twin* with four times (and at least 64) the
//! connections per traffic step, fresh UDP flows (kept open, so their ports
//! are not drawn again) instead of a reused socket, no session affinity and
//! no expectations. The twin's backend and source sets are what each step
//! can reach: affinity and flow reuse narrow which backend a client gets,
//! never which are reachable, and more draws make the seeded run show every
//! one. The primary gives the outcome counts, stickiness, syncs and state
//! checks. The kernel side replays the same plan ([`super::replay`]), with
//! extra connections where kernel randomness needs them to show the twin's
//! sets, and its new reused UDP flows steered to the primary's pod.
//!
//! - **outcomes** — answered / dropped / rejected counts equal the
//!   primary's; when the twin itself shows mixed outcomes, only kinds the
//!   twin shows. One random event is noted instead: the simulator's client
//!   drawing a source port whose NAT reply tuple an older entry holds;
//! - **reachable backends** and **sources seen by the pods** (masquerade or
//!   not) — equal to the twin's; under affinity within them, and each
//!   client sticks to one pod like the primary (unless a balancer spreads
//!   it over several nodes, whose affinity tables choose independently);
//! - **reused UDP flows** (`sameSourcePort`) — each side's flow stays on
//!   its pod or moves (its stale entry cleaned up) to a reachable pod,
//!   alike;
//! - **syncs** — the same virtual instants, kinds and rule counts;
//! - **state checks** — `openConnectionsAlive` (connections surviving a
//!   restart) and `conntrackEntries` read the same.
//!
//! Must never: call a difference in randomness a disagreement (sets, not
//! proportions), or hide one (every difference is a [`Disagreement`] that
//! prints both sides).
//!
//! Error contract: [`differential`] returns [`ClusterError`] when either
//! side cannot run; disagreements are data in the [`Comparison`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proxier::config::{duration, Mode};
use proxier::k8s::{self, ClusterIp, Service, SessionAffinity};
use proxier::kernel::IptablesVariant;

use super::replay::{replay, ReplayOptions, Wanted};
use super::topology::{self, Topology};
use super::verdict;
use super::ClusterError;
use crate::scenario::modes::step_runs_in;
use crate::scenario::plan::resolve_target;
use crate::scenario::plan::Plan;
use crate::scenario::report::{Report, TrafficReport};

/// How to run a differential case.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    pub mode: Mode,
    pub variant: IptablesVariant,
    /// The longest `advance` slept for real; a longer one ends the case.
    pub max_advance: Duration,
    /// The most real sleeping per case.
    pub max_sleep: Duration,
    /// Extra connections per step to find every reachable backend.
    pub max_extra: u32,
}

impl Default for DiffOptions {
    fn default() -> Self {
        DiffOptions {
            mode: Mode::Iptables,
            variant: IptablesVariant::Nft,
            max_advance: Duration::from_secs(8),
            max_sleep: Duration::from_secs(15),
            max_extra: 96,
        }
    }
}

/// One thing the two sides saw differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// 1-based step number.
    pub step: usize,
    pub title: String,
    pub what: String,
    pub simulator: String,
    pub kernel: String,
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} ({}): {}\n      simulator: {}\n      kernel:    {}",
            self.step, self.title, self.what, self.simulator, self.kernel
        )
    }
}

/// The result of one scenario on both sides.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub scenario: String,
    pub mode: String,
    pub steps_total: usize,
    pub steps_compared: usize,
    /// Traffic steps compared.
    pub probes: usize,
    /// Real connections and datagrams the kernel side made.
    pub connections: u32,
    /// Why the kernel replay stopped early, if it did.
    pub stopped: Option<String>,
    pub disagreements: Vec<Disagreement>,
    /// Differences explained by randomness on one side (said why).
    pub notes: Vec<String>,
    /// How many compared probes showed each thing (`answered`, `dropped`,
    /// `rejected`, `source rewritten` (masquerade or a proxying balancer),
    /// `source kept`, `affinity`, `udp`): what the case exercised.
    pub coverage: BTreeMap<&'static str, usize>,
}

impl Comparison {
    /// One line: what was compared and how it went.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} ({}): {}/{} steps, {} probes, {} connections, {} disagreements",
            self.scenario,
            self.mode,
            self.steps_compared,
            self.steps_total,
            self.probes,
            self.connections,
            self.disagreements.len()
        );
        if !self.notes.is_empty() {
            s.push_str(&format!(
                " ({} noted: {})",
                self.notes.len(),
                self.notes.join("; ")
            ));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!("; stopped {why}"));
        }
        s
    }
}

/// Why the harness cannot run this plan in this mode, if it cannot (with
/// the default real-time budget).
pub fn unsupported(plan: &Plan, mode: Mode) -> Option<String> {
    unsupported_within(
        plan,
        &DiffOptions {
            mode,
            ..DiffOptions::default()
        },
    )
}

/// The number of steps the kernel replay reaches within `opts`' real-time
/// budget: it stops before the first `advance` longer than `max_advance`
/// or past `max_sleep` in all (what [`super::replay`] does).
pub fn steps_reached(plan: &Plan, opts: &DiffOptions) -> usize {
    let mut slept = Duration::ZERO;
    for (i, s) in plan.steps.iter().enumerate() {
        if !step_runs_in(s, opts.mode) {
            continue;
        }
        let Some(d) = s.advance.as_deref().and_then(|a| duration::parse(a).ok()) else {
            continue;
        };
        if d > opts.max_advance || slept + d > opts.max_sleep {
            return i;
        }
        slept += d;
    }
    plan.steps.len()
}

/// Why the harness cannot run this plan in `opts.mode`, if it cannot. IPVS
/// mode needs a kernel with IPVS (its generic-netlink family, looked up
/// now); only the steps the replay reaches within the real-time budget
/// ([`steps_reached`]) are checked.
pub fn unsupported_within(plan: &Plan, opts: &DiffOptions) -> Option<String> {
    let mode = opts.mode;
    if mode == Mode::Ipvs {
        let probe = proxier::kernel::KernelIpvs::new(None, Default::default()).probe();
        if let Err(e) = probe {
            return Some(format!(
                "IPVS mode: this kernel has no IPVS ({e}); it needs the VM harness"
            ));
        }
    }
    if let Some(why) = topology::unsupported(plan) {
        return Some(why);
    }
    let reached = steps_reached(plan, opts);
    plan.steps[..reached].iter().enumerate().find_map(|(i, s)| {
        let t = s.traffic.as_ref().filter(|_| step_runs_in(s, mode))?;
        if t.source_port.is_some() {
            return Some(format!(
                "steps[{i}]: traffic.sourcePort (fixed client ports)"
            ));
        }
        let proto = t.protocol.as_deref().unwrap_or("TCP");
        if !matches!(proto, "TCP" | "tcp" | "UDP" | "udp") {
            return Some(format!("steps[{i}]: {proto} traffic"));
        }
        resolve_target(plan, &t.to)
            .err()
            .map(|e| format!("steps[{i}]: {e}"))
    })
}

/// The traffic report of step number `step` (1-based), if it ran and sent.
fn traffic_of(report: &Report, step: usize) -> Option<&TrafficReport> {
    report
        .steps
        .iter()
        .find(|s| s.step == step)
        .and_then(|s| s.traffic.as_ref())
}

fn run_sim(plan: &Plan, mode: Mode) -> Result<Report, ClusterError> {
    crate::scenario::run(plan, None, Some(mode))
        .map_err(|e| ClusterError::Simulator(format!("{e:#}")))?
        .pop()
        .ok_or_else(|| ClusterError::Simulator("no report".into()))
}

/// The scenario with at least 4× (and 64) the connections per traffic
/// step, fresh flows
/// instead of a reused UDP socket (kept open, so no later flow reuses
/// their ports), no session affinity and no expectations: what each step
/// can reach.
pub fn twin(plan: &Plan) -> Plan {
    let mut t = plan.clone();
    for s in &mut t.services {
        s.session_affinity = SessionAffinity::None;
    }
    for step in &mut t.steps {
        step.expect = None;
        if let Some(tr) = &mut step.traffic {
            // At least 64 draws: a backend of five is missed with odds of
            // about 3 in a million.
            let n = tr.connections.unwrap_or(1);
            tr.connections = Some(n * 4.max(64_u32.div_ceil(n)));
            // One reused flow reaches one backend; fresh flows show them all.
            tr.same_source_port = false;
            // Kept open, a UDP flow's port is never drawn again, so a later
            // "new" flow cannot ride its conntrack entry to a pod that new
            // flows no longer reach.
            if matches!(tr.protocol.as_deref(), Some("UDP" | "udp")) {
                tr.keep_open = true;
            }
        }
        for v in step.apply.iter_mut().flatten() {
            if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
                spec.remove("sessionAffinity");
                spec.remove("sessionAffinityConfig");
            }
        }
    }
    t
}

/// Every `ip:port` that leads to a Service with ClientIP affinity.
pub fn affinity_targets(plan: &Plan) -> BTreeSet<SocketAddr> {
    let mut services: Vec<Service> = plan.services.clone();
    for v in plan.steps.iter().filter_map(|s| s.apply.as_ref()).flatten() {
        let text = serde_yaml::to_string(v).expect("a YAML value serialises");
        if let Ok(m) = k8s::load_str("apply", &text) {
            services.extend(m.services);
        }
    }
    let mut out = BTreeSet::new();
    for s in services
        .iter()
        .filter(|s| s.session_affinity != SessionAffinity::None)
    {
        for p in &s.ports {
            let mut ips: Vec<IpAddr> = match &s.cluster_ip {
                ClusterIp::Ips(ips) => ips.clone(),
                _ => Vec::new(),
            };
            ips.extend(s.external_ips.iter().copied());
            ips.extend(s.load_balancer_ingress.iter().filter_map(|i| i.ip));
            out.extend(ips.into_iter().map(|ip| SocketAddr::new(ip, p.port)));
            if let Some(np) = p.node_port {
                out.extend(plan.nodes.iter().map(|n| SocketAddr::new(n.ip, np)));
            }
        }
    }
    out
}

/// Runs `plan` on the simulator and on a namespace cluster, and compares.
pub fn differential(plan: &Plan, opts: &DiffOptions) -> Result<Comparison, ClusterError> {
    differential_pair(plan, plan, opts)
}

/// Like [`differential`], with a different plan for the kernel side (the
/// same hosts and steps, other objects or configuration): how the harness
/// proves to itself that it notices a kernel that behaves differently.
pub fn differential_pair(
    plan: &Plan,
    kernel_plan: &Plan,
    opts: &DiffOptions,
) -> Result<Comparison, ClusterError> {
    if let Some(why) = unsupported_within(plan, opts) {
        return Err(ClusterError::Unsupported(why));
    }
    let sim = run_sim(plan, opts.mode)?;
    let twin = run_sim(&twin(plan), opts.mode)?;
    let affinity = affinity_targets(plan);
    let counts_conntrack = plan.steps.iter().any(|s| {
        s.expect
            .as_ref()
            .is_some_and(|e| e.conntrack_entries.is_some())
    });
    let mut wanted = BTreeMap::new();
    for (i, step) in plan.steps.iter().enumerate() {
        let Some(t) = &step.traffic else { continue };
        // Steps past the replay's reach are not checked (nor compared).
        let Ok(target) = resolve_target(plan, &t.to) else {
            continue;
        };
        let Some(reach) = traffic_of(&twin, i + 1) else {
            continue;
        };
        let reach = Wanted {
            backends: reach.backends.keys().cloned().collect(),
            sources: reach.sources_seen.keys().cloned().collect(),
        };
        if !t.same_source_port
            && !counts_conntrack
            && !affinity.contains(&target)
            && !reach.backends.is_empty()
        {
            wanted.insert(i, reach);
        }
    }
    let steer = plan
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| {
            // A Service with affinity sends a client's new flows to its
            // sticky pod: redrawing cannot change it.
            s.traffic.as_ref().is_some_and(|t| {
                t.same_source_port
                    && resolve_target(plan, &t.to).is_ok_and(|to| !affinity.contains(&to))
            })
        })
        .filter_map(|(i, _)| {
            let pods = &traffic_of(&sim, i + 1)?.backends;
            (pods.len() == 1).then(|| (i, pods.keys().next().cloned().unwrap_or_default()))
        })
        .collect();
    let mut topo = Topology::build(kernel_plan)?;
    let kernel = replay(
        kernel_plan,
        &mut topo,
        &ReplayOptions {
            mode: opts.mode,
            variant: opts.variant,
            max_advance: opts.max_advance,
            max_sleep: opts.max_sleep,
            wanted,
            max_extra: opts.max_extra,
            steer,
        },
    )?;
    // Every namespace of the case must be gone once the topology is.
    let names = topo.namespaces();
    drop(topo);
    let left: Vec<&String> = names
        .iter()
        .filter(|n| proxier::kernel::netns::netns_path(n).exists())
        .collect();
    if !left.is_empty() {
        return Err(ClusterError::Kernel(
            proxier::dataplane::DataplaneError::new(
                "ip netns delete",
                format!("namespaces left behind: {left:?}"),
            ),
        ));
    }
    Ok(verdict::compare(plan, &sim, &twin, &kernel, &affinity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Plan {
        let path = format!("{}/scenarios/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        crate::scenario::load(&path, &text).unwrap()
    }

    #[test]
    fn the_twin_has_no_affinity_and_enough_fresh_flows() {
        let plan = shipped("affinity");
        let t = twin(&plan);
        assert!(t
            .services
            .iter()
            .all(|s| s.session_affinity == SessionAffinity::None));
        for (a, b) in plan.steps.iter().zip(&t.steps) {
            assert!(b.expect.is_none());
            if let (Some(a), Some(b)) = (&a.traffic, &b.traffic) {
                let (n, m) = (a.connections.unwrap_or(1), b.connections.unwrap());
                assert!(m >= 4 * n && m >= 64, "{n} -> {m}");
            }
        }
        let udp = twin(&shipped("udp-stale"));
        let t = udp.steps[0].traffic.as_ref().unwrap();
        assert!(!t.same_source_port && t.keep_open);
    }

    #[test]
    fn affinity_targets_are_every_way_into_the_service() {
        let targets = affinity_targets(&shipped("affinity"));
        assert!(targets.contains(&"10.96.0.60:80".parse().unwrap()));
        assert!(affinity_targets(&shipped("clusterip")).is_empty());
    }

    #[test]
    fn what_the_harness_cannot_run_says_why() {
        let plan = shipped("clusterip");
        assert_eq!(unsupported(&plan, Mode::Iptables), None);
        // IPVS is looked up at run time: refused only where it is missing.
        let has_ipvs = proxier::kernel::KernelIpvs::new(None, Default::default())
            .probe()
            .is_ok();
        match unsupported(&plan, Mode::Ipvs) {
            Some(why) => assert!(!has_ipvs && why.contains("no IPVS"), "{why}"),
            None => assert!(has_ipvs),
        }
        // Fixed client ports are refused only where the replay gets to them.
        let schedulers = shipped("ipvs-schedulers");
        let reached = steps_reached(&schedulers, &DiffOptions::default());
        assert!(reached < schedulers.steps.len());
        assert!(schedulers.steps[reached..]
            .iter()
            .any(|s| s.traffic.as_ref().is_some_and(|t| t.source_port.is_some())));
        let opts = DiffOptions {
            mode: Mode::Iptables,
            ..DiffOptions::default()
        };
        assert_eq!(unsupported_within(&schedulers, &opts), None);
        let patient = DiffOptions {
            max_advance: Duration::from_secs(600),
            max_sleep: Duration::from_secs(3600),
            ..opts
        };
        assert!(unsupported_within(&schedulers, &patient)
            .unwrap()
            .contains("sourcePort"));
    }
}

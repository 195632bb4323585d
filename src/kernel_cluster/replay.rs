//! A planned scenario's timeline on a [`Topology`]: one kube-proxy per node
//! namespace, the real kernel underneath, real traffic.
//!
//! It mirrors `scenario::runner` step for step so the two can be compared:
//! the same [`ApiServer`] turns pod and object changes into watch events,
//! the same [`KubeProxy`] host (bounded-frequency runner, restart = a new
//! process, the kernel keeps its rules) runs on the same **virtual** clock,
//! so syncs happen at the same instants as in the simulator. An `advance`
//! also sleeps for real, so the kernel's own timers (conntrack, affinity)
//! age at least as much; an advance that would take longer than the
//! options allow ends the replay there (the remaining steps are reported
//! as skipped, with the reason).
//!
//! Traffic steps are played by [`super::probe`] and recorded as the
//! simulator's [`TrafficReport`].
//!
//! Must never: read a wall clock into the proxier (it gets the virtual
//! time), or leave the topology's namespaces.
//!
//! Error contract: a [`ClusterError`] when kube-proxy cannot start, a step
//! names an unknown host, or a namespace cannot be entered.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proxier::clock::Timestamp;
use proxier::config::{duration, Config, Mode};
use proxier::dataplane::Kernel;
use proxier::k8s::{self, IpFamily, NamespacedName, Protocol};
use proxier::kernel::{HostKernel, IptablesVariant, KernelOptions, RestoreStrategy};

use super::probe::{Clients, Probe};
use super::topology::Topology;
use super::ClusterError;
use crate::scenario::apiserver::{ApiServer, Event};
use crate::scenario::kube_proxy::KubeProxy;
use crate::scenario::modes::step_runs_in;
use crate::scenario::plan::resolve_target;
use crate::scenario::plan::Plan;
use crate::scenario::report::{SyncReport, TrafficReport};
use crate::scenario::spec::Step;

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub mode: Mode,
    pub variant: IptablesVariant,
    /// The longest single `advance` slept for real.
    pub max_advance: Duration,
    /// The most real sleeping a whole replay may do.
    pub max_sleep: Duration,
    /// Per step index: what to keep sampling for (new flows only, not
    /// `sameSourcePort`; the extra ones are never kept open).
    pub wanted: BTreeMap<usize, Wanted>,
    /// At most this many extra connections per step.
    pub max_extra: u32,
    /// Per step index: the pod a new reused UDP flow (`sameSourcePort`)
    /// must reach, as the simulator's did; new flows are redrawn (up to
    /// [`MAX_REDRAWS`](super::probe::MAX_REDRAWS) times) until one does.
    pub steer: BTreeMap<usize, String>,
}

/// Backends and sources seen by the pods that a step should show.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    pub backends: BTreeSet<String>,
    pub sources: BTreeSet<String>,
}

/// What one step did on the kernel.
#[derive(Debug, Clone, Default)]
pub struct KernelStep {
    /// 1-based step number in the plan (steps of other modes are skipped,
    /// as the simulator's report skips them).
    pub step: usize,
    pub traffic: Option<TrafficReport>,
    /// Extra connections sent for reachability.
    pub extra: Option<TrafficReport>,
    /// New reused UDP flows thrown away because they reached another pod
    /// than the simulator's did.
    pub redrawn: u32,
    pub syncs: Vec<SyncReport>,
    /// Expectations that observe state: (the simulator's `what`, got).
    pub checks: Vec<(String, String)>,
}

/// The whole replay.
#[derive(Debug, Clone, Default)]
pub struct KernelReport {
    pub steps: Vec<KernelStep>,
    /// The step (0-based) the replay stopped before, and why.
    pub stopped: Option<(usize, String)>,
    pub slept: Duration,
}

struct Replay<'a> {
    plan: &'a Plan,
    topo: &'a mut Topology,
    opts: &'a ReplayOptions,
    now: Duration,
    api: ApiServer,
    proxies: BTreeMap<String, (KubeProxy, HostKernel)>,
    /// Each node's kube-proxy configuration (a restart may change it).
    configs: BTreeMap<String, Config>,
    clients: Clients,
    marks: BTreeMap<String, usize>,
}

fn ts(d: Duration) -> Timestamp {
    Timestamp(d)
}

/// Replays `plan` on `topo`.
pub fn replay(
    plan: &Plan,
    topo: &mut Topology,
    opts: &ReplayOptions,
) -> Result<KernelReport, ClusterError> {
    let mut r = Replay {
        plan,
        topo,
        opts,
        now: Duration::ZERO,
        api: ApiServer::new(plan),
        proxies: BTreeMap::new(),
        configs: BTreeMap::new(),
        clients: Clients::default(),
        marks: BTreeMap::new(),
    };
    let config = plan
        .config_for(opts.mode, None)
        .map_err(|message| ClusterError::Proxy {
            node: "(every node)".into(),
            message,
        })?;
    for n in &plan.nodes {
        r.configs.insert(n.name.clone(), config.clone());
        r.start_kube_proxy(&n.name)?;
    }
    let mut report = KernelReport::default();
    for (i, step) in plan.steps.iter().enumerate() {
        if !step_runs_in(step, opts.mode) {
            continue;
        }
        if let Some(a) = &step.advance {
            let d = duration::parse(a).map_err(|message| ClusterError::Step {
                step: i + 1,
                message,
            })?;
            if d > opts.max_advance || report.slept + d > opts.max_sleep {
                report.stopped = Some((
                    i,
                    format!(
                        "advance {a} would sleep past the real-time budget ({:?} per step, {:?} in all; {:?} used)",
                        opts.max_advance, opts.max_sleep, report.slept
                    ),
                ));
                break;
            }
            std::thread::sleep(d);
            report.slept += d;
        }
        r.mark_syncs();
        let mut out = r.step(i, step).map_err(|e| match e {
            ClusterError::Step { .. } => e,
            other => ClusterError::Step {
                step: i + 1,
                message: other.to_string(),
            },
        })?;
        if let Some(e) = &step.expect {
            if e.open_connections_alive.is_some() {
                out.checks
                    .push(("open connections still work".into(), r.clients.open_alive()));
            }
            if let Some(rs) = &e.real_servers {
                let (_, kernel) = r.proxies.get_mut(&rs.node).ok_or_else(|| {
                    ClusterError::Unsupported(format!("IPVS of unknown node {}", rs.node))
                })?;
                out.checks
                    .push(super::ipvs_state::real_servers(plan, rs, kernel.ipvs())?);
            }
            if let Some(counts) = &e.conntrack_entries {
                for node in counts.keys() {
                    out.checks.push((
                        format!("conntrack entries on {node}"),
                        r.conntrack_count(node)?,
                    ));
                }
            }
        }
        out.step = i + 1;
        out.syncs = r.syncs_since_mark();
        report.steps.push(out);
    }
    Ok(report)
}

impl Replay<'_> {
    fn start_kube_proxy(&mut self, node: &str) -> Result<(), ClusterError> {
        let info = self.plan.node_info(node);
        let family = IpFamily::of(&info.ips[0]);
        let netns = self
            .topo
            .node(node)
            .expect("every node has a namespace")
            .ns
            .name()
            .to_string();
        let mut kernel = HostKernel::new(KernelOptions {
            netns: Some(netns),
            iptables_variant: Some(self.opts.variant),
            restore_strategy: RestoreStrategy::Auto,
        })?;
        let proxy_err = |e: anyhow::Error| ClusterError::Proxy {
            node: node.to_string(),
            message: format!("{e:#}"),
        };
        let config = &self.configs[node];
        let mut kp =
            KubeProxy::new(config, config.mode, family, info, &mut kernel).map_err(proxy_err)?;
        kp.start(
            &self.api.services(),
            &self.api.slices(),
            &self.plan.service_cidrs,
            ts(self.now),
            &mut kernel,
        );
        self.proxies.insert(node.to_string(), (kp, kernel));
        Ok(())
    }

    fn deliver(&mut self, events: Vec<Event>) {
        for (kp, _) in self.proxies.values_mut() {
            for e in &events {
                match e {
                    Event::Service(name, svc) => kp.on_service(name, svc.as_deref()),
                    Event::Slice(name, slice) => kp.on_endpoint_slice(name, slice.as_deref()),
                }
            }
        }
        self.settle();
    }

    /// Runs every kube-proxy action due now, in node-name order.
    fn settle(&mut self) {
        let now = ts(self.now);
        loop {
            let due: Vec<String> = self
                .proxies
                .iter()
                .filter(|(_, (kp, _))| kp.next_wakeup(now).is_some_and(|w| w <= now))
                .map(|(n, _)| n.clone())
                .collect();
            if due.is_empty() {
                return;
            }
            for node in due {
                let (kp, kernel) = self.proxies.get_mut(&node).expect("due proxies exist");
                kp.poll(now, kernel as &mut dyn Kernel);
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        loop {
            let now = ts(self.now);
            let next = self
                .proxies
                .values()
                .filter_map(|(kp, _)| kp.next_wakeup(now))
                .filter(|w| *w <= ts(target))
                .min();
            match next {
                Some(w) if w > now => {
                    self.now = w.0;
                    self.settle();
                }
                Some(_) => self.settle(),
                None => break,
            }
        }
        self.now = target;
        self.settle();
    }

    fn mark_syncs(&mut self) {
        self.marks = self
            .proxies
            .iter()
            .map(|(n, (kp, _))| (n.clone(), kp.syncs.len()))
            .collect();
    }

    fn syncs_since_mark(&self) -> Vec<SyncReport> {
        let mut out = Vec::new();
        for (node, (kp, _)) in &self.proxies {
            let from = self.marks.get(node).copied().unwrap_or(0);
            out.extend(kp.sync_reports(node, from));
        }
        out
    }

    fn step(&mut self, i: usize, step: &Step) -> Result<KernelStep, ClusterError> {
        let mut out = KernelStep::default();
        if let Some(t) = &step.traffic {
            let step_err = |message: String| ClusterError::Step {
                step: i + 1,
                message,
            };
            let target = resolve_target(self.plan, &t.to).map_err(step_err)?;
            let netns = self.topo.netns_of(&t.from).ok_or_else(|| {
                step_err(format!(
                    "{} is not a node, pod or client of the cluster",
                    t.from
                ))
            })?;
            let probed = self.clients.probe(&Probe {
                spec: t,
                netns,
                target,
                steer: self.opts.steer.get(&i),
                wanted: self.opts.wanted.get(&i),
                max_extra: self.opts.max_extra,
            })?;
            self.settle();
            out.traffic = Some(probed.report);
            out.extra = probed.extra;
            out.redrawn = probed.redrawn;
        } else if let Some(objects) = &step.apply {
            let (mut services, mut slices) = (Vec::new(), Vec::new());
            for (j, value) in objects.iter().enumerate() {
                let text = serde_yaml::to_string(value).expect("a YAML value serialises");
                let m = k8s::load_str(&format!("apply[{j}]"), &text).map_err(|e| {
                    ClusterError::Step {
                        step: i + 1,
                        message: e.to_string(),
                    }
                })?;
                services.extend(m.services);
                slices.extend(m.endpoint_slices);
            }
            let events = self.api.apply(services, slices);
            self.deliver(events);
        } else if let Some(refs) = &step.delete {
            let mut events = Vec::new();
            for r in refs {
                let name = NamespacedName::new(&r.namespace, &r.name);
                events.extend(self.api.delete(&r.kind, &name).map_err(|message| {
                    ClusterError::Step {
                        step: i + 1,
                        message,
                    }
                })?);
            }
            self.deliver(events);
        } else if let Some(p) = &step.pod {
            let events = self.api.change_pod(p);
            if p.deleted == Some(true) && self.topo.has_pod(&p.name) {
                self.topo.delete_pod(&p.name)?;
            }
            self.deliver(events);
        } else if let Some(n) = &step.node {
            self.topo.set_node_up(&n.name, !n.down)?;
        } else if let Some(r) = &step.restart {
            // Like the simulator's runner: a restart may bring another mode
            // or configuration for this node from now on.
            let switch = r.mode.as_deref().map(Mode::parse).transpose();
            let switch = switch.map_err(|message| ClusterError::Step {
                step: i + 1,
                message,
            })?;
            if r.config.is_some() || switch.is_some() {
                let mode = switch.unwrap_or(self.configs[&r.kube_proxy].mode);
                let config = self
                    .plan
                    .config_for(mode, r.config.as_ref())
                    .map_err(|message| ClusterError::Step {
                        step: i + 1,
                        message,
                    })?;
                self.configs.insert(r.kube_proxy.clone(), config);
            }
            self.proxies.remove(&r.kube_proxy);
            self.start_kube_proxy(&r.kube_proxy)?;
            self.marks.insert(r.kube_proxy.clone(), 0);
            self.settle();
        } else if let Some(a) = &step.advance {
            let d = duration::parse(a).map_err(|message| ClusterError::Step {
                step: i + 1,
                message,
            })?;
            self.advance(d);
        } else if let Some(c) = &step.close {
            self.clients.close(c.label.as_ref());
        }
        Ok(out)
    }

    fn conntrack_count(&mut self, node: &str) -> Result<String, ClusterError> {
        let (_, kernel) = self.proxies.get_mut(node).ok_or_else(|| {
            ClusterError::Unsupported(format!("conntrack of unknown node {node}"))
        })?;
        let mut n = 0;
        for family in [IpFamily::V4, IpFamily::V6] {
            for proto in [Protocol::Tcp, Protocol::Udp] {
                n += kernel.conntrack().list_flows(family, proto)?.len();
            }
        }
        Ok(n.to_string())
    }
}

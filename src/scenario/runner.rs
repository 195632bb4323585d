//! Executes a planned scenario on the simulator, one mode at a time.
//!
//! The world is a `sim::network::Network` built from the plan (nodes with
//! their pod CIDRs, pods listening on their ports, clients, cloud load
//! balancers), one [`KubeProxy`] per node writing into that node's simulated
//! kernel, and the [`ApiServer`] holding objects and pods. Steps run in
//! order on virtual time: object and pod changes become watch events for
//! every kube-proxy, whose runners decide when to sync (so changes take
//! effect at the next sync, not at once); `advance` moves the clock through
//! every sync and timer due on the way; traffic is played packet by packet
//! through the kernels on its path.
//!
//! **Invariant:** no wall clock, one seed; ties at one instant are broken by
//! node name.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use proxier::clock::Timestamp;
use proxier::config::{duration, Config, Mode};
use proxier::k8s::{self, IpFamily, NamespacedName, Protocol};
use sim::netfilter::{Cidr, Protocol as SimProtocol, Variant};
use sim::network::{ConnId, ConnectionReport, LbMode, Network, Outcome};
use sim::time::Instant;

use super::apiserver::{ApiServer, Event};
use super::expect::check;
use super::kube_proxy::KubeProxy;
use super::modes::step_runs_in;
use super::plan::{resolve_target, Plan};
use super::report::{Report, StepReport, SyncReport, TrafficReport};
use super::spec::{Step, TrafficSpec};
use crate::simkernel::{KernelSide, SimKernel};

/// An open connection from a `keepOpen` traffic step.
#[derive(Debug, Clone)]
pub(super) struct Open {
    pub id: ConnId,
    pub label: Option<String>,
}

pub(super) struct World<'p> {
    pub plan: &'p Plan,
    pub now: Instant,
    pub net: Network,
    sides: BTreeMap<String, KernelSide>,
    proxies: BTreeMap<String, KubeProxy>,
    pub api: ApiServer,
    pub open: Vec<Open>,
    /// UDP sockets reused by `sameSourcePort` traffic: (from, to) → flow.
    udp_sockets: BTreeMap<(String, String), ConnId>,
    /// How many syncs each node had when the current step began.
    sync_marks: BTreeMap<String, usize>,
    /// Each node's kube-proxy configuration (the mode's own; a restart with
    /// `config` changes it).
    pub configs: BTreeMap<String, Config>,
    /// Flows of labelled traffic steps: (source `ip:port`, pod reached).
    pub labelled_flows: BTreeMap<String, Vec<(String, Option<String>)>>,
}

fn ts(t: Instant) -> Timestamp {
    Timestamp(t.since_start())
}

/// Runs a plan once per mode it names (or `mode` alone, if given).
pub fn run(plan: &Plan, seed: Option<u64>, mode: Option<Mode>) -> Result<Vec<Report>> {
    let modes = match mode {
        Some(m) => vec![m],
        None => plan.modes.clone(),
    };
    modes
        .into_iter()
        .map(|m| run_mode(plan, seed.unwrap_or(plan.seed), m))
        .collect()
}

fn run_mode(plan: &Plan, seed: u64, mode: Mode) -> Result<Report> {
    play(plan, seed, mode).map(|(report, _)| report)
}

/// Plays every step of `plan` that runs in `mode`; returns the report and
/// the world as the last step left it (for [`super::end_state`]).
pub(super) fn play(plan: &Plan, seed: u64, mode: Mode) -> Result<(Report, World<'_>)> {
    let mut world = World::build(plan, seed, mode)?;
    let mut steps = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        if !step_runs_in(step, mode) {
            continue;
        }
        world.mark_syncs();
        let at = world.now.to_string();
        let (title, traffic) = world
            .step(step)
            .with_context(|| format!("{}: steps[{i}]", plan.file))?;
        let expectations = match &step.expect {
            Some(e) => check(&mut world, e, traffic.as_ref(), step.traffic.as_ref())?,
            None => Vec::new(),
        };
        steps.push(StepReport {
            step: i + 1,
            at,
            title: step.name.clone().unwrap_or(title),
            traffic,
            syncs: world.syncs_since_mark(),
            expectations,
        });
    }
    let report = Report {
        scenario: plan.name.clone(),
        mode: mode.name().to_string(),
        seed,
        steps,
    };
    Ok((report, world))
}

impl<'p> World<'p> {
    fn build(plan: &'p Plan, seed: u64, mode: Mode) -> Result<World<'p>> {
        let mut net = Network::new(seed, Variant::Nft);
        for n in &plan.nodes {
            let prefix = if n.ip.is_ipv4() { 24 } else { 64 };
            let cidr = Cidr::new(n.pod_cidr.network(), n.pod_cidr.prefix_len())
                .ok_or_else(|| anyhow!("bad pod CIDR {}", n.pod_cidr))?;
            net.add_node(&n.name, n.ip, prefix, Some(cidr))?;
        }
        for p in &plan.pods {
            net.add_pod(
                &p.name.name,
                &p.node,
                p.ip,
                &p.ports_of(Protocol::Tcp),
                &p.ports_of(Protocol::Udp),
            )?;
        }
        for c in &plan.clients {
            net.add_client(&c.name, c.ip)?;
        }
        let node_names: Vec<&str> = plan.nodes.iter().map(|n| n.name.as_str()).collect();
        for lb in &plan.load_balancers {
            // A cloud balancer that keeps the client's address hands the
            // packet to a node with the VIP still as destination (the
            // node's rules for the LB IP take over); one that does not
            // forwards to a NodePort from its own address.
            let lb_mode = if lb.preserve_client_ip {
                LbMode::Passthrough
            } else {
                LbMode::NodePort {
                    preserve_source: false,
                }
            };
            net.add_load_balancer(&lb.name, lb.ip, lb_mode)?;
            let svc = plan.service_of(lb);
            for p in &svc.ports {
                let proto = match p.protocol {
                    Protocol::Tcp => SimProtocol::Tcp,
                    Protocol::Udp => SimProtocol::Udp,
                    Protocol::Sctp => SimProtocol::Sctp,
                };
                net.lb_forward(
                    &lb.name,
                    proto,
                    p.port,
                    p.node_port.unwrap_or(0),
                    &node_names,
                )?;
            }
        }

        let mut world = World {
            plan,
            now: Instant::ZERO,
            net,
            sides: BTreeMap::new(),
            proxies: BTreeMap::new(),
            api: ApiServer::new(plan),
            open: Vec::new(),
            udp_sockets: BTreeMap::new(),
            sync_marks: BTreeMap::new(),
            configs: BTreeMap::new(),
            labelled_flows: BTreeMap::new(),
        };
        let config = plan
            .config_for(mode, None)
            .map_err(|e| anyhow!("{}: config for {} mode: {e}", plan.file, mode.name()))?;
        for n in &plan.nodes {
            world.configs.insert(n.name.clone(), config.clone());
            world.sides.insert(n.name.clone(), KernelSide::default());
            world.start_kube_proxy(&n.name)?;
        }
        Ok(world)
    }

    fn start_kube_proxy(&mut self, node: &str) -> Result<()> {
        let info = self.plan.node_info(node);
        let family = IpFamily::of(&info.ips[0]);
        let (services, slices) = (self.api.services(), self.api.slices());
        let now = self.now;
        let side = self.sides.get_mut(node).expect("every node has a side");
        let config = &self.configs[node];
        let mut kernel = SimKernel::new(self.net.node_mut(node)?, side, now);
        let mut kp = KubeProxy::new(config, config.mode, family, info, &mut kernel)
            .with_context(|| format!("starting kube-proxy on {node}"))?;
        let cidrs: Vec<ipnet::IpNet> = self.plan.service_cidrs.clone();
        kp.start(&services, &slices, &cidrs, ts(now), &mut kernel);
        self.proxies.insert(node.to_string(), kp);
        Ok(())
    }

    /// Delivers watch events to every running kube-proxy, then lets any
    /// sync that is due now run.
    fn deliver(&mut self, events: Vec<Event>) -> Result<()> {
        for kp in self.proxies.values_mut() {
            for e in &events {
                match e {
                    Event::Service(name, svc) => kp.on_service(name, svc.as_deref()),
                    Event::Slice(name, slice) => kp.on_endpoint_slice(name, slice.as_deref()),
                }
            }
        }
        self.settle()
    }

    /// Runs every kube-proxy action due at `now` (node-name order).
    fn settle(&mut self) -> Result<()> {
        loop {
            let now = self.now;
            let due: Vec<String> = self
                .proxies
                .iter()
                .filter(|(_, kp)| kp.next_wakeup(ts(now)).is_some_and(|w| w <= ts(now)))
                .map(|(n, _)| n.clone())
                .collect();
            if due.is_empty() {
                return Ok(());
            }
            for node in due {
                let side = self.sides.get_mut(&node).expect("every node has a side");
                let mut kernel = SimKernel::new(self.net.node_mut(&node)?, side, now);
                let kp = self.proxies.get_mut(&node).expect("due proxies exist");
                kp.poll(ts(now), &mut kernel);
            }
        }
    }

    /// Moves virtual time to `now + d`, running whatever falls due.
    fn advance(&mut self, d: Duration) -> Result<()> {
        let target = self.now + d;
        loop {
            let next = self
                .proxies
                .values()
                .filter_map(|kp| kp.next_wakeup(ts(self.now)))
                .filter(|w| *w <= ts(target))
                .min();
            match next {
                Some(w) if w > ts(self.now) => {
                    self.now = Instant::from_nanos(w.0.as_nanos() as u64);
                    self.net.expire(self.now);
                    self.settle()?;
                }
                Some(_) => self.settle()?,
                None => break,
            }
        }
        self.now = target;
        self.net.expire(self.now);
        self.settle()
    }

    fn mark_syncs(&mut self) {
        self.sync_marks = self
            .proxies
            .iter()
            .map(|(n, kp)| (n.clone(), kp.syncs.len()))
            .collect();
    }

    fn syncs_since_mark(&self) -> Vec<SyncReport> {
        let mut out = Vec::new();
        for (node, kp) in &self.proxies {
            let from = self.sync_marks.get(node).copied().unwrap_or(0);
            out.extend(kp.sync_reports(node, from));
        }
        out
    }

    /// Runs one step's action; returns a title and the traffic report.
    fn step(&mut self, step: &Step) -> Result<(String, Option<TrafficReport>)> {
        if let Some(t) = &step.traffic {
            let report = self.traffic(t)?;
            return Ok((format!("traffic from {} to {}", t.from, t.to), Some(report)));
        }
        if let Some(objects) = &step.apply {
            let mut services = Vec::new();
            let mut slices = Vec::new();
            for (i, value) in objects.iter().enumerate() {
                let text = serde_yaml::to_string(value).expect("a YAML value serialises");
                let m = k8s::load_str(&format!("apply[{i}]"), &text)?;
                services.extend(m.services);
                slices.extend(m.endpoint_slices);
            }
            let events = self.api.apply(services, slices);
            self.deliver(events)?;
            return Ok((format!("apply {} object(s)", objects.len()), None));
        }
        if let Some(refs) = &step.delete {
            let mut events = Vec::new();
            for r in refs {
                let name = NamespacedName::new(&r.namespace, &r.name);
                events.extend(
                    self.api
                        .delete(&r.kind, &name)
                        .map_err(anyhow::Error::msg)?,
                );
            }
            self.deliver(events)?;
            return Ok((format!("delete {} object(s)", refs.len()), None));
        }
        if let Some(p) = &step.pod {
            let events = self.api.change_pod(p);
            if p.deleted == Some(true) && self.net.host(&p.name).is_some() {
                // The containers are gone: nothing answers at that address.
                self.net.remove_host(&p.name)?;
            }
            self.deliver(events)?;
            let mut what = Vec::new();
            if let Some(r) = p.ready {
                what.push(if r { "ready" } else { "not ready" });
            }
            if p.terminating == Some(true) {
                what.push("terminating");
            }
            if p.deleted == Some(true) {
                what.push("deleted");
            }
            return Ok((format!("pod {} {}", p.name, what.join(", ")), None));
        }
        if let Some(n) = &step.node {
            self.net.set_node_up(&n.name, !n.down)?;
            let what = if n.down { "goes down" } else { "comes back" };
            return Ok((format!("node {} {what}", n.name), None));
        }
        if let Some(r) = &step.restart {
            let switch = r.mode.as_deref().map(Mode::parse).transpose();
            let switch = switch.map_err(|e| anyhow!("restart.mode: {e}"))?;
            if r.config.is_some() || switch.is_some() {
                let mode = switch.unwrap_or(self.configs[&r.kube_proxy].mode);
                let config = self
                    .plan
                    .config_for(mode, r.config.as_ref())
                    .map_err(|e| anyhow!("restart.config: {e}"))?;
                self.configs.insert(r.kube_proxy.clone(), config);
            }
            self.proxies.remove(&r.kube_proxy);
            self.start_kube_proxy(&r.kube_proxy)?;
            // A new process: its syncs are all new.
            self.sync_marks.insert(r.kube_proxy.clone(), 0);
            self.settle()?;
            let mut title = format!("kube-proxy on {} restarts", r.kube_proxy);
            if let Some(m) = switch {
                title.push_str(&format!(" in {} mode", m.name()));
                let removed = self.proxies[&r.kube_proxy].cleanup.removed.len();
                if removed > 0 {
                    title.push_str(&format!(
                        ", removing the other mode's rules ({removed} deletions)"
                    ));
                }
            }
            return Ok((title, None));
        }
        if let Some(a) = &step.advance {
            let d = duration::parse(a).map_err(anyhow::Error::msg)?;
            self.advance(d)?;
            return Ok((format!("advance {a}"), None));
        }
        if let Some(c) = &step.close {
            let (close, keep): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.open)
                .into_iter()
                .partition(|o| c.label.is_none() || o.label == c.label);
            self.open = keep;
            let now = self.now;
            for o in &close {
                // A connection that already failed is gone; that is fine.
                let _ = self.net.close(o.id, now);
            }
            return Ok((format!("close {} connection(s)", close.len()), None));
        }
        Ok(("check".to_string(), None))
    }

    fn traffic(&mut self, t: &TrafficSpec) -> Result<TrafficReport> {
        let target = resolve_target(self.plan, &t.to).map_err(anyhow::Error::msg)?;
        let target = (target.ip(), target.port());
        let udp = match t.protocol.as_deref().unwrap_or("TCP") {
            "TCP" | "tcp" => false,
            "UDP" | "udp" => true,
            other => bail!("traffic protocol {other:?} is not supported; use TCP or UDP"),
        };
        let mut report = TrafficReport {
            from: t.from.clone(),
            to: t.to.clone(),
            protocol: if udp { "udp" } else { "tcp" }.into(),
            ..TrafficReport::default()
        };
        let n = t.connections.unwrap_or(1);
        let now = self.now;
        for i in 0..n {
            // Checked by the planner: the ports stay below 65536.
            let port = t
                .source_port
                .and_then(|p| u16::try_from(i).ok().and_then(|i| p.checked_add(i)));
            let r = if udp && t.same_source_port {
                let key = (t.from.clone(), t.to.clone());
                let existing = self.udp_sockets.get(&key).copied();
                let r = match existing {
                    Some(id) => self.net.send_again(id, now)?,
                    None => self.net.send_udp(&t.from, target, now, true)?,
                };
                match r.id {
                    Some(id) if !r.closed => {
                        self.udp_sockets.insert(key, id);
                    }
                    _ => {
                        self.udp_sockets.remove(&key);
                    }
                }
                r
            } else if udp {
                self.net
                    .send_udp_from(&t.from, port, target, now, t.keep_open)?
            } else {
                self.net
                    .connect_tcp_from(&t.from, port, target, now, t.keep_open)?
            };
            if t.keep_open {
                if let Some(id) = r.id.filter(|_| !r.closed) {
                    self.open.push(Open {
                        id,
                        label: t.label.clone(),
                    });
                }
            }
            tally(&mut report, &r);
        }
        if let Some(label) = &t.label {
            self.labelled_flows
                .insert(label.clone(), report.flows.clone());
        }
        self.settle()?;
        Ok(report)
    }
}

fn tally(report: &mut TrafficReport, r: &ConnectionReport) {
    report.attempts += 1;
    let answered = (r.outcome == Outcome::Answered).then(|| r.server.clone());
    let (ip, port) = r.client_addr;
    report.flows.push((
        std::net::SocketAddr::new(ip, port).to_string(),
        answered.flatten(),
    ));
    for (node, n) in &r.rules_first_packet {
        *report.rules_first_packet.entry(node.clone()).or_default() += n;
    }
    match &r.outcome {
        Outcome::Answered => {
            report.answered += 1;
            if let Some(server) = &r.server {
                *report.backends.entry(server.clone()).or_default() += 1;
                let source = r.client_addr.0.to_string();
                *report
                    .servers_by_source
                    .entry(source)
                    .or_default()
                    .entry(server.clone())
                    .or_default() += 1;
            }
            if let Some(seen) = &r.seen {
                *report
                    .sources_seen
                    .entry(seen.src.0.to_string())
                    .or_default() += 1;
            }
        }
        Outcome::Refused { .. } | Outcome::Unreachable { .. } => report.rejected += 1,
        Outcome::Dropped { at, reason, .. } => {
            report.dropped += 1;
            *report.drops.entry(format!("{at}: {reason}")).or_default() += 1;
        }
        Outcome::NoAnswer => {
            report.dropped += 1;
            *report.drops.entry("no answer".into()).or_default() += 1;
        }
        Outcome::Misrouted { .. } => report.other += 1,
    }
}

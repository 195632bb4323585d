//! What may differ between the runs of one scenario: the proxy mode, whose
//! settings are the mode's own (upstream resolves `minSyncPeriod`,
//! `syncPeriod` and the masquerade bit per mode, so a scenario run in IPVS
//! mode reads `ipvs.minSyncPeriod`, not `iptables.minSyncPeriod`); a
//! node's configuration after a `restart` that brings `config` (merged
//! over the scenario's, e.g. another `ipvs.scheduler`); and steps limited
//! to some modes (`modes`), for behaviour that genuinely differs by mode.
//!
//! Also the plan-time checks of the step fields that go with these:
//! `modes`, `restart.config`, `restart.mode`, `traffic.sourcePort`, and the
//! expectations `cycle`, `realServers`, `keptBackends` and
//! `kubeProxyRules`.
//!
//! **Never:** changes the scenario's own configuration text; merging makes
//! a new document.
//!
//! **Errors:** `Err(problem)` with a fix; the planner adds file and place.

use std::net::SocketAddr;

use proxier::config::{self, Config, Mode};
use serde_yaml::Value;

use super::plan::{Node, Plan};
use super::spec::Step;

/// `over`'s mappings merged into `base` key by key; other values replace.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The configuration of a run in `mode`: the scenario's `config` (or the
/// defaults), with `over` merged in, resolved as a kube-proxy started with
/// `--proxy-mode=MODE` would resolve it.
pub fn config_for(
    source: Option<&Value>,
    mode: Mode,
    over: Option<&Value>,
) -> Result<Config, String> {
    let mut doc = source
        .cloned()
        .unwrap_or_else(|| Value::Mapping(Default::default()));
    if let Some(o) = over {
        merge(&mut doc, o);
    }
    let Value::Mapping(map) = &mut doc else {
        return Err("config must be a mapping (a KubeProxyConfiguration body)".into());
    };
    map.insert("mode".into(), mode.name().into());
    let text = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    config::load_str("config", &text).map_err(|e| e.message)
}

impl Plan {
    /// The configuration for a run in `mode` (see [`config_for`]).
    pub fn config_for(&self, mode: Mode, over: Option<&Value>) -> Result<Config, String> {
        config_for(self.config_source.as_ref(), mode, over)
    }
}

/// Whether `step` runs in `mode`.
pub fn step_runs_in(step: &Step, mode: Mode) -> bool {
    step.modes
        .as_ref()
        .is_none_or(|ms| ms.iter().any(|m| Mode::parse(m).ok() == Some(mode)))
}

/// Checks the mode-related step fields; `earlier` are the steps before it.
pub(super) fn check_step(
    step: &Step,
    earlier: &[Step],
    source: Option<&Value>,
    mode: Mode,
    nodes: &[Node],
) -> Result<(), String> {
    for m in step.modes.iter().flatten() {
        Mode::parse(m).map_err(|e| format!("modes: {e}"))?;
    }
    let restart_mode = match step.restart.as_ref().and_then(|r| r.mode.as_deref()) {
        Some(m) => Mode::parse(m).map_err(|e| format!("restart.mode: {e}"))?,
        None => mode,
    };
    if let Some(over) = step.restart.as_ref().and_then(|r| r.config.as_ref()) {
        config_for(source, restart_mode, Some(over)).map_err(|e| format!("restart.config: {e}"))?;
    }
    for (node, want) in step
        .expect
        .as_ref()
        .and_then(|e| e.kube_proxy_rules.as_ref())
        .into_iter()
        .flatten()
    {
        if !nodes.iter().any(|n| &n.name == node) {
            return Err(format!(
                "expect.kubeProxyRules: {node:?} is not in cluster.nodes"
            ));
        }
        if !["iptables", "nftables", "none"].contains(&want.as_str()) {
            return Err(format!(
                "expect.kubeProxyRules.{node}: {want:?}; use iptables, nftables or none"
            ));
        }
    }
    if let Some(t) = &step.traffic {
        if let Some(p) = t.source_port {
            let last = u32::from(p) + t.connections.unwrap_or(1).saturating_sub(1);
            if p == 0 || last > 65535 {
                return Err(format!(
                    "traffic.sourcePort {p} with {} connections runs past port 65535; start lower",
                    t.connections.unwrap_or(1)
                ));
            }
        }
    }
    let Some(e) = &step.expect else {
        return Ok(());
    };
    if e.cycle.as_ref().is_some_and(Vec::is_empty) {
        return Err("expect.cycle is empty; list the pods in the order expected".into());
    }
    if let Some(r) = &e.real_servers {
        if !nodes.iter().any(|n| n.name == r.node) {
            return Err(format!(
                "expect.realServers.node {:?} is not in cluster.nodes",
                r.node
            ));
        }
        r.service.parse::<SocketAddr>().map_err(|_| {
            format!(
                "expect.realServers.service {:?} is not IP:PORT (IPv6 as [fd00::1]:80)",
                r.service
            )
        })?;
        if let Some(p) = &r.protocol {
            if !["TCP", "UDP", "SCTP"].contains(&p.to_ascii_uppercase().as_str()) {
                return Err(format!(
                    "expect.realServers.protocol {p:?}: use TCP, UDP or SCTP"
                ));
            }
        }
    }
    if let Some(k) = &e.kept_backends {
        let labelled = earlier
            .iter()
            .any(|s| s.traffic.as_ref().and_then(|t| t.label.as_deref()) == Some(&k.since));
        if !labelled {
            return Err(format!(
                "expect.keptBackends.since {:?} is not the label of an earlier traffic step",
                k.since
            ));
        }
        if !(0.0..=1.0).contains(&k.at_least) {
            return Err("expect.keptBackends.atLeast is a fraction from 0 to 1".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_mode_reads_its_own_settings_and_restarts_merge() {
        let src: Value = serde_yaml::from_str(
            "mode: iptables\niptables: {minSyncPeriod: 5s}\nipvs: {minSyncPeriod: 3s}\n",
        )
        .unwrap();
        let ipt = config_for(Some(&src), Mode::Iptables, None).unwrap();
        assert_eq!(ipt.min_sync_period, Duration::from_secs(5));
        let ipvs = config_for(Some(&src), Mode::Ipvs, None).unwrap();
        assert_eq!(ipvs.min_sync_period, Duration::from_secs(3));
        let over: Value = serde_yaml::from_str("ipvs: {scheduler: lc}").unwrap();
        let lc = config_for(Some(&src), Mode::Ipvs, Some(&over)).unwrap();
        assert_eq!(lc.ipvs.scheduler, "lc");
        assert_eq!(lc.min_sync_period, Duration::from_secs(3));
        let bad: Value = serde_yaml::from_str("ipvs: {scheduler: fastest}").unwrap();
        assert!(config_for(Some(&src), Mode::Ipvs, Some(&bad)).is_err());
        assert_eq!(config_for(None, Mode::Ipvs, None).unwrap().mode, Mode::Ipvs);
    }
}

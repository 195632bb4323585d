//! What a scenario run reports: per step, what happened (traffic outcomes,
//! syncs) and whether each expectation held, printable as text or JSON.
//!
//! **Invariant:** a report holds only ordered collections and values derived
//! from the run, so the same scenario and seed print byte-identical output.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

/// The whole run of one scenario in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub mode: String,
    pub seed: u64,
    pub steps: Vec<StepReport>,
}

impl Report {
    pub fn expectations(&self) -> impl Iterator<Item = &Expectation> {
        self.steps.iter().flat_map(|s| s.expectations.iter())
    }

    pub fn passed(&self) -> bool {
        self.expectations().all(|e| e.ok)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// 1-based step number.
    pub step: usize,
    /// Virtual time when the step ran, e.g. `2.000s`.
    pub at: String,
    /// The step's name, or a description of its action.
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficReport>,
    /// Syncs that ran during this step: `node → what happened`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub syncs: Vec<SyncReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expectations: Vec<Expectation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    pub node: String,
    pub at: String,
    /// `full`, `partial`, or the error.
    pub kind: String,
    pub rules_written: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TrafficReport {
    pub from: String,
    pub to: String,
    pub protocol: String,
    pub attempts: u32,
    pub answered: u32,
    pub dropped: u32,
    pub rejected: u32,
    pub other: u32,
    /// Answered connections per pod.
    pub backends: BTreeMap<String, u32>,
    /// Source addresses the pods saw (without ports), with counts.
    pub sources_seen: BTreeMap<String, u32>,
    /// Where drops happened: `host: reason`, with counts.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub drops: BTreeMap<String, u32>,
    /// Rules evaluated by each connection's first packet, summed per node.
    pub rules_first_packet: BTreeMap<String, u64>,
    /// Servers reached per client source address (for stickiness).
    #[serde(skip)]
    pub servers_by_source: BTreeMap<String, BTreeMap<String, u32>>,
    /// Every connection in order: its source `ip:port` and the pod that
    /// answered (`None`: it failed).
    #[serde(skip)]
    pub flows: Vec<(String, Option<String>)>,
}

/// One checked expectation.
#[derive(Debug, Clone, Serialize)]
pub struct Expectation {
    pub what: String,
    pub ok: bool,
    pub expected: String,
    pub got: String,
}

fn pct(n: u32, total: u32) -> String {
    if total == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", 100.0 * f64::from(n) / f64::from(total))
    }
}

impl TrafficReport {
    fn summary(&self) -> String {
        let mut s = format!(
            "{} {} -> {} x{}: answered {}",
            self.protocol, self.from, self.to, self.attempts, self.answered
        );
        if self.dropped > 0 {
            let _ = write!(s, ", dropped {}", self.dropped);
        }
        if self.rejected > 0 {
            let _ = write!(s, ", rejected {}", self.rejected);
        }
        if self.other > 0 {
            let _ = write!(s, ", other {}", self.other);
        }
        s
    }
}

/// The human-readable report.
pub fn render_text(r: &Report) -> String {
    let mut out = format!(
        "scenario {} (mode {}, seed {})\n",
        r.scenario, r.mode, r.seed
    );
    for s in &r.steps {
        let _ = writeln!(out, "{:>9}  [{}] {}", s.at, s.step, s.title);
        if let Some(t) = &s.traffic {
            let _ = writeln!(out, "           {}", t.summary());
            if !t.backends.is_empty() {
                let parts: Vec<String> = t
                    .backends
                    .iter()
                    .map(|(pod, n)| format!("{pod} {n} ({})", pct(*n, t.attempts)))
                    .collect();
                let _ = writeln!(out, "           backends: {}", parts.join(", "));
            }
            if !t.sources_seen.is_empty() {
                let parts: Vec<String> = t
                    .sources_seen
                    .iter()
                    .map(|(ip, n)| format!("{ip} x{n}"))
                    .collect();
                let _ = writeln!(out, "           pods saw source: {}", parts.join(", "));
            }
            for (where_, n) in &t.drops {
                let _ = writeln!(out, "           dropped x{n} at {where_}");
            }
            if !t.rules_first_packet.is_empty() && t.attempts > 0 {
                let parts: Vec<String> = t
                    .rules_first_packet
                    .iter()
                    .map(|(node, n)| format!("{node} {:.1}", *n as f64 / f64::from(t.attempts)))
                    .collect();
                let _ = writeln!(
                    out,
                    "           rules per first packet: {}",
                    parts.join(", ")
                );
            }
        }
        for sync in &s.syncs {
            let _ = writeln!(
                out,
                "           sync {} at {}: {} ({} rules written)",
                sync.node, sync.at, sync.kind, sync.rules_written
            );
        }
        for e in &s.expectations {
            if e.ok {
                let _ = writeln!(out, "           ok    {}: {}", e.what, e.got);
            } else {
                let _ = writeln!(
                    out,
                    "           FAIL  {}: expected {}, got {}",
                    e.what, e.expected, e.got
                );
            }
        }
    }
    let total = r.expectations().count();
    let failed = r.expectations().filter(|e| !e.ok).count();
    let _ = writeln!(
        out,
        "{}: {} expectations, {} failed",
        if failed == 0 { "PASS" } else { "FAIL" },
        total,
        failed
    );
    out
}

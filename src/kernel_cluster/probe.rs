//! The client side of a replay: a traffic step played with real sockets,
//! and the connections and flows kept between steps.
//!
//! Like the simulator's runner: new TCP connections or UDP flows (each a
//! fresh local port, never one a flow of this client used before: a reused
//! port would ride an old conntrack entry and not be new), or one UDP
//! socket per (from, to) reused while it works (`sameSourcePort`), kept-open
//! connections that later steps ask again or close. Two additions for the
//! comparison: *extra* connections until wanted sets of backends and
//! sources were seen (kernel randomness needs more draws than a seeded
//! simulator to show every reachable backend; extras only count towards
//! reachability), and *steering*: a new reused UDP flow is redrawn until it
//! reaches the pod the simulator's reached, so both sides continue from the
//! same history.
//!
//! Must never: count an extra or redrawn attempt in the step's outcomes.
//!
//! Error contract: [`ClusterError`] when a namespace cannot be entered or a
//! socket cannot be made; what traffic experiences is in the reports.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, UdpSocket};

use super::replay::Wanted;
use super::traffic::{self, ask_all, run_in_netns, Attempt, Held, Outcome, UsedPorts};
use super::ClusterError;
use crate::scenario::report::TrafficReport;
use crate::scenario::spec::TrafficSpec;

/// The most new flows thrown away per step while steering.
pub const MAX_REDRAWS: u32 = 64;

struct OpenConn {
    held: Held,
    label: Option<String>,
}

/// What a traffic step sent and saw.
#[derive(Debug, Clone, Default)]
pub struct Probed {
    pub report: TrafficReport,
    /// Extra connections sent for reachability.
    pub extra: Option<TrafficReport>,
    /// New reused flows thrown away while steering.
    pub redrawn: u32,
}

/// How to play one traffic step.
pub struct Probe<'a> {
    pub spec: &'a TrafficSpec,
    /// The client's namespace.
    pub netns: &'a str,
    pub target: SocketAddr,
    /// The pod a new reused UDP flow must reach.
    pub steer: Option<&'a String>,
    /// Keep sending until these were seen (new flows only).
    pub wanted: Option<&'a Wanted>,
    pub max_extra: u32,
}

/// Every client's sockets between steps.
#[derive(Default)]
pub struct Clients {
    open: Vec<OpenConn>,
    udp_sockets: BTreeMap<(String, String), UdpSocket>,
    /// Per client host: the UDP ports its flows used.
    udp_ports: BTreeMap<String, UsedPorts>,
}

fn report_for(t: &TrafficSpec, udp: bool) -> TrafficReport {
    TrafficReport {
        from: t.from.clone(),
        to: t.to.clone(),
        protocol: if udp { "udp" } else { "tcp" }.into(),
        ..TrafficReport::default()
    }
}

impl Clients {
    /// Plays one traffic step.
    pub fn probe(&mut self, p: &Probe<'_>) -> Result<Probed, ClusterError> {
        let t = p.spec;
        let udp = matches!(t.protocol.as_deref(), Some("UDP" | "udp"));
        let mut out = Probed {
            report: report_for(t, udp),
            ..Probed::default()
        };
        let n = t.connections.unwrap_or(1) as usize;
        let used = self.udp_ports.entry(t.from.clone()).or_default();
        if udp && t.same_source_port {
            let key = (t.from.clone(), t.to.clone());
            for _ in 0..n {
                let (held, a) = match self.udp_sockets.remove(&key) {
                    Some(s) => {
                        let held = Held::Udp(s);
                        let a = held.ask();
                        (held, a)
                    }
                    None => steered_flow(p, used, &mut out.redrawn)?,
                };
                tally(&mut out.report, &a);
                if let (Outcome::Answered { .. }, Held::Udp(s)) = (&a.outcome, held) {
                    if t.keep_open {
                        let again = s
                            .try_clone()
                            .map_err(|e| ClusterError::io("cloning a UDP socket", e))?;
                        self.open.push(OpenConn {
                            held: Held::Udp(again),
                            label: t.label.clone(),
                        });
                    }
                    self.udp_sockets.insert(key.clone(), s);
                }
            }
        } else {
            let results = run_in_netns(p.netns, n, |_| {
                if udp {
                    let (a, s) = traffic::udp_exchange(p.target, used);
                    (a, s.map(Held::Udp))
                } else {
                    let (a, s) = traffic::tcp_exchange(p.target);
                    (a, s.map(Held::Tcp))
                }
            })?;
            for (a, held) in results {
                tally(&mut out.report, &a);
                if let (true, Some(held)) = (t.keep_open, held) {
                    self.open.push(OpenConn {
                        held,
                        label: t.label.clone(),
                    });
                }
            }
            if let Some(wanted) = p.wanted {
                out.extra = extra(p, udp, used, wanted, &out.report)?;
            }
        }
        Ok(out)
    }

    /// Asks every kept-open connection again; those that fail are closed.
    /// Returns `"A of T answer"`, as the simulator's expectation says it.
    pub fn open_alive(&mut self) -> String {
        let open = std::mem::take(&mut self.open);
        let total = open.len();
        let held: Vec<&Held> = open.iter().map(|o| &o.held).collect();
        let results = ask_all(&held);
        let mut answered = 0;
        for (o, a) in open.into_iter().zip(results) {
            if matches!(a.outcome, Outcome::Answered { .. }) {
                answered += 1;
                self.open.push(o);
            }
        }
        format!("{answered} of {total} answer")
    }

    /// Closes the kept-open connections with `label` (all for `None`).
    pub fn close(&mut self, label: Option<&String>) {
        // Dropping a socket closes it (FIN for TCP).
        self.open
            .retain(|o| !(label.is_none() || o.label.as_ref() == label));
    }
}

/// A new reused UDP flow, redrawn (up to [`MAX_REDRAWS`] times) until it
/// reaches the pod the simulator's flow reached.
fn steered_flow(
    p: &Probe<'_>,
    used: &UsedPorts,
    redrawn: &mut u32,
) -> Result<(Held, Attempt), ClusterError> {
    loop {
        let s = run_in_netns(p.netns, 1, |_| traffic::udp_socket(p.target, used))?
            .pop()
            .expect("one result")
            .map_err(|e| ClusterError::io("opening a UDP socket", e))?;
        let held = Held::Udp(s);
        let a = held.ask();
        let off_target = match (&a.outcome, p.steer) {
            (Outcome::Answered { pod, .. }, Some(want)) => pod != want,
            _ => false,
        };
        if !off_target || *redrawn >= MAX_REDRAWS {
            return Ok((held, a));
        }
        *redrawn += 1;
    }
}

/// Extra new connections or flows until `wanted` was seen, or `max_extra`.
fn extra(
    p: &Probe<'_>,
    udp: bool,
    used: &UsedPorts,
    wanted: &Wanted,
    seen_so_far: &TrafficReport,
) -> Result<Option<TrafficReport>, ClusterError> {
    let mut pods: BTreeSet<String> = seen_so_far.backends.keys().cloned().collect();
    let mut sources: BTreeSet<String> = seen_so_far.sources_seen.keys().cloned().collect();
    let mut more = report_for(p.spec, udp);
    while !(wanted.backends.is_subset(&pods) && wanted.sources.is_subset(&sources))
        && more.attempts < p.max_extra
    {
        let batch = (p.max_extra - more.attempts).min(traffic::PARALLEL as u32) as usize;
        let attempts = run_in_netns(p.netns, batch, |_| {
            if udp {
                traffic::udp_exchange(p.target, used).0
            } else {
                traffic::tcp_exchange(p.target).0
            }
        })?;
        for a in &attempts {
            tally(&mut more, a);
        }
        pods.extend(more.backends.keys().cloned());
        sources.extend(more.sources_seen.keys().cloned());
    }
    Ok((more.attempts > 0).then_some(more))
}

/// Counts one attempt into a report, like the simulator's runner does.
pub fn tally(report: &mut TrafficReport, a: &Attempt) {
    report.attempts += 1;
    match &a.outcome {
        Outcome::Answered { pod, seen } => {
            report.answered += 1;
            *report.backends.entry(pod.clone()).or_default() += 1;
            *report
                .sources_seen
                .entry(seen.ip().to_string())
                .or_default() += 1;
            if let Some(local) = a.local {
                *report
                    .servers_by_source
                    .entry(local.ip().to_string())
                    .or_default()
                    .entry(pod.clone())
                    .or_default() += 1;
            }
        }
        Outcome::Rejected(why) => {
            report.rejected += 1;
            *report.drops.entry(format!("rejected: {why}")).or_default() += 1;
        }
        Outcome::Dropped(why) => {
            report.dropped += 1;
            *report.drops.entry(why.clone()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_are_tallied_like_the_simulators() {
        let mut t = TrafficReport::default();
        let local = Some("10.244.1.3:40000".parse().unwrap());
        let seen = "10.244.1.1:40000".parse().unwrap();
        let answered = Outcome::Answered {
            pod: "web-1".into(),
            seen,
        };
        tally(
            &mut t,
            &Attempt {
                local,
                outcome: answered,
            },
        );
        let dropped = Outcome::Dropped("timed out".into());
        tally(
            &mut t,
            &Attempt {
                local: None,
                outcome: dropped,
            },
        );
        assert_eq!(
            (t.attempts, t.answered, t.dropped, t.rejected),
            (2, 1, 1, 0)
        );
        assert_eq!(t.sources_seen.keys().collect::<Vec<_>>(), ["10.244.1.1"]);
        assert_eq!(t.servers_by_source["10.244.1.3"]["web-1"], 1);
    }
}

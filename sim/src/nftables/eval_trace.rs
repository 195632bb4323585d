//! Rule-by-rule traces of nftables evaluation, printable the way
//! `nft monitor trace` prints them.
//!
//! Models: one [`TraceRecord`] when a packet enters a base chain (`packet:
//! …`), one per rule visited (matched or not, with the verdict of a matched
//! one — `continue` when it gave none), one when a chain ends and goes back
//! to its caller (`verdict continue`), and one when a base chain's policy
//! applies. [`TraceRecord`]'s `Display` shows every record (rules that did
//! not match end in `(no match)`); [`monitor`] prints only what `nft monitor
//! trace` prints, with a trace id, and the packet line reduced to the
//! fields the simulator models (interfaces, addresses, protocol, ports).
//!
//! Must never: record anything that differs between two runs with one seed.
//!
//! Error contract: none; plain data.

use std::fmt;
use std::net::IpAddr;

use super::chain::Policy;
use super::types::Family;
use crate::packet::Packet;

/// What one record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceKind {
    /// The packet entered a base chain.
    Packet,
    /// A rule was visited.
    Rule {
        /// The rule's handle.
        handle: u64,
        /// The rule as `nft list` prints it.
        text: String,
        /// Whether every match held (and the rule ran to a verdict or its end).
        matched: bool,
        /// For a matched rule: its verdict (`continue` when it gave none).
        verdict: Option<String>,
    },
    /// A regular chain ended (or returned) and went back to its caller.
    Return,
    /// A base chain's policy applied.
    Policy(Policy),
}

/// One step of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// The node (or other label) the packet was on.
    pub node: String,
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// What happened.
    pub kind: TraceKind,
    /// The packet as `nft monitor trace` describes it (on `Packet` records).
    pub packet: String,
}

/// The records of one or more evaluations, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// The records.
    pub records: Vec<TraceRecord>,
}

/// The packet fields `nft monitor trace` prints that the simulator models.
pub(crate) fn packet_text(pkt: &Packet, iif: Option<&str>, oif: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(i) = iif {
        s.push_str(&format!("iif \"{i}\" "));
    }
    if let Some(o) = oif {
        s.push_str(&format!("oif \"{o}\" "));
    }
    let proto = pkt.protocol().number();
    let proto_name = super::value::Value::Proto(proto).to_string();
    match (pkt.src(), pkt.dst()) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s.push_str(&format!(
                "ip saddr {a} ip daddr {b} ip protocol {proto_name}"
            ));
        }
        (a, b) => {
            let v6 = |x: IpAddr| match x {
                IpAddr::V6(v) => super::value::fmt_ipv6(&v),
                other => other.to_string(),
            };
            s.push_str(&format!(
                "ip6 saddr {} ip6 daddr {} ip6 nexthdr {proto_name}",
                v6(a),
                v6(b)
            ));
        }
    }
    if let (Some(sp), Some(dp)) = (pkt.src_port(), pkt.dst_port()) {
        s.push_str(&format!(" {proto_name} sport {sp} {proto_name} dport {dp}"));
    }
    s
}

impl TraceRecord {
    fn body(&self, f: &mut fmt::Formatter<'_>, full: bool) -> fmt::Result {
        write!(f, "{} {} {} ", self.family, self.table, self.chain)?;
        match &self.kind {
            TraceKind::Packet => write!(f, "packet: {}", self.packet),
            TraceKind::Rule {
                text,
                matched,
                verdict,
                handle,
            } => {
                write!(f, "rule {text}")?;
                if full {
                    write!(f, " (handle {handle})")?;
                }
                match (matched, verdict) {
                    (true, Some(v)) => write!(f, " (verdict {v})"),
                    (true, None) => f.write_str(" (verdict continue)"),
                    (false, _) => f.write_str(" (no match)"),
                }
            }
            TraceKind::Return => f.write_str("verdict continue"),
            TraceKind::Policy(p) => write!(f, "policy {}", p.name()),
        }
    }
}

impl fmt::Display for TraceRecord {
    /// `[node] ip kube-proxy services rule … (handle 7) (verdict goto service-…)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.node.is_empty() {
            write!(f, "[{}] ", self.node)?;
        }
        self.body(f, true)
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.records {
            writeln!(f, "{r}")?;
        }
        Ok(())
    }
}

/// What `nft monitor trace` prints for `records` (only matched rules,
/// returns, policies and packet lines), under trace id `id`.
pub fn monitor(records: &[TraceRecord], id: u32) -> String {
    struct Line<'a>(&'a TraceRecord);
    impl fmt::Display for Line<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.body(f, false)
        }
    }
    let mut out = String::new();
    for r in records {
        if matches!(r.kind, TraceKind::Rule { matched: false, .. }) {
            continue;
        }
        out.push_str(&format!("trace id {id:08x} {}\n", Line(r)));
    }
    out
}

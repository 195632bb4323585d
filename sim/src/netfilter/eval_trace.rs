//! Rule-by-rule traces of an evaluation, printable like the tools people
//! know.
//!
//! Models: one [`TraceRecord`] per rule visited (table, chain, 1-based rule
//! number, the rule as iptables-save prints it, whether it matched, what it
//! decided), one per implicit return from a user chain and one per
//! built-in chain policy applied. [`Trace`]'s `Display` lists every record;
//! [`Trace::kernel_log`] prints what `iptables -j TRACE` logs (only matched
//! rules, returns and policies, `TRACE: table:chain:type:num` followed by
//! the packet in LOG format). A node's trace also carries the nftables
//! records of the same packet ([`Trace::nft`], printed in evaluation order
//! with the iptables ones; [`Trace::nft_monitor`] is `nft monitor trace`).
//!
//! Must never: record anything that differs between two runs with one seed.
//!
//! Error contract: none; plain data.

use std::fmt;

use super::ruleset::{Policy, TableId};

/// What one trace record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceKind {
    /// A rule was visited.
    Rule {
        /// 1-based position in its chain.
        num: usize,
        /// `-A CHAIN ...` as iptables-save prints it.
        text: String,
        /// Whether all its matches held.
        matched: bool,
        /// For a matched rule: what it did (`ACCEPT`, `JUMP KUBE-SVC-…`,
        /// `DNAT 10.0.0.1:80`, `MARK 0x4000`, `CONTINUE`…).
        verdict: Option<String>,
    },
    /// The end of a user chain (or `-j RETURN`) returned to the caller.
    Return {
        /// The rule number the kernel prints (rules in the chain + 1 at the end).
        num: usize,
    },
    /// A built-in chain ended and its policy applied.
    Policy {
        /// The policy.
        policy: Policy,
        /// Rules in the chain + 1.
        num: usize,
    },
}

/// One step of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// The node (or other label) the packet was on, when the caller sets one.
    pub node: String,
    /// `4` or `6`.
    pub family: u8,
    /// Table.
    pub table: TableId,
    /// Chain.
    pub chain: String,
    /// What happened.
    pub kind: TraceKind,
    /// The packet as the rule saw it (LOG format), for kernel-style output.
    pub packet: String,
}

/// The records of one or more evaluations, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trace {
    /// The records.
    pub records: Vec<TraceRecord>,
    /// nftables records of the same packets, each with the number of
    /// iptables records that came before it (so both print in the order
    /// the kernel ran them).
    pub nft: Vec<(usize, crate::nftables::eval::TraceRecord)>,
}

impl Trace {
    /// What `iptables -j TRACE` would log for these records.
    pub fn kernel_log(&self) -> String {
        let mut out = String::new();
        for r in &self.records {
            let (ty, num) = match &r.kind {
                TraceKind::Rule {
                    num, matched: true, ..
                } => ("rule", *num),
                TraceKind::Rule { .. } => continue,
                TraceKind::Return { num } => ("return", *num),
                TraceKind::Policy { num, .. } => ("policy", *num),
            };
            out.push_str(&format!(
                "TRACE: {}:{}:{}:{} {}\n",
                r.table, r.chain, ty, num, r.packet
            ));
        }
        out
    }

    /// What `nft monitor trace` would print for the nftables records.
    pub fn nft_monitor(&self) -> String {
        let records: Vec<_> = self.nft.iter().map(|(_, r)| r.clone()).collect();
        crate::nftables::eval::monitor(&records, 1)
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.nft.is_empty()
    }

    /// The rules that matched, as `table:chain:num`.
    pub fn matched_rules(&self) -> Vec<String> {
        self.records
            .iter()
            .filter_map(|r| match &r.kind {
                TraceKind::Rule {
                    num, matched: true, ..
                } => Some(format!("{}:{}:{}", r.table, r.chain, num)),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Display for TraceRecord {
    /// `[node] nat:KUBE-SERVICES:rule:3 match -A KUBE-SERVICES … => JUMP KUBE-SVC-…`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.node.is_empty() {
            write!(f, "[{}] ", self.node)?;
        }
        write!(f, "{}:{}:", self.table, self.chain)?;
        match &self.kind {
            TraceKind::Rule {
                num,
                text,
                matched,
                verdict,
            } => {
                let m = if *matched { "match" } else { "no-match" };
                write!(f, "rule:{num} {m} {text}")?;
                if let Some(v) = verdict {
                    write!(f, " => {v}")?;
                }
                Ok(())
            }
            TraceKind::Return { num } => write!(f, "return:{num}"),
            TraceKind::Policy { policy, num } => write!(f, "policy:{num} {}", policy.name()),
        }
    }
}

impl fmt::Display for Trace {
    /// iptables and nftables records interleaved in evaluation order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nft = self.nft.iter().peekable();
        for (i, r) in self.records.iter().enumerate() {
            while let Some((_, n)) = nft.next_if(|(at, _)| *at <= i) {
                writeln!(f, "{n}")?;
            }
            writeln!(f, "{r}")?;
        }
        for (_, n) in nft {
            writeln!(f, "{n}")?;
        }
        Ok(())
    }
}

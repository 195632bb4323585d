//! Evaluating a packet against a table's chains: `ipt_do_table`.
//!
//! Models: the walk from a built-in chain through jumps (`-j`, which come
//! back), gotos (`-g`, which do not), `RETURN` and the end of user chains,
//! to a decision — `ACCEPT`, `DROP`, `REJECT`, a NAT decision (`DNAT`,
//! `SNAT`, `MASQUERADE`) or the built-in chain's policy. `MARK` changes the
//! packet mark and continues; `LOG` and rules without a target continue.
//! Every rule whose matches are evaluated is counted once, every matched
//! rule is recorded for the rule counters, and a [`Trace`] records each
//! step when asked. The walker is one loop over a [`Verdict`] per rule.
//!
//! Must never: treat a match it cannot decide as true (an unknown ipset or
//! nfacct object is an [`EvalError`]), take randomness from anything but
//! the [`Choices`] it is given, or read a clock (time is in [`Env`]).
//!
//! Error contract: [`EvalError`] names the table, chain and rule number of
//! the rule that could not be evaluated; nothing is half-applied by the
//! walker itself (state changes — `recent`, `nfacct`, `statistic nth` — of
//! rules before the failing one remain, as in the kernel).

use std::collections::BTreeMap;
use std::net::IpAddr;

pub use super::eval_choice::{Choices, Explored, Explorer, Scripted};
pub use super::eval_recent::RecentTables;
pub use super::eval_trace::{Trace, TraceKind, TraceRecord};

use super::addr::Family;
use super::matches::SetDir;
use super::ruleset::{Counters, Hook, Policy, Ruleset, TableId};
use super::targets::{Masquerade, RejectWith, Target};
use crate::conntrack::NatRange;
use crate::netfilter::CtStates;
use crate::packet::Packet;
use crate::time::Instant;

/// What one rule tells the walker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No match, or a non-terminating target: go on with the next rule.
    Continue,
    /// `ACCEPT`.
    Accept,
    /// `DROP`.
    Drop,
    /// `REJECT`.
    Reject(RejectWith),
    /// `RETURN`.
    Return,
    /// `-j CHAIN`.
    Jump(String),
    /// `-g CHAIN`.
    Goto(String),
    /// `DNAT`.
    Dnat(NatRange),
    /// `SNAT`.
    Snat(NatRange),
    /// `MASQUERADE` (the address comes from the outgoing interface).
    Masquerade(Masquerade),
}

/// How a table decided about a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accepted (by a rule, the end of the chain or an ACCEPT policy).
    Accept,
    /// Dropped.
    Drop,
    /// Rejected with an ICMP error or a TCP reset.
    Reject(RejectWith),
    /// Destination NAT to a range.
    Dnat(NatRange),
    /// Source NAT to a range.
    Snat(NatRange),
    /// Source NAT to the outgoing interface's address.
    Masquerade(Masquerade),
}

/// A rule, located.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleRef {
    /// Table.
    pub table: TableId,
    /// Chain.
    pub chain: String,
    /// 1-based rule number.
    pub num: usize,
    /// `-A CHAIN ...` as iptables-save prints it.
    pub text: String,
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{} `{}`",
            self.table, self.chain, self.num, self.text
        )
    }
}

/// The outcome of evaluating one table at one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    /// The decision.
    pub decision: Decision,
    /// The rule that decided; `None` when a policy or the end of the
    /// built-in chain did.
    pub by: Option<RuleRef>,
    /// Rules whose matches were evaluated.
    pub rules_evaluated: u64,
}

/// A rule or a chain policy whose counters a packet increments.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Hit {
    /// Rule `index` (0-based) of a chain.
    Rule(TableId, String, usize),
    /// The policy of a built-in chain.
    Policy(TableId, String),
}

/// Why a rule could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table}:{chain}:{num}: {reason}")]
pub struct EvalError {
    /// Table.
    pub table: TableId,
    /// Chain.
    pub chain: String,
    /// 1-based rule number (0: the chain itself).
    pub num: usize,
    /// What could not be decided, with a hint.
    pub reason: String,
}

/// The node's answers about its addresses (`-m addrtype`).
pub trait AddrTypeLookup {
    /// The routing type (`RTN_*` index: 1 UNICAST, 2 LOCAL, 3 BROADCAST,
    /// 5 MULTICAST …) of `addr`, counting only addresses of interface
    /// `iface` when given (`--limit-iface-in/out`).
    fn addr_type(&self, addr: IpAddr, iface: Option<&str>) -> usize;
    /// Whether interface `iface` is a bridge (`-m physdev`: a packet that
    /// entered through it came through a bridge port).
    fn is_bridge(&self, _iface: &str) -> bool {
        false
    }
}

/// `skb->ipvs_property` and what `-m ipvs` finds for the packet: set on a
/// packet IPVS forwarded or un-NATed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpvsSkb {
    /// The IPVS connection the packet belongs to, as `conn_out_get` finds
    /// it (`None`: no connection; only `--ipvs` can match).
    pub conn: Option<super::ext_ipvs::IpvsConnFacts>,
}

/// The node's ipsets (`-m set`).
pub trait SetLookup {
    /// Whether the packet's fields selected by `dirs` are in set `name`;
    /// `Err` with a reason when there is no such set or the dimensions do
    /// not fit it.
    fn test_packet(&self, name: &str, pkt: &Packet, dirs: &[SetDir]) -> Result<bool, String>;
}

/// Named nfacct counters (`-m nfacct`).
pub type NfacctCounters = BTreeMap<String, Counters>;

/// The packet being evaluated and what the hook knows about it.
#[derive(Debug, Clone)]
pub struct PacketCtx<'a> {
    /// The packet as it is now.
    pub pkt: &'a Packet,
    /// The hook.
    pub hook: Hook,
    /// Incoming interface (PREROUTING, INPUT, FORWARD).
    pub in_iface: Option<&'a str>,
    /// Outgoing interface (FORWARD, OUTPUT, POSTROUTING).
    pub out_iface: Option<&'a str>,
    /// The packet mark; `MARK` changes it.
    pub mark: u32,
    /// `--ctstate` bits (INVALID when untracked).
    pub ctstate: CtStates,
    /// Set when IPVS handled the packet (`-m ipvs`).
    pub ipvs: Option<IpvsSkb>,
}

/// Everything outside the ruleset that evaluation reads or changes.
pub struct Env<'a> {
    /// Virtual time.
    pub now: Instant,
    /// Address types.
    pub addrs: &'a dyn AddrTypeLookup,
    /// ipsets.
    pub sets: &'a dyn SetLookup,
    /// `recent` tables.
    pub recent: &'a mut RecentTables,
    /// nfacct counters (must exist to be matched).
    pub nfacct: &'a mut NfacctCounters,
    /// `statistic --mode nth` counters, by rule.
    pub nth: &'a mut BTreeMap<(TableId, String, usize), u32>,
    /// `statistic --mode random` outcomes.
    pub choices: &'a mut dyn Choices,
    /// Rules and policies matched, for the counters.
    pub hits: Vec<Hit>,
    /// The trace, when recording.
    pub trace: Option<&'a mut Trace>,
    /// Label for trace records (the node name).
    pub label: &'a str,
}

const MAX_DEPTH: usize = 64;

/// Evaluate the built-in chain of `hook` in `table` for a packet. A table
/// that does not exist, or has no chain at the hook, accepts without
/// evaluating anything.
pub fn evaluate(
    rs: &Ruleset,
    table: TableId,
    ctx: &mut PacketCtx<'_>,
    env: &mut Env<'_>,
) -> Result<ChainOutcome, EvalError> {
    let hook = ctx.hook;
    let accept = ChainOutcome {
        decision: Decision::Accept,
        by: None,
        rules_evaluated: 0,
    };
    let Some(t) = rs.table(table) else {
        return Ok(accept);
    };
    let Some(start) = t.builtin(hook) else {
        return Ok(accept);
    };
    let family = rs.family();
    let fam = if family == Family::Ipv4 { 4 } else { 6 };
    let mut evaluated = 0u64;
    // Frames: (chain name, next rule index). Gotos replace the top frame.
    let mut stack: Vec<(&super::ruleset::Chain, usize)> = vec![(start, 0)];
    let record = |env: &mut Env<'_>, chain: &str, kind: TraceKind, pkt: &Packet| {
        if let Some(tr) = env.trace.as_deref_mut() {
            tr.records.push(TraceRecord {
                node: env.label.to_string(),
                family: fam,
                table,
                chain: chain.to_string(),
                kind,
                packet: pkt.to_string(),
            });
        }
    };
    loop {
        let Some(&(chain, index)) = stack.last() else {
            return Ok(accept);
        };
        let chain_name = chain.name();
        let Some(rule) = chain.rule(index) else {
            // End of chain: policy for built-ins, return for user chains.
            let num = chain.len() + 1;
            if let Some(policy) = chain.policy() {
                record(env, chain_name, TraceKind::Policy { policy, num }, ctx.pkt);
                env.hits.push(Hit::Policy(table, chain_name.to_string()));
                return Ok(ChainOutcome {
                    decision: match policy {
                        Policy::Accept => Decision::Accept,
                        Policy::Drop => Decision::Drop,
                    },
                    by: None,
                    rules_evaluated: evaluated,
                });
            }
            record(env, chain_name, TraceKind::Return { num }, ctx.pkt);
            stack.pop();
            continue;
        };
        if let Some(top) = stack.last_mut() {
            top.1 += 1;
        }
        evaluated += 1;
        let num = index + 1;
        let matched = super::eval_match::rule_matches(rule, ctx, env, (table, chain_name, index))
            .map_err(|reason| EvalError {
            table,
            chain: chain_name.to_string(),
            num,
            reason,
        })?;
        let verdict = if matched {
            env.hits
                .push(Hit::Rule(table, chain_name.to_string(), index));
            target_verdict(rule.target.as_ref(), ctx)
        } else {
            Verdict::Continue
        };
        if env.trace.is_some() {
            let text = format!("-A {chain_name}{}", rule.to_save_args(family));
            let v = matched.then(|| describe(&verdict, rule.target.as_ref()));
            record(
                env,
                chain_name,
                TraceKind::Rule {
                    num,
                    text,
                    matched,
                    verdict: v,
                },
                ctx.pkt,
            );
        }
        let by = || RuleRef {
            table,
            chain: chain_name.to_string(),
            num,
            text: format!("-A {chain_name}{}", rule.to_save_args(family)),
        };
        let decided = |decision| {
            Ok(ChainOutcome {
                decision,
                by: Some(by()),
                rules_evaluated: evaluated,
            })
        };
        match verdict {
            Verdict::Continue => {}
            Verdict::Accept => return decided(Decision::Accept),
            Verdict::Drop => return decided(Decision::Drop),
            Verdict::Reject(w) => return decided(Decision::Reject(w)),
            Verdict::Dnat(r) => return decided(Decision::Dnat(r)),
            Verdict::Snat(r) => return decided(Decision::Snat(r)),
            Verdict::Masquerade(m) => return decided(Decision::Masquerade(m)),
            Verdict::Return => {
                if stack.len() == 1 {
                    // RETURN from a built-in chain: its policy applies.
                    let policy = chain.policy().unwrap_or_default();
                    record(
                        env,
                        chain_name,
                        TraceKind::Policy {
                            policy,
                            num: chain.len() + 1,
                        },
                        ctx.pkt,
                    );
                    env.hits.push(Hit::Policy(table, chain_name.to_string()));
                    return Ok(ChainOutcome {
                        decision: match policy {
                            Policy::Accept => Decision::Accept,
                            Policy::Drop => Decision::Drop,
                        },
                        by: None,
                        rules_evaluated: evaluated,
                    });
                }
                stack.pop();
            }
            Verdict::Jump(ref target) | Verdict::Goto(ref target) => {
                let Some(next) = t.chain(target) else {
                    return Err(EvalError {
                        table,
                        chain: chain_name.to_string(),
                        num,
                        reason: format!("jump to missing chain {target}"),
                    });
                };
                if matches!(verdict, Verdict::Goto(_)) {
                    stack.pop();
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(EvalError {
                        table,
                        chain: chain_name.to_string(),
                        num,
                        reason: "chains nested too deeply (a loop?)".into(),
                    });
                }
                stack.push((next, 0));
            }
        }
    }
}

/// The verdict of a matched rule's target; `MARK` is applied here.
fn target_verdict(target: Option<&Target>, ctx: &mut PacketCtx<'_>) -> Verdict {
    let nat = |n: &super::targets::Nat| NatRange {
        addrs: n.addrs,
        ports: n.ports.map(|p| (p.lo, p.hi)),
        random: n.random,
        random_fully: n.random_fully,
        persistent: n.persistent,
    };
    match target {
        None | Some(Target::Log(_)) => Verdict::Continue,
        Some(Target::Accept) => Verdict::Accept,
        Some(Target::Drop) => Verdict::Drop,
        Some(Target::Return) => Verdict::Return,
        Some(Target::Jump(c)) => Verdict::Jump(c.clone()),
        Some(Target::Goto(c)) => Verdict::Goto(c.clone()),
        Some(Target::Reject(w)) => Verdict::Reject(*w),
        Some(Target::Dnat(n)) => Verdict::Dnat(nat(n)),
        Some(Target::Snat(n)) => Verdict::Snat(nat(n)),
        Some(Target::Masquerade(m)) => Verdict::Masquerade(*m),
        Some(Target::Mark(m)) => {
            ctx.mark = m.apply(ctx.mark);
            Verdict::Continue
        }
    }
}

/// A short description of what a matched rule did, for traces.
fn describe(v: &Verdict, target: Option<&Target>) -> String {
    let range = |r: &NatRange| {
        let mut s = match r.addrs {
            Some((lo, hi)) if lo == hi => lo.to_string(),
            Some((lo, hi)) => format!("{lo}-{hi}"),
            None => String::new(),
        };
        if let Some((lo, hi)) = r.ports {
            if lo == hi {
                s.push_str(&format!(":{lo}"));
            } else {
                s.push_str(&format!(":{lo}-{hi}"));
            }
        }
        s
    };
    match (v, target) {
        (Verdict::Continue, Some(Target::Mark(m))) => {
            format!("MARK 0x{:x}/0x{:x}", m.value, m.mask)
        }
        (Verdict::Continue, Some(Target::Log(_))) => "LOG".into(),
        (Verdict::Continue, _) => "CONTINUE".into(),
        (Verdict::Accept, _) => "ACCEPT".into(),
        (Verdict::Drop, _) => "DROP".into(),
        (Verdict::Reject(w), _) => format!("REJECT {}", w.name()),
        (Verdict::Return, _) => "RETURN".into(),
        (Verdict::Jump(c), _) => format!("JUMP {c}"),
        (Verdict::Goto(c), _) => format!("GOTO {c}"),
        (Verdict::Dnat(r), _) => format!("DNAT {}", range(r)),
        (Verdict::Snat(r), _) => format!("SNAT {}", range(r)),
        (Verdict::Masquerade(_), _) => "MASQUERADE".into(),
    }
}

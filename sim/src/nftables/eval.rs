//! Evaluating a packet against an nftables base chain: `nft_do_chain`.
//!
//! Models: the walk from a base chain through `jump` (which comes back),
//! `goto` (which does not: at the end of a chain reached by `goto` from the
//! base chain, the base chain's policy applies), `return` and the end of
//! regular chains, to a decision — `accept`, `drop`, `reject`, or a NAT
//! statement (`dnat`/`snat`/`masquerade`, which ends evaluation with accept
//! once the binding is chosen, as the kernel's `nft_nat_eval` does) — or the
//! base chain's policy. Statements run left to right; a match that fails, a
//! verdict-map miss or a missing packet field ends the rule (`NFT_BREAK`);
//! `counter`, `meta mark set` and `update`/`add @set` never stop a rule.
//! Verdict maps and set matches, named or anonymous, are one lookup each:
//! the figure [`ChainOutcome::evaluations`] reports is rules visited plus
//! lookups, which stays constant for kube-proxy's map dispatch however many
//! services there are. `numgen random` draws from the [`Choices`] it is
//! given, so an [`Explorer`](crate::netfilter::eval::Explorer) visits every
//! value. Set updates and counter hits are collected in [`Effects`] and
//! applied to the ruleset after the packet ([`Ruleset::apply_effects`]);
//! lookups by the same packet already see its updates.
//!
//! Must never: take randomness from anything but [`NftEnv::choices`], read
//! a clock (time is [`NftEnv::now`]), or change the ruleset while walking
//! it.
//!
//! Error contract: [`EvalError`] names the table, chain and rule handle
//! when a reference cannot be resolved or chains nest deeper than the
//! kernel's jump stack — commit-time checks make both impossible for a
//! ruleset built by [`Ruleset::apply`]; nothing panics.
//!
//! [`Choices`]: crate::netfilter::eval::Choices

use std::fmt;
use std::net::IpAddr;

pub use super::eval_expr::ct_state_bits;
pub use super::eval_trace::{monitor, Trace, TraceKind, TraceRecord};

use super::chain::{Chain, Hook, Policy};
use super::eval_expr::{eval_key, eval_match, eval_vmap, family_sees};
use super::ruleset::Ruleset;
use super::stmt::{NatFlags, NatKind, Reject, Rule, SetUpdate, Stmt};
use super::table::Table;
use super::types::{Family, Verdict};
use super::value::Value;
use crate::netfilter::eval::Choices;
use crate::packet::Packet;
use crate::time::Instant;

/// `NFT_JUMP_STACK_SIZE`: the deepest chain nesting the kernel walks.
const MAX_DEPTH: usize = 16;

/// The packet being evaluated and what the hook knows about it.
#[derive(Debug, Clone)]
pub struct NftPacket<'a> {
    /// The packet as it is now.
    pub pkt: &'a Packet,
    /// The hook.
    pub hook: Hook,
    /// Incoming interface (prerouting, input, forward).
    pub iif: Option<&'a str>,
    /// Outgoing interface (forward, output, postrouting).
    pub oif: Option<&'a str>,
    /// The packet mark; `meta mark set` changes it.
    pub mark: u32,
    /// `ct state` as nft encodes it (invalid 1, established 2, related 4,
    /// new 8, untracked 64).
    pub ct_state: u32,
    /// `ct status` bits; `None` when the packet has no conntrack entry.
    pub ct_status: Option<u32>,
}

/// The node's answer to `fib saddr|daddr type`.
pub trait FibLookup {
    /// The route type (`RTN_*`: 1 unicast, 2 local, 3 broadcast, …) of `addr`.
    fn fib_type(&self, addr: IpAddr) -> u32;
}

/// An `add`/`update @set` made by a packet, applied after its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpdate {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The statement.
    pub update: SetUpdate,
    /// The key the packet gave.
    pub key: Vec<Value>,
    /// When.
    pub at: Instant,
}

/// A `counter` statement a packet passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterHit {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's handle.
    pub handle: u64,
    /// The packet's length.
    pub bytes: u64,
}

/// What packets changed in the ruleset, to apply once their path ends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Set updates, in order.
    pub updates: Vec<PendingUpdate>,
    /// Counter hits, in order.
    pub counters: Vec<CounterHit>,
}

impl Effects {
    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.counters.is_empty()
    }

    /// Whether a recorded update put `key` into `family table set`.
    pub(crate) fn updated(&self, family: Family, table: &str, set: &str, key: &[Value]) -> bool {
        self.updates
            .iter()
            .any(|u| u.family == family && u.table == table && u.update.set == set && u.key == key)
    }

    /// Move everything from `other` in after what is here.
    pub fn append(&mut self, other: &mut Effects) {
        self.updates.append(&mut other.updates);
        self.counters.append(&mut other.counters);
    }
}

/// Everything outside the rules that evaluation reads or changes.
pub struct NftEnv<'a> {
    /// Virtual time.
    pub now: Instant,
    /// Route types for `fib`.
    pub fib: &'a dyn FibLookup,
    /// `numgen random` outcomes.
    pub choices: &'a mut dyn Choices,
    /// Set updates and counter hits of this packet so far.
    pub effects: &'a mut Effects,
    /// The trace, when recording.
    pub trace: Option<&'a mut Trace>,
    /// Label for trace records (the node name).
    pub label: &'a str,
}

/// How a base chain decided about a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Accepted (a rule, or the policy).
    Accept,
    /// Dropped (a rule, a map element, or the policy).
    Drop,
    /// Rejected.
    Reject(Reject),
    /// `dnat to`/`snat to` (the evaluation ended with accept).
    Nat {
        /// Which NAT.
        kind: NatKind,
        /// The new address.
        addr: IpAddr,
        /// The new port, if any.
        port: Option<u16>,
    },
    /// `masquerade` (the address comes from the outgoing interface).
    Masquerade(NatFlags),
}

/// An nftables rule, located.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleRef {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// 1-based position in the chain.
    pub num: usize,
    /// The rule's handle.
    pub handle: u64,
    /// The rule as `nft list` prints it.
    pub text: String,
}

impl fmt::Display for RuleRef {
    /// `ip kube-proxy:reject-chain:1 \`reject\``, like iptables rules.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{}:{} `{}`",
            self.family, self.table, self.chain, self.num, self.text
        )
    }
}

/// The outcome of one base chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainOutcome {
    /// The decision.
    pub decision: Decision,
    /// The rule that decided; `None` when the policy did.
    pub by: Option<RuleRef>,
    /// Rules visited.
    pub rules: u64,
    /// Set and map lookups.
    pub lookups: u64,
}

impl ChainOutcome {
    /// Rules visited plus lookups: the per-packet cost figure.
    pub fn evaluations(&self) -> u64 {
        self.rules + self.lookups
    }
}

/// Why a rule could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{family} {table} {chain} handle {handle}: {reason}")]
pub struct EvalError {
    /// The table's family.
    pub family: Family,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// The rule's handle (0: the chain itself).
    pub handle: u64,
    /// What could not be decided.
    pub reason: String,
}

/// What one rule tells the walker.
enum RuleResult {
    NoMatch,
    Continue,
    Verdict(Verdict),
    Decision(Decision),
}

/// Evaluate base chain `base` of `table` for a packet.
pub fn evaluate(
    table: &Table,
    base: &Chain,
    ctx: &mut NftPacket<'_>,
    env: &mut NftEnv<'_>,
) -> Result<ChainOutcome, EvalError> {
    let err = |chain: &str, handle: u64, reason: String| EvalError {
        family: table.family(),
        table: table.name().to_string(),
        chain: chain.to_string(),
        handle,
        reason,
    };
    let Some(policy) = base.base().map(|b| b.policy) else {
        return Err(err(base.name(), 0, "not a base chain".into()));
    };
    let record = |env: &mut NftEnv<'_>, chain: &str, kind: TraceKind, packet: String| {
        if let Some(tr) = env.trace.as_deref_mut() {
            tr.records.push(TraceRecord {
                node: env.label.to_string(),
                family: table.family(),
                table: table.name().to_string(),
                chain: chain.to_string(),
                kind,
                packet,
            });
        }
    };
    if env.trace.is_some() {
        let text = super::eval_trace::packet_text(ctx.pkt, ctx.iif, ctx.oif);
        record(env, base.name(), TraceKind::Packet, text);
    }
    let (mut rules, mut lookups) = (0u64, 0u64);
    // Frames: (chain, next rule index); a goto replaces the top frame.
    let mut stack: Vec<(&Chain, usize)> = vec![(base, 0)];
    loop {
        let Some(&(chain, index)) = stack.last() else {
            return Err(err(base.name(), 0, "empty chain stack".into()));
        };
        let Some(rule) = chain.rules().get(index) else {
            // The end of a chain: back to the caller, or the policy.
            if stack.len() > 1 || !std::ptr::eq(chain, base) {
                record(env, chain.name(), TraceKind::Return, String::new());
            }
            if stack.len() > 1 {
                stack.pop();
                continue;
            }
            record(env, base.name(), TraceKind::Policy(policy), String::new());
            return Ok(by_policy(policy, rules, lookups));
        };
        if let Some(top) = stack.last_mut() {
            top.1 += 1;
        }
        rules += 1;
        let result = run_rule(rule, table, chain, ctx, env, &mut lookups)
            .map_err(|reason| err(chain.name(), rule.handle(), reason))?;
        if env.trace.is_some() {
            let (matched, verdict) = match &result {
                RuleResult::NoMatch => (false, None),
                RuleResult::Continue => (true, None),
                RuleResult::Verdict(v) => (true, Some(v.to_string())),
                RuleResult::Decision(Decision::Reject(_)) => (true, Some("drop".into())),
                RuleResult::Decision(_) => (true, Some("accept".into())),
            };
            let kind = TraceKind::Rule {
                handle: rule.handle(),
                text: rule.to_string(),
                matched,
                verdict,
            };
            record(env, chain.name(), kind, String::new());
        }
        let decided = |decision| ChainOutcome {
            decision,
            by: Some(RuleRef {
                family: table.family(),
                table: table.name().to_string(),
                chain: chain.name().to_string(),
                num: index + 1,
                handle: rule.handle(),
                text: rule.to_string(),
            }),
            rules,
            lookups,
        };
        match result {
            RuleResult::NoMatch | RuleResult::Continue => {}
            RuleResult::Decision(d) => return Ok(decided(d)),
            RuleResult::Verdict(v) => match v {
                Verdict::Continue => {}
                Verdict::Accept => return Ok(decided(Decision::Accept)),
                Verdict::Drop => return Ok(decided(Decision::Drop)),
                Verdict::Return => {
                    if stack.len() > 1 {
                        record(env, chain.name(), TraceKind::Return, String::new());
                        stack.pop();
                    } else {
                        record(env, base.name(), TraceKind::Policy(policy), String::new());
                        return Ok(by_policy(policy, rules, lookups));
                    }
                }
                Verdict::Jump(ref target) | Verdict::Goto(ref target) => {
                    let Some(next) = table.chain(target) else {
                        return Err(err(
                            chain.name(),
                            rule.handle(),
                            format!("jump to missing chain {target}"),
                        ));
                    };
                    if matches!(v, Verdict::Goto(_)) {
                        stack.pop();
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(err(
                            chain.name(),
                            rule.handle(),
                            "chains nested deeper than the kernel's jump stack".into(),
                        ));
                    }
                    stack.push((next, 0));
                }
            },
        }
    }
}

fn by_policy(policy: Policy, rules: u64, lookups: u64) -> ChainOutcome {
    ChainOutcome {
        decision: match policy {
            Policy::Accept => Decision::Accept,
            Policy::Drop => Decision::Drop,
        },
        by: None,
        rules,
        lookups,
    }
}

fn run_rule(
    rule: &Rule,
    table: &Table,
    chain: &Chain,
    ctx: &mut NftPacket<'_>,
    env: &mut NftEnv<'_>,
    lookups: &mut u64,
) -> Result<RuleResult, String> {
    for stmt in rule.stmts() {
        match stmt {
            Stmt::Match(m) => {
                if !eval_match(m, table, ctx, env, lookups)? {
                    return Ok(RuleResult::NoMatch);
                }
            }
            Stmt::Counter { .. } => env.effects.counters.push(CounterHit {
                family: table.family(),
                table: table.name().to_string(),
                chain: chain.name().to_string(),
                handle: rule.handle(),
                bytes: ctx.pkt.len() as u64,
            }),
            Stmt::Verdict(Verdict::Continue) => {}
            Stmt::Verdict(v) => return Ok(RuleResult::Verdict(v.clone())),
            Stmt::Vmap { key, map } => match eval_vmap(key, map, table, ctx, env, lookups)? {
                Some(Verdict::Continue) => {}
                Some(v) => return Ok(RuleResult::Verdict(v)),
                None => return Ok(RuleResult::NoMatch),
            },
            Stmt::Nat(n) => {
                let addr = match &n.addr {
                    Value::Ipv4(a) => IpAddr::V4(*a),
                    Value::Ipv6(a) => IpAddr::V6(*a),
                    other => return Err(format!("nat to a non-address value {other}")),
                };
                // `dnat ip to …` in an inet table skips other families.
                if addr.is_ipv4() != ctx.pkt.src().is_ipv4() {
                    return Ok(RuleResult::NoMatch);
                }
                return Ok(RuleResult::Decision(Decision::Nat {
                    kind: n.kind,
                    addr,
                    port: n.port,
                }));
            }
            Stmt::Masquerade(flags) => {
                return Ok(RuleResult::Decision(Decision::Masquerade(*flags)))
            }
            Stmt::Reject(r) => return Ok(RuleResult::Decision(Decision::Reject(*r))),
            Stmt::MarkSet(m) => ctx.mark = m.apply(ctx.mark),
            Stmt::SetUpdate(u) => {
                let Some(key) = eval_key(&u.key, ctx, env) else {
                    return Ok(RuleResult::NoMatch);
                };
                let set = table
                    .set(&u.set)
                    .ok_or_else(|| format!("set @{} does not exist", u.set))?;
                // A full set refuses a new key and the rule ends, as the
                // kernel's dynset does.
                let size = set.size() as usize;
                if size > 0
                    && !set.contains(&key, env.now)
                    && !env
                        .effects
                        .updated(table.family(), table.name(), &u.set, &key)
                    && set.len(env.now) >= size
                {
                    return Ok(RuleResult::NoMatch);
                }
                env.effects.updates.push(PendingUpdate {
                    family: table.family(),
                    table: table.name().to_string(),
                    update: u.clone(),
                    key,
                    at: env.now,
                });
            }
        }
    }
    Ok(RuleResult::Continue)
}

impl Ruleset {
    /// The table with `handle` (handles never change while a table lives).
    pub fn table_by_handle(&self, handle: u64) -> Option<&Table> {
        self.tables.get(&handle)
    }

    /// Apply what packets did: set updates (at the time each was made) and
    /// counter hits. Updates of sets or rules that no longer exist are
    /// dropped, as the kernel would never have made them.
    pub fn apply_effects(&mut self, effects: Effects) {
        for u in effects.updates {
            self.update_set((u.family, &u.table), &u.update, &u.key, u.at);
        }
        for c in effects.counters {
            let Some(chain) = self
                .table_mut(c.family, &c.table)
                .and_then(|t| t.chain_mut(&c.chain))
            else {
                continue;
            };
            let Some(rule) = chain.rules.iter_mut().find(|r| r.handle == c.handle) else {
                continue;
            };
            for s in &mut rule.stmts {
                if let Stmt::Counter { packets, bytes } = s {
                    *packets += 1;
                    *bytes += c.bytes;
                }
            }
        }
    }
}

impl Table {
    /// The chain with `handle`.
    pub fn chain_by_handle(&self, handle: u64) -> Option<&Chain> {
        self.chains.get(&handle)
    }
}

/// Whether a table of `family` sees a packet of this IP version.
pub fn table_sees(family: Family, ipv4: bool) -> bool {
    family_sees(family, ipv4)
}

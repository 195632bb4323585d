//! Statements and rules: what a rule does once its matches hold.
//!
//! Models: matches ([`Match`]), `counter`, verdicts, verdict maps
//! (`KEY vmap @map` / `KEY vmap { k : verdict, … }` — the `numgen random mod
//! N vmap { … }` endpoint choice is one), `dnat`/`snat to ADDR[:PORT]`,
//! `masquerade` with its flags, `reject` variants, `meta mark set …`, and
//! `update`/`add @set { key }` (dynamic sets, session affinity); a [`Rule`]
//! is its statements in order, an optional comment and its handle.
//!
//! Evaluation semantics (`eval` implements them): statements run left to
//! right; a match that fails ends the rule; a verdict ends it with that
//! verdict; a verdict map is one lookup (no match: the rule ends, the next
//! rule runs); `counter`, `meta mark set` and set updates never stop a
//! rule; NAT statements choose the binding and end the chain with accept,
//! as the kernel's `nft_nat_eval` sets the verdict.
//!
//! Must never: print differently from nft 1.0.6 for the same state.
//!
//! Error contract: pure data and printing; nothing here fails.

use std::fmt;

use super::duration;
use super::expr::{fmt_key, BinOp, Expr, Match};
use super::types::{Family, Verdict};
use super::value::{Atom, Value};

/// An anonymous verdict map `{ key : verdict, … }` (in `nft list` order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnonMap {
    /// Keys (one atom per component) and verdicts.
    pub elements: Vec<(Vec<Atom>, Verdict)>,
}

impl AnonMap {
    /// The verdict for `key`, if any element matches.
    pub fn lookup(&self, key: &[Value]) -> Option<&Verdict> {
        self.elements
            .iter()
            .find(|(k, _)| super::expr::key_matches(k, key))
            .map(|(_, v)| v)
    }
}

impl fmt::Display for AnonMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ ")?;
        for (i, (k, v)) in self.elements.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt_key(f, k)?;
            write!(f, " : {v}")?;
        }
        f.write_str(" }")
    }
}

/// Where a verdict map lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MapRef {
    /// `@name`: a named map of the table.
    Named(String),
    /// `{ … }` in the rule.
    Anonymous(AnonMap),
}

/// Destination or source NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NatKind {
    /// `dnat`
    Dnat,
    /// `snat`
    Snat,
}

/// `dnat|snat [ip|ip6] to ADDR[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nat {
    /// Which NAT.
    pub kind: NatKind,
    /// The `ip`/`ip6` qualifier (kept only in `inet` tables, as nft does).
    pub family: Option<Family>,
    /// The new address.
    pub addr: Value,
    /// The new port, if any.
    pub port: Option<u16>,
}

/// `masquerade` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NatFlags {
    /// `random`
    pub random: bool,
    /// `fully-random`
    pub fully_random: bool,
    /// `persistent`
    pub persistent: bool,
}

/// How to reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reject {
    /// `reject`: the family's port-unreachable (icmp, icmpv6, or icmpx in inet).
    Default,
    /// `reject with icmp CODE`
    Icmp(&'static str),
    /// `reject with icmpv6 CODE`
    Icmpv6(&'static str),
    /// `reject with icmpx CODE`
    Icmpx(&'static str),
    /// `reject with tcp reset`
    TcpReset,
}

/// `meta mark set …`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MarkSet {
    /// `meta mark set VALUE`
    Value(u32),
    /// `meta mark set meta mark OP VALUE`
    Binop(BinOp, u32),
}

impl MarkSet {
    /// The new mark given the old one.
    pub fn apply(self, old: u32) -> u32 {
        match self {
            MarkSet::Value(v) => v,
            MarkSet::Binop(op, v) => op.apply(old, v),
        }
    }
}

/// `add` or `update` of a dynamic set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SetOp {
    /// `add @set { … }`: insert if absent.
    Add,
    /// `update @set { … }`: insert, or refresh the timeout.
    Update,
}

/// `update @set { key [timeout T] }`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SetUpdate {
    /// Add or update.
    pub op: SetOp,
    /// The set.
    pub set: String,
    /// The key expression (often `ip saddr`).
    pub key: Expr,
    /// A timeout (milliseconds) overriding the set's.
    pub timeout: Option<u64>,
}

/// One statement of a rule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stmt {
    /// A match.
    Match(Match),
    /// `counter packets N bytes M`.
    Counter {
        /// Packets counted.
        packets: u64,
        /// Bytes counted.
        bytes: u64,
    },
    /// A verdict.
    Verdict(Verdict),
    /// `KEY vmap MAP`: one lookup, its verdict if found.
    Vmap {
        /// The key.
        key: Expr,
        /// The map.
        map: MapRef,
    },
    /// `dnat`/`snat`.
    Nat(Nat),
    /// `masquerade [flags]`.
    Masquerade(NatFlags),
    /// `reject …`.
    Reject(Reject),
    /// `meta mark set …`.
    MarkSet(MarkSet),
    /// `add|update @set { … }`.
    SetUpdate(SetUpdate),
}

impl Stmt {
    /// Whether nft counts this as an expression statement (matches); other
    /// statements end protocol-dependency tracking in listings.
    pub(crate) fn is_expression(&self) -> bool {
        matches!(self, Stmt::Match(_))
    }

    /// The chains this statement can jump or go to.
    pub fn chain_refs(&self) -> Vec<&str> {
        match self {
            Stmt::Verdict(v) => v.chain().into_iter().collect(),
            Stmt::Vmap {
                map: MapRef::Anonymous(m),
                ..
            } => m.elements.iter().filter_map(|(_, v)| v.chain()).collect(),
            _ => Vec::new(),
        }
    }

    /// The named sets and maps this statement uses.
    pub fn set_refs(&self) -> Option<&str> {
        match self {
            Stmt::Match(Match {
                right: super::expr::Rhs::Named(n),
                ..
            }) => Some(n),
            Stmt::Vmap {
                map: MapRef::Named(n),
                ..
            } => Some(n),
            Stmt::SetUpdate(u) => Some(&u.set),
            _ => None,
        }
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Match(m) => write!(f, "{m}"),
            Stmt::Counter { packets, bytes } => {
                write!(f, "counter packets {packets} bytes {bytes}")
            }
            Stmt::Verdict(v) => write!(f, "{v}"),
            Stmt::Vmap { key, map } => match map {
                MapRef::Named(n) => write!(f, "{key} vmap @{n}"),
                MapRef::Anonymous(m) => write!(f, "{key} vmap {m}"),
            },
            Stmt::Nat(n) => {
                f.write_str(match n.kind {
                    NatKind::Dnat => "dnat",
                    NatKind::Snat => "snat",
                })?;
                if let Some(fam) = n.family {
                    write!(f, " {fam}")?;
                }
                match (&n.addr, n.port) {
                    (Value::Ipv6(_), Some(p)) => write!(f, " to [{}]:{p}", n.addr),
                    (a, Some(p)) => write!(f, " to {a}:{p}"),
                    (a, None) => write!(f, " to {a}"),
                }
            }
            Stmt::Masquerade(flags) => {
                f.write_str("masquerade")?;
                let names: Vec<&str> = [
                    (flags.random, "random"),
                    (flags.fully_random, "fully-random"),
                    (flags.persistent, "persistent"),
                ]
                .into_iter()
                .filter_map(|(on, n)| on.then_some(n))
                .collect();
                if !names.is_empty() {
                    write!(f, " {}", names.join(","))?;
                }
                Ok(())
            }
            Stmt::Reject(r) => match r {
                Reject::Default => f.write_str("reject"),
                Reject::Icmp(c) => write!(f, "reject with icmp {c}"),
                Reject::Icmpv6(c) => write!(f, "reject with icmpv6 {c}"),
                Reject::Icmpx(c) => write!(f, "reject with icmpx {c}"),
                Reject::TcpReset => f.write_str("reject with tcp reset"),
            },
            Stmt::MarkSet(MarkSet::Value(v)) => write!(f, "meta mark set {}", Value::Mark(*v)),
            Stmt::MarkSet(MarkSet::Binop(op, v)) => write!(
                f,
                "meta mark set {}",
                Expr::Binop {
                    expr: Box::new(Expr::Meta(super::expr::MetaKey::Mark)),
                    op: *op,
                    value: *v,
                }
            ),
            Stmt::SetUpdate(u) => {
                let op = match u.op {
                    SetOp::Add => "add",
                    SetOp::Update => "update",
                };
                write!(f, "{op} @{} {{ {}", u.set, u.key)?;
                if let Some(t) = u.timeout {
                    write!(f, " timeout {}", duration::format(t))?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// A rule: statements in order, an optional comment, a handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub(crate) stmts: Vec<Stmt>,
    pub(crate) comment: Option<String>,
    pub(crate) handle: u64,
    /// Anonymous sets/maps the kernel created for this rule (handles used).
    pub(crate) anon_sets: u64,
}

impl Rule {
    /// The statements in evaluation order.
    pub fn stmts(&self) -> &[Stmt] {
        &self.stmts
    }

    /// The rule's comment.
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_deref()
    }

    /// The rule's handle (unique within its table).
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Chains this rule jumps or goes to.
    pub fn chain_refs(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().flat_map(Stmt::chain_refs)
    }

    /// Named sets and maps this rule uses.
    pub fn set_refs(&self) -> impl Iterator<Item = &str> {
        self.stmts.iter().filter_map(Stmt::set_refs)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.stmts.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        if let Some(c) = &self.comment {
            if !self.stmts.is_empty() {
                f.write_str(" ")?;
            }
            write!(f, "comment \"{c}\"")?;
        }
        Ok(())
    }
}

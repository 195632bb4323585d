//! Expressions and matches: what a rule reads from a packet and what it
//! compares that with.
//!
//! Models: payload fields (`ip saddr`, `ip6 daddr`, `ip protocol`,
//! `tcp dport`, `th sport`…), `meta` keys, `ct state`/`ct status`,
//! `fib saddr|daddr type`, `numgen random mod N`, concatenations
//! (`ip daddr . meta l4proto . th dport`), `meta mark & 0x4000`; and a
//! [`Match`]: an expression, an operator and a right-hand side — an atom, an
//! anonymous set, or a named set (`@name`). Printing is `nft list`'s.
//!
//! Evaluation semantics, for the evaluator that walks these:
//! - `tcp`/`udp`/`sctp` fields match only packets of that protocol (nft adds
//!   the protocol check); `th` fields read the transport header of any
//!   protocol with ports.
//! - [`RelOp::Implicit`] on a bitmask type (`ct state new,established`)
//!   matches when any of the bits is set; on other types it is equality.
//! - A named-set or anonymous-set right-hand side is one set lookup.
//!
//! Must never: hold a right-hand side of a different type than its
//! expression (the parser checks), or print differently from nft 1.0.6.
//!
//! Error contract: pure data and printing; nothing here fails.

use std::fmt;

use super::types::{DataType, Family, KeyType};
use super::value::{sort_key, Atom, Value};

/// A transport header as a rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4Header {
    /// `th`: any transport header with ports.
    Th,
    /// `tcp`
    Tcp,
    /// `udp`
    Udp,
    /// `sctp`
    Sctp,
}

impl L4Header {
    /// The keyword.
    pub fn name(self) -> &'static str {
        match self {
            L4Header::Th => "th",
            L4Header::Tcp => "tcp",
            L4Header::Udp => "udp",
            L4Header::Sctp => "sctp",
        }
    }

    /// The protocol number a named header implies (`th`: none).
    pub fn proto(self) -> Option<u8> {
        match self {
            L4Header::Th => None,
            L4Header::Tcp => Some(super::value::PROTO_TCP),
            L4Header::Udp => Some(super::value::PROTO_UDP),
            L4Header::Sctp => Some(super::value::PROTO_SCTP),
        }
    }

    pub(crate) fn from_proto(p: u8) -> Option<L4Header> {
        [L4Header::Tcp, L4Header::Udp, L4Header::Sctp]
            .into_iter()
            .find(|h| h.proto() == Some(p))
    }
}

/// Source or destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortField {
    /// `sport`
    Sport,
    /// `dport`
    Dport,
}

/// A packet header field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PayloadField {
    /// `ip saddr`
    IpSaddr,
    /// `ip daddr`
    IpDaddr,
    /// `ip protocol`
    IpProtocol,
    /// `ip6 saddr`
    Ip6Saddr,
    /// `ip6 daddr`
    Ip6Daddr,
    /// `ip6 nexthdr`
    Ip6Nexthdr,
    /// `tcp|udp|sctp|th sport|dport`
    Port(L4Header, PortField),
}

impl PayloadField {
    /// The field's type.
    pub fn data_type(self) -> DataType {
        match self {
            PayloadField::IpSaddr | PayloadField::IpDaddr => DataType::Ipv4Addr,
            PayloadField::Ip6Saddr | PayloadField::Ip6Daddr => DataType::Ipv6Addr,
            PayloadField::IpProtocol | PayloadField::Ip6Nexthdr => DataType::InetProto,
            PayloadField::Port(..) => DataType::InetService,
        }
    }

    /// The network family a field belongs to (`None`: transport).
    pub fn network_family(self) -> Option<Family> {
        match self {
            PayloadField::IpSaddr | PayloadField::IpDaddr | PayloadField::IpProtocol => {
                Some(Family::Ip)
            }
            PayloadField::Ip6Saddr | PayloadField::Ip6Daddr | PayloadField::Ip6Nexthdr => {
                Some(Family::Ip6)
            }
            PayloadField::Port(..) => None,
        }
    }
}

/// A `meta` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetaKey {
    /// `meta l4proto`
    L4proto,
    /// `meta mark`
    Mark,
    /// `meta nfproto`
    Nfproto,
    /// `iifname`
    Iifname,
    /// `oifname`
    Oifname,
}

impl MetaKey {
    /// The key's type.
    pub fn data_type(self) -> DataType {
        match self {
            MetaKey::L4proto => DataType::InetProto,
            MetaKey::Mark => DataType::Mark,
            MetaKey::Nfproto => DataType::NfProto,
            MetaKey::Iifname | MetaKey::Oifname => DataType::Ifname,
        }
    }
}

/// A conntrack key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtKey {
    /// `ct state`
    State,
    /// `ct status`
    Status,
}

/// Which address `fib … type` looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FibKey {
    /// `fib saddr type`
    Saddr,
    /// `fib daddr type`
    Daddr,
}

/// A bitwise operator on a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BinOp {
    /// `&` / `and`
    And,
    /// `|` / `or`
    Or,
    /// `^` / `xor`
    Xor,
}

impl BinOp {
    /// Apply to a value.
    pub fn apply(self, a: u32, b: u32) -> u32 {
        match self {
            BinOp::And => a & b,
            BinOp::Or => a | b,
            BinOp::Xor => a ^ b,
        }
    }

    pub(crate) fn from_word(w: &str) -> Option<BinOp> {
        match w {
            "&" | "and" => Some(BinOp::And),
            "|" | "or" => Some(BinOp::Or),
            "^" | "xor" => Some(BinOp::Xor),
            _ => None,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            BinOp::And => "&",
            BinOp::Or => "|",
            BinOp::Xor => "^",
        }
    }
}

/// Something a rule reads from the packet or its context.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Expr {
    /// A header field.
    Payload(PayloadField),
    /// A `meta` key.
    Meta(MetaKey),
    /// A conntrack key.
    Ct(CtKey),
    /// `fib saddr|daddr type`: the route type of the address.
    Fib(FibKey),
    /// `numgen random mod N [offset M]`: a random number in `offset..offset+N`.
    Numgen {
        /// N
        modulus: u32,
        /// M
        offset: u32,
    },
    /// `a . b . c`
    Concat(Vec<Expr>),
    /// `meta mark & 0x4000` (only on marks).
    Binop {
        /// The operand.
        expr: Box<Expr>,
        /// The operator.
        op: BinOp,
        /// The constant.
        value: u32,
    },
}

impl Expr {
    /// The type of the value(s) this yields: one type, or one per
    /// concatenation component.
    pub fn key_type(&self) -> KeyType {
        match self {
            Expr::Concat(parts) => KeyType(parts.iter().flat_map(|p| p.key_type().0).collect()),
            Expr::Payload(f) => KeyType::single(f.data_type()),
            Expr::Meta(k) => KeyType::single(k.data_type()),
            Expr::Ct(CtKey::State) => KeyType::single(DataType::CtState),
            Expr::Ct(CtKey::Status) => KeyType::single(DataType::CtStatus),
            Expr::Fib(_) => KeyType::single(DataType::FibAddrType),
            Expr::Numgen { .. } => KeyType::single(DataType::Integer),
            Expr::Binop { expr, .. } => expr.key_type(),
        }
    }

    /// The expressions of a concatenation (or this one alone).
    pub fn parts(&self) -> &[Expr] {
        match self {
            Expr::Concat(p) => p,
            other => std::slice::from_ref(other),
        }
    }

    pub(crate) fn parts_mut(&mut self) -> &mut [Expr] {
        match self {
            Expr::Concat(p) => p,
            other => std::slice::from_mut(other),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Payload(p) => match p {
                PayloadField::IpSaddr => f.write_str("ip saddr"),
                PayloadField::IpDaddr => f.write_str("ip daddr"),
                PayloadField::IpProtocol => f.write_str("ip protocol"),
                PayloadField::Ip6Saddr => f.write_str("ip6 saddr"),
                PayloadField::Ip6Daddr => f.write_str("ip6 daddr"),
                PayloadField::Ip6Nexthdr => f.write_str("ip6 nexthdr"),
                PayloadField::Port(h, PortField::Sport) => write!(f, "{} sport", h.name()),
                PayloadField::Port(h, PortField::Dport) => write!(f, "{} dport", h.name()),
            },
            Expr::Meta(k) => f.write_str(match k {
                MetaKey::L4proto => "meta l4proto",
                MetaKey::Mark => "meta mark",
                MetaKey::Nfproto => "meta nfproto",
                MetaKey::Iifname => "iifname",
                MetaKey::Oifname => "oifname",
            }),
            Expr::Ct(CtKey::State) => f.write_str("ct state"),
            Expr::Ct(CtKey::Status) => f.write_str("ct status"),
            Expr::Fib(FibKey::Saddr) => f.write_str("fib saddr type"),
            Expr::Fib(FibKey::Daddr) => f.write_str("fib daddr type"),
            Expr::Numgen { modulus, offset } => {
                write!(f, "numgen random mod {modulus}")?;
                if *offset != 0 {
                    write!(f, " offset {offset}")?;
                }
                Ok(())
            }
            Expr::Concat(parts) => {
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" . ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            Expr::Binop { expr, op, value } => {
                write!(f, "{expr} {} {}", op.symbol(), Value::Mark(*value))
            }
        }
    }
}

/// A relational operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RelOp {
    /// No operator written: equality, or any-bit for bitmask types.
    Implicit,
    /// `==`
    Eq,
    /// `!=`
    Neq,
}

/// An anonymous set `{ a, b }` (elements in `nft list` order; interval sets
/// merged as the kernel stores them).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnonSet {
    /// The elements: one atom per key component.
    pub elements: Vec<Vec<Atom>>,
}

impl AnonSet {
    /// Whether the key (one value per component) is in the set.
    pub fn contains(&self, key: &[Value]) -> bool {
        self.elements.iter().any(|e| key_matches(e, key))
    }
}

/// Whether `key` matches element `elem` (component-wise).
pub(crate) fn key_matches(elem: &[Atom], key: &[Value]) -> bool {
    elem.len() == key.len() && elem.iter().zip(key).all(|(a, v)| a.contains(v))
}

/// Sort elements in `nft list` order.
pub(crate) fn sort_elements<T>(elems: &mut [T], key: impl Fn(&T) -> &[Atom]) {
    elems.sort_by_cached_key(|e| sort_key(&lower_values(key(e))));
}

fn lower_values(atoms: &[Atom]) -> Vec<Value> {
    atoms
        .iter()
        .map(|a| match a {
            Atom::Value(v) | Atom::Prefix(v, _) | Atom::Range(v, _) => v.clone(),
        })
        .collect()
}

pub(crate) fn fmt_key(f: &mut fmt::Formatter<'_>, atoms: &[Atom]) -> fmt::Result {
    for (i, a) in atoms.iter().enumerate() {
        if i > 0 {
            f.write_str(" . ")?;
        }
        write!(f, "{a}")?;
    }
    Ok(())
}

impl fmt::Display for AnonSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{ ")?;
        for (i, e) in self.elements.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt_key(f, e)?;
        }
        f.write_str(" }")
    }
}

/// What a match compares with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rhs {
    /// A constant: one atom per key component.
    Key(Vec<Atom>),
    /// An anonymous set.
    Set(AnonSet),
    /// A named set, `@name`.
    Named(String),
}

/// `expr [op] rhs`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    /// What is read.
    pub left: Expr,
    /// How it is compared.
    pub op: RelOp,
    /// What it is compared with.
    pub right: Rhs,
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.left)?;
        let bitmask = self
            .left
            .key_type()
            .parts()
            .first()
            .is_some_and(|t| t.is_bitmask());
        let binop = matches!(self.left, Expr::Binop { .. });
        match self.op {
            RelOp::Neq => f.write_str(" !=")?,
            RelOp::Eq if binop || (bitmask && matches!(self.right, Rhs::Key(_))) => {
                f.write_str(" ==")?
            }
            RelOp::Implicit if binop => f.write_str(" ==")?,
            _ => {}
        }
        match &self.right {
            Rhs::Key(atoms) => {
                f.write_str(" ")?;
                fmt_key(f, atoms)
            }
            Rhs::Set(s) => write!(f, " {s}"),
            Rhs::Named(n) => write!(f, " @{n}"),
        }
    }
}

//! The rule parser: the statements after `add rule FAMILY TABLE CHAIN`, or a
//! rule line inside a `chain { … }` block of a listing.
//!
//! Models: the statement grammar knftables transactions and `nft list`
//! output use (see [`super::stmt`] and [`super::expr`]), with every value
//! parsed as the type of the expression it is compared with. The rule then
//! goes through [`super::normalize`], so the stored rule is what `nft list`
//! would print.
//!
//! Must never: skip a token it does not understand, or accept a value of the
//! wrong type.
//!
//! Error contract: [`NftError`] at the offending token; statements nft has
//! but this model lacks are [`ErrorKind::Unsupported`] with a hint.

use super::duration;
use super::error::{ErrorKind, NftError};
use super::expr::{Expr, Match, MetaKey, RelOp, Rhs};
use super::expr_parse::{parse_expr, parse_map_ref, parse_rhs, parse_set_name};
pub(crate) use super::expr_parse::{parse_key, parse_verdict};
use super::lexer::{Cursor, TokKind, Token};
use super::normalize;
use super::stmt::{MapRef, MarkSet, Nat, NatFlags, NatKind, Reject, SetOp, SetUpdate, Stmt};
use super::types::{DataType, Family, Verdict};
use super::value::Value;

/// A parsed rule before it is placed in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedRule {
    pub stmts: Vec<Stmt>,
    pub comment: Option<String>,
    /// Anonymous sets and maps the kernel would create.
    pub anon_sets: u64,
}

/// Whether the cursor is at the end of a rule.
fn at_rule_end(c: &Cursor) -> bool {
    match c.peek() {
        None => true,
        Some(t) => t.ends_command() || t.kind == TokKind::RBrace,
    }
}

/// Parse one rule up to (not including) its terminator.
pub(crate) fn parse_rule(c: &mut Cursor, family: Family) -> Result<ParsedRule, NftError> {
    let start = c.peek().cloned();
    let mut stmts = Vec::new();
    let mut comment = None;
    while !at_rule_end(c) {
        if comment.is_some() {
            return Err(c.expected("end of rule after its comment"));
        }
        let t = c.word("a statement")?;
        if t.text == "comment" {
            let s = c.expect_kind(TokKind::Str, "a quoted comment")?;
            super::types::check_comment(&s.text).map_err(|k| s.err(k))?;
            comment = Some(s.text.clone());
            continue;
        }
        stmts.push(parse_stmt(c, t, family)?);
    }
    if stmts.is_empty() {
        return Err(match start {
            Some(t) if !t.ends_command() && t.kind != TokKind::RBrace => {
                t.err(ErrorKind::unexpected(&t.text, "a statement"))
            }
            _ => c.expected("a statement"),
        });
    }
    let anon_sets = stmts.iter().filter(|s| has_anon(s)).count() as u64;
    let at = start.unwrap_or_else(|| Token {
        kind: TokKind::Word,
        text: String::new(),
        line: 0,
        col: 0,
    });
    let stmts = normalize::normalize(stmts, family).map_err(|k| at.err(k))?;
    Ok(ParsedRule {
        stmts,
        comment,
        anon_sets,
    })
}

fn has_anon(s: &Stmt) -> bool {
    matches!(
        s,
        Stmt::Match(Match {
            right: Rhs::Set(_),
            ..
        }) | Stmt::Vmap {
            map: MapRef::Anonymous(_),
            ..
        }
    )
}

fn parse_stmt(c: &mut Cursor, t: &Token, family: Family) -> Result<Stmt, NftError> {
    let w = t.text.as_str();
    match w {
        "ip" | "ip6" | "tcp" | "udp" | "sctp" | "th" | "meta" | "mark" | "iifname"
        | "oifname" | "ct" | "fib" | "numgen" => parse_expr_stmt(c, t, family),
        "counter" => {
            let (mut packets, mut bytes) = (0, 0);
            if c.eat("packets") {
                packets = number(c, "packet count")?;
                c.expect("bytes", "`bytes` after the packet count")?;
                bytes = number(c, "byte count")?;
            }
            Ok(Stmt::Counter { packets, bytes })
        }
        "reject" => parse_reject(c, family),
        "dnat" | "snat" => parse_nat(c, t, family),
        "masquerade" => {
            let mut flags = NatFlags::default();
            if c.peek_is("to") {
                return Err(c.peek().map_or_else(
                    || c.expected("masquerade flags"),
                    |t| t.err(ErrorKind::unsupported("to", "masquerade to a port range is not modelled")),
                ));
            }
            while let Some(t) = c.peek() {
                match t.text.as_str() {
                    "random" => flags.random = true,
                    "fully-random" => flags.fully_random = true,
                    "persistent" => flags.persistent = true,
                    _ => break,
                }
                c.next();
                if !c.eat_kind(TokKind::Comma) {
                    break;
                }
            }
            Ok(Stmt::Masquerade(flags))
        }
        "update" | "add" => parse_set_update(c, t, family),
        _ if Verdict::is_keyword(w) => {
            let chain = if Verdict::takes_chain(w) {
                Some(c.name("a chain name")?.text.as_str())
            } else {
                None
            };
            Ok(Stmt::Verdict(
                Verdict::from_words(w, chain).ok_or_else(|| t.err(ErrorKind::unexpected(w, "a verdict")))?,
            ))
        }
        "log" | "limit" | "notrack" | "queue" | "redirect" | "quota" | "dup" | "fwd" | "tproxy"
        | "synproxy" | "flow" | "icmp" | "icmpv6" | "ether" | "vlan" | "arp" | "rt" | "socket"
        | "osf" | "exthdr" | "tcpopt" | "ipsec" | "hash" | "symhash" | "jhash" | "dccp"
        | "udplite" | "esp" | "ah" | "comp" | "gre" | "igmp" | "sctp_chunk" | "oif" | "iif"
        | "objref" => Err(t.err(ErrorKind::unsupported(
            w,
            "kube-proxy never emits this statement or expression; the simulator models ip/ip6/th/tcp/udp/sctp fields, meta l4proto/mark/nfproto/iifname/oifname, ct state/status, fib, numgen, counters, verdicts, vmaps, nat, reject, meta mark set and set updates",
        ))),
        _ => Err(t.err(ErrorKind::unexpected(w, "a statement"))),
    }
}

fn number(c: &mut Cursor, what: &'static str) -> Result<u64, NftError> {
    let t = c.word(what)?;
    t.text
        .parse()
        .map_err(|_| t.err(ErrorKind::bad(what, &t.text, "expected a decimal number")))
}

fn parse_expr_stmt(c: &mut Cursor, t: &Token, family: Family) -> Result<Stmt, NftError> {
    let left = parse_expr(c, t, family)?;
    if c.eat("vmap") {
        let map = parse_map_ref(c, &left.key_type())?;
        return Ok(Stmt::Vmap { key: left, map });
    }
    if c.peek_is("set") {
        let s = c.need("set")?;
        if left != Expr::Meta(MetaKey::Mark) {
            return Err(s.err(ErrorKind::unsupported(
                "set",
                "only meta mark set is modelled",
            )));
        }
        return parse_mark_set(c, family);
    }
    let op = if c.eat("==") {
        RelOp::Eq
    } else if c.eat("!=") {
        RelOp::Neq
    } else {
        RelOp::Implicit
    };
    let kt = left.key_type();
    let right = parse_rhs(c, &kt)?;
    Ok(Stmt::Match(Match { left, op, right }))
}

fn parse_mark_set(c: &mut Cursor, family: Family) -> Result<Stmt, NftError> {
    let t = c.word("a mark value or meta mark")?;
    if t.text == "meta" || t.text == "mark" {
        let e = parse_expr(c, t, family)?;
        return match e {
            Expr::Binop { op, value, .. } => Ok(Stmt::MarkSet(MarkSet::Binop(op, value))),
            _ => Err(t.err(ErrorKind::unsupported(
                &t.text,
                "meta mark set takes a value or `meta mark OP VALUE`",
            ))),
        };
    }
    match Value::parse(DataType::Mark, &t.text).map_err(|k| t.err(k))? {
        Value::Mark(v) => Ok(Stmt::MarkSet(MarkSet::Value(v))),
        _ => Err(t.err(ErrorKind::bad("mark", &t.text, "expected a number"))),
    }
}

fn parse_reject(c: &mut Cursor, family: Family) -> Result<Stmt, NftError> {
    if !c.eat("with") {
        return Ok(Stmt::Reject(Reject::Default));
    }
    let kind = c.word("icmp, icmpv6, icmpx or tcp")?;
    if kind.text == "tcp" {
        c.expect("reset", "`reset`")?;
        return Ok(Stmt::Reject(Reject::TcpReset));
    }
    let codes: &[&'static str] = match kind.text.as_str() {
        "icmp" => &[
            "net-unreachable",
            "host-unreachable",
            "prot-unreachable",
            "port-unreachable",
            "net-prohibited",
            "host-prohibited",
            "admin-prohibited",
        ],
        "icmpv6" => &[
            "no-route",
            "admin-prohibited",
            "addr-unreachable",
            "port-unreachable",
            "policy-fail",
            "reject-route",
        ],
        "icmpx" => &[
            "port-unreachable",
            "admin-prohibited",
            "no-route",
            "host-unreachable",
        ],
        _ => {
            return Err(kind.err(ErrorKind::unexpected(
                &kind.text,
                "icmp, icmpv6, icmpx or tcp",
            )))
        }
    };
    c.eat("type");
    let code_tok = c.word("a reject code")?;
    let code = codes
        .iter()
        .find(|k| **k == code_tok.text)
        .copied()
        .ok_or_else(|| {
            code_tok.err(ErrorKind::bad(
                "reject code",
                &code_tok.text,
                format!("expected one of {}", codes.join(", ")),
            ))
        })?;
    let wrong_family = match kind.text.as_str() {
        "icmp" => family == Family::Ip6,
        "icmpv6" => family == Family::Ip,
        _ => family != Family::Inet,
    };
    if wrong_family {
        return Err(kind.err(ErrorKind::invalid(
            &kind.text,
            format!("reject with {} is not valid in a {family} table", kind.text),
        )));
    }
    let default = code == "port-unreachable";
    Ok(Stmt::Reject(match kind.text.as_str() {
        _ if default && (kind.text == "icmpx") == (family == Family::Inet) => Reject::Default,
        "icmp" => Reject::Icmp(code),
        "icmpv6" => Reject::Icmpv6(code),
        _ => Reject::Icmpx(code),
    }))
}

fn parse_nat(c: &mut Cursor, t: &Token, family: Family) -> Result<Stmt, NftError> {
    let kind = if t.text == "dnat" {
        NatKind::Dnat
    } else {
        NatKind::Snat
    };
    let mut qual = None;
    if let Some(f) = c.peek().and_then(|p| match p.text.as_str() {
        "ip" => Some(Family::Ip),
        "ip6" => Some(Family::Ip6),
        _ => None,
    }) {
        c.next();
        qual = Some(f);
    }
    c.expect("to", "`to`")?;
    let a = c.word("an address")?;
    let addr_family = qual.or(match family {
        Family::Inet => None,
        f => Some(f),
    });
    let bad = |reason: &str| a.err(ErrorKind::bad("nat address", &a.text, reason));
    let (addr, port) = if let Some(rest) = a.text.strip_prefix('[') {
        let (ip, tail) = rest.split_once(']').ok_or_else(|| bad("missing `]`"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p),
            None if tail.is_empty() => None,
            None => return Err(bad("expected [address]:port")),
        };
        (
            Value::parse(DataType::Ipv6Addr, ip).map_err(|k| a.err(k))?,
            port,
        )
    } else if a.text.matches(':').count() == 1 {
        let (ip, p) = a
            .text
            .split_once(':')
            .ok_or_else(|| bad("expected address:port"))?;
        (
            Value::parse(DataType::Ipv4Addr, ip).map_err(|k| a.err(k))?,
            Some(p),
        )
    } else if a.text.contains(':') {
        (
            Value::parse(DataType::Ipv6Addr, &a.text).map_err(|k| a.err(k))?,
            None,
        )
    } else {
        (
            Value::parse(DataType::Ipv4Addr, &a.text).map_err(|k| a.err(k))?,
            None,
        )
    };
    let port = match port {
        Some(p) => match Value::parse(DataType::InetService, p).map_err(|k| a.err(k))? {
            Value::Port(n) => Some(n),
            _ => None,
        },
        None => None,
    };
    let is_v6 = matches!(addr, Value::Ipv6(_));
    match addr_family {
        None => {
            return Err(a.err(ErrorKind::invalid(
                &t.text,
                "in an inet table, say which family: `dnat ip to …` or `dnat ip6 to …`",
            )))
        }
        Some(Family::Ip) if is_v6 => return Err(bad("an IPv6 address where IPv4 is expected")),
        Some(Family::Ip6) if !is_v6 => return Err(bad("an IPv4 address where IPv6 is expected")),
        _ => {}
    }
    if qual.is_some() && family != Family::Inet && qual != Some(family) {
        return Err(t.err(ErrorKind::invalid(
            &t.text,
            format!(
                "the {} qualifier does not match the {family} table",
                qual.map_or("", Family::name)
            ),
        )));
    }
    Ok(Stmt::Nat(Nat {
        kind,
        family: if family == Family::Inet { qual } else { None },
        addr,
        port,
    }))
}

fn parse_set_update(c: &mut Cursor, t: &Token, family: Family) -> Result<Stmt, NftError> {
    let op = if t.text == "add" {
        SetOp::Add
    } else {
        SetOp::Update
    };
    let set = parse_set_name(c)?.ok_or_else(|| c.expected("@set"))?;
    c.expect_kind(TokKind::LBrace, "`{`")?;
    let k = c.word("the key expression")?;
    let key = parse_expr(c, k, family)?;
    let mut timeout = None;
    if c.eat("timeout") {
        let tt = c.word("a timeout")?;
        timeout = Some(duration::parse(&tt.text).map_err(|e| tt.err(e))?);
    }
    c.expect_kind(TokKind::RBrace, "`}`")?;
    Ok(Stmt::SetUpdate(SetUpdate {
        op,
        set,
        key,
        timeout,
    }))
}

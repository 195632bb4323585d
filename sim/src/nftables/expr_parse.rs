//! The expression parser: what a rule reads (`ip daddr`, `th dport`,
//! `meta mark & 0x4000`, `numgen random mod N`, concatenations) and what it
//! is compared with (values, prefixes, ranges, flag lists, `@set`,
//! anonymous sets and verdict maps), each value parsed as the expression's
//! type.
//!
//! Models: the expression grammar of knftables transactions and `nft list`
//! output; one-element anonymous sets become plain comparisons here, larger
//! ones go through [`super::normalize::anon_set`].
//!
//! Must never: accept a field, key or operator it does not model — those are
//! refused with a hint; or a value of another type than the expression's.
//!
//! Error contract: [`NftError`] at the offending token.

use super::error::{ErrorKind, NftError};
use super::expr::{
    AnonSet, BinOp, CtKey, Expr, FibKey, L4Header, MetaKey, PayloadField, PortField, Rhs,
};
use super::lexer::{Cursor, TokKind, Token};
use super::normalize;
use super::stmt::{AnonMap, MapRef};
use super::types::{DataType, Family, KeyType, Verdict};
use super::value::{Atom, Value};

/// Parse one primary expression starting at keyword `t`.
pub(crate) fn parse_primary(c: &mut Cursor, t: &Token, family: Family) -> Result<Expr, NftError> {
    let unsupported = |c: &Cursor, hint: &'static str| {
        Err(match c.prev() {
            Some(p) => p.err(ErrorKind::unsupported(
                &format!("{} {}", t.text, p.text),
                hint,
            )),
            None => c.expected("a field"),
        })
    };
    let field = |c: &mut Cursor, what: &'static str| c.word(what).map(|f| f.text.clone());
    let expr = match t.text.as_str() {
        "ip" => match field(c, "ip saddr, daddr or protocol")?.as_str() {
            "saddr" => Expr::Payload(PayloadField::IpSaddr),
            "daddr" => Expr::Payload(PayloadField::IpDaddr),
            "protocol" => Expr::Payload(PayloadField::IpProtocol),
            _ => return unsupported(c, "only ip saddr, ip daddr and ip protocol are modelled"),
        },
        "ip6" => match field(c, "ip6 saddr, daddr or nexthdr")?.as_str() {
            "saddr" => Expr::Payload(PayloadField::Ip6Saddr),
            "daddr" => Expr::Payload(PayloadField::Ip6Daddr),
            "nexthdr" => Expr::Payload(PayloadField::Ip6Nexthdr),
            _ => return unsupported(c, "only ip6 saddr, ip6 daddr and ip6 nexthdr are modelled"),
        },
        "tcp" | "udp" | "sctp" | "th" => {
            let h = match t.text.as_str() {
                "tcp" => L4Header::Tcp,
                "udp" => L4Header::Udp,
                "sctp" => L4Header::Sctp,
                _ => L4Header::Th,
            };
            match field(c, "sport or dport")?.as_str() {
                "sport" => Expr::Payload(PayloadField::Port(h, PortField::Sport)),
                "dport" => Expr::Payload(PayloadField::Port(h, PortField::Dport)),
                _ => {
                    return unsupported(c, "only sport and dport of transport headers are modelled")
                }
            }
        }
        "meta" => match field(c, "a meta key")?.as_str() {
            "l4proto" => Expr::Meta(MetaKey::L4proto),
            "mark" => Expr::Meta(MetaKey::Mark),
            "nfproto" => Expr::Meta(MetaKey::Nfproto),
            "iifname" => Expr::Meta(MetaKey::Iifname),
            "oifname" => Expr::Meta(MetaKey::Oifname),
            _ => {
                return unsupported(
                    c,
                    "only meta l4proto, mark, nfproto, iifname and oifname are modelled",
                )
            }
        },
        "mark" => Expr::Meta(MetaKey::Mark),
        "iifname" => Expr::Meta(MetaKey::Iifname),
        "oifname" => Expr::Meta(MetaKey::Oifname),
        "ct" => match field(c, "ct state or status")?.as_str() {
            "state" => Expr::Ct(CtKey::State),
            "status" => Expr::Ct(CtKey::Status),
            _ => return unsupported(c, "only ct state and ct status are modelled"),
        },
        "fib" => {
            let key = match field(c, "fib saddr or daddr")?.as_str() {
                "saddr" => FibKey::Saddr,
                "daddr" => FibKey::Daddr,
                _ => return unsupported(c, "only fib saddr type and fib daddr type are modelled"),
            };
            if !c.eat("type") {
                return Err(match c.peek() {
                    Some(p) => p.err(ErrorKind::unsupported(
                        &p.text,
                        "only `fib saddr type` and `fib daddr type` are modelled",
                    )),
                    None => c.expected("`type`"),
                });
            }
            Expr::Fib(key)
        }
        "numgen" => {
            let mode = c.word("random")?;
            if mode.text != "random" {
                return Err(mode.err(ErrorKind::unsupported(
                    &mode.text,
                    "only numgen random is modelled",
                )));
            }
            c.expect("mod", "`mod`")?;
            let m = c.word("the modulus")?;
            let modulus: u32 = m.text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                m.err(ErrorKind::bad(
                    "modulus",
                    &m.text,
                    "expected a positive number",
                ))
            })?;
            let mut offset = 0;
            if c.eat("offset") {
                let o = c.word("the offset")?;
                offset = o
                    .text
                    .parse()
                    .map_err(|_| o.err(ErrorKind::bad("offset", &o.text, "expected a number")))?;
            }
            Expr::Numgen { modulus, offset }
        }
        _ => return Err(t.err(ErrorKind::unexpected(&t.text, "an expression"))),
    };
    check_family(&expr, t, family)?;
    Ok(expr)
}

pub(crate) fn check_family(e: &Expr, t: &Token, family: Family) -> Result<(), NftError> {
    match e {
        Expr::Payload(f) => match (f.network_family(), family) {
            (Some(Family::Ip), Family::Ip6) | (Some(Family::Ip6), Family::Ip) => {
                Err(t.err(ErrorKind::ConflictingProtocols {
                    token: t.text.clone(),
                    reason: format!("{} header fields cannot match in a {family} table", t.text),
                }))
            }
            _ => Ok(()),
        },
        Expr::Meta(MetaKey::Nfproto) if family != Family::Inet => Err(t.err(ErrorKind::invalid(
            "meta nfproto",
            "meta nfproto is only useful in the inet family",
        ))),
        _ => Ok(()),
    }
}

pub(crate) fn parse_expr(c: &mut Cursor, t: &Token, family: Family) -> Result<Expr, NftError> {
    let mut parts = vec![parse_primary(c, t, family)?];
    while c.peek_is(".") && c.peek_at(1).is_some_and(|n| n.kind == TokKind::Word) {
        c.next();
        let n = c.word("an expression")?;
        parts.push(parse_primary(c, n, family)?);
    }
    let mut e = if parts.len() == 1 {
        parts.remove(0)
    } else {
        Expr::Concat(parts)
    };
    if let Some(op) = c.peek().and_then(|p| BinOp::from_word(&p.text)) {
        let op_tok = c.need("an operator")?;
        if e != Expr::Meta(MetaKey::Mark) {
            return Err(op_tok.err(ErrorKind::unsupported(
                &op_tok.text,
                "bitwise operators are modelled on meta mark only",
            )));
        }
        let v = c.word("a mark value")?;
        let Value::Mark(value) = Value::parse(DataType::Mark, &v.text).map_err(|k| v.err(k))?
        else {
            return Err(v.err(ErrorKind::bad("mark", &v.text, "expected a number")));
        };
        e = Expr::Binop {
            expr: Box::new(e),
            op,
            value,
        };
    }
    Ok(e)
}

/// Parse a set reference `@name` (either one token or `@` then the name).
pub(crate) fn parse_set_name(c: &mut Cursor) -> Result<Option<String>, NftError> {
    let Some(t) = c.peek() else { return Ok(None) };
    if t.kind != TokKind::Word || !t.text.starts_with('@') {
        return Ok(None);
    }
    c.next();
    if t.text == "@" {
        return Ok(Some(c.name("a set name after @")?.text.clone()));
    }
    Ok(Some(t.text[1..].to_string()))
}

pub(crate) fn parse_map_ref(c: &mut Cursor, kt: &KeyType) -> Result<MapRef, NftError> {
    if let Some(name) = parse_set_name(c)? {
        return Ok(MapRef::Named(name));
    }
    let open = c.expect_kind(TokKind::LBrace, "@map or { key : verdict, … }")?;
    let mut elements = Vec::new();
    loop {
        c.skip_newlines();
        if c.eat_kind(TokKind::RBrace) {
            break;
        }
        let key = parse_key(c, kt)?;
        c.expect(":", "`:` between key and verdict")?;
        elements.push((key, parse_verdict(c)?));
        c.skip_newlines();
        if !c.eat_kind(TokKind::Comma) {
            c.skip_newlines();
            c.expect_kind(TokKind::RBrace, "`,` or `}`")?;
            break;
        }
    }
    if elements.is_empty() {
        return Err(open.err(ErrorKind::unexpected("{", "at least one map element")));
    }
    let elements = normalize::anon_map(elements).map_err(|k| open.err(k))?;
    Ok(MapRef::Anonymous(AnonMap { elements }))
}

pub(crate) fn parse_verdict(c: &mut Cursor) -> Result<Verdict, NftError> {
    let t = c.word("a verdict")?;
    let chain = if Verdict::takes_chain(&t.text) {
        Some(c.name("a chain name")?.text.as_str())
    } else {
        None
    };
    Verdict::from_words(&t.text, chain)
        .ok_or_else(|| t.err(ErrorKind::unexpected(&t.text, "a verdict")))
}

/// Parse a key: one atom per component, joined by ` . `. Inside braces
/// commas separate elements, so a flag list (`new,established`) is only
/// read outside them (`flag_lists`).
pub(crate) fn parse_key(c: &mut Cursor, kt: &KeyType) -> Result<Vec<Atom>, NftError> {
    parse_key_in(c, kt, false)
}

pub(crate) fn parse_key_in(
    c: &mut Cursor,
    kt: &KeyType,
    flag_lists: bool,
) -> Result<Vec<Atom>, NftError> {
    let mut atoms = Vec::new();
    for (i, dt) in kt.parts().iter().enumerate() {
        if i > 0 {
            c.expect(".", "` . ` between concatenated values")?;
        }
        atoms.push(parse_atom(c, *dt, flag_lists)?);
    }
    Ok(atoms)
}

pub(crate) fn parse_atom(c: &mut Cursor, dt: DataType, flag_lists: bool) -> Result<Atom, NftError> {
    let t = match c.peek() {
        Some(t)
            if t.kind == TokKind::Word || (t.kind == TokKind::Str && dt == DataType::Ifname) =>
        {
            c.next();
            t
        }
        _ => return Err(c.expected(dt.name())),
    };
    if dt.is_bitmask() {
        let mut bits = 0;
        let mut tok = t;
        loop {
            match Value::parse(dt, &tok.text).map_err(|k| tok.err(k))? {
                Value::CtState(b) | Value::CtStatus(b) => bits |= b,
                _ => {}
            }
            // A comma continues a flag list only when a flag follows.
            let more = flag_lists
                && c.peek_kind(TokKind::Comma)
                && c.peek_at(1)
                    .is_some_and(|n| Value::parse(dt, &n.text).is_ok());
            if !more {
                break;
            }
            c.next();
            tok = c.word("a flag")?;
        }
        return Ok(Atom::Value(match dt {
            DataType::CtState => Value::CtState(bits),
            _ => Value::CtStatus(bits),
        }));
    }
    Atom::parse(dt, &t.text).map_err(|k| t.err(k))
}

pub(crate) fn parse_rhs(c: &mut Cursor, kt: &KeyType) -> Result<Rhs, NftError> {
    if let Some(name) = parse_set_name(c)? {
        return Ok(Rhs::Named(name));
    }
    if !c.peek_kind(TokKind::LBrace) {
        return Ok(Rhs::Key(parse_key_in(c, kt, true)?));
    }
    let open = c.need("{")?;
    let mut elements = Vec::new();
    loop {
        c.skip_newlines();
        if c.eat_kind(TokKind::RBrace) {
            break;
        }
        elements.push(parse_key(c, kt)?);
        c.skip_newlines();
        if !c.eat_kind(TokKind::Comma) {
            c.skip_newlines();
            c.expect_kind(TokKind::RBrace, "`,` or `}`")?;
            break;
        }
    }
    if elements.is_empty() {
        return Err(open.err(ErrorKind::unexpected("{", "at least one set element")));
    }
    if elements.len() == 1 && !kt.is_concat() {
        return Ok(Rhs::Key(elements.remove(0)));
    }
    let elements = normalize::anon_set(elements, kt).map_err(|k| open.err(k))?;
    Ok(Rhs::Set(AnonSet { elements }))
}

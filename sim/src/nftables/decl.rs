//! Declarations inside braces: chain specs, set and map bodies, and
//! element lists — shared by transaction commands and listing blocks.
//!
//! Models: `{ type filter hook input priority 0 ; policy drop ; comment "…" ; }`
//! (priorities as numbers or names with offsets, see [`super::chain`]);
//! set bodies (`type K [: V]`, `flags`, `timeout`, `gc-interval`, `size`,
//! `auto-merge`, `comment`, `elements = { … }`, separated by `;` or
//! newlines); element lists (`key [timeout T] [expires T] [comment "…"]
//! [: value]`, comma-separated, newlines allowed).
//!
//! Must never: accept a clause it does not model (`typeof`, `policy`,
//! per-element counters, `device`) — those are refused with a hint.
//!
//! Error contract: [`NftError`] at the offending token.

use super::chain::{parse_priority, ChainType, Hook, Policy};
use super::duration;
use super::error::{ErrorKind, NftError};
use super::lexer::{Cursor, TokKind, Token};
use super::rule_parse::{parse_key, parse_verdict};
use super::set::{MapData, NewElement, SetFlags};
use super::types::{check_comment, DataType, KeyType};
use super::value::Value;

/// A base chain spec as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseSpec {
    pub chain_type: ChainType,
    pub hook: Hook,
    pub priority: i32,
    pub policy: Option<Policy>,
}

/// A set or map declaration as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SetDecl {
    pub key: Option<KeyType>,
    pub data: Option<DataType>,
    pub flags: SetFlags,
    pub timeout: Option<u64>,
    pub gc_interval: Option<u64>,
    pub size: Option<u32>,
    pub auto_merge: bool,
    pub comment: Option<String>,
    pub elements: Vec<(NewElement, Token)>,
}

/// The tokens of an element list up to its closing brace (consumed).
pub(crate) fn raw_elements(c: &mut Cursor) -> Result<(Vec<Token>, Token), NftError> {
    let mut depth = 1;
    let mut toks = Vec::new();
    loop {
        let t = c.need("`}` closing the elements")?;
        match t.kind {
            TokKind::LBrace => depth += 1,
            TokKind::RBrace => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            return Ok((toks, t.clone()));
        }
        toks.push(t.clone());
    }
}

/// Parse raw element tokens (from an `… element` command) for a set of
/// this type.
pub(crate) fn parse_elements(
    raw: &[Token],
    key: &KeyType,
    data: Option<DataType>,
    close: &Token,
) -> Result<Vec<(NewElement, Token)>, NftError> {
    let mut c = Cursor::new(raw, close.line, close.col);
    element_list(&mut c, key, data, true)
}

fn element_list(
    c: &mut Cursor,
    key: &KeyType,
    data: Option<DataType>,
    to_end: bool,
) -> Result<Vec<(NewElement, Token)>, NftError> {
    let mut out = Vec::new();
    loop {
        c.skip_newlines();
        if (to_end && c.at_end()) || (!to_end && c.eat_kind(TokKind::RBrace)) {
            break;
        }
        let at = c.peek().cloned().ok_or_else(|| c.expected("an element"))?;
        let k = parse_key(c, key)?;
        let mut e = NewElement {
            key: k,
            data: None,
            comment: None,
            timeout: None,
            expires: None,
        };
        loop {
            if c.eat("timeout") {
                let t = c.word("a timeout")?;
                e.timeout = Some(duration::parse(&t.text).map_err(|k| t.err(k))?);
            } else if c.eat("expires") {
                let t = c.word("an expiry")?;
                e.expires = Some(duration::parse(&t.text).map_err(|k| t.err(k))?);
            } else if c.eat("comment") {
                let t = c.expect_kind(TokKind::Str, "a quoted comment")?;
                check_comment(&t.text).map_err(|k| t.err(k))?;
                e.comment = Some(t.text.clone());
            } else if c.peek_is("counter") {
                let t = c.need("counter")?;
                return Err(t.err(ErrorKind::unsupported(
                    "counter",
                    "per-element counters are not modelled",
                )));
            } else {
                break;
            }
        }
        if c.eat(":") {
            e.data = Some(match data {
                Some(DataType::Verdict) | None => MapData::Verdict(parse_verdict(c)?),
                Some(dt) => {
                    let t = c.word(dt.name())?;
                    MapData::Value(Value::parse(dt, &t.text).map_err(|k| t.err(k))?)
                }
            });
        }
        out.push((e, at));
        c.skip_newlines();
        if !c.eat_kind(TokKind::Comma) {
            c.skip_newlines();
            if to_end {
                if !c.at_end() {
                    return Err(c.expected("`,` or `}`"));
                }
            } else {
                c.expect_kind(TokKind::RBrace, "`,` or `}`")?;
            }
            break;
        }
    }
    Ok(out)
}

/// Separators between clauses of a block.
pub(crate) fn skip_separators(c: &mut Cursor) {
    while c.eat_kind(TokKind::Newline) || c.eat_kind(TokKind::Semi) {}
}

/// A chain spec after `{`, through `}`: type, policy, comment.
pub(crate) fn chain_body(c: &mut Cursor) -> Result<(Option<BaseSpec>, Option<String>), NftError> {
    let (mut base, mut comment) = (None, None);
    loop {
        skip_separators(c);
        if c.eat_kind(TokKind::RBrace) {
            return Ok((base, comment));
        }
        {
            let t = c.word("type, policy or comment")?;
            match t.text.as_str() {
                "type" => base = Some(base_spec(c, t)?),
                "comment" => {
                    let s = c.expect_kind(TokKind::Str, "a quoted comment")?;
                    check_comment(&s.text).map_err(|k| s.err(k))?;
                    comment = Some(s.text.clone());
                }
                "policy" => {
                    let p = policy(c)?;
                    match &mut base {
                        Some(b) => b.policy = Some(p),
                        None => {
                            return Err(t.err(ErrorKind::invalid(
                                "policy",
                                "only base chains have a policy",
                            )))
                        }
                    }
                }
                "device" => {
                    return Err(t.err(ErrorKind::unsupported(
                        "device",
                        "netdev chains are not modelled",
                    )))
                }
                _ => return Err(t.err(ErrorKind::unexpected(&t.text, "type, policy or comment"))),
            }
        }
    }
}

fn policy(c: &mut Cursor) -> Result<Policy, NftError> {
    let p = c.word("accept or drop")?;
    match p.text.as_str() {
        "accept" => Ok(Policy::Accept),
        "drop" => Ok(Policy::Drop),
        _ => Err(p.err(ErrorKind::unexpected(&p.text, "accept or drop"))),
    }
}

fn base_spec(c: &mut Cursor, at: &Token) -> Result<BaseSpec, NftError> {
    let ty = c.word("filter or nat")?;
    let chain_type = match ty.text.as_str() {
        "filter" => ChainType::Filter,
        "nat" => ChainType::Nat,
        "route" => {
            return Err(ty.err(ErrorKind::unsupported(
                "route",
                "route chains are not modelled",
            )))
        }
        _ => return Err(ty.err(ErrorKind::unexpected(&ty.text, "filter or nat"))),
    };
    c.expect("hook", "`hook`")?;
    let h = c.word("a hook")?;
    let hook = Hook::from_name(&h.text).ok_or_else(|| {
        h.err(ErrorKind::unexpected(
            &h.text,
            "prerouting, input, forward, output or postrouting",
        ))
    })?;
    let p = c.expect("priority", "`priority`")?;
    let mut words = Vec::new();
    while let Some(t) = c.peek() {
        if t.kind != TokKind::Word || t.is("policy") {
            break;
        }
        words.push(t.text.clone());
        c.next();
    }
    if words.is_empty() {
        return Err(c.expected("a priority"));
    }
    let text = words.join(" ");
    let priority = parse_priority(&text, hook).map_err(|k| p.err(k))?;
    let mut spec = BaseSpec {
        chain_type,
        hook,
        priority,
        policy: None,
    };
    skip_separators(c);
    if c.eat("policy") {
        spec.policy = Some(policy(c)?);
    }
    let _ = at;
    Ok(spec)
}

pub(crate) fn set_body(c: &mut Cursor, is_map: bool, at: &Token) -> Result<SetDecl, NftError> {
    let mut d = SetDecl::default();
    loop {
        skip_separators(c);
        if c.eat_kind(TokKind::RBrace) {
            break;
        }
        let t = c.word("a set property")?;
        match t.text.as_str() {
            "type" => {
                let mut parts = Vec::new();
                loop {
                    let w = c.word("a data type")?;
                    let dt = DataType::from_decl(&w.text).filter(|d| *d != DataType::Verdict).ok_or_else(|| {
                        w.err(ErrorKind::unsupported(
                            &w.text,
                            "set key types modelled: ipv4_addr, ipv6_addr, inet_proto, inet_service, mark, ifname",
                        ))
                    })?;
                    parts.push(dt);
                    if !c.eat(".") {
                        break;
                    }
                }
                d.key = Some(KeyType(parts));
                if c.eat(":") {
                    let w = c.word("a data type")?;
                    if !is_map {
                        return Err(w.err(ErrorKind::invalid(
                            &w.text,
                            "a set has no value type; declare a map",
                        )));
                    }
                    d.data = Some(DataType::from_decl(&w.text).ok_or_else(|| {
                        w.err(ErrorKind::unsupported(
                            &w.text,
                            "map value types modelled: verdict and the key types",
                        ))
                    })?);
                }
            }
            "typeof" => {
                return Err(t.err(ErrorKind::unsupported(
                    "typeof",
                    "declare sets with `type`, as knftables users such as kube-proxy do",
                )))
            }
            "flags" => loop {
                let f = c.word("a set flag")?;
                match f.text.as_str() {
                    "constant" => d.flags.constant = true,
                    "dynamic" => d.flags.dynamic = true,
                    "interval" => d.flags.interval = true,
                    "timeout" => d.flags.timeout = true,
                    _ => {
                        return Err(f.err(ErrorKind::unexpected(
                            &f.text,
                            "constant, dynamic, interval or timeout",
                        )))
                    }
                }
                if !c.eat_kind(TokKind::Comma) {
                    break;
                }
            },
            "timeout" | "gc-interval" => {
                let v = c.word("a duration")?;
                let ms = duration::parse(&v.text).map_err(|k| v.err(k))?;
                if t.text == "timeout" {
                    d.timeout = Some(ms);
                } else {
                    d.gc_interval = Some(ms);
                }
            }
            "size" => {
                let v = c.word("a size")?;
                d.size =
                    Some(v.text.parse().map_err(|_| {
                        v.err(ErrorKind::bad("size", &v.text, "expected a number"))
                    })?);
            }
            "auto-merge" => d.auto_merge = true,
            "comment" => {
                let s = c.expect_kind(TokKind::Str, "a quoted comment")?;
                check_comment(&s.text).map_err(|k| s.err(k))?;
                d.comment = Some(s.text.clone());
            }
            "elements" => {
                c.expect("=", "`=`")?;
                c.expect_kind(TokKind::LBrace, "`{`")?;
                let key = d.key.clone().ok_or_else(|| {
                    t.err(ErrorKind::invalid(
                        "elements",
                        "declare the type before the elements",
                    ))
                })?;
                d.elements = element_list(c, &key, d.data, false)?;
            }
            "policy" | "counter" => {
                return Err(t.err(ErrorKind::unsupported(
                    &t.text,
                    "set policies and counters are not modelled",
                )))
            }
            _ => return Err(t.err(ErrorKind::unexpected(&t.text, "a set property"))),
        }
    }
    if d.key.is_none() {
        return Err(at.err(ErrorKind::invalid(&at.text, "a set or map needs a `type`")));
    }
    if is_map && d.data.is_none() {
        return Err(at.err(ErrorKind::invalid(
            &at.text,
            "a map needs a value type (`type K : V`)",
        )));
    }
    Ok(d)
}

/// One `type …` or `comment …` clause of a chain block.
pub(crate) fn chain_clause(c: &mut Cursor) -> Result<(Option<BaseSpec>, Option<String>), NftError> {
    let t = c.word("type or comment")?;
    if t.text == "comment" {
        let s = c.expect_kind(TokKind::Str, "a quoted comment")?;
        check_comment(&s.text).map_err(|k| s.err(k))?;
        return Ok((None, Some(s.text.clone())));
    }
    let spec = base_spec(c, t)?;
    while c.eat_kind(TokKind::Semi) {}
    Ok((Some(spec), None))
}

//! How nft rewrites a rule between the text it is given and the text
//! `nft list` prints back, reproduced so the model stores the listed form.
//!
//! Models (each checked against nft 1.0.6, see the fixtures):
//! - a one-element anonymous set is a plain comparison
//!   (`ip daddr { 10.0.0.0/8 }` → `ip daddr 10.0.0.0/8`); concatenations
//!   keep their braces;
//! - anonymous interval sets are merged (overlapping and adjacent ranges
//!   join; `{ 10.0.0.0/9, 10.128.0.0/9 }` → `{ 10.0.0.0/8 }`), other
//!   anonymous sets lose duplicates; elements are sorted as nft lists them;
//! - protocol dependencies: `tcp dport 80` needs `meta l4proto tcp`, which
//!   nft adds and hides again; an explicit `meta l4proto tcp` /
//!   `ip protocol tcp` / `ip6 nexthdr tcp` before a transport field is
//!   hidden the same way, unless a non-match statement (`counter`, …) stands
//!   between them; `th` fields after a known protocol print as that
//!   protocol (`meta l4proto udp th dport 53` → `udp dport 53`); in `inet`
//!   tables `meta nfproto ipv4|ipv6` before an `ip`/`ip6` field is hidden;
//! - `sport` and `dport` equality matches merge into one 32-bit comparison,
//!   which lists as `sport … dport …` at the place of the `sport` match.
//!
//! Must never: change what a rule matches (where nft 1.0.6 would, e.g. by
//! merging two `!=` port matches into one comparison, this refuses).
//!
//! Error contract: [`ErrorKind::ConflictingProtocols`], [`ErrorKind::Invalid`]
//! and [`ErrorKind::Unsupported`] naming the statement; the caller places it.

use super::error::ErrorKind;
use super::expr::{
    sort_elements, Expr, L4Header, Match, MetaKey, PayloadField, PortField, RelOp, Rhs,
};
use super::stmt::{Reject, Stmt};
use super::types::{Family, KeyType, Verdict};
use super::value::{Atom, Value};

/// Merge, dedup and sort the elements of an anonymous set.
pub(crate) fn anon_set(elems: Vec<Vec<Atom>>, kt: &KeyType) -> Result<Vec<Vec<Atom>>, ErrorKind> {
    let interval = elems
        .iter()
        .any(|e| e.iter().any(|a| !matches!(a, Atom::Value(_))));
    if interval {
        if kt.is_concat() {
            return Err(ErrorKind::unsupported(
                "{",
                "ranges and prefixes inside concatenations are not modelled",
            ));
        }
        let dt = kt.parts()[0];
        let bounds: Vec<(u128, u128)> = elems.iter().filter_map(|e| e[0].bounds()).collect();
        return Ok(merge_intervals(bounds)
            .into_iter()
            .filter_map(|(lo, hi)| Atom::from_bounds(dt, lo, hi))
            .map(|a| vec![a])
            .collect());
    }
    let mut out: Vec<Vec<Atom>> = Vec::with_capacity(elems.len());
    for e in elems {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    sort_elements(&mut out, |e| e);
    Ok(out)
}

/// Sort the elements of an anonymous verdict map; a repeated key is refused.
pub(crate) fn anon_map(
    mut elems: Vec<(Vec<Atom>, Verdict)>,
) -> Result<Vec<(Vec<Atom>, Verdict)>, ErrorKind> {
    sort_elements(&mut elems, |(k, _)| k);
    for w in elems.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(ErrorKind::invalid(
                &w[0]
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" . "),
                "the key appears twice in the map",
            ));
        }
    }
    Ok(elems)
}

/// Sort intervals and join overlapping or adjacent ones (nft's auto-merge).
pub(crate) fn merge_intervals(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (lo, hi) in v {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The protocol a statement pins, if it is `meta l4proto P` /
/// `ip protocol P` / `ip6 nexthdr P` with one value.
fn proto_dep(s: &Stmt) -> Option<u8> {
    match s {
        Stmt::Match(Match {
            left:
                Expr::Meta(MetaKey::L4proto)
                | Expr::Payload(PayloadField::IpProtocol | PayloadField::Ip6Nexthdr),
            op: RelOp::Eq | RelOp::Implicit,
            right: Rhs::Key(k),
        }) => match k.as_slice() {
            [Atom::Value(Value::Proto(p))] => Some(*p),
            _ => None,
        },
        _ => None,
    }
}

/// The family a statement pins, if it is `meta nfproto ipv4|ipv6`.
fn nfproto_dep(s: &Stmt) -> Option<Family> {
    match s {
        Stmt::Match(Match {
            left: Expr::Meta(MetaKey::Nfproto),
            op: RelOp::Eq | RelOp::Implicit,
            right: Rhs::Key(k),
        }) => match k.as_slice() {
            [Atom::Value(Value::NfProto(2))] => Some(Family::Ip),
            [Atom::Value(Value::NfProto(10))] => Some(Family::Ip6),
            _ => None,
        },
        _ => None,
    }
}

/// The expressions a statement reads.
fn exprs(s: &Stmt) -> Vec<&Expr> {
    match s {
        Stmt::Match(m) => m.left.parts().iter().collect(),
        Stmt::Vmap { key, .. } => key.parts().iter().collect(),
        Stmt::SetUpdate(u) => u.key.parts().iter().collect(),
        _ => Vec::new(),
    }
}

fn exprs_mut(s: &mut Stmt) -> Vec<&mut Expr> {
    match s {
        Stmt::Match(m) => match &mut m.left {
            Expr::Binop { .. } => Vec::new(),
            e => e.parts_mut().iter_mut().collect(),
        },
        Stmt::Vmap { key, .. } => key.parts_mut().iter_mut().collect(),
        Stmt::SetUpdate(u) => u.key.parts_mut().iter_mut().collect(),
        _ => Vec::new(),
    }
}

/// Transport headers a statement reads (named ones, and whether any `th`).
fn transport(s: &Stmt) -> (Vec<L4Header>, bool) {
    let mut named = Vec::new();
    let mut th = false;
    for e in exprs(s) {
        if let Expr::Payload(PayloadField::Port(h, _)) = e {
            if *h == L4Header::Th {
                th = true;
            } else {
                named.push(*h);
            }
        }
    }
    if matches!(s, Stmt::Reject(Reject::TcpReset)) {
        named.push(L4Header::Tcp);
    }
    (named, th)
}

/// The network family a statement needs in an inet table.
fn network(s: &Stmt) -> Option<Family> {
    let from_expr = exprs(s).into_iter().find_map(|e| match e {
        Expr::Payload(f) => f.network_family(),
        _ => None,
    });
    from_expr.or(match s {
        Stmt::Reject(Reject::Icmp(_)) => Some(Family::Ip),
        Stmt::Reject(Reject::Icmpv6(_)) => Some(Family::Ip6),
        _ => None,
    })
}

fn l4proto_match(p: u8) -> Stmt {
    Stmt::Match(Match {
        left: Expr::Meta(MetaKey::L4proto),
        op: RelOp::Implicit,
        right: Rhs::Key(vec![Atom::Value(Value::Proto(p))]),
    })
}

fn nfproto_match(f: Family) -> Stmt {
    Stmt::Match(Match {
        left: Expr::Meta(MetaKey::Nfproto),
        op: RelOp::Implicit,
        right: Rhs::Key(vec![Atom::Value(Value::NfProto(if f == Family::Ip {
            2
        } else {
            10
        }))]),
    })
}

/// Bring a parsed rule to the form `nft list` prints.
pub(crate) fn normalize(stmts: Vec<Stmt>, family: Family) -> Result<Vec<Stmt>, ErrorKind> {
    let with_deps = insert_dependencies(stmts, family)?;
    let merged = merge_ports(with_deps)?;
    Ok(listing_form(merged))
}

/// Add the protocol matches nft adds, refusing conflicts.
fn insert_dependencies(stmts: Vec<Stmt>, family: Family) -> Result<Vec<Stmt>, ErrorKind> {
    let mut out = Vec::with_capacity(stmts.len() + 1);
    let (mut ctx_t, mut ctx_n): (Option<u8>, Option<Family>) = (None, None);
    for s in stmts {
        if family == Family::Inet {
            if let Some(f) = network(&s) {
                match ctx_n {
                    None => {
                        out.push(nfproto_match(f));
                        ctx_n = Some(f);
                    }
                    Some(g) if g != f => {
                        return Err(ErrorKind::ConflictingProtocols {
                            token: s.to_string(),
                            reason: format!("{} vs. {}", g.name(), f.name()),
                        })
                    }
                    _ => {}
                }
            }
        }
        for h in transport(&s).0 {
            let p = h.proto().unwrap_or(0);
            match ctx_t {
                None => {
                    out.push(l4proto_match(p));
                    ctx_t = Some(p);
                }
                Some(q) if q != p => {
                    return Err(ErrorKind::ConflictingProtocols {
                        token: s.to_string(),
                        reason: format!("{} vs. {}", Value::Proto(q), Value::Proto(p)),
                    })
                }
                _ => {}
            }
        }
        if let Stmt::Nat(n) = &s {
            if n.port.is_some() && ctx_t.is_none() {
                return Err(ErrorKind::invalid(
                    &s.to_string(),
                    "transport protocol mapping is only valid after transport protocol match (add e.g. `meta l4proto tcp` before it)",
                ));
            }
        }
        if let Some(p) = proto_dep(&s) {
            ctx_t = Some(p);
        }
        if let Some(f) = nfproto_dep(&s) {
            ctx_n = Some(f);
        }
        out.push(s);
    }
    Ok(out)
}

/// A port equality match eligible for merging: (index, field, header).
fn port_match(s: &Stmt) -> Option<(PortField, L4Header, bool)> {
    match s {
        Stmt::Match(Match {
            left: Expr::Payload(PayloadField::Port(h, f)),
            op,
            right: Rhs::Key(k),
        }) if matches!(k.as_slice(), [Atom::Value(_)]) => Some((*f, *h, *op == RelOp::Neq)),
        _ => None,
    }
}

/// Merge `sport` and `dport` equality matches as nft's `payload_try_merge`.
fn merge_ports(mut stmts: Vec<Stmt>) -> Result<Vec<Stmt>, ErrorKind> {
    let mut cands: Vec<(usize, PortField, L4Header, bool)> = stmts
        .iter()
        .enumerate()
        .filter_map(|(i, s)| port_match(s).map(|(f, h, neq)| (i, f, h, neq)))
        .collect();
    if cands.len() < 2 {
        return Ok(stmts);
    }
    cands.sort_by_key(|(i, f, _, _)| (*f, *i));
    let mut last = cands[0];
    for &this in &cands[1..] {
        if !(last.1 == PortField::Sport && this.1 == PortField::Dport && last.3 == this.3) {
            last = this;
            continue;
        }
        if last.3 {
            return Err(ErrorKind::unsupported(
                &stmts[this.0].to_string(),
                "nft 1.0.6 merges two `!=` port matches into one comparison that matches when either differs; write them as separate rules",
            ));
        }
        let known = stmts[..last.0.max(this.0)]
            .iter()
            .any(|s| proto_dep(s).is_some());
        if last.2 == L4Header::Th && this.2 == L4Header::Th && !known {
            return Err(ErrorKind::unsupported(
                &stmts[this.0].to_string(),
                "nft 1.0.6 merges `th sport` and `th dport` into a raw payload match (@th,0,32); match the protocol first",
            ));
        }
        let dport = stmts.remove(this.0);
        let at = if this.0 < last.0 { last.0 - 1 } else { last.0 };
        stmts.insert(at + 1, dport);
        break;
    }
    Ok(stmts)
}

/// Hide dependencies and name `th` fields as nft's listing does.
fn listing_form(mut stmts: Vec<Stmt>) -> Vec<Stmt> {
    let mut kill = vec![false; stmts.len()];
    let (mut dep_t, mut dep_n): (Option<usize>, Option<usize>) = (None, None);
    let mut ctx_t: Option<u8> = None;
    for (i, stmt) in stmts.iter_mut().enumerate() {
        let s = &*stmt;
        if network(s).is_some() {
            if let Some(d) = dep_n.take() {
                kill[d] = true;
            }
        }
        if let Some(p) = proto_dep(s) {
            dep_t = Some(i);
            ctx_t = Some(p);
            continue;
        }
        if nfproto_dep(s).is_some() {
            dep_n = Some(i);
            continue;
        }
        let (named, th) = transport(s);
        let header = ctx_t.and_then(L4Header::from_proto);
        if !named.is_empty() || (th && header.is_some()) {
            if let Some(d) = dep_t.take() {
                kill[d] = true;
            }
        }
        if let (true, Some(h)) = (th, header) {
            for e in exprs_mut(stmt) {
                if let Expr::Payload(PayloadField::Port(hh @ L4Header::Th, _)) = e {
                    *hh = h;
                }
            }
        }
        if !stmt.is_expression() {
            dep_t = None;
            dep_n = None;
        }
    }
    stmts
        .into_iter()
        .zip(kill)
        .filter_map(|(s, k)| (!k).then_some(s))
        .collect()
}

/// Check the type of a named set against the expression that uses it.
pub(crate) fn check_key_type(expr: &KeyType, set: &KeyType, token: &str) -> Result<(), ErrorKind> {
    if expr == set {
        return Ok(());
    }
    Err(ErrorKind::TypeMismatch {
        token: token.to_string(),
        expected: set.to_string(),
        found: expr.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_merge_when_they_overlap_or_touch() {
        assert_eq!(
            merge_intervals(vec![(10, 12), (1, 2), (3, 5), (11, 20), (22, 22)]),
            vec![(1, 5), (10, 20), (22, 22)]
        );
        assert_eq!(
            merge_intervals(vec![(0, u128::MAX), (5, 6)]),
            vec![(0, u128::MAX)]
        );
    }

    #[test]
    fn anonymous_sets_dedup_and_sort_like_nft() {
        let kt = KeyType::single(super::super::types::DataType::InetService);
        let port = |p| vec![Atom::Value(Value::Port(p))];
        let got = anon_set(vec![port(443), port(80), port(443)], &kt).unwrap();
        assert_eq!(got, vec![port(80), port(443)]);
    }
}

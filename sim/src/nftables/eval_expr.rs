//! What an nftables expression reads from a packet, and whether a match
//! holds: the data half of `nft_do_chain` (payload, meta, ct, fib and numgen
//! expressions, concatenations, bitwise operations, comparisons, set and map
//! lookups).
//!
//! Models: a field the packet does not have — `ip saddr` of an IPv6 packet
//! (nft adds a `meta nfproto` dependency in `inet` tables), `tcp dport` of a
//! UDP packet (nft adds `meta l4proto tcp`), `ct status` of an untracked
//! packet, a transport header too short to load from — ends the rule, as
//! the kernel's `NFT_BREAK` does. `th sport|dport` reads the first two
//! 16-bit words of any transport header. `ct state` is the state bit of the
//! packet's relation (`invalid` when it has no conntrack entry). Implicit
//! comparisons of bitmask types (`ct state new,established`) test whether
//! any bit is set; `!=` on them tests that none is. Every set or map lookup
//! — named (`@name`) or anonymous (`{ … }`) — is counted once; named-set
//! lookups also see the elements this packet added with `update`/`add`
//! earlier on its path.
//!
//! Must never: draw randomness except from the [`Choices`] it is given, or
//! read a clock (time comes in [`NftEnv`]).
//!
//! Error contract: `Err(reason)` only for a reference the ruleset does not
//! hold (a set or map a rule names) — commit-time checks make that
//! impossible for a ruleset built by [`Ruleset::apply`](super::Ruleset::apply).
//!
//! [`Choices`]: crate::netfilter::eval::Choices

use std::net::IpAddr;

use super::eval::{NftEnv, NftPacket};
use super::expr::{CtKey, Expr, FibKey, Match, MetaKey, PayloadField, PortField, RelOp, Rhs};
use super::stmt::MapRef;
use super::table::Table;
use super::types::{Family, Verdict};
use super::value::Value;
use crate::netfilter::CtStates;

/// nft's `ct state` bits for the sim's conntrack states.
pub fn ct_state_bits(states: CtStates) -> u32 {
    [
        (CtStates::INVALID, 1),
        (CtStates::ESTABLISHED, 2),
        (CtStates::RELATED, 4),
        (CtStates::NEW, 8),
        (CtStates::UNTRACKED, 64),
    ]
    .into_iter()
    .filter(|(s, _)| states.0 & s.0 != 0)
    .fold(0, |acc, (_, bit)| acc | bit)
}

/// The first (`word` 0) or second (`word` 1) 16-bit word of the transport
/// header, as `th sport`/`th dport` load it.
fn transport_word(ctx: &NftPacket<'_>, word: usize) -> Option<u16> {
    let pkt = ctx.pkt;
    let ports = if word == 0 {
        pkt.src_port()
    } else {
        pkt.dst_port()
    };
    if ports.is_some() {
        return ports;
    }
    let b = pkt.bytes();
    let l4 = match pkt.src() {
        IpAddr::V4(_) => usize::from(b.first()? & 0x0f) * 4,
        IpAddr::V6(_) => 40,
    };
    let at = l4 + 2 * word;
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn payload(field: PayloadField, ctx: &NftPacket<'_>) -> Option<Value> {
    let pkt = ctx.pkt;
    let proto = pkt.protocol();
    Some(match field {
        PayloadField::IpSaddr | PayloadField::IpDaddr | PayloadField::IpProtocol => {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (pkt.src(), pkt.dst()) else {
                return None;
            };
            match field {
                PayloadField::IpSaddr => Value::Ipv4(src),
                PayloadField::IpDaddr => Value::Ipv4(dst),
                _ => Value::Proto(proto.number()),
            }
        }
        PayloadField::Ip6Saddr | PayloadField::Ip6Daddr | PayloadField::Ip6Nexthdr => {
            let (IpAddr::V6(src), IpAddr::V6(dst)) = (pkt.src(), pkt.dst()) else {
                return None;
            };
            match field {
                PayloadField::Ip6Saddr => Value::Ipv6(src),
                PayloadField::Ip6Daddr => Value::Ipv6(dst),
                _ => Value::Proto(proto.number()),
            }
        }
        PayloadField::Port(header, which) => {
            if header.proto().is_some_and(|p| p != proto.number()) {
                return None;
            }
            let word = match which {
                PortField::Sport => 0,
                PortField::Dport => 1,
            };
            Value::Port(transport_word(ctx, word)?)
        }
    })
}

fn meta(key: MetaKey, ctx: &NftPacket<'_>) -> Value {
    match key {
        MetaKey::L4proto => Value::Proto(ctx.pkt.protocol().number()),
        MetaKey::Mark => Value::Mark(ctx.mark),
        MetaKey::Nfproto => Value::NfProto(match ctx.pkt.src() {
            IpAddr::V4(_) => 2,
            IpAddr::V6(_) => 10,
        }),
        MetaKey::Iifname => Value::Ifname(ctx.iif.unwrap_or("").to_string()),
        MetaKey::Oifname => Value::Ifname(ctx.oif.unwrap_or("").to_string()),
    }
}

/// Evaluate `expr`, appending one value per concatenation component to
/// `out`; `None` when the packet lacks a field (the rule ends).
pub(crate) fn eval_expr(
    expr: &Expr,
    ctx: &NftPacket<'_>,
    env: &mut NftEnv<'_>,
    out: &mut Vec<Value>,
) -> Option<()> {
    match expr {
        Expr::Payload(f) => out.push(payload(*f, ctx)?),
        Expr::Meta(k) => out.push(meta(*k, ctx)),
        Expr::Ct(CtKey::State) => out.push(Value::CtState(ctx.ct_state)),
        Expr::Ct(CtKey::Status) => out.push(Value::CtStatus(ctx.ct_status?)),
        Expr::Fib(k) => {
            let addr = match k {
                FibKey::Saddr => ctx.pkt.src(),
                FibKey::Daddr => ctx.pkt.dst(),
            };
            out.push(Value::FibType(env.fib.fib_type(addr)));
        }
        Expr::Numgen { modulus, offset } => {
            let n = env.choices.numgen_random(*modulus);
            out.push(Value::Int(n.wrapping_add(*offset)));
        }
        Expr::Concat(parts) => {
            for p in parts {
                eval_expr(p, ctx, env, out)?;
            }
        }
        Expr::Binop { expr, op, value } => {
            let mut inner = Vec::with_capacity(1);
            eval_expr(expr, ctx, env, &mut inner)?;
            let v = match inner.as_slice() {
                [Value::Mark(m)] => Value::Mark(op.apply(*m, *value)),
                [Value::Int(m)] => Value::Int(op.apply(*m, *value)),
                _ => return None,
            };
            out.push(v);
        }
    }
    Some(())
}

fn bits(v: &Value) -> Option<u32> {
    match v {
        Value::CtState(b) | Value::CtStatus(b) => Some(*b),
        _ => None,
    }
}

/// Whether a named set holds `key`, counting the packet's own updates.
fn named_contains(
    table: &Table,
    name: &str,
    key: &[Value],
    env: &NftEnv<'_>,
) -> Result<bool, String> {
    let set = table.set(name).ok_or_else(|| {
        format!(
            "set @{name} does not exist in table {} {}",
            table.family(),
            table.name()
        )
    })?;
    Ok(set.contains(key, env.now) || env.effects.updated(table.family(), table.name(), name, key))
}

/// Whether `m` holds for the packet; `lookups` counts set lookups.
pub(crate) fn eval_match(
    m: &Match,
    table: &Table,
    ctx: &NftPacket<'_>,
    env: &mut NftEnv<'_>,
    lookups: &mut u64,
) -> Result<bool, String> {
    let mut key = Vec::with_capacity(3);
    if eval_expr(&m.left, ctx, env, &mut key).is_none() {
        return Ok(false);
    }
    let found = match &m.right {
        Rhs::Key(atoms) => {
            if let ([v], [super::value::Atom::Value(a)]) = (key.as_slice(), atoms.as_slice()) {
                if let (Some(have), Some(want)) = (bits(v), bits(a)) {
                    // Bitmask types: implicit = any bit, == exact, != none.
                    return Ok(match m.op {
                        RelOp::Implicit => have & want != 0,
                        RelOp::Eq => have == want,
                        RelOp::Neq => have & want == 0,
                    });
                }
            }
            super::expr::key_matches(atoms, &key)
        }
        Rhs::Set(set) => {
            *lookups += 1;
            set.contains(&key)
        }
        Rhs::Named(name) => {
            *lookups += 1;
            named_contains(table, name, &key, env)?
        }
    };
    Ok(match m.op {
        RelOp::Neq => !found,
        RelOp::Implicit | RelOp::Eq => found,
    })
}

/// `KEY vmap MAP`: the verdict for the packet's key, if the map has one
/// (one lookup; `Ok(None)` also when the packet lacks a key field).
pub(crate) fn eval_vmap(
    key: &Expr,
    map: &MapRef,
    table: &Table,
    ctx: &NftPacket<'_>,
    env: &mut NftEnv<'_>,
    lookups: &mut u64,
) -> Result<Option<Verdict>, String> {
    let mut k = Vec::with_capacity(3);
    if eval_expr(key, ctx, env, &mut k).is_none() {
        return Ok(None);
    }
    *lookups += 1;
    Ok(match map {
        MapRef::Anonymous(m) => m.lookup(&k).cloned(),
        MapRef::Named(name) => {
            let set = table.set(name).ok_or_else(|| {
                format!(
                    "map @{name} does not exist in table {} {}",
                    table.family(),
                    table.name()
                )
            })?;
            set.verdict(&k, env.now).cloned()
        }
    })
}

/// The key of an `update @set { EXPR }` for this packet.
pub(crate) fn eval_key(
    expr: &Expr,
    ctx: &NftPacket<'_>,
    env: &mut NftEnv<'_>,
) -> Option<Vec<Value>> {
    let mut k = Vec::with_capacity(1);
    eval_expr(expr, ctx, env, &mut k)?;
    Some(k)
}

/// Whether a table of `family` sees packets of `pkt_family`.
pub(crate) fn family_sees(family: Family, v4: bool) -> bool {
    match family {
        Family::Inet => true,
        Family::Ip => v4,
        Family::Ip6 => !v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_states_map_to_nft_bits() {
        assert_eq!(ct_state_bits(CtStates::NEW), 8);
        assert_eq!(ct_state_bits(CtStates::ESTABLISHED), 2);
        assert_eq!(ct_state_bits(CtStates::INVALID), 1);
        assert_eq!(
            ct_state_bits(CtStates(CtStates::NEW.0 | CtStates::DNAT.0)),
            8
        );
    }
}

//! Whether a rule's matches hold for a packet: the generic `-s/-d/-i/-o/-p`
//! fields and every `-m` match of the ruleset model.
//!
//! Models: CIDRs and `!`; interfaces with the `+` wildcard (a hook without
//! an interface compares against the empty name, as the kernel does);
//! protocol; `tcp` (ports, `--tcp-flags`), `udp`, `sctp` ports; `icmp`/
//! `icmp6` types and codes; `multiport`; `comment`; `mark` (`(mark & mask)
//! == value`); `addrtype` (the node answers, optionally limited to the
//! incoming/outgoing interface); `conntrack --ctstate` and `state`;
//! `statistic` random (the kernel's 31-bit comparison, via [`Choices`]) and
//! nth (a per-rule counter: packet `--packet` of every `--every`, 0-based,
//! as measured on a real kernel); `recent`; `set --match-set`; `nfacct` (counts the packet,
//! always matches); `ipvs` and `physdev` (`ext_ipvs`). Matches are tested
//! in rule order and stop at the first that fails, so stateful matches
//! after a failing one do not run — as in the kernel.
//!
//! Must never: say "match" for something it cannot decide.
//!
//! Error contract: `Err(reason)` for a missing ipset or nfacct object, or a
//! set match whose dimensions do not fit the set; the caller adds the rule.
//!
//! [`Choices`]: super::eval_choice::Choices

use super::eval::{Env, PacketCtx};
use super::matches::{
    AddrTypeMatch, IcmpKind, IcmpMatch, Match, PortMatch, PortSide, Statistic, StatisticMode,
};
use super::rule::Rule;
use super::ruleset::TableId;
use super::CtStates;
use crate::netfilter::Protocol;

type RuleKey<'a> = (TableId, &'a str, usize);

/// Whether every condition of `rule` holds for the packet.
// Inlined into `evaluate`'s per-rule loop: the call alone cost over a quarter of
// the first-packet time at 30,000 services once `match_one` grew.
#[inline(always)]
pub(crate) fn rule_matches(
    rule: &Rule,
    ctx: &PacketCtx<'_>,
    env: &mut Env<'_>,
    key: RuleKey<'_>,
) -> Result<bool, String> {
    let pkt = ctx.pkt;
    if let Some(s) = &rule.source {
        if !s.holds(s.value.contains(pkt.src())) {
            return Ok(false);
        }
    }
    if let Some(d) = &rule.destination {
        if !d.holds(d.value.contains(pkt.dst())) {
            return Ok(false);
        }
    }
    if let Some(i) = &rule.in_interface {
        if !i.holds(i.value.matches(ctx.in_iface.unwrap_or(""))) {
            return Ok(false);
        }
    }
    if let Some(o) = &rule.out_interface {
        if !o.holds(o.value.matches(ctx.out_iface.unwrap_or(""))) {
            return Ok(false);
        }
    }
    if let Some(p) = &rule.protocol {
        if !p.holds(pkt.protocol() == p.value) {
            return Ok(false);
        }
    }
    for m in &rule.matches {
        if !match_one(m, ctx, env, key)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn ports_match(p: &PortMatch, sport: Option<u16>, dport: Option<u16>) -> bool {
    let (Some(sp), Some(dp)) = (sport, dport) else {
        return false;
    };
    p.sport.is_none_or(|r| r.holds(r.value.contains(sp)))
        && p.dport.is_none_or(|r| r.holds(r.value.contains(dp)))
}

fn icmp_match(i: &IcmpMatch, tc: Option<(u8, u8)>) -> bool {
    let Some((t, c)) = tc else {
        return false;
    };
    let hit = match i.kind {
        IcmpKind::Any => true,
        IcmpKind::Type { ty, codes } => t == ty && codes.0 <= c && c <= codes.1,
    };
    hit != i.negated
}

fn addrtype_match(a: &AddrTypeMatch, ctx: &PacketCtx<'_>, env: &Env<'_>) -> bool {
    let dev = if a.limit_iface_in {
        ctx.in_iface
    } else if a.limit_iface_out {
        ctx.out_iface
    } else {
        None
    };
    let check = |want: &Option<super::Negatable<super::AddrTypes>>, addr| match want {
        Some(w) => w.holds(w.value.contains_index(env.addrs.addr_type(addr, dev))),
        None => true,
    };
    check(&a.src, ctx.pkt.src()) && check(&a.dst, ctx.pkt.dst())
}

fn statistic_match(s: &Statistic, env: &mut Env<'_>, key: RuleKey<'_>) -> bool {
    let hit = match s.mode {
        StatisticMode::Random { threshold } => env.choices.statistic_random(threshold),
        StatisticMode::Nth { every, packet } => {
            // The kernel keeps `every - 1` and a counter that matches when
            // it wraps to 0; it starts where packet number `packet`
            // (0-based) of each cycle wraps it: checked on Linux 6.18,
            // `--every 3 --packet 0` matches packets 1 and 4, `--packet 2`
            // packets 3 and 6.
            let every = every.saturating_sub(1);
            let k = (key.0, key.1.to_string(), key.2);
            let count = env.nth.entry(k).or_insert(every.saturating_sub(packet));
            let next = if *count >= every { 0 } else { *count + 1 };
            *count = next;
            next == 0
        }
    };
    hit != s.negated
}

fn match_one(
    m: &Match,
    ctx: &PacketCtx<'_>,
    env: &mut Env<'_>,
    key: RuleKey<'_>,
) -> Result<bool, String> {
    let pkt = ctx.pkt;
    let proto = pkt.protocol();
    Ok(match m {
        Match::Tcp(t) => {
            proto == Protocol::Tcp
                && ports_match(&t.ports, pkt.src_port(), pkt.dst_port())
                && t.flags.is_none_or(|f| {
                    let flags = pkt.tcp_flags().map(|x| x.0).unwrap_or(0);
                    f.holds(flags & f.value.mask == f.value.comp)
                })
        }
        Match::Udp(p) => proto == Protocol::Udp && ports_match(p, pkt.src_port(), pkt.dst_port()),
        Match::Sctp(p) => proto == Protocol::Sctp && ports_match(p, pkt.src_port(), pkt.dst_port()),
        Match::Icmp(i) => proto == Protocol::Icmp && icmp_match(i, pkt.icmp_type_code()),
        Match::Icmp6(i) => proto == Protocol::IcmpV6 && icmp_match(i, pkt.icmp_type_code()),
        Match::Multiport(mp) => {
            let (Some(sp), Some(dp)) = (pkt.src_port(), pkt.dst_port()) else {
                return Ok(false);
            };
            let hit = mp.ports.iter().any(|r| match mp.side {
                PortSide::Source => r.contains(sp),
                PortSide::Destination => r.contains(dp),
                PortSide::Either => r.contains(sp) || r.contains(dp),
            });
            hit != mp.negated
        }
        Match::Comment(_) => true,
        Match::Mark(mk) => (ctx.mark & mk.mask == mk.value) != mk.negated,
        Match::AddrType(a) => addrtype_match(a, ctx, env),
        Match::Conntrack(s) => s.holds(s.value.intersects(ctx.ctstate)),
        Match::State(s) => {
            let plain = CtStates(ctx.ctstate.0 & !(CtStates::SNAT.0 | CtStates::DNAT.0));
            s.holds(s.value.intersects(plain))
        }
        Match::Statistic(s) => statistic_match(s, env, key),
        Match::Recent(r) => env
            .recent
            .check(r, pkt.src(), pkt.dst(), pkt.ttl(), env.now),
        Match::Set(s) => {
            let hit = env.sets.test_packet(&s.name, pkt, &s.dirs)?;
            hit != s.negated
        }
        Match::Nfacct(name) => {
            let c = env.nfacct.get_mut(name).ok_or_else(|| {
                format!(
                    "nfacct object `{name}` does not exist; hint: create it (nfacct add {name}) before loading rules that use it"
                )
            })?;
            c.packets += 1;
            c.bytes += pkt.len() as u64;
            true
        }
        Match::Ipvs(m) => m.matches(ctx),
        Match::Physdev(m) => m.matches(ctx, env.addrs),
    })
}

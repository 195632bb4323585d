//! The entries of one hook, in the kernel's order: iptables tables and
//! nftables base chains interleaved by priority (see `node::nft`), and the
//! NAT core that runs every NAT-type chain — the iptables nat table and
//! nftables `type nat` chains — until one binds.
//!
//! Models: a filter-type entry that accepts lets the packet go on to the
//! next entry; a drop or reject ends the path (a reject answers through the
//! node's output path, as iptables' REJECT does). nftables chains see the
//! packet's conntrack state (`ct state`, `ct status`), its mark (which
//! `meta mark set` changes for the entries after), route types (`fib`),
//! and draw `numgen` from the node's `node/NAME/numgen` stream, or from the
//! explorer's script. Set updates and counter hits wait in the node state
//! until the packet's path ends. A rule count is rules visited plus set and
//! map lookups.
//!
//! Must never: run a NAT-type chain for a packet whose connection already
//! has its binding (the caller decides), or let an nftables chain change
//! anything but the packet's mark and the pending effects.
//!
//! Error contract: an nftables rule that cannot be evaluated becomes the
//! path's [`EvalError`], naming the chain as `FAMILY TABLE CHAIN` and the
//! rule's handle (its `table` is `nat` or `filter` after the chain's type).

use std::ops::RangeBounds;

use super::super::nft::{HookEntry, NftBase};
use super::super::outcome::{Delivery, DropReason, Processed};
use super::super::{fam_index, NodeState};
use super::{Acc, InFlight, Run};
use crate::conntrack::{ManipType, NatRange};
use crate::netfilter::eval::{Choices, Decision, EvalError, RuleRef};
use crate::netfilter::{Family, Hook, PortRange, Protocol, RejectWith, TableId};
use crate::nftables::eval::{
    ct_state_bits, evaluate as nft_evaluate, ChainOutcome as NftOutcome, Decision as NftDecision,
    NftEnv, NftPacket, RuleRef as NftRuleRef, Trace as NftTrace,
};
use crate::nftables::{ChainType, NatKind, Reject};

/// The rule behind a drop or reject: an iptables or an nftables rule.
pub(super) enum Decider {
    Iptables(RuleRef),
    Nftables(NftRuleRef),
}

impl Decider {
    /// The drop reason when the rule's reject sends nothing back.
    pub(super) fn dropped(self) -> DropReason {
        match self {
            Decider::Iptables(r) => DropReason::Rule(r),
            Decider::Nftables(r) => DropReason::NftRule(r),
        }
    }

    /// The delivery when the rule's reject answered with `reply`.
    pub(super) fn rejected(self, reply: Box<Processed>) -> Delivery {
        match self {
            Decider::Iptables(by) => Delivery::Rejected { by, reply },
            Decider::Nftables(by) => Delivery::NftRejected { by, reply },
        }
    }
}

/// Where the NAT core stands after one entry.
enum NatStep {
    /// No binding yet: ask the next entry.
    Next,
    /// A binding.
    Bound(NatRange),
    /// The packet's path ends here.
    Done(Delivery),
}

/// What `reject …` sends for a packet of this family and protocol (`None`:
/// nothing — a TCP reset for a packet that is not TCP — and the packet is
/// just dropped).
fn reject_with(r: Reject, v4: bool, tcp: bool) -> Result<Option<RejectWith>, String> {
    use RejectWith::*;
    let icmpx = |code: &str| -> Result<RejectWith, String> {
        Ok(match (code, v4) {
            ("port-unreachable", true) => IcmpPortUnreachable,
            ("port-unreachable", false) => Icmp6PortUnreachable,
            ("admin-prohibited", true) => IcmpAdminProhibited,
            ("admin-prohibited", false) => Icmp6AdmProhibited,
            ("no-route", true) => IcmpNetUnreachable,
            ("no-route", false) => Icmp6NoRoute,
            ("host-unreachable", true) => IcmpHostUnreachable,
            ("host-unreachable", false) => Icmp6AddrUnreachable,
            (other, _) => return Err(format!("reject with icmpx {other} is not modelled")),
        })
    };
    Ok(Some(match r {
        Reject::Default => icmpx("port-unreachable")?,
        Reject::Icmpx(code) => icmpx(code)?,
        Reject::TcpReset if tcp => TcpReset,
        Reject::TcpReset => return Ok(None),
        Reject::Icmp(code) => match code {
            "net-unreachable" => IcmpNetUnreachable,
            "host-unreachable" => IcmpHostUnreachable,
            "prot-unreachable" => IcmpProtoUnreachable,
            "port-unreachable" => IcmpPortUnreachable,
            "net-prohibited" => IcmpNetProhibited,
            "host-prohibited" => IcmpHostProhibited,
            "admin-prohibited" => IcmpAdminProhibited,
            other => return Err(format!("reject with icmp {other} is not modelled")),
        },
        Reject::Icmpv6(code) => match code {
            "no-route" => Icmp6NoRoute,
            "admin-prohibited" => Icmp6AdmProhibited,
            "addr-unreachable" => Icmp6AddrUnreachable,
            "port-unreachable" => Icmp6PortUnreachable,
            other => return Err(format!("reject with icmpv6 {other} is not modelled")),
        },
    }))
}

/// The path's error for an nftables chain.
fn path_error(b: &NftBase, chain: String, handle: u64, reason: String) -> EvalError {
    EvalError {
        table: match b.chain_type {
            ChainType::Nat => TableId::Nat,
            ChainType::Filter => TableId::Filter,
        },
        chain,
        num: 0,
        reason: format!("nftables rule handle {handle}: {reason}"),
    }
}

impl Run<'_> {
    /// Run the filter-type entries of `hook` whose priority is in `range`:
    /// `Some` when one ends the packet's path.
    pub(super) fn filters(
        &mut self,
        hook: Hook,
        range: impl RangeBounds<i32>,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<Delivery>, EvalError> {
        let hooks = self.k.hooks;
        let entries = hooks.filters(f.family, hook, &self.k.iptables[fam_index(f.family)], range);
        for e in entries {
            let done = match e {
                HookEntry::Iptables(t) => self.gate(t, hook, f, acc)?,
                HookEntry::Nft(b) => self.nft_filter(b, f, acc)?,
            };
            if done.is_some() {
                return Ok(done);
            }
        }
        Ok(None)
    }

    /// The NAT core for a connection's first packet: the nat-type entries
    /// of `hook` in order until one binds. `Err`: the path ends there.
    pub(super) fn nat_binding(
        &mut self,
        hook: Hook,
        manip: ManipType,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Result<Option<NatRange>, Delivery>, EvalError> {
        let hooks = self.k.hooks;
        let entries = hooks.nat(f.family, hook, &self.k.iptables[fam_index(f.family)]);
        for e in entries {
            let step = match e {
                HookEntry::Iptables(t) => {
                    let out = self.table(t, hook, f, acc)?;
                    self.iptables_nat(out.decision, manip, f, acc)
                }
                HookEntry::Nft(b) => self.nft_nat(b, manip, f, acc)?,
            };
            match step {
                NatStep::Next => {}
                NatStep::Bound(r) => return Ok(Ok(Some(r))),
                NatStep::Done(d) => return Ok(Err(d)),
            }
        }
        Ok(Ok(None))
    }

    fn iptables_nat(
        &mut self,
        decision: Decision,
        manip: ManipType,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> NatStep {
        match (decision, manip) {
            (Decision::Dnat(r), ManipType::Dst) | (Decision::Snat(r), ManipType::Src) => {
                NatStep::Bound(r)
            }
            (Decision::Masquerade(m), ManipType::Src) => {
                let ports = m.ports.map(|p: PortRange| (p.lo, p.hi));
                self.masquerade(f, acc, ports, m.random, m.random_fully)
            }
            _ => NatStep::Next,
        }
    }

    /// MASQUERADE: the outgoing interface's address for the next hop.
    fn masquerade(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
        ports: Option<(u16, u16)>,
        random: bool,
        random_fully: bool,
    ) -> NatStep {
        let addr = match (f.out_iface.as_deref(), f.next_hop) {
            (Some(dev), Some(nh)) => self.k.ifaces.select_addr(dev, nh),
            _ => None,
        };
        let Some(addr) = addr else {
            return NatStep::Done(self.drop(
                f,
                DropReason::Unprocessable("MASQUERADE without an address".into()),
            ));
        };
        acc.nat.masquerade = true;
        NatStep::Bound(NatRange {
            addrs: Some((addr, addr)),
            ports,
            random,
            random_fully,
            persistent: false,
        })
    }

    fn nft_nat(
        &mut self,
        b: &NftBase,
        manip: ManipType,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<NatStep, EvalError> {
        let Some((out, table, chain)) = self.nft_chain(b, f, acc)? else {
            return Ok(NatStep::Next);
        };
        Ok(match out.decision {
            NftDecision::Accept => NatStep::Next,
            NftDecision::Nat { kind, addr, port } => match (kind, manip) {
                (NatKind::Dnat, ManipType::Dst) | (NatKind::Snat, ManipType::Src) => {
                    NatStep::Bound(NatRange {
                        addrs: Some((addr, addr)),
                        ports: port.map(|p| (p, p)),
                        random: false,
                        random_fully: false,
                        persistent: false,
                    })
                }
                _ => NatStep::Next,
            },
            NftDecision::Masquerade(flags) if manip == ManipType::Src => {
                self.masquerade(f, acc, None, flags.random, flags.fully_random)
            }
            NftDecision::Masquerade(_) => NatStep::Next,
            d @ (NftDecision::Drop | NftDecision::Reject(_)) => {
                NatStep::Done(self.nft_end(b, d, out.by, (table, chain), f)?)
            }
        })
    }

    /// An nftables filter chain: `Some` when it ends the packet's path.
    fn nft_filter(
        &mut self,
        b: &NftBase,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<Delivery>, EvalError> {
        let Some((out, table, chain)) = self.nft_chain(b, f, acc)? else {
            return Ok(None);
        };
        match out.decision {
            NftDecision::Accept => Ok(None),
            d @ (NftDecision::Drop | NftDecision::Reject(_)) => {
                self.nft_end(b, d, out.by, (table, chain), f).map(Some)
            }
            NftDecision::Nat { .. } | NftDecision::Masquerade(_) => Err(path_error(
                b,
                chain,
                out.by.map_or(0, |r| r.handle),
                "a NAT statement in a filter chain".into(),
            )),
        }
    }

    /// A drop or reject by an nftables chain (`by`: the rule; `None`: the
    /// chain's drop policy).
    fn nft_end(
        &mut self,
        b: &NftBase,
        decision: NftDecision,
        by: Option<NftRuleRef>,
        (table, chain): (String, String),
        f: &mut InFlight,
    ) -> Result<Delivery, EvalError> {
        let Some(by) = by else {
            let reason = DropReason::NftPolicy {
                family: b.family,
                table,
                chain,
            };
            return Ok(self.drop(f, reason));
        };
        let NftDecision::Reject(r) = decision else {
            return Ok(self.drop(f, DropReason::NftRule(by)));
        };
        let v4 = f.family == Family::Ipv4;
        let tcp = f.pkt.protocol() == Protocol::Tcp;
        match reject_with(r, v4, tcp) {
            Ok(Some(with)) => self.reject(f, with, Decider::Nftables(by)),
            Ok(None) => Ok(self.drop(f, DropReason::NftRule(by))),
            Err(reason) => Err(path_error(b, chain, by.handle, reason)),
        }
    }

    /// Evaluate one nftables base chain; `None` when it no longer exists.
    /// Returns the outcome with the table's and chain's names.
    fn nft_chain(
        &mut self,
        b: &NftBase,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<(NftOutcome, String, String)>, EvalError> {
        let rs = self.k.nftables;
        let Some(table) = rs.table_by_handle(b.table) else {
            return Ok(None);
        };
        let Some(chain) = table.chain_by_handle(b.chain) else {
            return Ok(None);
        };
        let ct = &self.st.conntrack;
        let ct_status = f
            .att
            .and_then(|a| ct.entry(a.id))
            .map(|e| u32::from(e.status().0));
        let mut ctx = NftPacket {
            pkt: &f.pkt,
            hook: b.hook,
            iif: f.in_iface.as_deref(),
            oif: f.out_iface.as_deref(),
            mark: f.mark,
            ct_state: ct_state_bits(ct.ctstates(f.att.as_ref())),
            ct_status,
        };
        let NodeState {
            numgen_rng,
            nft_effects,
            ..
        } = &mut *self.st;
        let choices: &mut dyn Choices = match self.choices.as_deref_mut() {
            Some(c) => c,
            None => numgen_rng,
        };
        let mut trace = NftTrace::default();
        let mut env = NftEnv {
            now: self.now,
            fib: self.k.ifaces,
            choices,
            effects: nft_effects,
            trace: self.tracing.then_some(&mut trace),
            label: self.k.name,
        };
        let names = || {
            (
                format!("{} {} {}", table.family(), table.name(), chain.name()),
                table.name().to_string(),
                chain.name().to_string(),
            )
        };
        let out = nft_evaluate(table, chain, &mut ctx, &mut env)
            .map_err(|e| path_error(b, names().0, e.handle, e.reason))?;
        f.mark = ctx.mark;
        acc.rules += out.evaluations();
        let at = acc.trace.records.len();
        acc.trace
            .nft
            .extend(trace.records.into_iter().map(|r| (at, r)));
        let (_, t, c) = names();
        Ok(Some((out, t, c)))
    }
}

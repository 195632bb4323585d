//! The path of a packet through one kernel, hook by hook, in kernel order.
//!
//! Models: for a received packet — raw PREROUTING, conntrack lookup, mangle
//! PREROUTING, nat PREROUTING (rules only for a connection's first packet;
//! every packet then gets the connection's bindings), the routing decision
//! on the translated destination with the kernel's martian checks
//! (127.0.0.0/8 from a non-loopback interface is dropped unless
//! `route_localnet`; a local or broadcast source from outside is dropped),
//! then either INPUT (mangle, filter, nat source manipulation, conntrack
//! confirmation, local delivery) or forwarding (TTL decrement, mangle and
//! filter FORWARD) followed by POSTROUTING (mangle, nat source
//! manipulation — MASQUERADE takes the outgoing interface's address for
//! the next hop — and confirmation). For a locally generated packet — the
//! output route, raw OUTPUT, conntrack, mangle OUTPUT, nat OUTPUT, filter
//! OUTPUT, the reroute after a changed destination (a 127.0.0.0/8 source
//! may not leave through a real interface unless `route_localnet`),
//! POSTROUTING, and for a local destination the way back in through `lo`
//! (raw/mangle/nat PREROUTING, INPUT) without a second conntrack lookup.
//! `REJECT` answers through the node's own output path. IPVS takes packets
//! for its virtual services at LOCAL_IN, FORWARD and LOCAL_OUT
//! (`ipvs_hook`). nftables base chains run among the tables by priority,
//! and nftables nat chains inside the NAT core with iptables' nat table
//! (`hooks`; the order is `node::nft`'s).
//!
//! Must never: consult the nat table for a packet whose connection already
//! has the binding, let a dropped packet's new connection into the
//! conntrack table, or evaluate a table the ruleset does not have.
//!
//! Error contract: [`EvalError`] from a rule that cannot be evaluated;
//! every other outcome is a [`Delivery`].

use std::net::IpAddr;

use super::nft::{
    PRI_CONNTRACK, PRI_IPVS_FWD, PRI_IPVS_IN, PRI_IPVS_OUT, PRI_NAT_DST, PRI_NAT_SRC,
};
use super::outcome::{Delivery, DropReason, HookStep, NatApplied, Processed};
use super::reject::reject_reply;
use super::route::{RouteResult, Routes};
use super::{fam_index, Interfaces, IpSets, NodeState, Sysctls};
use crate::conntrack::{Attached, Classify, CtInfo, ManipType, NatError};
use crate::netfilter::eval::{
    evaluate, AddrTypeLookup, ChainOutcome, Choices, Decision, Env, EvalError, Hit, IpvsSkb,
    PacketCtx, Trace,
};
use crate::netfilter::{Family, Hook, Policy, Ruleset, TableId};
use crate::packet::Packet;
use crate::time::Instant;

mod hooks;
mod ipvs_hook;

impl AddrTypeLookup for Interfaces {
    fn addr_type(&self, addr: IpAddr, iface: Option<&str>) -> usize {
        Interfaces::addr_type(self, addr, iface)
    }
    fn is_bridge(&self, iface: &str) -> bool {
        Interfaces::is_bridge(self, iface)
    }
}

/// The node's configuration, borrowed for one packet.
#[derive(Clone, Copy)]
pub(crate) struct Kernel<'a> {
    pub name: &'a str,
    pub ifaces: &'a Interfaces,
    pub routes: &'a Routes,
    pub iptables: &'a [Ruleset; 2],
    pub nftables: &'a crate::nftables::Ruleset,
    pub hooks: &'a super::nft::HookRegistry,
    pub sets: &'a IpSets,
    pub sysctls: &'a Sysctls,
}

/// Add a hit to a ruleset's counters.
pub(crate) fn count_hit(rs: &mut Ruleset, hit: &Hit) {
    match hit {
        Hit::Rule(t, chain, i) => {
            rs.count_rule(*t, chain, *i, 0);
        }
        Hit::Policy(t, chain) => {
            rs.count_policy(*t, chain, 0);
        }
    }
}

/// A packet in flight with its metadata (`struct sk_buff`'s relevant part).
struct InFlight {
    pkt: Packet,
    family: Family,
    in_iface: Option<String>,
    out_iface: Option<String>,
    next_hop: Option<IpAddr>,
    mark: u32,
    att: Option<Attached>,
    /// `skb->ipvs_property`: IPVS handled the packet.
    ipvs: Option<IpvsSkb>,
}

#[derive(Default)]
struct Acc {
    steps: Vec<HookStep>,
    rules: u64,
    trace: Trace,
    nat: NatApplied,
}

/// One packet's processing on one node.
pub(crate) struct Run<'a> {
    k: Kernel<'a>,
    st: &'a mut NodeState,
    choices: Option<&'a mut dyn Choices>,
    tracing: bool,
    now: Instant,
    hits: Vec<(Family, Hit)>,
}

fn is_loopback_addr(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.octets()[0] == 127,
        IpAddr::V6(v) => v.is_loopback(),
    }
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        k: Kernel<'a>,
        st: &'a mut NodeState,
        choices: Option<&'a mut dyn Choices>,
        tracing: bool,
        now: Instant,
    ) -> Run<'a> {
        Run {
            k,
            st,
            choices,
            tracing,
            now,
            hits: Vec::new(),
        }
    }

    /// The rules and policies matched, for the counters.
    pub(crate) fn take_hits(&mut self) -> Vec<(Family, Hit)> {
        std::mem::take(&mut self.hits)
    }

    /// Process one packet: arriving on `iface`, or locally generated.
    pub(crate) fn packet(
        &mut self,
        pkt: Packet,
        iface: Option<&str>,
    ) -> Result<Processed, EvalError> {
        let mut acc = Acc::default();
        let mut f = InFlight {
            family: pkt.family(),
            pkt,
            in_iface: iface.map(str::to_string),
            out_iface: None,
            next_hop: None,
            mark: 0,
            att: None,
            ipvs: None,
        };
        let delivery = match iface {
            Some(_) => self.ingress(&mut f, &mut acc, true)?,
            None => self.local_out(&mut f, &mut acc)?,
        };
        Ok(Processed {
            packet: f.pkt,
            delivery,
            rules_evaluated: acc.rules,
            steps: acc.steps,
            nat: acc.nat,
            mark: f.mark,
            trace: acc.trace,
        })
    }

    /// Evaluate one table at one hook.
    fn table(
        &mut self,
        table: TableId,
        hook: Hook,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<ChainOutcome, EvalError> {
        let fi = fam_index(f.family);
        let rs = &self.k.iptables[fi];
        let ctstate = self.st.conntrack.ctstates(f.att.as_ref());
        let mut ctx = PacketCtx {
            pkt: &f.pkt,
            hook,
            in_iface: f.in_iface.as_deref(),
            out_iface: f.out_iface.as_deref(),
            mark: f.mark,
            ctstate,
            ipvs: f.ipvs,
        };
        let NodeState {
            recent,
            nfacct,
            nth,
            stat_rng,
            ..
        } = &mut *self.st;
        let choices: &mut dyn Choices = match self.choices.as_deref_mut() {
            Some(c) => c,
            None => stat_rng,
        };
        let mut env = Env {
            now: self.now,
            addrs: self.k.ifaces,
            sets: self.k.sets,
            recent,
            nfacct,
            nth: &mut nth[fi],
            choices,
            hits: Vec::new(),
            trace: if self.tracing {
                Some(&mut acc.trace)
            } else {
                None
            },
            label: self.k.name,
        };
        let out = evaluate(rs, table, &mut ctx, &mut env)?;
        let hits = std::mem::take(&mut env.hits);
        f.mark = ctx.mark;
        self.hits.extend(hits.into_iter().map(|h| (f.family, h)));
        acc.rules += out.rules_evaluated;
        if rs.table(table).and_then(|t| t.builtin(hook)).is_some() {
            acc.steps.push(HookStep {
                table,
                hook,
                rules_evaluated: out.rules_evaluated,
                decision: out.decision.clone(),
                by: out.by.clone(),
            });
        }
        Ok(out)
    }

    fn drop(&mut self, f: &mut InFlight, reason: DropReason) -> Delivery {
        if let Some(a) = f.att.take() {
            self.st.conntrack.finish(&a, false);
        }
        Delivery::Dropped(reason)
    }

    /// A raw/mangle/filter table: `Some` when it ends the packet's path.
    fn gate(
        &mut self,
        table: TableId,
        hook: Hook,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<Delivery>, EvalError> {
        let out = self.table(table, hook, f, acc)?;
        let chain = || hook.name().to_string();
        Ok(match (out.decision, out.by) {
            (Decision::Drop, Some(by)) => Some(self.drop(f, DropReason::Rule(by))),
            (Decision::Drop, None) => {
                let policy = self.k.iptables[fam_index(f.family)]
                    .chain(table, hook.name())
                    .and_then(|c| c.policy());
                debug_assert_eq!(policy, Some(Policy::Drop));
                Some(self.drop(
                    f,
                    DropReason::Policy {
                        table,
                        chain: chain(),
                    },
                ))
            }
            (Decision::Reject(with), Some(by)) => {
                Some(self.reject(f, with, hooks::Decider::Iptables(by))?)
            }
            _ => None,
        })
    }

    /// A nat hook: bind on a connection's first packet, then translate.
    fn nat(
        &mut self,
        hook: Hook,
        manip: ManipType,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<Delivery>, EvalError> {
        let Some(att) = f.att else {
            return Ok(None);
        };
        let consult = matches!(att.info, CtInfo::New) || att.info.is_related();
        if consult && !self.st.conntrack.nat_initialized(att.id, manip) {
            // The NAT core: iptables nat and nftables nat chains in order.
            let range = match self.nat_binding(hook, manip, f, acc)? {
                Ok(range) => range,
                Err(done) => return Ok(Some(done)),
            };
            let st = &mut *self.st;
            match st
                .conntrack
                .setup_nat(att.id, manip, range.as_ref(), &mut st.nat_rng)
            {
                Ok(()) => {}
                Err(NatError::Exhausted) => {
                    return Ok(Some(self.drop(f, DropReason::NatExhausted)));
                }
                Err(_) => {}
            }
            if range.is_some() {
                if let Some(e) = self.st.conntrack.entry(att.id) {
                    let r = *e.reply();
                    let port = |p| r.has_ports().then_some(p);
                    match manip {
                        ManipType::Dst => acc.nat.dnat = Some((r.src, port(r.src_port))),
                        ManipType::Src => acc.nat.snat = Some((r.dst, port(r.dst_port))),
                    }
                }
            }
        }
        match self.st.conntrack.nat_packet(&att, manip, &mut f.pkt) {
            Ok(_) | Err(NatError::NoEntry { .. }) => Ok(None),
            Err(e) => Ok(Some(self.drop(f, DropReason::Unprocessable(e.to_string())))),
        }
    }

    fn confirm(&mut self, f: &mut InFlight) -> Option<Delivery> {
        let a = f.att?;
        (!self.st.conntrack.finish(&a, true))
            .then_some(Delivery::Dropped(DropReason::ConntrackClash))
    }

    /// PREROUTING and the routing decision. `classify`: false for packets
    /// looped back through `lo`, which keep their conntrack attachment.
    fn ingress(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
        classify: bool,
    ) -> Result<Delivery, EvalError> {
        if let Some(d) = self.filters(Hook::Prerouting, ..PRI_CONNTRACK, f, acc)? {
            return Ok(d);
        }
        if classify {
            match self.st.conntrack.classify(&f.pkt, self.now) {
                Classify::TableFull => return Ok(Delivery::Dropped(DropReason::ConntrackFull)),
                Classify::Invalid => f.att = None,
                Classify::Tracked(a) => f.att = Some(a),
            }
        }
        if let Some(d) = self.filters(Hook::Prerouting, PRI_CONNTRACK..PRI_NAT_DST, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.nat(Hook::Prerouting, ManipType::Dst, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Prerouting, PRI_NAT_DST.., f, acc)? {
            return Ok(d);
        }
        let from_lo = f
            .in_iface
            .as_deref()
            .and_then(|i| self.k.ifaces.get(i))
            .is_some_and(|i| i.is_loopback());
        let (src, dst) = (f.pkt.src(), f.pkt.dst());
        if !from_lo {
            let localnet = self.k.sysctls.route_localnet && f.family == Family::Ipv4;
            if is_loopback_addr(src) && !localnet {
                return Ok(self.drop(f, DropReason::Martian("source")));
            }
            if is_loopback_addr(dst) && !localnet {
                return Ok(self.drop(f, DropReason::Martian("destination")));
            }
            let bad_src = match src {
                IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
                IpAddr::V6(a) => a.is_multicast(),
            };
            if bad_src || (!is_loopback_addr(src) && self.k.ifaces.is_local(src)) {
                return Ok(self.drop(f, DropReason::Martian("source")));
            }
        }
        match self.k.routes.lookup(dst, self.k.ifaces) {
            RouteResult::Local => self.input(f, acc),
            RouteResult::Unicast { dev, next_hop, .. } => {
                if !self.k.sysctls.ip_forward {
                    return Ok(self.drop(f, DropReason::ForwardingDisabled));
                }
                self.forward(f, acc, dev, next_hop)
            }
            RouteResult::Blackhole => Ok(self.drop(f, DropReason::Blackhole)),
            RouteResult::Unreachable => Ok(self.drop(f, DropReason::NoRoute)),
        }
    }

    fn input(&mut self, f: &mut InFlight, acc: &mut Acc) -> Result<Delivery, EvalError> {
        f.out_iface = None;
        if let Some(d) = self.filters(Hook::Input, ..PRI_IPVS_IN, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.ipvs_local_in(f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Input, PRI_IPVS_IN..PRI_NAT_SRC, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.nat(Hook::Input, ManipType::Src, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Input, PRI_NAT_SRC.., f, acc)? {
            return Ok(d);
        }
        Ok(self.confirm(f).unwrap_or(Delivery::Local))
    }

    fn forward(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
        dev: String,
        next_hop: IpAddr,
    ) -> Result<Delivery, EvalError> {
        if f.pkt.decrement_ttl().is_none() {
            return Ok(self.drop(f, DropReason::TtlExceeded));
        }
        f.out_iface = Some(dev);
        f.next_hop = Some(next_hop);
        if let Some(d) = self.filters(Hook::Forward, ..PRI_IPVS_FWD, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.ipvs_forward(f) {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Forward, PRI_IPVS_FWD.., f, acc)? {
            return Ok(d);
        }
        self.postrouting(f, acc, true)
    }

    /// POSTROUTING; `confirm` is false on the way to `lo` (the packet is
    /// confirmed when it is delivered).
    fn postrouting(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
        confirm: bool,
    ) -> Result<Delivery, EvalError> {
        if let Some(d) = self.filters(Hook::Postrouting, ..PRI_NAT_SRC, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.nat(Hook::Postrouting, ManipType::Src, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Postrouting, PRI_NAT_SRC.., f, acc)? {
            return Ok(d);
        }
        if confirm {
            if let Some(d) = self.confirm(f) {
                return Ok(d);
            }
        }
        Ok(Delivery::Out {
            iface: f.out_iface.clone().unwrap_or_default(),
            next_hop: f.next_hop.unwrap_or(f.pkt.dst()),
        })
    }

    fn output_route(&self, dst: IpAddr) -> Option<(String, IpAddr)> {
        match self.k.routes.lookup(dst, self.k.ifaces) {
            RouteResult::Local => Some(("lo".to_string(), dst)),
            RouteResult::Unicast { dev, next_hop, .. } => Some((dev, next_hop)),
            RouteResult::Blackhole | RouteResult::Unreachable => None,
        }
    }

    fn local_out(&mut self, f: &mut InFlight, acc: &mut Acc) -> Result<Delivery, EvalError> {
        let Some((dev, nh)) = self.output_route(f.pkt.dst()) else {
            return Ok(Delivery::Dropped(DropReason::NoRoute));
        };
        f.out_iface = Some(dev);
        f.next_hop = Some(nh);
        let dst_before = f.pkt.dst();
        if let Some(d) = self.filters(Hook::Output, ..PRI_CONNTRACK, f, acc)? {
            return Ok(d);
        }
        match self.st.conntrack.classify(&f.pkt, self.now) {
            Classify::TableFull => return Ok(Delivery::Dropped(DropReason::ConntrackFull)),
            Classify::Invalid => f.att = None,
            Classify::Tracked(a) => f.att = Some(a),
        }
        if let Some(d) = self.filters(Hook::Output, PRI_CONNTRACK..PRI_NAT_DST, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.nat(Hook::Output, ManipType::Dst, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Output, PRI_NAT_DST..PRI_IPVS_OUT, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.ipvs_local_out(f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Output, PRI_IPVS_OUT.., f, acc)? {
            return Ok(d);
        }
        if f.pkt.dst() != dst_before {
            let Some((dev, nh)) = self.output_route(f.pkt.dst()) else {
                return Ok(self.drop(f, DropReason::NoRoute));
            };
            f.out_iface = Some(dev);
            f.next_hop = Some(nh);
        }
        let to_lo = f.out_iface.as_deref() == Some("lo");
        let localnet = self.k.sysctls.route_localnet && f.family == Family::Ipv4;
        if !to_lo && is_loopback_addr(f.pkt.src()) && !localnet {
            return Ok(self.drop(f, DropReason::Martian("source")));
        }
        if !to_lo {
            return self.postrouting(f, acc, true);
        }
        if let d @ Some(_) = self.postrouting(f, acc, false).map(|d| match d {
            Delivery::Out { .. } => None,
            other => Some(other),
        })? {
            return Ok(d.unwrap_or(Delivery::Local));
        }
        f.in_iface = Some("lo".into());
        f.out_iface = None;
        f.next_hop = None;
        self.ingress(f, acc, false)
    }

    /// `REJECT`: the packet goes no further; the reply leaves through the
    /// node's output path.
    fn reject(
        &mut self,
        f: &mut InFlight,
        with: crate::netfilter::RejectWith,
        by: hooks::Decider,
    ) -> Result<Delivery, EvalError> {
        if let Some(a) = f.att.take() {
            self.st.conntrack.finish(&a, false);
        }
        let dst = f.pkt.dst();
        let icmp_src = if self.k.ifaces.is_local(dst) {
            dst
        } else {
            match self.k.routes.lookup(f.pkt.src(), self.k.ifaces) {
                RouteResult::Unicast { src: Some(s), .. } => s,
                _ => dst,
            }
        };
        let Some(reply) = reject_reply(&f.pkt, with, icmp_src) else {
            return Ok(Delivery::Dropped(by.dropped()));
        };
        let processed = self.packet(reply, None)?;
        Ok(by.rejected(Box::new(processed)))
    }
}

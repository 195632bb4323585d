//! What happened to a packet on a node: where it went, what decided, what
//! it cost.
//!
//! Models: the end of a packet's path through one kernel — delivered to a
//! local socket, sent out of an interface to a next hop, dropped (by which
//! iptables or nftables rule or policy, or by which kernel check: conntrack table full,
//! martian address, no route, forwarding disabled, TTL, IPVS), or rejected
//! (with the ICMP error or TCP reset the node sent back, itself a processed
//! packet) by a rule or by IPVS finding no real server — plus the NAT
//! bindings the packet's connection got here (IPVS's choice of real server
//! included), the per-hook steps with their rule counts, and the optional
//! trace.
//!
//! Must never: hold anything that differs between two runs with one seed.
//!
//! Error contract: none; plain data.

use std::fmt;
use std::net::IpAddr;

use crate::netfilter::eval::{Decision, RuleRef, Trace};
use crate::netfilter::{Hook, TableId};
use crate::nftables::eval::RuleRef as NftRuleRef;
use crate::packet::Packet;

/// Why a packet was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// A rule with `-j DROP`.
    Rule(RuleRef),
    /// A built-in chain's DROP policy.
    Policy {
        /// Table.
        table: TableId,
        /// Chain.
        chain: String,
    },
    /// `nf_conntrack: table full, dropping packet`.
    ConntrackFull,
    /// Conntrack confirmation found the tuple taken.
    ConntrackClash,
    /// NAT found no free tuple.
    NatExhausted,
    /// A martian source or destination (127.0.0.0/8 without
    /// `route_localnet`, a local or broadcast source from outside).
    Martian(&'static str),
    /// No route (or an unreachable route).
    NoRoute,
    /// A blackhole route.
    Blackhole,
    /// Not for this node and `ip_forward` is off.
    ForwardingDisabled,
    /// TTL ran out while forwarding.
    TtlExceeded,
    /// The packet could not be processed (a reply to a reply, a bad header).
    Unprocessable(String),
    /// IPVS dropped it (its connection's real server left the service, or
    /// a SYN reusing a connection whose conntrack entry is confirmed).
    Ipvs(&'static str),
    /// An nftables rule's `drop` (or a verdict-map element's).
    NftRule(NftRuleRef),
    /// An nftables base chain's drop policy.
    NftPolicy {
        /// The table's family.
        family: crate::nftables::Family,
        /// Table.
        table: String,
        /// Chain.
        chain: String,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Rule(r) => write!(f, "dropped by rule {r}"),
            DropReason::Policy { table, chain } => {
                write!(f, "dropped by the DROP policy of {table}:{chain}")
            }
            DropReason::ConntrackFull => f.write_str("conntrack table full"),
            DropReason::ConntrackClash => f.write_str("conntrack tuple clash"),
            DropReason::NatExhausted => f.write_str("no free NAT tuple"),
            DropReason::Martian(what) => write!(f, "martian {what}"),
            DropReason::NoRoute => f.write_str("no route to host"),
            DropReason::Blackhole => f.write_str("blackhole route"),
            DropReason::ForwardingDisabled => f.write_str("forwarding disabled (ip_forward=0)"),
            DropReason::TtlExceeded => f.write_str("TTL exceeded"),
            DropReason::Unprocessable(why) => write!(f, "unprocessable: {why}"),
            DropReason::Ipvs(why) => write!(f, "dropped by IPVS: {why}"),
            DropReason::NftRule(r) => write!(f, "dropped by rule {r}"),
            DropReason::NftPolicy {
                family,
                table,
                chain,
            } => write!(f, "dropped by the drop policy of {family} {table}:{chain}"),
        }
    }
}

/// Where a packet went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// To a socket on this node.
    Local,
    /// Out of `iface` to the neighbour `next_hop`.
    Out {
        /// Output interface.
        iface: String,
        /// Gateway or destination.
        next_hop: IpAddr,
    },
    /// Dropped.
    Dropped(DropReason),
    /// Rejected by a rule; `reply` is the ICMP error or TCP reset sent
    /// back, with its own path through this node.
    Rejected {
        /// The REJECT rule.
        by: RuleRef,
        /// The reply's processing.
        reply: Box<Processed>,
    },
    /// Rejected by an nftables rule (`reject …`); `reply` is the ICMP
    /// error or TCP reset sent back, with its own path through this node.
    NftRejected {
        /// The rule.
        by: NftRuleRef,
        /// The reply's processing.
        reply: Box<Processed>,
    },
    /// Dropped by the kernel, which answered with an ICMP error: IPVS
    /// with no real server for a virtual service (`ip_vs_leave`: port
    /// unreachable). `reply` is the error's path through this node.
    IcmpError {
        /// Who answered and why, e.g. `IPVS: no real server for TCP 10.96.0.1:80`.
        by: String,
        /// The reply's processing.
        reply: Box<Processed>,
    },
}

/// One table evaluated at one hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookStep {
    /// Table.
    pub table: TableId,
    /// Hook.
    pub hook: Hook,
    /// Rules evaluated.
    pub rules_evaluated: u64,
    /// What the table decided.
    pub decision: Decision,
    /// The rule that decided (`None`: policy or end of chain).
    pub by: Option<RuleRef>,
}

/// The NAT this node applied to the packet's connection when it was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NatApplied {
    /// Destination after DNAT (address, port) when a DNAT binding was made.
    pub dnat: Option<(IpAddr, Option<u16>)>,
    /// Source after SNAT/MASQUERADE when a source binding was made.
    pub snat: Option<(IpAddr, Option<u16>)>,
    /// Whether the source binding came from MASQUERADE.
    pub masquerade: bool,
    /// The IPVS virtual service that scheduled the connection (its real
    /// server is in `dnat`).
    pub ipvs: Option<crate::ipvs::ServiceKey>,
}

/// A packet's whole path through one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Processed {
    /// The packet as it left or was delivered (NAT applied).
    pub packet: Packet,
    /// Where it went.
    pub delivery: Delivery,
    /// Rules evaluated on this node for this packet (all hooks): iptables
    /// rules visited, plus nftables rules visited and set/map lookups.
    pub rules_evaluated: u64,
    /// Each iptables table evaluated, in order.
    pub steps: Vec<HookStep>,
    /// NAT bindings made for this packet's new connection.
    pub nat: NatApplied,
    /// The packet mark at the end.
    pub mark: u32,
    /// The rule-by-rule trace (empty unless tracing is on).
    pub trace: Trace,
}

impl Processed {
    /// The rule that dropped or rejected the packet, if one did.
    pub fn decided_by(&self) -> Option<&RuleRef> {
        match &self.delivery {
            Delivery::Dropped(DropReason::Rule(r)) => Some(r),
            Delivery::Rejected { by, .. } => Some(by),
            _ => None,
        }
    }
}

//! What an exchange experienced, as the traffic driver reports it: each
//! packet's hops (what happened at each host, the rules it evaluated and
//! their trace), how the exchange ended, and which server answered from
//! which addresses. Plain data: it must never send a packet or read a
//! node's state beyond the `Processed` result it is given, and it has no
//! errors of its own.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::conn::ConnId;
use super::sockets::SeenAddrs;
use crate::netfilter::eval::{RuleRef, Trace};
use crate::netfilter::Protocol;
use crate::node::{Delivery, Processed};

/// One hop of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopRecord {
    /// The host.
    pub host: String,
    /// What happened there.
    pub what: String,
    /// Rules evaluated there.
    pub rules_evaluated: u64,
    /// The rule-by-rule trace (nodes, when tracing).
    pub trace: Trace,
}

impl HopRecord {
    pub(crate) fn end_host(host: &str, what: &str) -> HopRecord {
        HopRecord {
            host: host.to_string(),
            what: what.to_string(),
            rules_evaluated: 0,
            trace: Trace::default(),
        }
    }

    pub(crate) fn from_processed(host: &str, p: &Processed) -> HopRecord {
        let what = match &p.delivery {
            Delivery::Local => format!("delivered locally as {}", p.packet),
            Delivery::Out { iface, next_hop } => {
                format!("out {iface} to {next_hop} as {}", p.packet)
            }
            Delivery::Dropped(r) => r.to_string(),
            Delivery::Rejected { by, .. } => format!("rejected by {by}"),
            Delivery::NftRejected { by, .. } => format!("rejected by {by}"),
            Delivery::IcmpError { by, .. } => format!("answered with an ICMP error by {by}"),
        };
        HopRecord {
            host: host.to_string(),
            what,
            rules_evaluated: p.rules_evaluated,
            trace: p.trace.clone(),
        }
    }
}

/// One packet of an exchange and its journey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeStep {
    /// `SYN`, `SYN-ACK`, `request`, …
    pub label: String,
    /// Its hops.
    pub hops: Vec<HopRecord>,
}

/// How an exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Connected and the request was answered (UDP: answered).
    Answered,
    /// A TCP reset came back (closed port, stale connection, REJECT
    /// with tcp-reset); `by` says who sent it.
    Refused { by: String },
    /// An ICMP error came back; `by` says who sent it.
    Unreachable { by: String },
    /// Lost on the way: where and why.
    Dropped {
        /// The host that dropped it.
        at: String,
        /// Why.
        reason: String,
        /// The rule that dropped it, when one did.
        rule: Option<RuleRef>,
    },
    /// An answer arrived from an address the client did not talk to.
    Misrouted { got: String },
    /// The server took the packet and sent nothing back.
    NoAnswer,
}

/// What one connection (or datagram) experienced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionReport {
    /// The id when the connection is kept open.
    pub id: Option<ConnId>,
    /// The client host.
    pub client: String,
    /// TCP or UDP.
    pub proto: Protocol,
    /// The client's address and port.
    pub client_addr: (IpAddr, u16),
    /// Where it connected.
    pub target: (IpAddr, u16),
    /// How it ended.
    pub outcome: Outcome,
    /// The host that answered (from the answer's payload).
    pub server: Option<String>,
    /// The addresses the server saw.
    pub seen: Option<SeenAddrs>,
    /// Rules evaluated per node by the first packet (SYN or datagram).
    pub rules_first_packet: BTreeMap<String, u64>,
    /// Rules evaluated per node over the whole exchange.
    pub rules_total: BTreeMap<String, u64>,
    /// Every packet's journey.
    pub steps: Vec<ExchangeStep>,
    /// Whether the connection is closed at the end.
    pub closed: bool,
}

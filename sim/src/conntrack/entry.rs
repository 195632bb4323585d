//! One conntrack entry (`struct nf_conn`) and how a packet relates to it.
//!
//! Models: the original and reply tuples (the reply tuple carries the NAT
//! bindings: DNAT changes its source, SNAT its destination), the status
//! bits that matter here (`IPS_SEEN_REPLY`, `IPS_ASSURED`, `IPS_CONFIRMED`,
//! `IPS_SRC_NAT`, `IPS_DST_NAT` and the `*_NAT_DONE` bits that say a NAT
//! hook has already run), the per-protocol state, the expiry time, the
//! connection mark; and `enum ip_conntrack_info` ([`CtInfo`]), the relation
//! of one packet to its entry.
//!
//! Must never: change a tuple except through NAT setup in the table.
//!
//! Error contract: none; plain data.

use std::time::Duration;

use super::tcp::{TcpState, TcpTrack};
use crate::netfilter::CtStates;
use crate::packet::Tuple;
use crate::time::Instant;

/// Direction of a packet relative to its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// From the initiator.
    Original,
    /// Towards the initiator.
    Reply,
}

impl Dir {
    /// The other direction.
    pub fn opposite(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// How a packet relates to its entry (`enum ip_conntrack_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CtInfo {
    /// Original direction, no reply seen yet.
    New,
    /// Original direction after a reply was seen.
    Established,
    /// An ICMP error about the connection, original direction.
    Related,
    /// Reply direction.
    EstablishedReply,
    /// An ICMP error about the connection, reply direction.
    RelatedReply,
}

impl CtInfo {
    /// The packet's direction.
    pub fn dir(self) -> Dir {
        match self {
            CtInfo::New | CtInfo::Established | CtInfo::Related => Dir::Original,
            CtInfo::EstablishedReply | CtInfo::RelatedReply => Dir::Reply,
        }
    }

    /// Whether the packet is an ICMP error about the connection.
    pub fn is_related(self) -> bool {
        matches!(self, CtInfo::Related | CtInfo::RelatedReply)
    }

    /// The `-m state` bit of this relation.
    pub fn state_bit(self) -> CtStates {
        match self {
            CtInfo::New => CtStates::NEW,
            CtInfo::Established | CtInfo::EstablishedReply => CtStates::ESTABLISHED,
            CtInfo::Related | CtInfo::RelatedReply => CtStates::RELATED,
        }
    }
}

/// Status bits of an entry (`enum ip_conntrack_status`, the ones modelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Status(pub u16);

impl Status {
    /// `IPS_SEEN_REPLY`.
    pub const SEEN_REPLY: Status = Status(1 << 1);
    /// `IPS_ASSURED`.
    pub const ASSURED: Status = Status(1 << 2);
    /// `IPS_CONFIRMED`.
    pub const CONFIRMED: Status = Status(1 << 3);
    /// `IPS_SRC_NAT`: the source of the original direction is translated.
    pub const SRC_NAT: Status = Status(1 << 4);
    /// `IPS_DST_NAT`: the destination of the original direction is translated.
    pub const DST_NAT: Status = Status(1 << 5);
    /// `IPS_SRC_NAT_DONE`: the source NAT hook has run.
    pub const SRC_NAT_DONE: Status = Status(1 << 7);
    /// `IPS_DST_NAT_DONE`: the destination NAT hook has run.
    pub const DST_NAT_DONE: Status = Status(1 << 8);

    /// Whether every bit of `other` is set.
    pub fn has(self, other: Status) -> bool {
        self.0 & other.0 == other.0
    }

    pub(crate) fn set(&mut self, other: Status) {
        self.0 |= other.0;
    }
}

/// Per-protocol tracking state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtoState {
    Tcp(TcpTrack),
    /// UDP: the time after which a replied flow counts as a stream.
    Udp {
        stream_after: Instant,
    },
    Sctp,
    Icmp,
    Generic,
}

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub(crate) id: u64,
    pub(crate) orig: Tuple,
    pub(crate) reply: Tuple,
    pub(crate) status: Status,
    pub(crate) proto: ProtoState,
    pub(crate) expires: Instant,
    /// Kill the entry once the packet being processed is done with it.
    pub(crate) dying: bool,
    pub(crate) mark: u32,
    pub(crate) created: Instant,
}

impl Entry {
    /// A stable identifier (allocation order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The original-direction tuple.
    pub fn original(&self) -> &Tuple {
        &self.orig
    }

    /// The reply-direction tuple (with NAT applied).
    pub fn reply(&self) -> &Tuple {
        &self.reply
    }

    /// The tuple of a direction.
    pub fn tuple(&self, dir: Dir) -> &Tuple {
        match dir {
            Dir::Original => &self.orig,
            Dir::Reply => &self.reply,
        }
    }

    /// Status bits.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Whether a reply has been seen.
    pub fn seen_reply(&self) -> bool {
        self.status.has(Status::SEEN_REPLY)
    }

    /// Whether the entry is ASSURED (never evicted when the table is full).
    pub fn assured(&self) -> bool {
        self.status.has(Status::ASSURED)
    }

    /// The TCP state, for TCP entries.
    pub fn tcp_state(&self) -> Option<TcpState> {
        match self.proto {
            ProtoState::Tcp(t) => Some(t.state),
            _ => None,
        }
    }

    /// When the entry expires.
    pub fn expires(&self) -> Instant {
        self.expires
    }

    /// Time left before expiry at `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires.saturating_since(now)
    }

    /// When the entry was created.
    pub fn created(&self) -> Instant {
        self.created
    }

    /// The connection mark.
    pub fn mark(&self) -> u32 {
        self.mark
    }

    /// The `--ctstate` bits a packet with relation `info` sees.
    pub fn ctstates(&self, info: CtInfo) -> CtStates {
        let mut s = info.state_bit().0;
        if self.status.has(Status::SRC_NAT) {
            s |= CtStates::SNAT.0;
        }
        if self.status.has(Status::DST_NAT) {
            s |= CtStates::DNAT.0;
        }
        CtStates(s)
    }
}

/// A packet's attachment to an entry, carried while the packet is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The entry.
    pub id: u64,
    /// How the packet relates to it.
    pub info: CtInfo,
}

//! Virtual services and real servers as the kernel holds them
//! (`struct ip_vs_service`, `struct ip_vs_dest`).
//!
//! Models: a service's destination list in the kernel's order (new real
//! servers are linked at the head, so the list is newest first — this is
//! the order the schedulers walk); per real server its weight and
//! `last_weight` (latest non-zero weight), thresholds and the overload flag
//! (`IP_VS_DEST_F_OVERLOAD`), the `AVAILABLE` flag (cleared when it leaves
//! its service), active / inactive / persistent connection counts, its
//! references from connections, and traffic counters.
//!
//! Must never: be changed except through [`super::Ipvs`], which keeps the
//! counts equal to what the connection table implies.
//!
//! Error contract: plain data; nothing here fails.

use std::net::SocketAddr;

use super::sched::{Candidate, SchedState};
use super::stats::{Counters, Stats, StatsView};
use super::types::{FwdMethod, ServiceKey, ServiceSpec};
use crate::time::Instant;

/// Identity of a real server object (it outlives its service in the trash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DestId(pub(crate) u64);

/// A real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// Address and port (port 0: the client's destination port).
    pub addr: SocketAddr,
    pub fwd: FwdMethod,
    pub weight: u32,
    /// The latest non-zero weight (or the weight it was added with).
    pub last_weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
    /// `activeconns`: connections in an active state (TCP SYN_RECV,
    /// ESTABLISHED, …; SCTP ESTABLISHED).
    pub active_conns: u32,
    /// `inactconns`: every other connection (all UDP, TCP TIME_WAIT, …).
    pub inact_conns: u32,
    /// `persistconns`: persistence templates bound to this server.
    pub persist_conns: u32,
    /// `IP_VS_DEST_F_AVAILABLE`: still in its service (not in the trash).
    pub available: bool,
    /// `IP_VS_DEST_F_OVERLOAD`: at or above `u_threshold`.
    pub overloaded: bool,
    /// The service it belongs to (or belonged to, while in the trash).
    pub service: ServiceKey,
    pub(crate) svc_id: u64,
    /// Connections and templates bound to it (`refcnt - 1`).
    pub(crate) refs: u32,
    pub(crate) stats: Stats,
    /// When the trash timer first saw it unreferenced.
    pub(crate) idle_start: Option<Instant>,
}

impl Dest {
    /// `ip_vs_dest_totalconns`.
    pub(crate) fn total_conns(&self) -> u64 {
        u64::from(self.active_conns) + u64::from(self.inact_conns)
    }

    /// What `ipvsadm --stats/--rate` shows for it at `now`.
    pub fn stats(&self, now: Instant) -> StatsView {
        self.stats.view(now)
    }

    /// The counters as of the last packet (ipvsadm shows them up to 2 s
    /// later, see [`Dest::stats`]).
    pub fn live_counters(&self) -> Counters {
        self.stats.live()
    }

    pub(crate) fn candidate(&self, id: DestId) -> Candidate {
        Candidate {
            id,
            addr: self.addr,
            weight: self.weight,
            last_weight: self.last_weight,
            overloaded: self.overloaded,
            active: self.active_conns,
            inactive: self.inact_conns,
        }
    }
}

/// A virtual service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub spec: ServiceSpec,
    pub(crate) id: u64,
    /// Kernel list order: most recently added first.
    pub(crate) dests: Vec<DestId>,
    pub(crate) sched: SchedState,
    pub(crate) stats: Stats,
}

impl Service {
    /// What `ipvsadm --stats/--rate` shows for it at `now`.
    pub fn stats(&self, now: Instant) -> StatsView {
        self.stats.view(now)
    }

    /// The counters as of the last packet.
    pub fn live_counters(&self) -> Counters {
        self.stats.live()
    }

    /// Number of real servers.
    pub fn dest_count(&self) -> usize {
        self.dests.len()
    }
}

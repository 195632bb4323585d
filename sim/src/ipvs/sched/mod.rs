//! The IPVS schedulers: given a service's real servers (in the kernel's
//! `svc->destinations` list order, newest first) pick one for a new
//! connection, exactly as the kernel modules do.
//!
//! Models: `rr` and `wrr` (`rr.rs`), `lc`, `wlc`, `sed`, `nq` (`least.rs`),
//! `sh` and `dh` (`hash.rs`), `mh` (`mh.rs`, with the kernel's `hsiphash` in
//! [`siphash`]), each with its `init_service` / `add_dest` / `del_dest` /
//! `upd_dest` hooks. A server with weight 0 (quiesced) or the overload flag
//! gets no new connections.
//!
//! Must never: use randomness (the kernel's schedulers are deterministic)
//! or iterate anything unordered.
//!
//! Error contract: "no destination available" is `None`, never an error.
//! The pure table builders ([`maglev_table`], [`sh_table`], [`sh_bucket`],
//! [`dh_bucket`], [`hsiphash`]) are public so tests can check them against
//! hand-computed values.

mod hash;
mod least;
mod mh;
mod rr;
pub mod siphash;

pub use hash::{dh_bucket, sh_bucket, sh_table, SH_TABLE_SIZE};
pub use mh::{maglev_table, MH_TABLE_SIZE};
pub use siphash::hsiphash;

use std::net::SocketAddr;

use super::dest::DestId;
use super::types::{SchedFlags, Scheduler};

/// What a scheduler may know of one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub id: DestId,
    pub addr: SocketAddr,
    pub weight: u32,
    /// The latest non-zero weight (`dest->last_weight`, used by `mh`).
    pub last_weight: u32,
    pub overloaded: bool,
    pub active: u32,
    pub inactive: u32,
}

impl Candidate {
    /// Weight > 0 and not overloaded.
    pub(crate) fn available(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }

    /// `ip_vs_dest_conn_overhead`: `(activeconns << 8) + inactconns` in
    /// 32-bit arithmetic.
    fn overhead(&self) -> u32 {
        (self.active << 8).wrapping_add(self.inactive)
    }
}

/// The packet that opens a connection, as the hash schedulers read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

/// A service's scheduler with its private state (`svc->sched_data`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SchedState {
    None,
    Rr(rr::Rr),
    Wrr(rr::Wrr),
    Lc,
    Wlc,
    Sed,
    Nq,
    Sh(hash::HashTable),
    Dh(hash::HashTable),
    Mh(mh::Mh),
}

impl SchedState {
    /// `ip_vs_bind_scheduler` → `init_service`.
    pub(crate) fn init(kind: Scheduler, dests: &[Candidate]) -> Self {
        match kind {
            Scheduler::None => SchedState::None,
            Scheduler::Rr => SchedState::Rr(rr::Rr::default()),
            Scheduler::Wrr => SchedState::Wrr(rr::Wrr::new(dests)),
            Scheduler::Lc => SchedState::Lc,
            Scheduler::Wlc => SchedState::Wlc,
            Scheduler::Sed => SchedState::Sed,
            Scheduler::Nq => SchedState::Nq,
            Scheduler::Sh => SchedState::Sh(hash::HashTable::sh(dests)),
            Scheduler::Dh => SchedState::Dh(hash::HashTable::dh(dests)),
            Scheduler::Mh => SchedState::Mh(mh::Mh::new(dests)),
        }
    }

    /// `add_dest` / `upd_dest`: `dests` already holds the change.
    pub(crate) fn dest_changed(&mut self, dests: &[Candidate]) {
        match self {
            SchedState::Wrr(w) => w.dest_changed(dests),
            SchedState::Sh(t) => *t = hash::HashTable::sh(dests),
            SchedState::Dh(t) => *t = hash::HashTable::dh(dests),
            SchedState::Mh(m) => m.dest_changed(dests),
            SchedState::None
            | SchedState::Rr(_)
            | SchedState::Lc
            | SchedState::Wlc
            | SchedState::Sed
            | SchedState::Nq => {}
        }
    }

    /// `del_dest`: `removed` was at `index` in the list before it was
    /// unlinked; `dests` no longer holds it.
    pub(crate) fn dest_removed(&mut self, dests: &[Candidate], removed: DestId, index: usize) {
        match self {
            SchedState::Rr(r) => r.dest_removed(dests, removed, index),
            other => other.dest_changed(dests),
        }
    }

    /// `schedule`: the real server for a new connection, or `None`.
    pub(crate) fn schedule(
        &mut self,
        dests: &[Candidate],
        flow: &Flow,
        flags: SchedFlags,
    ) -> Option<DestId> {
        match self {
            SchedState::None => None,
            SchedState::Rr(r) => r.schedule(dests),
            SchedState::Wrr(w) => w.schedule(dests),
            SchedState::Lc => least::lc(dests),
            SchedState::Wlc => least::wlc(dests),
            SchedState::Sed => least::sed(dests),
            SchedState::Nq => least::nq(dests),
            SchedState::Sh(t) => t.sh_schedule(dests, flow, flags),
            SchedState::Dh(t) => t.dh_schedule(dests, flow),
            SchedState::Mh(m) => m.schedule(dests, flow, flags),
        }
    }
}

/// `gcd()` of `lib/math/gcd.c`.
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let r = a % b;
        a = b;
        b = r;
    }
    a
}

/// The position of a candidate in the list.
pub(crate) fn position(dests: &[Candidate], id: DestId) -> Option<usize> {
    dests.iter().position(|d| d.id == id)
}

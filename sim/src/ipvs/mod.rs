//! IPVS, the kernel's IP Virtual Server (`net/netfilter/ipvs/`), for one
//! network namespace.
//!
//! Models: virtual services (TCP/UDP/SCTP address and port, or a firewall
//! mark) with a scheduler, persistence (timeout and client netmask) and
//! one-packet scheduling; real servers with forwarding method, weight,
//! thresholds and the kernel's active/inactive/persistent connection
//! counts; the schedulers rr, wrr, lc, wlc, sh, dh, sed, nq and mh
//! ([`sched`]); the connection table with per-protocol state machines and
//! timeouts, persistence templates (held while connections they control
//! live), the `expire_nodest_conn`, `expire_quiescent_template` and
//! `conn_reuse_mode` sysctls, deleted real servers kept in the trash until
//! their connections end; traffic counters with the 2-second rate
//! estimator; and `ipvsadm -Ln` / `--stats` / `--rate` / `-Lnc` /
//! `--timeout` output ([`Ipvs::list`], …). The packet path calls
//! [`Ipvs::process_in`] for packets that reach IPVS at LOCAL_IN (client →
//! virtual address) and [`Ipvs::process_out`] for replies from real
//! servers; timers run on the virtual time those calls (or
//! [`Ipvs::advance`]) carry.
//!
//! Behaviour follows Linux ≥ 5.9 (`ip_vs_in` reschedules SYNs to quiesced
//! servers under `expire_nodest_conn` and drops only when the packet's
//! conntrack entry is confirmed). Formats follow ipvsadm 1.31 (numeric
//! output only). Not modelled: FTP helpers, persistence engines (`--pe
//! sip`), sync daemon, `secure_tcp`/`drop_entry` defense, LOCALNODE
//! forwarding, ICMP errors relating to connections, cache bypass.
//! Real-kernel comparison of these formats needs an IPVS kernel (see the
//! project's notes on running one in a VM); it is future work.
//!
//! Must never: know about Kubernetes, read a clock (every entry point takes
//! an [`Instant`]), use randomness, or iterate a hash map.
//!
//! Error contract: control-plane calls return [`IpvsError`] and change
//! nothing when they fail; the packet path never fails — its outcome is a
//! verdict ([`InVerdict`], [`OutVerdict`]); nothing panics on input.

mod conn;
mod core;
mod ctl;
mod dest;
mod error;
mod expire;
mod list;
mod proto;
pub mod sched;
mod stats;
mod types;
mod verdict;

pub use conn::{Conn, ConnId};
pub use dest::{Dest, Service};
pub use error::IpvsError;
pub use list::ListFormat;
pub use proto::{ConnState, SctpState, TcpState, Timeouts};
pub use stats::{Counters, Rates, StatsView};
pub use types::{
    DestSpec, FwdMethod, IpvsConfig, Persistence, SchedFlags, Scheduler, ServiceKey, ServiceSpec,
    Sysctls, TimeoutUser,
};
pub use verdict::{DropReason, Forward, InVerdict, OutVerdict, Packet, L4};

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::time::Instant;
use conn::ConnTable;
use dest::DestId;
use sched::Candidate;

/// The IPVS state of one network namespace.
#[derive(Debug, Clone)]
pub struct Ipvs {
    config: IpvsConfig,
    timeouts: Timeouts,
    services: BTreeMap<ServiceKey, Service>,
    dests: BTreeMap<DestId, Dest>,
    /// `ipvs->dest_trash` by deletion sequence (the kernel's list, most
    /// recently deleted first, is this map in reverse).
    trash: BTreeMap<u64, DestId>,
    /// The trash by (service, address, sequence), to find a real server to
    /// revive without walking the list (a sync that churns thousands of
    /// destinations would otherwise take quadratic time).
    trash_index: std::collections::BTreeSet<(ServiceKey, SocketAddr, u64)>,
    trash_timer: Option<Instant>,
    conns: ConnTable,
    next_id: u64,
    /// The latest time seen; time never runs backwards here.
    now: Instant,
}

impl Default for Ipvs {
    fn default() -> Self {
        Ipvs::new(IpvsConfig::default())
    }
}

impl Ipvs {
    /// An empty table with these settings.
    pub fn new(config: IpvsConfig) -> Self {
        Ipvs {
            config,
            timeouts: Timeouts::default(),
            services: BTreeMap::new(),
            dests: BTreeMap::new(),
            trash: BTreeMap::new(),
            trash_index: std::collections::BTreeSet::new(),
            trash_timer: None,
            conns: ConnTable::default(),
            next_id: 0,
            now: Instant::ZERO,
        }
    }

    /// The `net.ipv4.vs.*` sysctls in force.
    pub fn sysctls(&self) -> Sysctls {
        self.config.sysctls
    }

    /// Change sysctls (`sysctl -w net.ipv4.vs.…`); affects later packets.
    pub fn set_sysctls(&mut self, sysctls: Sysctls) {
        self.config.sysctls = sysctls;
    }

    /// The full per-state timeout tables.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Every virtual service, in key order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// One virtual service.
    pub fn service(&self, key: &ServiceKey) -> Option<&Service> {
        self.services.get(key)
    }

    /// The real servers of a service in the kernel's list order (most
    /// recently added first), or `None` for an unknown service.
    pub fn dests(&self, key: &ServiceKey) -> Option<Vec<&Dest>> {
        let svc = self.services.get(key)?;
        Some(svc.dests.iter().filter_map(|d| self.dests.get(d)).collect())
    }

    /// Real servers of `key` a new connection could be scheduled to now
    /// (weight > 0, not overloaded), in list order.
    pub fn candidates(&self, key: &ServiceKey) -> Vec<SocketAddr> {
        self.candidate_list(key)
            .iter()
            .filter(|c| c.available())
            .map(|c| c.addr)
            .collect()
    }

    /// Real servers deleted from their service but still referenced by
    /// connections (`ipvs->dest_trash`), most recently deleted first.
    pub fn trash(&self) -> Vec<&Dest> {
        self.trash
            .values()
            .rev()
            .filter_map(|d| self.dests.get(d))
            .collect()
    }

    /// Every connection entry and template, oldest first.
    pub fn conns(&self) -> impl Iterator<Item = &Conn> {
        self.conns.iter()
    }

    /// One connection entry.
    pub fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(id)
    }

    /// Number of entries (`ipvs->conn_count`), templates included.
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// The real server an entry is bound to (also while in the trash).
    pub fn conn_dest(&self, id: ConnId) -> Option<&Dest> {
        self.conns.get(id)?.dest.and_then(|d| self.dests.get(&d))
    }

    /// When the next timer (connection expiry, trash check) fires. The
    /// rate estimator needs none: it catches up lazily.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.conns.next_timer(), self.trash_timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Let virtual time pass: run every timer due at or before `now`.
    pub fn advance(&mut self, now: Instant) {
        let now = self.clock(now);
        self.run_timers(now);
    }

    /// Clamp `now` so time never runs backwards, and remember it.
    fn clock(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The scheduler's view of a service's real servers, list order.
    fn candidate_list(&self, key: &ServiceKey) -> Vec<Candidate> {
        let Some(svc) = self.services.get(key) else {
            return Vec::new();
        };
        svc.dests
            .iter()
            .filter_map(|id| self.dests.get(id).map(|d| d.candidate(*id)))
            .collect()
    }
}

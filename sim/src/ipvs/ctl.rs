//! The control plane (`ip_vs_ctl.c`): what `ipvsadm -A/-E/-D/-C/-a/-e/-d/
//! -Z/--set` and kube-proxy's netlink calls do to the table.
//!
//! Models: `ip_vs_add_service` / `ip_vs_edit_service` (rebinding the
//! scheduler when it changes) / `ip_vs_del_service` / `ip_vs_flush`;
//! `ip_vs_add_dest` (reviving a matching real server from the trash with its
//! counters), `__ip_vs_update_dest` (weight, `last_weight` = latest non-zero
//! weight, thresholds clearing the overload flag, linking new servers at the
//! list head and calling the scheduler's hooks), `ip_vs_del_dest` (unlink,
//! clear `AVAILABLE`, move to the trash, and with `expire_nodest_conn` drop
//! the server's connections); `ip_vs_zero_*`; `ip_vs_set_timeout`.
//!
//! Must never: leave the table half-changed — every check runs before the
//! first change.
//!
//! Error contract: [`IpvsError`] with the kernel's reason; `Ok` otherwise.

use std::time::Duration;

use super::dest::{Dest, DestId, Service};
use super::error::IpvsError;
use super::sched::SchedState;
use super::stats::Stats;
use super::types::{DestSpec, ServiceKey, ServiceSpec, TimeoutUser};
use super::Ipvs;
use crate::time::Instant;

/// `INT_MAX / HZ` with `HZ` = 250 (the Debian and Ubuntu kernels).
const MAX_TIMEOUT_SECS: u32 = (i32::MAX / 250) as u32;

impl Ipvs {
    /// `ipvsadm -A`: create a virtual service with no real servers.
    pub fn add_service(&mut self, now: Instant, spec: ServiceSpec) -> Result<(), IpvsError> {
        let now = self.clock(now);
        spec.validate()?;
        if self.services.contains_key(&spec.key) {
            return Err(IpvsError::ServiceExists(spec.key));
        }
        let id = self.fresh_id();
        let svc = Service {
            spec,
            id,
            dests: Vec::new(),
            sched: SchedState::init(spec.scheduler, &[]),
            stats: Stats::new(now),
        };
        self.services.insert(spec.key, svc);
        Ok(())
    }

    /// `ipvsadm -E`: change scheduler, persistence and flags of a service.
    pub fn edit_service(&mut self, now: Instant, spec: ServiceSpec) -> Result<(), IpvsError> {
        self.clock(now);
        spec.validate()?;
        let cands = self.candidate_list(&spec.key);
        let svc = self
            .services
            .get_mut(&spec.key)
            .ok_or(IpvsError::NoSuchService(spec.key))?;
        if svc.spec.scheduler != spec.scheduler {
            svc.sched = SchedState::init(spec.scheduler, &cands);
        }
        svc.spec = spec;
        Ok(())
    }

    /// `ipvsadm -D`: delete a service; its real servers go to the trash
    /// and its connections live on until they expire.
    pub fn del_service(&mut self, now: Instant, key: &ServiceKey) -> Result<(), IpvsError> {
        let now = self.clock(now);
        let svc = self
            .services
            .remove(key)
            .ok_or(IpvsError::NoSuchService(*key))?;
        for id in svc.dests {
            if let Some(d) = self.dests.get_mut(&id) {
                d.available = false;
            }
            self.trash_dest(now, id);
        }
        self.flush_nodest_conns(now);
        Ok(())
    }

    /// `ipvsadm -C`: delete every service.
    pub fn flush(&mut self, now: Instant) {
        let keys: Vec<ServiceKey> = self.services.keys().copied().collect();
        for key in keys {
            // Present by construction: the key was just listed.
            let _ = self.del_service(now, &key);
        }
    }

    /// `ipvsadm -a`: add a real server to a service.
    pub fn add_dest(
        &mut self,
        now: Instant,
        key: &ServiceKey,
        spec: DestSpec,
    ) -> Result<(), IpvsError> {
        let now = self.clock(now);
        spec.validate(*key)?;
        let svc = self
            .services
            .get(key)
            .ok_or(IpvsError::NoSuchService(*key))?;
        if self.find_dest(svc, spec).is_some() {
            return Err(IpvsError::DestExists {
                service: *key,
                dest: spec.addr,
            });
        }
        let svc_id = svc.id;
        // `ip_vs_trash_get_dest`: the most recently deleted match.
        let revived = self
            .trash_index
            .range((*key, spec.addr, 0)..=(*key, spec.addr, u64::MAX))
            .next_back()
            .copied();
        let revived = revived.and_then(|entry| {
            self.trash_index.remove(&entry);
            self.trash.remove(&entry.2)
        });
        let id = match revived {
            Some(id) => {
                if self.trash.is_empty() {
                    self.trash_timer = None;
                }
                id
            }
            None => {
                let id = DestId(self.fresh_id());
                let dest = Dest {
                    addr: spec.addr,
                    fwd: spec.fwd,
                    weight: 0,
                    last_weight: 0,
                    u_threshold: 0,
                    l_threshold: 0,
                    active_conns: 0,
                    inact_conns: 0,
                    persist_conns: 0,
                    available: false,
                    overloaded: false,
                    service: *key,
                    svc_id,
                    refs: 0,
                    stats: Stats::new(now),
                    idle_start: None,
                };
                self.dests.insert(id, dest);
                id
            }
        };
        self.update_dest(now, key, id, spec, true);
        Ok(())
    }

    /// `ipvsadm -e`: change weight, forwarding method or thresholds of a
    /// real server; its connections and counts stay.
    pub fn edit_dest(
        &mut self,
        now: Instant,
        key: &ServiceKey,
        spec: DestSpec,
    ) -> Result<(), IpvsError> {
        let now = self.clock(now);
        spec.validate(*key)?;
        let svc = self
            .services
            .get(key)
            .ok_or(IpvsError::NoSuchService(*key))?;
        let id = self.find_dest(svc, spec).ok_or(IpvsError::NoSuchDest {
            service: *key,
            dest: spec.addr,
        })?;
        self.update_dest(now, key, id, spec, false);
        Ok(())
    }

    /// `ipvsadm -d`: remove a real server from a service. It waits in the
    /// trash, with its counts, until no connection refers to it (and is
    /// revived with them if added back meanwhile); packets of its
    /// connections are dropped, or the connections expired with
    /// `expire_nodest_conn`.
    pub fn del_dest(
        &mut self,
        now: Instant,
        key: &ServiceKey,
        addr: std::net::SocketAddr,
    ) -> Result<(), IpvsError> {
        let now = self.clock(now);
        let svc = self
            .services
            .get(key)
            .ok_or(IpvsError::NoSuchService(*key))?;
        let index = svc
            .dests
            .iter()
            .position(|id| self.dests.get(id).is_some_and(|d| d.addr == addr))
            .ok_or(IpvsError::NoSuchDest {
                service: *key,
                dest: addr,
            })?;
        let id = svc.dests[index];
        if let Some(d) = self.dests.get_mut(&id) {
            d.available = false;
        }
        if let Some(svc) = self.services.get_mut(key) {
            svc.dests.remove(index);
        }
        let cands = self.candidate_list(key);
        if let Some(svc) = self.services.get_mut(key) {
            svc.sched.dest_removed(&cands, id, index);
        }
        self.trash_dest(now, id);
        self.flush_nodest_conns(now);
        Ok(())
    }

    /// `ipvsadm -Z [-t|-u|-f service]`: zero the counters and rates of one
    /// service and its real servers, or of all.
    pub fn zero(&mut self, now: Instant, key: Option<&ServiceKey>) -> Result<(), IpvsError> {
        let now = self.clock(now);
        let keys: Vec<ServiceKey> = match key {
            Some(k) if !self.services.contains_key(k) => return Err(IpvsError::NoSuchService(*k)),
            Some(k) => vec![*k],
            None => self.services.keys().copied().collect(),
        };
        for k in keys {
            let Some(svc) = self.services.get_mut(&k) else {
                continue;
            };
            svc.stats.zero(now);
            for id in svc.dests.clone() {
                if let Some(d) = self.dests.get_mut(&id) {
                    d.stats.zero(now);
                }
            }
        }
        Ok(())
    }

    /// `ipvsadm --set TCP TCPFIN UDP` (seconds; 0 keeps the current value).
    pub fn set_timeout(&mut self, t: TimeoutUser) -> Result<(), IpvsError> {
        for v in [t.tcp, t.tcp_fin, t.udp] {
            if v > MAX_TIMEOUT_SECS {
                return Err(IpvsError::TimeoutOutOfRange(v));
            }
        }
        let s = |v: u32| Duration::from_secs(u64::from(v));
        if t.tcp != 0 {
            self.timeouts.tcp[1] = s(t.tcp);
        }
        if t.tcp_fin != 0 {
            self.timeouts.tcp[4] = s(t.tcp_fin);
        }
        if t.udp != 0 {
            self.timeouts.udp = s(t.udp);
        }
        Ok(())
    }

    /// `ipvsadm --timeout` as numbers (`ip_vs_get_timeouts`).
    pub fn get_timeout(&self) -> TimeoutUser {
        TimeoutUser {
            tcp: self.timeouts.tcp[1].as_secs() as u32,
            tcp_fin: self.timeouts.tcp[4].as_secs() as u32,
            udp: self.timeouts.udp.as_secs() as u32,
        }
    }

    /// `ip_vs_lookup_dest`: a real server of `svc` with this address.
    fn find_dest(&self, svc: &Service, spec: DestSpec) -> Option<DestId> {
        svc.dests
            .iter()
            .copied()
            .find(|id| self.dests.get(id).is_some_and(|d| d.addr == spec.addr))
    }

    /// `__ip_vs_update_dest`.
    fn update_dest(
        &mut self,
        now: Instant,
        key: &ServiceKey,
        id: DestId,
        spec: DestSpec,
        add: bool,
    ) {
        let Some(svc_id) = self.services.get(key).map(|s| s.id) else {
            return;
        };
        let Some(d) = self.dests.get_mut(&id) else {
            return;
        };
        if add || spec.weight != 0 {
            d.last_weight = spec.weight;
        }
        d.weight = spec.weight;
        d.fwd = spec.fwd;
        if d.svc_id != svc_id {
            d.stats.zero(now);
            d.svc_id = svc_id;
        }
        d.service = *key;
        d.available = true;
        d.idle_start = None;
        if spec.u_threshold == 0 || spec.u_threshold > d.u_threshold {
            d.overloaded = false;
        }
        d.u_threshold = spec.u_threshold;
        d.l_threshold = spec.l_threshold;
        if add {
            if let Some(svc) = self.services.get_mut(key) {
                svc.dests.insert(0, id);
            }
        }
        let cands = self.candidate_list(key);
        if let Some(svc) = self.services.get_mut(key) {
            svc.sched.dest_changed(&cands);
        }
    }

    /// `__ip_vs_del_dest`: into the trash, arming the trash timer.
    fn trash_dest(&mut self, now: Instant, id: DestId) {
        if self.trash.is_empty() {
            self.trash_timer = Some(now + Duration::from_secs(60));
        }
        let seq = self.fresh_id();
        if let Some(d) = self.dests.get_mut(&id) {
            d.idle_start = None;
            self.trash_index.insert((d.service, d.addr, seq));
        }
        self.trash.insert(seq, id);
    }
}

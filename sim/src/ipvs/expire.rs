//! Expiry on virtual time: connection timers (`ip_vs_conn_expire`), the
//! trash timer (`ip_vs_dest_trash_expire`) and the deletion paths
//! (`ip_vs_conn_del`, `ip_vs_expire_nodest_conn_flush`).
//!
//! Models: an entry that still controls connections is not freed — its
//! timeout becomes 60 s and the timer re-arms (`expire_later`); this is how
//! a persistence template outlives its own timeout while, for example,
//! TIME_WAIT connections it controls live, and why after the first such
//! re-arm every new connection through it restarts it with 60 s. Freeing an
//! entry unlinks it from its template and unbinds its real server
//! (`ip_vs_unbind_dest`: counts, overload flag with `l_threshold` or 3/4 of
//! `u_threshold` hysteresis). An entry deleted outright (`timeout = 0`)
//! also drops its template when that controls nothing more and is not
//! ASSURED. The trash timer runs every 60 s; a real server nothing refers
//! to is freed once idle for 120 s. With `expire_nodest_conn`, deleting a
//! real server deletes the connections bound to it (the kernel does so 1
//! jiffy later from a work queue; here at once).
//!
//! Must never: process timers out of order — events run by (time, kind:
//! connections before the trash, id).
//!
//! Error contract: unknown ids are ignored.

use std::time::Duration;

use super::conn::{Conn, ConnId};
use super::Ipvs;
use crate::time::Instant;

const EXPIRE_LATER: Duration = Duration::from_secs(60);
const TRASH_PERIOD: Duration = Duration::from_secs(120);

impl Ipvs {
    /// Fire every timer due at or before `now`, in time order.
    pub(crate) fn run_timers(&mut self, now: Instant) {
        loop {
            let conn = self.conns.next_due(now);
            let trash = self.trash_timer.filter(|t| *t <= now);
            match (conn, trash) {
                (Some((t, id)), Some(tt)) if t <= tt => self.expire_conn(id, t, false),
                (Some((t, id)), None) => self.expire_conn(id, t, false),
                (_, Some(tt)) => self.trash_tick(tt),
                (None, None) => break,
            }
        }
    }

    /// `ip_vs_conn_expire_now`: move the timer of `id` to `now`. It fires
    /// when timers next run — at the end of the packet being processed,
    /// as the kernel's timer softirq does, so a SYN that replaces the entry
    /// is scheduled while the old entry still counts.
    pub(crate) fn expire_now(&mut self, id: ConnId, now: Instant) {
        if self.conns.get(id).is_some_and(|c| c.expires > now) {
            self.conns.set_timer(id, now);
        }
    }

    /// `ip_vs_conn_del`: delete `id` now (`timeout = 0`).
    pub(crate) fn conn_del(&mut self, id: ConnId, now: Instant) {
        if let Some(c) = self.conns.get_mut(id) {
            c.timeout = Duration::ZERO;
            self.expire_conn(id, now, true);
        }
    }

    /// `ip_vs_conn_expire` for the timer of `id` firing at `at`.
    fn expire_conn(&mut self, id: ConnId, at: Instant, deleted: bool) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.n_control > 0 {
            c.timeout = EXPIRE_LATER;
            self.conns.set_timer(id, at + EXPIRE_LATER);
            return;
        }
        let Some(c) = self.conns.remove(id) else {
            return;
        };
        if let Some(ct) = c.control {
            let drop_ct = match self.conns.get_mut(ct) {
                Some(t) => {
                    t.n_control = t.n_control.saturating_sub(1);
                    let assured =
                        matches!(t.state, super::proto::ConnState::Template { assured: true });
                    deleted && t.n_control == 0 && (!t.template || !assured)
                }
                None => false,
            };
            if drop_ct {
                self.conn_del(ct, at);
            }
        }
        self.unbind_dest(&c);
    }

    /// `ip_vs_unbind_dest`.
    fn unbind_dest(&mut self, c: &Conn) {
        let Some(d) = c.dest.and_then(|id| self.dests.get_mut(&id)) else {
            return;
        };
        if c.template {
            d.persist_conns = d.persist_conns.saturating_sub(1);
        } else if c.inactive {
            d.inact_conns = d.inact_conns.saturating_sub(1);
        } else {
            d.active_conns = d.active_conns.saturating_sub(1);
        }
        let total = d.total_conns();
        if d.l_threshold != 0 {
            if total < u64::from(d.l_threshold) {
                d.overloaded = false;
            }
        } else if d.u_threshold != 0 {
            if total * 4 < u64::from(d.u_threshold) * 3 {
                d.overloaded = false;
            }
        } else {
            d.overloaded = false;
        }
        d.refs = d.refs.saturating_sub(1);
    }

    /// `ip_vs_dest_trash_expire` at `at`.
    fn trash_tick(&mut self, at: Instant) {
        let mut gone = Vec::new();
        for (seq, id) in &self.trash {
            let Some(d) = self.dests.get_mut(id) else {
                gone.push((*seq, None));
                continue;
            };
            if d.refs > 0 {
                continue;
            }
            match d.idle_start {
                Some(t) if at < t + TRASH_PERIOD => {}
                Some(_) => gone.push((*seq, Some((d.service, d.addr)))),
                None => d.idle_start = Some(at),
            }
        }
        for (seq, key) in gone {
            if let Some(id) = self.trash.remove(&seq) {
                self.dests.remove(&id);
            }
            if let Some((svc, addr)) = key {
                self.trash_index.remove(&(svc, addr, seq));
            }
        }
        self.trash_timer = (!self.trash.is_empty()).then(|| at + TRASH_PERIOD / 2);
    }

    /// `ip_vs_expire_nodest_conn_flush`, when `expire_nodest_conn` is set.
    pub(crate) fn flush_nodest_conns(&mut self, now: Instant) {
        if !self.config.sysctls.expire_nodest_conn {
            return;
        }
        let ids: Vec<ConnId> = self.conns.iter().map(|c| c.id).collect();
        for id in ids {
            let Some(c) = self.conns.get(id) else {
                continue;
            };
            let gone = c
                .dest
                .and_then(|d| self.dests.get(&d))
                .is_some_and(|d| !d.available);
            if !gone || c.n_control > 0 {
                continue;
            }
            let ctl = c.control;
            self.conn_del(id, now);
            if let Some(ct) = ctl {
                if self.conns.get(ct).is_some_and(|t| t.n_control == 0) {
                    self.conn_del(ct, now);
                }
            }
        }
    }
}

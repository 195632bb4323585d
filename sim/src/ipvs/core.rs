//! The packet path (`ip_vs_core.c`): what IPVS does with a packet at
//! LOCAL_IN (`ip_vs_in`) and with a real server's reply (`ip_vs_out`).
//!
//! Models: lookup of the packet's connection; connection reuse on a SYN
//! (`conn_reuse_mode`: a TIME_WAIT/CLOSE entry not under a template is
//! expired and the SYN scheduled anew — dropped instead if the packet's
//! conntrack entry is already confirmed; with `expire_nodest_conn` the same
//! for entries whose server has weight 0); entries whose real server left
//! its service (dropped, or expired and rescheduled with
//! `expire_nodest_conn`); scheduling only on TCP SYN (not RST) / SCTP INIT /
//! any UDP unless `sloppy_*`; the service lookup (fwmark first, then
//! `<proto, addr, port>`, then the port-0 service); `ip_vs_schedule` and
//! persistence (`ip_vs_sched_persist`: a template per client network,
//! reused while valid — its server still in the service and, with
//! `expire_quiescent_template`, of weight > 0); "no server" answered with
//! ICMP port unreachable (`ip_vs_leave`); counters, the protocol state
//! transition and the timer restart of every packet.
//!
//! Must never: fail. Every outcome is a verdict; malformed combinations
//! (a packet of a protocol IPVS does not balance) are `Accept`.
//!
//! Error contract: none — see the verdict types in `verdict`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::conn::{Conn, ConnId};
use super::dest::DestId;
use super::proto::{self, ConnState, Dir, SctpState, TcpState};
use super::sched::Flow;
use super::types::{FwdMethod, ServiceKey};
use super::verdict::{DropReason, Forward, InVerdict, OutVerdict, Packet, L4};
use super::Ipvs;
use crate::netfilter::{Family, Protocol};
use crate::time::Instant;

/// `ip_vs_schedule`'s `*ignored` outcomes.
enum NotScheduled {
    /// 1: accept the packet unscheduled.
    Accept,
    /// 0: no real server — `ip_vs_leave`.
    NoDest(ServiceKey),
}

const FTPPORT: u16 = 21;
const FTPDATA: u16 = 20;

impl Ipvs {
    /// `ip_vs_in`: a packet for a local address at LOCAL_IN at `now`.
    pub fn process_in(&mut self, now: Instant, pkt: &Packet) -> InVerdict {
        let now = self.clock(now);
        self.run_timers(now);
        let verdict = self.ip_vs_in(now, pkt);
        // Timers moved to `now` while handling the packet fire after it.
        self.run_timers(now);
        verdict
    }

    fn ip_vs_in(&mut self, now: Instant, pkt: &Packet) -> InVerdict {
        let proto = pkt.l4.protocol();
        let sys = self.config.sysctls;
        let mut cp = self.conns.find_in(proto, pkt.src, pkt.dst);

        if let (Some(id), true) = (cp, pkt.is_new_conn()) {
            let (mut resched, mut old_ct) = (false, false);
            let c = self.conns.get(id);
            let weight0 = self.conn_dest(id).is_some_and(|d| d.weight == 0);
            if sys.expire_nodest_conn && weight0 {
                resched = true;
                old_ct = pkt.ct_confirmed;
            } else if let Some(c) = c.filter(|c| reuse_expected(c, sys.conn_reuse_mode)) {
                old_ct = pkt.ct_confirmed;
                resched = c.n_control == 0 || !old_ct;
            }
            if resched {
                if self.conns.get(id).is_some_and(|c| c.n_control == 0) {
                    self.expire_now(id, now);
                }
                if old_ct {
                    return InVerdict::Drop(DropReason::ConnReuse);
                }
                cp = None;
            }
        }

        if let Some(id) = cp {
            if self.conn_dest(id).is_some_and(|d| !d.available) {
                if !sys.expire_nodest_conn || pkt.ct_confirmed {
                    if sys.expire_nodest_conn {
                        self.expire_now(id, now);
                    }
                    return InVerdict::Drop(DropReason::DestUnavailable);
                }
                self.expire_now(id, now);
                cp = None;
            }
        }

        let (id, new_conn) = match cp {
            Some(id) => (id, false),
            None => match self.try_schedule(now, pkt) {
                Ok(id) => (id, true),
                Err(NotScheduled::Accept) => return InVerdict::Accept,
                Err(NotScheduled::NoDest(key)) => return InVerdict::Unreachable(key),
            },
        };

        self.count(now, id, u64::from(pkt.len), Dir::Input);
        self.set_state(id, Dir::Input, pkt);
        let Some(c) = self.conns.get_mut(id) else {
            return InVerdict::Accept;
        };
        c.in_pkts += 1;
        let verdict = InVerdict::Forward(Forward {
            conn: id,
            dest: c.daddr,
            fwd: c.fwd,
            new_conn,
        });
        self.conn_put(id, now);
        verdict
    }

    /// `ip_vs_out`: a packet from a real server back to a client at `now`.
    pub fn process_out(&mut self, now: Instant, pkt: &Packet) -> OutVerdict {
        let now = self.clock(now);
        self.run_timers(now);
        let Some(id) = self.conns.find_out(pkt.l4.protocol(), pkt.src, pkt.dst) else {
            return OutVerdict::Accept;
        };
        let Some(c) = self.conns.get(id) else {
            return OutVerdict::Accept;
        };
        if c.fwd != FwdMethod::Masq {
            return OutVerdict::Accept;
        }
        let source = c.vaddr;
        self.set_state(id, Dir::Output, pkt);
        self.count(now, id, u64::from(pkt.len), Dir::Output);
        self.conn_put(id, now);
        self.run_timers(now);
        OutVerdict::Reply { conn: id, source }
    }

    /// `tcp/udp/sctp_conn_schedule` and `ip_vs_schedule`.
    fn try_schedule(&mut self, now: Instant, pkt: &Packet) -> Result<ConnId, NotScheduled> {
        let sys = self.config.sysctls;
        match pkt.l4 {
            L4::Tcp { flags } => {
                if flags & proto::TCP_RST != 0 || !(sys.sloppy_tcp || flags & proto::TCP_SYN != 0) {
                    return Err(NotScheduled::Accept);
                }
            }
            L4::Sctp { chunk, .. } => {
                if chunk == proto::SCTP_ABORT || !(sys.sloppy_sctp || chunk == proto::SCTP_INIT) {
                    return Err(NotScheduled::Accept);
                }
            }
            L4::Udp => {}
        }
        let key = self.service_find(pkt).ok_or(NotScheduled::Accept)?;
        if pkt.src.port() == FTPDATA {
            return Err(NotScheduled::Accept);
        }
        let spec = self.services[&key].spec;
        if spec.persistence.is_some() {
            return self.sched_persist(now, key, pkt);
        }
        if !matches!(key, ServiceKey::Fwmark { .. }) && pkt.dst.port() != key.port() {
            return Err(NotScheduled::NoDest(key));
        }
        let dest = self.pick(&key, pkt).ok_or(NotScheduled::NoDest(key))?;
        let one_packet = spec.one_packet && pkt.l4.protocol() == Protocol::Udp;
        let d = &self.dests[&dest];
        let dport = if d.addr.port() != 0 {
            d.addr.port()
        } else {
            pkt.dst.port()
        };
        let daddr = SocketAddr::new(d.addr.ip(), dport);
        let proto = Some(pkt.l4.protocol());
        let id = self.conn_new(
            now, proto, pkt.src, pkt.dst, daddr, dest, false, one_packet, pkt.fwmark,
        );
        self.conn_stats(now, &key, dest);
        Ok(id)
    }

    /// `ip_vs_service_find`.
    fn service_find(&self, pkt: &Packet) -> Option<ServiceKey> {
        if pkt.fwmark != 0 {
            let key = ServiceKey::Fwmark {
                family: Family::of(pkt.dst.ip()),
                mark: pkt.fwmark,
            };
            if self.services.contains_key(&key) {
                return Some(key);
            }
        }
        let protocol = pkt.l4.protocol();
        let exact = ServiceKey::Addr {
            protocol,
            addr: pkt.dst,
        };
        if self.services.contains_key(&exact) {
            return Some(exact);
        }
        let any_port = ServiceKey::Addr {
            protocol,
            addr: SocketAddr::new(pkt.dst.ip(), 0),
        };
        self.services.contains_key(&any_port).then_some(any_port)
    }

    /// Ask the service's scheduler.
    fn pick(&mut self, key: &ServiceKey, pkt: &Packet) -> Option<DestId> {
        let cands = self.candidate_list(key);
        let svc = self.services.get_mut(key)?;
        let flow = Flow {
            src: pkt.src,
            dst: pkt.dst,
        };
        svc.sched.schedule(&cands, &flow, svc.spec.sched_flags)
    }

    /// `ip_vs_sched_persist`.
    fn sched_persist(
        &mut self,
        now: Instant,
        key: ServiceKey,
        pkt: &Packet,
    ) -> Result<ConnId, NotScheduled> {
        let spec = self.services[&key].spec;
        let Some(persistence) = spec.persistence else {
            return Err(NotScheduled::NoDest(key));
        };
        let snet = SocketAddr::new(persistence.mask(pkt.src.ip()), 0);
        let (dst_port, svc_port) = (pkt.dst.port(), key.port());
        let (tpl_proto, tpl_vaddr) = if dst_port == svc_port {
            let vport = if svc_port != FTPPORT { dst_port } else { 0 };
            (
                Some(pkt.l4.protocol()),
                SocketAddr::new(pkt.dst.ip(), vport),
            )
        } else if let ServiceKey::Fwmark { family, mark } = key {
            (None, SocketAddr::new(mark_addr(family, mark), 0))
        } else {
            (Some(pkt.l4.protocol()), SocketAddr::new(pkt.dst.ip(), 0))
        };
        let found = self.conns.find_template(tpl_proto, snet, tpl_vaddr);
        let valid = found.filter(|ct| self.check_template(*ct));
        let (ct, dest) = match valid.and_then(|ct| Some((ct, self.conns.get(ct)?.dest?))) {
            Some(found) => found,
            None => {
                let dest = self.pick(&key, pkt).ok_or(NotScheduled::NoDest(key))?;
                let dport = if dst_port == svc_port && svc_port != FTPPORT {
                    self.dests[&dest].addr.port()
                } else {
                    0
                };
                let daddr = SocketAddr::new(self.dests[&dest].addr.ip(), dport);
                let ct = self.conn_new(
                    now, tpl_proto, snet, tpl_vaddr, daddr, dest, true, false, pkt.fwmark,
                );
                if let Some(t) = self.conns.get_mut(ct) {
                    t.timeout = Duration::from_secs(u64::from(persistence.timeout_secs));
                }
                (ct, dest)
            }
        };
        let d = &self.dests[&dest];
        let dport = if dst_port == svc_port && d.addr.port() != 0 {
            d.addr.port()
        } else {
            dst_port
        };
        let daddr = SocketAddr::new(d.addr.ip(), dport);
        let one_packet = spec.one_packet && pkt.l4.protocol() == Protocol::Udp;
        let proto = Some(pkt.l4.protocol());
        let cp = self.conn_new(
            now, proto, pkt.src, pkt.dst, daddr, dest, false, one_packet, pkt.fwmark,
        );
        if let Some(c) = self.conns.get_mut(cp) {
            c.control = Some(ct);
        }
        if let Some(t) = self.conns.get_mut(ct) {
            t.n_control += 1;
        }
        self.conn_put(ct, now);
        self.conn_stats(now, &key, dest);
        Ok(cp)
    }

    /// `ip_vs_check_template`: is the template's server still usable?
    /// If not, invalidate the template (it lingers until it expires).
    fn check_template(&mut self, ct: ConnId) -> bool {
        let quiescent = self.config.sysctls.expire_quiescent_template;
        let ok = self
            .conn_dest(ct)
            .is_some_and(|d| d.available && !(quiescent && d.weight == 0));
        if !ok {
            self.conns.invalidate_template(ct);
        }
        ok
    }

    /// `ip_vs_conn_new` with `ip_vs_bind_dest`.
    #[allow(clippy::too_many_arguments)]
    fn conn_new(
        &mut self,
        now: Instant,
        protocol: Option<Protocol>,
        client: SocketAddr,
        vaddr: SocketAddr,
        daddr: SocketAddr,
        dest: DestId,
        template: bool,
        one_packet: bool,
        fwmark: u32,
    ) -> ConnId {
        let Some(d) = self.dests.get_mut(&dest) else {
            return ConnId(0);
        };
        let state = if template {
            ConnState::Template { assured: false }
        } else {
            match protocol {
                Some(Protocol::Tcp) => ConnState::Tcp(TcpState::None),
                Some(Protocol::Sctp) => ConnState::Sctp(SctpState::None),
                _ => ConnState::Udp,
            }
        };
        d.refs += 1;
        if template {
            d.persist_conns += 1;
        } else {
            d.inact_conns += 1;
        }
        if d.u_threshold != 0 && d.total_conns() >= u64::from(d.u_threshold) {
            d.overloaded = true;
        }
        let timeout = Duration::from_secs(3);
        self.conns.insert(Conn {
            id: ConnId(0),
            protocol,
            client,
            vaddr,
            daddr,
            state,
            fwd: d.fwd,
            fwmark,
            timeout,
            expires: now + timeout,
            template,
            inactive: true,
            no_output: d.fwd != FwdMethod::Masq,
            one_packet: one_packet && protocol == Some(Protocol::Udp),
            control: None,
            n_control: 0,
            in_pkts: 0,
            dest: Some(dest),
        })
    }

    /// `ip_vs_conn_stats`: a scheduled connection counts for its server
    /// and service.
    fn conn_stats(&mut self, now: Instant, key: &ServiceKey, dest: DestId) {
        if let Some(d) = self.dests.get_mut(&dest) {
            d.stats.add_conn(now);
        }
        if let Some(s) = self.services.get_mut(key) {
            s.stats.add_conn(now);
        }
    }

    /// `ip_vs_in_stats` / `ip_vs_out_stats`: only while the server is in
    /// its service.
    fn count(&mut self, now: Instant, id: ConnId, bytes: u64, dir: Dir) {
        let Some(dest) = self.conns.get(id).and_then(|c| c.dest) else {
            return;
        };
        let Some(d) = self.dests.get_mut(&dest) else {
            return;
        };
        if !d.available {
            return;
        }
        let key = d.service;
        let add = |s: &mut super::stats::Stats| match dir {
            Dir::Output => s.add_out(now, bytes),
            _ => s.add_in(now, bytes),
        };
        add(&mut d.stats);
        if let Some(s) = self.services.get_mut(&key) {
            add(&mut s.stats);
        }
    }

    /// `state_transition` of the entry's protocol for one packet.
    fn set_state(&mut self, id: ConnId, dir: Dir, pkt: &Packet) {
        let timeouts = &self.timeouts;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        let mut dir = dir;
        if c.no_output && !matches!(c.state, ConnState::Udp) {
            if dir == Dir::Output {
                c.no_output = false;
            } else {
                dir = Dir::InputOnly;
            }
        }
        let old = c.state;
        let new = match (old, pkt.l4) {
            (ConnState::Tcp(s), L4::Tcp { flags }) => {
                ConnState::Tcp(proto::tcp_next(s, dir, flags))
            }
            (
                ConnState::Sctp(s),
                L4::Sctp {
                    chunk,
                    abort_follows,
                },
            ) => ConnState::Sctp(proto::sctp_next(s, dir, chunk, abort_follows)),
            (s, _) => s,
        };
        c.state = new;
        c.timeout = timeouts.of(new);
        let assure = match new {
            ConnState::Udp => dir == Dir::Output,
            s => new != old && s.is_established(),
        };
        let control = c.control;
        let was_inactive = c.inactive;
        let flip = new != old && !matches!(new, ConnState::Udp) && was_inactive == new.is_active();
        if flip {
            c.inactive = !new.is_active();
        }
        if flip {
            if let Some(d) = c.dest.and_then(|d| self.dests.get_mut(&d)) {
                if new.is_active() {
                    d.active_conns += 1;
                    d.inact_conns = d.inact_conns.saturating_sub(1);
                } else {
                    d.inact_conns += 1;
                    d.active_conns = d.active_conns.saturating_sub(1);
                }
            }
        }
        if assure {
            if let Some(t) = control.and_then(|ct| self.conns.get_mut(ct)) {
                if t.template {
                    t.state = ConnState::Template { assured: true };
                }
            }
        }
    }

    /// `ip_vs_conn_put`: restart the timer (one-packet entries expire now).
    fn conn_put(&mut self, id: ConnId, now: Instant) {
        let Some(c) = self.conns.get(id) else {
            return;
        };
        if c.one_packet {
            self.expire_now(id, now);
        } else {
            let at = now + c.timeout;
            self.conns.set_timer(id, at);
        }
    }
}

/// `is_new_conn_expected`.
fn reuse_expected(c: &Conn, mode: u8) -> bool {
    if mode == 0 || c.control.is_some() {
        return false;
    }
    match c.state {
        ConnState::Tcp(s) => {
            s == TcpState::TimeWait
                || s == TcpState::Close
                || (mode & 2 != 0 && s == TcpState::FinWait && c.no_output)
        }
        ConnState::Sctp(s) => s == SctpState::Closed,
        _ => false,
    }
}

/// A fwmark as the template's virtual address (`htonl(svc->fwmark)` in
/// the first word).
fn mark_addr(family: Family, mark: u32) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::from(mark)),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::from(u128::from(mark) << 96)),
    }
}

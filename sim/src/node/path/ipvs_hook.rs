//! IPVS in the packet path: where `ip_vs_core.c` hooks into netfilter, and
//! what happens to a packet IPVS takes.
//!
//! Models: at LOCAL_IN after filter INPUT (priorities 98 and 99, before nat
//! INPUT) `ip_vs_reply4` then `ip_vs_remote_request4`; in FORWARD after
//! filter FORWARD `ip_vs_reply4`; at LOCAL_OUT after nat OUTPUT
//! `ip_vs_local_reply4` then `ip_vs_local_request4` (before filter
//! OUTPUT). A request IPVS schedules (or that belongs to one of its
//! connections) is NAT-forwarded (`ip_vs_nat_xmit`): its destination
//! becomes the real server; with `net.ipv4.vs.conntrack=1` the packet's
//! not yet confirmed conntrack entry gets the real server in its reply
//! tuple (`ip_vs_update_conntrack`), otherwise the packet is untracked; a
//! remote real server gets the packet through the LOCAL_OUT hooks again
//! (every iptables table and nftables chain there; the nat binding exists
//! already, conntrack and IPVS do not look again) and POSTROUTING,
//! where kube-proxy's KUBE-POSTROUTING may masquerade it, with its TTL
//! decreased; a local real server gets it as the hook goes on. A reply of
//! a NAT connection gets the virtual address as its source. A service
//! without an available real server answers ICMP port unreachable
//! (`ip_vs_leave`). Every packet IPVS touches carries `ipvs_property` for
//! `-m ipvs` and is not looked at by IPVS again.
//!
//! Not modelled: IPVS's handling of ICMP errors about its connections, and
//! forwarding methods other than NAT (kube-proxy uses NAT only): such
//! packets are dropped as unprocessable.
//!
//! Must never: let IPVS see a packet twice, or rewrite a packet of a
//! protocol IPVS does not balance.
//!
//! Error contract: [`EvalError`] only from the rules the packet meets on
//! its way out; every IPVS outcome is a [`Delivery`] or "go on" (`None`).

use std::net::SocketAddr;

use super::super::reject::reject_reply;
use super::{Acc, InFlight, Run};
use crate::conntrack::{Dir, ManipType, Status};
use crate::ipvs::{self, FwdMethod, InVerdict, OutVerdict, ServiceKey, L4};
use crate::netfilter::eval::{EvalError, IpvsSkb};
use crate::netfilter::{Family, Hook, IpvsConnFacts, IpvsMethod, Protocol, RejectWith};
use crate::node::nft::{PRI_CONNTRACK, PRI_NAT_DST};
use crate::node::outcome::{Delivery, DropReason};
use crate::node::route::RouteResult;
use crate::packet::{Side, Transport};

/// `SCTP_CID_INIT`: an SCTP packet with verification tag 0 is an INIT.
const SCTP_INIT: u8 = 1;

impl Run<'_> {
    /// The packet as IPVS reads it; `None` for what IPVS does not balance
    /// (or a packet it already handled).
    fn vs_packet(&self, f: &InFlight) -> Option<ipvs::Packet> {
        if f.ipvs.is_some() {
            return None;
        }
        let pkt = &f.pkt;
        let src = SocketAddr::new(pkt.src(), pkt.src_port()?);
        let dst = SocketAddr::new(pkt.dst(), pkt.dst_port()?);
        let l4 = match pkt.protocol() {
            Protocol::Tcp => L4::Tcp {
                flags: pkt.tcp_flags().map_or(0, |t| t.0),
            },
            Protocol::Udp => L4::Udp,
            Protocol::Sctp => {
                let init = matches!(pkt.repr().transport, Transport::Sctp { vtag: 0, .. });
                L4::Sctp {
                    chunk: if init { SCTP_INIT } else { 0 },
                    abort_follows: false,
                }
            }
            _ => return None,
        };
        let ct_confirmed = f
            .att
            .and_then(|a| self.st.conntrack.entry(a.id))
            .is_some_and(|e| e.status().has(Status::CONFIRMED));
        Some(ipvs::Packet {
            src,
            dst,
            l4,
            fwmark: f.mark,
            len: u32::try_from(pkt.len()).unwrap_or(u32::MAX),
            ct_confirmed,
        })
    }

    /// LOCAL_IN after filter INPUT. `Some`: IPVS took the packet.
    pub(super) fn ipvs_local_in(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<Delivery>, EvalError> {
        let Some(vp) = self.vs_packet(f) else {
            return Ok(None);
        };
        if let Some(d) = self.ipvs_reply(f, &vp) {
            return Ok(d);
        }
        self.ipvs_request(f, acc, &vp)
    }

    /// LOCAL_OUT after nat OUTPUT. `Some`: IPVS took the packet.
    pub(super) fn ipvs_local_out(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
    ) -> Result<Option<Delivery>, EvalError> {
        self.ipvs_local_in(f, acc)
    }

    /// FORWARD after filter FORWARD: replies of NAT connections.
    pub(super) fn ipvs_forward(&mut self, f: &mut InFlight) -> Option<Delivery> {
        let vp = self.vs_packet(f)?;
        self.ipvs_reply(f, &vp).flatten()
    }

    /// `ip_vs_out`: `None` when the packet is no reply of an IPVS NAT
    /// connection; `Some(None)` when its source was rewritten and it goes
    /// on; `Some(Some(_))` when it cannot go on.
    fn ipvs_reply(&mut self, f: &mut InFlight, vp: &ipvs::Packet) -> Option<Option<Delivery>> {
        let OutVerdict::Reply { source, .. } = self.st.ipvs.process_out(self.now, vp) else {
            return None;
        };
        if let Err(e) = f
            .pkt
            .rewrite(Side::Source, source.ip(), Some(source.port()))
        {
            return Some(Some(self.drop(f, DropReason::Unprocessable(e.to_string()))));
        }
        if !self.st.ipvs.sysctls().conntrack {
            self.untrack(f);
        }
        f.ipvs = Some(IpvsSkb { conn: None });
        Some(None)
    }

    /// `ip_vs_notrack`: the packet goes on without its conntrack entry.
    fn untrack(&mut self, f: &mut InFlight) {
        if let Some(a) = f.att.take() {
            self.st.conntrack.finish(&a, false);
        }
    }

    /// `ip_vs_in` for a request.
    fn ipvs_request(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
        vp: &ipvs::Packet,
    ) -> Result<Option<Delivery>, EvalError> {
        let fw = match self.st.ipvs.process_in(self.now, vp) {
            InVerdict::Accept => return Ok(None),
            InVerdict::Drop(why) => {
                let why = match why {
                    ipvs::DropReason::DestUnavailable => {
                        "its connection's real server left the service"
                    }
                    ipvs::DropReason::ConnReuse => {
                        "a SYN reusing a connection whose conntrack entry is confirmed"
                    }
                };
                return Ok(Some(self.drop(f, DropReason::Ipvs(why))));
            }
            InVerdict::Unreachable(key) => return self.ipvs_leave(f, key).map(Some),
            InVerdict::Forward(fw) => fw,
        };
        if fw.fwd != FwdMethod::Masq {
            let why = format!("IPVS forwarding method {} is not modelled", fw.fwd.name());
            return Ok(Some(self.drop(f, DropReason::Unprocessable(why))));
        }
        let conn = self.st.ipvs.conn(fw.conn);
        let one_packet = conn.is_none_or(|c| c.one_packet);
        if fw.new_conn {
            let key = self
                .st
                .ipvs
                .conn_dest(fw.conn)
                .map(|d| d.service)
                .unwrap_or(ServiceKey::Addr {
                    protocol: vp.l4.protocol(),
                    addr: vp.dst,
                });
            acc.nat.dnat = Some((fw.dest.ip(), Some(fw.dest.port())));
            acc.nat.ipvs = Some(key);
        }
        // ip_vs_nat_xmit: rewrite, then tell conntrack (or untrack).
        if let Err(e) = f
            .pkt
            .rewrite(Side::Destination, fw.dest.ip(), Some(fw.dest.port()))
        {
            return Ok(Some(self.drop(f, DropReason::Unprocessable(e.to_string()))));
        }
        match f.att {
            Some(a) if self.st.ipvs.sysctls().conntrack => {
                let reply = self.st.conntrack.entry(a.id).map(|e| *e.reply());
                if let (Some(mut r), Dir::Original, false) = (reply, a.info.dir(), one_packet) {
                    r.src = fw.dest.ip();
                    if r.has_ports() {
                        r.src_port = fw.dest.port();
                    }
                    self.st.conntrack.alter_reply(a.id, r);
                }
            }
            Some(_) => self.untrack(f),
            None => {}
        }
        f.ipvs = Some(IpvsSkb {
            conn: Some(IpvsConnFacts {
                vaddr: vp.dst.ip(),
                vport: vp.dst.port(),
                method: IpvsMethod::Masq,
            }),
        });
        let (dev, next_hop) = match self.k.routes.lookup(fw.dest.ip(), self.k.ifaces) {
            // A local real server: the hook goes on (`NF_ACCEPT`).
            RouteResult::Local => return Ok(None),
            RouteResult::Unicast { dev, next_hop, .. } => (dev, next_hop),
            RouteResult::Blackhole | RouteResult::Unreachable => {
                return Ok(Some(self.drop(f, DropReason::NoRoute)))
            }
        };
        if f.pkt.decrement_ttl().is_none() {
            return Ok(Some(self.drop(f, DropReason::TtlExceeded)));
        }
        self.ipvs_send(f, acc, dev, next_hop).map(Some)
    }

    /// `ip_vs_send_or_cont`: the LOCAL_OUT hooks (the packet has no input
    /// device there), then `dst_output` and POSTROUTING.
    fn ipvs_send(
        &mut self,
        f: &mut InFlight,
        acc: &mut Acc,
        dev: String,
        next_hop: std::net::IpAddr,
    ) -> Result<Delivery, EvalError> {
        let in_iface = f.in_iface.take();
        f.out_iface = Some(dev);
        f.next_hop = Some(next_hop);
        // Conntrack does not look again (the packet has its entry), IPVS
        // not either (`ipvs_property`); everything else at LOCAL_OUT runs.
        if let Some(d) = self.filters(Hook::Output, ..PRI_CONNTRACK, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Output, PRI_CONNTRACK..PRI_NAT_DST, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.nat(Hook::Output, ManipType::Dst, f, acc)? {
            return Ok(d);
        }
        if let Some(d) = self.filters(Hook::Output, PRI_NAT_DST.., f, acc)? {
            return Ok(d);
        }
        f.in_iface = in_iface;
        self.postrouting(f, acc, true)
    }

    /// `ip_vs_leave`: no real server — ICMP port unreachable to the
    /// client, the packet dropped.
    fn ipvs_leave(&mut self, f: &mut InFlight, key: ServiceKey) -> Result<Delivery, EvalError> {
        self.untrack(f);
        let with = match f.family {
            Family::Ipv4 => RejectWith::IcmpPortUnreachable,
            Family::Ipv6 => RejectWith::Icmp6PortUnreachable,
        };
        let Some(reply) = reject_reply(&f.pkt, with, f.pkt.dst()) else {
            return Ok(Delivery::Dropped(DropReason::Ipvs("no real server")));
        };
        let reply = self.packet(reply, None)?;
        Ok(Delivery::IcmpError {
            by: format!("IPVS (no real server for {key})"),
            reply: Box::new(reply),
        })
    }
}

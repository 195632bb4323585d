//! The IPVS connection table (`ip_vs_conn.c`): connection entries and
//! persistence templates, their lookup keys and expiry timers.
//!
//! Models: an entry per connection (client, virtual and real-server
//! address, protocol state, timeout, flags `TEMPLATE`, `INACTIVE`,
//! `NOOUTPUT`, `ONE_PACKET`, the controlling template and the count of
//! connections it controls); lookups as `ip_vs_conn_in_get` (client →
//! virtual), `ip_vs_conn_out_get` (real server → client) and
//! `ip_vs_ct_in_get` (templates, by client network and virtual address),
//! the newest entry winning when keys collide as the kernel's head-inserted
//! hash chains do; one-packet entries are never hashed; a timer per entry.
//!
//! Must never: iterate a hash map, or list entries in anything but a fixed
//! order. The kernel lists `/proc/net/ip_vs_conn` in hash-bucket order under
//! a boot-time random seed; this table lists in creation order.
//!
//! Error contract: operations on an unknown id are no-ops returning `None`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::dest::DestId;
use super::proto::ConnState;
use super::types::FwdMethod;
use crate::netfilter::Protocol;
use crate::time::Instant;

/// Identity of a connection entry, unique for the life of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ipvs-conn#{}", self.0)
    }
}

/// One entry of the connection table (a connection or a template).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conn {
    pub id: ConnId,
    /// `None` for a fwmark template (shown as protocol `IP`).
    pub protocol: Option<Protocol>,
    /// Client address and port (template: client network, port 0).
    pub client: SocketAddr,
    /// Virtual address and port (fwmark template: the mark as address).
    pub vaddr: SocketAddr,
    /// Real server address and port packets are forwarded to.
    pub daddr: SocketAddr,
    pub state: ConnState,
    pub fwd: FwdMethod,
    /// `skb->mark` of the packet that created it.
    pub fwmark: u32,
    /// The timeout the timer restarts with on every packet.
    pub timeout: Duration,
    /// When the timer fires.
    pub expires: Instant,
    /// `IP_VS_CONN_F_TEMPLATE`: a persistence template.
    pub template: bool,
    /// `IP_VS_CONN_F_INACTIVE`: counted in the server's inactconns.
    pub inactive: bool,
    /// `IP_VS_CONN_F_NOOUTPUT`: no reply seen yet on a non-NAT server.
    pub no_output: bool,
    /// `IP_VS_CONN_F_ONE_PACKET`: UDP one-packet scheduling.
    pub one_packet: bool,
    /// The template controlling it.
    pub control: Option<ConnId>,
    /// Connections this entry controls.
    pub n_control: u32,
    /// Packets client → server.
    pub in_pkts: u64,
    pub(crate) dest: Option<DestId>,
}

type InKey = (Protocol, SocketAddr, SocketAddr);
type TplKey = (Option<Protocol>, SocketAddr, SocketAddr);

/// The table: entries by id, lookup indexes and timers.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnTable {
    conns: BTreeMap<ConnId, Conn>,
    by_in: BTreeMap<InKey, Vec<ConnId>>,
    by_out: BTreeMap<InKey, Vec<ConnId>>,
    by_tpl: BTreeMap<TplKey, Vec<ConnId>>,
    timers: BTreeSet<(Instant, ConnId)>,
    next: u64,
}

fn unlink<K: Ord>(map: &mut BTreeMap<K, Vec<ConnId>>, key: K, id: ConnId) {
    if let Some(v) = map.get_mut(&key) {
        v.retain(|c| *c != id);
        if v.is_empty() {
            map.remove(&key);
        }
    }
}

impl ConnTable {
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns.get_mut(&id)
    }

    /// Every entry, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Conn> {
        self.conns.values()
    }

    /// `ip_vs_conn_new` + `ip_vs_conn_hash`: store `conn` under a fresh id.
    pub(crate) fn insert(&mut self, mut conn: Conn) -> ConnId {
        self.next += 1;
        let id = ConnId(self.next);
        conn.id = id;
        if !conn.one_packet {
            if conn.template {
                let key = (conn.protocol, conn.client, conn.vaddr);
                self.by_tpl.entry(key).or_default().push(id);
            } else if let Some(p) = conn.protocol {
                self.by_in
                    .entry((p, conn.client, conn.vaddr))
                    .or_default()
                    .push(id);
                self.by_out
                    .entry((p, conn.daddr, conn.client))
                    .or_default()
                    .push(id);
            }
        }
        self.timers.insert((conn.expires, id));
        self.conns.insert(id, conn);
        id
    }

    /// `ip_vs_conn_in_get`: the connection of a client → virtual packet.
    pub(crate) fn find_in(
        &self,
        proto: Protocol,
        client: SocketAddr,
        vaddr: SocketAddr,
    ) -> Option<ConnId> {
        self.by_in.get(&(proto, client, vaddr))?.last().copied()
    }

    /// `ip_vs_conn_out_get`: the connection of a server → client packet.
    pub(crate) fn find_out(
        &self,
        proto: Protocol,
        server: SocketAddr,
        client: SocketAddr,
    ) -> Option<ConnId> {
        self.by_out.get(&(proto, server, client))?.last().copied()
    }

    /// `ip_vs_ct_in_get`: a valid template for this client network.
    pub(crate) fn find_template(
        &self,
        proto: Option<Protocol>,
        client_net: SocketAddr,
        vaddr: SocketAddr,
    ) -> Option<ConnId> {
        self.by_tpl
            .get(&(proto, client_net, vaddr))?
            .last()
            .copied()
    }

    /// `ip_vs_check_template` invalidation: ports become 65535 (client 0)
    /// and the template can no longer be found; it stays until it expires.
    pub(crate) fn invalidate_template(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        unlink(&mut self.by_tpl, (c.protocol, c.client, c.vaddr), id);
        c.client.set_port(0);
        c.vaddr.set_port(0xffff);
        c.daddr.set_port(0xffff);
    }

    /// Restart the timer of `id` to fire at `at`.
    pub(crate) fn set_timer(&mut self, id: ConnId, at: Instant) {
        if let Some(c) = self.conns.get_mut(&id) {
            self.timers.remove(&(c.expires, id));
            c.expires = at;
            self.timers.insert((at, id));
        }
    }

    /// The earliest timer due at or before `now`.
    pub(crate) fn next_due(&self, now: Instant) -> Option<(Instant, ConnId)> {
        self.timers.first().copied().filter(|(t, _)| *t <= now)
    }

    /// The earliest timer.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Unhash and drop `id`.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        self.timers.remove(&(c.expires, id));
        if c.template {
            unlink(&mut self.by_tpl, (c.protocol, c.client, c.vaddr), id);
        } else if let Some(p) = c.protocol {
            unlink(&mut self.by_in, (p, c.client, c.vaddr), id);
            unlink(&mut self.by_out, (p, c.daddr, c.client), id);
        }
        Some(c)
    }
}

//! Connection tracking: the kernel's conntrack table for one network
//! namespace.
//!
//! Models: `nf_conntrack_in` ([`Conntrack::classify`]: find the entry of a
//! packet by its tuple in either direction, or create an unconfirmed one;
//! ICMP errors are RELATED to the connection they quote), protocol state
//! (TCP states with the kernel's transition table, UDP unreplied → replied
//! → ASSURED stream, ICMP, SCTP and generic), timeouts on virtual time,
//! `nf_conntrack_max` with the kernel's early drop (evict an entry that is
//! not ASSURED, else drop the new packet), confirmation when a packet
//! leaves the hooks ([`Conntrack::finish`]), NAT bindings set once per
//! connection and applied to every packet in both directions (`nat`), the
//! `--ctstate` of a packet, deletion by filter and `conntrack -L` output
//! (`list`).
//!
//! Must never: read a clock (time is an argument), iterate a hash map, let
//! an unconfirmed entry be found by another packet, or list one.
//!
//! Error contract: [`Classify::TableFull`] when a new packet cannot get an
//! entry; NAT setup and application return [`NatError`]; deletion and
//! listing cannot fail. Operations on an unknown entry id are no-ops.

mod alter;
mod config;
mod entry;
mod list;
mod nat;
mod tcp;

pub use config::{ConntrackConfig, SysctlError, Timeouts};
pub use entry::{Attached, CtInfo, Dir, Entry, Status};
pub use list::Filter;
pub use nat::{ManipType, NatError, NatRange};
pub use tcp::TcpState;

use std::collections::{BTreeMap, BTreeSet};

use entry::ProtoState;
use tcp::{TcpTrack, TcpVerdict};

use crate::netfilter::{CtStates, Protocol};
use crate::packet::{Packet, Tuple};
use crate::time::Instant;

/// What conntrack made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classify {
    /// The packet belongs to (or starts) a connection.
    Tracked(Attached),
    /// No connection: `--ctstate INVALID` (bad TCP flags for the state, an
    /// ICMP error about no known connection, an untrackable packet).
    Invalid,
    /// A new connection and a full table with nothing to evict: the kernel
    /// drops the packet ("nf_conntrack: table full, dropping packet").
    TableFull,
}

/// The conntrack table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conntrack {
    config: ConntrackConfig,
    /// Every entry, confirmed or not, by id.
    entries: BTreeMap<u64, Entry>,
    /// Confirmed entries by tuple, both directions.
    index: BTreeMap<Tuple, (u64, Dir)>,
    /// Confirmed entries by expiry.
    expiry: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// Packets dropped because the table was full.
    dropped_full: u64,
}

impl Conntrack {
    /// An empty table.
    pub fn new(config: ConntrackConfig) -> Conntrack {
        Conntrack {
            config,
            entries: BTreeMap::new(),
            index: BTreeMap::new(),
            expiry: BTreeSet::new(),
            next_id: 1,
            dropped_full: 0,
        }
    }

    /// The tunables.
    pub fn config(&self) -> &ConntrackConfig {
        &self.config
    }

    /// Change the tunables (existing timeouts keep running).
    pub fn config_mut(&mut self) -> &mut ConntrackConfig {
        &mut self.config
    }

    /// The number of confirmed entries.
    pub fn len(&self) -> usize {
        self.index.len() / 2
    }

    /// Whether there are no confirmed entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Packets dropped because the table was full.
    pub fn dropped_full(&self) -> u64 {
        self.dropped_full
    }

    /// Confirmed entries in creation order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .values()
            .filter(|e| e.status.has(Status::CONFIRMED))
    }

    /// An entry by id (confirmed or attached to the packet in flight).
    pub fn entry(&self, id: u64) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// The confirmed entry that has `tuple` in either direction.
    pub fn find(&self, tuple: &Tuple) -> Option<(&Entry, Dir)> {
        let (id, dir) = self.index.get(tuple)?;
        Some((self.entries.get(id)?, *dir))
    }

    /// The `--ctstate` bits of a packet with this attachment (`None`:
    /// INVALID).
    pub fn ctstates(&self, att: Option<&Attached>) -> CtStates {
        match att.and_then(|a| Some((a, self.entries.get(&a.id)?))) {
            Some((a, e)) => e.ctstates(a.info),
            None => CtStates::INVALID,
        }
    }

    /// Drop every entry whose timeout has passed at `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.remove(id);
        }
    }

    /// Remove an entry (confirmed or not).
    fn remove(&mut self, id: u64) {
        if let Some(e) = self.entries.remove(&id) {
            if e.status.has(Status::CONFIRMED) {
                self.index.remove(&e.orig);
                self.index.remove(&e.reply);
                self.expiry.remove(&(e.expires, id));
            }
        }
    }

    fn set_timeout(&mut self, id: u64, expires: Instant) {
        if let Some(e) = self.entries.get_mut(&id) {
            if e.status.has(Status::CONFIRMED) {
                self.expiry.remove(&(e.expires, id));
                self.expiry.insert((expires, id));
            }
            e.expires = expires;
        }
    }

    /// `nf_conntrack_in`: find or create the entry of a packet at `now`.
    pub fn classify(&mut self, pkt: &Packet, now: Instant) -> Classify {
        self.expire(now);
        if pkt.is_icmp_error() {
            return self.classify_icmp_error(pkt);
        }
        let Some(tuple) = pkt.tuple() else {
            return Classify::Invalid;
        };
        loop {
            let (id, dir) = match self.index.get(&tuple) {
                Some(&(id, dir)) => (id, dir),
                None => match self.create(pkt, tuple, now) {
                    Ok(Some(id)) => (id, Dir::Original),
                    Ok(None) => return Classify::Invalid,
                    Err(()) => {
                        self.dropped_full += 1;
                        return Classify::TableFull;
                    }
                },
            };
            match self.track(id, dir, pkt, now) {
                Track::Ok(info) => return Classify::Tracked(Attached { id, info }),
                Track::Invalid => {
                    if !self.entries[&id].status.has(Status::CONFIRMED) {
                        self.remove(id);
                    }
                    return Classify::Invalid;
                }
                Track::Reopen => self.remove(id),
            }
        }
    }

    fn classify_icmp_error(&self, pkt: &Packet) -> Classify {
        let found = pkt
            .icmp_inner_tuple()
            .and_then(|t| t.invert())
            .and_then(|t| self.index.get(&t));
        match found {
            Some(&(id, Dir::Original)) => Classify::Tracked(Attached {
                id,
                info: CtInfo::Related,
            }),
            Some(&(id, Dir::Reply)) => Classify::Tracked(Attached {
                id,
                info: CtInfo::RelatedReply,
            }),
            None => Classify::Invalid,
        }
    }

    /// Allocate an unconfirmed entry for a new flow. `Ok(None)`: the packet
    /// cannot start a connection (INVALID). `Err`: table full.
    fn create(&mut self, pkt: &Packet, tuple: Tuple, now: Instant) -> Result<Option<u64>, ()> {
        let Some(reply) = tuple.invert() else {
            return Ok(None);
        };
        let proto = match tuple.proto {
            Protocol::Tcp => {
                let flags = pkt.tcp_flags().unwrap_or_default();
                if !TcpTrack::can_create(flags, &self.config) {
                    return Ok(None);
                }
                ProtoState::Tcp(TcpTrack::new())
            }
            Protocol::Udp => ProtoState::Udp {
                stream_after: now + std::time::Duration::from_secs(2),
            },
            Protocol::Sctp => ProtoState::Sctp,
            Protocol::Icmp | Protocol::IcmpV6 => ProtoState::Icmp,
            Protocol::Other(_) => ProtoState::Generic,
        };
        if self.config.max != 0 && self.entries.len() >= self.config.max && !self.early_drop() {
            return Err(());
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            id,
            Entry {
                id,
                orig: tuple,
                reply,
                status: Status::default(),
                proto,
                expires: now,
                dying: false,
                mark: 0,
                created: now,
            },
        );
        Ok(Some(id))
    }

    /// Evict the oldest confirmed entry that is not ASSURED. (The kernel
    /// looks only in a few hash buckets near the new tuple; this model has
    /// no buckets and looks at the whole table, oldest first.)
    fn early_drop(&mut self) -> bool {
        let victim = self
            .entries
            .values()
            .find(|e| e.status.has(Status::CONFIRMED) && !e.assured())
            .map(|e| e.id);
        match victim {
            Some(id) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }

    /// Run the protocol tracker for one packet of entry `id` in `dir`.
    fn track(&mut self, id: u64, dir: Dir, pkt: &Packet, now: Instant) -> Track {
        let cfg = self.config;
        let t = cfg.timeouts;
        let Some(e) = self.entries.get_mut(&id) else {
            return Track::Invalid;
        };
        let seen_reply = e.seen_reply();
        let info = match dir {
            Dir::Reply => CtInfo::EstablishedReply,
            Dir::Original if seen_reply => CtInfo::Established,
            Dir::Original => CtInfo::New,
        };
        let mut timeout = None;
        match &mut e.proto {
            ProtoState::Tcp(track) => {
                let flags = pkt.tcp_flags().unwrap_or_default();
                match track.packet(dir, flags, seen_reply, e.status.has(Status::ASSURED), &cfg) {
                    TcpVerdict::Invalid => return Track::Invalid,
                    TcpVerdict::Reopen => return Track::Reopen,
                    TcpVerdict::Ignore => {}
                    TcpVerdict::Accept {
                        timeout: to,
                        assured,
                        kill,
                    } => {
                        timeout = to;
                        if assured {
                            e.status.set(Status::ASSURED);
                        }
                        e.dying |= kill;
                    }
                }
            }
            ProtoState::Udp { stream_after } => {
                if seen_reply {
                    let stream = now > *stream_after;
                    timeout = Some(if stream { t.udp_stream } else { t.udp });
                    if stream {
                        e.status.set(Status::ASSURED);
                    }
                } else {
                    timeout = Some(t.udp);
                }
            }
            ProtoState::Sctp => {
                timeout = Some(if seen_reply || dir == Dir::Reply {
                    e.status.set(Status::ASSURED);
                    t.sctp_established
                } else {
                    t.sctp_unreplied
                });
            }
            ProtoState::Icmp => timeout = Some(t.icmp),
            ProtoState::Generic => {
                if seen_reply {
                    e.status.set(Status::ASSURED);
                }
                timeout = Some(t.generic);
            }
        }
        if dir == Dir::Reply {
            e.status.set(Status::SEEN_REPLY);
        }
        if let Some(to) = timeout {
            self.set_timeout(id, now + to);
        }
        Track::Ok(info)
    }

    /// A packet is done with the hooks. `delivered`: it left the node or
    /// reached a local socket (`__nf_conntrack_confirm`: an unconfirmed
    /// entry joins the table); otherwise it was dropped and an unconfirmed
    /// entry is discarded. Entries killed by their tracker go now.
    /// Returns false when confirmation found a clash (another entry took
    /// one of the tuples meanwhile) — the kernel drops the packet.
    pub fn finish(&mut self, att: &Attached, delivered: bool) -> bool {
        let Some(e) = self.entries.get(&att.id) else {
            return true;
        };
        let confirmed = e.status.has(Status::CONFIRMED);
        let dying = e.dying;
        let mut ok = true;
        if !confirmed {
            if delivered && !dying {
                let (orig, reply, expires) = (e.orig, e.reply, e.expires);
                if self.index.contains_key(&orig) || self.index.contains_key(&reply) {
                    ok = false;
                    self.entries.remove(&att.id);
                } else {
                    self.index.insert(orig, (att.id, Dir::Original));
                    self.index.insert(reply, (att.id, Dir::Reply));
                    self.expiry.insert((expires, att.id));
                    if let Some(e) = self.entries.get_mut(&att.id) {
                        e.status.set(Status::CONFIRMED);
                    }
                }
            } else {
                self.entries.remove(&att.id);
            }
        } else if dying {
            self.remove(att.id);
        }
        ok
    }

    /// Delete one confirmed entry by id; returns whether it existed.
    pub fn delete_id(&mut self, id: u64) -> bool {
        let existed = self
            .entries
            .get(&id)
            .is_some_and(|e| e.status.has(Status::CONFIRMED));
        if existed {
            self.remove(id);
        }
        existed
    }

    /// Set an entry's connection mark.
    pub fn set_mark(&mut self, id: u64, mark: u32) {
        if let Some(e) = self.entries.get_mut(&id) {
            e.mark = mark;
        }
    }
}

enum Track {
    Ok(CtInfo),
    Invalid,
    Reopen,
}

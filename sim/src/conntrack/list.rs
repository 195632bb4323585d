//! Listing and deleting entries the way `conntrack -L` / `conntrack -D`
//! select and print them.
//!
//! Models: the selection options of conntrack-tools (`-p`, `-f`,
//! `--orig-src/-s`, `--orig-dst/-d`, `--reply-src/-r`, `--reply-dst/-q`,
//! `--orig-port-src/--sport`, `--orig-port-dst/--dport`,
//! `--reply-port-src`, `--reply-port-dst`) as a [`Filter`], and the line
//! format of conntrack-tools 1.4.7 (checked against `conntrack -L` on Linux
//! 6.18): `tcp      6 431999 ESTABLISHED src=… dst=… sport=… dport=…
//! src=… dst=… sport=… dport=… [ASSURED] mark=0 use=1`, with `[UNREPLIED]`
//! before the reply tuple when no reply was seen, ICMP tuples as
//! `type=… code=… id=…`, and the remaining timeout in whole seconds.
//!
//! Must never: list unconfirmed entries, or order lines by anything but
//! entry creation (the kernel prints in hash order, which no test can
//! reproduce; creation order is the deterministic stand-in).
//!
//! Error contract: none; an empty selection lists or deletes nothing.

use std::fmt::Write;
use std::net::IpAddr;

use super::entry::{Entry, ProtoState};
use super::Conntrack;
use crate::netfilter::{Family, Protocol};
use crate::packet::Tuple;
use crate::time::Instant;

/// Which entries an operation selects; every given field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filter {
    /// `-f`.
    pub family: Option<Family>,
    /// `-p`.
    pub proto: Option<Protocol>,
    /// `--orig-src`.
    pub orig_src: Option<IpAddr>,
    /// `--orig-dst`.
    pub orig_dst: Option<IpAddr>,
    /// `--orig-port-src`.
    pub orig_src_port: Option<u16>,
    /// `--orig-port-dst`.
    pub orig_dst_port: Option<u16>,
    /// `--reply-src`.
    pub reply_src: Option<IpAddr>,
    /// `--reply-dst`.
    pub reply_dst: Option<IpAddr>,
    /// `--reply-port-src`.
    pub reply_src_port: Option<u16>,
    /// `--reply-port-dst`.
    pub reply_dst_port: Option<u16>,
}

impl Filter {
    /// Whether `e` is selected.
    pub fn matches(&self, e: &Entry) -> bool {
        fn eq<T: PartialEq>(want: Option<T>, got: T) -> bool {
            want.is_none_or(|w| w == got)
        }
        let (o, r) = (e.original(), e.reply());
        eq(self.family, Family::of(o.src))
            && eq(self.proto, o.proto)
            && eq(self.orig_src, o.src)
            && eq(self.orig_dst, o.dst)
            && eq(self.orig_src_port, o.src_port)
            && eq(self.orig_dst_port, o.dst_port)
            && eq(self.reply_src, r.src)
            && eq(self.reply_dst, r.dst)
            && eq(self.reply_src_port, r.src_port)
            && eq(self.reply_dst_port, r.dst_port)
    }
}

impl Conntrack {
    /// The confirmed entries `filter` selects, in creation order.
    pub fn select(&self, filter: &Filter) -> Vec<&Entry> {
        self.entries().filter(|e| filter.matches(e)).collect()
    }

    /// `conntrack -D` with a filter: delete the selected entries; returns
    /// how many were deleted.
    pub fn delete(&mut self, filter: &Filter) -> usize {
        let ids: Vec<u64> = self.select(filter).iter().map(|e| e.id()).collect();
        for id in &ids {
            self.delete_id(*id);
        }
        ids.len()
    }

    /// `conntrack -L` output (one line per selected entry, each ending in a
    /// newline) at `now`. Expired entries are not shown.
    pub fn list(&self, filter: &Filter, now: Instant) -> String {
        let mut out = String::new();
        for e in self.select(filter) {
            if e.expires() > now {
                out.push_str(&format_entry(e, now));
                out.push('\n');
            }
        }
        out
    }

    /// The summary conntrack-tools prints on stderr after a listing.
    pub fn list_summary(shown: usize) -> String {
        format!("conntrack v1.4.7 (conntrack-tools): {shown} flow entries have been shown.")
    }
}

fn proto_name(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "tcp".into(),
        Protocol::Udp => "udp".into(),
        Protocol::Sctp => "sctp".into(),
        Protocol::Icmp => "icmp".into(),
        Protocol::IcmpV6 => "icmpv6".into(),
        Protocol::Other(_) => "unknown".into(),
    }
}

fn write_tuple(out: &mut String, t: &Tuple) {
    let _ = write!(out, "src={} dst={} ", t.src, t.dst);
    match t.proto {
        Protocol::Icmp | Protocol::IcmpV6 => {
            let _ = write!(
                out,
                "type={} code={} id={} ",
                t.dst_port >> 8,
                t.dst_port & 0xff,
                t.src_port
            );
        }
        Protocol::Tcp | Protocol::Udp | Protocol::Sctp => {
            let _ = write!(out, "sport={} dport={} ", t.src_port, t.dst_port);
        }
        Protocol::Other(_) => {}
    }
}

/// One `conntrack -L` line (no newline).
pub(crate) fn format_entry(e: &Entry, now: Instant) -> String {
    let o = e.original();
    let mut out = format!(
        "{:<8} {} {} ",
        proto_name(o.proto),
        o.proto.number(),
        e.remaining(now).as_secs()
    );
    match e.proto {
        ProtoState::Tcp(_) => {
            if let Some(s) = e.tcp_state() {
                let _ = write!(out, "{} ", s.name());
            }
        }
        ProtoState::Sctp => {
            out.push_str(if e.seen_reply() {
                "ESTABLISHED "
            } else {
                "COOKIE_WAIT "
            });
        }
        _ => {}
    }
    write_tuple(&mut out, o);
    if !e.seen_reply() {
        out.push_str("[UNREPLIED] ");
    }
    write_tuple(&mut out, e.reply());
    if e.assured() {
        out.push_str("[ASSURED] ");
    }
    let _ = write!(out, "mark={} use=1", e.mark());
    out
}

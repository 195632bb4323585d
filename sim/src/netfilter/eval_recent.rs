//! The per-name address lists of the `recent` match (`xt_recent`), on
//! virtual time.
//!
//! Models: one table per `--name`, entries keyed by the masked source or
//! destination address (family included), each with a ring of the last
//! `ip_pkt_list_tot` (20) timestamps and the TTL of the last packet, kept
//! in least-recently-updated order; a table holds at most `ip_list_tot`
//! (200) entries and evicts the least recently updated one to make room.
//! `--set` adds or refreshes and matches; `--rcheck` matches a listed
//! address (within `--seconds`, with at least `--hitcount` stamps);
//! `--update` is `--rcheck` that also refreshes on a match; `--remove`
//! matches and removes; `--reap` removes the least recently updated entry
//! of the table when its newest stamp is older than `--seconds`; `!`
//! inverts; `--rttl` also requires the same TTL. This follows
//! `recent_mt()` line by line, including which outcome (after inversion)
//! triggers the refresh of `--update`.
//!
//! Must never: read a clock; time comes with every call.
//!
//! Error contract: none; every packet gets an answer.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::time::Duration;

use super::matches::{Recent, RecentAction, RecentSide};
use crate::time::Instant;

/// `ip_list_tot`: entries per table.
pub const DEFAULT_LIST_TOT: usize = 200;
/// `ip_pkt_list_tot`: timestamps per entry.
pub const DEFAULT_PKT_LIST_TOT: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
struct RecentEntry {
    addr: IpAddr,
    ttl: u8,
    /// Timestamps, oldest first, at most `pkt_list_tot`.
    stamps: Vec<Instant>,
}

impl RecentEntry {
    fn last(&self) -> Instant {
        self.stamps.last().copied().unwrap_or_default()
    }
}

/// All `recent` tables of a network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentTables {
    /// Per name: entries in least-recently-updated order (front oldest).
    tables: BTreeMap<String, Vec<RecentEntry>>,
    list_tot: usize,
    pkt_list_tot: usize,
}

impl Default for RecentTables {
    fn default() -> Self {
        RecentTables::new(DEFAULT_LIST_TOT, DEFAULT_PKT_LIST_TOT)
    }
}

fn mask_addr(addr: IpAddr, mask: IpAddr) -> IpAddr {
    match (addr, mask) {
        (IpAddr::V4(a), IpAddr::V4(m)) => IpAddr::V4((u32::from(a) & u32::from(m)).into()),
        (IpAddr::V6(a), IpAddr::V6(m)) => IpAddr::V6((u128::from(a) & u128::from(m)).into()),
        (a, _) => a,
    }
}

impl RecentTables {
    /// Tables with the module parameters `ip_list_tot` and `ip_pkt_list_tot`.
    pub fn new(list_tot: usize, pkt_list_tot: usize) -> RecentTables {
        RecentTables {
            tables: BTreeMap::new(),
            list_tot: list_tot.max(1),
            pkt_list_tot: pkt_list_tot.max(1),
        }
    }

    /// Evaluate a `recent` match for a packet with addresses `src`/`dst`
    /// and TTL `ttl` at `now`.
    pub fn check(&mut self, r: &Recent, src: IpAddr, dst: IpAddr, ttl: u8, now: Instant) -> bool {
        let addr = mask_addr(
            match r.side {
                RecentSide::Source => src,
                RecentSide::Dest => dst,
            },
            r.mask,
        );
        let (list_tot, pkt_tot) = (self.list_tot, self.pkt_list_tot);
        let t = self.tables.entry(r.name.clone()).or_default();
        let mut ret = r.negated;
        let pos = t
            .iter()
            .position(|e| e.addr == addr && (!r.rttl || e.ttl == ttl));
        let Some(mut pos) = pos else {
            if r.action != RecentAction::Set {
                return ret;
            }
            if t.len() >= list_tot {
                t.remove(0);
            }
            t.push(RecentEntry {
                addr,
                ttl,
                stamps: vec![now],
            });
            return !ret;
        };
        let update = r.action == RecentAction::Update;
        match r.action {
            RecentAction::Set => ret = !ret,
            RecentAction::Remove => {
                t.remove(pos);
                return !ret;
            }
            _ if r.seconds != 0 || r.hitcount != 0 => {
                let window = Duration::from_secs(u64::from(r.seconds));
                let since = if now.since_start() >= window {
                    Instant::from_nanos((now.since_start() - window).as_nanos() as u64)
                } else {
                    Instant::ZERO
                };
                let mut hits = 0;
                for s in &t[pos].stamps {
                    if r.seconds != 0 && since > *s {
                        continue;
                    }
                    hits += 1;
                    if r.hitcount == 0 || hits >= r.hitcount {
                        ret = !ret;
                        break;
                    }
                }
                if r.reap {
                    // recent_entry_reap: only the least recently updated
                    // entry, and not the one about to be refreshed.
                    let keep_working = pos == 0 && update && ret;
                    if !keep_working && !t.is_empty() && since > t[0].last() {
                        t.remove(0);
                        if pos == 0 {
                            return ret;
                        }
                        pos -= 1;
                    }
                }
            }
            _ => ret = !ret,
        }
        if r.action == RecentAction::Set || (update && ret) {
            let mut e = t.remove(pos);
            if e.stamps.len() >= pkt_tot {
                e.stamps.remove(0);
            }
            e.stamps.push(now);
            e.ttl = ttl;
            t.push(e);
        }
        ret
    }

    /// The addresses in table `name`, least recently updated first.
    pub fn addresses(&self, name: &str) -> Vec<IpAddr> {
        self.tables
            .get(name)
            .map(|t| t.iter().map(|e| e.addr).collect())
            .unwrap_or_default()
    }

    /// Names of the tables that exist.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tables.keys().map(String::as_str)
    }

    /// `/proc/net/xt_recent/NAME`, with times as virtual milliseconds:
    /// `src=10.0.0.1 ttl: 64 last_seen: 1500 oldest_pkt: 2 1000, 1500`.
    pub fn proc_listing(&self, name: &str) -> String {
        let mut out = String::new();
        for e in self.tables.get(name).into_iter().flatten() {
            let ms = |i: &Instant| i.as_nanos() / 1_000_000;
            let stamps: Vec<String> = e.stamps.iter().map(|s| ms(s).to_string()).collect();
            let _ = writeln!(
                out,
                "src={} ttl: {} last_seen: {} oldest_pkt: {} {}",
                e.addr,
                e.ttl,
                ms(&e.last()),
                e.stamps.len(),
                stamps.join(", ")
            );
        }
        out
    }

    /// Forget every entry of every table (a fresh network namespace).
    pub fn clear(&mut self) {
        self.tables.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netfilter::Family;

    fn recent(action: RecentAction, seconds: u32, reap: bool) -> Recent {
        Recent {
            negated: false,
            action,
            seconds,
            reap,
            hitcount: 0,
            rttl: false,
            name: "KUBE-SEP-X".into(),
            mask: Family::Ipv4.all_ones(),
            side: RecentSide::Source,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn set_then_rcheck_within_seconds() {
        let mut t = RecentTables::default();
        let (c, d) = (ip("10.0.0.1"), ip("172.30.0.1"));
        let check = recent(RecentAction::Check, 10800, true);
        assert!(!t.check(&check, c, d, 64, Instant::from_secs(1)));
        assert!(t.check(
            &recent(RecentAction::Set, 0, false),
            c,
            d,
            64,
            Instant::from_secs(1)
        ));
        assert!(t.check(&check, c, d, 64, Instant::from_secs(10801)));
        assert!(!t.check(&check, c, d, 64, Instant::from_secs(10802)));
        // --reap removed the stale entry on that last check.
        assert!(t.addresses("KUBE-SEP-X").is_empty());
    }

    #[test]
    fn the_table_holds_ip_list_tot_entries() {
        let mut t = RecentTables::new(2, 20);
        let set = recent(RecentAction::Set, 0, false);
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            t.check(&set, ip(a), ip("1.1.1.1"), 64, Instant::from_secs(i as u64));
        }
        assert_eq!(t.addresses("KUBE-SEP-X"), [ip("10.0.0.2"), ip("10.0.0.3")]);
    }
}

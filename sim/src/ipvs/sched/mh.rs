//! Maglev hashing (`ip_vs_mh.c`).
//!
//! Models: the lookup table of `IP_VS_MH_TAB_SIZE` = 4093 entries (the
//! default `CONFIG_IP_VS_MH_TAB_INDEX` = 12 selects `primes[12 - 8]`; 251
//! is the smallest choice, not the default). Each server gets
//! `offset = h1 % 4093` and `skip = h2 % 4092 + 1`, where `h1`/`h2` are
//! `hsiphash` of `port + addr` (host order, IPv6 folded by XOR) under the
//! fixed keys `2654435761` and `2654446892`; servers then take turns — each
//! `(last_weight / gcd) >> rshift` slots per turn, `rshift` keeping
//! `max / gcd` within 6 bits — claiming their next free preferred slot. The
//! table follows `last_weight` (the latest non-zero weight), so a server
//! set to weight 0 keeps its slots and its clients find nothing (or, with
//! `mh-fallback`, probe `hash(offset)` onwards) rather than reshuffling
//! everyone else. A client hashes as `hsiphash(port + addr) % 4093` with
//! `port` = source port under `mh-port`, else 0.
//!
//! Must never: loop without bound (population stops when a round places
//! nothing).
//!
//! Error contract: a service with more servers than slots keeps its old
//! table (the kernel's `-EINVAL`); lookups return `None` when unusable.

use std::net::SocketAddr;

use super::hash::fold;
use super::siphash::hsiphash_u32;
use super::{gcd, Candidate, DestId, Flow};
use crate::ipvs::types::SchedFlags;

/// Slots in the lookup table (`primes[CONFIG_IP_VS_MH_TAB_INDEX - 8]`).
pub const MH_TABLE_SIZE: usize = 4093;
/// `IP_VS_MH_TAB_BITS` = `CONFIG_IP_VS_MH_TAB_INDEX / 2`.
const TAB_BITS: u32 = 6;
const KEY1: [u64; 2] = [2_654_435_761, 2_654_435_761];
const KEY2: [u64; 2] = [2_654_446_892, 2_654_446_892];

/// `ip_vs_mh_hashkey(af, addr, port, key, offset)`.
fn hashkey(addr: std::net::IpAddr, port: u16, key: [u64; 2], offset: u32) -> u32 {
    let v = offset
        .wrapping_add(u32::from(port))
        .wrapping_add(fold(addr));
    hsiphash_u32(v, key)
}

/// Fill a lookup table for servers `(address, last_weight)` in list order:
/// each slot holds the index of its server. Empty when every weight is 0.
pub fn maglev_table(dests: &[(SocketAddr, u32)]) -> Vec<Option<usize>> {
    let size = MH_TABLE_SIZE as u32;
    let mut table = vec![None; MH_TABLE_SIZE];
    let g = dests
        .iter()
        .map(|d| d.1)
        .filter(|w| *w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
    if g < 1 || dests.len() > MH_TABLE_SIZE {
        return table;
    }
    // ip_vs_mh_shift_weight
    let mw = dests.iter().map(|d| d.1).max().unwrap_or(0) / g;
    let fls = 32 - mw.leading_zeros();
    let rshift = fls.saturating_sub(TAB_BITS);
    // ip_vs_mh_permutate
    struct Setup {
        skip: u32,
        perm: u32,
        turns: u32,
    }
    let mut setup: Vec<Setup> = dests
        .iter()
        .map(|(addr, lw)| {
            let offset = hashkey(addr.ip(), addr.port(), KEY1, 0) % size;
            let skip = hashkey(addr.ip(), addr.port(), KEY2, 0) % (size - 1) + 1;
            let turns = match (lw / g) >> rshift {
                0 => u32::from(*lw != 0),
                t => t,
            };
            Setup {
                skip,
                perm: offset,
                turns,
            }
        })
        .collect();
    // ip_vs_mh_populate
    let mut used = vec![false; MH_TABLE_SIZE];
    let (mut n, mut dt_count) = (0usize, 0u32);
    while n < MH_TABLE_SIZE {
        let placed_before = n;
        let mut p = 0;
        while p < setup.len() {
            let ds = &mut setup[p];
            if ds.turns < 1 {
                p += 1;
                continue;
            }
            let mut c = ds.perm;
            while used[c as usize] {
                ds.perm += ds.skip;
                if ds.perm >= size {
                    ds.perm -= size;
                }
                c = ds.perm;
            }
            used[c as usize] = true;
            table[c as usize] = Some(p);
            n += 1;
            if n == MH_TABLE_SIZE {
                return table;
            }
            dt_count += 1;
            if dt_count >= ds.turns {
                dt_count = 0;
                p += 1;
            }
        }
        if n == placed_before {
            break;
        }
    }
    table
}

/// `struct ip_vs_mh_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mh {
    lookup: Vec<Option<DestId>>,
}

fn is_unavailable(d: &Candidate) -> bool {
    !d.available()
}

impl Mh {
    pub(crate) fn new(dests: &[Candidate]) -> Self {
        let mut m = Mh {
            lookup: vec![None; MH_TABLE_SIZE],
        };
        m.dest_changed(dests);
        m
    }

    /// `ip_vs_mh_dest_changed` → `ip_vs_mh_reassign`.
    pub(crate) fn dest_changed(&mut self, dests: &[Candidate]) {
        if dests.len() > MH_TABLE_SIZE {
            return;
        }
        let input: Vec<(SocketAddr, u32)> = dests.iter().map(|d| (d.addr, d.last_weight)).collect();
        self.lookup = maglev_table(&input)
            .into_iter()
            .map(|i| i.map(|i| dests[i].id))
            .collect();
    }

    fn at<'a>(&self, dests: &'a [Candidate], slot: u32) -> Option<&'a Candidate> {
        let id = self.lookup.get(slot as usize).copied().flatten()?;
        dests.iter().find(|d| d.id == id)
    }

    /// `ip_vs_mh_schedule`.
    pub(crate) fn schedule(
        &self,
        dests: &[Candidate],
        flow: &Flow,
        flags: SchedFlags,
    ) -> Option<DestId> {
        let size = MH_TABLE_SIZE as u32;
        let addr = flow.src.ip();
        let port = if flags.port() { flow.src.port() } else { 0 };
        let ihash = hashkey(addr, port, KEY1, 0) % size;
        let first = self.at(dests, ihash)?;
        if !is_unavailable(first) {
            return Some(first.id);
        }
        if !flags.fallback() {
            return None;
        }
        for offset in 0..size {
            let roffset = (offset + ihash) % size;
            let d = self.at(dests, hashkey(addr, port, KEY1, roffset) % size)?;
            if !is_unavailable(d) {
                return Some(d.id);
            }
        }
        None
    }
}

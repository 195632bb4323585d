//! Source hashing (`ip_vs_sh.c`) and destination hashing (`ip_vs_dh.c`).
//!
//! Models: a 256-bucket table (`CONFIG_IP_VS_SH_TAB_BITS` /
//! `CONFIG_IP_VS_DH_TAB_BITS` = 8) filled by walking the destination list
//! round-robin — `sh` gives each server `weight` consecutive buckets per
//! round (a weight-0 server still gets one), `dh` one; both are rebuilt on
//! every add/delete/update. The bucket of an address is
//! `(offset + (port + addr) * 2654435761) & 255` (`sh`, IPv6 addresses
//! folded by XOR of their four words, `port` only with `sh-port`) and
//! `(addr * 2654435761) & 255` (`dh`, keyed on the destination address). A
//! bucket whose server has weight 0 or is overloaded yields nothing, unless
//! `sh-fallback` is set: then the buckets `hash(offset)` for offsets from
//! the original bucket on are tried in turn.
//!
//! Must never: depend on anything but the list order and weights.
//!
//! Error contract: `None` when the bucket (and any fallback) is unusable.

use std::net::IpAddr;

use super::{Candidate, DestId, Flow};
use crate::ipvs::types::SchedFlags;

/// Buckets in the `sh` and `dh` tables.
pub const SH_TABLE_SIZE: usize = 256;
const MASK: u64 = SH_TABLE_SIZE as u64 - 1;

/// The 32-bit fold of an address, host order (`ntohl(addr_fold)`).
pub(crate) fn fold(addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let o = a.octets();
            (0..4)
                .map(|i| u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]]))
                .fold(0, |x, w| x ^ w)
        }
    }
}

/// `ip_vs_sh_hashkey(af, addr, port, offset)`.
pub fn sh_bucket(addr: IpAddr, port: u16, offset: u32) -> usize {
    let key = u64::from(u32::from(port).wrapping_add(fold(addr)));
    ((u64::from(offset)).wrapping_add(key.wrapping_mul(2_654_435_761)) & MASK) as usize
}

/// `ip_vs_dh_hashkey(af, addr)`.
pub fn dh_bucket(addr: IpAddr) -> usize {
    (u64::from(fold(addr)).wrapping_mul(2_654_435_761) & MASK) as usize
}

/// `ip_vs_sh_reassign` for servers of these weights (list order): the
/// index of the server in each bucket.
pub fn sh_table(weights: &[u32]) -> Vec<Option<usize>> {
    let mut table = vec![None; SH_TABLE_SIZE];
    if weights.is_empty() {
        return table;
    }
    let (mut p, mut count) = (0usize, 0u64);
    for slot in table.iter_mut() {
        *slot = Some(p);
        count += 1;
        if count >= u64::from(weights[p]) {
            p = (p + 1) % weights.len();
            count = 0;
        }
    }
    table
}

/// A filled `sh` or `dh` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HashTable {
    buckets: Vec<Option<DestId>>,
}

fn unavailable(d: &Candidate) -> bool {
    !d.available()
}

impl HashTable {
    pub(crate) fn sh(dests: &[Candidate]) -> Self {
        let weights: Vec<u32> = dests.iter().map(|d| d.weight).collect();
        HashTable {
            buckets: sh_table(&weights)
                .into_iter()
                .map(|i| i.map(|i| dests[i].id))
                .collect(),
        }
    }

    pub(crate) fn dh(dests: &[Candidate]) -> Self {
        let buckets = (0..SH_TABLE_SIZE)
            .map(|i| (!dests.is_empty()).then(|| dests[i % dests.len()].id))
            .collect();
        HashTable { buckets }
    }

    fn at<'a>(&self, dests: &'a [Candidate], bucket: usize) -> Option<&'a Candidate> {
        let id = self.buckets.get(bucket).copied().flatten()?;
        dests.iter().find(|d| d.id == id)
    }

    /// `ip_vs_sh_schedule`.
    pub(crate) fn sh_schedule(
        &self,
        dests: &[Candidate],
        flow: &Flow,
        flags: SchedFlags,
    ) -> Option<DestId> {
        let addr = flow.src.ip();
        let port = if flags.port() { flow.src.port() } else { 0 };
        let ihash = sh_bucket(addr, port, 0);
        let first = self.at(dests, ihash)?;
        if !unavailable(first) {
            return Some(first.id);
        }
        if !flags.fallback() {
            return None;
        }
        for offset in 0..SH_TABLE_SIZE {
            let roffset = (offset + ihash) % SH_TABLE_SIZE;
            let d = self.at(dests, sh_bucket(addr, port, roffset as u32))?;
            if !unavailable(d) {
                return Some(d.id);
            }
        }
        None
    }

    /// `ip_vs_dh_schedule`.
    pub(crate) fn dh_schedule(&self, dests: &[Candidate], flow: &Flow) -> Option<DestId> {
        let d = self.at(dests, dh_bucket(flow.dst.ip()))?;
        (!unavailable(d)).then_some(d.id)
    }
}

//! The connection-counting schedulers: least-connection (`ip_vs_lc.c`),
//! weighted least-connection (`ip_vs_wlc.c`), shortest expected delay
//! (`ip_vs_sed.c`) and never queue (`ip_vs_nq.c`).
//!
//! Models: `lc` picks the first server (list order) with the least
//! `activeconns * 256 + inactconns`; `wlc` the least overhead / weight,
//! compared as `loh * w_d > doh * w_least` in 64 bits; `sed` the least
//! `(activeconns + 1) / weight`; `nq` an idle server (no active
//! connections) at once, else as `sed`. Ties keep the earlier server.
//! Servers with weight 0 or the overload flag are skipped.
//!
//! Must never: divide (the kernel compares cross products).
//!
//! Error contract: `None` when no server is available.

use super::{Candidate, DestId};

/// `ip_vs_lc_schedule`.
pub(crate) fn lc(dests: &[Candidate]) -> Option<DestId> {
    let mut least: Option<(&Candidate, u32)> = None;
    for d in dests.iter().filter(|d| d.available()) {
        let doh = d.overhead();
        if least.is_none_or(|(_, loh)| doh < loh) {
            least = Some((d, doh));
        }
    }
    least.map(|(d, _)| d.id)
}

/// The first available server and the rest of the list after it.
fn first_available(dests: &[Candidate]) -> Option<(usize, &Candidate)> {
    dests.iter().enumerate().find(|(_, d)| d.available())
}

/// `ip_vs_wlc_schedule`: overhead is the kernel's `int`.
pub(crate) fn wlc(dests: &[Candidate]) -> Option<DestId> {
    let (i, mut least) = first_available(dests)?;
    let mut loh = i64::from(least.overhead() as i32);
    for d in dests.iter().skip(i + 1).filter(|d| !d.overloaded) {
        let doh = i64::from(d.overhead() as i32);
        if loh * i64::from(d.weight) > doh * i64::from(least.weight) {
            least = d;
            loh = doh;
        }
    }
    Some(least.id)
}

/// `ip_vs_sed_dest_overhead` / `ip_vs_nq_dest_overhead`.
fn expected_delay(d: &Candidate) -> i64 {
    i64::from(d.active.wrapping_add(1))
}

/// `ip_vs_sed_schedule`.
pub(crate) fn sed(dests: &[Candidate]) -> Option<DestId> {
    let (i, mut least) = first_available(dests)?;
    let mut loh = expected_delay(least);
    for d in dests.iter().skip(i + 1).filter(|d| !d.overloaded) {
        let doh = expected_delay(d);
        if loh * i64::from(d.weight) > doh * i64::from(least.weight) {
            least = d;
            loh = doh;
        }
    }
    Some(least.id)
}

/// `ip_vs_nq_schedule`.
pub(crate) fn nq(dests: &[Candidate]) -> Option<DestId> {
    let mut least: Option<(&Candidate, i64)> = None;
    for d in dests.iter().filter(|d| d.available()) {
        let doh = expected_delay(d);
        if d.active == 0 {
            return Some(d.id);
        }
        let better = match least {
            None => true,
            Some((l, loh)) => loh * i64::from(d.weight) > doh * i64::from(l.weight),
        };
        if better {
            least = Some((d, doh));
        }
    }
    least.map(|(d, _)| d.id)
}

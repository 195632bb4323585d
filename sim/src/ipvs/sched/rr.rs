//! Round-robin (`ip_vs_rr.c`) and weighted round-robin (`ip_vs_wrr.c`).
//!
//! Models: `rr` keeps a cursor into the destination list and takes the
//! next server with weight > 0 and no overload flag, wrapping once; when
//! the server under the cursor is deleted the cursor moves to its
//! predecessor (`ip_vs_rr_del_dest`). `wrr` keeps the kernel's mark — the
//! cursor `cl`, current weight `cw`, maximum `mw = max - (gcd - 1)` and step
//! `di = gcd` — and walks passes `cw = mw, mw - di, …, ≥ 1`, taking servers
//! whose weight ≥ `cw`; every add/delete/update resets the cursor and
//! realigns `cw` as `ip_vs_wrr_dest_changed` does.
//!
//! Must never: loop without bound. Passes that provably select nothing are
//! skipped arithmetically (same result as walking them; the kernel walks).
//!
//! Error contract: `None` when no server is available.

use super::{gcd, position, Candidate, DestId};

/// `rr`: `svc->sched_data` points at the last chosen server (or the head).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Rr {
    cursor: Option<DestId>,
}

impl Rr {
    pub(crate) fn schedule(&mut self, dests: &[Candidate]) -> Option<DestId> {
        let n = dests.len();
        let start = self
            .cursor
            .and_then(|c| position(dests, c))
            .map_or(0, |i| i + 1);
        for k in 0..n {
            let d = &dests[(start + k) % n];
            if d.available() {
                self.cursor = Some(d.id);
                return Some(d.id);
            }
        }
        None
    }

    pub(crate) fn dest_removed(&mut self, dests: &[Candidate], removed: DestId, index: usize) {
        if self.cursor == Some(removed) {
            self.cursor = if index == 0 {
                None
            } else {
                dests.get(index - 1).map(|d| d.id)
            };
        }
    }
}

/// `wrr`: `struct ip_vs_wrr_mark`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wrr {
    cl: Option<DestId>,
    cw: i64,
    mw: i64,
    di: i64,
}

fn gcd_weight(dests: &[Candidate]) -> i64 {
    let g = dests
        .iter()
        .map(|d| d.weight)
        .filter(|w| *w > 0)
        .fold(0, |g, w| if g > 0 { gcd(w, g) } else { w });
    i64::from(if g == 0 { 1 } else { g })
}

fn max_weight(dests: &[Candidate]) -> i64 {
    i64::from(dests.iter().map(|d| d.weight).max().unwrap_or(0))
}

impl Wrr {
    /// `ip_vs_wrr_init_svc`.
    pub(crate) fn new(dests: &[Candidate]) -> Self {
        let di = gcd_weight(dests);
        let mw = max_weight(dests) - (di - 1);
        Wrr {
            cl: None,
            cw: mw,
            mw,
            di,
        }
    }

    /// `ip_vs_wrr_dest_changed`.
    pub(crate) fn dest_changed(&mut self, dests: &[Candidate]) {
        self.cl = None;
        self.di = gcd_weight(dests);
        self.mw = max_weight(dests) - (self.di - 1);
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    /// `ip_vs_wrr_schedule`.
    pub(crate) fn schedule(&mut self, dests: &[Candidate]) -> Option<DestId> {
        let n = dests.len();
        // None is the list head.
        let mut pos = self.cl.and_then(|c| position(dests, c));
        if self.mw == 0 {
            return None;
        }
        let last = pos;
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        let max_avail = dests
            .iter()
            .filter(|d| !d.overloaded)
            .map(|d| i64::from(d.weight))
            .max()
            .unwrap_or(0);
        loop {
            if pos.is_none() && stop.is_none() {
                // Whole passes from the head with cw above every available
                // weight select nothing; skip them while no pass-ending
                // condition (cw <= 0, last pass) can occur.
                let floor = max_avail.max(2 * self.di);
                if self.cw > floor {
                    let skip = (self.cw - floor + self.di - 1) / self.di;
                    self.cw -= skip * self.di;
                    last_pass = false;
                }
            }
            let start = pos.map_or(0, |i| i + 1);
            for (i, d) in dests.iter().enumerate().take(n).skip(start) {
                if !d.overloaded && i64::from(d.weight) >= self.cw {
                    self.cl = Some(d.id);
                    return Some(d.id);
                }
                if stop == Some(i) {
                    self.cl = Some(d.id);
                    return None;
                }
            }
            pos = None;
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted && last.is_some() {
                stop = last;
            }
        }
    }
}

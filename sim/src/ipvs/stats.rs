//! Traffic counters and the rate estimator of a service or real server
//! (`struct ip_vs_stats`, `ip_vs_est.c`).
//!
//! Models: the live per-packet counters (conns, in/out packets and bytes);
//! the estimator that every 2 s of virtual time copies them into the
//! visible `kstats` and updates the rates
//! `avg += (rate - avg) >> 2` (cps/pps scaled by 2^10, bps by 2^5); and
//! `ipvsadm -Z` (`ip_vs_zero_stats`: the current `kstats` become the zero
//! point, rates reset). What `ipvsadm --stats/--rate` shows is the state at
//! the last 2-second tick, so counters appear up to 2 s late — as on a real
//! kernel. Ticks are at whole multiples of 2 s of virtual time.
//!
//! Must never: read a clock. Ticks are applied lazily: an object catches up
//! on the ticks it missed before its counters change or when it is shown,
//! which gives the same numbers as running every tick.
//!
//! Error contract: nothing fails; counters wrap as the kernel's u64 do.

use crate::time::Instant;

/// The estimator period, `2 * HZ`.
const TICK_NANOS: u64 = 2_000_000_000;

/// The five counters of `struct ip_vs_kstats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → server.
    pub inpkts: u64,
    /// Packets server → client (NAT only).
    pub outpkts: u64,
    pub inbytes: u64,
    pub outbytes: u64,
}

impl Counters {
    fn minus(self, zero: Counters) -> Counters {
        Counters {
            conns: self.conns.wrapping_sub(zero.conns),
            inpkts: self.inpkts.wrapping_sub(zero.inpkts),
            outpkts: self.outpkts.wrapping_sub(zero.outpkts),
            inbytes: self.inbytes.wrapping_sub(zero.inbytes),
            outbytes: self.outbytes.wrapping_sub(zero.outbytes),
        }
    }
}

/// Decoded rates (`ip_vs_read_estimator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    pub cps: u64,
    pub inpps: u64,
    pub outpps: u64,
    pub inbps: u64,
    pub outbps: u64,
}

/// What `ipvsadm --stats` / `--rate` would read now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsView {
    pub counters: Counters,
    pub rates: Rates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Estimator {
    last: Counters,
    cps: u64,
    inpps: u64,
    outpps: u64,
    inbps: u64,
    outbps: u64,
}

fn ewma(avg: &mut u64, delta: u64, shift: u32) {
    let rate = delta.wrapping_shl(shift);
    let step = ((rate as i64).wrapping_sub(*avg as i64)) >> 2;
    *avg = (*avg as i64).wrapping_add(step) as u64;
}

impl Estimator {
    fn tick(&mut self, k: Counters) {
        ewma(&mut self.cps, k.conns.wrapping_sub(self.last.conns), 9);
        ewma(&mut self.inpps, k.inpkts.wrapping_sub(self.last.inpkts), 9);
        ewma(
            &mut self.outpps,
            k.outpkts.wrapping_sub(self.last.outpkts),
            9,
        );
        ewma(
            &mut self.inbps,
            k.inbytes.wrapping_sub(self.last.inbytes),
            4,
        );
        ewma(
            &mut self.outbps,
            k.outbytes.wrapping_sub(self.last.outbytes),
            4,
        );
        self.last = k;
    }

    fn is_idle(&self, k: Counters) -> bool {
        self.last == k
            && self.cps == 0
            && self.inpps == 0
            && self.outpps == 0
            && self.inbps == 0
            && self.outbps == 0
    }

    fn rates(&self) -> Rates {
        Rates {
            cps: self.cps.wrapping_add(0x1FF) >> 10,
            inpps: self.inpps.wrapping_add(0x1FF) >> 10,
            outpps: self.outpps.wrapping_add(0x1FF) >> 10,
            inbps: self.inbps.wrapping_add(0xF) >> 5,
            outbps: self.outbps.wrapping_add(0xF) >> 5,
        }
    }
}

/// Counters and estimator of one service or real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stats {
    /// The per-CPU counters, summed: updated by every packet.
    live: Counters,
    /// `kstats`: `live` as of the last tick.
    kstats: Counters,
    /// `kstats0`: the zero point set by `ipvsadm -Z`.
    zero: Counters,
    est: Estimator,
    /// Index of the last tick applied.
    tick: u64,
}

fn tick_of(t: Instant) -> u64 {
    t.as_nanos() / TICK_NANOS
}

impl Stats {
    /// Stats created at `now` (`ip_vs_start_estimator`).
    pub(crate) fn new(now: Instant) -> Self {
        Stats {
            live: Counters::default(),
            kstats: Counters::default(),
            zero: Counters::default(),
            est: Estimator::default(),
            tick: tick_of(now),
        }
    }

    /// Apply every tick up to the one at or before `now`.
    fn catch_up(&mut self, now: Instant) {
        let target = tick_of(now);
        while self.tick < target {
            self.tick += 1;
            self.kstats = self.live;
            if self.est.is_idle(self.kstats) {
                // Further ticks change nothing: jump.
                self.tick = target;
                break;
            }
            self.est.tick(self.kstats);
        }
    }

    /// A new connection scheduled at `now`.
    pub(crate) fn add_conn(&mut self, now: Instant) {
        self.catch_up(now);
        self.live.conns = self.live.conns.wrapping_add(1);
    }

    /// A client → server packet of `bytes` at `now`.
    pub(crate) fn add_in(&mut self, now: Instant, bytes: u64) {
        self.catch_up(now);
        self.live.inpkts = self.live.inpkts.wrapping_add(1);
        self.live.inbytes = self.live.inbytes.wrapping_add(bytes);
    }

    /// A server → client packet of `bytes` at `now`.
    pub(crate) fn add_out(&mut self, now: Instant, bytes: u64) {
        self.catch_up(now);
        self.live.outpkts = self.live.outpkts.wrapping_add(1);
        self.live.outbytes = self.live.outbytes.wrapping_add(bytes);
    }

    /// `ip_vs_zero_stats` at `now`.
    pub(crate) fn zero(&mut self, now: Instant) {
        self.catch_up(now);
        self.zero = self.kstats;
        self.est = Estimator {
            last: self.kstats,
            ..Estimator::default()
        };
    }

    /// The counters as every packet so far changed them (not what ipvsadm
    /// shows; see [`Stats::view`]).
    pub(crate) fn live(&self) -> Counters {
        self.live.minus(self.zero)
    }

    /// What `ipvsadm --stats/--rate` reads at `now`.
    pub(crate) fn view(&self, now: Instant) -> StatsView {
        let mut s = self.clone();
        s.catch_up(now);
        StatsView {
            counters: s.kstats.minus(s.zero),
            rates: s.est.rates(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_show_at_the_next_tick_and_rates_decay() {
        let mut s = Stats::new(Instant::ZERO);
        for _ in 0..100 {
            s.add_in(Instant::from_millis(500), 1000);
        }
        assert_eq!(s.view(Instant::from_millis(1999)).counters.inpkts, 0);
        let v = s.view(Instant::from_secs(2));
        assert_eq!(v.counters.inpkts, 100);
        // rate = 100 pkts / 2 s = 50 pps, scaled by 2^10, a quarter of it.
        assert_eq!(v.rates.inpps, ((50u64 << 10) / 4 + 0x1FF) >> 10);
        assert_eq!(s.view(Instant::from_secs(3600)).rates, Rates::default());
        assert_eq!(s.view(Instant::from_secs(3600)).counters.inbytes, 100_000);
    }
}

//! The matches whose answer depends on more than the packet, as typed
//! values and as iptables-save prints them: `statistic` (a random draw or
//! a packet count), `recent` (per-name address lists) and `set` (ipsets).
//!
//! Models: what the kernel stores for each (a `--probability` as the
//! kernel's 31-bit fixed-point value, a `recent` match always with a name,
//! a mask and a side, a `set` match with one direction per dimension).
//!
//! Must never: hold the state these matches consult — the random streams,
//! the `recent` tables and the ipsets live in the evaluator and the node —
//! or print anything iptables-save would not print for the same kernel
//! state.
//!
//! Error contract: none here; values are built by `ext_match`, which reports
//! errors.

use std::fmt::Write;
use std::net::IpAddr;

use super::addr::Family;
use super::matches::neg;

/// How a `statistic` match picks packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatisticMode {
    /// `--mode random --probability P`: matches when a uniform 31-bit random
    /// value is below `threshold` (`round(P * 2^31)`, as the kernel stores it).
    Random { threshold: u32 },
    /// `--mode nth --every N --packet P`: matches packet P of every N.
    Nth { every: u32, packet: u32 },
}

/// `-m statistic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Statistic {
    /// `!` before `--probability`/`--every`.
    pub negated: bool,
    /// The mode and its parameters.
    pub mode: StatisticMode,
}

impl Statistic {
    /// The probability a `Random` match stands for (threshold / 2^31).
    pub fn probability(&self) -> Option<f64> {
        match self.mode {
            StatisticMode::Random { threshold } => Some(f64::from(threshold) / 2147483648.0),
            StatisticMode::Nth { .. } => None,
        }
    }

    pub(super) fn save(&self, out: &mut String) {
        let bang = if self.negated { " !" } else { "" };
        match self.mode {
            StatisticMode::Random { threshold } => {
                let _ = write!(out, " --mode random{bang} --probability ");
                push_probability(out, threshold);
            }
            StatisticMode::Nth { every, packet } => {
                let _ = write!(out, " --mode nth{bang} --every {every} --packet {packet}");
            }
        }
    }
}

/// Print `threshold / 2^31` the way C's `printf("%.11f")` does: exact value,
/// rounded to 11 decimals, ties to even.
pub(crate) fn push_probability(out: &mut String, threshold: u32) {
    const SCALE: u128 = 100_000_000_000; // 10^11
    let t = u128::from(threshold);
    let int = t >> 31;
    let frac = t & ((1 << 31) - 1);
    let prod = frac * SCALE;
    let mut q = prod >> 31;
    let r = prod & ((1 << 31) - 1);
    let half = 1u128 << 30;
    if r > half || (r == half && q % 2 == 1) {
        q += 1;
    }
    let (int, q) = if q == SCALE { (int + 1, 0) } else { (int, q) };
    let _ = write!(out, "{int}.{q:011}");
}

/// What a `recent` match does with its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecentAction {
    /// `--set`: add or refresh the address; always matches.
    Set,
    /// `--rcheck`: match if the address is listed.
    Check,
    /// `--update`: like `--rcheck`, and refresh the entry.
    Update,
    /// `--remove`: match if listed, and remove it.
    Remove,
}

/// Which address a `recent` match records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecentSide {
    /// `--rsource`.
    Source,
    /// `--rdest`.
    Dest,
}

/// `-m recent`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Recent {
    /// `!` before the action.
    pub negated: bool,
    /// The action.
    pub action: RecentAction,
    /// `--seconds` (0: not given).
    pub seconds: u32,
    /// `--reap`.
    pub reap: bool,
    /// `--hitcount` (0: not given).
    pub hitcount: u32,
    /// `--rttl`.
    pub rttl: bool,
    /// `--name` (default `DEFAULT`).
    pub name: String,
    /// `--mask` applied to the address before lookup.
    pub mask: IpAddr,
    /// `--rsource`/`--rdest`.
    pub side: RecentSide,
}

impl Recent {
    pub(super) fn save(&self, out: &mut String, family: Family) {
        neg(out, self.negated);
        out.push_str(match self.action {
            RecentAction::Set => " --set",
            RecentAction::Check => " --rcheck",
            RecentAction::Update => " --update",
            RecentAction::Remove => " --remove",
        });
        if self.seconds != 0 {
            let _ = write!(out, " --seconds {}", self.seconds);
        }
        if self.reap {
            out.push_str(" --reap");
        }
        if self.hitcount != 0 {
            let _ = write!(out, " --hitcount {}", self.hitcount);
        }
        if self.rttl {
            out.push_str(" --rttl");
        }
        let _ = write!(out, " --name {}", self.name);
        debug_assert_eq!(Family::of(self.mask), family);
        let _ = write!(out, " --mask {}", self.mask);
        out.push_str(match self.side {
            RecentSide::Source => " --rsource",
            RecentSide::Dest => " --rdest",
        });
    }
}

/// One dimension of a `set` match: which packet address/port to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetDir {
    /// `src`.
    Src,
    /// `dst`.
    Dst,
}

/// `-m set [!] --match-set NAME dir[,dir...]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetMatch {
    /// `!` before `--match-set`.
    pub negated: bool,
    /// The ipset name.
    pub name: String,
    /// One direction per set dimension (1 to 6).
    pub dirs: Vec<SetDir>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prob(threshold: u32) -> String {
        let mut s = String::new();
        push_probability(&mut s, threshold);
        s
    }

    #[test]
    fn probability_prints_like_printf_11f() {
        // Values checked against iptables-save 1.8.9 on a real kernel.
        assert_eq!(prob(1 << 30), "0.50000000000");
        assert_eq!(prob(715827883), "0.33333333349");
        assert_eq!(prob(214748365), "0.10000000009");
        assert_eq!(prob(107374182), "0.04999999981");
        assert_eq!(prob(21475), "0.00001000008");
        assert_eq!(prob(1 << 31), "1.00000000000");
        assert_eq!(prob(0), "0.00000000000");
        // 2^-12 = 0.000244140625 exactly: a tie, rounded to even like glibc.
        assert_eq!(prob(1 << 19), "0.00024414062");
    }
}

//! Where `statistic --mode random` and nftables' `numgen random` get their
//! randomness: a seeded stream for normal evaluation, or a script that
//! makes the evaluator explore every branch.
//!
//! Models: the kernel's comparison `(get_random_u32() & 0x7FFFFFFF) <
//! threshold` with the threshold the rule stores (`round(p * 2^31)`), and
//! nft's `numgen random mod N` (`reciprocal_scale(get_random_u32(), N)`),
//! drawn from a seeded stream ([`Choices`] is implemented for every
//! `rand_core::Rng`); and [`Explorer`], a depth-first walk over the
//! decisions of one evaluation, "match" before "no match", so that the
//! outcomes of all runs come out in rule order (the first endpoint of a
//! service first). A `numgen` draw is a chain of decisions "is it 0?",
//! "is it 1?", …, so exploring it visits 0, 1, …, N-1 in that order.
//!
//! Must never: branch on a rule whose outcome is certain (probability 0 or
//! 1), or draw from anything but the stream it was given.
//!
//! Error contract: [`Explorer::run`] stops after a run limit and says so
//! (`complete == false`); it never loops forever.

use rand_core::Rng;

/// A source of `statistic --mode random` outcomes.
pub trait Choices {
    /// Whether a random 31-bit value falls below `threshold`.
    fn statistic_random(&mut self, threshold: u32) -> bool;

    /// `numgen random mod modulus`: a number in `0..modulus` (0 when
    /// `modulus` is 0 or 1).
    fn numgen_random(&mut self, modulus: u32) -> u32;
}

impl<R: Rng + ?Sized> Choices for R {
    fn statistic_random(&mut self, threshold: u32) -> bool {
        (self.next_u32() & 0x7fff_ffff) < threshold
    }

    fn numgen_random(&mut self, modulus: u32) -> u32 {
        // The kernel's reciprocal_scale(get_random_u32(), modulus).
        ((u64::from(self.next_u32()) * u64::from(modulus)) >> 32) as u32
    }
}

/// Decisions taken from a script, the rest "match"; records what it took.
#[derive(Debug, Clone, Default)]
pub struct Scripted {
    script: Vec<bool>,
    taken: Vec<bool>,
}

impl Scripted {
    /// Follow `script`, then answer "match".
    pub fn new(script: Vec<bool>) -> Scripted {
        Scripted {
            script,
            taken: Vec::new(),
        }
    }

    /// The decisions taken so far.
    pub fn taken(&self) -> &[bool] {
        &self.taken
    }
}

impl Choices for Scripted {
    fn statistic_random(&mut self, threshold: u32) -> bool {
        if threshold == 0 {
            return false;
        }
        if threshold >= 1 << 31 {
            return true;
        }
        self.decide()
    }

    fn numgen_random(&mut self, modulus: u32) -> u32 {
        // One decision per value but the last: "is it this one?".
        for v in 0..modulus.saturating_sub(1) {
            if self.decide() {
                return v;
            }
        }
        modulus.saturating_sub(1)
    }
}

impl Scripted {
    fn decide(&mut self) -> bool {
        let d = self.script.get(self.taken.len()).copied().unwrap_or(true);
        self.taken.push(d);
        d
    }
}

/// Runs an evaluation once per combination of random decisions.
#[derive(Debug, Clone, Copy)]
pub struct Explorer {
    /// The most runs to make.
    pub limit: usize,
}

/// The outcomes of an exploration, in depth-first ("match" first) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explored<T> {
    /// One outcome per run, with the decisions that led to it.
    pub runs: Vec<(T, Vec<bool>)>,
    /// False when the run limit cut the exploration short.
    pub complete: bool,
}

impl Default for Explorer {
    fn default() -> Self {
        Explorer { limit: 100_000 }
    }
}

impl Explorer {
    /// Call `run` with a fresh [`Scripted`] for every branch.
    pub fn run<T>(&self, mut run: impl FnMut(&mut Scripted) -> T) -> Explored<T> {
        let mut runs = Vec::new();
        let mut script = Vec::new();
        loop {
            if runs.len() >= self.limit {
                return Explored {
                    runs,
                    complete: false,
                };
            }
            let mut s = Scripted::new(script);
            let out = run(&mut s);
            let mut taken = s.taken;
            runs.push((out, taken.clone()));
            // Backtrack: flip the last "match" into "no match".
            loop {
                match taken.pop() {
                    Some(true) => {
                        taken.push(false);
                        break;
                    }
                    Some(false) => continue,
                    None => {
                        return Explored {
                            runs,
                            complete: true,
                        }
                    }
                }
            }
            script = taken;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explores_a_three_way_split_in_order() {
        // Like a KUBE-SVC chain: 1/3, then 1/2, then the last endpoint.
        let out = Explorer::default().run(|c| {
            if c.statistic_random(715_827_883) {
                "a"
            } else if c.statistic_random(1 << 30) {
                "b"
            } else {
                "c"
            }
        });
        let names: Vec<&str> = out.runs.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(out.complete);
    }

    #[test]
    fn certain_outcomes_do_not_branch() {
        let out = Explorer::default().run(|c| (c.statistic_random(0), c.statistic_random(1 << 31)));
        assert_eq!(out.runs.len(), 1);
        assert_eq!(out.runs[0].0, (false, true));
    }

    #[test]
    fn numgen_is_explored_value_by_value_and_drawn_uniformly() {
        let out = Explorer::default().run(|c| c.numgen_random(3));
        let values: Vec<u32> = out.runs.iter().map(|(v, _)| *v).collect();
        assert_eq!(values, [0, 1, 2]);
        assert_eq!(
            Explorer::default().run(|c| c.numgen_random(1)).runs.len(),
            1
        );
        let mut r = crate::rng::stream(3, "numgen");
        let mut counts = [0u32; 4];
        for _ in 0..10_000 {
            counts[r.numgen_random(4) as usize] += 1;
        }
        assert!(
            counts.iter().all(|n| (2_300..2_700).contains(n)),
            "{counts:?}"
        );
    }

    #[test]
    fn seeded_streams_compare_31_bits_against_the_threshold() {
        let mut r = crate::rng::stream(3, "statistic");
        let hits = (0..10_000).filter(|_| r.statistic_random(1 << 30)).count();
        assert!((4_700..5_300).contains(&hits), "{hits}");
    }
}

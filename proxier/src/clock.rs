//! Time as the proxier sees it: a [`Timestamp`] the caller passes in.
//!
//! **Invariant:** nothing in `proxier` reads the wall clock. The simulator
//! passes virtual time; the kernel backend passes time since it started.

use std::time::Duration;

/// A point in time, as the duration since an arbitrary epoch chosen by the
/// caller (the start of a scenario, or of the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub Duration);

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(Duration::ZERO);

    pub fn from_secs(secs: u64) -> Self {
        Timestamp(Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        Timestamp(Duration::from_millis(ms))
    }

    /// Time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Timestamp) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    pub fn plus(self, d: Duration) -> Timestamp {
        Timestamp(self.0 + d)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}s", self.0.as_secs_f64())
    }
}

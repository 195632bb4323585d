//! Virtual time. **Invariant:** the simulator never reads a clock; every
//! time-dependent model (conntrack timeouts, `recent` tables, IPVS
//! persistence) takes an [`Instant`] from its caller.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in virtual time: nanoseconds since the start of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    pub fn from_secs(secs: u64) -> Self {
        Instant(secs * 1_000_000_000)
    }

    pub fn from_millis(ms: u64) -> Self {
        Instant(ms * 1_000_000)
    }

    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the start, as a [`Duration`].
    pub fn since_start(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time elapsed since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0 + d.as_nanos() as u64)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Display for Instant {
    /// Seconds with millisecond precision, e.g. `12.500s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:03}s",
            self.0 / 1_000_000_000,
            (self.0 / 1_000_000) % 1000
        )
    }
}

//! When syncs run: upstream's `BoundedFrequencyRunner`
//! (`pkg/util/async`), as a state machine on a caller-driven clock.
//!
//! Requests (`run`) are coalesced; a run happens at most `burst` times back
//! to back and then no more than once per `min_interval` (a token bucket
//! that starts full), and at least once per `max_interval` (a timer re-armed
//! after every run). `retry_after` pulls the timer earlier after a failure.
//!
//! Upstream runs this in a goroutine with real timers. Here the caller asks
//! [`SyncRunner::next_wakeup`] when to come back, advances its (virtual)
//! clock to that instant and calls [`SyncRunner::poll`]; when `poll` says
//! so, the caller syncs and reports back with [`SyncRunner::ran`]. At one
//! instant the pending retry is handled first, then a pending request, then
//! the timer — one fixed order where Go's `select` picks at random.

use std::time::Duration;

use crate::clock::Timestamp;

/// golang.org/x/time/rate's limiter as client-go's token-bucket uses it.
#[derive(Debug, Clone)]
struct TokenBucket {
    /// Tokens per second (`None`: `min_interval` is 0, always accept).
    limit: Option<f64>,
    burst: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    fn new(min_interval: Duration, burst: u32) -> Self {
        let limit = if min_interval.is_zero() {
            None
        } else {
            // Upstream computes the rate in float32: float32(1e9)/float32(ns).
            Some(f64::from(1e9f32 / min_interval.as_nanos() as f32))
        };
        TokenBucket {
            limit,
            burst: f64::from(burst),
            tokens: 0.0,
            last: None,
        }
    }

    fn try_accept(&mut self, now: Timestamp) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        // From the zero time the elapsed time saturates: the bucket starts full.
        let tokens = match self.last {
            None => self.burst,
            Some(last) => {
                let elapsed = now.since(last).as_secs_f64();
                (self.tokens + elapsed * limit).min(self.burst)
            }
        } - 1.0;
        let wait_ns = if tokens < 0.0 {
            (1e9 * (-tokens / limit)) as i64
        } else {
            0
        };
        let ok = self.burst >= 1.0 && wait_ns <= 0;
        if ok {
            self.last = Some(now);
            self.tokens = tokens;
        }
        ok
    }
}

/// Decides when the proxier syncs.
#[derive(Debug, Clone)]
pub struct SyncRunner {
    min_interval: Duration,
    max_interval: Duration,
    limiter: TokenBucket,
    last_run: Option<Timestamp>,
    /// When the timer fires (`None`: not started).
    deadline: Option<Timestamp>,
    run_pending: bool,
    retry_pending: bool,
    retry_time: Option<Timestamp>,
}

impl SyncRunner {
    /// `min_interval` = `minSyncPeriod`; kube-proxy passes a 1 h
    /// `max_interval` and a burst of 2.
    pub fn new(min_interval: Duration, max_interval: Duration, burst: u32) -> Self {
        assert!(
            max_interval >= min_interval,
            "maxInterval ({max_interval:?}) must be >= minInterval ({min_interval:?})"
        );
        SyncRunner {
            min_interval,
            max_interval,
            limiter: TokenBucket::new(min_interval, burst),
            last_run: None,
            deadline: None,
            run_pending: false,
            retry_pending: false,
            retry_time: None,
        }
    }

    /// Starts the loop (upstream's `Loop`): arms the timer.
    pub fn start(&mut self, now: Timestamp) {
        self.deadline = Some(now.plus(self.max_interval));
    }

    /// Requests a run as soon as allowed (upstream's `Run`).
    pub fn run(&mut self) {
        self.run_pending = true;
    }

    /// Asks for a run no later than `interval` from now (upstream's
    /// `RetryAfter`); an earlier pending retry wins.
    pub fn retry_after(&mut self, now: Timestamp, interval: Duration) {
        let t = now.plus(interval);
        if self.retry_time.is_some_and(|r| r < t) {
            return;
        }
        self.retry_time = Some(t);
        self.retry_pending = true;
    }

    /// The next instant `poll` has something to do, if any.
    pub fn next_wakeup(&self, now: Timestamp) -> Option<Timestamp> {
        if self.run_pending || self.retry_pending {
            return Some(now);
        }
        self.deadline
    }

    /// Handles what is due at `now`. Returns `true` when the caller must run
    /// the sync now and then call [`ran`](Self::ran).
    pub fn poll(&mut self, now: Timestamp) -> bool {
        if self.retry_pending {
            self.retry_pending = false;
            self.do_retry(now);
        }
        if self.run_pending {
            self.run_pending = false;
            if self.try_run(now) {
                return true;
            }
        }
        if self.deadline.is_some_and(|d| d <= now) {
            return self.try_run(now);
        }
        false
    }

    /// The sync that `poll` asked for finished at `now`.
    pub fn ran(&mut self, now: Timestamp) {
        self.last_run = Some(now);
        self.deadline = Some(now.plus(self.max_interval));
    }

    fn try_run(&mut self, now: Timestamp) -> bool {
        if self.limiter.try_accept(now) {
            return true;
        }
        // Not allowed yet: fire again when it will be, or at the timer's
        // deadline if that is sooner.
        let elapsed = self.last_run.map(|l| now.since(l)).unwrap_or(Duration::MAX);
        let next_possible = self.min_interval.saturating_sub(elapsed);
        let next_scheduled = self.deadline.map(|d| d.since(now)).unwrap_or(Duration::MAX);
        self.deadline = Some(now.plus(next_possible.min(next_scheduled)));
        false
    }

    fn do_retry(&mut self, now: Timestamp) {
        let Some(retry) = self.retry_time.take() else {
            return;
        };
        let interval = retry.since(now);
        let remaining = self.deadline.map(|d| d.since(now)).unwrap_or(Duration::MAX);
        if interval < remaining {
            self.deadline = Some(now.plus(interval));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    /// Drives the runner until `until`, syncing instantly, and returns the
    /// instants at which syncs ran.
    fn drive(r: &mut SyncRunner, from: u64, until: u64) -> Vec<u64> {
        let mut now = t(from);
        let mut runs = Vec::new();
        while let Some(w) = r.next_wakeup(now) {
            if w > t(until) {
                break;
            }
            now = w.max(now);
            if r.poll(now) {
                runs.push(now.0.as_millis() as u64);
                r.ran(now);
            }
        }
        runs
    }

    #[test]
    fn burst_of_two_then_one_per_min_interval() {
        let mut r = SyncRunner::new(Duration::from_secs(1), Duration::from_secs(3600), 2);
        r.start(t(0));
        let mut runs = Vec::new();
        for ms in [0, 10, 20, 30] {
            r.run();
            runs.extend(drive(&mut r, ms, ms));
        }
        // Two immediate runs use up the burst; the later requests coalesce
        // into one run when a token has accrued.
        assert_eq!(runs, vec![0, 10]);
        assert_eq!(drive(&mut r, 30, 5000), vec![1010]);
    }

    #[test]
    fn max_interval_forces_periodic_runs() {
        let mut r = SyncRunner::new(Duration::from_secs(1), Duration::from_secs(60), 2);
        r.start(t(0));
        assert_eq!(drive(&mut r, 0, 130_000), vec![60_000, 120_000]);
    }

    #[test]
    fn zero_min_interval_never_delays() {
        let mut r = SyncRunner::new(Duration::ZERO, Duration::from_secs(3600), 2);
        r.start(t(0));
        let mut runs = Vec::new();
        for ms in [0, 1, 2, 3] {
            r.run();
            runs.extend(drive(&mut r, ms, ms));
        }
        assert_eq!(runs, vec![0, 1, 2, 3]);
    }

    #[test]
    fn retry_pulls_the_timer_in() {
        let mut r = SyncRunner::new(Duration::from_secs(1), Duration::from_secs(3600), 2);
        r.start(t(0));
        r.retry_after(t(0), Duration::from_secs(30));
        assert_eq!(drive(&mut r, 0, 40_000), vec![30_000]);
    }
}

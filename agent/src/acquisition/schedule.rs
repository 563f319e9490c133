//! The poller's pure state: back-off of failing devices, the mapping of
//! poll ticks to wall-clock timestamps, and log rate limiting. No I/O: the
//! current time is always an argument.

use std::time::Duration;

use tokio::time::Instant;

/// Exponential back-off of a device whose link failed (time-out, broken
/// connection). After the n-th failure in a row the device is not polled
/// for `base × 2^(n-1)` (at most `max`), counted from the failed poll's
/// tick: the first failure skips nothing, the next ticks are skipped as the
/// failures go on. A success resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// A back-off starting at `base` (the poll interval), capped at `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            failures: 0,
            retry_at: None,
        }
    }

    /// Whether the tick scheduled at `tick` should poll the device.
    pub fn ready(&self, tick: Instant) -> bool {
        self.retry_at.is_none_or(|at| tick >= at)
    }

    /// Records a failed poll at `tick`; returns the delay before the next try.
    pub fn failure(&mut self, tick: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(31);
        let delay = self.base.saturating_mul(1 << doublings).min(self.max);
        self.retry_at = Some(tick + delay);
        delay
    }

    /// Records a successful poll; returns how many failures it ends (0 if
    /// the device was healthy).
    pub fn success(&mut self) -> u32 {
        self.retry_at = None;
        std::mem::take(&mut self.failures)
    }

    /// Failed polls in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Maps poll ticks (monotonic [`Instant`]s) to UTC milliseconds.
///
/// A tick's timestamp is the wall time at start plus the tick's monotonic
/// offset, so polls every 1000 ms get timestamps exactly 1000 ms apart,
/// however late the task ran. If the wall clock is stepped (NTP's first
/// sync on a gateway without a real-time clock), [`WallClock::observe`]
/// moves the base by the step, so timestamps follow UTC again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    base: Instant,
    base_ms: i64,
}

/// Differences between monotonic and wall time up to this are drift and
/// are ignored; beyond it the wall clock was stepped.
pub const CLOCK_STEP_THRESHOLD_MS: i64 = 1000;

impl WallClock {
    /// A clock that maps `base` to `base_ms`.
    pub fn new(base: Instant, base_ms: i64) -> Self {
        Self { base, base_ms }
    }

    /// The UTC milliseconds of `tick`.
    pub fn timestamp(&self, tick: Instant) -> i64 {
        let offset = if tick >= self.base {
            millis(tick - self.base)
        } else {
            -millis(self.base - tick)
        };
        self.base_ms + offset
    }

    /// The first instant at or after the base whose timestamp is a multiple
    /// of `period` (so 1 s polls happen on whole seconds).
    pub fn first_aligned(&self, period: Duration) -> Instant {
        let period_ms = millis(period).max(1);
        let aligned = self.base_ms.div_euclid(period_ms) * period_ms;
        let aligned = if aligned < self.base_ms {
            aligned + period_ms
        } else {
            aligned
        };
        self.base + Duration::from_millis((aligned - self.base_ms) as u64)
    }

    /// Compares the mapping with the wall clock read now (`now_ms` at
    /// `now`). A difference over [`CLOCK_STEP_THRESHOLD_MS`] re-anchors the
    /// mapping; the step in ms is returned.
    pub fn observe(&mut self, now: Instant, now_ms: i64) -> Option<i64> {
        let step = now_ms - self.timestamp(now);
        (step.abs() > CLOCK_STEP_THRESHOLD_MS).then(|| {
            self.base_ms += step;
            step
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Rate limit for a repeated log message: the first occurrence passes,
/// then at most one per `period`, reporting how many were held back.
#[derive(Debug, Clone)]
pub struct Throttle {
    period: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

/// How often a repeating problem is logged.
pub const LOG_PERIOD: Duration = Duration::from_mins(1);

impl Default for Throttle {
    fn default() -> Self {
        Self::new(LOG_PERIOD)
    }
}

impl Throttle {
    /// A throttle letting one message through per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            next: None,
            suppressed: 0,
        }
    }

    /// `Some(held back since the last one)` if a message may be logged now.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + self.period);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_from_the_tick_and_resets() {
        let t0 = Instant::now();
        let mut b = Backoff::new(S, 10 * S);
        assert!(b.ready(t0));
        // First failure: the next tick (one period later) polls again.
        assert_eq!(b.failure(t0), S);
        assert!(!b.ready(t0 + S / 2));
        assert!(b.ready(t0 + S));
        // Then 2 s, 4 s, 8 s, 10 s (capped), 10 s ...
        let mut tick = t0 + S;
        for expected in [2, 4, 8, 10, 10] {
            let delay = b.failure(tick);
            assert_eq!(delay, expected * S);
            assert!(!b.ready(tick + delay - S));
            assert!(b.ready(tick + delay));
            tick += delay;
        }
        assert_eq!(b.failures(), 6);
        assert_eq!(b.success(), 6);
        assert_eq!(b.success(), 0);
        assert!(b.ready(tick));
        assert_eq!(b.failure(tick), S);
        // Many failures never overflow.
        for _ in 0..100 {
            b.failure(tick);
        }
        assert_eq!(b.failure(tick), 10 * S);
    }

    #[test]
    fn ticks_map_to_exactly_regular_timestamps() {
        let t0 = Instant::now();
        let clock = WallClock::new(t0, 1_700_000_000_123);
        let first = clock.first_aligned(S);
        assert_eq!(clock.timestamp(first), 1_700_000_001_000);
        for k in 0..5u32 {
            assert_eq!(
                clock.timestamp(first + S * k),
                1_700_000_001_000 + i64::from(k) * 1000
            );
        }
        // 15 s polls align to :00, :15, :30, :45.
        let aligned = clock.timestamp(clock.first_aligned(15 * S));
        assert_eq!(aligned % 15_000, 0);
        assert!(aligned >= 1_700_000_000_123 && aligned - 1_700_000_000_123 < 15_000);
        // Already aligned stays put.
        let clock = WallClock::new(t0, 5000);
        assert_eq!(clock.first_aligned(S), t0);
        assert_eq!(clock.timestamp(t0 - S), 4000);
    }

    #[test]
    fn a_stepped_wall_clock_re_anchors_but_drift_does_not() {
        let t0 = Instant::now();
        let mut clock = WallClock::new(t0, 1_000_000);
        // 500 ms of drift over a minute: ignored.
        assert_eq!(clock.observe(t0 + 60 * S, 1_060_500), None);
        assert_eq!(clock.timestamp(t0 + 60 * S), 1_060_000);
        // NTP steps the clock forward by an hour.
        assert_eq!(
            clock.observe(t0 + 61 * S, 1_061_000 + 3_600_000),
            Some(3_600_000)
        );
        assert_eq!(clock.timestamp(t0 + 62 * S), 1_062_000 + 3_600_000);
        // ... and back.
        assert_eq!(clock.observe(t0 + 63 * S, 1_063_000), Some(-3_600_000));
    }

    #[test]
    fn throttle_lets_one_through_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut t = Throttle::new(10 * S);
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0 + S), None);
        assert_eq!(t.allow(t0 + 9 * S), None);
        assert_eq!(t.allow(t0 + 10 * S), Some(2));
        assert_eq!(t.allow(t0 + 11 * S), None);
        assert_eq!(t.allow(t0 + 25 * S), Some(1));
    }
}

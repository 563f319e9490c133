//! Request rate limits: one token bucket per key, in memory.
//!
//! A bucket holds up to `burst` tokens and gains `per_second` tokens per
//! second; a request takes one, and a request finding the bucket empty is
//! refused with the time until a token is back (HTTP `Retry-After`). The
//! state machine ([`TokenBucket`]) takes the time as an argument, so it is
//! tested without sleeping; [`KeyedLimiter`] keeps one bucket per key
//! behind a mutex (held for a few arithmetic operations).
//!
//! The buckets live in the process: with several `serve` processes behind
//! a load balancer, a key gets up to the limit at each of them.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use gridlink_cloud::ingest::ratelimit::{KeyedLimiter, RateLimit};
//!
//! let limiter = KeyedLimiter::new(RateLimit { per_second: 1, burst: 2 });
//! let now = Instant::now();
//! assert!(limiter.check(7_i64, now).is_ok());
//! assert!(limiter.check(7_i64, now).is_ok());
//! assert_eq!(limiter.check(7_i64, now), Err(Duration::from_secs(1)));
//! assert!(limiter.check(8_i64, now).is_ok(), "another key has its own bucket");
//! assert!(limiter.check(7_i64, now + Duration::from_secs(1)).is_ok());
//! ```

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full ones are forgotten (a full bucket is the same
/// as no bucket).
const PRUNE_ABOVE: usize = 10_000;

/// How fast requests may come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second (tokens added per second), at least 1.
    pub per_second: u32,
    /// Most requests at once (bucket size), at least 1.
    pub burst: u32,
}

/// One token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(limit: RateLimit, now: Instant) -> Self {
        Self {
            tokens: f64::from(limit.burst.max(1)),
            updated: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is back. Times
    /// before the last update count as the last update (a clock that went
    /// backwards refills nothing).
    pub fn take(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(limit.per_second.max(1));
        let burst = f64::from(limit.burst.max(1));
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = elapsed.mul_add(rate, self.tokens).min(burst);
        self.updated = self.updated.max(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    /// Whether the bucket is full again at `now`.
    fn is_full(&self, limit: RateLimit, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        elapsed.mul_add(f64::from(limit.per_second.max(1)), self.tokens)
            >= f64::from(limit.burst.max(1))
    }
}

/// A token bucket per key.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash> KeyedLimiter<K> {
    /// Every key starts with a full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit.
    pub const fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Takes a token of `key`'s bucket at `now`; `Err` with the time until
    /// one is back, rounded up to whole seconds (at least 1 s, as
    /// `Retry-After` counts).
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_ABOVE {
            let limit = self.limit;
            buckets.retain(|_, bucket| !bucket.is_full(limit, now));
        }
        buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(self.limit, now))
            .take(self.limit, now)
            .map_err(|wait| Duration::from_secs(wait.as_secs_f64().ceil().max(1.0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        per_second: 10,
        burst: 3,
    };

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::full(LIMIT, t0);
        for _ in 0..3 {
            assert!(bucket.take(LIMIT, t0).is_ok());
        }
        let wait = bucket.take(LIMIT, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        // 100 ms later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(100);
        assert!(bucket.take(LIMIT, t1).is_ok());
        assert!(bucket.take(LIMIT, t1).is_err());
        // Asking every 50 ms for a second at 10/s: every other request,
        // 10 in all, passes.
        let passed: Vec<u64> = (1..=20)
            .filter(|i| {
                bucket
                    .take(LIMIT, t1 + Duration::from_millis(i * 50))
                    .is_ok()
            })
            .collect();
        assert_eq!(passed, [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
        // After a long pause it holds `burst` tokens, not more.
        let later = t1 + Duration::from_hours(1);
        let passed = (0..10)
            .filter(|_| bucket.take(LIMIT, later).is_ok())
            .count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::full(LIMIT, t0);
        for _ in 0..3 {
            assert!(bucket.take(LIMIT, t0).is_ok());
        }
        assert!(
            bucket
                .take(LIMIT, t0.checked_sub(Duration::from_secs(5)).unwrap())
                .is_err()
        );
        assert!(bucket.take(LIMIT, t0).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets_and_retry_after_is_whole_seconds() {
        let limiter = KeyedLimiter::new(RateLimit {
            per_second: 1,
            burst: 1,
        });
        let t0 = Instant::now();
        assert!(limiter.check("a", t0).is_ok());
        assert_eq!(limiter.check("a", t0), Err(Duration::from_secs(1)));
        assert!(limiter.check("b", t0).is_ok());
        let slow = KeyedLimiter::new(RateLimit {
            per_second: 1,
            burst: 1,
        });
        assert!(slow.check(1, t0).is_ok());
        assert_eq!(
            slow.check(1, t0 + Duration::from_millis(300)),
            Err(Duration::from_secs(1))
        );
    }

    #[test]
    fn full_buckets_are_forgotten_when_there_are_many() {
        let limiter = KeyedLimiter::new(LIMIT);
        let t0 = Instant::now();
        for key in 0..=PRUNE_ABOVE {
            assert!(limiter.check(key, t0).is_ok());
        }
        let later = t0 + Duration::from_secs(1);
        assert!(limiter.check(usize::MAX, later).is_ok());
        let kept = limiter.buckets.lock().unwrap().len();
        assert_eq!(kept, 1, "only the new key's bucket is left");
    }
}

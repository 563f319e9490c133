//! AWS IoT Core's per-connection rate limits as token buckets: pure
//! arithmetic, the clock passed in.

use std::time::Duration;

use tokio::time::Instant;

/// Token buckets for publishes and bytes per second, with one second of
/// burst. A limit of 0 means unlimited.
#[derive(Debug)]
pub struct RateLimiter {
    publishes_per_s: f64,
    bytes_per_s: f64,
    publish_tokens: f64,
    byte_tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// Full buckets at `now`.
    pub fn new(publishes_per_s: u32, bytes_per_s: u32, now: Instant) -> Self {
        Self {
            publishes_per_s: f64::from(publishes_per_s),
            bytes_per_s: f64::from(bytes_per_s),
            publish_tokens: f64::from(publishes_per_s),
            byte_tokens: f64::from(bytes_per_s),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.publish_tokens =
            (self.publish_tokens + dt * self.publishes_per_s).min(self.publishes_per_s);
        self.byte_tokens = (self.byte_tokens + dt * self.bytes_per_s).min(self.bytes_per_s);
    }

    /// Takes the tokens for one publish of `bytes` if they are there, or
    /// says how long to wait for them.
    pub fn try_take(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        // A payload larger than one second of bytes may go once the bucket is full.
        let need_bytes = (bytes as f64).min(self.bytes_per_s);
        let pub_ok = self.publishes_per_s == 0.0 || self.publish_tokens >= 1.0;
        let bytes_ok = self.bytes_per_s == 0.0 || self.byte_tokens >= need_bytes;
        if pub_ok && bytes_ok {
            if self.publishes_per_s > 0.0 {
                self.publish_tokens -= 1.0;
            }
            if self.bytes_per_s > 0.0 {
                self.byte_tokens -= need_bytes;
            }
            return Ok(());
        }
        let wait_pub = if pub_ok {
            0.0
        } else {
            (1.0 - self.publish_tokens) / self.publishes_per_s
        };
        let wait_bytes = if bytes_ok {
            0.0
        } else {
            (need_bytes - self.byte_tokens) / self.bytes_per_s
        };
        Err(Duration::from_secs_f64(wait_pub.max(wait_bytes)).max(Duration::from_millis(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_paces_publishes_and_bytes() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(100, 1000, t0);
        for _ in 0..2 {
            assert!(r.try_take(400, t0).is_ok());
        }
        // 200 bytes left: a 400-byte payload waits 0.2 s.
        let wait = r.try_take(400, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.2).abs() < 0.01, "{wait:?}");
        assert!(r.try_take(400, t0 + Duration::from_millis(200)).is_ok());

        let mut r = RateLimiter::new(100, 0, t0);
        for _ in 0..100 {
            assert!(r.try_take(1, t0).is_ok());
        }
        let wait = r.try_take(1, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.01).abs() < 0.002, "{wait:?}");

        let mut unlimited = RateLimiter::new(0, 0, t0);
        for _ in 0..10_000 {
            assert!(unlimited.try_take(1 << 20, t0).is_ok());
        }
    }
}

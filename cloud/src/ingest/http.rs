//! HTTP ingest's service state: its limits, the per-key rate limiter, the
//! batch key of a retried request and its counters. The route
//! (`POST /api/v1/ingest`: authentication, body and field checks, problem
//! documents) is `crate::api::ingest`; it stores through the same
//! [`Store::ingest`](crate::store::Store::ingest) transaction as MQTT
//! ingest and publishes on the same feed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gridlink_protocol::VenId;

use super::ratelimit::{KeyedLimiter, RateLimit};
use crate::store::HTTP_SEQ_BASE;

/// Default largest body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default sustained requests per second per API key.
pub const DEFAULT_RATE_PER_S: u32 = 10;
/// Default burst per API key.
pub const DEFAULT_BURST: u32 = 20;
/// The exponent of a reading that gives none: values are kept to 10^-3
/// of their unit.
pub const DEFAULT_EXPONENT: i8 = -3;
/// Most readings in one request.
pub const MAX_READINGS: usize = 10_000;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// The header naming a request for retries.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// What HTTP ingest keeps between requests: its limits and the rate
/// limiter of the API keys.
#[derive(Debug)]
pub struct HttpIngest {
    /// Largest body, bytes.
    pub max_body_bytes: usize,
    limiter: KeyedLimiter<i64>,
}

impl HttpIngest {
    /// Bodies up to `max_body_bytes`; each API key at `rate`.
    pub fn new(max_body_bytes: usize, rate: RateLimit) -> Self {
        Self {
            max_body_bytes,
            limiter: KeyedLimiter::new(rate),
        }
    }

    /// Takes one request from `key_id`'s bucket at `now`, or says how long
    /// until one is available.
    pub fn check_rate(&self, key_id: i64, now: Instant) -> Result<(), Duration> {
        self.limiter.check(key_id, now)
    }
}

impl Default for HttpIngest {
    fn default() -> Self {
        Self::new(
            DEFAULT_MAX_BODY_BYTES,
            RateLimit {
                per_second: DEFAULT_RATE_PER_S,
                burst: DEFAULT_BURST,
            },
        )
    }
}

/// Why HTTP ingest refused a request (the `reason` label of
/// `gridlink_http_ingest_rejected_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestRejection {
    /// No valid API key (401).
    Unauthorized,
    /// The key may not write the VEN (403).
    Forbidden,
    /// Over the key's rate (429).
    RateLimited,
    /// Body over the limit (413).
    TooLarge,
    /// A bad body or field (400, 415).
    Invalid,
    /// The database is unreachable (503).
    Unavailable,
    /// Anything else (500).
    Internal,
}

impl IngestRejection {
    /// Every reason, in label order.
    pub const ALL: [Self; 7] = [
        Self::Unauthorized,
        Self::Forbidden,
        Self::RateLimited,
        Self::TooLarge,
        Self::Invalid,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::TooLarge => "too_large",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// HTTP ingest's counters, rendered at `/metrics` with the rest.
#[derive(Debug, Default)]
pub struct HttpIngestMetrics {
    /// Requests whose readings were committed (duplicates included).
    pub requests: AtomicU64,
    /// Readings stored.
    pub readings: AtomicU64,
    /// Readings skipped because their series already had a reading at
    /// their time (or the batch was a retry).
    pub duplicates: AtomicU64,
    rejected: [AtomicU64; 7],
}

impl HttpIngestMetrics {
    /// Counts a refused request.
    pub fn rejected(&self, reason: IngestRejection) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Requests refused for `reason` so far.
    pub fn rejected_count(&self, reason: IngestRejection) -> u64 {
        self.rejected[reason as usize].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        for (name, help, value) in [
            (
                "gridlink_http_ingest_requests_total",
                "HTTP ingest requests committed.",
                &self.requests,
            ),
            (
                "gridlink_http_ingest_readings_total",
                "Readings stored by HTTP ingest.",
                &self.readings,
            ),
            (
                "gridlink_http_ingest_duplicates_total",
                "Readings HTTP ingest skipped as already stored.",
                &self.duplicates,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gridlink_http_ingest_rejected_total HTTP ingest requests refused, by reason.\n\
             # TYPE gridlink_http_ingest_rejected_total counter"
        );
        for reason in IngestRejection::ALL {
            let _ = writeln!(
                out,
                "gridlink_http_ingest_rejected_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.rejected_count(reason)
            );
        }
        out
    }
}

/// The batch key of a request with an `Idempotency-Key`: the top two bits
/// set, the rest from SHA-256 of the API key id, the VEN and the header.
pub fn idempotent_seq(key_id: i64, ven: &VenId, idempotency_key: &str) -> u64 {
    let text = format!("{key_id}\n{}\n{idempotency_key}", ven.as_str());
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    HTTP_SEQ_BASE | (1 << 62) | (u64::from_be_bytes(bytes) >> 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_render_by_reason() {
        let m = HttpIngestMetrics::default();
        m.rejected(IngestRejection::RateLimited);
        m.readings.store(3, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("gridlink_http_ingest_rejected_total{reason=\"rate_limited\"} 1\n"));
        assert!(text.contains("gridlink_http_ingest_rejected_total{reason=\"too_large\"} 0\n"));
        assert!(text.contains("gridlink_http_ingest_readings_total 3\n"));
    }
}

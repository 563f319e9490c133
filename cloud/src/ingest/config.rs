//! `[ingest]` (how MQTT ingest groups messages into transactions) and
//! `[http_ingest]` (`POST /api/v1/ingest`'s limits).

use serde::{Deserialize, Serialize};

use crate::model::setting::bounded;

/// `[ingest]`: grouping of telemetry messages into database transactions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Most telemetry messages (batches) written in one transaction, 1 to
    /// 10000. Default 50. Env `GRIDLINK_INGEST_MAX_BATCHES`.
    #[serde(
        default = "default_max_batches",
        deserialize_with = "bounded::<_, usize, 1, 10_000>"
    )]
    pub max_batches: usize,
    /// Longest a message waits for its group to fill before it is written,
    /// in ms, 0 to 60000. Default 200. Env `GRIDLINK_INGEST_MAX_DELAY_MS`.
    #[serde(
        default = "default_max_delay_ms",
        deserialize_with = "bounded::<_, u64, 0, 60_000>"
    )]
    pub max_delay_ms: u64,
    /// Drop (and count) telemetry of VENs the store does not know instead
    /// of registering them on first contact. Default false.
    /// Env `GRIDLINK_INGEST_REFUSE_UNKNOWN_VENS`.
    #[serde(default)]
    pub refuse_unknown_vens: bool,
}

/// Default of [`IngestConfig::max_batches`].
pub const fn default_max_batches() -> usize {
    50
}

/// Default of [`IngestConfig::max_delay_ms`].
pub const fn default_max_delay_ms() -> u64 {
    200
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_batches: default_max_batches(),
            max_delay_ms: default_max_delay_ms(),
            refuse_unknown_vens: false,
        }
    }
}

/// `[http_ingest]`: `POST /api/v1/ingest`, where customers without a
/// gateway send readings with an API key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {
    /// Largest request body in bytes, 1024 to 67108864; a larger one is
    /// answered 413 without being read. Default 1048576 (1 MiB).
    /// Env `GRIDLINK_HTTP_INGEST_MAX_BODY_BYTES`.
    #[serde(
        default = "default_ingest_max_body_bytes",
        deserialize_with = "bounded::<_, usize, 1024, 67_108_864>"
    )]
    pub max_body_bytes: usize,
    /// Requests per second one API key may send, sustained, 1 to 100000
    /// (a token bucket per key in each `serve` process). Default 10.
    /// Env `GRIDLINK_HTTP_INGEST_RATE_PER_S`.
    #[serde(
        default = "default_ingest_rate_per_s",
        deserialize_with = "bounded::<_, u32, 1, 100_000>"
    )]
    pub rate_per_s: u32,
    /// Requests one API key may send at once (the bucket's size), 1 to
    /// 100000. Default 20. Env `GRIDLINK_HTTP_INGEST_BURST`.
    #[serde(
        default = "default_ingest_burst",
        deserialize_with = "bounded::<_, u32, 1, 100_000>"
    )]
    pub burst: u32,
}

/// Default of [`HttpIngestConfig::max_body_bytes`]: 1 MiB.
pub const fn default_ingest_max_body_bytes() -> usize {
    super::http::DEFAULT_MAX_BODY_BYTES
}

/// Default of [`HttpIngestConfig::rate_per_s`].
pub const fn default_ingest_rate_per_s() -> u32 {
    super::http::DEFAULT_RATE_PER_S
}

/// Default of [`HttpIngestConfig::burst`].
pub const fn default_ingest_burst() -> u32 {
    super::http::DEFAULT_BURST
}

impl HttpIngestConfig {
    /// HTTP ingest's state with these limits.
    pub fn http_ingest(&self) -> super::HttpIngest {
        super::HttpIngest::new(
            self.max_body_bytes,
            super::ratelimit::RateLimit {
                per_second: self.rate_per_s,
                burst: self.burst,
            },
        )
    }
}

impl Default for HttpIngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_ingest_max_body_bytes(),
            rate_per_s: default_ingest_rate_per_s(),
            burst: default_ingest_burst(),
        }
    }
}

//! `[openadr.notify]` in `cloud.toml`: how OpenADR notifications reach
//! subscribers (webhooks) and the broker (MQTT). Every setting also has a
//! `GRIDLINK_OPENADR_NOTIFY_*` variable (`crate::config::ENV_VARS`).
//!
//! ```
//! use gridlink_cloud::notify::NotifyConfig;
//!
//! let config: NotifyConfig = toml::from_str("timeout_ms = 2000\nmax_attempts = 3\n").unwrap();
//! assert_eq!(config.timeout_ms, 2000);
//! assert!(!config.allow_http);
//! assert_eq!(config.backoff_max_ms, 600_000);
//! ```

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::setting::bounded;

/// `[openadr.notify]`: webhook delivery and the MQTT notifier. `Debug`
/// does not show the signing key.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Accept `http://` callback URLs (subscriptions and delivery). Off:
    /// only `https://`. Default false. Env `GRIDLINK_OPENADR_NOTIFY_ALLOW_HTTP`.
    #[serde(default)]
    pub allow_http: bool,
    /// Accept callback hosts that resolve to loopback, private,
    /// link-local, unique-local, multicast or unspecified addresses. Off,
    /// every resolved address of the host must be public. Default false.
    /// Env `GRIDLINK_OPENADR_NOTIFY_ALLOW_PRIVATE`.
    #[serde(default)]
    pub allow_private: bool,
    /// Longest one callback request (the echo challenge or a delivery) may
    /// take, ms, 100 to 120000. Default 5000.
    /// Env `GRIDLINK_OPENADR_NOTIFY_TIMEOUT_MS`.
    #[serde(
        default = "default_timeout_ms",
        deserialize_with = "bounded::<_, u32, 100, 120_000>"
    )]
    pub timeout_ms: u32,
    /// Attempts per webhook notification before it is marked failed, 1 to
    /// 100. Default 10. Env `GRIDLINK_OPENADR_NOTIFY_MAX_ATTEMPTS`.
    #[serde(
        default = "default_max_attempts",
        deserialize_with = "bounded::<_, u32, 1, 100>"
    )]
    pub max_attempts: u32,
    /// Wait before the first retry, ms, 10 to 3600000; doubled each time
    /// (with jitter). Default 1000. Env `GRIDLINK_OPENADR_NOTIFY_BACKOFF_MIN_MS`.
    #[serde(
        default = "default_backoff_min_ms",
        deserialize_with = "bounded::<_, u32, 10, 3_600_000>"
    )]
    pub backoff_min_ms: u32,
    /// Longest wait between retries, ms, 10 to 86400000, at least
    /// `backoff_min_ms`. Default 600000. Env `GRIDLINK_OPENADR_NOTIFY_BACKOFF_MAX_MS`.
    #[serde(
        default = "default_backoff_max_ms",
        deserialize_with = "bounded::<_, u32, 10, 86_400_000>"
    )]
    pub backoff_max_ms: u32,
    /// HMAC-SHA256 key of the `X-Gridlink-Signature` header; unset: each
    /// subscription's bearer token signs its notifications (none: no
    /// header). Keep it in the environment.
    /// Env `GRIDLINK_OPENADR_NOTIFY_SIGNING_KEY`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "signing_key"
    )]
    pub signing_key: Option<String>,
    /// MQTT notifications waiting for the publisher, 1 to 1000000; when
    /// full, new ones are dropped and counted. Default 10000.
    /// Env `GRIDLINK_OPENADR_NOTIFY_MQTT_QUEUE`.
    #[serde(
        default = "default_mqtt_queue",
        deserialize_with = "bounded::<_, u32, 1, 1_000_000>"
    )]
    pub mqtt_queue: u32,
}

/// Default of [`NotifyConfig::timeout_ms`].
pub const fn default_timeout_ms() -> u32 {
    5000
}

/// Default of [`NotifyConfig::max_attempts`].
pub const fn default_max_attempts() -> u32 {
    10
}

/// Default of [`NotifyConfig::backoff_min_ms`].
pub const fn default_backoff_min_ms() -> u32 {
    1000
}

/// Default of [`NotifyConfig::backoff_max_ms`].
pub const fn default_backoff_max_ms() -> u32 {
    600_000
}

/// Default of [`NotifyConfig::mqtt_queue`].
pub const fn default_mqtt_queue() -> u32 {
    10_000
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            allow_private: false,
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            backoff_min_ms: default_backoff_min_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            signing_key: None,
            mqtt_queue: default_mqtt_queue(),
        }
    }
}

impl std::fmt::Debug for NotifyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyConfig")
            .field("allow_http", &self.allow_http)
            .field("allow_private", &self.allow_private)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_min_ms", &self.backoff_min_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .field(
                "signing_key",
                &self.signing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("mqtt_queue", &self.mqtt_queue)
            .finish()
    }
}

/// A `[openadr.notify]` that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyConfigError {
    /// `backoff_max_ms` below `backoff_min_ms`.
    #[error("backoff_max_ms ({max}) must be at least backoff_min_ms ({min})")]
    BackoffOrder {
        /// `backoff_min_ms`.
        min: u32,
        /// `backoff_max_ms`.
        max: u32,
    },
    /// An empty signing key.
    #[error("signing_key must not be empty (leave it unset to sign with bearer tokens)")]
    EmptySigningKey,
}

impl NotifyConfig {
    /// The time-out of one callback request.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.timeout_ms))
    }

    /// Checks what single settings cannot: the backoff bounds' order.
    pub fn check(&self) -> Result<(), NotifyConfigError> {
        if self.backoff_max_ms < self.backoff_min_ms {
            return Err(NotifyConfigError::BackoffOrder {
                min: self.backoff_min_ms,
                max: self.backoff_max_ms,
            });
        }
        if self.signing_key.as_deref() == Some("") {
            return Err(NotifyConfigError::EmptySigningKey);
        }
        Ok(())
    }
}

fn signing_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let key = String::deserialize(deserializer)?;
    if key.is_empty() {
        return Err(D::Error::custom(NotifyConfigError::EmptySigningKey));
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_defaults_bounds_and_hides_the_key() {
        let c: NotifyConfig = toml::from_str("").unwrap();
        assert_eq!(c, NotifyConfig::default());
        assert_eq!(c.timeout(), Duration::from_secs(5));
        assert_eq!((c.max_attempts, c.mqtt_queue), (10, 10_000));

        let c: NotifyConfig = toml::from_str(
            "allow_http = true\nallow_private = true\nsigning_key = \"k3y\"\nbackoff_min_ms = 20\n",
        )
        .unwrap();
        assert!(c.allow_http && c.allow_private);
        assert!(!format!("{c:?}").contains("k3y"), "{c:?}");
        assert!(format!("{c:?}").contains("<redacted>"));

        let err = toml::from_str::<NotifyConfig>("timeout_ms = 50\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("50 is out of range: expected 100 to 120000"),
            "{err}"
        );
        let err = toml::from_str::<NotifyConfig>("signing_key = \"\"\n").unwrap_err();
        assert!(err.to_string().contains("must not be empty"), "{err}");
        assert!(toml::from_str::<NotifyConfig>("timeout = 5\n").is_err());

        let c: NotifyConfig =
            toml::from_str("backoff_min_ms = 5000\nbackoff_max_ms = 1000\n").unwrap();
        assert_eq!(
            c.check().unwrap_err().to_string(),
            "backoff_max_ms (1000) must be at least backoff_min_ms (5000)"
        );
    }
}

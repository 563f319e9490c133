//! `cloud.toml`: the cloud's configuration, one struct per component.
//!
//! Every setting can also come from the environment (see [`ENV_VARS`]):
//! the file is read first, then each `GRIDLINK_*` variable that is set and
//! not empty overrides its setting. The file is optional when the
//! environment gives what a command needs (`serve` needs `mqtt.host`).
//!
//! Unknown fields are errors, and every error names its source: the file
//! with line and column (`cloud.toml:4:1: unknown field `listn`, ...`) or
//! the variable (`GRIDLINK_HTTP_LISTEN: invalid socket address "x"`). Values
//! are checked while they are read, so a config that loads is one the
//! cloud can run with. The field documentation below is the user's
//! reference; `cloud/README.md` and `cloud/cloud.example.toml` show it in
//! one place.
//!
//! ```
//! use gridlink_cloud::config::CloudConfig;
//!
//! let text = "[http]\nlisten = \"0.0.0.0:8080\"\n[mqtt]\nhost = \"broker.local\"\n";
//! let mut config = CloudConfig::parse(text, "cloud.toml")?;
//! assert_eq!(config.database_url, "sqlite://gridlink.db");
//! assert_eq!(config.mqtt.port, 8883);
//!
//! // The environment overrides the file.
//! config.apply_env(|name| (name == "GRIDLINK_MQTT_PORT").then(|| "1883".to_string()))?;
//! assert_eq!(config.mqtt.port, 1883);
//!
//! let err = CloudConfig::parse("[http]\nlistn = \"x\"\n", "cloud.toml").unwrap_err();
//! assert!(err.to_string().starts_with("cloud.toml:2:1: unknown field `listn`"), "{err}");
//! # Ok::<(), gridlink_cloud::config::ConfigError>(())
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::api::config::{HttpConfig, default_http_listen, default_max_points};
use crate::ingest::IngestSettings;
pub use crate::ingest::config::{
    HttpIngestConfig, IngestConfig, default_ingest_burst, default_ingest_max_body_bytes,
    default_ingest_rate_per_s, default_max_batches, default_max_delay_ms,
};
use crate::model::setting::{self, OutOfRange, bounded};
use crate::mqtt::MqttSettings;
pub use crate::shadow::config::{ShadowConfig, default_shadow_enabled};

/// The whole `cloud.toml`. Every table is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CloudConfig {
    /// Where data is stored: `postgres://user:password@host/db` (production)
    /// or `sqlite://path.db` (embedded; the file is created if missing).
    /// Default `sqlite://gridlink.db`. Env `GRIDLINK_DATABASE_URL`.
    #[serde(default = "default_database_url", deserialize_with = "database_url")]
    pub database_url: String,
    /// The HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// The MQTT broker ingest consumes from.
    #[serde(default)]
    pub mqtt: MqttConfig,
    /// How ingest groups messages into database writes.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// How long raw readings are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// The device shadow service.
    #[serde(default)]
    pub shadow: ShadowConfig,
    /// HTTP ingest with API keys (`POST /api/v1/ingest`).
    #[serde(default)]
    pub http_ingest: HttpIngestConfig,
    /// The daily export of readings (`crate::export`).
    #[serde(default)]
    pub export: crate::export::ExportConfig,
    /// Alert rules, hold-downs and delivery (`crate::alerts`); its
    /// variables are `crate::alerts::ENV_VARS`.
    #[serde(default)]
    pub alerts: crate::alerts::AlertsConfig,
    /// The OpenADR 3.1 VTN's settings.
    #[serde(default)]
    pub openadr: OpenAdrConfig,
}

/// `[openadr]`: the OpenADR 3.1 VTN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAdrConfig {
    /// `[openadr.notify]`: webhook and MQTT notifications of subscriptions
    /// (`crate::notify`).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
}

/// Default of [`CloudConfig::database_url`]: SQLite in the working directory.
pub fn default_database_url() -> String {
    "sqlite://gridlink.db".to_string()
}

impl Default for CloudConfig {
    fn default() -> Self {
        Self {
            database_url: default_database_url(),
            http: HttpConfig::default(),
            mqtt: MqttConfig::default(),
            http_ingest: HttpIngestConfig::default(),
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
            shadow: ShadowConfig::default(),
            export: crate::export::ExportConfig::default(),
            alerts: crate::alerts::AlertsConfig::default(),
            openadr: OpenAdrConfig::default(),
        }
    }
}

/// `[mqtt]`: the broker connection of ingest, with the `backend` identity
/// (a client certificate whose CN the broker's policy lets subscribe to
/// every VEN's topics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name, e.g. the AWS IoT `iot:Data-ATS` endpoint.
    /// Required by `serve`. Env `GRIDLINK_MQTT_HOST`.
    #[serde(
        default,
        deserialize_with = "host",
        skip_serializing_if = "Option::is_none"
    )]
    pub host: Option<String>,
    /// Broker TLS port. Default 8883. Env `GRIDLINK_MQTT_PORT`.
    #[serde(
        default = "default_mqtt_port",
        deserialize_with = "bounded::<_, u16, 1, 65_535>"
    )]
    pub port: u16,
    /// PEM file of the CA(s) that sign the broker's certificate. Relative
    /// paths in the file are relative to the file's directory (in the
    /// environment, to the working directory). Default `ca.pem`.
    /// Env `GRIDLINK_MQTT_CA`.
    #[serde(default = "default_ca")]
    pub ca: PathBuf,
    /// PEM file of the `backend` client certificate. Default `cert.pem`.
    /// Env `GRIDLINK_MQTT_CERT`.
    #[serde(default = "default_cert")]
    pub cert: PathBuf,
    /// PEM file of the `backend` certificate's private key. Default
    /// `key.pem`. Env `GRIDLINK_MQTT_KEY`.
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// MQTT client id, 1 to 128 of `A-Z a-z 0-9 _ . : -`. The session is
    /// persistent, so the id must stay the same across restarts of one
    /// `serve` process and differ between processes on the same broker (the
    /// broker disconnects the older of two clients with one id). Default
    /// `gridlink-cloud-<host name>` (a random suffix when the host name
    /// cannot be read): set it explicitly when one host runs several
    /// `serve` processes. Env `GRIDLINK_MQTT_CLIENT_ID`.
    #[serde(default = "default_client_id", deserialize_with = "client_id")]
    pub client_id: String,
    /// Shared-subscription group: the `serve` processes of one group split
    /// the VENs' messages (`$share/<group>/oadr/meter/+`). 1 to 64 of
    /// `A-Z a-z 0-9 _ . : -`, or empty (the default) for plain
    /// subscriptions (`oadr/meter/+`), which every broker keeps in a
    /// persistent session across its own restart. A group needs
    /// [`MqttConfig::shared_subscriptions_persist`]: Mosquitto 2.0 restores
    /// a persistent session's queued messages after a restart but not its
    /// shared subscriptions, so what VENs publish before ingest subscribes
    /// again is acknowledged to them and dropped (reproduced with
    /// Mosquitto 2.0.11). Env `GRIDLINK_MQTT_SHARE_GROUP`.
    #[serde(default = "default_share_group", deserialize_with = "share_group")]
    pub share_group: String,
    /// `true` only for a broker that keeps a persistent session's *shared*
    /// subscriptions across its own restart, as it keeps plain ones.
    /// `serve` refuses a [`MqttConfig::share_group`] without it, since on
    /// a broker that forgets them (Mosquitto 2.0) several processes would
    /// lose readings at every broker restart; scale ingest out there with
    /// one ingesting process per broker instead. Default `false`.
    /// Env `GRIDLINK_MQTT_SHARED_SUBSCRIPTIONS_PERSIST`.
    #[serde(default)]
    pub shared_subscriptions_persist: bool,
    /// The largest MQTT packet the broker may deliver, in bytes: its
    /// `max_packet_size` (Mosquitto; `gridlink-provision broker-config`
    /// sets 132,096), or 128 KiB plus header on AWS IoT Core. The cloud's
    /// clients read every packet up to this size and drop (acknowledge and
    /// count) a payload over the protocol's 128 KiB, so no message the
    /// broker accepts can make them disconnect and be sent it again forever.
    /// It must not be below the broker's limit: 132,096 to 268,435,455.
    /// Default 268,435,455, MQTT 3.1.1's largest packet, so any broker's
    /// packets are read (a smaller value, equal to the broker's limit,
    /// bounds the cloud's memory per message). Env
    /// `GRIDLINK_MQTT_MAX_PACKET_BYTES`.
    #[serde(
        default = "default_max_packet_bytes",
        deserialize_with = "bounded::<_, usize, { MIN_MAX_PACKET_BYTES as u64 }, { MQTT_MAX_PACKET_BYTES as u64 }>"
    )]
    pub max_packet_bytes: usize,
    /// MQTT keep-alive in seconds, 5 to 1200. Default 60.
    /// Env `GRIDLINK_MQTT_KEEP_ALIVE_S`.
    #[serde(
        default = "default_keep_alive_s",
        deserialize_with = "bounded::<_, u16, 5, 1200>"
    )]
    pub keep_alive_s: u16,
}

/// Default of [`MqttConfig::port`]: MQTT over TLS.
pub const fn default_mqtt_port() -> u16 {
    8883
}

/// Default of [`MqttConfig::ca`].
pub fn default_ca() -> PathBuf {
    PathBuf::from("ca.pem")
}

/// Default of [`MqttConfig::cert`].
pub fn default_cert() -> PathBuf {
    PathBuf::from("cert.pem")
}

/// Default of [`MqttConfig::key`].
pub fn default_key() -> PathBuf {
    PathBuf::from("key.pem")
}

/// Default of [`MqttConfig::client_id`]: `gridlink-cloud-<host name>`,
/// stable across restarts so the broker keeps the persistent session;
/// `gridlink-cloud-<8 random hex digits>` when the host name is unknown.
pub fn default_client_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| {
            name.trim()
                .chars()
                .filter(|&c| is_id_char(c))
                .take(MAX_CLIENT_ID_LEN - CLIENT_ID_PREFIX.len())
                .collect::<String>()
        })
        .filter(|name| !name.is_empty());
    let suffix = host.unwrap_or_else(|| {
        let mut bytes = [0u8; 4];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
            bytes = std::process::id().to_be_bytes();
        }
        bytes.iter().fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
    });
    format!("{CLIENT_ID_PREFIX}{suffix}")
}

const CLIENT_ID_PREFIX: &str = "gridlink-cloud-";
const MAX_CLIENT_ID_LEN: usize = 128;

/// Default of [`MqttConfig::share_group`]: none, plain subscriptions.
pub fn default_share_group() -> String {
    String::new()
}

/// MQTT 3.1.1's largest packet body (the "remaining length", §2.2.3), the
/// limit rumqttc checks: 268,435,455 bytes.
pub const MQTT_MAX_PACKET_BYTES: usize = 268_435_455;

/// The smallest [`MqttConfig::max_packet_bytes`]: the broker limit that
/// `gridlink-provision broker-config` writes (a full 128 KiB payload plus
/// 1 KiB for the header and topic).
pub const MIN_MAX_PACKET_BYTES: usize = gridlink_protocol::MAX_PAYLOAD_BYTES + 1024;

/// Default of [`MqttConfig::max_packet_bytes`]: [`MQTT_MAX_PACKET_BYTES`].
pub const fn default_max_packet_bytes() -> usize {
    MQTT_MAX_PACKET_BYTES
}

/// Default of [`MqttConfig::keep_alive_s`].
pub const fn default_keep_alive_s() -> u16 {
    60
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: default_mqtt_port(),
            ca: default_ca(),
            cert: default_cert(),
            key: default_key(),
            client_id: default_client_id(),
            share_group: default_share_group(),
            shared_subscriptions_persist: false,
            max_packet_bytes: default_max_packet_bytes(),
            keep_alive_s: default_keep_alive_s(),
        }
    }
}

/// `[retention]`: how long raw readings are kept. Rollups (1 min, 15 min,
/// 1 h) are kept forever. Enforced at start and hourly by `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days raw readings are kept, 0 to 36500; 0 keeps them forever.
    /// Default 90. Env `GRIDLINK_RETENTION_RAW_DAYS`.
    #[serde(
        default = "default_raw_days",
        deserialize_with = "bounded::<_, u32, 0, 36_500>"
    )]
    pub raw_days: u32,
}

/// Default of [`RetentionConfig::raw_days`].
pub const fn default_raw_days() -> u32 {
    90
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            raw_days: default_raw_days(),
        }
    }
}

impl RetentionConfig {
    /// How long raw readings are kept; `None` for forever.
    pub fn raw_max_age(&self) -> Option<Duration> {
        (self.raw_days > 0).then(|| Duration::from_secs(u64::from(self.raw_days) * 86_400))
    }
}

/// Why the configuration was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not TOML, or a value does not fit (unknown field, wrong
    /// type, out of range).
    #[error("{origin}{}: {message}", position.map_or_else(String::new, |(line, column)| format!(":{line}:{column}")))]
    File {
        /// The file name.
        origin: String,
        /// Line and column (from 1) of the offending text, when known.
        position: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
    /// An environment variable's value does not fit its setting.
    #[error("{var}: {message}")]
    Env {
        /// The variable.
        var: &'static str,
        /// What is wrong.
        message: SettingError,
    },
    /// A combination of settings that would lose data.
    #[error("{setting}: {reason}")]
    Unsafe {
        /// The setting, as a TOML path.
        setting: &'static str,
        /// Why it is refused and what to do instead.
        reason: String,
    },
    /// A setting the command needs is not set anywhere.
    #[error("{setting} is not set: set it in the config file or with {var}")]
    Missing {
        /// The setting, as a TOML path (`mqtt.host`).
        setting: &'static str,
        /// The variable that can set it.
        var: &'static str,
    },
    /// `[openadr.notify]` settings that cannot work together.
    #[error("openadr.notify: {0}")]
    Notify(#[from] crate::notify::NotifyConfigError),
}

/// A setting's value that does not fit, from the file or an environment
/// variable (named beside it, in [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not a socket address (`http.listen`).
    #[error("invalid socket address {value:?} (expected e.g. 127.0.0.1:8080)")]
    InvalidSocketAddress {
        /// The value as given.
        value: String,
    },
    /// Not an integer.
    #[error("invalid integer {value:?} (expected {min} to {max})")]
    InvalidInteger {
        /// The value as given.
        value: String,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// An integer outside the setting's range.
    #[error(transparent)]
    OutOfRange(#[from] OutOfRange),
    /// Neither `true`/`1` nor `false`/`0`.
    #[error("invalid boolean {value:?} (expected true or false)")]
    InvalidBoolean {
        /// The value as given.
        value: String,
    },
    /// A database URL that is neither PostgreSQL nor SQLite.
    #[error("unsupported database URL scheme {scheme:?}: use postgres://... or sqlite://...")]
    UnsupportedDatabaseScheme {
        /// The scheme only (at most 32 characters): the rest may hold a
        /// password.
        scheme: String,
    },
    /// Not a host name (`mqtt.host`).
    #[error("invalid host name {host:?}")]
    InvalidHost {
        /// The value as given.
        host: String,
    },
    /// An MQTT client id or share group with characters the broker may
    /// refuse, or of the wrong length.
    #[error("invalid {what} {id:?}: expected 1 to {max} of A-Z a-z 0-9 _ . : -")]
    InvalidId {
        /// What the id names (`client id`, `share group`).
        what: &'static str,
        /// The value as given.
        id: String,
        /// The longest accepted.
        max: usize,
    },
    /// A bad `[export]` value.
    #[error(transparent)]
    Export(#[from] crate::export::ExportConfigError),
    /// A bad `[alerts]` value, or `[alerts]` settings that cannot work.
    #[error(transparent)]
    Alerts(#[from] crate::alerts::AlertsConfigError),
}

/// One environment variable and the setting it overrides.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// The variable, e.g. `GRIDLINK_HTTP_LISTEN`.
    pub name: &'static str,
    /// The setting, as a TOML path, e.g. `http.listen`.
    pub setting: &'static str,
    apply: fn(&mut CloudConfig, &str) -> Result<(), SettingError>,
}

/// Every environment variable, one per setting, in file order.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: "GRIDLINK_DATABASE_URL",
        setting: "database_url",
        apply: |c, v| {
            check_database_url(v)?;
            c.database_url = v.to_string();
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_HTTP_LISTEN",
        setting: "http.listen",
        apply: |c, v| {
            c.http.listen = v
                .parse()
                .map_err(|_| SettingError::InvalidSocketAddress { value: v.into() })?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_HTTP_MAX_POINTS",
        setting: "http.max_points",
        apply: |c, v| {
            c.http.max_points = env_int(v, 10, 1_000_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_HOST",
        setting: "mqtt.host",
        apply: |c, v| {
            check_host(v)?;
            c.mqtt.host = Some(v.to_string());
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_PORT",
        setting: "mqtt.port",
        apply: |c, v| {
            c.mqtt.port = env_int(v, 1, 65_535)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_CA",
        setting: "mqtt.ca",
        apply: |c, v| {
            c.mqtt.ca = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_CERT",
        setting: "mqtt.cert",
        apply: |c, v| {
            c.mqtt.cert = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_KEY",
        setting: "mqtt.key",
        apply: |c, v| {
            c.mqtt.key = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_CLIENT_ID",
        setting: "mqtt.client_id",
        apply: |c, v| {
            check_id("client id", v, MAX_CLIENT_ID_LEN)?;
            c.mqtt.client_id = v.to_string();
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_SHARE_GROUP",
        setting: "mqtt.share_group",
        apply: |c, v| {
            if !v.is_empty() {
                check_id("share group", v, MAX_SHARE_GROUP_LEN)?;
            }
            c.mqtt.share_group = v.to_string();
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_SHARED_SUBSCRIPTIONS_PERSIST",
        setting: "mqtt.shared_subscriptions_persist",
        apply: |c, v| {
            c.mqtt.shared_subscriptions_persist = env_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_MAX_PACKET_BYTES",
        setting: "mqtt.max_packet_bytes",
        apply: |c, v| {
            c.mqtt.max_packet_bytes =
                env_int(v, MIN_MAX_PACKET_BYTES as u64, MQTT_MAX_PACKET_BYTES as u64)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_MQTT_KEEP_ALIVE_S",
        setting: "mqtt.keep_alive_s",
        apply: |c, v| {
            c.mqtt.keep_alive_s = env_int(v, 5, 1200)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_INGEST_MAX_BATCHES",
        setting: "ingest.max_batches",
        apply: |c, v| {
            c.ingest.max_batches = env_int(v, 1, 10_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_INGEST_MAX_DELAY_MS",
        setting: "ingest.max_delay_ms",
        apply: |c, v| {
            c.ingest.max_delay_ms = env_int(v, 0, 60_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_INGEST_REFUSE_UNKNOWN_VENS",
        setting: "ingest.refuse_unknown_vens",
        apply: |c, v| {
            c.ingest.refuse_unknown_vens = env_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_RETENTION_RAW_DAYS",
        setting: "retention.raw_days",
        apply: |c, v| {
            c.retention.raw_days = env_int(v, 0, 36_500)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_SHADOW_ENABLED",
        setting: "shadow.enabled",
        apply: |c, v| {
            c.shadow.enabled = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(SettingError::InvalidBoolean { value: v.into() }),
            };
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_EXPORT_ENABLED",
        setting: "export.enabled",
        apply: |c, v| {
            c.export.enabled = match v.trim() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(SettingError::InvalidBoolean { value: v.into() }),
            };
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_EXPORT_AT_UTC",
        setting: "export.at_utc",
        apply: |c, v| {
            crate::export::parse_at_utc(v)?;
            c.export.at_utc = v.to_string();
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_EXPORT_OUTPUT",
        setting: "export.output",
        apply: |c, v| {
            v.parse::<crate::export::Output>()?;
            c.export.output = v.to_string();
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_EXPORT_FORMAT",
        setting: "export.format",
        apply: |c, v| {
            c.export.format = v.trim().parse()?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_EXPORT_GAP_FACTOR",
        setting: "export.gap_factor",
        apply: |c, v| {
            c.export.gap_factor = crate::export::check_gap_factor(env_int(v, 2, 1000)?)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_EXPORT_S3_ENDPOINT_URL",
        setting: "export.s3_endpoint_url",
        apply: |c, v| {
            c.export.s3_endpoint_url = v.to_string();
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_HTTP_INGEST_MAX_BODY_BYTES",
        setting: "http_ingest.max_body_bytes",
        apply: |c, v| {
            c.http_ingest.max_body_bytes = env_int(v, 1024, 67_108_864)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_HTTP_INGEST_RATE_PER_S",
        setting: "http_ingest.rate_per_s",
        apply: |c, v| {
            c.http_ingest.rate_per_s = env_int(v, 1, 100_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_HTTP_INGEST_BURST",
        setting: "http_ingest.burst",
        apply: |c, v| {
            c.http_ingest.burst = env_int(v, 1, 100_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_ALLOW_HTTP",
        setting: "openadr.notify.allow_http",
        apply: |c, v| {
            c.openadr.notify.allow_http = env_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_ALLOW_PRIVATE",
        setting: "openadr.notify.allow_private",
        apply: |c, v| {
            c.openadr.notify.allow_private = env_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_TIMEOUT_MS",
        setting: "openadr.notify.timeout_ms",
        apply: |c, v| {
            c.openadr.notify.timeout_ms = env_int(v, 100, 120_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_MAX_ATTEMPTS",
        setting: "openadr.notify.max_attempts",
        apply: |c, v| {
            c.openadr.notify.max_attempts = env_int(v, 1, 100)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_BACKOFF_MIN_MS",
        setting: "openadr.notify.backoff_min_ms",
        apply: |c, v| {
            c.openadr.notify.backoff_min_ms = env_int(v, 10, 3_600_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_BACKOFF_MAX_MS",
        setting: "openadr.notify.backoff_max_ms",
        apply: |c, v| {
            c.openadr.notify.backoff_max_ms = env_int(v, 10, 86_400_000)?;
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_SIGNING_KEY",
        setting: "openadr.notify.signing_key",
        apply: |c, v| {
            c.openadr.notify.signing_key = Some(v.to_string());
            Ok(())
        },
    },
    EnvVar {
        name: "GRIDLINK_OPENADR_NOTIFY_MQTT_QUEUE",
        setting: "openadr.notify.mqtt_queue",
        apply: |c, v| {
            c.openadr.notify.mqtt_queue = env_int(v, 1, 1_000_000)?;
            Ok(())
        },
    },
];

const MAX_SHARE_GROUP_LEN: usize = 64;

impl CloudConfig {
    /// Parses and checks config text. `origin` names the text in errors
    /// (usually the file name). Relative paths are left as written; the
    /// environment is not read.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::File {
            origin: origin.to_string(),
            position: e.span().map(|span| line_column(text, span.start)),
            message: e.message().trim_end().to_string(),
        })
    }

    /// The configuration `serve`, `migrate` and `token` run with: the file
    /// at `path` if given (relative paths in it made absolute against its
    /// directory), else the defaults; then every variable of [`ENV_VARS`]
    /// that `env` returns (set and not empty) overrides its setting.
    pub fn load(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut config = Self::parse(&text, &path.display().to_string())?;
                let dir = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let base = std::fs::canonicalize(dir)
                    .or_else(|_| std::path::absolute(dir))
                    .unwrap_or_else(|_| dir.to_path_buf());
                config.resolve_paths(&base);
                config
            }
            None => Self::default(),
        };
        config.apply_env(env)?;
        config.openadr.notify.check()?;
        config
            .alerts
            .check()
            .map_err(|(var, message)| ConfigError::Env {
                var,
                message: message.into(),
            })?;
        Ok(config)
    }

    /// Overrides settings with the variables of [`ENV_VARS`] that `env`
    /// returns; an empty value counts as unset.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for var in ENV_VARS {
            if let Some(value) = env(var.name).filter(|v| !v.is_empty()) {
                (var.apply)(self, &value).map_err(|message| ConfigError::Env {
                    var: var.name,
                    message,
                })?;
            }
        }
        self.alerts
            .apply_env(&env)
            .map_err(|(var, message)| ConfigError::Env {
                var,
                message: message.into(),
            })?;
        Ok(())
    }

    /// Makes the relative certificate paths relative to `base` (what
    /// [`load`](Self::load) does with the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [&mut self.mqtt.ca, &mut self.mqtt.cert, &mut self.mqtt.key] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }

    /// What ingest runs with; fails if `mqtt.host` is not set, or if a
    /// shared-subscription group is set for a broker that is not declared
    /// to keep shared subscriptions across its restart.
    pub fn ingest_settings(&self) -> Result<IngestSettings, ConfigError> {
        let host = self.mqtt.host.clone().ok_or(ConfigError::Missing {
            setting: "mqtt.host",
            var: "GRIDLINK_MQTT_HOST",
        })?;
        if !self.mqtt.share_group.is_empty() && !self.mqtt.shared_subscriptions_persist {
            return Err(ConfigError::Unsafe {
                setting: "mqtt.share_group",
                reason: format!(
                    "shared subscriptions (group {:?}) lose readings whenever the broker \
                     restarts on a broker that does not keep them in persistent sessions, \
                     as Mosquitto 2.0 does not: leave mqtt.share_group empty (one ingesting \
                     process per broker), or set mqtt.shared_subscriptions_persist = true \
                     only if your broker keeps shared subscriptions across its restart",
                    self.mqtt.share_group
                ),
            });
        }
        Ok(IngestSettings {
            mqtt: MqttSettings {
                host,
                port: self.mqtt.port,
                ca: self.mqtt.ca.clone(),
                cert: self.mqtt.cert.clone(),
                key: self.mqtt.key.clone(),
                client_id: self.mqtt.client_id.clone(),
                share_group: self.mqtt.share_group.clone(),
                max_packet_bytes: self.mqtt.max_packet_bytes,
                keep_alive: Duration::from_secs(u64::from(self.mqtt.keep_alive_s)),
            },
            max_batches: self.ingest.max_batches,
            max_delay: Duration::from_millis(self.ingest.max_delay_ms),
            refuse_unknown_vens: self.ingest.refuse_unknown_vens,
        })
    }
}

/// The database URL with any password replaced by `***`, for logs.
pub fn redact_database_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Line and column (from 1, in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

fn in_range<T: TryFrom<u64>>(value: i64, min: u64, max: u64) -> Result<T, SettingError> {
    Ok(setting::in_range(value, min, max)?)
}

fn env_bool(value: &str) -> Result<bool, SettingError> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(SettingError::InvalidBoolean {
            value: value.to_owned(),
        }),
    }
}

fn env_int<T: TryFrom<u64>>(value: &str, min: u64, max: u64) -> Result<T, SettingError> {
    let parsed: i64 = value
        .trim()
        .parse()
        .map_err(|_| SettingError::InvalidInteger {
            value: value.to_owned(),
            min,
            max,
        })?;
    in_range(parsed, min, max)
}

fn database_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let url = String::deserialize(deserializer)?;
    check_database_url(&url).map_err(D::Error::custom)?;
    Ok(url)
}

fn check_database_url(url: &str) -> Result<(), SettingError> {
    if ["postgres://", "postgresql://", "sqlite:"]
        .iter()
        .any(|prefix| url.starts_with(prefix))
    {
        Ok(())
    } else {
        // Only the scheme is repeated: the rest may hold a password.
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        let scheme: String = scheme.chars().take(32).collect();
        Err(SettingError::UnsupportedDatabaseScheme { scheme })
    }
}

fn host<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let host = String::deserialize(deserializer)?;
    check_host(&host).map_err(D::Error::custom)?;
    Ok(Some(host))
}

fn check_host(host: &str) -> Result<(), SettingError> {
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace() || c == '/') {
        Err(SettingError::InvalidHost {
            host: host.to_owned(),
        })
    } else {
        Ok(())
    }
}

fn client_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let id = String::deserialize(deserializer)?;
    check_id("client id", &id, MAX_CLIENT_ID_LEN).map_err(D::Error::custom)?;
    Ok(id)
}

fn share_group<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let group = String::deserialize(deserializer)?;
    if !group.is_empty() {
        check_id("share group", &group, MAX_SHARE_GROUP_LEN).map_err(D::Error::custom)?;
    }
    Ok(group)
}

const fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

fn check_id(what: &'static str, id: &str, max: usize) -> Result<(), SettingError> {
    if id.is_empty() || id.len() > max || !id.chars().all(is_id_char) {
        Err(SettingError::InvalidId {
            what,
            id: id.to_owned(),
            max,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn setting_errors_render_the_operators_text() {
        let cases = [
            (
                env_int::<u16>("x", 1, 65_535).unwrap_err(),
                "invalid integer \"x\" (expected 1 to 65535)",
            ),
            (
                env_int::<u16>("0", 1, 65_535).unwrap_err(),
                "0 is out of range: expected 1 to 65535",
            ),
            (
                env_bool("yes").unwrap_err(),
                "invalid boolean \"yes\" (expected true or false)",
            ),
            (
                check_database_url("mysql://u:secret@h/db").unwrap_err(),
                "unsupported database URL scheme \"mysql\": use postgres://... or sqlite://...",
            ),
            (check_host("a b").unwrap_err(), "invalid host name \"a b\""),
            (
                check_id("client id", "a b", 23).unwrap_err(),
                "invalid client id \"a b\": expected 1 to 23 of A-Z a-z 0-9 _ . : -",
            ),
            (
                SettingError::InvalidSocketAddress { value: "x".into() },
                "invalid socket address \"x\" (expected e.g. 127.0.0.1:8080)",
            ),
            (
                crate::export::ExportConfigError::EmptyOutput.into(),
                "empty output: use s3://bucket/prefix/, file:///dir or a path",
            ),
            (
                crate::alerts::AlertsConfigError::NoRecipient.into(),
                "needs at least one recipient with alerts.email.host",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
        let env = ConfigError::Env {
            var: "GRIDLINK_MQTT_PORT",
            message: SettingError::OutOfRange(OutOfRange {
                value: 0,
                min: 1,
                max: 65_535,
            }),
        };
        assert_eq!(
            env.to_string(),
            "GRIDLINK_MQTT_PORT: 0 is out of range: expected 1 to 65535"
        );
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn keys(prefix: &str, table: &toml::Table, out: &mut BTreeSet<String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => keys(&path, inner, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }

    #[test]
    fn cloud_config_defaults_from_empty_text() {
        let c = CloudConfig::parse("", "cloud.toml").unwrap();
        assert_eq!(c.database_url, "sqlite://gridlink.db");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.http.max_points, 10_000);
        assert_eq!(c.mqtt.host, None);
        assert_eq!(c.mqtt.port, 8883);
        assert_eq!(c.mqtt.share_group, "");
        assert!(!c.mqtt.shared_subscriptions_persist);
        assert_eq!(c.mqtt.max_packet_bytes, 268_435_455);
        assert!(
            c.mqtt.client_id.starts_with("gridlink-cloud-"),
            "{}",
            c.mqtt.client_id
        );
        assert!(c.mqtt.client_id.len() > "gridlink-cloud-".len());
        assert_eq!(c.mqtt.keep_alive_s, 60);
        assert_eq!(c.ingest, IngestConfig::default());
        assert_eq!((c.ingest.max_batches, c.ingest.max_delay_ms), (50, 200));
        assert!(!c.ingest.refuse_unknown_vens);
        assert_eq!(c.retention.raw_days, 90);
        assert_eq!(c, CloudConfig::default());
    }

    #[test]
    fn http_config_parses() {
        let h: HttpConfig = toml::from_str("listen = \"0.0.0.0:9000\"\nmax_points = 50").unwrap();
        assert_eq!((h.listen.port(), h.max_points), (9000, 50));
        assert!(toml::from_str::<HttpConfig>("listen = \"localhost\"").is_err());
        assert!(toml::from_str::<HttpConfig>("max_points = 9").is_err());
    }

    #[test]
    fn mqtt_config_parses() {
        let m: MqttConfig = toml::from_str(
            "host = \"b.local\"\nport = 1883\nca = \"/pki/ca.pem\"\nclient_id = \"cloud-a\"\nshare_group = \"g2\"\nkeep_alive_s = 30",
        )
        .unwrap();
        assert_eq!(m.host.as_deref(), Some("b.local"));
        assert_eq!((m.port, m.keep_alive_s), (1883, 30));
        assert_eq!(m.ca, Path::new("/pki/ca.pem"));
        assert_eq!(m.cert, Path::new("cert.pem"));
        assert_eq!(
            (m.client_id.as_str(), m.share_group.as_str()),
            ("cloud-a", "g2")
        );
        for bad in [
            "port = 0",
            "keep_alive_s = 4",
            "client_id = \"a b\"",
            "share_group = \"g/1\"",
            "host = \"\"",
        ] {
            assert!(toml::from_str::<MqttConfig>(bad).is_err(), "{bad}");
        }
        // Empty: plain subscriptions.
        let m: MqttConfig = toml::from_str("share_group = \"\"").unwrap();
        assert_eq!(m.share_group, "");
        let m: MqttConfig = toml::from_str("max_packet_bytes = 132096").unwrap();
        assert_eq!(m.max_packet_bytes, 132_096);
        for below_the_broker_config in ["max_packet_bytes = 131584", "max_packet_bytes = 268435456"]
        {
            let error = toml::from_str::<MqttConfig>(below_the_broker_config)
                .unwrap_err()
                .to_string();
            assert!(error.contains("132096 to 268435455"), "{error}");
        }
    }

    #[test]
    fn a_share_group_is_refused_unless_the_broker_keeps_shared_subscriptions() {
        let text = "[mqtt]\nhost = \"b\"\nshare_group = \"g\"\n";
        let c = CloudConfig::parse(text, "cloud.toml").unwrap();
        let error = c.ingest_settings().unwrap_err();
        assert!(
            matches!(
                error,
                ConfigError::Unsafe {
                    setting: "mqtt.share_group",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("Mosquitto 2.0"), "{error}");
        let declared = format!("{text}shared_subscriptions_persist = true\n");
        let c = CloudConfig::parse(&declared, "cloud.toml").unwrap();
        assert_eq!(c.ingest_settings().unwrap().mqtt.share_group, "g");
        // The default: plain subscriptions, no refusal, every packet read.
        let c = CloudConfig::parse("[mqtt]\nhost = \"b\"\n", "cloud.toml").unwrap();
        let settings = c.ingest_settings().unwrap();
        assert_eq!(settings.mqtt.share_group, "");
        assert_eq!(settings.mqtt.max_packet_bytes, MQTT_MAX_PACKET_BYTES);
        // And from the environment.
        let c = CloudConfig::load(None, |name| match name {
            "GRIDLINK_MQTT_HOST" => Some("b".into()),
            "GRIDLINK_MQTT_SHARE_GROUP" => Some("g".into()),
            "GRIDLINK_MQTT_SHARED_SUBSCRIPTIONS_PERSIST" => Some("true".into()),
            "GRIDLINK_MQTT_MAX_PACKET_BYTES" => Some("200000".into()),
            _ => None,
        })
        .unwrap();
        let settings = c.ingest_settings().unwrap();
        assert_eq!(
            (
                settings.mqtt.share_group.as_str(),
                settings.mqtt.max_packet_bytes
            ),
            ("g", 200_000)
        );
    }

    #[test]
    fn ingest_and_retention_config_parse() {
        let i: IngestConfig =
            toml::from_str("max_batches = 10\nmax_delay_ms = 0\nrefuse_unknown_vens = true")
                .unwrap();
        assert_eq!(
            (i.max_batches, i.max_delay_ms, i.refuse_unknown_vens),
            (10, 0, true)
        );
        assert!(toml::from_str::<IngestConfig>("max_batches = 0").is_err());
        assert!(toml::from_str::<IngestConfig>("max_delay_ms = -1").is_err());
        let r: RetentionConfig = toml::from_str("raw_days = 0").unwrap();
        assert_eq!(r.raw_max_age(), None);
        let r: RetentionConfig = toml::from_str("raw_days = 2").unwrap();
        assert_eq!(r.raw_max_age(), Some(Duration::from_hours(48)));
    }

    #[test]
    fn http_ingest_config_parses() {
        let h: HttpIngestConfig =
            toml::from_str("max_body_bytes = 4096\nrate_per_s = 2\nburst = 5").unwrap();
        assert_eq!((h.max_body_bytes, h.rate_per_s, h.burst), (4096, 2, 5));
        let d: HttpIngestConfig = toml::from_str("").unwrap();
        assert_eq!((d.max_body_bytes, d.rate_per_s, d.burst), (1 << 20, 10, 20));
        for bad in [
            "max_body_bytes = 10",
            "rate_per_s = 0",
            "burst = 100001",
            "rate = 1",
        ] {
            assert!(toml::from_str::<HttpIngestConfig>(bad).is_err(), "{bad}");
        }
        let err = CloudConfig::default()
            .apply_env(|name| (name == "GRIDLINK_HTTP_INGEST_BURST").then(|| "0".into()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "GRIDLINK_HTTP_INGEST_BURST: 0 is out of range: expected 1 to 100000"
        );
    }

    #[test]
    fn file_errors_name_line_and_column() {
        let err = CloudConfig::parse("[http]\nlisten = \"127.0.0.1:1\"\nlistn = 2\n", "c.toml")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:3:1: unknown field `listn`"),
            "{err}"
        );
        let err = CloudConfig::parse("[mqtt]\nport = 70000\n", "c.toml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.toml:2:8: 70000 is out of range: expected 1 to 65535"
        );
        let err =
            CloudConfig::parse("database_url = \"mysql://u:secret@h/db\"\n", "c.toml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("c.toml:1:16: unsupported database URL scheme \"mysql\""),
            "{text}"
        );
        assert!(!text.contains("secret"), "{text}");
        let err = CloudConfig::parse("[mqtt\n", "c.toml").unwrap_err();
        assert!(err.to_string().starts_with("c.toml:1:"), "{err}");
    }

    #[test]
    fn environment_overrides_and_names_the_variable() {
        let mut c = CloudConfig::parse("[http]\nlisten = \"127.0.0.1:1\"\n", "c.toml").unwrap();
        c.apply_env(|name| match name {
            "GRIDLINK_HTTP_LISTEN" => Some("0.0.0.0:9999".into()),
            "GRIDLINK_MQTT_HOST" => Some("broker".into()),
            "GRIDLINK_INGEST_REFUSE_UNKNOWN_VENS" => Some("true".into()),
            "GRIDLINK_RETENTION_RAW_DAYS" => Some("0".into()),
            "GRIDLINK_MQTT_CLIENT_ID" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.http.listen.to_string(), "0.0.0.0:9999");
        assert_eq!(c.mqtt.host.as_deref(), Some("broker"));
        assert!(c.ingest.refuse_unknown_vens);
        assert_eq!(c.retention.raw_days, 0);
        assert!(
            c.mqtt.client_id.starts_with("gridlink-cloud-"),
            "an empty variable is unset"
        );

        let err = CloudConfig::default()
            .apply_env(|name| (name == "GRIDLINK_HTTP_LISTEN").then(|| "x".into()))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("GRIDLINK_HTTP_LISTEN: invalid socket address \"x\""),
            "{err}"
        );
        let err = CloudConfig::default()
            .apply_env(|name| (name == "GRIDLINK_MQTT_PORT").then(|| "0".into()))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "GRIDLINK_MQTT_PORT: 0 is out of range: expected 1 to 65535"
        );
        let err = CloudConfig::default()
            .apply_env(|name| (name == "GRIDLINK_INGEST_REFUSE_UNKNOWN_VENS").then(|| "yes".into()))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("GRIDLINK_INGEST_REFUSE_UNKNOWN_VENS: invalid boolean"),
            "{err}"
        );
    }

    #[test]
    fn every_setting_has_one_environment_variable() {
        let mut config = CloudConfig::default();
        config.mqtt.host = Some("h".into());
        config.openadr.notify.signing_key = Some("k".into());
        let table: toml::Table = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        let mut settings = BTreeSet::new();
        keys("", &table, &mut settings);
        // `[alerts]` has its own list (checked in `alerts::config`).
        settings.retain(|s| !s.starts_with("alerts."));
        let from_env: BTreeSet<String> = ENV_VARS.iter().map(|v| v.setting.to_string()).collect();
        assert_eq!(settings, from_env);
        for var in ENV_VARS {
            let expected = format!("GRIDLINK_{}", var.setting.replace('.', "_").to_uppercase());
            assert_eq!(var.name, expected);
        }
    }

    #[test]
    fn example_file_parses_and_shows_every_setting() {
        let text = include_str!("../cloud.example.toml");
        let config = CloudConfig::parse(text, "cloud.example.toml").unwrap();
        assert_eq!(config.http.listen, default_http_listen());
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut written = BTreeSet::new();
        keys("", &table, &mut written);
        let all: BTreeSet<String> = ENV_VARS
            .iter()
            .map(|v| v.setting)
            .chain(crate::alerts::ENV_VARS.iter().map(|v| v.setting))
            .map(str::to_string)
            .collect();
        assert_eq!(written, all, "cloud.example.toml lists every setting");
    }

    #[test]
    fn load_resolves_paths_against_the_file_and_reads_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloud.toml");
        std::fs::write(
            &path,
            "[mqtt]\nhost = \"b\"\nca = \"pki/ca.pem\"\nkey = \"/abs/key.pem\"\n",
        )
        .unwrap();
        let c = CloudConfig::load(Some(&path), |name| {
            (name == "GRIDLINK_MQTT_CERT").then(|| "rel/cert.pem".into())
        })
        .unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(c.mqtt.ca, base.join("pki/ca.pem"));
        assert_eq!(c.mqtt.key, Path::new("/abs/key.pem"));
        assert_eq!(
            c.mqtt.cert,
            Path::new("rel/cert.pem"),
            "env paths stay as given"
        );

        let err = CloudConfig::load(Some(&dir.path().join("missing.toml")), no_env).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        let c = CloudConfig::load(None, no_env).unwrap();
        assert_eq!(c.database_url, default_database_url());
    }

    #[test]
    fn ingest_settings_need_a_host() {
        let c = CloudConfig::default();
        assert_eq!(
            c.ingest_settings().unwrap_err().to_string(),
            "mqtt.host is not set: set it in the config file or with GRIDLINK_MQTT_HOST"
        );
        let mut c = c;
        c.mqtt.host = Some("b".into());
        c.mqtt.keep_alive_s = 30;
        let s = c.ingest_settings().unwrap();
        assert_eq!(
            (s.mqtt.host.as_str(), s.mqtt.port, s.max_batches),
            ("b", 8883, 50)
        );
        assert_eq!(s.mqtt.keep_alive, Duration::from_secs(30));
        assert_eq!(s.max_delay, Duration::from_millis(200));
    }

    #[test]
    fn database_url_password_is_redacted() {
        assert_eq!(
            redact_database_url("postgres://gl:s3cret@db:5432/gridlink?sslmode=require"),
            "postgres://gl:***@db:5432/gridlink?sslmode=require"
        );
        assert_eq!(
            redact_database_url("sqlite://gridlink.db"),
            "sqlite://gridlink.db"
        );
        assert_eq!(
            redact_database_url("postgres://gl@db/x"),
            "postgres://gl@db/x"
        );
    }

    #[test]
    fn cloud_config_load_refuses_a_webhook_without_secret() {
        let err = CloudConfig::load(None, |name| {
            (name == "GRIDLINK_ALERTS_WEBHOOK_URL").then(|| "https://hooks.example.com/x".into())
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "alerts.webhook.secret: is required with alerts.webhook.url"
        );
        let ok = CloudConfig::load(None, |name| match name {
            "GRIDLINK_ALERTS_WEBHOOK_URL" => Some("https://hooks.example.com/x".into()),
            "GRIDLINK_ALERTS_WEBHOOK_SECRET" => Some("k".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            ok.alerts.settings().channels,
            vec![crate::alerts::Channel::Webhook]
        );
    }

    #[test]
    fn environment_overrides_export_and_names_the_variable() {
        let mut c = CloudConfig::default();
        c.apply_env(|name| match name {
            "GRIDLINK_EXPORT_ENABLED" => Some("true".into()),
            "GRIDLINK_EXPORT_AT_UTC" => Some("23:59".into()),
            "GRIDLINK_EXPORT_OUTPUT" => Some("s3://b-1/x".into()),
            "GRIDLINK_EXPORT_FORMAT" => Some("csv.gz".into()),
            "GRIDLINK_EXPORT_GAP_FACTOR" => Some("10".into()),
            "GRIDLINK_EXPORT_S3_ENDPOINT_URL" => Some("http://127.0.0.1:5000".into()),
            _ => None,
        })
        .unwrap();
        assert!(c.export.enabled);
        assert_eq!(c.export.at_utc, "23:59");
        assert_eq!(c.export.output, "s3://b-1/x");
        assert_eq!(c.export.format, crate::export::ExportFormat::CsvGz);
        assert_eq!(c.export.gap_factor, 10);
        assert_eq!(c.export.s3_endpoint_url, "http://127.0.0.1:5000");
        for (var, value, says) in [
            (
                "GRIDLINK_EXPORT_FORMAT",
                "xml",
                "GRIDLINK_EXPORT_FORMAT: unknown export format \"xml\"",
            ),
            (
                "GRIDLINK_EXPORT_GAP_FACTOR",
                "1",
                "GRIDLINK_EXPORT_GAP_FACTOR: 1 is out of range: expected 2 to 1000",
            ),
            (
                "GRIDLINK_EXPORT_AT_UTC",
                "7am",
                "GRIDLINK_EXPORT_AT_UTC: invalid time \"7am\"",
            ),
            (
                "GRIDLINK_EXPORT_OUTPUT",
                "ftp://x",
                "GRIDLINK_EXPORT_OUTPUT: unsupported output scheme \"ftp\"",
            ),
            (
                "GRIDLINK_EXPORT_ENABLED",
                "yes",
                "GRIDLINK_EXPORT_ENABLED: invalid boolean",
            ),
        ] {
            let err = CloudConfig::default()
                .apply_env(|name| (name == var).then(|| value.into()))
                .unwrap_err();
            assert!(err.to_string().starts_with(says), "{err}");
        }
        let err = CloudConfig::parse("[export]\nformat = \"xml\"\n", "c.toml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.toml:2:10: unknown variant `xml`"),
            "{err}"
        );
    }
}

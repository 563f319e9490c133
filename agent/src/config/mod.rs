//! `agent.toml`: the agent's configuration, one struct per component.
//!
//! Unknown fields are errors, every error names the file, line and column,
//! and values are checked after parsing (unique meter names, types that
//! fit their register kind, addresses in range...), so a config that loads
//! is one the agent can run. The field documentation below is the user's
//! reference; `agent/README.md` and `agent/agent.example.toml` show all of
//! it in one place.
//!
//! ```
//! let text = r#"
//! ven_id = "site-42"
//!
//! [mqtt]
//! host = "a1b2c3-ats.iot.eu-west-1.amazonaws.com"
//!
//! [buffer]
//! path = "/var/lib/gridlink/buffer"
//!
//! [[devices]]
//! name = "main"
//! controller = "tcp://10.0.0.5:502"
//! unit_id = 1
//!   [[devices.points]]
//!   register = "input"
//!   address = 52
//!   type = "f32"
//!   quantity = "active_power"
//! "#;
//! let config = gridlink_agent::config::parse(text, "agent.toml")?;
//! assert_eq!(config.mqtt.port, 8883);
//! assert_eq!(config.devices[0].points[0].exponent(), 0);
//!
//! let err = gridlink_agent::config::parse(&text.replace("address", "adress"), "agent.toml")
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("agent.toml:16:3: unknown field `adress`"), "{err}");
//! # Ok::<(), gridlink_agent::config::ConfigError>(())
//! ```

mod device;
mod dr;
mod error;
mod validate;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use gridlink_protocol::VenId;
use serde::Deserialize;

pub use device::{
    ByteOrder, Controller, DeviceConfig, MODBUS_TCP_PORT, Parity, PointConfig, RegisterKind,
    SerialSettings, TransmissionMode, ValueType, default_backoff_max_ms, default_baud_rate,
    default_data_bits, default_exponent, default_phase, default_poll_interval_ms, default_scale,
    default_stop_bits, default_timeout_ms,
};
pub use dr::{
    DrConfig, LoadConfig, LoadPowerConfig, SetpointConfig, default_control_interval_ms,
    default_load_priority, default_max_shed_s, default_min_poll_interval_ms,
    default_restore_hysteresis_w, default_simple_level, default_snapshot_interval_s,
    default_write_retries, default_write_timeout_ms,
};
pub use error::{ConfigError, Location, Problem};

/// The whole `agent.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This gateway's VEN id: the AWS IoT thing name, MQTT client id and
    /// certificate CN; 1 to 128 characters of `A-Z a-z 0-9 : _ -`.
    pub ven_id: VenId,
    /// The MQTT broker connection.
    pub mqtt: MqttConfig,
    /// The durable local buffer.
    pub buffer: BufferConfig,
    /// The local health and metrics endpoint.
    #[serde(default)]
    pub health: HealthConfig,
    /// The Modbus devices to poll, one `[[devices]]` table each.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// Demand response: execution settings and hard limits.
    #[serde(default)]
    pub dr: DrConfig,
    /// The loads DR may switch, one `[[loads]]` table each.
    #[serde(default)]
    pub loads: Vec<LoadConfig>,
}

/// `[mqtt]`: the broker, the client identity, and the client-side limits
/// that mirror AWS IoT Core's per-connection quotas.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name, e.g. the AWS IoT `iot:Data-ATS` endpoint.
    pub host: String,
    /// Broker TLS port. Default 8883. Use 443 with `alpn = true` where
    /// only HTTPS leaves the site.
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// Offer the ALPN protocol `x-amzn-mqtt-ca`, which AWS IoT requires for
    /// MQTT with client certificates on port 443. Default false.
    #[serde(default)]
    pub alpn: bool,
    /// PEM file of the CA(s) that sign the broker's certificate. Relative
    /// paths are relative to the config file's directory. Default `ca.pem`.
    #[serde(default = "default_ca")]
    pub ca: PathBuf,
    /// PEM file of this gateway's client certificate (CN = `ven_id`).
    /// Default `cert.pem`.
    #[serde(default = "default_cert")]
    pub cert: PathBuf,
    /// PEM file of the client certificate's private key. Default `key.pem`.
    #[serde(default = "default_key")]
    pub key: PathBuf,
    /// MQTT keep-alive in seconds, 5 to 1200. Default 60. (AWS IoT raises
    /// values below 30 to 30.)
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u16,
    /// First reconnect delay in ms; each failed attempt doubles it (with
    /// jitter) up to `reconnect_backoff_max_ms`. Default 1000.
    #[serde(default = "default_reconnect_backoff_min_ms")]
    pub reconnect_backoff_min_ms: u64,
    /// Longest reconnect delay in ms. Default 60000.
    #[serde(default = "default_reconnect_backoff_max_ms")]
    pub reconnect_backoff_max_ms: u64,
    /// Most PUBLISH packets sent per second (AWS IoT: 100 per connection).
    /// Default 100.
    #[serde(default = "default_publishes_per_s")]
    pub publishes_per_s: u32,
    /// Most payload bytes sent per second (AWS IoT: 512 KiB per
    /// connection); at least `buffer.max_payload_bytes`. Default 524288.
    #[serde(default = "default_bytes_per_s")]
    pub bytes_per_s: u32,
    /// Most QoS 1 publishes awaiting PUBACK (AWS IoT: 100). Default 100.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
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

/// Default of [`MqttConfig::keep_alive_s`].
pub const fn default_keep_alive_s() -> u16 {
    60
}

/// Default of [`MqttConfig::reconnect_backoff_min_ms`].
pub const fn default_reconnect_backoff_min_ms() -> u64 {
    1000
}

/// Default of [`MqttConfig::reconnect_backoff_max_ms`].
pub const fn default_reconnect_backoff_max_ms() -> u64 {
    60_000
}

/// Default of [`MqttConfig::publishes_per_s`]: the AWS IoT limit.
pub const fn default_publishes_per_s() -> u32 {
    100
}

/// Default of [`MqttConfig::bytes_per_s`]: the AWS IoT limit, 512 KiB/s.
pub const fn default_bytes_per_s() -> u32 {
    512 * 1024
}

/// Default of [`MqttConfig::max_inflight`]: the AWS IoT limit.
pub const fn default_max_inflight() -> u16 {
    100
}

/// `[buffer]`: the durable local store between acquisition and uplink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Directory of the buffer database, created if missing. Relative paths
    /// are relative to the config file's directory.
    pub path: PathBuf,
    /// Most bytes the buffer keeps; when full, the oldest data is dropped
    /// (and counted). At least 1 MiB and 4 × `max_payload_bytes`.
    /// Default 268435456 (256 MiB).
    #[serde(default = "default_buffer_max_bytes")]
    pub max_bytes: u64,
    /// Memory for the database's page cache; at most `max_bytes`.
    /// Default 4194304 (4 MiB).
    #[serde(default = "default_buffer_cache_bytes")]
    pub cache_bytes: u64,
    /// How often the readings gathered so far are sealed into a batch and
    /// made durable, in ms; at least 100. Default 10000.
    #[serde(default = "default_seal_interval_ms")]
    pub seal_interval_ms: u64,
    /// Largest encoded batch (one MQTT payload), 1024 to 131072 bytes (the
    /// AWS IoT limit, 128 KiB). Default 131072.
    #[serde(default = "default_max_payload_bytes")]
    pub max_payload_bytes: u32,
}

/// Default of [`BufferConfig::max_bytes`]: 256 MiB.
pub const fn default_buffer_max_bytes() -> u64 {
    256 * 1024 * 1024
}

/// Default of [`BufferConfig::cache_bytes`]: 4 MiB.
pub const fn default_buffer_cache_bytes() -> u64 {
    4 * 1024 * 1024
}

/// Default of [`BufferConfig::seal_interval_ms`].
pub const fn default_seal_interval_ms() -> u64 {
    10_000
}

/// Default of [`BufferConfig::max_payload_bytes`]: the AWS IoT payload limit.
pub const fn default_max_payload_bytes() -> u32 {
    128 * 1024
}

/// `[health]`: the local HTTP endpoint with `/health` and Prometheus
/// `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Address and port to listen on. Default `127.0.0.1:9100` (local only).
    #[serde(default = "default_health_listen")]
    pub listen: SocketAddr,
}

/// Default of [`HealthConfig::listen`].
pub const fn default_health_listen() -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9100)
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            listen: default_health_listen(),
        }
    }
}

/// Parses and checks a config. `origin` names the text in errors
/// (usually the file name). Relative paths are left as written.
pub fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
    let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        location: e.span().map_or_else(
            || Location::file(origin),
            |span| Location::at(origin, text, span.start),
        ),
        message: e.message().trim_end().to_string(),
    })?;
    let problems = validate::check(&config, &error::SpanIndex::new(origin, text));
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

/// Reads, parses and checks the config file at `path`. Relative paths in
/// it (`mqtt.ca`, `mqtt.cert`, `mqtt.key`, `buffer.path`) are made
/// absolute against the file's directory, so a provisioning bundle runs
/// from wherever it is unpacked. Whether those files exist is not checked
/// here.
pub fn load(path: impl AsRef<Path>) -> Result<AgentConfig, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config = parse(&text, &path.display().to_string())?;
    // Absolute, so the paths stay right whatever the working directory.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf());
    config.resolve_paths(&base);
    Ok(config)
}

impl AgentConfig {
    /// Makes the relative file paths of the config relative to `base`
    /// (what [`load`] does with the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for path in [
            &mut self.mqtt.ca,
            &mut self.mqtt.cert,
            &mut self.mqtt.key,
            &mut self.buffer.path,
        ] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
ven_id = "ven-1"
[mqtt]
host = "broker.local"
[buffer]
path = "buffer"
"#;

    #[test]
    fn agent_config_parses_minimal_with_defaults() {
        let c = parse(MINIMAL, "agent.toml").unwrap();
        assert_eq!(c.ven_id.as_str(), "ven-1");
        assert_eq!(c.health, HealthConfig::default());
        assert!(c.devices.is_empty());
    }

    #[test]
    fn mqtt_config_parses_and_defaults() {
        let m: MqttConfig = toml::from_str("host = \"h\"").unwrap();
        assert_eq!(m.port, 8883);
        assert!(!m.alpn);
        assert_eq!(m.ca, Path::new("ca.pem"));
        assert_eq!(m.cert, Path::new("cert.pem"));
        assert_eq!(m.key, Path::new("key.pem"));
        assert_eq!(m.keep_alive_s, 60);
        assert_eq!(
            (m.reconnect_backoff_min_ms, m.reconnect_backoff_max_ms),
            (1000, 60_000)
        );
        assert_eq!(
            (m.publishes_per_s, m.bytes_per_s, m.max_inflight),
            (100, 524_288, 100)
        );
        let m: MqttConfig = toml::from_str(
            "host = \"h\"\nport = 443\nalpn = true\nca = \"/etc/gl/ca.pem\"\nmax_inflight = 20",
        )
        .unwrap();
        assert_eq!((m.port, m.alpn, m.max_inflight), (443, true, 20));
        assert_eq!(m.ca, Path::new("/etc/gl/ca.pem"));
    }

    #[test]
    fn buffer_config_parses_and_defaults() {
        let b: BufferConfig = toml::from_str("path = \"/var/lib/gl\"").unwrap();
        assert_eq!(b.max_bytes, 268_435_456);
        assert_eq!(b.cache_bytes, 4_194_304);
        assert_eq!(b.seal_interval_ms, 10_000);
        assert_eq!(b.max_payload_bytes, 131_072);
        assert!(
            toml::from_str::<BufferConfig>("max_bytes = 1").is_err(),
            "path is required"
        );
    }

    #[test]
    fn health_config_parses_and_defaults() {
        let h: HealthConfig = toml::from_str("").unwrap();
        assert_eq!(h.listen.to_string(), "127.0.0.1:9100");
        let h: HealthConfig = toml::from_str("listen = \"0.0.0.0:9200\"").unwrap();
        assert_eq!(h.listen.port(), 9200);
        assert!(toml::from_str::<HealthConfig>("listen = \"localhost\"").is_err());
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut c = parse(MINIMAL, "agent.toml").unwrap();
        c.mqtt.key = PathBuf::from("/secure/key.pem");
        c.resolve_paths(Path::new("/etc/gridlink"));
        assert_eq!(c.mqtt.ca, Path::new("/etc/gridlink/ca.pem"));
        assert_eq!(c.mqtt.key, Path::new("/secure/key.pem"));
        assert_eq!(c.buffer.path, Path::new("/etc/gridlink/buffer"));
    }
}

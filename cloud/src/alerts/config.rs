//! `[alerts]` in `cloud.toml`: the rules' thresholds, hold-down times and
//! the delivery channels. Every setting also has a `GRIDLINK_ALERTS_*`
//! variable ([`ENV_VARS`]), as the rest of the config.
//!
//! ```
//! use gridlink_cloud::alerts::AlertsConfig;
//!
//! let config: AlertsConfig = toml::from_str(
//!     "spike_w = 50000\n[hold_down.ven_offline]\nopen_after_s = 120\n[webhook]\nurl = \"https://hooks.example.com/a\"\nsecret = \"s\"\n",
//! ).unwrap();
//! let settings = config.settings();
//! assert_eq!(settings.spike_w, Some(50_000.0));
//! assert_eq!(settings.hold(gridlink_cloud::alerts::Rule::VenOffline).open_after_ms, 120_000);
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::{
    AlertSettings, DeliverySettings, EmailSettings, HoldDown, SnsSettings, WebhookSettings,
};
use crate::store::alerts::{Channel, Rule};

/// `[alerts]`: what raises alerts and where they are sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Run the rules and deliver notifications in `serve`. Default true.
    /// Env `GRIDLINK_ALERTS_ENABLED`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Seconds between scans (offline by silence, DR non-response,
    /// hold-downs of conditions nobody reports), 1 to 3600. Default 30.
    /// Env `GRIDLINK_ALERTS_SCAN_INTERVAL_S`.
    #[serde(
        default = "default_scan_interval_s",
        deserialize_with = "secs::<1, 3600, _>"
    )]
    pub scan_interval_s: u32,
    /// A VEN not heard from (no reading, no status) for this many seconds
    /// is offline; 0 infers it: `offline_intervals` times the VEN's
    /// reporting interval (seen between its batches), at least 60 s, and
    /// 300 s until an interval was seen. Default 0.
    /// Env `GRIDLINK_ALERTS_OFFLINE_AFTER_S`.
    #[serde(default, deserialize_with = "secs::<0, 604_800, _>")]
    pub offline_after_s: u32,
    /// Reporting intervals of silence that make a VEN offline when
    /// `offline_after_s` is 0, 1 to 1000. Default 3.
    /// Env `GRIDLINK_ALERTS_OFFLINE_INTERVALS`.
    #[serde(
        default = "default_offline_intervals",
        deserialize_with = "secs::<1, 1000, _>"
    )]
    pub offline_intervals: u32,
    /// Meters that only import: negative `active_power` on them raises
    /// `negative_import`. Each entry is a meter name (any VEN's meter of that
    /// name) or `ven/meter`. Default none. Env `GRIDLINK_ALERTS_IMPORT_ONLY_METERS`
    /// (comma-separated).
    #[serde(default, deserialize_with = "meters")]
    pub import_only_meters: Vec<String>,
    /// Largest change of `active_power` between consecutive readings of a
    /// series, W; a bigger one raises `power_spike`. 0 turns the rule off.
    /// Default 0. Env `GRIDLINK_ALERTS_SPIKE_W`.
    #[serde(default)]
    pub spike_w: u64,
    /// Readings missing for more than this many intervals of their series
    /// (the interval between the two readings before) raise `data_gap`;
    /// 0 turns the rule off. Default 5. Env `GRIDLINK_ALERTS_GAP_INTERVALS`.
    #[serde(
        default = "default_gap_intervals",
        deserialize_with = "secs::<0, 1000, _>"
    )]
    pub gap_intervals: u32,
    /// Seconds after an event's start by which every target VEN must have
    /// acknowledged it, else `dr_no_ack`. Default 300.
    /// Env `GRIDLINK_ALERTS_DR_ACK_GRACE_S`.
    #[serde(
        default = "default_dr_ack_grace_s",
        deserialize_with = "secs::<0, 86_400, _>"
    )]
    pub dr_ack_grace_s: u32,
    /// A VEN whose measured shed of an ended event (baseline minus mean
    /// during, W) is at most this raises `dr_no_shed`. Default 0.
    /// Env `GRIDLINK_ALERTS_DR_SHED_MIN_W`.
    #[serde(default)]
    pub dr_shed_min_w: u64,
    /// Seconds after an event's end during which its DR alerts are kept
    /// evaluated; after that they resolve (and stay in the history).
    /// Default 86400. Env `GRIDLINK_ALERTS_DR_LOOKBACK_S`.
    #[serde(
        default = "default_dr_lookback_s",
        deserialize_with = "secs::<60, 2_592_000, _>"
    )]
    pub dr_lookback_s: u32,
    /// Hold-down times per rule.
    #[serde(default)]
    pub hold_down: HoldDownConfig,
    /// Webhook delivery.
    #[serde(default)]
    pub webhook: WebhookConfig,
    /// E-mail delivery.
    #[serde(default)]
    pub email: EmailConfig,
    /// AWS SNS delivery.
    #[serde(default)]
    pub sns: SnsConfig,
    /// Retries of every channel.
    #[serde(default)]
    pub delivery: DeliveryConfig,
}

/// Hold-down of one rule: seconds a condition must persist before its
/// alert opens, and be clear before it resolves. Unset: the rule's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoldDownSeconds {
    /// Seconds the condition must persist before the alert opens.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_secs"
    )]
    pub open_after_s: Option<u32>,
    /// Seconds the condition must be clear before the alert resolves.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_secs"
    )]
    pub resolve_after_s: Option<u32>,
}

/// `[alerts.hold_down.<rule>]`: one table per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HoldDownConfig {
    /// Default 60 s to open, 60 s to resolve.
    #[serde(default)]
    pub ven_offline: HoldDownSeconds,
    /// Default 0 s to open, 600 s to resolve.
    #[serde(default)]
    pub energy_counter_backwards: HoldDownSeconds,
    /// Default 0 s to open, 600 s to resolve.
    #[serde(default)]
    pub negative_import: HoldDownSeconds,
    /// Default 0 s to open, 600 s to resolve.
    #[serde(default)]
    pub power_spike: HoldDownSeconds,
    /// Default 0 s to open, 600 s to resolve.
    #[serde(default)]
    pub data_gap: HoldDownSeconds,
    /// Default 0 s to open (the grace is `dr_ack_grace_s`), 0 s to resolve.
    #[serde(default)]
    pub dr_no_ack: HoldDownSeconds,
    /// Default 0 s to open, 0 s to resolve.
    #[serde(default)]
    pub dr_no_shed: HoldDownSeconds,
    /// Default 0 s to open, 0 s to resolve.
    #[serde(default)]
    pub project_milestone: HoldDownSeconds,
}

impl HoldDownConfig {
    fn get(&self, rule: Rule) -> &HoldDownSeconds {
        match rule {
            Rule::VenOffline => &self.ven_offline,
            Rule::EnergyCounterBackwards => &self.energy_counter_backwards,
            Rule::NegativeImport => &self.negative_import,
            Rule::PowerSpike => &self.power_spike,
            Rule::DataGap => &self.data_gap,
            Rule::DrNoAck => &self.dr_no_ack,
            Rule::DrNoShed => &self.dr_no_shed,
            Rule::ProjectMilestone => &self.project_milestone,
        }
    }
}

/// `[alerts.webhook]`: a JSON POST per notification, signed with
/// HMAC-SHA256. `Debug` does not show the secret.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL; unset: no webhook.
    /// Env `GRIDLINK_ALERTS_WEBHOOK_URL`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "http_url"
    )]
    pub url: Option<String>,
    /// The HMAC key (required with `url`); keep it in the environment.
    /// Env `GRIDLINK_ALERTS_WEBHOOK_SECRET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Seconds one POST may take, 1 to 300. Default 10.
    /// Env `GRIDLINK_ALERTS_WEBHOOK_TIMEOUT_S`.
    #[serde(default = "default_timeout_s", deserialize_with = "secs::<1, 300, _>")]
    pub timeout_s: u32,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout_s", &self.timeout_s)
            .finish()
    }
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            secret: None,
            timeout_s: default_timeout_s(),
        }
    }
}

/// `[alerts.email]`: one message per notification over SMTP.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server (a relay that accepts mail from this host without
    /// authentication); unset: no e-mail. Env `GRIDLINK_ALERTS_EMAIL_HOST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SMTP port. Default 25. Env `GRIDLINK_ALERTS_EMAIL_PORT`.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Sender address. Default `gridlink@localhost`.
    /// Env `GRIDLINK_ALERTS_EMAIL_FROM`.
    #[serde(default = "default_from", deserialize_with = "address")]
    pub from: String,
    /// Recipients (required with `host`). Env `GRIDLINK_ALERTS_EMAIL_TO`
    /// (comma-separated).
    #[serde(default, deserialize_with = "addresses")]
    pub to: Vec<String>,
    /// Seconds one message may take, 1 to 300. Default 30.
    /// Env `GRIDLINK_ALERTS_EMAIL_TIMEOUT_S`.
    #[serde(
        default = "default_smtp_timeout_s",
        deserialize_with = "secs::<1, 300, _>"
    )]
    pub timeout_s: u32,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            host: None,
            port: default_smtp_port(),
            from: default_from(),
            to: Vec::new(),
            timeout_s: default_smtp_timeout_s(),
        }
    }
}

/// `[alerts.sns]`: AWS SNS Publish per notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnsConfig {
    /// The topic ARN; unset: no SNS. Env `GRIDLINK_ALERTS_SNS_TOPIC_ARN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    /// Endpoint override (e.g. a local moto server); unset: AWS's.
    /// Env `GRIDLINK_ALERTS_SNS_ENDPOINT_URL`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "http_url"
    )]
    pub endpoint_url: Option<String>,
}

/// `[alerts.delivery]`: retries, for every channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Attempts per notification and channel before giving up, 1 to 100.
    /// Default 10. Env `GRIDLINK_ALERTS_DELIVERY_MAX_ATTEMPTS`.
    #[serde(
        default = "default_max_attempts",
        deserialize_with = "secs::<1, 100, _>"
    )]
    pub max_attempts: u32,
    /// Seconds before the first retry; doubled each time, 1 to 3600.
    /// Default 5. Env `GRIDLINK_ALERTS_DELIVERY_BACKOFF_INITIAL_S`.
    #[serde(
        default = "default_backoff_initial_s",
        deserialize_with = "secs::<1, 3600, _>"
    )]
    pub backoff_initial_s: u32,
    /// Longest wait between retries, seconds, 1 to 86400. Default 3600.
    /// Env `GRIDLINK_ALERTS_DELIVERY_BACKOFF_MAX_S`.
    #[serde(
        default = "default_backoff_max_s",
        deserialize_with = "secs::<1, 86_400, _>"
    )]
    pub backoff_max_s: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            backoff_initial_s: default_backoff_initial_s(),
            backoff_max_s: default_backoff_max_s(),
        }
    }
}

/// Default of [`AlertsConfig::enabled`].
pub const fn default_enabled() -> bool {
    true
}
/// Default of [`AlertsConfig::scan_interval_s`].
pub const fn default_scan_interval_s() -> u32 {
    30
}
/// Default of [`AlertsConfig::offline_intervals`].
pub const fn default_offline_intervals() -> u32 {
    3
}
/// Default of [`AlertsConfig::gap_intervals`].
pub const fn default_gap_intervals() -> u32 {
    5
}
/// Default of [`AlertsConfig::dr_ack_grace_s`].
pub const fn default_dr_ack_grace_s() -> u32 {
    300
}
/// Default of [`AlertsConfig::dr_lookback_s`].
pub const fn default_dr_lookback_s() -> u32 {
    86_400
}
/// Default of [`WebhookConfig::timeout_s`].
pub const fn default_timeout_s() -> u32 {
    10
}
/// Default of [`EmailConfig::port`].
pub const fn default_smtp_port() -> u16 {
    25
}
/// Default of [`EmailConfig::from`].
pub fn default_from() -> String {
    "gridlink@localhost".into()
}
/// Default of [`EmailConfig::timeout_s`].
pub const fn default_smtp_timeout_s() -> u32 {
    30
}
/// Default of [`DeliveryConfig::max_attempts`].
pub const fn default_max_attempts() -> u32 {
    10
}
/// Default of [`DeliveryConfig::backoff_initial_s`].
pub const fn default_backoff_initial_s() -> u32 {
    5
}
/// Default of [`DeliveryConfig::backoff_max_s`].
pub const fn default_backoff_max_s() -> u32 {
    3600
}

/// The default hold-down of `rule`: (open after, resolve after), seconds.
pub const fn default_hold_down_s(rule: Rule) -> (u32, u32) {
    match rule {
        Rule::VenOffline => (60, 60),
        Rule::EnergyCounterBackwards | Rule::NegativeImport | Rule::PowerSpike | Rule::DataGap => {
            (0, 600)
        }
        Rule::DrNoAck | Rule::DrNoShed | Rule::ProjectMilestone => (0, 0),
    }
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            scan_interval_s: default_scan_interval_s(),
            offline_after_s: 0,
            offline_intervals: default_offline_intervals(),
            import_only_meters: Vec::new(),
            spike_w: 0,
            gap_intervals: default_gap_intervals(),
            dr_ack_grace_s: default_dr_ack_grace_s(),
            dr_shed_min_w: 0,
            dr_lookback_s: default_dr_lookback_s(),
            hold_down: HoldDownConfig::default(),
            webhook: WebhookConfig::default(),
            email: EmailConfig::default(),
            sns: SnsConfig::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

const fn ms(seconds: u32) -> i64 {
    seconds as i64 * 1000
}

impl AlertsConfig {
    /// Checks what serde cannot see field by field: a webhook needs a
    /// secret, e-mail needs recipients. The error names the setting.
    pub fn check(&self) -> Result<(), (&'static str, AlertsConfigError)> {
        if self.webhook.url.is_some() && self.webhook.secret.as_deref().is_none_or(str::is_empty) {
            return Err((
                "alerts.webhook.secret",
                AlertsConfigError::WebhookSecretMissing,
            ));
        }
        if self.email.host.is_some() && self.email.to.is_empty() {
            return Err(("alerts.email.to", AlertsConfigError::NoRecipient));
        }
        Ok(())
    }

    /// What the engine and the delivery worker run with.
    pub fn settings(&self) -> AlertSettings {
        let hold = Rule::ALL
            .into_iter()
            .map(|rule| {
                let (open, resolve) = default_hold_down_s(rule);
                let set = self.hold_down.get(rule);
                (
                    rule,
                    HoldDown {
                        open_after_ms: ms(set.open_after_s.unwrap_or(open)),
                        resolve_after_ms: ms(set.resolve_after_s.unwrap_or(resolve)),
                    },
                )
            })
            .collect::<BTreeMap<_, _>>();
        let webhook = match (&self.webhook.url, &self.webhook.secret) {
            (Some(url), Some(secret)) => Some(WebhookSettings {
                url: url.clone(),
                secret: secret.clone(),
                timeout: Duration::from_secs(u64::from(self.webhook.timeout_s)),
            }),
            _ => None,
        };
        let email = self.email.host.as_ref().map(|host| EmailSettings {
            host: host.clone(),
            port: self.email.port,
            from: self.email.from.clone(),
            to: self.email.to.clone(),
            timeout: Duration::from_secs(u64::from(self.email.timeout_s)),
        });
        let sns = self.sns.topic_arn.as_ref().map(|arn| SnsSettings {
            topic_arn: arn.clone(),
            endpoint_url: self.sns.endpoint_url.clone(),
        });
        let mut channels = Vec::new();
        if webhook.is_some() {
            channels.push(Channel::Webhook);
        }
        if email.is_some() {
            channels.push(Channel::Email);
        }
        if sns.is_some() {
            channels.push(Channel::Sns);
        }
        AlertSettings {
            scan_interval: Duration::from_secs(u64::from(self.scan_interval_s)),
            offline_after_ms: (self.offline_after_s > 0).then(|| ms(self.offline_after_s)),
            offline_intervals: self.offline_intervals,
            import_only_meters: self.import_only_meters.clone(),
            spike_w: (self.spike_w > 0).then_some(self.spike_w as f64),
            gap_intervals: (self.gap_intervals > 0).then_some(self.gap_intervals),
            dr_ack_grace_ms: ms(self.dr_ack_grace_s),
            dr_shed_min_w: self.dr_shed_min_w as f64,
            dr_lookback_ms: ms(self.dr_lookback_s),
            hold,
            channels,
            webhook,
            email,
            sns,
            delivery: DeliverySettings {
                max_attempts: self.delivery.max_attempts,
                backoff_initial_ms: ms(self.delivery.backoff_initial_s),
                backoff_max_ms: ms(self.delivery.backoff_max_s),
                ..DeliverySettings::default()
            },
        }
    }

    /// Overrides settings with the variables of [`ENV_VARS`] that `env`
    /// returns (set and not empty); the error names the variable.
    pub fn apply_env(
        &mut self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(), (&'static str, AlertsConfigError)> {
        for var in ENV_VARS {
            if let Some(value) = env(var.name).filter(|v| !v.is_empty()) {
                (var.apply)(self, &value).map_err(|message| (var.name, message))?;
            }
        }
        Ok(())
    }
}

/// One environment variable of `[alerts]` and the setting it overrides.
#[derive(Debug, Clone, Copy)]
pub struct AlertEnvVar {
    /// The variable, e.g. `GRIDLINK_ALERTS_SPIKE_W`.
    pub name: &'static str,
    /// The setting, as a TOML path, e.g. `alerts.spike_w`.
    pub setting: &'static str,
    apply: fn(&mut AlertsConfig, &str) -> Result<(), AlertsConfigError>,
}

/// A bad `[alerts]` value (from the file or a `GRIDLINK_ALERTS_*`
/// variable), or a combination of settings that cannot work. The setting
/// or variable it belongs to is named beside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertsConfigError {
    /// Not an integer, or outside the setting's range.
    #[error("invalid value {value:?}: expected an integer from {min} to {max}")]
    InvalidInteger {
        /// The value as given.
        value: String,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// Neither `true`/`1` nor `false`/`0`.
    #[error("invalid boolean {value:?} (expected true or false)")]
    InvalidBoolean {
        /// The value as given.
        value: String,
    },
    /// Not an `http://` or `https://` URL.
    #[error("invalid URL {url:?}: expected http://... or https://...")]
    InvalidUrl {
        /// The URL as given.
        url: String,
    },
    /// Not a plain `name@domain` e-mail address.
    #[error("invalid e-mail address {address:?}: expected name@domain")]
    InvalidAddress {
        /// The address as given.
        address: String,
    },
    /// Neither a meter name nor `ven/meter`.
    #[error("invalid meter {entry:?}: expected a meter name or ven/meter (A-Z a-z 0-9 _ . : -)")]
    InvalidMeter {
        /// The entry as given.
        entry: String,
    },
    /// `alerts.webhook.url` is set without `alerts.webhook.secret`.
    #[error("is required with alerts.webhook.url")]
    WebhookSecretMissing,
    /// `alerts.email.host` is set without any `alerts.email.to`.
    #[error("needs at least one recipient with alerts.email.host")]
    NoRecipient,
}

fn env_int<T: TryFrom<u64>>(value: &str, min: u64, max: u64) -> Result<T, AlertsConfigError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| AlertsConfigError::InvalidInteger {
            value: value.to_owned(),
            min,
            max,
        })
}

fn env_bool(value: &str) -> Result<bool, AlertsConfigError> {
    match value.trim() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(AlertsConfigError::InvalidBoolean {
            value: value.to_owned(),
        }),
    }
}

fn env_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

macro_rules! env_var {
    ($name:expr, $setting:expr, |$c:ident, $v:ident| $body:expr) => {
        AlertEnvVar {
            name: $name,
            setting: $setting,
            apply: |$c, $v| {
                $body;
                Ok(())
            },
        }
    };
}

macro_rules! hold_down_vars {
    ($($field:ident $upper:literal),*) => {
        [$(
            env_var!(
                concat!("GRIDLINK_ALERTS_HOLD_DOWN_", $upper, "_OPEN_AFTER_S"),
                concat!("alerts.hold_down.", stringify!($field), ".open_after_s"),
                |c, v| c.hold_down.$field.open_after_s = Some(env_int(v, 0, MAX_HOLD_S)?)
            ),
            env_var!(
                concat!("GRIDLINK_ALERTS_HOLD_DOWN_", $upper, "_RESOLVE_AFTER_S"),
                concat!("alerts.hold_down.", stringify!($field), ".resolve_after_s"),
                |c, v| c.hold_down.$field.resolve_after_s = Some(env_int(v, 0, MAX_HOLD_S)?)
            ),
        )*]
    };
}

/// Longest hold-down, seconds (a week).
const MAX_HOLD_S: u64 = 604_800;

const SCALAR_ENV_VARS: [AlertEnvVar; 23] = [
    env_var!("GRIDLINK_ALERTS_ENABLED", "alerts.enabled", |c, v| c
        .enabled =
        env_bool(v)?),
    env_var!(
        "GRIDLINK_ALERTS_SCAN_INTERVAL_S",
        "alerts.scan_interval_s",
        |c, v| c.scan_interval_s = env_int(v, 1, 3600)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_OFFLINE_AFTER_S",
        "alerts.offline_after_s",
        |c, v| c.offline_after_s = env_int(v, 0, 604_800)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_OFFLINE_INTERVALS",
        "alerts.offline_intervals",
        |c, v| c.offline_intervals = env_int(v, 1, 1000)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_IMPORT_ONLY_METERS",
        "alerts.import_only_meters",
        |c, v| {
            let list = env_list(v);
            for meter in &list {
                check_meter_entry(meter)?;
            }
            c.import_only_meters = list;
        }
    ),
    env_var!("GRIDLINK_ALERTS_SPIKE_W", "alerts.spike_w", |c, v| c
        .spike_w =
        env_int(v, 0, u64::MAX)?),
    env_var!(
        "GRIDLINK_ALERTS_GAP_INTERVALS",
        "alerts.gap_intervals",
        |c, v| c.gap_intervals = env_int(v, 0, 1000)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_DR_ACK_GRACE_S",
        "alerts.dr_ack_grace_s",
        |c, v| c.dr_ack_grace_s = env_int(v, 0, 86_400)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_DR_SHED_MIN_W",
        "alerts.dr_shed_min_w",
        |c, v| c.dr_shed_min_w = env_int(v, 0, u64::MAX)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_DR_LOOKBACK_S",
        "alerts.dr_lookback_s",
        |c, v| c.dr_lookback_s = env_int(v, 60, 2_592_000)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_WEBHOOK_URL",
        "alerts.webhook.url",
        |c, v| {
            check_http_url(v)?;
            c.webhook.url = Some(v.to_owned());
        }
    ),
    env_var!(
        "GRIDLINK_ALERTS_WEBHOOK_SECRET",
        "alerts.webhook.secret",
        |c, v| c.webhook.secret = Some(v.to_owned())
    ),
    env_var!(
        "GRIDLINK_ALERTS_WEBHOOK_TIMEOUT_S",
        "alerts.webhook.timeout_s",
        |c, v| c.webhook.timeout_s = env_int(v, 1, 300)?
    ),
    env_var!("GRIDLINK_ALERTS_EMAIL_HOST", "alerts.email.host", |c, v| {
        c.email.host = Some(v.to_owned());
    }),
    env_var!("GRIDLINK_ALERTS_EMAIL_PORT", "alerts.email.port", |c, v| {
        c.email.port = env_int(v, 1, 65_535)?;
    }),
    env_var!("GRIDLINK_ALERTS_EMAIL_FROM", "alerts.email.from", |c, v| {
        check_address(v)?;
        v.clone_into(&mut c.email.from);
    }),
    env_var!("GRIDLINK_ALERTS_EMAIL_TO", "alerts.email.to", |c, v| {
        let list = env_list(v);
        for address in &list {
            check_address(address)?;
        }
        c.email.to = list;
    }),
    env_var!(
        "GRIDLINK_ALERTS_EMAIL_TIMEOUT_S",
        "alerts.email.timeout_s",
        |c, v| c.email.timeout_s = env_int(v, 1, 300)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_SNS_TOPIC_ARN",
        "alerts.sns.topic_arn",
        |c, v| c.sns.topic_arn = Some(v.to_owned())
    ),
    env_var!(
        "GRIDLINK_ALERTS_SNS_ENDPOINT_URL",
        "alerts.sns.endpoint_url",
        |c, v| {
            check_http_url(v)?;
            c.sns.endpoint_url = Some(v.to_owned());
        }
    ),
    env_var!(
        "GRIDLINK_ALERTS_DELIVERY_MAX_ATTEMPTS",
        "alerts.delivery.max_attempts",
        |c, v| c.delivery.max_attempts = env_int(v, 1, 100)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_DELIVERY_BACKOFF_INITIAL_S",
        "alerts.delivery.backoff_initial_s",
        |c, v| c.delivery.backoff_initial_s = env_int(v, 1, 3600)?
    ),
    env_var!(
        "GRIDLINK_ALERTS_DELIVERY_BACKOFF_MAX_S",
        "alerts.delivery.backoff_max_s",
        |c, v| c.delivery.backoff_max_s = env_int(v, 1, 86_400)?
    ),
];

const HOLD_DOWN_ENV_VARS: [AlertEnvVar; 16] = hold_down_vars!(
    ven_offline "VEN_OFFLINE",
    energy_counter_backwards "ENERGY_COUNTER_BACKWARDS",
    negative_import "NEGATIVE_IMPORT",
    power_spike "POWER_SPIKE",
    data_gap "DATA_GAP",
    dr_no_ack "DR_NO_ACK",
    dr_no_shed "DR_NO_SHED",
    project_milestone "PROJECT_MILESTONE"
);

const fn all_env_vars() -> [AlertEnvVar; 39] {
    let mut all = [SCALAR_ENV_VARS[0]; 39];
    let mut i = 0;
    while i < SCALAR_ENV_VARS.len() {
        all[i] = SCALAR_ENV_VARS[i];
        i += 1;
    }
    let mut j = 0;
    while j < HOLD_DOWN_ENV_VARS.len() {
        all[i + j] = HOLD_DOWN_ENV_VARS[j];
        j += 1;
    }
    all
}

/// Every variable of `[alerts]`, one per setting: `GRIDLINK_` + the TOML
/// path in capitals with `.` as `_`.
pub const ENV_VARS: &[AlertEnvVar] = &all_env_vars();

fn secs<'de, const MIN: u64, const MAX: u64, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<u32, D::Error> {
    let value = i64::deserialize(deserializer)?;
    u64::try_from(value)
        .ok()
        .filter(|v| (MIN..=MAX).contains(v))
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| {
            D::Error::custom(format!("{value} is out of range: expected {MIN} to {MAX}"))
        })
}

fn opt_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    secs::<0, MAX_HOLD_S, D>(deserializer).map(Some)
}

fn check_http_url(url: &str) -> Result<(), AlertsConfigError> {
    if (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() > "https://".len()
        && !url.chars().any(char::is_whitespace)
    {
        Ok(())
    } else {
        Err(AlertsConfigError::InvalidUrl {
            url: url.to_owned(),
        })
    }
}

fn http_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let url = String::deserialize(deserializer)?;
    check_http_url(&url).map_err(D::Error::custom)?;
    Ok(Some(url))
}

fn check_address(address: &str) -> Result<(), AlertsConfigError> {
    let ok = address.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '"'));
    if ok {
        Ok(())
    } else {
        Err(AlertsConfigError::InvalidAddress {
            address: address.to_owned(),
        })
    }
}

fn address<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let address = String::deserialize(deserializer)?;
    check_address(&address).map_err(D::Error::custom)?;
    Ok(address)
}

fn addresses<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(deserializer)?;
    for address in &list {
        check_address(address).map_err(D::Error::custom)?;
    }
    Ok(list)
}

fn check_meter_entry(entry: &str) -> Result<(), AlertsConfigError> {
    let valid = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    };
    let ok = match entry.split_once('/') {
        Some((ven, meter)) => valid(ven) && valid(meter),
        None => valid(entry),
    };
    if ok {
        Ok(())
    } else {
        Err(AlertsConfigError::InvalidMeter {
            entry: entry.to_owned(),
        })
    }
}

fn meters<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(deserializer)?;
    for entry in &list {
        check_meter_entry(entry).map_err(D::Error::custom)?;
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn errors_render_the_operators_text() {
        let cases = [
            (
                env_int::<u32>("-3", 0, 9).unwrap_err(),
                "invalid value \"-3\": expected an integer from 0 to 9",
            ),
            (
                env_bool("yes").unwrap_err(),
                "invalid boolean \"yes\" (expected true or false)",
            ),
            (
                check_http_url("ftp://x").unwrap_err(),
                "invalid URL \"ftp://x\": expected http://... or https://...",
            ),
            (
                check_address("nobody").unwrap_err(),
                "invalid e-mail address \"nobody\": expected name@domain",
            ),
            (
                check_meter_entry("a b").unwrap_err(),
                "invalid meter \"a b\": expected a meter name or ven/meter (A-Z a-z 0-9 _ . : -)",
            ),
            (
                AlertsConfigError::WebhookSecretMissing,
                "is required with alerts.webhook.url",
            ),
            (
                AlertsConfigError::NoRecipient,
                "needs at least one recipient with alerts.email.host",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn alerts_config_parses_with_defaults() {
        let c: AlertsConfig = toml::from_str("").unwrap();
        assert_eq!(c, AlertsConfig::default());
        let s = c.settings();
        assert!(s.channels.is_empty());
        assert_eq!(s.hold(Rule::VenOffline).open_after_ms, 60_000);
        assert_eq!(s.hold(Rule::PowerSpike).resolve_after_ms, 600_000);
        assert_eq!(s.spike_w, None);
        assert_eq!(s.gap_intervals, Some(5));
        let c: AlertsConfig = toml::from_str(
            "import_only_meters = [\"main\", \"ven-1/grid\"]\n[hold_down.data_gap]\nresolve_after_s = 5\n\
             [email]\nhost = \"smtp.local\"\nto = [\"ops@example.com\"]\n",
        )
        .unwrap();
        assert_eq!(c.settings().hold(Rule::DataGap).resolve_after_ms, 5000);
        assert_eq!(c.settings().hold(Rule::DataGap).open_after_ms, 0);
        assert_eq!(c.settings().channels, vec![Channel::Email]);
        assert!(c.check().is_ok());
        for bad in [
            "scan_interval_s = 0",
            "import_only_meters = [\"a b\"]",
            "[webhook]\nurl = \"ftp://x\"",
            "[email]\nto = [\"nobody\"]",
            "[hold_down.nope]\nopen_after_s = 1",
            "[hold_down.ven_offline]\nopen_after_s = -1",
            "spike = 3",
        ] {
            assert!(toml::from_str::<AlertsConfig>(bad).is_err(), "{bad}");
        }
        let c: AlertsConfig = toml::from_str("[webhook]\nurl = \"http://h/x\"").unwrap();
        assert_eq!(c.check().unwrap_err().0, "alerts.webhook.secret");
        let c: AlertsConfig = toml::from_str("[email]\nhost = \"h\"").unwrap();
        assert_eq!(c.check().unwrap_err().0, "alerts.email.to");
    }

    #[test]
    fn environment_overrides_and_names_the_variable() {
        let mut c = AlertsConfig::default();
        c.apply_env(|name| match name {
            "GRIDLINK_ALERTS_WEBHOOK_SECRET" => Some("from-env".into()),
            "GRIDLINK_ALERTS_EMAIL_TO" => Some("a@x.org, b@y.org".into()),
            "GRIDLINK_ALERTS_HOLD_DOWN_VEN_OFFLINE_OPEN_AFTER_S" => Some("7".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.webhook.secret.as_deref(), Some("from-env"));
        assert!(
            !format!("{c:?}").contains("from-env"),
            "secrets are not in Debug"
        );
        assert!(!format!("{:?}", c.settings()).contains("from-env"));
        assert_eq!(c.email.to, vec!["a@x.org", "b@y.org"]);
        assert_eq!(c.settings().hold(Rule::VenOffline).open_after_ms, 7000);
        let err = c
            .apply_env(|name| (name == "GRIDLINK_ALERTS_SPIKE_W").then(|| "-3".into()))
            .unwrap_err();
        assert_eq!(err.0, "GRIDLINK_ALERTS_SPIKE_W");
    }

    #[test]
    fn every_setting_has_one_environment_variable() {
        let mut names = BTreeSet::new();
        for var in ENV_VARS {
            let expected = format!("GRIDLINK_{}", var.setting.replace('.', "_").to_uppercase());
            assert_eq!(var.name, expected);
            assert!(names.insert(var.name), "{} twice", var.name);
        }
        assert_eq!(names.len(), ENV_VARS.len());
    }
}

//! `[export]`: when and where the daily export runs.

use serde::{Deserialize, Deserializer, Serialize};
use time::Time;
use time::macros::format_description;

use super::{ExportFormat, Output};

/// `[export]`: the daily export (`crate::export`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Let `serve` export the previous UTC day every day at `at_utc`.
    /// Default false. Env `GRIDLINK_EXPORT_ENABLED`.
    #[serde(default)]
    pub enabled: bool,
    /// When `serve` exports, `HH:MM` UTC. Default `01:30`.
    /// Env `GRIDLINK_EXPORT_AT_UTC`.
    #[serde(default = "default_at_utc", deserialize_with = "at_utc")]
    pub at_utc: String,
    /// Where: `s3://BUCKET/PREFIX/`, `file:///dir` or a path (relative to
    /// the working directory). Default `export`.
    /// Env `GRIDLINK_EXPORT_OUTPUT`.
    #[serde(default = "default_output", deserialize_with = "output")]
    pub output: String,
    /// `parquet` or `csv.gz`. Default `parquet`. Env `GRIDLINK_EXPORT_FORMAT`.
    #[serde(default)]
    pub format: ExportFormat,
    /// A gap is two consecutive readings of a series further apart than
    /// this many times the series' usual interval (the median interval of
    /// the day), 2 to 1000. Default 3. Env `GRIDLINK_EXPORT_GAP_FACTOR`.
    #[serde(default = "default_gap_factor", deserialize_with = "gap_factor")]
    pub gap_factor: u32,
    /// S3 endpoint override (moto, `MinIO`, LocalStack), which also turns
    /// on path-style addressing; empty for AWS. Default empty.
    /// Env `GRIDLINK_EXPORT_S3_ENDPOINT_URL`.
    #[serde(default)]
    pub s3_endpoint_url: String,
}

/// Default of [`ExportConfig::at_utc`].
pub fn default_at_utc() -> String {
    "01:30".to_owned()
}

/// Default of [`ExportConfig::output`].
pub fn default_output() -> String {
    "export".to_owned()
}

/// Default of [`ExportConfig::gap_factor`].
pub const fn default_gap_factor() -> u32 {
    3
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            at_utc: default_at_utc(),
            output: default_output(),
            format: ExportFormat::default(),
            gap_factor: default_gap_factor(),
            s3_endpoint_url: String::new(),
        }
    }
}

impl ExportConfig {
    /// [`ExportConfig::at_utc`] as a time of day.
    pub fn at(&self) -> Result<Time, String> {
        parse_at_utc(&self.at_utc)
    }

    /// [`ExportConfig::output`], parsed.
    pub fn output(&self) -> Result<Output, String> {
        self.output.parse()
    }
}

/// Checks an `HH:MM` time of day.
pub fn parse_at_utc(text: &str) -> Result<Time, String> {
    let format = format_description!("[hour]:[minute]");
    Time::parse(text, format)
        .map_err(|_| format!("invalid time {text:?}: expected HH:MM (UTC, 00:00 to 23:59)"))
}

/// Checks a gap factor (2 to 1000).
pub fn check_gap_factor(value: i64) -> Result<u32, String> {
    u32::try_from(value)
        .ok()
        .filter(|v| (2..=1000).contains(v))
        .ok_or_else(|| format!("{value} is out of range: expected 2 to 1000"))
}

fn at_utc<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_at_utc(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

fn output<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse::<Output>().map_err(serde::de::Error::custom)?;
    Ok(text)
}

fn gap_factor<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    check_gap_factor(i64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

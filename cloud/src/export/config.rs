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
    pub fn at(&self) -> Result<Time, ExportConfigError> {
        parse_at_utc(&self.at_utc)
    }

    /// [`ExportConfig::output`], parsed.
    pub fn output(&self) -> Result<Output, ExportConfigError> {
        self.output.parse()
    }
}

/// A bad export setting or argument: a day, an output, a format, a time
/// of day or a gap factor that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportConfigError {
    /// `export.format` (or `--format`) is neither `parquet` nor `csv.gz`.
    #[error("unknown export format {format:?}: expected parquet or csv.gz")]
    UnknownFormat {
        /// The format as given.
        format: String,
    },
    /// An `s3://` output's key prefix has control characters or empty
    /// segments.
    #[error("invalid S3 key prefix {prefix:?}: no control characters or empty segments")]
    InvalidPrefix {
        /// The prefix (with its final `/` added).
        prefix: String,
    },
    /// A `file://` output whose path is not absolute.
    #[error("invalid file URL {url:?}: expected file:///absolute/path")]
    InvalidFileUrl {
        /// The output as given.
        url: String,
    },
    /// An output URL whose scheme is neither `s3` nor `file`.
    #[error("unsupported output scheme {scheme:?}: use s3://bucket/prefix/, file:///dir or a path")]
    UnsupportedScheme {
        /// The scheme (before `://`).
        scheme: String,
    },
    /// An empty output.
    #[error("empty output: use s3://bucket/prefix/, file:///dir or a path")]
    EmptyOutput,
    /// An S3 bucket name that breaks S3's naming rules.
    #[error(
        "invalid S3 bucket name {bucket:?}: expected 3 to 63 of a-z 0-9 . - (starting and ending with a letter or digit)"
    )]
    InvalidBucket {
        /// The bucket as given.
        bucket: String,
    },
    /// A day that is neither `YYYY-MM-DD` (a real date) nor `yesterday`.
    #[error("invalid day {text:?}: expected YYYY-MM-DD (a real date) or yesterday")]
    InvalidDay {
        /// The day as given.
        text: String,
    },
    /// `yesterday` of the first representable day.
    #[error("no day before the first one")]
    NoDayBefore,
    /// No day is due because the clock is at the first representable day.
    #[error("no day to export before the first one")]
    NoDayDue,
    /// A time in ms outside the calendar's range.
    #[error("{ms} ms is out of range")]
    TimeOutOfRange {
        /// The time, ms since the Unix epoch.
        ms: i64,
    },
    /// `export.at_utc` is not `HH:MM`.
    #[error("invalid time {text:?}: expected HH:MM (UTC, 00:00 to 23:59)")]
    InvalidTime {
        /// The time as given.
        text: String,
    },
    /// `export.gap_factor` is not 2 to 1000.
    #[error("{value} is out of range: expected 2 to 1000")]
    GapFactorOutOfRange {
        /// The factor as given.
        value: i64,
    },
}

/// Checks an `HH:MM` time of day.
pub fn parse_at_utc(text: &str) -> Result<Time, ExportConfigError> {
    let format = format_description!("[hour]:[minute]");
    Time::parse(text, format).map_err(|_| ExportConfigError::InvalidTime {
        text: text.to_owned(),
    })
}

/// Checks a gap factor (2 to 1000).
pub fn check_gap_factor(value: i64) -> Result<u32, ExportConfigError> {
    u32::try_from(value)
        .ok()
        .filter(|v| (2..=1000).contains(v))
        .ok_or(ExportConfigError::GapFactorOutOfRange { value })
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

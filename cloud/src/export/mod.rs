//! The daily export: one UTC day of raw readings, one file per VEN,
//! enriched with the VEN's site (and project) data, written as Parquet or
//! CSV.gz to a directory or an S3 bucket, with a `manifest.json` per day.
//!
//! ```text
//! <output>/<YYYY-MM-DD>/<ven_id>.parquet   (or .csv.gz)
//! <output>/<YYYY-MM-DD>/manifest.json      (written last)
//! ```
//!
//! Run by hand with `gridlink-cloud export --day YYYY-MM-DD|yesterday`, or
//! daily by `serve` at `[export] at_utc` (see [`schedule`]).
//!
//! Re-running a day replaces it: the old manifest is removed first, every
//! VEN file is written under a temporary name (or a local staging file for
//! S3) and then renamed (or uploaded) over the old one, files of the day
//! that the new run did not write are deleted, and the manifest is written
//! last. A reader that sees a manifest therefore sees a complete day.
//!
//! Memory stays flat: readings are read a series at a time in pages of
//! [`PAGE_ROWS`], handed over a bounded channel to a blocking writer
//! thread, and Parquet row groups hold at most [`PAGE_ROWS`] rows. Gap
//! detection keeps the timestamps of one series of one day (8 bytes each).
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::export::ExportError> {
//! use gridlink_cloud::export::{Destination, ExportDay, ExportFormat, ExportJob, Output};
//!
//! let output: Output = "/var/lib/gridlink/export".parse()?;
//! let destination = Destination::open(&output, "").await?;
//! let job = ExportJob {
//!     day: ExportDay::parse("2025-11-20", 0)?,
//!     format: ExportFormat::Parquet,
//!     gap_factor: 3,
//!     holder: "ops".into(),
//!     force: true,
//! };
//! let outcome = gridlink_cloud::export::export_day(&store, &destination, &job).await?;
//! # let _ = outcome;
//! # Ok(()) }
//! ```

mod config;
mod csv;
mod destination;
mod manifest;
mod metrics;
mod parquet;
pub mod schedule;

pub use config::{
    ExportConfig, ExportConfigError, check_gap_factor, default_at_utc, default_gap_factor,
    default_output, parse_at_utc,
};
pub use metrics::ExportMetrics;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use gridlink_protocol::VenId;
use serde::{Deserialize, Serialize};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

pub use destination::Destination;
pub use manifest::{Gap, MANIFEST_NAME, Manifest, Totals, VenManifest};

use crate::model::clock::now_ms;
use crate::store::{
    ExportLease, ExportSeries, ExportStore, ExportVenInfo, ProjectRecord, ProjectStore, StoreError,
};
use manifest::GapTracker;

/// Rows read from the database per query, and the most rows a Parquet row
/// group holds.
pub const PAGE_ROWS: u32 = 65_536;

/// How long a lease on a day lasts without renewal.
pub const LEASE_TTL_MS: i64 = 15 * 60_000;

/// How often a run renews its lease (checked between VENs, and once more
/// before the manifest is written).
pub const LEASE_RENEW_MS: u64 = 5 * 60_000;

/// The generator named in every manifest and Parquet file.
pub const GENERATOR: &str = concat!("gridlink-cloud ", env!("CARGO_PKG_VERSION"));

/// The columns of every export file, in order.
pub const COLUMNS: [&str; 15] = [
    "ven_id",
    "meter",
    "quantity",
    "phase",
    "ts_ms",
    "ts",
    "value",
    "site",
    "site_meter",
    "site_address",
    "site_latitude",
    "site_longitude",
    "groups",
    "project_id",
    "project_name",
];

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
pub enum ExportFormat {
    /// Apache Parquet, snappy-compressed, one row group per [`PAGE_ROWS`].
    #[default]
    #[serde(rename = "parquet")]
    Parquet,
    /// Gzip-compressed CSV with a header row.
    #[serde(rename = "csv.gz")]
    CsvGz,
}

impl ExportFormat {
    /// The name in config, on the command line and in the manifest.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::CsvGz => "csv.gz",
        }
    }

    /// The file name extension, with its dot.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Parquet => ".parquet",
            Self::CsvGz => ".csv.gz",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExportFormat {
    type Err = ExportConfigError;

    fn from_str(s: &str) -> Result<Self, ExportConfigError> {
        match s {
            "parquet" => Ok(Self::Parquet),
            "csv.gz" => Ok(Self::CsvGz),
            other => Err(ExportConfigError::UnknownFormat {
                format: other.to_owned(),
            }),
        }
    }
}

/// Where a day goes: a directory or an S3 bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A local directory (created if missing).
    Directory(PathBuf),
    /// `s3://bucket/prefix/`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix: empty or ending in `/`.
        prefix: String,
    },
}

impl FromStr for Output {
    type Err = ExportConfigError;

    /// `s3://BUCKET/PREFIX/` (the prefix may be empty; a missing final `/`
    /// is added), `file:///dir`, or a plain path.
    fn from_str(s: &str) -> Result<Self, ExportConfigError> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket)?;
            let mut prefix = prefix.trim_start_matches('/').to_owned();
            if !prefix.is_empty() && !prefix.ends_with('/') {
                prefix.push('/');
            }
            if prefix.chars().any(char::is_control) || prefix.contains("//") {
                return Err(ExportConfigError::InvalidPrefix { prefix });
            }
            Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix,
            })
        } else if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(ExportConfigError::InvalidFileUrl { url: s.to_owned() });
            }
            Ok(Self::Directory(PathBuf::from(path)))
        } else if s.contains("://") {
            let scheme = s.split_once("://").map_or(s, |(scheme, _)| scheme);
            Err(ExportConfigError::UnsupportedScheme {
                scheme: scheme.to_owned(),
            })
        } else if s.is_empty() {
            Err(ExportConfigError::EmptyOutput)
        } else {
            Ok(Self::Directory(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Directory(path) => write!(f, "{}", path.display()),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// S3 bucket naming rules (3 to 63 of `a-z 0-9 . -`, starting and ending
/// with a letter or digit).
fn check_bucket(bucket: &str) -> Result<(), ExportConfigError> {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && edge_ok(bucket.chars().next())
        && edge_ok(bucket.chars().last())
    {
        Ok(())
    } else {
        Err(ExportConfigError::InvalidBucket {
            bucket: bucket.to_owned(),
        })
    }
}

/// One UTC day to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExportDay(Date);

const DAY_MS: i64 = 86_400_000;

impl ExportDay {
    /// `YYYY-MM-DD`, or `yesterday` (the UTC day before the one holding
    /// `now_ms`).
    pub fn parse(text: &str, now_ms: i64) -> Result<Self, ExportConfigError> {
        if text == "yesterday" {
            return Self::containing(now_ms)
                .and_then(|day| day.previous().ok_or(ExportConfigError::NoDayBefore));
        }
        let format = format_description!("[year]-[month]-[day]");
        Date::parse(text, format)
            .map(Self)
            .map_err(|_| ExportConfigError::InvalidDay {
                text: text.to_owned(),
            })
    }

    /// [`ExportDay::parse`] relative to the current time.
    pub fn parse_now(text: &str) -> Result<Self, ExportConfigError> {
        Self::parse(text, now_ms())
    }

    /// The UTC day holding `ms` (ms since the Unix epoch).
    pub fn containing(ms: i64) -> Result<Self, ExportConfigError> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map(|t| Self(t.date()))
            .map_err(|_| ExportConfigError::TimeOutOfRange { ms })
    }

    /// The day before.
    pub fn previous(self) -> Option<Self> {
        self.0.previous_day().map(Self)
    }

    /// The day after.
    pub fn next(self) -> Option<Self> {
        self.0.next_day().map(Self)
    }

    /// Start (inclusive), ms since the Unix epoch.
    pub fn start_ms(self) -> i64 {
        self.0.midnight().assume_utc().unix_timestamp() * 1000
    }

    /// End (exclusive): the next day's start.
    pub fn end_ms(self) -> i64 {
        self.start_ms() + DAY_MS
    }
}

impl fmt::Display for ExportDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

/// `ms` as ISO 8601 UTC with milliseconds: `2025-11-20T23:59:59.999Z`.
pub fn iso_ms(ms: i64) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Formats reading times as [`iso_ms`] does, fast: the date part is made
/// once per UTC day, the time of day by integer arithmetic.
#[derive(Debug, Default)]
pub(crate) struct IsoTimes {
    day_start: Option<i64>,
    /// `YYYY-MM-DDT` of `day_start`, or empty if it has no such form.
    date: String,
}

impl IsoTimes {
    /// Appends `ts_ms` as `2025-11-20T23:59:59.999Z` to `out`.
    pub(crate) fn push(&mut self, ts_ms: i64, out: &mut String) {
        use std::fmt::Write as _;
        let start = ts_ms - ts_ms.rem_euclid(DAY_MS);
        if self.day_start != Some(start) {
            let iso = iso_ms(start);
            self.date = iso
                .split_once('T')
                .map(|(date, _)| format!("{date}T"))
                .unwrap_or_default();
            self.day_start = Some(start);
        }
        if self.date.is_empty() {
            out.push_str(&iso_ms(ts_ms));
            return;
        }
        let t = ts_ms - start;
        out.push_str(&self.date);
        let _ = write!(
            out,
            "{:02}:{:02}:{:02}.{:03}Z",
            t / 3_600_000,
            t / 60_000 % 60,
            t / 1000 % 60,
            t % 1000
        );
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A local file or directory could not be written, renamed or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The Parquet writer failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// The CSV writer failed.
    #[error("csv: {0}")]
    Csv(#[from] ::csv::Error),
    /// An S3 request failed.
    #[error("S3 {operation} s3://{bucket}/{key}: {message}")]
    S3 {
        /// The operation (`PutObject`, ...).
        operation: &'static str,
        /// The bucket.
        bucket: String,
        /// The key (or prefix).
        key: String,
        /// What S3 (or the connection) said.
        message: String,
    },
    /// Another process holds the day's lease.
    #[error("{day} is being exported by {holder} (lease until {until})")]
    Held {
        /// The day.
        day: String,
        /// Who holds it.
        holder: String,
        /// Lease end, ISO 8601.
        until: String,
    },
    /// This process lost the day's lease while exporting (it expired and
    /// another process took the day).
    #[error("lost the export lease on {0}")]
    LeaseLost(String),
    /// A bad argument.
    #[error(transparent)]
    Invalid(#[from] ExportConfigError),
    /// The writer thread panicked or was cancelled.
    #[error("export writer: {0}")]
    Writer(String),
}

/// The enrichment columns of a VEN (constant over its file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Enrichment {
    /// The site's name (registration).
    pub site: Option<String>,
    /// The site's grid meter (registration).
    pub site_meter: Option<String>,
    /// The site's postal address; null until the store keeps one.
    pub site_address: Option<String>,
    /// The site's latitude, degrees; null until the store keeps one.
    pub site_latitude: Option<f64>,
    /// The site's longitude, degrees; null until the store keeps one.
    pub site_longitude: Option<f64>,
    /// The VEN's DR groups as a JSON array (`["north","pilot"]`); null if
    /// the VEN is in none.
    pub groups: Option<String>,
    /// The project the site belongs to; null until projects are stored.
    pub project_id: Option<String>,
    /// The project's name; null until projects are stored.
    pub project_name: Option<String>,
}

/// The enrichment columns of `ven_id`: everything the store knows about
/// its site and project. The project is the one with the lowest id among
/// those listing the VEN (a VEN in a renewable and a flexibility project
/// gets the older one). The registration stores no site address or
/// coordinates yet, so those columns are null: the one place to extend
/// when it does.
pub async fn enrichment<S: ExportStore + ProjectStore>(
    store: &S,
    ven_id: &VenId,
) -> Result<Enrichment, StoreError> {
    let info = store.export_ven_info(ven_id).await?.unwrap_or_default();
    let project = store
        .projects()
        .await?
        .into_iter()
        .filter(|p| p.ven_ids.contains(ven_id))
        .min_by_key(|p| p.id);
    Ok(enrichment_of(info, project))
}

fn enrichment_of(info: ExportVenInfo, project: Option<ProjectRecord>) -> Enrichment {
    Enrichment {
        site: info.site,
        site_meter: info.site_meter,
        site_address: None,
        site_latitude: None,
        site_longitude: None,
        groups: (!info.groups.is_empty())
            .then(|| serde_json::to_string(&info.groups).unwrap_or_default()),
        project_id: project.as_ref().map(|p| p.id.to_string()),
        project_name: project.map(|p| p.name),
    }
}

/// A page of one series' readings, handed to a file writer.
#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) series: std::sync::Arc<ExportSeries>,
    pub(crate) readings: Vec<(i64, f64)>,
}

/// A file writer of one format for one VEN: pages in order, then finish.
pub(crate) trait FileWriter: Send {
    /// Appends the page's rows.
    fn write_page(&mut self, page: &Page) -> Result<(), ExportError>;
    /// Flushes everything to the file and syncs it.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

fn open_writer(
    format: ExportFormat,
    path: &std::path::Path,
    ven_id: &VenId,
    enrichment: Enrichment,
) -> Result<Box<dyn FileWriter>, ExportError> {
    let file = std::fs::File::create(path).map_err(|source| ExportError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(match format {
        ExportFormat::Parquet => Box::new(parquet::ParquetWriter::new(file, ven_id, enrichment)?),
        ExportFormat::CsvGz => Box::new(csv::CsvGzWriter::new(file, ven_id, enrichment)?),
    })
}

/// One export run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJob {
    /// The day.
    pub day: ExportDay,
    /// The file format.
    pub format: ExportFormat,
    /// See [`ExportConfig::gap_factor`].
    pub gap_factor: u32,
    /// Who takes the day's lease (host and process).
    pub holder: String,
    /// Export even if the day is marked done (a re-run by hand).
    pub force: bool,
}

/// What [`export_day`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportOutcome {
    /// The day was written; its manifest.
    Exported(Box<Manifest>),
    /// The day was already done (and `force` was not set): nothing written.
    AlreadyDone {
        /// When it was done, ms.
        done_ms: i64,
    },
}

/// Exports `job.day` to `destination` under the day's lease (see the
/// module documentation for the order of writes).
pub async fn export_day<S: ExportStore + ProjectStore>(
    store: &S,
    destination: &Destination,
    job: &ExportJob,
) -> Result<ExportOutcome, ExportError> {
    let day = job.day.to_string();
    match store
        .export_lease(&day, &job.holder, now_ms(), LEASE_TTL_MS, job.force)
        .await?
    {
        ExportLease::Acquired => {}
        ExportLease::Done { done_ms } => return Ok(ExportOutcome::AlreadyDone { done_ms }),
        ExportLease::Held { holder, expires_ms } => {
            return Err(ExportError::Held {
                day,
                holder,
                until: iso_ms(expires_ms),
            });
        }
    }
    match write_day(store, destination, job).await {
        Ok(manifest) => {
            store
                .export_done(&day, &job.holder, now_ms(), manifest.totals.rows)
                .await?;
            Ok(ExportOutcome::Exported(Box::new(manifest)))
        }
        Err(error) => {
            if let Err(release) = store.export_release(&day, &job.holder).await {
                tracing::warn!(%release, day, "cannot release the export lease");
            }
            Err(error)
        }
    }
}

async fn write_day<S: ExportStore + ProjectStore>(
    store: &S,
    destination: &Destination,
    job: &ExportJob,
) -> Result<Manifest, ExportError> {
    let day = job.day.to_string();
    let (from_ms, to_ms) = (job.day.start_ms(), job.day.end_ms());
    let staging = destination.begin_day(&day).await?;
    let vens = store.export_vens(from_ms, to_ms).await?;
    let mut written = Vec::with_capacity(vens.len());
    let mut renewed = std::time::Instant::now();
    for ven_id in &vens {
        if renewed.elapsed() >= std::time::Duration::from_millis(LEASE_RENEW_MS) {
            renew(store, &day, job).await?;
            renewed = std::time::Instant::now();
        }
        let name = format!("{ven_id}{}", job.format.extension());
        let staged = staging.path_for(&name);
        let mut ven = write_ven(store, ven_id, job, from_ms, to_ms, &staged).await?;
        ven.file = name.clone();
        ven.bytes = tokio::fs::metadata(&staged)
            .await
            .map_err(|source| ExportError::Io {
                path: staged.display().to_string(),
                source,
            })?
            .len();
        destination.commit_file(&day, &staged, &name).await?;
        written.push(ven);
    }
    renew(store, &day, job).await?;
    let keep: std::collections::BTreeSet<String> = written.iter().map(|v| v.file.clone()).collect();
    let removed = destination.remove_stale(&day, &keep).await?;
    if !removed.is_empty() {
        tracing::info!(day, ?removed, "stale export files removed");
    }
    let manifest = Manifest::new(
        job.day,
        job.format,
        job.gap_factor,
        written,
        now_ms(),
        from_ms,
        to_ms,
    );
    destination.write_manifest(&day, &manifest).await?;
    drop(staging);
    Ok(manifest)
}

async fn renew<S: ExportStore>(store: &S, day: &str, job: &ExportJob) -> Result<(), ExportError> {
    // `force` only matters for the first take: the day is not done while
    // this run holds it.
    match store
        .export_lease(day, &job.holder, now_ms(), LEASE_TTL_MS, false)
        .await?
    {
        ExportLease::Acquired => Ok(()),
        ExportLease::Held { .. } | ExportLease::Done { .. } => {
            Err(ExportError::LeaseLost(day.to_owned()))
        }
    }
}

/// Writes one VEN's file at `path`; returns its manifest entry (without
/// file name and size).
async fn write_ven<S: ExportStore + ProjectStore>(
    store: &S,
    ven_id: &VenId,
    job: &ExportJob,
    from_ms: i64,
    to_ms: i64,
    path: &std::path::Path,
) -> Result<VenManifest, ExportError> {
    let enrichment = enrichment(store, ven_id).await?;
    let writer = open_writer(job.format, path, ven_id, enrichment)?;
    let (pages, mut receiver) = tokio::sync::mpsc::channel::<Page>(2);
    let thread = tokio::task::spawn_blocking(move || -> Result<(), ExportError> {
        let mut writer = writer;
        while let Some(page) = receiver.blocking_recv() {
            writer.write_page(&page)?;
        }
        writer.finish()
    });
    let read = read_ven(store, ven_id, job.gap_factor, from_ms, to_ms, &pages).await;
    drop(pages);
    let wrote = thread
        .await
        .map_err(|e| ExportError::Writer(e.to_string()))?;
    // A writer failure closes the channel, which read_ven reports as a
    // writer error: the writer's own error says more.
    wrote?;
    read
}

async fn read_ven<S: ExportStore>(
    store: &S,
    ven_id: &VenId,
    gap_factor: u32,
    from_ms: i64,
    to_ms: i64,
    pages: &tokio::sync::mpsc::Sender<Page>,
) -> Result<VenManifest, ExportError> {
    let mut ven = VenManifest::empty(ven_id);
    for series in store.export_series(ven_id).await? {
        let series = std::sync::Arc::new(series);
        let mut gaps = GapTracker::default();
        let mut cursor = from_ms;
        let mut any = false;
        loop {
            let readings = store
                .export_readings(series.id, cursor, to_ms, PAGE_ROWS)
                .await?;
            let Some(&(last_ts, _)) = readings.last() else {
                break;
            };
            any = true;
            gaps.extend(readings.iter().map(|&(ts, _)| ts));
            ven.add_rows(readings.len() as u64, readings[0].0, last_ts);
            let full = readings.len() == PAGE_ROWS as usize;
            pages
                .send(Page {
                    series: std::sync::Arc::clone(&series),
                    readings,
                })
                .await
                .map_err(|_| ExportError::Writer("the file writer stopped".into()))?;
            if !full {
                break;
            }
            cursor = last_ts + 1;
        }
        if any {
            ven.series += 1;
            ven.add_gaps(&series, gaps.gaps(gap_factor));
        }
    }
    Ok(ven)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_render_the_operators_text() {
        let cases: [(ExportConfigError, &str); 12] = [
            (
                ExportConfigError::UnknownFormat {
                    format: "xml".into(),
                },
                "unknown export format \"xml\": expected parquet or csv.gz",
            ),
            (
                ExportConfigError::InvalidPrefix {
                    prefix: "a//b/".into(),
                },
                "invalid S3 key prefix \"a//b/\": no control characters or empty segments",
            ),
            (
                ExportConfigError::InvalidFileUrl {
                    url: "file://x".into(),
                },
                "invalid file URL \"file://x\": expected file:///absolute/path",
            ),
            (
                ExportConfigError::UnsupportedScheme {
                    scheme: "gs".into(),
                },
                "unsupported output scheme \"gs\": use s3://bucket/prefix/, file:///dir or a path",
            ),
            (
                ExportConfigError::EmptyOutput,
                "empty output: use s3://bucket/prefix/, file:///dir or a path",
            ),
            (
                ExportConfigError::InvalidBucket {
                    bucket: "ab".into(),
                },
                "invalid S3 bucket name \"ab\": expected 3 to 63 of a-z 0-9 . - (starting and ending with a letter or digit)",
            ),
            (
                ExportConfigError::InvalidDay { text: "x".into() },
                "invalid day \"x\": expected YYYY-MM-DD (a real date) or yesterday",
            ),
            (
                ExportConfigError::NoDayBefore,
                "no day before the first one",
            ),
            (
                ExportConfigError::NoDayDue,
                "no day to export before the first one",
            ),
            (
                ExportConfigError::TimeOutOfRange { ms: i64::MAX },
                "9223372036854775807 ms is out of range",
            ),
            (
                ExportConfigError::InvalidTime {
                    text: "25:00".into(),
                },
                "invalid time \"25:00\": expected HH:MM (UTC, 00:00 to 23:59)",
            ),
            (
                ExportConfigError::GapFactorOutOfRange { value: 1 },
                "1 is out of range: expected 2 to 1000",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(ExportError::from(error).to_string(), text);
        }
        assert_eq!(
            ExportDay::containing(i64::MAX).unwrap_err(),
            ExportConfigError::TimeOutOfRange { ms: i64::MAX }
        );
    }

    #[test]
    fn days_parse_and_bound() {
        let day = ExportDay::parse("2025-11-20", 0).unwrap();
        assert_eq!(day.to_string(), "2025-11-20");
        assert_eq!(day.start_ms(), 1_763_596_800_000);
        assert_eq!(day.end_ms(), 1_763_683_200_000);
        let now = 1_763_683_200_000 + 5_000; // 2025-11-21T00:00:05Z
        assert_eq!(ExportDay::parse("yesterday", now).unwrap(), day);
        assert_eq!(
            ExportDay::parse("yesterday", now - 10_000)
                .unwrap()
                .to_string(),
            "2025-11-19"
        );
        for bad in ["2025-13-01", "2025-02-30", "20251120", "tomorrow", ""] {
            let err = ExportDay::parse(bad, now).unwrap_err();
            assert!(
                err.to_string().contains("expected YYYY-MM-DD"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn iso_has_milliseconds() {
        assert_eq!(iso_ms(1_763_683_199_999), "2025-11-20T23:59:59.999Z");
        assert_eq!(iso_ms(1_763_596_800_000), "2025-11-20T00:00:00.000Z");
    }

    #[test]
    fn fast_iso_times_match_iso_ms() {
        let mut times = IsoTimes::default();
        for ms in [
            0,
            1_763_596_800_000,
            1_763_683_199_999,
            1_763_683_200_000,
            1_763_600_340_123,
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
            1_763_596_800_000,
        ] {
            let mut out = String::new();
            times.push(ms, &mut out);
            assert_eq!(out, iso_ms(ms));
        }
    }

    #[test]
    fn outputs_parse() {
        assert_eq!(
            "s3://my-bucket/exports/daily".parse::<Output>().unwrap(),
            Output::S3 {
                bucket: "my-bucket".into(),
                prefix: "exports/daily/".into()
            }
        );
        assert_eq!(
            "s3://my-bucket".parse::<Output>().unwrap(),
            Output::S3 {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            "file:///var/export".parse::<Output>().unwrap(),
            Output::Directory("/var/export".into())
        );
        assert_eq!(
            "out/dir".parse::<Output>().unwrap(),
            Output::Directory("out/dir".into())
        );
        for (bad, says) in [
            ("s3://Bad_Bucket/x/", "invalid S3 bucket name"),
            ("s3://ab/", "invalid S3 bucket name"),
            ("s3://bucket/a//b/", "invalid S3 key prefix"),
            ("gs://bucket/x", "unsupported output scheme \"gs\""),
            ("file://relative", "invalid file URL"),
            ("", "empty output"),
        ] {
            let err = bad.parse::<Output>().unwrap_err();
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn export_config_parses() {
        let c: ExportConfig = toml::from_str(
            "enabled = true\nat_utc = \"02:15\"\noutput = \"s3://b-1/p/\"\nformat = \"csv.gz\"\ngap_factor = 5\ns3_endpoint_url = \"http://127.0.0.1:5000\"",
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.at().unwrap(), time::Time::from_hms(2, 15, 0).unwrap());
        assert_eq!(c.format, ExportFormat::CsvGz);
        assert_eq!(c.gap_factor, 5);
        assert!(matches!(c.output().unwrap(), Output::S3 { .. }));
        let d: ExportConfig = toml::from_str("").unwrap();
        assert_eq!(d, ExportConfig::default());
        assert_eq!(
            (d.at_utc.as_str(), d.output.as_str(), d.format),
            ("01:30", "export", ExportFormat::Parquet)
        );
        for bad in [
            "at_utc = \"25:00\"",
            "at_utc = \"1:30pm\"",
            "format = \"json\"",
            "gap_factor = 1",
            "output = \"gs://x/y\"",
            "unknown = 1",
        ] {
            assert!(toml::from_str::<ExportConfig>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enrichment_without_a_project_has_project_columns_null() {
        let e = enrichment_of(
            ExportVenInfo {
                site: Some("Depot".into()),
                site_meter: Some("grid".into()),
                groups: vec!["north".into(), "a,b".into()],
            },
            None,
        );
        assert_eq!(e.groups.as_deref(), Some("[\"north\",\"a,b\"]"));
        assert_eq!((e.project_id, e.project_name), (None, None));
        assert_eq!(enrichment_of(ExportVenInfo::default(), None).groups, None);
    }
}

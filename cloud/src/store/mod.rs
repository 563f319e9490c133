//! Storage behind one set of traits, with one implementation, [`AnyStore`],
//! that runs on PostgreSQL (production) or SQLite (the embedded default).
//! Both pass the same conformance tests (`tests/store_conformance.rs`).
//!
//! The backend is chosen by the database URL: `postgres://...` or
//! `sqlite://path.db`, see [`AnyStore::connect`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::{AnyStore, Store};
//!
//! let store = AnyStore::connect("sqlite://gridlink.db").await?;
//! store.migrate().await?;
//! store.prepare_partitions(1_700_000_000_000).await?; // no-op on SQLite
//! # Ok(()) }
//! ```
//!
//! # One body of SQL for two databases
//!
//! [`AnyStore`] holds a `Db` enum of the two backends (the PostgreSQL pool,
//! or SQLite's one writer connection and its read pool). Each query is
//! written once, as a sqlx builder chain with `$n` placeholders (SQLite
//! accepts them too), and the `run!` macro expands that one chain once per
//! backend: `run!(self.reader(), |pool| sqlx::query_as(SQL).bind(x).fetch_all(pool).await)`
//! compiles to a `match` whose two arms are the same tokens, type-checked
//! against `PgPool` and `SqlitePool` (or their connections inside a
//! transaction, `Tx`). Rows are decoded once, into tuples, which sqlx's
//! `FromRow` gives on both. Where the two SQL dialects differ inside a shared
//! query (byte-order collation, `GREATEST`, `FOR UPDATE`, expanding a JSON
//! list, `jsonb` casts), the `sql!` macro spells the statement for the
//! backend at compile time from a few named words; the table is at its
//! definition.
//!
//! What truly differs lives in two files, and nowhere else: `postgres.rs`
//! (connecting, migrating, the bulk ingest path with `COPY` and `UNNEST`
//! arrays, the daily partitions of `metrics`, retention by dropping
//! partitions) and `sqlite.rs` (connecting with its pragmas and the single
//! writer, migrating, ingest with reused multi-row statements, retention by
//! deleting rows). A few list inserts also differ, inline and marked: an
//! `UNNEST` insert on PostgreSQL, one prepared insert per row on SQLite
//! (their fast paths), in `record_loads`, `register_ven` and the DR outbox.
//!
//! Options weighed:
//!
//! - **vaultwarden's `db_run!`** (one body expanded per backend connection
//!   type): chosen, at the grain of one statement rather than a whole
//!   method, so helpers take one `&mut Tx` and the dialect words can be
//!   chosen per statement.
//! - **sqlx's `Any` driver**: one runtime type for both, but it has no
//!   arrays (so no `UNNEST`), no `COPY`, a reduced set of types, and
//!   erases the database error we classify; the ingest path would lose its
//!   bulk load and the errors their SQLSTATE.
//! - **sea-query** (a query builder rendering per backend): it would
//!   rewrite every query into builder calls and hide the SQL a reader and
//!   `EXPLAIN` work with, for differences that are a handful of words; and
//!   it cannot express `COPY`.
//! - **generic functions over `sqlx::Database`**: the `Encode`/`Decode`/
//!   `Type` bounds of every bound and decoded type grow without end, and the
//!   dialect differences would still need a switch.
//!
//! # Errors
//!
//! Every `sqlx::Error` converts into [`StoreError`] through one
//! classification: transient ones are [`StoreError::Unavailable`], and
//! unique, foreign-key and check violations and missing rows have variants
//! of their own, so callers (the API's error mapping) never look into
//! `sqlx`; the database's error stays their `source` for the logs.
//!
//! # Queries are checked by tests, not by the compiler
//!
//! Every query is a runtime query (`sqlx::query` / `query_as` /
//! `query_scalar` with bound parameters), not a `query!` macro: the macros
//! need a live database or a committed `.sqlx` offline cache per backend at
//! compile time, and `cargo build` must work on a fresh clone with neither.
//! What the macros would check (SQL syntax, column names and types) is
//! checked instead by the conformance suite (`tests/store_conformance.rs`),
//! which runs every query against a real PostgreSQL 15 and a real SQLite.
//! Migrations are embedded at compile time with `sqlx::migrate!` from
//! `migrations/postgres` and `migrations/sqlite`; that needs only the files,
//! no database.
//!
//! # Schema
//!
//! The same logical model on both backends (see the migrations for every
//! column): `vens`; `series` (one id per VEN, meter, quantity and phase, so
//! `metrics` rows are narrow); `metrics` (series id, ts, value: raw
//! readings, value = `raw * 10^exponent` as a float8, exact for every
//! meter value and unaffected by a later change of exponent); the rollups
//! `metrics_1m`, `metrics_15m`, `metrics_1h` (count, sum, min, max, last)
//! merged in the ingest transaction; `ingested_batches` (idempotency
//! keys); `loads`; `api_tokens` (with their expiry and revocation, see
//! [`TokenStore`]); `audit_log` (the append-only trail of API writes, see
//! [`AuditStore`]); and `network_stats` (network-wide import/export per
//! bucket, maintained by ingest, see `store::network`).
//!
//! Times are BIGINT ms since the Unix epoch on both backends: the same
//! integer as the protocol and the API, bucket starts by integer
//! arithmetic, no time-zone conversion on the ingest path. On PostgreSQL
//! `metrics` is partitioned by UTC day (see `postgres.rs`); on SQLite it is
//! one table clustered by (series, ts).

use std::future::Future;
use std::time::Duration;

use gridlink_protocol::telemetry::MAX_METER_NAME_LEN;
use gridlink_protocol::{LoadSnapshot, Phase, Quantity, Series, Status, VenId};

/// Runs the same sqlx statement against whichever database `$on` (a
/// [`Db`] of pools, connections or transactions) holds: the body is
/// expanded once per backend, so it is written once but type-checked and
/// compiled for each (vaultwarden's `db_run!`, at the level of one
/// statement).
///
/// ```ignore
/// let names: Vec<String> = run!(self.reader(), |pool| {
///     sqlx::query_scalar("SELECT name FROM programs WHERE id = $1").bind(id).fetch_all(pool).await
/// })?;
/// ```
macro_rules! run {
    ($on:expr, |$c:ident| $body:expr) => {
        match $on {
            $crate::store::Db::Postgres($c) => $body,
            $crate::store::Db::Sqlite($c) => $body,
        }
    };
}

/// [`run!`] for statements that change rows: the number of rows they
/// changed.
macro_rules! exec {
    ($on:expr, |$c:ident| $body:expr) => {
        match $on {
            $crate::store::Db::Postgres($c) => $body.map(|done| done.rows_affected()),
            $crate::store::Db::Sqlite($c) => $body.map(|done| done.rows_affected()),
        }
    };
}

/// One SQL statement written once, spelled for a [`Dialect`] (`sql!(dialect
/// d; ...)`) or for the database of an executor (`sql!(conn; ...)`): string
/// literals are common to both, and these words are the only places the
/// two SQL dialects differ in the shared queries:
///
/// | word | PostgreSQL | SQLite |
/// |---|---|---|
/// | `collate_c` | ` COLLATE "C"` (byte order) | nothing (BINARY is byte order) |
/// | `greatest` | `GREATEST` | `max` (the two-argument scalar) |
/// | `skip_locked` | ` FOR UPDATE SKIP LOCKED` | nothing (one writer) |
/// | `for_update` | ` FOR UPDATE` | nothing (one writer) |
/// | `[json_each N]` | `json_array_elements_text($N::json)` | `json_each($N)` (a column `value` per element of a JSON array) |
/// | `[text X]` | `X::text` | `X` (JSON columns are `jsonb` on PostgreSQL, text on SQLite) |
/// | `[either P S]` | `P` | `S` (a fragment that differs wholly) |
/// | `{ m!() }` | a macro's literal | the same |
macro_rules! sql {
    ($on:ident; $($part:tt),+ $(,)?) => {
        sql!(dialect $crate::store::dialect_of(&$on); $($part),+)
    };
    (dialect $dialect:expr; $($part:tt),+ $(,)?) => {
        match $dialect {
            $crate::store::Dialect::Postgres => concat!($(sql!(@postgres $part)),+),
            $crate::store::Dialect::Sqlite => concat!($(sql!(@sqlite $part)),+),
        }
    };
    (@postgres collate_c) => { " COLLATE \"C\"" };
    (@sqlite collate_c) => { "" };
    (@postgres greatest) => { "GREATEST" };
    (@sqlite greatest) => { "max" };
    (@postgres skip_locked) => { " FOR UPDATE SKIP LOCKED" };
    (@sqlite skip_locked) => { "" };
    (@postgres for_update) => { " FOR UPDATE" };
    (@sqlite for_update) => { "" };
    (@postgres [json_each $n:literal]) => { concat!("json_array_elements_text($", $n, "::json)") };
    (@sqlite [json_each $n:literal]) => { concat!("json_each($", $n, ")") };
    (@postgres [text $x:literal]) => { concat!($x, "::text") };
    (@sqlite [text $x:literal]) => { $x };
    (@postgres [either $postgres:literal $sqlite:literal]) => { $postgres };
    (@sqlite [either $postgres:literal $sqlite:literal]) => { $sqlite };
    (@$db:ident { $($m:tt)* }) => { $($m)* };
    (@$db:ident $text:literal) => { $text };
}

pub mod alerts;
mod api_keys;
mod audit;
mod cache;
pub mod dr;
mod export;
mod group;
mod network;
pub mod notify;
mod overview;
mod postgres;
pub mod projects;
mod rollup;
mod shadow;
mod sqlite;
mod telemetry;
mod tokens;
pub mod vtn;

pub use alerts::AlertStore;
pub use api_keys::{
    ApiKeyRecord, ApiKeyStore, HTTP_SEQ_BASE, MAX_API_KEY_VENS, MAX_CUSTOMER_LEN, NewApiKey,
    StoredApiKey,
};
pub use audit::{AuditActor, AuditEntry, AuditQuery, AuditRecord, AuditStore, MAX_AUDIT_LIMIT};
pub use dr::DrStore;
pub use export::{ExportLease, ExportSeries, ExportStore, ExportVenInfo};
pub use notify::NotifyStore;
pub use overview::{OverviewStore, SitePower};
pub use postgres::MetricsPartition;
use postgres::PgStore;
pub use projects::{MilestoneRecord, ProjectRecord, ProjectStore};
pub use shadow::{ShadowStore, ShadowWrite};
use sqlite::SqliteStore;
pub use tokens::TokenStore;
pub use vtn::VtnStore;

/// One telemetry batch as ingest hands it to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    /// The sending VEN (already checked against the topic).
    pub ven_id: VenId,
    /// Its per-VEN sequence number: `(ven_id, batch_seq)` is stored once.
    pub batch_seq: u64,
    /// When the cloud received it, ms since the Unix epoch.
    pub received_ms: i64,
    /// The readings.
    pub series: Vec<Series>,
}

/// What [`Store::ingest`] did with a group of batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Batches stored now.
    pub inserted_batches: u64,
    /// Readings stored now. A reading whose (series, ts) is already stored,
    /// or repeated within the group, is skipped and not counted: the first
    /// one stored wins.
    pub inserted_readings: u64,
    /// Batches skipped because `(ven_id, batch_seq)` was already stored.
    pub duplicate_batches: u64,
}

/// A VEN as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VenRecord {
    /// The VEN.
    pub ven_id: VenId,
    /// From the last status message or last will; `None` if never heard.
    pub online: Option<bool>,
    /// Last message of any kind, ms since the epoch.
    pub last_seen_ms: Option<i64>,
    /// Newest reading timestamp stored, ms.
    pub last_reading_ms: Option<i64>,
    /// Receive time minus reading time of the newest batch, ms.
    pub ingest_lag_ms: Option<i64>,
    /// The agent version from the last status.
    pub agent_version: Option<String>,
    /// The site's name, set by registration ([`Store::register_ven`]);
    /// `None` until the VEN is registered.
    pub site: Option<String>,
    /// The site's grid meter (the agent's `[dr] site_meter`, the `meter` of
    /// its series), set by registration; the measured response of events
    /// reads only this meter. `None` if not registered.
    pub site_meter: Option<String>,
}

/// Longest site name.
pub const MAX_SITE_LEN: usize = 128;

/// A VEN's registration by its installer (`PUT /api/v1/vens/{id}`), so the
/// cloud knows the site before its first reading.
#[derive(Debug, Clone, PartialEq)]
pub struct VenRegistration {
    /// The site's name: 1 to [`MAX_SITE_LEN`] characters, no control
    /// characters.
    pub site: String,
    /// The site's grid meter, named as the `meter` of its series (1 to
    /// [`MAX_METER_NAME_LEN`] characters, ASCII letters, digits and
    /// `_.:-`); `None` keeps the one stored.
    pub site_meter: Option<String>,
    /// Replaces the VEN's groups ([`DrStore::set_ven_groups`]); `None`
    /// keeps them.
    pub groups: Option<Vec<String>>,
    /// The site's loads, stored only while the VEN has sent no load
    /// snapshot (then they replace the loads registered before); `None`
    /// keeps them. Each shows as on, at its rated power, cause `startup`,
    /// until the agent's first snapshot replaces them all.
    pub loads: Option<Vec<RegisteredLoad>>,
}

/// One load of a [`VenRegistration`], as the agent's `[[loads]]` table
/// describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredLoad {
    /// Its name, as a [`LoadState`](gridlink_protocol::LoadState)'s.
    pub name: String,
    /// Rated power in W (finite, at least 0), if known.
    pub rated_power_w: Option<f64>,
    /// Whether DR may switch it (not `never_switch`).
    pub controllable: bool,
}

impl VenRegistration {
    /// Checks every field; the error names the first bad one (`site`,
    /// `groups`, `loads[2].name`, `loads[0].rated_power_w`) and says why.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.site.is_empty()
            || self.site.chars().count() > MAX_SITE_LEN
            || self.site.chars().any(char::is_control)
        {
            return Err((
                "site".into(),
                format!("must be 1 to {MAX_SITE_LEN} characters without control characters"),
            ));
        }
        if let Some(meter) = &self.site_meter {
            check_meter_name(meter).map_err(|reason| ("site_meter".to_owned(), reason))?;
        }
        if let Some(groups) = &self.groups {
            dr::check_groups(groups).map_err(|e| ("groups".to_owned(), e.to_string()))?;
        }
        if let Some(loads) = &self.loads {
            for (i, load) in loads.iter().enumerate() {
                if load
                    .rated_power_w
                    .is_some_and(|w| !w.is_finite() || w < 0.0)
                {
                    return Err((
                        format!("loads[{i}].rated_power_w"),
                        "must be a finite number of W, at least 0".into(),
                    ));
                }
            }
            // Names follow the rules of load snapshots (and MAX_LOADS):
            // check the snapshot these loads stand for.
            let internal = |e: &dyn std::fmt::Display| ("loads".to_owned(), e.to_string());
            let snapshot = LoadSnapshot {
                ven_id: VenId::new("registration").map_err(|e| internal(&e))?,
                at: gridlink_protocol::Timestamp::from_unix_ms(0).map_err(|e| internal(&e))?,
                loads: loads
                    .iter()
                    .map(|load| gridlink_protocol::LoadState {
                        name: load.name.clone(),
                        on: true,
                        power_w: load.rated_power_w,
                        setpoint: None,
                        controllable: load.controllable,
                        last_change: None,
                        cause: gridlink_protocol::LoadChangeCause::Startup,
                    })
                    .collect(),
            };
            gridlink_protocol::codec::WireMessage::validate(&snapshot).map_err(|e| match e {
                gridlink_protocol::ValidationError::Field { field, reason } => (field, reason),
                other => ("loads".to_owned(), other.to_string()),
            })?;
        }
        Ok(())
    }
}

/// Checks a meter name as the protocol checks a series' `meter`.
fn check_meter_name(meter: &str) -> Result<(), String> {
    if meter.is_empty()
        || meter.len() > MAX_METER_NAME_LEN
        || !meter
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
    {
        return Err(format!(
            "must be a meter name: 1 to {MAX_METER_NAME_LEN} characters, each A-Z a-z 0-9 or one of _.:-"
        ));
    }
    Ok(())
}

/// The `loads` rows a registration stands for, as `(name, power_w,
/// controllable)` in byte order of the name: what a repeat compares with.
fn registered_rows(loads: &[RegisteredLoad]) -> Vec<(String, Option<f64>, bool)> {
    let mut rows: Vec<_> = loads
        .iter()
        .map(|l| (l.name.clone(), l.rated_power_w, l.controllable))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// One load of a VEN, from its latest snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRecord {
    /// The load's name.
    pub name: String,
    /// Relay state.
    pub on: bool,
    /// Power in W, if known.
    pub power_w: Option<f64>,
    /// Setpoint, if any.
    pub setpoint: Option<f64>,
    /// Whether DR may switch it.
    pub controllable: bool,
    /// Last change, ms.
    pub last_change_ms: Option<i64>,
    /// Why it last changed, as the protocol's JSON (e.g. `{"event":{"event_id":"e1"}}`).
    pub cause: serde_json::Value,
    /// When the snapshot was taken, ms.
    pub snapshot_ms: i64,
}

/// Which resolution a series query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resolution {
    /// Raw readings.
    Raw,
    /// 1-minute rollup.
    Minute,
    /// 15-minute rollup.
    QuarterHour,
    /// 1-hour rollup.
    Hour,
}

impl Resolution {
    /// Bucket width in ms (0 for raw).
    pub const fn bucket_ms(self) -> i64 {
        match self {
            Self::Raw => 0,
            Self::Minute => 60_000,
            Self::QuarterHour => 900_000,
            Self::Hour => 3_600_000,
        }
    }

    /// The coarsest resolution whose bucket is no wider than `step_ms`
    /// (raw below one minute).
    pub const fn for_step(step_ms: i64) -> Self {
        if step_ms >= 3_600_000 {
            Self::Hour
        } else if step_ms >= 900_000 {
            Self::QuarterHour
        } else if step_ms >= 60_000 {
            Self::Minute
        } else {
            Self::Raw
        }
    }
}

/// A time-series query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesQuery {
    /// The VEN.
    pub ven_id: VenId,
    /// The meter's name.
    pub meter: String,
    /// The quantity.
    pub quantity: Quantity,
    /// The phase.
    pub phase: Phase,
    /// Start, inclusive, ms: a point is returned if its `ts_ms` (reading
    /// time, or bucket start for a rollup) is in `from_ms..to_ms`.
    pub from_ms: i64,
    /// End, exclusive, ms.
    pub to_ms: i64,
    /// Which stored resolution to read.
    pub resolution: Resolution,
    /// At most this many points are returned (the oldest first).
    pub limit: u32,
}

/// One point of a series answer. For raw data `min = max = avg = last`
/// and `count = 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// Bucket start (or reading time for raw), ms.
    pub ts_ms: i64,
    /// Mean over the bucket.
    pub avg: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Last value in the bucket (for counters).
    pub last: f64,
    /// Readings in the bucket.
    pub count: u64,
}

/// One point of network-wide statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetworkPoint {
    /// Bucket start, ms.
    pub ts_ms: i64,
    /// Sum over VENs of mean positive total active power (import), W.
    pub import_w: f64,
    /// Sum over VENs of mean negative total active power (export), W, as a positive number.
    pub export_w: f64,
    /// VENs that reported in the bucket.
    pub vens_reporting: u64,
}

/// A role of an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Reads, and dispatches DR events.
    Operator,
    /// Reads, and registers VENs and loads.
    Installer,
    /// Everything.
    Admin,
    /// An OpenADR VEN client.
    Ven,
}

/// A stored API token (only its hash is kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's id.
    pub id: i64,
    /// A human name ("ops dashboard").
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Creation time, ms.
    pub created_ms: i64,
    /// When it stops working, ms; `None`: never (tokens stored before
    /// expiry existed, and those issued without one by the CLI).
    pub expires_ms: Option<i64>,
    /// When it was revoked, ms; `None` while it is not.
    pub revoked_ms: Option<i64>,
}

impl TokenRecord {
    /// Whether the token works at `now_ms`: not revoked, not expired.
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_ms.is_none() && self.expires_ms.is_none_or(|expires| expires > now_ms)
    }
}

/// Why a store operation failed. Database errors are sorted here, so no
/// caller needs to look into `sqlx`: every `sqlx::Error` converts (with `?`)
/// through [`classify`] into the variant that says what happened, keeping
/// the database's error as its source for the logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable or a connection broke, or the operation
    /// hit a transient condition (deadlock, lock timeout, database locked by
    /// another process, disk full, read-only failover replica). Nothing was
    /// committed: retry the same operation later.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A row the operation needed is not stored.
    #[error("not found: {0}")]
    NotFound(#[source] sqlx::Error),
    /// A unique constraint refused the write: the row exists already.
    #[error("unique violation: {0}")]
    UniqueViolation(#[source] sqlx::Error),
    /// A foreign key refused the write: it refers to a row that does not
    /// exist.
    #[error("foreign key violation: {0}")]
    ForeignKeyViolation(#[source] sqlx::Error),
    /// A check constraint (or, on PostgreSQL, partition routing) refused a
    /// value the store's own checks let through.
    #[error("check violation: {0}")]
    CheckViolation(#[source] sqlx::Error),
    /// A query failed for another reason.
    #[error("database: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value does not fit the schema (e.g. a name too long).
    #[error("invalid: {0}")]
    Invalid(String),
    /// The write conflicts with what is stored (e.g. deleting a program
    /// that still has events).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database URL names no supported backend.
    #[error("unsupported database URL {0:?}: use postgres://... or sqlite://...")]
    UnsupportedUrl(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        classify(error)
    }
}

/// The storage operations the cloud needs, implemented once by
/// [`AnyStore`] for both databases.
pub trait Store:
    DrStore
    + ShadowStore
    + OverviewStore
    + ProjectStore
    + ExportStore
    + ApiKeyStore
    + AlertStore
    + AuditStore
    + TokenStore
    + VtnStore
    + NotifyStore
    + Send
    + Sync
{
    /// Applies pending migrations.
    fn migrate(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Stores a group of batches in ONE transaction: every batch whose
    /// `(ven_id, batch_seq)` is new is stored with all its readings and the
    /// rollups are updated; the others are counted as duplicates (also a
    /// key repeated within the group). When this returns `Ok`, everything
    /// is committed; on `Err` nothing is, and the group may be retried as it
    /// is. A reading whose (series, ts) is already stored, or appears twice
    /// in the new batches, is kept once: the first one (stored earlier, or
    /// earlier in `batches`) wins, the others are skipped, not an error.
    /// Timestamps must lie in the protocol's range (1970..=9999) and
    /// exponents in -9..=9, else [`StoreError::Invalid`].
    fn ingest(
        &self,
        batches: &[IngestBatch],
    ) -> impl Future<Output = Result<IngestOutcome, StoreError>> + Send;
    /// Records a status message (online state, last seen, version).
    /// Statuses apply in arrival order (the last will carries the time of
    /// the connection it belongs to, so `at` cannot order it); an empty
    /// `agent_version` (the last will) keeps the known version.
    fn record_status(
        &self,
        status: &Status,
        received_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Registers a VEN (if unknown) and sets its site and, if given, its
    /// groups, in one transaction. The registration's loads are stored
    /// only while the VEN has sent no load snapshot (`vens.loads_at` is
    /// null), replacing loads registered before (a repeat with the same
    /// loads leaves them as they are, `snapshot_ms` included); the first
    /// snapshot replaces them, whatever its time. Invalid input is
    /// [`StoreError::Invalid`] and stores nothing.
    fn register_ven(
        &self,
        ven_id: &VenId,
        registration: &VenRegistration,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces a VEN's loads with a snapshot (older snapshots are ignored).
    fn record_loads(
        &self,
        snapshot: &LoadSnapshot,
        received_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Every known VEN, by id.
    fn vens(&self) -> impl Future<Output = Result<Vec<VenRecord>, StoreError>> + Send;
    /// One VEN.
    fn ven(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<Option<VenRecord>, StoreError>> + Send;
    /// A VEN's loads from its latest snapshot, by name.
    fn loads(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<Vec<LoadRecord>, StoreError>> + Send;
    /// A series at the requested resolution.
    fn series(
        &self,
        query: &SeriesQuery,
    ) -> impl Future<Output = Result<Vec<SeriesPoint>, StoreError>> + Send;
    /// Network-wide import/export over time, derived from the rollups of
    /// every `active_power` / `Total` series (kept in `network_stats` by
    /// ingest, so the cost does not grow with the number of VENs), buckets
    /// starting in `from_ms..to_ms`, oldest first. [`Resolution::Raw`] reads
    /// the 1-minute rollup, the finest there is. Per VEN and bucket the means
    /// of its total active power series are summed (so a site should have
    /// one grid meter reporting `active_power` / `Total`).
    fn network(
        &self,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> impl Future<Output = Result<Vec<NetworkPoint>, StoreError>> + Send;
    /// Stores a token hash that never expires; returns the record
    /// ([`TokenStore::create_expiring_token`] sets an expiry).
    fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<TokenRecord, StoreError>> + Send;
    /// Looks a token up by its hash, revoked and expired ones too (the
    /// caller checks [`TokenRecord::is_active`]).
    fn token(
        &self,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;
    /// Deletes raw readings older than `before_ms` (rollups are kept);
    /// returns how many were deleted.
    ///
    /// On PostgreSQL only whole daily partitions are dropped: those ending at
    /// or before `before_ms`. Readings of the UTC day containing `before_ms`
    /// stay until a later call with a `before_ms` past that day's end. On
    /// SQLite every reading with `ts < before_ms` is deleted. Either way
    /// every reading before the start of `before_ms`'s UTC day is gone and
    /// none at or after `before_ms` is touched.
    fn enforce_retention(
        &self,
        before_ms: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Creates time partitions around `now_ms`: the previous UTC day to
    /// seven days ahead (PostgreSQL; a no-op on SQLite). Call it at start and
    /// daily. Ingest never depends on it: a batch for a day without a
    /// partition creates that partition first.
    fn prepare_partitions(
        &self,
        now_ms: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Cheap liveness check for `/health`.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The `SMALLINT` stored for a quantity: its wire order in
/// gridlink-protocol, which never changes (`active_power` = 0).
pub const fn quantity_code(quantity: Quantity) -> i16 {
    match quantity {
        Quantity::ActivePower => 0,
        Quantity::ReactivePower => 1,
        Quantity::ApparentPower => 2,
        Quantity::Voltage => 3,
        Quantity::Current => 4,
        Quantity::Frequency => 5,
        Quantity::PowerFactor => 6,
        Quantity::EnergyImport => 7,
        Quantity::EnergyExport => 8,
    }
}

/// The `SMALLINT` stored for a phase: its wire order (`Total` = 0).
pub const fn phase_code(phase: Phase) -> i16 {
    match phase {
        Phase::Total => 0,
        Phase::L1 => 1,
        Phase::L2 => 2,
        Phase::L3 => 3,
        Phase::N => 4,
        Phase::L1L2 => 5,
        Phase::L2L3 => 6,
        Phase::L3L1 => 7,
    }
}

impl Role {
    /// Every role.
    pub const ALL: [Self; 5] = [
        Self::Viewer,
        Self::Operator,
        Self::Installer,
        Self::Admin,
        Self::Ven,
    ];

    /// The name stored in `api_tokens.role` (and used in the CLI).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Installer => "installer",
            Self::Admin => "admin",
            Self::Ven => "ven",
        }
    }

    /// The role named `name` (as [`Role::as_str`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// How much a committed SQLite transaction survives (`PRAGMA synchronous`,
/// always in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteDurability {
    /// `synchronous = FULL`: the WAL is fsynced at every commit, so a
    /// committed ingest (and hence an MQTT acknowledgement) survives power
    /// loss and OS crashes. Costs one fsync per ingest transaction, which is
    /// amortised over the whole group of batches. The default, because the
    /// broker forgets a message once it is acknowledged.
    #[default]
    PowerLoss,
    /// `synchronous = NORMAL`: committed transactions survive a crash of the
    /// process; the last ones before a power loss or OS crash may be rolled
    /// back (the database is never corrupted). Faster on slow disks.
    ProcessCrash,
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// PostgreSQL: connections in the pool. SQLite: read connections (all
    /// writes go through one connection, as SQLite has one writer).
    pub max_connections: u32,
    /// How long an operation waits for a pooled connection (including
    /// connecting) before failing with [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
    /// SQLite: how long a write waits for another process's lock before
    /// failing with [`StoreError::Unavailable`].
    pub busy_timeout: Duration,
    /// SQLite: what a commit survives.
    pub sqlite_durability: SqliteDurability,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_durability: SqliteDurability::default(),
        }
    }
}

/// The store: one implementation over either database, chosen by URL.
/// Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AnyStore {
    db: Db<PgStore, SqliteStore>,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL (`postgres://...`).
    Postgres,
    /// SQLite (`sqlite://...`).
    Sqlite,
}

/// One of two things, one per database: the store's backends, their pools,
/// a transaction, a connection. [`run!`] runs the same statement on
/// whichever it holds.
#[derive(Debug)]
pub(crate) enum Db<P, S> {
    /// PostgreSQL's.
    Postgres(P),
    /// SQLite's.
    Sqlite(S),
}

/// A transaction on either database.
pub(crate) type Tx =
    Db<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Transaction<'static, sqlx::Sqlite>>;

/// The [`Dialect`] of a sqlx database.
pub(crate) trait SqlDialect {
    /// Its dialect.
    const DIALECT: Dialect;
}

impl SqlDialect for sqlx::Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
}

impl SqlDialect for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
}

/// The dialect of the database an executor (pool or connection) talks to.
pub(crate) const fn dialect_of<'c, E>(_executor: &E) -> Dialect
where
    E: sqlx::Executor<'c>,
    E::Database: SqlDialect,
{
    <E::Database as SqlDialect>::DIALECT
}

impl<P, S> Db<P, S> {
    /// Which database this is.
    pub(crate) const fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres(_) => Dialect::Postgres,
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

impl Tx {
    /// The transaction's connection, to run statements on with [`run!`].
    pub(crate) fn conn(&mut self) -> Db<&mut sqlx::PgConnection, &mut sqlx::SqliteConnection> {
        match self {
            Self::Postgres(tx) => Db::Postgres(&mut **tx),
            Self::Sqlite(tx) => Db::Sqlite(&mut **tx),
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        run!(self, |tx| tx.commit().await)?;
        Ok(())
    }
}

impl AnyStore {
    /// Connects with [`ConnectOptions::default`].
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, &ConnectOptions::default()).await
    }

    /// Connects to the backend the URL's scheme names. Does not migrate.
    pub async fn connect_with(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::Postgres(PgStore::connect(url, options).await?)
        } else if url.starts_with("sqlite:") {
            Db::Sqlite(SqliteStore::connect(url, options).await?)
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        Ok(Self { db })
    }

    /// Which database this store runs on.
    pub const fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The daily partitions of `metrics`, oldest first (PostgreSQL; SQLite
    /// has none and answers an empty list).
    pub async fn metric_partitions(&self) -> Result<Vec<MetricsPartition>, StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.metric_partitions().await,
            Db::Sqlite(_) => Ok(Vec::new()),
        }
    }

    /// Where reads go: the PostgreSQL pool, or SQLite's read pool.
    pub(crate) const fn reader(&self) -> Db<&sqlx::PgPool, &sqlx::SqlitePool> {
        match &self.db {
            Db::Postgres(pg) => Db::Postgres(&pg.pool),
            Db::Sqlite(lite) => Db::Sqlite(&lite.reader),
        }
    }

    /// Where single-statement writes go: the PostgreSQL pool, or SQLite's
    /// one writer connection.
    pub(crate) const fn writer(&self) -> Db<&sqlx::PgPool, &sqlx::SqlitePool> {
        match &self.db {
            Db::Postgres(pg) => Db::Postgres(&pg.pool),
            Db::Sqlite(lite) => Db::Sqlite(&lite.writer),
        }
    }

    /// Begins a write transaction: on SQLite on the one writer with `BEGIN
    /// IMMEDIATE`, so it holds the write lock from its start and never has
    /// to upgrade a read lock (which fails with `SQLITE_BUSY` whatever the
    /// busy timeout).
    pub(crate) async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(match &self.db {
            Db::Postgres(pg) => Db::Postgres(pg.pool.begin().await?),
            Db::Sqlite(lite) => Db::Sqlite(lite.writer.begin_with("BEGIN IMMEDIATE").await?),
        })
    }
}

/// The URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***{}", &url[..scheme_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Longest token name.
pub const MAX_TOKEN_NAME_LEN: usize = 128;

/// Checks a token name: 1 to [`MAX_TOKEN_NAME_LEN`] characters, no control
/// characters.
fn check_token_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || name.chars().count() > MAX_TOKEN_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(StoreError::Invalid(format!(
            "token name {name:?} must be 1 to {MAX_TOKEN_NAME_LEN} characters without control characters"
        )));
    }
    Ok(())
}

/// SQLSTATEs that mean "the server cannot serve this now, retry later":
/// class 08 (connection exception), 53 (insufficient resources: disk full,
/// out of memory, too many connections), 57P01-57P05 (admin or crash
/// shutdown, cannot connect now, idle session timeout), 58 (system / I/O
/// error), 25006 (read-only transaction: a failover replica), 40001 and
/// 40P01 (serialization failure, deadlock: the transaction was rolled
/// back), 55P03 (lock not available: a `lock_timeout` expired).
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("58")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "57P04" | "57P05" | "25006" | "40001" | "40P01" | "55P03"
        )
}

/// SQLite primary result codes that mean "retry later": BUSY (5, another
/// connection holds the lock past the busy timeout), LOCKED (6), IOERR (10)
/// and FULL (13, disk full). CANTOPEN (14) is not among them: it is almost
/// always a wrong path, which retrying would hide.
fn is_transient_sqlite_code(code: i32) -> bool {
    matches!(code & 0xff, 5 | 6 | 10 | 13)
}

/// Whether a sqlx error is connection-level or transient: the caller
/// retries the whole operation later, which is safe because nothing was
/// committed.
fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => match db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        {
            Some(pg) => is_transient_sqlstate(pg.code()),
            None => db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(is_transient_sqlite_code),
        },
        _ => false,
    }
}

/// Sorts a sqlx error into the [`StoreError`] that says what happened:
/// [`StoreError::Unavailable`] if [transient](is_transient), the
/// constraint violations by kind, `NotFound` for a missing row, and
/// [`StoreError::Database`] for the rest. `StoreError`'s `From<sqlx::Error>`
/// calls it, so `?` sorts every database error.
fn classify(error: sqlx::Error) -> StoreError {
    if is_transient(&error) {
        return StoreError::Unavailable(error);
    }
    let kind = match &error {
        sqlx::Error::RowNotFound => return StoreError::NotFound(error),
        sqlx::Error::Database(db) => db.kind(),
        _ => return StoreError::Database(error),
    };
    match kind {
        sqlx::error::ErrorKind::UniqueViolation => StoreError::UniqueViolation(error),
        sqlx::error::ErrorKind::ForeignKeyViolation => StoreError::ForeignKeyViolation(error),
        sqlx::error::ErrorKind::CheckViolation => StoreError::CheckViolation(error),
        _ => StoreError::Database(error),
    }
}

/// Like [`classify`], for migrations: a connection failure while migrating
/// is [`StoreError::Unavailable`].
fn classify_migrate(error: sqlx::migrate::MigrateError) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::Execute(e) if is_transient(&e) => StoreError::Unavailable(e),
        other => StoreError::Migrate(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_wire_order() {
        for (i, q) in Quantity::ALL.into_iter().enumerate() {
            assert_eq!(usize::try_from(quantity_code(q)).unwrap(), i);
        }
        for (i, p) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(usize::try_from(phase_code(p)).unwrap(), i);
        }
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_name("root"), None);
    }

    #[test]
    fn transient_sqlstates() {
        for code in [
            "08006", "08001", "57P01", "57P03", "53300", "53100", "40P01", "40001", "55P03",
            "25006", "58030",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "23514", "42P01", "22003", "57014"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
        // SQLITE_BUSY, SQLITE_BUSY_SNAPSHOT (517), SQLITE_IOERR_FSYNC (1034).
        for code in [5, 517, 6, 10, 1034, 13] {
            assert!(is_transient_sqlite_code(code), "{code}");
        }
        // SQLITE_CONSTRAINT_PRIMARYKEY (1555), SQLITE_ERROR, SQLITE_READONLY, SQLITE_CANTOPEN.
        for code in [1555, 1, 8, 14, 19] {
            assert!(!is_transient_sqlite_code(code), "{code}");
        }
    }

    #[test]
    fn connection_errors_are_unavailable() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(matches!(classify(io), StoreError::Unavailable(_)));
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound),
            StoreError::NotFound(_)
        ));
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("mysql://u:secret@db:3306/x"),
            "mysql://***@db:3306/x"
        );
        assert_eq!(redact_url("mongodb://db/x"), "mongodb://db/x");
    }

    #[test]
    fn token_names() {
        assert!(check_token_name("ops dashboard").is_ok());
        assert!(check_token_name("").is_err());
        assert!(check_token_name("a\nb").is_err());
        assert!(check_token_name(&"x".repeat(MAX_TOKEN_NAME_LEN + 1)).is_err());
    }
}

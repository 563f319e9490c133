//! What only SQLite does (the embedded default, `sqlite://gridlink.db`, for
//! a single site or the demo): connecting with its pragmas and the split
//! between one writer and the readers, migrating, the ingest write path
//! (multi-row statements instead of `COPY`) and retention by deleting rows.
//! Everything else is one body of SQL for both databases (see the `store`
//! module).
//!
//! The database runs in WAL mode, created if missing, with foreign keys on
//! and a busy timeout. `PRAGMA synchronous` follows
//! [`ConnectOptions::sqlite_durability`]: FULL by default (a commit, and so
//! an MQTT acknowledgement, survives power loss), NORMAL on request (survives
//! a process crash only).
//!
//! SQLite has one writer: every write goes through a one-connection pool
//! and takes the write lock at `BEGIN IMMEDIATE`, so a transaction never has
//! to upgrade a read lock (which would fail with `SQLITE_BUSY` regardless of
//! the busy timeout). Reads use a separate pool and run beside the writer
//! (WAL). An in-memory database (`sqlite::memory:`) lives in its one
//! connection, which then serves reads too.
//!
//! Ingest follows the PostgreSQL steps (claim, VENs, series, readings,
//! rollups, network statistics) in one `BEGIN IMMEDIATE` transaction, with multi-row
//! statements (up to 256 rows each, a few prepared shapes reused) instead
//! of arrays: SQLite has no `COPY`, and reused prepared statements in one
//! transaction are its fast path. Readings go in inside a savepoint; if one
//! was already stored the savepoint is rolled back and only the new ones
//! are inserted. The rollup deltas come from `store::rollup`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::LazyLock;

use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection as _, Row as _, Sqlite, Transaction};

use super::cache::{SeriesCache, SeriesKey, SeriesRow};
use super::group::{self, Reading};
use super::network::{self, StoredRollup, Touched};
use super::rollup;
use super::{
    ConnectOptions, IngestBatch, IngestOutcome, Resolution, SqliteDurability, StoreError,
    classify_migrate,
};

/// One UTC day in ms (retention deletes at most a day per statement).
const DAY_MS: i64 = 86_400_000;

/// Row counts of the multi-row statements: `n` rows go out as statements
/// of these sizes, largest first, so each statement shape is prepared at
/// most four times. 256 rows of 8 columns stay well under SQLite's 32766
/// parameters.
const ROWS_PER_STATEMENT: [usize; 4] = [256, 32, 8, 1];

/// `{head} VALUES (?, ...), ... {tail}` in each size of
/// [`ROWS_PER_STATEMENT`].
struct MultiRow {
    sql: [String; 4],
}

impl MultiRow {
    fn new(head: &str, columns: usize, tail: &str) -> Self {
        let row = format!("({})", vec!["?"; columns].join(", "));
        Self {
            sql: ROWS_PER_STATEMENT
                .map(|n| format!("{head} VALUES {} {tail}", vec![row.as_str(); n].join(", "))),
        }
    }

    /// Runs the statement over `rows`, binding each row with `bind`;
    /// returns what the statements returned (`RETURNING`).
    async fn run<'a, T>(
        &'static self,
        conn: &mut SqliteConnection,
        rows: &'a [T],
        bind: impl Fn(SqliteQuery<'a>, &'a T) -> SqliteQuery<'a>,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        let mut returned = Vec::new();
        let mut rest = rows;
        for (sql, size) in self.sql.iter().zip(ROWS_PER_STATEMENT) {
            while rest.len() >= size {
                let (chunk, tail) = rest.split_at(size);
                let query = chunk.iter().fold(sqlx::query(sql.as_str()), &bind);
                returned.extend(query.fetch_all(&mut *conn).await?);
                rest = tail;
            }
        }
        Ok(returned)
    }
}

type SqliteQuery<'a> = sqlx::query::Query<'a, Sqlite, SqliteArguments>;

static CLAIM: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO ingested_batches (ven_id, batch_seq, received, readings)",
        4,
        "ON CONFLICT DO NOTHING RETURNING ven_id, batch_seq",
    )
});

static UPDATE_VENS: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO vens (ven_id, last_seen, last_reading, ingest_lag)",
        4,
        "ON CONFLICT (ven_id) DO UPDATE SET \
           last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen), \
           ingest_lag = CASE WHEN excluded.last_reading >= last_reading OR last_reading IS NULL \
                        THEN coalesce(excluded.ingest_lag, ingest_lag) ELSE ingest_lag END, \
           last_reading = max(coalesce(last_reading, excluded.last_reading), \
                              coalesce(excluded.last_reading, last_reading))",
    )
});

static INSERT_READINGS: LazyLock<MultiRow> =
    LazyLock::new(|| MultiRow::new("INSERT INTO metrics (series_id, ts, value)", 3, ""));

/// Merges rollup deltas: counts and sums add, min and max widen, `last` is
/// the newer of the two.
fn merge_rollup(table: &str) -> MultiRow {
    MultiRow::new(
        &format!(
            "INSERT INTO {table} (series_id, bucket, count, sum, min, max, last_ts, last_value)"
        ),
        8,
        "ON CONFLICT (series_id, bucket) DO UPDATE SET \
           count = count + excluded.count, sum = sum + excluded.sum, \
           \"min\" = min(\"min\", excluded.\"min\"), \"max\" = max(\"max\", excluded.\"max\"), \
           last_value = CASE WHEN excluded.last_ts > last_ts THEN excluded.last_value ELSE last_value END, \
           last_ts = max(last_ts, excluded.last_ts)",
    )
}

static MERGE_NETWORK: LazyLock<MultiRow> = LazyLock::new(|| {
    MultiRow::new(
        "INSERT INTO network_stats (bucket_ms, bucket, import_w, export_w, vens_reporting)",
        5,
        "ON CONFLICT (bucket_ms, bucket, shard) DO UPDATE SET \
           import_w = import_w + excluded.import_w, export_w = export_w + excluded.export_w, \
           vens_reporting = vens_reporting + excluded.vens_reporting",
    )
});

static MERGE_1M: LazyLock<MultiRow> = LazyLock::new(|| merge_rollup("metrics_1m"));
static MERGE_15M: LazyLock<MultiRow> = LazyLock::new(|| merge_rollup("metrics_15m"));
static MERGE_1H: LazyLock<MultiRow> = LazyLock::new(|| merge_rollup("metrics_1h"));

/// The SQLite side of the store: the writer, the readers and the series-id
/// cache.
#[derive(Debug)]
pub(super) struct SqliteStore {
    /// The one write connection.
    pub(super) writer: SqlitePool,
    /// Read connections (the writer itself for an in-memory database).
    pub(super) reader: SqlitePool,
    series: SeriesCache,
}

impl SqliteStore {
    /// Opens (creating if missing) the database `url` names:
    /// `sqlite://path`, `sqlite:path` or `sqlite::memory:`.
    pub(super) async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.sqlite_durability {
                SqliteDurability::PowerLoss => SqliteSynchronous::Full,
                SqliteDurability::ProcessCrash => SqliteSynchronous::Normal,
            })
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        // Never closed while the store lives: an in-memory database would
        // vanish with its connection.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?
        };
        Ok(Self {
            writer,
            reader,
            series: SeriesCache::default(),
        })
    }

    /// One ingest transaction; returns the outcome and the series rows it
    /// created or found, for the cache once it has committed.
    async fn ingest_tx(
        &self,
        batches: &[IngestBatch],
    ) -> Result<(IngestOutcome, Vec<(SeriesKey, SeriesRow)>), sqlx::Error> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;

        let claims = group::claims(batches);
        let claimed = CLAIM
            .run(&mut tx, &claims, |q, c| {
                q.bind(c.ven_id)
                    .bind(c.batch_seq)
                    .bind(c.received_ms)
                    .bind(c.readings)
            })
            .await?
            .iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?, row.try_get::<i64, _>(1)?)))
            .collect::<Result<HashSet<_>, sqlx::Error>>()?;
        let mut is_new = vec![false; batches.len()];
        for c in &claims {
            is_new[c.index] = claimed.contains(&(c.ven_id.to_owned(), c.batch_seq));
        }

        let updates = group::ven_updates(batches, &is_new);
        UPDATE_VENS
            .run(&mut tx, &updates, |q, u| {
                q.bind(u.ven_id)
                    .bind(u.last_seen)
                    .bind(u.last_reading)
                    .bind(u.ingest_lag)
            })
            .await?;

        let mut ids = HashMap::new();
        let mut resolved = Vec::new();
        for (key, exponent) in group::series_keys(batches, &is_new) {
            if let Some(row) = self.series.get(&key).filter(|row| row.exponent == exponent) {
                ids.insert(key, row.id);
                continue;
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO series (ven_id, meter, quantity, phase, exponent) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (ven_id, meter, quantity, phase) DO UPDATE SET exponent = excluded.exponent \
                 RETURNING id",
            )
            .bind(key.ven_id.as_str())
            .bind(key.meter.as_str())
            .bind(key.quantity_code())
            .bind(key.phase_code())
            .bind(exponent)
            .fetch_one(&mut *tx)
            .await?;
            ids.insert(key.clone(), id);
            resolved.push((key, SeriesRow { id, exponent }));
        }

        let readings = store_readings(&mut tx, group::readings(batches, &is_new, &ids)).await?;
        merge_rollups(&mut tx, &readings, &ids).await?;
        tx.commit().await?;

        let inserted_batches = is_new.iter().filter(|&&new| new).count() as u64;
        let outcome = IngestOutcome {
            inserted_batches,
            inserted_readings: readings.len() as u64,
            duplicate_batches: batches.len() as u64 - inserted_batches,
        };
        Ok((outcome, resolved))
    }
}

/// Merges the rollup deltas of `readings` (just stored) and the network
/// changes they cause.
async fn merge_rollups(
    tx: &mut Transaction<'_, Sqlite>,
    readings: &[Reading],
    ids: &HashMap<SeriesKey, i64>,
) -> Result<(), sqlx::Error> {
    let deltas = rollup::deltas(readings);
    let counted: HashMap<i64, &str> = ids
        .iter()
        .filter(|(key, _)| network::counts(key))
        .map(|(key, &id)| (id, key.ven_id.as_str()))
        .collect();
    let touched = network::touched(&deltas, &counted);
    let network_changes = if touched.is_empty() {
        Vec::new()
    } else {
        network::changes(&counted_rollups(tx, &touched).await?, &deltas, &counted)
    };
    for (resolution, buckets) in &deltas {
        let merge: &'static MultiRow = match resolution {
            Resolution::Raw | Resolution::Minute => &MERGE_1M,
            Resolution::QuarterHour => &MERGE_15M,
            Resolution::Hour => &MERGE_1H,
        };
        let rows: Vec<_> = buckets.iter().collect();
        merge
            .run(tx, &rows, |q, &(&(series_id, bucket), agg)| {
                q.bind(series_id)
                    .bind(bucket)
                    .bind(agg.count)
                    .bind(agg.sum)
                    .bind(agg.min)
                    .bind(agg.max)
                    .bind(agg.last_ts)
                    .bind(agg.last_value)
            })
            .await?;
    }
    MERGE_NETWORK
        .run(tx, &network_changes, |q, c| {
            q.bind(c.bucket_ms)
                .bind(c.bucket)
                .bind(c.import_w)
                .bind(c.export_w)
                .bind(c.vens_reporting)
        })
        .await?;
    Ok(())
}

/// Stores `readings` (sorted by series and ts, each once) and returns
/// those that were new: all of them, unless some were stored by an earlier
/// group.
///
/// The fast path inserts them all inside a savepoint; a reading already
/// stored fails it on the primary key, and then the savepoint is rolled
/// back, the stored ones are looked up (one range query per series) and
/// the rest is inserted. The write lock is held throughout, so nothing can
/// be stored in between.
async fn store_readings(
    tx: &mut Transaction<'_, Sqlite>,
    readings: Vec<Reading>,
) -> Result<Vec<Reading>, sqlx::Error> {
    fn bind<'a>(q: SqliteQuery<'a>, r: &Reading) -> SqliteQuery<'a> {
        q.bind(r.series_id).bind(r.ts).bind(r.value)
    }
    if readings.is_empty() {
        return Ok(readings);
    }
    let mut savepoint = tx.begin().await?;
    match INSERT_READINGS.run(&mut savepoint, &readings, bind).await {
        Ok(_) => {
            savepoint.commit().await?;
            return Ok(readings);
        }
        Err(e)
            if e.as_database_error()
                .is_some_and(sqlx::error::DatabaseError::is_unique_violation) =>
        {
            savepoint.rollback().await?;
        }
        Err(e) => return Err(e),
    }
    let mut stored: HashSet<(i64, i64)> = HashSet::new();
    for run in readings.chunk_by(|a, b| a.series_id == b.series_id) {
        let (first, last) = (run[0], run[run.len() - 1]);
        let ts: Vec<i64> = sqlx::query_scalar(
            "SELECT ts FROM metrics WHERE series_id = ?1 AND ts BETWEEN ?2 AND ?3",
        )
        .bind(first.series_id)
        .bind(first.ts)
        .bind(last.ts)
        .fetch_all(&mut **tx)
        .await?;
        stored.extend(ts.into_iter().map(|ts| (first.series_id, ts)));
    }
    let fresh: Vec<Reading> = readings
        .into_iter()
        .filter(|r| !stored.contains(&(r.series_id, r.ts)))
        .collect();
    INSERT_READINGS.run(tx, &fresh, bind).await?;
    Ok(fresh)
}

/// The stored rollup rows of the counted series of the touched VENs in the
/// touched buckets (read before merging, under the write lock). The id
/// lists travel as JSON arrays of strings and integers (exact).
async fn counted_rollups(
    tx: &mut Transaction<'_, Sqlite>,
    touched: &Touched,
) -> Result<Vec<StoredRollup>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, i64, i64, f64)> = sqlx::query_as(
        "SELECT 60000, s.ven_id, r.series_id, r.bucket, r.count, r.sum \
         FROM series s JOIN metrics_1m r ON r.series_id = s.id \
         WHERE s.ven_id IN (SELECT value FROM json_each(?1)) AND s.quantity = 0 AND s.phase = 0 \
           AND r.bucket IN (SELECT value FROM json_each(?2)) \
         UNION ALL \
         SELECT 900000, s.ven_id, r.series_id, r.bucket, r.count, r.sum \
         FROM series s JOIN metrics_15m r ON r.series_id = s.id \
         WHERE s.ven_id IN (SELECT value FROM json_each(?1)) AND s.quantity = 0 AND s.phase = 0 \
           AND r.bucket IN (SELECT value FROM json_each(?3)) \
         UNION ALL \
         SELECT 3600000, s.ven_id, r.series_id, r.bucket, r.count, r.sum \
         FROM series s JOIN metrics_1h r ON r.series_id = s.id \
         WHERE s.ven_id IN (SELECT value FROM json_each(?1)) AND s.quantity = 0 AND s.phase = 0 \
           AND r.bucket IN (SELECT value FROM json_each(?4))",
    )
    .bind(serde_json::Value::from(touched.vens.clone()).to_string())
    .bind(serde_json::Value::from(touched.buckets[0].clone()).to_string())
    .bind(serde_json::Value::from(touched.buckets[1].clone()).to_string())
    .bind(serde_json::Value::from(touched.buckets[2].clone()).to_string())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(bucket_ms, ven_id, series_id, bucket, count, sum)| StoredRollup {
                bucket_ms,
                ven_id,
                series_id,
                bucket,
                count,
                sum,
            },
        )
        .collect())
}

impl SqliteStore {
    /// Applies the migrations of `migrations/sqlite`.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/sqlite")
            .run(&self.writer)
            .await
            .map_err(classify_migrate)
    }

    /// Stores a group of checked batches in one `BEGIN IMMEDIATE`
    /// transaction (see the module docs).
    pub(super) async fn ingest(
        &self,
        batches: &[IngestBatch],
    ) -> Result<IngestOutcome, StoreError> {
        let (outcome, resolved) = self.ingest_tx(batches).await?;
        self.series.extend(resolved);
        Ok(outcome)
    }

    /// Deletes the readings before `before_ms`, a day of one series per
    /// statement.
    pub(super) async fn enforce_retention(&self, before_ms: i64) -> Result<u64, StoreError> {
        let series_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM series ORDER BY id")
            .fetch_all(&self.writer)
            .await?;
        let mut deleted = 0;
        // A day of one series per statement: the write lock is never held
        // long, so ingest keeps flowing between the statements.
        for series_id in series_ids {
            loop {
                let oldest: Option<i64> =
                    sqlx::query_scalar("SELECT min(ts) FROM metrics WHERE series_id = ?1")
                        .bind(series_id)
                        .fetch_one(&self.writer)
                        .await?;
                let Some(oldest) = oldest.filter(|&ts| ts < before_ms) else {
                    break;
                };
                let end = before_ms.min((oldest.div_euclid(DAY_MS) + 1) * DAY_MS);
                deleted += sqlx::query("DELETE FROM metrics WHERE series_id = ?1 AND ts < ?2")
                    .bind(series_id)
                    .bind(end)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
            }
        }
        Ok(deleted)
    }
}

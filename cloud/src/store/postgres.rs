//! What only PostgreSQL does (the production database): connecting,
//! migrating, the bulk ingest path (`COPY` and `UNNEST` arrays), the daily
//! partitions of `metrics` and retention by dropping them. Everything else
//! is one body of SQL for both databases (see the `store` module).
//!
//! # Ingest
//!
//! One transaction per group of batches, in this order (every step sorted,
//! so concurrent ingest processes lock rows in the same order and cannot
//! deadlock):
//!
//! 1. claim the `(ven_id, batch_seq)` keys: `INSERT ... SELECT FROM
//!    UNNEST(...) ON CONFLICT DO NOTHING RETURNING` says which are new;
//! 2. upsert the VENs' freshness. This row lock also serialises two
//!    processes ingesting the same VEN, which is what makes step 4's
//!    "already stored?" check race-free;
//! 3. upsert the series not in the in-memory id cache;
//! 4. the readings of the new batches (deduplicated in memory, first one
//!    wins) go in with one binary `COPY metrics FROM STDIN` inside a
//!    savepoint. If a reading was already stored by an earlier group, the
//!    `COPY` fails on the primary key; the savepoint is rolled back, one
//!    query finds the stored ones, and the rest is copied again;
//! 5. the rollup deltas of exactly the readings stored, computed in memory
//!    (`store::rollup`), are merged into `metrics_1m`, `metrics_15m` and
//!    `metrics_1h` with `INSERT ... SELECT FROM UNNEST(...) ON CONFLICT DO
//!    UPDATE` (late data merges into its old bucket);
//! 6. `network_stats` gets the change of each touched VEN's contribution
//!    (read before step 5, see `store::network`), in one of its shards.
//!
//! No statement is sent per reading: the readings are one `COPY` stream,
//! everything else is a handful of array-bound statements per group.
//!
//! # Partitions
//!
//! `metrics` is range-partitioned by UTC day on `ts`: `metrics_pYYYYMMDD`
//! holds `[day, day + 1)`. There is no DEFAULT partition (rows in it would
//! block creating the partition they belong to). Instead, before its
//! transaction, ingest makes sure every day its readings fall on has a
//! partition: days this process has seen are cached in memory; any other
//! day is created in a short transaction of its own (serialised across
//! processes by an advisory lock, existing partitions skipped) with
//! `CREATE TABLE ... (LIKE metrics)` and `ALTER TABLE metrics ATTACH
//! PARTITION`, which takes only a SHARE UPDATE EXCLUSIVE lock on `metrics`,
//! so it neither waits for nor blocks running ingest and queries (`CREATE
//! TABLE ... PARTITION OF` would take ACCESS EXCLUSIVE). Late and early data
//! therefore never fail; a clock gone wild creates one small partition per
//! distinct day it reports. If a partition vanishes between that check and
//! the insert (retention in another process), the insert fails with "no
//! partition of relation", and ingest recreates the partition and retries
//! once. [`Store::prepare_partitions`] creates yesterday to seven days ahead
//! so the normal case never creates anything on the ingest path.
//!
//! Retention drops whole partitions that end at or before the cut-off, one
//! short transaction each: `LOCK TABLE <partition> IN SHARE MODE` (so the
//! row count is exact), `count(*)`, `DROP TABLE`. Dropping a partition needs
//! a brief ACCESS EXCLUSIVE lock on `metrics`; `lock_timeout` bounds the
//! wait to 2 s (ingest and queries queue behind it meanwhile), after which
//! retention fails with [`StoreError::Unavailable`] and can be run again.
//! A partition straddling the cut-off is kept whole. Rollups are never
//! partitioned or dropped.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr as _;
use std::sync::{Mutex, PoisonError};

use gridlink_protocol::telemetry::{MAX_TS_MS, MIN_TS_MS};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, Postgres, Row as _, Transaction};

use super::cache::{SeriesCache, SeriesKey, SeriesRow};
use super::group::{self, Claim, Reading, VenUpdate};
use super::network::{self, NetworkDelta, StoredRollup, Touched};
use super::rollup::{self, Buckets};
use super::{ConnectOptions, IngestBatch, IngestOutcome, Resolution, StoreError, classify_migrate};

/// One UTC day in ms.
const DAY_MS: i64 = 86_400_000;

/// Name prefix of the daily partitions of `metrics`.
const PARTITION_PREFIX: &str = "metrics_p";

/// Advisory lock key serialising partition DDL across processes
/// (`hashtext('gridlink.metrics_partitions')` would do as well; a constant
/// is clearer in `pg_locks`).
const PARTITION_LOCK: i64 = 0x6772_6964_6c6e_6b01;

/// How long retention waits for the lock that dropping a partition needs.
const RETENTION_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '2s'";

/// The PostgreSQL side of the store: a connection pool plus the series-id
/// and partition caches.
#[derive(Debug)]
pub(super) struct PgStore {
    pub(super) pool: PgPool,
    series: SeriesCache,
    /// Days (since the epoch) known to have a partition.
    partitions: Mutex<BTreeSet<i64>>,
}

/// One daily partition of `metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPartition {
    /// Table name, `metrics_pYYYYMMDD`.
    pub name: String,
    /// First ms it holds.
    pub from_ms: i64,
    /// First ms after it.
    pub to_ms: i64,
}

impl PgStore {
    /// Connects a pool of `options.max_connections` to `url`
    /// (`postgres://user:password@host:port/db?sslmode=...`).
    pub(super) async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?
            .application_name("gridlink-cloud");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self::from_pool(pool))
    }

    /// A store over an existing pool.
    fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            series: SeriesCache::default(),
            partitions: Mutex::new(BTreeSet::new()),
        }
    }

    /// The partitions of `metrics`, oldest first.
    pub(super) async fn metric_partitions(&self) -> Result<Vec<MetricsPartition>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(LIST_PARTITIONS)
            .fetch_all(&self.pool)
            .await?;
        let mut partitions: Vec<MetricsPartition> = names
            .into_iter()
            .filter_map(|name| {
                let day = partition_day(&name)?;
                Some(MetricsPartition {
                    name,
                    from_ms: day * DAY_MS,
                    to_ms: (day + 1) * DAY_MS,
                })
            })
            .collect();
        partitions.sort_by_key(|p| p.from_ms);
        Ok(partitions)
    }

    fn known_partitions(&self) -> std::sync::MutexGuard<'_, BTreeSet<i64>> {
        // A set of days is valid after any panic; use it as it is.
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes sure each of `days` has a partition, asking the database only
    /// about days not known to exist.
    async fn ensure_partitions(&self, days: &BTreeSet<i64>) -> Result<(), StoreError> {
        let missing: Vec<i64> = {
            let known = self.known_partitions();
            days.iter()
                .copied()
                .filter(|day| !known.contains(day))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.create_partitions(&missing).await?;
        self.known_partitions().extend(missing);
        Ok(())
    }

    /// Creates the partitions of `days` that do not exist, in one
    /// transaction under the partition lock.
    async fn create_partitions(&self, days: &[i64]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        let existing: HashSet<String> = sqlx::query_scalar(LIST_PARTITIONS)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
        let mut ddl = String::new();
        let mut created = Vec::new();
        for &day in days {
            let name = partition_name(day);
            if existing.contains(&name) {
                continue;
            }
            // The name and bounds are generated from an integer: safe to splice.
            let _ = writeln!(
                ddl,
                "CREATE TABLE {name} (LIKE metrics);\n\
                 ALTER TABLE metrics ATTACH PARTITION {name} FOR VALUES FROM ({}) TO ({});",
                day * DAY_MS,
                (day + 1) * DAY_MS
            );
            created.push(name);
        }
        if !ddl.is_empty() {
            sqlx::raw_sql(AssertSqlSafe(ddl)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        if !created.is_empty() {
            tracing::info!(partitions = ?created, "created metrics partitions");
        }
        Ok(())
    }

    /// Drops partition `name` (if it still exists); returns its row count.
    async fn drop_partition(&self, name: &str) -> Result<u64, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PARTITION_LOCK)
            .execute(&mut *tx)
            .await?;
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Ok(0);
        }
        sqlx::raw_sql(RETENTION_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await?;
        // `name` comes from the catalog and matched metrics_pYYYYMMDD.
        sqlx::raw_sql(AssertSqlSafe(format!("LOCK TABLE {name} IN SHARE MODE")))
            .execute(&mut *tx)
            .await?;
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {name}")))
            .fetch_one(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {name}")))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            partition = name,
            rows,
            "dropped metrics partition for retention"
        );
        Ok(rows as u64)
    }

    /// One attempt at storing a group (see the module docs).
    async fn ingest_once(&self, batches: &[IngestBatch]) -> Result<IngestOutcome, sqlx::Error> {
        let claims = group::claims(batches);
        let mut tx = self.pool.begin().await?;

        let claimed = claim(&mut tx, &claims).await?;
        let mut is_new = vec![false; batches.len()];
        for c in &claims {
            is_new[c.index] = claimed.contains(&(c.ven_id.to_owned(), c.batch_seq));
        }
        update_vens(&mut tx, &group::ven_updates(batches, &is_new)).await?;

        let mut ids = HashMap::new();
        let mut misses = Vec::new();
        for (key, exponent) in group::series_keys(batches, &is_new) {
            match self.series.get(&key) {
                Some(row) if row.exponent == exponent => {
                    ids.insert(key, row.id);
                }
                _ => misses.push((key, exponent)),
            }
        }
        let resolved = upsert_series(&mut tx, &misses).await?;
        ids.extend(resolved.iter().map(|(key, row)| (key.clone(), row.id)));

        let readings = store_readings(&mut tx, group::readings(batches, &is_new, &ids)).await?;
        let deltas = rollup::deltas(&readings);
        let counted: HashMap<i64, &str> = ids
            .iter()
            .filter(|(key, _)| network::counts(key))
            .map(|(key, &id)| (id, key.ven_id.as_str()))
            .collect();
        let touched = network::touched(&deltas, &counted);
        let network_changes = if touched.is_empty() {
            Vec::new()
        } else {
            network::changes(
                &counted_rollups(&mut tx, &touched).await?,
                &deltas,
                &counted,
            )
        };
        for (resolution, buckets) in &deltas {
            merge_rollup(&mut tx, *resolution, buckets).await?;
        }
        merge_network(&mut tx, &network_changes).await?;
        tx.commit().await?;
        self.series.extend(resolved);

        let inserted_batches = is_new.iter().filter(|&&new| new).count() as u64;
        Ok(IngestOutcome {
            inserted_batches,
            inserted_readings: readings.len() as u64,
            duplicate_batches: batches.len() as u64 - inserted_batches,
        })
    }
}

/// Partitions of `metrics` by name (the catalog, not the cache).
const LIST_PARTITIONS: &str = "SELECT c.relname::text FROM pg_inherits i \
     JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'metrics'::regclass";

/// Claims keys; returns those that were new.
async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    claims: &[Claim<'_>],
) -> Result<HashSet<(String, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO ingested_batches (ven_id, batch_seq, received, readings) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[]) \
         ON CONFLICT DO NOTHING RETURNING ven_id, batch_seq",
    )
    .bind(claims.iter().map(|c| c.ven_id).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.batch_seq).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.received_ms).collect::<Vec<_>>())
    .bind(claims.iter().map(|c| c.readings).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Upserts the VENs' freshness (creating unknown VENs).
async fn update_vens(
    tx: &mut Transaction<'_, Postgres>,
    updates: &[VenUpdate<'_>],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO vens AS v (ven_id, last_seen, last_reading, ingest_lag) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[]) \
         ON CONFLICT (ven_id) DO UPDATE SET \
           last_seen = GREATEST(v.last_seen, excluded.last_seen), \
           ingest_lag = CASE WHEN excluded.last_reading >= v.last_reading OR v.last_reading IS NULL \
                        THEN COALESCE(excluded.ingest_lag, v.ingest_lag) ELSE v.ingest_lag END, \
           last_reading = GREATEST(v.last_reading, excluded.last_reading)",
    )
    .bind(updates.iter().map(|u| u.ven_id).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.last_seen).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.last_reading).collect::<Vec<_>>())
    .bind(updates.iter().map(|u| u.ingest_lag).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates or finds the series of `misses` (sorted), setting their exponent.
async fn upsert_series(
    tx: &mut Transaction<'_, Postgres>,
    misses: &[(SeriesKey, i8)],
) -> Result<Vec<(SeriesKey, SeriesRow)>, sqlx::Error> {
    if misses.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "INSERT INTO series (ven_id, meter, quantity, phase, exponent) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int2[], $4::int2[], $5::int2[]) \
         ON CONFLICT (ven_id, meter, quantity, phase) DO UPDATE SET exponent = excluded.exponent \
         RETURNING id, ven_id, meter, quantity, phase",
    )
    .bind(
        misses
            .iter()
            .map(|(k, _)| k.ven_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        misses
            .iter()
            .map(|(k, _)| k.meter.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        misses
            .iter()
            .map(|(k, _)| k.quantity_code())
            .collect::<Vec<_>>(),
    )
    .bind(
        misses
            .iter()
            .map(|(k, _)| k.phase_code())
            .collect::<Vec<_>>(),
    )
    .bind(
        misses
            .iter()
            .map(|(_, e)| i16::from(*e))
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await?;
    let by_columns: HashMap<(&str, &str, i16, i16), &(SeriesKey, i8)> = misses
        .iter()
        .map(|miss| {
            let key = &miss.0;
            (
                (
                    key.ven_id.as_str(),
                    key.meter.as_str(),
                    key.quantity_code(),
                    key.phase_code(),
                ),
                miss,
            )
        })
        .collect();
    let mut resolved = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, ven_id, meter, quantity, phase): (i64, String, String, i16, i16) = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
        );
        if let Some((key, exponent)) =
            by_columns.get(&(ven_id.as_str(), meter.as_str(), quantity, phase))
        {
            resolved.push((
                key.clone(),
                SeriesRow {
                    id,
                    exponent: *exponent,
                },
            ));
        }
    }
    Ok(resolved)
}

/// Stores `readings` (sorted by series and ts, each once) and returns
/// those that were new: all of them, unless some were stored by an earlier
/// group.
///
/// The fast path is one binary `COPY` inside a savepoint. A reading already
/// stored makes it fail with a unique violation; then the savepoint is
/// rolled back, the stored ones are looked up (one query) and the rest is
/// copied. No other transaction can store readings of these series in
/// between: this one holds their VENs' rows (`update_vens`), and every
/// ingest locks those first.
async fn store_readings(
    tx: &mut Transaction<'_, Postgres>,
    readings: Vec<Reading>,
) -> Result<Vec<Reading>, sqlx::Error> {
    if readings.is_empty() {
        return Ok(readings);
    }
    let mut savepoint = tx.begin().await?;
    match copy_readings(&mut savepoint, &readings).await {
        Ok(()) => {
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
    let mut ranges: Vec<(i64, i64, i64)> = Vec::new();
    for run in readings.chunk_by(|a, b| a.series_id == b.series_id) {
        ranges.push((run[0].series_id, run[0].ts, run[run.len() - 1].ts));
    }
    let stored: HashSet<(i64, i64)> = sqlx::query_as(
        "SELECT m.series_id, m.ts FROM UNNEST($1::int8[], $2::int8[], $3::int8[]) AS r(id, lo, hi) \
         JOIN metrics m ON m.series_id = r.id AND m.ts BETWEEN r.lo AND r.hi",
    )
    .bind(ranges.iter().map(|r| r.0).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.1).collect::<Vec<_>>())
    .bind(ranges.iter().map(|r| r.2).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let fresh: Vec<Reading> = readings
        .into_iter()
        .filter(|r| !stored.contains(&(r.series_id, r.ts)))
        .collect();
    if !fresh.is_empty() {
        copy_readings(tx, &fresh).await?;
    }
    Ok(fresh)
}

/// Below this many readings, [`copy_readings`] inserts with one
/// `INSERT ... SELECT FROM UNNEST` instead of `COPY`. sqlx writes a COPY's
/// data and its `CopyDone` in two writes and does not set `TCP_NODELAY`,
/// so on TCP the second waits for the server's delayed ACK of the first
/// (about 40 ms on Linux) before the server can answer: every small
/// ingest took 44 ms. One statement is one write, with no such wait; COPY
/// stays for large groups, where the wait is a small share and COPY's
/// throughput counts.
const COPY_MIN_READINGS: usize = 2_000;

/// Stores `readings`: `COPY metrics FROM STDIN (FORMAT binary)` for large
/// sets, one `INSERT ... UNNEST` below [`COPY_MIN_READINGS`]. Both fail
/// alike (a unique violation) on a reading already stored.
async fn copy_readings(conn: &mut PgConnection, readings: &[Reading]) -> Result<(), sqlx::Error> {
    if readings.len() < COPY_MIN_READINGS {
        sqlx::query(
            "INSERT INTO metrics (series_id, ts, value) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::float8[])",
        )
        .bind(readings.iter().map(|r| r.series_id).collect::<Vec<_>>())
        .bind(readings.iter().map(|r| r.ts).collect::<Vec<_>>())
        .bind(readings.iter().map(|r| r.value).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw("COPY metrics (series_id, ts, value) FROM STDIN (FORMAT binary)")
        .await?;
    copy.send(copy_binary(readings)).await?;
    copy.finish().await?;
    Ok(())
}

/// `readings` in PostgreSQL's binary `COPY` format: a signature and two
/// zero words, then per row a field count and each field as a length and
/// big-endian bytes (int8, int8, float8), then -1.
fn copy_binary(readings: &[Reading]) -> Vec<u8> {
    const ROW: usize = 2 + 3 * (4 + 8);
    let mut buf = Vec::with_capacity(19 + readings.len() * ROW + 2);
    buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    buf.extend_from_slice(&0_i32.to_be_bytes());
    buf.extend_from_slice(&0_i32.to_be_bytes());
    for r in readings {
        buf.extend_from_slice(&3_i16.to_be_bytes());
        for field in [
            r.series_id.to_be_bytes(),
            r.ts.to_be_bytes(),
            r.value.to_bits().to_be_bytes(),
        ] {
            buf.extend_from_slice(&8_i32.to_be_bytes());
            buf.extend_from_slice(&field);
        }
    }
    buf.extend_from_slice(&(-1_i16).to_be_bytes());
    buf
}

/// Merges rollup deltas (sorted by key) into `resolution`'s table: counts
/// and sums add, min and max widen, `last` is the newer of the two.
async fn merge_rollup(
    tx: &mut Transaction<'_, Postgres>,
    resolution: Resolution,
    buckets: &Buckets,
) -> Result<(), sqlx::Error> {
    if buckets.is_empty() {
        return Ok(());
    }
    let n = buckets.len();
    let (mut series_ids, mut starts, mut counts, mut last_ts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut sums, mut mins, mut maxs, mut lasts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (&(series_id, bucket), agg) in buckets {
        series_ids.push(series_id);
        starts.push(bucket);
        counts.push(agg.count);
        sums.push(agg.sum);
        mins.push(agg.min);
        maxs.push(agg.max);
        last_ts.push(agg.last_ts);
        lasts.push(agg.last_value);
    }
    sqlx::query(merge_sql(resolution))
        .bind(series_ids)
        .bind(starts)
        .bind(counts)
        .bind(sums)
        .bind(mins)
        .bind(maxs)
        .bind(last_ts)
        .bind(lasts)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The stored rollup rows of the counted series of the touched VENs in the
/// touched buckets (read before merging; the VEN row locks keep them still).
async fn counted_rollups(
    tx: &mut Transaction<'_, Postgres>,
    touched: &Touched,
) -> Result<Vec<StoredRollup>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, i64, i64, f64)> = sqlx::query_as(
        "SELECT 60000::int8, s.ven_id, r.series_id, r.bucket, r.count, r.sum \
         FROM series s JOIN metrics_1m r ON r.series_id = s.id \
         WHERE s.ven_id = ANY($1) AND s.quantity = 0 AND s.phase = 0 AND r.bucket = ANY($2) \
         UNION ALL \
         SELECT 900000::int8, s.ven_id, r.series_id, r.bucket, r.count, r.sum \
         FROM series s JOIN metrics_15m r ON r.series_id = s.id \
         WHERE s.ven_id = ANY($1) AND s.quantity = 0 AND s.phase = 0 AND r.bucket = ANY($3) \
         UNION ALL \
         SELECT 3600000::int8, s.ven_id, r.series_id, r.bucket, r.count, r.sum \
         FROM series s JOIN metrics_1h r ON r.series_id = s.id \
         WHERE s.ven_id = ANY($1) AND s.quantity = 0 AND s.phase = 0 AND r.bucket = ANY($4)",
    )
    .bind(&touched.vens)
    .bind(&touched.buckets[0])
    .bind(&touched.buckets[1])
    .bind(&touched.buckets[2])
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

/// Adds network changes (sorted) to one shard, picked at random.
async fn merge_network(
    tx: &mut Transaction<'_, Postgres>,
    changes: &[NetworkDelta],
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO network_stats AS n (bucket_ms, bucket, shard, import_w, export_w, vens_reporting) \
         SELECT w, b, $3, i, e, v FROM UNNEST($1::int8[], $2::int8[], $4::float8[], $5::float8[], $6::int8[]) \
           AS u(w, b, i, e, v) \
         ON CONFLICT (bucket_ms, bucket, shard) DO UPDATE SET \
           import_w = n.import_w + excluded.import_w, export_w = n.export_w + excluded.export_w, \
           vens_reporting = n.vens_reporting + excluded.vens_reporting",
    )
    .bind(changes.iter().map(|c| c.bucket_ms).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.bucket).collect::<Vec<_>>())
    .bind(network::pick_shard())
    .bind(changes.iter().map(|c| c.import_w).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.export_w).collect::<Vec<_>>())
    .bind(changes.iter().map(|c| c.vens_reporting).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The merge of rollup deltas into `$table`.
macro_rules! merge_into {
    ($table:literal) => {
        concat!(
            "INSERT INTO ", $table, " AS r (series_id, bucket, count, sum, min, max, last_ts, last_value) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::float8[], $5::float8[], $6::float8[], \
                                  $7::int8[], $8::float8[]) \
             ON CONFLICT (series_id, bucket) DO UPDATE SET \
               count = r.count + excluded.count, sum = r.sum + excluded.sum, \
               min = LEAST(r.min, excluded.min), max = GREATEST(r.max, excluded.max), \
               last_value = CASE WHEN excluded.last_ts > r.last_ts THEN excluded.last_value ELSE r.last_value END, \
               last_ts = GREATEST(r.last_ts, excluded.last_ts)"
        )
    };
}

/// The merge statement of a rollup resolution (raw has none).
const fn merge_sql(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Raw | Resolution::Minute => merge_into!("metrics_1m"),
        Resolution::QuarterHour => merge_into!("metrics_15m"),
        Resolution::Hour => merge_into!("metrics_1h"),
    }
}

/// Whether `error` is PostgreSQL's "no partition of relation ... found for
/// row" (a partition was dropped under us).
fn is_missing_partition(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| {
                pg.code() == "23514" && pg.message().starts_with("no partition of relation")
            }),
        _ => false,
    }
}

/// The UTC days the readings of `batches` fall on.
fn days_of(batches: &[IngestBatch]) -> BTreeSet<i64> {
    let mut days = BTreeSet::new();
    for series in batches.iter().flat_map(|b| &b.series) {
        let mut last = None;
        for point in &series.points {
            let day = point.ts_ms.div_euclid(DAY_MS);
            if last != Some(day) {
                days.insert(day);
                last = Some(day);
            }
        }
    }
    days
}

/// `metrics_pYYYYMMDD` of a day since the epoch.
fn partition_name(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{PARTITION_PREFIX}{y:04}{m:02}{d:02}")
}

/// The day since the epoch of a `metrics_pYYYYMMDD` name.
fn partition_day(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PARTITION_PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (y, m, d) = (
        digits[..4].parse().ok()?,
        digits[4..6].parse().ok()?,
        digits[6..].parse().ok()?,
    );
    let day = days_from_civil(y, m, d);
    // Reject names that are not a real date (20260231).
    (civil_from_days(day) == (y, m, d)).then_some(day)
}

/// Proleptic Gregorian (year, month, day) of a day since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(day: i64) -> (i64, i64, i64) {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Day since 1970-01-01 of a proleptic Gregorian date (`days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl PgStore {
    /// Applies the migrations of `migrations/postgres`.
    pub(super) async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(classify_migrate)
    }

    /// Stores a group of checked batches (see the module docs): makes sure
    /// their days have partitions, then one transaction.
    pub(super) async fn ingest(
        &self,
        batches: &[IngestBatch],
    ) -> Result<IngestOutcome, StoreError> {
        let days = days_of(batches);
        self.ensure_partitions(&days).await?;
        match self.ingest_once(batches).await {
            Err(e) if is_missing_partition(&e) => {
                tracing::warn!(
                    "a metrics partition was dropped during ingest: recreating it and retrying"
                );
                self.known_partitions().clear();
                self.ensure_partitions(&days).await?;
                Ok(self.ingest_once(batches).await?)
            }
            outcome => Ok(outcome?),
        }
    }

    /// Drops the partitions ending at or before `before_ms`; returns their
    /// row count.
    pub(super) async fn enforce_retention(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for partition in self.metric_partitions().await? {
            if partition.to_ms > before_ms {
                continue;
            }
            // Forget it first: if the drop fails half-way, ingest asks again.
            self.known_partitions()
                .remove(&partition.from_ms.div_euclid(DAY_MS));
            deleted += self.drop_partition(&partition.name).await?;
        }
        Ok(deleted)
    }

    /// Creates the partitions of the previous UTC day to seven days ahead.
    pub(super) async fn prepare_partitions(&self, now_ms: i64) -> Result<(), StoreError> {
        if !(MIN_TS_MS..=MAX_TS_MS).contains(&now_ms) {
            return Err(StoreError::Invalid(format!(
                "now {now_ms} ms is outside 1970-01-01..9999-12-31"
            )));
        }
        let today = now_ms.div_euclid(DAY_MS);
        let days: Vec<i64> = (today - 1..=today + 7)
            .filter(|day| (0..=MAX_TS_MS.div_euclid(DAY_MS)).contains(day))
            .collect();
        // Asks the catalog, not the cache: another process may have dropped one.
        self.create_partitions(&days).await?;
        self.known_partitions().extend(days);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        for (day, name) in [
            (0, "metrics_p19700101"),
            (20_414, "metrics_p20251122"),
            (MAX_TS_MS.div_euclid(DAY_MS), "metrics_p99991231"),
        ] {
            assert_eq!(partition_name(day), name);
            assert_eq!(partition_day(name), Some(day));
        }
        for day in (-1000..100_000).step_by(7) {
            assert_eq!(partition_day(&partition_name(day.max(0))), Some(day.max(0)));
        }
        assert_eq!(partition_day("metrics_p20260231"), None);
        assert_eq!(partition_day("metrics_p2026011"), None);
        assert_eq!(partition_day("metrics_1m"), None);
    }

    #[test]
    fn copy_binary_layout() {
        let data = copy_binary(&[Reading {
            series_id: 7,
            ts: 1_000,
            value: -2.5,
        }]);
        assert_eq!(&data[..11], b"PGCOPY\n\xff\r\n\0");
        assert_eq!(&data[11..19], &[0; 8]);
        assert_eq!(data.len(), 19 + 38 + 2);
        assert_eq!(&data[19..21], &3_i16.to_be_bytes());
        assert_eq!(&data[21..25], &8_i32.to_be_bytes());
        assert_eq!(&data[25..33], &7_i64.to_be_bytes());
        assert_eq!(
            &data[45..57],
            &[
                &8_i32.to_be_bytes()[..],
                &(-2.5_f64).to_bits().to_be_bytes()
            ]
            .concat()[..]
        );
        assert_eq!(&data[57..], &(-1_i16).to_be_bytes());
    }

    #[test]
    fn days_of_readings() {
        let mut series = gridlink_protocol::Series::new(
            "m",
            gridlink_protocol::Quantity::Voltage,
            gridlink_protocol::Phase::L1,
            0,
        );
        for ts_ms in [DAY_MS - 1, DAY_MS, DAY_MS + 5, 10 * DAY_MS] {
            series
                .points
                .push(gridlink_protocol::Point { ts_ms, raw: 1 });
        }
        let batch = IngestBatch {
            ven_id: gridlink_protocol::VenId::new("v").unwrap(),
            batch_seq: 1,
            received_ms: 0,
            series: vec![series],
        };
        assert_eq!(
            days_of(&[batch]).into_iter().collect::<Vec<_>>(),
            [0, 1, 10]
        );
    }
}

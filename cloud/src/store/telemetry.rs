//! The core [`Store`] operations, one body for both databases: VENs, their
//! status, registration and loads, series and network reads, token lookup.
//! Ingest, migrations, partitions and retention are where the databases
//! truly differ; they are in `postgres.rs` and `sqlite.rs`.

use gridlink_protocol::{LoadSnapshot, Status, VenId};

use super::{
    AnyStore, Db, IngestBatch, IngestOutcome, LoadRecord, NetworkPoint, Resolution, Role,
    SeriesPoint, SeriesQuery, Store, StoreError, TokenRecord, VenRecord, VenRegistration,
    phase_code, quantity_code,
};
use crate::model::clock::now_ms;

/// A [`VenRecord`]'s columns: `ven_id`, `online`, `last_seen`,
/// `last_reading`, `ingest_lag`, `agent_version`, `site`, `site_meter`.
type VenRow = (
    String,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The columns of a [`VenRow`] (a macro, for `sql!`).
macro_rules! select_vens {
    () => {
        "SELECT ven_id, online, last_seen, last_reading, ingest_lag, agent_version, site, site_meter FROM vens"
    };
}

fn ven_record(row: VenRow) -> Result<VenRecord, StoreError> {
    let (
        ven_id,
        online,
        last_seen_ms,
        last_reading_ms,
        ingest_lag_ms,
        agent_version,
        site,
        site_meter,
    ) = row;
    Ok(VenRecord {
        ven_id: VenId::new(ven_id)
            .map_err(|e| StoreError::Invalid(format!("stored ven id: {e}")))?,
        online,
        last_seen_ms,
        last_reading_ms,
        ingest_lag_ms,
        agent_version,
        site,
        site_meter,
    })
}

/// A [`LoadRecord`]'s columns, the cause as JSON text.
type LoadRow = (
    String,
    bool,
    Option<f64>,
    Option<f64>,
    bool,
    Option<i64>,
    String,
    i64,
);

/// The series id of `$1..$4` (ven, meter, quantity, phase), as a subquery.
macro_rules! series_query {
    ($select:literal, $table:literal, $ts:literal) => {
        concat!(
            "SELECT ", $select, " FROM ", $table,
            " WHERE series_id = (SELECT id FROM series WHERE ven_id = $1 AND meter = $2 AND quantity = $3 AND phase = $4)",
            " AND ", $ts, " >= $5 AND ", $ts, " < $6 ORDER BY ", $ts, " LIMIT $7"
        )
    };
}

/// The query reading `resolution`.
const fn series_sql(resolution: Resolution) -> &'static str {
    match resolution {
        Resolution::Raw => {
            series_query!(
                "ts, CAST(1 AS BIGINT), value, value, value, value",
                "metrics",
                "ts"
            )
        }
        Resolution::Minute => series_query!(
            "bucket, count, sum, min, max, last_value",
            "metrics_1m",
            "bucket"
        ),
        Resolution::QuarterHour => series_query!(
            "bucket, count, sum, min, max, last_value",
            "metrics_15m",
            "bucket"
        ),
        Resolution::Hour => series_query!(
            "bucket, count, sum, min, max, last_value",
            "metrics_1h",
            "bucket"
        ),
    }
}

impl Store for AnyStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.migrate().await,
            Db::Sqlite(lite) => lite.migrate().await,
        }
    }

    async fn ingest(&self, batches: &[IngestBatch]) -> Result<IngestOutcome, StoreError> {
        if batches.is_empty() {
            return Ok(IngestOutcome::default());
        }
        super::group::validate(batches)?;
        match &self.db {
            Db::Postgres(pg) => pg.ingest(batches).await,
            Db::Sqlite(lite) => lite.ingest(batches).await,
        }
    }

    async fn record_status(&self, status: &Status, received_ms: i64) -> Result<(), StoreError> {
        let sql = sql!(dialect self.dialect();
            "INSERT INTO vens AS v (ven_id, online, last_seen, agent_version) \
             VALUES ($1, $2, $3, NULLIF($4, '')) \
             ON CONFLICT (ven_id) DO UPDATE SET online = excluded.online, \
               last_seen = ", greatest, "(COALESCE(v.last_seen, excluded.last_seen), excluded.last_seen), \
               agent_version = COALESCE(excluded.agent_version, v.agent_version)"
        );
        exec!(self.writer(), |pool| sqlx::query(sql)
            .bind(status.ven_id.as_str())
            .bind(status.online)
            .bind(received_ms)
            .bind(status.agent_version.as_str())
            .execute(pool)
            .await)?;
        Ok(())
    }

    async fn register_ven(
        &self,
        ven_id: &VenId,
        registration: &VenRegistration,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        registration
            .check()
            .map_err(|(field, reason)| StoreError::Invalid(format!("{field}: {reason}")))?;
        let startup = serde_json::to_string(&gridlink_protocol::LoadChangeCause::Startup)
            .map_err(|e| StoreError::Invalid(format!("load cause: {e}")))?;
        // The VEN row lock (PostgreSQL) or the one writer (SQLite)
        // serialises this with `record_loads` of the same VEN, so a
        // snapshot is never overwritten by registered loads.
        let mut tx = self.begin().await?;
        let no_snapshot: bool = run!(tx.conn(), |c| sqlx::query_scalar(
            "INSERT INTO vens AS v (ven_id, site, site_meter) VALUES ($1, $2, $3) \
             ON CONFLICT (ven_id) DO UPDATE SET site = excluded.site, \
               site_meter = COALESCE(excluded.site_meter, v.site_meter) \
             RETURNING loads_at IS NULL",
        )
        .bind(ven_id.as_str())
        .bind(registration.site.as_str())
        .bind(registration.site_meter.as_deref())
        .fetch_one(c)
        .await)?;
        if let Some(groups) = &registration.groups {
            super::dr::replace_groups(&mut tx, ven_id, groups).await?;
        }
        let unchanged = match (no_snapshot, &registration.loads) {
            (true, Some(loads)) => {
                let sql = sql!(dialect tx.dialect();
                    "SELECT name, power_w, controllable FROM loads WHERE ven_id = $1 ORDER BY name",
                    collate_c
                );
                let stored: Vec<(String, Option<f64>, bool)> =
                    run!(tx.conn(), |c| sqlx::query_as(sql)
                        .bind(ven_id.as_str())
                        .fetch_all(c)
                        .await)?;
                stored == super::registered_rows(loads)
            }
            _ => true,
        };
        // A repeat with the same loads changes nothing (not even their time).
        if let (false, Some(loads)) = (unchanged, &registration.loads) {
            exec!(tx.conn(), |c| sqlx::query(
                "DELETE FROM loads WHERE ven_id = $1"
            )
            .bind(ven_id.as_str())
            .execute(c)
            .await)?;
            // The list of loads: arrays on PostgreSQL, JSON on SQLite.
            match tx.conn() {
                Db::Postgres(c) => sqlx::query(
                    "INSERT INTO loads (ven_id, name, is_on, power_w, setpoint, controllable, last_change, cause, snapshot) \
                     SELECT $1, n, true, p, NULL, c, NULL, $5::text::jsonb, $6 \
                     FROM UNNEST($2::text[], $3::float8[], $4::bool[]) AS u(n, p, c)",
                )
                .bind(ven_id.as_str())
                .bind(loads.iter().map(|l| l.name.as_str()).collect::<Vec<_>>())
                .bind(loads.iter().map(|l| l.rated_power_w).collect::<Vec<_>>())
                .bind(loads.iter().map(|l| l.controllable).collect::<Vec<_>>())
                .bind(startup.as_str())
                .bind(now_ms)
                .execute(c)
                .await
                .map(drop)?,
                Db::Sqlite(c) => sqlx::query(
                    "INSERT INTO loads (ven_id, name, is_on, power_w, setpoint, controllable, last_change, cause, snapshot) \
                     SELECT ?1, json_extract(value, '$.name'), 1, json_extract(value, '$.power_w'), NULL, \
                       json_extract(value, '$.controllable'), NULL, ?3, ?4 \
                     FROM json_each(?2)",
                )
                .bind(ven_id.as_str())
                .bind(
                    serde_json::Value::Array(
                        loads
                            .iter()
                            .map(|l| {
                                serde_json::json!({
                                    "name": l.name, "power_w": l.rated_power_w, "controllable": l.controllable
                                })
                            })
                            .collect(),
                    )
                    .to_string(),
                )
                .bind(startup.as_str())
                .bind(now_ms)
                .execute(c)
                .await
                .map(drop)?,
            }
        }
        tx.commit().await
    }

    async fn record_loads(
        &self,
        snapshot: &LoadSnapshot,
        received_ms: i64,
    ) -> Result<(), StoreError> {
        let at = snapshot.at.unix_ms();
        let causes = snapshot
            .loads
            .iter()
            .map(|l| serde_json::to_string(&l.cause))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StoreError::Invalid(format!("load cause: {e}")))?;
        let mut tx = self.begin().await?;
        // Newer or equal snapshot time wins; the VEN row lock (PostgreSQL)
        // or the one writer (SQLite) serialises concurrent snapshots.
        let sql = sql!(dialect tx.dialect();
            "INSERT INTO vens AS v (ven_id, last_seen, loads_at) VALUES ($1, $2, $3) \
             ON CONFLICT (ven_id) DO UPDATE SET \
               last_seen = ", greatest, "(COALESCE(v.last_seen, excluded.last_seen), excluded.last_seen), \
               loads_at = ", greatest, "(COALESCE(v.loads_at, excluded.loads_at), excluded.loads_at) \
             RETURNING loads_at = $3"
        );
        let applies: bool = run!(tx.conn(), |c| sqlx::query_scalar(sql)
            .bind(snapshot.ven_id.as_str())
            .bind(received_ms)
            .bind(at)
            .fetch_one(c)
            .await)?;
        if applies {
            exec!(tx.conn(), |c| sqlx::query(
                "DELETE FROM loads WHERE ven_id = $1"
            )
            .bind(snapshot.ven_id.as_str())
            .execute(c)
            .await)?;
            // The list of loads: arrays on PostgreSQL; on SQLite one
            // prepared insert per load (its fast path).
            match tx.conn() {
                Db::Postgres(c) => {
                    sqlx::query(
                        "INSERT INTO loads (ven_id, name, is_on, power_w, setpoint, controllable, last_change, cause, snapshot) \
                         SELECT $1, n, o, p, s, c, l, j::jsonb, $9 \
                         FROM UNNEST($2::text[], $3::bool[], $4::float8[], $5::float8[], $6::bool[], $7::int8[], $8::text[]) \
                           AS u(n, o, p, s, c, l, j)",
                    )
                    .bind(snapshot.ven_id.as_str())
                    .bind(snapshot.loads.iter().map(|l| l.name.as_str()).collect::<Vec<_>>())
                    .bind(snapshot.loads.iter().map(|l| l.on).collect::<Vec<_>>())
                    .bind(snapshot.loads.iter().map(|l| l.power_w).collect::<Vec<_>>())
                    .bind(snapshot.loads.iter().map(|l| l.setpoint).collect::<Vec<_>>())
                    .bind(snapshot.loads.iter().map(|l| l.controllable).collect::<Vec<_>>())
                    .bind(snapshot.loads.iter().map(|l| l.last_change.map(gridlink_protocol::Timestamp::unix_ms)).collect::<Vec<_>>())
                    .bind(&causes)
                    .bind(at)
                    .execute(c)
                    .await?;
                }
                Db::Sqlite(c) => {
                    for (load, cause) in snapshot.loads.iter().zip(&causes) {
                        sqlx::query(
                            "INSERT INTO loads (ven_id, name, is_on, power_w, setpoint, controllable, last_change, cause, snapshot) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        )
                        .bind(snapshot.ven_id.as_str())
                        .bind(load.name.as_str())
                        .bind(load.on)
                        .bind(load.power_w)
                        .bind(load.setpoint)
                        .bind(load.controllable)
                        .bind(load.last_change.map(gridlink_protocol::Timestamp::unix_ms))
                        .bind(cause.as_str())
                        .bind(at)
                        .execute(&mut *c)
                        .await?;
                    }
                }
            }
        }
        tx.commit().await
    }

    async fn vens(&self) -> Result<Vec<VenRecord>, StoreError> {
        let sql = sql!(dialect self.dialect(); {select_vens!()}, " ORDER BY ven_id", collate_c);
        let rows: Vec<VenRow> = run!(self.reader(), |pool| sqlx::query_as(sql)
            .fetch_all(pool)
            .await)?;
        rows.into_iter().map(ven_record).collect()
    }

    async fn ven(&self, ven_id: &VenId) -> Result<Option<VenRecord>, StoreError> {
        let row: Option<VenRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            select_vens!(),
            " WHERE ven_id = $1"
        ))
        .bind(ven_id.as_str())
        .fetch_optional(pool)
        .await)?;
        row.map(ven_record).transpose()
    }

    async fn loads(&self, ven_id: &VenId) -> Result<Vec<LoadRecord>, StoreError> {
        let sql = sql!(dialect self.dialect();
            "SELECT name, is_on, power_w, setpoint, controllable, last_change, ", [text "cause"], ", snapshot \
             FROM loads WHERE ven_id = $1 ORDER BY name", collate_c
        );
        let rows: Vec<LoadRow> = run!(self.reader(), |pool| sqlx::query_as(sql)
            .bind(ven_id.as_str())
            .fetch_all(pool)
            .await)?;
        rows.into_iter()
            .map(
                |(
                    name,
                    on,
                    power_w,
                    setpoint,
                    controllable,
                    last_change_ms,
                    cause,
                    snapshot_ms,
                )| {
                    Ok(LoadRecord {
                        name,
                        on,
                        power_w,
                        setpoint,
                        controllable,
                        last_change_ms,
                        cause: serde_json::from_str(&cause)
                            .map_err(|e| StoreError::Invalid(format!("stored load cause: {e}")))?,
                        snapshot_ms,
                    })
                },
            )
            .collect()
    }

    async fn series(&self, query: &SeriesQuery) -> Result<Vec<SeriesPoint>, StoreError> {
        let rows: Vec<(i64, i64, f64, f64, f64, f64)> = run!(self.reader(), |pool| {
            sqlx::query_as(series_sql(query.resolution))
                .bind(query.ven_id.as_str())
                .bind(query.meter.as_str())
                .bind(quantity_code(query.quantity))
                .bind(phase_code(query.phase))
                .bind(query.from_ms)
                .bind(query.to_ms)
                .bind(i64::from(query.limit))
                .fetch_all(pool)
                .await
        })?;
        Ok(rows
            .into_iter()
            .map(|(ts_ms, count, sum, min, max, last)| SeriesPoint {
                ts_ms,
                avg: sum / count as f64,
                min,
                max,
                last,
                count: count as u64,
            })
            .collect())
    }

    async fn network(
        &self,
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<NetworkPoint>, StoreError> {
        let bucket_ms = match resolution {
            Resolution::Raw => Resolution::Minute.bucket_ms(),
            rollup => rollup.bucket_ms(),
        };
        let rows: Vec<(i64, f64, f64, i64)> = run!(self.reader(), |pool| sqlx::query_as(
            "SELECT bucket, sum(import_w), sum(export_w), CAST(sum(vens_reporting) AS BIGINT) \
             FROM network_stats WHERE bucket_ms = $1 AND bucket >= $2 AND bucket < $3 \
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(bucket_ms)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|(ts_ms, import_w, export_w, vens)| NetworkPoint {
                ts_ms,
                import_w,
                export_w,
                vens_reporting: vens as u64,
            })
            .collect())
    }

    async fn create_token(
        &self,
        name: &str,
        role: Role,
        hash: &[u8; 32],
    ) -> Result<TokenRecord, StoreError> {
        super::TokenStore::create_expiring_token(self, name, role, hash, now_ms(), None).await
    }

    async fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>, StoreError> {
        let row: Option<super::tokens::TokenRow> = run!(self.reader(), |pool| sqlx::query_as(
            sqlx::AssertSqlSafe(format!(
                "SELECT {} FROM api_tokens WHERE hash = $1",
                super::tokens::TOKEN_COLUMNS
            ))
        )
        .bind(hash.as_slice())
        .fetch_optional(pool)
        .await)?;
        row.map(super::tokens::token_record).transpose()
    }

    async fn enforce_retention(&self, before_ms: i64) -> Result<u64, StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.enforce_retention(before_ms).await,
            Db::Sqlite(lite) => lite.enforce_retention(before_ms).await,
        }
    }

    async fn prepare_partitions(&self, now_ms: i64) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pg) => pg.prepare_partitions(now_ms).await,
            // One table, no partitions.
            Db::Sqlite(_) => Ok(()),
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        exec!(self.reader(), |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await)?;
        Ok(())
    }
}

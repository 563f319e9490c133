//! What the daily export (`crate::export`) reads and the lease that keeps
//! several `serve` processes from exporting one day at once.
//!
//! Readings are read a series at a time and paged by time (`LIMIT`), so an
//! export holds at most one page in memory whatever the size of the day.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::{ExportLease, ExportStore};
//!
//! let (from, to) = (1_763_596_800_000, 1_763_683_200_000);
//! match store.export_lease("2025-11-20", "host-1", 0, 600_000, false).await? {
//!     ExportLease::Acquired => {
//!         for ven in store.export_vens(from, to).await? {
//!             for series in store.export_series(&ven).await? {
//!                 let page = store.export_readings(series.id, from, to, 65_536).await?;
//!                 # let _ = page;
//!             }
//!         }
//!         store.export_done("2025-11-20", "host-1", 0, 0).await?;
//!     }
//!     ExportLease::Held { .. } | ExportLease::Done { .. } => {}
//! }
//! # Ok(()) }
//! ```

use std::future::Future;

use gridlink_protocol::{Phase, Quantity, VenId};

use super::{AnyStore, StoreError};

/// One series of a VEN, as the export names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSeries {
    /// The series id (`series.id`), for [`ExportStore::export_readings`].
    pub id: i64,
    /// The meter's name.
    pub meter: String,
    /// The quantity.
    pub quantity: Quantity,
    /// The phase.
    pub phase: Phase,
}

/// What the store knows about a VEN's site (from registration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportVenInfo {
    /// The site's name, `None` if the VEN is not registered.
    pub site: Option<String>,
    /// The site's grid meter, `None` if not registered.
    pub site_meter: Option<String>,
    /// The VEN's DR groups, in byte order.
    pub groups: Vec<String>,
}

/// The outcome of [`ExportStore::export_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLease {
    /// The caller holds the day until the lease expires.
    Acquired,
    /// Another holder has the day and its lease has not expired.
    Held {
        /// Who holds it.
        holder: String,
        /// Lease end, ms since the Unix epoch.
        expires_ms: i64,
    },
    /// The day was exported (and `force` was not given).
    Done {
        /// When it completed, ms since the Unix epoch.
        done_ms: i64,
    },
}

/// Reads for the daily export, and its per-day lease.
pub trait ExportStore: Send + Sync {
    /// The VENs with at least one reading in `from_ms..to_ms`, by id (byte
    /// order).
    fn export_vens(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<VenId>, StoreError>> + Send;

    /// A VEN's series, by meter (byte order), quantity and phase code.
    fn export_series(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<Vec<ExportSeries>, StoreError>> + Send;

    /// At most `limit` raw readings `(ts_ms, value)` of series `series_id`
    /// with `from_ms <= ts < to_ms`, oldest first. Page by calling again
    /// with `from_ms` one past the last `ts_ms` returned.
    fn export_readings(
        &self,
        series_id: i64,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(i64, f64)>, StoreError>> + Send;

    /// The registration data of a VEN; `None` if the VEN is unknown.
    fn export_ven_info(
        &self,
        ven_id: &VenId,
    ) -> impl Future<Output = Result<Option<ExportVenInfo>, StoreError>> + Send;

    /// Takes (or renews) the lease on `day` for `holder` until `now_ms +
    /// ttl_ms`: granted when no one holds the day, the lease expired, or
    /// `holder` already holds it; refused when the day is done unless
    /// `force` (a re-run by hand), which marks it not done again.
    fn export_lease(
        &self,
        day: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        force: bool,
    ) -> impl Future<Output = Result<ExportLease, StoreError>> + Send;

    /// Marks `day` done by `holder` (its lease ends). Fails with
    /// [`StoreError::Conflict`] if `holder` no longer holds the day.
    fn export_done(
        &self,
        day: &str,
        holder: &str,
        now_ms: i64,
        rows: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives up `holder`'s lease on `day` (after a failure), so another
    /// process may retry at once.
    fn export_release(
        &self,
        day: &str,
        holder: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

fn series_row(
    (id, meter, quantity, phase): (i64, String, i16, i16),
) -> Result<ExportSeries, StoreError> {
    let quantity = usize::try_from(quantity)
        .ok()
        .and_then(|i| Quantity::ALL.get(i).copied())
        .ok_or_else(|| StoreError::Invalid(format!("series {id}: unknown quantity {quantity}")))?;
    let phase = usize::try_from(phase)
        .ok()
        .and_then(|i| Phase::ALL.get(i).copied())
        .ok_or_else(|| StoreError::Invalid(format!("series {id}: unknown phase {phase}")))?;
    Ok(ExportSeries {
        id,
        meter,
        quantity,
        phase,
    })
}

fn ven_ids(rows: Vec<(String,)>) -> Result<Vec<VenId>, StoreError> {
    rows.into_iter()
        .map(|(id,)| {
            VenId::new(id.clone())
                .map_err(|e| StoreError::Invalid(format!("stored VEN id {id:?}: {e}")))
        })
        .collect()
}

fn lease_state(row: Option<(String, i64, Option<i64>)>) -> ExportLease {
    match row {
        Some((_, _, Some(done_ms))) => ExportLease::Done { done_ms },
        Some((holder, expires_ms, None)) => ExportLease::Held { holder, expires_ms },
        // Deleted between the two statements: nobody holds it.
        None => ExportLease::Held {
            holder: String::new(),
            expires_ms: 0,
        },
    }
}

fn rows_i64(rows: u64) -> Result<i64, StoreError> {
    i64::try_from(rows).map_err(|_| StoreError::Invalid(format!("{rows} rows out of range")))
}

impl ExportStore for AnyStore {
    async fn export_vens(&self, from_ms: i64, to_ms: i64) -> Result<Vec<VenId>, StoreError> {
        let rows: Vec<(String,)> = run!(self.reader(), |pool| sqlx::query_as(
            sql!(pool; "SELECT v.ven_id FROM vens v WHERE EXISTS \
             (SELECT 1 FROM series s JOIN metrics m ON m.series_id = s.id \
              WHERE s.ven_id = v.ven_id AND m.ts >= $1 AND m.ts < $2) \
             ORDER BY v.ven_id", collate_c)
        )
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await)?;
        ven_ids(rows)
    }

    async fn export_series(&self, ven_id: &VenId) -> Result<Vec<ExportSeries>, StoreError> {
        let rows: Vec<(i64, String, i16, i16)> = run!(self.reader(), |pool| sqlx::query_as(
            sql!(pool; "SELECT id, meter, quantity, phase FROM series WHERE ven_id = $1 \
             ORDER BY meter", collate_c, ", quantity, phase")
        )
        .bind(ven_id.as_str())
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(series_row).collect()
    }

    async fn export_readings(
        &self,
        series_id: i64,
        from_ms: i64,
        to_ms: i64,
        limit: u32,
    ) -> Result<Vec<(i64, f64)>, StoreError> {
        Ok(run!(self.reader(), |pool| sqlx::query_as(
            "SELECT ts, value FROM metrics WHERE series_id = $1 AND ts >= $2 AND ts < $3 \
             ORDER BY ts LIMIT $4",
        )
        .bind(series_id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?)
    }

    async fn export_ven_info(&self, ven_id: &VenId) -> Result<Option<ExportVenInfo>, StoreError> {
        let row: Option<(Option<String>, Option<String>)> =
            run!(self.reader(), |pool| sqlx::query_as(
                "SELECT site, site_meter FROM vens WHERE ven_id = $1"
            )
            .bind(ven_id.as_str())
            .fetch_optional(pool)
            .await)?;
        let Some((site, site_meter)) = row else {
            return Ok(None);
        };
        let groups: Vec<(String,)> = run!(self.reader(), |pool| {
            sqlx::query_as(sql!(pool; "SELECT group_name FROM ven_groups WHERE ven_id = $1 ORDER BY group_name", collate_c))
        .bind(ven_id.as_str())
        .fetch_all(pool).await
        })?;
        Ok(Some(ExportVenInfo {
            site,
            site_meter,
            groups: groups.into_iter().map(|(g,)| g).collect(),
        }))
    }

    async fn export_lease(
        &self,
        day: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        force: bool,
    ) -> Result<ExportLease, StoreError> {
        let taken = exec!(self.writer(), |pool| sqlx::query(
            "INSERT INTO export_days (day, holder, expires) VALUES ($1, $2, $3) \
             ON CONFLICT (day) DO UPDATE SET holder = excluded.holder, expires = excluded.expires, \
             done = CASE WHEN $5 THEN NULL ELSE export_days.done END \
             WHERE (export_days.done IS NULL OR $5) \
             AND (export_days.expires < $4 OR export_days.holder = excluded.holder \
                  OR export_days.done IS NOT NULL)",
        )
        .bind(day)
        .bind(holder)
        .bind(now_ms.saturating_add(ttl_ms))
        .bind(now_ms)
        .bind(force)
        .execute(pool)
        .await)?;
        if taken == 1 {
            return Ok(ExportLease::Acquired);
        }
        let row: Option<(String, i64, Option<i64>)> = run!(self.writer(), |pool| sqlx::query_as(
            "SELECT holder, expires, done FROM export_days WHERE day = $1"
        )
        .bind(day)
        .fetch_optional(pool)
        .await)?;
        Ok(lease_state(row))
    }

    async fn export_done(
        &self,
        day: &str,
        holder: &str,
        now_ms: i64,
        rows: u64,
    ) -> Result<(), StoreError> {
        let updated = exec!(self.writer(), |pool| sqlx::query(
            "UPDATE export_days SET done = $3, rows = $4, expires = $3 \
             WHERE day = $1 AND holder = $2 AND done IS NULL",
        )
        .bind(day)
        .bind(holder)
        .bind(now_ms)
        .bind(rows_i64(rows)?)
        .execute(pool)
        .await)?;
        if updated == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!(
                "the export lease on {day} is no longer held by {holder}"
            )))
        }
    }

    async fn export_release(&self, day: &str, holder: &str) -> Result<(), StoreError> {
        exec!(self.writer(), |pool| sqlx::query(
            "UPDATE export_days SET expires = 0 WHERE day = $1 AND holder = $2 AND done IS NULL",
        )
        .bind(day)
        .bind(holder)
        .execute(pool)
        .await)?;
        Ok(())
    }
}

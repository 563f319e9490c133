//! Energy projects: the projects with their VENs and milestones, their
//! finance entries, and the reads their energy and DR revenue need (the
//! VENs' energy series, 1-hour rollup rows, the events of the VENs)
//! ([`ProjectStore`], a supertrait of [`Store`](super::Store)). The
//! computations are in [`crate::projects`].
//!
//! Money is stored as integer minor units (`amount_minor`, cents), never
//! as a float.
//!
//! ```no_run
//! # async fn demo(store: gridlink_cloud::store::AnyStore) -> Result<(), gridlink_cloud::store::StoreError> {
//! use gridlink_cloud::store::ProjectStore;
//!
//! for project in store.projects().await? {
//!     println!("{} has {} VENs", project.name, project.ven_ids.len());
//! }
//! // What an alert rule calls periodically: each milestone once, when reached.
//! for m in gridlink_cloud::projects::refresh_all_milestones(&store).await? {
//!     println!("project {}: {} reached at {}", m.project_id, m.name, m.reached_ms);
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::future::Future;

use gridlink_protocol::{ObjectId, VenId};
use sqlx::AssertSqlSafe;

use super::dr::{json_list, object_id, ven_id};
use super::{AnyStore, Db, PgStore, SqliteStore, StoreError};
use crate::model::projects::{
    DayRow, EnergySeries, FinanceKind, HourRow, MilestoneQuantity, ProjectKind, ProjectStatus,
};

/// A milestone as written: reach `threshold_kwh` of `quantity`.
#[derive(Debug, Clone, PartialEq)]
pub struct MilestoneWrite {
    /// Unique within the project.
    pub name: String,
    /// The running total it watches.
    pub quantity: MilestoneQuantity,
    /// kWh, above 0.
    pub threshold_kwh: f64,
}

/// A stored milestone.
#[derive(Debug, Clone, PartialEq)]
pub struct MilestoneRecord {
    /// Its name.
    pub name: String,
    /// The running total it watches.
    pub quantity: MilestoneQuantity,
    /// kWh.
    pub threshold_kwh: f64,
    /// When it was reached (ms), once recorded; `None` before.
    pub reached_ms: Option<i64>,
}

/// What a project is created or replaced with.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectWrite {
    /// Unique name.
    pub name: String,
    /// Renewable or flexibility.
    pub kind: ProjectKind,
    /// Life-cycle status.
    pub status: ProjectStatus,
    /// Capacity, kW (at least 0).
    pub capacity_kw: f64,
    /// Degrees, -90 to 90.
    pub latitude: f64,
    /// Degrees, -180 to 180.
    pub longitude: f64,
    /// Postal address, if given.
    pub address: Option<String>,
    /// ISO 4217 code its finances are kept in.
    pub currency: String,
    /// Its VENs (known to the store), by id, no repeats.
    pub ven_ids: Vec<VenId>,
    /// Its milestones, in order, names unique.
    pub milestones: Vec<MilestoneWrite>,
}

/// A stored project.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRecord {
    /// Store-assigned id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Renewable or flexibility.
    pub kind: ProjectKind,
    /// Life-cycle status.
    pub status: ProjectStatus,
    /// Capacity, kW.
    pub capacity_kw: f64,
    /// Degrees.
    pub latitude: f64,
    /// Degrees.
    pub longitude: f64,
    /// Postal address.
    pub address: Option<String>,
    /// ISO 4217 code of its finances.
    pub currency: String,
    /// Its VENs, by id.
    pub ven_ids: Vec<VenId>,
    /// Its milestones, in the order given.
    pub milestones: Vec<MilestoneRecord>,
    /// Creation time, ms.
    pub created_ms: i64,
    /// Last replacement, ms.
    pub updated_ms: i64,
}

/// A finance entry as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinanceWrite {
    /// Expense or revenue.
    pub kind: FinanceKind,
    /// Amount in minor units (cents), at least 0.
    pub amount_minor: i64,
    /// ISO 4217 code (the project's).
    pub currency: String,
    /// Booking time, ms.
    pub at_ms: i64,
    /// Free category ("maintenance").
    pub category: Option<String>,
    /// Free text.
    pub description: Option<String>,
}

/// A stored finance entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinanceRecord {
    /// Store-assigned id.
    pub id: i64,
    /// Its project.
    pub project_id: i64,
    /// What was written.
    pub entry: FinanceWrite,
    /// When it was stored, ms.
    pub created_ms: i64,
}

/// A VEN's registered site meter and its energy series (phase `total`).
pub type VenEnergySeries = (VenId, Option<String>, Vec<EnergySeries>);

/// An event that was sent to some of a project's VENs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectEvent {
    /// The event.
    pub event_id: ObjectId,
    /// Those of the project's VENs it was sent to (and not withdrawn), by id.
    pub vens: Vec<VenId>,
}

/// Storage of projects and their finances (both backends).
pub trait ProjectStore {
    /// Stores a new project; a name already used is a unique violation (409).
    fn create_project(
        &self,
        project: &ProjectWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<ProjectRecord, StoreError>> + Send;
    /// Replaces a project (all fields, VENs and milestones); a milestone
    /// with the same name, quantity and threshold keeps its `reached_ms`.
    /// `None` if there is none.
    fn update_project(
        &self,
        id: i64,
        project: &ProjectWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<ProjectRecord>, StoreError>> + Send;
    /// One project.
    fn project(
        &self,
        id: i64,
    ) -> impl Future<Output = Result<Option<ProjectRecord>, StoreError>> + Send;
    /// Every project, by id.
    fn projects(&self) -> impl Future<Output = Result<Vec<ProjectRecord>, StoreError>> + Send;
    /// Records that a milestone was reached at `reached_ms`, if it is not
    /// recorded yet; whether this call recorded it.
    fn set_milestone_reached(
        &self,
        project_id: i64,
        name: &str,
        reached_ms: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Stores a finance entry; `None` if the project does not exist.
    fn add_finance_entry(
        &self,
        project_id: i64,
        entry: &FinanceWrite,
        now_ms: i64,
    ) -> impl Future<Output = Result<Option<FinanceRecord>, StoreError>> + Send;
    /// The project's entries with `from_ms <= at < to_ms`, by time then id.
    fn finance_entries(
        &self,
        project_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<FinanceRecord>, StoreError>> + Send;
    /// Deletes an entry of the project; whether there was one.
    fn delete_finance_entry(
        &self,
        project_id: i64,
        entry_id: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Per VEN (known ones only): its registered site meter and its
    /// `active_power`, `energy_import` and `energy_export` series on phase
    /// `total`.
    fn energy_series(
        &self,
        vens: &[VenId],
    ) -> impl Future<Output = Result<Vec<VenEnergySeries>, StoreError>> + Send;
    /// The 1-hour rollup rows of these series with `from_ms <= bucket <
    /// to_ms`, by series then bucket.
    fn hour_rows(
        &self,
        series_ids: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<HourRow>, StoreError>> + Send;
    /// Per series and UTC day with `from_ms <= day < to_ms` (`from_ms` a
    /// day start, at least 0), the day's energy from the 1-hour rollups:
    /// the counter increase (each hour: its last value minus the previous
    /// hour's with readings, that hour may be before `from_ms`; the last
    /// minus the smallest value when there is none or the counter went
    /// down), and the positive and negative hourly means (Wh). By series
    /// then day.
    fn day_rows(
        &self,
        series_ids: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<DayRow>, StoreError>> + Send;
    /// Per series, its newest 1-hour row with `bucket < before_ms`.
    fn hour_rows_before(
        &self,
        series_ids: &[i64],
        before_ms: i64,
    ) -> impl Future<Output = Result<Vec<HourRow>, StoreError>> + Send;
    /// Undeleted events sent to any of `vens` whose end is in `[from_ms,
    /// to_ms)`, by end then id.
    fn project_events(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> impl Future<Output = Result<Vec<ProjectEvent>, StoreError>> + Send;
}

/// [`sql_text`], asserted safe: every text passed is a constant of this
/// file (table and column names), never input; values are bound.
fn sql(postgres: bool, text: &str) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql_text(postgres, text))
}

/// `TEXTS($n)` / `INTS($n)` (a JSON list bound as text) and `$n`
/// placeholders in the backend's syntax.
fn sql_text(postgres: bool, text: &str) -> String {
    let mut out = text.to_owned();
    for n in 1..=4 {
        let (texts, ints) = if postgres {
            (
                format!("(SELECT value FROM json_array_elements_text(${n}::json))"),
                format!("(SELECT value::bigint FROM json_array_elements_text(${n}::json))"),
            )
        } else {
            (
                format!("(SELECT value FROM json_each(${n}))"),
                format!("(SELECT value FROM json_each(${n}))"),
            )
        };
        out = out
            .replace(&format!("TEXTS(${n})"), &texts)
            .replace(&format!("INTS(${n})"), &ints);
    }
    if postgres { out } else { out.replace('$', "?") }
}

type ProjectRow = (
    i64,
    String,
    String,
    String,
    f64,
    f64,
    f64,
    Option<String>,
    String,
    i64,
    i64,
);
type MilestoneRow = (i64, String, String, f64, Option<i64>);
type FinanceRow = (
    i64,
    i64,
    String,
    i64,
    String,
    i64,
    Option<String>,
    Option<String>,
    i64,
);
type HourTuple = (i64, i64, i64, f64, f64, i64, f64);

const PROJECT_COLUMNS: &str = "id, name, kind, status, capacity_kw, latitude, longitude, address, \
     currency, created, updated";
const FINANCE_COLUMNS: &str =
    "id, project_id, kind, amount_minor, currency, at, category, description, created";
const HOUR_COLUMNS: &str = "series_id, bucket, count, sum, min, last_ts, last_value";

fn stored<T, E: std::fmt::Display>(what: &str, parsed: Result<T, E>) -> Result<T, StoreError> {
    parsed.map_err(|e| StoreError::Invalid(format!("stored {what}: {e}")))
}

/// Builds records from the rows of projects, their VENs and milestones.
fn assemble(
    rows: Vec<ProjectRow>,
    vens: Vec<(i64, String)>,
    milestones: Vec<MilestoneRow>,
) -> Result<Vec<ProjectRecord>, StoreError> {
    let mut ven_map: BTreeMap<i64, Vec<VenId>> = BTreeMap::new();
    for (project, ven) in vens {
        ven_map.entry(project).or_default().push(ven_id(&ven)?);
    }
    let mut milestone_map: BTreeMap<i64, Vec<MilestoneRecord>> = BTreeMap::new();
    for (project, name, quantity, threshold_kwh, reached_ms) in milestones {
        milestone_map
            .entry(project)
            .or_default()
            .push(MilestoneRecord {
                name,
                quantity: stored(
                    "milestone quantity",
                    MilestoneQuantity::from_name(&quantity),
                )?,
                threshold_kwh,
                reached_ms,
            });
    }
    rows.into_iter()
        .map(|r| {
            let mut ven_ids = ven_map.remove(&r.0).unwrap_or_default();
            ven_ids.sort();
            Ok(ProjectRecord {
                id: r.0,
                name: r.1,
                kind: stored("project kind", ProjectKind::from_name(&r.2))?,
                status: stored("project status", ProjectStatus::from_name(&r.3))?,
                capacity_kw: r.4,
                latitude: r.5,
                longitude: r.6,
                address: r.7,
                currency: r.8,
                ven_ids,
                milestones: milestone_map.remove(&r.0).unwrap_or_default(),
                created_ms: r.9,
                updated_ms: r.10,
            })
        })
        .collect()
}

fn finance_record(r: FinanceRow) -> Result<FinanceRecord, StoreError> {
    Ok(FinanceRecord {
        id: r.0,
        project_id: r.1,
        entry: FinanceWrite {
            kind: stored("finance kind", FinanceKind::from_name(&r.2))?,
            amount_minor: r.3,
            currency: r.4,
            at_ms: r.5,
            category: r.6,
            description: r.7,
        },
        created_ms: r.8,
    })
}

const fn hour_row(r: HourTuple) -> HourRow {
    HourRow {
        series_id: r.0,
        bucket: r.1,
        count: r.2,
        sum: r.3,
        min: r.4,
        last_ts: r.5,
        last_value: r.6,
    }
}

/// [`ProjectStore::day_rows`]: per series the newest hour before `$2`
/// (`since`), the hours from there with the previous hour's last value
/// (`LAG`), then per day the sums of the hourly energies.
const DAY_ROWS: &str = "WITH p AS ( \
       SELECT s.value AS series_id, (SELECT max(o.bucket) FROM metrics_1h o \
         WHERE o.series_id = s.value AND o.bucket < $2) AS since \
       FROM INTS($1) s), \
     h AS ( \
       SELECT m.series_id, m.bucket, m.count, m.sum, m.min, m.last_ts, m.last_value, \
         LAG(m.last_value) OVER (PARTITION BY m.series_id ORDER BY m.bucket) AS prev \
       FROM metrics_1h m JOIN p ON m.series_id = p.series_id \
       WHERE m.bucket >= COALESCE(p.since, $2) AND m.bucket < $3) \
     SELECT series_id, bucket - bucket % 86400000 AS day, \
       SUM(CASE WHEN prev IS NOT NULL AND last_value >= prev THEN last_value - prev \
                WHEN last_value > min THEN last_value - min ELSE 0.0 END) AS rise, \
       SUM(CASE WHEN count > 0 AND sum > 0 THEN sum / count ELSE 0.0 END) AS positive_wh, \
       SUM(CASE WHEN count > 0 AND sum < 0 THEN -sum / count ELSE 0.0 END) AS negative_wh, \
       MAX(last_ts) AS last_ts \
     FROM h WHERE bucket >= $2 \
     GROUP BY series_id, bucket - bucket % 86400000 ORDER BY series_id, day";

fn id_list(ids: &[i64]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// The same SQL on both backends (through [`sql`]); `$read` and `$write`
/// are the pools reads and writes go to.
macro_rules! project_store {
    ($store:ty, postgres: $pg:expr, read: $read:ident, write: $write:ident) => {
        impl $store {
            async fn load_projects(
                &self,
                only: Option<i64>,
            ) -> Result<Vec<ProjectRecord>, StoreError> {
                let (by_id, by_project) = if only.is_some() {
                    ("WHERE id = $1", "WHERE project_id = $1")
                } else {
                    ("", "")
                };
                let text = sql($pg, &format!("SELECT {PROJECT_COLUMNS} FROM projects {by_id} ORDER BY id"));
                let mut query = sqlx::query_as::<_, ProjectRow>(text);
                if let Some(id) = only {
                    query = query.bind(id);
                }
                let rows = query.fetch_all(&self.$read).await?;
                if rows.is_empty() {
                    return Ok(Vec::new());
                }
                let text = sql($pg, &format!("SELECT project_id, ven_id FROM project_vens {by_project}"));
                let mut query = sqlx::query_as::<_, (i64, String)>(text);
                if let Some(id) = only {
                    query = query.bind(id);
                }
                let vens = query.fetch_all(&self.$read).await?;
                let text = sql(
                    $pg,
                    &format!(
                        "SELECT project_id, name, quantity, threshold_kwh, reached \
                         FROM project_milestones {by_project} ORDER BY project_id, position"
                    ),
                );
                let mut query = sqlx::query_as::<_, MilestoneRow>(text);
                if let Some(id) = only {
                    query = query.bind(id);
                }
                let milestones = query.fetch_all(&self.$read).await?;
                assemble(rows, vens, milestones)
            }
        }

        impl ProjectStore for $store {
            async fn create_project(
                &self,
                project: &ProjectWrite,
                now_ms: i64,
            ) -> Result<ProjectRecord, StoreError> {
                let mut tx = self.$write.begin().await?;
                let id: i64 = sqlx::query_scalar(sql(
                    $pg,
                    "INSERT INTO projects (name, kind, status, capacity_kw, latitude, longitude, \
                     address, currency, created, updated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
                ))
                .bind(&project.name)
                .bind(project.kind.as_str())
                .bind(project.status.as_str())
                .bind(project.capacity_kw)
                .bind(project.latitude)
                .bind(project.longitude)
                .bind(project.address.as_deref())
                .bind(&project.currency)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?;
                write_children!($pg, tx, id, project, &BTreeMap::new());
                tx.commit().await?;
                self.project(id)
                    .await?
                    .ok_or_else(|| StoreError::Invalid(format!("project {id} vanished")))
            }

            async fn update_project(
                &self,
                id: i64,
                project: &ProjectWrite,
                now_ms: i64,
            ) -> Result<Option<ProjectRecord>, StoreError> {
                let mut tx = self.$write.begin().await?;
                let updated = sqlx::query(sql(
                    $pg,
                    "UPDATE projects SET name = $2, kind = $3, status = $4, capacity_kw = $5, \
                     latitude = $6, longitude = $7, address = $8, currency = $9, updated = $10 \
                     WHERE id = $1",
                ))
                .bind(id)
                .bind(&project.name)
                .bind(project.kind.as_str())
                .bind(project.status.as_str())
                .bind(project.capacity_kw)
                .bind(project.latitude)
                .bind(project.longitude)
                .bind(project.address.as_deref())
                .bind(&project.currency)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Ok(None);
                }
                let old: Vec<(String, String, f64, Option<i64>)> = sqlx::query_as(sql(
                    $pg,
                    "SELECT name, quantity, threshold_kwh, reached FROM project_milestones \
                     WHERE project_id = $1",
                ))
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                // A milestone unchanged in name, quantity and threshold keeps
                // when it was reached.
                let keep: BTreeMap<String, (String, f64, Option<i64>)> = old
                    .into_iter()
                    .map(|(name, q, t, r)| (name, (q, t, r)))
                    .collect();
                for table in ["project_vens", "project_milestones"] {
                    sqlx::query(sql($pg, &format!("DELETE FROM {table} WHERE project_id = $1")))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                write_children!($pg, tx, id, project, &keep);
                tx.commit().await?;
                self.project(id).await
            }

            async fn project(&self, id: i64) -> Result<Option<ProjectRecord>, StoreError> {
                Ok(self.load_projects(Some(id)).await?.pop())
            }

            async fn projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
                self.load_projects(None).await
            }

            async fn set_milestone_reached(
                &self,
                project_id: i64,
                name: &str,
                reached_ms: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(sql(
                    $pg,
                    "UPDATE project_milestones SET reached = $3 \
                     WHERE project_id = $1 AND name = $2 AND reached IS NULL",
                ))
                .bind(project_id)
                .bind(name)
                .bind(reached_ms)
                .execute(&self.$write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn add_finance_entry(
                &self,
                project_id: i64,
                entry: &FinanceWrite,
                now_ms: i64,
            ) -> Result<Option<FinanceRecord>, StoreError> {
                let row: Option<FinanceRow> = sqlx::query_as(sql(
                    $pg,
                    &format!(
                        "INSERT INTO project_finances (project_id, kind, amount_minor, currency, at, \
                         category, description, created) \
                         SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM projects WHERE id = $1 \
                         RETURNING {FINANCE_COLUMNS}"
                    ),
                ))
                .bind(project_id)
                .bind(entry.kind.as_str())
                .bind(entry.amount_minor)
                .bind(&entry.currency)
                .bind(entry.at_ms)
                .bind(entry.category.as_deref())
                .bind(entry.description.as_deref())
                .bind(now_ms)
                .fetch_optional(&self.$write)
                .await?;
                row.map(finance_record).transpose()
            }

            async fn finance_entries(
                &self,
                project_id: i64,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<FinanceRecord>, StoreError> {
                let rows: Vec<FinanceRow> = sqlx::query_as(sql(
                    $pg,
                    &format!(
                        "SELECT {FINANCE_COLUMNS} FROM project_finances \
                         WHERE project_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id"
                    ),
                ))
                .bind(project_id)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&self.$read)
                .await?;
                rows.into_iter().map(finance_record).collect()
            }

            async fn delete_finance_entry(
                &self,
                project_id: i64,
                entry_id: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query(sql(
                    $pg,
                    "DELETE FROM project_finances WHERE project_id = $1 AND id = $2",
                ))
                .bind(project_id)
                .bind(entry_id)
                .execute(&self.$write)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn energy_series(
                &self,
                vens: &[VenId],
            ) -> Result<Vec<VenEnergySeries>, StoreError> {
                let list = json_list(vens.iter().map(VenId::as_str));
                let meters: Vec<(String, Option<String>)> = sqlx::query_as(sql(
                    $pg,
                    "SELECT ven_id, site_meter FROM vens WHERE ven_id IN TEXTS($1) ORDER BY ven_id",
                ))
                .bind(&list)
                .fetch_all(&self.$read)
                .await?;
                let series: Vec<(String, i64, String, i16)> = sqlx::query_as(sql(
                    $pg,
                    "SELECT ven_id, id, meter, quantity FROM series \
                     WHERE ven_id IN TEXTS($1) AND phase = 0 AND quantity IN (0, 7, 8) \
                     ORDER BY id",
                ))
                .bind(&list)
                .fetch_all(&self.$read)
                .await?;
                meters
                    .into_iter()
                    .map(|(ven, site_meter)| {
                        let mine = series
                            .iter()
                            .filter(|s| s.0 == ven)
                            .map(|s| EnergySeries {
                                series_id: s.1,
                                meter: s.2.clone(),
                                quantity: s.3,
                            })
                            .collect();
                        Ok((ven_id(&ven)?, site_meter, mine))
                    })
                    .collect()
            }

            async fn hour_rows(
                &self,
                series_ids: &[i64],
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<HourRow>, StoreError> {
                if series_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let rows: Vec<HourTuple> = sqlx::query_as(sql(
                    $pg,
                    &format!(
                        "SELECT {HOUR_COLUMNS} FROM metrics_1h WHERE series_id IN INTS($1) \
                         AND bucket >= $2 AND bucket < $3 ORDER BY series_id, bucket"
                    ),
                ))
                .bind(id_list(series_ids))
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows.into_iter().map(hour_row).collect())
            }

            async fn day_rows(
                &self,
                series_ids: &[i64],
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<DayRow>, StoreError> {
                if series_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let rows: Vec<(i64, i64, f64, f64, f64, i64)> = sqlx::query_as(sql($pg, DAY_ROWS))
                    .bind(id_list(series_ids))
                    .bind(from_ms)
                    .bind(to_ms)
                    .fetch_all(&self.$read)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| DayRow {
                        series_id: r.0,
                        day: r.1,
                        rise: r.2,
                        positive_wh: r.3,
                        negative_wh: r.4,
                        last_ts: r.5,
                    })
                    .collect())
            }

            async fn hour_rows_before(
                &self,
                series_ids: &[i64],
                before_ms: i64,
            ) -> Result<Vec<HourRow>, StoreError> {
                if series_ids.is_empty() {
                    return Ok(Vec::new());
                }
                let rows: Vec<HourTuple> = sqlx::query_as(sql(
                    $pg,
                    &format!(
                        "SELECT {HOUR_COLUMNS} FROM metrics_1h m WHERE series_id IN INTS($1) \
                         AND bucket = (SELECT max(bucket) FROM metrics_1h o \
                           WHERE o.series_id = m.series_id AND o.bucket < $2) \
                         ORDER BY series_id"
                    ),
                ))
                .bind(id_list(series_ids))
                .bind(before_ms)
                .fetch_all(&self.$read)
                .await?;
                Ok(rows.into_iter().map(hour_row).collect())
            }

            async fn project_events(
                &self,
                vens: &[VenId],
                from_ms: i64,
                to_ms: i64,
            ) -> Result<Vec<ProjectEvent>, StoreError> {
                let rows: Vec<(String, String)> = sqlx::query_as(sql(
                    $pg,
                    "SELECT e.id, ev.ven_id FROM events e JOIN event_vens ev ON ev.event_id = e.id \
                     WHERE ev.ven_id IN TEXTS($1) AND ev.removed IS NULL AND e.deleted IS NULL \
                       AND e.end_ms >= $2 AND e.end_ms < $3 \
                     ORDER BY e.end_ms, e.id, ev.ven_id",
                ))
                .bind(json_list(vens.iter().map(VenId::as_str)))
                .bind(from_ms)
                .bind(to_ms)
                .fetch_all(&self.$read)
                .await?;
                let mut out: Vec<ProjectEvent> = Vec::new();
                for (event, ven) in rows {
                    let ven = ven_id(&ven)?;
                    match out.last_mut() {
                        Some(last) if last.event_id.as_str() == event => last.vens.push(ven),
                        _ => out.push(ProjectEvent {
                            event_id: object_id(event)?,
                            vens: vec![ven],
                        }),
                    }
                }
                for event in &mut out {
                    event.vens.sort();
                }
                Ok(out)
            }
        }
    };
}

/// Inserts a project's VENs and milestones in `tx`; `keep` maps a previous
/// milestone's name to its (quantity, threshold, reached).
macro_rules! write_children {
    ($pg:expr, $tx:ident, $id:ident, $project:ident, $keep:expr) => {{
        let keep: &BTreeMap<String, (String, f64, Option<i64>)> = $keep;
        if !$project.ven_ids.is_empty() {
            sqlx::query(sql(
                $pg,
                "INSERT INTO project_vens (project_id, ven_id) SELECT $1, value FROM TEXTS($2) v",
            ))
            .bind($id)
            .bind(json_list($project.ven_ids.iter().map(VenId::as_str)))
            .execute(&mut *$tx)
            .await?;
        }
        for (position, m) in $project.milestones.iter().enumerate() {
            let reached = keep.get(&m.name).and_then(|(q, t, r)| {
                (q == m.quantity.as_str() && t.to_bits() == m.threshold_kwh.to_bits())
                    .then_some(*r)
                    .flatten()
            });
            sqlx::query(sql(
                $pg,
                "INSERT INTO project_milestones (project_id, name, position, quantity, \
                 threshold_kwh, reached) VALUES ($1, $2, $3, $4, $5, $6)",
            ))
            .bind($id)
            .bind(&m.name)
            .bind(position as i64)
            .bind(m.quantity.as_str())
            .bind(m.threshold_kwh)
            .bind(reached)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

project_store!(PgStore, postgres: true, read: pool, write: pool);
project_store!(SqliteStore, postgres: false, read: reader, write: writer);

macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.db {
            Db::Postgres($s) => $call.await,
            Db::Sqlite($s) => $call.await,
        }
    };
}

impl ProjectStore for AnyStore {
    async fn create_project(
        &self,
        project: &ProjectWrite,
        now_ms: i64,
    ) -> Result<ProjectRecord, StoreError> {
        delegate!(self, s => s.create_project(project, now_ms))
    }
    async fn update_project(
        &self,
        id: i64,
        project: &ProjectWrite,
        now_ms: i64,
    ) -> Result<Option<ProjectRecord>, StoreError> {
        delegate!(self, s => s.update_project(id, project, now_ms))
    }
    async fn project(&self, id: i64) -> Result<Option<ProjectRecord>, StoreError> {
        delegate!(self, s => s.project(id))
    }
    async fn projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        delegate!(self, s => s.projects())
    }
    async fn set_milestone_reached(
        &self,
        project_id: i64,
        name: &str,
        reached_ms: i64,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.set_milestone_reached(project_id, name, reached_ms))
    }
    async fn add_finance_entry(
        &self,
        project_id: i64,
        entry: &FinanceWrite,
        now_ms: i64,
    ) -> Result<Option<FinanceRecord>, StoreError> {
        delegate!(self, s => s.add_finance_entry(project_id, entry, now_ms))
    }
    async fn finance_entries(
        &self,
        project_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FinanceRecord>, StoreError> {
        delegate!(self, s => s.finance_entries(project_id, from_ms, to_ms))
    }
    async fn delete_finance_entry(
        &self,
        project_id: i64,
        entry_id: i64,
    ) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_finance_entry(project_id, entry_id))
    }
    async fn energy_series(&self, vens: &[VenId]) -> Result<Vec<VenEnergySeries>, StoreError> {
        delegate!(self, s => s.energy_series(vens))
    }
    async fn hour_rows(
        &self,
        series_ids: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<HourRow>, StoreError> {
        delegate!(self, s => s.hour_rows(series_ids, from_ms, to_ms))
    }
    async fn day_rows(
        &self,
        series_ids: &[i64],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<DayRow>, StoreError> {
        delegate!(self, s => s.day_rows(series_ids, from_ms, to_ms))
    }
    async fn hour_rows_before(
        &self,
        series_ids: &[i64],
        before_ms: i64,
    ) -> Result<Vec<HourRow>, StoreError> {
        delegate!(self, s => s.hour_rows_before(series_ids, before_ms))
    }
    async fn project_events(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ProjectEvent>, StoreError> {
        delegate!(self, s => s.project_events(vens, from_ms, to_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::sql_text as sql;

    #[test]
    fn placeholders_per_backend() {
        assert_eq!(
            sql(false, "SELECT 1 WHERE a IN TEXTS($1) AND b = $2"),
            "SELECT 1 WHERE a IN (SELECT value FROM json_each(?1)) AND b = ?2"
        );
        assert_eq!(
            sql(true, "x IN INTS($2)"),
            "x IN (SELECT value::bigint FROM json_array_elements_text($2::json))"
        );
    }
}

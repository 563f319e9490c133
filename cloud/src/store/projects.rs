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

use super::dr::{json_list, object_id, ven_id};
use super::{AnyStore, StoreError, Tx};
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

/// The columns of [`ProjectRow`].
macro_rules! project_columns {
    () => {
        "id, name, kind, status, capacity_kw, latitude, longitude, address, currency, created, \
         updated"
    };
}

/// The columns of [`FinanceRow`].
macro_rules! finance_columns {
    () => {
        "id, project_id, kind, amount_minor, currency, at, category, description, created"
    };
}

/// The columns of [`HourTuple`].
macro_rules! hour_columns {
    () => {
        "series_id, bucket, count, sum, min, last_ts, last_value"
    };
}

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

fn id_list(ids: &[i64]) -> String {
    serde_json::Value::from(ids.to_vec()).to_string()
}

/// Inserts a project's VENs and milestones in `tx`; `keep` maps a previous
/// milestone's name to its (quantity, threshold, reached).
async fn write_children(
    tx: &mut Tx,
    id: i64,
    project: &ProjectWrite,
    keep: &BTreeMap<String, (String, f64, Option<i64>)>,
) -> Result<(), StoreError> {
    if !project.ven_ids.is_empty() {
        exec!(tx.conn(), |c| sqlx::query(sql!(c;
            "INSERT INTO project_vens (project_id, ven_id) SELECT $1, value FROM ", [json_each 2]
        ))
        .bind(id)
        .bind(json_list(project.ven_ids.iter().map(VenId::as_str)))
        .execute(c)
        .await)?;
    }
    for (position, m) in project.milestones.iter().enumerate() {
        let reached = keep.get(&m.name).and_then(|(q, t, r)| {
            (q == m.quantity.as_str() && t.to_bits() == m.threshold_kwh.to_bits())
                .then_some(*r)
                .flatten()
        });
        exec!(tx.conn(), |c| sqlx::query(
            "INSERT INTO project_milestones (project_id, name, position, quantity, \
             threshold_kwh, reached) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(&m.name)
        .bind(position as i64)
        .bind(m.quantity.as_str())
        .bind(m.threshold_kwh)
        .bind(reached)
        .execute(c)
        .await)?;
    }
    Ok(())
}

impl AnyStore {
    /// The projects (one if `only` names it, else all) with their VENs and
    /// milestones, by id.
    async fn load_projects(&self, only: Option<i64>) -> Result<Vec<ProjectRecord>, StoreError> {
        let (projects, vens, milestones) = if only.is_some() {
            (
                concat!(
                    "SELECT ",
                    project_columns!(),
                    " FROM projects WHERE id = $1 ORDER BY id"
                ),
                "SELECT project_id, ven_id FROM project_vens WHERE project_id = $1",
                "SELECT project_id, name, quantity, threshold_kwh, reached \
                 FROM project_milestones WHERE project_id = $1 ORDER BY project_id, position",
            )
        } else {
            (
                concat!("SELECT ", project_columns!(), " FROM projects ORDER BY id"),
                "SELECT project_id, ven_id FROM project_vens",
                "SELECT project_id, name, quantity, threshold_kwh, reached \
                 FROM project_milestones ORDER BY project_id, position",
            )
        };
        let rows: Vec<ProjectRow> = run!(self.reader(), |pool| {
            let mut query = sqlx::query_as(projects);
            if let Some(id) = only {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let vens: Vec<(i64, String)> = run!(self.reader(), |pool| {
            let mut query = sqlx::query_as(vens);
            if let Some(id) = only {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })?;
        let milestones: Vec<MilestoneRow> = run!(self.reader(), |pool| {
            let mut query = sqlx::query_as(milestones);
            if let Some(id) = only {
                query = query.bind(id);
            }
            query.fetch_all(pool).await
        })?;
        assemble(rows, vens, milestones)
    }
}

impl ProjectStore for AnyStore {
    async fn create_project(
        &self,
        project: &ProjectWrite,
        now_ms: i64,
    ) -> Result<ProjectRecord, StoreError> {
        let mut tx = self.begin().await?;
        let id: i64 = run!(tx.conn(), |c| sqlx::query_scalar(
            "INSERT INTO projects (name, kind, status, capacity_kw, latitude, longitude, \
             address, currency, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
        )
        .bind(&project.name)
        .bind(project.kind.as_str())
        .bind(project.status.as_str())
        .bind(project.capacity_kw)
        .bind(project.latitude)
        .bind(project.longitude)
        .bind(project.address.as_deref())
        .bind(&project.currency)
        .bind(now_ms)
        .fetch_one(c)
        .await)?;
        write_children(&mut tx, id, project, &BTreeMap::new()).await?;
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
        let mut tx = self.begin().await?;
        let updated = exec!(tx.conn(), |c| sqlx::query(
            "UPDATE projects SET name = $2, kind = $3, status = $4, capacity_kw = $5, \
             latitude = $6, longitude = $7, address = $8, currency = $9, updated = $10 \
             WHERE id = $1",
        )
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
        .execute(c)
        .await)?;
        if updated == 0 {
            return Ok(None);
        }
        let old: Vec<(String, String, f64, Option<i64>)> = run!(tx.conn(), |c| sqlx::query_as(
            "SELECT name, quantity, threshold_kwh, reached FROM project_milestones \
             WHERE project_id = $1",
        )
        .bind(id)
        .fetch_all(c)
        .await)?;
        // A milestone unchanged in name, quantity and threshold keeps when
        // it was reached.
        let keep: BTreeMap<String, (String, f64, Option<i64>)> = old
            .into_iter()
            .map(|(name, q, t, r)| (name, (q, t, r)))
            .collect();
        for delete in [
            "DELETE FROM project_vens WHERE project_id = $1",
            "DELETE FROM project_milestones WHERE project_id = $1",
        ] {
            exec!(tx.conn(), |c| sqlx::query(delete).bind(id).execute(c).await)?;
        }
        write_children(&mut tx, id, project, &keep).await?;
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
        let changed = exec!(self.writer(), |pool| sqlx::query(
            "UPDATE project_milestones SET reached = $3 \
             WHERE project_id = $1 AND name = $2 AND reached IS NULL",
        )
        .bind(project_id)
        .bind(name)
        .bind(reached_ms)
        .execute(pool)
        .await)?;
        Ok(changed == 1)
    }

    async fn add_finance_entry(
        &self,
        project_id: i64,
        entry: &FinanceWrite,
        now_ms: i64,
    ) -> Result<Option<FinanceRecord>, StoreError> {
        let row: Option<FinanceRow> = run!(self.writer(), |pool| sqlx::query_as(concat!(
            "INSERT INTO project_finances (project_id, kind, amount_minor, currency, at, \
             category, description, created) \
             SELECT id, $2, $3, $4, $5, $6, $7, $8 FROM projects WHERE id = $1 \
             RETURNING ",
            finance_columns!()
        ))
        .bind(project_id)
        .bind(entry.kind.as_str())
        .bind(entry.amount_minor)
        .bind(&entry.currency)
        .bind(entry.at_ms)
        .bind(entry.category.as_deref())
        .bind(entry.description.as_deref())
        .bind(now_ms)
        .fetch_optional(pool)
        .await)?;
        row.map(finance_record).transpose()
    }

    async fn finance_entries(
        &self,
        project_id: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<FinanceRecord>, StoreError> {
        let rows: Vec<FinanceRow> = run!(self.reader(), |pool| sqlx::query_as(concat!(
            "SELECT ",
            finance_columns!(),
            " FROM project_finances \
             WHERE project_id = $1 AND at >= $2 AND at < $3 ORDER BY at, id"
        ))
        .bind(project_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await)?;
        rows.into_iter().map(finance_record).collect()
    }

    async fn delete_finance_entry(
        &self,
        project_id: i64,
        entry_id: i64,
    ) -> Result<bool, StoreError> {
        let deleted = exec!(self.writer(), |pool| sqlx::query(
            "DELETE FROM project_finances WHERE project_id = $1 AND id = $2"
        )
        .bind(project_id)
        .bind(entry_id)
        .execute(pool)
        .await)?;
        Ok(deleted == 1)
    }

    async fn energy_series(&self, vens: &[VenId]) -> Result<Vec<VenEnergySeries>, StoreError> {
        let list = json_list(vens.iter().map(VenId::as_str));
        let meters: Vec<(String, Option<String>)> = run!(self.reader(), |pool| {
            sqlx::query_as(
            sql!(pool; "SELECT ven_id, site_meter FROM vens WHERE ven_id IN (SELECT value FROM ",
                [json_each 1], ") ORDER BY ven_id")
        )
        .bind(&list)
        .fetch_all(pool)
        .await
        })?;
        let series: Vec<(String, i64, String, i16)> = run!(self.reader(), |pool| sqlx::query_as(
            sql!(pool; "SELECT ven_id, id, meter, quantity FROM series \
                WHERE ven_id IN (SELECT value FROM ", [json_each 1], ") \
                AND phase = 0 AND quantity IN (0, 7, 8) ORDER BY id")
        )
        .bind(&list)
        .fetch_all(pool)
        .await)?;
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
        let rows: Vec<HourTuple> = run!(self.reader(), |pool| {
            sqlx::query_as(sql!(pool;
            "SELECT ", { hour_columns!() }, " FROM metrics_1h WHERE series_id IN (SELECT ", [either "value::bigint" "value"], " FROM ", [json_each 1], ") \
             AND bucket >= $2 AND bucket < $3 ORDER BY series_id, bucket"
        ))
        .bind(id_list(series_ids))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await
        })?;
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
        // Per series the newest hour before `$2` (`since`), the hours from
        // there with the previous hour's last value (`LAG`), then per day
        // the sums of the hourly energies.
        let rows: Vec<(i64, i64, f64, f64, f64, i64)> = run!(self.reader(), |pool| {
            sqlx::query_as(sql!(pool;
                "WITH p AS ( \
                   SELECT s.value AS series_id, (SELECT max(o.bucket) FROM metrics_1h o \
                     WHERE o.series_id = s.value AND o.bucket < $2) AS since \
                   FROM (SELECT ", [either "value::bigint" "value"], " FROM ", [json_each 1], ") s), \
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
                 GROUP BY series_id, bucket - bucket % 86400000 ORDER BY series_id, day"
            ))
            .bind(id_list(series_ids))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all(pool)
            .await
        })?;
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
        let rows: Vec<HourTuple> = run!(self.reader(), |pool| {
            sqlx::query_as(sql!(pool;
            "SELECT ", { hour_columns!() }, " FROM metrics_1h m WHERE series_id IN (SELECT ", [either "value::bigint" "value"], " FROM ", [json_each 1], ") \
             AND bucket = (SELECT max(bucket) FROM metrics_1h o \
               WHERE o.series_id = m.series_id AND o.bucket < $2) \
             ORDER BY series_id"
        ))
        .bind(id_list(series_ids))
        .bind(before_ms)
        .fetch_all(pool)
        .await
        })?;
        Ok(rows.into_iter().map(hour_row).collect())
    }

    async fn project_events(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<ProjectEvent>, StoreError> {
        let rows: Vec<(String, String)> = run!(self.reader(), |pool| sqlx::query_as(sql!(pool;
            "SELECT e.id, ev.ven_id FROM events e JOIN event_vens ev ON ev.event_id = e.id \
             WHERE ev.ven_id IN (SELECT value FROM ", [json_each 1], ") \
               AND ev.removed IS NULL AND e.deleted IS NULL \
               AND e.end_ms >= $2 AND e.end_ms < $3 \
             ORDER BY e.end_ms, e.id, ev.ven_id"
        ))
        .bind(json_list(vens.iter().map(VenId::as_str)))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await)?;
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

#[cfg(test)]
mod tests {
    use super::id_list;
    use crate::store::Dialect;

    /// The series ids go in as one JSON list, expanded to `bigint`s on
    /// PostgreSQL (whose `json_array_elements_text` gives text) and to
    /// integers on SQLite.
    #[test]
    fn series_id_lists_per_dialect() {
        assert_eq!(id_list(&[3, 1, 2]), "[3,1,2]");
        let spell = |dialect| {
            sql!(dialect dialect;
                "x IN (SELECT ", [either "value::bigint" "value"], " FROM ", [json_each 1], ")")
        };
        assert_eq!(
            spell(Dialect::Postgres),
            "x IN (SELECT value::bigint FROM json_array_elements_text($1::json))"
        );
        assert_eq!(
            spell(Dialect::Sqlite),
            "x IN (SELECT value FROM json_each($1))"
        );
    }
}

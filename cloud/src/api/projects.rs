//! Energy projects under `/api/v1/projects`: create, replace, list, get
//! (with milestones and when each was reached), energy generated and
//! consumed per UTC day or month, and finances (expense and revenue
//! entries, DR revenue computed from the measured shed and the event's
//! price, totals per period). The computations are in
//! [`crate::projects`]; reads need any reading role, writes
//! [`Permission::ManageProjects`](crate::api::auth::Permission::ManageProjects)
//! (operator, admin).
//!
//! ```json
//! {"name": "Solar park North", "kind": "renewable", "status": "operational",
//!  "capacity_kw": 1500.0, "location": {"latitude": 52.1, "longitude": 5.1, "address": "Dijkweg 1"},
//!  "ven_ids": ["ven-1"], "milestones": [{"name": "First GWh", "quantity": "generated",
//!  "threshold_kwh": 1000000.0}]}
//! ```

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use gridlink_protocol::{ObjectId, VenId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::body::JsonBody;
use super::error::{ApiError, InvalidParam, quoted};
use super::params::{self, ParamError, QueryParams};
use crate::dispatch::response::measure;
use crate::model::clock::now_ms;
use crate::projects::{
    self as calc, FinanceKind, MilestoneQuantity, MoneyKind, Period, ProjectKind, ProjectStatus,
};
use crate::store::projects::{FinanceRecord, FinanceWrite, MilestoneWrite, ProjectWrite};
use crate::store::{ProjectRecord, Store, StoreError};

/// Longest project or milestone name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest address, category or description.
pub const MAX_TEXT_LEN: usize = 1024;
/// Most VENs in one project.
pub const MAX_PROJECT_VENS: usize = 1000;
/// Most milestones in one project.
pub const MAX_MILESTONES: usize = 100;
/// Most periods (days or months) in one energy or finance answer.
pub const MAX_PERIODS: usize = 1000;
/// The currency of a project that names none.
pub const DEFAULT_CURRENCY: &str = "EUR";

/// The body of `POST` and `PUT /api/v1/projects[/{id}]`. Server fields
/// (`id`, `created_ms`, `updated_ms`, `reached_ms`) are accepted and
/// ignored, so a client may send back what it read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectRequest {
    name: String,
    kind: String,
    status: String,
    capacity_kw: f64,
    location: LocationRequest,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    ven_ids: Vec<String>,
    #[serde(default)]
    milestones: Vec<MilestoneRequest>,
    #[serde(default, rename = "id")]
    _id: Option<Value>,
    #[serde(default, rename = "created_ms")]
    _created_ms: Option<Value>,
    #[serde(default, rename = "updated_ms")]
    _updated_ms: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationRequest {
    latitude: f64,
    longitude: f64,
    #[serde(default)]
    address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MilestoneRequest {
    name: String,
    quantity: String,
    threshold_kwh: f64,
    #[serde(default, rename = "reached_ms")]
    _reached_ms: Option<Value>,
}

/// The body of `POST /api/v1/projects/{id}/finances`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FinanceRequest {
    kind: String,
    amount: Value,
    #[serde(default)]
    currency: Option<String>,
    at: Value,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// A project as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ProjectJson {
    id: i64,
    name: String,
    kind: &'static str,
    status: &'static str,
    capacity_kw: f64,
    location: LocationJson,
    currency: String,
    ven_ids: Vec<VenId>,
    milestones: Vec<MilestoneJson>,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Debug, Serialize)]
struct LocationJson {
    latitude: f64,
    longitude: f64,
    address: Option<String>,
}

#[derive(Debug, Serialize)]
struct MilestoneJson {
    name: String,
    quantity: &'static str,
    threshold_kwh: f64,
    reached_ms: Option<i64>,
}

impl From<ProjectRecord> for ProjectJson {
    fn from(p: ProjectRecord) -> Self {
        Self {
            id: p.id,
            name: p.name,
            kind: p.kind.as_str(),
            status: p.status.as_str(),
            capacity_kw: p.capacity_kw,
            location: LocationJson {
                latitude: p.latitude,
                longitude: p.longitude,
                address: p.address,
            },
            currency: p.currency,
            ven_ids: p.ven_ids,
            milestones: p
                .milestones
                .into_iter()
                .map(|m| MilestoneJson {
                    name: m.name,
                    quantity: m.quantity.as_str(),
                    threshold_kwh: m.threshold_kwh,
                    reached_ms: m.reached_ms,
                })
                .collect(),
            created_ms: p.created_ms,
            updated_ms: p.updated_ms,
        }
    }
}

/// `{"projects": [...]}`.
#[derive(Debug, Serialize)]
pub(crate) struct ProjectList {
    projects: Vec<ProjectJson>,
}

/// Parses a JSON body into `T`, naming the failing field.
fn parse_body<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    super::body::from_value(body)
}

fn check_text(name: &str, text: &str, max: usize) -> Result<(), InvalidParam> {
    if text.is_empty() || text.chars().count() > max || text.chars().any(char::is_control) {
        return Err(InvalidParam::new(
            name,
            format!("must be 1 to {max} characters without control characters"),
        ));
    }
    Ok(())
}

fn check_currency(name: &str, code: &str) -> Result<(), InvalidParam> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(InvalidParam::new(
            name,
            format!(
                "{} is not an ISO 4217 currency code (3 capital letters, e.g. EUR)",
                quoted(code)
            ),
        ))
    }
}

/// Checks a project request; every bad field is named.
#[expect(clippy::too_many_lines, reason = "one check per field, in order")]
async fn project_write<S: Store>(
    state: &AppState<S>,
    body: Value,
) -> Result<ProjectWrite, ApiError> {
    let request: ProjectRequest = parse_body(body)?;
    let mut errors = Vec::new();
    let mut check = |result: Result<(), InvalidParam>| {
        if let Err(e) = result {
            errors.push(e);
        }
    };
    check(check_text("name", &request.name, MAX_NAME_LEN));
    let kind = ProjectKind::from_name(&request.kind);
    check(
        kind.as_ref()
            .map(|_| ())
            .map_err(|e| InvalidParam::new("kind", e.to_string())),
    );
    let status = ProjectStatus::from_name(&request.status);
    check(
        status
            .as_ref()
            .map(|_| ())
            .map_err(|e| InvalidParam::new("status", e.to_string())),
    );
    if !request.capacity_kw.is_finite() || request.capacity_kw < 0.0 {
        check(Err(InvalidParam::new(
            "capacity_kw",
            "must be a number of kW, at least 0",
        )));
    }
    let location = &request.location;
    if !(-90.0..=90.0).contains(&location.latitude) {
        check(Err(InvalidParam::new(
            "location.latitude",
            "must be -90 to 90 degrees",
        )));
    }
    if !(-180.0..=180.0).contains(&location.longitude) {
        check(Err(InvalidParam::new(
            "location.longitude",
            "must be -180 to 180 degrees",
        )));
    }
    if let Some(address) = &location.address {
        check(check_text("location.address", address, MAX_TEXT_LEN));
    }
    let currency = request.currency.unwrap_or_else(|| DEFAULT_CURRENCY.into());
    check(check_currency("currency", &currency));
    if request.ven_ids.len() > MAX_PROJECT_VENS {
        check(Err(InvalidParam::new(
            "ven_ids",
            format!("at most {MAX_PROJECT_VENS} VENs"),
        )));
    }
    let mut ven_ids = Vec::with_capacity(request.ven_ids.len());
    for (i, id) in request.ven_ids.iter().enumerate() {
        let name = format!("ven_ids[{i}]");
        match params::ven_id(id) {
            Err(reason) => check(Err(InvalidParam::new(&name, reason.to_string()))),
            Ok(ven) if ven_ids.contains(&ven) => {
                check(Err(InvalidParam::new(
                    &name,
                    format!("{} is listed twice", quoted(id)),
                )));
            }
            Ok(ven) => ven_ids.push(ven),
        }
    }
    if request.milestones.len() > MAX_MILESTONES {
        check(Err(InvalidParam::new(
            "milestones",
            format!("at most {MAX_MILESTONES} milestones"),
        )));
    }
    let mut milestones: Vec<MilestoneWrite> = Vec::with_capacity(request.milestones.len());
    for (i, m) in request.milestones.iter().enumerate() {
        let name = format!("milestones[{i}].name");
        check(check_text(&name, &m.name, MAX_NAME_LEN));
        if milestones.iter().any(|o| o.name == m.name) {
            check(Err(InvalidParam::new(
                &name,
                format!("{} is used twice", quoted(&m.name)),
            )));
        }
        let quantity = MilestoneQuantity::from_name(&m.quantity)
            .map_err(|e| InvalidParam::new(format!("milestones[{i}].quantity"), e.to_string()));
        if !m.threshold_kwh.is_finite() || m.threshold_kwh <= 0.0 {
            check(Err(InvalidParam::new(
                format!("milestones[{i}].threshold_kwh"),
                "must be a number of kWh above 0",
            )));
        }
        match quantity {
            Ok(quantity) => milestones.push(MilestoneWrite {
                name: m.name.clone(),
                quantity,
                threshold_kwh: m.threshold_kwh,
            }),
            Err(e) => check(Err(e)),
        }
    }
    if errors.is_empty() && !ven_ids.is_empty() {
        // One query: the store lists the known ones.
        let known: Vec<VenId> = state
            .store
            .energy_series(&ven_ids)
            .await?
            .into_iter()
            .map(|(ven, ..)| ven)
            .collect();
        for (i, ven) in ven_ids.iter().enumerate() {
            if !known.contains(ven) {
                errors.push(InvalidParam::new(
                    format!("ven_ids[{i}]"),
                    format!(
                        "no VEN {} is known; register it with PUT /api/v1/vens/{{id}}",
                        quoted(ven.as_str())
                    ),
                ));
            }
        }
    }
    match (kind, status) {
        (Ok(kind), Ok(status)) if errors.is_empty() => {
            ven_ids.sort();
            Ok(ProjectWrite {
                name: request.name,
                kind,
                status,
                capacity_kw: request.capacity_kw,
                latitude: location.latitude,
                longitude: location.longitude,
                address: request.location.address,
                currency,
                ven_ids,
                milestones,
            })
        }
        _ => Err(ApiError::InvalidParams(errors)),
    }
}

fn unknown_project(id: i64) -> ApiError {
    super::params::unknown_id("project", id)
}

fn positive_id(name: &str, text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|&id| id > 0)
        .ok_or_else(|| {
            ApiError::invalid_param(
                name,
                format!("{} is not a project id (a positive integer)", quoted(text)),
            )
        })
}

fn path_project_id(path: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let Path(id) = path.map_err(|r| ApiError::invalid_param("id", r.body_text()))?;
    positive_id("id", &id)
}

/// The project with its milestones brought up to date
/// ([`calc::refresh_milestones`]); 404 if there is none.
async fn fresh_project<S: Store>(state: &AppState<S>, id: i64) -> Result<ProjectRecord, ApiError> {
    let project = state
        .store
        .project(id)
        .await?
        .ok_or_else(|| unknown_project(id))?;
    if project.milestones.iter().any(|m| m.reached_ms.is_none()) && !project.ven_ids.is_empty() {
        calc::refresh_milestones(state.store.as_ref(), id).await?;
        return state
            .store
            .project(id)
            .await?
            .ok_or_else(|| unknown_project(id));
    }
    Ok(project)
}

/// `GET /api/v1/projects`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
) -> Result<Json<ProjectList>, ApiError> {
    let mut projects = Vec::new();
    for project in state.store.projects().await? {
        projects.push(fresh_project(&state, project.id).await?.into());
    }
    Ok(Json(ProjectList { projects }))
}

/// `POST /api/v1/projects`: 201 with the project.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<ProjectJson>), ApiError> {
    let write = project_write(&state, body).await?;
    let record = state
        .store
        .create_project(&write, now_ms())
        .await
        .map_err(|e| duplicate(e, &write.name))?;
    let record = fresh_project(&state, record.id).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// A unique violation (the name) as a 409 that says so.
fn duplicate(error: StoreError, name: &str) -> ApiError {
    match ApiError::from(error) {
        ApiError::Conflict(_) => ApiError::Conflict(StoreError::Conflict(format!(
            "name: a project named {} exists",
            quoted(name)
        ))),
        other => other,
    }
}

/// `GET /api/v1/projects/{id}`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ProjectJson>, ApiError> {
    let id = path_project_id(path)?;
    Ok(Json(fresh_project(&state, id).await?.into()))
}

/// `PUT /api/v1/projects/{id}`: full replace.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ProjectJson>, ApiError> {
    let id = path_project_id(path)?;
    let write = project_write(&state, body).await?;
    let current = state
        .store
        .project(id)
        .await?
        .ok_or_else(|| unknown_project(id))?;
    if current.currency != write.currency
        && !state
            .store
            .finance_entries(id, i64::MIN, i64::MAX)
            .await?
            .is_empty()
    {
        return Err(ApiError::Conflict(StoreError::Conflict(format!(
            "currency: the project has finance entries in {}; it cannot change to {}",
            current.currency, write.currency
        ))));
    }
    state
        .store
        .update_project(id, &write, now_ms())
        .await
        .map_err(|e| duplicate(e, &write.name))?
        .ok_or_else(|| unknown_project(id))?;
    Ok(Json(fresh_project(&state, id).await?.into()))
}

/// `from`, `to` and `period` of an energy or finance query: the period
/// starts covering `[from, to)` rounded outward to whole periods.
struct Window {
    period: Period,
    from_ms: i64,
    to_ms: i64,
    starts: Vec<i64>,
}

fn window(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    default_period: Period,
) -> Result<Window, ApiError> {
    let mut params = QueryParams::new(query, &["from", "to", "period"])?;
    let period = params
        .optional("period", Period::from_name)
        .unwrap_or(default_period);
    let to = params.optional("to", params::time);
    let from = params.optional("from", params::time);
    if params.has_errors() {
        return params.finish(None);
    }
    let to = to.unwrap_or_else(now_ms);
    let from = from.unwrap_or(match period {
        Period::Day => to - 31 * 86_400_000,
        Period::Month => to - 366 * 86_400_000,
    });
    // `from == to` is an empty window (to is exclusive), as the schema
    // allows; only a `to` before `from` is refused.
    if from > to {
        params.reject("to", "must not be before from");
        return params.finish(None);
    }
    let Some(starts) = period.starts(from, to, MAX_PERIODS) else {
        params.reject(
            "from",
            format!(
                "from .. to spans more than {MAX_PERIODS} periods of a {}",
                period.as_str()
            ),
        );
        return params.finish(None);
    };
    let (Some(&first), Some(&last)) = (starts.first(), starts.last()) else {
        // An empty window (`from == to` on a period boundary): no periods.
        return params.finish(Some(Window {
            period,
            from_ms: from,
            to_ms: to,
            starts,
        }));
    };
    let end = period
        .next(last)
        .ok_or_else(|| ApiError::invalid_param("to", "out of range"))?;
    params.finish(Some(Window {
        period,
        from_ms: first,
        to_ms: end,
        starts,
    }))
}

/// One period of energy.
#[derive(Debug, Serialize)]
struct EnergyRow {
    start_ms: i64,
    generated_kwh: f64,
    consumed_kwh: f64,
}

/// Energy totals.
#[derive(Debug, Serialize)]
struct EnergyTotal {
    generated_kwh: f64,
    consumed_kwh: f64,
}

/// Where one VEN's energy came from.
#[derive(Debug, Serialize)]
struct EnergySource {
    ven_id: VenId,
    meter: Option<String>,
    /// `energy_import`, `active_power` or null.
    consumed_from: Option<&'static str>,
    /// `energy_export`, `active_power` or null.
    generated_from: Option<&'static str>,
    /// Why the VEN is not measured; null when it is.
    unmeasured_reason: Option<String>,
}

/// The answer of `GET /api/v1/projects/{id}/energy`.
#[derive(Debug, Serialize)]
pub(crate) struct EnergyAnswer {
    period: &'static str,
    from_ms: i64,
    to_ms: i64,
    rows: Vec<EnergyRow>,
    total: EnergyTotal,
    vens: Vec<EnergySource>,
}

/// `GET /api/v1/projects/{id}/energy?from=&to=&period=day|month`.
pub(crate) async fn energy<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<EnergyAnswer>, ApiError> {
    let id = path_project_id(path)?;
    let w = window(query, Period::Day)?;
    let project = state
        .store
        .project(id)
        .await?
        .ok_or_else(|| unknown_project(id))?;
    let (hours, sources) =
        calc::project_days(state.store.as_ref(), &project.ven_ids, w.from_ms, w.to_ms).await?;
    let (rows, total) = calc::energy_per_period(&hours, w.period, &w.starts);
    Ok(Json(EnergyAnswer {
        period: w.period.as_str(),
        from_ms: w.from_ms,
        to_ms: w.to_ms,
        rows: rows
            .into_iter()
            .map(|(start_ms, t)| EnergyRow {
                start_ms,
                generated_kwh: t.generated_kwh,
                consumed_kwh: t.consumed_kwh,
            })
            .collect(),
        total: EnergyTotal {
            generated_kwh: total.generated_kwh,
            consumed_kwh: total.consumed_kwh,
        },
        vens: sources.into_iter().map(energy_source).collect(),
    }))
}

fn energy_source(
    (ven_id, chosen): (VenId, Result<calc::VenSources, calc::SourceError>),
) -> EnergySource {
    match chosen {
        Ok(sources) => {
            let mut consumed_from = None;
            let mut generated_from = None;
            for (_, role) in &sources.series {
                match role {
                    calc::SeriesRole::ImportCounter => consumed_from = Some("energy_import"),
                    calc::SeriesRole::ExportCounter => generated_from = Some("energy_export"),
                    calc::SeriesRole::Power {
                        consumed,
                        generated,
                    } => {
                        if *consumed {
                            consumed_from = Some("active_power");
                        }
                        if *generated {
                            generated_from = Some("active_power");
                        }
                    }
                }
            }
            EnergySource {
                ven_id,
                meter: Some(sources.meter),
                consumed_from,
                generated_from,
                unmeasured_reason: None,
            }
        }
        Err(reason) => EnergySource {
            ven_id,
            meter: None,
            consumed_from: None,
            generated_from: None,
            unmeasured_reason: Some(reason.to_string()),
        },
    }
}

/// A finance entry as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct FinanceJson {
    id: i64,
    kind: &'static str,
    amount: f64,
    /// The amount in minor units (cents), exact.
    amount_minor: i64,
    currency: String,
    at_ms: i64,
    category: Option<String>,
    description: Option<String>,
    created_ms: i64,
}

impl From<FinanceRecord> for FinanceJson {
    fn from(r: FinanceRecord) -> Self {
        Self {
            id: r.id,
            kind: r.entry.kind.as_str(),
            amount: calc::minor_to_decimal(r.entry.amount_minor),
            amount_minor: r.entry.amount_minor,
            currency: r.entry.currency,
            at_ms: r.entry.at_ms,
            category: r.entry.category,
            description: r.entry.description,
            created_ms: r.created_ms,
        }
    }
}

/// `POST /api/v1/projects/{id}/finances`: 201 with the entry.
pub(crate) async fn add_entry<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Value>,
) -> Result<(StatusCode, Json<FinanceJson>), ApiError> {
    let id = path_project_id(path)?;
    let request: FinanceRequest = parse_body(body)?;
    let project = state
        .store
        .project(id)
        .await?
        .ok_or_else(|| unknown_project(id))?;
    let mut errors = Vec::new();
    let kind = FinanceKind::from_name(&request.kind)
        .map_err(|e| errors.push(InvalidParam::new("kind", e.to_string())))
        .ok();
    let amount = calc::parse_amount(&request.amount)
        .map_err(|e| errors.push(InvalidParam::new("amount", e.to_string())))
        .ok();
    let currency = request.currency.unwrap_or_else(|| project.currency.clone());
    if let Err(e) = check_currency("currency", &currency) {
        errors.push(e);
    } else if currency != project.currency {
        errors.push(InvalidParam::new(
            "currency",
            format!("the project's finances are kept in {}", project.currency),
        ));
    }
    let at = match &request.at {
        Value::Number(n) => n
            .as_i64()
            .ok_or(ParamError::NotIntegerMs)
            .and_then(|ms| params::time(&ms.to_string())),
        Value::String(s) => params::time(s),
        _ => Err(ParamError::NotTimeValue),
    }
    .map_err(|e| errors.push(InvalidParam::new("at", e.to_string())))
    .ok();
    for (name, text) in [
        ("category", &request.category),
        ("description", &request.description),
    ] {
        if let Some(text) = text
            && let Err(e) = check_text(name, text, MAX_TEXT_LEN)
        {
            errors.push(e);
        }
    }
    let (Some(kind), Some(amount_minor), Some(at_ms), true) = (kind, amount, at, errors.is_empty())
    else {
        return Err(ApiError::InvalidParams(errors));
    };
    let entry = FinanceWrite {
        kind,
        amount_minor,
        currency,
        at_ms,
        category: request.category,
        description: request.description,
    };
    let record = state
        .store
        .add_finance_entry(id, &entry, now_ms())
        .await?
        .ok_or_else(|| unknown_project(id))?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// `DELETE /api/v1/projects/{id}/finances/{entry_id}`: 204.
pub(crate) async fn delete_entry<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((id, entry)) = path.map_err(|r| ApiError::invalid_param("id", r.body_text()))?;
    let id = positive_id("id", &id)?;
    let entry = positive_id("entry_id", &entry)?;
    if state.store.project(id).await?.is_none() {
        return Err(unknown_project(id));
    }
    if state.store.delete_finance_entry(id, entry).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        match ObjectId::new(entry.to_string()) {
            Ok(object) => Err(ApiError::UnknownObject("finance entry", object)),
            Err(e) => Err(ApiError::Internal(Box::new(e))),
        }
    }
}

/// The DR revenue of one event.
#[derive(Debug, Serialize)]
struct DrRevenueRow {
    event_id: ObjectId,
    program_id: ObjectId,
    start_ms: Option<i64>,
    end_ms: i64,
    /// The project's VENs the event was sent to.
    vens: Vec<VenId>,
    /// VENs with a baseline and a during mean (those summed).
    vens_measured: u64,
    /// Baseline mean minus mean during the event, summed over VENs, W.
    shed_w: Option<f64>,
    shed_kwh: Option<f64>,
    /// Per kWh.
    price: Option<f64>,
    /// `event` (its intervals' PRICE payloads) or `program` (its PRICE attribute).
    price_source: Option<&'static str>,
    amount: Option<f64>,
    currency: Option<String>,
    /// Why `amount` is null, or why it is not in the totals; null otherwise.
    reason: Option<String>,
}

/// One period of money.
#[derive(Debug, Serialize)]
struct MoneyRow {
    #[serde(skip_serializing_if = "Option::is_none")]
    start_ms: Option<i64>,
    expenses: f64,
    revenue: f64,
    dr_revenue: f64,
    net: f64,
}

fn money_row(start_ms: Option<i64>, t: calc::MoneyTotals) -> MoneyRow {
    MoneyRow {
        start_ms,
        expenses: calc::minor_to_decimal(t.expenses),
        revenue: calc::minor_to_decimal(t.revenue),
        dr_revenue: calc::minor_to_decimal(t.dr_revenue),
        net: calc::minor_to_decimal(t.net()),
    }
}

/// The answer of `GET /api/v1/projects/{id}/finances`.
#[derive(Debug, Serialize)]
pub(crate) struct FinanceAnswer {
    period: &'static str,
    from_ms: i64,
    to_ms: i64,
    currency: String,
    entries: Vec<FinanceJson>,
    dr_revenue: Vec<DrRevenueRow>,
    totals: Vec<MoneyRow>,
    total: MoneyRow,
}

/// `GET /api/v1/projects/{id}/finances?from=&to=&period=day|month`.
pub(crate) async fn finances<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<FinanceAnswer>, ApiError> {
    let id = path_project_id(path)?;
    let w = window(query, Period::Month)?;
    let project = state
        .store
        .project(id)
        .await?
        .ok_or_else(|| unknown_project(id))?;
    let entries = state.store.finance_entries(id, w.from_ms, w.to_ms).await?;
    let mut amounts: Vec<(i64, MoneyKind, i64)> = entries
        .iter()
        .map(|e| {
            let kind = match e.entry.kind {
                FinanceKind::Expense => MoneyKind::Expense,
                FinanceKind::Revenue => MoneyKind::Revenue,
            };
            (e.entry.at_ms, kind, e.entry.amount_minor)
        })
        .collect();
    let dr_revenue = dr_revenue(
        &state,
        &project,
        w.from_ms,
        w.to_ms.min(now_ms()),
        &mut amounts,
    )
    .await?;
    let (rows, total) = calc::money_per_period(&amounts, w.period, &w.starts);
    Ok(Json(FinanceAnswer {
        period: w.period.as_str(),
        from_ms: w.from_ms,
        to_ms: w.to_ms,
        currency: project.currency,
        entries: entries.into_iter().map(Into::into).collect(),
        dr_revenue,
        totals: rows
            .into_iter()
            .map(|(s, t)| money_row(Some(s), t))
            .collect(),
        total: money_row(None, total),
    }))
}

/// The DR revenue of the events of the project's VENs that ended in
/// `[from_ms, to_ms)`; amounts in the project's currency are added to
/// `amounts` (at the event's end).
async fn dr_revenue<S: Store>(
    state: &AppState<S>,
    project: &ProjectRecord,
    from_ms: i64,
    to_ms: i64,
    amounts: &mut Vec<(i64, MoneyKind, i64)>,
) -> Result<Vec<DrRevenueRow>, ApiError> {
    if project.ven_ids.is_empty() || from_ms >= to_ms {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut programs: BTreeMap<ObjectId, Value> = BTreeMap::new();
    for found in state
        .store
        .project_events(&project.ven_ids, from_ms, to_ms)
        .await?
    {
        let Some(event) = state.store.event(&found.event_id).await? else {
            continue;
        };
        let Some(end_ms) = event.end_ms else {
            continue;
        };
        if !programs.contains_key(&event.program_id) {
            let body = state
                .store
                .program(&event.program_id)
                .await?
                .map_or(Value::Null, |p| p.body);
            programs.insert(event.program_id.clone(), body);
        }
        let program_body = programs.get(&event.program_id).unwrap_or(&Value::Null);
        let mut row = DrRevenueRow {
            event_id: event.id.clone(),
            program_id: event.program_id.clone(),
            start_ms: event.start_ms,
            end_ms,
            vens: found.vens.clone(),
            vens_measured: 0,
            shed_w: None,
            shed_kwh: None,
            price: None,
            price_source: None,
            amount: None,
            currency: None,
            reason: None,
        };
        let Some(start_ms) = event.start_ms.filter(|&s| s < end_ms) else {
            row.reason = Some("the event has no start before its end".into());
            out.push(row);
            continue;
        };
        let measured = measure(&*state.store, &found.vens, start_ms, end_ms).await?;
        let mut shed_w = 0.0;
        for (_, _, _, shed) in measured.sheds() {
            shed_w += shed;
            row.vens_measured += 1;
        }
        let price = calc::event_price(&event.body, program_body);
        if let Ok(p) = &price {
            row.price = Some(p.per_kwh);
            row.price_source = Some(p.source);
            row.currency = Some(
                p.currency
                    .clone()
                    .unwrap_or_else(|| project.currency.clone()),
            );
        }
        if row.vens_measured == 0 {
            row.reason = Some(
                "no VEN has site-meter readings both in the baseline window and during the event"
                    .into(),
            );
            out.push(row);
            continue;
        }
        let kwh = calc::shed_kwh(shed_w, end_ms - start_ms);
        row.shed_w = Some(shed_w);
        row.shed_kwh = Some(kwh);
        match price {
            Err(reason) => row.reason = Some(reason.to_string()),
            Ok(p) => {
                let minor = calc::revenue_minor(kwh, p.per_kwh);
                row.amount = Some(calc::minor_to_decimal(minor));
                if row.currency.as_deref() == Some(project.currency.as_str()) {
                    amounts.push((end_ms, MoneyKind::DrRevenue, minor));
                } else {
                    row.reason = Some(format!(
                        "the price is in {}, not the project's {}: left out of the totals",
                        row.currency.as_deref().unwrap_or("?"),
                        project.currency
                    ));
                }
            }
        }
        out.push(row);
    }
    Ok(out)
}

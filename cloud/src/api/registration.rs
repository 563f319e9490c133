//! `PUT /api/v1/vens/{id}`: the installer registers a VEN with its site,
//! groups and loads (`gridlink-provision register-ven`), so the dashboard
//! knows the site before its first reading. Idempotent: it registers the
//! VEN if unknown and sets its site, site meter and groups; the loads are
//! stored only while the VEN has sent no load snapshot of its own.
//! `site_meter` names the site's grid meter (the agent's `[dr] site_meter`,
//! the `meter` of its series): the measured response of events reads only
//! that meter, so sub-meters (PV, heat pump) do not skew it.
//!
//! ```json
//! {"site": "Depot North", "site_meter": "main", "groups": ["north"],
//!  "loads": [{"name": "hvac", "rated_power_w": 3000.0, "controllable": true}]}
//! ```

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::body::JsonBody;
use super::error::ApiError;
use super::now_ms;
use super::vens::{Ven, path_ven_id};
use crate::store::{RegisteredLoad, Store, VenRegistration};

/// The body of `PUT /api/v1/vens/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistrationRequest {
    /// The site's name, 1 to 128 characters.
    site: String,
    /// The site's grid meter (the agent's `[dr] site_meter`); absent: kept.
    #[serde(default)]
    site_meter: Option<String>,
    /// The VEN's groups (replaced); absent: kept.
    #[serde(default)]
    groups: Option<Vec<String>>,
    /// The site's loads; absent: kept.
    #[serde(default)]
    loads: Option<Vec<LoadRequest>>,
}

/// One load of a [`RegistrationRequest`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoadRequest {
    name: String,
    #[serde(default)]
    rated_power_w: Option<f64>,
    #[serde(default = "controllable_by_default")]
    controllable: bool,
}

const fn controllable_by_default() -> bool {
    true
}

/// The answer: the VEN as `GET /api/v1/vens/{id}` shows it, and its groups.
#[derive(Debug, Serialize)]
pub(crate) struct RegisteredVen {
    #[serde(flatten)]
    ven: Ven,
    groups: Vec<String>,
}

/// `PUT /api/v1/vens/{id}`.
pub(crate) async fn put<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(request): JsonBody<RegistrationRequest>,
) -> Result<Json<RegisteredVen>, ApiError> {
    let ven_id = path_ven_id(path)?;
    let groups = request.groups.map(|mut groups| {
        groups.sort();
        groups.dedup();
        groups
    });
    let registration = VenRegistration {
        site: request.site,
        site_meter: request.site_meter,
        groups,
        loads: request.loads.map(|loads| {
            loads
                .into_iter()
                .map(|load| RegisteredLoad {
                    name: load.name,
                    rated_power_w: load.rated_power_w,
                    controllable: load.controllable,
                })
                .collect()
        }),
    };
    registration
        .check()
        .map_err(|(field, reason)| ApiError::invalid_param(field, reason))?;
    state
        .store
        .register_ven(&ven_id, &registration, now_ms())
        .await?;
    let record = state
        .store
        .ven(&ven_id)
        .await?
        .ok_or_else(|| ApiError::UnknownVen(ven_id.clone()))?;
    let groups = state.store.ven_groups(&ven_id).await?;
    Ok(Json(RegisteredVen {
        ven: record.into(),
        groups,
    }))
}

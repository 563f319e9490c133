//! `GET` and `PATCH /api/v1/vens/{id}/shadow`: a VEN's device shadow.
//!
//! `GET` answers the document as `shadow/get/accepted` shows it (`state`
//! with `desired`, `reported` and `delta`, `version`, `timestamp`); 404
//! (`no-shadow`) when the VEN has none yet.
//!
//! `PATCH` takes `{"desired": {...}, "version": n}` (`version` optional):
//! `desired` is merged into the document's desired state key by key, a
//! `null` deletes a key, `"desired": null` clears it all; with `version`
//! the change applies only to that version (else 409 `conflict`). The
//! keys must be settings the agent accepts
//! ([`gridlink_protocol::shadow::AgentDesired`]: `poll_interval_ms`,
//! `max_shed_s`, `loads.{name}.dr_participation`); an unknown key or a
//! value of the wrong type is a 400 naming it. Whether a value lies inside
//! the agent's hard limits only the agent knows: it refuses one outside
//! them and says why in `reported.rejected`. The document is stored with
//! version + 1 and `update/accepted` and `update/delta` are published to
//! the VEN through the shadow service's MQTT client.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gridlink_protocol::VenId;
use gridlink_protocol::shadow::{
    AgentDesired, ShadowGetAccepted, ShadowUpdateRequest, ShadowUpdateState,
};
use serde_json::{Map, Value};

use super::AppState;
use super::body::JsonBody;
use super::error::ApiError;
use super::params;
use crate::shadow;
use crate::store::{Store, StoreError};

fn path_ven_id(path: Result<Path<String>, PathRejection>) -> Result<VenId, ApiError> {
    let Path(id) =
        path.map_err(|rejection| ApiError::invalid_param("id", rejection.body_text()))?;
    params::ven_id(&id).map_err(|reason| ApiError::invalid_param("id", reason.to_string()))
}

fn now_s() -> i64 {
    super::now_ms() / 1000
}

/// `GET /api/v1/vens/{id}/shadow`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<ShadowGetAccepted>, ApiError> {
    let ven_id = path_ven_id(path)?;
    match state.store.shadow(&ven_id).await? {
        Some(document) => Ok(Json(document.get_accepted(None))),
        None => Err(ApiError::NoShadow(ven_id)),
    }
}

/// The body of `PATCH /api/v1/vens/{id}/shadow`, checked.
#[derive(Debug, PartialEq)]
pub(crate) struct ShadowPatch {
    desired: Value,
    version: Option<u64>,
}

/// Checks a `PATCH` body: an object with `desired` (an object or null) and
/// an optional `version`; `desired` without its `null`s must be an
/// [`AgentDesired`]. Pure.
pub(crate) fn check_patch(mut body: Value) -> Result<ShadowPatch, ApiError> {
    // `5.0` is an integer in JSON Schema: the version and the settings
    // read it as one (and the stored desired state holds `5`).
    super::body::integral_floats_as_integers(&mut body);
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid_param(
            "body",
            "must be an object like {\"desired\": {...}}",
        ));
    };
    let version = match body.remove("version") {
        // `null` is not an integer: the schema says so, and a patch
        // meant for one version must never apply to any.
        None => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|&v| i64::try_from(v).is_ok())
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        "version",
                        format!("must be an integer from 0 to {}", i64::MAX),
                    )
                })?,
        ),
    };
    let desired = body
        .remove("desired")
        .ok_or_else(|| ApiError::invalid_param("desired", "is required"))?;
    if let Some(key) = body.keys().next() {
        return Err(ApiError::invalid_param(
            key.clone(),
            "unknown field; expected `desired` and optionally `version`",
        ));
    }
    match &desired {
        Value::Null => {}
        Value::Object(map) => {
            let settings = Value::Object(without_nulls(map));
            if let Err(error) = serde_json::from_value::<AgentDesired>(settings) {
                return Err(ApiError::invalid_param("desired", error.to_string()));
            }
        }
        _ => {
            return Err(ApiError::invalid_param(
                "desired",
                "must be an object or null",
            ));
        }
    }
    Ok(ShadowPatch { desired, version })
}

/// `map` with every `null` removed, at every depth (a `null` deletes a key
/// and is always allowed).
fn without_nulls(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::Object(inner) => (k.clone(), Value::Object(without_nulls(inner))),
            other => (k.clone(), other.clone()),
        })
        .collect()
}

/// `PATCH /api/v1/vens/{id}/shadow`.
pub(crate) async fn patch<S: Store>(
    State(state): State<AppState<S>>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<ShadowGetAccepted>, ApiError> {
    let ven_id = path_ven_id(path)?;
    let change = check_patch(body)?;
    let Some(handle) = state.shadow.clone() else {
        return Err(ApiError::ShadowOff);
    };
    if state.store.shadow(&ven_id).await?.is_none() && state.store.ven(&ven_id).await?.is_none() {
        return Err(ApiError::UnknownVen(ven_id));
    }
    let request = ShadowUpdateRequest {
        state: Some(ShadowUpdateState {
            desired: Some(change.desired),
            reported: None,
        }),
        client_token: None,
        version: change.version,
    };
    let updated = match shadow::update(&*state.store, &ven_id, &request, now_s()).await? {
        Ok(updated) => updated,
        Err(rejected) if rejected.code == 409 => {
            return Err(ApiError::Conflict(StoreError::Conflict(rejected.message)));
        }
        Err(rejected) => {
            return Err(ApiError::invalid_param("desired", rejected.message));
        }
    };
    state
        .metrics
        .shadow
        .updates_accepted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    handle.publish_update(&ven_id, &updated);
    Ok(Json(updated.document.get_accepted(None)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn reason(error: ApiError) -> String {
        match error {
            ApiError::InvalidParams(params) => format!("{}: {}", params[0].name, params[0].reason),
            other => panic!("not a 400: {other:?}"),
        }
    }

    #[test]
    fn patch_bodies_are_checked_against_the_agent_settings() {
        let ok = check_patch(json!({"desired": {"poll_interval_ms": 5000, "loads": {"hvac": {"dr_participation": false}}}, "version": 3})).unwrap();
        assert_eq!(ok.version, Some(3));
        check_patch(json!({"desired": {"poll_interval_ms": null, "loads": {"hvac": null}}}))
            .unwrap();
        check_patch(json!({"desired": null})).unwrap();
        // Deleting a key the agent does not know is allowed (clean-up).
        check_patch(json!({"desired": {"colour": null}})).unwrap();
        for (body, needle) in [
            (
                json!({"desired": {"colour": "red"}}),
                "unknown field `colour`",
            ),
            (
                json!({"desired": {"loads": {"hvac": {"shed": true}}}}),
                "unknown field `shed`",
            ),
            (
                json!({"desired": {"poll_interval_ms": "fast"}}),
                "desired: invalid type",
            ),
            (json!({"desired": 3}), "must be an object or null"),
            (json!({}), "desired: is required"),
            (
                json!({"desired": {}, "reported": {}}),
                "reported: unknown field",
            ),
            (json!({"desired": {}, "version": -1}), "version: must be"),
            (json!([1]), "body: must be an object"),
        ] {
            let got = reason(check_patch(body.clone()).unwrap_err());
            assert!(got.contains(needle), "{body}: {got}");
        }
    }
}

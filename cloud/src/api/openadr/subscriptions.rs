//! `/subscriptions`: search (`programID`, `clientName`, `objects`, `skip`,
//! `limit`), create, get, replace, delete.
//!
//! Before a subscription is stored, every `callbackUrl` in it must pass
//! the URL policy (HTTPS only, no private or loopback address, unless
//! `[openadr.notify]` allows them) and answer the spec's `echo` challenge
//! (`crate::notify::verify_callback`); else 400 naming the URL and why.
//! The VTN writes the caller's clientID; a VEN reads and changes only its
//! own subscriptions. What a subscription then receives is decided in
//! [`super::notifiers`].

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gridlink_protocol::ObjectId;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::notifiers::{BL_OWNER, ObjectOperation, VEN_OWNER};
use super::privacy;
use super::privacy::owned;
use super::vens::object_json;
use super::{
    SearchQuery, VtnCaller, body_object, check_name, check_targets, finish, new_id, parse, path_id,
    store_error,
};
use crate::api::body::JsonBody;
use crate::api::error::{InvalidParam, quoted};
use crate::api::{ApiError, AppState, now_ms};
use crate::store::Store;
use crate::store::vtn::{ObjectFilter, ObjectKind, VtnObject};

/// The object types a subscription may name.
pub(crate) const OBJECT_TYPES: [&str; 6] = [
    "PROGRAM",
    "EVENT",
    "REPORT",
    "SUBSCRIPTION",
    "VEN",
    "RESOURCE",
];
/// The operations a subscription may name.
pub(crate) const OPERATIONS: [&str; 4] = ["READ", "CREATE", "UPDATE", "DELETE"];
/// The longest callback URL (the spec's limit).
const MAX_URL_LEN: usize = 8000;

/// The fields of a `subscriptionRequest`.
#[derive(Debug, Deserialize)]
pub(crate) struct SubscriptionRequest {
    #[serde(rename = "clientName")]
    pub client_name: String,
    #[serde(rename = "programID", default)]
    pub program_id: Option<ObjectId>,
    #[serde(rename = "objectOperations")]
    pub object_operations: Vec<ObjectOperation>,
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

fn check(request: &SubscriptionRequest) -> Result<(), ApiError> {
    check_name("clientName", &request.client_name)?;
    check_targets("targets", request.targets.as_deref().unwrap_or_default())?;
    for (i, op) in request.object_operations.iter().enumerate() {
        for (j, object) in op.objects.iter().enumerate() {
            if !OBJECT_TYPES.contains(&object.as_str()) {
                return Err(ApiError::invalid_param(
                    format!("objectOperations[{i}].objects[{j}]"),
                    format!(
                        "{} is not one of {}",
                        quoted(object),
                        OBJECT_TYPES.join(", ")
                    ),
                ));
            }
        }
        for (j, operation) in op.operations.iter().enumerate() {
            if !OPERATIONS.contains(&operation.as_str()) {
                return Err(ApiError::invalid_param(
                    format!("objectOperations[{i}].operations[{j}]"),
                    format!(
                        "{} is not one of {}",
                        quoted(operation),
                        OPERATIONS.join(", ")
                    ),
                ));
            }
        }
        if op.callback_url.len() < 2 || op.callback_url.len() > MAX_URL_LEN {
            return Err(ApiError::invalid_param(
                format!("objectOperations[{i}].callbackUrl"),
                format!("2 to {MAX_URL_LEN} characters"),
            ));
        }
    }
    Ok(())
}

async fn subscription_write<S: Store>(
    state: &AppState<S>,
    caller: &VtnCaller,
    map: Map<String, Value>,
    id: ObjectId,
    existing: Option<&VtnObject>,
    now: i64,
) -> Result<VtnObject, ApiError> {
    super::check_spec("subscriptionRequest", &map)?;
    let request: SubscriptionRequest = parse(&map)?;
    check(&request)?;
    if let Some(program) = &request.program_id
        && state.store.program(program).await?.is_none()
    {
        return Err(ApiError::invalid_param(
            "programID",
            format!("no program {}", quoted(program.as_str())),
        ));
    }
    let mut verified: Vec<&str> = Vec::new();
    for (i, op) in request.object_operations.iter().enumerate() {
        if verified.contains(&op.callback_url.as_str()) {
            continue;
        }
        let unchanged = existing.is_some_and(|e| {
            e.body["objectOperations"].as_array().is_some_and(|ops| {
                ops.iter()
                    .any(|o| o["callbackUrl"] == op.callback_url.as_str())
            })
        });
        if !unchanged {
            crate::notify::verify_callback(&state.vtn.notify_config, &op.callback_url)
                .await
                .map_err(|e| {
                    ApiError::invalid_param(
                        format!("objectOperations[{i}].callbackUrl"),
                        e.to_string(),
                    )
                })?;
        }
        verified.push(&op.callback_url);
    }
    Ok(VtnObject {
        id,
        kind: ObjectKind::Subscription,
        client_id: Some(caller.client_id().to_owned()),
        name: Some(request.client_name.clone()),
        parent: Some(if caller.is_ven() { VEN_OWNER } else { BL_OWNER }.to_owned()),
        program_id: request.program_id.map(|p| p.to_string()),
        unique_key: None,
        agent_ven: None,
        targets: request.targets.unwrap_or_default(),
        created_ms: existing.map_or(now, |e| e.created_ms),
        modified_ms: now,
        body: Value::Object(map),
    })
}

/// `GET /subscriptions`.
pub(crate) async fn list<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = SearchQuery::new(query)?;
    let mut errors = Vec::new();
    let (skip, limit) = query.paging(&mut errors);
    let program = query.object_id("programID", &mut errors);
    let name = query.name("clientName", &mut errors);
    let objects = query.all("objects");
    if let Some(bad) = objects.iter().find(|o| !OBJECT_TYPES.contains(&o.as_str())) {
        errors.push(InvalidParam::new(
            "objects",
            format!("{} is not one of {}", quoted(bad), OBJECT_TYPES.join(", ")),
        ));
    }
    finish(errors)?;
    let mut filter = ObjectFilter {
        client_id: privacy::owner(&caller),
        name,
        program_id: program.map(|p| p.to_string()),
        skip: 0,
        limit: u32::MAX,
        ..ObjectFilter::default()
    };
    if objects.is_empty() {
        filter.skip = skip;
        filter.limit = limit;
    }
    let all = state
        .store
        .objects(ObjectKind::Subscription, &filter)
        .await?;
    let wanted = |record: &VtnObject| {
        objects.is_empty()
            || record.body["objectOperations"]
                .as_array()
                .is_some_and(|ops| {
                    ops.iter().any(|op| {
                        op["objects"].as_array().is_some_and(|o| {
                            o.iter().any(|o| objects.iter().any(|w| o == w.as_str()))
                        })
                    })
                })
    };
    let (skip, limit) = if objects.is_empty() {
        (0, usize::MAX)
    } else {
        (skip as usize, limit as usize)
    };
    Ok(Json(
        all.iter()
            .filter(|r| wanted(r))
            .skip(skip)
            .take(limit)
            .map(object_json)
            .collect(),
    ))
}

/// `POST /subscriptions`.
pub(crate) async fn create<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let record = subscription_write(
        &state,
        &caller,
        body_object(body),
        new_id("subscription", now)?,
        None,
        now,
    )
    .await?;
    state
        .store
        .create_object(&record)
        .await
        .map_err(store_error)?;
    super::notifiers::changed(
        &state,
        super::notifiers::Change::owned(&record, object_json(&record), "CREATE"),
    )
    .await;
    Ok((StatusCode::CREATED, Json(object_json(&record))).into_response())
}

/// `GET /subscriptions/{subscriptionID}`.
pub(crate) async fn get<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "subscriptionID")?;
    let record = owned(&state, &caller, ObjectKind::Subscription, id).await?;
    Ok(Json(object_json(&record)))
}

/// `PUT /subscriptions/{subscriptionID}`.
pub(crate) async fn update<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "subscriptionID")?;
    let existing = owned(&state, &caller, ObjectKind::Subscription, id.clone()).await?;
    let record = subscription_write(
        &state,
        &caller,
        body_object(body),
        id.clone(),
        Some(&existing),
        now_ms(),
    )
    .await?;
    match state
        .store
        .update_object(&record)
        .await
        .map_err(store_error)?
    {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::owned(&record, object_json(&record), "UPDATE"),
            )
            .await;
            Ok(Json(object_json(&record)))
        }
        None => Err(ApiError::UnknownObject("subscription", id)),
    }
}

/// `DELETE /subscriptions/{subscriptionID}`.
pub(crate) async fn delete<S: Store>(
    State(state): State<AppState<S>>,
    Extension(caller): Extension<VtnCaller>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = path_id(path, "subscriptionID")?;
    owned(&state, &caller, ObjectKind::Subscription, id.clone()).await?;
    match state
        .store
        .delete_object(ObjectKind::Subscription, &id)
        .await?
    {
        Some(record) => {
            super::notifiers::changed(
                &state,
                super::notifiers::Change::owned(&record, object_json(&record), "DELETE"),
            )
            .await;
            Ok(Json(object_json(&record)))
        }
        None => Err(ApiError::UnknownObject("subscription", id)),
    }
}

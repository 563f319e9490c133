//! `/health`, `/metrics` and `/openapi.json`: the public routes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::AppState;
use super::openapi::openapi_document;
use crate::store::Store;

/// Longest `/health` waits for the database.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The Prometheus text format's media type.
const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The answer of `GET /health`.
#[derive(Debug, Serialize)]
pub(crate) struct Health {
    status: &'static str,
    database: &'static str,
    broker: &'static str,
    version: &'static str,
}

/// `GET /health`: 200 when the database answers a ping within 2 s and
/// ingest is connected to the broker, else 503; the body says which part
/// is down.
pub(crate) async fn health<S: Store>(State(state): State<AppState<S>>) -> Response {
    let database = match tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(error)) => {
            tracing::warn!(%error, "health: database ping failed");
            "unavailable"
        }
        Err(_) => {
            tracing::warn!(timeout = ?PING_TIMEOUT, "health: database ping timed out");
            "unavailable"
        }
    };
    let broker = if state.metrics.ingest.mqtt_connected.load(Ordering::Relaxed) == 1 {
        "connected"
    } else {
        "disconnected"
    };
    let healthy = database == "ok" && broker == "connected";
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if healthy { "ok" } else { "unavailable" },
        database,
        broker,
        version: env!("CARGO_PKG_VERSION"),
    };
    (status, Json(body)).into_response()
}

/// `GET /metrics`: ingest metrics, then HTTP request counters.
pub(crate) async fn metrics<S: Store>(State(state): State<AppState<S>>) -> Response {
    let mut text = state.metrics.render();
    text.push_str(&state.requests.render());
    ([(CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

/// `GET /openapi.json`.
pub(crate) async fn openapi() -> Json<serde_json::Value> {
    Json(openapi_document())
}

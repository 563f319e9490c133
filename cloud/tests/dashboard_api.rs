//! The dashboard's API routes through the router without a socket, on
//! SQLite and on PostgreSQL: `/api/v1/me` for every role, `/api/v1/overview`
//! (online state, site-meter power as import/export, running events,
//! totals), the live stream `/api/v1/live` (ready, readings, statuses,
//! redeliveries left out, lagged, bad parameters), and the embedded
//! assets (redirect, content types, ETag/304, CSP, 404).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt as _;
use gridlink_cloud::api::auth::{self, Permission};
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::feed::FEED_CAPACITY;
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{IngestBatch, Role, Store, VenRegistration};
use gridlink_protocol::{Phase, Point, Quantity, Series, Status, Timestamp, VenId};
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::ApiApp;

const WAIT: Duration = Duration::from_secs(20);

fn ven(id: &str) -> VenId {
    VenId::new(id).unwrap()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// A batch of `meter`'s total active power (W, exponent 0).
fn power(ven_id: &str, meter: &str, seq: u64, points: &[(i64, i64)]) -> IngestBatch {
    IngestBatch {
        ven_id: ven(ven_id),
        batch_seq: seq,
        received_ms: points.last().map_or(0, |p| p.0) + 250,
        series: vec![Series {
            meter: meter.into(),
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            exponent: 0,
            points: points
                .iter()
                .map(|&(ts_ms, raw)| Point { ts_ms, raw })
                .collect(),
        }],
    }
}

fn status(ven_id: &str, online: bool, at_ms: i64) -> Status {
    Status {
        ven_id: ven(ven_id),
        online,
        at: Timestamp::from_unix_ms(at_ms).unwrap(),
        agent_version: "1.0.0".into(),
        backlog_batches: 0,
        dropped_readings: 0,
    }
}

/// A permission's name as `/api/v1/me` writes it: its variant in `snake_case`.
fn permission_name(permission: Permission) -> String {
    let mut name = String::new();
    for (i, c) in format!("{permission:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

async fn me_for_every_role(app: ApiApp) {
    for role in [Role::Viewer, Role::Operator, Role::Installer, Role::Admin] {
        let (code, me) = app
            .request(Method::GET, "/api/v1/me", app.token(role), None)
            .await;
        assert_eq!(code, StatusCode::OK, "{me}");
        assert_eq!(me["role"], role.as_str());
        assert_eq!(me["name"], role.as_str());
        let expected: Vec<String> = Permission::ALL
            .into_iter()
            .filter(|&p| auth::allows(role, p))
            .map(permission_name)
            .collect();
        assert_eq!(me["permissions"], json!(expected), "{role:?}");
        assert!(me["token_id"].as_i64().unwrap() > 0);
    }
    // What the page decides on, spelled out.
    let app = &app;
    let names = |role: Role| async move {
        let (_, me) = app
            .request(Method::GET, "/api/v1/me", app.token(role), None)
            .await;
        me["permissions"].clone()
    };
    assert_eq!(names(Role::Viewer).await, json!(["read_telemetry"]));
    assert!(
        names(Role::Operator)
            .await
            .as_array()
            .unwrap()
            .contains(&json!("dispatch"))
    );
    assert!(
        !names(Role::Installer)
            .await
            .as_array()
            .unwrap()
            .contains(&json!("dispatch"))
    );
    // A `ven` token may ask too: it may do none of these things.
    let token = auth::issue_token().unwrap();
    app.store
        .create_token("ven-1 client", Role::Ven, &token.hash)
        .await
        .unwrap();
    let (code, me) = app
        .request(Method::GET, "/api/v1/me", &token.secret, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{me}");
    assert_eq!(me["permissions"], json!([]));
    assert_eq!(me["name"], "ven-1 client");
    // Unknown and malformed tokens: 401.
    let unknown = auth::issue_token().unwrap();
    for bad in [unknown.secret.as_str(), "nope"] {
        let (code, problem) = app.request(Method::GET, "/api/v1/me", bad, None).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{problem}");
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn overview_power_events_and_totals(app: ApiApp) {
    let viewer = app.token(Role::Viewer).to_owned();
    let (code, empty) = app
        .request(Method::GET, "/api/v1/overview", &viewer, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{empty}");
    assert_eq!(empty["vens"], json!([]));
    assert_eq!(empty["totals"]["vens_total"], 0);
    assert_eq!(empty["totals"]["import_w"], 0.0);

    let now = now_ms();
    let t = now - 600_000;
    // ven-1: registered with site meter `grid`; also a PV sub-meter, which
    // must not count. Importing 1500 W now (the newest reading wins).
    app.store
        .register_ven(
            &ven("ven-1"),
            &VenRegistration {
                site: "Depot North".into(),
                site_meter: Some("grid".into()),
                groups: Some(vec!["north".into()]),
                loads: None,
            },
            now,
        )
        .await
        .unwrap();
    // ven-2: unregistered, one total active power series: exporting 400 W.
    // ven-3: unregistered with two such series: which is the grid's is
    // unknown, so no figure.
    app.store
        .ingest(&[
            power("ven-1", "grid", 1, &[(t, 900), (t + 120_000, 1500)]),
            power("ven-1", "pv", 2, &[(t + 120_000, -3000)]),
            power("ven-2", "main", 1, &[(t, 100), (t + 60_000, -400)]),
            power("ven-3", "a", 1, &[(t, 10)]),
            power("ven-3", "b", 2, &[(t, 20)]),
        ])
        .await
        .unwrap();
    app.store
        .record_status(&status("ven-1", true, t), t + 10)
        .await
        .unwrap();
    app.store
        .record_status(&status("ven-2", false, t), t + 20)
        .await
        .unwrap();

    // A running event for ven-1 (group north), and one in the future.
    let operator = app.token(Role::Operator).to_owned();
    let (code, program) = app
        .request(
            Method::POST,
            "/openadr3/3.1.0/programs",
            &operator,
            Some(&json!({ "programName": "peak" })),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{program}");
    let event = |name: &str, start_ms: i64| {
        json!({
            "programID": program["id"],
            "eventName": name,
            "targets": ["north"],
            "intervalPeriod": {
                "start": Timestamp::from_unix_ms(start_ms).unwrap().to_string(),
                "duration": "PT1H"
            },
            "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [1] }] }]
        })
    };
    let (code, running) = app
        .request(
            Method::POST,
            "/openadr3/3.1.0/events",
            &operator,
            Some(&event("running", now - 60_000)),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{running}");
    let (code, later) = app
        .request(
            Method::POST,
            "/openadr3/3.1.0/events",
            &operator,
            Some(&event("later", now + 7_200_000)),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{later}");

    let (code, overview) = app
        .request(Method::GET, "/api/v1/overview", &viewer, None)
        .await;
    assert_eq!(code, StatusCode::OK, "{overview}");
    let vens = overview["vens"].as_array().unwrap();
    let ids: Vec<&str> = vens.iter().map(|v| v["ven_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["ven-1", "ven-2", "ven-3"]);
    let (v1, v2, v3) = (&vens[0], &vens[1], &vens[2]);
    assert_eq!(v1["site"], "Depot North");
    assert_eq!(v1["online"], true);
    assert_eq!(v1["power_w"], 1500.0);
    assert_eq!(v1["import_w"], 1500.0);
    assert_eq!(v1["export_w"], 0.0);
    assert_eq!(v1["power_ts_ms"], t + 120_000);
    assert_eq!(v1["last_reading_ms"], t + 120_000);
    assert_eq!(v1["ingest_lag_ms"], 250);
    let active = v1["active_events"].as_array().unwrap();
    assert_eq!(active.len(), 1, "only the running event: {active:?}");
    assert_eq!(active[0]["id"], running["id"]);
    assert_eq!(active[0]["name"], "running");
    assert_eq!(v2["online"], false);
    assert_eq!(v2["power_w"], -400.0);
    assert_eq!(v2["import_w"], 0.0);
    assert_eq!(v2["export_w"], 400.0);
    assert_eq!(v2["active_events"], json!([]));
    assert_eq!(v3["online"], Value::Null);
    assert_eq!(v3["power_w"], Value::Null, "two meters, none registered");
    let totals = &overview["totals"];
    assert_eq!(totals["import_w"], 1500.0);
    assert_eq!(totals["export_w"], 400.0);
    assert_eq!(totals["vens_total"], 3);
    assert_eq!(totals["vens_online"], 1);
    assert_eq!(totals["vens_offline"], 1);
    assert_eq!(totals["vens_unknown"], 1);
    assert_eq!(totals["vens_metered"], 2);
    assert_eq!(totals["active_events"], 1);

    // Without a token: 401; with a parameter it does not take: 400.
    let (code, _) = app.request(Method::GET, "/api/v1/overview", "", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
}

/// Reads server-sent events from a response body.
struct Events {
    body: axum::body::BodyDataStream,
    buffer: String,
}

impl Events {
    /// The next event's name and JSON data (comments skipped).
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        n.trim().clone_into(&mut name);
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (name, serde_json::from_str(&data).unwrap());
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("an event in time")
                .expect("the stream goes on")
                .unwrap();
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn live_stream(app: ApiApp) {
    // The router over the same store, keeping the feed to publish into as
    // ingest does after a commit.
    let state = AppState::new(Arc::clone(&app.store), Arc::new(Metrics::default()));
    let feed = state.feed.clone();
    let router = api::router(state);
    let viewer = app.token(Role::Viewer).to_owned();
    let get = |uri: &str, token: &str| {
        Request::builder()
            .method(Method::GET)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };

    // Bad parameters are named; an unknown VEN is a 404.
    for (uri, name) in [
        ("/api/v1/live?ven_id=bad%20id", "ven_id"),
        ("/api/v1/live?ven=ven-1", "ven"),
        ("/api/v1/live?ven_id=a&ven_id=b", "ven_id"),
    ] {
        let (code, problem) = app.request(Method::GET, uri, &viewer, None).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}: {problem}");
        assert_eq!(problem["invalid_params"][0]["name"], name, "{problem}");
    }
    let (code, problem) = app
        .request(Method::GET, "/api/v1/live?ven_id=ven-9", &viewer, None)
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{problem}");
    let (code, _) = app.request(Method::GET, "/api/v1/live", "", None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    let t = now_ms();
    app.store
        .ingest(&[power("ven-1", "grid", 1, &[(t, 100)])])
        .await
        .unwrap();
    app.store
        .ingest(&[power("ven-2", "grid", 1, &[(t, 100)])])
        .await
        .unwrap();

    let response = router
        .clone()
        .oneshot(get("/api/v1/live?ven_id=ven-1", &viewer))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE].to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = Events {
        body: response.into_body().into_data_stream(),
        buffer: String::new(),
    };
    let (name, ready) = events.next().await;
    assert_eq!(name, "ready");
    assert_eq!(ready["ven_id"], "ven-1");

    // Another VEN's batch is filtered out; ven-1's arrives with values in W.
    feed.telemetry(&[power("ven-2", "grid", 2, &[(t + 1000, 7)])]);
    let batch = power("ven-1", "grid", 2, &[(t + 1000, 1234), (t + 2000, 1240)]);
    feed.telemetry(std::slice::from_ref(&batch));
    let (name, readings) = events.next().await;
    assert_eq!(name, "reading");
    assert_eq!(
        readings,
        json!([
            { "ven_id": "ven-1", "meter": "grid", "quantity": "active_power", "phase": "total",
              "ts_ms": t + 1000, "value": 1234.0 },
            { "ven_id": "ven-1", "meter": "grid", "quantity": "active_power", "phase": "total",
              "ts_ms": t + 2000, "value": 1240.0 }
        ])
    );
    // A redelivery is left out; of a batch with old and new, only the new.
    feed.telemetry(std::slice::from_ref(&batch));
    feed.telemetry(&[power(
        "ven-1",
        "grid",
        3,
        &[(t + 2000, 1240), (t + 3000, 990)],
    )]);
    let (name, readings) = events.next().await;
    assert_eq!(name, "reading");
    assert_eq!(readings.as_array().unwrap().len(), 1, "{readings}");
    assert_eq!(readings[0]["value"], 990.0);

    // Statuses.
    feed.status(&status("ven-2", true, t), t + 5);
    feed.status(&status("ven-1", false, t + 4000), t + 4100);
    let (name, offline) = events.next().await;
    assert_eq!(name, "status");
    assert_eq!(
        offline,
        json!({ "ven_id": "ven-1", "online": false, "at_ms": t + 4000, "received_ms": t + 4100 })
    );

    // Falling behind: `lagged` with how many were skipped, then it goes on.
    for seq in 0..(FEED_CAPACITY as u64 + 10) {
        feed.telemetry(&[power("ven-2", "grid", 100 + seq, &[(t + 10_000, 1)])]);
    }
    let (name, lagged) = events.next().await;
    assert_eq!(name, "lagged");
    assert!(lagged["skipped"].as_u64().unwrap() >= 10, "{lagged}");
    // The stream reads the backlog while this publishes, so it may lag
    // once more (by the items this pushes out); then the reading comes.
    feed.telemetry(&[power("ven-1", "grid", 9, &[(t + 20_000, 42)])]);
    let (mut name, mut readings) = events.next().await;
    while name == "lagged" {
        (name, readings) = events.next().await;
    }
    assert_eq!(name, "reading");
    assert_eq!(readings[0]["value"], 42.0);

    // Unfiltered: every VEN.
    let response = router
        .clone()
        .oneshot(get("/api/v1/live", &viewer))
        .await
        .unwrap();
    let mut events = Events {
        body: response.into_body().into_data_stream(),
        buffer: String::new(),
    };
    assert_eq!(events.next().await.0, "ready");
    feed.telemetry(&[power("ven-2", "grid", 50, &[(t + 30_000, 5)])]);
    let (_, readings) = events.next().await;
    assert_eq!(readings[0]["ven_id"], "ven-2");
}

/// One plain request; the status, headers and body.
async fn fetch(
    router: &axum::Router,
    uri: &str,
    if_none_match: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::builder().uri(uri);
    if let Some(tag) = if_none_match {
        request = request.header("if-none-match", tag);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 24)
        .await
        .unwrap()
        .to_vec();
    (status, headers, body)
}

async fn assets(app: ApiApp) {
    let router = &app.router;
    for from in ["/", "/dashboard"] {
        let (code, headers, _) = fetch(router, from, None).await;
        assert_eq!(code, StatusCode::SEE_OTHER, "{from}");
        assert_eq!(headers["location"], "/dashboard/");
    }
    let (code, headers, body) = fetch(router, "/dashboard/", None).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-cache");
    assert!(String::from_utf8(body).unwrap().contains("app.js"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (code, headers, body) = fetch(router, "/dashboard/", Some(&etag)).await;
    assert_eq!(code, StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(headers["etag"], etag.as_str());
    let (code, _, body) = fetch(router, "/dashboard/", Some("\"stale\"")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(!body.is_empty());
    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("chart.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let (code, headers, body) = fetch(router, &format!("/dashboard/{file}"), None).await;
        assert_eq!(code, StatusCode::OK, "{file}");
        assert_eq!(headers[CONTENT_TYPE], kind, "{file}");
        assert!(!body.is_empty(), "{file}");
    }
    let (code, headers, body) = fetch(router, "/dashboard/secret.txt", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(headers[CONTENT_TYPE], "application/problem+json");
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 404);
    // The API still answers its own 404s and the dashboard routes are in
    // the request metrics like the others.
    let (code, _, _) = fetch(router, "/api/v1/nothing", None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

async fn openapi_describes_the_dashboard_routes(app: ApiApp) {
    let (code, doc) = app.request(Method::GET, "/openapi.json", "", None).await;
    assert_eq!(code, StatusCode::OK);
    for (path, id) in [
        ("/api/v1/live", "getLiveStream"),
        ("/api/v1/overview", "getOverview"),
        ("/api/v1/me", "getMe"),
    ] {
        assert_eq!(doc["paths"][path]["get"]["operationId"], id, "{path}");
        assert_eq!(
            doc["paths"][path]["get"]["security"],
            json!([{ "bearer": [] }]),
            "{path}"
        );
    }
    assert!(doc["components"]["schemas"]["Overview"].is_object());
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::ApiApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::ApiApp::postgres(stringify!($name)).await).await;
                }
            )*
        }
    };
}

on_both!(
    me_for_every_role,
    overview_power_events_and_totals,
    live_stream,
    assets,
    openapi_describes_the_dashboard_routes,
);

//! The HTTP API over a real SQLite store in a temporary directory, driven
//! with `tower::ServiceExt::oneshot` (no socket): auth, validation, problem
//! documents, series values at every step against the known readings, and
//! the `OpenAPI` document against the router.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use axum::http::header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use gridlink_cloud::api::auth;
use gridlink_cloud::api::{self, AppState, Operation};
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, IngestBatch, Role, Store};
use gridlink_protocol::{
    LoadChangeCause, LoadSnapshot, LoadState, ObjectId, Phase, Quantity, Series, Status, Timestamp,
    VenId,
};
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
/// site-1 reports active power every 10 s for 2 h; reading `i` is `i` W.
const READINGS: i64 = 720;
const INTERVAL_MS: i64 = 10_000;
/// site-2 exports 100 W for the first hour.
const SITE2_READINGS: i64 = 360;

struct TestApp {
    router: Router,
    store: Arc<AnyStore>,
    metrics: Arc<Metrics>,
    admin: String,
    viewer: String,
    ven: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl TestApp {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("api.db").display());
        let store = Arc::new(AnyStore::connect(&url).await.expect("open SQLite"));
        store.migrate().await.expect("migrate");
        let mut tokens = Vec::new();
        for role in [Role::Admin, Role::Viewer, Role::Ven] {
            let token = auth::issue_token().expect("random token");
            store
                .create_token(role.as_str(), role, &token.hash)
                .await
                .expect("store token");
            tokens.push(token.secret);
        }
        seed(&store).await;
        let metrics = Arc::new(Metrics::default());
        metrics.ingest.mqtt_connected.store(1, Ordering::Relaxed);
        // Subscriptions' callbacks may be local plain HTTP here (the walk's
        // echo server, `DrIds::create`).
        let vtn = api::VtnState::without_delivery(gridlink_cloud::notify::NotifyConfig {
            allow_http: true,
            allow_private: true,
            ..gridlink_cloud::notify::NotifyConfig::default()
        });
        let router =
            api::router(AppState::new(Arc::clone(&store), Arc::clone(&metrics)).with_vtn(vtn));
        let [admin, viewer, ven] = <[String; 3]>::try_from(tokens).expect("three tokens");
        Self {
            router,
            store,
            metrics,
            admin,
            viewer,
            ven,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .expect("request");
        self.send(request).await
    }

    /// Sends a built request; its answer.
    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            json,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, Some(&self.viewer), None).await
    }
}

fn ven(id: &str) -> VenId {
    VenId::new(id).expect("valid VEN id")
}

fn site1_value(i: i64) -> f64 {
    i as f64
}

/// site-1: 720 readings in 8 batches (one per 15 min); site-2: 360 in one
/// batch; a status and a load snapshot for site-1.
async fn seed(store: &AnyStore) {
    // site-1 has a device shadow (for `GET .../shadow`).
    let shadow = gridlink_protocol::shadow::ShadowDocument {
        version: 1,
        ..Default::default()
    };
    gridlink_cloud::store::ShadowStore::save_shadow(store, &ven("site-1"), &shadow, 0, T0)
        .await
        .expect("store a shadow");
    let mut batches = Vec::new();
    for (seq, chunk) in (0..READINGS).collect::<Vec<_>>().chunks(90).enumerate() {
        let mut series = Series::new("main", Quantity::ActivePower, Phase::Total, 0);
        for &i in chunk {
            series
                .push(T0 + i * INTERVAL_MS, site1_value(i))
                .expect("reading fits");
        }
        let last = T0 + chunk[chunk.len() - 1] * INTERVAL_MS;
        batches.push(IngestBatch {
            ven_id: ven("site-1"),
            batch_seq: seq as u64 + 1,
            received_ms: last + 1500,
            series: vec![series],
        });
    }
    let mut export = Series::new("grid", Quantity::ActivePower, Phase::Total, 0);
    for i in 0..SITE2_READINGS {
        export
            .push(T0 + i * INTERVAL_MS, -100.0)
            .expect("reading fits");
    }
    batches.push(IngestBatch {
        ven_id: ven("site-2"),
        batch_seq: 1,
        received_ms: T0 + SITE2_READINGS * INTERVAL_MS,
        series: vec![export],
    });
    let outcome = store.ingest(&batches).await.expect("ingest");
    assert_eq!(
        outcome.inserted_readings,
        (READINGS + SITE2_READINGS) as u64
    );

    let at = Timestamp::from_unix_ms(T0 + READINGS * INTERVAL_MS).expect("timestamp in range");
    let status = Status {
        ven_id: ven("site-1"),
        online: true,
        at,
        agent_version: "1.2.3".into(),
        backlog_batches: 0,
        dropped_readings: 0,
    };
    store
        .record_status(&status, at.unix_ms())
        .await
        .expect("record status");
    let load = |name: &str, on: bool, cause: LoadChangeCause| LoadState {
        name: name.into(),
        on,
        power_w: Some(1500.0),
        setpoint: None,
        controllable: true,
        last_change: Some(Timestamp::from_unix_ms(T0).expect("timestamp in range")),
        cause,
    };
    let snapshot = LoadSnapshot {
        ven_id: ven("site-1"),
        at,
        loads: vec![
            load(
                "boiler",
                false,
                LoadChangeCause::Event {
                    event_id: ObjectId::new("e1").expect("valid event id"),
                },
            ),
            load("pump", true, LoadChangeCause::Startup),
        ],
    };
    store
        .record_loads(&snapshot, at.unix_ms())
        .await
        .expect("record loads");
}

fn assert_problem(answer: &Answer, status: StatusCode, slug: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.headers[CONTENT_TYPE], "application/problem+json");
    assert_eq!(
        answer.json["type"],
        format!("urn:gridlink:problem:{slug}"),
        "{}",
        answer.json
    );
    assert_eq!(answer.json["status"], status.as_u16());
    assert!(answer.json["title"].is_string() && answer.json["detail"].is_string());
}

/// The one parameter a 400 names, in `invalid_params` and in `detail`.
fn assert_names_param(answer: &Answer, name: &str) {
    assert_problem(answer, StatusCode::BAD_REQUEST, "invalid-parameter");
    let names: Vec<&str> = answer.json["invalid_params"]
        .as_array()
        .expect("invalid_params array")
        .iter()
        .map(|p| p["name"].as_str().expect("parameter name"))
        .collect();
    assert_eq!(names, [name], "{}", answer.json);
    assert!(
        answer.json["detail"]
            .as_str()
            .expect("detail string")
            .starts_with(&format!("{name}: ")),
        "{}",
        answer.json
    );
}

#[tokio::test]
async fn missing_and_unknown_tokens_are_401_with_a_bearer_challenge() {
    let app = TestApp::new().await;
    let answer = app.call(Method::GET, "/api/v1/vens", None, None).await;
    assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        answer.headers[WWW_AUTHENTICATE],
        "Bearer realm=\"gridlink\""
    );

    let unknown = auth::issue_token().unwrap().secret;
    for token in [unknown.as_str(), "not-a-token", "glk_00"] {
        let answer = app
            .call(Method::GET, "/api/v1/vens", Some(token), None)
            .await;
        assert_problem(&answer, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert!(
            answer.headers[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
        assert!(
            answer.headers[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
    }
    let basic = Request::builder()
        .uri("/api/v1/vens")
        .header(AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(basic).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn roles_without_the_permission_are_403() {
    let app = TestApp::new().await;
    let body = json!({ "name": "x", "role": "viewer" });
    let answer = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&app.viewer),
            Some(body),
        )
        .await;
    assert_problem(&answer, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        answer.json["detail"],
        "a token with role viewer may not manage API tokens"
    );
    assert!(answer.headers.get(WWW_AUTHENTICATE).is_none());

    let answer = app
        .call(Method::GET, "/api/v1/vens", Some(&app.ven), None)
        .await;
    assert_problem(&answer, StatusCode::FORBIDDEN, "forbidden");
    let answer = app
        .call(Method::GET, "/api/v1/vens", Some(&app.admin), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn admins_create_tokens_that_then_authenticate() {
    let app = TestApp::new().await;
    let body = json!({ "name": "ops dashboard", "role": "viewer" });
    let answer = app
        .call(Method::POST, "/api/v1/tokens", Some(&app.admin), Some(body))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
    assert_eq!(answer.headers[CACHE_CONTROL], "no-store");
    assert_eq!(answer.json["name"], "ops dashboard");
    assert_eq!(answer.json["role"], "viewer");
    let token = answer.json["token"].as_str().unwrap().to_string();
    assert!(auth::is_well_formed(&token), "{token}");
    let stored = app
        .store
        .token(&auth::hash_token(&token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.id, stored.role),
        (answer.json["id"].as_i64().unwrap(), Role::Viewer)
    );

    let answer = app
        .call(Method::GET, "/api/v1/vens", Some(&token), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&token),
            Some(json!({ "name": "y", "role": "admin" })),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "a viewer cannot escalate"
    );

    let answer = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&app.admin),
            Some(json!({ "name": "x", "role": "root" })),
        )
        .await;
    assert_names_param(&answer, "role");
    let answer = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&app.admin),
            Some(json!({ "name": "", "role": "viewer" })),
        )
        .await;
    assert_names_param(&answer, "name");
    let answer = app
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(&app.admin),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_names_param(&answer, "role");
    let request = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/tokens")
        .header(AUTHORIZATION, format!("Bearer {}", app.admin))
        .body(Body::from("name=x"))
        .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
}

#[tokio::test]
async fn vens_and_loads_reflect_the_store() {
    let app = TestApp::new().await;
    let answer = app.get("/api/v1/vens").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers[CONTENT_TYPE], "application/json");
    let ids: Vec<&str> = answer.json["vens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["ven_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["site-1", "site-2"]);

    let answer = app.get("/api/v1/vens/site-1").await;
    assert_eq!(answer.status, StatusCode::OK);
    let record = app.store.ven(&ven("site-1")).await.unwrap().unwrap();
    assert_eq!(answer.json["online"], true);
    assert_eq!(answer.json["agent_version"], "1.2.3");
    assert_eq!(answer.json["last_seen_ms"], json!(record.last_seen_ms));
    assert_eq!(
        answer.json["last_reading_ms"],
        json!(T0 + (READINGS - 1) * INTERVAL_MS)
    );
    assert_eq!(answer.json["ingest_lag_ms"], json!(record.ingest_lag_ms));
    assert!(record.ingest_lag_ms.is_some());
    let site2 = app.get("/api/v1/vens/site-2").await;
    assert_eq!(site2.json["online"], Value::Null, "never sent a status");

    let answer = app.get("/api/v1/vens/site-1/loads").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["ven_id"], "site-1");
    let loads = answer.json["loads"].as_array().unwrap();
    assert_eq!(loads.len(), 2);
    assert_eq!(loads[0]["name"], "boiler");
    assert_eq!(loads[0]["on"], false);
    assert_eq!(loads[0]["cause"], json!({ "event": { "event_id": "e1" } }));
    assert_eq!(loads[1]["power_w"], 1500.0);
    let answer = app.get("/api/v1/vens/site-2/loads").await;
    assert_eq!(answer.json["loads"], json!([]));
}

#[tokio::test]
async fn unknown_vens_are_404_and_bad_ids_400() {
    let app = TestApp::new().await;
    for uri in [
        "/api/v1/vens/nobody",
        "/api/v1/vens/nobody/loads",
        "/api/v1/series?ven=nobody&meter=main&quantity=active_power&from=0&to=60000",
    ] {
        let answer = app.get(uri).await;
        assert_problem(&answer, StatusCode::NOT_FOUND, "unknown-ven");
        assert_eq!(answer.json["detail"], "no VEN \"nobody\" is known");
    }
    let answer = app.get("/api/v1/vens/a+b").await;
    assert_names_param(&answer, "id");
}

#[tokio::test]
async fn bad_series_parameters_are_400_naming_the_parameter() {
    let app = TestApp::new().await;
    let base = "/api/v1/series?ven=site-1&meter=main";
    let cases = [
        (format!("{base}&quantity=power"), "quantity"),
        (format!("{base}&quantity=active_power&phase=L4"), "phase"),
        (
            format!(
                "{base}&quantity=active_power&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"
            ),
            "from",
        ),
        (
            format!("{base}&quantity=active_power&from=0&to=86400000&step=PT1S"),
            "step",
        ),
        (format!("{base}&quantity=active_power&step=1m"), "step"),
        (
            format!("{base}&quantity=active_power&from=yesterday"),
            "from",
        ),
        (format!("{base}&quantity=active_power&colour=red"), "colour"),
        (format!("{base}&quantity=active_power&ven=site-2"), "ven"),
        (
            "/api/v1/series?ven=site-1&quantity=active_power".to_string(),
            "meter",
        ),
        (
            "/api/v1/network?from=0&to=3600000&step=PT30S".to_string(),
            "step",
        ),
        (
            "/api/v1/network?from=0&to=31536000000&step=PT1M".to_string(),
            "step",
        ),
    ];
    for (uri, name) in cases {
        let answer = app.get(&uri).await;
        assert_names_param(&answer, name);
    }
    let answer = app
        .get(&format!(
            "{base}&quantity=active_power&from=0&to=86400000&step=PT1S"
        ))
        .await;
    let detail = answer.json["detail"].as_str().unwrap();
    assert!(
        detail.contains("86400 points") && detail.contains("at most 10000"),
        "{detail}"
    );

    let answer = app.get("/api/v1/series?quantity=volts&step=0").await;
    let names: BTreeSet<&str> = answer.json["invalid_params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["ven", "meter", "quantity", "step"]),
        "every error at once"
    );
}

/// What a series point of `step_ms` must be, from site-1's readings.
fn expected_points(step_ms: i64) -> Vec<Value> {
    let mut points: Vec<(i64, Vec<f64>)> = Vec::new();
    for i in 0..READINGS {
        let ts = T0 + i * INTERVAL_MS;
        let bucket = ts.div_euclid(step_ms) * step_ms;
        match points.last_mut() {
            Some((b, values)) if *b == bucket => values.push(site1_value(i)),
            _ => points.push((bucket, vec![site1_value(i)])),
        }
    }
    points
        .into_iter()
        .map(|(ts, values)| {
            let count = values.len();
            json!({
                "ts_ms": ts,
                "avg": values.iter().sum::<f64>() / count as f64,
                "min": values.iter().copied().fold(f64::INFINITY, f64::min),
                "max": values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                "last": values[count - 1],
                "count": count,
            })
        })
        .collect()
}

#[tokio::test]
async fn series_at_every_step_agree_with_the_readings() {
    let app = TestApp::new().await;
    let to = T0 + READINGS * INTERVAL_MS;
    for (step, step_ms, resolution) in [
        ("PT10S", 10_000, "raw"),
        ("30", 30_000, "raw"),
        ("PT90S", 90_000, "raw"),
        ("PT1M", 60_000, "PT1M"),
        ("PT5M", 300_000, "PT1M"),
        ("PT15M", 900_000, "PT15M"),
        ("PT30M", 1_800_000, "PT15M"),
        ("PT1H", 3_600_000, "PT1H"),
    ] {
        let uri = format!(
            "/api/v1/series?ven=site-1&meter=main&quantity=active_power&from=2026-01-01T00:00:00Z&to={to}&step={step}"
        );
        let answer = app.get(&uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{step}: {}", answer.json);
        let json = &answer.json;
        assert_eq!(json["resolution"], resolution, "{step}");
        assert_eq!(json["step_ms"], step_ms, "{step}");
        assert_eq!(
            (json["unit"].as_str(), json["phase"].as_str()),
            (Some("W"), Some("total"))
        );
        assert_eq!(json["truncated"], false);
        assert_eq!(json["from_ms"], T0.div_euclid(step_ms) * step_ms);
        let expected = expected_points(step_ms);
        let points = json["points"].as_array().unwrap();
        assert_eq!(points.len(), expected.len(), "{step}");
        for (got, want) in points.iter().zip(&expected) {
            for field in ["ts_ms", "count", "min", "max", "last"] {
                assert_eq!(got[field], want[field], "{step} {field}: {got} vs {want}");
            }
            let (got_avg, want_avg) = (got["avg"].as_f64().unwrap(), want["avg"].as_f64().unwrap());
            assert!(
                (got_avg - want_avg).abs() < 1e-9,
                "{step} avg: {got} vs {want}"
            );
        }
    }
    // A window inside the data, and a phase with no data.
    let answer = app
        .get(&format!(
            "/api/v1/series?ven=site-1&meter=main&quantity=active_power&from={}&to={}&step=PT10S",
            T0 + 60_000,
            T0 + 120_000
        ))
        .await;
    let ts: Vec<i64> = answer.json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ts_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ts,
        (0..6).map(|i| T0 + 60_000 + i * 10_000).collect::<Vec<_>>(),
        "to is exclusive"
    );
    let answer = app
        .get(&format!(
            "/api/v1/series?ven=site-1&meter=main&quantity=active_power&phase=L1&from={T0}&to={to}"
        ))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["points"], json!([]));
}

#[tokio::test]
async fn network_sums_import_and_export_over_vens() {
    let app = TestApp::new().await;
    let to = T0 + 2 * 3_600_000;
    let answer = app
        .get(&format!("/api/v1/network?from={T0}&to={to}&step=PT5M"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["resolution"], "PT1M");
    assert_eq!(
        (
            answer.json["vens_total"].as_u64(),
            answer.json["vens_online"].as_u64()
        ),
        (Some(2), Some(1))
    );
    let points = answer.json["points"].as_array().unwrap();
    assert_eq!(points.len(), 24);
    for (m, point) in points.iter().enumerate() {
        let m = m as i64;
        assert_eq!(point["ts_ms"], T0 + m * 300_000);
        // Minute k of site-1 averages 6k + 2.5 W; five of them average 30m + 14.5 W.
        let import = point["import_w"].as_f64().unwrap();
        assert!((import - (30.0 * m as f64 + 14.5)).abs() < 1e-9, "{point}");
        let (export, vens) = if m < 12 { (100.0, 2) } else { (0.0, 1) };
        assert!(
            (point["export_w"].as_f64().unwrap() - export).abs() < 1e-9,
            "{point}"
        );
        assert_eq!(point["vens_reporting"], vens, "{point}");
    }
    let hourly = app
        .get(&format!("/api/v1/network?from={T0}&to={to}&step=PT1H"))
        .await;
    assert_eq!(hourly.json["resolution"], "PT1H");
    let first = &hourly.json["points"][0];
    assert!(
        (first["import_w"].as_f64().unwrap() - 179.5).abs() < 1e-9,
        "{first}"
    );
    assert!(
        (first["export_w"].as_f64().unwrap() - 100.0).abs() < 1e-9,
        "{first}"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::new().await;
    let answer = app.get("/api/v1/nothing-here").await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");
    assert_eq!(answer.json["instance"], "/api/v1/nothing-here");
    let answer = app.call(Method::GET, "/nope", None, None).await;
    assert_problem(&answer, StatusCode::NOT_FOUND, "not-found");

    let answer = app
        .call(Method::DELETE, "/api/v1/vens", Some(&app.admin), None)
        .await;
    assert_problem(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
    let allow = answer.headers[ALLOW].to_str().unwrap();
    assert!(allow.contains("GET"), "{allow}");
    let answer = app
        .call(Method::PUT, "/api/v1/tokens", Some(&app.admin), None)
        .await;
    assert_problem(
        &answer,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
    let allow = answer.headers[ALLOW].to_str().unwrap();
    assert!(allow.contains("POST") && allow.contains("GET"), "{allow}");
}

#[tokio::test]
async fn health_reports_the_broker_and_database() {
    let app = TestApp::new().await;
    let answer = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["status"], "ok");
    assert_eq!(answer.json["database"], "ok");
    assert_eq!(answer.json["broker"], "connected");

    app.metrics
        .ingest
        .mqtt_connected
        .store(0, Ordering::Relaxed);
    let answer = app.call(Method::GET, "/health", None, None).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        (
            answer.json["status"].as_str(),
            answer.json["database"].as_str(),
            answer.json["broker"].as_str()
        ),
        (Some("unavailable"), Some("ok"), Some("disconnected"))
    );
}

#[tokio::test]
async fn metrics_include_ingest_and_http_counters() {
    let app = TestApp::new().await;
    app.metrics
        .ingest
        .readings_ingested
        .store(42, Ordering::Relaxed);
    app.get("/api/v1/vens/site-1").await;
    app.get("/api/v1/vens/site-1").await;
    app.get("/api/v1/vens/nobody").await;
    app.call(Method::GET, "/api/v1/vens", None, None).await;
    let answer = app.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = answer.json.as_str().unwrap();
    for line in [
        "gridlink_ingest_readings_total 42\n",
        "gridlink_mqtt_connected 1\n",
        "gridlink_http_requests_total{route=\"/api/v1/vens/{id}\",method=\"GET\",status=\"200\"} 2\n",
        "gridlink_http_requests_total{route=\"/api/v1/vens/{id}\",method=\"GET\",status=\"404\"} 1\n",
        "gridlink_http_requests_total{route=\"/api/v1/vens\",method=\"GET\",status=\"401\"} 1\n",
        "gridlink_http_request_duration_seconds_count{route=\"/api/v1/vens/{id}\",method=\"GET\"} 3\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
}

/// OpenADR objects made before the route-table walk (ids are assigned by
/// the server): a program and an event to read, change and report on, and
/// one of each to delete.
struct DrIds {
    program: String,
    spare_program: String,
    event: String,
    spare_event: String,
    /// An open alert (for the alert routes).
    alert: String,
    /// The VTN's objects, each with a spare for the delete.
    vtn: VtnIds,
}

/// The VTN objects the walk reads, replaces and deletes.
struct VtnIds {
    /// A token of role `ven` (VEN client `walk-ven`): reports are VENs'.
    ven_token: String,
    /// An untargeted event every VEN may report on.
    event: String,
    report: String,
    spare_report: String,
    subscription: String,
    spare_subscription: String,
    callback: String,
    ven: String,
    spare_ven: String,
    resource: String,
    spare_resource: String,
    /// An OAuth client (for the token request, then revoked).
    client_id: String,
    client_secret: String,
}

/// A local callback that answers the subscription echo challenge.
async fn echo_server() -> String {
    async fn echo(
        axum::extract::Query(query): axum::extract::Query<
            std::collections::HashMap<String, String>,
        >,
    ) -> String {
        query.get("echo").cloned().unwrap_or_default()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("the walk's setup");
    let addr = listener.local_addr().expect("the walk's setup");
    let app = Router::new().route("/cb", axum::routing::get(echo).post(|| async { "" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/cb")
}

impl VtnIds {
    async fn create(app: &TestApp, program: &str) -> Self {
        let token = auth::issue_token().expect("random token");
        app.store
            .create_token("walk-ven", Role::Ven, &token.hash)
            .await
            .expect("store token");
        let ven_token = token.secret;
        let post = |path: &'static str, token: String, body: Value| async move {
            let answer = app
                .call(
                    Method::POST,
                    &format!("/openadr3/3.1.0/{path}"),
                    Some(&token),
                    Some(body),
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "{path}: {}",
                answer.json
            );
            answer.json["id"].as_str().expect("an id").to_owned()
        };
        let mut event = sample_event(program);
        event
            .as_object_mut()
            .expect("the walk's setup")
            .remove("targets");
        let event = post("events", app.admin.clone(), event).await;
        let report = |name: &str| {
            json!({ "eventID": event, "clientName": name,
                    "resources": [{ "resourceName": "r1",
                        "intervals": [{ "id": 0, "payloads": [{ "type": "USAGE", "values": [1.5] }] }] }] })
        };
        let report_id = post("reports", ven_token.clone(), report("walk-1")).await;
        let spare_report = post("reports", ven_token.clone(), report("walk-2")).await;
        let callback = echo_server().await;
        let subscription = |name: &str| {
            json!({ "clientName": name, "programID": program,
                    "objectOperations": [{ "objects": ["EVENT"], "operations": ["CREATE", "UPDATE"],
                                           "callbackUrl": callback }] })
        };
        let subscription_id =
            post("subscriptions", app.admin.clone(), subscription("walk-1")).await;
        let spare_subscription =
            post("subscriptions", app.admin.clone(), subscription("walk-2")).await;
        let ven = post(
            "vens",
            app.admin.clone(),
            json!({ "venName": "walk-ven-1", "clientID": "walk-ven" }),
        )
        .await;
        let spare_ven = post(
            "vens",
            app.admin.clone(),
            json!({ "venName": "walk-ven-2", "clientID": "walk-ven-2" }),
        )
        .await;
        let resource = |name: &str| json!({ "resourceName": name, "venID": ven });
        let resource_id = post("resources", app.admin.clone(), resource("walk-r1")).await;
        let spare_resource = post("resources", app.admin.clone(), resource("walk-r2")).await;
        let answer = app
            .call(
                Method::POST,
                "/api/v1/openadr/clients",
                Some(&app.admin),
                Some(json!({ "name": "walk-bl", "role": "bl" })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        Self {
            ven_token,
            event,
            report: report_id,
            spare_report,
            subscription: subscription_id,
            spare_subscription,
            callback,
            ven,
            spare_ven,
            resource: resource_id,
            spare_resource,
            client_id: answer.json["clientID"]
                .as_str()
                .expect("the walk's setup")
                .to_owned(),
            client_secret: answer.json["clientSecret"]
                .as_str()
                .expect("the walk's setup")
                .to_owned(),
        }
    }
}

impl DrIds {
    async fn create(app: &TestApp) -> Self {
        let mut ids = Vec::new();
        for name in ["openapi-p", "openapi-q"] {
            let answer = app
                .call(
                    Method::POST,
                    "/openadr3/3.1.0/programs",
                    Some(&app.admin),
                    Some(json!({ "programName": name })),
                )
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
            ids.push(answer.json["id"].as_str().expect("an id").to_owned());
        }
        for _ in 0..2 {
            let answer = app
                .call(
                    Method::POST,
                    "/openadr3/3.1.0/events",
                    Some(&app.admin),
                    Some(sample_event(&ids[0])),
                )
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
            ids.push(answer.json["id"].as_str().expect("an id").to_owned());
        }
        let [program, spare_program, event, spare_event] =
            <[String; 4]>::try_from(ids).expect("four ids");
        let condition = gridlink_cloud::alerts::Condition::new(
            gridlink_cloud::alerts::Rule::VenOffline,
            "site-1",
            gridlink_cloud::alerts::Severity::Critical,
            "site-1 is offline",
        );
        let alert = match gridlink_cloud::alerts::AlertStore::raise_alert(
            &*app.store,
            &condition,
            T0,
            0,
            &[],
        )
        .await
        .expect("raise an alert")
        {
            gridlink_cloud::alerts::Raised::Opened(alert) => alert.id.to_string(),
            other => panic!("no alert opened: {other:?}"),
        };
        let vtn = VtnIds::create(app, &program).await;
        Self {
            program,
            spare_program,
            event,
            spare_event,
            alert,
            vtn,
        }
    }
}

fn sample_event(program_id: &str) -> Value {
    json!({
        "programID": program_id, "targets": ["site-1"],
        "intervalPeriod": { "start": "2026-01-01T00:00:00Z", "duration": "PT1H" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "SIMPLE", "values": [1] }] }]
    })
}

/// A request that exercises `operation` successfully (with the admin token).
fn sample_request(operation: Operation, dr: &DrIds) -> (String, Option<Value>) {
    let path = operation.path().replace("{id}", "site-1");
    let program = |id: &str| path.replace("{programID}", id);
    let event = |id: &str| path.replace("{eventID}", id);
    match operation {
        Operation::SetVenGroups => (path, Some(json!({ "groups": ["north"] }))),
        Operation::RegisterVen => (
            path,
            Some(
                json!({ "site": "Depot", "loads": [{ "name": "hvac", "rated_power_w": 3000.0 }] }),
            ),
        ),
        Operation::CreateProgram => (path, Some(json!({ "programName": "openapi" }))),
        Operation::GetProgram => (program(&dr.program), None),
        Operation::UpdateProgram => (
            program(&dr.program),
            Some(json!({ "programName": "openapi-renamed" })),
        ),
        Operation::DeleteProgram => (program(&dr.spare_program), None),
        Operation::CreateEvent => (path, Some(sample_event(&dr.program))),
        Operation::GetEvent => (event(&dr.event), None),
        Operation::UpdateEvent => (event(&dr.event), Some(sample_event(&dr.program))),
        Operation::DeleteEvent => (event(&dr.spare_event), None),
        Operation::EventStatus => (operation.path().replace("{id}", &dr.event), None),
        Operation::GetAlert | Operation::AckAlert => {
            (operation.path().replace("{id}", &dr.alert), None)
        }
        Operation::Series => (
            format!(
                "{path}?ven=site-1&meter=main&quantity=active_power&from={T0}&to={}",
                T0 + 3_600_000
            ),
            None,
        ),
        Operation::CreateToken => (path, Some(json!({ "name": "openapi", "role": "viewer" }))),
        // The app's `ven` token (admin 1, viewer 2, ven 3): not the last admin.
        Operation::RevokeToken => (operation.path().replace("{id}", "3"), None),
        Operation::PatchShadow => (path, Some(json!({ "desired": { "max_shed_s": 600 } }))),
        // Projects: the walk creates project 1 (a fresh database) before
        // it reads, replaces and books on it, and entry 1 before deleting it.
        Operation::CreateProject | Operation::UpdateProject => (
            operation.path().replace("{id}", "1"),
            Some(
                json!({ "name": "openapi", "kind": "renewable", "status": "planned",
                         "capacity_kw": 10.0, "location": { "latitude": 52.0, "longitude": 5.0 } }),
            ),
        ),
        Operation::AddFinanceEntry => (
            operation.path().replace("{id}", "1"),
            Some(json!({ "kind": "expense", "amount": 12.5, "at": "2026-01-01" })),
        ),
        Operation::GetProject
        | Operation::ProjectEnergy
        | Operation::ProjectFinances
        | Operation::DeleteFinanceEntry => (
            operation
                .path()
                .replace("{id}", "1")
                .replace("{entry_id}", "1"),
            None,
        ),
        Operation::CreateApiKey => (
            path,
            Some(json!({ "name": "openapi", "customer": "c", "ven_ids": ["site-1"] })),
        ),
        // The key CreateApiKey (earlier in Operation::ALL) made.
        Operation::RevokeApiKey => (operation.path().replace("{id}", "1"), None),
        _ => sample_vtn_request(operation, &path, dr),
    }
}

/// A request that exercises a VTN `operation` successfully (the token
/// is [`walk_token`]'s).
fn sample_vtn_request(operation: Operation, path: &str, dr: &DrIds) -> (String, Option<Value>) {
    let v = &dr.vtn;
    let path = path
        .replace("{programID}", &dr.program)
        .replace("{venID}", &v.ven);
    let with = |param: &str, id: &str| path.replace(param, id);
    let report = json!({ "eventID": v.event, "clientName": "walk-3",
        "resources": [{ "resourceName": "r1",
            "intervals": [{ "id": 0, "payloads": [{ "type": "USAGE", "values": [2] }] }] }] });
    let subscription = json!({ "clientName": "walk-3", "programID": dr.program,
        "objectOperations": [{ "objects": ["PROGRAM"], "operations": ["DELETE"],
                               "callbackUrl": v.callback }] });
    match operation {
        Operation::CreateReport => (path, Some(report)),
        Operation::GetReport => (with("{reportID}", &v.report), None),
        Operation::UpdateReport => (with("{reportID}", &v.report), Some(report)),
        Operation::DeleteReport => (with("{reportID}", &v.spare_report), None),
        Operation::CreateSubscription => (path, Some(subscription)),
        Operation::GetSubscription => (with("{subscriptionID}", &v.subscription), None),
        Operation::UpdateSubscription => (
            with("{subscriptionID}", &v.subscription),
            Some(subscription),
        ),
        Operation::DeleteSubscription => (with("{subscriptionID}", &v.spare_subscription), None),
        Operation::CreateOadrVen => (
            path,
            Some(json!({ "venName": "walk-ven-3", "clientID": "walk-ven-3" })),
        ),
        Operation::UpdateOadrVen => (
            path,
            Some(json!({ "venName": "walk-ven-1b", "clientID": "walk-ven" })),
        ),
        Operation::DeleteOadrVen => (operation.path().replace("{venID}", &v.spare_ven), None),
        Operation::CreateResource => (
            path,
            Some(json!({ "resourceName": "walk-r3", "venID": v.ven })),
        ),
        Operation::GetResource => (with("{resourceID}", &v.resource), None),
        Operation::UpdateResource => (
            with("{resourceID}", &v.resource),
            Some(json!({ "resourceName": "walk-r1b", "venID": v.ven })),
        ),
        Operation::DeleteResource => (with("{resourceID}", &v.spare_resource), None),
        Operation::RevokeVtnClient => (operation.path().replace("{id}", &v.client_id), None),
        Operation::CreateVtnClient => (path, Some(json!({ "name": "walk-2", "role": "ven" }))),
        _ => (path, None),
    }
}

/// The token the walk calls `operation` with: reports are written by VENs.
fn walk_token(operation: Operation, app: &TestApp, dr: &DrIds) -> String {
    match operation {
        Operation::CreateReport | Operation::UpdateReport | Operation::DeleteReport => {
            dr.vtn.ven_token.clone()
        }
        _ => app.admin.clone(),
    }
}

/// `POST /auth/token` with the walk's OAuth client: a bearer token.
async fn token_request(app: &TestApp, dr: &DrIds) -> Answer {
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        dr.vtn.client_id, dr.vtn.client_secret
    );
    let request = Request::post(Operation::AuthToken.path())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("the walk's setup");
    app.send(request).await
}

#[tokio::test]
async fn openapi_describes_every_route_of_the_router() {
    let app = TestApp::new().await;
    let answer = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let doc = answer.json;
    assert_eq!(doc["openapi"], "3.1.0");

    // Every path and method in the document is served by the router...
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            described.insert((path.clone(), method.to_uppercase()));
        }
    }
    let mut routed = BTreeSet::new();
    let dr = DrIds::create(&app).await;
    for operation in Operation::ALL {
        routed.insert((operation.path().to_string(), operation.method().to_string()));
        let (uri, body) = sample_request(operation, &dr);
        if operation == Operation::Live {
            // An endless stream: only its head here (tests/dashboard_api.rs reads it).
            let request = Request::get(&uri)
                .header(AUTHORIZATION, format!("Bearer {}", app.admin))
                .body(Body::empty())
                .unwrap();
            let response = app.router.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{operation:?}");
            continue;
        }
        let answer = if operation == Operation::AuthToken {
            let answer = token_request(&app, &dr).await;
            assert_eq!(answer.json["token_type"], "Bearer", "{}", answer.json);
            answer
        } else {
            let token = walk_token(operation, &app, &dr);
            app.call(operation.method(), &uri, Some(&token), body).await
        };
        // Ingest takes an API key, not a token (tests/http_ingest.rs).
        let expected_401 = operation == Operation::Ingest;
        assert!(
            answer.status.is_success()
                || answer.status == StatusCode::SERVICE_UNAVAILABLE
                || (expected_401 && answer.status == StatusCode::UNAUTHORIZED),
            "{operation:?}: {} {}",
            answer.status,
            answer.json
        );
        // Methods the document does not list are refused.
        if Operation::ALL
            .iter()
            .any(|o| o.path() == operation.path() && o.method() == Method::PATCH)
        {
            continue;
        }
        let answer = app.call(Method::PATCH, &uri, Some(&app.admin), None).await;
        assert_eq!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{operation:?} has no PATCH"
        );
    }
    // ...and every route of the router is in the document.
    assert_eq!(described, routed);
}

#[tokio::test]
async fn openapi_schemas_name_the_fields_of_the_answers() {
    let app = TestApp::new().await;
    let doc = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .json;
    // The schemas name exactly the fields the answers have.
    let schema_fields = |name: &str| -> BTreeSet<String> {
        doc["components"]["schemas"][name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let fields = |value: &Value| -> BTreeSet<String> {
        value.as_object().unwrap().keys().cloned().collect()
    };
    let checks = [
        (
            "Health",
            app.call(Method::GET, "/health", None, None).await.json,
        ),
        ("VenList", app.get("/api/v1/vens").await.json),
        ("Ven", app.get("/api/v1/vens/site-1").await.json),
        ("LoadList", app.get("/api/v1/vens/site-1/loads").await.json),
        (
            "Load",
            app.get("/api/v1/vens/site-1/loads").await.json["loads"][0].clone(),
        ),
        (
            "Series",
            app.get(&format!(
                "/api/v1/series?ven=site-1&meter=main&quantity=active_power&from={T0}&to={}",
                T0 + 60_000
            ))
            .await
            .json,
        ),
        (
            "SeriesPoint",
            app.get(&format!(
                "/api/v1/series?ven=site-1&meter=main&quantity=active_power&from={T0}&to={}",
                T0 + 60_000
            ))
            .await
            .json["points"][0]
                .clone(),
        ),
        (
            "Network",
            app.get(&format!("/api/v1/network?from={T0}&to={}", T0 + 60_000))
                .await
                .json,
        ),
        (
            "NetworkPoint",
            app.get(&format!("/api/v1/network?from={T0}&to={}", T0 + 60_000))
                .await
                .json["points"][0]
                .clone(),
        ),
        ("Problem", app.get("/api/v1/series?ven=site-1").await.json),
        (
            "TokenCreated",
            app.call(
                Method::POST,
                "/api/v1/tokens",
                Some(&app.admin),
                Some(json!({ "name": "n", "role": "admin" })),
            )
            .await
            .json,
        ),
    ];
    for (schema, value) in checks {
        let mut expected = schema_fields(schema);
        if schema == "Series" {
            expected.remove("next_from_ms"); // only when truncated
        }
        if schema == "Problem" {
            expected.remove("instance"); // only for unknown routes
        }
        assert_eq!(fields(&value), expected, "{schema}: {value}");
        let required: BTreeSet<String> = doc["components"]["schemas"][schema]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert!(required.is_subset(&fields(&value)), "{schema}");
    }
}

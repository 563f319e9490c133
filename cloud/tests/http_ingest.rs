//! HTTP ingest with API keys, through the router without a socket
//! (`tower::ServiceExt::oneshot`), on SQLite and on PostgreSQL: keys
//! created by admins only and shown once, readings stored and read back
//! through `/api/v1/series`, duplicates skipped (the first reading wins),
//! `Idempotency-Key` retries, the feed, a foreign VEN (403), bad, unknown
//! and revoked keys (401, one answer for all), every kind of bad body (400
//! naming the field, nothing stored), oversized bodies (413), the rate
//! limit (429), and the database going away (503, then OK).

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use gridlink_cloud::api::auth;
use gridlink_cloud::api::{self, AppState};
use gridlink_cloud::config::HttpIngestConfig;
use gridlink_cloud::feed::FeedItem;
use gridlink_cloud::metrics::Metrics;
use gridlink_cloud::store::{AnyStore, HTTP_SEQ_BASE, Role, Store};
use gridlink_protocol::VenId;
use gridlink_testkit::postgres::PostgresCluster;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tower::ServiceExt as _;

struct App {
    router: Router,
    store: Arc<AnyStore>,
    feed: broadcast::Receiver<Arc<FeedItem>>,
    admin: String,
    viewer: String,
    cluster: Option<PostgresCluster>,
    _dir: Option<tempfile::TempDir>,
}

/// One answer: status, headers and JSON body (`Null` if empty).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl App {
    async fn sqlite(config: &HttpIngestConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ingest.db").display());
        Self::open(&url, config, Some(dir), None).await
    }

    async fn postgres(name: &str, config: &HttpIngestConfig) -> Self {
        let cluster = PostgresCluster::start().await;
        let url = cluster.create_database(name).await;
        Self::open(&url, config, None, Some(cluster)).await
    }

    async fn open(
        url: &str,
        config: &HttpIngestConfig,
        dir: Option<tempfile::TempDir>,
        cluster: Option<PostgresCluster>,
    ) -> Self {
        let store = Arc::new(AnyStore::connect(url).await.unwrap());
        store.migrate().await.unwrap();
        let mut tokens = Vec::new();
        for role in [Role::Viewer, Role::Admin] {
            let token = auth::issue_token().unwrap();
            store
                .create_token(role.as_str(), role, &token.hash)
                .await
                .unwrap();
            tokens.push(token.secret);
        }
        let state = AppState::new(Arc::clone(&store), Arc::new(Metrics::default()))
            .with_http_ingest(config.http_ingest());
        let feed = state.feed.subscribe();
        Self {
            router: api::router(state),
            store,
            feed,
            viewer: tokens.remove(0),
            admin: tokens.remove(0),
            cluster,
            _dir: dir,
        }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else if headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
        {
            Value::String(String::from_utf8(bytes.to_vec()).unwrap())
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Answer {
            status,
            headers,
            json,
        }
    }

    /// A request with a bearer token.
    async fn call(&self, method: Method, uri: &str, token: &str, body: Option<&Value>) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Bearer {token}"));
        let request = match body {
            Some(body) => request
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        self.send(request.unwrap()).await
    }

    /// `POST /api/v1/ingest` with a raw body and extra headers.
    async fn ingest_raw(
        &self,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: String,
    ) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri("/api/v1/ingest");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// `POST /api/v1/ingest` with a JSON body.
    async fn ingest(&self, key: &str, body: &Value) -> Answer {
        self.ingest_raw(
            Some(key),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// Creates a key for `vens`; its id and the key.
    async fn create_key(&self, name: &str, vens: &[&str]) -> (i64, String) {
        let answer = self
            .call(
                Method::POST,
                "/api/v1/api-keys",
                &self.admin,
                Some(&json!({ "name": name, "customer": "ACME", "ven_ids": vens })),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        (
            answer.json["id"].as_i64().unwrap(),
            answer.json["key"].as_str().unwrap().to_owned(),
        )
    }

    /// The raw points of a series between 10:00 and 10:05 on 2026-11-22.
    async fn points(&self, ven: &str, meter: &str, quantity: &str, phase: &str) -> Vec<(i64, f64)> {
        let uri = format!(
            "/api/v1/series?ven={ven}&meter={meter}&quantity={quantity}&phase={phase}\
             &from=2026-11-22T10:00:00Z&to=2026-11-22T10:05:00Z&step=PT1S"
        );
        let answer = self.call(Method::GET, &uri, &self.viewer, None).await;
        if answer.status == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        answer.json["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["ts_ms"].as_i64().unwrap(), p["last"].as_f64().unwrap()))
            .collect()
    }

    /// The committed telemetry batches on the feed so far.
    fn fed(&mut self) -> Vec<gridlink_cloud::store::IngestBatch> {
        let mut batches = Vec::new();
        while let Ok(item) = self.feed.try_recv() {
            if let FeedItem::Telemetry(batch) = item.as_ref() {
                batches.push(batch.clone());
            }
        }
        batches
    }
}

/// 2026-11-22T10:00:00Z in ms.
const T10: i64 = 1_795_341_600_000;

fn reading(meter: &str, quantity: &str, ts: &str, value: f64) -> Value {
    json!({ "meter": meter, "quantity": quantity, "phase": "total", "ts": ts, "value": value })
}

fn config(rate_per_s: u32, burst: u32) -> HttpIngestConfig {
    HttpIngestConfig {
        max_body_bytes: 64 * 1024,
        rate_per_s,
        burst,
    }
}

/// Keys: admin only, shown once, listed without secrets, VENs registered.
async fn keys_are_for_admins_and_shown_once(app: &App) -> (i64, String) {
    let body = json!({ "name": "portal", "customer": "ACME", "ven_ids": ["cust-1-main"] });
    let viewer = app
        .call(Method::POST, "/api/v1/api-keys", &app.viewer, Some(&body))
        .await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN, "{}", viewer.json);
    let list = app
        .call(Method::GET, "/api/v1/api-keys", &app.viewer, None)
        .await;
    assert_eq!(list.status, StatusCode::FORBIDDEN);
    let nobody = app
        .send(
            Request::builder()
                .method(Method::GET)
                .uri("/api/v1/api-keys")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);

    for (body, field) in [
        (
            json!({ "name": "p", "customer": "ACME", "ven_ids": ["ok", "not/ok"] }),
            "ven_ids[1]",
        ),
        (
            json!({ "name": "p", "customer": "ACME", "ven_ids": [] }),
            "ven_ids",
        ),
        (json!({ "name": "p", "ven_ids": ["ok"] }), "customer"),
        (
            json!({ "name": "", "customer": "ACME", "ven_ids": ["ok"] }),
            "name",
        ),
        (
            json!({ "name": "p", "customer": "ACME", "ven_ids": ["ok"], "role": "admin" }),
            "role",
        ),
    ] {
        let answer = app
            .call(Method::POST, "/api/v1/api-keys", &app.admin, Some(&body))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.json
        );
        assert_eq!(answer.json["invalid_params"][0]["name"], field, "{body}");
    }
    assert!(
        app.store
            .ven(&VenId::new("ok").unwrap())
            .await
            .unwrap()
            .is_none(),
        "a refused key registers nothing"
    );

    let created = app
        .call(
            Method::POST,
            "/api/v1/api-keys",
            &app.admin,
            Some(&json!({ "name": "portal", "customer": "ACME",
                          "ven_ids": ["cust-1-main", "cust-1-pv", "cust-1-main"] })),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    assert_eq!(created.headers[CACHE_CONTROL], "no-store");
    let id = created.json["id"].as_i64().unwrap();
    let key = created.json["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("gli_{id}_")), "{key}");
    assert_eq!(created.json["ven_ids"], json!(["cust-1-main", "cust-1-pv"]));
    assert_eq!(created.json["revoked_ms"], Value::Null);
    // Registered, so `refuse_unknown_vens` lets their data in.
    for ven in ["cust-1-main", "cust-1-pv"] {
        assert!(
            app.store
                .ven(&VenId::new(ven).unwrap())
                .await
                .unwrap()
                .is_some()
        );
    }

    let list = app
        .call(Method::GET, "/api/v1/api-keys", &app.admin, None)
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let listed = &list.json["api_keys"][0];
    assert_eq!(listed["id"], id);
    assert_eq!(listed["customer"], "ACME");
    assert!(listed.get("key").is_none());
    let secret = key.rsplit('_').next().unwrap();
    assert!(!list.json.to_string().contains(secret));
    (id, key)
}

#[expect(clippy::too_many_lines, reason = "one scenario, step by step")]
async fn ingest_dedup_feed_and_refusals(mut app: App) {
    let (id, key) = keys_are_for_admins_and_shown_once(&app).await;

    // Three readings of two series; read back through /api/v1/series.
    let first = json!({ "ven_id": "cust-1-main", "readings": [
        reading("main", "active_power", "2026-11-22T10:00:10Z", 1300.0),
        reading("main", "active_power", "2026-11-22T10:00:00Z", 1234.5),
        { "meter": "main", "quantity": "voltage", "phase": "L1", "ts_ms": T10, "value": 231.7, "exponent": -1 },
    ]});
    let answer = app.ingest(&key, &first).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(
        answer.json,
        json!({ "ven_id": "cust-1-main", "accepted": 3, "duplicates": 0, "duplicate_batch": false })
    );
    assert_eq!(
        app.points("cust-1-main", "main", "active_power", "total")
            .await,
        [(T10, 1234.5), (T10 + 10_000, 1300.0)]
    );
    let voltage = app.points("cust-1-main", "main", "voltage", "L1").await;
    assert_eq!(voltage.len(), 1);
    assert!((voltage[0].1 - 231.7).abs() < 1e-9, "{voltage:?}");

    // The feed saw the committed batch, keyed above every agent's seqs.
    let fed = app.fed();
    assert_eq!(fed.len(), 1);
    assert_eq!(fed[0].ven_id.as_str(), "cust-1-main");
    assert!(fed[0].batch_seq > HTTP_SEQ_BASE);
    assert_eq!(
        fed[0].series.iter().map(|s| s.points.len()).sum::<usize>(),
        3
    );

    // Sent again with a changed value and one new reading: the stored
    // readings win, only the new one is added.
    let again = json!({ "ven_id": "cust-1-main", "readings": [
        reading("main", "active_power", "2026-11-22T10:00:00Z", 9999.0),
        reading("main", "active_power", "2026-11-22T10:00:10Z", 1300.0),
        reading("main", "active_power", "2026-11-22T10:00:20Z", 1250.0),
    ]});
    let answer = app.ingest(&key, &again).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(
        (
            answer.json["accepted"].as_u64(),
            answer.json["duplicates"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        app.points("cust-1-main", "main", "active_power", "total")
            .await,
        [
            (T10, 1234.5),
            (T10 + 10_000, 1300.0),
            (T10 + 20_000, 1250.0)
        ]
    );
    assert_eq!(app.fed().len(), 1);

    // Idempotency-Key: the retry is the same batch and stores nothing.
    let pv = json!({ "ven_id": "cust-1-pv", "readings": [
        reading("pv", "active_power", "2026-11-22T10:01:00Z", -500.0),
    ]});
    let headers = [
        ("content-type", "application/json"),
        ("idempotency-key", "upload-42"),
    ];
    let answer = app.ingest_raw(Some(&key), &headers, pv.to_string()).await;
    assert_eq!(answer.json["accepted"], 1, "{}", answer.json);
    assert_eq!(answer.json["duplicate_batch"], false);
    let retry = app.ingest_raw(Some(&key), &headers, pv.to_string()).await;
    assert_eq!(retry.status, StatusCode::OK, "{}", retry.json);
    assert_eq!(
        retry.json,
        json!({ "ven_id": "cust-1-pv", "accepted": 0, "duplicates": 1, "duplicate_batch": true })
    );
    assert_eq!(app.fed().len(), 1, "the retry is not fed again");
    let bad_idempotency = app
        .ingest_raw(
            Some(&key),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", ""),
            ],
            pv.to_string(),
        )
        .await;
    assert_eq!(bad_idempotency.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_idempotency.json["invalid_params"][0]["name"],
        "Idempotency-Key"
    );

    // A VEN the key was not made for: 403 naming it, nothing stored.
    let foreign = json!({ "ven_id": "cust-2-main", "readings": [
        reading("main", "active_power", "2026-11-22T10:00:00Z", 1.0),
    ]});
    let answer = app.ingest(&key, &foreign).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.json);
    assert_eq!(answer.json["type"], "urn:gridlink:problem:forbidden");
    assert!(
        answer.json["detail"]
            .as_str()
            .unwrap()
            .contains("\"cust-2-main\"")
    );
    assert!(
        app.points("cust-2-main", "main", "active_power", "total")
            .await
            .is_empty()
    );

    bad_bodies_store_nothing(&app, &key).await;
    bad_keys_get_one_answer(&app, id, &key).await;

    let metrics = app.call(Method::GET, "/metrics", &app.viewer, None).await;
    let text = metrics.json.as_str().unwrap();
    assert!(
        text.contains("gridlink_http_ingest_readings_total 6\n"),
        "{text}"
    );
    assert!(
        text.contains("gridlink_http_ingest_duplicates_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("gridlink_http_ingest_rejected_total{reason=\"forbidden\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("gridlink_http_ingest_rejected_total{reason=\"too_large\"} 1\n"),
        "{text}"
    );
    assert!(!text.contains("gridlink_http_ingest_rejected_total{reason=\"unauthorized\"} 0\n"));
    assert!(!text.contains("gridlink_http_ingest_rejected_total{reason=\"invalid\"} 0\n"));
}

/// Every kind of bad body: 400 naming the field (413 too large, 415 not
/// JSON), and the series unchanged.
#[expect(clippy::too_many_lines, reason = "a table of bad bodies")]
async fn bad_bodies_store_nothing(app: &App, key: &str) {
    let before = app
        .points("cust-1-main", "main", "active_power", "total")
        .await;
    let ok = |extra: Value| {
        let mut r = json!({ "meter": "main", "quantity": "active_power", "ts": "2026-11-22T10:04:00Z", "value": 1.0 });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                r.as_object_mut().unwrap().remove(k);
            } else {
                r[k] = v.clone();
            }
        }
        // A good reading first, so a bad one never leaves half a batch.
        json!({ "ven_id": "cust-1-main", "readings": [
            reading("main", "active_power", "2026-11-22T10:03:00Z", 7.0), r ] })
    };
    let cases = [
        (json!({ "readings": [] }), "ven_id"),
        (json!({ "ven_id": "a/b", "readings": [] }), "ven_id"),
        (
            json!({ "ven_id": "cust-1-main", "readings": [] }),
            "readings",
        ),
        (json!({ "ven_id": "cust-1-main" }), "readings"),
        (
            json!({ "ven_id": "cust-1-main", "readings": {} }),
            "readings",
        ),
        (
            json!({ "ven_id": "cust-1-main", "readings": [], "site": "x" }),
            "site",
        ),
        (ok(json!({ "value": null })), "readings[1].value"),
        (ok(json!({ "value": "12" })), "readings[1].value"),
        (ok(json!({ "value": 1e300 })), "readings[1].value"),
        (ok(json!({ "quantity": "power" })), "readings[1].quantity"),
        (ok(json!({ "quantity": null })), "readings[1].quantity"),
        (ok(json!({ "phase": "L4" })), "readings[1].phase"),
        (ok(json!({ "meter": "" })), "readings[1].meter"),
        (ok(json!({ "meter": "m".repeat(65) })), "readings[1].meter"),
        (ok(json!({ "meter": "main meter" })), "readings[1].meter"),
        (ok(json!({ "ts": "yesterday" })), "readings[1].ts"),
        (ok(json!({ "ts": null })), "readings[1].ts"),
        (ok(json!({ "ts": null, "ts_ms": -1 })), "readings[1].ts_ms"),
        (
            ok(json!({ "ts": null, "ts_ms": 253_402_300_800_000_i64 })),
            "readings[1].ts_ms",
        ),
        (ok(json!({ "ts_ms": T10 })), "readings[1].ts_ms"),
        (
            ok(json!({ "ts": "2026-11-22T10:03:00Z" })),
            "readings[1].ts",
        ),
        (ok(json!({ "exponent": 10 })), "readings[1].exponent"),
        (ok(json!({ "exponent": 0 })), "readings[1].exponent"),
        (ok(json!({ "exponent": 1000 })), "readings[1].exponent"),
        (ok(json!({ "unit": "W" })), "readings[1].unit"),
    ];
    for (body, field) in cases {
        let answer = app.ingest(key, &body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.json
        );
        assert_eq!(answer.headers[CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            answer.json["type"], "urn:gridlink:problem:invalid-parameter",
            "{body}"
        );
        assert_eq!(
            answer.json["invalid_params"][0]["name"], field,
            "{body}: {}",
            answer.json
        );
    }
    let json_ct = [("content-type", "application/json")];
    for not_json in ["{", "{\"ven_id\": \"cust-1-main\", \"readings\": []} x", ""] {
        let answer = app.ingest_raw(Some(key), &json_ct, not_json.into()).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{not_json}");
        assert_eq!(answer.json["type"], "urn:gridlink:problem:invalid-body");
    }
    let good = ok(json!({})).to_string();
    let answer = app
        .ingest_raw(Some(key), &[("content-type", "text/plain")], good.clone())
        .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer.json["type"], "urn:gridlink:problem:invalid-body");
    let answer = app.ingest_raw(Some(key), &[], good).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Over the body limit (64 KiB here): a 413 problem, not axum's text.
    let many: Vec<Value> = (0..1000)
        .map(|i| json!({ "meter": "main", "quantity": "active_power", "ts_ms": T10 + 180_000 + i, "value": 1.0 }))
        .collect();
    let big = json!({ "ven_id": "cust-1-main", "readings": many }).to_string();
    assert!(big.len() > 64 * 1024);
    let answer = app.ingest_raw(Some(key), &json_ct, big).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.json
    );
    assert_eq!(answer.headers[CONTENT_TYPE], "application/problem+json");
    assert_eq!(answer.json["status"], 413);
    assert!(
        answer.json["detail"]
            .as_str()
            .unwrap()
            .contains("65536 bytes")
    );

    assert_eq!(
        app.points("cust-1-main", "main", "active_power", "total")
            .await,
        before,
        "nothing of a refused request is stored"
    );
}

/// Missing, malformed, unknown, wrong and revoked keys: the same 401.
async fn bad_keys_get_one_answer(app: &App, id: i64, key: &str) {
    let body = json!({ "ven_id": "cust-1-main", "readings": [
        reading("main", "active_power", "2026-11-22T10:02:00Z", 5.0) ] })
    .to_string();
    let json_ct = ("content-type", "application/json");
    let secret = key.rsplit('_').next().unwrap();
    let wrong_secret = format!("gli_{id}_{}", "0".repeat(64));
    let unknown_id = format!("gli_{}_{secret}", id + 1000);
    let mut details = Vec::new();
    for candidate in [
        None,
        Some("nonsense"),
        Some(&*format!("glk_{secret}")),
        Some(&*wrong_secret),
        Some(&*unknown_id),
    ] {
        let answer = app.ingest_raw(candidate, &[json_ct], body.clone()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{candidate:?}");
        assert_eq!(answer.json["type"], "urn:gridlink:problem:unauthenticated");
        assert!(answer.headers.contains_key("www-authenticate"));
        details.push(answer.json["detail"].clone());
    }
    // A bearer token is not an API key.
    let token = app
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/ingest")
                .header(AUTHORIZATION, format!("Bearer {}", app.admin))
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(token.status, StatusCode::UNAUTHORIZED);

    // Revoke: 204 (again 204), then the key is refused like any bad one.
    let uri = format!("/api/v1/api-keys/{id}");
    assert_eq!(
        app.call(Method::DELETE, &uri, &app.viewer, None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.ingest_raw(Some(key), &[json_ct], body.clone())
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Method::DELETE, &uri, &app.admin, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Method::DELETE, &uri, &app.admin, None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let revoked = app.ingest_raw(Some(key), &[json_ct], body.clone()).await;
    assert_eq!(revoked.status, StatusCode::UNAUTHORIZED);
    details.push(revoked.json["detail"].clone());
    details.dedup();
    assert_eq!(
        details.len(),
        1,
        "one answer for every bad key: {details:?}"
    );
    let list = app
        .call(Method::GET, "/api/v1/api-keys", &app.admin, None)
        .await;
    assert!(list.json["api_keys"][0]["revoked_ms"].as_i64().is_some());

    let unknown = app
        .call(Method::DELETE, "/api/v1/api-keys/999999", &app.admin, None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let malformed = app
        .call(Method::DELETE, "/api/v1/api-keys/abc", &app.admin, None)
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.json["invalid_params"][0]["name"], "id");
}

async fn rate_limit_per_key(app: App) {
    let (_, limited) = app.create_key("limited", &["cust-3"]).await;
    let (_, other) = app.create_key("other", &["cust-3"]).await;
    let body = |second: u32| {
        json!({ "ven_id": "cust-3", "readings": [
            reading("main", "active_power", &format!("2026-11-22T10:00:{second:02}Z"), 1.0) ] })
    };
    // Burst 3 at 1 request/s: the first three pass. Later ones pass only
    // as fast as tokens come back, so within a few more requests one is
    // refused (unless each took a second: then the guard below fails).
    for second in 0..3 {
        let answer = app.ingest(&limited, &body(second)).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    }
    let mut refused = None;
    for second in 3..13 {
        let answer = app.ingest(&limited, &body(second)).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((second, answer));
            break;
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    }
    let (second, answer) = refused.expect("a request over the rate is refused");
    assert_eq!(answer.json["type"], "urn:gridlink:problem:rate-limited");
    let retry_after: u64 = answer.headers[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    // The refused request stored nothing; another key is not limited.
    let stored = app.points("cust-3", "main", "active_power", "total").await;
    assert_eq!(stored.len(), second as usize);
    let answer = app.ingest(&other, &body(second)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    let metrics = app.call(Method::GET, "/metrics", &app.viewer, None).await;
    assert!(
        metrics
            .json
            .as_str()
            .unwrap()
            .contains("gridlink_http_ingest_rejected_total{reason=\"rate_limited\"} 1\n")
    );
}

#[tokio::test]
async fn ingest_dedup_feed_and_refusals_sqlite() {
    ingest_dedup_feed_and_refusals(App::sqlite(&config(1000, 1000)).await).await;
}

#[tokio::test]
async fn ingest_dedup_feed_and_refusals_postgres() {
    ingest_dedup_feed_and_refusals(App::postgres("http_ingest", &config(1000, 1000)).await).await;
}

#[tokio::test]
async fn rate_limit_per_key_sqlite() {
    rate_limit_per_key(App::sqlite(&config(1, 3)).await).await;
}

#[tokio::test]
async fn rate_limit_per_key_postgres() {
    rate_limit_per_key(App::postgres("http_ingest_rate", &config(1, 3)).await).await;
}

/// PostgreSQL stopped: 503 with `Retry-After`, nothing stored; started
/// again: the same request is stored whole. (SQLite is a file in the
/// process: it has no outage to test.)
#[tokio::test]
async fn database_down_is_503_then_ok_postgres() {
    let mut app = App::postgres("http_ingest_outage", &config(1000, 1000)).await;
    let (_, key) = app.create_key("outage", &["cust-4"]).await;
    let body = json!({ "ven_id": "cust-4", "readings": [
        reading("main", "active_power", "2026-11-22T10:00:00Z", 1.0),
        reading("main", "active_power", "2026-11-22T10:00:01Z", 2.0),
        reading("main", "energy_import", "2026-11-22T10:00:00Z", 12_345.6),
    ]});
    app.cluster.as_mut().unwrap().stop();
    let answer = tokio::time::timeout(Duration::from_mins(1), app.ingest(&key, &body))
        .await
        .expect("an answer while the database is down");
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.json
    );
    assert_eq!(answer.json["type"], "urn:gridlink:problem:unavailable");
    assert_eq!(answer.headers[RETRY_AFTER], "5");
    assert!(app.fed().is_empty());

    app.cluster.as_mut().unwrap().start_again().await;
    // The pool reconnects on the next request (a first one may still meet
    // a connection the restart cut: retry as a client would, bounded).
    let mut answer = app.ingest(&key, &body).await;
    for _ in 0..10 {
        if answer.status != StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        answer = app.ingest(&key, &body).await;
    }
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["accepted"], 3, "nothing was half-stored before");
    assert_eq!(app.fed().len(), 1);
    assert_eq!(
        app.points("cust-4", "main", "active_power", "total").await,
        [(T10, 1.0), (T10 + 1000, 2.0)]
    );
}

/// `gridlink-cloud api-key create|list|revoke` on the database the API
/// serves: the key printed once works until it is revoked.
#[tokio::test]
async fn api_key_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cli.db").display());
    let cloud = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gridlink-cloud"));
        for (name, _) in std::env::vars() {
            if name.starts_with("GRIDLINK_") {
                command.env_remove(name);
            }
        }
        let output = command
            .env("GRIDLINK_DATABASE_URL", &url)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    };
    assert_eq!(cloud(&["migrate"]).0, Some(0));
    let (code, stdout, stderr) = cloud(&[
        "api-key",
        "create",
        "--name",
        "portal",
        "--customer",
        "ACME",
        "--ven",
        "cli-1",
        "--ven",
        "cli-2",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let key = stdout.trim().to_owned();
    assert!(key.starts_with("gli_1_"), "{key}");
    assert!(!stderr.contains(&key[6..]), "the secret only on stdout");
    let (code, _, stderr) = cloud(&[
        "api-key",
        "create",
        "--name",
        "x",
        "--customer",
        "c",
        "--ven",
        "a/b",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("a/b"), "{stderr}");

    let app = App::open(&url, &config(1000, 1000), None, None).await;
    let body = json!({ "ven_id": "cli-2", "readings": [
        reading("main", "active_power", "2026-11-22T10:00:00Z", 1.0) ] });
    assert_eq!(app.ingest(&key, &body).await.status, StatusCode::OK);

    let (code, stdout, _) = cloud(&["api-key", "list"]);
    assert_eq!(code, Some(0));
    let row = stdout.lines().nth(1).unwrap();
    assert!(row.starts_with("1\tportal\tACME\t"), "{row}");
    assert!(row.ends_with("\t-\tcli-1,cli-2"), "{row}");
    assert!(!stdout.contains(&key[6..]));

    let (code, _, stderr) = cloud(&["api-key", "revoke", "1"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        app.ingest(&key, &body).await.status,
        StatusCode::UNAUTHORIZED
    );
    let (code, _, stderr) = cloud(&["api-key", "revoke", "7"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no API key 7"), "{stderr}");
}

/// The API key store itself: ids, VENs (registered, sorted, once),
/// revocation kept at its first time, and the per-VEN `batch_seq` counter.
async fn api_key_store(app: App) {
    use gridlink_cloud::store::{ApiKeyStore as _, NewApiKey, StoreError};
    let store = &app.store;
    let ven = |id: &str| VenId::new(id).unwrap();
    let new = |name: &str, vens: &[&str]| NewApiKey {
        name: name.into(),
        customer: "ACME".into(),
        ven_ids: vens.iter().map(|v| ven(v)).collect(),
        hash: [name.len() as u8; 32],
    };
    let a = store
        .create_api_key(&new("a", &["s-2", "s-1", "s-2"]), 1000)
        .await
        .unwrap();
    let b = store
        .create_api_key(&new("bb", &["s-1"]), 2000)
        .await
        .unwrap();
    assert!(b.id > a.id);
    assert_eq!(a.ven_ids, [ven("s-1"), ven("s-2")]);
    assert!(store.ven(&ven("s-2")).await.unwrap().is_some());
    // Refused input stores nothing, not even its VENs.
    let err = store
        .create_api_key(&new("", &["s-9"]), 3000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(store.ven(&ven("s-9")).await.unwrap().is_none());
    // The same hash twice is a conflict (a unique index).
    assert!(
        store
            .create_api_key(&new("b2", &["s-1"]), 3000)
            .await
            .is_err()
    );

    let stored = store.api_key(a.id).await.unwrap().unwrap();
    assert_eq!((stored.record.clone(), stored.hash), (a.clone(), [1; 32]));
    assert!(store.api_key(a.id + 100).await.unwrap().is_none());
    assert_eq!(store.api_keys().await.unwrap(), [a.clone(), b.clone()]);

    let revoked = store.revoke_api_key(a.id, 5000).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(5000));
    let again = store.revoke_api_key(a.id, 6000).await.unwrap().unwrap();
    assert_eq!(again.revoked_ms, Some(5000), "the first revocation counts");
    assert!(
        store
            .revoke_api_key(a.id + 100, 6000)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .api_key(b.id)
            .await
            .unwrap()
            .unwrap()
            .record
            .revoked_ms,
        None
    );

    let s1: Vec<u64> = [
        store.next_http_batch_seq(&ven("s-1")).await.unwrap(),
        store.next_http_batch_seq(&ven("s-1")).await.unwrap(),
    ]
    .into();
    let s2 = store.next_http_batch_seq(&ven("s-2")).await.unwrap();
    assert_eq!(s1, [HTTP_SEQ_BASE + 1, HTTP_SEQ_BASE + 2]);
    assert_eq!(s2, HTTP_SEQ_BASE + 1, "per VEN");
}

#[tokio::test]
async fn api_key_store_sqlite() {
    api_key_store(App::sqlite(&config(1, 1)).await).await;
}

#[tokio::test]
async fn api_key_store_postgres() {
    api_key_store(App::postgres("http_ingest_store", &config(1, 1)).await).await;
}

//! The audit trail and token management through the router without a
//! socket, on SQLite and on PostgreSQL: every kind of write leaves exactly
//! one row with its actor, action, object and request id (refused writes
//! too, with their status); only admins read `/api/v1/audit`, with its
//! filters and paging; tokens expire, are listed without secrets and are
//! revoked at once; the last admin token stays.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the failure report"
)]

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use gridlink_cloud::api::auth;
use gridlink_cloud::store::alerts::{AlertStore as _, Condition, Raised, Rule, Severity};
use gridlink_cloud::store::{Role, TokenStore as _};
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::ApiApp;

/// One request with a request id; status, the echoed id and the JSON body.
async fn call(
    app: &ApiApp,
    method: Method,
    uri: &str,
    token: &str,
    request_id: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, String, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(AUTHORIZATION, format!("Bearer {token}"));
    if let Some(id) = request_id {
        request = request.header("x-request-id", id);
    }
    let request = match body {
        Some(body) => request
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let echoed = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, echoed, json)
}

/// Every audit entry, newest first, as the admin reads them.
async fn audit(app: &ApiApp, query: &str) -> Vec<Value> {
    let (status, _, json) = call(
        app,
        Method::GET,
        &format!("/api/v1/audit{query}"),
        app.token(Role::Admin),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    json["entries"].as_array().unwrap().clone()
}

/// The id of the token of `role` (named after its role by `ApiApp`).
async fn token_id(app: &ApiApp, role: Role) -> i64 {
    app.store
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == role.as_str())
        .unwrap()
        .id
}

fn event_body(program_id: &str) -> Value {
    json!({
        "programID": program_id,
        "eventName": "peak shave",
        "priority": 1,
        "targets": ["north"],
        "payloadDescriptors": [{ "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "KW" }],
        "intervalPeriod": { "start": "2030-01-01T10:00:00Z", "duration": "PT1H" },
        "intervals": [{ "id": 0, "payloads": [{ "type": "IMPORT_CAPACITY_LIMIT", "values": [12.5] }] }]
    })
}

/// One write of each kind; each must leave exactly one entry with the
/// caller, the action, the object and the request id.
#[expect(
    clippy::too_many_lines,
    reason = "one request per kind of write, then every row checked"
)]
async fn every_write_is_recorded_once(app: ApiApp) {
    let operator = app.token(Role::Operator).to_owned();
    let admin = app.token(Role::Admin).to_owned();
    let installer = app.token(Role::Installer).to_owned();
    let condition = Condition::new(Rule::VenOffline, "ven-1", Severity::Critical, "offline");
    let Raised::Opened(alert) = app
        .store
        .raise_alert(&condition, 1_000, 0, &[])
        .await
        .unwrap()
    else {
        panic!("opened");
    };
    assert!(audit(&app, "").await.is_empty());

    let (status, echoed, body) = call(
        &app,
        Method::PUT,
        "/api/v1/vens/ven-1",
        &installer,
        Some("vn-1"),
        Some(&json!({ "site": "Depot", "site_meter": "main", "groups": ["north"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(echoed, "vn-1");
    let (status, _, body) = call(
        &app,
        Method::PUT,
        "/api/v1/vens/ven-1/groups",
        &installer,
        Some("vn-2"),
        Some(&json!({ "groups": ["north", "all"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, created) = call(
        &app,
        Method::POST,
        "/openadr3/3.1.0/programs",
        &operator,
        Some("pr-1"),
        Some(&json!({ "programName": "peak", "targets": ["north"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let program_id = created["id"].as_str().unwrap().to_owned();
    // One row per write, at once.
    let entries = audit(&app, "").await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[0]["request_id"], "pr-1");
    assert_eq!(entries[0]["object_id"], program_id.as_str());

    // The rest, with the objects the first ones made.
    let project = json!({
        "name": "Solar park", "kind": "renewable", "status": "construction", "capacity_kw": 1500.0,
        "location": { "latitude": 52.1, "longitude": 5.1 }, "ven_ids": ["ven-1"]
    });
    let (status, _, created) = call(
        &app,
        Method::POST,
        "/openadr3/3.1.0/events",
        &operator,
        Some("ev-1"),
        Some(&event_body(&program_id)),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let event_id = created["id"].as_str().unwrap().to_owned();
    let (status, _, updated) = call(
        &app,
        Method::PUT,
        &format!("/openadr3/3.1.0/events/{event_id}"),
        &operator,
        Some("ev-2"),
        Some(&event_body(&program_id)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/openadr3/3.1.0/events/{event_id}"),
        &operator,
        Some("ev-3"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = call(
        &app,
        Method::PUT,
        &format!("/openadr3/3.1.0/programs/{program_id}"),
        &operator,
        Some("pr-2"),
        Some(&json!({ "programName": "peak", "targets": ["north", "south"] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = call(
        &app,
        Method::DELETE,
        &format!("/openadr3/3.1.0/programs/{program_id}"),
        &operator,
        Some("pr-3"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, created) = call(
        &app,
        Method::POST,
        "/api/v1/projects",
        &operator,
        Some("pj-1"),
        Some(&project),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let project_id = created["id"].to_string();
    let (status, _, body) = call(
        &app,
        Method::PUT,
        &format!("/api/v1/projects/{project_id}"),
        &operator,
        Some("pj-2"),
        Some(&project),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, entry) = call(
        &app,
        Method::POST,
        &format!("/api/v1/projects/{project_id}/finances"),
        &operator,
        Some("fe-1"),
        Some(&json!({ "kind": "expense", "amount": 100, "at": "2026-10-01" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{entry}");
    let entry_id = entry["id"].to_string();
    let (status, _, body) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/projects/{project_id}/finances/{entry_id}"),
        &operator,
        Some("fe-2"),
        None,
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, _, token) = call(
        &app,
        Method::POST,
        "/api/v1/tokens",
        &admin,
        Some("tk-1"),
        Some(&json!({ "name": "ci", "role": "viewer", "expires_in_s": 3600 })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let new_token_id = token["id"].to_string();
    let secret = token["token"].as_str().unwrap().to_owned();
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{new_token_id}"),
        &admin,
        Some("tk-2"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, key) = call(
        &app,
        Method::POST,
        "/api/v1/api-keys",
        &admin,
        Some("ak-1"),
        Some(&json!({ "name": "portal", "customer": "ACME", "ven_ids": ["ven-1"] })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{key}");
    let key_id = key["id"].to_string();
    let key_secret = key["key"].as_str().unwrap().to_owned();
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/api-keys/{key_id}"),
        &admin,
        Some("ak-2"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = call(
        &app,
        Method::POST,
        &format!("/api/v1/alerts/{}/ack", alert.id),
        &operator,
        Some("al-1"),
        Some(&json!({ "note": "on it" })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // No shadow service in this app: the write is refused (503), and
    // recorded with that status.
    let (status, _, body) = call(
        &app,
        Method::PATCH,
        "/api/v1/vens/ven-1/shadow",
        &operator,
        Some("sh-1"),
        Some(&json!({ "desired": { "poll_interval_ms": 5000 } })),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let operator_id = token_id(&app, Role::Operator).await;
    let admin_id = token_id(&app, Role::Admin).await;
    let installer_id = token_id(&app, Role::Installer).await;
    let expected = [
        (
            "vn-1",
            "ven.register",
            "ven",
            "ven-1".to_owned(),
            installer_id,
            200,
        ),
        (
            "vn-2",
            "ven.set_groups",
            "ven",
            "ven-1".to_owned(),
            installer_id,
            200,
        ),
        (
            "pr-1",
            "program.create",
            "program",
            program_id.clone(),
            operator_id,
            201,
        ),
        (
            "ev-1",
            "event.create",
            "event",
            event_id.clone(),
            operator_id,
            201,
        ),
        (
            "ev-2",
            "event.update",
            "event",
            event_id.clone(),
            operator_id,
            200,
        ),
        (
            "ev-3",
            "event.delete",
            "event",
            event_id.clone(),
            operator_id,
            200,
        ),
        (
            "pr-2",
            "program.update",
            "program",
            program_id.clone(),
            operator_id,
            200,
        ),
        (
            "pr-3",
            "program.delete",
            "program",
            program_id.clone(),
            operator_id,
            200,
        ),
        (
            "pj-1",
            "project.create",
            "project",
            project_id.clone(),
            operator_id,
            201,
        ),
        (
            "pj-2",
            "project.update",
            "project",
            project_id.clone(),
            operator_id,
            200,
        ),
        (
            "fe-1",
            "finance_entry.create",
            "finance_entry",
            entry_id.clone(),
            operator_id,
            201,
        ),
        (
            "tk-1",
            "token.create",
            "token",
            new_token_id.clone(),
            admin_id,
            201,
        ),
        (
            "tk-2",
            "token.revoke",
            "token",
            new_token_id.clone(),
            admin_id,
            204,
        ),
        (
            "ak-1",
            "api_key.create",
            "api_key",
            key_id.clone(),
            admin_id,
            201,
        ),
        (
            "ak-2",
            "api_key.revoke",
            "api_key",
            key_id.clone(),
            admin_id,
            204,
        ),
        (
            "al-1",
            "alert.ack",
            "alert",
            alert.id.to_string(),
            operator_id,
            200,
        ),
        (
            "sh-1",
            "shadow.update",
            "shadow",
            "ven-1".to_owned(),
            operator_id,
            503,
        ),
    ];
    let all = audit(&app, "?limit=500").await;
    for (request_id, action, object_type, object_id, actor, status) in expected {
        let rows: Vec<&Value> = all
            .iter()
            .filter(|e| e["request_id"] == request_id)
            .collect();
        assert_eq!(rows.len(), 1, "{request_id}: {all:?}");
        let row = rows[0];
        assert_eq!(row["action"], action, "{row}");
        assert_eq!(row["object_type"], object_type, "{row}");
        assert_eq!(row["object_id"], object_id.as_str(), "{row}");
        assert_eq!(row["actor"]["token_id"], actor, "{row}");
        assert_eq!(row["status"], status, "{row}");
        assert!(row["at_ms"].as_i64().unwrap() > 0);
    }
    let fe2: Vec<&Value> = all.iter().filter(|e| e["request_id"] == "fe-2").collect();
    assert_eq!(fe2.len(), 1);
    assert_eq!(fe2[0]["action"], "finance_entry.delete");
    assert_eq!(fe2[0]["object_id"], entry_id.as_str());
    // 3 first writes + 15 more, and no row for the admin's reads.
    assert_eq!(all.len(), 18, "{all:?}");
    // Newest first.
    let ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // The operator's role and name are kept; no secret is stored.
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(&secret) && !text.contains(&key_secret));
    assert!(
        all.iter()
            .any(|e| e["role"] == "operator" && e["actor"]["token_name"] == "operator")
    );
    let ack = all.iter().find(|e| e["action"] == "alert.ack").unwrap();
    assert_eq!(ack["summary"], json!({ "note": "on it" }));
}

/// Refused writes are recorded with their status; requests without a
/// valid token are not; reads are not.
async fn refusals_are_recorded(app: ApiApp) {
    let viewer = app.token(Role::Viewer).to_owned();
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/v1/tokens",
        &viewer,
        Some("no-1"),
        Some(&json!({ "name": "x", "role": "admin" })),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/v1/tokens",
        app.token(Role::Admin),
        Some("no-2"),
        Some(&json!({ "name": "", "role": "admin" })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let bogus = format!("glk_{}", "0".repeat(64));
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/v1/tokens",
        &bogus,
        Some("no-3"),
        Some(&json!({ "name": "x", "role": "admin" })),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        Method::GET,
        "/api/v1/vens",
        &viewer,
        Some("no-4"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let all = audit(&app, "").await;
    let seen: Vec<(&str, i64)> = all
        .iter()
        .map(|e| {
            (
                e["request_id"].as_str().unwrap(),
                e["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen, [("no-2", 400), ("no-1", 403)]);
    assert_eq!(all[1]["actor"]["token_name"], "viewer");
    assert_eq!(all[1]["object_id"], Value::Null);
    assert_eq!(all[1]["summary"], json!({ "name": "x", "role": "admin" }));
}

/// Only admins read the trail; filters and paging; a request id is made
/// when none is sent, and a bad one is replaced.
async fn reading_the_trail(app: ApiApp) {
    for role in [Role::Viewer, Role::Operator, Role::Installer] {
        let (status, _, json) = call(
            &app,
            Method::GET,
            "/api/v1/audit",
            app.token(role),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{role:?}");
        assert_eq!(json["type"], "urn:gridlink:problem:forbidden");
    }
    let operator = app.token(Role::Operator).to_owned();
    let mut made = Vec::new();
    for i in 0..5 {
        let (status, echoed, json) = call(
            &app,
            Method::POST,
            "/openadr3/3.1.0/programs",
            &operator,
            None,
            Some(&json!({ "programName": format!("p{i}") })),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        assert_eq!(echoed.len(), 32, "{echoed}");
        made.push((json["id"].as_str().unwrap().to_owned(), echoed));
    }
    let (_, echoed, _) = call(
        &app,
        Method::GET,
        "/api/v1/vens",
        &operator,
        Some("bad id!"),
        None,
    )
    .await;
    assert_ne!(echoed, "bad id!");
    assert_eq!(echoed.len(), 32);

    let page = audit(&app, "?skip=1&limit=2").await;
    let ids: Vec<&str> = page
        .iter()
        .map(|e| e["object_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [made[3].0.as_str(), made[2].0.as_str()]);
    assert_eq!(page[0]["request_id"], made[3].1.as_str());
    let one = audit(
        &app,
        &format!("?object_type=program&object_id={}", made[0].0),
    )
    .await;
    assert_eq!(one.len(), 1);
    let operator_id = token_id(&app, Role::Operator).await;
    assert_eq!(audit(&app, &format!("?actor={operator_id}")).await.len(), 5);
    assert_eq!(audit(&app, "?actor=operator").await.len(), 5);
    assert_eq!(audit(&app, "?actor=admin").await.len(), 0);
    assert_eq!(audit(&app, "?action=program.create").await.len(), 5);
    let first = one[0]["at_ms"].as_i64().unwrap();
    assert_eq!(audit(&app, &format!("?to={first}")).await.len(), 0);
    assert_eq!(audit(&app, &format!("?from={first}")).await.len(), 5);
    for bad in [
        "?limit=0",
        "?limit=501",
        "?skip=-1",
        "?from=2&to=1",
        "?nope=1",
        "?action=",
    ] {
        let (status, _, json) = call(
            &app,
            Method::GET,
            &format!("/api/v1/audit{bad}"),
            app.token(Role::Admin),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {json}");
    }
    // The trail has no route to change it.
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let (status, _, _) = call(
            &app,
            method.clone(),
            "/api/v1/audit",
            app.token(Role::Admin),
            None,
            Some(&json!({})),
        )
        .await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

/// Tokens: expiry on create, the list without secrets, revocation at once,
/// expired tokens refused, the last admin token kept.
#[expect(clippy::too_many_lines, reason = "the life of a token, step by step")]
async fn token_lifecycle(app: ApiApp) {
    let admin = app.token(Role::Admin).to_owned();
    let (status, _, created) = call(
        &app,
        Method::POST,
        "/api/v1/tokens",
        &admin,
        None,
        Some(&json!({ "name": "dash", "role": "viewer" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let default_s = i64::try_from(gridlink_cloud::api::DEFAULT_TOKEN_LIFETIME_S).unwrap();
    assert_eq!(
        created["expires_ms"].as_i64().unwrap() - created["created_ms"].as_i64().unwrap(),
        default_s * 1000
    );
    let secret = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_i64().unwrap();
    let (status, _, created) = call(&app, Method::POST, "/api/v1/tokens", &admin, None, Some(&json!({ "name": "short", "role": "viewer", "expires_ms": created["created_ms"].as_i64().unwrap() + 60_000 }))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for bad in [
        json!({ "name": "x", "role": "viewer", "expires_in_s": 0 }),
        json!({ "name": "x", "role": "viewer", "expires_ms": 1 }),
        json!({ "name": "x", "role": "viewer", "expires_ms": 4_102_444_800_000_i64, "expires_in_s": 5 }),
    ] {
        let (status, _, json) = call(
            &app,
            Method::POST,
            "/api/v1/tokens",
            &admin,
            None,
            Some(&bad),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {json}");
    }
    // The new token works, and the list shows it without secret or hash.
    let (status, _, _) = call(&app, Method::GET, "/api/v1/vens", &secret, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, list) = call(&app, Method::GET, "/api/v1/tokens", &admin, None, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let tokens = list["tokens"].as_array().unwrap();
    // The four of `ApiApp` and the two made here.
    assert_eq!(tokens.len(), 6, "{list}");
    let listed = tokens.iter().find(|t| t["id"] == id).unwrap();
    let mut keys: Vec<&str> = listed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "active",
            "created_ms",
            "expires_ms",
            "id",
            "name",
            "revoked_ms",
            "role"
        ]
    );
    assert_eq!(listed["active"], true);
    // The tokens of `ApiApp` were stored without expiry and keep working.
    assert!(
        tokens
            .iter()
            .any(|t| t["name"] == "viewer" && t["expires_ms"].is_null())
    );
    // Non-admins may not list or revoke.
    for role in [Role::Viewer, Role::Operator, Role::Installer] {
        let (status, _, _) = call(
            &app,
            Method::GET,
            "/api/v1/tokens",
            app.token(role),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = call(
            &app,
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            app.token(role),
            None,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    // Revoked: refused at the very next request.
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, json) = call(&app, Method::GET, "/api/v1/vens", &secret, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    let (status, _, _) = call(&app, Method::GET, "/api/v1/me", &secret, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{id}"),
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/tokens/99999",
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &app,
        Method::DELETE,
        "/api/v1/tokens/abc",
        &admin,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Expired: refused like an unknown token.
    let issued = auth::issue_token().unwrap();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap();
    app.store
        .create_expiring_token(
            "expired",
            Role::Admin,
            &issued.hash,
            now - 10_000,
            Some(now - 1),
        )
        .await
        .unwrap();
    let (status, _, json) = call(
        &app,
        Method::GET,
        "/api/v1/vens",
        &issued.secret,
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{json}");
    // The last active admin token (the expired one does not count) stays.
    let admin_id = token_id(&app, Role::Admin).await;
    let (status, _, json) = call(
        &app,
        Method::DELETE,
        &format!("/api/v1/tokens/{admin_id}"),
        &admin,
        Some("last"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{json}");
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .contains("last active admin"),
        "{json}"
    );
    let (status, _, _) = call(&app, Method::GET, "/api/v1/tokens", &admin, None, None).await;
    assert_eq!(status, StatusCode::OK);
    let refused = audit(&app, "?action=token.revoke").await;
    assert_eq!(refused[0]["request_id"], "last");
    assert_eq!(refused[0]["status"], 409);
}

macro_rules! on_both {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::ApiApp::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::ApiApp::postgres(stringify!($test)).await).await;
                }
            )*
        }
    };
}

on_both!(
    every_write_is_recorded_once,
    refusals_are_recorded,
    reading_the_trail,
    token_lifecycle,
);
